"""Submission rate limits: messages and recipients an account may submit per hour.

Invariants
- Counted in ``submission_counts`` (one row per account and minute), so every node on one
  database shares the count; the hour is the sliding sum of the last 60 minutes.
- Keyed by account: a submission's sender (its own address, ``+detail``, an alias) always
  resolves to the authenticated account, so the per-sender limit is the account's and aliases
  share its counter.
- :func:`charge_txn` adds a message to the current minute *first* (the row lock serialises two
  nodes charging the same account) and then checks the sum; over the limit it raises
  :class:`~store.errors.RateLimited` and its transaction rolls back, so nothing is counted.
- 0 = unlimited.
"""

from __future__ import annotations

from store import errors
from store.engines import Txn
from store.settings import RateSettings

#: the window of a "per hour" limit, in minutes (one counter row per minute)
WINDOW_MINUTES = 60
#: rows older than this many minutes are pruned by the purge job
KEEP_MINUTES = 2 * WINDOW_MINUTES


def usage_txn(txn: Txn, account_id: int, now: float) -> tuple:
    """``(messages, recipients)`` the account submitted in the last hour."""
    row = txn.execute("SELECT COALESCE(SUM(messages), 0), COALESCE(SUM(recipients), 0) FROM submission_counts "
                      "WHERE account_id = ? AND minute > ?", (account_id, int(now // 60) - WINDOW_MINUTES)).fetchone()
    return int(row[0]), int(row[1])


def check(limits: RateSettings, used: tuple, messages: int, recipients: int) -> None:
    """RateLimited when ``used`` plus ``messages`` and ``recipients`` more is over a limit."""
    sent, rcpts = used
    if limits.max_messages_per_hour and sent + messages > limits.max_messages_per_hour:
        raise errors.RateLimited(f"the account sent {sent} messages in the last hour "
                                 f"(limit {limits.max_messages_per_hour}); try again later")
    if limits.max_recipients_per_hour and rcpts + recipients > limits.max_recipients_per_hour:
        raise errors.RateLimited(f"the account sent to {rcpts} recipients in the last hour "
                                 f"(limit {limits.max_recipients_per_hour}); try again later")


def reached(limits: RateSettings, used: tuple) -> bool:
    """Whether ``used`` is at a limit (the next message or recipient would be refused)."""
    return bool((limits.max_messages_per_hour and used[0] >= limits.max_messages_per_hour)
                or (limits.max_recipients_per_hour and used[1] >= limits.max_recipients_per_hour))


def add_txn(txn: Txn, account_id: int, minute: int, messages: int, recipients: int) -> None:
    if txn.engine == "sqlite":
        txn.execute("INSERT INTO submission_counts (account_id, minute, messages, recipients) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (account_id, minute) DO UPDATE SET messages = messages + excluded.messages, "
                    "recipients = recipients + excluded.recipients", (account_id, minute, messages, recipients))
    else:
        txn.execute("INSERT INTO submission_counts (account_id, minute, messages, recipients) VALUES (?, ?, ?, ?) "
                    "ON DUPLICATE KEY UPDATE messages = messages + VALUES(messages), "
                    "recipients = recipients + VALUES(recipients)", (account_id, minute, messages, recipients))


def charge_txn(txn: Txn, account_id: int, recipients: int, now: float, limits: RateSettings) -> tuple:
    """Count one message to ``recipients`` recipients; RateLimited (nothing counted) when that
    goes over a limit.  Returns ``(minute charged, usage after)``."""
    minute = int(now // 60)
    add_txn(txn, account_id, minute, 1, recipients)
    after = usage_txn(txn, account_id, now)
    check(limits, (after[0] - 1, after[1] - recipients), 1, recipients)
    return minute, after


def prune_txn(txn: Txn, now: float) -> int:
    txn.execute("DELETE FROM submission_counts WHERE minute < ?", (int(now // 60) - KEEP_MINUTES,))
    return txn.rowcount
