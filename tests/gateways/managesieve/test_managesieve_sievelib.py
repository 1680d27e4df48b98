"""A real ManageSieve client against a real ``haven serve``: sievelib's ``managesieve.Client``
(what sievelib-based tools and the Python side of several webmails use), in plaintext on
loopback and after STARTTLS, on both engines."""

from __future__ import annotations

import ssl
import warnings

import pytest
from sievelib import managesieve

from .wire import unverified_context

SCRIPT = 'require ["fileinto"];\nif header :contains "subject" "[list]" {\n    fileinto "Archive";\n}\n'


@pytest.fixture
def user(haven):
    return haven.new_user("sievelib")


def client(haven) -> managesieve.Client:
    return managesieve.Client(haven.managesieve[0], haven.managesieve[1])


def test_sievelib_manages_scripts(haven, user):
    c = client(haven)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sievelib warns about plaintext credentials (loopback here)
        assert c.connect(*user, authmech="PLAIN")
    try:
        assert c.get_implementation() == "Haven"
        assert "fileinto" in c.get_sieve_capabilities()
        assert c.listscripts() == (None, [])
        assert c.havespace("rules", len(SCRIPT))
        assert c.checkscript(SCRIPT)
        assert not c.checkscript('require "fileinto";\nfileinto "x"\n')
        assert c.errmsg.startswith(b"line ")
        assert c.putscript("rules", SCRIPT)
        assert c.putscript("spare", "keep;\n")
        assert c.setactive("rules")
        assert c.listscripts() == ("rules", ["spare"])
        # sievelib sends CRLF line endings (RFC 5228); GETSCRIPT gives back what was stored
        assert c.getscript("rules") == SCRIPT.rstrip("\n")
        assert not c.deletescript("rules")
        assert c.errcode == b"ACTIVE"
        assert not c.renamescript("spare", "rules")
        assert c.errcode == b"ALREADYEXISTS"
        assert c.renamescript("spare", "old")
        assert not c.putscript("broken", 'if true {\n  keep\n}\n')
        assert c.errmsg.startswith(b"line ")
        assert not c.havespace("huge", 10 ** 7)
        assert c.errcode == b"QUOTA/MAXSIZE"
        assert c.setactive("")
        assert c.deletescript("rules")
        assert c.listscripts() == (None, ["old"])
    finally:
        c.logout()


def test_sievelib_starttls_and_login_mechanism(haven, user, monkeypatch):
    # sievelib verifies the certificate with the system CAs; the test server's is self-signed
    context = unverified_context()
    monkeypatch.setattr(managesieve.ssllib, "create_default_context", lambda *a, **k: context)
    c = client(haven)
    assert c.connect(*user, starttls=True, authmech="LOGIN")
    try:
        assert isinstance(c.sock, ssl.SSLSocket)
        assert not c.has_tls_support()  # the capabilities re-read under TLS no longer offer STARTTLS
        assert c.putscript("tls", "keep;\n")
        assert c.listscripts() == (None, ["tls"])
    finally:
        c.logout()


def test_sievelib_wrong_password(haven, user):
    c = client(haven)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert not c.connect(user[0], "wrong", authmech="PLAIN")
    assert c.errmsg == b"Authentication failed."
