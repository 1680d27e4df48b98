"""``Recovered Items``: the account's soft-deleted messages as mailboxes, so a user gets a
deleted message back from any IMAP client without asking the admin (Exchange's "Recover
Deleted Items", Zarafa's softdelete).  The store's recovery views (store/recovery.py) do the
work; this module names them and keeps a selected one up to date.

Names (``[imap] recovered_items``, default ``Recovered Items``; empty: none):

    Recovered Items              everything recoverable, from every folder
    Recovered Items/INBOX        what was deleted from INBOX
    Recovered Items/Archive/2024 what was deleted from Archive/2024

LIST shows the root and a child for each folder that recoverable messages were deleted from
(and the levels above it), always as subscribed (so clients that show subscribed folders only,
Thunderbird's default, show them) and with no special-use attribute (RFC 6154 has none for
this).  A child can be selected by the name of any mail folder the account has or had, even
when nothing is recoverable from it.  An account with a real folder of the root's name keeps
it, and has no recovery mailboxes.

What a client can do in them:
- SELECT (read-write, so a client may flag and expunge), EXAMINE, FETCH, SEARCH, SORT, THREAD;
  flags set here are the ones a restored message comes back with;
- COPY or MOVE out restores: the message goes into the target with a new UID there, its flags
  kept but \\Deleted, and leaves the recovery mailbox (it was recoverable once);
- STORE \\Deleted and EXPUNGE removes messages for good, at once;
- CREATE, DELETE, RENAME, APPEND and COPY/MOVE into them are refused with NO [CANNOT].

A recovery mailbox has no modseqs: SELECT answers ``[NOMODSEQ]`` (RFC 7162 §3.1.2.2), so a
CONDSTORE client resynchronizes it by flags, and MODSEQ, CHANGEDSINCE, UNCHANGEDSINCE and
SEARCH MODSEQ there are BAD.  A selected one notices changes by listing the view again when
any change of the account is published (deletes anywhere add to it), not by a change log.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from store import errors
from store.interfaces import Changes, is_recovery_view

from .session import SelectedMailbox

DEFAULT_NAME = "Recovered Items"


class RecoveredItems:
    """The names of one service's recovery mailboxes (``root``: "" when switched off)."""

    def __init__(self, root: str):
        self.root = root.strip().strip("/")

    def origin(self, name: str) -> tuple[bool, Optional[str]]:
        """``(is a recovery name, the folder it recovers from or None for all)``."""
        root = self.root
        if not root:
            return False, None
        if name == root:
            return True, None
        if name.startswith(root + "/") and len(name) > len(root) + 1:
            return True, name[len(root) + 1:]
        return False, None

    def covers(self, name: str) -> bool:
        return self.origin(name)[0]

    async def _shadowed(self, store, account_id: int) -> bool:
        """A real folder of the root's name wins over the recovery mailboxes."""
        try:
            await store.get_folder(account_id, self.root)
        except errors.NotFound:
            return False
        return True

    async def folder(self, store, account_id: int, name: str):
        """The view's Folder (named ``name``) when ``name`` is a recovery mailbox, else None."""
        ok, origin = self.origin(name)
        if not ok or await self._shadowed(store, account_id):
            return None
        try:
            view = await store.recovery_view(account_id, origin)
        except errors.NotFound:
            return None
        return replace(view, name=name)

    async def listed(self, store, account_id: int, folders: set) -> list:
        """The Folders LIST shows: the root, a child per folder messages were deleted from, and
        the children of the levels above those that are folders of ``folders`` (the names of
        the account's folders; other levels LIST shows as it shows any level without a
        mailbox).  Their ids are the root's: LIST only names them."""
        if not self.root or self.root in folders:  # a real folder of that name wins
            return []
        root = await store.recovery_view(account_id, None)
        names = set()
        for origin in await store.recoverable_origins(account_id):
            names.add(origin)
            parts = origin.split("/")
            names.update(p for p in ("/".join(parts[:i]) for i in range(1, len(parts))) if p in folders)
        return [replace(root, name=self.root)] + [replace(root, name=f"{self.root}/{n}") for n in sorted(names)]

    async def status(self, store, account_id: int, name: str):
        ok, origin = self.origin(name)
        st = await store.recovery_status(account_id, origin)
        return replace(st, folder=replace(st.folder, name=name))


class RecoverySelected(SelectedMailbox):
    """A selected recovery mailbox: no modseqs, no \\Recent; a sync lists the view again and
    reports the difference (new messages as EXISTS, restored or removed ones as EXPUNGE, flag
    changes as FETCH)."""

    view = True

    def __init__(self, folder, readonly: bool, metas: list):
        super().__init__(folder, readonly, metas, track_recent=False)

    def wants(self, event) -> bool:
        return True  # a delete in any folder of the account may add to the view

    async def changes(self, store):
        metas = await store.list_messages(self.folder.id)
        present = {m.uid for m in metas}
        updated = [m for m in metas if self.metas.get(m.uid) != m]
        return Changes(highest_modseq=0, updated=updated, expunged=[u for u in self.uids if u not in present])

    def pushed(self, changes, modseq, marks, claimed, condstore, qresync):
        return None  # no shared change log for a view: each session lists it

    def report(self, changes, allow_expunge: bool, condstore: bool, qresync: bool) -> bytes:
        return super().report(changes, allow_expunge, False, qresync)  # no MODSEQ in a view

    def fetch_line(self, seq: int, meta, condstore: bool) -> bytes:
        return super().fetch_line(seq, meta, False)


def is_recovery(folder) -> bool:
    return is_recovery_view(folder.id)
