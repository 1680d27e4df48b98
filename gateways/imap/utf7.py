"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3) <-> the store's Unicode names.

Invariants: ``decode(encode(s)) == s`` for every str; ``decode`` accepts only canonical input
(no ``&...-`` run encoding printable ASCII, no unterminated shift, base64 without padding) and
raises :class:`ValueError` otherwise, so the parser can answer ``BAD``.

Deliberately not done: UTF8=ACCEPT (RFC 6855) raw UTF-8 names.
"""

from __future__ import annotations

import base64
import binascii


def _b64(chunk: str) -> str:
    raw = chunk.encode("utf-16-be")
    return base64.b64encode(raw, b"+,").decode("ascii").rstrip("=")


def encode(name: str) -> str:
    """Unicode -> modified UTF-7 (an ASCII str)."""
    out = []
    pending = []
    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + _b64("".join(pending)) + "-")
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append("&" + _b64("".join(pending)) + "-")
    return "".join(out)


def decode(name: str) -> str:
    """Modified UTF-7 -> Unicode; ValueError on malformed input."""
    out = []
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ord(ch) > 0x7E or ord(ch) < 0x20:
            raise ValueError("mailbox name is not 7-bit modified UTF-7")
        if ch != "&":
            out.append(ch)
            i += 1
            continue
        end = name.find("-", i + 1)
        if end < 0:
            raise ValueError("unterminated modified UTF-7 shift sequence")
        chunk = name[i + 1:end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if any(c not in _B64_ALPHABET for c in chunk):
            raise ValueError("invalid modified UTF-7 base64")
        padded = chunk + "=" * (-len(chunk) % 4)
        try:
            raw = base64.b64decode(padded, b"+,", validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("invalid modified UTF-7 base64") from None
        if len(raw) % 2:
            raise ValueError("invalid modified UTF-7 (odd UTF-16 length)")
        try:
            text = raw.decode("utf-16-be")
        except UnicodeDecodeError:
            raise ValueError("invalid UTF-16 in modified UTF-7") from None
        if any(0x20 <= ord(c) <= 0x7E for c in text):
            raise ValueError("modified UTF-7 encodes printable ASCII")
        out.append(text)
    return "".join(out)


_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,")
