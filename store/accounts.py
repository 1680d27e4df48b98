"""Accounts, domains and aliases: the ``_txn`` functions (plain SQL, retry-safe, reactor-free)."""

from __future__ import annotations

import time

from store import errors
from store.core import StoreCore
from store.engines import IntegrityError, Txn
from store.folders import insert_folder_txn
from store.interfaces import INBOX, LAST_LOGIN_RESOLUTION, Account, AccountSummary, Credentials, Recipient

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
    if txn.scalar("SELECT deleted_at FROM accounts WHERE address = ?", (address,)):
        raise errors.Exists(f"account {address} is deleted but not yet purged: `haven user restore {address}` "
                            f"brings it back, `haven user del --now {address}` frees the address")
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


def addresses_with_local_part_txn(txn: Txn, local: str) -> list:
    """The accounts (addresses, live ones) whose address is ``local@`` some domain."""
    local = (local or "").strip().lower()
    if not local or "@" in local or any(c.isspace() for c in local) or len(local) > 64:
        return []
    # "!" escapes LIKE's wildcards: a backslash would need quoting differently per engine
    pattern = local.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "@%"
    rows = txn.execute("SELECT address FROM accounts WHERE address LIKE ? ESCAPE '!' AND deleted_at = 0 "
                       "ORDER BY address LIMIT 3", (pattern,)).fetchall()
    return [r[0] for r in rows if r[0].rpartition("@")[0] == local]


def _lookup_login(txn: Txn, address: str):
    """(id, address, password hash, refused, name, created_at, last_login) of the account an
    address or alias names; refused: disabled or deleted (no login, no delivery)."""
    cols = ("a.id, a.address, a.password_hash, a.disabled <> 0 OR a.deleted_at <> 0, a.name, a.created_at, "
            "a.last_login")
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
                       name=row[4], created_at=row[5], last_login=row[6] or 0)


def set_password_hash_txn(txn: Txn, account_id: int, password_hash: str) -> None:
    txn.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id))
    if txn.rowcount == 0:
        raise errors.NotFound("no such account")


# -- the lifecycle: disabled, deleted (until purged), last login --------------------------------

def _lifecycle_row(txn: Txn, address: str) -> tuple:
    row = txn.execute("SELECT id, disabled, deleted_at FROM accounts WHERE address = ?", (address,)).fetchone()
    if row is None:
        raise errors.NotFound(f"no account {address}")
    return row


def purge_time(deleted_at: int, lifetime_days: float) -> int:
    """When the purge removes what was deleted at ``deleted_at``; 0: never (a lifetime of 0)."""
    return int(deleted_at + lifetime_days * 86400) if lifetime_days > 0 else 0


def set_disabled_txn(txn: Txn, address: str, disabled: bool) -> bool:
    """Disable or enable a live account; returns whether that changed anything.  A deleted
    account is refused (InvalidInput): restore it first."""
    account_id, was, deleted_at = _lifecycle_row(txn, address)
    if deleted_at:
        raise errors.InvalidInput(f"account {address} is deleted: `haven user restore {address}` brings it back")
    if bool(was) == disabled:
        return False
    txn.execute("UPDATE accounts SET disabled = ? WHERE id = ?", (int(disabled), account_id))
    return True


def mark_deleted_txn(txn: Txn, address: str, now: int) -> int:
    """Soft-delete a live account (at ``now``); returns its id.  InvalidInput when already deleted."""
    account_id, _disabled, deleted_at = _lifecycle_row(txn, address)
    if deleted_at:
        raise errors.InvalidInput(f"account {address} is already deleted")
    txn.execute("UPDATE accounts SET deleted_at = ? WHERE id = ?", (now, account_id))
    return account_id


def restore_account_txn(txn: Txn, address: str) -> None:
    """A deleted account comes back active (enabled, whatever it was before its deletion)."""
    account_id, _disabled, deleted_at = _lifecycle_row(txn, address)
    if not deleted_at:
        raise errors.InvalidInput(f"account {address} is not deleted")
    txn.execute("UPDATE accounts SET deleted_at = 0, disabled = 0 WHERE id = ?", (account_id,))


def record_login_txn(txn: Txn, account_id: int, now: int, resolution: int) -> None:
    txn.execute("UPDATE accounts SET last_login = ? WHERE id = ? AND last_login < ?",
                (now, account_id, now - resolution))


def deleted_before_txn(txn: Txn, cutoff: int) -> list:
    """Addresses of the accounts deleted before ``cutoff`` (Unix time): the purge's to remove."""
    return [r[0] for r in txn.execute("SELECT address FROM accounts WHERE deleted_at <> 0 AND deleted_at < ? "
                                      "ORDER BY address", (cutoff,)).fetchall()]


def account_summaries_txn(txn: Txn, lifetime_days: float) -> list:
    """Every account with its state, purge time, last login and usage, in two statements (the
    usage as one aggregate over the live messages, not one query per account)."""
    usage = {r[0]: (r[1], r[2]) for r in txn.execute(
        "SELECT account_id, COALESCE(SUM(size), 0), COUNT(*) FROM messages WHERE deleted_at = 0 "
        "GROUP BY account_id").fetchall()}
    out = []
    for row in txn.execute(f"SELECT {_ACCOUNT_COLS}, disabled, deleted_at, last_login FROM accounts "
                           "ORDER BY address").fetchall():
        deleted_at = row[5] or 0
        state = "deleted" if deleted_at else "disabled" if row[4] else "active"
        purge_at = purge_time(deleted_at, lifetime_days) if deleted_at else 0
        used, count = usage.get(row[0], (0, 0))
        out.append(AccountSummary(account=_account(row), state=state, deleted_at=deleted_at, purge_at=purge_at,
                                  last_login=row[6] or 0, used_bytes=int(used), used_messages=int(count)))
    return out


def add_alias_txn(txn: Txn, alias: str, address: str) -> None:
    account = get_account_txn(txn, address)
    if txn.scalar("SELECT deleted_at FROM accounts WHERE id = ?", (account.id,)):
        raise errors.InvalidInput(f"{account.address} is deleted: `haven user restore {account.address}` first")
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

    async def addresses_with_local_part(self, local):
        return await self._run("addresses_with_local_part", addresses_with_local_part_txn, local)

    async def get_credentials(self, address):
        try:
            address = normalize_address(address)
        except errors.InvalidInput:
            return None
        return await self._run("get_credentials", get_credentials_txn, address)

    async def set_password_hash(self, account_id, password_hash) -> None:
        await self._run("set_password_hash", set_password_hash_txn, account_id, password_hash)

    async def disable_account(self, address) -> bool:
        return await self._run("disable_account", set_disabled_txn, normalize_address(address), True)

    async def enable_account(self, address) -> bool:
        return await self._run("enable_account", set_disabled_txn, normalize_address(address), False)

    async def mark_account_deleted(self, address) -> int:
        now = int(time.time())
        await self._run("mark_account_deleted", mark_deleted_txn, normalize_address(address), now)
        return purge_time(now, self.softdelete_lifetime)

    async def restore_account(self, address) -> None:
        await self._run("restore_account", restore_account_txn, normalize_address(address))

    async def record_login(self, account_id) -> None:
        await self._run("record_login", record_login_txn, account_id, int(time.time()), LAST_LOGIN_RESOLUTION)

    async def list_account_summaries(self) -> list:
        return await self._run("list_account_summaries", account_summaries_txn, self.softdelete_lifetime)

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
