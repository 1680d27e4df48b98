"""Tasks between a stored iCalendar VTODO and ActiveSync ``ApplicationData`` of the Tasks class
([MS-ASTASK] 2.2.2), both directions, with the merge rules of calendar.py.

Invariants
- Dates: ``StartDate``/``DueDate`` are the task's local wall clock and ``UtcStartDate``/
  ``UtcDueDate`` the instant, all in the ``2026-07-31T18:00:00.000Z`` spelling of the Tasks
  page.  Date-only DTSTART/DUE are midnight; floating times are taken as UTC.  From a phone, the
  UTC value wins when both are sent; a local value at midnight becomes a DATE (the usual to-do),
  others keep the stored zone (or UTC for a new task).
- Importance: PRIORITY 1-4 is high (2), 5 or none normal (1), 6-9 low (0); back as 1, 5, 9,
  and a stored PRIORITY with the same meaning is left as it is.
- Complete: STATUS:COMPLETED or a COMPLETED date; DateCompleted is COMPLETED.  Un-completing
  restores STATUS:NEEDS-ACTION and drops COMPLETED and a 100 % PERCENT-COMPLETE.
- Reminder: the first display/audio VALARM, absolute or relative to the start or the due date,
  is ReminderSet/ReminderTime; a phone's new time rewrites that alarm as an absolute trigger;
  other alarms are never touched.
- Recurrence on the Tasks page (recurrence.py): Start is DTSTART (set from it when the task has
  none: RFC 5545 needs DTSTART for an RRULE); Regenerate and DeadOccur are not stored.
- Ghosting, preservation, errors: as calendar.py says.  ``is_incomplete`` never raises.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import date, datetime, time, timezone, tzinfo
from typing import Optional

import icalendar

from . import recurrence
from .icalitem import (body_element, body_of, categories_element, categories_of, ensure_timezones, first_alarm,
                       ghoster, new_alarm, new_calendar, number, parse, plain, sensitivity_of, serialize, series,
                       set_categories, set_sensitivity, set_text, set_time, when)
from .mailitem import BodyPreference
from .pim import ConversionError
from .wbxml import qname as q
from .xmlutil import element, sub, text

log = logging.getLogger(__name__)

TASKS, SYNC = "Tasks", "AirSync"
LOW, NORMAL, HIGH = 0, 1, 2
_PRIORITY = {HIGH: 1, NORMAL: 5, LOW: 9}


def _todo(cal: icalendar.Calendar):
    return series(cal, "VTODO", "VEVENT", ("a to-do", "an event"))[1]


def importance_of(todo) -> int:
    try:
        priority = int(plain(todo, "PRIORITY") or 0)
    except ValueError:
        return NORMAL
    if 1 <= priority <= 4:
        return HIGH
    if 6 <= priority <= 9:
        return LOW
    return NORMAL


def is_complete(todo) -> bool:
    return (plain(todo, "STATUS") or "").upper() == "COMPLETED" or "COMPLETED" in todo


def _zone(value) -> tzinfo:
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.tzinfo
    return timezone.utc


def _pair(value) -> tuple:
    """``(local wall clock, UTC)`` strings of a DTSTART/DUE value."""
    tz = _zone(value)
    moment = value if isinstance(value, datetime) else datetime.combine(value, time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    wall = moment.astimezone(tz).replace(tzinfo=None)
    return wall.strftime("%Y-%m-%dT%H:%M:%S.000Z"), recurrence.extended(moment)


def _reminder(todo) -> Optional[datetime]:
    """The UTC time of the first alarm, absolute or relative to DTSTART/DUE."""
    alarm = first_alarm(todo, relative=False)
    relative = first_alarm(todo, relative=True)
    alarms = [a for a in todo.subcomponents if a in (alarm, relative)]
    if not alarms:
        return None
    first = alarms[0]
    trigger = first.decoded("TRIGGER")
    if isinstance(trigger, datetime):
        return recurrence.as_utc(trigger)
    related = str(first["TRIGGER"].params.get("RELATED", "START")).upper()
    anchor = when(todo, "DUE" if related == "END" else "DTSTART") or when(todo, "DUE")
    if anchor is None:
        return None
    return recurrence.as_utc(anchor, _zone(anchor)) + trigger


def to_eas(text_: str, version: tuple, body: Optional[BodyPreference] = None):
    """The AirSync ApplicationData of a stored to-do (see the module's invariants)."""
    todo = _todo(parse(text_))
    data = element(SYNC, "ApplicationData")
    description = plain(todo, "DESCRIPTION")
    if description:
        data.append(body_element(description, body))
    cats = categories_of(todo)
    if cats:
        data.append(categories_element(TASKS, cats))
    complete = is_complete(todo)
    sub(data, TASKS, "Complete", "1" if complete else "0")
    if complete:
        done = when(todo, "COMPLETED") or when(todo, "LAST-MODIFIED") or when(todo, "DTSTAMP")
        if done is not None:
            sub(data, TASKS, "DateCompleted", recurrence.extended(done))
    due, start = when(todo, "DUE"), when(todo, "DTSTART")
    if due is not None:
        sub(data, TASKS, "DueDate", _pair(due)[0])
    sub(data, TASKS, "Importance", str(importance_of(todo)))
    rule = todo.get("RRULE")
    if rule is not None and not isinstance(rule, list) and (start or due) is not None:
        el = recurrence.to_eas(rule, start or due, TASKS, version)
        if el is not None:
            data.append(el)
    reminder = _reminder(todo)
    sub(data, TASKS, "ReminderSet", "1" if reminder else "0")
    if reminder:
        sub(data, TASKS, "ReminderTime", recurrence.extended(reminder))
    sub(data, TASKS, "Sensitivity", str(sensitivity_of(todo)))
    if start is not None:
        sub(data, TASKS, "StartDate", _pair(start)[0])
    sub(data, TASKS, "Subject", plain(todo, "SUMMARY") or "")
    if due is not None:
        sub(data, TASKS, "UtcDueDate", _pair(due)[1])
    if start is not None:
        sub(data, TASKS, "UtcStartDate", _pair(start)[1])
    return data


def is_incomplete(text_: str) -> bool:
    """Whether a stored to-do is still to do (Tasks FilterType 8); False for anything else."""
    try:
        return not is_complete(_todo(parse(text_)))
    except ConversionError:
        return False


# -- from EAS -------------------------------------------------------------------------------------------

def _date_field(todo, data, prop: str, name: str, ghost) -> None:
    utc_raw, local_raw = text(data, TASKS, "Utc" + name), text(data, TASKS, name)
    if utc_raw is None and local_raw is None:
        if ghost(TASKS, name) or ghost(TASKS, "Utc" + name):
            todo.pop(prop, None)
        return
    current = when(todo, prop)
    local = recurrence.parse_utc(local_raw, name).replace(tzinfo=None) if local_raw else None
    instant = recurrence.parse_utc(utc_raw, "Utc" + name) if utc_raw else None
    tz = _zone(current)
    if current is not None and not isinstance(current, datetime) and local is not None and local.time() == time():
        value = local.date()
    elif local is not None and local.time() == time() and (instant is None or current is None):
        value = local.date()
    elif instant is not None:
        value = instant.astimezone(tz)
    else:
        value = local.replace(tzinfo=tz)
    if current is not None and _same(current, value):
        return
    set_time(todo, prop, value)


def _same(a, b) -> bool:
    if isinstance(a, datetime) != isinstance(b, datetime):
        return False
    if isinstance(a, datetime):
        return recurrence.as_utc(a) == recurrence.as_utc(b)
    return a == b


def _complete(todo, data, ghost) -> None:
    flag = number(data, TASKS, "Complete", (0, 1))
    if flag is None:
        return
    raw = text(data, TASKS, "DateCompleted")
    if flag == 1:
        done = recurrence.parse_utc(raw, "DateCompleted") if raw else None
        if is_complete(todo) and (done is None or "COMPLETED" not in todo or _same(when(todo, "COMPLETED"), done)):
            return
        set_text(todo, "STATUS", "COMPLETED")
        set_time(todo, "COMPLETED", done or datetime.now(timezone.utc).replace(microsecond=0))
        if "PERCENT-COMPLETE" in todo:
            todo.pop("PERCENT-COMPLETE")
            todo.add("PERCENT-COMPLETE", 100)
    elif is_complete(todo):
        set_text(todo, "STATUS", "NEEDS-ACTION")
        todo.pop("COMPLETED", None)
        if str(todo.get("PERCENT-COMPLETE", "")) == "100":
            todo.pop("PERCENT-COMPLETE")


def _importance(todo, data, ghost) -> None:
    value = number(data, TASKS, "Importance", (LOW, NORMAL, HIGH))
    if value is None:
        if ghost(TASKS, "Importance"):
            todo.pop("PRIORITY", None)
        return
    had = "PRIORITY" in todo
    if (had and importance_of(todo) == value) or (not had and value == NORMAL):
        return
    todo.pop("PRIORITY", None)
    todo.add("PRIORITY", _PRIORITY[value])


def _reminder_field(todo, data, ghost) -> None:
    flag = number(data, TASKS, "ReminderSet", (0, 1))
    raw = text(data, TASKS, "ReminderTime")
    if flag is None and raw is None and not ghost(TASKS, "ReminderSet"):
        return
    current = _reminder(todo)
    first = next((a for a in todo.subcomponents if a in (first_alarm(todo, False), first_alarm(todo, True))), None)
    if flag == 1 and raw:
        moment = recurrence.parse_utc(raw, "ReminderTime")
        if current == moment:
            return
        if first is not None:
            first.pop("TRIGGER")
            first.add("TRIGGER", moment)
        else:
            todo.add_component(new_alarm(moment, plain(todo, "SUMMARY") or "Reminder"))
    elif first is not None and current is not None and (flag == 0 or flag is None):
        todo.subcomponents.remove(first)


def _recurrence(todo, data, version, ghost) -> None:
    el = data.find(q(TASKS, "Recurrence"))
    current = todo.get("RRULE")
    start = when(todo, "DTSTART") or when(todo, "DUE")
    if el is None:
        if current is not None and ghost(TASKS, "Recurrence") and start is not None and \
                not isinstance(current, list) and recurrence.to_eas(current, start, TASKS, version) is not None:
            todo.pop("RRULE")
        return
    raw_start = text(el, TASKS, "Start")
    if start is None:
        if not raw_start:
            raise ConversionError("a recurring task without a start")
        start = recurrence.parse_utc(raw_start, "Recurrence Start").date()
        set_time(todo, "DTSTART", start)
    rule = recurrence.from_eas(el, start, _zone(start))
    if number(el, TASKS, "Regenerate", (0, 1)) == 1:
        log.info("task %s: Regenerate (a new task when one is completed) is not stored", plain(todo, "UID"))
    if current is not None and not isinstance(current, list):
        same = recurrence.to_eas(current, start, TASKS, version)
        new = recurrence.to_eas(rule, start, TASKS, version)
        if same is not None and new is not None and _xml(same) == _xml(new):
            return
    todo.pop("RRULE", None)
    todo.add("RRULE", rule)


def _xml(el) -> bytes:
    return ET.tostring(el)


def from_eas(data, stored: Optional[str], version: tuple, uid: str, supported: Optional[set] = None) -> str:
    """The new full iCalendar text of a to-do: ``data`` merged onto ``stored`` (None: new)."""
    ghost = ghoster(supported)
    if stored is None:
        cal = new_calendar()
        todo = icalendar.Todo()
        todo.add("UID", uid)
        cal.add_component(todo)
    else:
        cal = parse(stored)
        todo = _todo(cal)
    before = todo.to_ical()
    subject = text(data, TASKS, "Subject")
    if subject is not None:
        set_text(todo, "SUMMARY", subject)
    elif ghost(TASKS, "Subject"):
        todo.pop("SUMMARY", None)
    body = body_of(data)
    if body is not None:
        set_text(todo, "DESCRIPTION", body)
    _date_field(todo, data, "DTSTART", "StartDate", ghost)
    _date_field(todo, data, "DUE", "DueDate", ghost)
    start, due = when(todo, "DTSTART"), when(todo, "DUE")
    if start is not None and due is not None and _ordered(due) < _ordered(start):
        raise ConversionError("DueDate before StartDate")
    _complete(todo, data, ghost)
    _importance(todo, data, ghost)
    sens = number(data, TASKS, "Sensitivity", range(0, 4))
    if sens is not None:
        set_sensitivity(todo, sens)
    elif ghost(TASKS, "Sensitivity"):
        set_sensitivity(todo, None)
    if data.find(q(TASKS, "Categories")) is not None or ghost(TASKS, "Categories"):
        set_categories(todo, TASKS, data)
    _reminder_field(todo, data, ghost)
    _recurrence(todo, data, version, ghost)
    if stored is None or todo.to_ical() != before:
        now = datetime.now(timezone.utc).replace(microsecond=0)
        set_time(todo, "DTSTAMP", now)
        if "LAST-MODIFIED" in todo:
            set_time(todo, "LAST-MODIFIED", now)
    ensure_timezones(cal)
    return serialize(cal)


def _ordered(value) -> datetime:
    return recurrence.as_utc(value, _zone(value)) if isinstance(value, (date, datetime)) else value

