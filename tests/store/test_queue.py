"""The outbound queue and POP3-style deletes, on every engine."""

from __future__ import annotations

import time

import pytest

from store import errors
from store.interfaces import INBOX
from store.interfaces import EXPIRED, FAILED, QUEUED, SENT
from store.interfaces import OUTBOUND_LEASE as LEASE

RAW = b"From: a@example.test\r\nTo: x@remote.example\r\nSubject: out\r\n\r\nhello\r\n"


@pytest.fixture
def account(store, run):
    return run(store.create_account, "sender@example.test", "x")


def test_enqueue_take_lease_and_finish(store, backstage, run, account):
    qid = run(store.enqueue_outbound, account.id, "sender@example.test", ["x@remote.example", "y@remote.example"], RAW)
    [item] = run(store.take_due_outbound)
    assert item.id == qid and item.mail_from == "sender@example.test"
    assert [r.address for r in item.recipients] == ["x@remote.example", "y@remote.example"]
    assert run(store.read_blob, item.blob_id) == RAW
    assert run(store.take_due_outbound) == []  # leased: no second spooler gets it
    x, y = item.recipients
    later = int(time.time()) + 60
    assert run(store.record_outbound_attempt, qid, {x.id: (SENT, None, None), y.id: (QUEUED, "451 busy", later)}) == []
    [listed] = run(store.list_outbound)
    assert {r.address: (r.status, r.attempts, r.last_error) for r in listed.recipients} == {
        "x@remote.example": (SENT, 1, None), "y@remote.example": (QUEUED, 1, "451 busy")}
    assert run(store.take_due_outbound) == []  # not due yet
    assert run(store.retry_outbound) == 1
    [again] = run(store.take_due_outbound)
    assert [r.address for r in again.recipients] == ["y@remote.example"]
    finished = run(store.record_outbound_attempt, qid, {y.id: (FAILED, "550 no such user", None)})
    assert {r.address: r.status for r in finished} == {"x@remote.example": SENT, "y@remote.example": FAILED}
    assert all(r.last_attempt >= item.created_at for r in finished)
    # finished, but its DSN is owed: it stays (leased to us) until finish_outbound
    assert [m.id for m in run(store.list_outbound)] == [qid] and run(store.take_due_outbound) == []
    run(store.finish_outbound, qid)
    assert run(store.list_outbound) == [] and backstage.count("blobs") == 0


def test_finished_message_whose_dsn_was_not_written_comes_back(store, backstage, run, account):
    qid = run(store.enqueue_outbound, account.id, "sender@example.test", ["x@remote.example"], RAW)
    [item] = run(store.take_due_outbound)
    run(store.record_outbound_attempt, qid, {item.recipients[0].id: (FAILED, "550 nope", None)})
    # the spooler died before its DSN: after the lease the finished message is due again
    backstage.execute("UPDATE outbound_recipients SET next_attempt = next_attempt - ?", LEASE + 1)
    [again] = run(store.take_due_outbound)
    assert again.id == qid and [(r.status, r.last_error) for r in again.recipients] == [(FAILED, "550 nope")]
    run(store.finish_outbound, qid)
    assert run(store.take_due_outbound) == []


def test_queued_blob_survives_purge_and_message_deletion(store, backstage, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    run(store.append_message, account.id, inbox.id, RAW)  # the same bytes as a message (e.g. Sent)
    qid = run(store.enqueue_outbound, account.id, "sender@example.test", ["x@remote.example"], RAW)
    run(store.delete_messages, account.id, inbox.id, [1])
    run(store.purge, 0)
    [item] = run(store.take_due_outbound)
    assert run(store.read_blob, item.blob_id) == RAW
    run(store.record_outbound_attempt, qid, {item.recipients[0].id: (EXPIRED, "too old", None)})
    run(store.finish_outbound, qid)
    assert backstage.count("blobs") == 0


def test_delete_and_get(store, run, account):
    qid = run(store.enqueue_outbound, account.id, "sender@example.test", ["x@remote.example"], RAW)
    assert run(store.get_outbound, qid).recipients[0].status == QUEUED
    run(store.delete_outbound, qid)
    with pytest.raises(errors.NotFound):
        run(store.get_outbound, qid)
    with pytest.raises(errors.NotFound):
        run(store.delete_outbound, qid)
    assert LEASE > 0


def test_delete_messages_ignores_flags(store, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    for n in range(3):
        run(store.append_message, account.id, inbox.id, RAW + b"%d" % n)
    mark = run(store.get_folder, account.id, INBOX).highest_modseq
    assert run(store.delete_messages, account.id, inbox.id, [1, 3, 9]) == [1, 3]
    assert [m.uid for m in run(store.list_messages, inbox.id)] == [2]
    assert run(store.changes_since, inbox.id, mark).expunged == [1, 3]


def test_two_spoolers_at_once_never_take_the_same_recipient(store, run, account):
    """Two Haven nodes on one MariaDB: while one spooler's lease is not committed yet, the
    other's take skips the rows it holds instead of reading them and leasing them again."""
    if store.db.engine != "mysql":
        pytest.skip("SQLite has one writer at a time: two takes cannot overlap")
    from store.engines import Txn
    from store.queue import take_due_txn

    qid = run(store.enqueue_outbound, account.id, "sender@example.test", ["x@remote.example"], RAW)
    first, second = store.db.connect(), store.db.connect()
    try:
        with second.cursor() as cur:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 2")
        now = int(time.time())
        taken = take_due_txn(Txn("mysql", first.cursor()), now, 50)
        assert [item.id for item in taken] == [qid]
        started = time.monotonic()
        assert take_due_txn(Txn("mysql", second.cursor()), now, 50) == []
        assert time.monotonic() - started < 1.5  # skipped, not waited for
        first.commit()
        second.rollback()
    finally:
        first.close()
        second.close()
    assert run(store.take_due_outbound) == []  # the first spooler's lease holds
