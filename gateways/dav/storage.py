"""Radicale's storage plugin, backed by Haven's store (``store.dav.DavAccess``).

Radicale calls these methods on its WSGI worker threads; every call is one store transaction
run in the DB pool (``DavAccess``), so nothing here touches the reactor and nothing is cached
between requests: an item written by another path (the CLI, later ActiveSync) is served with
its own ETag and sync token on the next request.

The tree Radicale sees::

    ""                               the root (lists nothing: accounts are not enumerable)
    "<address>"                      the principal of an account (exists when the account does)
    "<address>/<folder>"             a folder of kind calendar, tasks or contacts
    "<address>/<folder>/<href>"      one calendar object or vCard
    "<address>/.deleted-events"      the account's recoverable calendar objects (a calendar)
    "<address>/.deleted-contacts"    the account's recoverable vCards (an address book)
    "<address>/.deleted-*/<id>-<href>"  one of them: the tombstone's id, then its own href

Deliberate limits: collections exist only directly under a principal and are always calendars
or address books (plain WebDAV collections are refused); the principal itself holds no items.

The Deleted views (:class:`DeletedCollection`) are read-only (the rights plugin grants "r",
the WSGI wrapper refuses writes with a reason first).  Their names begin with a dot, which the
store reserves: no real collection can be called so.  An item leaves them when a live item of
its UID is written into a real collection of the account (the store restores it in that
PUT's transaction): a client "copying" an event out of "Deleted events" restores it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from email.utils import formatdate
from typing import Iterable, Iterator, Mapping, Optional

from radicale import item as radicale_item
from radicale import pathutils, storage
from radicale.item import filter as radicale_filter

from gateways.common.davitems import check_kind, href_for, new_item
from store import errors
from store.interfaces import DAV_KINDS, FOLDER_KINDS

log = logging.getLogger("haven.dav")

#: collection tag -> folder kind (a calendar that holds only to-dos is a "tasks" folder)
_KIND_OF_TAG = {"VCALENDAR": "calendar", "VADDRESSBOOK": "contacts"}
#: the JSON of a collection's properties is kept below this many characters
MAX_PROPS = 64 * 1024
SYNC_PREFIX = "urn:haven:sync:"

#: why the current request failed, for the WSGI wrapper's error body (one request per thread)
failure = threading.local()
#: what the current request already knows: the authenticated user and account id (from the
#: front door) and the collections looked up so far (forgotten at every write), so a PUT reads
#: its collection once, not three times
request = threading.local()


def begin_request(user, account_id, uid_hint=None, conditional: bool = False) -> None:
    """``uid_hint``: the UID a PUT body appears to carry; the item lookup then also checks it,
    so Radicale's UID check of a new item needs no second query (a wrong hint only costs
    that query).  ``conditional``: the request has If-Match or If-None-Match (its write is
    then conditional in the store too, see :func:`_seen`)."""
    request.user, request.account_id, request.collections = user, account_id, {}
    request.conditional = conditional
    request.uid_hint, request.uid_taken, request.seen = uid_hint, None, {}
    failure.reason, failure.temporary, failure.precondition = None, False, False


def _forget() -> None:
    request.collections = {}
    request.uid_taken = None


def note_failure(reason: str, temporary: bool = False, precondition: bool = False) -> None:
    """``precondition``: the store refused a conditional write (412, not 400)."""
    failure.reason = reason
    failure.temporary = temporary
    failure.precondition = precondition


def _seen(folder_id: int, href: str) -> Optional[str]:
    """The ETag this request read for the item ("" when it was absent; None when it never
    looked): the condition of its write, so another client's write between Radicale's
    If-Match check and the store's transaction is a Conflict, not a lost update."""
    if not getattr(request, "conditional", False):
        return None  # the client asked for an overwrite whatever is there
    return (getattr(request, "seen", None) or {}).get((folder_id, href))


class _Texts:
    """Lazily loads the text of a listing's items in one query, the first time one is needed
    (a PROPFIND for ETags needs none; a GET of the whole collection needs them all).
    ``load()`` returns {href: text}."""

    def __init__(self, load):
        self._load = load
        self._texts: Optional[dict] = None

    def get(self, href: str) -> str:
        if self._texts is None:
            self._texts = self._load()
        text = self._texts.get(href)
        if text is None:
            raise RuntimeError(f"item {href} disappeared during the request")
        return text


class LazyItem(radicale_item.Item):
    """A stored item whose text is fetched only when something reads it."""

    def __init__(self, texts: _Texts, **kwargs):
        super().__init__(text="", **kwargs)
        self._text = None
        self._texts = texts

    def serialize(self) -> str:
        if self._text is None:
            self._text = self._texts.get(self.href)
        return self._text

    @property
    def vobject_item(self):
        if self._vobject_item is None:
            self.serialize()
        return super().vobject_item


def _http_date(ts: int) -> str:
    return formatdate(ts, usegmt=True)


class Collection(storage.BaseCollection):
    def __init__(self, store: "Storage", path: str, account_id: Optional[int], coll=None):
        self._storage = store
        self._path = path
        self.account_id = account_id
        self.coll = coll  # store.interfaces.DavCollection, None for the root and principals

    # -- identity --------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    @property
    def folder_id(self) -> int:
        return self.coll.folder.id

    @property
    def etag(self) -> str:
        """The CTag: changes with every item and property change (the folder's modseq)."""
        if self.coll is None:
            return '"%s"' % (self._path or "root")
        folder = self.coll.folder
        return '"%d-%d"' % (folder.uidvalidity, folder.highest_modseq)

    @property
    def last_modified(self) -> str:
        if self.coll is None:
            return _http_date(0)
        return _http_date(self._storage.dav.last_modified(self.folder_id))

    # -- properties ------------------------------------------------------------------------
    def get_meta(self, key: Optional[str] = None):
        if self.coll is None:
            meta: dict = {}
        else:
            meta = dict(self.coll.props)
            meta["tag"] = DAV_KINDS[self.coll.folder.kind]
            meta.setdefault("D:displayname", self.coll.folder.name)
            if self.coll.folder.kind == "tasks":
                meta.setdefault("C:supported-calendar-component-set", "VTODO")
        return meta if key is None else meta.get(key)

    def set_meta(self, props: Mapping[str, str]) -> None:
        if self.coll is None:
            raise ValueError("the principal has no properties to change")
        props = dict(props)
        tag = props.pop("tag", None)
        if tag and tag != DAV_KINDS[self.coll.folder.kind]:
            raise ValueError("a collection cannot change between calendar and address book")
        if len(repr(props)) > MAX_PROPS:
            raise ValueError("too many or too large properties")
        _forget()
        self._storage.dav.set_props(self.account_id, self.folder_id, props)

    # -- items -----------------------------------------------------------------------------
    def _item(self, stored, texts: Optional[_Texts] = None) -> radicale_item.Item:
        is_card = stored.component == "VCARD"
        fields = dict(collection=self, href=stored.href, last_modified=_http_date(stored.updated_at),
                      etag=stored.etag, uid=None if stored.uid.startswith("sha256:") else stored.uid,
                      name="VCARD" if is_card else "VCALENDAR",
                      component_name="" if is_card else stored.component,
                      time_range=(stored.dtstart, stored.dtend))
        if stored.data is not None:
            return radicale_item.Item(text=stored.data, **fields)
        return LazyItem(texts, **fields)

    def get_multi(self, hrefs: Iterable[str]):
        hrefs = list(hrefs)
        found = {i.href: i for i in self._storage.dav.items(self.folder_id, hrefs)}
        for href in hrefs:
            stored = found.get(href)
            yield href, (self._item(stored) if stored is not None else None)

    def get_all(self) -> Iterator[radicale_item.Item]:
        if self.coll is None:
            return
        listing = self._storage.dav.all_items(self.folder_id, with_data=False)
        dav, folder_id, hrefs = self._storage.dav, self.folder_id, [i.href for i in listing]
        texts = _Texts(lambda: {i.href: i.data for i in dav.items(folder_id, hrefs)})
        for stored in listing:
            yield self._item(stored, texts)

    def get_filtered(self, filters):
        """The time range and component of a calendar-query are answered from the indexed
        bounds; Radicale then applies the full filter to what comes back (``simple`` False)."""
        if self.coll is None or not self.tag:
            return
        tag, start, end, simple = radicale_filter.simplify_prefilters(filters, self.tag)
        for stored in self._storage.dav.filtered(self.folder_id, tag, start, end):
            item = self._item(stored)
            istart, iend = stored.dtstart, stored.dtend
            yield item, simple and (start <= istart or iend <= end)

    def has_uid(self, uid: str) -> bool:
        if self.coll is None:
            return False
        known = getattr(request, "uid_taken", None)
        if known is not None and known[:2] == (self.folder_id, uid):
            return known[2]
        return self._storage.dav.has_uid(self.folder_id, uid)

    def upload(self, href: str, item: radicale_item.Item):
        if self.coll is None:
            raise ValueError("items live in a calendar or address book, not here")
        try:
            check_kind(item, self.coll.folder.kind)
            new = new_item(href, item, self._storage.max_occurrences)
        except ValueError as e:
            note_failure(str(e))
            raise
        _forget()
        try:
            stored, _replaced = self._storage.dav.put(self.account_id, self.folder_id, new, _seen(self.folder_id, href))
        except errors.Conflict as e:
            note_failure(str(e), precondition=True)
            raise ValueError(str(e)) from None
        except (errors.Exists, errors.InvalidInput, errors.NotFound) as e:
            note_failure(str(e))
            raise ValueError(str(e)) from None
        except errors.TemporaryFailure as e:
            note_failure(str(e), temporary=True)
            raise
        return self._item(stored), None

    def delete(self, href: Optional[str] = None) -> None:
        if self.coll is None:
            raise ValueError("a principal cannot be deleted")
        _forget()
        if href is None:
            self._storage.dav.delete_collection(self.account_id, self.folder_id)
        else:
            try:
                self._storage.dav.delete(self.account_id, self.folder_id, href, _seen(self.folder_id, href))
            except errors.Conflict as e:
                note_failure(str(e), precondition=True)
                raise ValueError(str(e)) from None

    # -- sync (RFC 6578) -------------------------------------------------------------------
    def sync(self, old_token: str = ""):
        if self.coll is None:
            raise ValueError("not a calendar or address book")
        folder = self.coll.folder
        since = 0
        if old_token:
            try:
                prefix, uidvalidity, modseq = old_token.rsplit(":", 2)
                uidvalidity, since = int(uidvalidity), int(modseq)
            except ValueError:
                raise ValueError(f"malformed sync token {old_token!r}") from None
            if prefix + ":" != SYNC_PREFIX or uidvalidity != folder.uidvalidity:
                raise ValueError(f"sync token {old_token!r} is not of this collection")
        current, purged, hrefs = self._storage.dav.changes_since(self.folder_id, since)
        if old_token and not (purged <= since <= current):
            raise ValueError(f"sync token {old_token!r} is too old or unknown")
        token = f"{SYNC_PREFIX}{folder.uidvalidity}:{current}"
        if not old_token:
            hrefs = [i.href for i in self._storage.dav.all_items(self.folder_id, with_data=False)]
        return token, hrefs


#: the Deleted views: path segment -> the kind of deleted items it holds ([http] deleted_events,
#: deleted_contacts name them for the user)
DELETED_VIEWS = {".deleted-events": "calendar", ".deleted-contacts": "contacts"}
_DELETED_SYNC = SYNC_PREFIX + "deleted-"
READ_ONLY = ("{name} is read-only: it lists what was deleted.  To get an item back, copy it (or "
              "write it with the same UID) into one of your calendars or address books.")


def _view_href(item_id: int, href: str) -> str:
    # two deleted items of one href (from different collections, or deleted twice) differ by
    # their tombstone id, which stays the same until the purge
    return f"{item_id}-{href}"


def view_id(href: str) -> Optional[int]:
    """The tombstone id of a Deleted view's item name, None when it is not one."""
    head, sep, _ = href.partition("-")
    return int(head) if sep and head.isdigit() and len(head) <= 18 else None


class DeletedCollection(storage.BaseCollection):
    """An account's recoverable calendar objects or vCards as a read-only calendar or address
    book.  Its CTag and sync token come from the store's deleted-items state (RFC 6578): they
    change with every deletion, restore and purge of the account's items of this kind."""

    def __init__(self, store: "Storage", principal: str, account_id: int, segment: str, name: str):
        self._storage, self.account_id, self._name = store, account_id, name
        self._path = f"{principal}/{segment}"
        self.kind = DELETED_VIEWS[segment]
        self._listing: Optional[list] = None
        self._state: Optional[tuple] = None

    @property
    def path(self) -> str:
        return self._path

    def _deleted(self) -> list:
        if self._listing is None:
            self._listing = self._storage.dav.deleted(self.account_id, self.kind)
        return self._listing

    def _changes(self, since: int) -> tuple:
        return self._storage.dav.deleted_changes_since(self.account_id, self.kind, since)

    @property
    def etag(self) -> str:
        if self._state is None:
            self._state = self._changes(2 ** 62)
        return '"deleted-%d"' % self._state[0]

    @property
    def last_modified(self) -> str:
        return _http_date(max((d["deleted_at"] for d in self._deleted()), default=0))

    def get_meta(self, key: Optional[str] = None):
        # RFC 4791 §5.2.3 / RFC 6352 §6.2.1: what the client shows; the component set lets a
        # client offer VTODOs of deleted task lists too
        meta = {"tag": DAV_KINDS[self.kind], "D:displayname": self._name}
        if self.kind == "calendar":
            meta["C:supported-calendar-component-set"] = "VEVENT,VTODO,VJOURNAL"
            meta["C:calendar-description"] = READ_ONLY.format(name=self._name)
        else:
            meta["CR:addressbook-description"] = READ_ONLY.format(name=self._name)
        return meta if key is None else meta.get(key)

    def _refuse(self, what: str):
        note_failure(f"{what}: " + READ_ONLY.format(name=self._name))
        raise ValueError(f"{self._name} is read-only")

    def set_meta(self, props) -> None:
        self._refuse("properties cannot be changed")

    def upload(self, href: str, item):
        self._refuse("nothing can be written here")

    def delete(self, href: Optional[str] = None) -> None:
        self._refuse("nothing can be deleted here")

    def has_uid(self, uid: str) -> bool:
        return False

    def _item(self, deleted: dict, texts: Optional[_Texts] = None) -> radicale_item.Item:
        is_card = deleted["component"] == "VCARD"
        uid = deleted["uid"]
        fields = dict(collection=self, href=_view_href(deleted["id"], deleted["href"]), last_modified=_http_date(deleted["deleted_at"]),
                      etag=deleted["etag"], uid=None if uid.startswith("sha256:") else uid,
                      name="VCARD" if is_card else "VCALENDAR", component_name="" if is_card else deleted["component"],
                      time_range=(deleted["dtstart"], deleted["dtend"]))
        if deleted["data"] is not None:
            return radicale_item.Item(text=deleted["data"], **fields)
        return LazyItem(texts, **fields)

    def _with_text(self, ids) -> dict:
        return {_view_href(d["id"], d["href"]): d for d in self._storage.dav.deleted_items(self.account_id, ids)
                if d["kind"] == self.kind}

    def get_multi(self, hrefs: Iterable[str]):
        hrefs = list(hrefs)
        found = self._with_text([i for i in map(view_id, hrefs) if i is not None])
        for href in hrefs:
            deleted = found.get(href)
            yield href, (self._item(deleted) if deleted is not None else None)

    def get_all(self) -> Iterator[radicale_item.Item]:
        listing = self._deleted()
        texts = _Texts(lambda: {h: d["data"] for h, d in self._with_text([d["id"] for d in listing]).items()})
        for deleted in listing:
            yield self._item(deleted, texts)

    def sync(self, old_token: str = ""):
        since = 0
        if old_token:
            prefix, _, modseq = old_token.rpartition(":")
            if prefix != _DELETED_SYNC + self.kind or not modseq.isdigit():
                raise ValueError(f"sync token {old_token!r} is not of this collection")
            since = int(modseq)
        current, purged, added, gone = self._changes(since)
        if old_token and not (purged <= since <= current):
            raise ValueError(f"sync token {old_token!r} is too old or unknown")  # RFC 6578 §3.2
        token = f"{_DELETED_SYNC}{self.kind}:{current}"
        if not old_token:
            return token, [_view_href(d["id"], d["href"]) for d in self._deleted()]
        # restored items are reported gone (404: get_multi no longer finds them)
        return token, [_view_href(i, h) for i, h in added + gone]


class Storage(storage.BaseStorage):
    # Radicale's own path checks: names may be Unicode (the store keeps UTF-8), but not the
    # characters Radicale calls problematic.
    _supports_unicode = True

    def __init__(self, configuration, dav=None, views: Optional[Mapping[str, str]] = None):
        super().__init__(configuration)
        self.dav = dav
        self.max_occurrences = configuration.get("server", "max_vevent_rrule_occurrence")
        #: the Deleted views switched on: path segment -> display name
        self.views = dict(views or {})

    # -- lookup ----------------------------------------------------------------------------
    def discover(self, path: str, depth: str = "0", child_context_manager=None,
                 user_groups=frozenset()) -> Iterator:
        sane = pathutils.strip_path(path)
        parts = sane.split("/") if sane else []
        if not parts:
            yield Collection(self, "", None)
            return
        if len(parts) > 3:
            return
        try:
            account_id, coll, stored = self._resolve(parts[:1] if parts[1:2] and parts[1] in self.views else parts)
        except errors.InvalidInput:
            return
        if account_id is None:
            return
        principal = parts[0]
        if len(parts) == 1:
            yield Collection(self, principal, account_id)
            if depth != "0":
                for c in self.dav.collections(account_id):
                    yield Collection(self, f"{principal}/{c.folder.name}", account_id, c)
                for segment, name in self.views.items():
                    yield DeletedCollection(self, principal, account_id, segment, name)
            return
        if parts[1] in self.views:
            view = DeletedCollection(self, principal, account_id, parts[1], self.views[parts[1]])
            if len(parts) == 3:
                yield from (item for _, item in view.get_multi(parts[2:]) if item is not None)
            else:
                yield view
                if depth != "0":
                    yield from view.get_all()
            return
        if coll is None:
            return
        collection = Collection(self, f"{principal}/{coll.folder.name}", account_id, coll)
        if len(parts) == 3:
            # what the request saw: a write of this href later in it is conditional on it
            # (an If-Match Radicale checked against this ETag holds in the store's transaction)
            request.seen = getattr(request, "seen", None) or {}
            request.seen[(coll.folder.id, parts[2])] = stored.etag if stored is not None else ""
            if stored is not None:
                yield collection._item(stored)
            return
        yield collection
        if depth != "0":
            yield from collection.get_all()

    def _resolve(self, parts: list) -> tuple:
        """(account id, collection, item) for a path, from what this request already read
        where it can: the front door authenticated the account; a collection is read once."""
        known = getattr(request, "collections", None)
        if parts[0] == getattr(request, "user", None) and known is not None:
            if len(parts) == 1:
                return request.account_id, None, None
            if len(parts) == 2 and parts[1] in known:
                return request.account_id, known[parts[1]], None
        hint = getattr(request, "uid_hint", None)
        if len(parts) == 3 and hint:
            account_id, coll, stored, taken = self.dav.resolve_put(*parts, hint)
            if coll is not None:
                request.uid_taken = (coll.folder.id, hint, taken)
        else:
            account_id, coll, stored = self.dav.resolve(*parts)
        if known is not None and coll is not None and parts[0] == getattr(request, "user", None):
            known[parts[1]] = coll
        return account_id, coll, stored

    # -- changes ---------------------------------------------------------------------------
    def create_collection(self, href: str, items=None, props=None):
        sane = pathutils.strip_path(href)
        parts = sane.split("/") if sane else []
        if len(parts) == 1:
            principal = next(iter(self.discover(href)), None)
            if principal is None:
                raise ValueError(f"no account {parts[0]}")
            return principal, {}, []
        if len(parts) != 2:
            raise ValueError("calendars and address books live directly under the principal")
        if items is not None and not href.endswith("/") and parts[1].lower().endswith((".ics", ".vcf")):
            # Radicale reads a PUT of one object next to the calendars as "make a calendar of
            # it"; a client meant to put an item into a calendar.
            note_failure("a calendar object or vCard belongs into a calendar or address book: "
                         f"PUT it to /dav/{parts[0]}/<calendar>/{parts[1]}")
            raise ValueError("item PUT outside a collection")
        props = dict(props or {})
        tag = props.pop("tag", None)
        if tag not in _KIND_OF_TAG:
            note_failure("only calendars and address books can be created here")
            raise ValueError("only calendars and address books can be created here")
        kind = _KIND_OF_TAG[tag]
        if tag == "VCALENDAR" and props.get("C:supported-calendar-component-set") == "VTODO":
            kind = "tasks"
        assert kind in FOLDER_KINDS
        _forget()
        account_id, coll, _ = self.dav.resolve(parts[0], parts[1])
        if account_id is None:
            raise ValueError(f"no account {parts[0]}")
        try:
            if coll is None:
                coll = self.dav.create_collection(account_id, parts[1], kind, props)
            elif props:
                self.dav.set_props(account_id, coll.folder.id, props)
            new_hrefs = []
            if items is not None:
                rows, used = [], set()
                for item in items:
                    check_kind(item, coll.folder.kind)
                    name = href_for(item, used)
                    rows.append(new_item(name, item, self.max_occurrences))
                    new_hrefs.append(name)
                self.dav.replace_items(account_id, coll.folder.id, rows)
        except (errors.Exists, errors.InvalidInput, ValueError) as e:
            note_failure(str(e))
            raise ValueError(str(e)) from None
        _forget()
        collection = next(iter(self.discover(href)))
        return collection, {}, new_hrefs

    def move(self, item: radicale_item.Item, to_collection: storage.BaseCollection, to_href: str) -> None:
        src = item.collection
        if isinstance(src, DeletedCollection) or isinstance(to_collection, DeletedCollection):
            # the WSGI wrapper refuses these first; the rights plugin too
            (src if isinstance(src, DeletedCollection) else to_collection)._refuse("nothing can be moved")
        assert isinstance(src, Collection) and isinstance(to_collection, Collection)
        if src.account_id != to_collection.account_id:
            raise ValueError("items move only between collections of one account")
        _forget()
        try:
            self.dav.move(src.account_id, src.folder_id, item.href, to_collection.folder_id, to_href)
        except (errors.Exists, errors.InvalidInput, errors.NotFound) as e:
            note_failure(str(e))
            raise ValueError(str(e)) from None

    @contextlib.contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args, **kwargs):
        """Writes of one user are serialised in this process (see DavAccess.write_lock);
        reads need no lock: each store call is a transaction of its own."""
        if mode == "w" and user:
            with self.dav.write_lock(user):
                yield
        else:
            yield

    def verify(self) -> bool:
        return True
