"""IMAP METADATA entries (RFC 5464) of an account's server view and its mailboxes: the ``_txn``
functions and the store's methods (table ``metadata_entries``, delta 9).

Invariants
- Entry names arrive checked and lower-cased (the gateway's grammar); the store keeps them as
  given and bounds what one mailbox (or the server view) may hold: at most
  :data:`~store.records.METADATA_MAX_ENTRIES` entries and ``METADATA_MAX_VALUE`` octets a value (TooBig, InvalidInput
  ``too many``), checked inside the transaction that writes.
- One SETMETADATA is one transaction: all its entries are written, or none.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from store import errors
from store.core import StoreCore
from store.engines import Txn
from store.interfaces import METADATA_MAX_ENTRIES as MAX_ENTRIES, METADATA_MAX_VALUE as MAX_VALUE

SERVER = 0  # folder_id of the server's entries


def _folder_key(folder_id: Optional[int]) -> int:
    return SERVER if folder_id is None else int(folder_id)


def _below(name: str) -> str:
    """A LIKE pattern for every entry below ``name`` (``_`` and ``%`` in names escaped)."""
    escaped = name.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return escaped + "/%"


def get_metadata_txn(txn: Txn, account_id: int, folder_id: int, names: Sequence[str], depth: str) -> list:
    found: dict = {}
    for name in names:
        rows = txn.execute("SELECT name, value FROM metadata_entries WHERE account_id = ? AND folder_id = ? "
                           "AND name = ?", (account_id, folder_id, name)).fetchall()
        if depth != "0":
            rows += txn.execute("SELECT name, value FROM metadata_entries WHERE account_id = ? AND folder_id = ? "
                                "AND name LIKE ? ESCAPE '!'", (account_id, folder_id, _below(name))).fetchall()
        for entry, value in rows:
            if depth == "1" and entry != name and "/" in entry[len(name) + 1:]:
                continue  # RFC 5464 §4.2.2: DEPTH 1 is the entry and its immediate children
            found[entry] = bytes(value)
    return sorted(found.items())


def set_metadata_txn(txn: Txn, account_id: int, folder_id: int, values: Mapping) -> None:
    for name, value in values.items():
        if value is not None and len(value) > MAX_VALUE:
            raise errors.TooBig(f"a metadata value holds at most {MAX_VALUE} octets")
        txn.execute("DELETE FROM metadata_entries WHERE account_id = ? AND folder_id = ? AND name = ?",
                    (account_id, folder_id, name))
        if value is not None:
            txn.execute("INSERT INTO metadata_entries (account_id, folder_id, name, value) VALUES (?, ?, ?, ?)",
                        (account_id, folder_id, name, value))
    count = txn.scalar("SELECT COUNT(*) FROM metadata_entries WHERE account_id = ? AND folder_id = ?",
                       (account_id, folder_id))
    if count > MAX_ENTRIES:
        raise errors.InvalidInput(f"too many metadata entries (at most {MAX_ENTRIES} a mailbox)")


def drop_folder_txn(txn: Txn, account_id: int, folder_id: int) -> None:
    txn.execute("DELETE FROM metadata_entries WHERE account_id = ? AND folder_id = ?", (account_id, folder_id))


def drop_account_txn(txn: Txn, account_id: int) -> None:
    txn.execute("DELETE FROM metadata_entries WHERE account_id = ?", (account_id,))


class MetadataStore(StoreCore):
    async def get_metadata(self, account_id, folder_id, names, depth="0") -> list:
        if depth not in ("0", "1", "infinity"):
            raise errors.InvalidInput("depth is 0, 1 or infinity")
        return await self._run("get_metadata", get_metadata_txn, account_id, _folder_key(folder_id),
                               list(names), depth)

    async def set_metadata(self, account_id, folder_id, values) -> None:
        await self._run("set_metadata", set_metadata_txn, account_id, _folder_key(folder_id), dict(values))
