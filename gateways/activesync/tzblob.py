"""The ActiveSync time zone: the 172-byte TIME_ZONE_INFORMATION blob of ``Calendar:Timezone``
([MS-ASDTYPE] 2.7.1, [MS-ASCAL] 2.2.2.44), base64 on the wire, to and from ``tzinfo`` objects;
and the VTIMEZONE written into iCalendar for such a zone.

The blob: ``Bias`` int32 (minutes, UTC = local + bias), ``StandardName`` 32 UTF-16LE code units,
``StandardDate`` SYSTEMTIME, ``StandardBias`` int32, ``DaylightName``, ``DaylightDate``,
``DaylightBias``; all little-endian.  A SYSTEMTIME is eight uint16: wYear wMonth wDayOfWeek
(0 = Sunday) wDay wHour wMinute wSecond wMilliseconds.  With wYear 0 (the usual form) it is a
yearly rule: the wDay-th (1-5, 5 = last) wDayOfWeek of wMonth at wHour:wMinute local time;
``StandardDate`` is given in daylight time, ``DaylightDate`` in standard time (the wall clock
just before the change).  wMonth 0 in both: no daylight saving time.

Invariants
- ``encode(tz, year)`` describes the rules ``tz`` really follows in ``year``, found from its
  UTC offsets (any tzinfo: zoneinfo, dateutil, icalendar's own), never from its name.  The
  standard time is the lower of the year's two offsets (so Europe/Dublin's "negative DST" and
  southern zones come out as Windows expects).  The names are the Windows name when the zone is
  one of CLDR's Windows zones, else the IANA key (cut to 31 characters).
- ``decode`` returns an IANA zone whenever one has the blob's rules in the current year: first
  the zone the StandardName names (IANA key or Windows name), then a search of all zones (built
  once per year, cached) preferring Windows' canonical zones.  Otherwise a :class:`RuleZone`
  that follows the blob's yearly rule, or a fixed offset.  Malformed blobs (length, base64,
  impossible dates or biases) raise :class:`ConversionError`; nothing else is raised.
- ``vtimezone(tz, year)`` is the compact RRULE form clients write (DTSTART 1970, one STANDARD
  and one DAYLIGHT with a yearly BYDAY rule), made from the same rules as the blob.
"""

from __future__ import annotations

import base64
import binascii
import calendar as _cal
import functools
import logging
import struct
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Optional

import icalendar
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

from .pim import ConversionError

log = logging.getLogger(__name__)

BLOB_SIZE = 172
_FORMAT = "<i64s8Hi64s8Hi"
assert struct.calcsize(_FORMAT) == BLOB_SIZE
_NAME_CHARS = 31  # 32 WCHARs with the terminating NUL
_MAX_BIAS = 16 * 60
_MAX_DST_BIAS = 3 * 60

#: IANA key -> Windows name (the first Windows name CLDR maps to each zone)
_OLSON_TO_WINDOWS: dict = {}
for _win, _olson in WINDOWS_TO_OLSON.items():
    _OLSON_TO_WINDOWS.setdefault(_olson, _win)
# CLDR uses old keys for a few zones (Asia/Calcutta, America/Indianapolis...): their new names too
_LINKS = {"Asia/Kolkata": "Asia/Calcutta", "Asia/Kathmandu": "Asia/Katmandu", "Asia/Yangon": "Asia/Rangoon",
          "America/Indiana/Indianapolis": "America/Indianapolis", "Asia/Ho_Chi_Minh": "Asia/Saigon",
          "Etc/UTC": "UTC", "UTC": "Etc/UTC"}
for _new, _old in _LINKS.items():
    if _old in _OLSON_TO_WINDOWS:
        _OLSON_TO_WINDOWS.setdefault(_new, _OLSON_TO_WINDOWS[_old])
_OLSON_TO_WINDOWS["UTC"] = "UTC"
#: the current key of the old ones CLDR uses
_MODERN = {old: new for new, old in _LINKS.items() if "/" in new and new != "Etc/UTC"}
_MODERN["Etc/UTC"] = "UTC"


@dataclass(frozen=True)
class Rule:
    """A yearly change: the ``week``-th (5 = last) ``weekday`` (0 = Sunday) of ``month`` at
    ``hour``:``minute`` wall-clock time before the change."""
    month: int
    weekday: int
    week: int
    hour: int = 0
    minute: int = 0
    second: int = 0

    def on(self, year: int) -> datetime:
        """The naive local date-time of the change in ``year``."""
        first_weekday = (_cal.weekday(year, self.month, 1) + 1) % 7  # Sunday 0
        day = 1 + (self.weekday - first_weekday) % 7 + 7 * (self.week - 1)
        last = _cal.monthrange(year, self.month)[1]
        while day > last:
            day -= 7
        return datetime(year, self.month, day, self.hour, self.minute, self.second)

    @classmethod
    def of(cls, moment: datetime) -> "Rule":
        last = _cal.monthrange(moment.year, moment.month)[1]
        week = 5 if moment.day + 7 > last else (moment.day - 1) // 7 + 1
        return cls(moment.month, (moment.weekday() + 1) % 7, week, moment.hour, moment.minute, moment.second)


@dataclass(frozen=True)
class Zone:
    """What a blob says: minutes east of UTC in standard time, the daylight saving amount, and
    the two yearly changes (both None without daylight saving time)."""
    std_offset: int
    dst_delta: int = 0
    to_dst: Optional[Rule] = None
    to_std: Optional[Rule] = None
    std_name: str = ""
    dst_name: str = ""

    def signature(self, year: int) -> tuple:
        """What two zones must share to be the same in ``year``: the offsets and the local
        moments of both changes."""
        if self.to_dst is None:
            return (self.std_offset, 0, None, None)
        return (self.std_offset, self.dst_delta, self.to_dst.on(year), self.to_std.on(year))


# -- rules of a tzinfo -----------------------------------------------------------------------------

def _offset(tz: tzinfo, moment: datetime) -> int:
    """Minutes east of UTC of ``tz`` at the UTC instant ``moment`` (aware)."""
    return int(moment.astimezone(tz).utcoffset().total_seconds() // 60)


def _transitions(tz: tzinfo, year: int) -> list:
    """``(UTC instant, offset before, offset after)`` of every change of offset in ``year``
    (found weekly, then to the minute by bisection)."""
    start = datetime(year, 1, 1, tzinfo=timezone.utc) - timedelta(hours=15)
    end = datetime(year + 1, 1, 1, tzinfo=timezone.utc) + timedelta(hours=15)
    found = []
    lo, lo_off = start, _offset(tz, start)
    while lo < end:
        hi = min(lo + timedelta(days=7), end)
        hi_off = _offset(tz, hi)
        if hi_off != lo_off:
            a, b = lo, hi
            while b - a > timedelta(minutes=1):
                mid = a + (b - a) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid <= a:
                    mid = a + timedelta(minutes=1)
                if _offset(tz, mid) == lo_off:
                    a = mid
                else:
                    b = mid
            found.append((b, lo_off, _offset(tz, b)))
        lo, lo_off = hi, hi_off
    return found


def zone_of(tz: tzinfo, year: int) -> Zone:
    """The rules ``tz`` follows in ``year`` (see the module's invariants).  Zones are immutable
    (zoneinfo's, and the shared parsed VTIMEZONEs), so the answer is kept for the next event of
    the same zone: finding the changes of a year costs ~0.5 ms."""
    if isinstance(tz, RuleZone):
        return tz.zone
    try:
        return _zone_of(tz, year)
    except TypeError:  # an unhashable tzinfo
        return _zone_of.__wrapped__(tz, year)


@functools.lru_cache(maxsize=512)
def _zone_of(tz: tzinfo, year: int) -> Zone:
    moves = _transitions(tz, year)
    if len(moves) < 2:
        offset = moves[-1][2] if moves else _offset(tz, datetime(year, 7, 1, tzinfo=timezone.utc))
        return Zone(offset, std_name=_name(tz, False), dst_name=_name(tz, True))
    up = next((m for m in moves if m[2] > m[1]), None)
    down = next((m for m in moves if m[2] < m[1]), None)
    if up is None or down is None:  # the standard offset itself moved: the year's last one
        return Zone(moves[-1][2], std_name=_name(tz, False), dst_name=_name(tz, True))
    std = min(min(m[1], m[2]) for m in moves)
    to_dst = Rule.of((up[0] + timedelta(minutes=up[1])).replace(tzinfo=None))
    to_std = Rule.of((down[0] + timedelta(minutes=down[1])).replace(tzinfo=None))
    return Zone(std, max(up[2], down[1]) - std, to_dst, to_std, _name(tz, False), _name(tz, True))


def tzid_for(tz: tzinfo) -> str:
    """The TZID to write in iCalendar for ``tz``: its IANA key (or the TZID of a zone read from
    a VTIMEZONE), a RuleZone's name, "UTC"."""
    key = getattr(tz, "key", None) or getattr(tz, "zone", None) or getattr(tz, "_tzid", None)
    if isinstance(key, str) and key:
        return key
    if isinstance(tz, RuleZone):
        return tz.name
    if tz is timezone.utc or tz.utcoffset(None) == timedelta(0):
        return "UTC"
    name = tz.tzname(datetime(2000, 1, 1))
    return name or "Custom"


def _name(tz: tzinfo, daylight: bool) -> str:
    key = tzid_for(tz)
    windows = _OLSON_TO_WINDOWS.get(key)
    if windows:
        return windows.replace("Standard Time", "Daylight Time") if daylight else windows
    return key


# -- the blob ----------------------------------------------------------------------------------------

def _systemtime(rule: Optional[Rule]) -> tuple:
    if rule is None:
        return (0,) * 8
    return (0, rule.month, rule.weekday, rule.week, rule.hour, rule.minute, rule.second, 0)


def _wname(name: str) -> bytes:
    return name[:_NAME_CHARS].encode("utf-16-le").ljust(64, b"\0")


def pack(zone: Zone) -> bytes:
    """The 172 bytes of ``zone``."""
    return struct.pack(_FORMAT, -zone.std_offset, _wname(zone.std_name), *_systemtime(zone.to_std), 0,
                       _wname(zone.dst_name or zone.std_name), *_systemtime(zone.to_dst), -zone.dst_delta)


def encode(tz: tzinfo, year: int) -> str:
    """Base64 of the blob of ``tz``'s rules in ``year``."""
    return base64.b64encode(pack(zone_of(tz, year))).decode("ascii")


def _rule(fields: tuple, what: str) -> Optional[Rule]:
    wyear, month, weekday, day, hour, minute, second, _ms = fields
    if month == 0:
        return None
    if not (1 <= month <= 12 and 0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 59):
        raise ConversionError(f"Timezone {what}: impossible date {fields}")
    if wyear:
        # an absolute date (rare): taken as that date's weekday rule
        try:
            return Rule.of(datetime(wyear, month, day, hour, minute, second))
        except ValueError:
            raise ConversionError(f"Timezone {what}: impossible date {fields}") from None
    if not (0 <= weekday <= 6 and 1 <= day <= 5):
        raise ConversionError(f"Timezone {what}: impossible date {fields}")
    return Rule(month, weekday, day, hour, minute, second)


def _text(raw: bytes) -> str:
    name = raw.decode("utf-16-le", "replace")
    return name.split("\0", 1)[0].strip()


def unpack(blob: bytes) -> Zone:
    """The :class:`Zone` of 172 bytes; ConversionError when they cannot be one."""
    if len(blob) != BLOB_SIZE:
        raise ConversionError(f"Timezone blob of {len(blob)} bytes, not {BLOB_SIZE}")
    values = struct.unpack(_FORMAT, blob)
    bias, std_name, std_date, std_bias = values[0], values[1], values[2:10], values[10]
    dst_name, dst_date, dst_bias = values[11], values[12:20], values[20]
    to_std, to_dst = _rule(std_date, "StandardDate"), _rule(dst_date, "DaylightDate")
    if (to_std is None) != (to_dst is None):
        raise ConversionError("Timezone: a StandardDate without a DaylightDate or the reverse")
    if abs(bias) > _MAX_BIAS or abs(std_bias) > _MAX_DST_BIAS or abs(dst_bias) > _MAX_DST_BIAS:
        raise ConversionError(f"Timezone: impossible bias {bias}/{std_bias}/{dst_bias}")
    std_offset = -(bias + std_bias)
    delta = (std_bias - dst_bias) if to_dst else 0
    if to_dst is not None and delta == 0:
        to_dst = to_std = None  # "changes" that change nothing
    if delta < 0:  # daylight time behind standard time: swap so that standard is the lower
        std_offset, delta, to_dst, to_std = std_offset + delta, -delta, to_std, to_dst
    return Zone(std_offset, delta, to_dst, to_std, _text(std_name), _text(dst_name))


def decode(b64) -> tzinfo:
    """The tzinfo of a base64 blob (str or bytes, as the WBXML decoder gives it)."""
    try:
        if isinstance(b64, str):
            b64 = b64.encode("ascii")
        blob = base64.b64decode(b"".join((b64 or b"").split()), validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ConversionError("Timezone is not base64") from None
    zone = unpack(blob)
    year = date.today().year
    wanted = zone.signature(year)
    for name in (zone.std_name, zone.dst_name):
        candidate = _named(name)
        if candidate is not None and zone_of(candidate, year).signature(year) == wanted:
            return candidate
    found = _by_signature(year).get(wanted)
    if found is not None:
        return zoneinfo.ZoneInfo(found)
    log.info("Timezone blob matches no IANA zone (%s, offset %d): using its own rules", zone.std_name, zone.std_offset)
    if zone.to_dst is None:
        offset = timedelta(minutes=zone.std_offset)
        return timezone(offset, zone.std_name) if zone.std_name else timezone(offset)
    return RuleZone(zone)


def canonical(tz: tzinfo, tzid: Optional[str] = None) -> tzinfo:
    """The IANA zone ``tzid`` names (an IANA key or a Windows name) when it has ``tz``'s rules
    this year, else ``tz``: Outlook's "Eastern Standard Time" VTIMEZONE becomes America/New_York."""
    candidate = _named(tzid or tzid_for(tz))
    if candidate is None or isinstance(tz, zoneinfo.ZoneInfo):
        return tz
    year = date.today().year
    try:
        if zone_of(candidate, year).signature(year) == zone_of(tz, year).signature(year):
            return candidate
    except (ValueError, OverflowError):
        pass
    return tz


def frozen(tz: tzinfo, year: int) -> tzinfo:
    """``tz`` itself when it is an IANA zone, else a fast zone with its rules of ``year`` (a
    zone read from a VTIMEZONE may walk its rules from 1601 for every conversion)."""
    if isinstance(tz, (zoneinfo.ZoneInfo, RuleZone, timezone)):
        return tz
    zone = zone_of(tz, year)
    zone = Zone(zone.std_offset, zone.dst_delta, zone.to_dst, zone.to_std, tzid_for(tz), zone.dst_name)
    if zone.to_dst is None:
        return timezone(timedelta(minutes=zone.std_offset), zone.std_name)
    return RuleZone(zone)


def _named(name: str) -> Optional[tzinfo]:
    if not name:
        return None
    key = WINDOWS_TO_OLSON.get(name, name)
    key = _MODERN.get(key, key)
    if key not in _available():
        return None
    return zoneinfo.ZoneInfo(key)


@functools.lru_cache(maxsize=1)
def _available() -> frozenset:
    return frozenset(zoneinfo.available_timezones())


#: where many zones share rules, the one most people mean (then Windows' canonical zones)
_FIRST = ("UTC", "Europe/London", "Europe/Berlin", "Europe/Helsinki", "Europe/Moscow", "America/New_York",
          "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles", "America/Anchorage",
          "Pacific/Honolulu", "America/Sao_Paulo", "America/Mexico_City", "Asia/Dubai", "Asia/Kolkata",
          "Asia/Shanghai", "Asia/Singapore", "Asia/Tokyo", "Asia/Jakarta", "Africa/Johannesburg",
          "Africa/Lagos", "Australia/Sydney", "Australia/Brisbane", "Australia/Perth", "Pacific/Auckland")


def _preference(key: str) -> tuple:
    """The common zones, Windows' canonical ones, Area/City names, then the rest (Etc/, legacy)."""
    return (_FIRST.index(key) if key in _FIRST else len(_FIRST),key not in _OLSON_TO_WINDOWS or key in _MODERN or key.startswith("Etc/"),
            "/" not in key or key.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/")), key)


@functools.lru_cache(maxsize=2)
def _by_signature(year: int) -> dict:
    """signature -> the preferred IANA key having it, over every zone (about 0.5 s, once a year)."""
    table: dict = {}
    for key in sorted(_available(), key=_preference):
        try:
            sig = zone_of(zoneinfo.ZoneInfo(key), year).signature(year)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            continue
        table.setdefault(sig, key)
    return table


class RuleZone(tzinfo):
    """A zone that follows a blob's yearly rule in every year (no IANA zone matched it)."""

    def __init__(self, zone: Zone):
        self.zone = zone
        self.name = zone.std_name or f"UTC{zone.std_offset:+d}min"

    def __repr__(self):
        return f"RuleZone({self.zone!r})"

    def __eq__(self, other):
        return isinstance(other, RuleZone) and other.zone == self.zone

    def __hash__(self):
        return hash(self.zone)

    def _in_dst(self, dt: datetime) -> bool:
        z = self.zone
        if dt is None or z.to_dst is None:
            return False
        naive = dt.replace(tzinfo=None)
        start, end = z.to_dst.on(naive.year), z.to_std.on(naive.year)
        # the end is in daylight time: compare on the standard clock
        end -= timedelta(minutes=z.dst_delta)
        if start < end:
            return start <= naive < end
        return naive >= start or naive < end

    def utcoffset(self, dt):
        return timedelta(minutes=self.zone.std_offset) + self.dst(dt)

    def dst(self, dt):
        return timedelta(minutes=self.zone.dst_delta if self._in_dst(dt) else 0)

    def tzname(self, dt):
        return (self.zone.dst_name or self.name) if self._in_dst(dt) else self.name

    def fromutc(self, dt):
        std = (dt + timedelta(minutes=self.zone.std_offset)).replace(tzinfo=self)
        return std + self.dst(std)


# -- VTIMEZONE -----------------------------------------------------------------------------------------

def _hhmm(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


def _observance(kind: str, start: datetime, before: int, after: int, rule: Optional[Rule], name: str):
    part = icalendar.TimezoneDaylight() if kind == "DAYLIGHT" else icalendar.TimezoneStandard()
    part.add("DTSTART", start)
    if name:
        part.add("TZNAME", name)
    part.add("TZOFFSETFROM", _hhmm(before))
    part.add("TZOFFSETTO", _hhmm(after))
    if rule is not None:
        byday = ("-1" if rule.week == 5 else str(rule.week)) + ("SU", "MO", "TU", "WE", "TH", "FR", "SA")[rule.weekday]
        part.add("RRULE", {"FREQ": "YEARLY", "BYMONTH": rule.month, "BYDAY": byday})
    return part


def vtimezone(tz: tzinfo, year: int) -> icalendar.Timezone:
    """A VTIMEZONE for ``tz`` with the rules of ``year`` (see the module's invariants)."""
    zone = zone_of(tz, year)
    vtz = icalendar.Timezone()
    vtz.add("TZID", tzid_for(tz))
    abbrev_std = tz.tzname(datetime(year, 1, 1)) if not isinstance(tz, RuleZone) else zone.std_name
    if zone.to_dst is None:
        vtz.add_component(_observance("STANDARD", datetime(1970, 1, 1), zone.std_offset, zone.std_offset,
                                      None, abbrev_std or ""))
        return vtz
    dst_offset = zone.std_offset + zone.dst_delta
    names = {}
    if not isinstance(tz, RuleZone):
        for rule in (zone.to_dst, zone.to_std):
            names[rule] = tz.tzname((rule.on(year) + timedelta(hours=2)).replace(tzinfo=tz))
    daylight = _observance("DAYLIGHT", zone.to_dst.on(1970), zone.std_offset, dst_offset, zone.to_dst,
                           names.get(zone.to_dst) or zone.dst_name)
    standard = _observance("STANDARD", zone.to_std.on(1970), dst_offset, zone.std_offset, zone.to_std,
                           names.get(zone.to_std) or zone.std_name)
    vtz.add_component(standard)
    vtz.add_component(daylight)
    return vtz
