"""A transaction whose COMMIT landed but whose connection dropped before the answer is retried
by the engine; the retry must not store the delivery (or queue the message) a second time.

The engine's test hook (``Database.lose_after_commit``, store/engines.py) makes a commit land
and then raises the driver's own connection-lost error (pymysql 2013 on MariaDB, which also
closes the connection; "database is locked" on SQLite), once: the real retry loop runs.
"""

from __future__ import annotations

import dataclasses
import time

from store.idempotency import KEY_LIFETIME
from tests.store.test_submission import RAW, TRACE, inbox, submit

MESSAGE = b"From: <a@example.org>\r\nTo: <rcpt@example.test>\r\nSubject: once\r\n\r\nbody\r\n"


def lose_next_commit(store, desc: str) -> None:
    store.db.lose_after_commit[desc] = 1


def count_rows(store, run, sql: str, args=()):
    async def go():
        return await store._run("count", lambda txn: txn.scalar(sql, args))
    return run(go)


def deliver(store, run, addresses, raw=MESSAGE):
    async def go():
        delivery = store.begin_delivery("a@example.org")
        for address in addresses:
            await delivery.add_recipient(address)
        return await delivery.commit(raw)
    return run(go)


def test_delivery_retried_after_a_landed_commit_is_stored_once(store, run):
    rcpt = run(store.create_account, "rcpt@example.test", "x")
    other = run(store.create_account, "other@example.test", "x")
    lose_next_commit(store, "deliver")
    results = deliver(store, run, ["rcpt@example.test", "other@example.test"])
    assert store.db.lose_after_commit["deliver"] == 0  # the hook fired: the commit was retried
    assert [r.error for r in results] == [None, None]
    assert [r.uid for r in results] == [1, 1]
    assert len(inbox(store, run, rcpt.id)) == 1
    assert len(inbox(store, run, other.id)) == 1
    # the next delivery is a new one (a new key)
    assert deliver(store, run, ["rcpt@example.test"])[0].uid == 2
    assert len(inbox(store, run, rcpt.id)) == 2


def test_a_refused_recipient_is_refused_again_from_the_record(store, run):
    """The recorded result carries the errors too: an over-quota recipient stays refused."""
    run(store.create_account, "rcpt@example.test", "x")
    full = run(store.create_account, "full@example.test", "x")
    run(store.set_quota, full.id, None, None, 10)
    lose_next_commit(store, "deliver")
    results = deliver(store, run, ["rcpt@example.test", "full@example.test"])
    assert results[0].error is None
    assert type(results[1].error).__name__ == "OverQuota"
    assert inbox(store, run, full.id) == []


def test_submission_queue_entry_and_local_copy_once(store, run):
    rules = dataclasses.replace(store.settings.rules, outbound=True, hostname="mx.example.test")
    store.settings = dataclasses.replace(store.settings, rules=rules)
    sender = run(store.create_account, "sender@example.test", "x")
    friend = run(store.create_account, "friend@example.test", "x")
    for desc in ("enqueue_submission", "deliver", "release_submission"):
        lose_next_commit(store, desc)
    _added, result = submit(store, run, sender.id, "sender@example.test",
                            ["friend@example.test", "x@remote.example"], RAW, TRACE)
    assert all(v == 0 for v in store.db.lose_after_commit.values())
    assert result.queue_id is not None and result.local[0].error is None
    assert len(inbox(store, run, friend.id)) == 1
    queue = run(store.list_outbound)
    assert [m.id for m in queue] == [result.queue_id]
    assert [r.address for r in queue[0].recipients] == ["x@remote.example"]
    assert queue[0].recipients[0].next_attempt <= time.time() + 1  # released: due now, not held


def test_enqueue_outbound_once_and_keys_pruned(store, run):
    account = run(store.create_account, "sender@example.test", "x")
    lose_next_commit(store, "enqueue_outbound")
    queue_id = run(store.enqueue_outbound, account.id, "sender@example.test", ["x@remote.example"], MESSAGE)
    assert [m.id for m in run(store.list_outbound)] == [queue_id]
    keys = count_rows(store, run, "SELECT COUNT(*) FROM idempotency_keys")
    assert keys >= 1
    # the purge job keeps fresh keys and drops old ones
    run(store.purge)
    assert count_rows(store, run, "SELECT COUNT(*) FROM idempotency_keys") == keys

    async def age(txn_desc="age"):
        return await store._run(txn_desc, lambda txn: txn.execute(
            "UPDATE idempotency_keys SET created_at = created_at - ?", (KEY_LIFETIME + 60,)))
    run(age)
    run(store.purge)
    assert count_rows(store, run, "SELECT COUNT(*) FROM idempotency_keys") == 0
