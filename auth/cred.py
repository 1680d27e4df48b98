"""The one ``twisted.cred`` portal every gateway logs in through.

Gateways call::

    iface, account, logout = await portal.login(PasswordCredentials(login, password, ip), None, IAccount)

and get a :class:`store.interfaces.Account` or :class:`twisted.cred.error.UnauthorizedLogin`
(or :class:`LoginUnavailable` when the store cannot be asked).

Invariants
- The failure path looks the same whatever failed (unknown user, wrong password, disabled
  account): one password verification's worth of CPU, then ``failure_delay`` seconds, then the
  same exception.  Nothing tells a client whether an account exists.
- Hash verification runs in auth's own thread pool; the reactor never hashes.
- Throttling never refuses the right password except to the one client address that has been
  guessing it (Dovecot's auth penalty is the model, :class:`Throttle` says how):
  * a client address with recent failures waits before every answer, 2, 4, 8 … up to
    ``max_penalty`` seconds as its distinct wrong passwords grow; so does every login to an
    account under attack.  Slower, never refused.
  * after ``block_after`` distinct wrong passwords for one account from one address within
    ``throttle_window``, that address is refused for that account without a password check (no
    hash, no CPU) until those failures are older than the window; attempts while blocked are
    not counted, so they do not extend the block.  One log line per block (fail2ban's filter in
    conf/fail2ban/ matches it).
  * one stale password repeated (a phone after a password change) counts once.
  * ``[auth] trusted_networks`` (a webmail host) are never delayed, counted or blocked.
  * the counters live in the store (``auth_failures``), keyed by account (aliases share), so
    every node behind one database throttles alike; ``haven auth status`` / ``unblock`` read and
    clear them.
- A successful login from an address clears that address's failures for that account; it does
  not clear the address's failures for other accounts (a valid account must not unlock
  guessing on others).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

from twisted.cred import checkers, credentials, error, portal
from twisted.internet import defer, task, threads
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface, implementer

from auth.passwords import verify_password
from store import errors
from store.interfaces import LAST_LOGIN_RESOLUTION

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


def penalty_seconds(failures: int, max_penalty: float) -> float:
    """The wait before an answer after ``failures`` distinct wrong passwords: 0, then 2, 4, 8 …
    up to ``max_penalty`` (0 turns the wait off)."""
    if failures <= 0 or max_penalty <= 0:
        return 0.0
    return min(max_penalty, 2.0 ** min(failures, 16))


class Throttle:
    """What the ``[auth]`` keys make of the store's failure counts (see the module docstring)."""

    def __init__(self, failure_delay: float = 2.0, max_penalty: float = 15.0, block_after: int = 10,
                 window: float = 900, is_trusted: Callable[[str], bool] = lambda ip: False):
        self.failure_delay = failure_delay
        self.max_penalty = max_penalty
        self.block_after = block_after
        self.window = window
        #: ``[auth] trusted_networks`` as the process tests a client address against it
        self.is_trusted = is_trusted
        self._key = os.urandom(32)
        self._logged: dict = {}  # (ip, subject) -> when its block was logged

    def first_report(self, ip: str, subject: str, count: int) -> bool:
        """Whether a block just reached should be logged: concurrent failures may each see the
        threshold reached, the log gets one line.  A count exactly at the threshold is a new
        block (after an unblock or expiry) unless reported in the last few seconds; a count past
        it (the exact one raced past) is reported once per window."""
        now = time.monotonic()
        if len(self._logged) > 10000:
            self._logged = {k: t for k, t in self._logged.items() if now - t < self.window}
        last = self._logged.get((ip, subject))
        if last is not None and now - last < (5 if count == self.block_after else self.window):
            return False
        self._logged[(ip, subject)] = now
        return True

    def since(self) -> int:
        return int(time.time() - self.window)

    def penalty(self, state) -> float:
        """Seconds to wait before checking: 0, then 2, 4, 8 … per distinct wrong password from
        the address or for the account, up to max_penalty (0 turns the penalty off)."""
        return penalty_seconds(max(state.ip_failures, state.subject_failures), self.max_penalty)

    def blocked(self, ip: str, state) -> bool:
        return bool(ip) and self.block_after > 0 and state.pair_failures >= self.block_after

    def tag(self, subject: str, password: str) -> str:
        """A keyed digest of a wrong password: equal for a repeat, useless to anyone who reads
        the table (the key is this process's own)."""
        data = subject.encode("utf-8", "surrogateescape") + b"\0" + password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:32]


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

    def __init__(self, store, cpu_pool, throttle: Throttle, cache_ttl: float = 0):
        self.store = store
        self.cpu_pool = cpu_pool
        self.throttle = throttle
        self.cache = VerifiedCache(cache_ttl)

    def requestAvatarId(self, creds):
        return defer.Deferred.fromCoroutine(self._check(creds))

    async def _check(self, creds):
        login = (creds.username or "").strip().lower()
        ip = getattr(creds, "remote_ip", "") or ""
        password = creds.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        if isinstance(login, bytes):
            login = login.decode("utf-8", "replace")
        throttle = self.throttle
        trusted = bool(ip) and throttle.is_trusted(ip)
        try:
            state = await self.store.login_state(login, "" if trusted else ip, throttle.since())
        except errors.StoreError as e:
            log.warning("login %r from %s: store unavailable: %s", login, ip, e)
            raise LoginUnavailable("the account store is unavailable") from None
        cred = state.credentials
        who = cred.address if cred else login
        if not trusted and throttle.blocked(ip, state):
            # refused without a password check: no hash, and not counted (no extension)
            log.info("authentication refused for %r from %s: blocked", who, ip)
            await _sleep(throttle.failure_delay)
            raise LoginBlocked("authentication failed")
        stored = cred.password_hash if cred and not cred.disabled else None
        if self.cache.hit(login, stored, password):
            await self._succeeded(state, ip)
            return _verified(cred)
        if not trusted:
            await _sleep(throttle.penalty(state))
        ok, new_hash = await threads.deferToThreadPool(_reactor(), self.cpu_pool, verify_password, password, stored)
        if ok:
            self.cache.remember(login, new_hash or stored, password)
            if new_hash:
                try:
                    await self.store.set_password_hash(cred.account_id, new_hash)
                    log.info("upgraded the password hash of %s", cred.address)
                except errors.StoreError:
                    pass
            await self._succeeded(state, ip)
            return _verified(cred)
        log.warning("authentication failed for %r from %s", who, ip or "?")
        if not trusted:
            await self._failed(state, ip, who, password)
        await _sleep(throttle.failure_delay)
        raise error.UnauthorizedLogin("authentication failed")

    async def _succeeded(self, state, ip: str) -> None:
        cred = state.credentials
        if time.time() - cred.last_login >= LAST_LOGIN_RESOLUTION:  # `haven user list` shows it
            try:
                await self.store.record_login(cred.account_id)
            except errors.StoreError:
                pass
        if state.pair_failures and ip:
            try:
                await self.store.clear_login_failures(ip, state.subject)
            except errors.StoreError:
                pass

    async def _failed(self, state, ip: str, who: str, password: str) -> None:
        throttle = self.throttle
        try:
            count = await self.store.record_login_failure(state.subject, ip, throttle.tag(state.subject, password),
                                                          int(time.time()), throttle.since())
        except errors.StoreError as e:
            log.warning("could not record a failed login for %r from %s: %s", who, ip, e)
            return
        if ip and 0 < throttle.block_after <= count and throttle.first_report(ip, state.subject, count):
            # the line conf/fail2ban/filter.d/haven.conf matches; keep its wording
            log.warning("login blocked: address %s for account %s after %d wrong passwords within %d s",
                        ip, who, count, int(throttle.window))


def _reactor():
    from twisted.internet import reactor  # the installed one, asyncioreactor (not at import time)
    return reactor


async def _sleep(seconds: float) -> None:
    if seconds > 0:
        await task.deferLater(_reactor(), seconds, lambda: None)


class LoginBlocked(error.UnauthorizedLogin):
    """Refused without a password check: this address guessed this account's password too
    often (see :class:`Throttle`).  An UnauthorizedLogin like any other failure, so every
    gateway answers it the same way; only the process's metrics tell it apart."""


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
    reactor = _reactor()
    pool = ThreadPool(minthreads=0, maxthreads=max(2, os.cpu_count() or 2), name="haven-auth")
    pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    return pool


def make_portal(store, config, is_trusted: Optional[Callable[[str], bool]] = None) -> portal.Portal:
    """The portal on ``store`` with the ``[auth]`` keys of ``config``; ``is_trusted(ip)``: whether
    a client address is in ``[auth] trusted_networks`` (the process parses the networks)."""
    throttle = Throttle(failure_delay=config.getfloat("auth", "failure_delay"),
                        max_penalty=config.getfloat("auth", "max_penalty"),
                        block_after=config.getint("auth", "block_after"),
                        window=config.getfloat("auth", "throttle_window"),
                        is_trusted=is_trusted or (lambda ip: False))
    checker = StoreChecker(store, _hashing_pool(), throttle, cache_ttl=config.getfloat("auth", "cache_ttl"))
    return portal.Portal(AccountRealm(store), [checker])
