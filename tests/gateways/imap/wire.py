"""A tiny transcript client for wire tests: raw bytes in, parsed lines out (literals kept)."""

from __future__ import annotations

import re
import socket
import time

from tests.socketclient import SocketClient

_LITERAL = re.compile(rb"~?\{(\d+)\}\r\n$")


class Wire(SocketClient):
    def __init__(self, addr, timeout: float = 10.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""
        self.greeting = self.line()
        self.n = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("connection closed; buffered: %r" % self.buf[:200])
        self.buf += data

    def raw_line(self) -> bytes:
        """One CRLF-terminated line, without literal handling."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def line(self) -> bytes:
        """One response line with its literals inline (CRLF at the very end stripped)."""
        out = b""
        while True:
            part = self.raw_line()
            out += part
            m = _LITERAL.search(part)
            if not m:
                return out[:-2]
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def tag(self) -> str:
        self.n += 1
        return "t%d" % self.n

    def cmd(self, text, tag: str | None = None) -> list:
        """Send ``tag text`` and return every line up to and including the tagged one."""
        tag = tag or self.tag()
        if isinstance(text, str):
            text = text.encode()
        self.send(tag.encode() + b" " + text + b"\r\n")
        return self.until(tag)

    def until(self, tag: str) -> list:
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if line.startswith(tag.encode() + b" "):
                return lines

    def ok(self, text, tag: str | None = None) -> list:
        lines = self.cmd(text, tag)
        assert lines[-1].split(b" ")[1] == b"OK", lines
        return lines

    def login(self, user: str, password: str) -> None:
        self.ok('LOGIN "%s" "%s"' % (user, password))

    def wait_for(self, predicate, timeout: float = 5.0) -> bytes:
        deadline = time.monotonic() + timeout
        self.sock.settimeout(timeout)
        while time.monotonic() < deadline:
            line = self.line()
            if predicate(line):
                return line
        raise AssertionError("no matching line within %ss" % timeout)


def untagged(lines, word: bytes) -> list:
    return [l for l in lines if l.startswith(b"* ") and word in l.split(b" ", 3)[:3]]
