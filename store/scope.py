"""Which message rows a folder id names: a real folder's live messages, or a recovery view's
recoverable ones (:mod:`store.recovery`).

A recovery view id (:func:`store.records.recovery_view_id`) is negative, so it can never be a
real folder's: ``-(folder id)`` names what was deleted from that folder (and from every other
folder of the account that had the same name: a folder deleted and made again is one place to
its user); ``-(RECOVERY_ALL + account id)`` names everything recoverable of the account.  A view's UIDs are
``messages.recover_uid``, given out per account in the order messages became recoverable
(:func:`store.recovery.assign_txn`), so they ascend as IMAP requires (RFC 3501 §2.3.1.1).

The read paths (SELECT's list, FETCH, SEARCH, PREVIEW) take a :class:`Scope` and serve views
with the same SQL as folders; writes to a view have their own functions in store/recovery.py.
"""

from __future__ import annotations

from typing import Iterator

from store.engines import Txn, chunks
from store.records import RECOVERY_ALL as VIEW_ALL

#: recoverable: soft-deleted by a user or client, not a MOVE's tombstone, not restored (-1)
RECOVERABLE = "m.deleted_at > 0 AND m.moved = 0"


class Scope:
    """``where``: the condition on ``messages m`` naming the rows; ``uid``: the column that is
    their UID."""

    __slots__ = ("where", "args", "uid")

    def __init__(self, where: str, args: tuple, uid: str):
        self.where, self.args, self.uid = where, args, uid

    def chunks(self, txn: Txn, uids) -> Iterator[tuple]:
        """``(condition, args)`` pairs covering ``uids``: contiguous runs become BETWEEN, the
        rest IN lists, each ANDed with :attr:`where`."""
        uids = sorted(set(int(u) for u in uids))
        if not uids:
            return
        runs, start, prev = [], uids[0], uids[0]
        for u in uids[1:]:
            if u != prev + 1:
                runs.append((start, prev))
                start = u
            prev = u
        runs.append((start, prev))
        for a, b in runs:
            if a != b:
                yield f"{self.where} AND {self.uid} BETWEEN ? AND ?", [*self.args, a, b]
        for part in chunks([a for a, b in runs if a == b], 500):
            yield f"{self.where} AND {self.uid} IN {txn.in_list(part)}", [*self.args, *part]


def scope_of(txn: Txn, folder_id: int) -> Scope:
    if folder_id >= 0:
        return Scope("m.folder_id = ? AND m.deleted_at = 0", (folder_id,), "m.uid")
    if -folder_id > VIEW_ALL:
        return Scope(f"m.account_id = ? AND {RECOVERABLE}", (-folder_id - VIEW_ALL,), "m.recover_uid")
    origin = -folder_id
    account_id = txn.scalar("SELECT account_id FROM folders WHERE id = ?", (origin,))
    # every folder of the account with the origin's name (account_id and deleted_at lead: the
    # messages_account_deleted index finds the tombstones without reading the live rows)
    return Scope(f"m.account_id = ? AND {RECOVERABLE} AND m.folder_id IN (SELECT o.id FROM folders o "
                 "WHERE o.account_id = ? AND o.name = (SELECT f.name FROM folders f WHERE f.id = ?))",
                 (account_id or 0, account_id or 0, origin), "m.recover_uid")
