"""Txn.increment: an UPDATE that returns the new value in one round trip, on both engines."""

from __future__ import annotations

from store.interfaces import INBOX


async def _sql(store, fn):
    return await store._run("test", fn)


def test_increment_returns_the_new_value_or_none(store, run):
    account = run(store.create_account, "inc@example.test", "x", "Inc")
    inbox = run(store.get_folder, account.id, INBOX)

    def steps(txn):
        before = txn.scalar("SELECT uidnext FROM folders WHERE id = ?", (inbox.id,))
        first = txn.increment("folders", "uidnext", 5, "id = ? AND deleted_at = 0", (inbox.id,))
        second = txn.increment("folders", "uidnext", 1, "id = ?", (inbox.id,),
                               "highest_modseq = CASE WHEN highest_modseq < ? THEN ? ELSE highest_modseq END",
                               (10 ** 9, 10 ** 9))
        missing = txn.increment("folders", "uidnext", 1, "id = ?", (-1,))
        after = txn.execute("SELECT uidnext, highest_modseq FROM folders WHERE id = ?", (inbox.id,)).fetchone()
        return before, first, second, missing, tuple(after)
    before, first, second, missing, after = run(_sql, store, steps)
    assert (first, second, missing) == (before + 5, before + 6, None)
    assert after == (before + 6, 10 ** 9)


def test_uids_and_modseqs_of_deliveries_are_consecutive(store, run):
    account = run(store.create_account, "seq@example.test", "x", "Seq")
    inbox = run(store.get_folder, account.id, INBOX)
    results = [run(store.append_message, account.id, inbox.id, b"Subject: %d\r\n\r\nx\r\n" % i) for i in range(3)]
    uids = [r[1] for r in results]
    assert uids == [uids[0], uids[0] + 1, uids[0] + 2]
    status = run(store.folder_status, account.id, INBOX)
    metas = run(store.list_messages, inbox.id)
    assert [m.uid for m in metas] == uids and status.folder.uidnext == uids[-1] + 1
    assert status.folder.highest_modseq == max(m.modseq for m in metas)
