"""CalDAV over raw HTTP (http.client) against a real ``haven serve`` (both engines): exact status
codes, headers and multistatus XML for discovery, collection and item lifecycles, calendar
queries over recurring events, multiget, sync-collection, CTags and conditional requests."""

from __future__ import annotations

import re
import threading

from .wire import Dav, calendar_multiget_body, clark, event, propfind_body, sync_body, vcalendar, vevent


def test_well_known_and_root_redirect_to_dav_without_credentials(haven):
    anon = Dav(haven)
    for path in ("/.well-known/caldav", "/.well-known/carddav", "/"):
        for method in ("GET", "PROPFIND"):
            r = anon.request(method, path, headers={"Depth": "0"} if method == "PROPFIND" else None)
            assert (r.status, r.header("Location")) == (301, "/dav/"), (method, path, r.status, r.text)
    assert anon.get("/.well-known/autoconfig").status == 404
    assert anon.get("/nothing-here").status == 404
    # /dav/ itself wants a login
    r = anon.request("PROPFIND", "/dav/", headers={"Depth": "0"})
    assert r.status == 401
    assert r.header("WWW-Authenticate").startswith("Basic ")


def test_discovery_current_user_principal_and_home_sets(dav):
    r = dav.propfind("/dav/", ("D:current-user-principal",))
    assert r.status == 207
    assert {"calendar-access", "addressbook"} <= {t.strip() for t in (r.header("DAV") or "").split(",")}
    root = r.entries()["/dav/"]
    assert root.child_hrefs("D:current-user-principal") == [dav.principal]

    r = dav.propfind(dav.principal, ("D:resourcetype", "D:principal-URL", "C:calendar-home-set",
                                     "CR:addressbook-home-set", "D:current-user-principal"))
    me = r.entries()[dav.principal]
    assert clark("D:principal") in me.resourcetypes()
    assert me.child_hrefs("D:principal-URL") == [dav.principal]
    assert me.child_hrefs("C:calendar-home-set") == [dav.principal]
    assert me.child_hrefs("CR:addressbook-home-set") == [dav.principal]

    listing = dav.propfind(dav.principal, ("D:resourcetype", "D:displayname"), depth="1").entries()
    assert set(listing) == {dav.principal, dav.calendar, dav.contacts, *dav.deleted_views}
    assert listing[dav.calendar].resourcetypes() == {clark("C:calendar"), clark("D:collection")}
    assert listing[dav.contacts].resourcetypes() == {clark("CR:addressbook"), clark("D:collection")}
    assert listing[dav.calendar].text("D:displayname") == "Calendar"

    # the address may be spelt with @ or %40 in a path
    assert dav.propfind(dav.principal.replace("@", "%40")).status == 207
    assert dav.put(dav.calendar.replace("@", "%40") + "e.ics", event("enc")).status == 201
    assert dav.get(dav.calendar + "e.ics").status == 200


def test_mkcalendar_proppatch_and_propfind(dav):
    work = dav.coll("work")
    r = dav.mkcalendar(work, displayname="Work", color="#FF0000FF")
    assert r.status == 201, r.text
    props = ("D:displayname", "A:calendar-color", "C:calendar-description", "D:resourcetype")
    seen = dav.propfind(work, props).entries()[work]
    assert seen.text("D:displayname") == "Work"
    assert seen.text("A:calendar-color") == "#FF0000FF"
    assert seen.resourcetypes() == {clark("C:calendar"), clark("D:collection")}

    again = dav.mkcalendar(work, displayname="Again")
    assert again.status == 409
    assert again.error_conditions() == {clark("D:resource-must-be-null")}
    assert dav.propfind(work, props).entries()[work].text("D:displayname") == "Work"

    r = dav.proppatch(work, displayname="Work &amp; more", color="#00FF00FF", description="Things to do")
    assert r.status == 207
    assert r.entries()[work].prop_status == {clark("D:displayname"): 200, clark("A:calendar-color"): 200,
                                             clark("C:calendar-description"): 200}
    seen = dav.propfind(work, props).entries()[work]
    assert (seen.text("D:displayname"), seen.text("A:calendar-color"), seen.text("C:calendar-description")) == \
        ("Work & more", "#00FF00FF", "Things to do")

    # a PROPPATCH of one property keeps the others
    assert dav.proppatch(work, displayname="Job").status == 207
    seen = dav.propfind(work, props).entries()[work]
    assert (seen.text("D:displayname"), seen.text("A:calendar-color"), seen.text("C:calendar-description")) == \
        ("Job", "#00FF00FF", "Things to do")

    listing = dav.propfind(dav.principal, ("D:displayname",), depth="1").entries()
    assert listing[work].text("D:displayname") == "Job"


def test_put_get_overwrite_and_delete_an_event(dav):
    href = dav.calendar + "standup.ics"
    r = dav.put(href, event("standup-1", summary="Standup"))
    assert r.status == 201, r.text
    etag = r.header("ETag")
    assert re.fullmatch(r'"[^"]+"', etag), etag

    got = dav.get(href)
    assert got.status == 200
    assert got.header("Content-Type").startswith("text/calendar")
    assert got.header("ETag") == etag
    assert "UID:standup-1" in got.text and "SUMMARY:Standup" in got.text

    r = dav.put(href, event("standup-1", summary="Standup moved"))
    assert r.status == 204, r.text
    assert r.header("ETag") not in (None, etag)
    got = dav.get(href)
    assert "SUMMARY:Standup moved" in got.text and got.header("ETag") == r.header("ETag")

    r = dav.delete(href)
    assert r.status in (200, 204), r.text
    assert dav.get(href).status == 404
    assert dav.delete(href).status == 404
    assert dav.etags(dav.calendar) == {}


def test_delete_a_whole_calendar(dav):
    trip = dav.coll("trip")
    assert dav.mkcalendar(trip, displayname="Trip").status == 201
    assert dav.put(trip + "a.ics", event("trip-a")).status == 201
    assert dav.put(trip + "b.ics", event("trip-b")).status == 201

    r = dav.delete(trip)
    assert r.status in (200, 204), r.text
    assert dav.propfind(trip).status == 404
    assert dav.get(trip + "a.ics").status == 404
    assert dav.put(trip + "c.ics", event("trip-c")).status in (404, 409)
    assert trip not in dav.propfind(dav.principal, depth="1").entries()
    # the calendar's events stay where they were
    assert dav.get(dav.calendar).status == 200

    # a new calendar of the same name starts empty
    assert dav.mkcalendar(trip, displayname="Trip again").status == 201
    assert dav.etags(trip) == {}
    assert dav.put(trip + "a.ics", event("trip-a")).status == 201


def test_propfind_depth_1_lists_the_etag_of_every_item(dav):
    hrefs = {dav.calendar + name: text for name, text in {
        "one.ics": event("etag-1"),
        "two.ics": event("etag-2", start="20250301T080000Z", end="20250301T090000Z"),
        "allday.ics": event("etag-3", start="20250302", end="20250303"),
        "todo.ics": vcalendar("BEGIN:VTODO\r\nUID:etag-4\r\nDTSTAMP:20250101T000000Z\r\nSUMMARY:Task\r\nEND:VTODO\r\n"),
    }.items()}
    for href, text in hrefs.items():
        assert dav.put(href, text).status == 201

    listing = dav.propfind(dav.calendar, ("D:getetag", "D:getcontenttype", "D:resourcetype"), depth="1").entries()
    assert set(listing) == set(hrefs) | {dav.calendar}
    for href in hrefs:
        entry = listing[href]
        assert entry.text("D:getcontenttype").startswith("text/calendar")
        assert entry.resourcetypes() == set()
        assert entry.text("D:getetag") == dav.get(href).header("ETag"), href


def test_calendar_multiget(dav):
    etags = {}
    for name in ("a", "b", "c"):
        r = dav.put(f"{dav.calendar}{name}.ics", event(f"mg-{name}", summary=f"Event {name}"))
        etags[name] = r.header("ETag")
    a, c, missing = (dav.calendar + n for n in ("a.ics", "c.ics", "missing.ics"))

    r = dav.report(dav.calendar, calendar_multiget_body(a, c, missing))
    entries = r.entries()
    assert set(entries) == {a, c, missing}
    assert entries[missing].status == 404
    for name, href in (("a", a), ("c", c)):
        data = entries[href].text("C:calendar-data")
        assert f"UID:mg-{name}" in data and f"SUMMARY:Event {name}" in data
        assert entries[href].text("D:getetag") == etags[name]


# Four recurring or all-day events and the windows (UTC) each must or must not fall into.
RECURRING = {
    # Mondays 10:00-11:00, 6, 13, 20 and 27 January 2025
    "weekly.ics": event("rec-weekly", start="20250106T100000Z", end="20250106T110000Z",
                        extra="RRULE:FREQ=WEEKLY;COUNT=4\r\n"),
    # the 15th of every month at noon, from December 2024 on, for ever
    "monthly.ics": event("rec-monthly", start="20241215T120000Z", end="20241215T130000Z",
                         extra="RRULE:FREQ=MONTHLY\r\n"),
    # all day on 15 January 2025
    "allday.ics": event("rec-allday", start="20250115", end="20250116"),
    # daily 3-7 February 2025 09:00, but the 5 February occurrence moved to 10 March
    "exception.ics": vcalendar(
        vevent("rec-exc", start="20250203T090000Z", end="20250203T100000Z", extra="RRULE:FREQ=DAILY;COUNT=5\r\n"),
        vevent("rec-exc", start="20250310T090000Z", end="20250310T100000Z", summary="Moved",
               extra="RECURRENCE-ID:20250205T090000Z\r\n")),
}
WINDOWS = {
    ("20250113T000000Z", "20250114T000000Z"): {"weekly.ics"},
    ("20250127T103000Z", "20250127T113000Z"): {"weekly.ics"},                  # partial overlap
    ("20250203T103000Z", "20250203T104500Z"): set(),                           # a fifth Monday: no
    ("20250115T000000Z", "20250116T000000Z"): {"allday.ics", "monthly.ics"},
    ("20250115T230000Z", "20250116T010000Z"): {"allday.ics"},
    ("20250116T000000Z", "20250116T010000Z"): set(),                           # the all-day event ended
    ("20250128T000000Z", "20250202T000000Z"): set(),
    ("20250204T000000Z", "20250205T000000Z"): {"exception.ics"},
    ("20250205T000000Z", "20250206T000000Z"): set(),                           # moved away
    ("20250310T000000Z", "20250311T000000Z"): {"exception.ics"},               # moved here
    ("20301201T000000Z", "20301231T000000Z"): {"monthly.ics"},                 # open-ended, years on
    ("20240101T000000Z", "20240201T000000Z"): set(),                           # before everything
    ("20250101T000000Z", "20250401T000000Z"): set(RECURRING),
}


def test_recurring_events_in_time_range_queries(dav):
    for name, text in RECURRING.items():
        assert dav.put(dav.calendar + name, text).status == 201, name
    got = {window: {h.rsplit("/", 1)[1] for h in dav.query_hrefs(dav.calendar, *window)} for window in WINDOWS}
    assert got == WINDOWS


def test_sync_collection_reports_exactly_the_changes(dav):
    cal = dav.calendar
    a, b, c = (cal + n for n in ("a.ics", "b.ics", "c.ics"))
    assert dav.put(a, event("sync-a")).status == 201
    assert dav.put(b, event("sync-b")).status == 201

    r, token0, changes = dav.sync(cal)
    assert r.status == 207
    assert token0 and token0.startswith("urn:haven:sync:")
    assert changes == {a: 200, b: 200}

    # nothing changed: nothing listed, and the same token
    r, token, changes = dav.sync(cal, token0)
    assert (r.status, changes, token) == (207, {}, token0)

    assert dav.put(c, event("sync-c")).status == 201                            # added
    r = dav.put(b, event("sync-b", summary="changed"))                           # modified
    assert r.status == 204
    b_etag = r.header("ETag")
    assert dav.delete(a).status in (200, 204)                                    # deleted
    r, token1, changes = dav.sync(cal, token0)
    assert changes == {a: 404, b: 200, c: 200}
    assert token1 != token0
    assert r.entries()[b].text("D:getetag") == b_etag

    r, token, changes = dav.sync(cal, token1)
    assert (changes, token) == ({}, token1)

    # several changes of one item since a token: listed once; a fresh start lists live items only
    for n in range(3):
        dav.put(c, event("sync-c", summary=f"v{n}"))
    _r, token2, changes = dav.sync(cal, token1)
    assert changes == {c: 200}
    _r, _token, changes = dav.sync(cal)
    assert changes == {b: 200, c: 200}


def test_invalid_sync_tokens_are_refused_with_valid_sync_token(dav):
    cal = dav.calendar
    assert dav.put(cal + "x.ics", event("tok-x")).status == 201
    _r, token, _ = dav.sync(cal)
    _r, contacts_token, _ = dav.sync(dav.contacts)
    uidvalidity, modseq = token.rsplit(":", 2)[1:]

    gone = dav.coll("gone")
    assert dav.mkcalendar(gone).status == 201
    _r, gone_token, _ = dav.sync(gone)
    assert dav.delete(gone).status in (200, 204)
    assert dav.mkcalendar(gone).status == 201

    bad = {
        "garbage": (cal, "not-a-token"),
        "radicale's own form": (cal, "http://radicale.org/ns/sync/" + "0" * 64),
        "another prefix": (cal, f"urn:other:sync:{uidvalidity}:{modseq}"),
        "non-numeric": (cal, "urn:haven:sync:abc:def"),
        "the address book's token": (cal, contacts_token),
        "from the future": (cal, f"urn:haven:sync:{uidvalidity}:{int(modseq) + 1000}"),
        "a deleted calendar of the same name": (gone, gone_token),
    }
    answers = {}
    for what, (path, tok) in bad.items():
        r = dav.report(path, sync_body(tok), depth="0")
        answers[what] = (r.status, r.error_conditions() if r.status == 403 else r.text[:200])
    assert answers == {what: (403, {clark("D:valid-sync-token")}) for what in bad}
    # the real token still works afterwards
    assert dav.sync(cal, token)[2] == {}


def test_ctag_and_sync_token_change_on_every_change(dav):
    cal = dav.calendar
    seen = []

    def state():
        entry = dav.propfind(cal, ("CS:getctag", "D:sync-token")).entries()[cal]
        return entry.text("CS:getctag"), entry.text("D:sync-token")

    contacts_before = dav.ctag(dav.contacts)
    seen.append(state())
    assert state() == seen[-1]                                   # reading changes nothing
    steps = [
        lambda: dav.put(cal + "a.ics", event("ctag-a")),
        lambda: dav.put(cal + "a.ics", event("ctag-a", summary="changed")),
        lambda: dav.put(cal + "b.ics", event("ctag-b")),
        lambda: dav.delete(cal + "a.ics"),
        lambda: dav.proppatch(cal, displayname="Renamed"),
    ]
    for step in steps:
        assert step().status in (200, 201, 204, 207)
        now = state()
        assert now[0] != seen[-1][0] and now[1] != seen[-1][1], (now, seen)
        assert now[0] not in {s[0] for s in seen}
        seen.append(now)
    # another collection of the account is untouched
    assert dav.ctag(dav.contacts) == contacts_before


def test_conditional_puts_and_deletes(dav):
    href = dav.calendar + "cond.ics"
    r = dav.put(href, event("cond", summary="v1"))
    assert r.status == 201
    etag1 = r.header("ETag")
    r = dav.put(href, event("cond", summary="v2"))
    etag2 = r.header("ETag")

    # a stale ETag: refused, nothing written
    r = dav.put(href, event("cond", summary="lost update"), headers={"If-Match": etag1})
    assert r.status == 412
    assert "SUMMARY:v2" in dav.get(href).text
    # If-None-Match: * on an existing item
    r = dav.put(href, event("cond", summary="create only"), headers={"If-None-Match": "*"})
    assert r.status == 412
    assert dav.get(href).header("ETag") == etag2
    # the current ETag: written
    r = dav.put(href, event("cond", summary="v3"), headers={"If-Match": etag2})
    assert r.status == 204
    assert "SUMMARY:v3" in dav.get(href).text
    # If-None-Match: * for a new item
    r = dav.put(dav.calendar + "fresh.ics", event("cond-fresh"), headers={"If-None-Match": "*"})
    assert r.status == 201
    # If-Match on an item that does not exist
    r = dav.put(dav.calendar + "nothing.ics", event("cond-nothing"), headers={"If-Match": etag2})
    assert r.status == 412
    assert dav.get(dav.calendar + "nothing.ics").status == 404
    # DELETE with a stale ETag keeps the item; with the right one it goes
    assert dav.delete(href, headers={"If-Match": etag1}).status == 412
    assert dav.get(href).status == 200
    assert dav.delete(href, headers={"If-Match": dav.get(href).header("ETag")}).status in (200, 204)
    assert dav.get(href).status == 404


def test_a_uid_lives_under_one_href_only(dav):
    first, second = dav.calendar + "first.ics", dav.calendar + "second.ics"
    assert dav.put(first, event("same-uid", summary="first")).status == 201
    r = dav.put(second, event("same-uid", summary="second"))
    assert r.status == 409
    assert r.error_conditions() == {clark("C:no-uid-conflict")}
    assert dav.get(second).status == 404
    assert set(dav.etags(dav.calendar)) == {first}
    assert "SUMMARY:first" in dav.get(first).text
    # a deleted item no longer holds its UID
    assert dav.delete(first).status in (200, 204)
    assert dav.put(second, event("same-uid", summary="second")).status == 201


def test_names_and_uids_are_case_sensitive(dav):
    cal = dav.calendar
    assert dav.put(cal + "Case.ics", event("case-upper", summary="upper")).status == 201
    assert dav.put(cal + "case.ics", event("case-lower", summary="lower")).status == 201
    assert dav.put(cal + "x1.ics", event("Uid-X")).status == 201
    assert dav.put(cal + "x2.ics", event("uid-x")).status == 201
    assert "SUMMARY:upper" in dav.get(cal + "Case.ics").text
    assert "SUMMARY:lower" in dav.get(cal + "case.ics").text
    assert set(dav.etags(cal)) == {cal + n for n in ("Case.ics", "case.ics", "x1.ics", "x2.ics")}


def test_uids_differing_only_in_trailing_space_are_distinct(dav):
    """UIDs are compared exactly (RFC 5545 TEXT): on both engines the same answer."""
    cal = dav.calendar
    assert dav.put(cal + "u1.ics", event("space-uid ")).status == 201
    r = dav.put(cal + "u2.ics", event("space-uid"))
    assert r.status == 201, (r.status, r.text)
    assert set(dav.etags(cal)) == {cal + "u1.ics", cal + "u2.ics"}


def test_concurrent_conditional_puts_let_exactly_one_win(dav):
    href = dav.calendar + "race.ics"
    etag = dav.put(href, event("race", summary="start")).header("ETag")
    results: list = []
    barrier = threading.Barrier(6)

    def writer(n):
        barrier.wait()
        results.append(dav.put(href, event("race", summary=f"writer {n}"), headers={"If-Match": etag}).status)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [204] + [412] * 5
    winner = re.search(r"SUMMARY:writer (\d)", dav.get(href).text)
    assert winner is not None


def test_move_between_calendars(haven, dav):
    other = dav.coll("other")
    assert dav.mkcalendar(other).status == 201
    src, dst = dav.calendar + "mv.ics", other + "moved.ics"
    etag = dav.put(src, event("move-me", summary="Travelling")).header("ETag")
    _r, token, _ = dav.sync(dav.calendar)

    r = dav.request("MOVE", src, headers={"Destination": f"http://{haven.http[0]}:{haven.http[1]}{dst}"})
    assert r.status == 201, r.text
    assert dav.get(src).status == 404
    got = dav.get(dst)
    assert got.status == 200 and "SUMMARY:Travelling" in got.text and got.header("ETag") == etag
    assert dav.sync(dav.calendar, token)[2] == {src: 404}
    # the same UID may now be created again in the source calendar
    assert dav.put(src, event("move-me")).status == 201
    # a move is not a deletion: nothing to recover
    listing = haven.cli("recover", "list", dav.user)
    assert listing.returncode == 0, listing.stderr
    assert "mv.ics" not in listing.stdout.decode()


def test_chunked_request_bodies(dav):
    """A body sent with Transfer-Encoding: chunked (no Content-Length) reaches Radicale whole."""
    href = dav.calendar + "chunked.ics"
    text = event("chunked-1", summary="Sent in chunks").encode()
    pieces = iter([text[:50], text[50:]])
    r = dav.request("PUT", href, pieces, {"Content-Type": "text/calendar; charset=utf-8"})
    assert r.status == 201, (r.status, r.text)
    got = dav.get(href)
    assert got.status == 200 and "Sent in chunks" in got.text
    body = propfind_body("D:getetag").encode()
    r = dav.request("PROPFIND", dav.calendar, iter([body]), {"Depth": "1", "Content-Type": "application/xml"})
    assert r.status == 207 and href in r.entries()
