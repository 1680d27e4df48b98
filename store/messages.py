"""Messages: the ``_txn`` functions behind SELECT, FETCH, STORE, COPY/MOVE, EXPUNGE, APPEND and
restore, and the store's message methods (:class:`MessagesStore`).  Delivery is
:mod:`store.delivery`, the purge :mod:`store.lifecycle`.

Invariants
- Every change bumps the account's modseq once per transaction and stamps every row it touches
  and the folder's ``highest_modseq`` with it.
- Deletes are soft: ``deleted_at`` is set and the row keeps its UID as a tombstone, so
  ``changes_since`` can report it as expunged/vanished.
- Flags are stored as :mod:`store.flags` says.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Iterable, Optional

from store import bulk, errors
from store.changelog import (PreparedMessage, blob_data_txn, bump_modseq_txn, ensure_blob_txn, inline_blob_txn,
                             touch_folder_txn)
from store.core import StoreCore
from store.engines import Txn, chunks
from store.flags import DELETED, MAX_KEYWORDS_LEN, decode_flags, encode_flags
from store.folders import Restore, check_rename_txn, create_folder_txn, get_folder_by_id_txn, rename_tree_txn
from store.interfaces import INBOX, BlobStream, Changes, CopyResult, MessageMeta, MessageRecord, StoreResult
from store.quota import check_append_quota_txn
from store.records import is_recovery_view as is_view
from store.scope import Scope, scope_of

log = logging.getLogger("haven.store")

_META = "uid, modseq, sysflags, keywords, internaldate, size"


def _meta(row) -> MessageMeta:
    # positional (uid, modseq, flags, internaldate, size): cheaper than keywords, per row
    return MessageMeta(row[0], row[1], decode_flags(row[2], row[3]), row[4], row[5])


def allocate_uids_txn(txn: Txn, folder_id: int, count: int, modseq: Optional[int] = None) -> int:
    """Reserve ``count`` UIDs; returns the first.  With ``modseq``, the folder's
    ``highest_modseq`` is raised to it in the same statement (:func:`touch_folder_txn`)."""
    also, also_args = ("highest_modseq = CASE WHEN highest_modseq < ? THEN ? ELSE highest_modseq END",
                       (modseq, modseq)) if modseq is not None else ("", ())
    uidnext = txn.increment("folders", "uidnext", count, "id = ? AND deleted_at = 0", (folder_id,), also, also_args)
    if uidnext is None:
        raise errors.NotFound("folder no longer exists")
    return uidnext - count


def insert_message_txn(txn: Txn, account_id: int, folder_id: int, msg: PreparedMessage, modseq: int,
                       flags: Iterable[str] = (), internaldate: Optional[int] = None) -> int:
    """One message row (the blob row must exist).  Returns the UID."""
    bits, keywords = encode_flags(flags)
    uid = allocate_uids_txn(txn, folder_id, 1, modseq)
    txn.execute(
        "INSERT INTO messages (account_id, folder_id, uid, modseq, created_modseq, sysflags, keywords, "
        "internaldate, size, blob_id, header, envelope, structure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (account_id, folder_id, uid, modseq, modseq, bits, " ".join(keywords)[:MAX_KEYWORDS_LEN],
         int(internaldate if internaldate is not None else time.time()), msg.size, msg.blob_id, msg.header,
         msg.envelope, msg.structure))
    return uid


def append_message_txn(txn: Txn, account_id: int, folder_id: int, msg: PreparedMessage, flags, internaldate,
                       settings=None):
    folder = get_folder_by_id_txn(txn, folder_id)
    if folder.account_id != account_id:
        raise errors.NotFound("no such folder")
    if settings is not None:
        check_append_quota_txn(txn, account_id, msg.size, settings)
    ensure_blob_txn(txn, msg)
    modseq = bump_modseq_txn(txn, account_id)
    uid = insert_message_txn(txn, account_id, folder_id, msg, modseq, flags, internaldate)
    return folder.uidvalidity, uid, modseq


def append_messages_txn(txn: Txn, account_id: int, folder_id: int, prepared: list, settings=None):
    """MULTIAPPEND: every message or none, one modseq; ``prepared`` is ``[(msg, flags, date)]``."""
    folder = get_folder_by_id_txn(txn, folder_id)
    if folder.account_id != account_id:
        raise errors.NotFound("no such folder")
    if settings is not None:
        check_append_quota_txn(txn, account_id, sum(m.size for m, _f, _d in prepared), settings)
    modseq = bump_modseq_txn(txn, account_id)
    uids = []
    for msg, flags, internaldate in prepared:
        ensure_blob_txn(txn, msg)
        uids.append(insert_message_txn(txn, account_id, folder_id, msg, modseq, flags, internaldate))
    return folder.uidvalidity, uids, modseq


def rename_folder_txn(txn: Txn, account_id: int, old: str, new: str) -> int:
    """Returns the modseq of the change.  RFC 3501 §6.3.5: renaming INBOX moves its messages
    to a new folder ``new`` and INBOX stays; any other folder is renamed with its inferiors."""
    folder, new = check_rename_txn(txn, account_id, old, new)
    modseq = bump_modseq_txn(txn, account_id)
    if folder.name == INBOX:
        dest = create_folder_txn(txn, account_id, new, "mail", None)
        move_messages_txn(txn, account_id, folder.id, live_uids_txn(txn, folder.id), dest.id)
    else:
        rename_tree_txn(txn, account_id, folder, new, modseq)
    return modseq


def list_messages_txn(txn: Txn, folder_id: int) -> list:
    """Ascending by UID; a recovery view's rows not given a UID yet come first with UID 0
    (:class:`store.recovery.RecoveryStore` gives them one and lists again)."""
    scope = scope_of(txn, folder_id)
    rows = txn.execute(f"SELECT {_meta_cols(scope)} FROM messages m WHERE {scope.where} ORDER BY {scope.uid}",
                       scope.args).fetchall()
    return [_meta(r) for r in rows]


def live_uids_txn(txn: Txn, folder_id: int) -> list:
    return [r[0] for r in txn.execute("SELECT uid FROM messages WHERE folder_id = ? AND deleted_at = 0 ORDER BY uid",
                                      (folder_id,)).fetchall()]


def fetch_messages_txn(txn: Txn, folder_id: int, uids, envelope: bool, structure: bool, header: bool) -> list:
    scope = scope_of(txn, folder_id)
    cols = [_meta_cols(scope), "m.blob_id", "m.envelope" if envelope else "NULL",
            "m.structure" if structure else "NULL", "m.header" if header else "NULL"]
    out = []
    for sql, args in scope.chunks(txn, uids):
        for r in txn.execute(f"SELECT {', '.join(cols)} FROM messages m WHERE {sql}", args).fetchall():
            # positional (meta, blob_id, envelope, structure, header): this runs per message
            out.append(MessageRecord(_meta(r), r[6], json.loads(r[7]) if r[7] else None,
                                     json.loads(r[8]) if r[8] else None,
                                     bytes(r[9]) if r[9] is not None else None))
    out.sort(key=lambda m: m.meta.uid)
    return out


def _meta_cols(scope: Scope) -> str:
    """:data:`_META` of ``messages m`` with the scope's UID column."""
    return f"{scope.uid}, m.modseq, m.sysflags, m.keywords, m.internaldate, m.size"


def _uid_chunks(txn: Txn, folder_id: int, uids):
    """``(condition, args)`` naming the live messages of a (real) folder among ``uids``."""
    return Scope("folder_id = ? AND deleted_at = 0", (folder_id,), "uid").chunks(txn, uids)


def changes_since_txn(txn: Txn, folder_id: int, modseq: int) -> Changes:
    # A folder deleted meanwhile still answers: its messages come back as expunged, so a
    # session that had it selected sees them go (rather than an error on every command).
    highest = txn.scalar("SELECT highest_modseq FROM folders WHERE id = ?", (folder_id,))
    if highest is None:
        raise errors.NotFound("folder no longer exists")
    if highest <= modseq:
        return Changes(highest_modseq=highest)
    rows = txn.execute(f"SELECT {_META}, deleted_at FROM messages WHERE folder_id = ? AND modseq > ? ORDER BY uid",
                       (folder_id, modseq)).fetchall()
    updated = [_meta(r) for r in rows if r[6] == 0]
    expunged = [r[0] for r in rows if r[6] != 0]
    return Changes(highest_modseq=highest, updated=updated, expunged=expunged)


def store_flags_txn(txn: Txn, account_id: int, folder_id: int, uids, op: str, flags, unchanged_since) -> tuple:
    if op not in ("add", "remove", "replace"):
        raise errors.InvalidInput(f"bad flag operation {op!r}")
    bits, keywords = encode_flags(flags)
    scope = scope_of(txn, folder_id)
    rows = []
    for sql, args in scope.chunks(txn, uids):
        rows += txn.execute(f"SELECT {_meta_cols(scope)}, m.id FROM messages m WHERE {sql}", args).fetchall()
    rows.sort()
    changes, failed = [], []
    for r in rows:
        uid, old_modseq, old_bits, old_kw = r[0], r[1], r[2], r[3]
        if unchanged_since is not None and old_modseq > unchanged_since:
            failed.append(uid)  # RFC 7162 §3.1.3
            continue
        kw = [k for k in old_kw.split(" ") if k] if old_kw else []
        if op == "add":
            new_bits = old_bits | bits
            new_kw = kw + [k for k in keywords if k not in kw]
        elif op == "remove":
            new_bits = old_bits & ~bits
            new_kw = [k for k in kw if k not in keywords]
        else:
            new_bits, new_kw = bits, list(keywords)
        if new_bits != old_bits or new_kw != kw:
            changes.append((r, new_bits, " ".join(new_kw)[:MAX_KEYWORDS_LEN]))
    updated = []
    if changes and is_view(folder_id):
        # a recovery view's tombstones: their flags only (they come back with them), no modseq
        # (a view has none; the tombstone's modseq is its deletion, which the folder's sync
        # clients were told of)
        txn.executemany("UPDATE messages SET sysflags = ?, keywords = ? WHERE id = ?",
                        [(b, k, r[6]) for r, b, k in changes])
        updated = [MessageMeta(uid=r[0], modseq=r[1], flags=decode_flags(b, k), internaldate=r[4], size=r[5])
                   for r, b, k in changes]
        return StoreResult(updated=updated, failed=failed), None
    if changes:
        modseq = bump_modseq_txn(txn, account_id)
        txn.executemany("UPDATE messages SET sysflags = ?, keywords = ?, modseq = ? WHERE id = ?",
                        [(b, k, modseq, r[6]) for r, b, k in changes])
        touch_folder_txn(txn, folder_id, modseq)
        updated = [MessageMeta(uid=r[0], modseq=modseq, flags=decode_flags(b, k), internaldate=r[4], size=r[5])
                   for r, b, k in changes]
    return StoreResult(updated=updated, failed=failed), (updated[0].modseq if updated else None)


def copy_messages_txn(txn: Txn, account_id: int, folder_id: int, uids, dest_folder_id: int, settings=None):
    src = get_folder_by_id_txn(txn, folder_id)
    dest = get_folder_by_id_txn(txn, dest_folder_id)
    if src.account_id != account_id or dest.account_id != account_id:
        raise errors.NotFound("no such folder")
    rows = []
    for sql, args in _uid_chunks(txn, folder_id, uids):
        rows += txn.execute("SELECT uid, sysflags, keywords, internaldate, size, blob_id, header, envelope, "
                            f"structure, id FROM messages WHERE {sql}", args).fetchall()
    rows.sort()
    if not rows:
        return CopyResult(uidvalidity=dest.uidvalidity, pairs=[]), [], None
    if settings is not None:  # a COPY adds to the usage (a MOVE does not: it passes no settings)
        check_append_quota_txn(txn, account_id, sum(r[4] for r in rows), settings)
    modseq = bump_modseq_txn(txn, account_id)
    first = allocate_uids_txn(txn, dest_folder_id, len(rows))
    txn.executemany(
        "INSERT INTO messages (account_id, folder_id, uid, modseq, created_modseq, sysflags, keywords, "
        "internaldate, size, blob_id, header, envelope, structure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(account_id, dest_folder_id, first + i, modseq, modseq, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
         for i, r in enumerate(rows)])
    touch_folder_txn(txn, dest_folder_id, modseq)
    pairs = [(r[0], first + i) for i, r in enumerate(rows)]
    return CopyResult(uidvalidity=dest.uidvalidity, pairs=pairs), [r[9] for r in rows], modseq


def move_messages_txn(txn: Txn, account_id: int, folder_id: int, uids, dest_folder_id: int):
    result, ids, modseq = copy_messages_txn(txn, account_id, folder_id, uids, dest_folder_id)
    if ids:
        now = int(time.time())
        for part in chunks(ids):
            # a tombstone for sync clients, not a deletion: never listed as recoverable
            txn.execute(f"UPDATE messages SET deleted_at = ?, modseq = ?, moved = 1 WHERE id IN {txn.in_list(part)}",
                        [now, modseq, *part])
        touch_folder_txn(txn, folder_id, modseq)
    return result, modseq


def expunge_txn(txn: Txn, account_id: int, folder_id: int, uids) -> tuple[list, Optional[int]]:
    rows = txn.execute(f"SELECT uid, id FROM messages WHERE folder_id = ? AND deleted_at = 0 AND sysflags & {DELETED} <> 0",
                       (folder_id,)).fetchall()
    if uids is not None:
        wanted = set(int(u) for u in uids)
        rows = [r for r in rows if r[0] in wanted]
    return _soft_delete_txn(txn, account_id, folder_id, rows)


def delete_messages_txn(txn: Txn, account_id: int, folder_id: int, uids) -> tuple[list, Optional[int]]:
    """Soft-delete the live messages among ``uids`` whatever their flags (POP3 DELE)."""
    rows = []
    for sql, args in _uid_chunks(txn, folder_id, uids):
        rows += txn.execute(f"SELECT uid, id FROM messages WHERE {sql}", args).fetchall()
    return _soft_delete_txn(txn, account_id, folder_id, rows)


def _soft_delete_txn(txn: Txn, account_id: int, folder_id: int, rows) -> tuple[list, Optional[int]]:
    """``rows`` are (uid, id) of live messages of the folder."""
    if not rows:
        return [], None
    modseq = bump_modseq_txn(txn, account_id)
    now = int(time.time())
    for part in chunks([r[1] for r in rows]):
        txn.execute(f"UPDATE messages SET deleted_at = ?, modseq = ? WHERE id IN {txn.in_list(part)}",
                    [now, modseq, *part])
    touch_folder_txn(txn, folder_id, modseq)
    return sorted(r[0] for r in rows), modseq


# -- soft-delete lifecycle -------------------------------------------------------------------

def list_deleted_txn(txn: Txn, account_id: int) -> list:
    rows = txn.execute("SELECT m.id, f.name, m.uid, m.deleted_at, m.size, m.envelope FROM messages m "
                       "JOIN folders f ON f.id = m.folder_id WHERE m.account_id = ? AND m.deleted_at > 0 "
                       "AND m.moved = 0 ORDER BY m.deleted_at DESC, m.id", (account_id,)).fetchall()
    out = []
    for r in rows:
        env = json.loads(r[5]) if r[5] else None
        out.append({"id": r[0], "folder": r[1], "uid": r[2], "deleted_at": r[3], "size": r[4],
                    "subject": env[1] if env else None})
    return out


#: the columns of a tombstone :func:`revive_txn` copies into a live row
REVIVE_COLS = ("m.id, m.sysflags, m.keywords, m.internaldate, m.size, m.blob_id, m.header, m.envelope, "
               "m.structure")


def revive_txn(txn: Txn, account_id: int, folder_id: int, rows, modseq: int) -> int:
    """Restored messages: a live copy of each tombstone row (:data:`REVIVE_COLS`) in
    ``folder_id``, with new UIDs in the order given and the flags it had but \\Deleted; the
    old tombstone stays for sync clients and is no longer restorable (``deleted_at`` -1, the
    purge removes it).  Returns the first UID."""
    first = allocate_uids_txn(txn, folder_id, len(rows), modseq)
    txn.executemany(
        "INSERT INTO messages (account_id, folder_id, uid, modseq, created_modseq, sysflags, keywords, "
        "internaldate, size, blob_id, header, envelope, structure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(account_id, folder_id, first + i, modseq, modseq, r[1] & ~DELETED, r[2], r[3], r[4], r[5], r[6], r[7], r[8])
         for i, r in enumerate(rows)])
    for part in chunks([r[0] for r in rows]):
        txn.execute("UPDATE messages SET header = NULL, structure = NULL, envelope = NULL, deleted_at = -1 "
                    f"WHERE id IN {txn.in_list(part)}", part)
    return first


def restore_messages_txn(txn: Txn, account_id: int, message_ids) -> tuple[int, list]:
    """Restored messages get new UIDs (a tombstone row stays behind for sync clients).
    Returns (count, [(folder_id, modseq)])."""
    restore = Restore(txn, account_id)
    modseq = None
    for mid in message_ids:
        row = txn.execute(f"SELECT m.folder_id, f.name, f.deleted_at, f.kind, {REVIVE_COLS} FROM messages m "
                          "JOIN folders f ON f.id = m.folder_id WHERE m.id = ? AND m.account_id = ? "
                          "AND m.deleted_at > 0 AND m.moved = 0", (mid, account_id)).fetchone()
        if row is None:
            continue
        if modseq is None:
            modseq = bump_modseq_txn(txn, account_id)
        folder_id = restore.home(row[0], row[1], row[3], row[2])
        revive_txn(txn, account_id, folder_id, [row[4:]], modseq)
        restore.restored(folder_id, modseq)
    return restore.count, restore.touched


# -- batched reads for the IMAP hot paths (FETCH bodies, SEARCH text), see SqlStore ----------

def fetch_messages_with_data_txn(txn: Txn, folder_id: int, uids, envelope: bool, structure: bool,
                                 header: bool, cached=None) -> tuple[list, dict, dict]:
    """:func:`fetch_messages_txn` and the :func:`blob_data_txn` of its blobs, in one transaction:
    ``(records, {blob id: raw}, {blob id: inline data or None})``.  ``cached(blob_id)`` may give
    the raw bytes of a blob already at hand (second dict); those are not read again."""
    recs = fetch_messages_txn(txn, folder_id, uids, envelope, structure, header)
    have, want = {}, set()
    for r in recs:
        raw = cached(r.blob_id) if cached is not None else None
        if raw is not None:
            have[r.blob_id] = raw
        else:
            want.add(r.blob_id)
    return recs, have, blob_data_txn(txn, want)


def text_sources_txn(txn: Txn, folder_id: int, uids) -> list:
    """``(uid, blob_id, structure JSON or None, inline compressed bytes or None)`` of the live
    messages among ``uids`` (a view's: its recoverable ones), ascending by UID (None bytes: a
    blob file, or a missing blob)."""
    scope = scope_of(txn, folder_id)
    out = []
    for sql, args in scope.chunks(txn, uids):
        for r in txn.execute(f"SELECT {scope.uid}, m.blob_id, m.structure, b.data FROM messages m "
                             f"LEFT JOIN blobs b ON b.id = m.blob_id WHERE {sql}", args).fetchall():
            out.append((r[0], r[1], r[2], bytes(r[3]) if r[3] is not None else None))
    out.sort(key=lambda t: t[0])
    return out


class FileBlobStream(BlobStream):
    """A blob file inflated piece by piece in the CPU pool (store.blobs.BlobReader)."""

    def __init__(self, cpu, reader):
        super().__init__()
        self._cpu = cpu
        self._reader = reader
        self._busy = False  # a read runs in a pool thread: close() waits for it
        self._closing = False

    async def _call(self, fn, n):
        if self._reader is None or self._closing:
            return b""
        self._busy = True
        try:
            return await self._cpu(fn, n)
        finally:
            self._busy = False
            if self._closing:
                self._close_now()

    async def read(self, n: int) -> bytes:
        return await self._call(self._reader.read if self._reader else None, n)

    async def skip(self, n: int) -> None:
        await self._call(self._reader.skip if self._reader else None, n)

    def close(self) -> None:
        self._closing = True
        if not self._busy:
            self._close_now()

    def _close_now(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()


class MessagesStore(StoreCore):
    async def rename_folder(self, account_id, old, new) -> None:
        modseq = await self._run("rename_folder", rename_folder_txn, account_id, old, new)
        self._publish(account_id, None, modseq, "folder")

    async def list_messages(self, folder_id):
        return await self._run("list_messages", list_messages_txn, folder_id)

    async def fetch_messages(self, folder_id, uids, envelope=False, structure=False, header=False):
        return await self._run("fetch_messages", fetch_messages_txn, folder_id, list(uids), envelope,
                               structure, header)

    def _read_inline(self, blob_id: str) -> Optional[bytes]:
        """DB pool thread: the decompressed inline bytes, or None for a blob file."""
        inline = self.db.run_sync("read_blob", inline_blob_txn, blob_id)
        return None if inline is None else self.blobs.decompress(blob_id, inline)

    async def read_blob(self, blob_id) -> bytes:
        raw = await self.db.run_in_pool(self._read_inline, blob_id)
        if raw is not None:
            return raw
        try:
            return await self._cpu(self.blobs.read, blob_id)
        except errors.NotFound:
            log.error("blob %s is referenced but missing from %s", blob_id, self.blobs.root)
            raise

    async def open_blob(self, blob_id) -> BlobStream:
        raw = await self.db.run_in_pool(self._read_inline, blob_id)
        if raw is not None:
            return BlobStream(raw)  # small: inline in the database
        try:
            return FileBlobStream(self._cpu, await self._cpu(self.blobs.open, blob_id))
        except errors.NotFound:
            log.error("blob %s is referenced but missing from %s", blob_id, self.blobs.root)
            raise

    async def changes_since(self, folder_id, modseq):
        return await self._run("changes_since", changes_since_txn, folder_id, modseq)

    async def append_message(self, account_id, folder_id, raw, flags=(), internaldate=None):
        msg = await self._prepare_message(raw)
        uidvalidity, uid, modseq = await self._run("append_message", append_message_txn, account_id, folder_id,
                                                   msg, list(flags), internaldate, self.quota_settings)
        self._publish(account_id, folder_id, modseq)
        return uidvalidity, uid

    async def append_messages(self, account_id, folder_id, messages):
        prepared = []
        for raw, flags, internaldate in messages:  # one at a time: big ones take the big lane
            prepared.append((await self._prepare_message(raw), list(flags), internaldate))
        uidvalidity, uids, modseq = await self._run("append_messages", append_messages_txn, account_id, folder_id,
                                                    prepared, self.quota_settings)
        self._publish(account_id, folder_id, modseq)
        return uidvalidity, uids

    async def store_flags(self, account_id, folder_id, uids, op, flags, unchanged_since=None):
        result, modseq = await self._run("store_flags", store_flags_txn, account_id, folder_id, list(uids), op,
                                         list(flags), unchanged_since)
        self._publish(account_id, folder_id, modseq)
        return result

    async def copy_messages(self, account_id, folder_id, uids, dest_folder_id):
        result, _ids, modseq = await self._run("copy_messages", copy_messages_txn, account_id, folder_id,
                                               list(uids), dest_folder_id, self.quota_settings)
        self._publish(account_id, dest_folder_id, modseq)
        return result

    async def move_messages(self, account_id, folder_id, uids, dest_folder_id):
        result, modseq = await self._run("move_messages", move_messages_txn, account_id, folder_id, list(uids),
                                         dest_folder_id)
        self._publish(account_id, dest_folder_id, modseq)
        self._publish(account_id, folder_id, modseq)
        return result

    async def delete_messages(self, account_id, folder_id, uids):
        deleted, modseq = await self._run("delete_messages", delete_messages_txn, account_id, folder_id,
                                          list(uids))
        self._publish(account_id, folder_id, modseq)
        return deleted

    async def expunge(self, account_id, folder_id, uids=None):
        expunged, modseq = await self._run("expunge", expunge_txn, account_id, folder_id,
                                           None if uids is None else list(uids))
        self._publish(account_id, folder_id, modseq)
        return expunged

    # -- batched reads (IMAP FETCH of bodies, SEARCH BODY/TEXT): one pool hop per batch, not
    # -- one or two per message; the pool-thread side is store/bulk.py --------------------------
    async def read_blobs(self, blob_ids, prefix=None) -> dict:
        ids = list(dict.fromkeys(blob_ids))
        if not ids:
            return {}
        stored = await self._run("read_blobs", blob_data_txn, ids)
        return await self._cpu(bulk.load, self.blobs, self.raw_cache, ids, stored, dict(prefix or {}))

    async def fetch_messages_with_bodies(self, folder_id, uids, envelope=False, structure=False, header=False):
        recs, raws, rest = await self.db.run_in_pool(self._fetch_with_bodies_sync, folder_id, list(uids),
                                                     envelope, structure, header)
        if rest:
            raws.update(await self._cpu(bulk.load, self.blobs, self.raw_cache, list(rest), rest, {}))
        return [(r, raws[r.blob_id]) for r in recs]

    def _fetch_with_bodies_sync(self, folder_id, uids, envelope, structure, header) -> tuple:
        """DB pool thread: the rows and the inline blobs not in the raw cache, in one transaction.
        Inline blobs of a small batch are inflated right here, as read_blob does, so FETCH of one
        small message is one hop; blob files and big batches are left (``rest``) to the CPU pool."""
        cache = self.raw_cache
        recs, raws, stored = self.db.run_sync("fetch_messages_with_bodies", fetch_messages_with_data_txn,
                                              folder_id, uids, envelope, structure, header, cache.get)
        here = sum(len(d) for d in stored.values() if d is not None) <= bulk.INFLATE_ON_DB_THREAD
        rest = {}
        for r in recs:
            blob_id = r.blob_id
            if blob_id in raws or blob_id in rest:
                continue
            data = stored.get(blob_id)
            if data is not None and here:
                raws[blob_id] = cache.put(blob_id, bulk.inflate(blob_id, data))
            else:
                rest[blob_id] = data  # None: a blob file (or a missing blob: NotFound from load)
        return recs, raws, rest

    async def search_text(self, folder_id, uids, needles) -> dict:
        rows = await self._run("search_text", text_sources_txn, folder_id, list(uids))
        if not rows:
            return {}
        return await self._cpu(bulk.scan_text, self.blobs, self.raw_cache, rows, frozenset(needles))
