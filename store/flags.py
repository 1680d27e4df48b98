"""How message flags are stored: system flags in a bitmask (``sysflags``), keywords in a
space-separated string (``keywords``), so STATUS UNSEEN and similar counts are SQL aggregates.

Pure functions, no SQL; flags are spelled as :mod:`store.interfaces` says.
"""

from __future__ import annotations

import re
from typing import Iterable

from store import errors
from store.interfaces import SYSTEM_FLAGS

SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16
_BITS = {"\\seen": SEEN, "\\answered": ANSWERED, "\\flagged": FLAGGED, "\\deleted": DELETED, "\\draft": DRAFT}
_NAMES = {bit: name for name, bit in zip(SYSTEM_FLAGS, (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT))}
# RFC 3501 §9: flag-keyword = atom; atom excludes ( ) { SP CTL % * " \ ]
_KEYWORD = re.compile(r'^[^(){ %*"\\\]\x00-\x1f\x7f]+$')
MAX_KEYWORDS_LEN = 2000


def encode_flags(flags: Iterable[str]) -> tuple[int, list]:
    bits, keywords = 0, []
    for flag in flags:
        lower = flag.lower()
        if lower in _BITS:
            bits |= _BITS[lower]
        elif lower == "\\recent":
            continue  # session flag, never stored (RFC 3501 §2.3.2)
        elif flag.startswith("\\") or not _KEYWORD.match(flag):
            raise errors.InvalidInput(f"invalid flag {flag!r}")
        elif flag not in keywords:
            keywords.append(flag)
    return bits, keywords


#: (sysflags, keywords) -> flags: a mailbox has few distinct combinations, and SELECT and FETCH
#: of thousands of messages then share one frozenset each instead of building it per row
_FLAG_SETS: dict = {}


def decode_flags(bits: int, keywords: str) -> frozenset:
    key = (bits, keywords)
    flags = _FLAG_SETS.get(key)
    if flags is None:
        out = {name for bit, name in _NAMES.items() if bits & bit}
        if keywords:
            out.update(keywords.split(" "))
        flags = frozenset(out)
        if len(_FLAG_SETS) >= 4096:
            _FLAG_SETS.clear()
        _FLAG_SETS[key] = flags
    return flags
