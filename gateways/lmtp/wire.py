"""Pure LMTP wire helpers: bytes in, bytes or plain values out, no I/O (fuzzable).

* :class:`DataDecoder`: the DATA stream (RFC 5321 §4.5.2 transparency, §2.3.8 line endings).
* :func:`trace_headers`: the ``Return-Path:`` and ``Received:`` lines prepended to a delivery.
* :func:`with_enhanced_code`: RFC 2034 enhanced status codes on every reply that lacks one.
* :func:`declared_size`: the RFC 1870 ``SIZE=`` parameter of MAIL FROM.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from typing import Iterable, Optional

_BARE_LF = re.compile(rb"(?<!\r)\n")

#: the end of the mail data, as seen at the beginning of a line (RFC 5321 §4.1.1.4)
_END = b".\r\n"
_CRLF_END = b"\r\n.\r\n"


class DataDecoder:
    """Incremental decoder of the DATA stream, fed arbitrary chunks of the wire.

    Invariants (RFC 5321 §2.3.8, §4.1.1.4, §4.5.2):

    * A line ends only with CRLF.  The data ends only with CRLF "." CRLF (or "." CRLF as the
      very first line).  ``LF.LF``, ``CR.CR``, ``LF.CRLF`` and ``CR.LF`` inside the data are
      ordinary content: they neither end the message nor split it (SMTP smuggling,
      CVE-2023-51766 and relatives).
    * A leading "." is removed from every line that has one (dot-unstuffing); a line starts only
      after CRLF, so a "." after a bare LF is kept.
    * Bare LF (LF not preceded by CR) is written out as CRLF; bare CR is kept as it came.  So the
      stored message has CRLF line endings wherever the sender meant a line break, and no byte
      other than an inserted CR differs from the wire.
    * Memory is bounded: at most ``limit`` decoded octets are kept (plus a 4-octet carry).  Once
      the message is over the limit the rest is read and discarded, ``too_big`` is set and
      ``size`` keeps counting.

    ``feed(chunk)`` returns None while the data goes on, and the bytes that followed the end
    marker (possibly empty) once it was seen; ``done`` is then True and ``content()`` is the
    decoded message (without the final "." CRLF).  Feeding after ``done`` is an error.
    """

    __slots__ = ("limit", "size", "too_big", "done", "_parts", "_carry", "_bol")

    def __init__(self, limit: Optional[int] = None):
        self.limit = limit or None  # None or 0: no limit
        self.size = 0  # decoded octets seen so far (kept or not)
        self.too_big = False
        self.done = False
        self._parts: list = []
        self._carry = b""  # undecided tail: "." / ".\r" at a line start, or a trailing "\r"
        self._bol = True  # at the beginning of a line (after CRLF, or the first octet)

    def feed(self, chunk: bytes) -> Optional[bytes]:
        if self.done:
            raise ValueError("DataDecoder.feed() after the end of data")
        data = self._carry + bytes(chunk) if self._carry else bytes(chunk)
        self._carry = b""
        if self._bol:
            if data.startswith(_END):  # the data ends with its very first line
                self.done = True
                return data[3:]
            if _END.startswith(data):  # "" / "." / ".\r": undecided until more arrives
                self._carry = data
                return None
        end = data.find(_CRLF_END)
        if end >= 0:
            body, rest = data[:end + 2], data[end + 5:]
        else:
            # Hold back a tail that could be the start of CRLF "." CRLF (or a CR whose LF is in
            # the next chunk), so every marker and every CRLF is seen whole in one piece.
            keep = next((k for k in range(min(4, len(data)), 0, -1) if _CRLF_END.startswith(data[-k:])), 0)
            body, rest = data[:len(data) - keep], None
            self._carry = data[len(data) - keep:]
        if body:
            self._emit(body)
        if rest is not None:
            self.done = True
        return rest

    def _emit(self, body: bytes) -> None:
        # RFC 5321 §4.5.2: drop the transparency dot of every line that starts with one; a line
        # starts after CRLF only (a "." after a bare LF stays).  Then bare LF -> CRLF.  ``body``
        # never ends inside a CRLF or a CRLF "." (feed holds those back), so both rewrites see
        # whole sequences.
        if self._bol and body[:1] == b".":
            body = body[1:]
        self._bol = body.endswith(b"\r\n") or (not body and self._bol)
        body = body.replace(b"\r\n.", b"\r\n")
        if b"\n" in body:
            body = _BARE_LF.sub(b"\r\n", body)
        self.size += len(body)
        if self.too_big:
            return
        if self.limit is not None and self.size > self.limit:
            self.too_big = True
            self._parts.clear()  # RFC 5321 §4.5.3.1.10: read on, keep nothing
            return
        self._parts.append(body)

    def content(self) -> bytes:
        """The decoded message; empty when ``too_big``."""
        if not self.done:
            raise ValueError("DataDecoder.content() before the end of data")
        return b"".join(self._parts)


def dot_stuff(message: bytes) -> bytes:
    """The DATA stream a compliant client sends for ``message`` (CRLF lines): leading dots
    doubled, a CRLF added when the message does not end with one, then "." CRLF."""
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + _END


# -- trace headers (RFC 5321 §4.4) -----------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_HELO = re.compile(r"[^\x21-\x7e]|[()\\;]")


def _helo_text(name: Optional[str]) -> str:
    """The LHLO argument as it may appear in a header: printable ASCII, no comment syntax."""
    return _UNSAFE_HELO.sub("?", name or "unknown")[:255] or "unknown"


def _peer_text(peer) -> str:
    """TCP-info of the Received: "from" clause: ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]``."""
    host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
    if not host:
        return "local socket"  # AF_UNIX: peername is "" (or None)
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return "unknown"
    if ip.version == 6:
        if ip.ipv4_mapped is not None:
            return f"[{ip.ipv4_mapped}]"
        return f"[IPv6:{ip.compressed}]"
    return f"[{ip}]"


def trace_headers(*, mail_from: str, helo: Optional[str], peer, hostname: str, queue_id: str,
                  utf8: bool = False, date: Optional[float] = None) -> bytes:
    """``Return-Path:`` (RFC 5321 §4.4, the reverse-path; ``<>`` for bounces) and a
    ``Received:`` line, CRLF-terminated, to prepend to the message as received.

    There is deliberately no ``for <recipient>`` clause: one blob serves every recipient of the
    transaction (single-instance storage), so the trace must not name any one of them.
    ``with UTF8LMTP`` when the client used SMTPUTF8 (RFC 6531 §3.7.3), ``LMTP`` otherwise.
    """
    reverse_path = "" if mail_from in ("", "<>") else _CONTROL.sub("?", mail_from)
    protocol = "UTF8LMTP" if utf8 else "LMTP"
    stamp = email.utils.formatdate(date, localtime=True)
    received = (f"Received: from {_helo_text(helo)} ({_peer_text(peer)})\r\n"
                f"\tby {_helo_text(hostname)} (Haven) with {protocol} id {queue_id};\r\n"
                f"\t{stamp}\r\n")
    return (f"Return-Path: <{reverse_path}>\r\n".encode("utf-8", "surrogateescape")
            + received.encode("ascii"))


# -- replies (RFC 2034) ----------------------------------------------------------------------

_REPLY = re.compile(r"^([245])(\d\d)([ -])(.*)\Z", re.S)
_HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}(?: |\Z)")

#: the enhanced code a reply gets when its text does not carry one (RFC 3463)
_DEFAULT_ENHANCED = {
    "221": "2.0.0", "250": "2.0.0", "251": "2.1.5", "252": "2.5.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "550": "5.0.0", "552": "5.3.4", "553": "5.1.3", "554": "5.0.0",
    "555": "5.5.4",
}


def with_enhanced_code(reply: str) -> str:
    """RFC 2034 §3: with ENHANCEDSTATUSCODES advertised every 2xx/4xx/5xx reply after LHLO
    carries an enhanced code.  Adds the default one for the reply code when it is missing
    (aiosmtpd's own replies have none); leaves 220 (greeting), 3xx and coded replies alone."""
    m = _REPLY.match(reply)
    if not m or reply.startswith("220") or _HAS_ENHANCED.match(m.group(4)):
        return reply
    code = m.group(1) + m.group(2)
    enhanced = _DEFAULT_ENHANCED.get(code, f"{m.group(1)}.0.0")
    return f"{code}{m.group(3)}{enhanced} {m.group(4)}".rstrip()


# -- MAIL FROM parameters (RFC 1870) ---------------------------------------------------------

def declared_size(mail_options: Iterable[str]) -> Optional[int]:
    """The ``SIZE=n`` of MAIL FROM (aiosmtpd has already checked it is all digits)."""
    for option in mail_options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None
