"""Header field values as the Sieve tests see them (shared by the interpreter, body and
vacation modules)."""
from __future__ import annotations

from email.header import decode_header, make_header
import re


def header_text(value) -> str:
    """compat32 hands back 8-bit header bytes as surrogate escapes: read UTF-8, else Latin-1."""
    if not isinstance(value, str):
        value = str(value)
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        raw = value.encode("ascii", "surrogateescape")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def unfold(value: str) -> str:
    return _FOLD.sub("", value)           # RFC 5322 §2.2.3


def decode_words(value: str) -> str:
    """RFC 2047 encoded-words decoded; an unknown charset or a broken word stays as is."""
    try:
        decoded = str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeError, AssertionError):
        decoded = value
    return decoded.strip()


def strip_brackets(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address
