"""Submission rate limits in the store, on every engine: messages and recipients per hour per
account (its aliases count as the account), checked at RCPT from the usage read at MAIL and
counted for real at commit, where parallel submissions cannot pass the limit together."""

from __future__ import annotations

import dataclasses

import pytest

from store import errors
from store.rates import KEEP_MINUTES
from store.settings import RateSettings
from tests.store.test_submission import inbox

RAW = b"From: <sender@example.test>\r\nSubject: rate\r\n\r\nhi\r\n"


@pytest.fixture
def limited(store, run):
    store.settings = dataclasses.replace(store.settings, rates=RateSettings(max_messages_per_hour=2,
                                                                            max_recipients_per_hour=5))
    sender = run(store.create_account, "sender@example.test", "x")
    run(store.add_alias, "boss@example.test", "sender@example.test")
    friends = [run(store.create_account, f"friend{i}@example.test", "x") for i in range(6)]
    return store, sender, friends


async def send(store, account_id, mail_from, recipients):
    submission = await store.begin_submission(account_id, mail_from)
    for r in recipients:
        await submission.add_recipient(r)
    return await submission.commit(RAW.replace(b"sender@example.test", mail_from.encode()))


def test_messages_per_hour_with_aliases_sharing_the_count(limited, run):
    store, sender, friends = limited
    run(send, store, sender.id, "sender@example.test", ["friend0@example.test"])
    run(send, store, sender.id, "boss@example.test", ["friend0@example.test"])  # the alias: same counter
    for mail_from in ("sender@example.test", "boss@example.test", "sender+x@example.test"):
        with pytest.raises(errors.RateLimited) as refused:
            run(send, store, sender.id, mail_from, ["friend1@example.test"])
        assert isinstance(refused.value, errors.TemporaryFailure)
    assert len(inbox(store, run, friends[0].id)) == 2
    assert inbox(store, run, friends[1].id) == []
    # another account has its own counter
    run(send, store, friends[2].id, "friend2@example.test", ["friend3@example.test"])


def test_recipients_per_hour_refused_at_the_recipient_that_goes_over(limited, run):
    store, sender, friends = limited

    async def go():
        first = await store.begin_submission(sender.id, "sender@example.test")
        for i in range(4):
            await first.add_recipient(f"friend{i}@example.test")
        await first.commit(RAW)
        second = await store.begin_submission(sender.id, "sender@example.test")
        await second.add_recipient("friend4@example.test")  # the fifth of the hour
        with pytest.raises(errors.RateLimited):
            await second.add_recipient("friend5@example.test")  # the sixth
        return await second.commit(RAW)
    result = run(go)
    assert [r.recipient.address for r in result.local] == ["friend4@example.test"]
    assert inbox(store, run, friends[5].id) == []


def test_parallel_submissions_cannot_pass_the_limit_together(limited, run):
    store, sender, friends = limited

    async def go():
        subs = [await store.begin_submission(sender.id, "sender@example.test") for _ in range(3)]
        for s in subs:
            await s.add_recipient("friend0@example.test")  # each saw 0 sent at MAIL
        outcomes = []
        for s in subs:
            try:
                await s.commit(RAW)
                outcomes.append("ok")
            except errors.RateLimited:
                outcomes.append("limited")
        return outcomes
    assert run(go) == ["ok", "ok", "limited"]
    assert len(inbox(store, run, friends[0].id)) == 2


def test_a_failed_submission_is_not_counted_and_old_counts_are_pruned(limited, run):
    store, sender, friends = limited
    run(store.set_quota, friends[5].id, None, None, 10)
    for _ in range(3):  # counted at commit, refused by the recipient's quota after: refunded
        assert run(send, store, sender.id, "sender@example.test", ["friend5@example.test"]).refused is not None
    run(send, store, sender.id, "sender@example.test", ["friend0@example.test"])
    run(send, store, sender.id, "sender@example.test", ["friend0@example.test"])

    async def rows():
        return await store._run("rows", lambda txn: txn.scalar("SELECT COUNT(*) FROM submission_counts"))

    async def age():
        await store._run("age", lambda txn: txn.execute("UPDATE submission_counts SET minute = minute - ?",
                                                        (KEEP_MINUTES + 1,)))
    assert run(rows) == 1
    run(age)  # two hours later: the hour's count is gone, and the purge drops the rows
    run(send, store, sender.id, "sender@example.test", ["friend0@example.test"])
    run(store.purge)
    assert run(rows) == 1
    assert len(inbox(store, run, friends[0].id)) == 3


def test_zero_is_unlimited(store, run):
    store.settings = dataclasses.replace(store.settings, rates=RateSettings(0, 0))
    sender = run(store.create_account, "sender@example.test", "x")
    run(store.create_account, "friend0@example.test", "x")
    for _ in range(5):
        run(send, store, sender.id, "sender@example.test", ["friend0@example.test"])
