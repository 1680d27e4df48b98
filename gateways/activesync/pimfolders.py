"""Calendars, address books and task lists as a phone sees them (FolderSync types, [MS-ASCMD]
2.2.3.186.3): the DAV collections of the account, the same rows CalDAV and CardDAV serve.

Invariants
- A collection's ServerId is its folder id (as a string), as for mail folders: a calendar
  renamed over CalDAV stays the same folder on the phone.
- Calendars are type 8 (the default: the collection named ``Calendar``, else the oldest
  calendar) or 13 and hold their events; address books 9 (``Contacts``, else the oldest) or
  14; task lists (collections of kind ``tasks``) 7 (the oldest) or 15 and hold their to-dos.
- A calendar holding to-dos also appears as a task folder of its own: ServerId ``t<folder id>``,
  type 15, its sync state kept under ``folder id + TASK_VIEW`` (sync states are keyed by an
  integer).  With no task list at all, the default calendar's task view is the default Tasks
  folder (type 7, named ``Tasks``), shown even while it holds no to-do, so the phone has
  somewhere to put a new one.  Journals are not shown (EAS has no class for them).
- DisplayName is the collection's ``displayname`` property when a DAV client set one, else
  its name.  Every collection is at the top of the tree (ParentId 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from store.interfaces import EAS_TASK_VIEW

#: the sync state id of a calendar's task view is its folder id plus this (ids stay far below)
TASK_VIEW = EAS_TASK_VIEW
TASK_PREFIX = "t"
DEFAULT_TASKS, DEFAULT_CALENDAR, DEFAULT_CONTACTS = 7, 8, 9
USER_TASKS, USER_CALENDAR, USER_CONTACTS = 15, 13, 14
#: EAS class -> the iCalendar/vCard component its items are
COMPONENT = {"Calendar": "VEVENT", "Tasks": "VTODO", "Contacts": "VCARD"}


@dataclass(frozen=True)
class PimFolder:
    """One calendar, address book or task list (or a calendar's task view) of the phone's tree."""
    server_id: str
    folder: object  # store Folder (the DAV collection's)
    klass: str  # "Calendar", "Contacts", "Tasks"
    type: int
    display_name: str

    @property
    def component(self) -> str:
        return COMPONENT[self.klass]

    @property
    def state_id(self) -> int:
        return state_id(self.server_id)

    @property
    def folder_id(self) -> int:
        return self.folder.id


def state_id(server_id: str) -> Optional[int]:
    """The sync state id of a ServerId (mail or PIM); None for one that names no store folder."""
    sid = server_id or ""
    if sid.startswith(TASK_PREFIX) and sid[1:].isdigit():
        return int(sid[1:]) + TASK_VIEW
    return int(sid) if sid.isdigit() else None


def folder_id(server_id: str) -> Optional[int]:
    """The store folder a ServerId shows (a task view shows its calendar's)."""
    sid = server_id or ""
    if sid.startswith(TASK_PREFIX) and sid[1:].isdigit():
        return int(sid[1:])
    return int(sid) if sid.isdigit() else None


def _name(coll) -> str:
    shown = (coll.props or {}).get("D:displayname")
    return str(shown).strip() if shown and str(shown).strip() else coll.folder.name


def _default(colls: list, name: str):
    named = [c for c in colls if c.folder.name == name]
    return (named or sorted(colls, key=lambda c: c.folder.id) or [None])[0]


def pim_folders(collections, components: dict) -> list:
    """The :class:`PimFolder` of every collection (store ``DavCollection``), given which
    components each holds (``store.dav_components``), in a stable order."""
    by_kind: dict = {"calendar": [], "contacts": [], "tasks": []}
    for coll in sorted(collections, key=lambda c: (c.folder.name, c.folder.id)):
        if not coll.folder.name.startswith("."):
            by_kind.setdefault(coll.folder.kind, []).append(coll)
    out = []
    calendar = _default(by_kind["calendar"], "Calendar")
    contacts = _default(by_kind["contacts"], "Contacts")
    task_list = sorted(by_kind["tasks"], key=lambda c: c.folder.id)[0] if by_kind["tasks"] else None
    for coll in by_kind["calendar"]:
        out.append(PimFolder(str(coll.folder.id), coll.folder, "Calendar",
                             DEFAULT_CALENDAR if coll is calendar else USER_CALENDAR, _name(coll)))
    for coll in by_kind["contacts"]:
        out.append(PimFolder(str(coll.folder.id), coll.folder, "Contacts",
                             DEFAULT_CONTACTS if coll is contacts else USER_CONTACTS, _name(coll)))
    for coll in by_kind["tasks"]:
        out.append(PimFolder(str(coll.folder.id), coll.folder, "Tasks",
                             DEFAULT_TASKS if coll is task_list else USER_TASKS, _name(coll)))
    for coll in by_kind["calendar"]:
        default_view = task_list is None and coll is calendar
        if default_view or "VTODO" in components.get(coll.folder.id, ()):
            out.append(PimFolder(TASK_PREFIX + str(coll.folder.id), coll.folder, "Tasks",
                                 DEFAULT_TASKS if default_view else USER_TASKS,
                                 "Tasks" if default_view else _name(coll)))
    return out


def views(folders) -> dict:
    """ServerId -> :class:`PimFolder` of every calendar, address book and task list among
    ``folders`` (store Folder records of any kind), and of every calendar's task view, without
    FolderSync's types and names: what Sync, Ping and GetItemEstimate need to know of a ServerId
    (its folder and class), from the one folder listing they read anyway."""
    out = {}
    for f in folders:
        klass = _CLASS.get(f.kind)
        if klass is None or f.name.startswith("."):
            continue
        out[str(f.id)] = PimFolder(str(f.id), f, klass, 0, f.name)
        if f.kind == "calendar":
            out[TASK_PREFIX + str(f.id)] = PimFolder(TASK_PREFIX + str(f.id), f, "Tasks", 0, f.name)
    return out


_CLASS = {"calendar": "Calendar", "contacts": "Contacts", "tasks": "Tasks"}


async def collections(store, account_id: int) -> tuple:
    """``(ServerId -> mail Folder, ServerId -> PimFolder (:func:`views`))`` of the account, from
    one folder listing: what Sync, Ping, GetItemEstimate and the folder commands look ids up in."""
    every = await store.list_folders(account_id, None)
    return {str(f.id): f for f in every if f.kind == "mail"}, views(every)


async def load(store, account_id: int) -> dict:
    """ServerId -> :class:`PimFolder` of the account, as it is now (two queries)."""
    collections = await store.list_dav_collections(account_id)
    components = await store.dav_components(account_id)
    return {p.server_id: p for p in pim_folders(collections, components)}
