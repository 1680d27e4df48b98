"""Invitations as ActiveSync shows them ([MS-ASEMAIL] 2.2.2.48 MeetingRequest): the message class,
the meeting's fields per protocol version, the Global Object ID, recurrences; ordinary messages
and broken calendars stay ordinary messages."""

from __future__ import annotations

import base64
import email
import struct
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar

from formats import mime
from gateways.activesync import meeting, meetingresponse
from gateways.activesync.mailitem import PLAIN, BodyPreference, application_data
from gateways.activesync.wbxml import decode, encode
from tests.gateways.activesync.client import find

DATA = Path(__file__).resolve().parents[2] / "data" / "meetings"


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def item(raw: bytes, version: float = 16.1):
    a = mime.analyze(raw)
    data = application_data(a["envelope"], a["structure"], raw, frozenset(), 1796520000, BodyPreference(PLAIN),
                            lambda section: f"7:42:{section}", version)
    return decode(encode(data))  # as the phone reads it: every element has a token


def test_request_in_alternative_part_with_attachment():
    data = item(load("thunderbird-request.eml"), 14.1)
    assert find(data, "Email:MessageClass") == meeting.REQUEST_CLASS
    assert find(data, "Email:ContentClass") == meeting.CONTENT_CLASS
    req = "Email:MeetingRequest/Email:"
    assert find(data, req + "StartTime") == "2026-12-14T09:00:00.000Z"  # 10:00 Berlin
    assert find(data, req + "EndTime") == "2026-12-14T10:00:00.000Z"
    assert find(data, req + "DtStamp") == "2026-12-01T09:00:00.000Z"
    assert find(data, req + "AllDayEvent") == "0" and find(data, req + "InstanceType") == "0"
    assert find(data, req + "Location") == "Room 4" and find(data, req + "Organizer") == "olga@example.net"
    assert find(data, req + "Reminder") == "15" and find(data, req + "ResponseRequested") == "1"
    assert find(data, req + "BusyStatus") == "2" and find(data, req + "Sensitivity") == "0"
    assert find(data, "Email:MeetingRequest/Email2:MeetingMessageType") == "1"
    assert find(data, req + "Recurrences") is None and find(data, req + "RecurrenceId") is None
    goid = base64.b64decode(find(data, req + "GlobalObjId"))
    uid = b"c3f1a9e2-4b7d-4e61-9a55-planning"
    assert goid[:16] == meeting.GOID_PREFIX and goid[16:20] == bytes(4)
    assert goid[36:40] == struct.pack("<I", 12 + len(uid) + 1) and goid[40:] == b"vCal-Uid\x01\x00\x00\x00" + uid + b"\0"
    tz = meeting.tzblob.decode(find(data, req + "TimeZone"))
    assert tz.utcoffset(datetime(2026, 12, 14, 10)).total_seconds() == 3600
    assert tz.utcoffset(datetime(2027, 7, 1, 10)).total_seconds() == 7200  # with its summer time
    # the MeetingRequest follows the MessageClass ([MS-ASEMAIL] order, as Exchange sends it)
    names = [el.tag.rpartition("}")[2] for el in data]
    assert names[names.index("MessageClass") + 1] == "MeetingRequest"


def test_versions_shape_location_and_message_type():
    raw = load("thunderbird-request.eml")
    v16 = item(raw, 16.1)
    assert find(v16, "Email:MeetingRequest/Email:Location") is None
    assert find(v16, "Email:MeetingRequest/AirSyncBase:Location/AirSyncBase:DisplayName") == "Room 4"
    v14 = item(raw, 14.0)
    assert find(v14, "Email:MeetingRequest/Email2:MeetingMessageType") is None
    assert find(v14, "Email:MeetingRequest/Email:DisallowNewTimeProposal") == "0"


def test_recurring_request():
    data = item(load("thunderbird-recurring-request.eml"))
    rec = "Email:MeetingRequest/Email:Recurrences/Email:Recurrence/Email:"
    assert find(data, "Email:MeetingRequest/Email:InstanceType") == "1"
    assert find(data, rec + "Type") == "1" and find(data, rec + "Interval") == "1"
    assert find(data, rec + "Occurrences") == "10" and find(data, rec + "DayOfWeek") == str(2 | 8)


def test_cancel_reply_and_whole_body_outlook():
    cancel = item(load("thunderbird-cancel.eml"))
    assert find(cancel, "Email:MessageClass") == meeting.CANCELED_CLASS
    assert find(cancel, "Email:MeetingRequest/Email2:MeetingMessageType") == "0"
    reply = item(load("reply-declined.eml"))
    assert find(reply, "Email:MessageClass") == "IPM.Schedule.Meeting.Resp.Neg"
    assert find(reply, "Email:MeetingRequest/Email:StartTime") is None
    outlook = item(load("outlook-body-request.eml"))
    assert find(outlook, "Email:MessageClass") == meeting.REQUEST_CLASS  # METHOD from the MIME parameter
    assert find(outlook, "Email:MeetingRequest/Email:BusyStatus") == "1"
    assert find(outlook, "Email:MeetingRequest/Email:Sensitivity") == "2"
    goid = base64.b64decode(find(outlook, "Email:MeetingRequest/Email:GlobalObjId"))
    assert goid.hex().upper() == "040000008200E00074C5B7101A82E00800000000B0E1D2C3A4B5D901000000000000000010000000" \
                                 "A1B2C3D4E5F60718293A4B5C6D7E8F90"


def test_ordinary_and_broken_messages_stay_notes():
    plain = b"From: a@example.org\r\nTo: b@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
    assert find(item(plain), "Email:MessageClass") == "IPM.Note"
    broken = (b"From: a@example.org\r\nTo: b@example.test\r\nSubject: bad\r\nMIME-Version: 1.0\r\n"
              b"Content-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nnot ical\r\n")
    data = item(broken)
    assert find(data, "Email:MessageClass") == "IPM.Note" and find(data, "Email:MeetingRequest/Email:StartTime") is None
    publish = load("thunderbird-request.eml").replace(b"METHOD:REQUEST", b"METHOD:PUBLISH").replace(
        b"method=REQUEST", b"method=PUBLISH")
    assert find(item(publish), "Email:MessageClass") == "IPM.Note"


def test_global_obj_id_of_an_exception_carries_its_date():
    goid = meeting.global_obj_id("abc", datetime(2027, 3, 25).date())
    assert goid[16:20] == bytes([0x07, 0xEB, 3, 25])
    assert meeting.global_obj_id("abc")[20:] == goid[20:]


def _rec(rule: str, version: float = 16.1):
    event = icalendar.Event()
    event.add("DTSTART", datetime(2026, 12, 8, 10, tzinfo=ZoneInfo("Europe/Berlin")))  # a Tuesday
    event.add("RRULE", icalendar.vRecur.from_ical(rule))
    el = meeting.recurrences(event, version)
    if el is None:
        return None
    [rec] = decode(encode(el))
    return [(child.tag, child.text) for child in rec]


def test_recurrences_on_the_email_pages():
    assert _rec("FREQ=MONTHLY;BYDAY=-1FR;UNTIL=20270601T000000Z", 14.0) == [
        ("{Email}Type", "3"), ("{Email}Interval", "1"), ("{Email}Until", "20270601T000000Z"),
        ("{Email}WeekOfMonth", "5"), ("{Email}DayOfWeek", "32"), ("{Email2}CalendarType", "0")]
    assert _rec("FREQ=YEARLY;INTERVAL=2") == [("{Email}Type", "5"), ("{Email}Interval", "2"),
                                              ("{Email}DayOfMonth", "8"), ("{Email}MonthOfYear", "12"),
                                              ("{Email2}CalendarType", "0")]
    assert _rec("FREQ=WEEKLY;COUNT=3", 14.1) == [("{Email}Type", "1"), ("{Email}Interval", "1"),
                                                 ("{Email}Occurrences", "3"), ("{Email}DayOfWeek", "4"),
                                                 ("{Email2}FirstDayOfWeek", "1")]
    assert _rec("FREQ=HOURLY") is None  # not a rule EAS can say: no Recurrences


# -- MeetingResponse's calendar work (meetingresponse.py, pure) ------------------------------------

OWN = frozenset({"attendee@example.test"})


def invitation_of(name: str, change=lambda raw: raw):
    raw = change(load(name))
    return meeting.invitation(raw, mime.analyze(raw)["structure"])


def test_respond_stores_the_invitation_without_method_and_updates_it():
    text, answered = meetingresponse.respond(None, invitation_of("thunderbird-request.eml"), "ACCEPTED", OWN,
                                             "attendee@example.test", None)
    cal = icalendar.Calendar.from_ical(text)
    [event] = cal.walk("VEVENT")
    assert "METHOD" not in cal and cal.walk("VTIMEZONE") and answered["UID"] == event["UID"]
    [mine] = [a for a in event["ATTENDEE"] if str(a) == "mailto:attendee@example.test"]
    assert mine.params["PARTSTAT"] == "ACCEPTED" and "RSVP" not in mine.params
    # an update (SEQUENCE 2, a new room) replaces the stored event; the answer is set on it
    update = invitation_of("thunderbird-request.eml", lambda raw: raw.replace(b"SEQUENCE:0", b"SEQUENCE:2")
                           .replace(b"Room 4", b"Room 9"))
    text, _ = meetingresponse.respond(text, update, "TENTATIVE", OWN, "attendee@example.test", None)
    [event] = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert str(event["LOCATION"]) == "Room 9" and "PARTSTAT=TENTATIVE" in event.to_ical().decode().replace("\r\n ", "")


def test_respond_adds_the_user_when_not_invited_by_name():
    text, _ = meetingresponse.respond(None, invitation_of("thunderbird-request.eml"), "DECLINED",
                                      frozenset({"team@example.test"}), "team@example.test", None)
    assert "PARTSTAT=DECLINED:mailto:team@example.test" in text.replace("\r\n ", "")


def test_cancel_of_one_occurrence_is_an_exdate():
    stored, _ = meetingresponse.respond(None, invitation_of("thunderbird-recurring-request.eml"), "ACCEPTED", OWN,
                                        "attendee@example.test", None)
    cancel = invitation_of("thunderbird-recurring-request.eml", lambda raw: raw.replace(b"METHOD:REQUEST",
                           b"METHOD:CANCEL").replace(b"RRULE:FREQ=WEEKLY;BYDAY=MO,WE;COUNT=10\r\n",
                                                     b"RECURRENCE-ID;TZID=Europe/Berlin:20261216T100000\r\n"))
    text, answered = meetingresponse.respond(stored, cancel, "ACCEPTED", OWN, "attendee@example.test", None)
    [event] = icalendar.Calendar.from_ical(text).walk("VEVENT")
    assert answered is None and "EXDATE;TZID=Europe/Berlin:20261216T100000" in text
    whole = invitation_of("thunderbird-cancel.eml")
    assert meetingresponse.respond(stored, whole, "ACCEPTED", OWN, "attendee@example.test", None) == (None, None)


def test_reply_names_only_the_user():
    _, event = meetingresponse.respond(None, invitation_of("thunderbird-request.eml"), "ACCEPTED", OWN,
                                       "attendee@example.test", None)
    organizer, raw = meetingresponse.reply_message(event, "ACCEPTED", OWN, "attendee@example.test", "Ann", "",
                                                   datetime(2026, 12, 5, tzinfo=ZoneInfo("UTC")))
    assert organizer == "olga@example.net"
    [part] = [p for p in email.message_from_bytes(raw).walk() if p.get_content_type() == "text/calendar"]
    assert part.get_param("method") == "REPLY"
    reply = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    [event] = reply.walk("VEVENT")
    assert reply["METHOD"] == "REPLY" and str(event["ATTENDEE"]) == "mailto:attendee@example.test"
    assert event["SEQUENCE"] == 0 and event.decoded("DTSTART") == datetime(2026, 12, 14, 9, tzinfo=ZoneInfo("UTC"))
