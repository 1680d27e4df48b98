"""The delivery pipeline's rules on the real store (SQLite and MariaDB): Sieve scripts, junk
filing, redirect and vacation through the outbound queue, quotas.  The wire-level view of the
same (LMTP replies, IMAP, a relay sink) is in tests/e2e/test_rules_e2e.py."""

from __future__ import annotations

import dataclasses

import pytest

from store import errors
from store.interfaces import INBOX

MSG = (b"Return-Path: <alice@remote.example>\r\n"
       b"From: Alice <alice@remote.example>\r\nTo: bob@example.test\r\nSubject: Hello there\r\n"
       b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@remote.example>\r\n\r\nBody line\r\n")


@pytest.fixture
def bob(store, run):
    return run(store.create_account, "bob@example.test", "x", "Bob")


def settings(store, **changes):
    quota = {k[len("quota_"):]: v for k, v in changes.items() if k.startswith("quota_")}
    rules = {k: v for k, v in changes.items() if not k.startswith("quota_")}
    store.settings = dataclasses.replace(store.settings, rules=dataclasses.replace(store.settings.rules, **rules),
                                         quota=dataclasses.replace(store.settings.quota, **quota))


def deliver(store, run, raw=MSG, to=("bob@example.test",), mail_from="alice@remote.example", junk=False):
    async def go():
        d = store.begin_delivery(mail_from)
        for a in to:
            await d.add_recipient(a)
        return await d.commit(raw, junk=junk)
    return run(go)


def subjects(store, run, account, folder=INBOX):
    f = run(store.get_folder, account.id, folder)
    metas = run(store.list_messages, f.id)
    recs = run(store.fetch_messages, f.id, [m.uid for m in metas], True)
    return [r.envelope["subject"] if isinstance(r.envelope, dict) else r.envelope[1] for r in recs]


def flags_of(store, run, account, folder=INBOX):
    f = run(store.get_folder, account.id, folder)
    return [set(m.flags) for m in run(store.list_messages, f.id)]


def activate(store, run, account, text, name="rules"):
    run(store.put_sieve_script, account.id, name, text)
    run(store.set_active_sieve_script, account.id, name)


def queued(store, run):
    return run(store.list_outbound)


# -- scripts: storage ------------------------------------------------------------------------

def test_script_storage_lifecycle(store, run, bob):
    assert run(store.list_sieve_scripts, bob.id) == []
    run(store.put_sieve_script, bob.id, "one", 'keep;')
    run(store.put_sieve_script, bob.id, "two", 'discard;')
    run(store.set_active_sieve_script, bob.id, "two")
    infos = run(store.list_sieve_scripts, bob.id)
    assert [(i.name, i.active, i.size) for i in infos] == [("one", False, 5), ("two", True, 8)]
    assert run(store.get_sieve_script, bob.id, "two") == "discard;"
    with pytest.raises(errors.PermissionDenied):
        run(store.delete_sieve_script, bob.id, "two")
    with pytest.raises(errors.Exists):
        run(store.rename_sieve_script, bob.id, "one", "two")
    run(store.rename_sieve_script, bob.id, "two", "deux")
    assert [(i.name, i.active) for i in run(store.list_sieve_scripts, bob.id)] == [("deux", True), ("one", False)]
    run(store.set_active_sieve_script, bob.id, None)
    run(store.delete_sieve_script, bob.id, "deux")
    with pytest.raises(errors.NotFound):
        run(store.get_sieve_script, bob.id, "deux")
    with pytest.raises(errors.NotFound):
        run(store.set_active_sieve_script, bob.id, "nope")


def test_script_errors_name_the_line(store, run, bob):
    with pytest.raises(errors.InvalidInput) as e:
        run(store.put_sieve_script, bob.id, "bad", 'require "fileinto";\nif header :is "x" "y" {\n  fileinto "A"\n}\n')
    assert "line" in str(e.value)
    with pytest.raises(errors.InvalidInput):
        run(store.put_sieve_script, bob.id, "bad\nname", "keep;")
    assert run(store.list_sieve_scripts, bob.id) == []


def test_script_limits(store, run, bob):
    settings(store, max_script_size=100, max_scripts=2)
    with pytest.raises(errors.TooBig):
        run(store.put_sieve_script, bob.id, "big", "keep;" + " " * 200)
    with pytest.raises(errors.TooBig):
        run(store.sieve_space, bob.id, "big", 101)
    run(store.put_sieve_script, bob.id, "a", "keep;")
    run(store.put_sieve_script, bob.id, "b", "keep;")
    with pytest.raises(errors.OverQuota):
        run(store.put_sieve_script, bob.id, "c", "keep;")
    run(store.put_sieve_script, bob.id, "b", "discard;")  # replacing is not a new script
    run(store.sieve_space, bob.id, "a", 50)


# -- scripts at delivery ---------------------------------------------------------------------

def test_no_script_keeps_in_inbox(store, run, bob):
    [r] = deliver(store, run)
    assert (r.error, r.folder) == (None, INBOX)
    assert subjects(store, run, bob) == ["Hello there"]


def test_fileinto_existing_and_missing_folders(store, run, bob):
    run(store.create_folder, bob.id, "Lists")
    activate(store, run, bob, 'require ["fileinto", "mailbox"];\n'
                              'if header :contains "subject" "hello" { fileinto "Lists"; }\n'
                              'fileinto :create "Made/New";\nfileinto "Missing";\n')
    [r] = deliver(store, run)
    assert r.error is None and r.folder == "Lists"
    assert subjects(store, run, bob, "Lists") == ["Hello there"]
    assert subjects(store, run, bob, "Made/New") == ["Hello there"]
    # a fileinto to a folder that does not exist (no :create) keeps the message in INBOX
    assert subjects(store, run, bob) == ["Hello there"]
    assert any("Missing" in a for a in r.actions)


def test_discard_and_reject(store, run, bob):
    activate(store, run, bob, 'if header :contains "subject" "hello" { discard; }')
    [r] = deliver(store, run)
    assert r.error is None and r.folder is None and "discard" in r.actions
    assert subjects(store, run, bob) == []
    activate(store, run, bob, 'require "reject"; reject "I do not want\r\nthis";')
    [r] = deliver(store, run)
    assert isinstance(r.error, errors.Rejected) and "do not want" in str(r.error)
    assert subjects(store, run, bob) == []


def test_script_change_takes_effect_at_once(store, run, bob):
    activate(store, run, bob, 'discard;')
    deliver(store, run)
    run(store.put_sieve_script, bob.id, "rules", 'keep;')  # same name, active: replaced in place
    deliver(store, run)
    run(store.set_active_sieve_script, bob.id, "")
    deliver(store, run)
    assert len(subjects(store, run, bob)) == 2


def test_nesting_is_refused_at_upload_and_a_deep_script_stored_earlier_keeps(store, backstage, run, bob):
    deep = "keep;\nif " + "allof(" * 300 + "true" + ")" * 300 + " { discard; }\n"
    with pytest.raises(errors.InvalidInput, match=r"line 2: blocks and tests nested more than 32 deep"):
        run(store.put_sieve_script, bob.id, "deep", deep)
    # a script stored before the limit existed (or by another tool): the message goes to INBOX
    activate(store, run, bob, "keep;")
    backstage.execute("UPDATE sieve_scripts SET script = ? WHERE account_id = ?", deep, bob.id)
    backstage.execute("UPDATE accounts SET rules_version = rules_version + 1 WHERE id = ?", bob.id)
    [r] = deliver(store, run)
    assert r.error is None and r.folder == INBOX and subjects(store, run, bob) == ["Hello there"]


def test_runtime_error_keeps(store, run, bob):
    # two rejects are a run-time error (RFC 5429): the implicit keep, never a lost message
    activate(store, run, bob, 'require "reject"; if true { reject "a"; } reject "b";')
    [r] = deliver(store, run)
    assert r.error is None and r.folder == INBOX
    assert any("error" in a for a in r.actions)


def test_subaddress_and_envelope(store, run, bob):
    activate(store, run, bob, 'require ["fileinto", "mailbox", "subaddress", "envelope"];\n'
                              'if envelope :detail "to" "lists" { fileinto :create "Lists"; stop; }\n'
                              'if address :domain "from" "remote.example" { fileinto :create "Remote"; }\n')
    deliver(store, run, to=("bob+lists@example.test",))
    deliver(store, run)
    assert subjects(store, run, bob, "Lists") == ["Hello there"]
    assert subjects(store, run, bob, "Remote") == ["Hello there"]


def test_two_recipients_each_their_own_rules(store, run, bob):
    carol = run(store.create_account, "carol@example.test", "x")
    activate(store, run, bob, 'discard;')
    results = deliver(store, run, to=("bob@example.test", "carol@example.test"))
    assert [r.error for r in results] == [None, None]
    assert subjects(store, run, bob) == [] and subjects(store, run, carol) == ["Hello there"]


# -- junk ------------------------------------------------------------------------------------

def test_junk_header_files_into_junk_before_the_script(store, run, bob):
    activate(store, run, bob, 'require "fileinto"; fileinto "Archive";')
    spam = MSG.replace(b"Subject:", b"X-Spam-Status: Yes, score=9.1\r\nSubject:")
    [r] = deliver(store, run, spam)
    assert r.folder == "Junk"
    assert subjects(store, run, bob, "Junk") == ["Hello there"] and subjects(store, run, bob, "Archive") == []
    not_spam = MSG.replace(b"Subject:", b"X-Spam-Status: No, score=0.1\r\nX-Spam-Flag: NO\r\nSubject:")
    deliver(store, run, not_spam)
    assert subjects(store, run, bob, "Archive") == ["Hello there"]


def test_junk_forced_and_without_script(store, run, bob):
    [r] = deliver(store, run, junk=True)
    assert r.folder == "Junk"
    flagged = MSG.replace(b"Subject:", b"X-Spam-Flag:   yes\r\nSubject:")
    [r] = deliver(store, run, flagged)
    assert r.folder == "Junk"
    settings(store, junk_headers=())
    [r] = deliver(store, run, flagged)
    assert r.folder == INBOX


# -- redirect and vacation through the outbound queue ------------------------------------------

def test_redirect_goes_to_the_queue(store, run, bob):
    settings(store, outbound=True)
    activate(store, run, bob, 'redirect "elsewhere@remote.example";')
    [r] = deliver(store, run)
    assert r.error is None and subjects(store, run, bob) == []
    [q] = queued(store, run)
    assert q.mail_from == "alice@remote.example"
    assert [x.address for x in q.recipients] == ["elsewhere@remote.example"]
    raw = run(store.read_blob, q.blob_id)
    assert raw.startswith(b"Delivered-To: bob@example.test\r\nFrom: Alice")  # no Return-Path


def test_redirect_loop_and_no_relay_keep(store, run, bob):
    activate(store, run, bob, 'redirect "elsewhere@remote.example";')
    [r] = deliver(store, run)  # no relay configured
    assert subjects(store, run, bob) == ["Hello there"] and queued(store, run) == []
    assert "redirect <elsewhere@remote.example>" not in r.actions  # the log says why instead
    assert any(a.startswith("redirect <elsewhere@remote.example>: not sent") for a in r.actions)
    settings(store, outbound=True)
    looped = b"Delivered-To: bob@example.test\r\n" + MSG
    [r] = deliver(store, run, looped)
    assert any("loop" in a for a in r.actions)
    assert len(subjects(store, run, bob)) == 2 and queued(store, run) == []


# -- quotas ----------------------------------------------------------------------------------

def test_quota_usage_counts_live_messages(store, run, bob):
    q = run(store.get_quota, bob.id)
    assert (q.used_bytes, q.used_messages, q.hard) == (0, 0, 0)
    deliver(store, run)
    deliver(store, run)
    q = run(store.get_quota, bob.id)
    assert (q.used_bytes, q.used_messages) == (2 * len(MSG), 2)
    inbox = run(store.get_folder, bob.id, INBOX)
    uid = run(store.list_messages, inbox.id)[0].uid
    run(store.delete_messages, bob.id, inbox.id, [uid])
    assert run(store.get_quota, bob.id).used_messages == 1


def test_hard_quota_refuses_delivery_and_append(store, run, bob):
    run(store.set_quota, bob.id, None, None, 2 * len(MSG))
    assert [r.error for r in deliver(store, run)] == [None]
    assert [r.error for r in deliver(store, run)] == [None]
    [r] = deliver(store, run)
    assert isinstance(r.error, errors.OverQuota)
    inbox = run(store.get_folder, bob.id, INBOX)
    with pytest.raises(errors.OverQuota):
        run(store.append_message, bob.id, inbox.id, MSG)
    # back to the server default (unlimited)
    assert run(store.set_quota, bob.id, None, None, -1).hard == 0
    assert [r.error for r in deliver(store, run)] == [None]


def test_server_default_quota_and_account_override(store, run, bob):
    settings(store, quota_hard=len(MSG))
    deliver(store, run)
    assert isinstance(deliver(store, run)[0].error, errors.OverQuota)
    run(store.set_quota, bob.id, hard=0)  # this account: unlimited
    assert deliver(store, run)[0].error is None


def test_warning_once_per_crossing(store, run, bob):
    run(store.set_quota, bob.id, warn=int(1.5 * len(MSG)))
    deliver(store, run)
    assert subjects(store, run, bob) == ["Hello there"]
    deliver(store, run)  # crosses warn: the message and one warning
    assert subjects(store, run, bob) == ["Hello there", "Hello there", "Your mailbox is almost full"]
    deliver(store, run)  # still over: no second warning
    assert subjects(store, run, bob).count("Your mailbox is almost full") == 1
    inbox = run(store.get_folder, bob.id, INBOX)
    run(store.delete_messages, bob.id, inbox.id, [m.uid for m in run(store.list_messages, inbox.id)])
    deliver(store, run)  # below warn again: the flag resets
    deliver(store, run)  # and crossing again warns again
    assert subjects(store, run, bob).count("Your mailbox is almost full") == 1
    assert len(subjects(store, run, bob)) == 3


def test_redirect_and_vacation_to_local_accounts_need_no_relay(store, run, bob):
    carol = run(store.create_account, "carol@example.test", "x")
    activate(store, run, bob, 'redirect "carol@example.test";')
    [r] = deliver(store, run)
    assert r.error is None and subjects(store, run, bob) == [] and subjects(store, run, carol) == ["Hello there"]
    assert queued(store, run) == []
    # carol is away; bob writes to her twice: one reply, in bob's INBOX
    activate(store, run, carol, 'require "vacation"; vacation :subject "Away" "Back on Monday.";')
    run(store.set_active_sieve_script, bob.id, None)
    note = MSG.replace(b"alice@remote.example", b"bob@example.test").replace(b"bob@example.test\r\nSubject",
                                                                            b"carol@example.test\r\nSubject")
    for _ in range(2):
        [r] = deliver(store, run, note, to=("carol@example.test",), mail_from="bob@example.test")
        assert r.error is None
    assert subjects(store, run, bob) == ["Away"]
    assert subjects(store, run, carol) == ["Hello there", "Hello there", "Hello there"]
    assert queued(store, run) == []


def test_vacation_through_the_queue_once_per_period(store, backstage, run, bob):
    settings(store, outbound=True)
    activate(store, run, bob, 'require "vacation"; vacation :days 3 "Away.";')
    deliver(store, run)
    deliver(store, run)
    [q] = queued(store, run)
    assert q.mail_from == "" and [x.address for x in q.recipients] == ["alice@remote.example"]
    reply = run(store.read_blob, q.blob_id)
    assert b"Auto-Submitted: auto-replied" in reply and b"Subject: Auto: Hello there" in reply
    # the period over: answered again
    backstage.execute("UPDATE vacation_replies SET expires_at = 1")
    deliver(store, run)
    assert len(queued(store, run)) == 2


def test_rules_that_fail_outright_deliver_to_inbox(store, run, bob):
    # the redirected copy (one Delivered-To line longer) is over the size limit: the plan
    # cannot be made, and the message still lands in the INBOX
    settings(store, outbound=True)
    raw = MSG.split(b"\r\n", 1)[1]  # no Return-Path to drop from the copy
    store.max_message_size = len(raw) + 5
    activate(store, run, bob, 'redirect "elsewhere@remote.example";')
    [r] = deliver(store, run, raw)
    assert r.error is None and r.folder == INBOX
    assert any("rules failed" in a for a in r.actions)
    assert queued(store, run) == []
