"""Exactly-once writes over a retried transaction.

The engines retry a transaction whose connection dropped (:mod:`store.engines`).  When the drop
came after the COMMIT landed but before its answer did, the retry would do the work a second
time: a delivery stored twice, a message queued twice.  So the writes a client is told about
(deliveries, submissions' queue entries) carry an *idempotency key*: made once, before the first
attempt, and written in the same transaction as the work, with the work's result, into
``idempotency_keys`` (unique key).  An attempt that finds its key already there returns that
result instead of doing the work again.

Invariants
- A key is unique per call of :func:`new_key` (128 random bits), never reused by another write.
- The key row and the work commit together or not at all.
- Results are stored as JSON (``encode``/``decode`` per caller); keys older than
  ``KEY_LIFETIME`` are pruned by the purge job (a retry comes within seconds).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Callable

from store.engines import Txn

#: seconds a key (and its result) is kept: far beyond any retry of the engines
KEY_LIFETIME = 86400


class Key(str):
    """An idempotency key that knows whether a transaction has been tried under it: on the first
    attempt nothing can have been recorded under a key made a moment ago, so the lookup (a round
    trip to MariaDB) is left out; every retry looks."""
    tried = False


def new_key() -> Key:
    return Key(secrets.token_hex(16))


def once_txn(txn: Txn, key: str, fn: Callable, *args, encode: Callable = lambda r: r,
             decode: Callable = lambda r: r) -> Any:
    """``fn(txn, *args)`` unless ``key`` already committed; then its recorded result."""
    plain = str(key)
    if getattr(key, "tried", True):
        row = txn.execute("SELECT result FROM idempotency_keys WHERE id_key = ?", (plain,)).fetchone()
        if row is not None:
            return decode(json.loads(row[0]))
    else:
        key.tried = True
    result = fn(txn, *args)
    txn.execute("INSERT INTO idempotency_keys (id_key, created_at, result) VALUES (?, ?, ?)",
                (plain, int(time.time()), json.dumps(encode(result))))
    return result


def prune_keys_txn(txn: Txn, now: int) -> int:
    txn.execute("DELETE FROM idempotency_keys WHERE created_at < ?", (now - KEY_LIFETIME,))
    return txn.rowcount
