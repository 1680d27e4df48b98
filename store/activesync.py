"""ActiveSync devices, their sync states and client ids: the ``_txn`` functions and the store's
methods (tables ``eas_devices``, ``eas_sync_states``, ``eas_client_ids``, delta 14).

Invariants
- A device is (account, DeviceId), never the DeviceId alone: one phone on two accounts is two
  devices with their own policy keys, wipe states and sync states.  Every row here carries its
  account id; deleting an account removes them all (:func:`drop_account_txn`), a soft delete
  (``haven user del``) keeps them until the purge removes the account.
- A sync state belongs to (device, collection).  A collection is a ``folders`` row of any kind
  (a mail folder, a calendar or address book) or :data:`EAS_HIERARCHY` (0) for FolderSync.
- Saving a state is a compare-and-set on its SyncKey (:func:`save_sync_state_txn`): one UPDATE
  whose WHERE names the key the request came with, so of two requests with the same key exactly
  one advances it (SQLite: one writer; MariaDB: the row lock, then READ COMMITTED re-reads the
  row and the loser matches nothing).  It runs under an idempotency key (:mod:`store.idempotency`):
  an engine retry after a COMMIT that landed unseen returns the first attempt's True instead of
  finding the key moved on (by itself) and saying False.  The key it replaced and the response
  that carried the new key are kept, so a device that never got the response can repeat its
  request and have it replayed.  SyncKey "0" starts over: the state is replaced (for the
  hierarchy, every state of the device goes, as the device drops all its folders), and the
  collection's client ids go.
- Deletes are found from the held ids, never from tombstones alone: a Sync compares the ids the
  device holds with the folder's live ids, so an item whose tombstone the purge removed is still
  reported deleted.  Mail ids are UIDs in the folder (never reused; a MOVE makes a new UID), DAV
  ids are ``dav_items.id``, the hierarchy's are folder ids.  What ids cannot tell (the names and
  parents a FolderSync sent, to find renames) goes into the state's ``snapshot``, a JSON value.
- SyncKeys are ``{generation}N`` (:func:`store.records.eas_next_sync_key`): the generation is drawn
  when a device starts over, N counts up; a key from another generation never matches.
- Policy keys are 32-bit unsigned, random and never 0: Provision issues a pending one, the
  device's acknowledgement of exactly that one makes a new final key the acknowledged one.
- Caps (:mod:`store.records`): a cached Ping or Sync request at most ``EAS_MAX_CACHED_REQUEST``
  (64 KiB), a replay response ``EAS_MAX_RESPONSE`` (4 MiB), ``EAS_MAX_HELD`` (1,000,000) held ids
  a state, ``EAS_MAX_OPTIONS`` (4,096) characters of options, ``EAS_MAX_SNAPSHOT`` (1 MiB)
  characters of snapshot JSON; past a cap the call raises TooBig and writes nothing.  Client
  ids are kept ``EAS_CLIENT_ID_LIFETIME`` (7 days) and pruned by the purge job; the states of
  folders the purge removes go with them.

Held ids are stored as one blob per state: version byte 1, then zlib (level 6) of the sorted ids'
deltas as little-endian signed 64-bit integers; encoding runs in the CPU pool, decoding in the DB
thread that reads the row.  Measured with 50,000 ids on the 2-core development machine
(tests/store/test_activesync_store.py prints the save and load times with ``-s``):

    ids                                   blob       encode   decode
    consecutive UIDs 1..50,000            0.6 KB     9 ms     3 ms
    spread at random over 1..2,000,000    72 KB      43 ms    3 ms   (zlib level 1: 83 KB, 25 ms)

    a 50,000-id (spread) state, through the store    save        load
    SQLite                                           37-57 ms    3-7 ms
    MariaDB                                          44-63 ms    4-7 ms (once 47 ms)

A table of (state, id) rows would cost 50,000 rows written per Sync that changes the set, and the
Sync needs the whole set in memory to compare with the folder's live ids anyway.
"""

from __future__ import annotations

import array
import dataclasses
import itertools
import json
import re
import secrets
import sys
import time
import uuid
import zlib
from typing import Iterable, Optional

from store import dav, errors
from store.core import StoreCore
from store.engines import IntegrityError, Txn, chunks
from store.idempotency import new_key as new_attempt_key, once_txn
from store.records import (EAS_CLIENT_ID_LIFETIME, EAS_HIERARCHY, EAS_INITIAL_KEY, EAS_LAST_SEEN_RESOLUTION,
                           EAS_TASK_VIEW,
                           EAS_MAX_CACHED_REQUEST, EAS_MAX_HELD, EAS_MAX_OPTIONS, EAS_MAX_RESPONSE, EAS_MAX_SNAPSHOT,
                           EasDevice, EasSyncState)

#: MS-ASHTTP §2.2.1.1.1.2.3 says up to 32 alphanumeric characters; devices in the wild send
#: longer ones and other characters, so (as the gateway's request parser): 1 to 128 characters,
#: no control characters
_DEVICE_ID = re.compile(r"[^\x00-\x1f\x7f]{1,128}\Z")
#: the informational fields and their column widths (longer values are cut)
_INFO = {"device_type": 128, "model": 255, "os": 255, "user_agent": 255, "protocol_version": 16}
_DEVICE_COLS = ("account_id, device_id, device_type, model, os, user_agent, protocol_version, policy_key, "
                "pending_policy_key, wipe_requested_at, wipe_done_at, first_seen, last_seen, wipe_account_only")
_REQUESTS = {"ping": "ping_request", "sync": "sync_request"}
_HELD_VERSION = b"\x01"


# -- held ids ------------------------------------------------------------------------------------
def encode_held(ids: Iterable[int]) -> tuple[bytes, int]:
    """(the blob, how many ids) of a set of item ids; see the module docstring."""
    ordered = sorted(set(int(i) for i in ids))
    if len(ordered) > EAS_MAX_HELD:
        raise errors.TooBig(f"a sync state holds at most {EAS_MAX_HELD} ids")
    if ordered and ordered[0] < 0:
        raise errors.InvalidInput("item ids are not negative")
    deltas = array.array("q", [b - a for a, b in zip([0] + ordered, ordered)])
    if sys.byteorder == "big":
        deltas.byteswap()
    return _HELD_VERSION + zlib.compress(deltas.tobytes(), 6), len(ordered)


def decode_held(blob) -> tuple:
    blob = bytes(blob)
    if blob[:1] != _HELD_VERSION:
        raise errors.InvalidInput("unknown held-ids format")
    deltas = array.array("q")
    deltas.frombytes(zlib.decompress(blob[1:]))
    if sys.byteorder == "big":
        deltas.byteswap()
    return tuple(itertools.accumulate(deltas))


# -- devices ---------------------------------------------------------------------------------------
def _check_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.match(device_id):
        raise errors.InvalidInput("a DeviceId is 1 to 128 characters, no control characters")
    return device_id


def _device(row) -> EasDevice:
    account_id, device_id, *rest = row
    if isinstance(device_id, (bytes, bytearray)):  # a {name} column: VARBINARY on MariaDB
        device_id = bytes(device_id).decode("utf-8")
    *rest, account_only = rest
    return EasDevice(account_id, device_id, *rest, wipe_account_only=bool(account_only))


def _device_row_txn(txn: Txn, account_id: int, device_id: str) -> int:
    row = txn.scalar("SELECT id FROM eas_devices WHERE account_id = ? AND device_id = ?",
                     (account_id, _check_device_id(device_id)))
    if row is None:
        raise errors.NotFound(f"no device {device_id}")
    return row


def get_device_txn(txn: Txn, account_id: int, device_id: str) -> EasDevice:
    row = txn.execute(f"SELECT {_DEVICE_COLS} FROM eas_devices WHERE account_id = ? AND device_id = ?",
                      (account_id, _check_device_id(device_id))).fetchone()
    if row is None:
        raise errors.NotFound(f"no device {device_id}")
    return _device(row)


def list_devices_txn(txn: Txn, account_id: Optional[int]) -> list:
    if account_id is None:
        rows = txn.execute(f"SELECT {_DEVICE_COLS} FROM eas_devices ORDER BY account_id, device_id").fetchall()
    else:
        rows = txn.execute(f"SELECT {_DEVICE_COLS} FROM eas_devices WHERE account_id = ? ORDER BY device_id",
                           (account_id,)).fetchall()
    return [_device(r) for r in rows]


def record_device_txn(txn: Txn, account_id: int, device_id: str, info: dict, now: int) -> EasDevice:
    """Create the device or note that it was seen now; the fields of ``info`` that are not None
    replace the stored ones.  ``last_seen`` alone is written at most once a
    ``EAS_LAST_SEEN_RESOLUTION``, so a phone's every Ping costs no write."""
    values = {k: str(v)[:_INFO[k]] for k, v in info.items() if v is not None}
    try:
        found = get_device_txn(txn, account_id, device_id)
    except errors.NotFound:
        if not txn.scalar("SELECT COUNT(*) FROM accounts WHERE id = ?", (account_id,)):
            raise errors.NotFound("no such account") from None
        cols = ("account_id", "device_id", "first_seen", "last_seen", *values)
        if txn.insert_ignore("eas_devices", cols, (account_id, device_id, now, now, *values.values())):
            return get_device_txn(txn, account_id, device_id)
        found = get_device_txn(txn, account_id, device_id)  # another request made it just now
    changed = {k: v for k, v in values.items() if getattr(found, k) != v}
    if not changed and now - found.last_seen < EAS_LAST_SEEN_RESOLUTION:
        return found
    sets = ", ".join(f"{k} = ?" for k in ("last_seen", *changed))
    txn.execute(f"UPDATE eas_devices SET {sets} WHERE account_id = ? AND device_id = ?",
                (now, *changed.values(), account_id, device_id))
    return dataclasses.replace(found, last_seen=now, **changed)


def issue_policy_key_txn(txn: Txn, account_id: int, device_id: str, key: int) -> int:
    row = _device_row_txn(txn, account_id, device_id)
    txn.execute("UPDATE eas_devices SET pending_policy_key = ? WHERE id = ?", (key, row))
    return key


def acknowledge_policy_key_txn(txn: Txn, account_id: int, device_id: str, pending: int, final: int) -> int:
    """``final`` becomes the acknowledged key when ``pending`` is the pending one; else 0."""
    row = _device_row_txn(txn, account_id, device_id)
    if not pending:
        return 0
    txn.execute("UPDATE eas_devices SET policy_key = ?, pending_policy_key = 0 WHERE id = ? AND pending_policy_key = ?",
                (final, row, pending))
    if txn.rowcount == 1:
        return final
    # ``final`` is drawn once per call: found stored, it is this call's own attempt whose COMMIT
    # landed before the connection dropped (the engine retries)
    return final if txn.scalar("SELECT policy_key FROM eas_devices WHERE id = ?", (row,)) == final else 0


def request_wipe_txn(txn: Txn, account_id: int, device_id: str, now: int, account_only: bool = False) -> None:
    row = _device_row_txn(txn, account_id, device_id)
    txn.execute("UPDATE eas_devices SET wipe_requested_at = ?, wipe_done_at = 0, wipe_account_only = ? WHERE id = ?",
                (now, 1 if account_only else 0, row))


def confirm_wipe_txn(txn: Txn, account_id: int, device_id: str, now: int) -> None:
    row = _device_row_txn(txn, account_id, device_id)
    if not txn.scalar("SELECT wipe_requested_at FROM eas_devices WHERE id = ?", (row,)):
        raise errors.InvalidInput(f"no wipe was requested for device {device_id}")
    txn.execute("UPDATE eas_devices SET wipe_done_at = ? WHERE id = ? AND wipe_done_at = 0", (now, row))


def clear_wipe_txn(txn: Txn, account_id: int, device_id: str) -> None:
    row = _device_row_txn(txn, account_id, device_id)
    txn.execute("UPDATE eas_devices SET wipe_requested_at = 0, wipe_done_at = 0, wipe_account_only = 0 WHERE id = ?",
                (row,))


def cache_request_txn(txn: Txn, account_id: int, device_id: str, kind: str, data: Optional[bytes]) -> None:
    row = _device_row_txn(txn, account_id, device_id)
    txn.execute(f"UPDATE eas_devices SET {_REQUESTS[kind]} = ? WHERE id = ?", (data, row))


def cached_request_txn(txn: Txn, account_id: int, device_id: str, kind: str) -> Optional[bytes]:
    row = _device_row_txn(txn, account_id, device_id)
    data = txn.scalar(f"SELECT {_REQUESTS[kind]} FROM eas_devices WHERE id = ?", (row,))
    return None if data is None else bytes(data)


def delete_device_txn(txn: Txn, account_id: int, device_id: str) -> None:
    row = _device_row_txn(txn, account_id, device_id)
    txn.execute("DELETE FROM eas_client_ids WHERE device = ?", (row,))
    txn.execute("DELETE FROM eas_sync_states WHERE device = ?", (row,))
    txn.execute("DELETE FROM eas_devices WHERE id = ?", (row,))


# -- sync states -----------------------------------------------------------------------------------
_STATE_COLS = ("collection_id, sync_key, previous_key, modseq, held, filter_type, options, last_response, updated_at, "
               "snapshot")


def get_sync_state_txn(txn: Txn, account_id: int, device_id: str, collection_id: int) -> Optional[EasSyncState]:
    row = _device_row_txn(txn, account_id, device_id)
    found = txn.execute(f"SELECT {_STATE_COLS} FROM eas_sync_states WHERE device = ? AND collection_id = ?",
                        (row, collection_id)).fetchone()
    if found is None:
        return None
    collection, key, previous, modseq, held, filter_type, options, response, updated_at, snapshot = found
    return EasSyncState(collection_id=collection, sync_key=key, previous_key=previous, modseq=modseq,
                        held=decode_held(held), filter_type=filter_type, options=json.loads(options or "{}"),
                        last_response=None if response is None else bytes(response), updated_at=updated_at,
                        snapshot=None if snapshot is None else json.loads(zlib.decompress(bytes(snapshot))))


def save_sync_state_txn(txn: Txn, account_id: int, device_id: str, collection_id: int, expected_key: str,
                        new_key: str, modseq: int, held: Optional[tuple], filter_type: Optional[int],
                        options: Optional[str], response: Optional[bytes], now: int,
                        snapshot: Optional[bytes] = None) -> bool:
    """See :meth:`store.interfaces.Store.save_sync_state`; ``held`` is (blob, count) or None,
    ``options`` JSON or None, ``snapshot`` compressed JSON or None."""
    row = _device_row_txn(txn, account_id, device_id)
    if expected_key == EAS_INITIAL_KEY:
        if collection_id == EAS_HIERARCHY:
            txn.execute("DELETE FROM eas_sync_states WHERE device = ?", (row,))
            txn.execute("DELETE FROM eas_client_ids WHERE device = ? AND collection_id <> ?", (row, EAS_HIERARCHY))
        else:
            txn.execute("DELETE FROM eas_sync_states WHERE device = ? AND collection_id = ?", (row, collection_id))
            txn.execute("DELETE FROM eas_client_ids WHERE device = ? AND collection_id = ?", (row, collection_id))
        blob, count = held or encode_held(())
        try:
            txn.execute("INSERT INTO eas_sync_states (device, account_id, collection_id, sync_key, previous_key, "
                        "modseq, held, held_count, filter_type, options, last_response, updated_at, snapshot) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (row, account_id, collection_id, new_key, EAS_INITIAL_KEY, modseq, blob, count,
                         filter_type or 0, options or "{}", response, now, snapshot))
        except IntegrityError:
            return False  # a concurrent start-over of the same collection committed first
        return True
    # MariaDB assigns left to right (previous_key takes sync_key before it changes); SQLite reads
    # every right-hand side from the old row: the same result on both
    sets = ["previous_key = sync_key", "sync_key = ?", "modseq = ?", "last_response = ?", "updated_at = ?"]
    args: list = [new_key, modseq, response, now]
    if held is not None:
        sets += ["held = ?", "held_count = ?"]
        args += list(held)
    if filter_type is not None:
        sets.append("filter_type = ?")
        args.append(filter_type)
    if options is not None:
        sets.append("options = ?")
        args.append(options)
    if snapshot is not None:
        sets.append("snapshot = ?")
        args.append(snapshot)
    txn.execute(f"UPDATE eas_sync_states SET {', '.join(sets)} WHERE device = ? AND collection_id = ? "
                "AND sync_key = ?", (*args, row, collection_id, expected_key))
    return txn.rowcount == 1


def sync_modseqs_txn(txn: Txn, account_id: int, collection_ids) -> dict:
    """``{(device id, collection id): modseq reached}`` of every device of the account that has
    a state of one of ``collection_ids`` (what parked Pings compare with the folders' modseqs)."""
    out = {}
    for part in chunks(sorted(set(int(c) for c in collection_ids))):
        for device_id, collection_id, modseq in txn.execute(
                "SELECT d.device_id, s.collection_id, s.modseq FROM eas_sync_states s JOIN eas_devices d "
                f"ON d.id = s.device WHERE s.account_id = ? AND s.collection_id IN {txn.in_list(part)}",
                (account_id, *part)).fetchall():
            if isinstance(device_id, (bytes, bytearray)):  # a {name} column: VARBINARY on MariaDB
                device_id = bytes(device_id).decode("utf-8")
            out[(device_id, int(collection_id))] = int(modseq)
    return out


def adjust_held_txn(txn: Txn, account_id: int, device_id: str, collection_id: int, add, remove) -> bool:
    """Add ids to and remove ids from the held ids of a state, its keys unchanged (the device
    moved items itself: MoveItems).  False when the device has no state of the collection."""
    row = _device_row_txn(txn, account_id, device_id)
    found = txn.execute("SELECT held FROM eas_sync_states WHERE device = ? AND collection_id = ?",
                        (row, collection_id)).fetchone()
    if found is None:
        return False
    held = (set(decode_held(found[0])) | set(add)) - set(remove)
    blob, count = encode_held(held)
    txn.execute("UPDATE eas_sync_states SET held = ?, held_count = ? WHERE device = ? AND collection_id = ?",
                (blob, count, row, collection_id))
    return True


def drop_collections_txn(txn: Txn, folder_ids) -> None:
    """Forget the sync states and client ids of folders that are gone for good (the purge)."""
    ids = list(folder_ids)
    for part in chunks(ids + [i + EAS_TASK_VIEW for i in ids]):  # a calendar's task view goes with it
        txn.execute(f"DELETE FROM eas_sync_states WHERE collection_id IN {txn.in_list(part)}", part)
        txn.execute(f"DELETE FROM eas_client_ids WHERE collection_id IN {txn.in_list(part)}", part)


# -- client ids ------------------------------------------------------------------------------------
def _check_client_id(client_id: str) -> str:
    """The ClientId as given (compared exactly: a {name} column on both engines)."""
    if not isinstance(client_id, str) or not 0 < len(client_id.encode("utf-8")) <= 255:
        raise errors.InvalidInput("a ClientId is 1 to 255 octets")
    return client_id


def server_id_for_client_id_txn(txn: Txn, account_id: int, device_id: str, collection_id: int,
                                client_id: str) -> Optional[str]:
    row = _device_row_txn(txn, account_id, device_id)
    return txn.scalar("SELECT server_id FROM eas_client_ids WHERE device = ? AND collection_id = ? AND client_id = ?",
                      (row, collection_id, _check_client_id(client_id)))


def remember_client_id_txn(txn: Txn, account_id: int, device_id: str, collection_id: int, client_id: str,
                           server_id: str, now: int) -> str:
    row = _device_row_txn(txn, account_id, device_id)
    if not 0 < len(server_id) <= 255:
        raise errors.InvalidInput("a ServerId is 1 to 255 characters")
    client_id = _check_client_id(client_id)
    txn.insert_ignore("eas_client_ids",
                      ("device", "account_id", "collection_id", "client_id", "server_id", "created_at"),
                      (row, account_id, collection_id, client_id, server_id, now))
    return txn.scalar("SELECT server_id FROM eas_client_ids WHERE device = ? AND collection_id = ? AND client_id = ?",
                      (row, collection_id, client_id))


def add_dav_items_txn(txn: Txn, account_id: int, device_id: str, collection_id: int, folder_id: int,
                      adds: list, now: int) -> tuple:
    """A phone's Adds to a DAV collection in one transaction: ``adds`` is [(ClientId or None,
    NewItem)], the answer ``(modseq or 0, [(ServerId or None, the reason it is None, the
    item's modseq when this wrote it, else 0)])``.  A
    ClientId already answered gets its ServerId again (nothing written); a new item is created
    conditionally (``expect=""``): when its name is taken another name is given, when its UID
    is another item's it is refused.  What one item does never undoes another's."""
    out, modseq = [], 0
    for client_id, item in adds:
        if client_id:
            known = server_id_for_client_id_txn(txn, account_id, device_id, collection_id, client_id)
            if known:
                out.append((known, None, 0))
                continue
        try:
            try:
                stored, _replaced, modseq, _restored = dav.put_item_txn(txn, account_id, folder_id, item, "")
            except errors.Conflict:  # "<UID>.ics" is another item's name
                ext = item.href.rpartition(".")[2]
                item = dataclasses.replace(item, href=f"{uuid.uuid4()}.{ext}")
                stored, _replaced, modseq, _restored = dav.put_item_txn(txn, account_id, folder_id, item, "")
        except (errors.Exists, errors.InvalidInput, errors.NotFound) as e:
            out.append((None, str(e), 0))
            continue
        if client_id:
            remember_client_id_txn(txn, account_id, device_id, collection_id, client_id, str(stored.id), now)
        out.append((str(stored.id), None, stored.modseq))
    return modseq, out


def prune_client_ids_txn(txn: Txn, now: int) -> int:
    txn.execute("DELETE FROM eas_client_ids WHERE created_at < ?", (now - EAS_CLIENT_ID_LIFETIME,))
    return txn.rowcount


def drop_account_txn(txn: Txn, account_id: int) -> None:
    txn.execute("DELETE FROM eas_client_ids WHERE account_id = ?", (account_id,))
    txn.execute("DELETE FROM eas_sync_states WHERE account_id = ?", (account_id,))
    txn.execute("DELETE FROM eas_devices WHERE account_id = ?", (account_id,))


def _pack_snapshot(snapshot) -> bytes:
    text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    if len(text) > EAS_MAX_SNAPSHOT:
        raise errors.TooBig(f"a sync state's snapshot is at most {EAS_MAX_SNAPSHOT} characters of JSON")
    return zlib.compress(text.encode("utf-8"), 6)


def _policy_key() -> int:
    """A random 32-bit unsigned policy key, never 0 (MS-ASPROV: 0 means none)."""
    return secrets.randbelow(0xFFFFFFFF) + 1


class ActiveSyncStore(StoreCore):
    async def record_device(self, account_id, device_id, device_type=None, user_agent=None, protocol_version=None,
                            model=None, os=None) -> EasDevice:
        info = {"device_type": device_type, "user_agent": user_agent, "protocol_version": protocol_version,
                "model": model, "os": os}
        return await self._run("record_device", record_device_txn, account_id, device_id, info, int(time.time()))

    async def get_device(self, account_id, device_id) -> EasDevice:
        return await self._run("get_device", get_device_txn, account_id, device_id)

    async def list_devices(self, account_id=None) -> list:
        return await self._run("list_devices", list_devices_txn, account_id)

    async def delete_device(self, account_id, device_id) -> None:
        await self._run("delete_device", delete_device_txn, account_id, device_id)

    async def issue_policy_key(self, account_id, device_id) -> int:
        return await self._run("issue_policy_key", issue_policy_key_txn, account_id, device_id, _policy_key())

    async def acknowledge_policy_key(self, account_id, device_id, pending_key) -> int:
        return await self._run("acknowledge_policy_key", acknowledge_policy_key_txn, account_id, device_id,
                               int(pending_key), _policy_key())

    async def request_wipe(self, account_id, device_id, account_only=False) -> None:
        await self._run("request_wipe", request_wipe_txn, account_id, device_id, int(time.time()), bool(account_only))

    async def confirm_wipe(self, account_id, device_id) -> None:
        await self._run("confirm_wipe", confirm_wipe_txn, account_id, device_id, int(time.time()))

    async def clear_wipe(self, account_id, device_id) -> None:
        await self._run("clear_wipe", clear_wipe_txn, account_id, device_id)

    async def cache_device_request(self, account_id, device_id, kind, data) -> None:
        if kind not in _REQUESTS:
            raise errors.InvalidInput("the cached requests are ping and sync")
        if data is not None and len(data) > EAS_MAX_CACHED_REQUEST:
            raise errors.TooBig(f"a cached request is at most {EAS_MAX_CACHED_REQUEST} octets")
        await self._run("cache_device_request", cache_request_txn, account_id, device_id, kind,
                        None if data is None else bytes(data))

    async def cached_device_request(self, account_id, device_id, kind) -> Optional[bytes]:
        if kind not in _REQUESTS:
            raise errors.InvalidInput("the cached requests are ping and sync")
        return await self._run("cached_device_request", cached_request_txn, account_id, device_id, kind)

    async def get_sync_state(self, account_id, device_id, collection_id) -> Optional[EasSyncState]:
        return await self._run("get_sync_state", get_sync_state_txn, account_id, device_id, int(collection_id))

    async def save_sync_state(self, account_id, device_id, collection_id, expected_key, new_key, modseq,
                              held=None, filter_type=None, options=None, response=None, snapshot=None) -> bool:
        if not new_key or new_key == EAS_INITIAL_KEY or len(new_key) > 64 or new_key == expected_key:
            raise errors.InvalidInput("a new SyncKey is 1 to 64 characters, not 0 and not the expected one")
        if response is not None and len(response) > EAS_MAX_RESPONSE:
            raise errors.TooBig(f"a response kept for replay is at most {EAS_MAX_RESPONSE} octets")
        options_json = None
        if options is not None:
            options_json = json.dumps(options, sort_keys=True)
            if len(options_json) > EAS_MAX_OPTIONS:
                raise errors.TooBig(f"a sync state's options are at most {EAS_MAX_OPTIONS} characters of JSON")
        packed = None if held is None else await self._cpu(encode_held, held)
        snapshot_blob = None if snapshot is None else await self._cpu(_pack_snapshot, snapshot)
        # under an idempotency key: a retry after a COMMIT that landed unseen would find the key
        # advanced (by itself) and report a loss
        return await self._run("save_sync_state", once_txn, new_attempt_key(), save_sync_state_txn, account_id,
                               device_id, int(collection_id), str(expected_key), new_key, int(modseq), packed,
                               filter_type, options_json, None if response is None else bytes(response),
                               int(time.time()), snapshot_blob)

    async def sync_modseqs(self, account_id, collection_ids) -> dict:
        return await self._run("sync_modseqs", sync_modseqs_txn, account_id, list(collection_ids))

    async def adjust_held_ids(self, account_id, device_id, collection_id, add=(), remove=()) -> bool:
        return await self._run("adjust_held_ids", adjust_held_txn, account_id, device_id, int(collection_id),
                               [int(i) for i in add], [int(i) for i in remove])

    async def server_id_for_client_id(self, account_id, device_id, collection_id, client_id) -> Optional[str]:
        return await self._run("server_id_for_client_id", server_id_for_client_id_txn, account_id, device_id,
                               int(collection_id), client_id)

    async def add_dav_items(self, account_id, device_id, collection_id, folder_id, adds) -> list:
        modseq, out = await self._run("add_dav_items", add_dav_items_txn, account_id, device_id, int(collection_id),
                                      folder_id, list(adds), int(time.time()))
        if modseq:
            self._publish(account_id, folder_id, modseq, "dav")
        return out

    async def remember_client_id(self, account_id, device_id, collection_id, client_id, server_id) -> str:
        return await self._run("remember_client_id", remember_client_id_txn, account_id, device_id,
                               int(collection_id), client_id, str(server_id), int(time.time()))
