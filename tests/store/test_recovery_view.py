"""Recovery views through the store contract, on every engine: the recoverable messages as
read-only folders (IMAP's "Recovered Items"), their UIDs, restore by copy/move out, purge by
expunge, and what a view refuses."""

from __future__ import annotations

import pytest

from store import errors
from store.interfaces import INBOX, is_recovery_view


def msg(n: int) -> bytes:
    return (f"From: a@example.org\r\nTo: view@example.test\r\nSubject: message {n}\r\n"
            f"Message-ID: <m{n}@example.org>\r\n\r\nbody number {n} findme{n}\r\n").encode()


@pytest.fixture
def account(store, run):
    return run(store.create_account, "view@example.test", "x", "View")


def folder(store, run, account, name):
    try:
        return run(store.get_folder, account.id, name)
    except errors.NotFound:
        return run(store.create_folder, account.id, name)


def put(store, run, account, name, n, flags=()):
    f = folder(store, run, account, name)
    return run(store.append_message, account.id, f.id, msg(n), list(flags))[1]


def delete(store, run, account, name, uids):
    f = folder(store, run, account, name)
    run(store.store_flags, account.id, f.id, uids, "add", ["\\Deleted"])
    return run(store.expunge, account.id, f.id, uids)


def test_views_list_what_was_deleted_with_ascending_uids(store, run, account):
    a = put(store, run, account, INBOX, 1, ["\\Seen", "$label1"])
    b = put(store, run, account, INBOX, 2)
    c = put(store, run, account, "Archive", 3, ["\\Flagged"])
    put(store, run, account, INBOX, 4)  # stays live
    everything = run(store.recovery_view, account.id)
    assert is_recovery_view(everything.id) and everything.name == "" and everything.highest_modseq == 0
    assert run(store.list_messages, everything.id) == []
    delete(store, run, account, INBOX, [b])
    delete(store, run, account, "Archive", [c])
    delete(store, run, account, INBOX, [a])
    metas = run(store.list_messages, everything.id)
    assert len(metas) == 3
    uids = [m.uid for m in metas]
    assert uids == sorted(uids) and len(set(uids)) == 3 and uids[0] >= 1
    # numbered in the order of deletion: b, c, a; flags are the ones they had (and \Deleted)
    recs = run(store.fetch_messages, everything.id, uids, envelope=True)
    assert [r.envelope[1] for r in recs] == ["message 2", "message 3", "message 1"]
    assert {"\\Seen", "$label1", "\\Deleted"} <= recs[2].meta.flags
    assert run(store.recoverable_origins, account.id) == ["Archive", INBOX]
    inbox_view = run(store.recovery_view, account.id, INBOX)
    assert [m.uid for m in run(store.list_messages, inbox_view.id)] == [uids[0], uids[2]]
    archive_view = run(store.recovery_view, account.id, "Archive")
    assert [m.uid for m in run(store.list_messages, archive_view.id)] == [uids[1]]
    # a later delete comes above every UID given before, in every view
    d = put(store, run, account, INBOX, 5)
    delete(store, run, account, INBOX, [d])
    later = [m.uid for m in run(store.list_messages, inbox_view.id)]
    assert later[:2] == [uids[0], uids[2]] and later[2] > uids[2]
    assert [m.uid for m in run(store.list_messages, everything.id)] == uids + [later[2]]
    st = run(store.recovery_status, account.id)
    assert (st.messages, st.folder.uidnext > later[2]) == (4, True)
    assert st.unseen == 3 and st.size == sum(len(msg(n)) for n in (1, 2, 3, 5))
    # the bodies read as in a folder, and the text index searches a view too
    [(rec, raw)] = run(store.fetch_messages_with_bodies, everything.id, [uids[0]])
    assert raw == msg(2)
    assert run(store.search_text, everything.id, uids, ["findme3"]) == {uids[1]: frozenset({"findme3"}),
                                                                       uids[0]: frozenset(),
                                                                       uids[2]: frozenset()}
    matches = run(store.text_matches, everything.id, [("subject", "message 3")])
    assert matches is None or set(matches) == {uids[1]}
    assert set(run(store.message_previews, everything.id, [uids[1]])) == {uids[1]}


def test_unknown_origin_and_moves_are_not_views(store, run, account):
    with pytest.raises(errors.NotFound):
        run(store.recovery_view, account.id, "Never")
    uid = put(store, run, account, INBOX, 1)
    archive = folder(store, run, account, "Archive")
    run(store.move_messages, account.id, run(store.get_folder, account.id, INBOX).id, [uid], archive.id)
    assert run(store.list_messages, run(store.recovery_view, account.id).id) == []  # a MOVE is not a delete
    assert run(store.recovery_view, account.id, "Archive").name == "Archive"  # empty, but selectable


def test_copy_out_restores_with_flags_and_leaves_the_view(store, run, account):
    a = put(store, run, account, INBOX, 1, ["\\Seen", "$label1"])
    b = put(store, run, account, INBOX, 2)
    delete(store, run, account, INBOX, [a, b])
    view = run(store.recovery_view, account.id)
    va, vb = [m.uid for m in run(store.list_messages, view.id)]
    # a flag set in the view is what the message comes back with
    res = run(store.store_flags, account.id, view.id, [vb], "add", ["\\Flagged"])
    assert [m.uid for m in res.updated] == [vb] and "\\Flagged" in res.updated[0].flags
    archive = folder(store, run, account, "Archive")
    result = run(store.copy_messages, account.id, view.id, [va, vb], archive.id)
    assert [p[0] for p in result.pairs] == [va, vb] and result.uidvalidity == archive.uidvalidity
    back = {m.uid: m for m in run(store.list_messages, archive.id)}
    assert set(back) == {p[1] for p in result.pairs}
    assert back[result.pairs[0][1]].flags == frozenset({"\\Seen", "$label1"})
    assert back[result.pairs[1][1]].flags == frozenset({"\\Flagged"})
    assert run(store.list_messages, view.id) == []
    assert run(store.list_deleted, account.id) == []  # restored once: not recoverable again
    # a second copy of the same UIDs finds nothing
    assert run(store.copy_messages, account.id, view.id, [va, vb], archive.id).pairs == []


def test_move_out_restores_and_respects_the_quota(store, run, account):
    uid = put(store, run, account, INBOX, 1)
    delete(store, run, account, INBOX, [uid])
    view = run(store.recovery_view, account.id, INBOX)
    [v] = [m.uid for m in run(store.list_messages, view.id)]
    inbox = run(store.get_folder, account.id, INBOX)
    run(store.set_quota, account.id, hard=1)
    with pytest.raises(errors.OverQuota):
        run(store.move_messages, account.id, view.id, [v], inbox.id)
    run(store.set_quota, account.id, hard=0)
    result = run(store.move_messages, account.id, view.id, [v], inbox.id)
    assert len(result.pairs) == 1 and result.pairs[0][1] > uid
    assert [m.uid for m in run(store.list_messages, inbox.id)] == [result.pairs[0][1]]
    assert run(store.list_messages, view.id) == []


def test_expunge_in_a_view_removes_for_good(store, run, account, backstage):
    a = put(store, run, account, INBOX, 1)
    b = put(store, run, account, INBOX, 2)
    delete(store, run, account, INBOX, [a, b])
    view = run(store.recovery_view, account.id)
    va, vb = [m.uid for m in run(store.list_messages, view.id)]
    # the tombstones still carry \Deleted from the expunge: clear it on one, so only the other goes
    run(store.store_flags, account.id, view.id, [vb], "remove", ["\\Deleted"])
    blobs = backstage.count("blobs")
    assert run(store.expunge, account.id, view.id) == [va]
    assert [m.uid for m in run(store.list_messages, view.id)] == [vb]
    assert backstage.count("blobs") == blobs - 1
    assert [d["subject"] for d in run(store.list_deleted, account.id)] == ["message 2"]
    # UID EXPUNGE of a message without \Deleted removes nothing
    assert run(store.expunge, account.id, view.id, [vb]) == []


def test_a_view_refuses_writes_into_it(store, run, account):
    uid = put(store, run, account, INBOX, 1)
    inbox = run(store.get_folder, account.id, INBOX)
    view = run(store.recovery_view, account.id)
    for call in (lambda: run(store.append_message, account.id, view.id, msg(9)),
                 lambda: run(store.append_messages, account.id, view.id, [(msg(9), [], None)]),
                 lambda: run(store.copy_messages, account.id, inbox.id, [uid], view.id),
                 lambda: run(store.move_messages, account.id, inbox.id, [uid], view.id),
                 lambda: run(store.delete_messages, account.id, view.id, [1])):
        with pytest.raises(errors.PermissionDenied):
            call()
    assert [m.uid for m in run(store.list_messages, inbox.id)] == [uid]
    assert run(store.changes_since, view.id, 0).updated == []
    assert run(store.claim_recent, view.id) == (0, 0)


def test_views_of_another_account_are_not_reachable(store, run, account):
    other = run(store.create_account, "other@example.test", "x", "Other")
    uid = put(store, run, account, INBOX, 1)
    delete(store, run, account, INBOX, [uid])
    mine = run(store.recovery_view, account.id)
    [v] = [m.uid for m in run(store.list_messages, mine.id)]
    theirs = run(store.recovery_view, other.id)
    assert run(store.list_messages, theirs.id) == []
    other_inbox = run(store.get_folder, other.id, INBOX)
    with pytest.raises(errors.NotFound):
        run(store.copy_messages, other.id, mine.id, [v], other_inbox.id)
    with pytest.raises(errors.NotFound):
        run(store.expunge, other.id, mine.id)
    assert len(run(store.list_messages, mine.id)) == 1
