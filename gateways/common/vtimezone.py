"""One parsed time zone per distinct VTIMEZONE, shared by every request.

Clients send the full VTIMEZONE of Europe/Berlin (or wherever) with every event.  vobject turns
each one into a fresh ``dateutil.tz.tzical`` object, and every local time then converted to UTC
(Radicale does it for the time bounds of each PUT, and for every time-range match) walks that
zone's DST rules from their start in the 1980s, with the rule caches empty again: measured, 80 %
of a PUT's CPU went there.  Keyed on the text dateutil parses, the zone object (and the rule
caches inside it) is built once.  dateutil's zone objects are immutable after parsing and guard
their caches with locks, so sharing them between Radicale's worker threads is safe.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict

from dateutil import tz
from vobject import icalendar
from vobject.base import Component, foldOneLine

MAX_ZONES = 256
_GOOD_LINES = ("rdate", "rrule", "dtstart", "tzname", "tzoffsetfrom", "tzoffsetto", "tzid")

_zones: "OrderedDict[tuple, object]" = OrderedDict()
_lock = threading.Lock()


def _text(component) -> str:
    """The VTIMEZONE as vobject hands it to dateutil (vobject's own filter of the lines
    dateutil can parse)."""
    buffer = io.StringIO()

    def write(obj):
        if isinstance(obj, Component):
            foldOneLine(buffer, "BEGIN:" + obj.name)
            for child in obj.lines():
                if child.name.lower() in _GOOD_LINES:
                    child.serialize(buffer, 75, validate=False)
            for comp in obj.components():
                write(comp)
            foldOneLine(buffer, "END:" + obj.name)
    write(component)
    return buffer.getvalue()


def _key(component) -> tuple:
    """What identifies a VTIMEZONE for the cache, without serializing it (serializing every
    zone of every PUT just to look it up cost more than the lookup saved): the same lines
    dateutil is given, as (name, value, parameters), recursively.  Two spellings of one zone
    (native values or text) may get two entries; two different zones never share one."""
    lines = tuple((child.name, child.isNative, str(child.value),
                   tuple(sorted((k, tuple(v)) for k, v in child.params.items())))
                  for child in component.lines() if child.name.lower() in _GOOD_LINES)
    return (component.name, lines, tuple(_key(c) for c in component.components()))


def shared_tzinfo(component):
    if len(component.contents) == 0:
        return None
    key = _key(component)
    with _lock:
        zone = _zones.get(key)
        if zone is not None:
            _zones.move_to_end(key)
            return zone
    zone = tz.tzical(io.StringIO(_text(component))).get()
    with _lock:
        _zones[key] = zone
        while len(_zones) > MAX_ZONES:
            _zones.popitem(last=False)
    return zone


def install() -> None:
    """Make vobject use the shared zones (idempotent)."""
    cls = icalendar.TimezoneComponent
    if getattr(cls, "_haven_shared_zones", False):
        return
    cls.tzinfo = property(shared_tzinfo, cls.settzinfo)
    cls.gettzinfo = shared_tzinfo
    cls._haven_shared_zones = True
