"""Wire helpers for the LMTP tests: a raw transcript client, an RFC 2033-aware sender, and the
trace headers of what was delivered (IMAP read-back is :mod:`tests.gateways.smtp_helpers`).
smtplib.LMTP reads a single reply after DATA, so it is only used with one recipient.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

from gateways.common.smtpwire import dot_stuff
from tests.gateways.smtp_helpers import split_local

CRLF = b"\r\n"


@dataclass
class Reply:
    code: int
    lines: List[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return self.lines[-1] if self.lines else ""

    def __str__(self) -> str:
        return " | ".join(self.lines)


class Transcript:
    """A raw LMTP session: ``send`` bytes as they are, ``reply()`` reads one (multi-line) reply."""

    def __init__(self, address: Tuple[str, int], timeout: float = 10.0):
        self.sock = socket.create_connection(address, timeout=timeout)
        self.rfile = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Reply:
        lines = []
        while True:
            raw = self.rfile.readline(4096)
            if not raw:
                raise ConnectionError(f"connection closed after {lines!r}")
            assert raw.endswith(CRLF), raw
            line = raw[:-2].decode("utf-8", "replace")
            assert re.match(r"^\d{3}[ -]", line), line
            lines.append(line)
            if line[3] == " ":
                return Reply(int(line[:3]), lines)

    def replies(self, n: int) -> List[Reply]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str | bytes) -> Reply:
        self.send((line.encode() if isinstance(line, str) else line) + CRLF)
        return self.reply()

    def lhlo(self, name: str = "client.example") -> Reply:
        reply = self.cmd(f"LHLO {name}")
        assert reply.code == 250, reply
        return reply

    def expect_closed(self) -> bool:
        return self.rfile.readline() == b""

    def close(self) -> None:
        try:
            self.rfile.close()
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "Transcript":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def send_message(address, sender: str, recipients: Sequence[str], message: bytes,
                 wire: Optional[bytes] = None) -> Tuple[List[Reply], List[Reply]]:
    """One LMTP transaction: (RCPT replies, post-DATA replies, exactly one per accepted RCPT).

    ``message`` is dot-stuffed like a compliant client does; ``wire`` (the DATA stream up to and
    including the final "." CRLF) overrides that for transcripts that need odd bytes."""
    with Transcript(address) as t:
        t.lhlo()
        assert t.cmd(f"MAIL FROM:<{sender}>").code == 250
        rcpt = [t.cmd(f"RCPT TO:<{r}>") for r in recipients]
        accepted = sum(1 for r in rcpt if r.code == 250)
        if not accepted:
            return rcpt, []
        assert t.cmd("DATA").code == 354
        t.send(wire if wire is not None else dot_stuff(message))
        data = t.replies(accepted)
        # RFC 2033 §4.2: nothing more than one reply per accepted recipient.
        assert t.cmd("NOOP").code == 250
        t.cmd("QUIT")
        return rcpt, data


# -- the headers Haven prepends -----------------------------------------------------------------

def split_trace(stored: bytes) -> Tuple[dict, bytes]:
    """(trace fields, message as received) of a stored message; fails if the trace is not the
    exact Return-Path + Received pair the gateway prepends, ``with LMTP`` or ``UTF8LMTP``."""
    path, fields, message = split_local(stored)
    assert fields["proto"] in ("LMTP", "UTF8LMTP"), fields
    return {"path": path, **fields}, message


def crlf_normalized(message: bytes) -> bytes:
    """What Haven stores for ``message`` sent as-is: bare LF as CRLF, bare CR kept, a final CRLF."""
    message = re.sub(rb"(?<!\r)\n", CRLF, message)
    return message if not message or message.endswith(CRLF) else message + CRLF

