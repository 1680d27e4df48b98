"""A tiny POP3 transcript client for wire tests: raw lines out, raw lines and bodies in."""

from __future__ import annotations

import socket
import ssl

from tests.socketclient import SocketClient


def unverified_context() -> ssl.SSLContext:
    """The test server's certificate is self-signed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class POP(SocketClient):
    def __init__(self, addr, tls: bool = False, timeout: float = 10.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        if tls:
            self.sock = unverified_context().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.line()

    def send(self, data) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("connection closed; buffered: %r" % self.buf[:200])
        self.buf += data

    def line(self) -> bytes:
        """One reply line without its CRLF."""
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, text) -> bytes:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.line()

    def body(self) -> bytes:
        """The raw multi-line body up to and including the terminating ".\\r\\n" (still stuffed)."""
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 0
            else:
                end = self.buf.find(b"\r\n.\r\n")
                end = -1 if end < 0 else end + 2
            if end >= 0:
                out, self.buf = self.buf[:end + 3], self.buf[end + 3:]
                return out
            self._fill()

    def multi(self, text) -> tuple:
        """(status line, raw body) of a multi-line command."""
        status = self.cmd(text)
        assert status.startswith(b"+OK"), status
        return status, self.body()

    def login(self, user: str, password: str) -> bytes:
        assert self.cmd("USER " + user).startswith(b"+OK")
        return self.cmd("PASS " + password)

    def starttls(self) -> None:
        self.sock = unverified_context().wrap_socket(self.sock)

    def closed_by_server(self) -> bool:
        """True when the server has closed the connection (EOF), after any buffered bytes."""
        try:
            return self.sock.recv(1 << 16) == b""
        except socket.timeout:
            return False
        except OSError:  # reset, or a TLS connection cut without close_notify
            return True


def unstuff(body: bytes) -> bytes:
    """A multi-line body as a client hands it up: terminator removed, leading dots undone."""
    assert body.endswith(b".\r\n")
    lines = body[:-3].split(b"\r\n")[:-1] if body != b".\r\n" else []
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def stuffed(message: bytes) -> bytes:
    """What RFC 1939 §3 puts on the wire for ``message`` (CRLF lines): written independently of
    the gateway's own encoder."""
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    lines = message[:-2].split(b"\r\n")
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"
