"""Events between stored iCalendar and ActiveSync ApplicationData ([MS-ASCAL]), both ways: the
sample exports of tests/data/calendar/, phone edits merged onto them, ghosting, exceptions in
14.x and 16.x (InstanceId), time zones, and input that must be refused."""

from __future__ import annotations

import base64
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from gateways.activesync import calendar, icalitem, tzblob, wbxml
from gateways.activesync.mailitem import BodyPreference
from gateways.activesync.pim import ConversionError
from gateways.activesync.wbxml import qname as q
from gateways.activesync.xmlutil import element, sub

DATA = Path(__file__).resolve().parents[2] / "data" / "calendar"
V14, V141, V16, V161 = (14, 0), (14, 1), (16, 0), (16, 1)
ME = ["ann@example.test"]


def sample(name: str) -> str:
    return (DATA / name).read_text()


def wire(el):
    """Through the WBXML codec and back: every tag must exist in the code pages."""
    return wbxml.decode(wbxml.encode(el))


def flat(el, prefix="") -> dict:
    """``{"Calendar:Subject": "x", "Calendar:Attendees/Calendar:Attendee[1]/Calendar:Email": ...}``."""
    out: dict = {}
    seen: dict = {}
    for child in el:
        ns, name = child.tag[1:].split("}")
        key = f"{prefix}{ns}:{name}"
        seen[key] = seen.get(key, 0) + 1
        if len(child):
            out.update(flat(child, f"{key}[{seen[key]}]/"))
        else:
            out[f"{key}[{seen[key]}]" if seen[key] > 1 else key] = child.text
    return out


def event(text: str, uid: str | None = None):
    cal = icalendar.Calendar.from_ical(text)
    events = cal.walk("VEVENT")
    return [e for e in events if "RECURRENCE-ID" not in e][0], events, cal


def app(*fields, version=V141):
    """An ApplicationData a phone would send: ``(page, name, text or [children])``."""
    data = element("AirSync", "ApplicationData")
    _fill(data, fields)
    return wire(data)


def _fill(parent, fields):
    for page, name, value in fields:
        if isinstance(value, list):
            _fill(sub(parent, page, name), value)
        else:
            sub(parent, page, name, value)


def tz_blob(key: str) -> str:
    return tzblob.encode(ZoneInfo(key), 2026)


# -- stored -> EAS ----------------------------------------------------------------------------------------

def test_google_recurring_meeting_16():
    got = flat(wire(calendar.to_eas(sample("google-recurring-meeting.ics"), V161, me=ME)))
    assert tzblob.tzid_for(tzblob.decode(got["Calendar:Timezone"])) == "Europe/Berlin"
    assert got["Calendar:StartTime"] == "20260302T083000Z" and got["Calendar:EndTime"] == "20260302T090000Z"
    assert got["Calendar:Subject"] == "Team sync" and got["Calendar:AllDayEvent"] == "0"
    assert got["AirSyncBase:Location[1]/AirSyncBase:DisplayName"] == "Room 4.11"
    assert "Calendar:Location" not in got
    assert got["AirSyncBase:Body[1]/AirSyncBase:Type"] == "1"
    assert got["AirSyncBase:Body[1]/AirSyncBase:Data"].startswith("Weekly sync.\r\nAgenda:")
    assert got["Calendar:Reminder"] == "10" and got["Calendar:BusyStatus"] == "2"
    assert got["Calendar:OrganizerEmail"] == "ann@example.test" and got["Calendar:OrganizerName"] == "Ann Example"
    assert got["Calendar:MeetingStatus"] == "1" and got["Calendar:ResponseType"] == "1"
    assert got["Calendar:ResponseRequested"] == "1"
    people = {got[f"Calendar:Attendees[1]/Calendar:Attendee[{i}]/Calendar:Email"]:
              (got[f"Calendar:Attendees[1]/Calendar:Attendee[{i}]/Calendar:AttendeeStatus"],
               got[f"Calendar:Attendees[1]/Calendar:Attendee[{i}]/Calendar:AttendeeType"]) for i in range(1, 5)}
    assert people == {"ann@example.test": ("3", "1"), "bob@example.test": ("5", "1"),
                      "cara@example.org": ("2", "2"), "c_room411@resource.calendar.google.com": ("3", "3")}
    assert got["Calendar:Recurrence[1]/Calendar:Type"] == "1"
    assert got["Calendar:Recurrence[1]/Calendar:DayOfWeek"] == "10"  # Monday + Wednesday
    assert got["Calendar:Recurrence[1]/Calendar:Until"] == "20260630T073000Z"
    assert got["Calendar:Recurrence[1]/Calendar:FirstDayOfWeek"] == "1"
    exc = "Calendar:Exceptions[1]/Calendar:Exception"
    assert got[f"{exc}[1]/Calendar:Deleted"] == "1"
    assert got[f"{exc}[1]/AirSyncBase:InstanceId"] == "20260311T083000Z"
    assert got[f"{exc}[2]/AirSyncBase:InstanceId"] == "20260318T083000Z"
    assert got[f"{exc}[2]/Calendar:Subject"] == "Team sync (moved)"
    assert got[f"{exc}[2]/Calendar:StartTime"] == "20260318T100000Z"
    assert got[f"{exc}[2]/AirSyncBase:Location[1]/AirSyncBase:DisplayName"] == "Room 2.03"
    assert f"{exc}[2]/Calendar:Reminder" not in got  # the same as the master's
    assert not any("ExceptionStartTime" in k for k in got)


def test_google_exceptions_in_14_use_exception_start_time():
    got = flat(wire(calendar.to_eas(sample("google-recurring-meeting.ics"), V141, me=ME)))
    assert got["Calendar:Exceptions[1]/Calendar:Exception[1]/Calendar:ExceptionStartTime"] == "20260311T083000Z"
    assert got["Calendar:Location"] == "Room 4.11"
    assert got["Calendar:Exceptions[1]/Calendar:Exception[2]/Calendar:Location"] == "Room 2.03"
    assert not any("InstanceId" in k for k in got)


def test_outlook_windows_zone_busy_and_invitation():
    got = flat(wire(calendar.to_eas(sample("outlook-new-york.ics"), V141, me=ME)))
    assert tzblob.tzid_for(tzblob.decode(got["Calendar:Timezone"])) == "America/New_York"
    assert got["Calendar:StartTime"] == "20260305T190000Z"
    assert got["Calendar:BusyStatus"] == "1"  # X-MICROSOFT-CDO-BUSYSTATUS:TENTATIVE
    assert got["Calendar:DisallowNewTimeProposal"] == "1"
    assert got["Calendar:MeetingStatus"] == "3" and got["Calendar:ResponseType"] == "5"
    assert got["Calendar:Recurrence[1]/Calendar:Type"] == "3"
    assert got["Calendar:Recurrence[1]/Calendar:WeekOfMonth"] == "1"
    assert got["Calendar:Recurrence[1]/Calendar:DayOfWeek"] == "16"  # Thursday
    assert got["Calendar:Recurrence[1]/Calendar:Occurrences"] == "12"


def test_meeting_status_follows_who_organizes():
    text = sample("outlook-new-york.ics")
    assert flat(calendar.to_eas(text, V141))["Calendar:MeetingStatus"] == "1"  # me unknown: mine
    assert flat(calendar.to_eas(text, V141, me=["dana@corp.example.test"]))["Calendar:MeetingStatus"] == "1"
    cancelled = text.replace("SEQUENCE:0", "SEQUENCE:1\r\nSTATUS:CANCELLED")
    assert flat(calendar.to_eas(cancelled, V141, me=ME))["Calendar:MeetingStatus"] == "7"
    assert flat(calendar.to_eas(cancelled, V141))["Calendar:MeetingStatus"] == "5"
    assert flat(calendar.to_eas(sample("apple-sydney.ics"), V141))["Calendar:MeetingStatus"] == "0"


def test_apple_private_event_with_two_alarms():
    got = flat(wire(calendar.to_eas(sample("apple-sydney.ics"), V14)))
    assert tzblob.tzid_for(tzblob.decode(got["Calendar:Timezone"])) == "Australia/Sydney"
    assert got["Calendar:StartTime"] == "20260115T060000Z"  # 17:00 summer time, UTC+11
    assert got["Calendar:Sensitivity"] == "2" and got["Calendar:Reminder"] == "30"
    assert got["Calendar:Categories[1]/Calendar:Category"] == "Personal"
    assert got["Calendar:Categories[1]/Calendar:Category[2]"] == "Sport"
    assert "AirSyncBase:Body[1]/AirSyncBase:Data" not in got and "Calendar:Attendees[1]" not in got


def test_thunderbird_all_day_yearly():
    got = flat(wire(calendar.to_eas(sample("thunderbird-allday.ics"), V161)))
    assert got["Calendar:AllDayEvent"] == "1" and got["Calendar:BusyStatus"] == "0"
    assert got["Calendar:StartTime"] == "20260525T000000Z" and got["Calendar:EndTime"] == "20260527T000000Z"
    assert got["Calendar:Recurrence[1]/Calendar:Type"] == "5"
    assert got["Calendar:Recurrence[1]/Calendar:MonthOfYear"] == "5"
    assert got["Calendar:Recurrence[1]/Calendar:DayOfMonth"] == "25"


def test_rule_activesync_cannot_say_is_left_out():
    got = flat(wire(calendar.to_eas(sample("thunderbird-hourly.ics"), V141)))
    assert not any(k.startswith("Calendar:Recurrence") for k in got)
    assert tzblob.tzid_for(tzblob.decode(got["Calendar:Timezone"])) == "Asia/Kolkata"


def test_body_truncation():
    pref = BodyPreference(1, truncation=20)
    got = flat(calendar.to_eas(sample("google-recurring-meeting.ics"), V141, body=pref))
    assert got["AirSyncBase:Body[1]/AirSyncBase:Truncated"] == "1"
    assert len(got["AirSyncBase:Body[1]/AirSyncBase:Data"].encode()) <= 20
    assert int(got["AirSyncBase:Body[1]/AirSyncBase:EstimatedDataSize"]) > 100
    none = flat(calendar.to_eas(sample("google-recurring-meeting.ics"), V141,
                                body=BodyPreference(1, truncation=20, all_or_none=True)))
    assert "AirSyncBase:Body[1]/AirSyncBase:Data" not in none


@pytest.mark.parametrize("name,why", [
    ("broken-bad-date.ics", "not a date"), ("broken-truncated.ics", "cannot be read"),
    ("broken-no-dtstart.ics", "no DTSTART"), ("icloud-reminder.ics", "to-do"),
    ("thunderbird-task.ics", "to-do"),
])
def test_unreadable_or_wrong_objects(name, why):
    with pytest.raises(ConversionError, match=why):
        calendar.to_eas(sample(name), V141)
    with pytest.raises(ConversionError):
        calendar.from_eas(app((calendar.CAL, "Subject", "x")), sample(name), V141, "u", None)


# -- stored -> EAS -> stored: a phone resending what it got --------------------------------------------

SAMPLES = ["google-recurring-meeting.ics", "outlook-new-york.ics", "apple-sydney.ics", "thunderbird-allday.ics",
           "thunderbird-hourly.ics", "custom-zone"]


def sample_or_variant(name: str) -> str:
    if name == "custom-zone":  # a VTIMEZONE of Berlin's rules under a name no zone database has
        return sample("google-recurring-meeting.ics").replace("Europe/Berlin", "My Office Time")
    return sample(name)


def _supported_all():
    return {q("Calendar", n) for n in ("Subject", "Location", "Reminder", "BusyStatus", "Sensitivity", "Categories",
                                       "Attendees", "Recurrence", "StartTime", "EndTime")}


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("version", [V141, V161])
@pytest.mark.parametrize("supported", [None, "all", "none"])
def test_resend_keeps_everything(name, version, supported):
    stored = sample_or_variant(name)
    sent = wire(calendar.to_eas(stored, version, me=ME))
    sup = None if supported is None else (_supported_all() if supported == "all" else set())
    merged = calendar.from_eas(sent, stored, version, "ignored", sup)
    # what EAS carries comes back the same
    assert flat(calendar.to_eas(merged, version, me=ME)) == flat(sent)
    # and the stored object is untouched: every VEVENT as it was (icalendar's own spelling)
    before = icalendar.Calendar.from_ical(stored)
    after = icalendar.Calendar.from_ical(merged)
    assert [e.to_ical() for e in after.walk("VEVENT")] == [e.to_ical() for e in before.walk("VEVENT")]
    cal = after
    assert cal.get("PRODID") == icalendar.Calendar.from_ical(stored).get("PRODID")


def test_resend_keeps_x_properties_attach_and_the_hourly_rule():
    stored = sample("thunderbird-hourly.ics")
    sent = wire(calendar.to_eas(stored, V141))
    merged = calendar.from_eas(sent, stored, V141, "u", None)
    master = event(merged)[0]
    assert str(master["RRULE"].to_ical(), "ascii") == "FREQ=DAILY;BYHOUR=9,11;BYDAY=MO,TU,WE,TH,FR"
    assert "pdf" in str(master["ATTACH"]) and str(master["X-MOZ-GENERATION"]) == "1"


def test_apple_extras_survive_an_edit():
    stored = sample("apple-sydney.ics")
    edit = app((calendar.CAL, "Subject", "Swim, then dinner"), (calendar.CAL, "Reminder", "45"),
               (calendar.CAL, "Sensitivity", "2"), (calendar.CAL, "Location", "Bondi"),
               (calendar.CAL, "Categories", [(calendar.CAL, "Category", "Personal")]))
    merged = calendar.from_eas(edit, stored, V141, "u", {q("Calendar", "Subject"), q("Calendar", "Reminder")})
    master = event(merged)[0]
    assert str(master["SUMMARY"]) == "Swim, then dinner" and str(master["LOCATION"]) == "Bondi"
    alarms = master.walk("VALARM")
    assert [a.decoded("TRIGGER") for a in alarms] == [timedelta(minutes=-45), timedelta(hours=-2)]
    assert str(alarms[0]["X-WR-ALARMUID"]).startswith("4B3C")  # the same alarm, edited
    assert "X-APPLE-STRUCTURED-LOCATION" in master and str(master["URL"]).startswith("https://icebergs")
    assert master.decoded("DTSTART") == datetime(2026, 1, 15, 17, tzinfo=ZoneInfo("Australia/Sydney"))
    assert calendar.categories_of(master) == ["Personal"]


# -- ghosting ------------------------------------------------------------------------------------------------

def test_absent_fields_removed_without_supported_kept_when_not_listed():
    stored = sample("apple-sydney.ics")
    bare = app((calendar.CAL, "Subject", "Only a subject"))
    removed = event(calendar.from_eas(bare, stored, V141, "u", None))[0]
    assert "LOCATION" not in removed and "CATEGORIES" not in removed and "CLASS" not in removed
    assert [a.decoded("TRIGGER") for a in removed.walk("VALARM")] == [timedelta(hours=-2)]  # the 2nd stays
    assert "DESCRIPTION" not in event(stored)[0] or "DESCRIPTION" in removed
    kept = event(calendar.from_eas(bare, stored, V141, "u", {q("Calendar", "Subject")}))[0]
    assert str(kept["LOCATION"]).startswith("Bondi") and calendar.categories_of(kept) == ["Personal", "Sport"]
    assert str(kept["CLASS"]) == "PRIVATE" and len(kept.walk("VALARM")) == 2
    listed = event(calendar.from_eas(bare, stored, V141, "u", {q("Calendar", "Location")}))[0]
    assert "LOCATION" not in listed and str(listed["CLASS"]) == "PRIVATE"


def test_body_absent_keeps_empty_body_clears():
    stored = sample("google-recurring-meeting.ics")
    kept = event(calendar.from_eas(app((calendar.CAL, "Subject", "Team sync")), stored, V161, "u", None))[0]
    assert str(kept["DESCRIPTION"]).startswith("Weekly sync.")
    cleared = event(calendar.from_eas(app((calendar.CAL, "Subject", "Team sync"), ("AirSyncBase", "Body", [
        ("AirSyncBase", "Type", "1"), ("AirSyncBase", "Data", "")])), stored, V161, "u", None))[0]
    assert "DESCRIPTION" not in cleared
    html = event(calendar.from_eas(app(("AirSyncBase", "Body", [
        ("AirSyncBase", "Type", "2"), ("AirSyncBase", "Data", "<p>New <b>agenda</b></p>")])), stored, V161, "u",
        set()))[0]
    assert str(html["DESCRIPTION"]) == "New agenda"


def test_unexpressible_rule_survives_an_edit_and_a_sent_rule_replaces_it():
    stored = sample("thunderbird-hourly.ics")
    edit = app((calendar.CAL, "Subject", "Stand-up"))
    master = event(calendar.from_eas(edit, stored, V141, "u", None))[0]
    assert "BYHOUR" in master["RRULE"].to_ical().decode()
    weekly = app((calendar.CAL, "Recurrence", [(calendar.CAL, "Type", "1"), (calendar.CAL, "Interval", "1"),
                                               (calendar.CAL, "DayOfWeek", "62")]))
    master = event(calendar.from_eas(weekly, stored, V141, "u", set()))[0]
    assert master["RRULE"].to_ical().decode() == "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"


def test_expressible_rule_removed_when_ghosted_with_its_exceptions():
    stored = sample("google-recurring-meeting.ics")
    sent = wire(calendar.to_eas(stored, V141, me=ME))
    sent.remove(sent.find(q("Calendar", "Recurrence")))
    sent.remove(sent.find(q("Calendar", "Exceptions")))
    _, events, _ = event(calendar.from_eas(sent, stored, V141, "u", None))
    assert len(events) == 1 and "RRULE" not in events[0] and "EXDATE" not in events[0]
    _, events, _ = event(calendar.from_eas(sent, stored, V141, "u", {q("Calendar", "Subject")}))
    assert len(events) == 2 and "RRULE" in events[0]


def test_attendees_merge_keeps_parameters_and_adds_new_ones():
    stored = sample("google-recurring-meeting.ics")
    people = [(calendar.CAL, "Attendee", [(calendar.CAL, "Email", "ann@example.test"),
                                          (calendar.CAL, "Name", "Ann Example"),
                                          (calendar.CAL, "AttendeeType", "1")]),
              (calendar.CAL, "Attendee", [(calendar.CAL, "Email", "cara@example.org"),
                                          (calendar.CAL, "Name", "Cara Optional"),
                                          (calendar.CAL, "AttendeeType", "1")]),
              (calendar.CAL, "Attendee", [(calendar.CAL, "Email", "dave@example.net"),
                                          (calendar.CAL, "Name", "Dave New"),
                                          (calendar.CAL, "AttendeeType", "2")])]
    master = event(calendar.from_eas(app((calendar.CAL, "Attendees", people)), stored, V141, "u", set()))[0]
    atts = {calendar._email(a): a.params for a in calendar.attendees_of(master)}
    assert set(atts) == {"ann@example.test", "cara@example.org", "dave@example.net"}
    assert atts["ann@example.test"]["X-NUM-GUESTS"] == "0" and atts["ann@example.test"]["PARTSTAT"] == "ACCEPTED"
    assert atts["cara@example.org"]["ROLE"] == "REQ-PARTICIPANT" and atts["cara@example.org"]["PARTSTAT"] == "TENTATIVE"
    assert atts["dave@example.net"]["CN"] == "Dave New" and atts["dave@example.net"]["ROLE"] == "OPT-PARTICIPANT"
    assert atts["dave@example.net"]["PARTSTAT"] == "NEEDS-ACTION"


# -- EAS -> stored -> EAS: a new event from a phone --------------------------------------------------------

def _phone_event(version, *extra):
    location = (("AirSyncBase", "Location", [("AirSyncBase", "DisplayName", "Café Central")]) if version >= V16
                else (calendar.CAL, "Location", "Café Central"))
    uid = (calendar.CAL, "ClientUid", "phone-uid-1") if version >= V16 else (calendar.CAL, "UID", "phone-uid-1")
    return app(
        (calendar.CAL, "Timezone", tz_blob("Europe/Berlin")), (calendar.CAL, "AllDayEvent", "0"),
        ("AirSyncBase", "Body", [("AirSyncBase", "Type", "1"), ("AirSyncBase", "Data", "Bring the plans\r\nand cake")]),
        (calendar.CAL, "BusyStatus", "3"), (calendar.CAL, "DtStamp", "20260401T100000Z"),
        (calendar.CAL, "EndTime", "20260410T110000Z"), location, (calendar.CAL, "Reminder", "20"),
        (calendar.CAL, "Sensitivity", "3"), (calendar.CAL, "Subject", "Planning"),
        (calendar.CAL, "StartTime", "20260410T093000Z"), uid, (calendar.CAL, "MeetingStatus", "1"),
        (calendar.CAL, "Attendees", [(calendar.CAL, "Attendee", [
            (calendar.CAL, "Email", "bob@example.test"), (calendar.CAL, "Name", "Bob"),
            (calendar.CAL, "AttendeeStatus", "0"), (calendar.CAL, "AttendeeType", "1")])]),
        (calendar.CAL, "Categories", [(calendar.CAL, "Category", "Work"), (calendar.CAL, "Category", "Plans")]),
        (calendar.CAL, "Recurrence", [(calendar.CAL, "Type", "2"), (calendar.CAL, "Interval", "1"),
                                      (calendar.CAL, "Until", "20261210T093000Z"),
                                      (calendar.CAL, "DayOfMonth", "10")]),
        (calendar.CAL, "DisallowNewTimeProposal", "1"), *extra, version=version)


@pytest.mark.parametrize("version", [V14, V141, V16, V161])
def test_new_event_from_a_phone_comes_back_the_same(version):
    data = _phone_event(version)
    text = calendar.from_eas(data, None, version, "server-uid", None)
    cal = icalendar.Calendar.from_ical(text)
    assert str(cal["PRODID"]) == icalitem.PRODID and [c.name for c in cal.subcomponents] == ["VTIMEZONE", "VEVENT"]
    master = cal.walk("VEVENT")[0]
    assert str(master["UID"]) == "phone-uid-1"
    assert master.decoded("DTSTART") == datetime(2026, 4, 10, 11, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert master["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert str(master["X-MICROSOFT-CDO-BUSYSTATUS"]) == "OOF" and str(master["CLASS"]) == "CONFIDENTIAL"
    assert str(master["DESCRIPTION"]) == "Bring the plans\nand cake"
    back = flat(wire(calendar.to_eas(text, version, me=ME)))
    sent = flat(data)
    for key, value in sent.items():
        if key in ("Calendar:ClientUid", "Calendar:UID"):
            assert back["Calendar:UID"] == "phone-uid-1"
        elif key.endswith("AttendeeStatus"):
            assert back[key] == "5"  # not responded yet
        elif key == "AirSyncBase:Body[1]/AirSyncBase:Data":
            assert back[key] == value
        else:
            assert back.get(key) == value, key


def test_new_event_without_uid_takes_the_given_one_and_utc():
    data = app((calendar.CAL, "Subject", "x"), (calendar.CAL, "StartTime", "20260410T093000Z"),
               (calendar.CAL, "EndTime", "20260410T100000Z"))
    master = event(calendar.from_eas(data, None, V161, "server-uid", None))[0]
    assert str(master["UID"]) == "server-uid" and master.decoded("DTSTART").tzinfo is not None
    assert master["DTSTART"].to_ical() == b"20260410T093000Z"


def test_all_day_from_a_phone_in_its_zone():
    data = app((calendar.CAL, "Timezone", tz_blob("America/New_York")), (calendar.CAL, "AllDayEvent", "1"),
               (calendar.CAL, "StartTime", "20260704T040000Z"), (calendar.CAL, "EndTime", "20260705T040000Z"),
               (calendar.CAL, "Subject", "Fourth"))
    text = calendar.from_eas(data, None, V141, "u", None)
    master = event(text)[0]
    assert master.decoded("DTSTART") == date(2026, 7, 4) and master.decoded("DTEND") == date(2026, 7, 5)
    assert flat(calendar.to_eas(text, V141))["Calendar:AllDayEvent"] == "1"


def test_phone_moves_the_event_to_another_zone():
    stored = sample("apple-sydney.ics")
    data = app((calendar.CAL, "Timezone", tz_blob("Asia/Kolkata")), (calendar.CAL, "StartTime", "20260115T060000Z"),
               (calendar.CAL, "EndTime", "20260115T073000Z"))
    text = calendar.from_eas(data, stored, V141, "u", set())
    master = event(text)[0]
    assert master["DTSTART"].params["TZID"] == "Asia/Kolkata"
    assert master.decoded("DTSTART") == datetime(2026, 1, 15, 11, 30, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert "TZID:Asia/Kolkata" in text


# -- exceptions --------------------------------------------------------------------------------------------

def test_14_exceptions_replace_what_they_name():
    stored = sample("google-recurring-meeting.ics")
    data = app((calendar.CAL, "Exceptions", [
        (calendar.CAL, "Exception", [(calendar.CAL, "Deleted", "1"),
                                     (calendar.CAL, "ExceptionStartTime", "20260318T083000Z")]),
        (calendar.CAL, "Exception", [(calendar.CAL, "ExceptionStartTime", "20260304T083000Z"),
                                     (calendar.CAL, "Subject", "Sync with guests"),
                                     (calendar.CAL, "StartTime", "20260304T130000Z"),
                                     (calendar.CAL, "EndTime", "20260304T140000Z")])]))
    text = calendar.from_eas(data, stored, V141, "u", {q("Calendar", "Exceptions")})
    master, events, _ = event(text)
    exdates = sorted(calendar.rid_key(d) for d in calendar.Event(icalendar.Calendar.from_ical(text)).exdates())
    assert exdates == ["20260311T083000Z", "20260318T083000Z"]
    overrides = {calendar.rid_key(e.decoded("RECURRENCE-ID")): e for e in events if "RECURRENCE-ID" in e}
    assert list(overrides) == ["20260304T083000Z"]
    moved = overrides["20260304T083000Z"]
    assert str(moved["SUMMARY"]) == "Sync with guests" and str(moved["LOCATION"]) == "Room 4.11"
    assert moved.decoded("DTSTART") == datetime(2026, 3, 4, 14, tzinfo=ZoneInfo("Europe/Berlin"))
    assert "RRULE" not in moved and "X-GOOGLE-CONFERENCE" in moved
    got = flat(calendar.to_eas(text, V141, me=ME))
    assert got["Calendar:Exceptions[1]/Calendar:Exception[3]/Calendar:Subject"] == "Sync with guests"


@pytest.mark.parametrize("instance", ["20260304T083000Z", "2026-03-04T08:30:00.000Z"])
def test_16_change_and_delete_one_instance(instance):
    stored = sample("google-recurring-meeting.ics")
    data = app((calendar.CAL, "Subject", "Just this once"), (calendar.CAL, "StartTime", "20260304T090000Z"),
               (calendar.CAL, "EndTime", "20260304T093000Z"), version=V161)
    text = calendar.change_instance(stored, instance, data, V161, None)
    got = flat(wire(calendar.to_eas(text, V161, me=ME)))
    exc = {v: k.rsplit("/", 1)[0] for k, v in got.items() if k.endswith("InstanceId")}
    path = exc["20260304T083000Z"]
    assert got[f"{path}/Calendar:Subject"] == "Just this once"
    assert got[f"{path}/Calendar:StartTime"] == "20260304T090000Z"
    again = calendar.change_instance(text, instance, app((calendar.CAL, "Subject", "Twice"), version=V161), V161, None)
    overrides = [e for e in event(again)[1] if "RECURRENCE-ID" in e]
    assert len(overrides) == 2 and {str(e["SUMMARY"]) for e in overrides} == {"Twice", "Team sync (moved)"}
    gone = calendar.delete_instance(again, instance)
    assert len([e for e in event(gone)[1] if "RECURRENCE-ID" in e]) == 1
    got = flat(calendar.to_eas(gone, V161, me=ME))
    deleted = [k for k, v in got.items() if v == "20260304T083000Z"][0].rsplit("/", 1)[0]
    assert got[f"{deleted}/Calendar:Deleted"] == "1"
    assert calendar.delete_instance(gone, instance).count("EXDATE") == gone.count("EXDATE")


def test_instance_of_all_day_series_and_of_a_single_event():
    stored = sample("thunderbird-allday.ics")
    text = calendar.delete_instance(stored, "20270525T000000Z")
    assert "EXDATE;VALUE=DATE:20270525" in text
    with pytest.raises(ConversionError):
        calendar.delete_instance(sample("apple-sydney.ics"), "20260115T060000Z")
    with pytest.raises(ConversionError):
        calendar.change_instance(stored, "yesterday", app(), V161, None)


def test_16_new_pattern_drops_the_exceptions():
    stored = sample("google-recurring-meeting.ics")
    data = app((calendar.CAL, "Recurrence", [(calendar.CAL, "Type", "0"), (calendar.CAL, "Interval", "1")]),
               version=V161)
    _, events, _ = event(calendar.from_eas(data, stored, V161, "u", set()))
    assert len(events) == 1 and "EXDATE" not in events[0] and events[0]["RRULE"].to_ical() == b"FREQ=DAILY"


# -- refused -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,why", [
    ([(calendar.CAL, "StartTime", "20261340T000000Z")], "not a date"),
    ([(calendar.CAL, "StartTime", "tomorrow")], "not an ActiveSync date"),
    ([(calendar.CAL, "StartTime", "20260410T100000Z"), (calendar.CAL, "EndTime", "20260410T090000Z")], "before"),
    ([(calendar.CAL, "Timezone", base64.b64encode(b"junk" * 10).decode())], "Timezone"),
    ([(calendar.CAL, "StartTime", "20260410T100000Z"), (calendar.CAL, "Recurrence", [
        (calendar.CAL, "Type", "0"), (calendar.CAL, "Until", "20260101T000000Z")])], "Until"),
    ([(calendar.CAL, "StartTime", "20260410T100000Z"), (calendar.CAL, "Recurrence", [(calendar.CAL, "Type", "4")])],
     "Type"),
    ([(calendar.CAL, "StartTime", "20260410T100000Z"), (calendar.CAL, "Recurrence", [
        (calendar.CAL, "Type", "1"), (calendar.CAL, "DayOfWeek", "300")])], "range"),
    ([(calendar.CAL, "BusyStatus", "9")], "not allowed"),
    ([(calendar.CAL, "Attendees", [(calendar.CAL, "Attendee", [(calendar.CAL, "Name", "no mail")])])], "e-mail"),
])
def test_bad_phone_input(fields, why):
    with pytest.raises(ConversionError, match=why):
        calendar.from_eas(app(*fields), sample("apple-sydney.ics"), V141, "u", None)


def test_new_event_needs_a_start():
    with pytest.raises(ConversionError, match="StartTime"):
        calendar.from_eas(app((calendar.CAL, "Subject", "when?")), None, V141, "u", None)


def test_utc_writes_utc_and_floating_is_read_as_utc():
    floating = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:f\r\nDTSTAMP:20260101T000000Z\r\n"
                "DTSTART:20260601T100000\r\nDURATION:PT1H\r\nSUMMARY:floating\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    got = flat(calendar.to_eas(floating, V141))
    assert got["Calendar:StartTime"] == "20260601T100000Z" and got["Calendar:EndTime"] == "20260601T110000Z"
    assert tzblob.decode(got["Calendar:Timezone"]).utcoffset(datetime(2026, 1, 1)) == timedelta(0)
    moved = calendar.from_eas(app((calendar.CAL, "EndTime", "20260601T120000Z")), floating, V141, "u", set())
    master = event(moved)[0]
    assert "DURATION" not in master and master.decoded("DTEND") == datetime(2026, 6, 1, 12, tzinfo=timezone.utc)


# -- recurrence rules ------------------------------------------------------------------------------------------

BERLIN_START = datetime(2026, 3, 10, 9, tzinfo=ZoneInfo("Europe/Berlin"))  # a Tuesday


@pytest.mark.parametrize("rule,fields", [
    ("FREQ=DAILY;COUNT=10", {"Type": "0", "Occurrences": "10", "Interval": "1"}),
    ("FREQ=DAILY;BYDAY=MO,TU,WE,TH,FR", {"Type": "1", "DayOfWeek": "62", "FirstDayOfWeek": "1"}),
    ("FREQ=WEEKLY;INTERVAL=2;WKST=SU", {"Type": "1", "Interval": "2", "DayOfWeek": "4", "FirstDayOfWeek": "0"}),
    ("FREQ=MONTHLY", {"Type": "2", "DayOfMonth": "10", "CalendarType": "0"}),
    ("FREQ=MONTHLY;BYDAY=2TU", {"Type": "3", "WeekOfMonth": "2", "DayOfWeek": "4"}),
    ("FREQ=MONTHLY;BYDAY=-1FR", {"Type": "3", "WeekOfMonth": "5", "DayOfWeek": "32"}),
    ("FREQ=MONTHLY;BYMONTHDAY=-1", {"Type": "3", "WeekOfMonth": "5", "DayOfWeek": "127"}),
    ("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=1", {"Type": "3", "WeekOfMonth": "1", "DayOfWeek": "62"}),
    ("FREQ=YEARLY", {"Type": "5", "MonthOfYear": "3", "DayOfMonth": "10"}),
    ("FREQ=YEARLY;BYMONTH=11;BYDAY=4TH", {"Type": "6", "MonthOfYear": "11", "WeekOfMonth": "4", "DayOfWeek": "16"}),
    ("FREQ=WEEKLY;UNTIL=20260601", {"Type": "1", "Until": "20260601T070000Z"}),
])
def test_rules_activesync_can_say(rule, fields):
    from gateways.activesync import recurrence
    el = wire(recurrence.to_eas(icalendar.vRecur.from_ical(rule), BERLIN_START, "Calendar", V141))
    got = {child.tag.split("}")[1]: child.text for child in el}
    assert {k: got.get(k) for k in fields} == fields
    back = recurrence.from_eas(el, BERLIN_START, BERLIN_START.tzinfo)
    again = recurrence.to_eas(back, BERLIN_START, "Calendar", V141)
    assert {child.tag: child.text for child in again} == {child.tag: child.text for child in el}


@pytest.mark.parametrize("rule", [
    "FREQ=HOURLY", "FREQ=DAILY;BYHOUR=9,17", "FREQ=MONTHLY;BYMONTHDAY=1,15", "FREQ=MONTHLY;BYDAY=1MO,3MO",
    "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1,-1", "FREQ=YEARLY;BYWEEKNO=20", "FREQ=YEARLY;BYMONTH=1,7",
    "FREQ=MONTHLY;BYDAY=2MO;BYMONTHDAY=8", "FREQ=WEEKLY;BYDAY=1MO", "FREQ=DAILY;INTERVAL=2;BYDAY=MO",
    "FREQ=MONTHLY;BYDAY=3MO;INTERVAL=1000",
])
def test_rules_activesync_cannot_say(rule):
    from gateways.activesync import recurrence
    assert recurrence.to_eas(icalendar.vRecur.from_ical(rule), BERLIN_START, "Calendar", V141) is None


def test_tasks_page_rule_and_first_day_of_week_only_from_14_1():
    from gateways.activesync import recurrence
    rule = icalendar.vRecur.from_ical("FREQ=WEEKLY;UNTIL=20260601T070000Z")
    el = wire(recurrence.to_eas(rule, BERLIN_START, "Tasks", V141))
    assert [c.tag for c in el] == [q("Tasks", n) for n in ("Type", "Start", "Until", "Interval", "DayOfWeek",
                                                           "FirstDayOfWeek")]
    assert el.find(q("Tasks", "Until")).text == "2026-06-01T07:00:00.000Z"
    assert el.find(q("Tasks", "Start")).text == "2026-03-10T08:00:00.000Z"
    old = recurrence.to_eas(rule, BERLIN_START, "Calendar", V14)
    assert old.find(q("Calendar", "FirstDayOfWeek")) is None
    assert recurrence.from_eas(el, BERLIN_START).to_ical() == b"FREQ=WEEKLY;UNTIL=20260601T070000Z;BYDAY=TU"


def test_all_day_until_is_a_date():
    from gateways.activesync import recurrence
    el = app((calendar.CAL, "Recurrence", [(calendar.CAL, "Type", "0"), (calendar.CAL, "Until", "20260331T220000Z")]))
    rule = recurrence.from_eas(el.find(q("Calendar", "Recurrence")), date(2026, 3, 1), ZoneInfo("Europe/Berlin"))
    assert rule["UNTIL"] == date(2026, 4, 1) or rule["UNTIL"] == [date(2026, 4, 1)]


def test_all_day_in_the_callers_zone():
    got = flat(calendar.to_eas(sample("thunderbird-allday.ics"), V141, zone=ZoneInfo("America/New_York")))
    assert got["Calendar:StartTime"] == "20260525T040000Z" and got["Calendar:EndTime"] == "20260527T040000Z"
    assert tzblob.tzid_for(tzblob.decode(got["Calendar:Timezone"])) == "America/New_York"
    merged = calendar.from_eas(app(*[(calendar.CAL, k.split(":")[1], v) for k, v in got.items() if "[" not in k]),
                               sample("thunderbird-allday.ics"), V141, "u", None)
    master = event(merged)[0]
    assert master.decoded("DTSTART") == date(2026, 5, 25) and master.decoded("DTEND") == date(2026, 5, 27)


def test_all_day_until_covers_the_last_day_in_the_callers_zone():
    text = sample("thunderbird-allday.ics").replace("RRULE:FREQ=YEARLY", "RRULE:FREQ=YEARLY;UNTIL=20280525")
    got = flat(calendar.to_eas(text, V141, zone=ZoneInfo("America/New_York")))
    assert got["Calendar:Recurrence[1]/Calendar:Until"] == "20280525T040000Z"  # the last one's start
    merged = calendar.from_eas(wire(calendar.to_eas(text, V141, zone=ZoneInfo("America/New_York"))), text, V141,
                               "u", None)
    assert "UNTIL=20280525;" in event(merged)[0]["RRULE"].to_ical().decode() + ";"


def test_new_meeting_gets_the_account_as_organizer():
    data = _phone_event(V161)
    master = event(calendar.from_eas(data, None, V161, "u", None, me="ann@example.test"))[0]
    assert str(master["ORGANIZER"]) == "mailto:ann@example.test"
    assert "ORGANIZER" not in event(calendar.from_eas(data, None, V161, "u", None))[0]
    got = flat(calendar.to_eas(calendar.from_eas(data, None, V161, "u", None, me="ann@example.test"), V161, me=ME))
    assert got["Calendar:MeetingStatus"] == "1" and got["Calendar:OrganizerEmail"] == "ann@example.test"


def test_alarm_activesync_cannot_say_is_never_touched():
    stored = sample("apple-sydney.ics").replace("TRIGGER:-PT30M", "TRIGGER;RELATED=END:-PT5M")
    sent = wire(calendar.to_eas(stored, V141))
    assert sent.find(q("Calendar", "Reminder")) is not None  # the 2-hour one
    assert flat(sent)["Calendar:Reminder"] == "120"
    sent.remove(sent.find(q("Calendar", "Reminder")))
    master = event(calendar.from_eas(sent, stored, V141, "u", None))[0]
    assert [str(a["TRIGGER"].to_ical(), "ascii") for a in master.walk("VALARM")] == ["-PT5M"]
    master = event(calendar.from_eas(app((calendar.CAL, "Reminder", "7")), stored, V141, "u", set()))[0]
    assert sorted(a.decoded("TRIGGER") for a in master.walk("VALARM")) == [timedelta(minutes=-7),
                                                                         timedelta(minutes=-5)]


def test_old_series_gets_todays_zone_rules():
    old = sample("outlook-new-york.ics").replace("20260305T", "20050303T")
    single = old.replace("RRULE:FREQ=MONTHLY;COUNT=12;BYDAY=1TH\r\n", "").replace(
        "RRULE:FREQ=MONTHLY;COUNT=12;BYDAY=1TH\n", "")
    series_blob = tzblob.unpack(base64.b64decode(flat(calendar.to_eas(old, V141))["Calendar:Timezone"]))
    single_blob = tzblob.unpack(base64.b64decode(flat(calendar.to_eas(single, V141))["Calendar:Timezone"]))
    assert series_blob.to_dst.month == 3 and series_blob.to_std.month == 11  # since 2007
    assert single_blob.to_dst.month == 4 and single_blob.to_std.month == 10  # 2005's law


def test_16_location_coordinates_are_geo():
    stored = sample("apple-sydney.ics").replace("URL;VALUE=URI", "GEO:-33.894;151.274\r\nURL;VALUE=URI")
    got = flat(wire(calendar.to_eas(stored, V161)))
    assert got["AirSyncBase:Location[1]/AirSyncBase:Latitude"] == "-33.894"
    assert got["AirSyncBase:Location[1]/AirSyncBase:Longitude"] == "151.274"
    assert "AirSyncBase:Location[1]/AirSyncBase:Latitude" not in flat(calendar.to_eas(sample("apple-sydney.ics"), V161))
    same = calendar.from_eas(wire(calendar.to_eas(stored, V161)), stored, V161, "u", None)
    assert event(same)[0].to_ical() == event(stored)[0].to_ical()
    moved = app(("AirSyncBase", "Location", [("AirSyncBase", "DisplayName", "Opera House"),
                                             ("AirSyncBase", "Latitude", "-33.8568"),
                                             ("AirSyncBase", "Longitude", "151.2153")]), version=V161)
    master = event(calendar.from_eas(moved, stored, V161, "u", set()))[0]
    assert str(master["LOCATION"]) == "Opera House"
    assert (master["GEO"].latitude, master["GEO"].longitude) == (-33.8568, 151.2153)
    with pytest.raises(ConversionError, match="coordinates"):
        calendar.from_eas(app(("AirSyncBase", "Location", [("AirSyncBase", "Latitude", "north"),
                                                            ("AirSyncBase", "Longitude", "1")])), stored, V161, "u", None)
