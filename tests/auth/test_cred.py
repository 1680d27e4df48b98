"""The one cred checker: hashes, legacy rehash, throttling, identical failures."""

from __future__ import annotations

import ipaddress
import time

import pytest
from passlib.hash import sha512_crypt
from twisted.cred.error import UnauthorizedLogin

from auth.cred import IAccount, PasswordCredentials, make_portal
from auth.passwords import hash_password
from gateways.common.clientaddr import in_networks


class Cfg:
    """The [auth] keys make_portal reads."""

    def __init__(self, **values):
        self.values = {"block_after": 3, "max_penalty": 0.05, "throttle_window": 60,
                       "failure_delay": 0.01, "cache_ttl": 0, **values}

    def getint(self, section, key):
        return int(self.values[key])

    def getfloat(self, section, key):
        return float(self.values[key])


def networks(text: str) -> tuple:
    return tuple(ipaddress.ip_network(n.strip(), strict=False) for n in text.split(","))


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


def refused(run, portal, user, password, ip):
    with pytest.raises(UnauthorizedLogin):
        login(run, portal, user, password, ip=ip)


@pytest.fixture
def hashes(monkeypatch):
    """The passwords the checker verified (ran the slow hash for), in order."""
    import auth.cred
    calls = []
    real = auth.cred.verify_password

    def counting(password, stored):
        calls.append(password)
        return real(password, stored)
    monkeypatch.setattr(auth.cred, "verify_password", counting)
    return calls


def test_failures_for_an_account_only_slow_it(store, run):
    """Wrong passwords from many addresses never refuse the right one (the old per-account
    lockout let anyone lock anyone out); they make its check wait the penalty."""
    portal = make_portal(store, Cfg(max_penalty=0.25))
    run(store.create_account, "dan@example.test", hash_password("right"))
    for i in range(6):
        refused(run, portal, "dan@example.test", f"guess{i}", f"203.0.113.{i}")
    start = time.monotonic()
    assert login(run, portal, "dan@example.test", "right", ip="203.0.113.99")[1].address == "dan@example.test"
    assert time.monotonic() - start >= 0.25
    # the wait is per account under attack: another account answers at once
    run(store.create_account, "dora@example.test", hash_password("right"))
    start = time.monotonic()
    login(run, portal, "dora@example.test", "right", ip="203.0.113.99")
    assert time.monotonic() - start < 0.25


def test_guessing_from_an_address_only_slows_its_other_users(store, run):
    run(store.create_account, "eve@example.test", hash_password("right"))
    portal = make_portal(store, Cfg())
    for i in range(12):
        refused(run, portal, f"guess{i}@example.test", "x", "192.0.2.77")
    assert login(run, portal, "eve@example.test", "right", ip="192.0.2.77")[1].address == "eve@example.test"


def test_block_is_per_address_and_account_and_costs_no_hash(store, run, hashes):
    portal = make_portal(store, Cfg())
    run(store.create_account, "fay@example.test", hash_password("right"))
    run(store.add_alias, "fee@example.test", "fay@example.test")
    # the alias and the address share one counter
    for user, guess in (("fay@example.test", "a"), ("fee@example.test", "b"), ("FAY@example.test", "c")):
        refused(run, portal, user, guess, "198.51.100.5")
    assert len(hashes) == 3
    # blocked: the right password from that address is refused, without a hash, and uncounted
    for _ in range(5):
        refused(run, portal, "fay@example.test", "right", "198.51.100.5")
    refused(run, portal, "fee@example.test", "d", "198.51.100.5")
    assert len(hashes) == 3
    [row] = run(store.list_login_failures, 0)
    assert (row.remote_ip, row.address, row.failures) == ("198.51.100.5", "fay@example.test", 3)
    # every other address logs in, and the same address still reaches other accounts
    assert login(run, portal, "fay@example.test", "right", ip="198.51.100.6")[1].address == "fay@example.test"
    run(store.create_account, "gus@example.test", hash_password("right"))
    assert login(run, portal, "gus@example.test", "right", ip="198.51.100.5")[1].address == "gus@example.test"
    # unblocking (haven auth unblock) forgets the pair's failures
    assert run(store.clear_login_failures, "198.51.100.5", None) == 3
    assert login(run, portal, "fee@example.test", "right", ip="198.51.100.5")[1].address == "fay@example.test"


def test_a_repeated_stale_password_counts_once(store, run):
    """A phone still sending the old password after a change does not lock its owner out."""
    portal = make_portal(store, Cfg())
    run(store.create_account, "hal@example.test", hash_password("new"))
    for _ in range(8):
        refused(run, portal, "hal@example.test", "old", "192.0.2.40")
    [row] = run(store.list_login_failures, 0)
    assert row.failures == 1
    assert login(run, portal, "hal@example.test", "new", ip="192.0.2.40")[1].address == "hal@example.test"
    # and the success cleared that address's failures for the account
    assert run(store.list_login_failures, 0) == []


def test_success_keeps_the_address_failures_for_other_accounts(store, run):
    portal = make_portal(store, Cfg())
    run(store.create_account, "ida@example.test", hash_password("right"))
    refused(run, portal, "nobody@example.test", "x", "192.0.2.41")
    login(run, portal, "ida@example.test", "right", ip="192.0.2.41")
    assert [r.subject for r in run(store.list_login_failures, 0)] == ["nobody@example.test"]


def test_trusted_networks_are_never_counted_or_blocked(store, run):
    trusted = networks("10.9.0.0/16, 192.0.2.200")
    portal = make_portal(store, Cfg(), is_trusted=lambda ip: in_networks(ip, trusted))
    run(store.create_account, "jo@example.test", hash_password("right"))
    for i in range(6):
        refused(run, portal, "jo@example.test", f"g{i}", "10.9.3.4")
        refused(run, portal, "jo@example.test", f"g{i}", "::ffff:192.0.2.200")
    assert run(store.list_login_failures, 0) == []
    assert login(run, portal, "jo@example.test", "right", ip="10.9.3.4")[1].address == "jo@example.test"


def test_one_log_line_per_block(store, run, caplog):
    portal = make_portal(store, Cfg())
    run(store.create_account, "kim@example.test", hash_password("right"))
    with caplog.at_level("INFO", logger="haven.auth"):
        for i in range(8):
            refused(run, portal, "kim@example.test", f"g{i}", "203.0.113.50")
    blocks = [r.getMessage() for r in caplog.records if "login blocked" in r.getMessage()]
    assert blocks == ["login blocked: address 203.0.113.50 for account kim@example.test after 3 wrong "
                      "passwords within 60 s"]


def test_old_failures_are_pruned(store, run):
    run(store.record_login_failure, "id:999", "192.0.2.9", "t" * 32, 1000, 0)
    assert len(run(store.list_login_failures, 0)) == 1
    run(store.record_login_failure, "someone", "192.0.2.9", "u" * 32, int(time.time()), int(time.time()) - 60)
    assert [r.subject for r in run(store.list_login_failures, 0)] == ["someone"]


def test_verified_login_cache(store, run, hashes):
    """A verified password is remembered: the slow hash runs once, a wrong password still
    fails, and a changed password takes effect at once."""
    calls = hashes
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


def test_disabled_and_deleted_accounts_cannot_log_in(store, run, portal):
    run(store.create_account, "gone@example.test", hash_password("right"))
    run(store.add_alias, "went@example.test", "gone@example.test")
    login(run, portal, "gone@example.test", "right")
    run(store.disable_account, "gone@example.test")
    refused(run, portal, "gone@example.test", "right", "192.0.2.10")
    run(store.enable_account, "gone@example.test")
    login(run, portal, "gone@example.test", "right", ip="192.0.2.11")
    run(store.mark_account_deleted, "gone@example.test")
    for user in ("gone@example.test", "went@example.test"):
        refused(run, portal, user, "right", "192.0.2.12")
    run(store.restore_account, "gone@example.test")
    assert login(run, portal, "went@example.test", "right", ip="192.0.2.13")[1].address == "gone@example.test"


def test_a_login_is_recorded(store, run, portal):
    run(store.create_account, "seen@example.test", hash_password("right"))
    assert run(store.get_credentials, "seen@example.test").last_login == 0
    login(run, portal, "seen@example.test", "right")
    assert abs(run(store.get_credentials, "seen@example.test").last_login - time.time()) < 5
