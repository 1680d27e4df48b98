"""gateways/common/vobject_speed.py: every fast path gives what vobject's own function gives."""

from __future__ import annotations

import io
import random

import pytest
import vobject

from gateways.common import vobject_speed as V

ALPHABET = "abc XYZ019,;:\\nN\"é€😀\t-"


def samples(n: int, seed: int = 7):
    rng = random.Random(seed)
    out = ["", "plain", "a,b", "a\\,b", "line\\nbreak", "tail\\", "\\\\", "é" * 100, "x" * 75, "x" * 76,
           "y" * 149, "y" * 150, "z" * 300]
    for _ in range(n):
        out.append("".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 260))))
    return out


@pytest.mark.parametrize("separator", [",", ";", None])
def test_text_values_match_the_original(separator):
    for s in samples(500):
        assert V.fast_text_values(s, separator) == V._original_text_values(s, separator), s


@pytest.mark.parametrize("length", [75, 10, 2])
def test_folding_matches_the_original(length):
    for s in samples(500):
        if "\n" in s or "\r" in s:
            continue
        a, b = io.StringIO(), io.StringIO()
        V.fast_fold(a, s, length)
        V._original_fold(b, s, length)
        assert a.getvalue() == b.getvalue(), s
    a, b = io.BytesIO(), io.BytesIO()  # short lines go to byte buffers as bytes, as before
    V.fast_fold(a, "short", 75)
    V._original_fold(b, "short", 75)
    assert a.getvalue() == b.getvalue()


CALENDAR = """BEGIN:VCALENDAR
VERSION:2.0
PRODID:-//Test//Haven//EN
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:{uid}
DTSTAMP:20251001T080000Z
DTSTART;TZID=Europe/Berlin:20251002T090000
DTEND;TZID=Europe/Berlin:20251002T100000
SUMMARY:{summary}
DESCRIPTION:{description}
LOCATION:Room 1\\, Building B\\; east wing
CATEGORIES:work,planning,x\\,y
ATTENDEE;CN="Doe, Jane";ROLE=REQ-PARTICIPANT:mailto:jane@example.org
RRULE:FREQ=WEEKLY;COUNT=10
END:VEVENT
END:VCALENDAR
"""


def round_trip(text: str) -> str:
    return vobject.readOne(text).serialize()


def test_parse_and_serialize_are_unchanged():
    texts = []
    for i, s in enumerate(samples(60, seed=11)):
        s = s.replace("\\", "\\\\").replace("\n", "\\n").replace(",", "\\,").replace(";", "\\;")
        texts.append(CALENDAR.format(uid=f"uid-{i}", summary=s[:40] or "x", description=s or "none"))
    texts.append(CALENDAR.format(uid="long", summary="a" * 200, description="é" * 90 + " and more " * 30))
    installed = V.base.ContentLine.__setattr__ is V.fast_setattr
    try:
        _uninstall()
        expected = [round_trip(t) for t in texts]
        V.install()
        assert [round_trip(t) for t in texts] == expected
    finally:
        if not installed:
            _uninstall()


def _uninstall():
    V.base.ContentLine.__setattr__ = V._original_setattr
    V.icalendar.stringToTextValues = V._original_text_values
    V.base.foldOneLine = V._original_fold
    V.icalendar.foldOneLine = V._original_fold
    V.base._haven_fast_paths = False
