"""The one cred checker: hashes, legacy rehash, throttling, identical failures."""

from __future__ import annotations

import time

import pytest
from passlib.hash import sha512_crypt
from twisted.cred.error import UnauthorizedLogin

from auth.cred import IAccount, PasswordCredentials, make_portal
from auth.passwords import hash_password


class Cfg:
    """The [auth] keys make_portal reads."""

    def __init__(self, **values):
        self.values = {"max_failures_per_ip": 5, "max_failures_per_account": 3, "throttle_window": 60,
                       "failure_delay": 0.01, "cache_ttl": 0, **values}

    def getint(self, section, key):
        return int(self.values[key])

    def getfloat(self, section, key):
        return float(self.values[key])


def login(run, portal, user, password, ip="192.0.2.1"):
    async def go():
        return await portal.login(PasswordCredentials(user, password, ip), None, IAccount)
    return run(go)


@pytest.fixture
def portal(store):
    return make_portal(store, Cfg())


def test_login_success_and_alias(store, run, portal):
    run(store.create_account, "ann@example.test", hash_password("right"))
    run(store.add_alias, "anna@example.test", "ann@example.test")
    iface, account, _ = login(run, portal, "Ann@Example.test", "right")
    assert iface is IAccount and account.address == "ann@example.test"
    assert login(run, portal, "anna@example.test", "right")[1].address == "ann@example.test"


def test_failures_look_the_same(store, run, portal):
    run(store.create_account, "ben@example.test", hash_password("right"))
    timings = {}
    for user in ("ben@example.test", "nobody@example.test"):
        start = time.monotonic()
        with pytest.raises(UnauthorizedLogin) as info:
            login(run, portal, user, "wrong", ip=f"198.51.100.{len(timings)}")
        timings[user] = time.monotonic() - start
        assert str(info.value) == "authentication failed"
    # both paths verify one argon2 hash; neither is an order of magnitude faster
    assert max(timings.values()) < 10 * min(timings.values())


def test_legacy_hash_is_upgraded_on_login(store, run, portal):
    run(store.create_account, "cat@example.test", sha512_crypt.hash("old-secret"))
    login(run, portal, "cat@example.test", "old-secret")
    creds = run(store.get_credentials, "cat@example.test")
    assert creds.password_hash.startswith("$argon2")
    login(run, portal, "cat@example.test", "old-secret")


def test_account_throttled_after_failures(store, run, portal):
    run(store.create_account, "dan@example.test", hash_password("right"))
    for i in range(3):
        with pytest.raises(UnauthorizedLogin):
            login(run, portal, "dan@example.test", "wrong", ip=f"203.0.113.{i}")
    # now even the right password is refused until the window passes
    with pytest.raises(UnauthorizedLogin):
        login(run, portal, "dan@example.test", "right", ip="203.0.113.99")


def test_ip_throttled_after_failures(store, run, portal):
    run(store.create_account, "eve@example.test", hash_password("right"))
    for i in range(5):
        with pytest.raises(UnauthorizedLogin):
            login(run, portal, f"guess{i}@example.test", "x", ip="192.0.2.77")
    with pytest.raises(UnauthorizedLogin):
        login(run, portal, "eve@example.test", "right", ip="192.0.2.77")
    assert login(run, portal, "eve@example.test", "right", ip="192.0.2.78")[1].address == "eve@example.test"


def test_verified_login_cache(store, run, monkeypatch):
    """A verified password is remembered: the slow hash runs once, a wrong password still
    fails, and a changed password takes effect at once."""
    import auth.cred
    calls = []
    real = auth.cred.verify_password

    def counting(password, stored):
        calls.append(password)
        return real(password, stored)
    monkeypatch.setattr(auth.cred, "verify_password", counting)
    portal = make_portal(store, Cfg(cache_ttl=300))
    run(store.create_account, "cache@example.test", hash_password("right"))
    for _ in range(3):
        _iface, account, _logout = login(run, portal, "cache@example.test", "right")
        assert account.address == "cache@example.test" and account.id
    assert calls == ["right"]
    with pytest.raises(UnauthorizedLogin):
        login(run, portal, "cache@example.test", "wrong")
    account = run(store.get_account, "cache@example.test")
    run(store.set_password_hash, account.id, hash_password("new"))
    with pytest.raises(UnauthorizedLogin):
        login(run, portal, "cache@example.test", "right")
    login(run, portal, "cache@example.test", "new")
    assert calls == ["right", "wrong", "right", "new"]
