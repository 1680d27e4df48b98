"""Pure SMTP/LMTP wire helpers shared by the LMTP and submission gateways: bytes in, bytes or plain
values out, no I/O (fuzzable).  Neither gateway imports the other; both import this module, and
it imports no gateway and of the store only its closed error list (:mod:`store.errors`).

* :class:`DataDecoder`: the DATA stream (RFC 5321 §4.5.2 transparency, §2.3.8 line endings).
* :func:`dot_stuff`: the reverse, for a client (the relay client, the tests).
* :func:`received_header` / :func:`return_path` / :func:`with_protocol`: the trace lines Haven
  prepends (RFC 5321 §4.4, RFC 3848, RFC 6531 §3.7.3).
* :func:`peer_ip` / :func:`peer_name`: a connection's peer, for trace headers and log lines.
* :func:`is_unsafe_address`: MAIL/RCPT addresses that must reach neither the store nor a header.
* :func:`declared_size`: the RFC 1870 ``SIZE=`` parameter of MAIL FROM.
* The replies both gateways give, :func:`rcpt_error` (the one store-error → reply table for
  RCPT, a local recipient in both), and :func:`with_enhanced_code` / :func:`enhanced_code`
  (RFC 2034 / RFC 3463 status codes).  The replies after DATA differ (LMTP answers per
  recipient, submission once per message), so those tables are each gateway's ``replies.py``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
from typing import Iterable, Optional

from formats.headers import return_path, sanitized_hostname
from store import errors

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
    * With ``spill`` (a function returning a sink: ``write(bytes)``, ``close()``), no more than
      ``spill_at`` octets are kept in memory: past that, what was kept and everything after it
      goes to the sink, and ``content()`` is the sink.  A message that goes over ``limit``
      closes its sink at once.  ``prefix`` (trace lines the receiver adds) starts the content
      and is not counted against ``limit``.

    ``feed(chunk)`` returns None while the data goes on, and the bytes that followed the end
    marker (possibly empty) once it was seen; ``done`` is then True and ``content()`` is the
    decoded message (without the final "." CRLF).  Feeding after ``done`` is an error.
    """

    __slots__ = ("limit", "size", "too_big", "done", "_parts", "_carry", "_bol", "_spill", "_spill_at", "_kept",
                 "sink")

    def __init__(self, limit: Optional[int] = None, prefix: bytes = b"", spill=None, spill_at: int = 256 << 10):
        self.limit = limit or None  # None or 0: no limit
        self.size = 0  # decoded octets seen so far (kept or not)
        self.too_big = False
        self.done = False
        self._parts: list = [prefix] if prefix else []
        self._kept = len(prefix)
        self._spill, self._spill_at = spill, spill_at
        self.sink = None  # where the content goes once it is over spill_at
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
        if body.count(b"\n") != body.count(b"\r\n"):  # a bare LF (two C scans beat the regex)
            body = _BARE_LF.sub(b"\r\n", body)
        self.size += len(body)
        if self.too_big:
            return
        if self.limit is not None and self.size > self.limit:
            self.too_big = True
            self._parts.clear()  # RFC 5321 §4.5.3.1.10: read on, keep nothing
            self.discard()
            return
        if self.sink is not None:
            self.sink.write(body)
            return
        self._parts.append(body)
        self._kept += len(body)
        if self._spill is not None and self._kept > self._spill_at:
            self.sink = self._spill()
            for part in self._parts:
                self.sink.write(part)
            self._parts.clear()

    def content(self):
        """The decoded message (prefix included): bytes, or the sink it was spilled to; empty
        bytes when ``too_big``."""
        if not self.done:
            raise ValueError("DataDecoder.content() before the end of data")
        return self.sink if self.sink is not None else b"".join(self._parts)

    def discard(self) -> None:
        """Close the sink, if any (the message is refused, or the connection went)."""
        sink, self.sink = self.sink, None
        if sink is not None:
            sink.close()


def dot_stuff(message: bytes) -> bytes:
    """The DATA stream a compliant client sends for ``message`` (RFC 5321 §4.5.2): leading dots
    doubled, a CRLF added when the message does not end with one, then "." CRLF.  Bare LFs are
    sent as CRLF, so that no receiver can see a different end of data than we meant.  So for any
    message, :class:`DataDecoder` gives back the message with bare LFs as CRLF and a final CRLF,
    which is what Haven stores for it."""
    if b"\n" in message:
        message = _BARE_LF.sub(b"\r\n", message)
    if message and not message.endswith(b"\r\n"):
        message += b"\r\n"
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + _END


# -- MAIL FROM / RCPT TO (RFC 5321 §4.1.2, RFC 1870) ----------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_unsafe_address(address: str) -> bool:
    """True for an address that must reach neither the store nor a header.

    aiosmtpd decodes arguments as UTF-8 with surrogateescape, so a surrogate is an octet that was
    not UTF-8; and its address parser lets control characters through (even a bare CR, which
    would end up in ``Return-Path:``).  RFC 5321 §4.1.2 allows neither.
    """
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return bool(_CONTROL.search(address))


def declared_size(mail_options: Iterable[str]) -> Optional[int]:
    """The ``SIZE=n`` of MAIL FROM (aiosmtpd has already checked it is all digits)."""
    for option in mail_options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return int(value)
    return None


# -- the peer --------------------------------------------------------------------------------

def _peer_host(peer) -> Optional[str]:
    """The host part of an asyncio ``peername``; None for a unix socket ("" or None)."""
    host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
    return str(host) if host else None


def peer_ip(peer) -> Optional[str]:
    """The IP address of an asyncio ``peername`` (IPv4-mapped IPv6 unmapped, no scope), or None
    (a unix socket, or a host that is not an address)."""
    host = _peer_host(peer)
    if host is None:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def peer_name(peer) -> str:
    """The peer as log lines name it: its IP address, ``local`` for a unix socket."""
    if _peer_host(peer) is None:
        return "local"
    return peer_ip(peer) or "unknown"


# -- trace headers (RFC 5321 §4.4, RFC 3848, RFC 6531 §3.7.3) --------------------------------

def _peer_text(peer) -> str:
    """TCP-info of the Received: "from" clause: ``[192.0.2.1]`` / ``[IPv6:2001:db8::1]``."""
    if _peer_host(peer) is None:
        return "local socket"  # AF_UNIX: peername is "" (or None)
    ip = peer_ip(peer)
    if ip is None:
        return "unknown"
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


def with_protocol(tls: bool, auth: bool, utf8: bool, *, lmtp: bool = False) -> str:
    """The ``with`` keyword of Received:: RFC 3848 ESMTP/ESMTPA/ESMTPS/ESMTPSA and
    LMTP/LMTPA/LMTPS/LMTPSA, RFC 6531 §3.7.3 UTF8SMTP.../UTF8LMTP... when SMTPUTF8 was used."""
    if utf8:
        base = "UTF8LMTP" if lmtp else "UTF8SMTP"
    else:
        base = "LMTP" if lmtp else "ESMTP"
    return base + ("S" if tls else "") + ("A" if auth else "")


#: ``Return-Path:`` of a final delivery (the LMTP gateway prepends it; the store does for submission)
return_path = return_path


def received_header(*, helo: Optional[str], peer, hostname: str, queue_id: str, protocol: str,
                    date: Optional[float] = None) -> bytes:
    """One ``Received:`` field, CRLF-terminated, naming the LHLO/EHLO name, the peer address,
    this host, ``protocol`` (:func:`with_protocol`) and the queue id.

    There is deliberately no ``for <recipient>`` clause: one message goes to every recipient of
    the transaction (local copies share one blob, single-instance storage), so the trace must
    not name any one of them.  No reverse DNS either (it would block or add latency)."""
    stamp = email.utils.formatdate(date, localtime=True)
    return (f"Received: from {sanitized_hostname(helo)} ({_peer_text(peer)})\r\n"
            f"\tby {sanitized_hostname(hostname)} (Haven) with {protocol} id {queue_id};\r\n"
            f"\t{stamp}\r\n").encode("ascii")


# -- replies (RFC 5321 §4.2, RFC 2034, RFC 3463) ---------------------------------------------

#: replies both gateways give (their ``replies.py`` re-export them next to their own)
TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
TOO_BIG = "552 5.3.4 Message too big"
SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed maximum message size"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
BAD_SENDER = "553 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = "553 5.1.3 Bad recipient address syntax"
NO_VALID_RECIPIENTS = "503 5.5.1 Error: need RCPT command"
INTERNAL = "421 4.3.0 {0} Internal error, closing connection"



def rcpt_error(err: BaseException, address: str) -> str:
    """The reply to ``RCPT TO:<address>`` when :meth:`Delivery.add_recipient` raised ``err``.
    A store failure is always a 4xx, the client keeps the message and retries; only answers
    certain to stay the same on a retry (no such user, bad syntax, mailbox full, not permitted)
    are 5xx."""
    if isinstance(err, errors.NotFound):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    if isinstance(err, errors.InvalidInput):
        return f"553 5.1.3 <{address}>: Recipient address rejected: bad address syntax"
    if isinstance(err, errors.OverQuota):
        return f"552 5.2.2 <{address}>: Recipient address rejected: mailbox full"
    if isinstance(err, errors.PermissionDenied):
        return f"550 5.7.1 <{address}>: Recipient address rejected: delivery not permitted"
    return f"451 4.3.0 <{address}>: Temporary failure, try again later"


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
    """RFC 2034 §3: with ENHANCEDSTATUSCODES advertised, every 2xx/4xx/5xx reply after the
    greeting carries an enhanced code.  Adds the default one for the reply code when it is
    missing (aiosmtpd's own replies have none); leaves 220 (greeting), 3xx and coded replies
    alone."""
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


def multiline_reply(code: int, lines: Iterable[str]) -> list:
    """The lines of one multi-line reply (RFC 5321 §4.2.1): ``250-a``, ``250-b``, ``250 c``."""
    lines = list(lines)
    return [f"{code}-{line}" for line in lines[:-1]] + [f"{code} {lines[-1]}"]
