"""Serialization of IMAP response data (RFC 3501 §7, §9): strings, flag lists, dates, ENVELOPE
and BODY/BODYSTRUCTURE from the store's cached JSON (:func:`formats.mime.analyze` shapes).

Invariants:
* Output is bytes and always grammatical: a string is sent quoted only when it is short 7-bit
  text without CR, LF, NUL, or more than a few hundred octets; otherwise as a literal ``{n}``
  (RFC 3501 §4.3).  ``None`` is ``NIL``.
* ENVELOPE strings are sent raw (encoded-words undecoded), as RFC 3501 §7.4.2 wants.
* BODYSTRUCTURE carries the extension data (md5, disposition, language, location; multipart:
  parameters, disposition, language, location); BODY does not (§7.4.2).  Type, subtype and
  encoding are upper-cased like the RFC's examples; parameter values are sent as stored
  (RFC 2231 continuations joined, a non-ASCII value as ``name*`` ``utf-8''%XX``), and to an
  IMAP4rev2 session with that value decoded (``decode_params``, RFC 9051 §7.5.2).

Deliberately not done: literal8, UTF8=ACCEPT quoted UTF-8.
"""

from __future__ import annotations

import time
from typing import Iterable, Optional
from urllib.parse import unquote_to_bytes

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
    if value.__class__ is str and len(value) <= _QUOTE_MAX and value.isascii() and value.isprintable():
        return _quoted(value).encode("ascii")  # the common case, without a bytes round trip
    raw = to_bytes(value)
    if len(raw) <= _QUOTE_MAX and _SAFE.issuperset(raw):
        if b'"' in raw or b"\\" in raw:
            raw = raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"')
        return b'"' + raw + b'"'
    return b"{%d}\r\n%s" % (len(raw), raw)


def _quoted(text: str) -> str:
    """``text`` (printable ASCII, at most _QUOTE_MAX) as an IMAP quoted string."""
    if '"' in text or "\\" in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text + '"'


def _nstring_text(value) -> str:
    """:func:`nstring` as text with one character per octet (decode Latin-1 to get the octets
    back): ENVELOPE is assembled as one ``str`` and encoded once, which is several times faster
    than joining bytes per field."""
    if value is None:
        return "NIL"
    # str.isprintable() on ASCII text is exactly _SAFE (0x20-0x7E)
    if value.__class__ is str and len(value) <= _QUOTE_MAX and value.isascii() and value.isprintable():
        return _quoted(value)
    return string(value).decode("latin-1")


def nstring(value) -> bytes:
    return NIL if value is None else string(value)


def literal(raw: bytes) -> bytes:
    return b"{%d}\r\n%s" % (len(raw), raw)


def mailbox(name: str, utf8: bool = False) -> bytes:
    """A store name as an IMAP mailbox (modified UTF-7, always quoted); with ``utf8`` (RFC 6855
    §3, UTF8=ACCEPT enabled) as UTF-8, quoted unless it holds a control character."""
    if not utf8 or name.isascii():
        return string(utf7.encode(name) if not utf8 else name)
    raw = name.encode("utf-8")
    if len(raw) <= _QUOTE_MAX and name.isprintable():
        return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(raw)


_FLAG_LISTS: dict = {}  # frozenset -> its rendering (a mailbox has a handful of flag sets)


def flag_list(flags: Iterable[str]) -> bytes:
    if flags.__class__ is frozenset:
        out = _FLAG_LISTS.get(flags)
        if out is None:
            if len(_FLAG_LISTS) >= 4096:
                _FLAG_LISTS.clear()
            out = _FLAG_LISTS[flags] = _flag_list(flags)
        return out
    return _flag_list(flags)


def _flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(sorted(flags, key=_flag_order)).encode("utf-8", "replace") + b")"


_SYSTEM_ORDER = {"\\Answered": 0, "\\Flagged": 1, "\\Deleted": 2, "\\Seen": 3, "\\Draft": 4, "\\Recent": 5}


def _flag_order(flag: str):
    return (_SYSTEM_ORDER.get(flag, 6), flag)


_DAYS: dict = {}  # day number -> b'"17-Jul-1996 ' (mail arrives a day at a time)


def internaldate(ts: int) -> bytes:
    """RFC 3501 date-time, in UTC: "17-Jul-1996 02:44:25 +0000"."""
    day, secs = divmod(ts, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        t = time.gmtime(day * 86400)
        prefix = b'"%2d-%s-%04d ' % (t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year)
        if len(_DAYS) >= 4096:
            _DAYS.clear()
        _DAYS[day] = prefix
    return prefix + b'%02d:%02d:%02d +0000"' % (secs // 3600, secs // 60 % 60, secs % 60)


# -- ENVELOPE (RFC 3501 §7.4.2) ---------------------------------------------------------------
_NO_ENVELOPE = [None] * 10


def _address_list(addrs) -> str:
    if not addrs:
        return "NIL"
    q = _nstring_text
    out = []
    for a in addrs:
        if a.__class__ is not list or len(a) != 4:
            a = (list(a) + [None] * 4)[:4]
        out.append("(%s %s %s %s)" % (q(a[0]), q(a[1]), q(a[2]), q(a[3])))
    return "(" + "".join(out) + ")"


def envelope(env: Optional[list]) -> bytes:
    """The ENVELOPE of the cached JSON list (date, subject, from, sender, reply-to, to, cc, bcc,
    in-reply-to, message-id); missing fields are NIL."""
    if not env:
        env = _NO_ENVELOPE
    elif env.__class__ is not list or len(env) != 10:
        env = (list(env) + [None] * 10)[:10]
    q, a = _nstring_text, _address_list
    return ("(%s %s %s %s %s %s %s %s %s %s)" % (
        q(env[0]), q(env[1]), a(env[2]), a(env[3]), a(env[4]), a(env[5]), a(env[6]), a(env[7]),
        q(env[8]), q(env[9]))).encode("latin-1")


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


def _decoded_params(params) -> bytes:
    """:func:`_params` with the values formats.mime keeps in RFC 2231 form (a non-ASCII value:
    ``name*`` ``utf-8''%XX``) as ``name`` and the text itself (RFC 9051 §7.5.2: servers SHOULD
    decode parameter-value character sets; an IMAP4rev2 string may be UTF-8)."""
    if not params:
        return NIL
    out = []
    for kv in params:
        if (kv and len(kv) >= 2 and isinstance(kv[0], str) and kv[0].endswith("*") and len(kv[0]) > 1
                and isinstance(kv[1], str) and kv[1][:7].lower() == "utf-8''"):
            try:
                kv = [kv[0][:-1], unquote_to_bytes(kv[1][7:]).decode("utf-8")]
            except UnicodeDecodeError:
                pass
        out.append(kv)
    return _params(out)


def _disposition(dsp, params=_params) -> bytes:
    if not dsp:
        return NIL
    return b"(" + string(str(dsp[0]).upper()) + b" " + params(dsp[1] if len(dsp) > 1 else None) + b")"


def _language(lang) -> bytes:
    if not lang:
        return NIL
    if isinstance(lang, str):
        return string(lang)
    if len(lang) == 1:
        return string(lang[0])
    return b"(" + b" ".join(string(x) for x in lang) + b")"


def body_structure(part: dict, extended: bool, decode_params: bool = False) -> bytes:
    """RFC 3501 §9 ``body``; ``extended`` adds the extension data (BODYSTRUCTURE);
    ``decode_params`` (IMAP4rev2) sends RFC 2231-encoded parameter values decoded."""
    out: list = []
    _body(part or {}, extended, out, 0, _decoded_params if decode_params else _params)
    return b"".join(out)


def _body(part: dict, ext: bool, out: list, depth: int, params=_params) -> None:
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
            _body(child, ext, out, depth + 1, params)
        out.append(b" ")
        out.append(string(sub))
        if ext:
            out.append(b" %s %s %s %s" % (params(part.get("params")), _disposition(part.get("disposition"), params),
                                          _language(part.get("language")), nstring(part.get("location"))))
        out.append(b")")
        return
    out.append(b"%s %s %s %s %s %s %d" % (
        string(typ), string(sub), params(part.get("params")), nstring(part.get("id")),
        nstring(part.get("description")), string((part.get("encoding") or "7BIT").upper()),
        int(part.get("size") or 0)))
    message = part.get("message")
    if typ == "MESSAGE" and sub in ("RFC822", "GLOBAL") and depth < 100:
        # body-type-msg always carries envelope, body and lines, even for a broken message
        message = message or {"envelope": None, "structure": {"type": "text", "subtype": "plain"}}
        out.append(b" ")
        out.append(envelope(message.get("envelope")))
        out.append(b" ")
        _body(message.get("structure") or {}, ext, out, depth + 1, params)
        out.append(b" %d" % int(part.get("lines") or 0))
    elif typ == "TEXT":
        out.append(b" %d" % int(part.get("lines") or 0))
    if ext:
        out.append(b" %s %s %s %s" % (nstring(part.get("md5")), _disposition(part.get("disposition"), params),
                                      _language(part.get("language")), nstring(part.get("location"))))
    out.append(b")")
