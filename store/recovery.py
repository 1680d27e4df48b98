"""Recovery views: an account's recoverable messages as read-only folders a user opens with any
IMAP client (gateways/imap shows them as ``Recovered Items`` and one child per folder), the
self-service side of ``haven recover``.

A view (ids in :mod:`store.scope`) goes through the ordinary folder methods of the store:
``list_messages``, ``fetch_messages(_with_bodies)``, ``search_text``, ``text_matches`` and
``message_previews`` read it with the SQL of a folder; the writes mean what a user of a
"Recover Deleted Items" folder expects:

- ``store_flags`` sets the flags of the tombstones (they come back with them), with no modseq;
- ``copy_messages`` and ``move_messages`` out of a view restore the messages into the target
  folder (new UIDs there, flags kept but \\Deleted): they leave the view either way, as each
  tombstone is restored once;
- ``expunge`` in a view removes the messages flagged \\Deleted for good, at once (rows and,
  when nothing else holds them, blobs: what the purge job does after ``softdelete_lifetime``);
- APPEND, COPY/MOVE into a view and POP3's delete are refused (PermissionDenied).

Invariants
- A view's UIDs (``messages.recover_uid``) are given out per account in the order messages
  became recoverable, lazily: the first listing after a delete numbers the new tombstones
  (:func:`assign_txn`) above every UID given before, so a client that knows UIDNEXT sees new
  ones arrive above it.  UIDVALIDITY is the account's creation time.
- A view has no modseqs (IMAP answers NOMODSEQ): a session notices changes by listing again.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Optional

from store import errors
from store.changelog import bump_modseq_txn, drop_unreferenced_blobs_txn
from store.engines import Txn, chunks
from store.flags import DELETED
from store.folders import get_folder_by_id_txn
from store.interfaces import Changes, CopyResult, Folder, FolderStatus
from store.messages import REVIVE_COLS, MessagesStore, revive_txn, store_flags_txn
from store.quota import check_append_quota_txn
from store.records import is_recovery_view as is_view
from store.records import recovery_view_id as view_id
from store.scope import RECOVERABLE, scope_of

log = logging.getLogger("haven.store")


def assign_txn(txn: Txn, account_id: int) -> None:
    """Give the account's recoverable messages that have no view UID one, in the order they
    were deleted, above every UID given before.  Two at once: the UPDATE's ``recover_uid = 0``
    leaves the rows the first one numbered alone (numbers the second reserved stay unused)."""
    ids = [r[0] for r in txn.execute(f"SELECT m.id FROM messages m WHERE m.account_id = ? AND {RECOVERABLE} "
                                     "AND m.recover_uid = 0 ORDER BY m.modseq, m.id", (account_id,)).fetchall()]
    if not ids:
        return
    top = txn.increment("accounts", "recover_uidnext", len(ids), "id = ?", (account_id,))
    if top is None:
        raise errors.NotFound("no such account")
    first = top - len(ids)
    numbered = list(zip(ids, range(first, top)))
    for part in chunks(numbered, 400):
        case = " ".join("WHEN ? THEN ?" for _ in part)
        txn.execute(f"UPDATE messages SET recover_uid = CASE id {case} END WHERE id IN {txn.in_list(part)} "
                    "AND recover_uid = 0", [v for pair in part for v in pair] + [i for i, _ in part])


def view_folder_txn(txn: Txn, account_id: int, origin: Optional[str]) -> Folder:
    row = txn.execute("SELECT created_at, recover_uidnext FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise errors.NotFound("no such account")
    if origin is None:
        folder_id = view_id(account_id)
    else:
        # the live folder of that name, else the one deleted last
        found = txn.execute("SELECT id FROM folders WHERE account_id = ? AND name = ? AND kind = 'mail' "
                            "ORDER BY CASE WHEN deleted_at = 0 THEN 0 ELSE 1 END, deleted_at DESC",
                            (account_id, origin)).fetchone()
        if found is None:
            raise errors.NotFound(f"no folder {origin} to recover from")
        folder_id = view_id(account_id, found[0])
    return Folder(id=folder_id, account_id=account_id, name=origin or "", kind="mail", special_use=None,
                  subscribed=True, uidvalidity=int(row[0]) or 1, uidnext=int(row[1]), highest_modseq=0)


def origins_txn(txn: Txn, account_id: int) -> list:
    return sorted(r[0] for r in txn.execute(f"SELECT DISTINCT f.name FROM messages m JOIN folders f "
                                            f"ON f.id = m.folder_id WHERE m.account_id = ? AND {RECOVERABLE}",
                                            (account_id,)).fetchall())


def _account_of(scope_args: tuple) -> int:
    return int(scope_args[0])  # every view scope starts with its account (store.scope.scope_of)


def restore_into_txn(txn: Txn, account_id: int, folder_id: int, uids, dest_folder_id: int, settings=None):
    """COPY/MOVE out of a view: the tombstones among ``uids`` come back into the destination in
    view-UID order.  Returns ``(CopyResult, modseq or None)``."""
    scope = scope_of(txn, folder_id)
    if _account_of(scope.args) != account_id:
        raise errors.NotFound("no such folder")
    if is_view(dest_folder_id):
        raise errors.PermissionDenied("Recovered messages cannot be copied into a recovery folder")
    dest = get_folder_by_id_txn(txn, dest_folder_id)
    if dest.account_id != account_id or dest.kind != "mail":
        raise errors.NotFound("no such folder")
    rows = []
    for sql, args in scope.chunks(txn, uids):
        rows += txn.execute(f"SELECT {scope.uid}, {REVIVE_COLS} FROM messages m WHERE {sql}", args).fetchall()
    rows.sort()
    if not rows:
        return CopyResult(uidvalidity=dest.uidvalidity, pairs=[]), None
    if settings is not None:
        check_append_quota_txn(txn, account_id, sum(r[5] for r in rows), settings)
    modseq = bump_modseq_txn(txn, account_id)
    first = revive_txn(txn, account_id, dest_folder_id, [r[1:] for r in rows], modseq)
    return CopyResult(uidvalidity=dest.uidvalidity, pairs=[(r[0], first + i) for i, r in enumerate(rows)]), modseq


def purge_view_txn(txn: Txn, account_id: int, folder_id: int, uids) -> tuple[list, list, int]:
    """EXPUNGE in a view: remove the tombstones flagged \\Deleted (only those among ``uids``
    when given) and the blobs nothing else references.  Returns ``(view UIDs removed, blob
    ids to delete after the commit, the account's modseq for the push event)``."""
    scope = scope_of(txn, folder_id)
    if _account_of(scope.args) != account_id:
        raise errors.NotFound("no such folder")
    rows = txn.execute(f"SELECT {scope.uid}, m.id, m.blob_id FROM messages m WHERE {scope.where} "
                       f"AND m.sysflags & {DELETED} <> 0", scope.args).fetchall()
    if uids is not None:
        wanted = set(int(u) for u in uids)
        rows = [r for r in rows if r[0] in wanted]
    for part in chunks([r[1] for r in rows]):
        txn.execute(f"DELETE FROM messages WHERE id IN {txn.in_list(part)}", part)
    gone = drop_unreferenced_blobs_txn(txn, {r[2] for r in rows}) if rows else []
    modseq = txn.scalar("SELECT highest_modseq FROM accounts WHERE id = ?", (account_id,)) or 0
    return sorted(r[0] for r in rows), gone, int(modseq)


def _read_only(what: str):
    raise errors.PermissionDenied(f"{what}: recovered messages are read-only; copy or move them out to restore")


class RecoveryStore(MessagesStore):
    """The view side of the folder methods; real folders go on to :class:`MessagesStore`."""

    async def recovery_view(self, account_id, origin=None):
        return await self._run("recovery_view", view_folder_txn, account_id, origin)

    async def recoverable_origins(self, account_id):
        return await self._run("recoverable_origins", origins_txn, account_id)

    async def recovery_status(self, account_id, origin=None):
        folder = await self.recovery_view(account_id, origin)
        metas = await self.list_messages(folder.id)
        if metas:  # numbered by the listing: UIDNEXT is above them
            folder = replace(folder, uidnext=max(folder.uidnext, metas[-1].uid + 1))
        return FolderStatus(folder=folder, messages=len(metas),
                            unseen=sum(1 for m in metas if "\\Seen" not in m.flags),
                            deleted=sum(1 for m in metas if "\\Deleted" in m.flags),
                            size=sum(m.size for m in metas))

    async def list_messages(self, folder_id):
        metas = await super().list_messages(folder_id)
        if is_view(folder_id) and metas and metas[0].uid == 0:
            await self._run("recovery_assign", self._assign_for, folder_id)
            metas = await super().list_messages(folder_id)
        return metas

    @staticmethod
    def _assign_for(txn: Txn, folder_id: int) -> None:
        assign_txn(txn, _account_of(scope_of(txn, folder_id).args))

    async def changes_since(self, folder_id, modseq):
        if is_view(folder_id):
            return Changes(highest_modseq=0)  # no modseqs: sessions list the view again
        return await super().changes_since(folder_id, modseq)

    async def claim_recent(self, folder_id):
        if is_view(folder_id):
            return 0, 0  # nothing in a view is \\Recent
        return await super().claim_recent(folder_id)

    async def store_flags(self, account_id, folder_id, uids, op, flags, unchanged_since=None):
        if not is_view(folder_id):
            return await super().store_flags(account_id, folder_id, uids, op, flags, unchanged_since)
        result, _modseq = await self._run("store_flags_view", store_flags_txn, account_id, folder_id, list(uids), op,
                                          list(flags), None)
        return result

    async def copy_messages(self, account_id, folder_id, uids, dest_folder_id):
        if is_view(folder_id):
            return await self._restore_into(account_id, folder_id, uids, dest_folder_id)
        if is_view(dest_folder_id):
            _read_only("COPY")
        return await super().copy_messages(account_id, folder_id, uids, dest_folder_id)

    async def move_messages(self, account_id, folder_id, uids, dest_folder_id):
        if is_view(folder_id):
            return await self._restore_into(account_id, folder_id, uids, dest_folder_id)
        if is_view(dest_folder_id):
            _read_only("MOVE")
        return await super().move_messages(account_id, folder_id, uids, dest_folder_id)

    async def _restore_into(self, account_id, folder_id, uids, dest_folder_id):
        result, modseq = await self._run("restore_into", restore_into_txn, account_id, folder_id, list(uids),
                                         dest_folder_id, self.quota_settings)
        if result.pairs:
            log.info("account %d: %d recovered messages restored into folder %d", account_id, len(result.pairs),
                     dest_folder_id)
        self._publish(account_id, dest_folder_id, modseq)
        return result

    async def expunge(self, account_id, folder_id, uids=None):
        if not is_view(folder_id):
            return await super().expunge(account_id, folder_id, uids)
        removed, gone, modseq = await self._run("purge_view", purge_view_txn, account_id, folder_id,
                                                None if uids is None else list(uids))
        await self._delete_blob_files(gone)
        if removed:
            log.info("account %d: %d recovered messages removed for good", account_id, len(removed))
            self._publish(account_id, folder_id, modseq)
        return removed

    async def delete_messages(self, account_id, folder_id, uids):
        if is_view(folder_id):
            _read_only("delete")
        return await super().delete_messages(account_id, folder_id, uids)

    async def append_message(self, account_id, folder_id, raw, flags=(), internaldate=None):
        if is_view(folder_id):
            _read_only("APPEND")
        return await super().append_message(account_id, folder_id, raw, flags, internaldate)

    async def append_messages(self, account_id, folder_id, messages):
        if is_view(folder_id):
            _read_only("APPEND")
        return await super().append_messages(account_id, folder_id, messages)
