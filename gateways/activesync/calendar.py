"""Events between a stored iCalendar object and ActiveSync ``ApplicationData`` of the Calendar
class ([MS-ASCAL] 2.2.2, with [MS-ASAIRS] Body, Location and InstanceId), both directions.

One stored object is a VCALENDAR holding one UID: the master VEVENT, its RECURRENCE-ID overrides
and the VTIMEZONEs they use.  Pure and synchronous (icalendar parsing is CPU work: the Sync
engine runs these in its worker pool).

Invariants
- ``to_eas`` sends what EAS can carry: times in UTC with the zone as a Timezone blob (all-day
  and floating events: in X-WR-TIMEZONE, else the caller's ``zone``, else UTC), the first
  display/audio alarm with a relative trigger as Reminder, BusyStatus from
  X-MICROSOFT-CDO-BUSYSTATUS else TRANSP, attendees with their status and type, MeetingStatus
  and ResponseType from who organizes (``me``, the account's addresses), the rule when EAS can
  express it (see recurrence.py), EXDATEs and cancelled overrides as deleted Exceptions, other
  overrides as Exceptions with the fields that differ from the master.  14.x names an
  exception by ExceptionStartTime, 16.x by airsyncbase:InstanceId (both Compact DateTime,
  [MS-ASDTYPE] 2.7.2; the extended ``2026-03-04T08:30:00.000Z`` spelling is read too).
  Location is Calendar:Location in 14.x, airsyncbase:Location (DisplayName, GEO as Latitude/
  Longitude) in 16.x.
- ``from_eas`` merges onto the stored text and never loses what EAS cannot carry: properties it
  does not map (X-, ATTACH, URL, SEQUENCE...), every VALARM but the one sent as Reminder (the
  first display/audio alarm before the start, relative to it), attendee parameters the
  phone did not change, an RRULE EAS cannot express when the phone sends no Recurrence.  A
  field the phone sends with the value we would have sent leaves the stored property as it was.
  An absent field is removed only when ghosting allows it (``supported`` None, or naming the
  field); an absent Body, Timezone, organizer or Exceptions element always keeps what is stored.
  Exceptions sent replace the overrides and EXDATEs they name; others stay.  In 16.x a new
  pattern or new series times drop the exceptions ([MS-ASCAL] 2.2.2.22); one occurrence is
  changed by ``change_instance`` and deleted by ``delete_instance``.  Resending unchanged data
  leaves every component as it was (DTSTAMP included).
- Bad input raises :class:`ConversionError` (unreadable iCalendar, a to-do where an event is
  expected, bad dates, EndTime before StartTime, Until before the start, a garbage Timezone), and
  nothing is half-applied: the stored text is only ever replaced by a whole new one.
"""

from __future__ import annotations

import copy
import logging
import threading
import xml.etree.ElementTree as ET
import zoneinfo
from collections import OrderedDict
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Callable, Iterable, Optional

import icalendar
from icalendar.prop import vCalAddress, vRecur

from . import recurrence, tzblob
from .icalitem import (body_element, body_of, categories_element, categories_of, decoded, ensure_timezones,
                       first_alarm, ghoster, local, new_alarm, new_calendar, number, parse, plain, sensitivity_of,
                       serialize, series, set_categories, set_sensitivity, set_text, set_time, when)
from .mailitem import BodyPreference
from .pim import ConversionError
from .wbxml import qname as q
from .xmlutil import element, sub, text

log = logging.getLogger(__name__)

CAL, BASE, SYNC = "Calendar", "AirSyncBase", "AirSync"
BUSY = {"FREE": 0, "TENTATIVE": 1, "BUSY": 2, "OOF": 3, "WORKINGELSEWHERE": 4}
BUSY_NAMES = {v: k for k, v in BUSY.items()}
PARTSTAT = {"TENTATIVE": 2, "ACCEPTED": 3, "DECLINED": 4, "NEEDS-ACTION": 5}
PARTSTAT_NAMES = {2: "TENTATIVE", 3: "ACCEPTED", 4: "DECLINED", 5: "NEEDS-ACTION"}
REQUIRED, OPTIONAL, RESOURCE = 1, 2, 3


# -- the stored object ------------------------------------------------------------------------------------

def rid_key(value) -> str:
    """One spelling of a RECURRENCE-ID/EXDATE/InstanceId for comparing them."""
    if isinstance(value, datetime):
        return recurrence.compact(value)
    return value.strftime("%Y%m%d")


class Event:
    """The parts of one stored event object."""

    def __init__(self, cal: icalendar.Calendar, fallback: tzinfo = timezone.utc):
        self.cal, self.fallback = cal, fallback
        events, self.master = series(cal, "VEVENT", "VTODO", ("an event", "a to-do"))
        self.overrides = {rid_key(when(e, "RECURRENCE-ID")): e for e in events
                          if e is not self.master and "RECURRENCE-ID" in e}
        start = when(self.master, "DTSTART")
        if start is None:
            raise ConversionError("the event has no DTSTART")
        self.allday = not isinstance(start, datetime)
        self.tz = self.zone_of(start)

    def zone_of(self, start) -> tzinfo:
        if isinstance(start, datetime) and start.tzinfo is not None:
            return _stored_zone(self.cal, start.tzinfo, self.master["DTSTART"].params.get("TZID"))
        name = plain(self.cal, "X-WR-TIMEZONE")
        if name:
            try:
                return zoneinfo.ZoneInfo(name)
            except (ValueError, zoneinfo.ZoneInfoNotFoundError):
                pass
        return self.fallback

    def exdates(self) -> list:
        found = self.master.get("EXDATE")
        out = []
        for prop in found if isinstance(found, list) else ([found] if found is not None else []):
            out.extend(d.dt for d in prop.dts)
        return out


_ZONES: "OrderedDict[tuple, tzinfo]" = OrderedDict()
_ZONES_LOCK = threading.Lock()
MAX_ZONES = 256


def _stored_zone(cal, tz: tzinfo, tzid: Optional[str]) -> tzinfo:
    """The zone of a stored event: the IANA zone its TZID and VTIMEZONE stand for, else a fast
    copy of the VTIMEZONE's current rules; cached on the VTIMEZONE's text (one per calendar
    client and zone, shared by the worker threads)."""
    if isinstance(tz, zoneinfo.ZoneInfo) or tz is timezone.utc:
        return tz
    vtz = next((c for c in cal.walk("VTIMEZONE") if str(c.get("TZID")) == tzid), None)
    key = (tzid, vtz.to_ical() if vtz is not None else b"")
    with _ZONES_LOCK:
        found = _ZONES.get(key)
        if found is not None:
            _ZONES.move_to_end(key)
            return found
    found = tzblob.frozen(tzblob.canonical(tz, tzid), date.today().year)
    with _ZONES_LOCK:
        _ZONES[key] = found
        while len(_ZONES) > MAX_ZONES:
            _ZONES.popitem(last=False)
    return found


def span(comp, tz: tzinfo) -> tuple:
    """``(start, end)`` of a VEVENT as aware datetimes (dates at midnight in ``tz``)."""
    start = when(comp, "DTSTART")
    end = when(comp, "DTEND")
    if end is None:
        duration = decoded(comp, "DURATION")
        if duration is not None:
            end = start + duration
        else:
            end = start + timedelta(days=1) if not isinstance(start, datetime) else start
    return _aware(start, tz), _aware(end, tz)


def _aware(value, tz: tzinfo) -> datetime:
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=tz)
    return value if value.tzinfo is not None else value.replace(tzinfo=tz)


def _email(address) -> str:
    value = str(address)
    return value[7:] if value.lower().startswith("mailto:") else value


def attendees_of(comp) -> list:
    found = comp.get("ATTENDEE")
    return found if isinstance(found, list) else ([found] if found is not None else [])


def _attendee_type(prop) -> int:
    if str(prop.params.get("CUTYPE", "")).upper() in ("RESOURCE", "ROOM"):
        return RESOURCE
    if str(prop.params.get("ROLE", "")).upper() in ("OPT-PARTICIPANT", "NON-PARTICIPANT"):
        return OPTIONAL
    return REQUIRED


def _attendees(comp) -> tuple:
    """``((email, name, status, type), ...)`` of the attendees EAS can carry."""
    out = []
    for prop in attendees_of(comp):
        email = _email(prop)
        if "@" not in email:
            continue
        out.append((email, str(prop.params.get("CN", "")),
                    PARTSTAT.get(str(prop.params.get("PARTSTAT", "NEEDS-ACTION")).upper(), 0), _attendee_type(prop)))
    return tuple(out)


def _organizer(comp) -> tuple:
    prop = comp.get("ORGANIZER")
    if prop is None:
        return ("", "")
    return (_email(prop), str(prop.params.get("CN", "")))


def _is_mine(comp, me: Optional[set]) -> bool:
    email = _organizer(comp)[0]
    return not email or me is None or email.lower() in me


# -- to EAS -----------------------------------------------------------------------------------------------

def _before_start(alarm, trigger: timedelta) -> bool:
    related = str(alarm["TRIGGER"].params.get("RELATED", "START")).upper()
    return related == "START" and trigger <= timedelta(0)


def _reminder(comp) -> Optional[int]:
    """Minutes before the start of the first alarm EAS can carry (relative to the start, not
    after it)."""
    alarm = first_alarm(comp, accept=_before_start)
    if alarm is None:
        return None
    return int(-alarm.decoded("TRIGGER").total_seconds() // 60)


def _busy(comp) -> int:
    cdo = (plain(comp, "X-MICROSOFT-CDO-BUSYSTATUS") or "").upper()
    if cdo in BUSY:
        return BUSY[cdo]
    if (plain(comp, "TRANSP") or "").upper() == "TRANSPARENT":
        return 0
    if (plain(comp, "STATUS") or "").upper() == "TENTATIVE":
        return 1
    return 2


def _meeting_status(comp, me: Optional[set]) -> int:
    if not _attendees(comp):
        return 0
    cancelled = (plain(comp, "STATUS") or "").upper() == "CANCELLED"
    if _is_mine(comp, me):
        return 5 if cancelled else 1
    return 7 if cancelled else 3


def _response_type(comp, me: Optional[set]) -> int:
    if _is_mine(comp, me):
        return 1
    for email, _name, status, _type in _attendees(comp):
        if email.lower() in (me or ()):
            return status
    return 0


def fields(comp, tz: tzinfo, allday: bool, me: Optional[set]) -> dict:
    """The EAS values of one VEVENT (master or override), for sending and for comparing."""
    start, end = span(comp, tz)
    out = {"AllDayEvent": "1" if allday else "0", "StartTime": recurrence.compact(start),
           "EndTime": recurrence.compact(end), "BusyStatus": str(_busy(comp)),
           "Sensitivity": str(sensitivity_of(comp)), "MeetingStatus": str(_meeting_status(comp, me))}
    for name, prop in (("Subject", "SUMMARY"), ("Location", "LOCATION"), ("Body", "DESCRIPTION")):
        value = plain(comp, prop)
        if value:
            out[name] = value
    reminder = _reminder(comp)
    if reminder is not None:
        out["Reminder"] = str(reminder)
    geo = _geo(comp)
    if geo is not None:
        out["Geo"] = geo
    out["Categories"] = tuple(categories_of(comp))
    out["Attendees"] = _attendees(comp)
    return out


def _geo(comp) -> Optional[tuple]:
    geo = comp.get("GEO")
    if geo is None or not hasattr(geo, "latitude"):
        return None
    return (repr(float(geo.latitude)), repr(float(geo.longitude)))


def _location(parent, value: str, version: tuple, geo: Optional[tuple] = None) -> None:
    if version >= (16, 0):  # [MS-ASAIRS] 2.2.2.28: DisplayName, then the coordinates
        loc = sub(parent, BASE, "Location")
        sub(loc, BASE, "DisplayName", value)
        if geo is not None:
            sub(loc, BASE, "Latitude", geo[0])
            sub(loc, BASE, "Longitude", geo[1])
    else:
        sub(parent, CAL, "Location", value)


def _attendees_element(attendees: tuple, version: tuple):
    el = element(CAL, "Attendees")
    for email, name, status, kind in attendees:
        att = sub(el, CAL, "Attendee")
        sub(att, CAL, "Email", email)
        sub(att, CAL, "Name", name or email)
        sub(att, CAL, "AttendeeStatus", str(status))
        sub(att, CAL, "AttendeeType", str(kind))
    return el


def _emit(parent, values: dict, version: tuple, body: Optional[BodyPreference], only: Optional[set] = None):
    """The simple fields of ``values`` (in [MS-ASCAL] order), all or those named in ``only``."""
    def wanted(name):
        return (only is None or name in only) and name in values
    for name in ("AllDayEvent", "BusyStatus"):
        if wanted(name):
            sub(parent, CAL, name, values[name])
    if wanted("Body"):
        parent.append(body_element(values["Body"], body))
    for name in ("EndTime",):
        if wanted(name):
            sub(parent, CAL, name, values[name])
    if wanted("Location"):
        _location(parent, values["Location"], version, values.get("Geo"))
    for name in ("Reminder", "Sensitivity", "Subject", "StartTime"):
        if wanted(name):
            sub(parent, CAL, name, values[name])
    if wanted("Categories") and (values["Categories"] or only is not None):
        parent.append(categories_element(CAL, values["Categories"]))


def to_eas(text_: str, version: tuple, body: Optional[BodyPreference] = None, me: Optional[Iterable[str]] = None,
           zone: Optional[tzinfo] = None):
    """The AirSync ApplicationData of a stored event object (see the module's invariants).
    ``me``: the account's addresses (who organizes; None: the account organizes every event);
    ``zone``: the zone of all-day and floating events without X-WR-TIMEZONE (default UTC)."""
    cal = parse(text_)
    ev = Event(cal, zone or timezone.utc)
    mine = {m.lower() for m in me} if me is not None else None
    master, tz = ev.master, ev.tz
    start = span(master, tz)[0]
    data = element(SYNC, "ApplicationData")
    # a series uses this year's rules (a 2005 New York series recurs under the 2007 DST law)
    year = max(start.year, date.today().year) if "RRULE" in master else start.year
    sub(data, CAL, "Timezone", tzblob.encode(tz, year))
    values = fields(master, tz, ev.allday, mine)
    stamp = decoded(master, "DTSTAMP") or datetime.now(timezone.utc)
    sub(data, CAL, "DtStamp", recurrence.compact(stamp))
    organizer = _organizer(master)
    if organizer[0]:
        if organizer[1]:
            sub(data, CAL, "OrganizerName", organizer[1])
        sub(data, CAL, "OrganizerEmail", organizer[0])
    _emit(data, values, version, body)
    sub(data, CAL, "UID", plain(master, "UID") or "")
    sub(data, CAL, "MeetingStatus", values["MeetingStatus"])
    if values["Attendees"]:
        data.append(_attendees_element(values["Attendees"], version))
    rule = _rule(master)
    if rule is not None:
        el = recurrence.to_eas(rule, start, CAL, version)
        if el is not None:
            data.append(el)
            exceptions = _exceptions(ev, values, version, body, mine)
            if len(exceptions):
                data.append(exceptions)
        else:
            log.info("event %s: RRULE %s cannot be said in ActiveSync, sent without it",
                     plain(master, "UID"), rule.to_ical().decode())
    if values["Attendees"]:
        rsvp = any(str(p.params.get("RSVP", "")).upper() == "TRUE" for p in attendees_of(master))
        sub(data, CAL, "ResponseRequested", "1" if rsvp else "0")
        sub(data, CAL, "ResponseType", str(_response_type(master, mine)))
    disallow = (plain(master, "X-MICROSOFT-DISALLOW-COUNTER") or "").upper() == "TRUE"
    sub(data, CAL, "DisallowNewTimeProposal", "1" if disallow else "0")
    return data


def _rule(comp) -> Optional[vRecur]:
    rules = comp.get("RRULE")
    if rules is None or (isinstance(rules, list) and len(rules) != 1):
        return None
    return rules[0] if isinstance(rules, list) else rules


def _name_instance(parent, rid, tz: tzinfo, version: tuple) -> None:
    value = recurrence.compact(_aware(rid, tz))
    if version >= (16, 0):
        sub(parent, BASE, "InstanceId", value)
    else:
        sub(parent, CAL, "ExceptionStartTime", value)


def _exceptions(ev: Event, master_values: dict, version: tuple, body, mine) -> ET.Element:
    el = element(CAL, "Exceptions")
    done = set()
    for rid in ev.exdates():
        key = rid_key(_aware(rid, ev.tz) if not ev.allday else rid)
        if key in done:
            continue
        done.add(key)
        exc = sub(el, CAL, "Exception")
        sub(exc, CAL, "Deleted", "1")
        _name_instance(exc, rid, ev.tz, version)
    for key, override in ev.overrides.items():
        if key in done:
            continue
        rid = decoded(override, "RECURRENCE-ID")
        exc = sub(el, CAL, "Exception")
        if (plain(override, "STATUS") or "").upper() == "CANCELLED":
            sub(exc, CAL, "Deleted", "1")
            _name_instance(exc, rid, ev.tz, version)
            continue
        _name_instance(exc, rid, ev.tz, version)
        values = fields(override, ev.tz, not isinstance(decoded(override, "DTSTART"), datetime), mine)
        differ = {k for k, v in values.items() if master_values.get(k) != v} | {"StartTime", "EndTime"}
        _emit(exc, values, version, body, differ - {"Attendees", "MeetingStatus"})
        if "MeetingStatus" in differ:
            sub(exc, CAL, "MeetingStatus", values["MeetingStatus"])
        if "Attendees" in differ and values["Attendees"]:
            exc.append(_attendees_element(values["Attendees"], version))
    return el


# -- from EAS ---------------------------------------------------------------------------------------------

def _location_of(data) -> Optional[str]:
    base = data.find(q(BASE, "Location"))
    if base is not None:
        return text(base, BASE, "DisplayName") or ""
    return text(data, CAL, "Location")


class _Apply:
    """Writes the fields of one request element (the item, an Exception, an instance change)
    onto one VEVENT."""

    def __init__(self, comp, tz: tzinfo, allday: bool, ghost: Callable[[str, str], bool], version: tuple):
        self.comp, self.tz, self.allday, self.ghost, self.version = comp, tz, allday, ghost, version

    def times(self, data, new: bool) -> bool:
        """Whether the times changed."""
        comp = self.comp
        raw_start, raw_end = text(data, CAL, "StartTime"), text(data, CAL, "EndTime")
        flag = number(data, CAL, "AllDayEvent", (0, 1))
        allday = self.allday if flag is None else bool(flag)
        if raw_start is None and raw_end is None and flag is None:
            if new:
                raise ConversionError("a new event without StartTime")
            return False
        old_start, old_end = span(comp, self.tz) if "DTSTART" in comp else (None, None)
        start = self._utc(raw_start, "StartTime") if raw_start is not None else old_start
        if raw_end is not None:
            end = self._utc(raw_end, "EndTime")
        elif old_start is not None:
            end = start + (old_end - old_start)  # moved: the same length
        else:
            end = None
        if start is None:
            raise ConversionError("an event without StartTime")
        if end is None:
            end = start + (timedelta(days=1) if allday else timedelta(0))
        if end < start:
            raise ConversionError("EndTime before StartTime")
        same = (old_start == start and old_end == end and allday == self.allday)
        if same and "DTSTART" in comp:
            return False
        if allday:
            first = start.astimezone(self.tz).date()
            last_local = end.astimezone(self.tz)
            last = last_local.date() + (timedelta(days=1) if last_local.time() != datetime.min.time() else timedelta(0))
            set_time(comp, "DTSTART", first)
            set_time(comp, "DTEND", max(last, first + timedelta(days=1)))
        else:
            set_time(comp, "DTSTART", local(start, self.tz))
            set_time(comp, "DTEND", local(end, self.tz))
        comp.pop("DURATION", None)
        self.allday = allday
        return True

    def _utc(self, raw: str, what: str) -> datetime:
        raw = raw.strip()
        if raw and not raw.endswith("Z"):  # some phones write local time for all-day events
            return recurrence.parse_utc(raw + "Z", what).replace(tzinfo=self.tz)
        return recurrence.parse_utc(raw, what)

    def simple(self, data, inherit=None) -> None:
        """Subject, Location, Body, Reminder, BusyStatus, Sensitivity, Categories, Attendees.
        ``inherit``: the master (an Exception's absent fields are the master's)."""
        comp = self.comp
        for name, prop, value in (("Subject", "SUMMARY", text(data, CAL, "Subject")),
                                  ("Location", "LOCATION", _location_of(data))):
            if value is not None:
                set_text(comp, prop, value)
            elif inherit is not None:
                set_text(comp, prop, plain(inherit, prop))
            elif self.ghost(BASE if name == "Location" and self.version >= (16, 0) else CAL, name):
                comp.pop(prop, None)
        self.geo(data)
        body = body_of(data)
        if body is not None:
            set_text(comp, "DESCRIPTION", body)
        self.reminder(number(data, CAL, "Reminder", range(0, 1_000_000)),
                      inherit if inherit is not None else (None if self.ghost(CAL, "Reminder") else comp))
        busy = number(data, CAL, "BusyStatus", range(0, 5))
        if busy is not None or inherit is not None or self.ghost(CAL, "BusyStatus"):
            self.busy(busy if busy is not None else (_busy(inherit) if inherit is not None else 2))
        sens = number(data, CAL, "Sensitivity", range(0, 4))
        if sens is not None:
            set_sensitivity(comp, sens)
        elif inherit is not None:
            set_sensitivity(comp, sensitivity_of(inherit))
        elif self.ghost(CAL, "Sensitivity"):
            set_sensitivity(comp, None)
        if data.find(q(CAL, "Categories")) is not None or (inherit is None and self.ghost(CAL, "Categories")):
            set_categories(comp, CAL, data)
        attendees = data.find(q(CAL, "Attendees"))
        if attendees is not None or (inherit is None and self.ghost(CAL, "Attendees")):
            self.attendees(attendees)

    def geo(self, data) -> None:
        """16.x Location coordinates as GEO (absent ones keep what is stored)."""
        loc = data.find(q(BASE, "Location"))
        lat, lon = (text(loc, BASE, "Latitude"), text(loc, BASE, "Longitude")) if loc is not None else (None, None)
        if not lat or not lon:
            return
        try:
            point = (float(lat), float(lon))
        except ValueError:
            raise ConversionError(f"Location coordinates {lat!r}, {lon!r} are not numbers") from None
        if not (-90 <= point[0] <= 90 and -180 <= point[1] <= 180):
            raise ConversionError(f"Location coordinates {point} are out of range")
        current = _geo(self.comp)
        if current is not None and (float(current[0]), float(current[1])) == point:
            return
        self.comp.pop("GEO", None)
        self.comp.add("GEO", point)

    def reminder(self, minutes: Optional[int], keep) -> None:
        """Set the alarm sent as Reminder to ``minutes``; None: that of ``keep`` (None: remove).
        An alarm EAS cannot say (after the start, relative to the end) is never touched."""
        comp = self.comp
        current = _reminder(comp)
        alarm = first_alarm(comp, accept=_before_start)
        if minutes is None:
            if keep is comp:
                return
            minutes = _reminder(keep) if keep is not None else None
            if minutes is None:
                if alarm is not None:
                    comp.subcomponents.remove(alarm)
                return
        if current == minutes:
            return
        trigger = timedelta(minutes=-minutes)
        if alarm is not None:
            alarm.pop("TRIGGER")
            alarm.add("TRIGGER", trigger)
        else:
            comp.add_component(new_alarm(trigger, plain(comp, "SUMMARY") or "Reminder"))

    def busy(self, value: int) -> None:
        comp = self.comp
        if _busy(comp) == value:
            return
        set_text(comp, "TRANSP", "TRANSPARENT" if value == 0 else "OPAQUE")
        if value in (1, 3, 4) or "X-MICROSOFT-CDO-BUSYSTATUS" in comp:
            set_text(comp, "X-MICROSOFT-CDO-BUSYSTATUS", BUSY_NAMES[value])

    def attendees(self, el) -> None:
        comp = self.comp
        stored = {_email(p).lower(): p for p in attendees_of(comp)}
        keep_other = [p for p in attendees_of(comp) if "@" not in _email(p)]
        out = []
        for att in (el if el is not None else ()):
            email = (text(att, CAL, "Email") or "").strip()
            if "@" not in email:
                raise ConversionError(f"Attendee without an e-mail address: {email!r}")
            name = text(att, CAL, "Name")
            status = number(att, CAL, "AttendeeStatus", (0, 2, 3, 4, 5))
            kind = number(att, CAL, "AttendeeType", (1, 2, 3))
            prop = stored.get(email.lower())
            if prop is None:
                prop = vCalAddress("mailto:" + email)
                prop.params["ROLE"] = "REQ-PARTICIPANT"
                prop.params["PARTSTAT"] = "NEEDS-ACTION"
                prop.params["RSVP"] = "TRUE"
            else:
                prop = copy.deepcopy(prop)
            if name and name != email and name != prop.params.get("CN"):
                prop.params["CN"] = name
            if status is not None and status != 0 and PARTSTAT.get(
                    str(prop.params.get("PARTSTAT", "NEEDS-ACTION")).upper(), 0) != status:
                prop.params["PARTSTAT"] = PARTSTAT_NAMES[status]
            if kind is not None and kind != _attendee_type(prop):
                prop.params.pop("CUTYPE", None)
                if kind == RESOURCE:
                    prop.params["CUTYPE"] = "RESOURCE"
                    prop.params["ROLE"] = "NON-PARTICIPANT"
                else:
                    prop.params["ROLE"] = "OPT-PARTICIPANT" if kind == OPTIONAL else "REQ-PARTICIPANT"
            out.append(prop)
        comp.pop("ATTENDEE", None)
        for prop in keep_other + out:
            comp.add("ATTENDEE", prop)

    def organizer(self, data, me: Optional[str] = None) -> None:
        email, name = text(data, CAL, "OrganizerEmail"), text(data, CAL, "OrganizerName")
        if not email and me and "ORGANIZER" not in self.comp and attendees_of(self.comp):
            email = me  # a meeting the phone's user just made: theirs
        if not email:
            return
        current = self.comp.get("ORGANIZER")
        if current is not None and _email(current).lower() == email.lower():
            if name and current.params.get("CN") != name:
                current.params["CN"] = name
            return
        prop = vCalAddress("mailto:" + email)
        if name:
            prop.params["CN"] = name
        self.comp.pop("ORGANIZER", None)
        self.comp.add("ORGANIZER", prop)

    def status(self, data) -> None:
        status = number(data, CAL, "MeetingStatus", (0, 1, 3, 5, 7, 9, 11, 13, 15))
        if status is None:
            return
        cancelled = bool(status & 4)
        current = (plain(self.comp, "STATUS") or "").upper()
        if cancelled and current != "CANCELLED":
            set_text(self.comp, "STATUS", "CANCELLED")
        elif not cancelled and current == "CANCELLED":
            set_text(self.comp, "STATUS", "CONFIRMED")


def _stamp(comp, data) -> None:
    raw = text(data, CAL, "DtStamp")
    stamp = recurrence.parse_utc(raw, "DtStamp") if raw else datetime.now(timezone.utc).replace(microsecond=0)
    set_time(comp, "DTSTAMP", stamp)
    if "LAST-MODIFIED" in comp:
        set_time(comp, "LAST-MODIFIED", datetime.now(timezone.utc).replace(microsecond=0))


def _zone(data, stored: tzinfo) -> tzinfo:
    """The phone's zone; the stored one when it has the same rules (a resent blob of a zone
    that is no IANA zone, or another name for it, moves nothing)."""
    blob = text(data, CAL, "Timezone")
    if not blob:
        return stored
    tz = tzblob.decode(blob)
    year = date.today().year
    if tz != stored and tzblob.zone_of(tz, year).signature(year) == tzblob.zone_of(stored, year).signature(year):
        return stored
    return tz


def from_eas(data, stored: Optional[str], version: tuple, uid: str, supported: Optional[set] = None,
             me: Optional[str] = None) -> str:
    """The new full iCalendar text of an event: ``data`` (AirSync ApplicationData) merged onto
    ``stored`` (None: a new event with ``uid`` unless ``data`` names its own UID/ClientUid).
    ``me``: the account's address, the ORGANIZER of a meeting that has attendees and none."""
    ghost = ghoster(supported)
    if stored is None:
        cal = new_calendar()
        master = icalendar.Event()
        given = text(data, CAL, "ClientUid") if version >= (16, 0) else None
        master.add("UID", (given or text(data, CAL, "UID") or uid).strip() or uid)
        cal.add_component(master)
        tz, allday, new = _zone(data, timezone.utc), False, True
    else:
        cal = parse(stored)
        ev = Event(cal)
        master, tz, allday, new = ev.master, _zone(data, ev.tz), ev.allday, False
    before = master.to_ical()
    apply = _Apply(master, tz, allday, ghost, version)
    if not new and tz != ev.tz and "DTSTART" in master and not allday:
        # the phone moved the event to another zone: rewrite the times in it
        start, end = span(master, ev.tz)
        set_time(master, "DTSTART", local(start, tz))
        set_time(master, "DTEND", local(end, tz))
        master.pop("DURATION", None)
    moved = apply.times(data, new)
    apply.simple(data)
    apply.organizer(data, me)
    apply.status(data)
    disallow = number(data, CAL, "DisallowNewTimeProposal", (0, 1))
    if disallow is not None and disallow != ((plain(master, "X-MICROSOFT-DISALLOW-COUNTER") or "").upper() == "TRUE"):
        set_text(master, "X-MICROSOFT-DISALLOW-COUNTER", "TRUE" if disallow else "FALSE")
    _recurrence(cal, master, data, apply, version, ghost, moved)
    if new or master.to_ical() != before:
        _stamp(master, data)
    ensure_timezones(cal)
    return serialize(cal)


def _recurrence(cal, master, data, apply: _Apply, version: tuple, ghost, moved: bool) -> None:
    el = data.find(q(CAL, "Recurrence"))
    start = decoded(master, "DTSTART")
    current = _rule(master)
    if el is not None:
        rule = recurrence.from_eas(el, start, apply.tz)
        if current is None or _rule_fields(current, start, version) != _rule_fields(rule, start, version):
            master.pop("RRULE", None)
            master.add("RRULE", rule)
            if version >= (16, 0) and current is not None:
                _drop_exceptions(cal, master)  # [MS-ASCAL] 2.2.2.22: a new pattern drops them
    elif current is not None and ghost(CAL, "Recurrence") and \
            recurrence.to_eas(current, start, CAL, version) is not None:
        _drop_series(cal, master)
        return
    elif moved and version >= (16, 0) and current is not None:
        _drop_exceptions(cal, master)  # [MS-ASCAL] 2.2.2.22: so do new series times
    exceptions = data.find(q(CAL, "Exceptions"))
    if exceptions is not None and "RRULE" in master:
        ev = Event(cal)
        for exc in exceptions:
            if exc.tag == q(CAL, "Exception"):
                raw = text(exc, BASE, "InstanceId") or text(exc, CAL, "ExceptionStartTime")
                if not raw:
                    raise ConversionError("an Exception without ExceptionStartTime/InstanceId")
                if number(exc, CAL, "Deleted", (0, 1)) == 1:
                    _delete(cal, ev, raw)
                else:
                    _override(cal, ev, raw, exc, version, ghoster(set()))
                ev = Event(cal)


def _rule_fields(rule, start, version) -> Optional[bytes]:
    el = recurrence.to_eas(rule, start, CAL, version)
    return ET.tostring(el) if el is not None else None


def _drop_series(cal, master) -> None:
    master.pop("RRULE", None)
    _drop_exceptions(cal, master)


def _drop_exceptions(cal, master) -> None:
    for name in ("EXDATE", "RDATE"):
        master.pop(name, None)
    cal.subcomponents[:] = [c for c in cal.subcomponents if not (c.name == "VEVENT" and "RECURRENCE-ID" in c)]


# -- one occurrence ---------------------------------------------------------------------------------------

def _instance(ev: Event, raw: str):
    """The RECURRENCE-ID value (in the master's type and zone) of an InstanceId/ExceptionStartTime."""
    moment = recurrence.parse_utc(raw, "InstanceId")
    if ev.allday:
        return moment.astimezone(ev.tz).date()
    return local(moment, ev.tz)


def _delete(cal, ev: Event, raw: str) -> None:
    rid = _instance(ev, raw)
    key = rid_key(rid)
    cal.subcomponents[:] = [c for c in cal.subcomponents if not (
        c.name == "VEVENT" and "RECURRENCE-ID" in c and rid_key(decoded(c, "RECURRENCE-ID")) == key)]
    if any(rid_key(_aware(d, ev.tz) if not ev.allday else d) == key for d in ev.exdates()):
        return
    ev.master.add("EXDATE", [rid])
    if isinstance(rid, datetime):
        tzid = tzblob.tzid_for(rid.tzinfo)
        added = ev.master["EXDATE"][-1] if isinstance(ev.master["EXDATE"], list) else ev.master["EXDATE"]
        if tzid not in ("UTC", "Etc/UTC"):
            added.params["TZID"] = tzid


def _override(cal, ev: Event, raw: str, data, version: tuple, ghost) -> None:
    rid = _instance(ev, raw)
    key = rid_key(rid)
    existing = ev.overrides.get(key)
    if existing is None:
        comp = copy.deepcopy(ev.master)
        for name in ("RRULE", "EXDATE", "RDATE"):
            comp.pop(name, None)
        set_time(comp, "RECURRENCE-ID", rid)
        # the occurrence's own times: the master's shifted to it
        start, end = span(ev.master, ev.tz)
        occurrence = _aware(rid, ev.tz)
        if ev.allday:
            set_time(comp, "DTSTART", rid)
            set_time(comp, "DTEND", rid + (end - start))
        else:
            set_time(comp, "DTSTART", local(occurrence, ev.tz))
            set_time(comp, "DTEND", local(occurrence + (end - start), ev.tz))
        comp.pop("DURATION", None)
        cal.add_component(comp)
    else:
        comp = existing
    before = comp.to_ical() if existing is not None else None
    apply = _Apply(comp, ev.tz, ev.allday, ghost, version)
    apply.times(data, False)
    apply.simple(data, inherit=ev.master)
    apply.status(data)
    if comp.to_ical() != before:
        _stamp(comp, data)


def change_instance(stored: str, instance_id: str, data, version: tuple, supported: Optional[set] = None) -> str:
    """16.x: a Change of one occurrence (airsyncbase:InstanceId): its RECURRENCE-ID override
    added or replaced; the fields absent from ``data`` are the master's."""
    cal = parse(stored)
    ev = Event(cal)
    if _rule(ev.master) is None and "RDATE" not in ev.master and "RRULE" not in ev.master:
        raise ConversionError("InstanceId of an event that does not recur")
    _override(cal, ev, instance_id, data, version, ghoster(supported))
    ensure_timezones(cal)
    return serialize(cal)


def delete_instance(stored: str, instance_id: str) -> str:
    """16.x: a Delete of one occurrence: an EXDATE, its override dropped."""
    cal = parse(stored)
    ev = Event(cal)
    if "RRULE" not in ev.master and "RDATE" not in ev.master:
        raise ConversionError("InstanceId of an event that does not recur")
    _delete(cal, ev, instance_id)
    ensure_timezones(cal)
    return serialize(cal)
