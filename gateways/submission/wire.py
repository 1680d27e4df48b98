"""Pure wire helpers of the submission gateway alone: bytes in, bytes or plain values out, no
I/O (fuzzable).  What it shares with LMTP (the DATA decoder, ``dot_stuff``, trace headers,
enhanced status codes, ``SIZE=``) is in :mod:`gateways.common.smtpwire`.

* :func:`missing_header_fields`: ``Date:`` / ``Message-ID:`` an MSA may add (RFC 6409 §8).
* :func:`header_section`: the header section of a message (also for DSNs).
* :func:`is_loopback`: the peer test behind ``allow_plaintext_auth = loopback``.
* :func:`is_ascii`: addresses that need SMTPUTF8.
"""

from __future__ import annotations

import email.utils
import ipaddress
import re
import secrets
from typing import Optional

from gateways.common.smtpwire import peer_ip, sanitized_hostname


def is_loopback(peer) -> bool:
    """127.0.0.0/8 and ::1 (and their IPv4-mapped forms)."""
    ip = peer_ip(peer)
    return ip is not None and ipaddress.ip_address(ip).is_loopback


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
        out += f"Message-ID: <{secrets.token_hex(12)}@{sanitized_hostname(hostname)}>\r\n".encode("ascii")
    return out


def is_ascii(text: str) -> bool:
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        return False
    return True
