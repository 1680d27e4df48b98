"""What events (calendar.py) and to-dos (tasks.py) share between a stored iCalendar object and
ActiveSync ApplicationData: parsing and writing the object, the Body, Categories, Sensitivity,
alarms, times and their zones, and ghosting ([MS-ASCMD] Supported: which absent fields a Change
removes).  Pure and synchronous; bad input raises :class:`ConversionError`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Callable, Iterable, Optional

import icalendar

from formats import mime

from . import tzblob
from .mailitem import BodyPreference, truncate
from .pim import ConversionError
from .wbxml import qname as q
from .xmlutil import element, sub, text

PRODID = "-//Haven//ActiveSync//EN"
BASE = "AirSyncBase"
SENSITIVITY = {"PUBLIC": 0, "PERSONAL": 1, "PRIVATE": 2, "CONFIDENTIAL": 3}
SENSITIVITY_NAMES = {0: "PUBLIC", 1: "PRIVATE", 2: "PRIVATE", 3: "CONFIDENTIAL"}


def parse(text_: str) -> icalendar.Calendar:
    try:
        cal = icalendar.Calendar.from_ical(text_)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ConversionError(f"stored iCalendar cannot be read: {exc}") from None
    if not isinstance(cal, icalendar.Calendar):
        raise ConversionError("stored text is not a VCALENDAR")
    return cal


def series(cal: icalendar.Calendar, name: str, other: str, what: str) -> tuple:
    """``(every component called name, the master)`` of one stored object: the master is the one
    without RECURRENCE-ID (else the first).  ConversionError when there is none (``what`` says
    which, and a component ``other`` instead means the wrong collection)."""
    found = [c for c in cal.subcomponents if c.name == name]
    if not found:
        if any(c.name == other for c in cal.subcomponents):
            raise ConversionError(f"{what[1]}, not {what[0]} (wrong collection)")
        raise ConversionError(f"no {name} in the object")
    masters = [c for c in found if "RECURRENCE-ID" not in c]
    return found, masters[0] if masters else found[0]


def new_calendar() -> icalendar.Calendar:
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    return cal


def decoded(comp, name: str):
    """The decoded value of a property, None when absent or unreadable."""
    if name not in comp:
        return None
    try:
        return comp.decoded(name)
    except (ValueError, TypeError, KeyError):
        raise ConversionError(f"{name} of {comp.name} cannot be read") from None


def when(comp, name: str):
    """A date or date-time property, None when absent; ConversionError when it is neither."""
    value = decoded(comp, name)
    if value is not None and not isinstance(value, date):
        raise ConversionError(f"{name} of {comp.name} is not a date: {str(value)[:40]!r}")
    return value


def plain(comp, name: str) -> Optional[str]:
    value = comp.get(name)
    if value is None:
        return None
    if isinstance(value, list):
        value = value[0]
    return str(value)


def body_element(description: str, pref: Optional[BodyPreference]) -> ET.Element:
    """airsyncbase:Body in plain text, truncated as ``pref`` asks ([MS-ASAIRS] 2.2.2.9)."""
    full = description.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
    data, truncated = truncate(full, pref.truncation if pref else None)
    el = element(BASE, "Body")
    sub(el, BASE, "Type", "1")
    sub(el, BASE, "EstimatedDataSize", str(len(full)))
    sub(el, BASE, "Truncated", "1" if truncated else "0")
    if not (truncated and pref is not None and pref.all_or_none):
        sub(el, BASE, "Data", data.decode("utf-8", "replace"))
    return el


def body_of(data) -> Optional[str]:
    """The text of a request's airsyncbase:Body (HTML reduced to text), None without one."""
    body = data.find(q(BASE, "Body"))
    if body is None:
        return None
    content = text(body, BASE, "Data") or ""
    if (text(body, BASE, "Type") or "1").strip() == "2":
        content = mime.html_to_text(content)
    return content.replace("\r\n", "\n")


def set_text(comp, name: str, value: Optional[str]) -> None:
    """Set (or with None/"" remove) a text property, leaving it alone when it already says so."""
    current = plain(comp, name)
    if (current or "") == (value or ""):
        return
    comp.pop(name, None)
    if value:
        comp.add(name, value)


def categories_of(comp) -> list:
    out = []
    found = comp.get("CATEGORIES")
    for prop in found if isinstance(found, list) else ([found] if found is not None else []):
        out.extend(str(c) for c in getattr(prop, "cats", []) if str(c))
    return out


def categories_element(page: str, cats: Iterable[str]):
    el = element(page, "Categories")
    for cat in cats:
        sub(el, page, "Category", cat)
    return el


def set_categories(comp, page: str, data) -> None:
    el = data.find(q(page, "Categories"))
    cats = [c.text if isinstance(c.text, str) else (c.text or b"").decode("utf-8", "replace")
            for c in (el if el is not None else ()) if c.tag == q(page, "Category")]
    cats = [c for c in cats if c]
    if cats == categories_of(comp):
        return
    comp.pop("CATEGORIES", None)
    if cats:
        comp.add("CATEGORIES", cats)


def sensitivity_of(comp) -> int:
    return SENSITIVITY.get((plain(comp, "CLASS") or "PUBLIC").upper(), 2)


def set_sensitivity(comp, value: Optional[int]) -> None:
    if value is None:
        comp.pop("CLASS", None)
    elif value != sensitivity_of(comp):
        comp.pop("CLASS", None)
        comp.add("CLASS", SENSITIVITY_NAMES[value])


def number(data, page: str, name: str, allowed: Iterable[int]) -> Optional[int]:
    """An integer element of a request, None when absent; ConversionError outside ``allowed``."""
    raw = text(data, page, name)
    if raw is None:
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConversionError(f"{name}: {raw!r} is not a number") from None
    if value not in allowed:
        raise ConversionError(f"{name}: {value} is not allowed")
    return value


def first_alarm(comp, relative: bool = True, accept=None):
    """The first VALARM shown to the user (DISPLAY/AUDIO, or no ACTION) with a relative
    (``relative``) or absolute trigger (that ``accept(alarm, trigger)``); None without one."""
    for alarm in comp.subcomponents:
        if alarm.name != "VALARM":
            continue
        action = (plain(alarm, "ACTION") or "DISPLAY").upper()
        if action not in ("DISPLAY", "AUDIO"):
            continue
        try:
            trigger = alarm.decoded("TRIGGER")
        except (KeyError, ValueError, TypeError):
            continue
        if isinstance(trigger, timedelta) == relative and (accept is None or accept(alarm, trigger)):
            return alarm
    return None


def new_alarm(trigger, description: str):
    alarm = icalendar.Alarm()
    alarm.add("ACTION", "DISPLAY")
    alarm.add("DESCRIPTION", description or "Reminder")
    alarm.add("TRIGGER", trigger)
    return alarm


def ghoster(supported: Optional[set]) -> Callable[[str, str], bool]:
    """Whether an absent ``page:name`` field means "removed" ([MS-ASCMD] 2.2.3.168 Supported)."""
    def ghost(page: str, name: str) -> bool:
        return supported is None or q(page, name) in supported
    return ghost


def serialize(cal: icalendar.Calendar) -> str:
    return cal.to_ical().decode("utf-8")


def ensure_timezones(cal: icalendar.Calendar) -> None:
    """A VTIMEZONE for every TZID used (the stored ones kept; ours made from the zone object)."""
    have = {str(tz.get("TZID")) for tz in cal.walk("VTIMEZONE")}
    needed: dict = {}
    for comp in cal.subcomponents:
        if comp.name == "VTIMEZONE":
            continue
        for name in ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID", "EXDATE", "RDATE"):
            props = comp.get(name)
            for prop in props if isinstance(props, list) else ([props] if props is not None else []):
                tzid = prop.params.get("TZID") if hasattr(prop, "params") else None
                values = [d.dt for d in prop.dts] if hasattr(prop, "dts") else [getattr(prop, "dt", None)]
                for value in values:
                    if tzid and tzid not in have and isinstance(value, datetime) and value.tzinfo:
                        needed.setdefault(tzid, (value.tzinfo, value.year))
    for tzid, (tz, year) in needed.items():
        vtz = tzblob.vtimezone(tz, year)
        vtz["TZID"] = tzid
        cal.subcomponents.insert(0, vtz)


def local(value: datetime, tz: Optional[tzinfo]):
    """``value`` (aware) as the property value to write in ``tz``: UTC stays UTC."""
    if tz is None or tzblob.tzid_for(tz) in ("UTC", "Etc/UTC"):
        return value.astimezone(timezone.utc)
    return value.astimezone(tz)


def set_time(comp, name: str, value) -> None:
    comp.pop(name, None)
    comp.add(name, value)
    if isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None:
        tzid = tzblob.tzid_for(value.tzinfo)
        if tzid not in ("UTC", "Etc/UTC"):
            comp[name].params["TZID"] = tzid
        else:
            comp[name].params.pop("TZID", None)
