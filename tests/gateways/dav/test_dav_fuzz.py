"""Fuzz-style: no RecursionError (nor any other exception) reaches a CalDAV/CardDAV client.
Deeply nested (also folded: ``B\\r\\n EGIN:``), random, truncated and mutated iCalendar and
vCard bodies and XML request bodies (seeded, tests/fuzz.py) go to the parser directly
(ValueError with a reason, nothing else) and over HTTP to a real ``haven serve`` (both
engines): never a 5xx nor a traceback, and the account is served afterwards."""

from __future__ import annotations

import random

from gateways.common.davitems import parse_objects
from tests.fuzz import cases
from .wire import event, vcard, vevent

EVENT = event("fuzz-1", extra="RRULE:FREQ=DAILY;COUNT=3\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\n"
                              "TRIGGER:-PT5M\r\nDESCRIPTION:x\r\nEND:VALARM\r\n").encode()
CARD = vcard("fuzz-c", "Fuzz Card", "fuzz@example.org").encode()
_HEAD = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + vevent("deep").encode().split(b"END:VEVENT")[0]
_TAIL = b"END:VEVENT\r\nEND:VCALENDAR\r\n"
ICAL_NESTS = [(_HEAD, b"BEGIN:X\r\n", b"END:X\r\n", b"", _TAIL),
              (_HEAD, b"B\r\n EGIN:X\r\n", b"E\r\n ND:X\r\n", b"", _TAIL),
              (_HEAD, b"BEGIN\r\n\t:X\r\n", b"END\r\n\t:X\r\n", b"", _TAIL),
              (_HEAD, b"BEGIN;P=1:X\n", b"END;P=1:X\n", b"", _TAIL), (_HEAD, b"g.BEGIN:X\r", b"g.END:X\r", b"", _TAIL),
              (b"", b"BEGIN:VCALENDAR\r\n", b"END:VCALENDAR\r\n", b""),
              (b"", b"BEGIN:VCARD\r\n", b"END:VCARD\r\n", b"VERSION:3.0\r\nUID:c\r\nFN:x\r\n")]
ICAL_TOKENS = [b"BEGIN:VCALENDAR\r\n", b"BEGIN:VEVENT\r\n", b"END:VEVENT\r\n", b"END:VCALENDAR\r\n", b"UID:x\r\n",
               b"DTSTART:20250101T000000Z\r\n", b"RRULE:FREQ=SECONDLY\r\n", b"\r\n ", b"BEGIN:VCARD\r\n",
               b"END:VCARD\r\n", b"FN:x\r\n", b"VERSION:3.0\r\n", b";", b":", b"=", b"\"", b"\\n", b"\xff"]
XML_VALID = [b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:"><D:prop><D:getetag/></D:prop></D:propfind>',
             b'<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/>'
             b'</D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT"><C:time-range '
             b'start="20250101T000000Z" end="20260101T000000Z"/></C:comp-filter></C:comp-filter></C:filter>'
             b'</C:calendar-query>']
_PF = b'<D:propfind xmlns:D="DAV:"><D:prop>'
_CQ = (b'<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><C:filter>')
XML_NESTS = [(_PF, b"<D:x>", b"</D:x>", b""), (_CQ, b'<C:comp-filter name="VCALENDAR">', b"</C:comp-filter>", b""),
             (_CQ, b"<C:prop-filter name=\"X\"><C:param-filter name=\"Y\">", b"</C:param-filter></C:prop-filter>",
              b""), (b"", b"<a>", b"</a>", b"")]
XML_TOKENS = [b"<D:prop>", b"</D:prop>", b"<", b">", b"/>", b"<D:propfind xmlns:D=\"DAV:\">", b"</D:propfind>",
              b"<!DOCTYPE x [<!ENTITY a \"b\">]>", b"&a;", b"<![CDATA[", b"]]>", b"xmlns:C=\"x\"", b"\""]


def ical_cases(seed: int, n: int = 250) -> list:
    return cases(random.Random(seed), [EVENT, CARD], ICAL_NESTS, ICAL_TOKENS, n)


def xml_cases(seed: int, n: int = 150) -> list:
    return cases(random.Random(seed), XML_VALID, XML_NESTS, XML_TOKENS, n, depths=(10, 64, 65, 100, 1000, 100000))


def test_parser_answers_every_body_with_items_or_a_reason():
    for body in ical_cases(5545, 400):
        for kind in ("calendar", "contacts"):
            try:
                parse_objects(body.decode("utf-8", "replace"), kind, "u@example.test/" + kind)
            except ValueError as e:
                assert "recursion" not in str(e).lower(), str(e)


def _check(r, what) -> int:
    assert r.status < 500, (what[:200], r.status, r.text[:300])
    assert "RecursionError" not in r.text and "Traceback" not in r.text and "recursion" not in r.text, r.text[:300]
    return r.status


def test_fuzzed_bodies_over_http(haven, dav):
    statuses: dict = {}
    for i, body in enumerate(ical_cases(6352)):
        path, ctype = (dav.calendar, "text/calendar") if i % 2 else (dav.contacts, "text/vcard")
        status = _check(dav.request("PUT", f"{path}fuzz-{i}.{'ics' if i % 2 else 'vcf'}", body,
                                    {"Content-Type": ctype}), body)
        statuses[status] = statuses.get(status, 0) + 1
    for i, body in enumerate(xml_cases(4918)):
        method, path, depth = [("PROPFIND", dav.calendar, "1"), ("REPORT", dav.calendar, "1"),
                               ("PROPPATCH", dav.calendar, "0")][i % 3]
        status = _check(dav.request(method, path, body, {"Content-Type": "application/xml", "Depth": depth}), body)
        statuses[status] = statuses.get(status, 0) + 1
    assert statuses.get(400, 0) > 100
    r = dav.propfind(dav.calendar, depth="1")
    assert r.status == 207
    assert dav.put(dav.calendar + "after.ics", event("after-fuzz")).status in (201, 204)
    assert "RecursionError" not in haven.log()
