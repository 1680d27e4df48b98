"""Folders: the ``_txn`` functions.  One tree per account for every kind (mail, calendar,
contacts, tasks); names are full paths separated by ``/`` and ``INBOX`` is spelled exactly so."""

from __future__ import annotations

import time

from store import errors
from store.changelog import bump_modseq_txn
from store.core import StoreCore
from store.engines import IntegrityError, Txn
from store.flags import DELETED, SEEN
from store.interfaces import DELIMITER, FOLDER_KINDS, INBOX, SPECIAL_USES, Folder, FolderStatus
from store.metadata import drop_folder_txn as drop_metadata_txn

#: a folder is subscribed when its name is in mailbox_subscriptions (delta 006), not by its own column
_COLS = ("id, account_id, name, kind, special_use, EXISTS (SELECT 1 FROM mailbox_subscriptions s "
         "WHERE s.account_id = folders.account_id AND s.name = folders.name), uidvalidity, uidnext, highest_modseq, "
         "recent_uid")


def normalize_name(name: str) -> str:
    """``inbox`` in any case is INBOX (RFC 3501 §5.1); so is the first component of its children.
    Refuses empty components, control characters and over-long names."""
    if name is None:
        raise errors.InvalidInput("folder name missing")
    name = name.strip(DELIMITER) if name != DELIMITER else name
    parts = name.split(DELIMITER)
    if not name or any(p == "" for p in parts):
        raise errors.InvalidInput("empty folder name component")
    if any(ord(c) < 0x20 or c == "\x7f" for c in name) or len(name.encode("utf-8")) > 500:
        raise errors.InvalidInput("invalid folder name")
    if parts[0].upper() == INBOX:
        parts[0] = INBOX
    return DELIMITER.join(parts)


def folder_from_row(row) -> Folder:
    return Folder(id=row[0], account_id=row[1], name=row[2], kind=row[3], special_use=row[4],
                  subscribed=bool(row[5]), uidvalidity=row[6], uidnext=row[7], highest_modseq=row[8],
                  recent_uid=row[9] if len(row) > 9 else 0)


def next_uidvalidity_txn(txn: Txn, account_id: int) -> int:
    """Strictly increasing per account, so a folder deleted and recreated under the same name
    never reuses a UIDVALIDITY (RFC 3501 §2.3.1.1)."""
    highest = txn.scalar("SELECT MAX(uidvalidity) FROM folders WHERE account_id = ?", (account_id,)) or 0
    return max(int(time.time()), highest + 1)


def insert_folder_txn(txn: Txn, account_id: int, name: str, kind: str, special_use, uidvalidity: int,
                      subscribe: bool = False) -> int:
    """The folder row (and, with ``subscribe``, its name's subscription); returns its id."""
    if kind not in FOLDER_KINDS:
        raise errors.InvalidInput(f"unknown folder kind {kind!r}")
    if special_use is not None and special_use not in SPECIAL_USES:
        raise errors.InvalidInput(f"unknown special use {special_use!r}")
    try:
        txn.execute("INSERT INTO folders (account_id, name, kind, special_use, uidvalidity) "
                    "VALUES (?, ?, ?, ?, ?)", (account_id, name, kind, special_use, uidvalidity))
    except IntegrityError:
        raise errors.Exists(f"folder {name} already exists") from None
    folder_id = txn.lastrowid
    if subscribe:
        txn.insert_ignore("mailbox_subscriptions", ("account_id", "name"), (account_id, name))
    return folder_id


def list_folders_txn(txn: Txn, account_id: int, kind) -> list:
    sql = f"SELECT {_COLS} FROM folders WHERE account_id = ? AND deleted_at = 0"
    args = [account_id]
    if kind is not None:
        sql += " AND kind = ?"
        args.append(kind)
    rows = txn.execute(sql + " ORDER BY name", args).fetchall()
    return [folder_from_row(r) for r in rows]


def get_folder_txn(txn: Txn, account_id: int, name: str) -> Folder:
    row = txn.execute(f"SELECT {_COLS} FROM folders WHERE account_id = ? AND name = ? AND deleted_at = 0",
                      (account_id, normalize_name(name))).fetchone()
    if row is None:
        raise errors.NotFound(f"no folder {name}")
    return folder_from_row(row)


def get_folder_by_id_txn(txn: Txn, folder_id: int) -> Folder:
    row = txn.execute(f"SELECT {_COLS} FROM folders WHERE id = ? AND deleted_at = 0", (folder_id,)).fetchone()
    if row is None:
        raise errors.NotFound("folder no longer exists")
    return folder_from_row(row)


def create_folder_txn(txn: Txn, account_id: int, name: str, kind: str, special_use) -> Folder:
    name = normalize_name(name)
    if txn.scalar("SELECT COUNT(*) FROM folders WHERE account_id = ? AND name = ? AND deleted_at = 0",
                  (account_id, name)):
        raise errors.Exists(f"folder {name} already exists")
    modseq = bump_modseq_txn(txn, account_id)
    folder_id = insert_folder_txn(txn, account_id, name, kind, special_use, next_uidvalidity_txn(txn, account_id))
    txn.execute("UPDATE folders SET created_modseq = ?, highest_modseq = ? WHERE id = ?", (modseq, modseq, folder_id))
    return get_folder_by_id_txn(txn, folder_id)


def tombstone_time_txn(txn: Txn, account_id: int, name: str) -> int:
    """The ``deleted_at`` for deleting the live folder ``name``: now, or later than an earlier
    tombstone of the same name (deleted, recreated and deleted again within one second must not
    collide on the unique key)."""
    now = int(time.time())
    latest = txn.scalar("SELECT MAX(deleted_at) FROM folders WHERE account_id = ? AND name = ?",
                        (account_id, name)) or 0
    return max(now, latest + 1)


def revive_folder_txn(txn: Txn, account_id: int, name: str, kind: str) -> Folder:
    """For restoring an item whose folder was deleted too: the live folder of that name, or a
    new one of ``kind``.  A live folder of that name but another kind is not a home for it."""
    try:
        folder = get_folder_txn(txn, account_id, name)
    except errors.NotFound:
        return create_folder_txn(txn, account_id, name, kind, None)
    if folder.kind != kind:
        raise errors.Exists(f"{name} is now a {folder.kind} folder")
    return folder


class Restore:
    """What restoring a tombstone of any table shares (messages, calendar and contact items):
    the live folder the item goes back into and the tally the caller publishes after the commit.
    Each table keeps its own copy of the row and its own mark on the old tombstone (a restored
    tombstone stays for sync clients, no longer restorable)."""

    def __init__(self, txn: Txn, account_id: int):
        self.txn, self.account_id = txn, account_id
        self.count = 0
        self.touched: list = []  # (folder_id, modseq) to publish after the commit
        self.refused: list = []  # "id: reason" for the items that could not come back

    def home(self, folder_id: int, name: str, kind: str, folder_deleted_at: int) -> int:
        """The item's own folder, or when that was deleted too the live folder of that name,
        recreated if need be; raises errors.Exists when that name is now another kind of folder."""
        if not folder_deleted_at:
            return folder_id
        return revive_folder_txn(self.txn, self.account_id, name, kind).id

    def refuse(self, item_id: int, reason) -> None:
        self.refused.append(f"{item_id}: {reason}")

    def restored(self, folder_id: int, modseq: int) -> None:
        self.count += 1
        self.touched.append((folder_id, modseq))


def delete_folder_txn(txn: Txn, account_id: int, name: str) -> tuple[Folder, int]:
    folder = get_folder_txn(txn, account_id, name)
    if folder.name == INBOX:
        raise errors.PermissionDenied("INBOX cannot be deleted")
    modseq = bump_modseq_txn(txn, account_id)
    now = tombstone_time_txn(txn, account_id, folder.name)
    txn.execute("UPDATE messages SET deleted_at = ?, modseq = ? WHERE folder_id = ? AND deleted_at = 0",
                (now, modseq, folder.id))
    txn.execute("UPDATE folders SET deleted_at = ?, highest_modseq = ? WHERE id = ?", (now, modseq, folder.id))
    drop_metadata_txn(txn, account_id, folder.id)  # RFC 5464 §3.1: a mailbox's entries go with it
    return folder, modseq


def check_rename_txn(txn: Txn, account_id: int, old: str, new: str) -> tuple[Folder, str]:
    """The folder to rename and the normalized new name; raises NotFound, Exists, InvalidInput."""
    old, new = normalize_name(old), normalize_name(new)
    folder = get_folder_txn(txn, account_id, old)
    if old == new:
        raise errors.Exists(f"folder {new} already exists")
    if txn.scalar("SELECT COUNT(*) FROM folders WHERE account_id = ? AND name = ? AND deleted_at = 0",
                  (account_id, new)):
        raise errors.Exists(f"folder {new} already exists")
    if new.startswith(old + DELIMITER):
        raise errors.InvalidInput("cannot move a folder into itself")
    return folder, new


def rename_tree_txn(txn: Txn, account_id: int, folder: Folder, new: str, modseq: int) -> None:
    """Rename ``folder`` (not INBOX: see :func:`store.messages.rename_folder_txn`) and its
    inferiors to ``new``, creating missing parents of the new name."""
    old = folder.name
    rows = txn.execute("SELECT id, name FROM folders WHERE account_id = ? AND deleted_at = 0 AND "
                       "(name = ? OR name LIKE ? ESCAPE '!')", (account_id, old, _like_prefix(old))).fetchall()
    for folder_id, name in rows:
        target = new + name[len(old):]
        if folder_id != folder.id and txn.scalar(
                "SELECT COUNT(*) FROM folders WHERE account_id = ? AND name = ? AND deleted_at = 0",
                (account_id, target)):
            raise errors.Exists(f"folder {target} already exists")
        txn.execute("UPDATE folders SET name = ?, highest_modseq = ? WHERE id = ?", (target, modseq, folder_id))
        move_subscription_txn(txn, account_id, name, target)
    # Create missing parents of the new name so the tree stays navigable (RFC 3501 §6.3.5).
    parts = new.split(DELIMITER)
    for i in range(1, len(parts)):
        parent = DELIMITER.join(parts[:i])
        if not txn.scalar("SELECT COUNT(*) FROM folders WHERE account_id = ? AND name = ? AND deleted_at = 0",
                          (account_id, parent)):
            create_folder_txn(txn, account_id, parent, folder.kind, None)


def _like_prefix(name: str) -> str:
    escaped = name.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return escaped + DELIMITER + "%"


def move_subscription_txn(txn: Txn, account_id: int, old: str, new: str) -> None:
    """A renamed folder's subscription follows it (as in Dovecot)."""
    txn.execute("DELETE FROM mailbox_subscriptions WHERE account_id = ? AND name = ?", (account_id, old))
    if txn.rowcount:
        txn.insert_ignore("mailbox_subscriptions", ("account_id", "name"), (account_id, new))


def set_subscribed_txn(txn: Txn, account_id: int, name: str, subscribed: bool) -> None:
    name = normalize_name(name)
    if subscribed:
        get_folder_txn(txn, account_id, name)  # NotFound: only a folder can be subscribed to
        txn.insert_ignore("mailbox_subscriptions", ("account_id", "name"), (account_id, name))
        return
    txn.execute("DELETE FROM mailbox_subscriptions WHERE account_id = ? AND name = ?", (account_id, name))
    if not txn.rowcount:
        get_folder_txn(txn, account_id, name)  # NotFound: neither subscribed nor a folder


def list_subscriptions_txn(txn: Txn, account_id: int) -> list:
    return [r[0] for r in txn.execute("SELECT name FROM mailbox_subscriptions WHERE account_id = ? ORDER BY name",
                                      (account_id,)).fetchall()]


def drop_subscriptions_txn(txn: Txn, account_id: int) -> None:
    txn.execute("DELETE FROM mailbox_subscriptions WHERE account_id = ?", (account_id,))


def folder_status_txn(txn: Txn, account_id: int, name: str) -> FolderStatus:
    folder = get_folder_txn(txn, account_id, name)
    row = txn.execute(
        "SELECT COUNT(*), "
        f"COALESCE(SUM(CASE WHEN sysflags & {SEEN} = 0 THEN 1 ELSE 0 END), 0), "
        f"COALESCE(SUM(CASE WHEN sysflags & {DELETED} <> 0 THEN 1 ELSE 0 END), 0), "
        "COALESCE(SUM(size), 0), COALESCE(SUM(CASE WHEN uid > ? THEN 1 ELSE 0 END), 0) "
        "FROM messages WHERE folder_id = ? AND deleted_at = 0", (folder.recent_uid, folder.id)).fetchone()
    return FolderStatus(folder=folder, messages=int(row[0]), unseen=int(row[1]), deleted=int(row[2]),
                        size=int(row[3]), recent=int(row[4]))


def claim_recent_txn(txn: Txn, folder_id: int) -> tuple[int, int]:
    """Raise the folder's ``recent_uid`` to its highest UID; ``(old, new)``.  A compare-and-set,
    so that of two sessions (on any node: MariaDB runs READ COMMITTED, each read sees the last
    commit) claiming at once, one gets the range and the other an empty one or the next."""
    for _attempt in range(100):
        row = txn.execute("SELECT recent_uid, uidnext FROM folders WHERE id = ? AND deleted_at = 0",
                          (folder_id,)).fetchone()
        if row is None:
            raise errors.NotFound("folder no longer exists")
        floor, top = int(row[0]), int(row[1]) - 1
        if top <= floor:
            return floor, floor
        txn.execute("UPDATE folders SET recent_uid = ? WHERE id = ? AND recent_uid = ?", (top, folder_id, floor))
        if txn.rowcount == 1:
            return floor, top
    raise errors.TemporaryFailure("too many sessions claiming recent messages at once")


class FoldersStore(StoreCore):
    """Folder methods (``rename_folder`` is in :class:`store.messages.MessagesStore`: renaming
    INBOX moves messages)."""

    async def list_folders(self, account_id, kind="mail"):
        return await self._run("list_folders", list_folders_txn, account_id, kind)

    async def get_folder(self, account_id, name):
        return await self._run("get_folder", get_folder_txn, account_id, name)

    async def create_folder(self, account_id, name, kind="mail", special_use=None):
        folder = await self._run("create_folder", create_folder_txn, account_id, name, kind, special_use)
        self._publish(account_id, folder.id, folder.highest_modseq, "folder")
        return folder

    async def delete_folder(self, account_id, name) -> None:
        folder, modseq = await self._run("delete_folder", delete_folder_txn, account_id, name)
        self._publish(account_id, folder.id, modseq, "folder")

    async def set_subscribed(self, account_id, name, subscribed) -> None:
        await self._run("set_subscribed", set_subscribed_txn, account_id, name, subscribed)

    async def claim_recent(self, folder_id):
        return await self._run("claim_recent", claim_recent_txn, folder_id)

    async def list_subscriptions(self, account_id):
        return await self._run("list_subscriptions", list_subscriptions_txn, account_id)

    async def folder_status(self, account_id, name):
        return await self._run("folder_status", folder_status_txn, account_id, name)
