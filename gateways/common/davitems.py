"""iCalendar and vCard text -> store rows, for every gateway that writes calendar objects and
vCards: the CalDAV/CardDAV gateway (a PUT, through Radicale's storage plugin), ActiveSync (a
phone's Add or Change, converted to text first) and ``haven dav import``.

Radicale's own checks and splitting are used (``radicale.app.put.prepare``, the code behind a
PUT of a whole collection), so an item written from here is stored exactly as if a client had
PUT it: the same UID handling, the same ETag, the same time bounds, the same ``[http]
max_item_size`` and ``max_occurrences`` limits.  The gateways import this module; they never
import each other.
"""

from __future__ import annotations

import datetime
import re
import uuid

from radicale import item as radicale_item
from radicale import pathutils
from radicale.app.put import prepare

from gateways.common import vtimezone
from store.interfaces import DAV_KINDS, NewItem

#: iCalendar nests VCALENDAR > VEVENT > VALARM (and VTIMEZONE > STANDARD); vobject reads
#: components recursively, so a body nested without end would fail deep inside it
MAX_COMPONENT_DEPTH = 16
#: a BEGIN or END line as vobject reads one: any line end (CRLF, LF, CR), an optional group
#: (``x.BEGIN``), parameters (``BEGIN;X=1:``)
_BEGIN_END = re.compile(rb"^(?:[A-Za-z0-9-]+\.)?(BEGIN|END)[ \t]*[:;]", re.M | re.I)
#: RFC 5545 §3.1 folding as vobject undoes it: a line end, then one blank
_FOLD = re.compile(rb"(?:\r\n|\r|\n)[ \t]")


def check_component_nesting(body: bytes):
    """The reason to refuse a calendar object or vCard whose BEGIN/END components nest more
    than MAX_COMPONENT_DEPTH deep, or None (a line scan of the unfolded lines, so a folded
    ``BEGIN`` counts too; vobject checks everything else)."""
    depth = 0
    body = _FOLD.sub(b"", body).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    for m in _BEGIN_END.finditer(body):
        depth += 1 if m.group(1).upper() == b"BEGIN" else -1
        if depth > MAX_COMPONENT_DEPTH:
            return f"components nested more than {MAX_COMPONENT_DEPTH} deep"
    return None


def parse_objects(text: str, kind: str, collection_path: str, max_item_size: int = 2097152,
                  max_occurrences: int = 10000, whole: bool = True) -> list:
    """Radicale items (prepared: UID, ETag, time range computed) for every object in ``text``;
    events sharing a UID (a recurrence and its exceptions) stay one item.  Raises ValueError
    with the reason for text that is not valid iCalendar/vCard or does not fit the collection.
    ``whole``: as a PUT of a whole collection (any number of objects, split by UID; Radicale
    then rebuilds each object and its VTIMEZONEs from the parsed zones, which costs ~30 ms an
    event), else as a PUT of one item (one object, its text's own VTIMEZONEs kept)."""
    tag = DAV_KINDS[kind]
    vtimezone.install()
    reason = check_component_nesting(text.encode("utf-8", "replace"))
    if reason:
        raise ValueError(reason)
    try:
        components = radicale_item.read_components(text)
    except RecursionError:  # belt and braces: the nesting check above keeps vobject far from it
        raise ValueError("components nested too deeply") from None
    except Exception as e:
        raise ValueError(f"not valid {'iCalendar' if tag == 'VCALENDAR' else 'vCard'}: {e}") from None
    if not components:
        raise ValueError("no calendar object or vCard found")
    content_type = "text/calendar" if tag == "VCALENDAR" else "text/vcard"
    path = "/" + collection_path.strip("/") + ("/" if whole else "/item")
    items, _tag, _whole, _props, exc_info = prepare(
        components, path, content_type, whole, not whole, max_item_size, max_occurrences, tag=tag,
        write_whole_collection=whole)
    if exc_info:
        if exc_info[0] is OverflowError:
            raise ValueError(f"an object is larger than {max_item_size} bytes")
        raise ValueError(str(exc_info[1]))
    items = list(items)
    for item in items:
        check_kind(item, kind)
    return items


def rows_for(items: list, existing_by_uid: dict, max_occurrences: int = 10000) -> list:
    """(href, store.interfaces.NewItem) per item: an item whose UID is already stored overwrites it."""
    used = set(existing_by_uid.values())
    out = []
    for item in items:
        href = existing_by_uid.get(item.uid) or href_for(item, used)
        out.append((href, new_item(href, item, max_occurrences)))
    return out


def item_for(text: str, kind: str, collection_path: str, href: str = "", max_item_size: int = 2097152,
             max_occurrences: int = 10000) -> NewItem:
    """The store row of ONE calendar object or vCard (a phone's Add or Change): ``href`` when
    given (the item's own name, kept on a Change), else ``<UID>.ics`` / ``<UID>.vcf`` as
    CalDAV clients name theirs.  Raises ValueError for text that is not one valid object of
    the collection's kind, or exceeds a limit."""
    items = parse_objects(text, kind, collection_path, max_item_size, max_occurrences, whole=False)
    if len(items) != 1:
        raise ValueError(f"{len(items)} objects where one was expected")
    return new_item(href or href_for(items[0], set()), items[0], max_occurrences)


_FREQ_SECONDS = {"SECONDLY": 1, "MINUTELY": 60, "HOURLY": 3600, "DAILY": 86400, "WEEKLY": 7 * 86400,
                 "MONTHLY": 28 * 86400, "YEARLY": 365 * 86400}


def check_recurrence(item: radicale_item.Item, max_occurrences: int) -> None:
    """Bounds what a recurrence can cost a later query (Radicale walks occurrences from DTSTART
    to match a time range, and expands them for ``<expand>``):

    - a rule with UNTIL may produce at most ``max_occurrences`` occurrences (Radicale's own
      check estimates from FREQ alone and misses BYHOUR/BYMINUTE/BYSECOND expansion);
    - an endless rule may produce at most a tenth of that in its first year (1000 with the
      default: a daily event has 365, an hourly one 8760).

    Deliberate deviation: RFC 5545 allows any rule, but no calendar client creates an endless
    event more frequent than that, and one event every second kept a worker busy for minutes.
    Counting stops at the limit, so the check itself is bounded."""
    if item.name != "VCALENDAR" or max_occurrences <= 0:
        return
    per_year = max(1, max_occurrences // 10)
    for component in item.vobject_item.components():
        for rule in component.contents.get("rrule", []):
            parts = dict(p.partition("=")[::2] for p in str(rule.value).upper().split(";") if "=" in p)
            if "COUNT" in parts:
                continue  # Radicale refuses COUNT above max_occurrences
            try:
                interval = max(1, int(parts.get("INTERVAL", "1")))
            except ValueError:
                raise ValueError(f"invalid INTERVAL in recurrence rule {rule.value!r}") from None
            endless = "UNTIL" not in parts
            limit = per_year if endless else max_occurrences
            step = _FREQ_SECONDS.get(parts.get("FREQ", ""), 0) * interval
            if endless and step and 365 * 86400 / step > limit:
                raise ValueError(f"the endless recurrence rule {rule.value!r} repeats more than {limit} "
                                 "times a year; give it a COUNT or UNTIL")
            if _occurrences_exceed(component, limit, one_year=endless):
                raise ValueError(f"the recurrence rule {rule.value!r} repeats more than {limit} times"
                                 + (" a year" if endless else ""))


def _occurrences_exceed(component, limit: int, one_year: bool) -> bool:
    try:
        occurrences = iter(component.getrruleset(addRDate=True))
        first = next(occurrences, None)
        if first is None:
            return False
        end = first + datetime.timedelta(days=366)
        for count, when in enumerate(occurrences, start=2):
            if one_year and when >= end:
                return False
            if count > limit:
                return True
    except (ValueError, TypeError, OverflowError) as e:
        raise ValueError(f"cannot interpret the recurrence: {e}") from None
    return False


def check_kind(item: radicale_item.Item, kind: str) -> None:
    """Events and to-dos go into calendars, vCards into address books."""
    want = "VCARD" if DAV_KINDS[kind] == "VADDRESSBOOK" else "VCALENDAR"
    if item.name != want:
        raise ValueError(f"a {item.name or 'component'} does not belong into a {kind} collection")


def new_item(href: str, item: radicale_item.Item, max_occurrences: int = 0):
    """The store's row for a Radicale item (already parsed and checked by Radicale)."""
    check_recurrence(item, max_occurrences)
    start, end = item.time_range
    return NewItem(href=href, uid=item.uid or "", etag=item.etag,
                   component=item.component_name or item.name or "VCARD", data=item.serialize(),
                   dtstart=start, dtend=end)




def href_for(item: radicale_item.Item, used: set) -> str:
    """A resource name for an item of a whole-collection PUT: its UID when that is a safe
    name, a random one otherwise."""
    ext = ".vcf" if item.name == "VCARD" else ".ics"
    uid = item.uid or ""
    name = uid + ext
    if not uid or not pathutils.is_safe_filesystem_path_component(name) or len(name) > 255 or name in used:
        name = str(uuid.uuid4()) + ext
    used.add(name)
    return name
