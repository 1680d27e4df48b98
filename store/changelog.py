"""The change-log primitives every table's ``_txn`` functions share: the per-account modseq,
a folder's ``highest_modseq``, and blob rows.

Invariants
- Each transaction bumps the account's ``highest_modseq`` once (:func:`bump_modseq_txn`) and
  stamps every row it touches, and the folders holding them, with that value.  The ``UPDATE
  accounts`` row lock orders concurrent writers of one account on MariaDB, so modseqs are
  never committed out of order within an account.
- A blob row exists before any row that names it (:func:`ensure_blob_txn`, in the same
  transaction); the blob's bytes (a file, or the row's inline data) were written before.
- A blob's text index rows (``message_text``, ``message_body``) are written and dropped with the blob row.
- A blob row goes only when no message row (tombstones included) and no outbound-queue entry
  references it (:func:`drop_unreferenced_blobs_txn`): reference counts are counted, never
  stored (docs/store.md).

This module sits below every table module (folders, messages, dav, queue) and imports none of
them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

from store import errors
from store.engines import Txn, chunks
from store.textindex import COLUMNS, LONG_COLUMNS, SHORT_COLUMNS


@dataclass(frozen=True)
class PreparedMessage:
    """A message analysed and written to the blob store, ready for its rows."""

    blob_id: str
    stored_size: int
    inline: Optional[bytes]  # compressed bytes stored in the blobs row; None: a blob file
    size: int
    header: bytes
    envelope: str  # JSON
    structure: str  # JSON
    subject: Optional[str] = None
    text_row: Optional[tuple] = None  # its message_text row (store/textindex.py)


def bump_modseq_txn(txn: Txn, account_id: int, receiving: bool = False) -> int:
    """The account's next modseq.  ``receiving``: for a delivery, which a disabled or deleted
    account refuses (NotFound) even when it was accepted at RCPT just before."""
    where = "id = ? AND disabled = 0 AND deleted_at = 0" if receiving else "id = ?"
    modseq = txn.increment("accounts", "highest_modseq", 1, where, (account_id,))
    if modseq is None:
        raise errors.NotFound("no such account")
    return modseq


def touch_folder_txn(txn: Txn, folder_id: int, modseq: int) -> None:
    """Raise the folder's ``highest_modseq`` to ``modseq`` (never lowers it)."""
    txn.execute("UPDATE folders SET highest_modseq = ? WHERE id = ? AND highest_modseq < ?",
                (modseq, folder_id, modseq))


def ensure_blob_txn(txn: Txn, msg: PreparedMessage) -> None:
    txn.insert_ignore("blobs", ("id", "size", "stored_size", "created_at", "data"),
                      (msg.blob_id, msg.size, msg.stored_size, int(time.time()), msg.inline))
    insert_text_row_txn(txn, msg.text_row)


def insert_text_row_txn(txn: Txn, row: Optional[tuple]) -> None:
    """A blob's text index row (store/fulltext.py), written with the blob row; None: nothing to
    index (the message is then a candidate of every text search until the backlog builds it)."""
    if row is not None:
        txn.insert_ignore("message_text", SHORT_COLUMNS, row[:len(SHORT_COLUMNS)])
        if row[1]:
            long = dict(zip(COLUMNS, row))
            txn.insert_ignore("message_body", LONG_COLUMNS, tuple(long[c] for c in LONG_COLUMNS))


def inline_blob_txn(txn: Txn, blob_id: str) -> Optional[bytes]:
    """The blob's inline compressed bytes, or None when it is stored as a file."""
    row = txn.execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()
    return bytes(row[0]) if row is not None and row[0] is not None else None


def drop_unreferenced_blobs_txn(txn: Txn, blob_ids) -> list:
    """Delete blob rows nothing references any more; returns their ids (the caller removes the
    files after commit).  The reference count is the indexed count of message rows and
    outbound queue entries."""
    gone = []
    for blob_id in blob_ids:
        if not (txn.scalar("SELECT COUNT(*) FROM messages WHERE blob_id = ?", (blob_id,))
                or txn.scalar("SELECT COUNT(*) FROM outbound_queue WHERE blob_id = ?", (blob_id,))):
            txn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
            txn.execute("DELETE FROM blob_previews WHERE blob_id = ?", (blob_id,))  # delta 008
            txn.execute("DELETE FROM message_text WHERE blob_id = ?", (blob_id,))
            txn.execute("DELETE FROM message_body WHERE blob_id = ?", (blob_id,))
            gone.append(blob_id)
    return gone


def known_blob_ids_txn(txn: Txn, blob_ids) -> set:
    known = set()
    for part in chunks(list(blob_ids)):
        known.update(r[0] for r in txn.execute(f"SELECT id FROM blobs WHERE id IN {txn.in_list(part)}", part).fetchall())
    return known


def blob_data_txn(txn: Txn, blob_ids) -> dict:
    """``{blob id: inline compressed bytes, or None for a blob file}`` for the blob rows among
    ``blob_ids``; ids without a row are left out."""
    out = {}
    for part in chunks(list(blob_ids)):
        for r in txn.execute(f"SELECT id, data FROM blobs WHERE id IN {txn.in_list(part)}", part).fetchall():
            out[r[0]] = bytes(r[1]) if r[1] is not None else None
    return out
