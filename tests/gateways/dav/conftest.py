"""Fixtures of the CalDAV/CardDAV tests: a fresh account (with its ``Calendar`` and ``Contacts``)
and a raw HTTP client logged in as it, on the module's ``haven serve`` (both engines).

Every test gets accounts of its own, made with ``haven.new_user()``.  That is a ``haven user
add`` process each (about half a second), so a module's accounts are made ahead, a few at a
time, while its first tests run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from .wire import Dav

_ACCOUNT_FIXTURES = ("dav", "other")


class _Accounts:
    def __init__(self, haven, count: int):
        self.haven = haven
        self.pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="dav-accounts")
        self.ahead = [self.pool.submit(haven.new_user, "dav") for _ in range(count)]

    def take(self) -> tuple[str, str]:
        if self.ahead:
            return self.ahead.pop(0).result(timeout=60)
        return self.haven.new_user("dav")

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def _accounts(request, haven):
    """Accounts for the tests of this module on this server: one per ``dav``/``other`` they ask
    for (counting the tests that were selected to run)."""
    wanted = 0
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is request.module and callspec is not None and callspec.params.get("haven") == haven.engine:
            wanted += sum(name in item.fixturenames for name in _ACCOUNT_FIXTURES)
    accounts = _Accounts(haven, wanted)
    yield accounts
    accounts.close()


@pytest.fixture
def dav(haven, _accounts) -> Dav:
    """A new account's raw DAV client: ``dav.calendar``, ``dav.contacts``, ``dav.principal``."""
    return Dav(haven, *_accounts.take())


@pytest.fixture
def other(haven, _accounts) -> Dav:
    """A second, unrelated account."""
    return Dav(haven, *_accounts.take())
