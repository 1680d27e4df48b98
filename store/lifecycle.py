"""The soft-delete lifecycle across every table: recoverable items and their restore, the
purge job, and the removal of a whole account.

Invariants
- Nothing a user deletes is removed at once: expunge, DELE and DAV DELETE leave tombstones
  (``deleted_at`` and the modseq set) that clients see as deletions and the admin (and later
  the user) can restore until the purge removes them after ``softdelete_lifetime`` days.
- A restored item comes back as a new row (messages get new UIDs); its tombstone stays for sync
  clients and is no longer restorable.
- Blob rows and files go only when nothing references them (:mod:`store.changelog`); files are
  deleted after the commit that dropped their rows.  Blob files whose row never committed are
  swept after ``ORPHAN_GRACE``.
"""

from __future__ import annotations

import logging
import time

from store import accounts, activesync, authfail, dav, messages, metadata, rates, sievestore
from store.changelog import drop_unreferenced_blobs_txn, known_blob_ids_txn
from store.core import StoreCore
from store.engines import Txn, chunks
from store.folders import drop_subscriptions_txn
from store.idempotency import prune_keys_txn
from store.interfaces import PurgeReport

log = logging.getLogger("haven.store")

#: orphan blob files (written, but whose row never committed) older than this are swept
ORPHAN_GRACE = 3600


def delete_account_txn(txn: Txn, address: str) -> list:
    """Deletes the account's rows; returns the blob ids it referenced (for the caller to sweep)."""
    account = accounts.get_account_txn(txn, address)
    blob_ids = [r[0] for r in txn.execute("SELECT DISTINCT blob_id FROM messages WHERE account_id = ?",
                                          (account.id,)).fetchall()]
    txn.execute("DELETE FROM messages WHERE account_id = ?", (account.id,))
    dav.drop_account_txn(txn, account.id)
    sievestore.drop_account_txn(txn, account.id)
    authfail.drop_account_txn(txn, account.id)
    metadata.drop_account_txn(txn, account.id)
    activesync.drop_account_txn(txn, account.id)
    drop_subscriptions_txn(txn, account.id)
    txn.execute("DELETE FROM folders WHERE account_id = ?", (account.id,))
    txn.execute("DELETE FROM aliases WHERE account_id = ?", (account.id,))
    txn.execute("DELETE FROM accounts WHERE id = ?", (account.id,))
    return drop_unreferenced_blobs_txn(txn, blob_ids)


def purge_account_txn(txn: Txn, address: str, cutoff: int):
    """Remove a deleted account if it still is deleted since before ``cutoff`` (a restore may
    have come between the purge's listing and now); returns the blob ids to sweep, None when
    it was left alone."""
    deleted_at = txn.scalar("SELECT deleted_at FROM accounts WHERE address = ?", (address,))
    if not deleted_at or deleted_at >= cutoff:
        return None
    return delete_account_txn(txn, address)


def purge_messages_txn(txn: Txn, cutoff: int) -> tuple[int, int, list]:
    """Remove tombstones deleted before ``cutoff`` (Unix time), and deleted folders that hold no
    rows any more.  Returns (deleted messages removed, folders, blob ids no longer referenced).
    Restored tombstones (deleted_at = -1) go at once; they and the tombstones a MOVE left are
    removed but not counted: their message lives on elsewhere."""
    rows = txn.execute("SELECT id, blob_id, CASE WHEN deleted_at > 0 AND moved = 0 THEN 1 ELSE 0 END FROM messages "
                       "WHERE (deleted_at <> 0 AND deleted_at < ?) OR deleted_at = -1", (cutoff,)).fetchall()
    for part in chunks([r[0] for r in rows]):
        txn.execute(f"DELETE FROM messages WHERE id IN {txn.in_list(part)}", part)
    folders = txn.execute("SELECT id FROM folders f WHERE deleted_at <> 0 AND deleted_at < ? AND NOT EXISTS "
                          "(SELECT 1 FROM messages m WHERE m.folder_id = f.id) AND NOT EXISTS "
                          "(SELECT 1 FROM dav_items i WHERE i.folder_id = f.id)", (cutoff,)).fetchall()
    for part in chunks([r[0] for r in folders]):
        txn.execute(f"DELETE FROM folders WHERE id IN {txn.in_list(part)}", part)
    dav.drop_folder_rows_txn(txn, [r[0] for r in folders])
    activesync.drop_collections_txn(txn, [r[0] for r in folders])
    blobs = drop_unreferenced_blobs_txn(txn, {r[1] for r in rows})
    return sum(r[2] for r in rows), len(folders), blobs


class LifecycleStore(StoreCore):
    async def delete_account(self, address) -> None:
        gone = await self._run("delete_account", delete_account_txn, accounts.normalize_address(address))
        await self._delete_blob_files(gone)

    async def list_deleted(self, account_id):
        return await self._run("list_deleted", messages.list_deleted_txn, account_id)

    async def restore_messages(self, account_id, message_ids):
        count, touched = await self._run("restore_messages", messages.restore_messages_txn, account_id, list(message_ids))
        for folder_id, modseq in touched:
            self._publish(account_id, folder_id, modseq)
        return count

    async def list_deleted_dav(self, account_id, kinds=None):
        return await self._run("list_deleted_dav", dav.list_deleted_txn, account_id, kinds)

    async def deleted_dav_items(self, account_id, item_ids):
        return await self._run("deleted_dav_items", dav.deleted_items_txn, account_id, list(item_ids))

    async def deleted_dav_changes(self, account_id, kind, since):
        return await self._run("deleted_dav_changes", dav.deleted_changes_since_txn, account_id, [kind], since)

    async def restore_dav(self, account_id, item_ids) -> tuple:
        """(restored count, reasons for the ones that could not come back)."""
        count, touched, refused = await self._run("restore_dav", dav.restore_items_txn, account_id, list(item_ids))
        for folder_id, modseq in touched:
            self._publish(account_id, folder_id, modseq, "dav")
        return count, refused

    async def purge(self, older_than_days=None) -> PurgeReport:
        days = self.softdelete_lifetime if older_than_days is None else older_than_days
        if days <= 0 and older_than_days is None:
            messages = folders = dav_items = removed = 0
            gone = []
        else:
            cutoff = int(time.time() - days * 86400) if days > 0 else int(time.time()) + 1
            removed, gone = await self._purge_accounts(cutoff)
            dav_items = await self._run("purge_dav", dav.purge_txn, cutoff)
            messages, folders, more = await self._run("purge", purge_messages_txn, cutoff)
            gone += more
        await self._run("purge_vacation", sievestore.purge_vacation_txn, int(time.time()))
        await self._run("purge_idempotency_keys", prune_keys_txn, int(time.time()))
        await self._run("purge_activesync_client_ids", activesync.prune_client_ids_txn, int(time.time()))
        await self._run("purge_submission_counts", rates.prune_txn, time.time())
        orphans = await self._sweep_orphans()
        await self._delete_blob_files(gone)
        report = PurgeReport(messages=messages, folders=folders, blobs=len(gone) + orphans, dav_items=dav_items,
                             accounts=removed)
        if messages or folders or report.blobs or dav_items or removed:
            log.info("purge: %d accounts, %d messages, %d calendar/contact items, %d folders, %d blobs removed",
                     removed, messages, dav_items, folders, report.blobs)
        return report

    async def _purge_accounts(self, cutoff: int) -> tuple:
        """(accounts removed, their blob ids to sweep): each deleted account in a transaction
        of its own, as ``haven user del --now`` removes one."""
        removed, gone = 0, []
        for address in await self._run("deleted_accounts", accounts.deleted_before_txn, cutoff):
            blobs = await self._run("purge_account", purge_account_txn, address, cutoff)
            if blobs is not None:
                log.info("purge: account %s removed (deleted past softdelete_lifetime)", address)
                removed += 1
                gone += blobs
        return removed, gone

    async def _sweep_orphans(self) -> int:
        """Blob files whose row never committed (a delivery failed after writing its blob), and
        temporary files a crash left in the middle of a blob write."""
        cutoff = time.time() - ORPHAN_GRACE

        def scan():
            self.blobs.sweep_temporary(cutoff)
            return [b for b, mtime in self.blobs.all_ids() if mtime < cutoff]
        candidates = await self._cpu(scan)
        if not candidates:
            return 0
        known = await self._run("known_blobs", known_blob_ids_txn, candidates)
        orphans = [b for b in candidates if b not in known]
        await self._delete_blob_files(orphans)
        return len(orphans)
