"""IMAP PREVIEW (RFC 8970) texts, cached in ``blob_previews`` (delta 008).

Invariants
- A preview is a function of the blob's octets (:func:`formats.mime.preview`), so it is cached
  per blob: copies and moves share it, the purge removes it with the blob.
- Computed lazily, on the first :meth:`PreviewsStore.message_previews` that needs it, in the
  CPU pool, from the leading octets of the message only (:func:`formats.mime.preview_extent`);
  then inserted unless there (two sessions computing the same preview at once write the same
  text; the second insert is ignored).
- Reads take one pool hop per batch; computing takes one CPU hop and one write per batch.
"""

from __future__ import annotations

import json

from formats import mime
from store import bulk
from store.blobs import BlobStore
from store.bulk import RawCache
from store.core import StoreCore
from store.engines import Txn
from store.scope import scope_of


def preview_sources_txn(txn: Txn, folder_id: int, uids) -> list:
    """``(uid, blob_id, preview or None, structure JSON, inline data)`` of the live messages
    among ``uids``; structure and data only where the preview is still to be made."""
    scope = scope_of(txn, folder_id)
    out = []
    for sql, args in scope.chunks(txn, uids):
        for r in txn.execute(f"SELECT {scope.uid}, m.blob_id, p.preview, "
                             "CASE WHEN p.preview IS NULL THEN m.structure END, "
                             "CASE WHEN p.preview IS NULL THEN b.data END FROM messages m "
                             "LEFT JOIN blob_previews p ON p.blob_id = m.blob_id "
                             "LEFT JOIN blobs b ON b.id = m.blob_id "
                             f"WHERE {sql}", args).fetchall():
            out.append((r[0], r[1], r[2], r[3], bytes(r[4]) if r[4] is not None else None))
    return out


def save_previews_txn(txn: Txn, previews: dict) -> None:
    insert = "INSERT OR IGNORE" if txn.engine == "sqlite" else "INSERT IGNORE"
    for blob_id, text in previews.items():
        txn.execute(f"{insert} INTO blob_previews (blob_id, preview) VALUES (?, ?)", (blob_id, text))


def make_previews(blobs: BlobStore, cache: RawCache, rows: list) -> dict:
    """CPU pool: ``{blob_id: preview}`` of :func:`preview_sources_txn` rows."""
    out = {}
    for _uid, blob_id, _preview, structure_json, data in rows:
        if blob_id in out:
            continue
        structure = json.loads(structure_json) if structure_json else None
        raw = cache.get(blob_id)
        if raw is None:
            limit = mime.preview_extent(structure) if structure else None
            if limit == 0:
                out[blob_id] = ""  # no text part: nothing to read
                continue
            raw = bulk.read_file(blobs, blob_id, limit) if data is None else bulk.inflate(blob_id, data, limit)
        if not structure:
            structure = mime.analyze(raw)["structure"]
        out[blob_id] = mime.preview(raw, structure)
    return out


class PreviewsStore(StoreCore):
    async def message_previews(self, folder_id, uids) -> dict:
        rows = await self._run("message_previews", preview_sources_txn, folder_id, list(uids))
        missing = [r for r in rows if r[2] is None]
        made = {}
        if missing:
            made = await self._cpu(make_previews, self.blobs, self.raw_cache, missing)
            await self._run("save_previews", save_previews_txn, made)
        return {uid: preview if preview is not None else made[blob_id] for uid, blob_id, preview, _s, _d in rows}
