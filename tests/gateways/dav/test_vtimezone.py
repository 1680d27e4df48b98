"""The shared VTIMEZONE parse (gateways/common/vtimezone.py): one zone object per distinct text,
and local times still convert by the zone that was sent."""

from __future__ import annotations

import datetime

import vobject

from gateways.common import vtimezone

ZONE = """BEGIN:VTIMEZONE\r\nTZID:{tzid}\r\nBEGIN:STANDARD\r\nDTSTART:19700101T000000\r\nTZOFFSETFROM:{off}\r\n\
TZOFFSETTO:{off}\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"""


def calendar(tzid: str, offset: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n" + ZONE.format(tzid=tzid, off=offset)
            + f"BEGIN:VEVENT\r\nUID:u\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID={tzid}:20260601T120000\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")


def test_same_text_same_zone_and_offsets_respected():
    vtimezone.install()
    a = vobject.readOne(calendar("Test/Plus3", "+0300"))
    b = vobject.readOne(calendar("Test/Plus3", "+0300"))
    c = vobject.readOne(calendar("Test/Minus4", "-0400"))
    assert a.vtimezone.tzinfo is b.vtimezone.tzinfo
    assert a.vtimezone.tzinfo is not c.vtimezone.tzinfo
    utc = datetime.timezone.utc
    assert a.vevent.dtstart.value.astimezone(utc).hour == 9
    assert c.vevent.dtstart.value.astimezone(utc).hour == 16
