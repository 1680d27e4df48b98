"""The FETCH items of extensions that need more than slicing the raw message: PREVIEW (RFC 8970)
and BINARY of a streamed (big) message (RFC 3516).

Invariants:
* Decoding runs off the reactor: PREVIEW texts come from the store (computed in its CPU pool
  and cached there, :meth:`Store.message_previews`), one call per FETCH batch; the BINARY part of
  a big message is read alone (the part, never the whole message) and decoded in a thread, so a
  session holds the encoded part and its decoding, not the message twice.

Deliberately not done: ``PREVIEW (LAZY)`` is answered like ``PREVIEW`` (RFC 8970 §3.2 lets a
server compute a preview at once rather than answer NIL).
"""

from __future__ import annotations

from twisted.internet import threads

from . import response
from .fetch import Span, binary_data, literal_any


def _preview_value(text: str) -> bytes:
    # RFC 8970 §4: nstring; "" is an empty preview (no text part), not NIL
    data = text.encode("utf-8")
    if data.isascii() and '"' not in text and "\\" not in text:
        return b'"' + data + b'"'
    return response.literal(data)


async def fill_previews(store, plan, folder_id: int, recs: list) -> None:
    """Put the rendered PREVIEW of each record into ``plan.previews`` (replacing the last
    batch's): one store call per batch (:meth:`Store.message_previews`, which computes and
    caches them off the reactor)."""
    plan.previews.clear()
    if recs:
        texts = await store.message_previews(folder_id, [r.meta.uid for r in recs])
        plan.previews.update((uid, _preview_value(text)) for uid, text in texts.items())


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
