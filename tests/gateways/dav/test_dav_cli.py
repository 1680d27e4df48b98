"""Calendar and contact items written or recovered by another path than a DAV client (``haven
dav import``, ``haven recover``), seen by a DAV client of a real ``haven serve`` (both engines):
served with their ETags, reported by sync-collection, counted in the CTag.  And soft delete:
a deleted item is neither served nor listed, but ``haven recover`` offers it back."""

from __future__ import annotations

import re

from .wire import calendar_multiget_body, event, vcalendar, vcard, vevent


def cli_ok(haven, *args, input: bytes = b"") -> str:
    result = haven.cli(*args, input=input)
    assert result.returncode == 0, (args, result.stdout.decode(), result.stderr.decode())
    return result.stdout.decode()


def dav_listing(haven, user, collection) -> dict:
    """href -> ETag, from ``haven dav list ADDRESS COLLECTION``."""
    out = cli_ok(haven, "dav", "list", user, collection)
    return {line.split("\t")[0]: line.split("\t")[2] for line in out.splitlines() if line.strip()}


def test_items_imported_with_the_cli_are_served_and_synced(haven, dav):
    cal = dav.calendar
    assert dav.put(cal + "client.ics", event("cli-client")).status == 201
    _r, token, _ = dav.sync(cal)
    ctag = dav.ctag(cal)

    out = cli_ok(haven, "dav", "import", dav.user, "Calendar", "-",
                 input=event("cli-imported", summary="Imported").encode())
    assert "1 new" in out, out
    listing = dav_listing(haven, dav.user, "Calendar")
    (href_name,) = set(listing) - {"client.ics"}
    href = cal + href_name

    # the client sees it: listing, ETag, data, sync, CTag
    assert dav.etags(cal) == {cal + "client.ics": dav.get(cal + "client.ics").header("ETag"),
                              href: listing[href_name]}
    got = dav.get(href)
    assert got.status == 200 and "SUMMARY:Imported" in got.text and got.header("ETag") == listing[href_name]
    _r, token2, changes = dav.sync(cal, token)
    assert changes == {href: 200}
    ctag2 = dav.ctag(cal)
    assert ctag2 != ctag

    # an import of the same UID replaces it in place
    out = cli_ok(haven, "dav", "import", dav.user, "Calendar", "-",
                 input=event("cli-imported", summary="Imported again").encode())
    assert "1 replaced" in out, out
    assert dav.sync(cal, token2)[2] == {href: 200}
    assert "SUMMARY:Imported again" in dav.get(href).text
    assert dav.ctag(cal) != ctag2
    # and it holds its UID against a client
    r = dav.put(cal + "other.ics", event("cli-imported"))
    assert r.status == 409


def test_cli_import_of_several_objects_a_recurrence_with_its_exception_and_cards(haven, dav):
    text = vcalendar(
        vevent("cli-multi-1", summary="One"),
        vevent("cli-multi-2", start="20250203T090000Z", end="20250203T100000Z", extra="RRULE:FREQ=DAILY;COUNT=5\r\n"),
        vevent("cli-multi-2", start="20250310T090000Z", end="20250310T100000Z", summary="Moved",
               extra="RECURRENCE-ID:20250205T090000Z\r\n"))
    out = cli_ok(haven, "dav", "import", dav.user, "Calendar", "-", input=text.encode())
    assert "2 new" in out, out
    hrefs = dav.etags(dav.calendar)
    assert len(hrefs) == 2
    (recurring,) = [h for h in hrefs if "RECURRENCE-ID" in dav.get(h).text]
    # imported exactly as a PUT would store it: found by a time-range query on the moved occurrence
    assert dav.query_hrefs(dav.calendar, "20250310T000000Z", "20250311T000000Z") == {recurring}
    assert dav.query_hrefs(dav.calendar, "20250205T000000Z", "20250206T000000Z") == set()

    cards = vcard("cli-card-1", "Ann Cli", "ann@example.org") + vcard("cli-card-2", "Bob Cli")
    out = cli_ok(haven, "dav", "import", dav.user, "Contacts", "-", input=cards.encode())
    assert "2 new" in out, out
    bodies = [dav.get(h).text for h in dav.etags(dav.contacts)]
    assert sorted(re.search(r"UID:(\S+)", b).group(1) for b in bodies) == ["cli-card-1", "cli-card-2"]


def test_cli_import_refuses_invalid_text_and_unknown_collections(haven, dav):
    for args, text in ((("Calendar", "-"), b"BEGIN:VCALENDAR\r\ngarbage\r\n"),
                       (("Calendar", "-"), b"\xff\xfe not utf-8"),
                       (("Nope", "-"), event("cli-nope").encode())):
        result = haven.cli("dav", "import", dav.user, *args, input=text)
        assert result.returncode != 0, (args, text, result.stdout)
        assert result.stderr.strip(), args
    assert dav.etags(dav.calendar) == {}


def test_cli_import_refuses_the_wrong_kind_of_object(haven, dav):
    """An event is not a contact and a vCard is not an event: the CLI refuses them as a PUT does."""
    answers = {}
    for collection, text in (("Contacts", event("cli-event-in-book")), ("Calendar", vcard("cli-card-in-cal", "X Y"))):
        result = haven.cli("dav", "import", dav.user, collection, "-", input=text.encode())
        answers[collection] = (result.returncode != 0, result.stdout.decode().strip())
    assert answers == {"Contacts": (True, ""), "Calendar": (True, "")}
    assert dav.etags(dav.contacts) == {} and dav.etags(dav.calendar) == {}


def test_a_deleted_event_is_gone_for_clients_but_recoverable(haven, dav):
    cal = dav.calendar
    href = cal + "oops.ics"
    etag = dav.put(href, event("recover-me", start="20250410T100000Z", end="20250410T110000Z",
                               summary="Deleted by mistake")).header("ETag")
    assert dav.put(cal + "stays.ics", event("recover-stays")).status == 201
    _r, token, _ = dav.sync(cal)
    assert dav.delete(href).status in (200, 204)

    # not served, not listed, not found by any report
    assert dav.get(href).status == 404
    assert dav.propfind(href).status == 404
    assert set(dav.etags(cal)) == {cal + "stays.ics"}
    assert dav.query_hrefs(cal, "20250410T000000Z", "20250411T000000Z") == set()
    assert dav.report(cal, calendar_multiget_body(href)).entries()[href].status == 404
    assert dav.sync(cal)[2] == {cal + "stays.ics": 200}
    assert dav.sync(cal, token)[2] == {href: 404}

    # but haven recover offers it
    out = cli_ok(haven, "recover", "list", dav.user)
    lines = [line for line in out.splitlines() if "oops.ics" in line]
    assert len(lines) == 1, out
    assert re.match(r"dav:\d+\t", lines[0]) and "\tCalendar\t" in lines[0] and "UID recover-me" in lines[0], lines
    assert "stays.ics" not in out
    item_id = lines[0].split("\t")[0]

    _r, token2, _ = dav.sync(cal)
    cli_ok(haven, "recover", "restore", dav.user, item_id)
    got = dav.get(href)
    assert got.status == 200 and got.header("ETag") == etag and "SUMMARY:Deleted by mistake" in got.text
    assert dav.sync(cal, token2)[2] == {href: 200}
    assert "oops.ics" not in cli_ok(haven, "recover", "list", dav.user)
    # restoring twice brings nothing more
    result = haven.cli("recover", "restore", dav.user, item_id)
    assert set(dav.etags(cal)) == {href, cal + "stays.ics"}, result


def test_a_deleted_calendar_is_recoverable_with_its_events(haven, dav):
    trip = dav.coll("trip")
    assert dav.mkcalendar(trip, displayname="Trip").status == 201
    etag = dav.put(trip + "flight.ics", event("recover-flight", summary="Flight")).header("ETag")
    assert dav.delete(trip).status in (200, 204)
    assert dav.propfind(trip).status == 404

    out = cli_ok(haven, "recover", "list", dav.user)
    (line,) = [line for line in out.splitlines() if "flight.ics" in line]
    assert "\ttrip\t" in line
    cli_ok(haven, "recover", "restore", dav.user, line.split("\t")[0])
    assert dav.propfind(trip).status == 207
    got = dav.get(trip + "flight.ics")
    assert got.status == 200 and got.header("ETag") == etag
