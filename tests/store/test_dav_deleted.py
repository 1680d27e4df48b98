"""The store contract of the user's deleted calendar objects and vCards (what the DAV views
"Deleted events" / "Deleted contacts" and later ActiveSync show), on every engine: listing by
kind, their text, the sync state, restore by writing the UID again, purge."""

from __future__ import annotations

import pytest

from store import errors

from .test_dav_store import item


@pytest.fixture
def account(store, run):
    return run(store.create_account, "dana@example.test", "x", "Dana")


@pytest.fixture
def stranger(store, run):
    return run(store.create_account, "erin@example.test", "x", "Erin")


def folder(store, account, name):
    return store.dav.collection(account.id, name).folder.id


def card(href, uid):
    return item(href, uid, component="VCARD", text=f"BEGIN:VCARD\r\nUID:{uid}\r\nEND:VCARD\r\n")


def test_listing_by_kind_and_text(store, run, account):
    cal, book = folder(store, account, "Calendar"), folder(store, account, "Contacts")
    tasks = store.dav.create_collection(account.id, "todo", "tasks", {}).folder.id
    store.dav.put(account.id, cal, item("e.ics", "E", text="event text"))
    store.dav.put(account.id, tasks, item("t.ics", "T", component="VTODO"))
    store.dav.put(account.id, book, card("c.vcf", "C"))
    for fid, href in ((cal, "e.ics"), (book, "c.vcf"), (tasks, "t.ics")):
        store.dav.delete(account.id, fid, href)
    listing = run(store.list_deleted_dav, account.id)
    assert [(d["href"], d["kind"], d["folder"]) for d in listing] == \
        [("t.ics", "calendar", "todo"), ("c.vcf", "contacts", "Contacts"), ("e.ics", "calendar", "Calendar")]
    assert all(d["data"] is None for d in listing)
    assert [d["uid"] for d in run(store.list_deleted_dav, account.id, ["calendar"])] == ["T", "E"]
    assert [d["uid"] for d in store.dav.deleted(account.id, "contacts")] == ["C"]
    with pytest.raises(errors.InvalidInput):
        run(store.list_deleted_dav, account.id, ["mail"])

    ids = [d["id"] for d in listing]
    texts = run(store.deleted_dav_items, account.id, ids[::-1] + [10 ** 9])
    assert [d["id"] for d in texts] == ids and texts[2]["data"] == "event text"
    assert {k: texts[2][k] for k in ("etag", "dtstart", "dtend", "component")} == \
        {"etag": '"e.ics-1-10"', "dtstart": 1000, "dtend": 2000, "component": "VEVENT"}


def test_writing_the_uid_again_restores_in_the_same_transaction(store, run, account, stranger):
    cal, book = folder(store, account, "Calendar"), folder(store, account, "Contacts")
    work = store.dav.create_collection(account.id, "work", "calendar", {}).folder.id
    store.dav.put(account.id, cal, item("a.ics", "A"))
    store.dav.put(account.id, work, item("a-too.ics", "A"))  # one event kept in two calendars
    store.dav.delete(account.id, cal, "a.ics")
    [gone] = run(store.list_deleted_dav, account.id)
    start, purged, added, restored = run(store.deleted_dav_changes, account.id, "calendar", 0)
    assert (purged, added, restored) == (0, [(gone["id"], "a.ics")], []) and start == gone["modseq"]

    # a never-deleted UID, another account's write of the UID, a vCard of the UID, an edit of
    # the copy that stayed live: no restore
    store.dav.put(account.id, cal, item("b.ics", "B"))
    store.dav.put(stranger.id, folder(store, stranger, "Calendar"), item("a.ics", "A"))
    store.dav.put(account.id, book, card("a.vcf", "A"))
    store.dav.put(account.id, work, item("a-too.ics", "A", text="edited"))
    assert run(store.list_deleted_dav, account.id) == [gone]
    assert store.dav.deleted_changes_since(account.id, "calendar", start) == (start, 0, [], [])

    # the same UID under another name into another calendar of the account restores it
    other = store.dav.create_collection(account.id, "other", "calendar", {}).folder.id
    stored, replaced = run(store.put_dav_item, account.id, other, item("copy.ics", "A"))
    assert not replaced and stored.href == "copy.ics"
    assert run(store.list_deleted_dav, account.id) == []
    assert run(store.deleted_dav_items, account.id, [gone["id"]]) == []
    now, _, added, restored = run(store.deleted_dav_changes, account.id, "calendar", start)
    assert now > start and (added, restored) == ([], [(gone["id"], "a.ics")])
    assert run(store.restore_dav, account.id, [gone["id"]]) == (0, [])  # nothing left to restore
    assert [i.href for i in store.dav.all_items(other)] == ["copy.ics"]


def test_an_overwrite_with_another_uid_restores(store, run, account):
    cal = folder(store, account, "Calendar")
    store.dav.put(account.id, cal, item("q.ics", "Q"))
    store.dav.delete(account.id, cal, "q.ics")
    store.dav.put(account.id, cal, item("slot.ics", "S"))
    store.dav.put(account.id, cal, item("slot.ics", "Q"))
    assert run(store.list_deleted_dav, account.id) == []


def test_admin_restore_move_and_whole_collection_put(store, run, account):
    cal = folder(store, account, "Calendar")
    for name in ("x", "y", "z"):
        store.dav.put(account.id, cal, item(f"{name}.ics", name.upper()))
        store.dav.delete(account.id, cal, f"{name}.ics")
    token = store.dav.deleted_changes_since(account.id, "calendar", 0)[0]
    ids = {d["uid"]: d["id"] for d in run(store.list_deleted_dav, account.id)}
    assert run(store.restore_dav, account.id, [ids["X"]]) == (1, [])
    other = store.dav.create_collection(account.id, "other", "calendar", {}).folder.id
    store.dav.replace_items(account.id, other, [item("y2.ics", "Y")])
    now, _, added, restored = store.dav.deleted_changes_since(account.id, "calendar", token)
    assert now > token and added == [] and sorted(restored) == [(ids["X"], "x.ics"), (ids["Y"], "y.ics")]
    assert [d["uid"] for d in run(store.list_deleted_dav, account.id)] == ["Z"]
    # a MOVE leaves a tombstone that never shows
    store.dav.move(account.id, other, "y2.ics", cal, "y3.ics")
    assert [d["uid"] for d in run(store.list_deleted_dav, account.id)] == ["Z"]


def test_purge_empties_and_invalidates_tokens(store, run, account, stranger):
    cal = folder(store, account, "Calendar")
    store.dav.put(account.id, cal, item("p.ics", "P"))
    store.dav.delete(account.id, cal, "p.ics")
    token = store.dav.deleted_changes_since(account.id, "contacts", 0)[0]
    untouched = store.dav.deleted_changes_since(stranger.id, "calendar", 0)
    run(store.purge, 0)
    assert run(store.list_deleted_dav, account.id) == []
    now, purged, added, restored = store.dav.deleted_changes_since(account.id, "contacts", token)
    assert token < purged <= now and added == restored == []
    assert store.dav.deleted_changes_since(stranger.id, "calendar", 0) == untouched
    with pytest.raises(errors.NotFound):
        store.dav.deleted_changes_since(10 ** 9, "calendar", 0)


def test_names_with_a_leading_dot_are_reserved(store, account):
    with pytest.raises(errors.InvalidInput, match="reserved"):
        store.dav.create_collection(account.id, ".deleted-events", "calendar", {})


EVENT = ("BEGIN:VCALENDAR\r\nPRODID:-//Mozilla.org//NONSGML Mozilla Calendar V1.1//EN\r\nBEGIN:VEVENT\r\n"
         "UID:{uid}\r\nDTSTAMP:{stamp}\r\nSUMMARY:Dentist\r\n appointment\r\nLOCATION:Main St\r\n"
         "DTSTART:20261210T100000Z\r\nDTEND:20261210T110000Z\r\nX-MOZ-GENERATION:{gen}\r\nEND:VEVENT\r\n"
         "END:VCALENDAR\r\n")


def test_a_copy_under_a_new_uid_restores_the_deleted_one(store, run, account):
    """Thunderbird's copy and paste out of "Deleted events" writes the event under a new UID."""
    cal = folder(store, account, "Calendar")
    store.dav.put(account.id, cal, item("a.ics", "A", text=EVENT.format(uid="A", stamp="20261201T000000Z", gen=1)))
    store.dav.put(account.id, cal, item("other.ics", "O", text=EVENT.format(uid="O", stamp="1", gen=1)
                                        .replace("Dentist", "Barber")))
    store.dav.delete(account.id, cal, "a.ics")
    store.dav.delete(account.id, cal, "other.ics")
    assert sorted(d["uid"] for d in run(store.list_deleted_dav, account.id)) == ["A", "O"]
    # another event at the same time restores nothing
    store.dav.put(account.id, cal, item("new.ics", "N", text=EVENT.format(uid="N", stamp="2", gen=1)
                                        .replace("Dentist", "Lunch")))
    assert sorted(d["uid"] for d in run(store.list_deleted_dav, account.id)) == ["A", "O"]
    # the copy: new UID, new stamps, the properties in another order
    copy = EVENT.format(uid="COPY", stamp="20261206T120000Z", gen=3).replace(
        "LOCATION:Main St\r\n", "").replace("SUMMARY:", "LOCATION:Main St\r\nSUMMARY:")
    store.dav.put(account.id, cal, item("copy.ics", "COPY", text=copy))
    assert [d["uid"] for d in run(store.list_deleted_dav, account.id)] == ["O"]
