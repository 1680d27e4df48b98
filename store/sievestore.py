"""Sieve scripts per account (RFC 5804 semantics) and its out-of-office replies (ActiveSync
Settings Oof): the ``_txn`` functions and the store's methods behind ManageSieve, ``haven
sieve`` and ActiveSync.

Invariants
- At most one script per account is active; the delivery pipeline runs it.
- Every change of what delivery would run (the active script's text, which script is active,
  the out-of-office settings) bumps ``accounts.rules_version`` in the same transaction, so a
  delivery never runs a stale compiled script or stale replies, on any node
  (:mod:`store.delivery` caches by that version).
- A script is stored only once it compiles.
- An out-of-office period (``since``) begins when the state or the schedule changes, never
  when only the messages do.
"""

from __future__ import annotations

import time
import unicodedata
from typing import Optional

from formats import sieve
from store import errors
from store.core import StoreCore
from store.engines import Txn
from store.interfaces import (OOF_MAX_MESSAGE, OOF_OFF, OOF_ON, OOF_SCHEDULED, OofReply, OutOfOffice,
                              SieveScriptInfo)
from store.settings import RuleSettings


def check_script_name(name: str) -> str:
    """RFC 5804 §1.6: 1..128 characters, no control characters (nor U+2028/U+2029), NFC."""
    if not isinstance(name, str) or not name:
        raise errors.InvalidInput("script name missing")
    name = unicodedata.normalize("NFC", name)
    if len(name) > 128:
        raise errors.InvalidInput("script name longer than 128 characters")
    if any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in name):
        raise errors.InvalidInput("script name contains control characters")
    return name


def _bump_rules(txn: Txn, account_id: int) -> None:
    txn.execute("UPDATE accounts SET rules_version = rules_version + 1 WHERE id = ?", (account_id,))


def _script_row(txn: Txn, account_id: int, name: str):
    return txn.execute("SELECT id, active, script FROM sieve_scripts WHERE account_id = ? AND name = ?",
                       (account_id, name)).fetchone()


def _s(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def list_scripts_txn(txn: Txn, account_id: int) -> list:
    rows = txn.execute("SELECT name, active, script FROM sieve_scripts WHERE account_id = ?",
                       (account_id,)).fetchall()
    out = [SieveScriptInfo(name=_s(r[0]), active=bool(r[1]), size=len(r[2].encode("utf-8"))) for r in rows]
    return sorted(out, key=lambda i: i.name)


def get_script_txn(txn: Txn, account_id: int, name: str) -> str:
    row = _script_row(txn, account_id, check_script_name(name))
    if row is None:
        raise errors.NotFound(f"no script {name}")
    return row[2]


def space_txn(txn: Txn, account_id: int, name: str, size: int, settings: RuleSettings) -> None:
    name = check_script_name(name)
    if size > settings.max_script_size:
        raise errors.TooBig(f"a script may have at most {settings.max_script_size} octets")
    if _script_row(txn, account_id, name) is None:
        count = txn.scalar("SELECT COUNT(*) FROM sieve_scripts WHERE account_id = ?", (account_id,))
        if count >= settings.max_scripts:
            raise errors.OverQuota(f"an account may have at most {settings.max_scripts} scripts")


def put_script_txn(txn: Txn, account_id: int, name: str, text: str, settings: RuleSettings) -> None:
    """``text`` was compiled by the caller already."""
    name = check_script_name(name)
    space_txn(txn, account_id, name, len(text.encode("utf-8")), settings)
    row = _script_row(txn, account_id, name)
    now = int(time.time())
    if row is None:
        txn.execute("INSERT INTO sieve_scripts (account_id, name, script, active, updated_at) VALUES (?, ?, ?, 0, ?)",
                    (account_id, name, text, now))
    else:
        txn.execute("UPDATE sieve_scripts SET script = ?, updated_at = ? WHERE id = ?", (text, now, row[0]))
        if row[1]:
            _bump_rules(txn, account_id)


def set_active_txn(txn: Txn, account_id: int, name: Optional[str]) -> None:
    if name:
        row = _script_row(txn, account_id, check_script_name(name))
        if row is None:
            raise errors.NotFound(f"no script {name}")
        txn.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND id <> ?", (account_id, row[0]))
        txn.execute("UPDATE sieve_scripts SET active = 1 WHERE id = ?", (row[0],))
    else:
        txn.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ?", (account_id,))
    _bump_rules(txn, account_id)


def delete_script_txn(txn: Txn, account_id: int, name: str) -> None:
    row = _script_row(txn, account_id, check_script_name(name))
    if row is None:
        raise errors.NotFound(f"no script {name}")
    if row[1]:
        raise errors.PermissionDenied("the active script cannot be deleted; deactivate it first")
    txn.execute("DELETE FROM sieve_scripts WHERE id = ?", (row[0],))


def rename_script_txn(txn: Txn, account_id: int, old: str, new: str) -> None:
    old, new = check_script_name(old), check_script_name(new)
    row = _script_row(txn, account_id, old)
    if row is None:
        raise errors.NotFound(f"no script {old}")
    if old == new:
        return
    if _script_row(txn, account_id, new) is not None:
        raise errors.Exists(f"a script named {new} exists")
    txn.execute("UPDATE sieve_scripts SET name = ? WHERE id = ?", (new, row[0]))


def active_script_txn(txn: Txn, account_id: int) -> tuple:
    """``(rules_version, script text or None, the account's own addresses, OutOfOffice or None
    when off)`` for the pipeline."""
    account = txn.execute("SELECT a.rules_version, a.address, s.script FROM accounts a LEFT JOIN sieve_scripts s "
                          "ON s.account_id = a.id AND s.active = 1 WHERE a.id = ?", (account_id,)).fetchone()
    if account is None:
        raise errors.NotFound("no such account")
    addresses = [account[1]] + [r[0] for r in txn.execute("SELECT address FROM aliases WHERE account_id = ?",
                                                          (account_id,)).fetchall()]
    oof = _oof_row_txn(txn, account_id)
    return account[0] or 0, account[2], tuple(a.lower() for a in addresses if a), \
        oof if oof.state != OOF_OFF else None


def drop_account_txn(txn: Txn, account_id: int) -> None:
    txn.execute("DELETE FROM sieve_scripts WHERE account_id = ?", (account_id,))
    txn.execute("DELETE FROM vacation_replies WHERE account_id = ?", (account_id,))
    txn.execute("DELETE FROM out_of_office WHERE account_id = ?", (account_id,))


# -- out of office ------------------------------------------------------------------------------

_AUDIENCES = ("internal", "known", "unknown")
_OOF_COLUMNS = "state, start_at, end_at, since, " + ", ".join(
    f"{a}_enabled, {a}_message, {a}_html" for a in _AUDIENCES)


def _oof_row_txn(txn: Txn, account_id: int) -> OutOfOffice:
    row = txn.execute(f"SELECT {_OOF_COLUMNS} FROM out_of_office WHERE account_id = ?", (account_id,)).fetchone()
    if row is None:
        return OutOfOffice()
    replies = [OofReply(bool(row[i]), _s(row[i + 1] or ""), bool(row[i + 2])) for i in (4, 7, 10)]
    return OutOfOffice(state=row[0], start_at=row[1], end_at=row[2], internal=replies[0],
                       external_known=replies[1], external_unknown=replies[2], since=row[3])


def get_oof_txn(txn: Txn, account_id: int) -> OutOfOffice:
    if txn.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise errors.NotFound("no such account")
    return _oof_row_txn(txn, account_id)


def check_oof(oof: OutOfOffice) -> None:
    if oof.state not in (OOF_OFF, OOF_ON, OOF_SCHEDULED):
        raise errors.InvalidInput(f"out-of-office state {oof.state!r} is not 0, 1 or 2")
    if oof.state == OOF_SCHEDULED and not 0 <= oof.start_at < oof.end_at:
        raise errors.InvalidInput("a scheduled out-of-office needs an end after its start")
    for reply in (oof.internal, oof.external_known, oof.external_unknown):
        if len(reply.message.encode("utf-8")) > OOF_MAX_MESSAGE:
            raise errors.TooBig(f"an out-of-office message may have at most {OOF_MAX_MESSAGE} octets")


def set_oof_txn(txn: Txn, account_id: int, oof: OutOfOffice, now: int) -> OutOfOffice:
    old = get_oof_txn(txn, account_id)
    same_period = (old.state, old.start_at, old.end_at) == (oof.state, oof.start_at, oof.end_at) and old.since
    since = old.since if same_period else now
    replies = (oof.internal, oof.external_known, oof.external_unknown)
    values = [oof.state, oof.start_at, oof.end_at, since] + [v for r in replies for v in
                                                             (int(r.enabled), r.message, int(r.html))]
    txn.execute("DELETE FROM out_of_office WHERE account_id = ?", (account_id,))
    txn.execute(f"INSERT INTO out_of_office (account_id, {_OOF_COLUMNS}, updated_at) "
                f"VALUES (?, {', '.join('?' * len(values))}, ?)", tuple([account_id] + values + [now]))
    _bump_rules(txn, account_id)
    return _oof_row_txn(txn, account_id)


def known_sender_txn(txn: Txn, account_id: int, address: str) -> bool:
    """Whether ``address`` is in one of the account's address books (a vCard's EMAIL)."""
    address = address.lower()
    pattern = "%" + address.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"
    # LOWER: MariaDB compares the text column by its binary collation (Ada@Example.org is the same address)
    rows = txn.execute("SELECT data FROM dav_items WHERE account_id = ? AND component = 'VCARD' AND deleted_at = 0 "
                       "AND LOWER(data) LIKE ? ESCAPE '!' LIMIT 50", (account_id, pattern)).fetchall()
    needle = address.lower()
    for (data,) in rows:
        for line in _s(data).replace("\r\n ", "").replace("\n ", "").splitlines():
            name, _, value = line.partition(":")
            if name.split(";")[0].rpartition(".")[2].upper() == "EMAIL" and value.strip().lower() == needle:
                return True
    return False


def purge_vacation_txn(txn: Txn, now: int) -> int:
    txn.execute("DELETE FROM vacation_replies WHERE expires_at < ?", (now,))
    return txn.rowcount


def compile_script(text: str):
    try:
        return sieve.compile_script(text)
    except sieve.SieveError as e:
        raise errors.InvalidInput(str(e)) from None


class SieveStore(StoreCore):

    # -- Sieve scripts ---------------------------------------------------------------------
    async def list_sieve_scripts(self, account_id):
        return await self._run("list_sieve_scripts", list_scripts_txn, account_id)

    async def get_sieve_script(self, account_id, name):
        return await self._run("get_sieve_script", get_script_txn, account_id, name)

    async def check_sieve_script(self, text):
        size = len(text.encode("utf-8"))
        if size > self.rule_settings.max_script_size:
            raise errors.TooBig(f"a script may have at most {self.rule_settings.max_script_size} octets")
        await self._cpu(compile_script, text)

    async def put_sieve_script(self, account_id, name, text):
        check_script_name(name)
        await self.check_sieve_script(text)
        await self._run("put_sieve_script", put_script_txn, account_id, name, text, self.rule_settings)

    async def sieve_space(self, account_id, name, size):
        await self._run("sieve_space", space_txn, account_id, name, size, self.rule_settings)

    async def set_active_sieve_script(self, account_id, name):
        await self._run("set_active_sieve_script", set_active_txn, account_id, name or None)

    async def delete_sieve_script(self, account_id, name):
        await self._run("delete_sieve_script", delete_script_txn, account_id, name)

    async def rename_sieve_script(self, account_id, old, new):
        await self._run("rename_sieve_script", rename_script_txn, account_id, old, new)

    # -- out of office -----------------------------------------------------------------------
    async def get_out_of_office(self, account_id):
        return await self._run("get_out_of_office", get_oof_txn, account_id)

    async def set_out_of_office(self, account_id, oof):
        check_oof(oof)
        return await self._run("set_out_of_office", set_oof_txn, account_id, oof, int(time.time()))
