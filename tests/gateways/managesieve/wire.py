"""A tiny ManageSieve transcript client for wire tests: raw lines out, whole responses in."""

from __future__ import annotations

import base64
import re
import socket
import ssl
from dataclasses import dataclass

from tests.socketclient import SocketClient

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}$")
_STATUS = re.compile(rb"(OK|NO|BYE)( |$)", re.IGNORECASE)


def unverified_context() -> ssl.SSLContext:
    """The test server's certificate is self-signed."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def plain(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


@dataclass
class Response:
    lines: list  # data lines before the status line, literals inline (b'{5}\r\nabcde')
    status: bytes  # the OK / NO / BYE line, without CRLF

    @property
    def ok(self) -> bool:
        return self.status.upper().startswith(b"OK")

    @property
    def code(self) -> bytes:
        """The response code, e.g. b"QUOTA/MAXSIZE" (b"" when there is none)."""
        m = re.match(rb"\w+ \(([^) ]+)", self.status)
        return m.group(1) if m else b""


class Sieve(SocketClient):
    def __init__(self, addr, timeout: float = 10.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""
        self.greeting = self.response()

    def send(self, data) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def _fill(self) -> None:
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("connection closed; buffered: %r" % self.buf[:200])
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def item(self) -> bytes:
        """One response line with any server literals {n} it contains, inline."""
        full = self.line()
        while True:
            m = _LITERAL_AT_END.search(full)
            if not m:
                return full
            full += b"\r\n" + self.exactly(int(m.group(1))) + self.line()

    def response(self) -> Response:
        lines = []
        while True:
            item = self.item()
            if _STATUS.match(item):
                return Response(lines, item)
            lines.append(item)

    def cmd(self, text) -> Response:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.response()

    def login(self, user: str, password: str) -> Response:
        return self.cmd('AUTHENTICATE "PLAIN" "%s"' % plain(user, password))

    def starttls(self) -> Response:
        """After OK to STARTTLS: the handshake, then the capabilities the server re-issues."""
        assert not self.buf, self.buf
        self.sock = unverified_context().wrap_socket(self.sock)
        return self.response()

    def closed_by_server(self) -> bool:
        """True when the server has closed the connection (EOF), after any buffered bytes."""
        try:
            return self.sock.recv(1 << 16) == b""
        except socket.timeout:
            return False
        except OSError:  # reset, or a TLS connection cut without close_notify
            return True


def capabilities(response: Response) -> dict:
    """{NAME: value or None} of a capability listing."""
    out = {}
    for line in response.lines:
        m = re.match(rb'"([^"]+)"(?: "((?:[^"\\]|\\.)*)")?$', line)
        assert m, line
        out[m.group(1).decode().upper()] = None if m.group(2) is None else m.group(2).decode()
    return out


def literal(data: bytes, sync: bool = False) -> bytes:
    return b"{%d%s}\r\n" % (len(data), b"" if sync else b"+") + data
