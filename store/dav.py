"""Calendar and address-book objects: the ``_txn`` functions and the blocking facade
:class:`DavAccess` that the CalDAV/CardDAV gateway (Radicale's worker threads) uses.

The store keeps what it is given: raw iCalendar/vCard text with the href, UID, ETag, component
name and time bounds the gateway computed.  It never parses calendar data itself; the one
comparison it makes of two texts (is a new item a copy of a deleted one?) is formats.davtext's.

Invariants
- Every change bumps the account's modseq and sets it on the item row and as the folder's
  ``highest_modseq``; a collection's sync token is that folder modseq, and the changes since a
  token are the rows (tombstones included) with a higher modseq.
- DELETE is a soft delete: the row stays as a tombstone (``deleted_at``; ``live_href`` and
  ``live_uid`` NULL) until the purge, which records the highest modseq it removed in
  ``dav_collections.purged_modseq``: a sync token older than that cannot be answered
  incrementally any more (RFC 6578 §3.2: the client starts over).
- A MOVE leaves a tombstone marked ``moved`` in the source: sync clients see the item go, and
  ``haven recover`` does not offer it (the item lives on in the target).
- A PUT over an existing href updates the row in place (an overwrite is not a delete).
- Every write that makes a UID live in a collection (PUT of a new item or over another UID,
  MOVE, whole-collection PUT, import; not an edit of a live item) restores the account's
  recoverable tombstones of the same UID and kind in its own transaction: they become
  non-recoverable as ``haven recover restore`` leaves them (``moved`` set) and record
  ``restored_modseq``.  That is how a DAV client copying an item out of "Deleted events" gets
  it back; a UID that was never deleted costs one indexed lookup.  A client that copies under a
  new UID (Thunderbird's copy and paste) restores the newest deleted item whose text is the same
  but for the UID and stamps, among those of the same component and time span.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Iterable, Optional

from formats.davtext import content_key
from store import errors
from store.changelog import bump_modseq_txn
from store.core import StoreCore
from store.engines import IntegrityError, Txn, chunks
from store.folders import Restore, create_folder_txn, folder_from_row, normalize_name, tombstone_time_txn
from store.interfaces import DAV_KINDS, BlockingDav, DavCollection, DavItem, NewItem  # noqa: F401  (re-exported)

log = logging.getLogger("haven.dav")

_FOLDER_COLS = "f.id, f.account_id, f.name, f.kind, f.special_use, f.subscribed, f.uidvalidity, f.uidnext, " \
               "f.highest_modseq"
_ITEM_COLS = "id, folder_id, href, uid, etag, component, data, dtstart, dtend, modseq, updated_at"
_ITEM_META_COLS = "id, folder_id, href, uid, etag, component, NULL, dtstart, dtend, modseq, updated_at"


def uid_key(uid: str) -> str:
    """The indexed form of a UID: itself, or a digest for the rare UID longer than the column."""
    if len(uid) <= 255:
        return uid
    return "sha256:" + hashlib.sha256(uid.encode("utf-8")).hexdigest()


def _str(value):
    """{name} columns come back as bytes from MySQL (VARBINARY)."""
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def _item(row) -> DavItem:
    return DavItem(id=row[0], folder_id=row[1], href=_str(row[2]), uid=_str(row[3]), etag=row[4], component=row[5],
                   data=row[6], dtstart=row[7], dtend=row[8], modseq=row[9], updated_at=row[10])


def _bump(txn: Txn, account_id: int, folder_id: int) -> int:
    modseq = bump_modseq_txn(txn, account_id)
    txn.execute("UPDATE folders SET highest_modseq = ? WHERE id = ?", (modseq, folder_id))
    return modseq


def _check_href(href: str) -> None:
    if not href or "/" in href or len(href) > 255 or any(ord(c) < 0x20 for c in href):
        raise errors.InvalidInput(f"invalid resource name {href[:80]!r}")


# -- collections -------------------------------------------------------------------------------

def _collection(txn: Txn, row) -> DavCollection:
    folder = folder_from_row(row[:9])
    props = json.loads(row[9]) if row[9] else {}
    return DavCollection(folder=folder, props=props, purged_modseq=row[10] or 0)


def _select_collections(txn: Txn, where: str, args) -> list:
    kinds = tuple(DAV_KINDS)
    rows = txn.execute(
        f"SELECT {_FOLDER_COLS}, c.props, c.purged_modseq FROM folders f LEFT JOIN dav_collections c "
        f"ON c.folder_id = f.id WHERE f.deleted_at = 0 AND f.kind IN {txn.in_list(kinds)} AND {where} "
        "ORDER BY f.name", (*kinds, *args)).fetchall()
    return [_collection(txn, r) for r in rows]


def list_collections_txn(txn: Txn, account_id: int) -> list:
    return _select_collections(txn, "f.account_id = ?", (account_id,))


def get_collection_txn(txn: Txn, account_id: int, name: str) -> DavCollection:
    found = _select_collections(txn, "f.account_id = ? AND f.name = ?", (account_id, name))
    if not found:
        raise errors.NotFound(f"no collection {name}")
    return found[0]


def create_collection_txn(txn: Txn, account_id: int, name: str, kind: str, props: dict) -> DavCollection:
    if kind not in DAV_KINDS:
        raise errors.InvalidInput(f"not a calendar or address book kind: {kind!r}")
    if normalize_name(name) != name or "/" in name:
        raise errors.InvalidInput(f"invalid collection name {name!r}")
    if name.startswith(RESERVED_PREFIX):
        raise errors.InvalidInput(f"collection names beginning with {RESERVED_PREFIX!r} are reserved for the "
                                  "server's own views (Deleted events, Deleted contacts)")
    folder = create_folder_txn(txn, account_id, name, kind, None)
    txn.execute("INSERT INTO dav_collections (folder_id, account_id, props) VALUES (?, ?, ?)",
                (folder.id, account_id, json.dumps(props, sort_keys=True)))
    return get_collection_txn(txn, account_id, name)


def set_props_txn(txn: Txn, account_id: int, folder_id: int, props: dict) -> int:
    """Replace the collection's WebDAV properties (empty values dropped); returns the modseq."""
    props = {k: v for k, v in props.items() if v}
    modseq = _bump(txn, account_id, folder_id)
    txn.execute("UPDATE dav_collections SET props = ? WHERE folder_id = ?",
                (json.dumps(props, sort_keys=True), folder_id))
    if txn.rowcount == 0:
        txn.execute("INSERT INTO dav_collections (folder_id, account_id, props) VALUES (?, ?, ?)",
                    (folder_id, account_id, json.dumps(props, sort_keys=True)))
    return modseq


def delete_collection_txn(txn: Txn, account_id: int, folder_id: int) -> int:
    """Soft-delete the collection and every item in it (both recoverable until the purge)."""
    name = txn.scalar("SELECT name FROM folders WHERE id = ? AND account_id = ? AND deleted_at = 0",
                      (folder_id, account_id))
    if name is None:
        raise errors.NotFound("collection no longer exists")
    modseq = _bump(txn, account_id, folder_id)
    now = tombstone_time_txn(txn, account_id, name)
    txn.execute("UPDATE dav_items SET deleted_at = ?, modseq = ?, live_href = NULL, live_uid = NULL "
                "WHERE folder_id = ? AND deleted_at = 0", (now, modseq, folder_id))
    txn.execute("UPDATE folders SET deleted_at = ? WHERE id = ?", (now, folder_id))
    return modseq


def replace_items_txn(txn: Txn, account_id: int, folder_id: int, items: list) -> int:
    """A PUT of a whole collection: the old items become tombstones, the new ones go in."""
    modseq = _bump(txn, account_id, folder_id)
    now = int(time.time())
    txn.execute("UPDATE dav_items SET deleted_at = ?, modseq = ?, live_href = NULL, live_uid = NULL "
                "WHERE folder_id = ? AND deleted_at = 0", (now, modseq, folder_id))
    for item in items:
        _insert(txn, account_id, folder_id, item, modseq, now)
        restore_by_uid_txn(txn, account_id, item, modseq)
    return modseq


def resolve_txn(txn: Txn, address: str, name: Optional[str] = None, href: Optional[str] = None) -> tuple:
    """One lookup for a request path: (account id, collection, item), None where absent.
    ``address`` must be spelled exactly as stored (lower case)."""
    account_id = txn.scalar("SELECT id FROM accounts WHERE address = ?", (address,))
    if account_id is None or name is None:
        return account_id, None, None
    found = _select_collections(txn, "f.account_id = ? AND f.name = ?", (account_id, name))
    if not found or href is None:
        return account_id, (found[0] if found else None), None
    items = get_items_txn(txn, found[0].folder.id, [href])
    return account_id, found[0], (items[0] if items else None)


def resolve_put_txn(txn: Txn, address: str, name: str, href: str, uid: str) -> tuple:
    """:func:`resolve_txn` for a PUT whose UID is known in advance, plus whether a live item of
    the collection already has that UID (the UID check of a new item, in the same read)."""
    account_id, coll, item = resolve_txn(txn, address, name, href)
    taken = coll is not None and has_uid_txn(txn, coll.folder.id, uid)
    return account_id, coll, item, taken


def last_modified_txn(txn: Txn, folder_id: int) -> int:
    row = txn.execute("SELECT MAX(updated_at), MAX(deleted_at) FROM dav_items WHERE folder_id = ?",
                      (folder_id,)).fetchone()
    return max(row[0] or 0, row[1] or 0)


# -- items -------------------------------------------------------------------------------------

def get_items_txn(txn: Txn, folder_id: int, hrefs: Iterable[str]) -> list:
    out = []
    for part in chunks(list(dict.fromkeys(hrefs))):
        out += txn.execute(f"SELECT {_ITEM_COLS} FROM dav_items WHERE folder_id = ? AND live_href IN "
                           f"{txn.in_list(part)}", (folder_id, *part)).fetchall()
    return [_item(r) for r in out]


def list_items_txn(txn: Txn, folder_id: int, with_data: bool = True) -> list:
    cols = _ITEM_COLS if with_data else _ITEM_META_COLS
    rows = txn.execute(f"SELECT {cols} FROM dav_items WHERE folder_id = ? AND deleted_at = 0 ORDER BY href",
                       (folder_id,)).fetchall()
    return [_item(r) for r in rows]


def filter_items_txn(txn: Txn, folder_id: int, component: Optional[str], start: int, end: int) -> list:
    """Live items whose enclosing time range overlaps [start, end) (RFC 4791 §9.9)."""
    sql = f"SELECT {_ITEM_COLS} FROM dav_items WHERE folder_id = ? AND deleted_at = 0 AND dtstart < ? AND dtend > ?"
    args: list = [folder_id, end, start]
    if component:
        sql += " AND component = ?"
        args.append(component)
    return [_item(r) for r in txn.execute(sql + " ORDER BY href", args).fetchall()]


def has_uid_txn(txn: Txn, folder_id: int, uid: str) -> bool:
    return bool(txn.scalar("SELECT COUNT(*) FROM dav_items WHERE folder_id = ? AND live_uid = ?",
                           (folder_id, uid_key(uid))))


def _insert(txn: Txn, account_id: int, folder_id: int, item: NewItem, modseq: int, now: int) -> int:
    _check_href(item.href)
    key = uid_key(item.uid)
    try:
        txn.execute("INSERT INTO dav_items (account_id, folder_id, href, live_href, uid, live_uid, etag, component, "
                    "data, size, dtstart, dtend, modseq, created_at, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (account_id, folder_id, item.href, item.href, key, key or None, item.etag, item.component,
                     item.data, len(item.data.encode("utf-8")), item.dtstart, item.dtend, modseq, now, now))
    except IntegrityError:
        raise errors.Exists(f"an item with UID {item.uid!r} or name {item.href!r} already exists") from None
    return txn.lastrowid


def _check_expected(row, expect: Optional[str], href: str) -> None:
    """The condition of a conditional write (``expect``: None none, "" the href must not be
    live, else the ETag the live item must have), against the row read in the transaction."""
    if expect is None:
        return
    if expect == "" and row is not None:
        raise errors.Conflict(f"{href} was created meanwhile")
    if expect != "" and (row is None or row[-1] != expect):
        raise errors.Conflict(f"{href} was changed or deleted meanwhile")


def put_item_txn(txn: Txn, account_id: int, folder_id: int, item: NewItem,
                 expect: Optional[str] = None) -> tuple[DavItem, bool, int, list]:
    """Create or overwrite ``item.href``; returns (the stored item, whether it replaced one, modseq,
    ids of the deleted items it restored).  A write that makes its UID live in the collection (a
    new item, or an overwrite with another UID) restores the recoverable tombstones of that UID
    (:func:`restore_by_uid_txn`), in this transaction, so the purge cannot come between.
    ``expect``: see :func:`_check_expected` (Conflict when it does not hold)."""
    _check_href(item.href)
    row = txn.execute("SELECT id, uid, etag FROM dav_items WHERE folder_id = ? AND live_href = ?",
                      (folder_id, item.href)).fetchone()
    _check_expected(row, expect, item.href)
    modseq = bump_modseq_txn(txn, account_id)
    txn.execute("UPDATE folders SET highest_modseq = ? WHERE id = ? AND account_id = ? AND deleted_at = 0",
                (modseq, folder_id, account_id))
    if txn.rowcount == 0:
        raise errors.NotFound("collection no longer exists")
    now = int(time.time())
    existing, old_uid = (row[0], _str(row[1])) if row else (None, None)
    if existing is None:
        item_id = _insert(txn, account_id, folder_id, item, modseq, now)
    else:
        key = uid_key(item.uid)
        try:
            txn.execute("UPDATE dav_items SET uid = ?, live_uid = ?, etag = ?, component = ?, data = ?, size = ?, "
                        "dtstart = ?, dtend = ?, modseq = ?, updated_at = ? WHERE id = ?",
                        (key, key or None, item.etag, item.component, item.data, len(item.data.encode("utf-8")),
                         item.dtstart, item.dtend, modseq, now, existing))
        except IntegrityError:
            raise errors.Exists(f"an item with UID {item.uid!r} already exists") from None
        item_id = existing
    stored = DavItem(id=item_id, folder_id=folder_id, href=item.href, uid=uid_key(item.uid), etag=item.etag,
                     component=item.component, data=item.data, dtstart=item.dtstart, dtend=item.dtend,
                     modseq=modseq, updated_at=now)
    # an edit of a live item is not a restore (its UID may also be deleted from another collection)
    restored = restore_by_uid_txn(txn, account_id, item, modseq) if old_uid != uid_key(item.uid) else []
    return stored, existing is not None, modseq, restored


def delete_item_txn(txn: Txn, account_id: int, folder_id: int, href: str, moved: bool = False,
                    expect: Optional[str] = None) -> int:
    """Soft delete (a tombstone); ``expect``: the ETag the item must still have (Conflict)."""
    row = txn.execute("SELECT id, etag FROM dav_items WHERE folder_id = ? AND live_href = ? AND account_id = ?",
                      (folder_id, href, account_id)).fetchone()
    if row is None:
        if expect:
            raise errors.Conflict(f"{href} was deleted meanwhile")
        raise errors.NotFound(f"no item {href}")
    _check_expected(row, expect, href)
    item_id = row[0]
    modseq = _bump(txn, account_id, folder_id)
    txn.execute("UPDATE dav_items SET deleted_at = ?, modseq = ?, live_href = NULL, live_uid = NULL, moved = ? "
                "WHERE id = ?", (int(time.time()), modseq, 1 if moved else 0, item_id))
    return modseq


def move_item_txn(txn: Txn, account_id: int, src_folder_id: int, href: str, dst_folder_id: int,
                  dst_href: str) -> int:
    """MOVE (RFC 4918 §9.9): the target is created or overwritten; the source goes (as a tombstone
    marked moved).  Returns the modseq of the target."""
    rows = get_items_txn(txn, src_folder_id, [href])
    if not rows:
        raise errors.NotFound(f"no item {href}")
    src = rows[0]
    delete_item_txn(txn, account_id, src_folder_id, href, moved=True)
    if dst_folder_id != src_folder_id or dst_href != href:
        old = txn.scalar("SELECT id FROM dav_items WHERE folder_id = ? AND live_href = ?", (dst_folder_id, dst_href))
        if old is not None:
            delete_item_txn(txn, account_id, dst_folder_id, dst_href, moved=True)
    moved = NewItem(href=dst_href, uid=src.uid, etag=src.etag, component=src.component, data=src.data,
                    dtstart=src.dtstart, dtend=src.dtend)
    _item_row, _replaced, modseq, _restored = put_item_txn(txn, account_id, dst_folder_id, moved)
    return modseq


def changes_since_txn(txn: Txn, folder_id: int, since: int) -> tuple[int, int, list]:
    """(the folder's modseq now, the highest modseq the purge removed, hrefs changed after ``since``)."""
    row = txn.execute("SELECT f.highest_modseq, COALESCE(c.purged_modseq, 0) FROM folders f LEFT JOIN "
                      "dav_collections c ON c.folder_id = f.id WHERE f.id = ? AND f.deleted_at = 0",
                      (folder_id,)).fetchone()
    if row is None:
        raise errors.NotFound("collection no longer exists")
    hrefs = [_str(r[0]) for r in txn.execute("SELECT DISTINCT href FROM dav_items WHERE folder_id = ? AND modseq > ? "
                                       "AND deleted_at >= 0", (folder_id, since)).fetchall()]
    return row[0], row[1], hrefs


def items_by_id_txn(txn: Txn, account_id: int, item_ids, with_data: bool = True) -> list:
    """The account's live items among ``item_ids`` (others, and ids of other accounts, left out)."""
    cols = _ITEM_COLS if with_data else _ITEM_META_COLS
    out = []
    for part in chunks(sorted(set(int(i) for i in item_ids))):
        out += txn.execute(f"SELECT {cols} FROM dav_items WHERE account_id = ? AND deleted_at = 0 AND id IN "
                           f"{txn.in_list(part)}", (account_id, *part)).fetchall()
    return [_item(r) for r in out]


def item_changes_txn(txn: Txn, account_id: int, folder_id: int, since: int) -> tuple[int, int, list, list]:
    """(the folder's modseq now, the highest modseq the purge removed, ids of live items changed
    or made after ``since``, ids of items deleted or moved away after ``since``)."""
    row = txn.execute("SELECT f.highest_modseq, COALESCE(c.purged_modseq, 0) FROM folders f LEFT JOIN "
                      "dav_collections c ON c.folder_id = f.id WHERE f.id = ? AND f.account_id = ? "
                      "AND f.deleted_at = 0", (folder_id, account_id)).fetchone()
    if row is None:
        raise errors.NotFound("collection no longer exists")
    changed, deleted = [], []
    for item_id, deleted_at in txn.execute("SELECT id, deleted_at FROM dav_items WHERE folder_id = ? AND modseq > ? "
                                           "AND deleted_at >= 0 ORDER BY modseq, id", (folder_id, since)).fetchall():
        (deleted if deleted_at else changed).append(item_id)
    return row[0], row[1], changed, deleted


def components_txn(txn: Txn, account_id: int) -> dict:
    """{folder id: set of the components its live items have} of the account's collections
    that hold any."""
    out: dict = {}
    for folder_id, component in txn.execute("SELECT DISTINCT folder_id, component FROM dav_items "
                                            "WHERE account_id = ? AND deleted_at = 0", (account_id,)).fetchall():
        out.setdefault(folder_id, set()).add(component)
    return out


# -- recovery and purge ------------------------------------------------------------------------
#
# The recoverable items of an account (``deleted_at > 0 AND moved = 0``) are what ``haven
# recover`` lists and what the user sees in the DAV views "Deleted events" / "Deleted contacts"
# (split by component: VCARD or not).  The views' sync state is the account's modseq: a
# deletion stamps the tombstone, a restore stamps ``restored_modseq``, a purge stamps
# ``accounts.dav_deleted_purged`` (tokens below it are too old).

#: DAV collection names with this prefix are the server's (the Deleted views of the CalDAV
#: gateway use ".deleted-events" and ".deleted-contacts"); no collection of the store has one
RESERVED_PREFIX = "."
#: which deleted items a view holds: calendar objects (events, to-dos, journals) or vCards
DELETED_KINDS = ("calendar", "contacts")
_RECOVERABLE = "i.deleted_at > 0 AND i.moved = 0"
_DELETED_COLS = "i.id, f.name, f.kind, i.href, i.component, i.uid, i.deleted_at, i.size, i.etag, i.dtstart, " \
                "i.dtend, i.modseq"


def _component_test(kinds) -> tuple:
    """SQL on ``i.component`` for the deleted items of ``kinds`` (None: all)."""
    kinds = set(kinds or DELETED_KINDS)
    if not kinds <= set(DELETED_KINDS):
        raise errors.InvalidInput(f"deleted items are of kinds {DELETED_KINDS}, not {sorted(kinds)}")
    if kinds == set(DELETED_KINDS):
        return "1 = 1", ()
    return ("i.component = ?" if kinds == {"contacts"} else "i.component <> ?"), ("VCARD",)


def _deleted(row, data=None) -> dict:
    return {"id": row[0], "folder": row[1], "kind": "contacts" if row[4] == "VCARD" else "calendar",
            "href": _str(row[3]), "component": row[4], "uid": _str(row[5]), "deleted_at": row[6], "size": row[7],
            "etag": row[8], "dtstart": row[9], "dtend": row[10], "modseq": row[11], "data": data}


def list_deleted_txn(txn: Txn, account_id: int, kinds=None) -> list:
    test, args = _component_test(kinds)
    rows = txn.execute(f"SELECT {_DELETED_COLS} FROM dav_items i JOIN folders f ON f.id = i.folder_id "
                       f"WHERE i.account_id = ? AND {_RECOVERABLE} AND {test} ORDER BY i.deleted_at DESC, i.modseq DESC, i.id DESC",
                       (account_id, *args)).fetchall()
    return [_deleted(r) for r in rows]


def deleted_items_txn(txn: Txn, account_id: int, item_ids) -> list:
    """The recoverable items among ``item_ids``, with their text (others are left out)."""
    out = []
    for part in chunks(list(dict.fromkeys(item_ids))):
        out += txn.execute(f"SELECT {_DELETED_COLS}, i.data FROM dav_items i JOIN folders f ON f.id = i.folder_id "
                           f"WHERE i.account_id = ? AND {_RECOVERABLE} AND i.id IN {txn.in_list(part)}",
                           (account_id, *part)).fetchall()
    return [_deleted(r[:12], r[12]) for r in sorted(out, key=lambda r: (-r[6], -r[11], -r[0]))]


def deleted_changes_since_txn(txn: Txn, account_id: int, kinds, since: int) -> tuple[int, int, list, list]:
    """(the view's modseq now, the modseq below which tokens are too old, (id, href) of
    recoverable items deleted after ``since``, (id, href) of items restored after ``since``)."""
    test, args = _component_test(kinds)
    purged = txn.scalar("SELECT dav_deleted_purged FROM accounts WHERE id = ?", (account_id,))
    if purged is None:
        raise errors.NotFound("no such account")
    row = txn.execute(f"SELECT MAX(CASE WHEN {_RECOVERABLE} THEN i.modseq ELSE 0 END), MAX(i.restored_modseq) "
                      f"FROM dav_items i WHERE i.account_id = ? AND i.deleted_at > 0 AND {test}",
                      (account_id, *args)).fetchone()
    current = max(row[0] or 0, row[1] or 0, purged)
    added = [(r[0], _str(r[1])) for r in txn.execute(
        f"SELECT i.id, i.href FROM dav_items i WHERE i.account_id = ? AND {_RECOVERABLE} AND i.modseq > ? AND {test}",
        (account_id, since, *args)).fetchall()]
    gone = [(r[0], _str(r[1])) for r in txn.execute(
        f"SELECT i.id, i.href FROM dav_items i WHERE i.account_id = ? AND i.deleted_at > 0 AND i.restored_modseq > ? "
        f"AND {test}",
        (account_id, since, *args)).fetchall()]
    return current, purged, added, gone


def _mark_restored_txn(txn: Txn, tombstone_ids, modseq: int) -> None:
    """The tombstone stays for sync clients (they saw the item go), no longer recoverable."""
    for part in chunks(list(tombstone_ids)):
        txn.execute(f"UPDATE dav_items SET moved = 1, restored_modseq = ? WHERE id IN {txn.in_list(part)}",
                    (modseq, *part))


def restore_by_uid_txn(txn: Txn, account_id: int, item: NewItem, modseq: int) -> list:
    """A live ``item`` was just written: the account's recoverable tombstones of its UID and of
    its kind (calendar objects or vCards) are restored by it.  Returns their ids (usually none:
    one indexed lookup)."""
    key = uid_key(item.uid)
    if not key:
        return []
    test, args = _component_test(["contacts" if item.component == "VCARD" else "calendar"])
    ids = [r[0] for r in txn.execute(f"SELECT i.id FROM dav_items i WHERE i.account_id = ? AND i.uid = ? "
                                     f"AND {_RECOVERABLE} AND {test}", (account_id, key, *args)).fetchall()]
    if not ids:  # a copy under a new UID (Thunderbird's copy and paste): the same text otherwise
        ids = _copied_from_txn(txn, account_id, item, test, args)
    _mark_restored_txn(txn, ids, modseq)
    return ids


#: how many deleted items of the same time span are compared with a new one (newest first)
COPY_CANDIDATES = 50


def _copied_from_txn(txn: Txn, account_id: int, item: NewItem, test: str, args: tuple) -> list:
    """The one recoverable item (newest deletion first) whose text is ``item``'s but for the UID
    and stamps (formats.davtext), among those of the same component and time span."""
    wanted = content_key(item.data)
    if not wanted:
        return []
    rows = txn.execute(f"SELECT i.id, i.data FROM dav_items i WHERE i.account_id = ? AND {_RECOVERABLE} AND {test} "
                       "AND i.component = ? AND i.dtstart = ? AND i.dtend = ? ORDER BY i.deleted_at DESC, i.id DESC "
                       f"LIMIT {COPY_CANDIDATES}",
                       (account_id, *args, item.component, item.dtstart, item.dtend)).fetchall()
    return next(([r[0]] for r in rows if content_key(_str(r[1]) or "") == wanted), [])


def restore_items_txn(txn: Txn, account_id: int, item_ids) -> tuple[int, list, list]:
    """Bring deleted items back under their href (into a live collection of the same name,
    recreated if it was deleted too).  Returns (restored, [(folder_id, modseq)], [reasons an item
    could not come back])."""
    restore = Restore(txn, account_id)
    for item_id in item_ids:
        row = txn.execute("SELECT i.folder_id, f.name, f.kind, f.deleted_at, i.href, i.uid, i.etag, i.component, "
                          "i.data, i.dtstart, i.dtend FROM dav_items i JOIN folders f ON f.id = i.folder_id "
                          "WHERE i.id = ? AND i.account_id = ? AND i.deleted_at > 0 AND i.moved = 0",
                          (item_id, account_id)).fetchone()
        if row is None:
            continue
        row = list(row)
        row[4], row[5] = _str(row[4]), _str(row[5])
        try:
            folder_id = restore.home(row[0], row[1], row[2], row[3])
        except errors.Exists as e:
            restore.refuse(item_id, e)
            continue
        if txn.scalar("SELECT COUNT(*) FROM dav_items WHERE folder_id = ? AND (live_href = ? OR live_uid = ?)",
                      (folder_id, row[4], row[5] or None)):
            restore.refuse(item_id, f"{row[1]}/{row[4]} exists again (same name or UID)")
            continue
        modseq = _bump(txn, account_id, folder_id)
        item = NewItem(href=row[4], uid=row[5], etag=row[6], component=row[7], data=row[8],
                       dtstart=row[9], dtend=row[10])
        _insert(txn, account_id, folder_id, item, modseq, int(time.time()))
        _mark_restored_txn(txn, [item_id], modseq)
        restore.restored(folder_id, modseq)
    return restore.count, restore.touched, restore.refused


def purge_txn(txn: Txn, cutoff: int) -> int:
    """Remove item tombstones deleted before ``cutoff``; remember per collection the highest
    modseq removed (older sync tokens become invalid).  Returns the number of deleted items
    removed (tombstones of moves are removed too, not counted)."""
    rows = txn.execute("SELECT id, account_id, folder_id, modseq, CASE WHEN moved = 0 THEN 1 ELSE 0 END "
                       "FROM dav_items WHERE deleted_at <> 0 AND deleted_at < ?", (cutoff,)).fetchall()
    highest: dict = {}
    for _id, account_id, folder_id, modseq, _deleted in rows:
        if modseq > highest.get(folder_id, (0, 0))[1]:
            highest[folder_id] = (account_id, modseq)
    for folder_id, (account_id, modseq) in highest.items():
        txn.execute("UPDATE dav_collections SET purged_modseq = ? WHERE folder_id = ? AND purged_modseq < ?",
                    (modseq, folder_id, modseq))
        if txn.rowcount == 0 and not txn.scalar("SELECT COUNT(*) FROM dav_collections WHERE folder_id = ?",
                                                (folder_id,)):
            txn.execute("INSERT INTO dav_collections (folder_id, account_id, purged_modseq) VALUES (?, ?, ?)",
                        (folder_id, account_id, modseq))
    for part in chunks([r[0] for r in rows]):
        txn.execute(f"DELETE FROM dav_items WHERE id IN {txn.in_list(part)}", part)
    # the deleted-items views of these accounts changed: older sync tokens of them are too old
    for account_id in sorted({r[1] for r in rows}):
        txn.execute("UPDATE accounts SET dav_deleted_purged = ? WHERE id = ?",
                    (bump_modseq_txn(txn, account_id), account_id))
    return sum(r[4] for r in rows)  # a moved item's tombstone is not a deletion


def drop_folder_rows_txn(txn: Txn, folder_ids) -> None:
    """The purge removes a deleted folder: its collection properties go with it."""
    for part in chunks(list(folder_ids)):
        txn.execute(f"DELETE FROM dav_collections WHERE folder_id IN {txn.in_list(part)}", part)


def drop_account_txn(txn: Txn, account_id: int) -> None:
    txn.execute("DELETE FROM dav_items WHERE account_id = ?", (account_id,))
    txn.execute("DELETE FROM dav_collections WHERE account_id = ?", (account_id,))


# -- the blocking facade -----------------------------------------------------------------------

class DavAccess(BlockingDav):
    """Calendar/contacts operations for code running on its own worker threads (the WSGI pool
    of the CalDAV gateway): each call is one transaction, run in the DB pool (SQLite's one
    writer) while the caller waits, or for a read on MariaDB on the caller's own connection.  Never call it
    from the reactor thread or from a DB pool thread.  Changes are published on the push bus
    (from the reactor) after they committed."""

    def __init__(self, store):
        self._store = store
        self._db = store.db
        self._write_locks: dict = {}
        self._locks_guard = threading.Lock()

    def write_lock(self, owner) -> threading.Lock:
        """One writer per account inside this process: a conditional request (If-Match) checks
        and writes under it, so two PUTs of one user cannot both pass the same precondition."""
        with self._locks_guard:
            return self._write_locks.setdefault(owner, threading.Lock())

    def _run(self, desc, fn, *args):
        return self._db.run_blocking(desc, fn, *args)

    def _read(self, desc, fn, *args):
        # SQLite: the writer connection's page cache stays warm, a reader connection of each
        # worker thread would start cold after every write (measured: PUT 20 % slower), so
        # reads take the hop too.  MariaDB: the worker's own connection, no hop.
        if self._db.engine == "sqlite":
            return self._db.run_blocking(desc, fn, *args)
        return self._db.run_read(desc, fn, *args)

    def _published(self, account_id: int, folder_id: int, modseq: int) -> int:
        from twisted.internet import reactor  # the installed one, asyncioreactor (not at import time)
        reactor.callFromThread(self._store._publish, account_id, folder_id, modseq, "dav", time.monotonic())
        return modseq

    def resolve(self, address: str, name: Optional[str] = None, href: Optional[str] = None) -> tuple:
        return self._read("dav_resolve", resolve_txn, address, name, href)

    def resolve_put(self, address: str, name: str, href: str, uid: str) -> tuple:
        return self._read("dav_resolve", resolve_put_txn, address, name, href, uid)

    def last_modified(self, folder_id: int) -> int:
        return self._read("dav_last_modified", last_modified_txn, folder_id)

    def collections(self, account_id: int) -> list:
        return self._read("dav_collections", list_collections_txn, account_id)

    def collection(self, account_id: int, name: str) -> DavCollection:
        return self._read("dav_collection", get_collection_txn, account_id, name)

    def create_collection(self, account_id: int, name: str, kind: str, props: dict) -> DavCollection:
        coll = self._run("dav_create_collection", create_collection_txn, account_id, name, kind, props)
        self._published(account_id, coll.folder.id, coll.folder.highest_modseq)
        return coll

    def set_props(self, account_id: int, folder_id: int, props: dict) -> int:
        return self._published(account_id, folder_id,
                               self._run("dav_set_props", set_props_txn, account_id, folder_id, props))

    def delete_collection(self, account_id: int, folder_id: int) -> int:
        return self._published(account_id, folder_id,
                               self._run("dav_delete_collection", delete_collection_txn, account_id, folder_id))

    def replace_items(self, account_id: int, folder_id: int, items: list) -> int:
        return self._published(account_id, folder_id,
                               self._run("dav_replace_items", replace_items_txn, account_id, folder_id, items))

    def items(self, folder_id: int, hrefs) -> list:
        return self._read("dav_get_items", get_items_txn, folder_id, list(hrefs))

    def all_items(self, folder_id: int, with_data: bool = True) -> list:
        return self._read("dav_list_items", list_items_txn, folder_id, with_data)

    def filtered(self, folder_id: int, component, start: int, end: int) -> list:
        return self._read("dav_filter_items", filter_items_txn, folder_id, component, start, end)

    def has_uid(self, folder_id: int, uid: str) -> bool:
        return self._read("dav_has_uid", has_uid_txn, folder_id, uid)

    def put(self, account_id: int, folder_id: int, item: NewItem, expect: Optional[str] = None) -> tuple:
        stored, replaced, modseq, restored = self._run("dav_put", put_item_txn, account_id, folder_id, item, expect)
        self._published(account_id, folder_id, modseq)
        if restored:
            log.info("dav: account %d restored deleted item(s) %s by writing UID %r into folder %d",
                     account_id, restored, item.uid, folder_id)
        return stored, replaced

    def delete(self, account_id: int, folder_id: int, href: str, expect: Optional[str] = None) -> int:
        return self._published(account_id, folder_id,
                               self._run("dav_delete", delete_item_txn, account_id, folder_id, href, False, expect))

    def move(self, account_id: int, src_folder_id: int, href: str, dst_folder_id: int, dst_href: str) -> int:
        modseq = self._run("dav_move", move_item_txn, account_id, src_folder_id, href, dst_folder_id, dst_href)
        self._published(account_id, src_folder_id, modseq)
        return self._published(account_id, dst_folder_id, modseq)

    def changes_since(self, folder_id: int, since: int) -> tuple:
        return self._read("dav_changes", changes_since_txn, folder_id, since)

    def deleted(self, account_id: int, kind: str) -> list:
        return self._read("dav_deleted", list_deleted_txn, account_id, [kind])

    def deleted_items(self, account_id: int, item_ids) -> list:
        return self._read("dav_deleted_items", deleted_items_txn, account_id, list(item_ids))

    def deleted_changes_since(self, account_id: int, kind: str, since: int) -> tuple:
        return self._read("dav_deleted_changes", deleted_changes_since_txn, account_id, [kind], since)


class DavStore(StoreCore):
    """The coroutine side of calendars and contacts (CLI, ActiveSync); the CalDAV gateway's
    worker threads use the blocking adapter :attr:`dav` (:class:`DavAccess`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dav = DavAccess(self)

    async def list_dav_collections(self, account_id):
        return await self._run("list_dav_collections", list_collections_txn, account_id)

    async def list_dav_items(self, folder_id, with_data=False):
        return await self._run("list_dav_items", list_items_txn, folder_id, with_data)

    async def put_dav_item(self, account_id, folder_id, item: NewItem, expect=None):
        stored, replaced, modseq, _restored = await self._run("put_dav_item", put_item_txn, account_id, folder_id,
                                                              item, expect)
        self._publish(account_id, folder_id, modseq, "dav")
        return stored, replaced

    async def delete_dav_item(self, account_id, folder_id, href, expect=None):
        modseq = await self._run("delete_dav_item", delete_item_txn, account_id, folder_id, href, False, expect)
        self._publish(account_id, folder_id, modseq, "dav")
        return modseq

    async def move_dav_item(self, account_id, src_folder_id, href, dst_folder_id, dst_href):
        modseq = await self._run("move_dav_item", move_item_txn, account_id, src_folder_id, href, dst_folder_id,
                                 dst_href)
        self._publish(account_id, src_folder_id, modseq, "dav")
        self._publish(account_id, dst_folder_id, modseq, "dav")
        return modseq

    async def dav_items_by_id(self, account_id, item_ids, with_data=True):
        return await self._run("dav_items_by_id", items_by_id_txn, account_id, list(item_ids), with_data)

    async def dav_changes(self, account_id, folder_id, since):
        return await self._run("dav_changes", item_changes_txn, account_id, folder_id, since)

    async def dav_components(self, account_id):
        return await self._run("dav_components", components_txn, account_id)
