"""The FETCH items of extensions that need more than slicing the raw message: PREVIEW (RFC 8970)
and BINARY of a streamed (big) message (RFC 3516).

Invariants:
* Decoding runs in a thread, never on the reactor: PREVIEW of a batch is one thread hop; the
  BINARY part of a big message is read alone (the part, never the whole message) and decoded in
  one hop, so a session holds the encoded part and its decoding, not the message twice.
* PREVIEW reads only the leading octets of each message up to its first text part (a prefix
  read, :meth:`Store.read_blobs`), unless the batch's bodies were read anyway.

Deliberately not done: caching previews (in memory or in the store); ``PREVIEW (LAZY)`` is
answered like ``PREVIEW`` (RFC 8970 §3.2 lets a server compute it at once).
"""

from __future__ import annotations

from typing import Optional

from twisted.internet import threads

from formats import mime

from . import response
from .fetch import Span, binary_data, literal_any


def _preview_value(text: str) -> bytes:
    # RFC 8970 §4: nstring; "" is an empty preview (no text part), not NIL
    data = text.encode("utf-8")
    if data.isascii() and '"' not in text and "\\" not in text:
        return b'"' + data + b'"'
    return response.literal(data)


async def fill_previews(store, plan, recs: list, raws: Optional[dict]) -> None:
    """Put the rendered PREVIEW of each record into ``plan.previews`` (replacing the last
    batch's)."""
    plan.previews.clear()
    if not recs:
        return
    if raws:
        bodies = {r.meta.uid: raws.get(r.meta.uid) for r in recs}
    else:
        extents = {r.blob_id: mime.preview_extent(r.structure or {}) for r in recs}
        wanted = [b for b, n in extents.items() if n > 0]
        blobs = await store.read_blobs(wanted, prefix={b: extents[b] for b in wanted}) if wanted else {}
        bodies = {r.meta.uid: blobs.get(r.blob_id) for r in recs}

    def compute() -> dict:
        return {r.meta.uid: _preview_value(mime.preview(bodies[r.meta.uid] or b"", r.structure or {}))
                for r in recs}
    plan.previews.update(await threads.deferToThread(compute))


async def binary_piece(reader, piece: Span) -> bytes:
    """BINARY/BINARY.SIZE of one part of a streamed message (what the plan's renderer would give
    after the label): the part is read alone, then decoded in a thread."""
    if piece.decode is None:  # BINARY.SIZE of an identity-encoded part: its size as stored
        return b"%d" % (piece.end - piece.start)
    encoded = await reader.read(piece.start, piece.end)
    data = await threads.deferToThread(binary_data, encoded, piece.decode)
    del encoded
    if piece.size_only:
        return b"%d" % len(data)
    if piece.partial is not None:
        offset, length = piece.partial
        data = data[offset:offset + length]
    return literal_any(data)


def check_encodings(pieces: list) -> None:
    """Raise NO [UNKNOWN-CTE] now for a BINARY piece whose encoding is unknown, before any of
    the response is sent (RFC 3516 §4.2)."""
    for piece in pieces:
        if isinstance(piece, Span) and piece.decode is not None:
            binary_data(b"", piece.decode)
