"""Accounts, domains and aliases: the ``_txn`` functions (plain SQL, retry-safe, reactor-free)."""

from __future__ import annotations

import time

from store import errors
from store.core import StoreCore
from store.engines import IntegrityError, Txn
from store.folders import insert_folder_txn
from store.interfaces import INBOX, Account, Credentials, Recipient

#: (name, kind, special_use) of the folders every new account gets
DEFAULT_FOLDERS = (
    (INBOX, "mail", None),
    ("Drafts", "mail", "\\Drafts"),
    ("Sent", "mail", "\\Sent"),
    ("Trash", "mail", "\\Trash"),
    ("Junk", "mail", "\\Junk"),
    ("Archive", "mail", "\\Archive"),
    ("Calendar", "calendar", None),
    ("Contacts", "contacts", None),
)

_ACCOUNT_COLS = "id, address, name, created_at"


def normalize_address(address: str) -> str:
    """Lower-case, trimmed; refuses what cannot be a mail address."""
    address = (address or "").strip().strip("<>").lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address) or len(address) > 320:
        raise errors.InvalidInput(f"not a valid address: {address!r}")
    return address


def _account(row) -> Account:
    return Account(id=row[0], address=row[1], name=row[2], created_at=row[3])


def create_account_txn(txn: Txn, address: str, password_hash, name, uidvalidity: int) -> Account:
    now = int(time.time())
    domain = address.rpartition("@")[2]
    txn.insert_ignore("domains", ("name", "created_at"), (domain, now))
    domain_id = txn.scalar("SELECT id FROM domains WHERE name = ?", (domain,))
    if txn.scalar("SELECT COUNT(*) FROM aliases WHERE address = ?", (address,)):
        raise errors.Exists(f"{address} is already an alias")
    try:
        txn.execute("INSERT INTO accounts (address, domain_id, name, password_hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?)", (address, domain_id, name, password_hash, now))
    except IntegrityError:
        raise errors.Exists(f"account {address} already exists") from None
    account_id = txn.lastrowid
    for i, (fname, kind, special) in enumerate(DEFAULT_FOLDERS):
        insert_folder_txn(txn, account_id, fname, kind, special, uidvalidity + i, subscribe=(kind == "mail"))
    return Account(id=account_id, address=address, name=name, created_at=now)


def get_account_txn(txn: Txn, address: str) -> Account:
    row = txn.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address = ?", (address,)).fetchone()
    if row is None:
        raise errors.NotFound(f"no account {address}")
    return _account(row)


def get_account_by_id_txn(txn: Txn, account_id: int) -> Account:
    row = txn.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,)).fetchone()
    if row is None:
        raise errors.NotFound("no such account")
    return _account(row)


def list_accounts_txn(txn: Txn) -> list:
    return [_account(r) for r in txn.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY address").fetchall()]


def _lookup_login(txn: Txn, address: str):
    cols = "a.id, a.address, a.password_hash, a.disabled, a.name, a.created_at"
    row = txn.execute(f"SELECT {cols} FROM accounts a WHERE a.address = ?", (address,)).fetchone()
    if row is None:
        row = txn.execute(f"SELECT {cols} FROM aliases l JOIN accounts a ON a.id = l.account_id "
                          "WHERE l.address = ?", (address,)).fetchone()
    return row


def get_credentials_txn(txn: Txn, address: str):
    row = _lookup_login(txn, address)
    if row is None:
        return None
    return Credentials(account_id=row[0], address=row[1], password_hash=row[2], disabled=bool(row[3]),
                       name=row[4], created_at=row[5])


def set_password_hash_txn(txn: Txn, account_id: int, password_hash: str) -> None:
    txn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id))
    if txn.rowcount == 0:
        raise errors.NotFound("no such account")


def add_alias_txn(txn: Txn, alias: str, address: str) -> None:
    account = get_account_txn(txn, address)
    txn.insert_ignore("domains", ("name", "created_at"), (alias.rpartition("@")[2], int(time.time())))
    if txn.scalar("SELECT COUNT(*) FROM accounts WHERE address = ?", (alias,)):
        raise errors.Exists(f"{alias} is an account")
    try:
        txn.execute("INSERT INTO aliases (address, account_id, created_at) VALUES (?, ?, ?)",
                    (alias, account.id, int(time.time())))
    except IntegrityError:
        raise errors.Exists(f"alias {alias} already exists") from None
    txn.execute("UPDATE accounts SET rules_version = rules_version + 1 WHERE id = ?", (account.id,))


def delete_alias_txn(txn: Txn, alias: str) -> None:
    account_id = txn.scalar("SELECT account_id FROM aliases WHERE address = ?", (alias,))
    txn.execute("DELETE FROM aliases WHERE address = ?", (alias,))
    if txn.rowcount == 0:
        raise errors.NotFound(f"no alias {alias}")
    # the delivery pipeline caches an account's addresses with its script (vacation)
    txn.execute("UPDATE accounts SET rules_version = rules_version + 1 WHERE id = ?", (account_id,))


def list_aliases_txn(txn: Txn) -> list:
    return txn.execute("SELECT l.address, a.address FROM aliases l JOIN accounts a ON a.id = l.account_id "
                       "ORDER BY l.address").fetchall()


def resolve_recipient_txn(txn: Txn, original: str) -> Recipient:
    """RFC 5233 sub-addressing: ``user+detail@domain`` lands in ``user@domain`` unless an
    account or alias with the full address exists."""
    address = normalize_address(original)
    row = _lookup_login(txn, address)
    detail = None
    if row is None:
        local, _, domain = address.rpartition("@")
        if "+" in local:
            base, _, detail = local.partition("+")
            row = _lookup_login(txn, f"{base}@{domain}") if base else None
    if row is None or row[3]:
        raise errors.NotFound(f"no such user: {address}")
    return Recipient(account_id=row[0], address=row[1], original=original, detail=detail or None)


def is_local_domain_txn(txn: Txn, domain: str) -> bool:
    """A domain is local when an account or alias was ever created in it."""
    return bool(txn.scalar("SELECT COUNT(*) FROM domains WHERE name = ?", (domain.strip().lower(),)))


class AccountsStore(StoreCore):
    async def create_account(self, address, password_hash, name=None) -> Account:
        address = normalize_address(address)
        return await self._run("create_account", create_account_txn, address, password_hash, name,
                               int(time.time()))

    async def get_account(self, address) -> Account:
        return await self._run("get_account", get_account_txn, normalize_address(address))

    async def get_account_by_id(self, account_id: int) -> Account:
        return await self._run("get_account_by_id", get_account_by_id_txn, account_id)

    async def list_accounts(self):
        return await self._run("list_accounts", list_accounts_txn)

    async def get_credentials(self, address):
        try:
            address = normalize_address(address)
        except errors.InvalidInput:
            return None
        return await self._run("get_credentials", get_credentials_txn, address)

    async def set_password_hash(self, account_id, password_hash) -> None:
        await self._run("set_password_hash", set_password_hash_txn, account_id, password_hash)

    async def add_alias(self, alias, address) -> None:
        await self._run("add_alias", add_alias_txn, normalize_address(alias), normalize_address(address))

    async def delete_alias(self, alias) -> None:
        await self._run("delete_alias", delete_alias_txn, normalize_address(alias))

    async def list_aliases(self) -> list:
        return await self._run("list_aliases", list_aliases_txn)

    async def is_local_domain(self, domain: str) -> bool:
        return await self._run("is_local_domain", is_local_domain_txn, domain)

    async def resolve_recipient(self, address) -> Recipient:
        return await self._run("resolve_recipient", resolve_recipient_txn, address)
