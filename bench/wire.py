"""Minimal raw-socket IMAP and LMTP clients for the benchmark.

They do only what the benchmark needs, with as little client-side work as
possible so the timings are dominated by the server: no response parsing beyond
framing (lines and ``{n}`` literals), every socket with a timeout.

* ``ImapClient.command(text)`` sends one tagged command and returns the untagged
  responses, each as ``(line_bytes, [literal_bytes, ...])``; a non-OK tagged
  reply raises ``ImapError``.
* ``LmtpClient.deliver(sender, rcpt, message)`` runs one MAIL/RCPT/DATA
  transaction on a reused connection; ``on_final_dot`` is called just before the
  terminating ``.`` is sent (used to time IDLE wake-up).
"""

from __future__ import annotations

import re
import socket
from typing import Callable

LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")
TIMEOUT = 120.0


def split_hostport(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    return host or "127.0.0.1", int(port)


class ProtocolError(Exception):
    pass


class ImapError(ProtocolError):
    pass


class _LineConn:
    def __init__(self, hostport: str, timeout: float = TIMEOUT):
        self.sock = socket.create_connection(split_hostport(hostport), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb", buffering=65536)

    def readline(self) -> bytes:
        line = self.rfile.readline(1 << 20)
        if not line:
            raise ProtocolError("connection closed by server")
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass


class ImapClient(_LineConn):
    """One IMAP4rev1 connection."""

    def __init__(self, hostport: str, timeout: float = TIMEOUT):
        super().__init__(hostport, timeout)
        self._tag = 0
        greeting = self.readline()
        if not greeting.startswith(b"* OK"):
            raise ImapError(f"bad greeting: {greeting!r}")

    def next_tag(self) -> str:
        self._tag += 1
        return f"b{self._tag:04d}"

    def read_response(self) -> tuple[bytes, list[bytes]]:
        """Read one full response line, pulling in any literals it announces."""
        line = self.readline()
        literals: list[bytes] = []
        parts = [line]
        while (m := LITERAL.search(line)):
            n = int(m.group(1))
            data = self.rfile.read(n)
            if len(data) != n:
                raise ProtocolError("connection closed inside a literal")
            literals.append(data)
            line = self.readline()
            parts.append(line)
        return b"".join(parts), literals

    def command(self, text: str) -> list[tuple[bytes, list[bytes]]]:
        tag = self.next_tag()
        self.send(f"{tag} {text}\r\n".encode())
        return self.read_until_tagged(tag, text)

    def read_until_tagged(self, tag: str, what: str = "") -> list[tuple[bytes, list[bytes]]]:
        untagged = []
        prefix = tag.encode() + b" "
        while True:
            resp = self.read_response()
            if resp[0].startswith(prefix):
                if not resp[0][len(prefix):].startswith(b"OK"):
                    raise ImapError(f"{what.split(' ')[0]}: {resp[0].strip().decode(errors='replace')}")
                return untagged
            untagged.append(resp)

    def login(self, user: str, password: str) -> None:
        self.command(f"LOGIN {quote(user)} {quote(password)}")

    def select(self, mailbox: str = "INBOX") -> int:
        """SELECT and return the EXISTS count."""
        exists = None
        for line, _ in self.command(f"SELECT {quote(mailbox)}"):
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                exists = int(m.group(1))
        if exists is None:
            raise ImapError("SELECT gave no EXISTS")
        return exists

    def logout(self) -> None:
        try:
            self.command("LOGOUT")
        except (ProtocolError, OSError):
            pass
        self.close()


def quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fetch_literals(responses: list[tuple[bytes, list[bytes]]]) -> dict[int, bytes]:
    """Map sequence number -> first literal of each FETCH response."""
    out = {}
    for line, lits in responses:
        m = re.match(rb"\* (\d+) FETCH", line)
        if m and lits:
            out[int(m.group(1))] = lits[0]
    return out


def count_fetches(responses: list[tuple[bytes, list[bytes]]]) -> int:
    return sum(1 for line, _ in responses if re.match(rb"\* \d+ FETCH", line))


class LmtpClient(_LineConn):
    """One LMTP connection, reused for many single-recipient transactions."""

    def __init__(self, hostport: str, timeout: float = TIMEOUT):
        super().__init__(hostport, timeout)
        self.expect(b"220", "greeting")
        self.send(b"LHLO bench.example.test\r\n")
        self.expect(b"250", "LHLO")

    def expect(self, code: bytes, what: str) -> bytes:
        """Read a (possibly multi-line) reply and check its code."""
        while True:
            line = self.readline()
            if line[3:4] != b"-":
                break
        if not line.startswith(code):
            raise ProtocolError(f"LMTP {what}: {line.strip().decode(errors='replace')}")
        return line

    def deliver(self, sender: str, rcpt: str, message: bytes,
                on_final_dot: Callable[[], None] | None = None) -> None:
        self.send(f"MAIL FROM:<{sender}>\r\n".encode())
        self.expect(b"250", "MAIL")
        self.send(f"RCPT TO:<{rcpt}>\r\n".encode())
        self.expect(b"250", "RCPT")
        self.send(b"DATA\r\n")
        self.expect(b"354", "DATA")
        data = re.sub(rb"(?m)^\.", b"..", message)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        self.send(data)
        if on_final_dot:
            on_final_dot()
        self.send(b".\r\n")
        self.expect(b"250", "end of DATA")  # one recipient: exactly one reply

    def quit(self) -> None:
        try:
            self.send(b"QUIT\r\n")
            self.readline()
        except (ProtocolError, OSError):
            pass
        self.close()
