"""FETCH response building (RFC 3501 §6.4.5, §7.4.2; RFC 7162 MODSEQ).

A :class:`FetchPlan` is made once per command from the requested items; it says what to ask the
store for and renders one ``* n FETCH (...)`` line per message.

Invariants:
* The blob is read only when body octets are really needed: BODY[]/BODY[TEXT]/BODY[n...],
  RFC822, RFC822.TEXT.  ENVELOPE, BODY, BODYSTRUCTURE, RFC822.SIZE, FLAGS, RFC822.HEADER,
  BODY[HEADER] and BODY[HEADER.FIELDS ...] come from the store's cached columns.
* Sections are sliced from the raw bytes at the offsets cached by :func:`formats.mime.analyze`
  (absolute offsets, also inside message/rfc822), never re-parsed.
* Section data is always sent as a literal; a section that does not exist is ``NIL`` (as Cyrus
  does; RFC 3501 leaves it open).
* \\Seen set implicitly by a non-PEEK body fetch is reported as FLAGS in the same response
  (RFC 3501 §6.4.5) even when FLAGS was not asked for.
* Serialized ENVELOPEs are kept in an :class:`EnvelopeCache` shared by a service's sessions, keyed
  by (folder, UIDVALIDITY, UID), which names an immutable message (RFC 3501 §2.3.1.1): a FETCH
  whose ENVELOPEs are all cached does not read the envelope column at all.
* :class:`FetchPlan` chooses one render function per item once per command; per message it only
  calls them (``FETCH 1:*`` of a big mailbox is thousands of lines).

* BINARY[n] (RFC 3516) is the part's body with its Content-Transfer-Encoding undone, then cut
  to <partial>; BINARY[] is the message as stored.  It is sent as a literal8 ``~{n}`` only when
  it holds a NUL (§4.2 allows ``{n}`` otherwise, which every client reads).  An encoding we do
  not know fails the command ``NO [UNKNOWN-CTE]`` (§4.2).  BINARY.SIZE decodes too (the exact
  size needs it).
* PREVIEW (RFC 8970) texts come from the store per batch (:meth:`Store.message_previews`,
  cached there); ``PREVIEW (LAZY)`` is answered the same way, never NIL.

Deliberately not done: EMAILID/THREADID.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

from formats import mime

from . import objectid, response
from .parser import FetchItem
from .states import IMAPError

_BODY_SEEN = ("RFC822", "RFC822.TEXT")
#: octets of serialized ENVELOPEs an :class:`EnvelopeCache` keeps by default (~100k messages)
ENVELOPE_CACHE_BYTES = 32 << 20


class EnvelopeCache:
    """Serialized ENVELOPEs of recently fetched messages, shared by a service's sessions so that
    the ``FETCH 1:* (... ENVELOPE)`` a client sends on opening a folder neither decodes the
    cached JSON nor serializes again (the store column is not even read when all are here).

    Keyed by (folder id, UIDVALIDITY, UID): RFC 3501 §2.3.1.1 makes that name one immutable
    message forever (folder ids are never reused), so an entry never goes stale.  When the total
    passes ``max_bytes``, entries go from the least recently used folder, oldest first: a folder
    is what a client opens and fetches, and a lookup then costs one dict access per message
    (at 20,000 messages a per-entry LRU's bookkeeping was a fifth of the FETCH).  Reactor thread
    only.
    """

    ENTRY_OVERHEAD = 200  # key, node and object headers, roughly

    def __init__(self, max_bytes: int = ENVELOPE_CACHE_BYTES):
        self.max_bytes = max_bytes
        self.size = 0
        self._folders: OrderedDict = OrderedDict()  # (folder id, uidvalidity) -> {uid: bytes}, LRU first

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._folders.values())

    def get_many(self, folder_id: int, uidvalidity: int, uids) -> dict:
        """``{uid: envelope bytes}`` for the cached ones among ``uids``."""
        key = (folder_id, uidvalidity)
        entries = self._folders.get(key)
        if entries is None:
            return {}
        self._folders.move_to_end(key)
        get = entries.get
        out = {}
        for uid in uids:
            value = get(uid)
            if value is not None:
                out[uid] = value
        return out

    def put(self, folder_id: int, uidvalidity: int, uid: int, value: bytes) -> None:
        key = (folder_id, uidvalidity)
        folders = self._folders
        entries = folders.get(key)
        if entries is None:
            entries = folders[key] = {}
        else:
            folders.move_to_end(key)
            old = entries.pop(uid, None)
            if old is not None:
                self.size -= len(old) + self.ENTRY_OVERHEAD
        entries[uid] = value
        self.size += len(value) + self.ENTRY_OVERHEAD
        while self.size > self.max_bytes and folders:
            oldest_key, oldest = next(iter(folders.items()))
            if not oldest:
                del folders[oldest_key]
                continue
            gone = oldest.pop(next(iter(oldest)))
            self.size -= len(gone) + self.ENTRY_OVERHEAD
            if not oldest:
                del folders[oldest_key]


@dataclass(frozen=True)
class Span:
    """A body item of a streamed message (:meth:`FetchPlan.render_streamed`): octets
    ``start``..``end`` of the raw message, sent as one literal.  With ``fields`` (HEADER.FIELDS
    of an encapsulated message) they are a header to filter first, then cut to ``partial``."""
    start: int
    end: int
    fields: Optional[tuple] = None
    negate: bool = False
    partial: Optional[tuple] = None
    #: BINARY (RFC 3516): the Content-Transfer-Encoding to undo before <partial>
    decode: Optional[str] = None
    #: BINARY.SIZE: send the decoded size instead of the octets
    size_only: bool = False


def needs_raw(item: FetchItem) -> bool:
    """The item's data comes from the message's bytes, not from the cached columns."""
    if item.name in ("RFC822", "RFC822.TEXT", "BINARY[]", "BINARY.SIZE[]"):
        return True
    return item.name == "BODY[]" and (bool(item.section.path) or item.section.spec in ("", "TEXT"))


def cut_partial(start: int, end: int, partial) -> tuple:
    if partial is None:
        return start, end
    offset, length = partial
    return min(start + offset, end), min(start + offset + length, end)


def body_span(item: FetchItem, rec) -> Optional[Span]:
    """Where a :func:`needs_raw` item's data is in the raw message (what :func:`section_data`
    would slice, then <partial>), or None for NIL.  Uses the record's cached header and
    structure only."""
    size = rec.meta.size
    if item.name == "RFC822":
        return Span(0, size)
    if item.name in ("BINARY[]", "BINARY.SIZE[]"):
        part = binary_part(item, rec.structure)
        if part is None:
            return None
        start, end, encoding = part
        size_only = item.name == "BINARY.SIZE[]"
        if encoding is None and not size_only:
            return Span(*cut_partial(start, end, item.partial))  # nothing to decode: streamed as is
        return Span(start, end, decode=encoding, partial=item.partial, size_only=size_only)
    if item.name == "RFC822.TEXT":
        return Span(len(rec.header), size)
    section = item.section
    spec = section.spec
    if not section.path:
        return Span(*cut_partial(0 if spec == "" else len(rec.header), size, item.partial))
    part = mime.section_offsets(rec.structure, list(section.path))
    if part is None:
        return None
    if spec == "":
        return Span(*cut_partial(part["body_start"], part["end"], item.partial))
    if spec == "MIME":
        return Span(*cut_partial(part["header_start"], part["body_start"], item.partial))
    message = part.get("message")
    if not message:
        return None  # HEADER/TEXT only exist for message/rfc822 parts (RFC 3501 §6.4.5)
    inner = message["structure"]
    if spec == "TEXT":
        return Span(*cut_partial(inner["body_start"], inner["end"], item.partial))
    if spec == "HEADER":
        return Span(*cut_partial(inner["header_start"], inner["body_start"], item.partial))
    return Span(inner["header_start"], inner["body_start"], section.fields, spec == "HEADER.FIELDS.NOT",
                item.partial)


def binary_part(item: FetchItem, structure: Optional[dict]) -> Optional[tuple]:
    """``(start, end, encoding)`` of a BINARY item's octets in the raw message, or None when
    the part does not exist.  BINARY[] is the whole message, not decoded (RFC 3516 §4.2)."""
    path = list(item.section.path)
    if not path:
        return 0, (structure or {}).get("end", 0), None
    part = mime.section_offsets(structure or {}, path)
    if part is None:
        return None
    # a multipart or message/rfc822 part has an identity encoding (RFC 2045 §6.4): not decoded
    encoding = None if part.get("parts") or part.get("message") else part.get("encoding")
    return part["body_start"], part["end"], encoding


def binary_data(data: bytes, encoding: Optional[str]) -> bytes:
    """The part's octets decoded; an unknown encoding is IMAPError NO [UNKNOWN-CTE] (RFC 3516
    §4.2: the server "MUST respond with a tagged NO" and that code)."""
    if encoding is None:
        return data
    try:
        return mime.transfer_decode(data, encoding)
    except mime.UnknownEncoding:
        raise IMAPError("NO", "Unknown Content-Transfer-Encoding %s" % encoding[:40], "UNKNOWN-CTE") from None


def literal_any(data: bytes) -> bytes:
    """RFC 3516 §4.2: literal8 when the data holds a NUL, a plain literal otherwise."""
    return (b"~{%d}\r\n" if b"\x00" in data else b"{%d}\r\n") % len(data) + data


#: items a session answers from its own state (ENVELOPE from the cache)
_META_ITEMS = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ", "ENVELOPE"})


class FetchPlan:
    def __init__(self, items: list, readonly: bool, decode_params: bool = False):
        self.items = items
        names = {i.name for i in items}
        sections = [i for i in items if i.name == "BODY[]"]
        binary = [i for i in items if i.name in ("BINARY[]", "BINARY.SIZE[]")]
        self.envelope = "ENVELOPE" in names
        self.preview = "PREVIEW" in names
        self.previews: dict = {}  # uid -> rendered PREVIEW value, filled per batch by the caller
        self.structure = (bool(names & {"BODY", "BODYSTRUCTURE"}) or any(s.section.path for s in sections)
                          or bool(binary) or self.preview)
        self.header = bool(names & {"RFC822.HEADER", "RFC822.TEXT", "THREADID"}) or any(
            not s.section.path and s.section.spec != "" for s in sections)
        self.blob = bool(names & {"RFC822", "RFC822.TEXT"}) or any(
            s.section.path or s.section.spec in ("", "TEXT") for s in sections) or bool(binary)
        # RFC 3516 §4.2: BINARY (not .PEEK, not .SIZE) sets \Seen like BODY[]
        self.sets_seen = not readonly and (bool(names & set(_BODY_SEEN)) or any(not s.peek for s in sections)
                                           or any(b.name == "BINARY[]" and not b.peek for b in binary))
        self.has_flags = "FLAGS" in names
        #: every item is in the session's MessageMeta (ENVELOPE: when the cache has it)
        self.meta_only = names <= _META_ITEMS
        # one function per item, chosen once: render() runs per message of FETCH 1:*
        # decode_params: BODY/BODYSTRUCTURE parameter values decoded (IMAP4rev2, response.py)
        self._renderers = [_renderer(item, self.previews, decode_params) for item in items]

    def render(self, seq: int, rec, raw: Optional[bytes], seen_changed: bool,
               envelope: Optional[bytes] = None) -> bytes:
        """One ``* seq FETCH (...)`` line.  ``envelope``: the serialized ENVELOPE when the caller
        has it (cached), else it is made from ``rec.envelope``."""
        out = [render(rec, raw, envelope) for render in self._renderers]
        if seen_changed and not self.has_flags:
            out.append(b"FLAGS " + response.flag_list(rec.meta.flags))
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(out))

    def render_streamed(self, seq: int, rec, seen_changed: bool, envelope: Optional[bytes] = None) -> list:
        """:meth:`render` of a message too big to hold: the response as a list of bytes and
        :class:`Span` pieces (each Span a literal the caller reads from the message and sends
        as ``{n}`` CRLF and its octets).  Concatenated, the same octets as :meth:`render`."""
        out: list = [b"* %d FETCH (" % seq]
        for i, (item, render) in enumerate(zip(self.items, self._renderers)):
            sep = b" " if i else b""
            if not needs_raw(item):
                out.append(sep + render(rec, None, envelope))
                continue
            label = item.label.encode("ascii")
            span = body_span(item, rec)
            if span is None:
                out.append(sep + label + b" NIL")
            else:
                out += [sep + label + b" ", span]
        if seen_changed and not self.has_flags:
            out.append(b" FLAGS " + response.flag_list(rec.meta.flags))
        out.append(b")\r\n")
        return out


def _renderer(item: FetchItem, previews: dict, decode_params: bool = False):
    """``f(rec, raw, envelope) -> bytes`` for one FETCH item (RFC 3501 §7.4.2)."""
    name = item.name
    if name == "PREVIEW":
        # RFC 8970 §4: PREVIEW nstring (the caller filled ``previews`` for the batch)
        return lambda rec, raw, env: b"PREVIEW " + previews.get(rec.meta.uid, b"NIL")
    if name in ("BINARY[]", "BINARY.SIZE[]"):
        return _binary_renderer(item)
    if name == "UID":
        return lambda rec, raw, env: b"UID %d" % rec.meta.uid
    if name == "FLAGS":
        return lambda rec, raw, env: b"FLAGS " + response.flag_list(rec.meta.flags)
    if name == "INTERNALDATE":
        return lambda rec, raw, env: b"INTERNALDATE " + response.internaldate(rec.meta.internaldate)
    if name == "RFC822.SIZE":
        return lambda rec, raw, env: b"RFC822.SIZE %d" % rec.meta.size
    if name == "MODSEQ":
        return lambda rec, raw, env: b"MODSEQ (%d)" % rec.meta.modseq
    if name == "EMAILID":  # RFC 8474 §5.1
        return lambda rec, raw, env: b"EMAILID (%s)" % objectid.email_id(rec.blob_id).encode()
    if name == "THREADID":  # RFC 8474 §5.2
        return lambda rec, raw, env: b"THREADID (%s)" % objectid.thread_id(_header(rec, raw), rec.blob_id).encode()
    if name == "ENVELOPE":
        return lambda rec, raw, env: b"ENVELOPE " + (env if env is not None else response.envelope(rec.envelope))
    if name == "BODY":
        return lambda rec, raw, env: b"BODY " + response.body_structure(_structure(rec, raw), False, decode_params)
    if name == "BODYSTRUCTURE":
        return lambda rec, raw, env: b"BODYSTRUCTURE " + response.body_structure(_structure(rec, raw), True,
                                                                                  decode_params)
    if name == "RFC822":
        return lambda rec, raw, env: b"RFC822 " + response.literal(raw)
    if name == "RFC822.HEADER":
        return lambda rec, raw, env: b"RFC822.HEADER " + response.literal(_header(rec, raw))
    if name == "RFC822.TEXT":
        return lambda rec, raw, env: b"RFC822.TEXT " + response.literal(raw[len(_header(rec, raw)):])
    label = item.label.encode("ascii")  # BODY[section]<partial>

    def section(rec, raw, env) -> bytes:
        data = section_data(item, rec, raw)
        if data is None:
            return label + b" NIL"
        if item.partial is not None:
            start, length = item.partial
            data = data[start:start + length]
        return label + b" " + response.literal(data)
    return section


def _structure(rec, raw: Optional[bytes]) -> dict:
    if rec.structure is not None:
        return rec.structure
    return mime.analyze(raw or b"")["structure"] if raw is not None else {}


def _header(rec, raw: Optional[bytes]) -> bytes:
    if rec.header is not None:
        return rec.header
    if raw is None:
        return b""
    return raw[:mime.analyze(raw)["header_end"]]


def filter_header(header: bytes, fields: tuple, negate: bool) -> bytes:
    """RFC 3501 §6.4.5 HEADER.FIELDS(.NOT): the matching field lines, then the blank line."""
    wanted = {f.lower() for f in fields}
    out = []
    for name, raw in mime.header_fields(header):
        if (name.lower() in wanted) != negate:
            out.append(raw if raw.endswith(b"\n") else raw + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


def section_data(item: FetchItem, rec, raw: Optional[bytes]) -> Optional[bytes]:
    section = item.section
    spec = section.spec
    if not section.path:
        if spec == "":
            return raw
        header = _header(rec, raw)
        if spec == "HEADER":
            return header
        if spec == "TEXT":
            return raw[len(header):]
        return filter_header(header, section.fields, spec == "HEADER.FIELDS.NOT")
    structure = _structure(rec, raw)
    part = mime.section_offsets(structure, list(section.path))
    if part is None or raw is None:
        return None
    if spec == "":
        return raw[part["body_start"]:part["end"]]
    if spec == "MIME":
        return raw[part["header_start"]:part["body_start"]]
    message = part.get("message")
    if not message:
        return None  # HEADER/TEXT only exist for message/rfc822 parts (RFC 3501 §6.4.5)
    inner = message["structure"]
    if spec == "TEXT":
        return raw[inner["body_start"]:inner["end"]]
    header = raw[inner["header_start"]:inner["body_start"]]
    if spec == "HEADER":
        return header
    return filter_header(header, section.fields, spec == "HEADER.FIELDS.NOT")


def _binary_renderer(item: FetchItem):
    label = item.label.encode("ascii")
    size_only = item.name == "BINARY.SIZE[]"

    def render(rec, raw, env) -> bytes:
        where = binary_part(item, rec.structure if rec.structure is not None else _structure(rec, raw))
        if where is None or raw is None:
            return label + b" NIL"
        start, end, encoding = where
        data = binary_data(raw if start == 0 and end >= len(raw) else raw[start:end], encoding)
        if size_only:
            return label + b" %d" % len(data)
        if item.partial is not None:
            offset, length = item.partial
            data = data[offset:offset + length]
        return label + b" " + literal_any(data)
    return render
