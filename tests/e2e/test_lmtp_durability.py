"""LMTP's promise to the MTA: ``250`` means on disk, anything else means nothing was kept.

* kill -9 right after the 250 replies: after a restart the message is there over IMAP.
* the store failing during DATA (SQLite: another process holds the write lock past the busy
  timeout) answers ``451 4.3.0`` to every recipient, leaves no row behind, and the MTA's retry
  then succeeds.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.conftest import ENGINES
from tests.gateways.lmtp.wire import Transcript, send_message, split_trace
from tests.gateways.smtp_helpers import imap_messages


def test_250_survives_kill_9(haven):
    (a, pa), (b, pb) = haven.new_user("durable"), haven.new_user("durable")
    body = b"Subject: durable\r\nMessage-ID: <durable@example.org>\r\n\r\nkill -9 me\r\n"
    rcpt, data = send_message(haven.lmtp, "s@example.org", [a, b], body)
    assert [r.code for r in data] == [250, 250]
    haven.kill()  # SIGKILL: no shutdown code runs
    haven.start()
    for address, password in ((a, pa), (b, pb)):
        stored = imap_messages(haven, address, password)
        assert len(stored) == 1
        assert split_trace(stored[0])[1] == body


def _rows(db_path, account: str) -> tuple:
    """(messages of the account, blob rows no message references)."""
    db = sqlite3.connect(db_path)
    try:
        messages = db.execute("SELECT COUNT(*) FROM messages m JOIN accounts a ON a.id = m.account_id "
                              "WHERE a.address = ?", (account.lower(),)).fetchone()[0]
        orphans = db.execute("SELECT COUNT(*) FROM blobs b WHERE NOT EXISTS "
                             "(SELECT 1 FROM messages m WHERE m.blob_id = b.id)").fetchone()[0]
        return messages, orphans
    finally:
        db.close()


@pytest.mark.skipif("sqlite" not in ENGINES, reason="HAVEN_TEST_ENGINES excludes sqlite")
def test_store_failure_during_data_is_451_and_leaves_nothing(haven_factory):
    server = haven_factory("sqlite", **{"store.busy_timeout_ms": "200"})
    (a, pa), (b, pb) = server.new_user("locked"), server.new_user("locked")
    body = b"Subject: try again\r\n\r\nlater\r\n"
    before = _rows(server.sqlite_path, a)

    with Transcript(server.lmtp, timeout=60) as t:
        t.lhlo()
        assert t.cmd("MAIL FROM:<s@example.org>").code == 250
        assert t.cmd(f"RCPT TO:<{a}>").code == 250
        assert t.cmd(f"RCPT TO:<{b}>").code == 250
        lock = sqlite3.connect(server.sqlite_path, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            assert t.cmd("DATA").code == 354
            started = time.monotonic()
            t.send(body + b".\r\n")
            replies = t.replies(2)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert [r.text.split(" ", 2)[:2] for r in replies] == [["451", "4.3.0"]] * 2, replies
        assert time.monotonic() - started < 30
        assert t.cmd("NOOP").code == 250  # still in step: exactly one reply per recipient

    assert _rows(server.sqlite_path, a) == before == (0, 0)
    assert _rows(server.sqlite_path, b)[0] == 0
    # the MTA retries: now it goes through, once
    _, data = send_message(server.lmtp, "s@example.org", [a, b], body)
    assert [r.code for r in data] == [250, 250]
    for address, password in ((a, pa), (b, pb)):
        stored = imap_messages(server, address, password)
        assert len(stored) == 1 and split_trace(stored[0])[1] == body
    assert _rows(server.sqlite_path, a) == (1, 0)
    log = server.log()
    assert f"to=<{a}>" in log and "status=deferred (451 4.3.0" in log  # one line per recipient
