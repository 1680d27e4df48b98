"""Out-of-office settings on the real store (SQLite and MariaDB): the contract's get/set, its
periods, its refusals, and the replies the delivery pipeline makes from them (the wire-level view
is tests/gateways/activesync/test_oof.py)."""

from __future__ import annotations

import dataclasses
import time

import pytest

from store import errors
from store.interfaces import OOF_MAX_MESSAGE, OOF_OFF, OOF_ON, OOF_SCHEDULED, OofReply, OutOfOffice
from tests.store.test_rules_delivery import MSG, activate, deliver, queued, settings, subjects

AWAY = OutOfOffice(state=OOF_ON, internal=OofReply(True, "In the office Monday."),
                   external_unknown=OofReply(True, "<p>Away</p>", html=True))


@pytest.fixture
def bob(store, run):
    return run(store.create_account, "bob@example.test", "x", "Bob")


def test_get_set_and_periods(store, run, bob):
    assert run(store.get_out_of_office, bob.id) == OutOfOffice()
    stored = run(store.set_out_of_office, bob.id, AWAY)
    assert dataclasses.replace(stored, since=0) == AWAY and stored.since >= int(time.time()) - 5
    assert run(store.get_out_of_office, bob.id) == stored
    # the messages alone change: the same period
    again = run(store.set_out_of_office, bob.id, dataclasses.replace(AWAY, internal=OofReply(True, "Later.")))
    assert again.since == stored.since and again.internal.message == "Later."
    run(store.set_out_of_office, bob.id, dataclasses.replace(stored, since=0, state=OOF_OFF))
    with pytest.raises(errors.NotFound):
        run(store.get_out_of_office, 999999)
    with pytest.raises(errors.NotFound):
        run(store.set_out_of_office, 999999, AWAY)
    with pytest.raises(errors.InvalidInput):
        run(store.set_out_of_office, bob.id, OutOfOffice(state=5))
    with pytest.raises(errors.InvalidInput):
        run(store.set_out_of_office, bob.id, OutOfOffice(state=OOF_SCHEDULED, start_at=200, end_at=100))
    with pytest.raises(errors.TooBig):
        run(store.set_out_of_office, bob.id, OutOfOffice(internal=OofReply(True, "x" * (OOF_MAX_MESSAGE + 1))))


def test_delivery_answers_by_audience_once_per_period(store, backstage, run, bob):
    settings(store, outbound=True)
    run(store.set_out_of_office, bob.id, AWAY)
    deliver(store, run)
    deliver(store, run)
    [q] = queued(store, run)
    assert q.mail_from == "" and [x.address for x in q.recipients] == ["alice@remote.example"]
    reply = run(store.read_blob, q.blob_id)
    assert b"Content-Type: text/html" in reply and b"<p>Away</p>" in reply
    assert subjects(store, run, bob) == ["Hello there", "Hello there"]
    # a colleague (the same domain) gets the internal message, in her INBOX
    carol = run(store.create_account, "carol@example.test", "x")
    note = MSG.replace(b"alice@remote.example", b"carol@example.test")
    deliver(store, run, note, mail_from="carol@example.test")
    [answer] = run(store.fetch_messages_with_bodies, run(store.get_folder, carol.id, "INBOX").id, [1])
    assert b"In the office Monday." in answer[1]
    # known senders get nothing here: that reply is not enabled
    backstage.execute("UPDATE vacation_replies SET expires_at = 1")
    run(store.set_out_of_office, bob.id, dataclasses.replace(AWAY, external_unknown=OofReply(False, "x")))
    deliver(store, run)
    assert len(queued(store, run)) == 1


def test_the_script_runs_and_its_own_vacation_wins(store, run, bob):
    settings(store, outbound=True)
    activate(store, run, bob, 'require ["vacation", "fileinto"]; fileinto "Archive"; vacation "From the script.";')
    run(store.set_out_of_office, bob.id, AWAY)
    deliver(store, run)
    [q] = queued(store, run)
    assert b"From the script." in run(store.read_blob, q.blob_id)
    assert subjects(store, run, bob, "Archive") == ["Hello there"]


def test_schedule_bounds(store, run, bob):
    settings(store, outbound=True)
    now = int(time.time())
    run(store.set_out_of_office, bob.id, dataclasses.replace(AWAY, state=OOF_SCHEDULED, start_at=now + 3600,
                                                             end_at=now + 7200))
    deliver(store, run)
    assert queued(store, run) == []
    run(store.set_out_of_office, bob.id, dataclasses.replace(AWAY, state=OOF_SCHEDULED, start_at=now - 60,
                                                             end_at=now + 7200))
    deliver(store, run)
    assert len(queued(store, run)) == 1
