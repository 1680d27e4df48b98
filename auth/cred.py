"""The one ``twisted.cred`` portal every gateway logs in through.

Gateways call::

    iface, account, logout = await portal.login(PasswordCredentials(login, password, ip), None, IAccount)

and get a :class:`store.interfaces.Account` or :class:`twisted.cred.error.UnauthorizedLogin`.

Invariants
- The failure path is the same whatever failed (unknown user, wrong password, disabled account,
  throttled): one password verification's worth of CPU, then ``failure_delay`` seconds, then the
  same exception.  Nothing tells a client whether an account exists.
- Hash verification runs in the store's CPU pool; the reactor never hashes.
- Throttling: after ``max_failures_per_ip`` failures from one IP or ``max_failures_per_account``
  against one login within ``throttle_window`` seconds, further attempts are refused without
  checking the password until the window has passed.  Successful logins do not clear an IP's
  record (a valid account must not unlock guessing on others).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from twisted.cred import checkers, credentials, error, portal
from twisted.internet import defer, task, threads
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from auth.passwords import verify_password
from store import errors

log = logging.getLogger("haven.auth")


class IAccount(Interface):
    """Avatar interface: the logged-in :class:`store.interfaces.Account`."""


@implementer(credentials.IUsernamePassword)
@dataclass
class PasswordCredentials:
    username: str
    password: str
    remote_ip: str = ""

    def checkPassword(self, password):  # pragma: no cover - the checker verifies hashes itself
        raise NotImplementedError


class Throttle:
    def __init__(self, max_per_ip: int, max_per_account: int, window: float):
        self.max_per_ip = max_per_ip
        self.max_per_account = max_per_account
        self.window = window
        self._ip: dict[str, deque] = defaultdict(deque)
        self._account: dict[str, deque] = defaultdict(deque)

    def _count(self, table, key, now) -> int:
        q = table.get(key)
        if not q:
            return 0
        while q and q[0] < now - self.window:
            q.popleft()
        if not q:
            del table[key]
            return 0
        return len(q)

    def blocked(self, ip: str, login: str) -> bool:
        now = time.monotonic()
        return (bool(ip) and self._count(self._ip, ip, now) >= self.max_per_ip) or \
            self._count(self._account, login, now) >= self.max_per_account

    def failed(self, ip: str, login: str) -> None:
        now = time.monotonic()
        if ip:
            self._ip[ip].append(now)
        self._account[login].append(now)


class VerifiedLogin(str):
    """The avatar id the checker hands the realm: the account's address, carrying the account
    it read while checking (the realm need not read it again)."""

    account = None


def _verified(cred) -> VerifiedLogin:
    login = VerifiedLogin(cred.address)
    login.account = cred.account
    return login


class VerifiedCache:
    """(login, stored hash) -> (HMAC of the password, time verified), bounded in size."""

    MAX_ENTRIES = 10000

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._key = os.urandom(32)
        self._entries: dict = {}

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode("utf-8", "surrogateescape"), hashlib.sha256).digest()

    def hit(self, login: str, stored: str, password: str) -> bool:
        if self.ttl <= 0 or not stored:
            return False
        entry = self._entries.get((login, stored))
        if entry is None or time.monotonic() - entry[1] > self.ttl:
            return False
        return hmac.compare_digest(entry[0], self._digest(password))

    def remember(self, login: str, stored: str, password: str) -> None:
        if self.ttl <= 0 or not stored:
            return
        if len(self._entries) >= self.MAX_ENTRIES:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if now - v[1] <= self.ttl}
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
        self._entries[(login, stored)] = (self._digest(password), time.monotonic())


@implementer(checkers.ICredentialsChecker)
class StoreChecker:
    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(self, store, cpu_pool, throttle: Throttle, failure_delay: float, cache_ttl: float = 0):
        self.store = store
        self.cpu_pool = cpu_pool
        self.throttle = throttle
        self.failure_delay = failure_delay
        self.cache = VerifiedCache(cache_ttl)

    def requestAvatarId(self, creds):
        return defer.Deferred.fromCoroutine(self._check(creds))

    async def _check(self, creds):
        from twisted.internet import reactor  # the installed one, asyncioreactor (not at import time)
        login = (creds.username or "").strip().lower()
        ip = getattr(creds, "remote_ip", "") or ""
        password = creds.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        blocked = self.throttle.blocked(ip, login)
        try:
            cred = None if blocked else await self.store.get_credentials(login)
        except errors.StoreError as e:
            log.warning("login %r from %s: store unavailable: %s", login, ip, e)
            raise LoginUnavailable("the account store is unavailable") from None
        stored = cred.password_hash if cred and not cred.disabled else None
        if not blocked and self.cache.hit(login, stored, password):
            return _verified(cred)
        ok, new_hash = await threads.deferToThreadPool(reactor, self.cpu_pool, verify_password, password, stored)
        if ok and not blocked:
            self.cache.remember(login, new_hash or stored, password)
            if new_hash:
                try:
                    await self.store.set_password_hash(cred.account_id, new_hash)
                    log.info("upgraded the password hash of %s", cred.address)
                except errors.StoreError:
                    pass
            return _verified(cred)
        self.throttle.failed(ip, login)
        log.warning("authentication failed for %r from %s%s", login, ip or "?", " (throttled)" if blocked else "")
        if self.failure_delay > 0:
            await task.deferLater(reactor, self.failure_delay, lambda: None)
        raise error.UnauthorizedLogin("authentication failed")


class LoginUnavailable(error.LoginFailed):
    """The account store could not be asked (a database outage): the password is not known to
    be wrong.  Not an UnauthorizedLogin, so no gateway answers it as one and no client drops its
    saved password; each answers its protocol's "try again later" (IMAP NO [UNAVAILABLE], POP3
    -ERR [SYS/TEMP], SMTP 454 4.7.0, ManageSieve NO (TRYLATER), HTTP 503).  Never counted as a
    failed login by the throttle."""


@implementer(portal.IRealm)
class AccountRealm:
    def __init__(self, store):
        self.store = store

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IAccount not in interfaces:
            raise NotImplementedError("only IAccount avatars")

        async def get():
            if getattr(avatarId, "account", None) is not None:
                return IAccount, avatarId.account, lambda: None
            try:
                account = await self.store.get_account(avatarId)
            except errors.NotFound:
                raise error.UnauthorizedLogin("authentication failed") from None
            except errors.StoreError:
                raise LoginUnavailable("the account store is unavailable") from None
            return IAccount, account, lambda: None
        return defer.Deferred.fromCoroutine(get())


def _hashing_pool() -> ThreadPool:
    """The threads password checks run in (argon2 is CPU work, ~25 ms): auth's own, so a burst
    of logins queues here and not behind the store's MIME and blob work; stopped at shutdown."""
    from twisted.internet import reactor  # the installed one, asyncioreactor (not at import time)
    pool = ThreadPool(minthreads=0, maxthreads=max(2, os.cpu_count() or 2), name="haven-auth")
    pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    return pool


def make_portal(store, config) -> portal.Portal:
    throttle = Throttle(config.getint("auth", "max_failures_per_ip"),
                        config.getint("auth", "max_failures_per_account"),
                        config.getfloat("auth", "throttle_window"))
    checker = StoreChecker(store, _hashing_pool(), throttle, config.getfloat("auth", "failure_delay"),
                           cache_ttl=config.getfloat("auth", "cache_ttl"))
    return portal.Portal(AccountRealm(store), [checker])
