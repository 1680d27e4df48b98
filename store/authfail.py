"""The login throttle's failure counters (table ``auth_failures``, delta 5): the ``_txn``
functions and the store's methods.  What the counts mean and what the throttle does with them
is auth/cred.py's business; here they are only rows.

Invariants
- One row per (client address, subject, wrong-password tag); recording the same tag again only
  moves ``failed_at``, so counts are of *distinct* wrong passwords.
- Recording a failure prunes every row older than the window it is given: the table holds at
  most one window's worth of failures, whatever an attacker sends.
"""

from __future__ import annotations

from store.accounts import get_credentials_txn, normalize_address
from store.core import StoreCore
from store.engines import Txn, chunks
from store import errors
from store.interfaces import LoginFailures, LoginState

#: a subject is a column of 255 characters; a longer login is cut (it names no account anyway)
MAX_SUBJECT = 255


def subject_of(credentials, login: str) -> str:
    if credentials is not None:
        return f"id:{credentials.account_id}"
    return login[:MAX_SUBJECT]


def login_state_txn(txn: Txn, login: str, remote_ip: str, since: int) -> LoginState:
    try:
        credentials = get_credentials_txn(txn, normalize_address(login))
    except errors.InvalidInput:
        credentials = None
    subject = subject_of(credentials, login)
    ip_failures = pair = 0
    if remote_ip:
        ip_failures = txn.scalar("SELECT COUNT(*) FROM auth_failures WHERE remote_ip = ? AND failed_at >= ?",
                                 (remote_ip, since))
        if ip_failures:
            pair = txn.scalar("SELECT COUNT(*) FROM auth_failures WHERE remote_ip = ? AND subject = ? "
                              "AND failed_at >= ?", (remote_ip, subject, since))
    subject_failures = txn.scalar("SELECT COUNT(DISTINCT secret_tag) FROM auth_failures "
                                  "WHERE subject = ? AND failed_at >= ?", (subject, since))
    return LoginState(credentials=credentials, subject=subject, ip_failures=ip_failures,
                      subject_failures=subject_failures, pair_failures=pair)


def record_login_failure_txn(txn: Txn, subject: str, remote_ip: str, secret_tag: str, now: int,
                             since: int) -> int:
    txn.execute("DELETE FROM auth_failures WHERE failed_at < ?", (since,))
    txn.execute("UPDATE auth_failures SET failed_at = ? WHERE remote_ip = ? AND subject = ? AND secret_tag = ?",
                (now, remote_ip, subject, secret_tag))
    if txn.rowcount == 0:
        txn.insert_ignore("auth_failures", ("remote_ip", "subject", "secret_tag", "failed_at"),
                          (remote_ip, subject, secret_tag, now))
    return txn.scalar("SELECT COUNT(*) FROM auth_failures WHERE remote_ip = ? AND subject = ? AND failed_at >= ?",
                      (remote_ip, subject, since))


def clear_login_failures_txn(txn: Txn, remote_ip, subject) -> int:
    where, args = [], []
    if remote_ip is not None:
        where.append("remote_ip = ?")
        args.append(remote_ip)
    if subject is not None:
        where.append("subject = ?")
        args.append(subject)
    if not where:
        raise errors.InvalidInput("name a client address or an account")
    txn.execute("DELETE FROM auth_failures WHERE " + " AND ".join(where), args)
    return txn.rowcount


def list_login_failures_txn(txn: Txn, since: int) -> list:
    rows = txn.execute("SELECT remote_ip, subject, COUNT(*), MIN(failed_at), MAX(failed_at) FROM auth_failures "
                       "WHERE failed_at >= ? GROUP BY remote_ip, subject "
                       "ORDER BY COUNT(*) DESC, MAX(failed_at) DESC", (since,)).fetchall()
    ids = sorted({int(r[1][3:]) for r in rows if r[1].startswith("id:") and r[1][3:].isdigit()})
    names = {}
    for chunk in chunks(ids):
        for account_id, address in txn.execute(f"SELECT id, address FROM accounts WHERE id IN {txn.in_list(chunk)}",
                                               chunk).fetchall():
            names[f"id:{account_id}"] = address
    return [LoginFailures(remote_ip=r[0], subject=r[1], address=names.get(r[1], r[1]), failures=int(r[2]),
                          first_at=int(r[3]), last_at=int(r[4])) for r in rows]


def drop_account_txn(txn: Txn, account_id: int) -> None:
    txn.execute("DELETE FROM auth_failures WHERE subject = ?", (f"id:{account_id}",))


class AuthFailuresStore(StoreCore):
    async def login_state(self, login, remote_ip, since) -> LoginState:
        return await self._run("login_state", login_state_txn, login, remote_ip or "", int(since))

    async def record_login_failure(self, subject, remote_ip, secret_tag, now, since) -> int:
        return await self._run("record_login_failure", record_login_failure_txn, subject, remote_ip or "",
                               secret_tag, int(now), int(since))

    async def clear_login_failures(self, remote_ip=None, subject=None) -> int:
        return await self._run("clear_login_failures", clear_login_failures_txn, remote_ip, subject)

    async def list_login_failures(self, since) -> list:
        return await self._run("list_login_failures", list_login_failures_txn, int(since))
