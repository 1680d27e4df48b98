"""iCalendar and vCard text -> store rows, outside a DAV request (``haven dav import``).

Radicale's own checks and splitting are used (``radicale.app.put.prepare``, the code behind a
PUT of a whole collection), so an item imported here is stored exactly as if a client had
PUT it: the same UID handling, the same ETag, the same time bounds.
"""

from __future__ import annotations

import re

from radicale import item as radicale_item
from radicale.app.put import prepare

from gateways.dav import vtimezone
from gateways.dav.storage import href_for, check_kind, new_item
from store.interfaces import DAV_KINDS

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
                  max_occurrences: int = 10000) -> list:
    """Radicale items (prepared: UID, ETag, time range computed) for every object in ``text``;
    events sharing a UID (a recurrence and its exceptions) stay one item.  Raises ValueError
    with the reason for text that is not valid iCalendar/vCard or does not fit the collection."""
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
    items, _tag, _whole, _props, exc_info = prepare(
        components, "/" + collection_path.strip("/") + "/", content_type, True, False, max_item_size,
        max_occurrences, tag=tag, write_whole_collection=True)
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
