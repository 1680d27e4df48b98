"""The submission contract (store.begin_submission -> Submission), on every engine: the sender
check, the soft quota, local and remote recipients, the header fields the store completes, the
held queue entry and what a failure leaves behind (nothing)."""

from __future__ import annotations

import dataclasses

import pytest

from store import errors
from store.interfaces import FAILED, INBOX, QUEUED, DeliveryResult

RAW = (b"From: <sender@example.test>\r\nTo: <x@remote.example>\r\nSubject: out\r\n"
       b"Date: Mon, 06 Jan 2025 10:00:00 +0100\r\nMessage-ID: <m1@client.example>\r\n\r\nhello\r\n")
BARE = b"From: <sender@example.test>\r\nSubject: bare\r\n\r\nMessage-ID: <in the body>\r\n"
TRACE = b"Received: from client (127.0.0.1)\r\n\tby mx.example.test (Haven) with ESMTPSA id T1;\r\n\tdate\r\n"


@pytest.fixture
def outbound(store):
    """The store as `haven serve` builds it with [submission] relay set."""
    rules = dataclasses.replace(store.settings.rules, outbound=True, hostname="mx.example.test")
    store.settings = dataclasses.replace(store.settings, rules=rules)
    return store


@pytest.fixture
def people(store, run):
    sender = run(store.create_account, "sender@example.test", "x")
    friend = run(store.create_account, "friend@example.test", "x")
    run(store.add_alias, "boss@example.test", "sender@example.test")
    return sender, friend


def inbox(store, run, account_id) -> list:
    async def read():
        folder = await store.get_folder(account_id, INBOX)
        metas = await store.list_messages(folder.id)
        records = await store.fetch_messages(folder.id, [m.uid for m in metas])
        return [await store.read_blob(r.blob_id) for r in records]
    return run(read)


def submit(store, run, account_id, mail_from, recipients, raw=RAW, trace=TRACE):
    async def go():
        submission = await store.begin_submission(account_id, mail_from)
        added = [await submission.add_recipient(r) for r in recipients]
        return added, await submission.commit(raw, trace)
    return run(go)


# -- the sender --------------------------------------------------------------------------------

def test_the_sender_must_be_the_accounts(store, run, people):
    sender, friend = people
    for own in ("sender@example.test", "Sender+list@example.test", "boss@example.test"):
        assert run(store.begin_submission, sender.id, own) is not None
    for other in ("friend@example.test", "nobody@example.test", "x@remote.example", "", "not an address"):
        with pytest.raises(errors.PermissionDenied):
            run(store.begin_submission, sender.id, other)


@pytest.mark.parametrize("header", [
    b"From: Friend <friend@example.test>\r\n",
    b"From: <sender@example.test>, <friend@example.test>\r\n",
    b"From: <sender@example.test>\r\nSender: x@remote.example\r\n",
    b"From: Someone\r\n <nobody@example.test>\r\n",  # folded
    b"From: garbage <<\r\n",
])
def test_the_header_senders_must_be_the_accounts(store, backstage, run, people, header):
    sender, friend = people
    raw = header + b"Subject: in your name\r\n\r\nhello\r\n"
    with pytest.raises(errors.PermissionDenied, match="header From/Sender"):
        submit(store, run, sender.id, "sender@example.test", ["friend@example.test"], raw=raw)
    assert inbox(store, run, friend.id) == [] and backstage.count("outbound_recipients") == 0


def test_own_header_senders_pass_and_the_setting_lets_any_through(store, run, people):
    sender, friend = people
    own = (b"From: Me <Sender+news@Example.test>, <boss@example.test>\r\nSender: sender@example.test\r\n"
           b"Subject: mine\r\n\r\nhello\r\n")
    submit(store, run, sender.id, "sender@example.test", ["friend@example.test"], raw=own)
    assert len(inbox(store, run, friend.id)) == 1
    rules = dataclasses.replace(store.settings.rules, allow_from_mismatch=True)
    store.settings = dataclasses.replace(store.settings, rules=rules)
    submit(store, run, sender.id, "sender@example.test", ["friend@example.test"],
           raw=b"From: <friend@example.test>\r\nSubject: shared mailbox\r\n\r\nhello\r\n")
    assert len(inbox(store, run, friend.id)) == 2


def test_over_the_soft_quota_no_sending(store, run, people):
    sender, _ = people
    submit(store, run, sender.id, "sender@example.test", ["sender@example.test"])
    used = run(store.get_quota, sender.id).used_bytes
    run(store.set_quota, sender.id, soft=used + 1)
    assert run(store.begin_submission, sender.id, "sender@example.test") is not None
    run(store.set_quota, sender.id, soft=used)
    with pytest.raises(errors.OverQuota, match=rf"over soft quota \({used} of {used} octets\)"):
        run(store.begin_submission, sender.id, "sender@example.test")
    run(store.set_quota, sender.id, soft=0, warn=1, hard=used * 10)  # warn and hard do not stop sending
    assert run(store.begin_submission, sender.id, "sender@example.test") is not None


# -- recipients --------------------------------------------------------------------------------

def test_recipients_local_remote_and_refused(outbound, run, people):
    store = outbound
    sender, friend = people

    async def go():
        submission = await store.begin_submission(sender.id, "sender@example.test")
        local = await submission.add_recipient("Friend+x@example.test")
        assert local.account_id == friend.id and local.detail == "x"
        assert await submission.add_recipient("x@remote.example") is None
        assert await submission.add_recipient("x@remote.example") is None  # queued once
        assert await submission.add_recipient("y@[192.0.2.1]") is None
        for address, error in [("nobody@example.test", errors.NotFound), ("x@localhost", errors.InvalidInput),
                               ("no-at-sign", errors.InvalidInput)]:
            with pytest.raises(error):
                await submission.add_recipient(address)
        return submission.remote
    assert run(go) == ["x@remote.example", "y@[192.0.2.1]"]


def test_remote_recipients_need_a_relay(store, run, people):
    sender, _ = people

    async def go():
        submission = await store.begin_submission(sender.id, "sender@example.test")
        with pytest.raises(errors.PermissionDenied):
            await submission.add_recipient("x@remote.example")
        with pytest.raises(errors.NotFound):  # a local domain's unknown user is still unknown
            await submission.add_recipient("nobody@example.test")
    run(go)


# -- commit ------------------------------------------------------------------------------------

def test_local_and_remote(outbound, run, people):
    store = outbound
    sender, friend = people
    fired = []
    store.on_outbound(lambda: fired.append(True))
    _, result = submit(store, run, sender.id, "boss@example.test", ["friend@example.test", "x@remote.example"])
    assert result.refused is None and result.remote == ("x@remote.example",) and result.queue_id is not None
    [delivered] = result.local
    assert delivered.error is None and delivered.folder == INBOX and delivered.recipient.account_id == friend.id
    assert result.size == len(TRACE + RAW) and fired
    # the local copy: Return-Path, our trace, the message as sent (it had Date and Message-ID)
    assert inbox(store, run, friend.id) == [b"Return-Path: <boss@example.test>\r\n" + TRACE + RAW]
    # the remote part: due at once, the same bytes without Return-Path
    [item] = run(store.take_due_outbound)
    assert item.id == result.queue_id and item.mail_from == "boss@example.test" and item.account_id == sender.id
    assert [(r.address, r.status) for r in item.recipients] == [("x@remote.example", QUEUED)]
    assert run(store.read_blob, item.blob_id) == TRACE + RAW


def test_header_fields_added_only_when_missing(outbound, run, people):
    store = outbound
    sender, friend = people
    _, result = submit(store, run, sender.id, "sender@example.test", ["friend@example.test", "x@remote.example"],
                       raw=BARE)
    [stored] = inbox(store, run, friend.id)
    head, _, rest = stored.partition(TRACE)
    assert head == b"Return-Path: <sender@example.test>\r\n" and rest.endswith(BARE)
    added = rest[:-len(BARE)].decode()
    assert added.startswith("Date: ") and "\r\nMessage-ID: <" in added and added.endswith("@mx.example.test>\r\n")
    assert added.count("\r\n") == 2 and result.size == len(TRACE) + len(added) + len(BARE)
    [item] = run(store.take_due_outbound)
    assert run(store.read_blob, item.blob_id) == stored[len(head):]  # one message, the same everywhere
    only_date = b"Subject: s\r\nMessage-ID: <m2@client.example>\r\n\r\nbody\r\n"
    submit(store, run, sender.id, "sender@example.test", ["friend@example.test"], raw=only_date, trace=b"")
    latest = inbox(store, run, friend.id)[-1]
    assert latest.startswith(b"Return-Path: <sender@example.test>\r\nDate: ") and latest.endswith(b"\r\n" + only_date)
    assert latest.count(b"Message-ID:") == 1


def test_remote_only_is_queued_once(outbound, run, people):
    sender, _ = people
    _, result = submit(outbound, run, sender.id, "sender@example.test", ["x@remote.example", "y@remote.example"])
    assert result.local == [] and result.remote == ("x@remote.example", "y@remote.example")
    [item] = run(outbound.take_due_outbound)
    assert item.id == result.queue_id and len(item.recipients) == 2


def test_the_spooler_sees_nothing_before_the_local_copies_commit(outbound, run, people):
    store = outbound
    sender, friend = people
    seen = {}

    async def go():
        submission = await store.begin_submission(sender.id, "sender@example.test")
        await submission.add_recipient("friend@example.test")
        await submission.add_recipient("x@remote.example")
        seen["before commit"] = await store.list_outbound()
        commit = submission.delivery.commit

        async def watched(raw, junk=False):
            # the queue entry exists (durable) but no spooler may take it yet
            seen["queued"] = [m.id for m in await store.list_outbound()]
            seen["due"] = await store.take_due_outbound()
            return await commit(raw, junk)
        submission.delivery.commit = watched
        return await submission.commit(RAW, TRACE)
    result = run(go)
    assert seen["before commit"] == [] and seen["queued"] == [result.queue_id] and seen["due"] == []
    [item] = run(store.take_due_outbound)  # released once the local copy is in
    assert item.id == result.queue_id and len(inbox(store, run, friend.id)) == 1


@pytest.mark.parametrize("failure", ["raises", "temporary verdict", "too big"])
def test_a_failure_midway_leaves_nothing(outbound, backstage, run, people, failure):
    store = outbound
    sender, friend = people

    async def go():
        submission = await store.begin_submission(sender.id, "sender@example.test")
        await submission.add_recipient("friend@example.test")
        await submission.add_recipient("x@remote.example")

        async def broken(raw, junk=False):
            if failure == "raises":
                raise errors.TemporaryFailure("database gone")
            error = errors.TemporaryFailure("lock") if failure == "temporary verdict" else errors.TooBig("big")
            return [DeliveryResult(recipient=r, error=error) for r in submission.local]
        submission.delivery.commit = broken
        return await submission.commit(RAW, TRACE)
    with pytest.raises(errors.TooBig if failure == "too big" else errors.TemporaryFailure):
        run(go)
    assert run(store.list_outbound) == [] and backstage.count("outbound_recipients") == 0 and backstage.count("blobs") == 0
    assert inbox(store, run, friend.id) == []


def test_too_big_is_refused_before_anything(outbound, backstage, run, people):
    store = outbound
    sender, _ = people
    store.max_message_size = len(TRACE + RAW) - 1
    with pytest.raises(errors.TooBig):
        submit(store, run, sender.id, "sender@example.test", ["x@remote.example"])
    assert backstage.count("outbound_recipients") == 0 and backstage.count("blobs") == 0


def test_a_vanished_local_recipient_gets_a_dsn_the_others_the_message(outbound, run, people):
    store = outbound
    sender, friend = people
    run(store.create_account, "gone@example.test", "x")

    async def go():
        submission = await store.begin_submission(sender.id, "sender@example.test")
        for r in ("friend@example.test", "Gone@example.test", "x@remote.example"):
            await submission.add_recipient(r)
        await store.delete_account("gone@example.test")
        return await submission.commit(RAW, TRACE)
    result = run(go)
    assert result.refused is None and [type(r.error) for r in result.local] == [type(None), errors.NotFound]
    assert len(inbox(store, run, friend.id)) == 1
    due = sorted(run(store.take_due_outbound), key=lambda m: m.id)
    assert [m.id == result.queue_id for m in due] == [True, False]
    relayed, dsn = due
    assert [(r.address, r.status) for r in relayed.recipients] == [("x@remote.example", QUEUED)]
    # a finished message of its own: the spooler writes the DSN at its next scan
    assert [(r.address, r.status, r.last_error) for r in dsn.recipients] == [
        ("Gone@example.test", FAILED, "5.1.1 the mailbox no longer exists")]
    assert dsn.mail_from == "sender@example.test" and dsn.blob_id == relayed.blob_id


def test_every_local_recipient_refusing_refuses_the_message(store, backstage, run, people):
    sender, _ = people
    run(store.create_account, "gone@example.test", "x")

    async def go():
        submission = await store.begin_submission(sender.id, "sender@example.test")
        await submission.add_recipient("gone@example.test")
        await store.delete_account("gone@example.test")
        return await submission.commit(RAW, TRACE)
    result = run(go)
    assert isinstance(result.refused.error, errors.NotFound) and result.refused.recipient.original == "gone@example.test"
    assert backstage.count("outbound_recipients") == 0 and run(store.list_outbound) == []


def test_commit_once(store, run, people):
    sender, _ = people

    async def go():
        submission = await store.begin_submission(sender.id, "sender@example.test")
        await submission.add_recipient("friend@example.test")
        await submission.commit(RAW)
        with pytest.raises(errors.InvalidInput):
            await submission.commit(RAW)
    run(go)
    assert len(inbox(store, run, people[1].id)) == 1
