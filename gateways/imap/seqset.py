"""IMAP sequence sets (RFC 3501 §9 ``sequence-set``) and UID sets.

A :class:`SequenceSet` keeps the ranges as sent, ``None`` standing for ``*``; it is resolved
against a mailbox only when used, because ``*`` means "the largest number in use" (RFC 3501
§6.4.8: ``559:*`` always includes the last message, even when 559 is above it).

``$`` (SEARCHRES, RFC 5182) is not a SequenceSet: reader.py returns searchres.SAVED for it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence


class SeqSetError(ValueError):
    pass


@dataclass(frozen=True)
class SequenceSet:
    ranges: tuple  # ((lo, hi), ...) with ints >= 1 or None for "*"

    @classmethod
    def parse(cls, text: str) -> "SequenceSet":
        ranges = []
        if not text:
            raise SeqSetError("empty sequence set")
        for item in text.split(","):
            lo, sep, hi = item.partition(":")
            a = _number(lo)
            b = _number(hi) if sep else a
            ranges.append((a, b))
        return cls(tuple(ranges))

    @property
    def has_star(self) -> bool:
        return any(a is None or b is None for a, b in self.ranges)

    def _bounds(self, largest: int):
        for a, b in self.ranges:
            a = largest if a is None else a
            b = largest if b is None else b
            yield (a, b) if a <= b else (b, a)

    def seqs(self, count: int) -> list:
        """Message sequence numbers, ascending, de-duplicated.  Raises SeqSetError for an explicit
        number above ``count`` (RFC 3501 §9 seq-number: must exist); ``*`` in an empty mailbox
        selects nothing."""
        out = set()
        for (a, b), raw in zip(self._bounds(count), self.ranges):
            if None in raw:
                if count == 0:
                    continue
                b = min(b, count)  # "10:*" in a 5-message mailbox is 5 (RFC 3501 §6.4.8)
            if b > count:
                raise SeqSetError("message sequence number out of range")
            out.update(range(max(a, 1), b + 1))
        return sorted(out)

    def uids(self, existing: Sequence[int]) -> list:
        """UIDs among ``existing`` (ascending) inside the set; unknown UIDs are ignored."""
        if not existing:
            return []
        largest = existing[-1]
        out: list = []
        bounds = sorted(self._bounds(largest))
        last = 0
        for a, b in bounds:
            a = max(a, last + 1)
            if a > b:
                continue
            i = bisect_left(existing, a)
            j = bisect_right(existing, b)
            out.extend(existing[i:j])
            last = b
        return out

    def contains(self, n: int, largest: int) -> bool:
        return any(a <= n <= b for a, b in self._bounds(largest))

    def numbers(self) -> list:
        """The explicit numbers of a set without ``*`` (e.g. QRESYNC known-uids)."""
        out = set()
        for a, b in self._bounds(0):
            if a < 1:
                raise SeqSetError("'*' not allowed here")
            out.update(range(a, b + 1))
        return sorted(out)


def _number(text: str) -> Optional[int]:
    if text == "*":
        return None
    if not text.isdigit() or len(text) > 10 or text[0] == "0":
        raise SeqSetError("invalid number in sequence set: %r" % text[:20])
    value = int(text)
    if value > 0xFFFFFFFF:
        raise SeqSetError("number in sequence set too large")
    return value


def format_set(numbers: Iterable[int]) -> str:
    """Compact ``1:3,7,9:10`` form of ascending-or-not numbers (for COPYUID, VANISHED, SEARCH)."""
    return format_pairs(sorted(set(numbers)))


def format_pairs(numbers: Sequence[int]) -> str:
    """Like :func:`format_set` but keeps order (COPYUID: source and destination sets pair up
    element by element, RFC 4315 §3), compressing only ascending consecutive runs."""
    if not numbers:
        return ""
    out = []
    start = prev = numbers[0]
    for n in numbers[1:]:
        if n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else "%d:%d" % (start, prev))
        start = prev = n
    out.append(str(start) if start == prev else "%d:%d" % (start, prev))
    return ",".join(out)
