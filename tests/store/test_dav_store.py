"""Calendar and contact items in the store (store/dav.py), on every engine: the rows, the sync
state, soft delete, MOVE, purge.  ``store.dav`` is the blocking facade the CalDAV gateway's
worker threads use; the test thread is such a thread."""

from __future__ import annotations

import pytest

from store import errors
from store.interfaces import NewItem


def item(href: str, uid: str, start: int = 1000, end: int = 2000, component: str = "VEVENT",
         text: str = "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n") -> NewItem:
    return NewItem(href=href, uid=uid, etag=f'"{href}-{len(uid)}-{len(text)}"', component=component, data=text,
                   dtstart=start, dtend=end)


@pytest.fixture
def account(store, run):
    return run(store.create_account, "carol@example.test", "x", "Carol")


@pytest.fixture
def calendar(store, account):
    return store.dav.collection(account.id, "Calendar")


def test_default_collections_and_create(store, account):
    colls = {c.folder.name: c for c in store.dav.collections(account.id)}
    assert {n: c.tag for n, c in colls.items()} == {"Calendar": "VCALENDAR", "Contacts": "VADDRESSBOOK"}
    work = store.dav.create_collection(account.id, "work", "tasks", {"D:displayname": "Work"})
    assert work.folder.kind == "tasks" and work.props == {"D:displayname": "Work"}
    with pytest.raises(errors.Exists):
        store.dav.create_collection(account.id, "work", "calendar", {})
    with pytest.raises(errors.InvalidInput):
        store.dav.create_collection(account.id, "a/b", "calendar", {})
    before = store.dav.collection(account.id, "work").folder.highest_modseq
    store.dav.set_props(account.id, work.folder.id, {"D:displayname": "Job", "ICAL:calendar-color": "#ff0000"})
    after = store.dav.collection(account.id, "work")
    assert after.props == {"D:displayname": "Job", "ICAL:calendar-color": "#ff0000"}
    assert after.folder.highest_modseq > before  # the CTag changes with a property


def test_put_overwrite_uid_conflict_and_filter(store, account, calendar):
    fid = calendar.folder.id
    stored, replaced = store.dav.put(account.id, fid, item("a.ics", "A", 100, 200))
    assert not replaced and stored.href == "a.ics" and stored.modseq > 0
    stored2, replaced = store.dav.put(account.id, fid, item("a.ics", "A", 300, 400, text="X" * 10))
    assert replaced and stored2.id == stored.id and stored2.modseq > stored.modseq and stored2.etag != stored.etag
    with pytest.raises(errors.Exists):
        store.dav.put(account.id, fid, item("b.ics", "A"))  # one UID per collection (RFC 4791 §5.3.2.1)
    store.dav.put(account.id, fid, item("b.ics", "B", 1000, 5000))
    store.dav.put(account.id, fid, item("t.ics", "T", 1000, 5000, component="VTODO"))
    assert store.dav.has_uid(fid, "B") and not store.dav.has_uid(fid, "Z")
    assert [i.href for i in store.dav.filtered(fid, "VEVENT", 350, 1001)] == ["a.ics", "b.ics"]
    assert [i.href for i in store.dav.filtered(fid, "VEVENT", 400, 1000)] == []  # both ends exclusive
    assert [i.href for i in store.dav.filtered(fid, None, 4000, 9000)] == ["b.ics", "t.ics"]
    assert [i.href for i in store.dav.items(fid, ["b.ics", "nope.ics"])] == ["b.ics"]
    listing = store.dav.all_items(fid, with_data=False)
    assert [i.href for i in listing] == ["a.ics", "b.ics", "t.ics"] and listing[0].data is None
    with pytest.raises(errors.InvalidInput):
        store.dav.put(account.id, fid, item("x/y.ics", "Y"))


def test_long_uid_is_indexed_by_digest(store, account, calendar):
    uid = "u" * 400
    stored, _ = store.dav.put(account.id, calendar.folder.id, item("long.ics", uid))
    assert stored.uid.startswith("sha256:")
    assert store.dav.has_uid(calendar.folder.id, uid)
    with pytest.raises(errors.Exists):
        store.dav.put(account.id, calendar.folder.id, item("other.ics", uid))


def test_sync_changes_delete_and_restore(store, run, account, calendar):
    fid = calendar.folder.id
    store.dav.put(account.id, fid, item("a.ics", "A"))
    store.dav.put(account.id, fid, item("b.ics", "B"))
    token, purged, _ = store.dav.changes_since(fid, 0)
    assert purged == 0
    assert store.dav.changes_since(fid, token)[2] == []
    store.dav.put(account.id, fid, item("c.ics", "C"))
    store.dav.delete(account.id, fid, "a.ics")
    now, _, changed = store.dav.changes_since(fid, token)
    assert now > token and sorted(changed) == ["a.ics", "c.ics"]
    assert [i.href for i in store.dav.all_items(fid)] == ["b.ics", "c.ics"]
    with pytest.raises(errors.NotFound):
        store.dav.delete(account.id, fid, "a.ics")
    # the href and UID are free again while the tombstone waits; writing the UID again is
    # the item coming back: the tombstone is no longer recoverable
    assert [d["uid"] for d in run(store.list_deleted_dav, account.id)] == ["A"]
    store.dav.put(account.id, fid, item("a.ics", "A"))
    assert run(store.list_deleted_dav, account.id) == []
    store.dav.delete(account.id, fid, "a.ics")
    store.dav.put(account.id, fid, item("a.ics", "A2"))
    store.dav.delete(account.id, fid, "a.ics")
    deleted = run(store.list_deleted_dav, account.id)
    assert [(d["href"], d["uid"]) for d in deleted] == [("a.ics", "A2"), ("a.ics", "A")]
    count, refused = run(store.restore_dav, account.id, [deleted[0]["id"]])
    assert (count, refused) == (1, [])
    count, refused = run(store.restore_dav, account.id, [deleted[1]["id"]])
    assert count == 0 and "exists again" in refused[0]  # the restored one holds the name now
    assert [i.href for i in store.dav.all_items(fid)] == ["a.ics", "b.ics", "c.ics"]


def test_move_leaves_a_tombstone_not_a_recoverable_item(store, run, account, calendar):
    other = store.dav.create_collection(account.id, "other", "calendar", {})
    store.dav.put(account.id, calendar.folder.id, item("m.ics", "M"))
    token = store.dav.changes_since(calendar.folder.id, 0)[0]
    store.dav.move(account.id, calendar.folder.id, "m.ics", other.folder.id, "moved.ics")
    assert store.dav.changes_since(calendar.folder.id, token)[2] == ["m.ics"]
    assert [i.href for i in store.dav.all_items(other.folder.id)] == ["moved.ics"]
    assert store.dav.all_items(calendar.folder.id) == []
    assert run(store.list_deleted_dav, account.id) == []


def test_delete_collection_purge_and_old_tokens(store, run, account, calendar):
    fid = calendar.folder.id
    store.dav.put(account.id, fid, item("a.ics", "A"))
    early = store.dav.changes_since(fid, 0)[0]
    store.dav.put(account.id, fid, item("b.ics", "B"))
    store.dav.delete(account.id, fid, "a.ics")
    report = run(store.purge, 0)
    assert report.dav_items == 1
    current, purged, _ = store.dav.changes_since(fid, early)
    assert early < purged <= current  # the early token can no longer be answered incrementally
    temp = store.dav.create_collection(account.id, "temp", "contacts", {"D:displayname": "T"})
    store.dav.put(account.id, temp.folder.id, item("x.vcf", "X", component="VCARD"))
    store.dav.delete_collection(account.id, temp.folder.id)
    with pytest.raises(errors.NotFound):
        store.dav.collection(account.id, "temp")
    assert [d["href"] for d in run(store.list_deleted_dav, account.id)] == ["x.vcf"]
    # restoring an item of a deleted collection brings a collection of that name back
    count, _ = run(store.restore_dav, account.id, [run(store.list_deleted_dav, account.id)[0]["id"]])
    assert count == 1
    back = store.dav.collection(account.id, "temp")
    assert [i.href for i in store.dav.all_items(back.folder.id)] == ["x.vcf"]


def test_account_deletion_removes_dav_rows(store, backstage, run, account, calendar):
    store.dav.put(account.id, calendar.folder.id, item("a.ics", "A"))
    store.dav.set_props(account.id, calendar.folder.id, {"D:displayname": "Mine"})
    run(store.delete_account, account.address)
    assert (backstage.count("dav_items"), backstage.count("dav_collections")) == (0, 0)


def test_a_collection_deleted_twice_within_a_second(store, account):
    for _ in range(3):
        coll = store.dav.create_collection(account.id, "flip", "calendar", {})
        store.dav.put(account.id, coll.folder.id, item("a.ics", "A"))
        store.dav.delete_collection(account.id, coll.folder.id)
    with pytest.raises(errors.NotFound):
        store.dav.collection(account.id, "flip")


def test_conditional_writes_and_deletes(store, run, account, calendar):
    """An edit names the ETag it read; another writer's change in between is a Conflict and
    nothing is written (CalDAV If-Match and ActiveSync Change both use it)."""
    fid = calendar.folder.id
    first, _ = run(store.put_dav_item, account.id, fid, item("c.ics", "C"), "")
    with pytest.raises(errors.Conflict):  # a create of an href that is live
        run(store.put_dav_item, account.id, fid, item("c.ics", "C", text="BEGIN:VCALENDAR\r\nX:1\r\nEND:VCALENDAR\r\n"), "")
    edited, replaced = run(store.put_dav_item, account.id, fid, item("c.ics", "C", start=5), first.etag)
    assert replaced and edited.etag == first.etag and edited.dtstart == 5  # same text length, same test ETag
    other = item("c.ics", "C", text="BEGIN:VCALENDAR\r\nX-OTHER:1\r\nEND:VCALENDAR\r\n")
    run(store.put_dav_item, account.id, fid, other)  # unconditional: another client's edit
    with pytest.raises(errors.Conflict):
        run(store.put_dav_item, account.id, fid, item("c.ics", "C", start=9), first.etag)
    assert store.dav.items(fid, ["c.ics"])[0].data == other.data  # the loser wrote nothing
    with pytest.raises(errors.Conflict):
        run(store.delete_dav_item, account.id, fid, "c.ics", first.etag)
    run(store.delete_dav_item, account.id, fid, "c.ics", other.etag)
    with pytest.raises(errors.Conflict):  # deleted meanwhile: an edit of it is a conflict too
        run(store.put_dav_item, account.id, fid, item("c.ics", "C"), other.etag)
    with pytest.raises(errors.Conflict):
        run(store.delete_dav_item, account.id, fid, "c.ics", other.etag)
    with pytest.raises(errors.NotFound):
        run(store.delete_dav_item, account.id, fid, "c.ics")
    assert [d["uid"] for d in run(store.list_deleted_dav, account.id)] == ["C"]  # recoverable
    # the blocking facade takes the same condition
    store.dav.put(account.id, fid, item("d.ics", "D"), "")
    with pytest.raises(errors.Conflict):
        store.dav.put(account.id, fid, item("d.ics", "D"), '"stale"')


def test_items_by_id_changes_and_components(store, run, account, calendar):
    fid = calendar.folder.id
    stranger = run(store.create_account, "mallory@example.test", "x", "M")
    theirs = store.dav.collection(stranger.id, "Calendar")
    a, _ = run(store.put_dav_item, account.id, fid, item("a.ics", "A"))
    b, _ = run(store.put_dav_item, account.id, fid, item("b.ics", "B", component="VTODO"))
    t, _ = run(store.put_dav_item, stranger.id, theirs.folder.id, item("t.ics", "T"))
    modseq, purged, changed, deleted = run(store.dav_changes, account.id, fid, 0)
    assert (purged, changed, deleted) == (0, [a.id, b.id], [])
    found = run(store.dav_items_by_id, account.id, [b.id, a.id, t.id, 10 ** 9])
    assert sorted(i.href for i in found) == ["a.ics", "b.ics"] and all(i.data for i in found)
    assert all(i.data is None for i in run(store.dav_items_by_id, account.id, [a.id], False))
    contacts = store.dav.collection(account.id, "Contacts")
    run(store.put_dav_item, account.id, contacts.folder.id, item("v.vcf", "V", component="VCARD"))
    assert run(store.dav_components, account.id) == {fid: {"VEVENT", "VTODO"}, contacts.folder.id: {"VCARD"}}
    run(store.put_dav_item, account.id, fid, item("a.ics", "A", start=7))
    run(store.delete_dav_item, account.id, fid, "b.ics")
    now, _, changed, deleted = run(store.dav_changes, account.id, fid, modseq)
    assert now > modseq and (changed, deleted) == ([a.id], [b.id])
    assert run(store.dav_items_by_id, account.id, [b.id]) == []
    other = store.dav.create_collection(account.id, "other", "calendar", {})
    run(store.move_dav_item, account.id, fid, "a.ics", other.folder.id, "a.ics")
    assert run(store.dav_changes, account.id, fid, now)[2:] == ([], [a.id])
    assert [i.href for i in store.dav.all_items(other.folder.id)] == ["a.ics"]
    with pytest.raises(errors.NotFound):  # another account's collection
        run(store.dav_changes, account.id, theirs.folder.id, 0)
    assert run(store.dav_components, account.id) == {other.folder.id: {"VEVENT"}, contacts.folder.id: {"VCARD"}}
