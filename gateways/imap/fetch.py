"""FETCH response building (RFC 3501 §6.4.5, §7.4.2; RFC 7162 MODSEQ).

A :class:`FetchPlan` is made once per command from the requested items; it says what to ask the
store for and renders one ``* n FETCH (...)`` line per message.

Invariants:
* The blob is read only when body octets are really needed: BODY[]/BODY[TEXT]/BODY[n...],
  RFC822, RFC822.TEXT.  ENVELOPE, BODY, BODYSTRUCTURE, RFC822.SIZE, FLAGS, RFC822.HEADER,
  BODY[HEADER] and BODY[HEADER.FIELDS ...] come from the store's cached columns.
* Sections are sliced from the raw bytes at the offsets cached by :func:`store.mime.analyze`
  (absolute offsets, also inside message/rfc822), never re-parsed.
* Section data is always sent as a literal; a section that does not exist is ``NIL`` (as Cyrus
  does; RFC 3501 leaves it open).
* \\Seen set implicitly by a non-PEEK body fetch is reported as FLAGS in the same response
  (RFC 3501 §6.4.5) even when FLAGS was not asked for.

Deliberately not done: BINARY (RFC 3516), PREVIEW, EMAILID/THREADID.
"""

from __future__ import annotations

from typing import Optional

from store import mime

from . import response
from .parser import FetchItem

_BODY_SEEN = ("RFC822", "RFC822.TEXT")


class FetchPlan:
    def __init__(self, items: list, readonly: bool):
        self.items = items
        names = {i.name for i in items}
        sections = [i for i in items if i.name == "BODY[]"]
        self.envelope = "ENVELOPE" in names
        self.structure = bool(names & {"BODY", "BODYSTRUCTURE"}) or any(s.section.path for s in sections)
        self.header = bool(names & {"RFC822.HEADER", "RFC822.TEXT"}) or any(
            not s.section.path and s.section.spec != "" for s in sections)
        self.blob = bool(names & {"RFC822", "RFC822.TEXT"}) or any(
            s.section.path or s.section.spec in ("", "TEXT") for s in sections)
        self.sets_seen = not readonly and (bool(names & set(_BODY_SEEN)) or any(not s.peek for s in sections))
        self.has_flags = "FLAGS" in names

    def render(self, seq: int, rec, raw: Optional[bytes], seen_changed: bool) -> bytes:
        meta = rec.meta
        out = []
        for item in self.items:
            name = item.name
            if name == "UID":
                out.append(b"UID %d" % meta.uid)
            elif name == "FLAGS":
                out.append(b"FLAGS " + response.flag_list(meta.flags))
            elif name == "INTERNALDATE":
                out.append(b"INTERNALDATE " + response.internaldate(meta.internaldate))
            elif name == "RFC822.SIZE":
                out.append(b"RFC822.SIZE %d" % meta.size)
            elif name == "MODSEQ":
                out.append(b"MODSEQ (%d)" % meta.modseq)
            elif name == "ENVELOPE":
                out.append(b"ENVELOPE " + response.envelope(rec.envelope))
            elif name == "BODY":
                out.append(b"BODY " + response.body_structure(_structure(rec, raw), False))
            elif name == "BODYSTRUCTURE":
                out.append(b"BODYSTRUCTURE " + response.body_structure(_structure(rec, raw), True))
            elif name == "RFC822":
                out.append(b"RFC822 " + response.literal(raw))
            elif name == "RFC822.HEADER":
                out.append(b"RFC822.HEADER " + response.literal(_header(rec, raw)))
            elif name == "RFC822.TEXT":
                out.append(b"RFC822.TEXT " + response.literal(raw[len(_header(rec, raw)):]))
            else:  # BODY[section]<partial>
                data = section_data(item, rec, raw)
                label = item.label.encode("ascii")
                if data is None:
                    out.append(label + b" NIL")
                else:
                    if item.partial is not None:
                        start, length = item.partial
                        data = data[start:start + length]
                    out.append(label + b" " + response.literal(data))
        if seen_changed and not self.has_flags:
            out.append(b"FLAGS " + response.flag_list(meta.flags))
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(out))


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
