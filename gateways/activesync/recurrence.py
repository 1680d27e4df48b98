"""Recurrence rules between iCalendar (RFC 5545 RRULE) and ActiveSync ``Recurrence``
([MS-ASCAL] 2.2.2.35, [MS-ASTASK] 2.2.2.20); and the two date-time spellings of ActiveSync.

Invariants
- ``to_eas`` answers None for every rule EAS cannot say exactly (HOURLY and finer, BYHOUR,
  BYWEEKNO, BYYEARDAY, several BYMONTHDAY or BYMONTH, ordinal BYDAY lists, BYSETPOS lists,
  RSCALE...): the item then goes out without a Recurrence, and the caller keeps the stored rule
  when the phone sends none back.  What it sends recurs on exactly the RRULE's dates.
- ``from_eas`` gives the RRULE of a Recurrence element of either page (the page is the element's
  namespace) and raises :class:`ConversionError` for values outside the protocol's ranges, an
  unknown Type, a Type without the fields it needs, or an Until before the start.  CalendarType
  and IsLeapMonth are ignored (Gregorian only); Regenerate and DeadOccur are the tasks module's.
- Values: Type 0 daily, 1 weekly, 2 monthly on a day, 3 monthly on the n-th weekday, 5 yearly on
  a day, 6 yearly on the n-th weekday; DayOfWeek a bitmask (1 Sunday .. 64 Saturday, 127 "day");
  WeekOfMonth 1-4, 5 = last; FirstDayOfWeek 0 Sunday .. 6 Saturday (14.1 and later).
- Dates: ``compact`` is the Compact DateTime of [MS-ASDTYPE] 2.7.2 (``20260310T090000Z``, the
  Calendar page's), ``extended`` the ``2026-03-10T09:00:00.000Z`` form of the Tasks page;
  ``parse_utc`` reads either and nothing else.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, timezone, tzinfo
from typing import Optional

from icalendar.prop import vRecur

from . import wbxml
from .pim import ConversionError
from .xmlutil import element, sub

DAYS = ("SU", "MO", "TU", "WE", "TH", "FR", "SA")  # bit 1 << index, FirstDayOfWeek index
EVERY_DAY = 127
DAILY, WEEKLY, MONTHLY, MONTHLY_NTH, YEARLY, YEARLY_NTH = 0, 1, 2, 3, 5, 6
MAX_INTERVAL = 999
#: element order of each page's Recurrence ([MS-ASCAL] and [MS-ASTASK] schemas)
ORDER = {
    "Calendar": ("Type", "Occurrences", "Interval", "WeekOfMonth", "DayOfWeek", "MonthOfYear", "Until",
                 "DayOfMonth", "CalendarType", "IsLeapMonth", "FirstDayOfWeek"),
    "Tasks": ("Type", "Start", "Until", "Occurrences", "Interval", "DayOfWeek", "DayOfMonth", "WeekOfMonth",
              "MonthOfYear", "Regenerate", "DeadOccur", "CalendarType", "IsLeapMonth", "FirstDayOfWeek"),
}
_SUPPORTED_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST"}
_BYDAY = re.compile(r"^([+-]?\d{1,2})?(SU|MO|TU|WE|TH|FR|SA)$")
_COMPACT = re.compile(r"^(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)Z$")
_EXTENDED = re.compile(r"^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.\d{1,3})?Z?$")


# -- date-times ------------------------------------------------------------------------------------

def as_utc(value, tz: Optional[tzinfo] = None) -> datetime:
    """An aware UTC datetime of a date (midnight in ``tz``), a naive datetime (in ``tz``, UTC when
    None: floating times) or an aware one."""
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz or timezone.utc)
    return value.astimezone(timezone.utc)


def compact(value, tz: Optional[tzinfo] = None) -> str:
    return as_utc(value, tz).strftime("%Y%m%dT%H%M%SZ")


def extended(value, tz: Optional[tzinfo] = None) -> str:
    return as_utc(value, tz).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def parse_utc(text: Optional[str], what: str = "date") -> datetime:
    """The aware UTC datetime of either spelling; ConversionError for anything else."""
    text = (text or "").strip()
    match = _COMPACT.match(text) or _EXTENDED.match(text)
    if not match:
        raise ConversionError(f"{what}: {text!r} is not an ActiveSync date-time")
    try:
        return datetime(*(int(g) for g in match.groups()), tzinfo=timezone.utc)
    except ValueError:
        raise ConversionError(f"{what}: {text!r} is not a date") from None


# -- RRULE -> Recurrence -----------------------------------------------------------------------------

def _one(rule: vRecur, key: str):
    values = rule.get(key) or []
    if not isinstance(values, list):
        values = [values]
    if len(values) > 1:
        raise _Inexpressible(f"several {key}")
    return values[0] if values else None


class _Inexpressible(Exception):
    pass


def _weekday_bit(day) -> int:
    return 1 << ((day.weekday() + 1) % 7)


def _byday(rule: vRecur) -> list:
    """``[(ordinal or None, day index)]`` of BYDAY."""
    out = []
    for item in rule.get("BYDAY") or []:
        match = _BYDAY.match(str(item).upper())
        if not match:
            raise _Inexpressible(f"BYDAY {item}")
        out.append((int(match.group(1)) if match.group(1) else None, DAYS.index(match.group(2))))
    return out


def _week(ordinal: int) -> int:
    if ordinal == -1:
        return 5
    if 1 <= ordinal <= 4:
        return ordinal
    raise _Inexpressible(f"week {ordinal}")


def _nth(rule: vRecur, fields: dict) -> bool:
    """WeekOfMonth/DayOfWeek of "the n-th weekday" forms; False when the rule is not one."""
    days = _byday(rule)
    setpos = _one(rule, "BYSETPOS")
    monthday = _one(rule, "BYMONTHDAY")
    if days and monthday is not None:
        raise _Inexpressible("BYDAY with BYMONTHDAY")
    if monthday is not None and int(monthday) == -1 and setpos is None:
        fields.update(WeekOfMonth=5, DayOfWeek=EVERY_DAY)  # the last day of the month
        return True
    if not days:
        if setpos is not None:
            raise _Inexpressible("BYSETPOS without BYDAY")
        return False
    if setpos is not None:
        if any(ordinal is not None for ordinal, _ in days):
            raise _Inexpressible("BYSETPOS with ordinal days")
        week = _week(int(setpos))
    else:
        if len(days) != 1 or days[0][0] is None:
            raise _Inexpressible("BYDAY list")
        week = _week(days[0][0])
    fields.update(WeekOfMonth=week, DayOfWeek=sum(1 << index for _, index in days))
    return True


def _month_day(rule: vRecur, start) -> int:
    """The one day of the month a rule names (BYMONTHDAY, else DTSTART's); a day counted from
    the month's end (negative) EAS cannot say."""
    day = int(_one(rule, "BYMONTHDAY") or start.day)
    if not 1 <= day <= 31:
        raise _Inexpressible(f"BYMONTHDAY {day}")
    return day


def _fields(rule: vRecur, start) -> dict:
    unknown = {k.upper() for k in rule} - _SUPPORTED_PARTS
    if unknown:
        raise _Inexpressible(", ".join(sorted(unknown)))
    freq = str(_one(rule, "FREQ") or "").upper()
    interval = int(_one(rule, "INTERVAL") or 1)
    if not 1 <= interval <= MAX_INTERVAL:
        raise _Inexpressible(f"INTERVAL {interval}")
    fields: dict = {"Interval": interval}
    month = _one(rule, "BYMONTH")
    if freq == "DAILY":
        if month is not None or rule.get("BYMONTHDAY") or rule.get("BYSETPOS"):
            raise _Inexpressible("a filtered DAILY rule")
        days = _byday(rule)
        if days:  # every weekday and the like: weekly on those days
            if interval != 1 or any(ordinal is not None for ordinal, _ in days):
                raise _Inexpressible("DAILY with BYDAY and an interval")
            fields.update(Type=WEEKLY, DayOfWeek=sum(1 << index for _, index in days))
        else:
            fields["Type"] = DAILY
    elif freq == "WEEKLY":
        if month is not None or rule.get("BYMONTHDAY") or rule.get("BYSETPOS"):
            raise _Inexpressible("a filtered WEEKLY rule")
        days = _byday(rule)
        if any(ordinal is not None for ordinal, _ in days):
            raise _Inexpressible("ordinal days in a WEEKLY rule")
        fields.update(Type=WEEKLY, DayOfWeek=sum(1 << i for _, i in days) if days else _weekday_bit(start))
    elif freq == "MONTHLY":
        if month is not None:
            raise _Inexpressible("BYMONTH in a MONTHLY rule")
        if _nth(rule, fields):
            fields["Type"] = MONTHLY_NTH
        else:
            fields.update(Type=MONTHLY, DayOfMonth=_month_day(rule, start))
    elif freq == "YEARLY":
        fields["MonthOfYear"] = int(month or start.month)
        if _nth(rule, fields):
            if fields["DayOfWeek"] == EVERY_DAY:
                raise _Inexpressible("the last day of a month, yearly")
            fields["Type"] = YEARLY_NTH
        else:
            fields.update(Type=YEARLY, DayOfMonth=_month_day(rule, start))
    else:
        raise _Inexpressible(f"FREQ={freq}")
    count, until = _one(rule, "COUNT"), _one(rule, "UNTIL")
    if count is not None:
        fields["Occurrences"] = int(count)
    if until is not None:
        fields["Until"] = until
    wkst = _one(rule, "WKST")
    fields["FirstDayOfWeek"] = DAYS.index(str(wkst).upper()) if wkst else 1
    return fields


def _until(until, start, tz: Optional[tzinfo]):
    """A date UNTIL means "through that day": the occurrence's start time on it."""
    if isinstance(until, datetime):
        return until if until.tzinfo else until.replace(tzinfo=tz)
    at = start.time() if isinstance(start, datetime) else time()
    return datetime.combine(until, at).replace(tzinfo=tz)


def to_eas(rrule: vRecur, dtstart, page: str = "Calendar", version: tuple = (16, 1)):
    """The ``{page}Recurrence`` element of ``rrule`` for an item starting at ``dtstart`` (a
    date, or a datetime in the item's zone), or None when EAS cannot express the rule."""
    try:
        fields = _fields(rrule, dtstart)
    except (_Inexpressible, ValueError, TypeError):
        return None
    tz = dtstart.tzinfo if isinstance(dtstart, datetime) else None
    if "Until" in fields:
        until = _until(fields["Until"], dtstart, tz)
        fields["Until"] = extended(until) if page == "Tasks" else compact(until)
    if version >= (14, 0) and fields["Type"] in (MONTHLY, MONTHLY_NTH, YEARLY, YEARLY_NTH):
        fields["CalendarType"] = 0
    if version < (14, 1) or fields["Type"] != WEEKLY:
        fields.pop("FirstDayOfWeek")
    if page == "Tasks":
        fields["Start"] = extended(dtstart, tz)
    el = element(page, "Recurrence")
    for name in ORDER[page]:
        if name in fields:
            sub(el, page, name, str(fields[name]))
    return el


# -- Recurrence -> RRULE ---------------------------------------------------------------------------------

def _int(el, page: str, name: str, low: int, high: int) -> Optional[int]:
    found = el.find(wbxml.qname(page, name))
    if found is None:
        return None
    text = found.text.decode() if isinstance(found.text, bytes) else (found.text or "")
    try:
        value = int(text.strip())
    except ValueError:
        raise ConversionError(f"Recurrence {name}: {text!r} is not a number") from None
    if not low <= value <= high:
        raise ConversionError(f"Recurrence {name}: {value} is out of range")
    return value


def _days(mask: int) -> list:
    return [DAYS[i] for i in range(7) if mask & (1 << i)]


def page_of(el) -> str:
    return el.tag[1:].split("}", 1)[0]


def from_eas(el, dtstart, tz: Optional[tzinfo] = None) -> vRecur:
    """The RRULE of a Recurrence element for an item starting at ``dtstart`` (see the module's
    invariants); ``tz`` is the item's zone (an Until of an all-day item becomes a date in it)."""
    page = page_of(el)
    kind = _int(el, page, "Type", 0, 6)
    if kind is None or kind == 4:
        raise ConversionError(f"Recurrence Type {kind} is not supported")
    interval = _int(el, page, "Interval", 0, MAX_INTERVAL) or 1
    count = _int(el, page, "Occurrences", 1, 99999)
    mask = _int(el, page, "DayOfWeek", 1, EVERY_DAY)
    monthday = _int(el, page, "DayOfMonth", 1, 31)
    week = _int(el, page, "WeekOfMonth", 1, 5)
    month = _int(el, page, "MonthOfYear", 1, 12)
    first = _int(el, page, "FirstDayOfWeek", 0, 6)
    rule = vRecur()
    rule["FREQ"] = {DAILY: "DAILY", WEEKLY: "WEEKLY", MONTHLY: "MONTHLY", MONTHLY_NTH: "MONTHLY",
                    YEARLY: "YEARLY", YEARLY_NTH: "YEARLY"}[kind]
    if interval != 1:
        rule["INTERVAL"] = interval
    if kind in (YEARLY, YEARLY_NTH):
        rule["BYMONTH"] = month or dtstart.month
    if kind == DAILY and mask is not None and mask != EVERY_DAY:
        rule["BYDAY"] = _days(mask)
    elif kind == WEEKLY:
        rule["BYDAY"] = _days(mask) if mask else [DAYS[(dtstart.weekday() + 1) % 7]]
    elif kind in (MONTHLY, YEARLY):
        rule["BYMONTHDAY"] = monthday or dtstart.day
    elif kind in (MONTHLY_NTH, YEARLY_NTH):
        if mask is None or week is None:
            raise ConversionError("Recurrence Type 3/6 needs DayOfWeek and WeekOfMonth")
        ordinal = -1 if week == 5 else week
        days = _days(mask)
        if mask == EVERY_DAY:
            rule["BYMONTHDAY"] = ordinal
        elif len(days) == 1:
            rule["BYDAY"] = [f"{ordinal}{days[0]}"]
        else:
            rule["BYDAY"] = days
            rule["BYSETPOS"] = ordinal
    if first is not None and first != 1 and kind == WEEKLY:  # Monday is RFC 5545's default
        rule["WKST"] = DAYS[first]
    until_el = el.find(wbxml.qname(page, "Until"))
    if count is not None:
        rule["COUNT"] = count
    elif until_el is not None and until_el.text:
        until = parse_utc(until_el.text if isinstance(until_el.text, str) else until_el.text.decode(),
                          "Recurrence Until")
        if until < as_utc(dtstart, tz) - timedelta(days=1 if not isinstance(dtstart, datetime) else 0):
            raise ConversionError("Recurrence Until is before the start")
        rule["UNTIL"] = until.astimezone(tz or timezone.utc).date() if not isinstance(dtstart, datetime) else until
    return rule
