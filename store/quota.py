"""Quotas (Zarafa's warn / soft / hard): the ``_txn`` functions and the store's methods.

Invariants
- Usage counts live messages only (soft-deleted ones do not).  It is counted, not stored:
  ``SUM(size), COUNT(*)`` over the covering index ``messages_usage`` (docs/store.md), so no
  operation can make it drift.
- A delivery reads the usage in its own transaction after locking the account row (its modseq
  bump), so concurrent deliveries to one account on one node cannot both pass the hard limit.
- Accounts without limits (the default) never run the usage query on delivery.

Sieve and the other delivery rules live apart (:mod:`store.rules`, :mod:`store.delivery`); this
module knows nothing of them.
"""

from __future__ import annotations

from email.utils import formatdate, make_msgid
from typing import Optional

from store import errors
from store.core import StoreCore
from store.engines import Txn
from store.interfaces import Quota
from store.settings import QuotaSettings


def _limits_txn(txn: Txn, account_id: int, settings: QuotaSettings) -> tuple:
    row = txn.execute("SELECT quota_warn, quota_soft, quota_hard, quota_warned FROM accounts WHERE id = ?",
                      (account_id,)).fetchone()
    if row is None:
        raise errors.NotFound("no such account")
    warn = settings.warn if row[0] is None else row[0]
    soft = settings.soft if row[1] is None else row[1]
    hard = settings.hard if row[2] is None else row[2]
    return warn, soft, hard, bool(row[3])


def usage_txn(txn: Txn, account_id: int) -> tuple:
    row = txn.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages WHERE account_id = ? AND deleted_at = 0",
                      (account_id,)).fetchone()
    return int(row[0]), int(row[1])


def quota_txn(txn: Txn, account_id: int, settings: QuotaSettings) -> Quota:
    warn, soft, hard, _warned = _limits_txn(txn, account_id, settings)
    used, count = usage_txn(txn, account_id)
    return Quota(used_bytes=used, used_messages=count, warn=warn, soft=soft, hard=hard)


def set_quota_txn(txn: Txn, account_id: int, limits: dict, settings: QuotaSettings) -> Quota:
    for key in ("warn", "soft", "hard"):
        value = limits.get(key)
        if value is None:
            continue
        if value < -1:
            raise errors.InvalidInput(f"{key}: a size is 0 (unlimited), -1 (server default) or more")
        txn.execute(f"UPDATE accounts SET quota_{key} = ? WHERE id = ?", (None if value == -1 else value, account_id))
    return quota_txn(txn, account_id, settings)


def check_append_quota_txn(txn: Txn, account_id: int, size: int, settings: QuotaSettings) -> None:
    """APPEND/COPY: OverQuota when ``size`` more octets would pass the hard limit."""
    _warn, _soft, hard, _warned = _limits_txn(txn, account_id, settings)
    if hard > 0 and usage_txn(txn, account_id)[0] + size > hard:
        raise errors.OverQuota("over the mailbox's hard quota")


def quota_gate_txn(txn: Txn, account_id: int, size: int, settings: QuotaSettings) -> Optional[tuple]:
    """Before storing: raises OverQuota past the hard limit; returns the state the warning step
    needs ``(warn, used_before, warned, hard)``, or None when the account has no limits."""
    warn, _soft, hard, warned = _limits_txn(txn, account_id, settings)
    if warn <= 0 and hard <= 0:
        return None
    used = usage_txn(txn, account_id)[0]
    if hard > 0 and used + size > hard:
        raise errors.OverQuota("mailbox full")
    return warn, used, warned, hard


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def quota_warning(address: str, used: int, warn: int, hard: int, hostname: str) -> bytes:
    hard = f" Above {human_size(hard)} new mail is refused." if hard > 0 else ""
    body = (f"Your mailbox {address} now holds {human_size(used)}, more than the warning level of "
            f"{human_size(warn)}.\r\n\r\nPlease delete or archive mail you no longer need "
            f"(and empty the Trash).{hard}\r\n")
    return (f"From: Mail System <postmaster@{hostname}>\r\n"
            f"To: <{address}>\r\n"
            f"Subject: Your mailbox is almost full\r\n"
            f"Date: {formatdate(localtime=False)}\r\n"
            f"Message-ID: {make_msgid(domain=hostname)}\r\n"
            f"Auto-Submitted: auto-generated\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}").encode("utf-8")


class QuotaStore(StoreCore):
    async def get_quota(self, account_id) -> Quota:
        return await self._run("get_quota", quota_txn, account_id, self.quota_settings)

    async def set_quota(self, account_id, warn=None, soft=None, hard=None) -> Quota:
        return await self._run("set_quota", set_quota_txn, account_id,
                               {"warn": warn, "soft": soft, "hard": hard}, self.quota_settings)
