"""What a broken or hostile CalDAV/CardDAV client gets from a real ``haven serve`` (both
engines): 400 with the reason for bad iCalendar and XML, no entity expansion, 413 for bodies
over ``[http] max_request_size``, bounded recurrence expansion, nothing outside a calendar or
address book, and a store that is as it was afterwards."""

from __future__ import annotations

import base64
import select
import socket
import time

import pytest

from .wire import Dav, calendar_query_body, event, proppatch_body, sync_body, vcalendar, vcard

BAD_ICALENDAR = {
    "not iCalendar at all": "hello",
    "truncated": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:trunc\r\n",
    "empty body": "",
    "no UID": vcalendar("BEGIN:VEVENT\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250101T000000Z\r\nEND:VEVENT\r\n"),
    "no DTSTART": vcalendar("BEGIN:VEVENT\r\nUID:no-start\r\nDTSTAMP:20250101T000000Z\r\nEND:VEVENT\r\n"),
    "bad date": vcalendar("BEGIN:VEVENT\r\nUID:bad-date\r\nDTSTART:notadate\r\nEND:VEVENT\r\n"),
    "two UIDs in one object": vcalendar(
        "BEGIN:VEVENT\r\nUID:one\r\nDTSTART:20250101T000000Z\r\nEND:VEVENT\r\n"
        "BEGIN:VEVENT\r\nUID:two\r\nDTSTART:20250101T000000Z\r\nEND:VEVENT\r\n"),
    "an event and a to-do": vcalendar(
        "BEGIN:VEVENT\r\nUID:mix\r\nDTSTART:20250101T000000Z\r\nEND:VEVENT\r\n"
        "BEGIN:VTODO\r\nUID:mix\r\nEND:VTODO\r\n"),
    "a bare VEVENT": "BEGIN:VEVENT\r\nUID:bare\r\nDTSTART:20250101T000000Z\r\nEND:VEVENT\r\n",
    "unknown FREQ": event("bad-freq", extra="RRULE:FREQ=BOGUS\r\n"),
    "UNTIL before DTSTART": event("bad-until", extra="RRULE:FREQ=DAILY;UNTIL=20240101T000000Z\r\n"),
    "COUNT over max_occurrences": event("too-many", extra="RRULE:FREQ=DAILY;COUNT=100000\r\n"),
    "SECONDLY until 2030": event("too-many-2", extra="RRULE:FREQ=SECONDLY;UNTIL=20300101T000000Z\r\n"),
    "a vCard": vcard("card-in-cal", "Card In Calendar"),
}


BAD_VCARD = {
    "truncated vCard": "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\n",
    "an event in an address book": event("event-in-book"),
    "two vCards": vcard("c1", "One Card") + vcard("c2", "Two Card"),
}


def test_invalid_objects_are_refused_with_400_and_the_reason(dav):
    answers = {}
    for n, (what, text) in enumerate(BAD_ICALENDAR.items()):
        r = dav.request("PUT", f"{dav.calendar}bad-{n}.ics", text, {"Content-Type": "text/calendar"})
        answers[what] = (r.status, r.header("Content-Type"), r.text.startswith("Bad Request: ")
                         and len(r.text.strip()) > len("Bad Request: ") + 5)
    for n, (what, text) in enumerate(BAD_VCARD.items()):
        r = dav.request("PUT", f"{dav.contacts}bad-{n}.vcf", text, {"Content-Type": "text/vcard"})
        answers[what] = (r.status, r.header("Content-Type"), r.text.startswith("Bad Request: ")
                         and len(r.text.strip()) > len("Bad Request: ") + 5)
    assert answers == {what: (400, "text/plain; charset=utf-8", True) for what in {**BAD_ICALENDAR, **BAD_VCARD}}
    assert dav.etags(dav.calendar) == {} and dav.etags(dav.contacts) == {}


BILLION_LAUGHS = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
                  + "".join(f' <!ENTITY lol{i} "{("&lol%s;" % (i - 1 if i > 1 else "")) * 10}">\n'
                            for i in range(1, 10))
                  + "]>\n")
XXE = '<?xml version="1.0"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
HOSTILE = {
    "billion laughs in PROPFIND": ("PROPFIND", BILLION_LAUGHS + '<D:propfind xmlns:D="DAV:"><D:prop>'
                                   "<D:displayname>&lol9;</D:displayname></D:prop></D:propfind>"),
    "billion laughs in REPORT": ("REPORT", BILLION_LAUGHS + '<D:sync-collection xmlns:D="DAV:"><D:sync-token>'
                                 "&lol9;</D:sync-token><D:prop><D:getetag/></D:prop></D:sync-collection>"),
    "external entity in PROPFIND": ("PROPFIND", XXE + '<D:propfind xmlns:D="DAV:"><D:prop>'
                                    "<D:displayname>&xxe;</D:displayname></D:prop></D:propfind>"),
    "external entity in PROPPATCH": ("PROPPATCH", XXE + '<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
                                     "<D:displayname>&xxe;</D:displayname></D:prop></D:set></D:propertyupdate>"),
    "XML nested 100,000 deep": ("PROPFIND", '<D:propfind xmlns:D="DAV:"><D:prop>' + "<D:x>" * 100000
                                + "</D:x>" * 100000 + "</D:prop></D:propfind>"),
    "a REPORT body nested 100,000 deep": ("REPORT", '<C:calendar-query xmlns:D="DAV:" '
                                          'xmlns:C="urn:ietf:params:xml:ns:caldav"><C:filter>'
                                          + "<C:comp-filter name=\"VCALENDAR\">" * 100000
                                          + "</C:comp-filter>" * 100000 + "</C:filter></C:calendar-query>"),
    "external entity in REPORT": ("REPORT", XXE + '<C:calendar-multiget xmlns:D="DAV:" '
                                  'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
                                  "<D:href>&xxe;</D:href></C:calendar-multiget>"),
}


def _send_hostile(dav):
    answers = {}
    for what, (method, body) in HOSTILE.items():
        answers[what] = dav.request(method, dav.calendar, body, {"Depth": "0", "Content-Type": "application/xml"},
                                    timeout=20)
    return answers


def test_components_nested_without_end_are_refused_with_the_reason(dav):
    deep = event("deep", extra="BEGIN:X-A\r\n" * 50000 + "END:X-A\r\n" * 50000)
    r = dav.request("PUT", dav.calendar + "deep.ics", deep, {"Content-Type": "text/calendar"})
    assert (r.status, r.text) == (400, "Bad Request: components nested more than 16 deep\n")
    card = vcard("deep-card", "Deep Card").replace("END:VCARD", "BEGIN:X\r\n" * 20 + "END:X\r\n" * 20 + "END:VCARD")
    r = dav.request("PUT", dav.contacts + "deep.vcf", card, {"Content-Type": "text/vcard"})
    assert (r.status, r.text) == (400, "Bad Request: components nested more than 16 deep\n")
    # a VALARM in a VEVENT in a VCALENDAR is three levels: fine
    assert dav.put(dav.calendar + "alarm.ics", event("alarm", extra="BEGIN:VALARM\r\nACTION:DISPLAY\r\n"
                                                     "DESCRIPTION:x\r\nTRIGGER:-PT5M\r\nEND:VALARM\r\n")).status == 201


def test_a_report_of_an_unknown_kind_is_403_supported_report(dav):
    """RFC 3253 §3.6; a <propfind> sent as a REPORT to the principal was a 500."""
    body = '<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:displayname/></D:prop></D:propfind>'
    for path in (dav.principal, dav.calendar):
        r = dav.request("REPORT", path, body, {"Depth": "0", "Content-Type": "application/xml"})
        assert r.status == 403 and b"<D:supported-report/>" in r.body, (path, r.status, r.text[:200])
    assert dav.request("REPORT", dav.calendar, sync_body(""), {"Content-Type": "application/xml"}).status == 207


def test_hostile_xml_expands_nothing_and_the_server_stays_up(dav):
    assert dav.put(dav.calendar + "keep.ics", event("hostile-keep")).status == 201
    started = time.monotonic()
    answers = _send_hostile(dav)
    assert time.monotonic() - started < 10
    for what, r in answers.items():
        assert r.status >= 400, (what, r.status, r.text[:300])
        assert b"root:" not in r.body and b"lollollol" not in r.body, what
    # the server and the calendar are fine
    entry = dav.propfind(dav.calendar, ("D:displayname",)).entries()[dav.calendar]
    assert entry.text("D:displayname") == "Calendar"
    assert set(dav.etags(dav.calendar)) == {dav.calendar + "keep.ics"}


def test_hostile_xml_is_refused_with_400(dav):
    """Entity declarations and endless nesting are the client's fault: 400, like any other
    unparsable XML body."""
    answers = {what: (r.status, r.text[:80]) for what, r in _send_hostile(dav).items()}
    assert {what: status for what, (status, _text) in answers.items()} == {what: 400 for what in HOSTILE}, answers


def test_malformed_xml_is_refused_with_400(dav):
    cases = {
        "not XML": ("PROPFIND", "<not xml"),
        "not UTF-8": ("PROPFIND", b"\xff\xfe<x"),
        "MKCALENDAR body not XML": ("MKCALENDAR", "<not xml"),
        "bad time-range": ("REPORT", calendar_query_body("garbage", "x")),
        "PROPFIND of an unknown element": ("PROPFIND", '<?xml version="1.0"?><D:foo xmlns:D="DAV:"/>'),
    }
    answers = {}
    for what, (method, body) in cases.items():
        path = dav.coll("never") if method == "MKCALENDAR" else dav.calendar
        r = dav.request(method, path, body, {"Depth": "1", "Content-Type": "application/xml"})
        answers[what] = (r.status, r.text[:100])
    assert {what: status for what, (status, _t) in answers.items()} == {what: 400 for what in cases}, answers
    assert dav.propfind(dav.coll("never")).status == 404


def test_puts_outside_a_calendar_or_address_book_are_refused(dav):
    text = event("nowhere")
    answers = {path: dav.put(path, text).status for path in (
        dav.principal,                                   # the principal itself
        "/dav/",                                         # the root
        "/dav/x.ics",
        dav.calendar + "sub/x.ics",                      # three levels below the principal
        dav.calendar + "a/b/x.ics",
        dav.contacts + "sub/x.vcf",
    )}
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert set(dav.propfind(dav.principal, depth="1").entries()) == {dav.principal, dav.calendar, dav.contacts, *dav.deleted_views}
    assert dav.etags(dav.calendar) == {}


def test_put_of_an_event_directly_under_the_principal_is_refused(dav):
    """The principal holds no items: ``/dav/<address>/x.ics`` is not a place for an event (it
    must not turn into a new calendar named ``x.ics`` either)."""
    r = dav.put(dav.principal + "x.ics", event("under-principal"))
    assert 400 <= r.status < 500, (r.status, r.text)
    assert set(dav.propfind(dav.principal, depth="1").entries()) == {dav.principal, dav.calendar, dav.contacts, *dav.deleted_views}


def test_only_calendars_and_address_books_can_be_made(dav):
    plain_mkcol = ('<?xml version="1.0"?><D:mkcol xmlns:D="DAV:"><D:set><D:prop><D:resourcetype><D:collection/>'
                   "</D:resourcetype></D:prop></D:set></D:mkcol>")
    answers = {
        "MKCOL": dav.request("MKCOL", dav.coll("plain")).status,
        "extended MKCOL of a plain collection": dav.request("MKCOL", dav.coll("plain2"), plain_mkcol).status,
        "MKCOL inside a calendar": dav.request("MKCOL", dav.calendar + "sub/").status,
        "MKCALENDAR inside a calendar": dav.mkcalendar(dav.calendar + "sub/").status,
        "MKCALENDAR inside an address book": dav.mkcalendar(dav.contacts + "sub/").status,
        "MKCALENDAR at the principal": dav.mkcalendar(dav.principal).status,
        "MKCALENDAR of another account's name": dav.mkcalendar("/dav/nobody@example.test/cal/").status,
        "DELETE of the principal": dav.delete(dav.principal).status,
        "PROPPATCH of the principal": dav.request("PROPPATCH", dav.principal,
                                                  proppatch_body({"displayname": "Me"})).status,
    }
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert answers["MKCOL"] == 403 and answers["extended MKCOL of a plain collection"] == 403
    assert set(dav.propfind(dav.principal, depth="1").entries()) == {dav.principal, dav.calendar, dav.contacts, *dav.deleted_views}


def test_bad_resource_names_are_refused(dav):
    cal = dav.calendar
    r = dav.put(cal + "x" * 300 + ".ics", event("long-name"))
    assert r.status == 400 and "invalid resource name" in r.text
    assert dav.put(cal + "%01ctl.ics", event("ctl-name")).status == 400
    assert dav.put(cal + "trailing.ics%20", event("trailing-space")).status == 400
    assert dav.etags(cal) == {}


def test_non_ascii_names_round_trip(haven, dav):
    """A name sent percent-encoded UTF-8 is listed under that same name, and the href a listing
    gives can be fetched (a client syncs by the hrefs it is given)."""
    cal = dav.calendar
    assert dav.put(cal + "caf%C3%A9%20n%C3%B8.ics", event("unicode-name")).status == 201
    listed = dav.propfind(cal, depth="1").entries()
    assert set(listed) == {cal, cal + "café nø.ics"}, set(listed)
    # the item's href only (the account's random name may hold "caf" too: ...-131caf@...)
    raw = [h.text for h in dav.propfind(cal, depth="1").xml().iter("{DAV:}href") if h.text.endswith(".ics")]
    assert [dav.get(h).status for h in raw] == [200], raw

    holidays = dav.principal + "Ferien%C3%A4/"
    assert dav.mkcalendar(holidays, displayname="Ferienä").status == 201
    assert dav.principal + "Ferienä/" in dav.propfind(dav.principal, depth="1").entries()
    listing = haven.cli("dav", "list", dav.user)
    assert listing.returncode == 0, listing.stderr
    assert "Ferienä\t" in listing.stdout.decode(), listing.stdout.decode()


# -- limits that need their own server -----------------------------------------------------------

LIMIT = 50000


def _exchange(addr, head: bytes, chunks=(), pause: float = 0.05) -> bytes:
    """Send ``head`` then ``chunks`` until the server answers; return all it sent."""
    sock = socket.create_connection(addr, timeout=10)
    try:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], pause)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        data = b""
        while True:
            try:
                part = sock.recv(65536)
            except ConnectionResetError:
                break
            if not part:
                break
            data += part
        return data
    finally:
        sock.close()


def test_bodies_over_max_request_size_get_413(engine, haven_factory):
    server = haven_factory(engine, **{"http.max_request_size": str(LIMIT)})
    user, password = server.new_user("big")
    dav = Dav(server, user, password)
    auth = b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()) + b"\r\n"
    path = dav.calendar.encode() + b"big.ics"

    # Content-Length over the limit: refused as soon as the headers are in
    for method in (b"PUT", b"PROPFIND", b"REPORT"):
        answer = _exchange(server.http, method + b" " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth
                           + b"Content-Type: text/calendar\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1))
        assert answer.startswith(b"HTTP/1.1 413 "), (method, answer[:200])
    # a chunked body that grows past it
    chunk = b"x" * 8000
    answer = _exchange(server.http, b"PUT " + path + b" HTTP/1.1\r\nHost: x\r\n" + auth
                       + b"Content-Type: text/calendar\r\nTransfer-Encoding: chunked\r\n\r\n",
                       [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 12)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # without credentials the size does not matter: 401 or 413, never a stored body
    answer = _exchange(server.http, b"PUT " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                       % (LIMIT + 1))
    assert answer.split(b" ", 2)[1] in (b"401", b"413"), answer[:200]

    # under the limit all is well, and nothing of the refused bodies was stored
    r = dav.put(dav.calendar + "fits.ics", event("fits", extra="DESCRIPTION:" + "y" * (LIMIT // 2) + "\r\n"))
    assert r.status == 201, r.text
    assert set(dav.etags(dav.calendar)) == {dav.calendar + "fits.ics"}


QUERY_LIMIT = 10  # seconds (a bounded answer takes well under one)
EVERY_SECOND = ("BYHOUR=" + ",".join(map(str, range(24))) + ";BYMINUTE=" + ",".join(map(str, range(60)))
                + ";BYSECOND=" + ",".join(map(str, range(60))))


@pytest.mark.parametrize("rule", ["FREQ=SECONDLY", "FREQ=DAILY;" + EVERY_SECOND],
                         ids=["SECONDLY", "DAILY-BYSECOND-every-second"])
def test_open_ended_every_second_rrule_in_a_time_range_query_is_bounded(engine, haven_factory, rule):
    """An event every second for ever, queried a year after it started (stepping through 31
    million occurrences would take minutes): the PUT is refused with the reason, or the query
    is answered (or refused) within a bound.  Its own server: a runaway expansion must not slow
    the other tests down."""
    server = haven_factory(engine)
    user, password = server.new_user("secondly")
    dav = Dav(server, user, password)
    assert dav.put(dav.calendar + "plain.ics", event("plain", start="20260101T000010Z",
                                                     end="20260101T000020Z")).status == 201
    r = dav.put(dav.calendar + "tick.ics", event("tick", start="20250101T000000Z", end="20250101T000001Z",
                                                 extra=f"RRULE:{rule}\r\n"))
    if r.status == 400:
        assert "Bad Request: " in r.text and len(r.text) > 30, r.text
    else:
        assert r.status == 201, (r.status, r.text)
    started = time.monotonic()
    try:
        r = dav.report(dav.calendar, calendar_query_body("20260101T000000Z", "20260101T000100Z"),
                       timeout=QUERY_LIMIT)
    except TimeoutError:
        # is the rest of the server still answering while that request runs?
        alive = Dav(server, user, password, timeout=10).propfind(dav.calendar).status
        server.kill()  # its worker would expand for minutes more: do not wait for it at teardown
        pytest.fail(f"no answer to a time-range query over an open-ended every-second event ({rule[:40]}...) "
                    f"within {QUERY_LIMIT}s (meanwhile a PROPFIND got {alive})")
    took = time.monotonic() - started
    assert r.status == 207 or 400 <= r.status < 500, (r.status, r.text[:300])
    if r.status == 207:
        assert dav.calendar + "plain.ics" in r.entries()
    assert took < QUERY_LIMIT
    assert dav.propfind(dav.calendar).status == 207


# -- afterwards ---------------------------------------------------------------------------------

def test_the_store_is_consistent_after_bad_input(dav):
    cal = dav.calendar
    good = {cal + "a.ics": event("cons-a", summary="A"), cal + "b.ics": event("cons-b", summary="B")}
    etags = {href: dav.put(href, text).header("ETag") for href, text in good.items()}
    _r, token, _ = dav.sync(cal)
    ctag = dav.ctag(cal)

    for n, text in enumerate(BAD_ICALENDAR.values()):                   # invalid objects
        assert dav.put(f"{cal}bad-{n}.ics", text).status == 400
    assert dav.put(cal + "a.ics", event("cons-b")).status == 409          # the UID of b over a
    assert dav.put(cal + "c.ics", event("cons-a")).status == 409          # the UID of a elsewhere
    assert dav.put(cal + "a.ics", event("cons-a", summary="lost"), {"If-Match": '"stale"'}).status == 412
    assert dav.put(cal + "b.ics", event("cons-b", summary="lost"), {"If-None-Match": "*"}).status == 412
    _send_hostile(dav)
    assert dav.put(cal + "deep/x.ics", event("cons-deep")).status >= 400
    assert dav.request("MKCOL", dav.coll("plain")).status == 403
    assert dav.report(cal, sync_body("urn:haven:sync:1:1"), depth="0").status == 403
    assert dav.put(cal + "x" * 300 + ".ics", event("cons-long")).status == 400
    assert dav.put(dav.principal, event("cons-principal")).status == 403

    # nothing changed: same CTag, no sync changes, the same items with the same ETags and text
    assert dav.ctag(cal) == ctag
    r, token2, changes = dav.sync(cal, token)
    assert (r.status, changes, token2) == (207, {}, token)
    assert dav.etags(cal) == etags
    for href, text in good.items():
        got = dav.get(href)
        assert got.header("ETag") == etags[href] and text.split("SUMMARY:")[1].split("\r\n")[0] in got.text
    # and a normal change still syncs
    assert dav.put(cal + "c.ics", event("cons-c")).status == 201
    assert dav.delete(cal + "a.ics").status in (200, 204)
    assert dav.sync(cal, token)[2] == {cal + "a.ics": 404, cal + "c.ics": 200}
