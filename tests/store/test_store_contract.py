"""The store contract (store/interfaces.py), run against every engine: SQLite and MariaDB."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from store import errors
from store.interfaces import INBOX

DATA = Path(__file__).resolve().parent.parent / "data"

MSG = (b"From: Alice <alice@example.org>\r\nTo: bob@example.test\r\nSubject: Hello there\r\n"
       b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\nBody line\r\n")


def msg(n: int) -> bytes:
    return MSG.replace(b"Hello there", b"Hello %d" % n).replace(b"<m1@", b"<m%d@" % n)


def stored_blobs(backstage) -> tuple[int, int]:
    """(rows in the blobs table, blob files on disk)."""
    return backstage.count("blobs"), backstage.blob_files()


@pytest.fixture(params=["inline", "file"])
def blob_mode(request, store):
    """Small messages live inline in the database; with inline_blob_size = 0 every one is a file."""
    if request.param == "file":
        store.inline_blob_size = 0
    return request.param


@pytest.fixture
def account(store, run):
    return run(store.create_account, "bob@example.test", "x", "Bob")


def test_new_account_has_default_folders(store, run, account):
    mail = run(store.list_folders, account.id)
    assert [f.name for f in mail] == ["Archive", "Drafts", INBOX, "Junk", "Sent", "Trash"]
    assert {f.name: f.special_use for f in mail}["Sent"] == "\\Sent"
    every = run(store.list_folders, account.id, None)
    assert {(f.name, f.kind) for f in every} >= {("Calendar", "calendar"), ("Contacts", "contacts")}
    with pytest.raises(errors.Exists):
        run(store.create_account, "BOB@example.test", "x")
    with pytest.raises(errors.InvalidInput):
        run(store.create_account, "not-an-address", "x")


def test_recipients_aliases_and_detail(store, run, account):
    run(store.add_alias, "robert@example.test", "bob@example.test")
    assert run(store.resolve_recipient, "Robert@Example.TEST").account_id == account.id
    rcpt = run(store.resolve_recipient, "bob+lists@example.test")
    assert (rcpt.account_id, rcpt.detail) == (account.id, "lists")
    with pytest.raises(errors.NotFound):
        run(store.resolve_recipient, "nobody@example.test")
    with pytest.raises(errors.Exists):
        run(store.add_alias, "robert@example.test", "bob@example.test")
    creds = run(store.get_credentials, "robert@example.test")
    assert creds.account_id == account.id and creds.password_hash == "x"
    assert run(store.get_credentials, "nobody@example.test") is None


def test_append_fetch_and_cached_fields(store, run, account):
    inbox = run(store.get_folder, account.id, "inbox")
    uidvalidity, uid = run(store.append_message, account.id, inbox.id, MSG, ["\\Seen", "$Label1"], 1700000000)
    assert uidvalidity == inbox.uidvalidity and uid == 1
    [meta] = run(store.list_messages, inbox.id)
    assert meta.flags == {"\\Seen", "$Label1"} and meta.internaldate == 1700000000 and meta.size == len(MSG)
    [rec] = run(store.fetch_messages, inbox.id, [1], envelope=True, structure=True, header=True)
    assert rec.envelope[1] == "Hello there"
    assert rec.envelope[2] == [["Alice", None, "alice", "example.org"]]
    assert rec.structure["type"] == "text" and rec.header.endswith(b"\r\n\r\n")
    assert run(store.read_blob, rec.blob_id) == MSG
    [bare] = run(store.fetch_messages, inbox.id, [1])
    assert bare.envelope is None and bare.header is None


def test_flags_modseq_and_unchanged_since(store, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    for n in range(3):
        run(store.append_message, account.id, inbox.id, msg(n))
    before = run(store.get_folder, account.id, INBOX).highest_modseq
    res = run(store.store_flags, account.id, inbox.id, [1, 2], "add", ["\\Flagged"])
    assert [m.uid for m in res.updated] == [1, 2] and all(m.modseq > before for m in res.updated)
    again = run(store.store_flags, account.id, inbox.id, [1, 2], "add", ["\\Flagged"])
    assert again.updated == []  # nothing changed: no new modseq
    conflict = run(store.store_flags, account.id, inbox.id, [1, 3], "add", ["\\Seen"], unchanged_since=before)
    assert conflict.failed == [1] and [m.uid for m in conflict.updated] == [3]
    ch = run(store.changes_since, inbox.id, before)
    assert [m.uid for m in ch.updated] == [1, 2, 3] and ch.expunged == []
    with pytest.raises(errors.InvalidInput):
        run(store.store_flags, account.id, inbox.id, [1], "add", ["bad flag"])
    run(store.store_flags, account.id, inbox.id, [1], "replace", ["\\Answered"])
    assert run(store.list_messages, inbox.id)[0].flags == {"\\Answered"}


def test_copy_move_expunge_and_changes(store, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    archive = run(store.get_folder, account.id, "Archive")
    for n in range(4):
        run(store.append_message, account.id, inbox.id, msg(n))
    copied = run(store.copy_messages, account.id, inbox.id, [1, 2], archive.id)
    assert copied.pairs == [(1, 1), (2, 2)] and copied.uidvalidity == archive.uidvalidity
    mark = run(store.get_folder, account.id, INBOX).highest_modseq
    moved = run(store.move_messages, account.id, inbox.id, [3], archive.id)
    assert moved.pairs == [(3, 3)]
    run(store.store_flags, account.id, inbox.id, [1, 4], "add", ["\\Deleted"])
    assert run(store.expunge, account.id, inbox.id, [4]) == [4]
    assert run(store.expunge, account.id, inbox.id) == [1]
    assert [m.uid for m in run(store.list_messages, inbox.id)] == [2]
    ch = run(store.changes_since, inbox.id, mark)
    assert ch.expunged == [1, 3, 4]
    # a fetch of expunged UIDs returns nothing
    assert run(store.fetch_messages, inbox.id, [1, 3, 4]) == []


def test_uid_never_reused_and_uidvalidity_changes(store, run, account):
    f = run(store.create_folder, account.id, "Projects/Haven")
    run(store.append_message, account.id, f.id, msg(1))
    run(store.store_flags, account.id, f.id, [1], "add", ["\\Deleted"])
    run(store.expunge, account.id, f.id)
    assert run(store.append_message, account.id, f.id, msg(2))[1] == 2
    run(store.delete_folder, account.id, "Projects/Haven")
    again = run(store.create_folder, account.id, "Projects/Haven")
    assert again.uidvalidity > f.uidvalidity


def test_rename_moves_children_and_inbox_rule(store, run, account):
    run(store.create_folder, account.id, "Work")
    run(store.create_folder, account.id, "Work/2026")
    run(store.rename_folder, account.id, "Work", "Jobs/Old")
    names = {f.name for f in run(store.list_folders, account.id)}
    assert {"Jobs", "Jobs/Old", "Jobs/Old/2026"} <= names and "Work" not in names
    with pytest.raises(errors.Exists):
        run(store.rename_folder, account.id, "Jobs", "Sent")
    inbox = run(store.get_folder, account.id, INBOX)
    run(store.append_message, account.id, inbox.id, msg(1))
    run(store.rename_folder, account.id, INBOX, "Old Inbox")
    old = run(store.get_folder, account.id, "Old Inbox")
    assert len(run(store.list_messages, old.id)) == 1
    assert run(store.list_messages, inbox.id) == []
    with pytest.raises(errors.PermissionDenied):
        run(store.delete_folder, account.id, "INBOX")


def test_soft_delete_restore_and_purge(store, backstage, run, account, blob_mode):
    inbox = run(store.get_folder, account.id, INBOX)
    run(store.append_message, account.id, inbox.id, MSG)
    run(store.store_flags, account.id, inbox.id, [1], "add", ["\\Deleted"])
    run(store.expunge, account.id, inbox.id)
    [item] = run(store.list_deleted, account.id)
    assert item["folder"] == INBOX and item["subject"] == "Hello there"
    assert run(store.purge) .messages == 0  # within the 30-day lifetime
    assert run(store.restore_messages, account.id, [item["id"]]) == 1
    [meta] = run(store.list_messages, inbox.id)
    assert meta.uid == 2 and "\\Deleted" not in meta.flags  # a new UID, never the old one
    assert run(store.list_deleted, account.id) == []
    run(store.store_flags, account.id, inbox.id, [2], "add", ["\\Deleted"])
    run(store.expunge, account.id, inbox.id)
    assert stored_blobs(backstage) == (1, 1 if blob_mode == "file" else 0)
    report = run(store.purge, 0)
    assert report.messages >= 1 and report.blobs == 1
    assert stored_blobs(backstage) == (0, 0)


def test_single_instance_blobs_across_accounts(store, backstage, run, account, blob_mode):
    other = run(store.create_account, "carol@example.test", "x")
    delivery = store.begin_delivery("alice@example.org")
    run(delivery.add_recipient, "bob@example.test")
    run(delivery.add_recipient, "carol@example.test")
    results = run(delivery.commit, MSG)
    assert [r.error for r in results] == [None, None] and [r.uid for r in results] == [1, 1]
    one = (1, 1 if blob_mode == "file" else 0)
    assert stored_blobs(backstage) == one
    # deleting one account keeps the blob the other still references
    run(store.delete_account, "bob@example.test")
    assert stored_blobs(backstage) == one
    inbox = run(store.get_folder, other.id, INBOX)
    [rec] = run(store.fetch_messages, inbox.id, [1])
    assert run(store.read_blob, rec.blob_id) == MSG
    run(store.delete_account, "carol@example.test")
    assert stored_blobs(backstage) == (0, 0)


def test_events_published_after_commit(store, run, account):
    seen = []
    from twisted.internet import reactor, threads
    unsubscribe = threads.blockingCallFromThread(reactor, store.bus.subscribe, account.id, seen.append)
    inbox = run(store.get_folder, account.id, INBOX)
    run(store.append_message, account.id, inbox.id, MSG)
    assert [(e.folder_id, e.kind) for e in seen] == [(inbox.id, "message")]
    # the event's modseq is already visible to a reader
    assert run(store.changes_since, inbox.id, seen[0].modseq - 1).updated[0].uid == 1
    threads.blockingCallFromThread(reactor, unsubscribe)
    run(store.append_message, account.id, inbox.id, msg(2))
    assert len(seen) == 1


def test_status_counts(store, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    for n in range(3):
        run(store.append_message, account.id, inbox.id, msg(n), ["\\Seen"] if n == 0 else [])
    st = run(store.folder_status, account.id, INBOX)
    assert (st.messages, st.unseen, st.deleted, st.size) == (3, 2, 0, sum(len(msg(n)) for n in range(3)))


def test_corpus_messages_store_and_read_back(store, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    files = sorted((DATA / "mail").glob("*.eml"))
    assert files, "tests/data/mail is empty"
    for path in files:
        raw = path.read_bytes()
        run(store.append_message, account.id, inbox.id, raw)
    recs = run(store.fetch_messages, inbox.id, range(1, len(files) + 1), envelope=True, structure=True, header=True)
    assert len(recs) == len(files)
    for path, rec in zip(files, recs):
        assert run(store.read_blob, rec.blob_id) == path.read_bytes(), path.name


def test_locked_sqlite_is_a_temporary_failure(engine, store, backstage, run, account):
    if engine != "sqlite":
        pytest.skip("SQLite lock semantics")
    inbox = run(store.get_folder, account.id, INBOX)

    run(backstage.set_busy_timeout, 200)
    locker = sqlite3.connect(backstage.sqlite_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        start = time.monotonic()
        with pytest.raises(errors.TemporaryFailure):
            run(store.append_message, account.id, inbox.id, MSG)
        assert time.monotonic() - start < 30
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    inbox = run(store.get_folder, account.id, INBOX)
    assert run(store.list_messages, inbox.id) == []  # nothing half-written
    run(store.append_message, account.id, inbox.id, MSG)
    assert len(run(store.list_messages, inbox.id)) == 1


def test_migrate_is_idempotent(store, run):
    assert run(store.migrate) == []
    current, latest = run(store.schema_version)
    assert current == latest >= 1


def test_changes_of_a_deleted_folder_are_expunges(store, run, account):
    f = run(store.create_folder, account.id, "Gone")
    for n in range(2):
        run(store.append_message, account.id, f.id, msg(n))
    mark = run(store.get_folder, account.id, "Gone").highest_modseq
    run(store.delete_folder, account.id, "Gone")
    changes = run(store.changes_since, f.id, mark)
    assert changes.expunged == [1, 2] and changes.updated == []


def test_local_domains(store, run, account):
    assert run(store.is_local_domain, "example.test") and run(store.is_local_domain, "EXAMPLE.test")
    assert not run(store.is_local_domain, "elsewhere.example")
    run(store.add_alias, "info@other.example", "bob@example.test")
    assert run(store.is_local_domain, "other.example")


def test_append_from_a_file_and_read_back_in_pieces(store, run, account, tmp_path):
    """A spooled message (a file, as IMAP APPEND hands over a big literal) is stored like bytes,
    in a blob file above inline_blob_size, and open_blob reads it back piece by piece."""
    inbox = run(store.get_folder, account.id, INBOX)
    raw = MSG + b"".join(b"line %07d .\r\n" % i for i in range(60000))  # ~840 KB
    path = tmp_path / "spooled"
    path.write_bytes(raw)
    with open(path, "rb") as f:
        f.seek(1234)  # the store reads from the start whatever the position
        _uidvalidity, uid = run(store.append_message, account.id, inbox.id, f, ["\\Seen"])
    [rec] = run(store.fetch_messages, inbox.id, [uid], envelope=True, structure=True, header=True)
    assert rec.meta.size == len(raw) and rec.envelope[1] == "Hello there"
    assert rec.header == MSG[:MSG.index(b"\r\n\r\n") + 4]
    assert run(store.read_blob, rec.blob_id) == raw
    stream = run(store.open_blob, rec.blob_id)
    try:
        run(stream.skip, 100000)
        pieces = []
        while True:
            piece = run(stream.read, 65536)
            if not piece:
                break
            pieces.append(piece)
        assert b"".join(pieces) == raw[100000:]
    finally:
        stream.close()
    stream = run(store.open_blob, rec.blob_id)
    stream.close()
    assert run(stream.read, 10) == b""  # closed: nothing more
    # a small message from a file is stored inline, like bytes
    small = tmp_path / "small"
    small.write_bytes(MSG)
    with open(small, "rb") as f:
        _uidvalidity, uid2 = run(store.append_message, account.id, inbox.id, f)
    [rec2] = run(store.fetch_messages, inbox.id, [uid2])
    stream = run(store.open_blob, rec2.blob_id)
    assert run(stream.read, 1 << 20) == MSG and run(stream.read, 10) == b""
    stream.close()


def test_append_from_a_file_over_the_size_limit_is_too_big(store, run, account, tmp_path):
    inbox = run(store.get_folder, account.id, INBOX)
    path = tmp_path / "huge"
    with open(path, "wb") as f:
        f.write(MSG)
        f.truncate(store.max_message_size + 1)
    with open(path, "rb") as f, pytest.raises(errors.TooBig):
        run(store.append_message, account.id, inbox.id, f)
    assert run(store.list_messages, inbox.id) == []


def test_purge_sweeps_temporary_blob_files_a_crash_left(store, run):
    """A blob write cut off by a crash leaves a file in blobs/.tmp/: the purge removes it once it
    is older than the orphan grace period, never a fresh one (a write in progress)."""
    tmp = store.blobs.root / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    stale, fresh = tmp / "1.2.3.tmp", tmp / "1.2.4.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    run(store.purge)
    assert not stale.exists() and fresh.exists()


def test_subscriptions_are_names_that_outlive_their_folder(store, run, account):
    defaults = ["Archive", "Drafts", INBOX, "Junk", "Sent", "Trash"]
    assert run(store.list_subscriptions, account.id) == defaults
    assert all(f.subscribed for f in run(store.list_folders, account.id))
    run(store.create_folder, account.id, "Lists")
    assert not run(store.get_folder, account.id, "Lists").subscribed  # CREATE does not subscribe
    run(store.set_subscribed, account.id, "Lists", True)
    run(store.set_subscribed, account.id, "Lists", True)  # twice is once
    assert run(store.get_folder, account.id, "Lists").subscribed
    run(store.rename_folder, account.id, "Lists", "Groups")  # the subscription moves along
    assert "Groups" in run(store.list_subscriptions, account.id)
    assert "Lists" not in run(store.list_subscriptions, account.id)
    run(store.delete_folder, account.id, "Groups")  # ... and outlives the folder
    assert run(store.list_subscriptions, account.id) == sorted(defaults + ["Groups"])
    run(store.create_folder, account.id, "Groups")
    assert run(store.get_folder, account.id, "Groups").subscribed
    run(store.delete_folder, account.id, "Groups")
    run(store.set_subscribed, account.id, "Groups", False)  # a name without a folder
    assert run(store.list_subscriptions, account.id) == defaults
    with pytest.raises(errors.NotFound):
        run(store.set_subscribed, account.id, "Groups", False)
    with pytest.raises(errors.NotFound):
        run(store.set_subscribed, account.id, "Nowhere", True)
    run(store.set_subscribed, account.id, "Sent", False)
    assert not run(store.get_folder, account.id, "Sent").subscribed
    other = run(store.create_account, "carol@example.test", "x")
    assert run(store.list_subscriptions, other.id) == defaults
    run(store.delete_account, "carol@example.test")
    assert run(store.list_subscriptions, other.id) == []


def test_claim_recent_gives_each_new_message_to_one_claim(store, run, account):
    from twisted.internet import defer
    inbox = run(store.get_folder, account.id, INBOX)
    assert inbox.recent_uid == 0
    for i in range(3):
        run(store.append_message, account.id, inbox.id, msg(i))
    assert run(store.folder_status, account.id, INBOX).recent == 3
    assert run(store.claim_recent, inbox.id) == (0, 3)
    assert run(store.claim_recent, inbox.id) == (3, 3)  # nothing new: an empty claim
    assert run(store.folder_status, account.id, INBOX).recent == 0
    assert run(store.get_folder, account.id, INBOX).recent_uid == 3
    # copies, moves and appends are new messages of their folder
    archive = run(store.get_folder, account.id, "Archive")
    run(store.copy_messages, account.id, inbox.id, [1], archive.id)
    run(store.move_messages, account.id, inbox.id, [2], archive.id)
    run(store.move_messages, account.id, inbox.id, [3], inbox.id)
    assert run(store.folder_status, account.id, "Archive").recent == 2
    assert run(store.folder_status, account.id, INBOX).recent == 1
    assert run(store.claim_recent, archive.id) == (0, 2)

    async def race_claims() -> list:
        work, kinds = [], []
        for i in range(12):
            work.append(defer.Deferred.fromCoroutine(store.append_message(account.id, inbox.id, msg(10 + i))))
            kinds.append("append")
            for _ in range(3):
                work.append(defer.Deferred.fromCoroutine(store.claim_recent(inbox.id)))
                kinds.append("claim")
        results = await defer.gatherResults(work)
        return [r for r, k in zip(results, kinds) if k == "claim"]

    claims = run(race_claims) + [run(store.claim_recent, inbox.id)]
    claimed = []
    for floor, top in claims:
        assert floor <= top
        claimed += range(floor + 1, top + 1)
    assert sorted(claimed) == list(range(4, 17))  # every new UID exactly once (4: the MOVE above)
    run(store.delete_folder, account.id, "Archive")
    with pytest.raises(errors.NotFound):
        run(store.claim_recent, archive.id)


def test_delta_006_upgrades_a_store_with_mail(store, backstage, run, account):
    """A store at delta 5 (as before): its subscribed mail folders become subscriptions, and the
    messages it holds are not recent to the first session after the upgrade."""
    inbox = run(store.get_folder, account.id, INBOX)
    for i in range(3):
        run(store.append_message, account.id, inbox.id, msg(i))
    run(store.create_folder, account.id, "Old")
    backstage.execute("DELETE FROM applied_schema_deltas WHERE version = 6")
    backstage.execute("DROP TABLE mailbox_subscriptions")
    backstage.execute("ALTER TABLE folders DROP COLUMN recent_uid")
    # delta 1 subscribed every folder; an IMAP UNSUBSCRIBE cleared the column
    backstage.execute("UPDATE folders SET subscribed = 1")
    backstage.execute("UPDATE folders SET subscribed = 0 WHERE name = 'Junk'")
    assert run(store.migrate) == ["006_imap_recent"]
    assert run(store.list_subscriptions, account.id) == ["Archive", "Drafts", INBOX, "Old", "Sent", "Trash"]
    assert run(store.folder_status, account.id, INBOX).recent == 0
    assert run(store.claim_recent, inbox.id) == (3, 3)
    run(store.append_message, account.id, inbox.id, msg(9))
    assert run(store.claim_recent, inbox.id) == (3, 4)
