"""MIME analysis for the store: raw RFC 822 bytes in, plain JSON-able data out.

Used at delivery to cache ENVELOPE and body structure (IMAP FETCH never opens the blob
for them), by the IMAP gateway to serve BODY[section] by slicing the raw bytes at the
cached offsets, and by SEARCH BODY/TEXT through decoded_text().

Invariants
- Pure: bytes in; lists, dicts, str, int, None out. No I/O, SQL or reactor: CPU pool.
- analyze() never raises for any bytes. A last-resort guard catches the impossible; the
  tests fuzz _analyze(), which has no guard, so bugs are not hidden by it.
- Every offset indexes the ORIGINAL raw bytes, inside message/rfc822 too. For each PART
  header_start <= body_start <= end and size == end - body_start; children lie inside
  their parent's body, in order, never overlapping.
- Slicing for IMAP (RFC 3501 §6.4.5): HEADER = raw[:header_end], TEXT = raw[header_end:];
  section n: BODY[n] = raw[body_start:end], BODY[n.MIME] = raw[header_start:body_start];
  n.HEADER / n.TEXT of a message/rfc822 part are the header / body of
  part["message"]["structure"] (whose header_start == the part's body_start).
- Linear time: boundaries are found with bytes.find and each nesting level scans only its
  own bytes. Nesting stops at MAX_DEPTH and entities at about MAX_PARTS; past a cap the
  rest is one opaque part. Header sections are read up to _MAX_HEADER bytes and address
  lists up to _MAX_ADDR_BYTES per message, so hostile input cannot exhaust CPU or memory.
- Line endings may be CRLF, bare LF or mixed (RFC 2046 §5.1.1 delimiters either way); a
  bare CR is ordinary data. A header section ends at the first empty line only (as in
  Dovecot): a line without a colon is skipped, not taken as the start of the body.
- Header strings are unfolded raw values, UTF-8 or else Latin-1 decoded; encoded-words
  stay encoded (RFC 3501 §7.4.2); decode_header_value() decodes them (RFC 2047).
- Parameters (RFC 2045 §5.1) are unquoted; RFC 2231 continuations are joined, and a value
  that is non-ASCII after decoding stays in name*=utf-8''%XX form so it is IMAP-safe.

Deliberately not done: validating dates or addresses; uuencode; TNEF; decoding of
message/external-body or message/delivery-status (they are leaves, as in IMAP).
"""
from __future__ import annotations

import binascii
import html
import re
from urllib.parse import quote_from_bytes, unquote_to_bytes

__all__ = ["analyze", "section_offsets", "header_fields", "decoded_text", "text_extent",
           "find_text", "decode_header_value", "preview", "preview_extent", "transfer_decode",
           "UnknownEncoding", "address_forms", "part_text", "html_to_text", "preview_part", "MAX_DEPTH",
           "MAX_PARTS"]

MAX_DEPTH = 50      # entity nesting (multipart children, message/rfc822 bodies)
MAX_PARTS = 5000    # entities per message
_MAX_HEADER = 256 * 1024     # header bytes looked at per section (Postfix keeps 100 KiB)
_MAX_ADDR_BYTES = 256 * 1024  # address-list bytes parsed per message, all envelopes together
_MAX_PARAMS = 100            # parameters per Content-Type / Content-Disposition

_ENV_FIELDS = frozenset(("date", "subject", "from", "sender", "reply-to", "to", "cc",
                         "bcc", "in-reply-to", "message-id"))
_MIME_FIELDS = frozenset(("content-type", "content-transfer-encoding", "content-id",
                          "content-description", "content-md5", "content-disposition",
                          "content-language", "content-location"))
_ALL_FIELDS = _ENV_FIELDS | _MIME_FIELDS

# RFC 5322 §3.6.8 field name (printable US-ASCII but ':'); obs-syntax WSP before ':'.
_NAME_RE = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"            # RFC 2045 §5.1 token
_CTYPE_RE = re.compile(r"\s*(" + _TOKEN + r")\s*/\s*(" + _TOKEN + r")")
_DTYPE_RE = re.compile(r"\s*(" + _TOKEN + r")(?=[\s;]|$)")
_PARAM_RE = re.compile(r'[;\s]*([^=;\s]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"?|([^;]*)))?', re.S)
_QUOTED_PAIR = re.compile(r"\\(.)", re.S)
_P2231_RE = re.compile(r"([^*]+)\*(?:(\d{1,3})(\*)?)?")  # RFC 2231 §3/§4: name*, name*N, name*N*
_ATTR_SAFE = "!#$&+-.^_`|~"                              # RFC 2231 attribute-char, unescaped


# -- header sections ---------------------------------------------------------------------

def _dec(b: bytes) -> str:
    """Header bytes to str: UTF-8 (RFC 6532), else Latin-1 for 8-bit legacy mail."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def _header_end(raw: bytes, start: int, stop: int) -> int:
    """Offset just past the empty line ending the header section in raw[start:stop]."""
    if raw.startswith(b"\r\n", start, stop):
        return start + 2
    if raw.startswith(b"\n", start, stop):
        return start + 1
    i = raw.find(b"\n\r\n", start, stop)
    j = raw.find(b"\n\n", start, stop if i < 0 else i + 2)
    if j >= 0:
        return j + 2
    return i + 3 if i >= 0 else stop


def _field_spans(raw: bytes, start: int, stop: int) -> list:
    """[name, field_start, field_end] per header field in raw[start:stop], in order.

    A field runs from its name to the end of its last continuation line. Continuation
    lines with no field before them and lines without a valid "name:" are dropped.
    """
    out: list = []
    cur = None
    pos = start
    while pos < stop:
        nl = raw.find(b"\n", pos, stop)
        eol = stop if nl < 0 else nl + 1
        c = raw[pos]
        if c == 0x20 or c == 0x09:                      # RFC 5322 §2.2.3 folding
            if cur is not None:
                cur[2] = eol
        elif c == 0x0A or (c == 0x0D and eol == pos + 2 and nl >= 0):
            break                                       # the empty line
        else:
            m = _NAME_RE.match(raw, pos, eol)
            cur = [m.group(1).decode("ascii"), pos, eol] if m else None
            if cur is not None:
                out.append(cur)
        pos = eol
    return out


def _field_value(raw: bytes, start: int, end: int) -> str:
    v = raw[raw.find(b":", start, end) + 1:end]
    # Unfold: every line break inside a field precedes WSP, so dropping the breaks
    # leaves the WSP (RFC 5322 §2.2.3); the last one ends the field.
    v = v.replace(b"\r\n", b"").replace(b"\n", b"").strip(b" \t\r")
    return v.decode("ascii") if v.isascii() else _dec(v)


def _header_map(raw: bytes, start: int, stop: int, wanted: frozenset) -> dict:
    """Lower-case name -> unfolded value of the FIRST occurrence of each wanted field."""
    h: dict = {}
    for name, s, e in _field_spans(raw, start, min(stop, start + _MAX_HEADER)):
        k = name.lower()
        if k in wanted and k not in h:
            h[k] = _field_value(raw, s, e)
    return h


def header_fields(header: bytes) -> list[tuple[str, bytes]]:
    """(name as written, raw field bytes incl. name, folding and line end), in order."""
    try:
        return [(n, header[s:e]) for n, s, e in _field_spans(header, 0, len(header))]
    except Exception:
        return []


def header_value(raw: bytes, name: str):
    """The unfolded value of the first field ``name`` (any case) in the header section at the
    start of ``raw`` (a whole message, or its header), as ENVELOPE carries it; None if absent."""
    key = name.lower()
    return _header_map(raw, 0, len(raw), frozenset((key,))).get(key)


# -- parameters (RFC 2045 §5.1, RFC 2231) ---------------------------------------------------

def _parse_params(s: str) -> list:
    raw_params = []
    pos, n = 0, len(s)
    while pos < n and len(raw_params) < _MAX_PARAMS:
        m = _PARAM_RE.match(s, pos)
        if not m or m.end() == pos:
            j = s.find(";", pos + 1)
            if j < 0:
                break
            pos = j
            continue
        pos = m.end()
        name, quoted, bare = m.group(1).lower(), m.group(2), m.group(3)
        if quoted is not None:
            raw_params.append((name, _QUOTED_PAIR.sub(r"\1", quoted)))
            j = s.find(";", pos)                        # junk after the closing quote
            pos = n if j < 0 else j
        elif bare is not None:
            raw_params.append((name, bare.strip()))
    return _merge_2231(raw_params) if any("*" in p[0] for p in raw_params) else \
        [[k, v] for k, v in raw_params]


def _merge_2231(raw_params: list) -> list:
    """Join RFC 2231 continuations into one parameter where the first one stood.

    An ASCII result becomes name=value; a non-ASCII one stays in RFC 2231 form,
    name*=utf-8''%XX.., so it can go on the IMAP wire as a plain quoted string.
    """
    out: list = []
    groups: dict = {}
    for name, value in raw_params:
        m = _P2231_RE.fullmatch(name)
        if not m:
            out.append([name, value])
            continue
        base = m.group(1)
        g = groups.get(base)
        if g is None:
            g = groups[base] = []
            out.append([base, g])
        if len(g) < 200:
            g.append((int(m.group(2) or 0), m.group(2) is None or m.group(3) == "*", value))
    for item in out:
        if isinstance(item[1], list):
            item[0], item[1] = _join_2231(item[0], item[1])
    return out


def _join_2231(base: str, segs: list) -> tuple[str, str]:
    segs.sort(key=lambda seg: seg[0])
    if not any(enc for _, enc, _ in segs):
        return base, "".join(v for _, _, v in segs)
    charset, data = "", bytearray()
    for i, (_, enc, v) in enumerate(segs):
        if enc:
            if i == 0 and v.count("'") >= 2:
                charset, _lang, v = v.split("'", 2)
            data += unquote_to_bytes(v)
        else:
            data += v.encode("utf-8")
    text = _to_text(bytes(data), charset)
    if text.isascii():
        return base, text
    return base + "*", "utf-8''" + quote_from_bytes(text.encode("utf-8"), safe=_ATTR_SAFE)


def _param(params: list, name: str):
    for k, v in params:
        if k == name:
            return v
    return None


def _content_type(value, digest: bool):
    if value is None:                                   # RFC 2045 §5.2, RFC 2046 §5.1.5
        return ("message", "rfc822", []) if digest else ("text", "plain", [["charset", "us-ascii"]])
    m = _CTYPE_RE.match(value)
    if m:
        return m.group(1).lower(), m.group(2).lower(), _parse_params(value[m.end():])
    i = value.find(";")                                 # malformed: text/plain (RFC 2045 §5.2)
    params = _parse_params(value[i + 1:]) if i >= 0 else []
    if _param(params, "charset") is None:
        params.append(["charset", "us-ascii"])
    return "text", "plain", params


# -- entities ------------------------------------------------------------------------------

class _Ctx:
    __slots__ = ("raw", "left", "addr_left")

    def __init__(self, raw: bytes):
        self.raw = raw
        self.left = MAX_PARTS
        self.addr_left = _MAX_ADDR_BYTES


def _lines(raw: bytes, start: int, end: int) -> int:
    n = raw.count(b"\n", start, end)
    return n + 1 if end > start and raw[end - 1] != 0x0A else n


def _leaf(raw: bytes, start: int, end: int) -> dict:
    """An unlabelled text/plain part covering raw[start:end] (no MIME header)."""
    return {"type": "text", "subtype": "plain", "params": [["charset", "us-ascii"]],
            "id": None, "description": None, "encoding": "7BIT",
            "header_start": start, "body_start": start, "end": end, "size": end - start,
            "lines": _lines(raw, start, end), "md5": None, "disposition": None,
            "language": None, "location": None, "parts": None, "message": None}


def _entity(ctx: _Ctx, hs: int, end: int, depth: int, digest: bool) -> dict:
    ctx.left -= 1
    bs = _header_end(ctx.raw, hs, end)
    return _part(ctx, _header_map(ctx.raw, hs, bs, _MIME_FIELDS), hs, bs, end, depth, digest)


def _part(ctx: _Ctx, h: dict, hs: int, bs: int, end: int, depth: int, digest: bool) -> dict:
    raw = ctx.raw
    typ, sub, params = _content_type(h.get("content-type"), digest)
    disposition = None
    cd = h.get("content-disposition")
    m = _DTYPE_RE.match(cd) if cd else None
    if m:
        disposition = [m.group(1).lower(), _parse_params(cd[m.end():])]
    lang = [x.strip() for x in (h.get("content-language") or "").split(",") if x.strip()]
    is_msg = typ == "message" and sub in ("rfc822", "global")
    part = {"type": typ, "subtype": sub, "params": params,
            "id": h.get("content-id"), "description": h.get("content-description"),
            "encoding": (h.get("content-transfer-encoding") or "").upper() or "7BIT",
            "header_start": hs, "body_start": bs, "end": end, "size": end - bs,
            "lines": _lines(raw, bs, end) if typ == "text" or is_msg else None,
            "md5": h.get("content-md5"), "disposition": disposition, "language": lang or None,
            "location": h.get("content-location"), "parts": None, "message": None}
    deeper = depth < MAX_DEPTH and ctx.left > 0
    if typ == "multipart":
        children = []
        boundary = _param(params, "boundary") if deeper else None
        if boundary:
            d = sub == "digest"
            children = [_entity(ctx, ps, pe, depth + 1, d)
                        for ps, pe in _split(raw, bs, end, boundary.encode("utf-8"), ctx.left)]
        # RFC 3501 body-type-mpart needs at least one part: cover the body with one.
        part["parts"] = children or [_leaf(raw, bs, end)]
    elif is_msg:
        if deeper:
            ctx.left -= 1
            ibs = _header_end(raw, bs, end)
            ih = _header_map(raw, bs, ibs, _ALL_FIELDS)
            part["message"] = {"envelope": _envelope(ih, ctx),
                               "structure": _part(ctx, ih, bs, ibs, end, depth + 1, False)}
        else:
            part["message"] = {"envelope": [None] * 10, "structure": _leaf(raw, bs, end)}
    return part


def _split(raw: bytes, bs: int, end: int, boundary: bytes, limit: int) -> list:
    """(start, end) of each body part of the multipart body raw[bs:end] (RFC 2046 §5.1.1).

    The line break before a delimiter belongs to the delimiter. Preamble and epilogue
    are dropped. Without a close delimiter the last part runs to `end`; so does the
    part that reaches `limit`.
    """
    delim = b"--" + boundary
    nd = b"\n" + delim
    spans: list = []
    start = -1
    line = bs if raw.startswith(delim, bs, end) else raw.find(nd, bs, end) + 1 or -1
    while line >= 0:
        a = line + len(delim)
        nl = raw.find(b"\n", a, end)
        eol = end if nl < 0 else nl + 1
        close = raw.startswith(b"--", a, eol)
        if close or not raw[a:eol].strip(b" \t\r\n"):   # else a longer boundary: not ours
            if start >= 0:
                pe = line - 1 if line > start else start
                if pe > start and raw[pe - 1] == 0x0D:
                    pe -= 1
                spans.append((start, pe))
            if close or nl < 0:
                return spans
            start = eol
            if len(spans) + 1 >= limit:
                spans.append((start, end))
                return spans
            a = eol - 1
        line = raw.find(nd, a, end) + 1 or -1
    if start >= 0:
        spans.append((start, end))
    return spans


# -- envelope (RFC 3501 §7.4.2) -----------------------------------------------------------

_ADDR_TOKEN = re.compile(r'[ \t\r\n]+|\[[^\]]*\]?|[<>,:;@.]|[^ \t\r\n"()<>,:;@.\[\]]+|.', re.S)
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"?', re.S)           # may be unterminated


def _addr_tokens(s: str) -> list:
    """(kind, text): w(hitespace), q(uoted, unescaped), c(omment), s(pecial), a(tom)."""
    toks = []
    pos, n = 0, len(s)
    while pos < n:
        c = s[pos]
        if c == "(":                                    # comments nest (RFC 5322 §3.2.2)
            depth, j = 0, pos
            while j < n:
                ch = s[j]
                j += 1
                if ch == "\\":
                    j += 1
                elif ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                    if depth == 0:
                        break
            toks.append(("c", s[pos + 1:j - 1] if depth == 0 else s[pos + 1:]))
            pos = j
            continue
        if c == '"':
            m = _QUOTED.match(s, pos)
            toks.append(("q", _QUOTED_PAIR.sub(r"\1", m.group(1))))
            pos = m.end()
            continue
        m = _ADDR_TOKEN.match(s, pos)
        t = m.group(0)
        pos = m.end()
        if c in " \t\r\n":
            toks.append(("w", " "))
        elif c in "<>,:;@.":
            toks.append(("s", t))
        else:
            toks.append(("a", t))
    return toks


def _join(toks: list, quoted_raw: bool) -> str:
    out = []
    for kind, t in toks:
        if kind == "c":
            out.append(" ")
        elif kind == "q" and quoted_raw:
            out.append('"' + t.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            out.append(t)
    return " ".join("".join(out).split())


def _mailbox(toks: list):
    """[name, adl, mailbox, host] from one mailbox's tokens, or None if empty."""
    if "<" in [t for k, t in toks if k == "s"]:
        i = next(i for i, (k, t) in enumerate(toks) if k == "s" and t == "<")
        name = _join(toks[:i], False)
        inner = []
        for k, t in toks[i + 1:]:
            if k == "s" and t == ">":
                break
            inner.append((k, t))
        adl = None
        spec = [x for x in inner if x[0] not in "wc"]
        if spec and spec[0] == ("s", "@") and ("s", ":") in spec:  # obs-route
            j = spec.index(("s", ":"))
            adl, spec = _join(spec[:j], True).replace(" ", ""), spec[j + 1:]
    else:
        comments = [t for k, t in toks if k == "c" and t.strip()]
        name = " ".join(comments[-1].split()) if comments else ""
        spec = [x for x in toks if x[0] != "c"]
        adl = None
        if not _join(spec, True):
            return None
    at = max((i for i, x in enumerate(spec) if x == ("s", "@")), default=-1)
    if at < 0:
        mailbox, host = _join(spec, True), ""
    else:
        mailbox, host = _join(spec[:at], True), _join(spec[at + 1:], True).replace(" ", "")
    return [name or None, adl, mailbox, host]


def _addresses(value):
    """RFC 5322 address-list -> RFC 3501 address structures, groups as marker pairs."""
    if not value:
        return None
    out: list = []
    cur: list = []
    group = angle = False

    def flush():
        if cur:
            a = _mailbox(cur)
            if a is not None:
                out.append(a)
            cur.clear()

    for tok in _addr_tokens(value):
        kind, t = tok
        if kind == "s" and not angle:
            if t == "," or (t == ";" and not group):    # ';' between mailboxes: Outlook
                flush()
                continue
            if t == ":" and not group:                  # RFC 3501: [NIL NIL name NIL]
                name = _join(cur, False)
                cur.clear()
                out.append([None, None, name, None])
                group = True
                continue
            if t == ";":                                # group end: [NIL NIL NIL NIL]
                flush()
                out.append([None, None, None, None])
                group = False
                continue
            if t == "<":
                angle = True
        elif kind == "s" and t == ">":
            angle = False
        cur.append(tok)
    flush()
    if group:
        out.append([None, None, None, None])
    return out or None


def address_forms(value: str) -> list:
    """The addresses of an address-list header value (as in the message, encoded-words and
    all), each as ``mailbox@host`` with comments, folding and whitespace removed, and the
    display names (RFC 2047-decoded): what IMAP SEARCH FROM/TO/CC/BCC match besides the raw
    text, so ``<user (c)@ (c) domain.org>`` is found as ``user@domain.org``."""
    out = []
    for name, _adl, mailbox, host in _addresses(value[:_MAX_ADDR_SEARCH]) or ():
        if mailbox is not None and host is not None:
            out.append(mailbox + "@" + host if host else mailbox)
        if name:
            out.append(decode_header_value(name))
    return out


_MAX_ADDR_SEARCH = 64 * 1024  # of one header value; longer ones are matched on the raw text only


def _copy(addresses):
    return [list(a) for a in addresses] if addresses else None


def _envelope(h: dict, ctx: _Ctx) -> list:
    def addrs(name):
        v = h.get(name)
        if v:
            v = v[:max(ctx.addr_left, 0)]
            ctx.addr_left -= len(v)
        return _addresses(v)

    frm = addrs("from")
    # RFC 3501 §7.4.2: absent or empty Sender/Reply-To default to From.
    return [h.get("date"), h.get("subject"), frm,
            addrs("sender") or _copy(frm), addrs("reply-to") or _copy(frm),
            addrs("to"), addrs("cc"), addrs("bcc"),
            h.get("in-reply-to"), h.get("message-id")]


# -- public entry points -------------------------------------------------------------------

def _analyze(raw: bytes) -> dict:
    ctx = _Ctx(raw)
    he = _header_end(raw, 0, len(raw))
    h = _header_map(raw, 0, he, _ALL_FIELDS)
    ctx.left -= 1
    envelope = _envelope(h, ctx)                        # before inner ones: budget
    return {"envelope": envelope, "structure": _part(ctx, h, 0, he, len(raw), 0, False),
            "header_end": he}


def analyze(raw: bytes) -> dict:
    """{"envelope": ENV, "structure": PART, "header_end": int}; never raises for bytes."""
    if not isinstance(raw, bytes):
        raw = bytes(raw)
    try:
        return _analyze(raw)
    except Exception:  # pragma: no cover - last resort, the fuzz tests run _analyze bare
        he = _header_end(raw, 0, len(raw))
        leaf = _leaf(raw, he, len(raw))
        leaf["header_start"] = 0
        return {"envelope": [None] * 10, "structure": leaf, "header_end": he}


def section_offsets(structure: dict, part_path: list[int]) -> dict | None:
    """The PART named by an IMAP section number (RFC 3501 §6.4.5), or None.

    [] is the whole message. Part 1 of a non-multipart is its body; a number after a
    message/rfc822 part descends into the encapsulated message.
    """
    try:
        msg, cur = structure, structure
        for i, n in enumerate(part_path):
            if i:                                       # descend from `cur`
                if cur.get("parts"):
                    msg = cur
                elif cur.get("message"):
                    msg = cur["message"]["structure"]
                else:
                    return None
            if msg.get("parts"):
                if not 1 <= n <= len(msg["parts"]):
                    return None
                cur = msg["parts"][n - 1]
            elif n == 1:
                cur = msg
            else:
                return None
        return cur
    except (AttributeError, KeyError, TypeError, IndexError):
        return None


_EW_RE = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")
_B64_JUNK = bytes(c for c in range(256) if not (48 <= c <= 57 or 65 <= c <= 90
                                                  or 97 <= c <= 122 or c in b"+/"))


def _b64(data: bytes) -> bytes:
    data = data.translate(None, _B64_JUNK)              # whitespace, '=', garbage
    data = data[:len(data) - 1] if len(data) % 4 == 1 else data
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _to_text(data: bytes, charset) -> str:
    cs = (charset or "").strip().lower()
    if cs and cs not in ("us-ascii", "ascii", "utf-8", "utf8"):
        try:
            return data.decode(cs, "replace")
        except Exception:                               # unknown or not a text codec
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def searchable_fields(header: bytes) -> dict:
    """lower-case field name -> [each value unfolded, RFC 2047-decoded, casefolded]: the header
    as IMAP SEARCH's header keys read it (and the store's text index stores it)."""
    fields: dict = {}
    for fname, raw in header_fields(header):
        value = raw.split(b":", 1)[1] if b":" in raw else b""
        value = value.replace(b"\r\n", b"").replace(b"\n", b"").strip()
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        fields.setdefault(fname.lower(), []).append(decode_header_value(text).casefold())
    return fields


def decode_header_value(value: str) -> str:
    """RFC 2047 encoded-words decoded; whitespace between adjacent ones dropped (§6.2),
    adjacent words in one charset joined as bytes first (split multi-byte characters)."""
    try:
        if "=?" not in value:
            return value
        out: list = []
        buf, buf_cs, pos = bytearray(), None, 0

        def flush():
            nonlocal buf_cs
            if buf_cs is not None:
                out.append(_to_text(bytes(buf), buf_cs))
                buf.clear()
                buf_cs = None

        for m in _EW_RE.finditer(value):
            gap = value[pos:m.start()]
            if gap and (buf_cs is None or gap.strip(" \t\r\n")):
                flush()
                out.append(gap)
            cs = m.group(1).split("*", 1)[0].lower()    # RFC 2231 §5 language suffix
            text = m.group(3).encode("utf-8", "replace")
            try:
                data = _b64(text) if m.group(2) in "bB" else binascii.a2b_qp(text, header=True)
            except (binascii.Error, ValueError):
                flush()
                out.append(m.group(0))
                pos = m.end()
                continue
            if buf_cs is not None and cs != buf_cs:
                flush()
            buf_cs = cs
            buf += data
            pos = m.end()
        flush()
        out.append(value[pos:])
        return "".join(out)
    except Exception:
        return value


_TAG_RE = re.compile(r"<[^<>]*>")


def _body_text(raw: bytes, part: dict, budget: int) -> str:
    data = raw[part["body_start"]:min(part["end"], part["body_start"] + 3 * budget + 4)]
    enc = (part.get("encoding") or "").lower()
    if enc == "base64":
        data = _b64(data)
    elif enc == "quoted-printable":
        data = binascii.a2b_qp(data)
    text = _to_text(data[:budget], _param(part.get("params") or [], "charset"))
    if part.get("subtype") == "html":
        text = html.unescape(_TAG_RE.sub(" ", text))
    return text


def decoded_text(raw: bytes, structure: dict, max_bytes: int = 4_000_000) -> str:
    """Searchable text: every text/* body transfer- and charset-decoded (HTML tags
    stripped), plus decoded headers of encapsulated messages; at most ~max_bytes."""
    out: list = []
    left = max_bytes
    try:
        stack = [structure]
        while stack and left > 0:
            part = stack.pop()
            if part.get("parts"):
                stack.extend(reversed(part["parts"]))
            elif part.get("message"):
                inner = part["message"]["structure"]
                for name, s, e in _field_spans(raw, inner["header_start"], inner["body_start"]):
                    if left <= 0:
                        break
                    line = name + ": " + decode_header_value(_field_value(raw, s, e))
                    out.append(line[:left])
                    left -= len(line)
                stack.append(inner)
            elif part.get("type") == "text":
                text = _body_text(raw, part, left)
                out.append(text[:left])
                left -= len(text)
    except Exception:
        pass
    return "\n".join(out)[:max_bytes]


# -- searching the text without decoding it (SEARCH BODY/TEXT) -----------------------------

_DECODED_MAX = 4_000_000        # decoded_text()'s default max_bytes
_PLAIN_CHARSETS = frozenset(("", "us-ascii", "ascii", "utf-8", "utf8", "iso-8859-1",
                             "iso-8859-15", "windows-1252"))    # ASCII bytes decode to themselves


def text_extent(structure: dict) -> int | None:
    """How many leading octets of the message decoded_text() reads with this structure
    (None: all of them). A caller may hand decoded_text() and find_text() just that prefix,
    e.g. to skip inflating attachments stored after the text."""
    try:
        end = 0
        stack = [structure]
        while stack:                                    # the walk of decoded_text()
            part = stack.pop()
            if part.get("parts"):
                stack.extend(part["parts"])
            elif part.get("message"):
                inner = part["message"]["structure"]
                end = max(end, int(inner["body_start"]))
                stack.append(inner)
            elif part.get("type") == "text":
                end = max(end, int(part["end"]))
        return end
    except Exception:
        return None


def find_text(raw: bytes, structure: dict, needles) -> frozenset:
    """The needles (casefolded str) found in decoded_text(raw, structure).casefold().

    The same answer as decoding; but where every text part is ASCII that transfer and
    charset decoding leave as it is, the needles are looked for in the raw bytes, which is
    several times faster (most mail is like that, and most searched messages do not match).
    """
    needles = frozenset(needles)
    if not needles:
        return needles
    try:
        found = _find_plain(raw, structure, needles)
    except Exception:
        found = None
    if found is None:
        text = decoded_text(raw, structure).casefold()
        found = frozenset(n for n in needles if n in text)
    return found


def _find_plain(raw: bytes, structure: dict, needles: frozenset) -> frozenset | None:
    """find_text() on the raw bytes, or None when only decoding can tell.

    Exact because: ASCII needles without LF cannot span the LF that joins parts; the
    text of a 7bit/8bit part in an ASCII-compatible charset is its bytes, when they are
    ASCII, and casefold() of ASCII is lower(); nothing is cut at _DECODED_MAX (checked).
    HTML: with no '&' unescaping changes nothing and tags become one space each, so a
    needle without a space occurs in the text only if it occurs in the bytes; but the
    bytes may hold it inside a tag, so a hit there is left to decoding.
    """
    if not all(n.isascii() and "\n" not in n for n in needles):
        return None
    wanted = {n: n.encode("ascii") for n in needles if n}
    found = {""} if "" in needles else set()
    total = 0
    stack = [structure]
    while stack:
        part = stack.pop()
        if part.get("parts"):
            stack.extend(part["parts"])
            continue
        if part.get("message"):
            return None                                 # RFC 2047-decoded header lines
        if part.get("type") != "text":
            continue
        if (part.get("encoding") or "").lower() in ("base64", "quoted-printable"):
            return None
        charset = _param(part.get("params") or [], "charset")
        if (charset or "").strip().lower() not in _PLAIN_CHARSETS:
            return None
        data = raw[part["body_start"]:part["end"]]
        total += len(data) + 1
        if total > _DECODED_MAX // 2 or not data.isascii():
            return None
        html = part.get("subtype") == "html"
        if html and b"&" in data:
            return None
        low = data.lower()
        for n, nb in wanted.items():
            if n in found:
                continue
            if nb in low:
                if html:
                    return None
                found.add(n)
            elif html and " " in n:
                return None
    return frozenset(found)


# -- PREVIEW (RFC 8970) and BINARY (RFC 3516) ---------------------------------------------

PREVIEW_CHARS = 256             # RFC 8970 §3: at most 256 characters
_WS_RE = re.compile(r"\s+")
_BLOCK_RE = re.compile(r"(?is)<(script|style|head)\b.*?</\1\s*>")


def preview_part(structure: dict) -> dict | None:
    """The part PREVIEW is made from: the first text/plain or text/html leaf that is not an
    attachment, depth first (inside encapsulated messages too), or None."""
    try:
        stack = [structure]
        while stack:
            part = stack.pop()
            if part.get("parts"):
                stack.extend(reversed(part["parts"]))
            elif part.get("message"):
                stack.append(part["message"]["structure"])
            elif part.get("type") == "text" and part.get("subtype") in ("plain", "html"):
                disposition = part.get("disposition")
                if not (disposition and disposition[0] == "attachment"):
                    return part
    except (AttributeError, KeyError, TypeError, IndexError):
        pass
    return None


def preview_extent(structure: dict) -> int:
    """How many leading octets of the message preview() reads (0: none)."""
    part = preview_part(structure)
    if part is None:
        return 0
    # enough encoded octets for PREVIEW_CHARS characters after QP/base64 and a little markup
    return min(int(part["end"]), int(part["body_start"]) + 64 * 1024)


def preview(raw: bytes, structure: dict) -> str:
    """RFC 8970 §3 preview text: up to PREVIEW_CHARS characters of the first text part,
    transfer- and charset-decoded, HTML reduced to text, whitespace runs made one space.
    ``raw`` may be just the first :func:`preview_extent` octets.  Never raises."""
    try:
        part = preview_part(structure)
        if part is None:
            return ""
        start = int(part["body_start"])
        data = raw[start:min(int(part["end"]), start + 64 * 1024)]
        data = transfer_decode(data, part.get("encoding"), strict=False)
        text = _to_text(data, _param(part.get("params") or [], "charset"))
        if part.get("subtype") == "html":
            text = html.unescape(_TAG_RE.sub(" ", _BLOCK_RE.sub(" ", text)))
        # RFC 8970 §3: no control characters; whitespace normalised
        text = _WS_RE.sub(" ", "".join(c if c.isprintable() or c.isspace() else " " for c in text)).strip()
        return text[:PREVIEW_CHARS]
    except Exception:
        return ""


def part_text(raw: bytes, part: dict) -> str:
    """The whole text of a leaf ``part`` of ``raw``: transfer- and charset-decoded, markup
    kept (an HTML part stays HTML).  Never raises."""
    try:
        data = transfer_decode(raw[int(part["body_start"]):int(part["end"])], part.get("encoding"), strict=False)
        return _to_text(data, _param(part.get("params") or [], "charset"))
    except Exception:
        return ""


_BREAK_RE = re.compile(r"(?i)<\s*(br|/p|/div|/tr|/li|/h[1-6])\b[^>]*>")


def html_to_text(text: str) -> str:
    """HTML reduced to plain text for a reader: scripts, styles and the head dropped, line
    breaks where blocks end, tags removed, entities decoded."""
    text = _BREAK_RE.sub("\n", _BLOCK_RE.sub("", text))
    return html.unescape(_TAG_RE.sub("", text)).strip()


class UnknownEncoding(ValueError):
    """A Content-Transfer-Encoding that transfer_decode() does not know (RFC 3516 UNKNOWN-CTE)."""


_IDENTITY_CTE = frozenset(("", "7bit", "8bit", "binary"))


def transfer_decode(data: bytes, encoding, strict: bool = True) -> bytes:
    """``data`` with its Content-Transfer-Encoding undone (RFC 2045 §6).  With ``strict`` an
    unknown encoding raises :class:`UnknownEncoding`; otherwise the data is returned as is.
    Malformed base64/QP is decoded leniently (junk dropped), as mail clients do."""
    enc = (encoding or "").strip().lower()
    if enc in _IDENTITY_CTE:
        return data
    if enc == "base64":
        try:
            return _b64(data)
        except (binascii.Error, ValueError):
            return b""
    if enc == "quoted-printable":
        return binascii.a2b_qp(data)
    if strict:
        raise UnknownEncoding(enc)
    return data
