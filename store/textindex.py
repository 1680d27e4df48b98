"""The text index's rows, pure: a message's searchable text as the ``message_text`` row
(delta 007) that :mod:`store.fulltext` searches.  Bytes in, plain values out; no SQL.  Called in
the CPU pool when a message is prepared (:meth:`store.core.StoreCore._prepared`) and by the
backlog builder."""

from __future__ import annotations

import email.utils
import logging
from typing import Optional

from formats import mime

log = logging.getLogger("haven.store")

#: octets of UTF-8 text kept per column; a longer text makes the row incomplete (always a candidate)
MAX_INDEXED = 1 << 20
#: the search keys the index answers, and their columns
FIELDS = {"subject": ("t.subject",), "from": ("t.f_from",), "to": ("t.f_to",), "cc": ("t.f_cc",),
          "bcc": ("t.f_bcc",), "body": ("b.body",), "text": ("b.header", "b.body")}
#: the fields whose columns are in ``message_body``
LONG_FIELDS = ("body", "text")
#: the row's columns: ``message_text`` holds the short ones, ``message_body`` the long ones (a
#: scan of the short ones then reads few pages: MariaDB keeps rows under ~8 KB in the clustered
#: index, and a 20,000-message table of everything outgrew the default buffer pool)
COLUMNS = ("blob_id", "complete", "subject", "f_from", "f_to", "f_cc", "f_bcc", "header", "body")
SHORT_COLUMNS = COLUMNS[:7]
LONG_COLUMNS = ("blob_id", "body", "header")  # body first: BODY reads no header bytes
ADDRESS_FIELDS = ("from", "to", "cc", "bcc")


def _encode(parts) -> bytes:
    return "\n".join(parts).encode("utf-8", "replace")


def text_index_row(blob_id: str, raw: bytes, header: bytes, structure: Optional[dict]) -> tuple:
    """CPU pool: the ``message_text`` row of a message (values in :data:`COLUMNS` order)."""
    try:
        fields = mime.searchable_fields(header)
        raw_values: dict = {}  # the address fields as written (what mime.address_forms parses)
        for fname, raw_field in mime.header_fields(header):
            if fname.lower() in ADDRESS_FIELDS:
                value = raw_field.split(b":", 1)[1].replace(b"\r\n", b"").replace(b"\n", b"")
                raw_values.setdefault(fname.lower(), []).append(value.decode("utf-8", "replace"))
        cols = {"subject": _encode(fields.get("subject", []))}
        for name in ADDRESS_FIELDS:
            values = fields.get(name, [])
            extra = []
            for person, addr in email.utils.getaddresses(values):
                extra += [person, addr, f"{person} <{addr}>"]
            # what IMAP SEARCH FROM/TO/CC/BCC also match: each address with comments and
            # folding removed, and its display name (gateways/imap/search.py "address")
            extra += [form.casefold() for value in raw_values.get(name, []) for form in mime.address_forms(value)]
            cols["f_" + name] = _encode(values + extra)
        head = header.decode("utf-8", "replace").casefold()
        cols["header"] = _encode([head] + [v for vs in fields.values() for v in vs])
        if structure is None:
            structure = mime.analyze(raw)["structure"]
        cols["body"] = mime.decoded_text(raw, structure).casefold().encode("utf-8", "replace")
    except Exception:  # an unreadable message stays searchable: always a candidate
        log.warning("text index: cannot extract the text of %s", blob_id[:12], exc_info=True)
        return incomplete_row(blob_id)
    complete = int(all(len(v) <= MAX_INDEXED for v in cols.values()))
    if not complete:
        return incomplete_row(blob_id)
    return (blob_id, 1, cols["subject"], cols["f_from"], cols["f_to"], cols["f_cc"], cols["f_bcc"],
            cols["header"], cols["body"])




def incomplete_row(blob_id: str) -> tuple:
    """The row of a message whose text is not indexed: always a search candidate (it has no
    ``message_body`` row)."""
    return (blob_id, 0) + (None,) * (len(COLUMNS) - 2)
