"""Submission's remote side end to end: a real ``haven serve`` relaying its outbound queue to a
test smarthost (an aiosmtpd sink on loopback), the queue surviving a restart, the admin's
``haven queue`` commands, and bounces (DSNs) read back over IMAP.

The relay server's spooler retries after 2 s and then after an hour (``retry_schedule = 2s
1h``), so a test can tell the retry timer (first retry) from ``haven queue retry`` (second).
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tests.conftest import HavenServer
from tests.gateways.smtp_helpers import imap_messages, split_local, split_received
from tests.gateways.submission.wire import (connect, dsn_fields, imap_bodystructure, message, parse, queue_ids,
                                               submit, wait_for_log, wait_for_mail)
from tests.gateways.submission.sink import free_port


@pytest.fixture(scope="module")
def relay(haven, sink, tmp_path_factory):
    """A Haven of the ``haven`` fixture's engine whose smarthost is the sink."""
    server = HavenServer(tmp_path_factory.mktemp(f"haven-relay-{haven.engine}"), haven.engine, {
        "submission.relay": sink.address,
        "submission.retry_schedule": "2s 1h",
        "submission.queue_interval": "0.3",
        "store.busy_timeout_ms": "200",  # the store-failure test holds the SQLite write lock
    })
    server.start()
    yield server
    server.close()


@pytest.fixture
def sink_up(sink):
    """The sink running and answering 250 (whatever the previous test left)."""
    if not sink.running:
        sink.start()
    sink.replies.clear()
    sink.default_rcpt_reply = sink.data_reply = None
    yield sink
    if not sink.running:
        sink.start()


def remote(tag: str) -> str:
    return f"{tag}-{time.monotonic_ns()}@remote.example"


def test_relay_gets_the_submitted_bytes_plus_received(relay, sink_up):
    user, password = relay.new_user("out")
    local, local_pw = relay.new_user("in")
    to = remote("exact")
    raw = message("relayed", user, to, body=b"line\r\n.starts with a dot\r\n\r\n8bit: \xc3\xa9t\xc3\xa9\r\n")
    assert submit(relay, user, password, user, [to, local], raw) == {}
    got = sink_up.wait_for(to)
    assert len(got) == 1 and got[0].mail_from == user and got[0].rcpt_tos == [to]
    received, rest = split_received(got[0].data)
    assert rest == raw  # exactly what was submitted, after one Received: line
    assert received["proto"] == "ESMTPSA" and received["by"] == "haven.test"
    assert "BODY=8BITMIME" in got[0].mail_options and any(o.startswith("SIZE=") for o in got[0].mail_options)
    # the local copy of the same submission: Return-Path + the same Received: line
    ret, local_received, local_rest = split_local(wait_for_mail(relay, local, local_pw)[0])
    assert ret == user and local_rest == raw and local_received["id"] == received["id"]
    wait_for_log(relay, rf"queue \d+: to=<{to}>, relay=127\.0\.0\.1:{sink_up.port}, attempt=1, .*status=sent")
    assert "the queue is empty" in relay.cli("queue", "list").stdout.decode()


def test_relay_down_then_up_retry_timer(relay, sink_up):
    user, password = relay.new_user("retry")
    to = remote("down")
    sink_up.stop()
    assert submit(relay, user, password, user, [to], message("down then up", user, to)) == {}
    wait_for_log(relay, rf"to=<{to}>, .*attempt=1, .*status=deferred \(4\.4\.1 connect to 127\.0\.0\.1:")
    sink_up.start()
    got = sink_up.wait_for(to, timeout=10)  # the retry timer (2 s) sends it
    assert len(got) == 1
    wait_for_log(relay, rf"to=<{to}>, .*attempt=2, .*status=sent")


def test_queue_cli_list_retry_delete(relay, sink_up):
    user, password = relay.new_user("cli")
    keep, drop = remote("keep"), remote("drop")
    sink_up.stop()
    for to in (keep, drop):
        assert submit(relay, user, password, user, [to], message("queued", user, to)) == {}
    # first attempt, then the 2 s retry: both fail; the next retry is an hour away
    wait_for_log(relay, rf"to=<{keep}>, .*attempt=2, .*status=deferred", timeout=10)
    wait_for_log(relay, rf"to=<{drop}>, .*attempt=2, .*status=deferred", timeout=10)
    listing = relay.cli("queue", "list").stdout.decode()
    (keep_id,), (drop_id,) = queue_ids(listing, keep), queue_ids(listing, drop)
    line = next(line for line in listing.splitlines() if f"<{keep}>" in line)
    assert "\tqueued\tattempts 2\tnext " in line and "(4.4.1 connect to 127.0.0.1:" in line
    result = relay.cli("queue", "delete", str(drop_id))
    assert result.returncode == 0 and f"deleted message {drop_id}" in result.stdout.decode()
    assert relay.cli("queue", "delete", str(drop_id)).returncode != 0  # gone already
    assert drop_id not in queue_ids(relay.cli("queue", "list").stdout.decode())
    sink_up.start()
    result = relay.cli("queue", "retry", str(keep_id))
    assert result.returncode == 0 and "1 recipient due now" in result.stdout.decode()
    assert len(sink_up.wait_for(keep, timeout=10)) == 1
    time.sleep(0.5)
    assert not sink_up.for_rcpt(drop)  # deleted: never sent, and no bounce either
    assert len(imap_messages(relay, user, password)) == 0


def test_permanent_failure_bounces_to_the_senders_inbox(relay, sink_up):
    user, password = relay.new_user("bounce")
    bad, good = remote("bad"), remote("good")
    sink_up.replies[bad] = f"550 5.1.1 <{bad}>: Recipient address rejected: User unknown"
    raw = message("will bounce", user, bad)
    assert submit(relay, user, password, user, [bad, good], raw) == {}
    assert len(sink_up.wait_for(good)) == 1
    [dsn_raw] = wait_for_mail(relay, user, password)
    dsn = parse(dsn_raw)
    assert dsn_raw.startswith(b"Return-Path: <>\r\n")
    assert dsn["From"] == "Mail Delivery System <MAILER-DAEMON@haven.test>" and dsn["Auto-Submitted"] == "auto-replied"
    per_message, per_recipient = dsn_fields(dsn)
    assert per_message["Reporting-MTA"] == "dns; haven.test" and "Arrival-Date" in per_message
    assert len(per_recipient) == 1  # only the failed recipient, not the one that was sent
    [r] = per_recipient
    assert r["Final-Recipient"] == f"rfc822; {bad}" and r["Action"] == "failed" and r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"].startswith("smtp; 550 5.1.1 ") and "Last-Attempt-Date" in r
    human, _status, headers = dsn.get_payload()
    assert human.get_content_type() == "text/plain" and bad in human.get_payload(decode=True).decode()
    assert headers.get_content_type() == "text/rfc822-headers"
    assert b"Subject: will bounce\r\n" in headers.get_payload(decode=True)
    assert b"just a test" not in dsn_raw  # the body is not returned
    structure = imap_bodystructure(relay, user, password, 1).upper()
    assert '"REPORT"' in structure and '"DELIVERY-STATUS"' in structure and '"RFC822-HEADERS"' in structure


def test_queue_survives_restart(relay, sink_up):
    user, password = relay.new_user("restart")
    to = remote("restart")
    sink_up.stop()
    assert submit(relay, user, password, user, [to], message("restart", user, to)) == {}
    wait_for_log(relay, rf"to=<{to}>, .*attempt=1, .*status=deferred")
    relay.stop()
    sink_up.start()
    assert not sink_up.for_rcpt(to)
    relay.start()
    assert len(sink_up.wait_for(to, timeout=10)) == 1


def test_store_failure_is_451_and_leaves_nothing(relay, sink_up):
    if relay.engine != "sqlite":
        pytest.skip("locks the SQLite file")
    user, password = relay.new_user("locked")
    local, local_pw = relay.new_user("locked-in")
    to = remote("locked")
    raw = message("store down", user, to)
    locker = sqlite3.connect(relay.sqlite_path, isolation_level=None, timeout=10)
    with connect(relay) as s:
        s.login(user, password)
        assert s.docmd(f"MAIL FROM:<{user}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{to}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{local}>")[0] == 250
        assert s.docmd("DATA")[0] == 354
        locker.execute("BEGIN EXCLUSIVE")  # the store cannot write: queue and delivery both fail
        try:
            s.send(raw + b".\r\n")
            code, text = s.getreply()
        finally:
            locker.execute("ROLLBACK")
        assert (code, text) == (451, b"4.3.0 Temporary failure, try again later")
        # the client's retry gets exactly one copy everywhere
        assert s.sendmail(user, [to, local], raw) == {}
    assert len(sink_up.wait_for(to)) == 1
    assert len(wait_for_mail(relay, local, local_pw)) == 1
    time.sleep(0.5)
    assert len(sink_up.for_rcpt(to)) == 1 and len(imap_messages(relay, local, local_pw)) == 1


def test_expired_message_bounces(haven, haven_factory):
    dead = free_port()  # nothing listens there: every attempt is "connection refused"
    server = haven_factory(haven.engine, **{"submission.relay": f"127.0.0.1:{dead}",
                                            "submission.retry_schedule": "1s",
                                            "submission.max_queue_age": "2s",
                                            "submission.queue_interval": "0.3"})
    user, password = server.new_user("expire")
    to = remote("expire")
    assert submit(server, user, password, user, [to], message("expires", user, to)) == {}
    [dsn_raw] = wait_for_mail(server, user, password, timeout=15)
    per_message, [r] = dsn_fields(parse(dsn_raw))
    assert r["Final-Recipient"] == f"rfc822; {to}" and r["Action"] == "failed"
    assert r["Status"] == "4.4.1"  # the last error: the relay could not be reached
    assert r["Diagnostic-Code"].startswith(f"x-haven; connect to 127.0.0.1:{dead}")
    assert "gave up after 2 seconds" in parse(dsn_raw).get_payload()[0].get_payload(decode=True).decode()
    wait_for_log(server, rf"to=<{to}>, .*status=expired")
    assert "the queue is empty" in server.cli("queue", "list").stdout.decode()


def test_a_malformed_remote_address_is_553_bad_syntax(relay, sink_up):
    user, password = relay.new_user("syntax")
    with connect(relay) as s:
        s.login(user, password)
        assert s.docmd(f"MAIL FROM:<{user}>")[0] == 250
        assert s.docmd("RCPT TO:<friend@remote.example>")[0] == 250
        # an address the relay could not send to: refused at RCPT, not bounced later
        assert s.docmd("RCPT TO:<friend@intranet>") == (553, b"5.1.3 Bad recipient address syntax")
