"""IMAP METADATA (RFC 5464): the grammar of GETMETADATA and SETMETADATA, entry names, and the
wire form of the answers.  Pure: bytes in, plain data out.

Entry names (§3.2): a path of ``/``-separated components that starts with ``/private/`` or
``/shared/``, has no empty component, no trailing ``/``, no ``*`` or ``%`` (the LIST wildcards)
and only printable ASCII; names compare without regard to case, so they are lower-cased here.
Anything else is BAD.
"""

from __future__ import annotations

import re
from typing import Optional

from . import response
from .reader import ParseError, Reader

_NAME = re.compile(r"/(private|shared)(/[\x21-\x7e]+)+")


def entry_name(raw: bytes, tag: Optional[str]) -> str:
    try:
        name = raw.decode("ascii").lower()
    except UnicodeDecodeError:
        raise ParseError("metadata entry names are ASCII", tag) from None
    if not _NAME.fullmatch(name) or "//" in name or name.endswith("/") or "*" in name or "%" in name:
        raise ParseError("invalid metadata entry name (RFC 5464 §3.2): %s" % name[:60], tag)
    return name


def _asked(raw: bytes, tag: Optional[str]) -> str:
    """An entry GETMETADATA asks for: a name, or ``/private`` or ``/shared`` as a whole (with
    DEPTH, every entry below it)."""
    if raw.lower() in (b"/private", b"/shared"):
        return raw.decode("ascii").lower()
    return entry_name(raw, tag)


def _entries(r: Reader) -> list:
    if r.peek() == 0x28:  # "("
        return r.paren_list(lambda rr: _asked(rr.astring(), rr.tag))
    return [_asked(r.astring(), r.tag)]


def parse_getmetadata(r: Reader, args: dict) -> None:
    """GETMETADATA [SP "(" option *(SP option) ")"] SP mailbox SP entries (RFC 5464 §4.2)."""
    args["maxsize"], args["depth"] = None, "0"
    r.sp()
    if r.peek() == 0x28:
        r.expect(b"(")
        while True:
            option = r.atom().upper()
            r.sp()
            if option == "MAXSIZE":
                args["maxsize"] = r.number()
            elif option == "DEPTH":
                depth = r.atom().lower()
                if depth not in ("0", "1", "infinity"):
                    raise r.error("DEPTH is 0, 1 or infinity")
                args["depth"] = depth
            else:
                raise r.error("unknown GETMETADATA option %s" % option[:20])
            if r.maybe(b")"):
                break
            r.sp()
        r.sp()
    args["mailbox"] = _mailbox_or_server(r)
    r.sp()
    args["entries"] = _entries(r)


def parse_setmetadata(r: Reader, args: dict) -> None:
    """SETMETADATA SP mailbox SP "(" entry SP value *(SP entry SP value) ")" (RFC 5464 §4.3);
    a value is an nstring or a literal8 (``~{n}``); NIL removes the entry."""
    r.sp()
    args["mailbox"] = _mailbox_or_server(r)
    r.sp()
    r.expect(b"(")
    values: dict = {}
    while True:
        name = entry_name(r.astring(), r.tag)
        r.sp()
        if r.peek() == 0x7E:  # "~": literal8 (RFC 3516), the value may hold any octet
            r.pos += 1
        values[name] = r.nstring()
        if r.maybe(b")"):
            break
        r.sp()
    args["values"] = values


def _mailbox_or_server(r: Reader) -> str:
    """A mailbox name, or "" for the server (§4.2: the empty string names the server)."""
    if r.data[r.pos:r.pos + 2] == b'""':
        r.pos += 2
        return ""
    return r.mailbox()


_ATOM = re.compile(r'[^(){ %*"\\\]\x00-\x1f\x7f]+')


def _entry(name: str) -> bytes:
    """An entry name as an astring: an atom where it can be one (as clients write them)."""
    return name.encode("ascii") if _ATOM.fullmatch(name) else response.string(name)


def metadata_response(mailbox: str, entries: list, utf8: bool = False) -> bytes:
    """``* METADATA "INBOX" (/private/comment "text" ...)`` (§4.4.1); ``utf8``: the session's
    mailbox names are UTF-8 (response.mailbox)."""
    name = b'""' if mailbox == "" else response.mailbox(mailbox, utf8)
    items = b" ".join(_entry(entry) + b" " + response.nstring(value) for entry, value in entries)
    return b"* METADATA %s (%s)\r\n" % (name, items)
