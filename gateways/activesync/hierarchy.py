"""The folder hierarchy a phone sees (FolderSync, [MS-ASCMD] 2.2.1.5) and what changed in it.

Invariants
- A folder's ServerId is its store id (as a string), so it survives renames and moves in the
  tree; a folder deleted and made again under the same name is a new folder to the phone.
- Types ([MS-ASCMD] 2.2.3.186.3): INBOX 2, the ``\\Drafts`` folder 3, ``\\Trash`` 4,
  ``\\Sent`` 5, a virtual, always empty Outbox 6 (ServerId ``outbox``: phones expect one, and
  Haven sends at once, so nothing waits in it), every other mail folder 12 (Junk and Archive
  too: EAS has no type for them).  Only the oldest folder of a special use gets its type; a
  second one is an ordinary folder (a phone wants one of each).
- ParentId is the ServerId of the folder named by the path above it, ``0`` at the top, and at
  the top too when that level has no folder (a name like ``a/b`` without an ``a``).
- DisplayName is the last level of the name.
"""

from __future__ import annotations

from dataclasses import dataclass

from store.interfaces import DELIMITER, INBOX

INBOX_TYPE, DRAFTS, TRASH, SENT, OUTBOX, USER_MAIL = 2, 3, 4, 5, 6, 12
_SPECIAL = {"\\Drafts": DRAFTS, "\\Trash": TRASH, "\\Sent": SENT}
OUTBOX_ID = "outbox"
ROOT = "0"


@dataclass(frozen=True)
class Entry:
    """One folder as FolderSync names it (the ``Add``/``Update`` children)."""
    server_id: str
    parent_id: str
    display_name: str
    type: int


def hierarchy(folders) -> list:
    """The :class:`Entry` of every mail folder of ``folders`` (store ``Folder`` records), and
    the Outbox, in a stable order (the phone shows its own)."""
    mail = sorted((f for f in folders if f.kind == "mail"), key=lambda f: (f.name != INBOX, f.name, f.id))
    by_name = {f.name: str(f.id) for f in mail}
    special = {}  # the oldest folder of each use gets its type
    for f in sorted(mail, key=lambda f: f.id):
        if f.special_use in _SPECIAL and f.name != INBOX:
            special.setdefault(f.special_use, f.id)
    out = []
    for f in mail:
        kind = USER_MAIL
        if f.name == INBOX:
            kind = INBOX_TYPE
        elif special.get(f.special_use) == f.id:
            kind = _SPECIAL[f.special_use]
        parent, _sep, leaf = f.name.rpartition(DELIMITER)
        out.append(Entry(str(f.id), by_name.get(parent, ROOT) if parent else ROOT, leaf, kind))
    out.append(Entry(OUTBOX_ID, ROOT, "Outbox", OUTBOX))
    return out


def changes(held: dict, now: list) -> tuple:
    """``(adds, updates, deleted server ids)`` that take a phone holding ``held`` (ServerId ->
    Entry, the snapshot of its last FolderSync) to ``now``.  Parents come before their
    children among the adds (a phone files a folder under one it knows)."""
    current = {e.server_id: e for e in now}
    adds = [e for e in now if e.server_id not in held]
    updates = [e for e in now if e.server_id in held and held[e.server_id] != e]
    deletes = sorted(sid for sid in held if sid not in current)
    order = {e.server_id: _depth(e, current) for e in adds}
    adds.sort(key=lambda e: order[e.server_id])
    return adds, updates, deletes


def _depth(entry: Entry, by_id: dict) -> int:
    depth, seen = 0, set()
    while entry.parent_id != ROOT and entry.parent_id in by_id and entry.server_id not in seen:
        seen.add(entry.server_id)
        entry = by_id[entry.parent_id]
        depth += 1
    return depth
