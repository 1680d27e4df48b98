"""The ActiveSync Timezone blob ([MS-ASDTYPE] 2.7.1): encoding a zone's rules, finding the IANA
zone of a blob, zones no IANA zone matches, malformed blobs, and the VTIMEZONE we write."""

from __future__ import annotations

import base64
import struct
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest

from gateways.activesync import tzblob
from gateways.activesync.pim import ConversionError
from gateways.activesync.tzblob import Rule, Zone

#: what an iPhone sent for Los Angeles (Horde's test suite): its own StandardName, no IANA key
IPHONE_LA = ("4AEAACgARwBNAFQALQAwADgAOgAwADAAKQAgAFAAYQBjAGkAZgBpAGMAIABUAGkAbQBlACAAKABVAFMAIAAmACAAQwAAAAsAAAAB"
             "AAIAAAAAAAAAAAAAACgARwBNAFQALQAwADgAOgAwADAAKQAgAFAAYQBjAGkAZgBpAGMAIABUAGkAbQBlACAAKABVAFMAIAAmACAA"
             "QwAAAAMAAAACAAIAAAAAAAAAxP///w==")


def fields(b64: str) -> tuple:
    raw = base64.b64decode(b64)
    assert len(raw) == 172
    return struct.unpack("<i64s8Hi64s8Hi", raw)


def name(raw: bytes) -> str:
    return raw.decode("utf-16-le").split("\0")[0]


def test_berlin_blob_fields():
    f = fields(tzblob.encode(ZoneInfo("Europe/Berlin"), 2026))
    assert f[0] == -60 and name(f[1]) == "W. Europe Standard Time"
    assert f[2:10] == (0, 10, 0, 5, 3, 0, 0, 0)  # last Sunday of October, 03:00 summer time
    assert f[10] == 0 and name(f[11]) == "W. Europe Daylight Time"
    assert f[12:20] == (0, 3, 0, 5, 2, 0, 0, 0)  # last Sunday of March, 02:00 winter time
    assert f[20] == -60


def test_new_york_blob_fields():
    f = fields(tzblob.encode(ZoneInfo("America/New_York"), 2026))
    assert f[0] == 300 and name(f[1]) == "Eastern Standard Time"
    assert f[2:10] == (0, 11, 0, 1, 2, 0, 0, 0)  # first Sunday of November
    assert f[12:20] == (0, 3, 0, 2, 2, 0, 0, 0)  # second Sunday of March
    assert f[20] == -60


def test_sydney_southern_daylight_time():
    f = fields(tzblob.encode(ZoneInfo("Australia/Sydney"), 2026))
    assert f[0] == -600
    assert f[2:10] == (0, 4, 0, 1, 3, 0, 0, 0)  # standard time from the first Sunday of April
    assert f[12:20] == (0, 10, 0, 1, 2, 0, 0, 0)  # daylight time from the first Sunday of October
    assert f[20] == -60


@pytest.mark.parametrize("key,bias", [("Asia/Kolkata", -330), ("UTC", 0)])
def test_zones_without_daylight_time(key, bias):
    f = fields(tzblob.encode(ZoneInfo(key), 2026))
    assert f[0] == bias and f[2:10] == (0,) * 8 and f[12:20] == (0,) * 8 and f[20] == 0


def test_fixed_offset_tzinfo():
    f = fields(tzblob.encode(timezone(timedelta(hours=-3, minutes=-30)), 2026))
    assert f[0] == 210 and f[2:10] == (0,) * 8


def test_dublin_negative_dst_comes_out_as_windows_expects():
    f = fields(tzblob.encode(ZoneInfo("Europe/Dublin"), 2026))
    assert f[0] == 0 and f[20] == -60 and f[12] == 0 and f[13] == 3


@pytest.mark.parametrize("key", ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC",
                                 "Europe/Dublin", "Asia/Kathmandu", "Pacific/Chatham", "America/Sao_Paulo"])
def test_round_trip_names_the_zone(key):
    assert tzblob.tzid_for(tzblob.decode(tzblob.encode(ZoneInfo(key), 2026))) == key


@pytest.mark.parametrize("key", ["Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"])
def test_nameless_blob_finds_the_common_zone(key):
    zone = tzblob.unpack(base64.b64decode(tzblob.encode(ZoneInfo(key), datetime.now().year)))
    blob = base64.b64encode(tzblob.pack(Zone(zone.std_offset, zone.dst_delta, zone.to_dst, zone.to_std)))
    assert tzblob.tzid_for(tzblob.decode(blob)) == key


def test_iphone_blob_with_a_display_name():
    tz = tzblob.decode(IPHONE_LA)
    assert tzblob.tzid_for(tz) == "America/Los_Angeles"
    assert tzblob.decode(IPHONE_LA.encode()) == tz  # the WBXML decoder may hand bytes


def test_windows_name_whose_rules_differ_is_not_trusted():
    berlin = tzblob.zone_of(ZoneInfo("Europe/Berlin"), 2026)
    lying = Zone(berlin.std_offset + 60, berlin.dst_delta, berlin.to_dst, berlin.to_std, "W. Europe Standard Time")
    tz = tzblob.decode(base64.b64encode(tzblob.pack(lying)))
    # Moldova changes at 02:00 local time like Berlin, one hour further east
    assert tzblob.tzid_for(tz) == "Europe/Chisinau"


def test_blob_matching_no_zone_follows_its_own_rule():
    odd = Zone(70, 30, Rule(3, 0, 5, 2), Rule(10, 0, 5, 3), "Odd Time", "Odd Summer Time")
    tz = tzblob.decode(base64.b64encode(tzblob.pack(odd)))
    assert isinstance(tz, tzblob.RuleZone) and tzblob.tzid_for(tz) == "Odd Time"
    summer = datetime(2026, 7, 1, 12, tzinfo=timezone.utc).astimezone(tz)
    winter = datetime(2026, 1, 1, 12, tzinfo=timezone.utc).astimezone(tz)
    assert summer.utcoffset() == timedelta(minutes=100) and winter.utcoffset() == timedelta(minutes=70)
    # the change itself: 02:00 winter time on the last Sunday of March 2026 (the 29th)
    before = datetime(2026, 3, 29, 1, 59, tzinfo=tz)
    after = datetime(2026, 3, 29, 2, 31, tzinfo=tz)
    assert before.utcoffset() == timedelta(minutes=70) and after.utcoffset() == timedelta(minutes=100)
    assert tzblob.decode(tzblob.encode(tz, 2026)) == tz
    offset_only = tzblob.decode(base64.b64encode(tzblob.pack(Zone(-7 * 60 - 13))))
    assert offset_only.utcoffset(None) == timedelta(minutes=-433)


@pytest.mark.parametrize("garbage", [
    "", "not base64!", base64.b64encode(b"\0" * 171).decode(), base64.b64encode(b"\0" * 173).decode(),
    "Zm9v", "ü" * 10,
])
def test_malformed_blobs(garbage):
    with pytest.raises(ConversionError):
        tzblob.decode(garbage)


def _with(**changes) -> str:
    values = list(fields(tzblob.encode(ZoneInfo("Europe/Berlin"), 2026)))
    for index, value in changes.items():
        values[int(index[1:])] = value
    return base64.b64encode(struct.pack("<i64s8Hi64s8Hi", *values)).decode()


@pytest.mark.parametrize("changes", [
    {"f3": 13},  # StandardDate month 13
    {"f5": 6},   # week of month 6
    {"f4": 7},   # day of week 7
    {"f6": 24},  # hour 24
    {"f13": 0},  # a StandardDate without a DaylightDate
    {"f0": 5000},  # bias of 83 hours
    {"f20": -600},  # daylight time ten hours ahead
])
def test_impossible_dates_and_biases(changes):
    with pytest.raises(ConversionError):
        tzblob.decode(_with(**changes))


def test_vtimezone_is_compact_and_right():
    vtz = tzblob.vtimezone(ZoneInfo("Europe/Berlin"), 2026)
    text = vtz.to_ical().decode()
    assert "TZID:Europe/Berlin" in text and "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3" in text
    assert "TZNAME:CEST" in text and "TZOFFSETTO:+0200" in text
    # icalendar reads it back into a zone with the same offsets
    cal = icalendar.Calendar.from_ical(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + text.replace("TZID:Europe/Berlin", "TZID:My Berlin")
        + "BEGIN:VEVENT\r\nUID:a\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID=My Berlin:20260710T100000\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n")
    start = cal.walk("VEVENT")[0].decoded("DTSTART")
    assert start.utcoffset() == timedelta(hours=2)
    flat = tzblob.vtimezone(ZoneInfo("Asia/Kolkata"), 2026).to_ical().decode()
    assert "DAYLIGHT" not in flat and "TZOFFSETTO:+0530" in flat


def test_zone_from_a_parsed_vtimezone_encodes_like_the_real_one():
    """Outlook writes its own VTIMEZONE under a Windows TZID: icalendar builds a zone from it."""
    text = tzblob.vtimezone(ZoneInfo("America/New_York"), 2026).to_ical().decode()
    text = text.replace("TZID:America/New_York", "TZID:Custom Eastern")
    cal = icalendar.Calendar.from_ical(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + text
        + "BEGIN:VEVENT\r\nUID:a\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID=Custom Eastern:20260710T100000\r\n"
        "END:VEVENT\r\nEND:VCALENDAR\r\n")
    tz = cal.walk("VEVENT")[0].decoded("DTSTART").tzinfo
    ours = tzblob.zone_of(tz, 2026).signature(2026)
    assert ours == tzblob.zone_of(ZoneInfo("America/New_York"), 2026).signature(2026)


def test_blob_through_wbxml():
    from gateways.activesync import wbxml
    from gateways.activesync.xmlutil import element
    el = element("Calendar", "Timezone", text=tzblob.encode(ZoneInfo("Australia/Sydney"), 2026))
    back = wbxml.decode(wbxml.encode(el))
    assert back.tag == "{Calendar}Timezone"
    assert tzblob.tzid_for(tzblob.decode(back.text)) == "Australia/Sydney"
    opaque = element("Calendar", "Timezone", text=base64.b64encode(tzblob.pack(tzblob.zone_of(ZoneInfo("UTC"), 2026))))
    assert tzblob.tzid_for(tzblob.decode(wbxml.decode(wbxml.encode(opaque)).text)) == "UTC"
