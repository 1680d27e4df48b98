"""The plan of a mail Sync response: deletes from the held ids, soft deletes for the time
window, changes by modseq without splitting a group, newest adds first, the window."""

from __future__ import annotations

from gateways.activesync.syncplan import cutoff, plan, window_size
from store.interfaces import MessageMeta

NOW = 1_800_000_000


def meta(uid, modseq=1, age_days=0, flags=()):
    return MessageMeta(uid=uid, modseq=modseq, flags=frozenset(flags), internaldate=NOW - age_days * 86400 - uid,
                       size=100)


def test_window_sizes_and_filters():
    assert [window_size(v) for v in (None, "", "25", 0, 513, 1000000, "x")] == [100, 100, 25, 512, 512, 512, 100]
    assert cutoff(0, NOW) == 0 and cutoff(None, NOW) == 0 and cutoff(3, NOW) == NOW - 7 * 86400
    assert cutoff("99", NOW) == 0


def test_initial_sync_in_windows_newest_first():
    live = [meta(u) for u in range(1, 251)]
    p = plan(live, set(), 0, 500, 100)
    assert [m.uid for m in p.adds] == list(range(1, 101)) and p.more  # internaldate falls with the uid
    p2 = plan(live, p.held, p.modseq, 500, 100)
    assert [m.uid for m in p2.adds] == list(range(101, 201)) and p2.more
    p3 = plan(live, p2.held, p2.modseq, 500, 100)
    assert len(p3.adds) == 50 and not p3.more and p3.held == set(range(1, 251)) and p3.modseq == 500


def test_deletes_come_from_the_held_ids():
    live = [meta(1), meta(3)]
    p = plan(live, {1, 2, 3, 4}, 10, 10, 100)
    assert p.deletes == [2, 4] and p.adds == [] and p.held == {1, 3} and not p.more


def test_the_time_window():
    live = [meta(1, age_days=1), meta(2, age_days=10), meta(3, age_days=40)]
    p = plan(live, {2, 3}, 5, 5, 100, oldest=cutoff(3, NOW))  # one week
    assert p.soft_deletes == [2, 3] and [m.uid for m in p.adds] == [1] and p.held == {1}


def test_changes_do_not_split_a_group_and_always_progress():
    held = set(range(1, 11))
    live = [meta(u, modseq=20) for u in range(1, 7)] + [meta(u, modseq=30) for u in range(7, 11)]
    p = plan(live, held, 10, 30, 5)
    assert len(p.changes) == 6 and p.modseq == 20 and p.more  # the first group whole, beyond the window
    p = plan(live, held, p.modseq, 30, 5)
    assert [m.uid for m in p.changes] == [7, 8, 9, 10] and p.modseq == 30 and not p.more
    p = plan(live, held, 10, 30, 8)  # room for the first group, not the second
    assert len(p.changes) == 6 and p.modseq == 20 and p.more
    assert plan(live, held, 30, 30, 5).changes == []


def test_deletes_fill_the_window_first():
    p = plan([meta(1, modseq=9)], set(range(1, 8)), 0, 9, 3)
    assert p.deletes == [2, 3, 4] and p.changes == [] and p.more and p.modseq == 0
    assert p.held == {1, 5, 6, 7}
