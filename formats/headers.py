"""Header-section helpers for a message as submitted: pure, bytes in, bytes out.

The store completes what a submission lacks (RFC 6409 §8) and the relay's DSNs quote a header
section; the SMTP gateways put the same trace lines on top.  Nothing here does I/O.

* :func:`header_section`: the header section of a message (up to the blank line).
* :func:`missing_header_fields`: ``Date:`` / ``Message-ID:`` an MSA may add (RFC 6409 §8.2, §8.3).
* :func:`return_path`: the ``Return-Path:`` of a final delivery (RFC 5321 §4.4).
* :func:`header_senders`: the addresses in ``From:`` and ``Sender:`` (who the message claims
  wrote it).
* :func:`sanitized_hostname`: a host name as it may appear in a header.
* :func:`is_ascii`: text that needs no SMTPUTF8.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from typing import Optional

_FIELD_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.M)
_UNSAFE_HOST = re.compile(r"[^\x21-\x7e]|[()\\;]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sanitized_hostname(name: Optional[str]) -> str:
    """An LHLO/EHLO argument (or a configured hostname) as it may appear in a header: printable
    ASCII, no comment syntax, at most 255 octets."""
    return _UNSAFE_HOST.sub("?", name or "unknown")[:255] or "unknown"


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


def header_senders(message: bytes, limit: int = 50) -> list:
    """The addresses (lower-cased) of every ``From:`` and ``Sender:`` field, at most ``limit``
    of them; an address that does not parse comes back as it was written, so a check of it
    fails rather than passes.  Group syntax and display names are dropped."""
    fields, current = [], None
    for line in header_section(message).split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            continue
        name, colon, value = line.partition(b":")
        current = None
        if colon and name.strip().lower() in (b"from", b"sender"):
            current = [value]
            fields.append(current)
    out = []
    for parts in fields:
        value = b" ".join(parts).decode("utf-8", "replace")
        parsed = email.utils.getaddresses([value])
        addresses = [a for _, a in parsed if a]
        if not addresses and value.strip() and not value.strip().endswith(";"):
            addresses = [value.strip()]  # unparsable: checked (and refused) as it stands
        for address in addresses:
            out.append(address.strip().lower())
            if len(out) >= limit:
                return out
    return out


def return_path(mail_from: str) -> bytes:
    """``Return-Path:`` with the reverse-path (``<>`` for bounces), CRLF-terminated: for a final
    delivery only (RFC 5321 §4.4), never on relayed copies.  A UTF-8 address is kept as it is."""
    reverse_path = "" if mail_from in ("", "<>") else _CONTROL.sub("?", mail_from)
    return f"Return-Path: <{reverse_path}>\r\n".encode("utf-8", "surrogateescape")


def is_ascii(text: str) -> bool:
    try:
        text.encode("ascii")
    except UnicodeEncodeError:
        return False
    return True
