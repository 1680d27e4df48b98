"""The outbound queue: what SMTP submission accepted for remote recipients, until the spooler
relayed it, it failed for good, or it grew too old.

Invariants
- A message is in the queue (blob written, rows committed) before submission answers 250.
- Each recipient has its own state, attempts and next attempt.  When no recipient is ``queued``
  any more the message is *finished* but stays until the spooler has written the DSN for its
  failed recipients and calls ``finish_outbound``: a crash or a store failure in between can
  delay a bounce, never lose it (finished messages come due again like any other work).
- Taking due work leases it (``next_attempt`` moves ``LEASE`` seconds ahead in the same
  transaction), so two spoolers on one database never relay the same recipient at once, and
  work a crashed spooler had leased comes due again by itself.
- The queue's blob is referenced like a message's: the purge job never frees it under a
  queued message (see ``drop_unreferenced_blobs_txn``).
"""

from __future__ import annotations

import time
from typing import Optional, Sequence

from store import errors
from store.engines import Txn, chunks
from store.changelog import PreparedMessage, drop_unreferenced_blobs_txn, ensure_blob_txn
from store.core import StoreCore
from store.idempotency import new_key, once_txn
from store.interfaces import EXPIRED, FAILED, OUTBOUND_LEASE, QUEUED, SENT, OutboundMessage, OutboundRecipient  # noqa: F401

LEASE = OUTBOUND_LEASE


def enqueue_txn(txn: Txn, account_id: int, mail_from: str, recipients: Sequence[str], msg: PreparedMessage,
                held_until: Optional[int] = None) -> int:
    """Queue ``msg`` for ``recipients``, due now; with ``held_until`` not before then (a
    submission holds what it queued until its local copies are committed, store.submission)."""
    now = int(time.time())
    ensure_blob_txn(txn, msg)
    txn.execute("INSERT INTO outbound_queue (account_id, mail_from, blob_id, size, created_at) VALUES (?, ?, ?, ?, ?)",
                (account_id, mail_from, msg.blob_id, msg.size, now))
    queue_id = txn.lastrowid
    due = now if held_until is None else held_until
    txn.executemany("INSERT INTO outbound_recipients (queue_id, recipient, status, next_attempt, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)", [(queue_id, r, QUEUED, due, now) for r in recipients])
    return queue_id


def enqueue_failed_txn(txn: Txn, account_id: int, mail_from: str, failures: Sequence[tuple],
                       msg: PreparedMessage) -> int:
    """Queue ``msg`` with recipients that already failed for good (``(address, error)``, the
    error status first as the spooler records its own: ``"5.1.1 ..."``): a finished message
    whose DSN the spooler writes at its next scan."""
    now = int(time.time())
    ensure_blob_txn(txn, msg)
    txn.execute("INSERT INTO outbound_queue (account_id, mail_from, blob_id, size, created_at) VALUES (?, ?, ?, ?, ?)",
                (account_id, mail_from, msg.blob_id, msg.size, now))
    queue_id = txn.lastrowid
    txn.executemany("INSERT INTO outbound_recipients (queue_id, recipient, status, attempts, next_attempt, "
                    "last_error, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?)",
                    [(queue_id, r, FAILED, now, error[:1000], now) for r, error in failures])
    return queue_id


def release_txn(txn: Txn, queue_id: int) -> int:
    """Make the queued recipients of a held message due now."""
    now = int(time.time())
    txn.execute("UPDATE outbound_recipients SET next_attempt = ? WHERE queue_id = ? AND status = ?",
                (now, queue_id, QUEUED))
    return txn.rowcount


def _messages(txn: Txn, queue_ids, recipient_rows) -> list:
    by_queue: dict = {}
    for r in recipient_rows:
        by_queue.setdefault(r[1], []).append(_recipient(r))
    out = []
    for part in chunks(sorted(queue_ids)):
        for q in txn.execute("SELECT id, account_id, mail_from, blob_id, size, created_at FROM outbound_queue "
                             f"WHERE id IN {txn.in_list(part)} ORDER BY id", part).fetchall():
            out.append(OutboundMessage(id=q[0], account_id=q[1], mail_from=q[2], blob_id=q[3], size=q[4],
                                       created_at=q[5], recipients=by_queue.get(q[0], [])))
    return out


_RCPT_COLS = "id, queue_id, recipient, status, attempts, next_attempt, last_error, updated_at"


def _recipient(r) -> OutboundRecipient:
    return OutboundRecipient(id=r[0], address=r[2], status=r[3], attempts=r[4], next_attempt=r[5],
                             last_error=r[6], last_attempt=r[7])


def take_due_txn(txn: Txn, now: int, limit: int) -> list:
    """Due recipients grouped by message, leased to the caller; plus finished messages whose
    DSN and removal are due (all their recipients, none queued)."""
    # Two spoolers (two Haven nodes on one MariaDB) may look at the same moment: on MariaDB each
    # takes the rows it locks and skips the ones the other has locked (READ COMMITTED would
    # otherwise let both read them and both lease them, the second UPDATE waiting for the
    # first's commit and then going through: one recipient relayed twice).  SQLite has one
    # writer at a time.  Galera certifies the leases: of two nodes, one commits, the other retries.
    skip = " FOR UPDATE SKIP LOCKED" if txn.engine == "mysql" else ""
    rows = txn.execute(f"SELECT {_RCPT_COLS} FROM outbound_recipients WHERE status = ? AND next_attempt <= ? "
                       "ORDER BY next_attempt, id LIMIT ?" + skip, (QUEUED, now, limit)).fetchall()
    finished = [r[0] for r in txn.execute(
        "SELECT queue_id FROM outbound_recipients GROUP BY queue_id "
        "HAVING SUM(CASE WHEN status = ? THEN 1 ELSE 0 END) = 0 AND MIN(next_attempt) <= ? LIMIT ?",
        (QUEUED, now, limit)).fetchall()]
    for part in chunks(finished):
        rows += txn.execute(f"SELECT {_RCPT_COLS} FROM outbound_recipients WHERE queue_id IN {txn.in_list(part)}"
                            + skip, part).fetchall()
    if not rows:
        return []
    for part in chunks([r[0] for r in rows]):
        txn.execute(f"UPDATE outbound_recipients SET next_attempt = ? WHERE id IN {txn.in_list(part)}",
                    [now + LEASE, *part])
    return _messages(txn, {r[1] for r in rows}, rows)


def record_attempt_txn(txn: Txn, queue_id: int, outcomes: dict) -> list:
    """``outcomes``: recipient id -> (status, error or None, next_attempt or None).  Counts an
    attempt for each.  When no recipient is left queued, returns every recipient's final state
    (and leases the finished message to the caller for its DSN); else []."""
    now = int(time.time())
    for rid, (status, error, next_attempt) in outcomes.items():
        if status not in (QUEUED, SENT, FAILED, EXPIRED):
            raise errors.InvalidInput(f"bad recipient status {status!r}")
        txn.execute("UPDATE outbound_recipients SET status = ?, attempts = attempts + 1, last_error = ?, "
                    "next_attempt = ?, updated_at = ? WHERE id = ? AND queue_id = ?",
                    (status, (error or None) and error[:1000], next_attempt if next_attempt is not None else now,
                     now, rid, queue_id))
    if txn.scalar("SELECT COUNT(*) FROM outbound_recipients WHERE queue_id = ? AND status = ?", (queue_id, QUEUED)):
        return []
    txn.execute("UPDATE outbound_recipients SET next_attempt = ? WHERE queue_id = ?", (now + LEASE, queue_id))
    rows = txn.execute(f"SELECT {_RCPT_COLS} FROM outbound_recipients WHERE queue_id = ? ORDER BY id",
                       (queue_id,)).fetchall()
    return [_recipient(r) for r in rows]


def finish_txn(txn: Txn, queue_id: int) -> list:
    """Remove a message from the queue; returns blob ids no longer referenced."""
    blob_id = txn.scalar("SELECT blob_id FROM outbound_queue WHERE id = ?", (queue_id,))
    if blob_id is None:
        raise errors.NotFound(f"no queued message {queue_id}")
    txn.execute("DELETE FROM outbound_recipients WHERE queue_id = ?", (queue_id,))
    txn.execute("DELETE FROM outbound_queue WHERE id = ?", (queue_id,))
    return drop_unreferenced_blobs_txn(txn, [blob_id])


def list_queue_txn(txn: Txn) -> list:
    rows = txn.execute(f"SELECT {_RCPT_COLS} FROM outbound_recipients ORDER BY queue_id, id").fetchall()
    ids = {r[0] for r in txn.execute("SELECT id FROM outbound_queue").fetchall()}
    return _messages(txn, ids, rows)


def summary_txn(txn: Txn) -> tuple:
    messages, oldest = txn.execute("SELECT COUNT(*), MIN(created_at) FROM outbound_queue").fetchone()
    queued = txn.scalar("SELECT COUNT(*) FROM outbound_recipients WHERE status = ?", (QUEUED,))
    return int(messages or 0), int(queued or 0), oldest


def get_queued_txn(txn: Txn, queue_id: int) -> OutboundMessage:
    rows = txn.execute(f"SELECT {_RCPT_COLS} FROM outbound_recipients WHERE queue_id = ? ORDER BY id",
                       (queue_id,)).fetchall()
    found = _messages(txn, [queue_id], rows)
    if not found:
        raise errors.NotFound(f"no queued message {queue_id}")
    return found[0]


def retry_txn(txn: Txn, queue_id: Optional[int]) -> int:
    """Make queued recipients due now; returns how many are queued (MariaDB's rowcount leaves
    out rows that were due already, in the same second)."""
    now = int(time.time())
    if queue_id is None:
        where, args = "status = ?", (QUEUED,)
    else:
        get_queued_txn(txn, queue_id)
        where, args = "status = ? AND queue_id = ?", (QUEUED, queue_id)
    txn.execute(f"UPDATE outbound_recipients SET next_attempt = ? WHERE {where}", (now, *args))
    return txn.scalar(f"SELECT COUNT(*) FROM outbound_recipients WHERE {where}", args)


def delete_queued_txn(txn: Txn, queue_id: int) -> list:
    """Drop a message from the queue without a DSN (admin); returns unreferenced blob ids."""
    get_queued_txn(txn, queue_id)
    return finish_txn(txn, queue_id)


class OutboundStore(StoreCore):

    async def enqueue_outbound(self, account_id: int, mail_from: str, recipients: Sequence[str], raw: bytes) -> int:
        msg = await self._prepare_message(raw)
        return await self._run("enqueue_outbound", once_txn, new_key(), enqueue_txn, account_id, mail_from,
                               list(recipients), msg)

    async def take_due_outbound(self, limit: int = 50) -> list:
        return await self._run("take_due_outbound", take_due_txn, int(time.time()), limit)

    async def record_outbound_attempt(self, queue_id: int, outcomes: dict) -> list:
        return await self._run("record_outbound_attempt", record_attempt_txn, queue_id, outcomes)

    async def finish_outbound(self, queue_id: int) -> None:
        gone = await self._run("finish_outbound", finish_txn, queue_id)
        await self._delete_blob_files(gone)

    async def list_outbound(self) -> list:
        return await self._run("list_outbound", list_queue_txn)

    async def outbound_summary(self) -> tuple:
        return await self._run("outbound_summary", summary_txn)

    async def get_outbound(self, queue_id: int) -> OutboundMessage:
        return await self._run("get_outbound", get_queued_txn, queue_id)

    async def retry_outbound(self, queue_id: Optional[int] = None) -> int:
        return await self._run("retry_outbound", retry_txn, queue_id)

    async def delete_outbound(self, queue_id: int) -> None:
        gone = await self._run("delete_outbound", delete_queued_txn, queue_id)
        await self._delete_blob_files(gone)
