"""The user's Deleted views over real HTTP (both engines): "Deleted events" and "Deleted
contacts" list what the account deleted, read-only; writing an item of the same UID into a real
collection restores it (the store's ``list_deleted_dav`` and ``haven recover list`` agree)."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

import caldav
import pytest

from tests.conftest import run_on_reactor

from .wire import Dav, calendar_multiget_body, clark, event, vcard

EVENTS, CONTACTS = ".deleted-events", ".deleted-contacts"


def deleted(haven, dav, kinds=None) -> list:
    store = haven.admin_store()
    account = run_on_reactor(store.get_account, dav.user)
    return run_on_reactor(store.list_deleted_dav, account.id, kinds)


def view_hrefs(dav, name) -> dict:
    """item name in the view -> ETag."""
    return {h.rsplit("/", 1)[1]: e for h, e in dav.etags(dav.coll(name)).items()}


def test_an_event_deleted_comes_back_by_copying_it(haven, dav):
    assert dav.put(dav.calendar + "lunch.ics", event("del-lunch", summary="Lunch")).status == 201
    view = dav.coll(EVENTS)
    _, events_token, _ = dav.sync(view)
    _, cal_token, _ = dav.sync(dav.calendar)
    ctag = dav.ctag(view)
    assert dav.delete(dav.calendar + "lunch.ics").status in (200, 204)

    # listed under the tombstone's id and the original name, readable, newest first
    [d] = deleted(haven, dav)
    name = f"{d['id']}-lunch.ics"
    assert list(view_hrefs(dav, EVENTS)) == [name]
    assert dav.ctag(view) != ctag
    r = dav.get(view + name)
    assert r.status == 200 and "SUMMARY:Lunch" in r.text and "UID:del-lunch" in r.text
    entries = dav.report(view, calendar_multiget_body(view + name)).entries()
    assert "UID:del-lunch" in entries[view + name].text("C:calendar-data")
    _, events_token, changes = dav.sync(view, events_token)
    assert changes == {view + name: 200}

    # a client copies it back: a PUT of its text, under a name of its own, into a calendar
    ctag = dav.ctag(view)
    assert dav.put(dav.calendar + "copy.ics", r.text).status == 201
    assert deleted(haven, dav) == []
    assert view_hrefs(dav, EVENTS) == {} and dav.ctag(view) != ctag
    assert dav.get(view + name).status == 404
    # a client that "moves" deletes the source after the copy: it is gone already
    r = dav.delete(view + name)
    assert r.status == 404 and "restored or purged" in r.text
    assert "UID:del-lunch" in dav.get(dav.calendar + "copy.ics").text
    _, _, changes = dav.sync(view, events_token)
    assert changes == {view + name: 404}
    _, _, changes = dav.sync(dav.calendar, cal_token)
    assert changes == {dav.calendar + "lunch.ics": 404, dav.calendar + "copy.ics": 200}
    assert haven.cli("recover", "list", dav.user).stdout.decode().count("del-lunch") == 0


def test_a_card_deleted_comes_back_and_kinds_stay_apart(haven, dav):
    card = vcard("del-card", "Doe Jane", "jane@example.test")
    assert dav.put(dav.contacts + "jane.vcf", card).status == 201
    assert dav.put(dav.calendar + "e.ics", event("del-ev")).status == 201
    assert dav.delete(dav.contacts + "jane.vcf").status in (200, 204)
    assert dav.delete(dav.calendar + "e.ics").status in (200, 204)
    [d] = deleted(haven, dav, ["contacts"])
    assert d["kind"] == "contacts" and d["uid"] == "del-card"
    assert list(view_hrefs(dav, CONTACTS)) == [f"{d['id']}-jane.vcf"]
    assert [h.split("-", 1)[1] for h in view_hrefs(dav, EVENTS)] == ["e.ics"]
    props = dav.propfind(dav.coll(CONTACTS), ("D:resourcetype", "D:displayname")).entries()[dav.coll(CONTACTS)]
    assert clark("CR:addressbook") in props.resourcetypes() and props.text("D:displayname") == "Deleted contacts"
    # the same UID into the wrong kind of collection restores nothing
    text = dav.get(dav.coll(CONTACTS) + f"{d['id']}-jane.vcf").text
    assert dav.put(dav.calendar + "jane.vcf", text).status >= 400
    assert dav.put(dav.contacts + "back.vcf", text).status == 201
    assert view_hrefs(dav, CONTACTS) == {}
    assert len(view_hrefs(dav, EVENTS)) == 1


def test_the_views_are_read_only(haven, dav):
    assert dav.put(dav.calendar + "ro.ics", event("del-ro")).status == 201
    assert dav.delete(dav.calendar + "ro.ics").status in (200, 204)
    view = dav.coll(EVENTS)
    [name] = view_hrefs(dav, EVENTS)
    # RFC 3744 §5.4: read only, so clients show the calendar read-only
    entry = dav.propfind(view, ("D:current-user-privilege-set",)).entries()[view]
    privileges = {p.tag for p in entry.props[clark("D:current-user-privilege-set")].iter() if p.tag != "{DAV:}privilege"}
    assert clark("D:read") in privileges and not privileges & {clark("D:write"), clark("D:write-content"),
                                                              clark("D:all")}
    refused = [dav.put(view + "new.ics", event("del-new")), dav.put(view + name, event("del-ro")),
               dav.delete(view + name), dav.delete(view), dav.proppatch(view, displayname="Mine"),
               dav.mkcalendar(view), dav.mkaddressbook(dav.coll(CONTACTS)),
               dav.request("MOVE", view + name, headers={"Destination": dav.calendar + "m.ics"}),
               dav.request("MOVE", dav.calendar + "x.ics", headers={"Destination": view + "x.ics"})]
    for r in refused:
        assert r.status == 403 and "read-only" in r.text, (r.status, r.text)
    for gone in ("99999999999999999999999-x.ics", "x.ics", "123456789-x.ics"):
        assert dav.delete(view + gone).status == 404
    assert list(view_hrefs(dav, EVENTS)) == [name]
    assert "refused PUT" in haven.log() and "Deleted events is read-only" in haven.log()
    # names beginning with a dot are the server's: no real collection can take one
    r = dav.mkcalendar(dav.coll(".mine"))
    assert r.status == 400 and "reserved" in r.text, (r.status, r.text)


def test_other_accounts_never_show_and_purge_empties(haven, dav, other):
    assert dav.put(dav.calendar + "mine.ics", event("del-mine")).status == 201
    assert dav.delete(dav.calendar + "mine.ics").status in (200, 204)
    [name] = view_hrefs(dav, EVENTS)
    assert view_hrefs(other, EVENTS) == {}
    assert other.get(other.coll(EVENTS) + name).status == 404
    assert other.get(dav.coll(EVENTS) + name).status in (403, 404)
    # the other account writing the same UID restores nothing of mine
    assert other.put(other.calendar + "mine.ics", event("del-mine")).status == 201
    assert list(view_hrefs(dav, EVENTS)) == [name]

    view = dav.coll(EVENTS)
    _, token, _ = dav.sync(view)
    ctag = dav.ctag(view)
    store = haven.admin_store()
    run_on_reactor(store.purge, 0)
    assert view_hrefs(dav, EVENTS) == {} and dav.ctag(view) != ctag
    r, _, _ = dav.sync(view, token)  # RFC 6578 §3.2: the old token is no longer valid
    assert r.status == 403 and clark("D:valid-sync-token") in r.error_conditions()
    assert dav.sync(view)[2] == {}


def test_restore_through_the_caldav_library(haven, dav):
    url = f"http://{haven.http[0]}:{haven.http[1]}/"
    with caldav.DAVClient(url=url, username=dav.user, password=dav.password, timeout=30) as c:
        principal = c.principal()
        names = {cal.get_display_name(): cal for cal in principal.calendars()}
        assert set(names) == {"Calendar", "Deleted events"}
        home = names["Calendar"]
        ev = home.save_event(event("del-lib", start="20250301T090000Z", end="20250301T100000Z", summary="Dentist"))
        ev.delete()
        trash = names["Deleted events"]
        [gone] = trash.events()
        assert str(gone.icalendar_component["UID"]) == "del-lib"
        found = trash.search(start=datetime(2025, 3, 1, tzinfo=timezone.utc),
                             end=datetime(2025, 3, 2, tzinfo=timezone.utc), event=True, expand=False)
        assert len(found) == 1
        with pytest.raises(caldav.lib.error.AuthorizationError):
            trash.save_event(event("del-lib-2"))
        home.save_event(gone.data)  # "copy to calendar"
        assert trash.events() == []
        assert [str(e.icalendar_component["SUMMARY"]) for e in home.events()] == ["Dentist"]
        assert unquote(urlsplit(str(trash.url)).path) == dav.coll(EVENTS)


def test_switched_off_views_are_gone(haven_factory, engine):
    server = haven_factory(engine, **{"http.deleted_events": "", "http.deleted_contacts": "Papierkorb"})
    user = Dav(server, *server.new_user("dav"))
    listing = user.propfind(user.principal, ("D:displayname",), depth="1").entries()
    names = {e.text("D:displayname") for h, e in listing.items() if h != user.principal}
    assert names == {"Calendar", "Contacts", "Papierkorb"}
    assert user.propfind(user.coll(EVENTS)).status == 404
    assert user.propfind(user.coll(CONTACTS)).status == 207


def test_one_name_deleted_from_two_calendars_twice_listed(haven, dav):
    assert dav.mkcalendar(dav.coll("work")).status == 201
    for coll, uid in ((dav.calendar, "del-same-1"), (dav.coll("work"), "del-same-2")):
        # two events (an unchanged copy under a new UID would restore the first one: a copy back)
        assert dav.put(coll + "same.ics", event(uid, summary=uid)).status == 201
        assert dav.delete(coll + "same.ics").status in (200, 204)
    names = view_hrefs(dav, EVENTS)
    assert len(names) == 2 and all(n.endswith("-same.ics") for n in names)
    uids = {dav.get(dav.coll(EVENTS) + n).text.split("UID:")[1].split("\r\n")[0] for n in names}
    assert uids == {"del-same-1", "del-same-2"}
    # deleting the collection lists its items too
    assert dav.put(dav.coll("work") + "w.ics", event("del-in-work")).status == 201
    assert dav.delete(dav.coll("work")).status in (200, 204)
    assert len(view_hrefs(dav, EVENTS)) == 3
