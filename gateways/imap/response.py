"""Serialization of IMAP response data (RFC 3501 §7, §9): strings, flag lists, dates, ENVELOPE
and BODY/BODYSTRUCTURE from the store's cached JSON (:func:`store.mime.analyze` shapes).

Invariants:
* Output is bytes and always grammatical: a string is sent quoted only when it is short 7-bit
  text without CR, LF, NUL, or more than a few hundred octets; otherwise as a literal ``{n}``
  (RFC 3501 §4.3).  ``None`` is ``NIL``.
* ENVELOPE strings are sent raw (encoded-words undecoded), as RFC 3501 §7.4.2 wants.
* BODYSTRUCTURE carries the extension data (md5, disposition, language, location; multipart:
  parameters, disposition, language, location); BODY does not (§7.4.2).  Type, subtype and
  encoding are upper-cased like the RFC's examples; parameter values are sent as stored.

Deliberately not done: literal8, UTF8=ACCEPT quoted UTF-8.
"""

from __future__ import annotations

import time
from typing import Iterable, Optional

from . import utf7

NIL = b"NIL"
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
_QUOTE_MAX = 500
_SAFE = frozenset(range(0x20, 0x7F))


def to_bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    # surrogateescape gives back original bytes of text decoded that way; else UTF-8
    return str(value).encode("utf-8", "surrogateescape")


def string(value) -> bytes:
    """An IMAP ``string``: quoted when safe, else a literal."""
    raw = to_bytes(value)
    if len(raw) <= _QUOTE_MAX and _SAFE.issuperset(raw):
        if b'"' in raw or b"\\" in raw:
            raw = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + raw + b'"'
    return b"{%d}\r\n%s" % (len(raw), raw)


def nstring(value) -> bytes:
    return NIL if value is None else string(value)


def literal(raw: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(raw), raw)


def mailbox(name: str) -> bytes:
    """A store name as an IMAP mailbox (modified UTF-7, always quoted)."""
    return string(utf7.encode(name))


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags, key=_flag_order)).encode("utf-8", "replace") + b")"


_SYSTEM_ORDER = {"\\Answered": 0, "\\Flagged": 1, "\\Deleted": 2, "\\Seen": 3, "\\Draft": 4}


def _flag_order(flag: str):
    return (_SYSTEM_ORDER.get(flag, 5), flag)


def internaldate(ts: int) -> bytes:
    """RFC 3501 date-time, in UTC: "17-Jul-1996 02:44:25 +0000"."""
    t = time.gmtime(ts)
    return b'"%2d-%s-%04d %02d:%02d:%02d +0000"' % (t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
                                                   t.tm_hour, t.tm_min, t.tm_sec)


# -- ENVELOPE (RFC 3501 §7.4.2) ---------------------------------------------------------------
def _address_list(addrs) -> bytes:
    if not addrs:
        return NIL
    out = []
    for a in addrs:
        a = (list(a) + [None] * 4)[:4]
        out.append(b"(" + b" ".join(nstring(x) for x in a) + b")")
    return b"(" + b"".join(out) + b")"


def envelope(env: Optional[list]) -> bytes:
    if not env:
        env = [None] * 10
    env = (list(env) + [None] * 10)[:10]
    parts = [nstring(env[0]), nstring(env[1])]
    parts.extend(_address_list(a) for a in env[2:8])
    parts.append(nstring(env[8]))
    parts.append(nstring(env[9]))
    return b"(" + b" ".join(parts) + b")"


# -- BODY / BODYSTRUCTURE ---------------------------------------------------------------------
def _params(params) -> bytes:
    if not params:
        return NIL
    items = []
    for kv in params:
        if not kv or len(kv) < 2:
            continue
        items.append(string(str(kv[0]).upper()))
        items.append(string(kv[1] if kv[1] is not None else ""))
    return b"(" + b" ".join(items) + b")" if items else NIL


def _disposition(dsp) -> bytes:
    if not dsp:
        return NIL
    return b"(" + string(str(dsp[0]).upper()) + b" " + _params(dsp[1] if len(dsp) > 1 else None) + b")"


def _language(lang) -> bytes:
    if not lang:
        return NIL
    if isinstance(lang, str):
        return string(lang)
    if len(lang) == 1:
        return string(lang[0])
    return b"(" + b" ".join(string(x) for x in lang) + b")"


def body_structure(part: dict, extended: bool) -> bytes:
    """RFC 3501 §9 ``body``; ``extended`` adds the extension data (BODYSTRUCTURE)."""
    out: list = []
    _body(part or {}, extended, out, 0)
    return b"".join(out)


def _body(part: dict, ext: bool, out: list, depth: int) -> None:
    typ = (part.get("type") or "text").upper()
    sub = (part.get("subtype") or "plain").upper()
    out.append(b"(")
    children = part.get("parts")
    if typ == "MULTIPART" and depth < 100:
        if not children:
            # body-type-mpart needs at least one body
            children = [{"type": "text", "subtype": "plain", "params": [["charset", "us-ascii"]],
                         "encoding": "7BIT", "size": 0, "lines": 0}]
        for child in children:
            _body(child, ext, out, depth + 1)
        out.append(b" ")
        out.append(string(sub))
        if ext:
            out.append(b" %s %s %s %s" % (_params(part.get("params")), _disposition(part.get("disposition")),
                                          _language(part.get("language")), nstring(part.get("location"))))
        out.append(b")")
        return
    out.append(b"%s %s %s %s %s %s %d" % (
        string(typ), string(sub), _params(part.get("params")), nstring(part.get("id")),
        nstring(part.get("description")), string((part.get("encoding") or "7BIT").upper()),
        int(part.get("size") or 0)))
    message = part.get("message")
    if typ == "MESSAGE" and sub in ("RFC822", "GLOBAL") and depth < 100:
        # body-type-msg always carries envelope, body and lines, even for a broken message
        message = message or {"envelope": None, "structure": {"type": "text", "subtype": "plain"}}
        out.append(b" ")
        out.append(envelope(message.get("envelope")))
        out.append(b" ")
        _body(message.get("structure") or {}, ext, out, depth + 1)
        out.append(b" %d" % int(part.get("lines") or 0))
    elif typ == "TEXT":
        out.append(b" %d" % int(part.get("lines") or 0))
    if ext:
        out.append(b" %s %s %s %s" % (nstring(part.get("md5")), _disposition(part.get("disposition")),
                                      _language(part.get("language")), nstring(part.get("location"))))
    out.append(b")")
