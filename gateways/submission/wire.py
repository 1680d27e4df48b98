"""Pure SMTP wire helpers of the submission gateway: bytes in, bytes or plain values out, no I/O
(fuzzable).

* :class:`DataDecoder`: the DATA stream (RFC 5321 §4.5.2 transparency, §2.3.8 line endings).
* :func:`dot_stuff`: the reverse, for the relay client.
* :func:`received_header` / :func:`return_path`: the trace lines Haven prepends.
* :func:`missing_header_fields`: ``Date:`` / ``Message-ID:`` an MSA may add (RFC 6409 §8).
* :func:`with_enhanced_code`, :func:`enhanced_code`: RFC 2034 / RFC 3463 status codes.
* :func:`declared_size`: the RFC 1870 ``SIZE=`` parameter of MAIL FROM.

The decoder, ``dot_stuff``, the trace-header pieces and the reply helpers are copies of
``gateways/lmtp/wire.py`` (gateways never import each other).  They belong in one neutral
module (``gateways/smtpwire.py``) shared by both; see the package docstring.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import secrets
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
    * Bare LF (LF not preceded by CR) is written out as CRLF; bare CR is kept as it came.
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
        self.size = 0
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
        # RFC 5321 §4.5.2: drop the transparency dot of every line that starts with one.
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
    """The DATA stream for ``message`` (CRLF lines): leading dots doubled, a CRLF added when the
    message does not end with one, then "." CRLF (RFC 5321 §4.5.2).  Bare LFs are sent as
    CRLF so that the receiver cannot see a different end of data than we meant."""
    if b"\n" in message:
        message = _BARE_LF.sub(b"\r\n", message)
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + _END


# -- trace headers (RFC 5321 §4.4, RFC 3848) -------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_HELO = re.compile(r"[^\x21-\x7e]|[()\\;]")


def _helo_text(name: Optional[str]) -> str:
    """The EHLO argument as it may appear in a header: printable ASCII, no comment syntax."""
    return _UNSAFE_HELO.sub("?", name or "unknown")[:255] or "unknown"


def peer_ip(peer) -> Optional[str]:
    """The IP address of an asyncio ``peername`` (IPv4-mapped IPv6 unmapped), or None."""
    host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def is_loopback(peer) -> bool:
    """127.0.0.0/8 and ::1 (and their IPv4-mapped forms)."""
    ip = peer_ip(peer)
    return ip is not None and ipaddress.ip_address(ip).is_loopback


def _peer_text(peer) -> str:
    """TCP-info of the Received: "from" clause: ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]``."""
    ip = peer_ip(peer)
    if ip is None:
        return "unknown"
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def with_protocol(tls: bool, auth: bool, utf8: bool) -> str:
    """The ``with`` keyword of Received: (RFC 3848 ESMTP/ESMTPA/ESMTPS/ESMTPSA, RFC 6531 §3.7.3
    UTF8SMTP/UTF8SMTPA/UTF8SMTPS/UTF8SMTPSA)."""
    return ("UTF8SMTP" if utf8 else "ESMTP") + ("S" if tls else "") + ("A" if auth else "")


def received_header(*, helo: Optional[str], peer, hostname: str, queue_id: str, protocol: str,
                    date: Optional[float] = None) -> bytes:
    """One ``Received:`` field, CRLF-terminated.  No ``for <recipient>`` clause: one message
    goes to every recipient (and local copies share one blob)."""
    stamp = email.utils.formatdate(date, localtime=True)
    return (f"Received: from {_helo_text(helo)} ({_peer_text(peer)})\r\n"
            f"\tby {_helo_text(hostname)} (Haven) with {protocol} id {queue_id};\r\n"
            f"\t{stamp}\r\n").encode("ascii")


def return_path(mail_from: str) -> bytes:
    """``Return-Path:`` for a final delivery (RFC 5321 §4.4); never on relayed copies."""
    reverse_path = "" if mail_from in ("", "<>") else _CONTROL.sub("?", mail_from)
    return f"Return-Path: <{reverse_path}>\r\n".encode("utf-8", "surrogateescape")


# -- header fields an MSA may add (RFC 6409 §8.2, §8.3) --------------------------------------

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)


def header_section(message: bytes) -> bytes:
    """The header section of ``message`` up to (not including) the blank line; the whole
    message when there is none."""
    if message.startswith(b"\r\n"):
        return b""
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[:end + 2]


def missing_header_fields(message: bytes, hostname: str, date: Optional[float] = None) -> bytes:
    """``Date:`` and ``Message-ID:`` lines (CRLF-terminated) for those the message lacks, so
    that remote MTAs which insist on them (several large ones do) take it.  Empty when the
    message has both, which every real client's messages do."""
    names = {m.group(1).lower() for m in _FIELD_NAME.finditer(header_section(message))}
    out = b""
    if b"date" not in names:
        out += f"Date: {email.utils.formatdate(date, localtime=True)}\r\n".encode("ascii")
    if b"message-id" not in names:
        out += f"Message-ID: <{secrets.token_hex(12)}@{_helo_text(hostname)}>\r\n".encode("ascii")
    return out


# -- replies (RFC 2034, RFC 3463) ------------------------------------------------------------

_REPLY = re.compile(r"^([245])(\d\d)([ -])(.*)\Z", re.S)
_HAS_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |\Z)")

#: the enhanced code a reply gets when its text does not carry one (RFC 3463)
_DEFAULT_ENHANCED = {
    "221": "2.0.0", "235": "2.7.0", "250": "2.0.0", "251": "2.1.5", "252": "2.5.0",
    "421": "4.3.0", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4",
    "530": "5.7.0", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "552": "5.3.4",
    "553": "5.1.3", "554": "5.0.0", "555": "5.5.4",
}


def with_enhanced_code(reply: str) -> str:
    """RFC 2034 §3: with ENHANCEDSTATUSCODES every 2xx/4xx/5xx reply carries an enhanced code.
    Adds the default one for the reply code when it is missing (aiosmtpd's own replies have
    none); leaves 220 (greeting), 3xx and coded replies alone."""
    m = _REPLY.match(reply)
    if not m or reply.startswith("220") or _HAS_ENHANCED.match(m.group(4)):
        return reply
    code = m.group(1) + m.group(2)
    enhanced = _DEFAULT_ENHANCED.get(code, f"{m.group(1)}.0.0")
    return f"{code}{m.group(3)}{enhanced} {m.group(4)}".rstrip()


def enhanced_code(code: int, text: str) -> str:
    """The RFC 3463 status of a reply: the one its text starts with when it has one of the
    same class, else ``<class>.0.0``."""
    m = _HAS_ENHANCED.match(text or "")
    if m and m.group(1) == str(code)[0]:
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return f"{str(code)[0]}.0.0"


# -- MAIL FROM parameters (RFC 1870) ---------------------------------------------------------

def declared_size(mail_options: Iterable[str]) -> Optional[int]:
    """The ``SIZE=n`` of MAIL FROM (aiosmtpd has already checked it is all digits)."""
    for option in mail_options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


def is_ascii(text: str) -> bool:
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        return False
    return True
