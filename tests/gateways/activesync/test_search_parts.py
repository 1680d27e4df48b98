"""The pure parts of gateways/activesync/search.py: ranges, mailbox queries, GAL matching and
free/busy from calendar texts (both ways of expanding recurrences)."""

from __future__ import annotations

import calendar
import time

import pytest

from gateways.activesync import search
from tests.gateways.activesync.client import X


def ts(when: str) -> int:
    return calendar.timegm(time.strptime(when, "%Y-%m-%d %H:%M"))


def test_ranges_are_capped_and_checked():
    assert search.parse_range(None) == (0, 99)
    assert search.parse_range("0-9") == (0, 9)
    assert search.parse_range("5-100000") == (5, 104)  # at most 100 results
    for bad in ("9-1", "a-b", "-3", "7", "1-2-3", "0-" + "9" * 30):
        with pytest.raises(search.BadRequest):
            search.parse_range(bad)


def test_mail_queries():
    q = search.mail_query(X('<Query xmlns="Search" xmlns:a="AirSync" xmlns:e="Email"><And><a:Class>Email</a:Class>'
                            '<a:CollectionId>7</a:CollectionId><FreeText>Quarterly  REPORT</FreeText>'
                            '<GreaterThan><e:DateReceived/><Value>2024-01-02T03:04:05.000Z</Value></GreaterThan>'
                            '<LessThan><e:DateReceived/><Value>2024-02-01T00:00:00Z</Value></LessThan>'
                            '</And></Query>'), True)
    assert (q.words, q.folders, q.deep) == (["quarterly", "report"], ["7"], True)
    assert (q.after, q.before) == (ts("2024-01-02 03:04") + 5, ts("2024-02-01 00:00"))
    with pytest.raises(search.TooComplex):
        search.mail_query(X('<Query xmlns="Search" xmlns:a="AirSync"><a:Class>Calendar</a:Class>'
                            '<FreeText>x</FreeText></Query>'), False)
    with pytest.raises(search.TooComplex):
        search.mail_query(X('<Query xmlns="Search"><FreeText>' + "w " * 11 + '</FreeText></Query>'), False)
    for bad in ('<Query xmlns="Search"/>', '<Query xmlns="Search" xmlns:e="Email"><GreaterThan><e:DateReceived/>'
                '<Value>yesterday</Value></GreaterThan></Query>'):
        with pytest.raises(search.BadRequest):
            search.mail_query(X(bad), False)
    with pytest.raises(search.BadRequest):
        search.mail_query(None, False)


def test_gal_matching():
    entry = search.GalEntry("Ann Lee", "ann.lee@example.test", "ann.lee", "Ann", "Lee")
    assert all(search.gal_match(entry, q) for q in ("ann", "ANN L", "lee", "ann.lee@ex"))
    assert not any(search.gal_match(entry, q) for q in ("nn", "example", "bob"))


EVENTS = [
    # 10:00-11:00 busy; 09:30-10:00 transparent; cancelled 11:00-11:30
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:a\r\nDTSTAMP:20310101T000000Z\r\n"
    "DTSTART:20310304T100000Z\r\nDTEND:20310304T110000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:b\r\nDTSTAMP:20310101T000000Z\r\n"
    "DTSTART:20310304T093000Z\r\nDTEND:20310304T100000Z\r\nTRANSP:TRANSPARENT\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:c\r\nDTSTAMP:20310101T000000Z\r\n"
    "DTSTART:20310304T110000Z\r\nDURATION:PT30M\r\nSTATUS:CANCELLED\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    # daily at 12:00 for 15 minutes, tentative, with the 4th moved to 09:00 and the 5th excluded
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:d\r\nDTSTAMP:20310101T000000Z\r\n"
    "DTSTART:20310301T120000Z\r\nDTEND:20310301T121500Z\r\nRRULE:FREQ=DAILY;COUNT=10\r\n"
    "EXDATE:20310305T120000Z\r\nSTATUS:TENTATIVE\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:d\r\nDTSTAMP:20310101T000000Z\r\nRECURRENCE-ID:20310304T120000Z\r\n"
    "DTSTART:20310304T090000Z\r\nDTEND:20310304T091500Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    "not a calendar at all",
]


@pytest.mark.parametrize("expander", ["recurring_ical_events", "vobject"])
def test_merged_free_busy(expander, monkeypatch):
    if expander == "vobject":
        monkeypatch.setattr(search, "recurring_ical_events", None)
    elif search.recurring_ical_events is None:
        pytest.skip("recurring_ical_events is not installed")
    start = ts("2031-03-04 09:00")
    # 09:00 moved occurrence (busy), 09:30 transparent, 10:00-11:00 busy, 11:00 cancelled, 12:00 nothing
    # (the 4th daily moved away), 12:30 free
    assert search.merged_free_busy(EVENTS, start, ts("2031-03-04 13:00")) == "20220000"
    # the next day: the 5th is excluded; the 6th is tentative at 12:00
    assert search.merged_free_busy(EVENTS, ts("2031-03-05 12:00"), ts("2031-03-05 12:30")) == "0"
    assert search.merged_free_busy(EVENTS, ts("2031-03-06 11:30"), ts("2031-03-06 13:00")) == "010"
    allday = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:e\r\nDTSTAMP:20310101T000000Z\r\n"
              "DTSTART;VALUE=DATE:20310307\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    assert search.merged_free_busy([allday], ts("2031-03-06 23:00"), ts("2031-03-08 01:00")) == \
        "00" + "2" * 48 + "00"  # an all-day event: its UTC day
