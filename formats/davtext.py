"""The one comparison the store makes of calendar objects and vCards: whether two texts are the
same object but for what a client's copy changes (its UID and the stamps a writer sets).

Thunderbird's copy and paste of an event, or a phone's "duplicate", writes the object again
under a new UID; comparing the rest of the text recognises it as a copy of a deleted one
(store/dav.py restores that one).  Pure text: unfolded lines (RFC 5545 §3.1, RFC 6350 §3.2),
compared as a sorted list so property order does not matter.
"""

from __future__ import annotations

import re

#: properties a copy changes or a writer stamps: not part of what the object says
_VOLATILE = re.compile(r"^(UID|DTSTAMP|CREATED|LAST-MODIFIED|SEQUENCE|REV|PRODID|X-MOZ-[A-Z0-9-]+|"
                       r"X-LIC-ERROR)[;:]", re.I)
_FOLD = re.compile(r"\r?\n[ \t]")


_NAMED = re.compile(r"^(SUMMARY|FN|DESCRIPTION)[;:].*\S", re.I | re.M)


def content_key(text: str) -> str:
    """What ``text`` says but for its UID and stamps, in a form to compare for equality; ""
    for an object that says too little to be told from another (no SUMMARY, FN or
    DESCRIPTION with text): such objects are never taken for copies."""
    lines = (line.strip() for line in _FOLD.sub("", text or "").splitlines())
    key = "\n".join(sorted(line for line in lines if line and not _VOLATILE.match(line)))
    return key if _NAMED.search(key) else ""
