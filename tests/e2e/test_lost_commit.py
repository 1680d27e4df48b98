"""A COMMIT that lands while the connection drops before its answer, end to end: LMTP, ``haven
deliver`` and submission (a local copy and a relayed one) each store or send the message once,
and the client is told 250 / exit 0.

The server and the CLI run with ``HAVEN_TEST_LOSE_AFTER_COMMIT`` (store/engines.py): the named
transactions commit, then the engine raises its driver's connection-lost error once, and the
real retry loop runs against the real database.
"""

from __future__ import annotations

import smtplib
import time

from tests.gateways.smtp_helpers import imap_messages
from tests.gateways.submission.wire import message, submit, wait_for_mail

HOOK = "deliver:2,enqueue_submission:1,release_submission:1"


def hook_fired(server) -> int:
    return server.log().count("reporting the connection lost")


def test_lmtp_deliver_and_submission_store_once(engine, haven_factory, sink, monkeypatch):
    monkeypatch.setenv("HAVEN_TEST_LOSE_AFTER_COMMIT", HOOK)
    server = haven_factory(engine, **{"submission.relay": sink.address, "submission.queue_interval": "0.3"})
    user, password = server.new_user("lost")
    sender, sender_pw = server.new_user("sender")

    # LMTP: 250 for the recipient, one message
    with smtplib.LMTP(*server.lmtp, timeout=30) as lmtp:
        assert lmtp.sendmail("a@example.org", [user], message("over lmtp", "a@example.org", user)) == {}
    assert hook_fired(server) == 1
    assert len(imap_messages(server, user, password)) == 1

    # haven deliver (its own process, its own hook): exit 0, one more message
    r = server.cli("deliver", "-f", "a@example.org", user, input=message("via deliver", "a@example.org", user))
    assert r.returncode == 0, r.stderr
    assert b"reporting the connection lost" in r.stderr
    assert len(imap_messages(server, user, password)) == 2

    # submission: the queue entry, the local copy and the release each lose their commit once
    remote = f"far-{time.monotonic_ns()}@remote.example"
    assert submit(server, sender, sender_pw, sender, [user, remote], message("submitted", sender, user)) == {}
    assert hook_fired(server) == 4  # and the queue entry, the local copy, the release
    stored = wait_for_mail(server, user, password, count=3)
    assert [b"Subject: submitted" in m for m in stored].count(True) == 1
    assert len(sink.wait_for(remote)) == 1
    time.sleep(1.0)  # a second queue entry would be relayed within the queue interval
    assert len(sink.for_rcpt(remote)) == 1
    assert len(imap_messages(server, user, password)) == 3
