"""Fixtures of the CalDAV/CardDAV tests: a fresh account (with its ``Calendar`` and ``Contacts``)
and a raw HTTP client logged in as it, on the module's ``haven serve`` (both engines).  Every
test gets accounts of its own, made with ``haven.new_user()``."""

from __future__ import annotations

import pytest

from .wire import Dav


@pytest.fixture
def dav(haven) -> Dav:
    """A new account's raw DAV client: ``dav.calendar``, ``dav.contacts``, ``dav.principal``."""
    return Dav(haven, *haven.new_user("dav"))


@pytest.fixture
def other(haven) -> Dav:
    """A second, unrelated account."""
    return Dav(haven, *haven.new_user("dav"))
