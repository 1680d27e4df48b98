"""Messages: the ``_txn`` functions behind SELECT, FETCH, STORE, COPY/MOVE, EXPUNGE, APPEND,
delivery, restore and purge.

Invariants
- Every change bumps the account's modseq once per transaction and stamps every row it touches
  and the folder's ``highest_modseq`` with it.
- Deletes are soft: ``deleted_at`` is set and the row keeps its UID as a tombstone, so
  ``changes_since`` can report it as expunged/vanished.
- System flags live in a bitmask (``sysflags``), keywords in a space-separated string, so
  STATUS UNSEEN and similar counts are SQL aggregates.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Iterable, Optional

from store import errors
from store.engines import Txn, chunks
from store.interfaces import (Changes, CopyResult, INBOX, MessageMeta, MessageRecord, StoreResult,
                              SYSTEM_FLAGS)
from store.folders import get_folder_by_id_txn, get_folder_txn, revive_folder_txn

SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16
_BITS = {"\\seen": SEEN, "\\answered": ANSWERED, "\\flagged": FLAGGED, "\\deleted": DELETED, "\\draft": DRAFT}
_NAMES = {bit: name for name, bit in zip(SYSTEM_FLAGS, (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT))}
# RFC 3501 §9: flag-keyword = atom; atom excludes ( ) { SP CTL % * " \ ]
_KEYWORD = re.compile(r'^[^(){ %*"\\\]\x00-\x1f\x7f]+$')
MAX_KEYWORDS_LEN = 2000

_META = "uid, modseq, sysflags, keywords, internaldate, size"


@dataclass(frozen=True)
class PreparedMessage:
    """A message analysed and written to the blob store, ready for its rows."""

    blob_id: str
    stored_size: int
    inline: Optional[bytes]  # compressed bytes stored in the blobs row; None: a blob file
    size: int
    header: bytes
    envelope: str  # JSON
    structure: str  # JSON
    subject: Optional[str] = None


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


def _meta(row) -> MessageMeta:
    # positional (uid, modseq, flags, internaldate, size): cheaper than keywords, per row
    return MessageMeta(row[0], row[1], decode_flags(row[2], row[3]), row[4], row[5])


def bump_modseq_txn(txn: Txn, account_id: int) -> int:
    txn.execute("UPDATE accounts SET highest_modseq = highest_modseq + 1 WHERE id = ?", (account_id,))
    if txn.rowcount == 0:
        raise errors.NotFound("no such account")
    return txn.scalar("SELECT highest_modseq FROM accounts WHERE id = ?", (account_id,))


def allocate_uids_txn(txn: Txn, folder_id: int, count: int) -> int:
    """Reserve ``count`` UIDs; returns the first."""
    txn.execute("UPDATE folders SET uidnext = uidnext + ? WHERE id = ? AND deleted_at = 0", (count, folder_id))
    if txn.rowcount == 0:
        raise errors.NotFound("folder no longer exists")
    return txn.scalar("SELECT uidnext FROM folders WHERE id = ?", (folder_id,)) - count


def _touch_folder(txn: Txn, folder_id: int, modseq: int) -> None:
    txn.execute("UPDATE folders SET highest_modseq = ? WHERE id = ? AND highest_modseq < ?",
                (modseq, folder_id, modseq))


def ensure_blob_txn(txn: Txn, msg: PreparedMessage) -> None:
    txn.insert_ignore("blobs", ("id", "size", "stored_size", "created_at", "data"),
                      (msg.blob_id, msg.size, msg.stored_size, int(time.time()), msg.inline))


def inline_blob_txn(txn: Txn, blob_id: str) -> Optional[bytes]:
    """The blob's inline compressed bytes, or None when it is stored as a file."""
    row = txn.execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()
    return bytes(row[0]) if row is not None and row[0] is not None else None


def insert_message_txn(txn: Txn, account_id: int, folder_id: int, msg: PreparedMessage, modseq: int,
                       flags: Iterable[str] = (), internaldate: Optional[int] = None) -> int:
    """One message row (the blob row must exist).  Returns the UID."""
    bits, keywords = encode_flags(flags)
    uid = allocate_uids_txn(txn, folder_id, 1)
    txn.execute(
        "INSERT INTO messages (account_id, folder_id, uid, modseq, created_modseq, sysflags, keywords, "
        "internaldate, size, blob_id, header, envelope, structure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (account_id, folder_id, uid, modseq, modseq, bits, " ".join(keywords)[:MAX_KEYWORDS_LEN],
         int(internaldate if internaldate is not None else time.time()), msg.size, msg.blob_id, msg.header,
         msg.envelope, msg.structure))
    _touch_folder(txn, folder_id, modseq)
    return uid


def append_message_txn(txn: Txn, account_id: int, folder_id: int, msg: PreparedMessage, flags, internaldate,
                       settings=None):
    folder = get_folder_by_id_txn(txn, folder_id)
    if folder.account_id != account_id:
        raise errors.NotFound("no such folder")
    if settings is not None:
        from store.rules import check_append_quota_txn
        check_append_quota_txn(txn, account_id, msg.size, settings)
    ensure_blob_txn(txn, msg)
    modseq = bump_modseq_txn(txn, account_id)
    uid = insert_message_txn(txn, account_id, folder_id, msg, modseq, flags, internaldate)
    return folder.uidvalidity, uid, modseq


@dataclass
class Delivered:
    """What :func:`deliver_txn` did for one recipient (published and reported after commit)."""
    error: Optional[Exception] = None
    folder: Optional[str] = None  # the first copy's folder
    uid: Optional[int] = None
    account_id: int = 0
    folder_id: Optional[int] = None  # None when copies went to several folders
    modseq: Optional[int] = None
    actions: tuple = ()
    queued: int = 0  # messages put in the outbound queue (the spooler is woken)
    events: list = None  # [(account_id, folder_id, modseq)] of other accounts (local redirects, replies)


def deliver_txn(txn: Txn, recipients: list, msg: PreparedMessage, plans: Optional[list] = None,
                settings=None, prepare=None) -> list:
    """Store one message for each recipient, as its rules' :class:`~store.rules.Plan` says (no
    plan: one copy in the INBOX), after the quota check; one :class:`Delivered` per recipient.
    ``prepare(raw)`` makes the quota warning's PreparedMessage."""
    from store import rules
    settings = settings if settings is not None else rules.RuleSettings()
    ensure_blob_txn(txn, msg)
    now = int(time.time())
    results = []
    done: dict = {}
    for i, rcpt in enumerate(recipients):
        if rcpt.account_id in done:
            # an alias and its target (or one address twice) in one transaction: one copy,
            # and every RCPT gets the same answer
            results.append(done[rcpt.account_id])
            continue
        plan = plans[i] if plans is not None and plans[i] is not None else None
        if plan is not None and plan.reject is not None:
            done[rcpt.account_id] = Delivered(error=errors.Rejected(plan.reject), account_id=rcpt.account_id,
                                              actions=plan.describe())
            results.append(done[rcpt.account_id])
            continue
        stores = list(plan.stores) if plan is not None else [rules.Copy(INBOX)]
        notes = list(plan.notes) if plan is not None else []
        result = Delivered(account_id=rcpt.account_id, events=[])
        unsent = []
        try:
            # the account row is locked first (the modseq bump), so on MariaDB a concurrent
            # delivery to the same account waits and the usage read below includes its rows
            result.modseq = bump_modseq_txn(txn, rcpt.account_id)
            gate = rules.quota_gate_txn(txn, rcpt.account_id, msg.size * max(1, len(stores)), settings) \
                if stores or (plan is not None and plan.outgoing) else None
            for out in (plan.outgoing if plan is not None else ()):
                status = rules.send_outgoing_txn(txn, rcpt.account_id, out, now, settings, result.events)
                result.queued += status == "queued"
                if status not in ("queued", "local"):
                    unsent.append(out)
                    notes.append(f"{out.kind} <{out.recipient}>: {status}")
                    if out.keep_instead and not any(s.target == INBOX for s in stores):
                        stores.append(rules.Copy(INBOX))  # never lose the message to a redirect
            folders = []
            for target in stores:
                folder = rules.target_folder_txn(txn, rcpt.account_id, target, notes)
                if folder.id in folders:
                    continue  # RFC 5228 §2.10.3: one copy per mailbox
                folders.append(folder.id)
                uid = insert_message_txn(txn, rcpt.account_id, folder.id, msg, result.modseq, target.flags)
                if result.folder is None:
                    result.folder, result.uid = folder.name, uid
            warned = rules.after_store_txn(txn, rcpt.account_id, rcpt.address, gate, msg.size * len(folders),
                                           settings, prepare)
            if warned is not None:
                folders.append(warned[0].id)
                result.modseq = warned[2]
                notes.append("quota warning sent")
        except (errors.NotFound, errors.OverQuota) as e:
            results.append(Delivered(error=e, account_id=rcpt.account_id, actions=tuple(notes)))
            continue
        result.folder_id = folders[0] if len(set(folders)) == 1 else None
        result.actions = (plan.describe(False, tuple(unsent)) + tuple(notes)) if plan is not None else tuple(notes)
        done[rcpt.account_id] = result
        results.append(result)
    return results


def deliver_batch_txn(txn: Txn, batch: list, settings=None, prepare=None) -> list:
    """Group commit: several deliveries ``[(recipients, msg, plans), ...]`` in one transaction
    (one fsync of the database for all of them).  Returns one :func:`deliver_txn` result each."""
    return [deliver_txn(txn, recipients, msg, plans, settings, prepare) for recipients, msg, plans in batch]


def list_messages_txn(txn: Txn, folder_id: int) -> list:
    rows = txn.execute(f"SELECT {_META} FROM messages WHERE folder_id = ? AND deleted_at = 0 ORDER BY uid",
                       (folder_id,)).fetchall()
    return [_meta(r) for r in rows]


def live_uids_txn(txn: Txn, folder_id: int) -> list:
    return [r[0] for r in txn.execute("SELECT uid FROM messages WHERE folder_id = ? AND deleted_at = 0 ORDER BY uid",
                                      (folder_id,)).fetchall()]


def fetch_messages_txn(txn: Txn, folder_id: int, uids, envelope: bool, structure: bool, header: bool) -> list:
    cols = [_META, "blob_id", "envelope" if envelope else "NULL", "structure" if structure else "NULL",
            "header" if header else "NULL"]
    out = []
    for part in _uid_chunks(txn, folder_id, uids):
        sql, args = part
        for r in txn.execute(f"SELECT {', '.join(cols)} FROM messages WHERE folder_id = ? AND deleted_at = 0 "
                             f"AND {sql} ORDER BY uid", [folder_id, *args]).fetchall():
            # positional (meta, blob_id, envelope, structure, header): this runs per message
            out.append(MessageRecord(_meta(r), r[6], json.loads(r[7]) if r[7] else None,
                                     json.loads(r[8]) if r[8] else None,
                                     bytes(r[9]) if r[9] is not None else None))
    out.sort(key=lambda m: m.meta.uid)
    return out


def _uid_chunks(txn: Txn, folder_id: int, uids):
    """SQL conditions covering ``uids``: contiguous runs become BETWEEN, the rest IN lists."""
    uids = sorted(set(int(u) for u in uids))
    if not uids:
        return
    runs, start, prev = [], uids[0], uids[0]
    for u in uids[1:]:
        if u != prev + 1:
            runs.append((start, prev))
            start = u
        prev = u
    runs.append((start, prev))
    singles = [a for a, b in runs if a == b]
    ranges = [(a, b) for a, b in runs if a != b]
    for a, b in ranges:
        yield "uid BETWEEN ? AND ?", [a, b]
    for part in chunks(singles, 500):
        yield "uid IN " + txn.in_list(part), part


def changes_since_txn(txn: Txn, folder_id: int, modseq: int) -> Changes:
    # A folder deleted meanwhile still answers: its messages come back as expunged, so a
    # session that had it selected sees them go (rather than an error on every command).
    highest = txn.scalar("SELECT highest_modseq FROM folders WHERE id = ?", (folder_id,))
    if highest is None:
        raise errors.NotFound("folder no longer exists")
    if highest <= modseq:
        return Changes(highest_modseq=highest)
    rows = txn.execute(f"SELECT {_META}, deleted_at FROM messages WHERE folder_id = ? AND modseq > ? ORDER BY uid",
                       (folder_id, modseq)).fetchall()
    updated = [_meta(r) for r in rows if r[6] == 0]
    expunged = [r[0] for r in rows if r[6] != 0]
    return Changes(highest_modseq=highest, updated=updated, expunged=expunged)


def store_flags_txn(txn: Txn, account_id: int, folder_id: int, uids, op: str, flags, unchanged_since) -> tuple:
    if op not in ("add", "remove", "replace"):
        raise errors.InvalidInput(f"bad flag operation {op!r}")
    bits, keywords = encode_flags(flags)
    rows = []
    for sql, args in _uid_chunks(txn, folder_id, uids):
        rows += txn.execute(f"SELECT {_META}, id FROM messages WHERE folder_id = ? AND deleted_at = 0 AND {sql}",
                            [folder_id, *args]).fetchall()
    rows.sort()
    changes, failed = [], []
    for r in rows:
        uid, old_modseq, old_bits, old_kw = r[0], r[1], r[2], r[3]
        if unchanged_since is not None and old_modseq > unchanged_since:
            failed.append(uid)  # RFC 7162 §3.1.3
            continue
        kw = [k for k in old_kw.split(" ") if k] if old_kw else []
        if op == "add":
            new_bits = old_bits | bits
            new_kw = kw + [k for k in keywords if k not in kw]
        elif op == "remove":
            new_bits = old_bits & ~bits
            new_kw = [k for k in kw if k not in keywords]
        else:
            new_bits, new_kw = bits, list(keywords)
        if new_bits != old_bits or new_kw != kw:
            changes.append((r, new_bits, " ".join(new_kw)[:MAX_KEYWORDS_LEN]))
    updated = []
    if changes:
        modseq = bump_modseq_txn(txn, account_id)
        txn.executemany("UPDATE messages SET sysflags = ?, keywords = ?, modseq = ? WHERE id = ?",
                        [(b, k, modseq, r[6]) for r, b, k in changes])
        _touch_folder(txn, folder_id, modseq)
        updated = [MessageMeta(uid=r[0], modseq=modseq, flags=decode_flags(b, k), internaldate=r[4], size=r[5])
                   for r, b, k in changes]
    return StoreResult(updated=updated, failed=failed), (updated[0].modseq if updated else None)


def copy_messages_txn(txn: Txn, account_id: int, folder_id: int, uids, dest_folder_id: int, settings=None):
    src = get_folder_by_id_txn(txn, folder_id)
    dest = get_folder_by_id_txn(txn, dest_folder_id)
    if src.account_id != account_id or dest.account_id != account_id:
        raise errors.NotFound("no such folder")
    rows = []
    for sql, args in _uid_chunks(txn, folder_id, uids):
        rows += txn.execute("SELECT uid, sysflags, keywords, internaldate, size, blob_id, header, envelope, "
                            f"structure, id FROM messages WHERE folder_id = ? AND deleted_at = 0 AND {sql}",
                            [folder_id, *args]).fetchall()
    rows.sort()
    if not rows:
        return CopyResult(uidvalidity=dest.uidvalidity, pairs=[]), [], None
    if settings is not None:  # a COPY adds to the usage (a MOVE does not: it passes no settings)
        from store.rules import check_append_quota_txn
        check_append_quota_txn(txn, account_id, sum(r[4] for r in rows), settings)
    modseq = bump_modseq_txn(txn, account_id)
    first = allocate_uids_txn(txn, dest_folder_id, len(rows))
    txn.executemany(
        "INSERT INTO messages (account_id, folder_id, uid, modseq, created_modseq, sysflags, keywords, "
        "internaldate, size, blob_id, header, envelope, structure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(account_id, dest_folder_id, first + i, modseq, modseq, r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8])
         for i, r in enumerate(rows)])
    _touch_folder(txn, dest_folder_id, modseq)
    pairs = [(r[0], first + i) for i, r in enumerate(rows)]
    return CopyResult(uidvalidity=dest.uidvalidity, pairs=pairs), [r[9] for r in rows], modseq


def move_messages_txn(txn: Txn, account_id: int, folder_id: int, uids, dest_folder_id: int):
    result, ids, modseq = copy_messages_txn(txn, account_id, folder_id, uids, dest_folder_id)
    if ids:
        now = int(time.time())
        for part in chunks(ids):
            txn.execute(f"UPDATE messages SET deleted_at = ?, modseq = ? WHERE id IN {txn.in_list(part)}",
                        [now, modseq, *part])
        _touch_folder(txn, folder_id, modseq)
    return result, modseq


def expunge_txn(txn: Txn, account_id: int, folder_id: int, uids) -> tuple[list, Optional[int]]:
    rows = txn.execute(f"SELECT uid, id FROM messages WHERE folder_id = ? AND deleted_at = 0 AND sysflags & {DELETED} <> 0",
                       (folder_id,)).fetchall()
    if uids is not None:
        wanted = set(int(u) for u in uids)
        rows = [r for r in rows if r[0] in wanted]
    return _soft_delete_txn(txn, account_id, folder_id, rows)


def delete_messages_txn(txn: Txn, account_id: int, folder_id: int, uids) -> tuple[list, Optional[int]]:
    """Soft-delete the live messages among ``uids`` whatever their flags (POP3 DELE)."""
    rows = []
    for sql, args in _uid_chunks(txn, folder_id, uids):
        rows += txn.execute(f"SELECT uid, id FROM messages WHERE folder_id = ? AND deleted_at = 0 AND {sql}",
                            [folder_id, *args]).fetchall()
    return _soft_delete_txn(txn, account_id, folder_id, rows)


def _soft_delete_txn(txn: Txn, account_id: int, folder_id: int, rows) -> tuple[list, Optional[int]]:
    """``rows`` are (uid, id) of live messages of the folder."""
    if not rows:
        return [], None
    modseq = bump_modseq_txn(txn, account_id)
    now = int(time.time())
    for part in chunks([r[1] for r in rows]):
        txn.execute(f"UPDATE messages SET deleted_at = ?, modseq = ? WHERE id IN {txn.in_list(part)}",
                    [now, modseq, *part])
    _touch_folder(txn, folder_id, modseq)
    return sorted(r[0] for r in rows), modseq


# -- soft-delete lifecycle -------------------------------------------------------------------

def list_deleted_txn(txn: Txn, account_id: int) -> list:
    rows = txn.execute("SELECT m.id, f.name, m.uid, m.deleted_at, m.size, m.envelope FROM messages m "
                       "JOIN folders f ON f.id = m.folder_id WHERE m.account_id = ? AND m.deleted_at > 0 "
                       "ORDER BY m.deleted_at DESC, m.id", (account_id,)).fetchall()
    out = []
    for r in rows:
        env = json.loads(r[5]) if r[5] else None
        out.append({"id": r[0], "folder": r[1], "uid": r[2], "deleted_at": r[3], "size": r[4],
                    "subject": env[1] if env else None})
    return out


def restore_messages_txn(txn: Txn, account_id: int, message_ids) -> tuple[int, list]:
    """Restored messages get new UIDs (a tombstone row stays behind for sync clients).
    Returns (count, [(folder_id, modseq)])."""
    restored, touched = 0, []
    modseq = None
    for mid in message_ids:
        row = txn.execute("SELECT m.folder_id, f.name, f.deleted_at, f.kind, m.sysflags, m.keywords, m.internaldate, "
                          "m.size, m.blob_id, m.header, m.envelope, m.structure FROM messages m JOIN folders f "
                          "ON f.id = m.folder_id WHERE m.id = ? AND m.account_id = ? AND m.deleted_at > 0",
                          (mid, account_id)).fetchone()
        if row is None:
            continue
        if modseq is None:
            modseq = bump_modseq_txn(txn, account_id)
        folder_id = row[0]
        if row[2]:  # the folder itself was deleted: bring back a live one of that name
            folder_id = revive_folder_txn(txn, account_id, row[1], row[3]).id
        uid = allocate_uids_txn(txn, folder_id, 1)
        txn.execute(
            "INSERT INTO messages (account_id, folder_id, uid, modseq, created_modseq, sysflags, keywords, "
            "internaldate, size, blob_id, header, envelope, structure) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (account_id, folder_id, uid, modseq, modseq, row[4] & ~DELETED, row[5], row[6], row[7], row[8], row[9],
             row[10], row[11]))
        # the old tombstone must not be restored twice: it becomes a plain tombstone of the new row
        txn.execute("UPDATE messages SET header = NULL, structure = NULL, envelope = NULL, deleted_at = ? "
                    "WHERE id = ?", (-1, mid))
        _touch_folder(txn, folder_id, modseq)
        touched.append((folder_id, modseq))
        restored += 1
    return restored, touched


def purge_txn(txn: Txn, cutoff: int) -> tuple[int, int, list]:
    """Remove tombstones deleted before ``cutoff`` (Unix time), and deleted folders that hold no
    rows any more.  Returns (messages, folders, blob ids no longer referenced).  Restored
    tombstones (deleted_at = -1) go at once."""
    rows = txn.execute("SELECT id, blob_id FROM messages WHERE (deleted_at <> 0 AND deleted_at < ?) "
                       "OR deleted_at = -1", (cutoff,)).fetchall()
    for part in chunks([r[0] for r in rows]):
        txn.execute(f"DELETE FROM messages WHERE id IN {txn.in_list(part)}", part)
    folders = txn.execute("SELECT id FROM folders f WHERE deleted_at <> 0 AND deleted_at < ? AND NOT EXISTS "
                          "(SELECT 1 FROM messages m WHERE m.folder_id = f.id) AND NOT EXISTS "
                          "(SELECT 1 FROM dav_items i WHERE i.folder_id = f.id)", (cutoff,)).fetchall()
    for part in chunks([r[0] for r in folders]):
        txn.execute(f"DELETE FROM folders WHERE id IN {txn.in_list(part)}", part)
    from store.dav import drop_folder_rows_txn
    drop_folder_rows_txn(txn, [r[0] for r in folders])
    blobs = drop_unreferenced_blobs_txn(txn, {r[1] for r in rows})
    return len(rows), len(folders), blobs


def drop_unreferenced_blobs_txn(txn: Txn, blob_ids) -> list:
    """Delete blob rows nothing references any more; returns their ids (the caller removes the
    files after commit).  The reference count is the indexed count of message rows and
    outbound queue entries."""
    gone = []
    for blob_id in blob_ids:
        if not (txn.scalar("SELECT COUNT(*) FROM messages WHERE blob_id = ?", (blob_id,))
                or txn.scalar("SELECT COUNT(*) FROM outbound_queue WHERE blob_id = ?", (blob_id,))):
            txn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
            gone.append(blob_id)
    return gone


def known_blob_ids_txn(txn: Txn, blob_ids) -> set:
    known = set()
    for part in chunks(list(blob_ids)):
        known.update(r[0] for r in txn.execute(f"SELECT id FROM blobs WHERE id IN {txn.in_list(part)}", part).fetchall())
    return known


# -- batched reads for the IMAP hot paths (FETCH bodies, SEARCH text), see SqlStore ----------

def blob_data_txn(txn: Txn, blob_ids) -> dict:
    """``{blob id: inline compressed bytes, or None for a blob file}`` for the blob rows among
    ``blob_ids``; ids without a row are left out."""
    out = {}
    for part in chunks(list(blob_ids)):
        for r in txn.execute(f"SELECT id, data FROM blobs WHERE id IN {txn.in_list(part)}", part).fetchall():
            out[r[0]] = bytes(r[1]) if r[1] is not None else None
    return out


def fetch_messages_with_data_txn(txn: Txn, folder_id: int, uids, envelope: bool, structure: bool,
                                 header: bool, cached=None) -> tuple[list, dict, dict]:
    """:func:`fetch_messages_txn` and the :func:`blob_data_txn` of its blobs, in one transaction:
    ``(records, {blob id: raw}, {blob id: inline data or None})``.  ``cached(blob_id)`` may give
    the raw bytes of a blob already at hand (second dict); those are not read again."""
    recs = fetch_messages_txn(txn, folder_id, uids, envelope, structure, header)
    have, want = {}, set()
    for r in recs:
        raw = cached(r.blob_id) if cached is not None else None
        if raw is not None:
            have[r.blob_id] = raw
        else:
            want.add(r.blob_id)
    return recs, have, blob_data_txn(txn, want)


def text_sources_txn(txn: Txn, folder_id: int, uids) -> list:
    """``(uid, blob_id, structure JSON or None, inline compressed bytes or None)`` of the live
    messages among ``uids``, ascending by UID (None bytes: a blob file, or a missing blob)."""
    out = []
    for sql, args in _uid_chunks(txn, folder_id, uids):
        for r in txn.execute("SELECT m.uid, m.blob_id, m.structure, b.data FROM messages m "
                             "LEFT JOIN blobs b ON b.id = m.blob_id "
                             f"WHERE m.folder_id = ? AND m.deleted_at = 0 AND m.{sql}",
                             [folder_id, *args]).fetchall():
            out.append((r[0], r[1], r[2], bytes(r[3]) if r[3] is not None else None))
    out.sort(key=lambda t: t[0])
    return out
