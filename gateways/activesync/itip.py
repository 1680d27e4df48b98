"""Which part of a message is an iTIP message (RFC 6047: an invitation, a cancellation, a reply):
read by mailitem.py for every message (cheaply, from its structure) and by meeting.py, which
parses it (and which mailitem.py loads only for a message that has one)."""

from __future__ import annotations

from typing import Optional

#: the types of an iTIP part
CALENDAR_TYPES = frozenset({("text", "calendar"), ("application", "ics")})


def _leaves(structure: dict):
    parts = structure.get("parts")
    if parts:
        for part in parts:
            yield from _leaves(part)
    else:
        yield structure


def calendar_part(structure: dict) -> Optional[dict]:
    """The first ``text/calendar`` or ``application/ics`` leaf (not inside an attached message)."""
    for part in _leaves(structure or {}):
        if (part.get("type"), part.get("subtype")) in CALENDAR_TYPES:
            return part
    return None
