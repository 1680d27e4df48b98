"""What one Sync response sends for a mail collection ([MS-ASCMD] 2.2.1.21): which messages go
as Delete, SoftDelete, Change and Add, within the window, and the state the phone holds after.

Pure: the folder's live messages (``MessageMeta``), the device's state in, a :class:`Plan` out.

Invariants
- Deletes come from the ids the device holds, not from tombstones: a message the device holds
  that is no longer live (expunged, moved away, purged, even restored under a new UID) is a
  Delete, so no purge ever strands one on a phone.
- A held message that leaves the time window (FilterType) is a SoftDelete: gone from the phone,
  still on the server.  Messages outside the window are never added.
- Order within the window: deletes, then flag changes (oldest modseq first), then adds, newest
  first (a phone's first screen is today's mail).  ``more`` is set when anything is left over.
- Changes are the held messages whose modseq is above the one the device reached; the modseq
  reached only moves past changes that were all sent.  Several messages changed by one command
  share a modseq: a window never splits such a group (the first group is sent whole even when
  it is larger than the window, so a sync always makes progress).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: FilterType ([MS-ASCMD] 2.2.3.74.4) -> seconds back from now; 0 (and unknown) = everything
FILTER_SECONDS = {1: 86400, 2: 3 * 86400, 3: 7 * 86400, 4: 14 * 86400, 5: 31 * 86400, 6: 92 * 86400,
                  7: 183 * 86400}
#: WindowSize: absent = 100; 0 or above 512 = 512 ([MS-ASCMD] 2.2.3.199.2)
DEFAULT_WINDOW, MAX_WINDOW = 100, 512


def window_size(value) -> int:
    if value is None or value == "":
        return DEFAULT_WINDOW
    try:
        n = int(value)
    except (TypeError, ValueError):
        return DEFAULT_WINDOW
    return MAX_WINDOW if n <= 0 or n > MAX_WINDOW else n


def cutoff(filter_type, now: float) -> int:
    """The oldest internal date inside the window (0: no window)."""
    try:
        seconds = FILTER_SECONDS.get(int(filter_type or 0))
    except (TypeError, ValueError):
        seconds = None
    return int(now - seconds) if seconds else 0


@dataclass(frozen=True)
class Unchanged:
    """An item as the device's own change left it: live, never a Change (modseq 0)."""
    uid: int
    modseq: int
    internaldate: int


@dataclass
class Plan:
    deletes: list = field(default_factory=list)  # UIDs
    soft_deletes: list = field(default_factory=list)  # UIDs
    changes: list = field(default_factory=list)  # MessageMeta
    adds: list = field(default_factory=list)  # MessageMeta
    more: bool = False
    held: set = field(default_factory=set)  # what the device holds once it has this response
    modseq: int = 0  # the modseq the device has reached then

    @property
    def count(self) -> int:
        return len(self.deletes) + len(self.soft_deletes) + len(self.changes) + len(self.adds)


def plan(live: list, held: set, reached: int, highest: int, window: int, oldest: int = 0) -> Plan:
    """``live``: the folder's messages (MessageMeta) now, ``highest`` its modseq when listed;
    ``held``: the UIDs the device holds, ``reached``: the modseq it has seen changes up to;
    ``oldest``: :func:`cutoff` (0: everything)."""
    out = Plan(held=set(held))
    by_uid = {m.uid: m for m in live}
    left = window
    gone = sorted(u for u in held if u not in by_uid)
    leaving = sorted(u for u in held if u in by_uid and by_uid[u].internaldate < oldest)
    for uids, target in ((gone, out.deletes), (leaving, out.soft_deletes)):
        take = uids[:max(left, 0)]
        target.extend(take)
        out.held.difference_update(take)
        left -= len(take)
    if len(gone) + len(leaving) > window:
        out.more = True
        out.modseq = reached
        return out
    changed = sorted((m for m in live if m.uid in held and m.modseq > reached and m.internaldate >= oldest),
                     key=lambda m: (m.modseq, m.uid))
    sent_all_changes = True
    i = 0
    while i < len(changed):
        group_modseq = changed[i].modseq
        j = i
        while j < len(changed) and changed[j].modseq == group_modseq:
            j += 1
        group = changed[i:j]
        if len(group) > left and (out.changes or out.count):
            sent_all_changes = False
            break
        out.changes.extend(group)
        left -= len(group)
        i = j
    if sent_all_changes:
        out.modseq = max(reached, highest)
    else:
        out.modseq = out.changes[-1].modseq if out.changes else reached
        out.more = True
    candidates = sorted((m for m in live if m.uid not in held and m.internaldate >= oldest),
                        key=lambda m: (m.internaldate, m.uid), reverse=True)
    if left > 0:
        out.adds = candidates[:left]
        out.held.update(m.uid for m in out.adds)
    if len(candidates) > len(out.adds):
        out.more = True
    return out
