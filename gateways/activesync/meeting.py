"""Meeting invitations in mail ([MS-ASEMAIL] 2.2.2.48 MeetingRequest): a message that carries an
iTIP object (RFC 5546) is shown to a phone as a meeting request, a cancellation or a reply, with
the meeting's times, place, recurrence and identity, so the phone offers Accept / Tentative /
Decline (answered by the MeetingResponse command, meetingresponse.py).

Pure and synchronous, as mailitem.py (it runs with it in the CPU pool): a message's structure
and bytes in, ElementTree elements out.

Invariants
- The iTIP object is the first leaf that is ``text/calendar`` or ``application/ics`` (the whole
  body, a part of a multipart/alternative, or an attachment) and is at most ``MAX_ICS`` octets;
  its ``METHOD`` (the calendar's, else the part's ``method`` parameter) decides the class:
  REQUEST ``IPM.Schedule.Meeting.Request``, CANCEL ``IPM.Schedule.Meeting.Canceled``, REPLY
  ``IPM.Schedule.Meeting.Resp.Pos/Neg/Tent`` (by the replying ATTENDEE's PARTSTAT).  Anything
  else, or text that does not parse, leaves the message an ordinary one (``None``).
- Only a request and a cancellation carry ``Email:MeetingRequest``; times are UTC
  ([MS-ASDTYPE] 2.3), the ``TimeZone`` blob is the one of DTSTART's zone (UTC for dates and
  floating times), an all-day event starts and ends at midnight UTC.
- ``GlobalObjId`` is the base64 of the [MS-OXOCAL] 2.2.1.27 Global Object ID: an Outlook UID
  (hex of such an id) as it is, any other UID in the "vCal-Uid" form ([MS-OXCICAL]
  2.1.3.1.1.20.26); an exception's id carries its original date.  The same UID always gives
  the same id, so a phone matches an update to the meeting it holds.
- Element sets follow the protocol version: ``Email:Location`` up to 14.1,
  ``AirSyncBase:Location`` from 16.0; ``DisallowNewTimeProposal`` from 14.0;
  ``Email2:MeetingMessageType`` from 14.1.
- Never raises for a stored message: a value that cannot be read is left out, and an
  invitation that cannot be shown at all leaves the message an ordinary one (logged).
"""

from __future__ import annotations

import base64
import binascii
import logging
import struct
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import date, datetime, time as dtime, timedelta, timezone
from typing import Optional

import icalendar

from formats import mime

from . import recurrence, tzblob
from .itip import calendar_part
from .wbxml import qname as q

log = logging.getLogger("haven.activesync")

#: an iTIP part larger than this is not read (a phone gets an ordinary message)
MAX_ICS = 1 << 20
REQUEST_CLASS = "IPM.Schedule.Meeting.Request"
CANCELED_CLASS = "IPM.Schedule.Meeting.Canceled"
REPLY_CLASS = {"ACCEPTED": "IPM.Schedule.Meeting.Resp.Pos", "DECLINED": "IPM.Schedule.Meeting.Resp.Neg",
               "TENTATIVE": "IPM.Schedule.Meeting.Resp.Tent"}
CONTENT_CLASS = "urn:content-classes:calendarmessage"
#: [MS-OXOCAL] 2.2.1.27: the first 16 octets of every Global Object ID
GOID_PREFIX = bytes.fromhex("040000008200E00074C5B7101A82E008")
SENSITIVITY = {"PUBLIC": "0", "PRIVATE": "2", "CONFIDENTIAL": "3"}
BUSY_STATUS = {"FREE": "0", "TENTATIVE": "1", "BUSY": "2", "OOF": "3", "WORKINGELSEWHERE": "4"}
#: [MS-ASEMAIL] 2.2.2.47 MeetingMessageType
INITIAL_REQUEST, FULL_UPDATE, UNSPECIFIED = 1, 2, 0


@dataclass(frozen=True)
class Invitation:
    """An iTIP object found in a message."""
    method: str  # REQUEST, CANCEL or REPLY
    calendar: object  # icalendar.Calendar
    event: object  # its first VEVENT (the master when there is one)

    @property
    def uid(self) -> str:
        return str(self.event.get("UID", ""))


# -- finding it ----------------------------------------------------------------------------------

def _param(part: dict, name: str) -> Optional[str]:
    for key, value in part.get("params") or ():
        if key.lower() == name:
            return value
    return None


def invitation(raw: bytes, structure: dict) -> Optional[Invitation]:
    """The message's iTIP request, cancellation or reply, or None."""
    part = calendar_part(structure)
    if part is None or int(part.get("end", 0)) - int(part.get("body_start", 0)) > MAX_ICS:
        return None
    return parse(mime.part_text(raw, part), _param(part, "method"))


def parse(text: str, method: Optional[str] = None) -> Optional[Invitation]:
    """An :class:`Invitation` from iCalendar text (``method``: the MIME parameter, used when the
    calendar names none), or None."""
    try:
        cal = icalendar.Calendar.from_ical(text)
    except Exception as e:  # icalendar raises ValueError and others on broken text
        log.info("activesync: an invitation's calendar does not parse: %s", str(e)[:200])
        return None
    kind = str(cal.get("METHOD") or method or "").strip().upper()
    events = [c for c in cal.walk("VEVENT")]
    if kind not in ("REQUEST", "CANCEL", "REPLY") or not events:
        return None
    master = next((e for e in events if "RECURRENCE-ID" not in e), events[0])
    return Invitation(kind, cal, master)


def message_class(inv: Invitation) -> str:
    """Email:MessageClass of the message carrying ``inv`` (a reply: by the first replying
    ATTENDEE's PARTSTAT; RFC 5546 §3.2.3 has a reply carry the replying attendee only)."""
    if inv.method == "REQUEST":
        return REQUEST_CLASS
    if inv.method == "CANCEL":
        return CANCELED_CLASS
    for attendee in attendees(inv.event):
        stat = str(attendee.params.get("PARTSTAT", "")).upper()
        if stat in REPLY_CLASS:
            return REPLY_CLASS[stat]
    return REPLY_CLASS["TENTATIVE"]


# -- values ------------------------------------------------------------------------------------

def attendees(event) -> list:
    found = event.get("ATTENDEE")
    if found is None:
        return []
    return list(found) if isinstance(found, list) else [found]


def address_of(prop) -> str:
    """``mailto:Ann@x`` -> ``ann@x``."""
    value = str(prop or "").strip()
    if value.lower().startswith("mailto:"):
        value = value[7:]
    return value.strip().lower()


def utc_text(value: datetime) -> str:
    """[MS-ASDTYPE] 2.3 dateTime: ``2026-12-06T10:00:00.000Z``."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def as_utc(value) -> datetime:
    """A DATE or DATE-TIME value as an aware UTC datetime (dates and floating times as UTC)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    return datetime.combine(value, dtime(0), timezone.utc)


def _decoded(component, name: str):
    try:
        return component.decoded(name) if name in component else None
    except Exception:
        return None


def times(event) -> tuple:
    """``(start, end, all_day)`` of a VEVENT: aware datetimes; the end from DTEND, else DURATION,
    else the start (a day later for an all-day event)."""
    start = _decoded(event, "DTSTART")
    if start is None:
        raise ValueError("no DTSTART")
    all_day = not isinstance(start, datetime)
    end = _decoded(event, "DTEND")
    if end is None:
        duration = _decoded(event, "DURATION")
        end = start + duration if isinstance(duration, timedelta) else start + timedelta(days=1 if all_day else 0)
    return as_utc(start), as_utc(end), all_day


def zone_of(event):
    """DTSTART's zone (UTC for a date, a floating or a UTC time)."""
    start = _decoded(event, "DTSTART")
    if isinstance(start, datetime) and start.tzinfo is not None:
        return start.tzinfo
    return timezone.utc


def reminder_minutes(event) -> Optional[int]:
    """Minutes before the start of the first VALARM relative to it, or None."""
    for alarm in event.walk("VALARM"):
        trigger = _decoded(alarm, "TRIGGER")
        if isinstance(trigger, timedelta) and trigger <= timedelta(0):
            return int(-trigger.total_seconds() // 60)
    return None


def global_obj_id(uid: str, instance: Optional[date] = None) -> bytes:
    """[MS-OXOCAL] 2.2.1.27 Global Object ID of ``uid`` (with ``instance``: the original date of
    an exception, big-endian year, month, day)."""
    try:
        raw = bytes.fromhex(uid) if len(uid) >= 2 * len(GOID_PREFIX) + 24 else b""
    except ValueError:
        raw = b""
    if raw.startswith(GOID_PREFIX):
        head, tail = raw[:16], raw[20:]
    else:  # [MS-OXCICAL] 2.1.3.1.1.20.26: any other UID in the vCal-Uid form
        data = b"vCal-Uid" + struct.pack("<I", 1) + uid.encode("utf-8") + b"\x00"
        head, tail = GOID_PREFIX, bytes(8) + bytes(8) + struct.pack("<I", len(data)) + data
    stamp = struct.pack(">HBB", instance.year, instance.month, instance.day) if instance else bytes(4)
    return head + stamp + tail


def _text(parent, page: str, name: str, value) -> None:
    el = ET.SubElement(parent, q(page, name))
    el.text = value if isinstance(value, (str, bytes)) else str(value)


# -- recurrence ----------------------------------------------------------------------------------

#: [MS-ASEMAIL] 2.2.2.60: the Email page's Recurrence, in its order (the last three on Email2)
EMAIL_ORDER = ("Type", "Interval", "Until", "Occurrences", "WeekOfMonth", "DayOfMonth", "DayOfWeek", "MonthOfYear",
               "CalendarType", "IsLeapMonth", "FirstDayOfWeek")
EMAIL2 = frozenset({"CalendarType", "IsLeapMonth", "FirstDayOfWeek"})


def recurrences(event, version: float = 16.1):
    """The Email:Recurrences element of a recurring VEVENT, or None (no RRULE, or one EAS cannot
    say): recurrence.py's Calendar Recurrence with the Email pages' names and order."""
    rule = event.get("RRULE")
    start = _decoded(event, "DTSTART")
    if rule is None or start is None:
        return None
    if isinstance(rule, list):
        rule = rule[0]
    calendar_rec = recurrence.to_eas(rule, start, "Calendar", (int(version), round(version % 1 * 10)))
    if calendar_rec is None:
        return None
    fields = {child.tag.rpartition("}")[2]: child.text for child in calendar_rec}
    el = ET.Element(q("Email", "Recurrences"))
    rec = ET.SubElement(el, q("Email", "Recurrence"))
    for name in EMAIL_ORDER:
        if name in fields:
            _text(rec, "Email2" if name in EMAIL2 else "Email", name, fields[name])
    return el


# -- the element -------------------------------------------------------------------------------

def meeting_request(inv: Invitation, version: float = 16.1):
    """The ``Email:MeetingRequest`` element of a request or cancellation (None for a reply, or
    an event without a start)."""
    if inv.method not in ("REQUEST", "CANCEL"):
        return None
    event = inv.event
    try:
        start, end, all_day = times(event)
    except ValueError:
        return None
    el = ET.Element(q("Email", "MeetingRequest"))
    _text(el, "Email", "AllDayEvent", "1" if all_day else "0")
    _text(el, "Email", "StartTime", utc_text(start))
    stamp = _decoded(event, "DTSTAMP")
    _text(el, "Email", "DtStamp", utc_text(as_utc(stamp) if stamp is not None else datetime.now(timezone.utc)))
    _text(el, "Email", "EndTime", utc_text(end))
    recurrence_id = _decoded(event, "RECURRENCE-ID")
    _text(el, "Email", "InstanceType", "3" if recurrence_id is not None else "1" if "RRULE" in event else "0")
    location = str(event.get("LOCATION", "") or "")
    if location:
        if version >= 16.0:  # [MS-ASEMAIL] 2.2.2.46: AirSyncBase:Location replaces it in 16.x
            where = ET.SubElement(el, q("AirSyncBase", "Location"))
            _text(where, "AirSyncBase", "DisplayName", location)
        else:
            _text(el, "Email", "Location", location)
    organizer = address_of(event.get("ORGANIZER"))
    if organizer:
        _text(el, "Email", "Organizer", organizer)
    if recurrence_id is not None:
        _text(el, "Email", "RecurrenceId", utc_text(as_utc(recurrence_id)))
    minutes = reminder_minutes(event)
    if minutes is not None:
        _text(el, "Email", "Reminder", minutes)
    rsvp = any(str(a.params.get("RSVP", "")).upper() == "TRUE" for a in attendees(event))
    _text(el, "Email", "ResponseRequested", "1" if rsvp and inv.method == "REQUEST" else "0")
    rec = recurrences(event, version) if recurrence_id is None else None
    if rec is not None:
        el.append(rec)
    _text(el, "Email", "Sensitivity", SENSITIVITY.get(str(event.get("CLASS", "PUBLIC")).upper(), "0"))
    busy = str(event.get("X-MICROSOFT-CDO-BUSYSTATUS", "") or "").upper()
    transparent = str(event.get("TRANSP", "")).upper() == "TRANSPARENT"
    _text(el, "Email", "BusyStatus", BUSY_STATUS.get(busy, "0" if transparent else "2"))
    _text(el, "Email", "TimeZone", _zone_blob(event, start))
    instance = recurrence_id.date() if isinstance(recurrence_id, datetime) else recurrence_id
    _text(el, "Email", "GlobalObjId", base64.b64encode(global_obj_id(inv.uid, instance)).decode("ascii"))
    if version >= 14.0:
        counter = str(event.get("X-MICROSOFT-DISALLOW-COUNTER", "")).upper() == "TRUE"
        _text(el, "Email", "DisallowNewTimeProposal", "1" if counter else "0")
    if version >= 14.1:
        kind = UNSPECIFIED if inv.method == "CANCEL" else INITIAL_REQUEST if _sequence(event) == 0 else FULL_UPDATE
        _text(el, "Email2", "MeetingMessageType", kind)
    return el


def _sequence(event) -> int:
    try:
        return int(event.get("SEQUENCE", 0))
    except (TypeError, ValueError):
        return 0


def _zone_blob(event, start: datetime) -> str:
    try:
        return tzblob.encode(zone_of(event), start.year)
    except (ValueError, TypeError, OverflowError, binascii.Error) as e:
        log.info("activesync: no time zone blob for an invitation (%s); UTC", e)
        return tzblob.encode(timezone.utc, start.year)


def annotate(data, raw: bytes, structure: dict, version: float) -> None:
    """Make the ApplicationData ``data`` of a message that carries an invitation a meeting
    message: its MessageClass, ContentClass and, for a request or a cancellation, its
    MeetingRequest after the MessageClass.  Nothing changes for other messages."""
    inv = invitation(raw, structure)
    if inv is None:
        return
    cls = data.find(q("Email", "MessageClass"))
    if cls is None:
        return
    try:
        request = meeting_request(inv, version)
    except Exception:  # a value no reader above expected: the message is still shown, as a note
        log.exception("activesync: an invitation (UID %r) cannot be shown as a meeting request", inv.uid[:100])
        return
    cls.text = message_class(inv)
    content = data.find(q("Email", "ContentClass"))
    if content is not None:
        content.text = CONTENT_CLASS
    if request is not None:
        data.insert(list(data).index(cls) + 1, request)
