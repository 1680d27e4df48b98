"""ManageSieve with non-default settings, on one extra SQLite ``haven serve``: a small
``[rules]`` script size and count (QUOTA/MAXSIZE, QUOTA/MAXSCRIPTS), ``allow_plaintext_auth = loopback`` (the default)
seen from a non-loopback peer, the autologout timers, the bad-command limit, and a store that
cannot write (another process holds the SQLite write lock: TRYLATER)."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest

from tests.conftest import ENGINES, HavenServer, free_port, non_loopback_ipv4, wait_port

from .wire import Sieve, capabilities, literal

pytestmark = pytest.mark.skipif("sqlite" not in ENGINES, reason="HAVEN_TEST_ENGINES excludes sqlite")


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """ManageSieve on a non-loopback address (when the machine has one) with plaintext login
    refused, 1 s login and 1.2 s idle autologout, 3 bad commands, scripts of at most 1 KiB and
    2 per account, a 200 ms SQLite busy timeout."""
    ip = non_loopback_ipv4()
    port = free_port()
    server = HavenServer(tmp_path_factory.mktemp("haven-sieve-strict"), "sqlite", {
        "managesieve.listen": f"{ip or '127.0.0.1'}:{port}",
        "managesieve.allow_plaintext_auth": "loopback",
        "managesieve.login_timeout": "1",
        "managesieve.idle_timeout": "0.02",
        "managesieve.max_bad_commands": "3",
        "rules.max_script_size": "1K",
        "rules.max_scripts": "2",
        "store.busy_timeout_ms": "200",
    })
    server.gateways.remove("managesieve")  # start() waits on loopback ports; this one is checked below
    server.managesieve = (ip or "127.0.0.1", port)
    server.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(server.managesieve, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        wait_port(server.imap[1], server.proc)
        server.remote = ip is not None
        yield server
    finally:
        server.close()


def session(strict, user) -> Sieve:
    """A logged-in session: STARTTLS first (required from a remote peer)."""
    s = Sieve(strict.managesieve)
    assert s.cmd("STARTTLS").ok
    assert s.starttls().ok
    assert s.login(*user).ok
    return s


def test_plaintext_login_refused_before_tls_from_a_remote_peer(strict):
    if not strict.remote:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    user = strict.new_user("strict")
    with Sieve(strict.managesieve) as s:
        caps = capabilities(s.greeting)
        assert caps["SASL"] == "" and "STARTTLS" in caps  # RFC 5804 §1.8: empty only with STARTTLS
        r = s.login(*user)
        assert r.status == b'NO (ENCRYPT-NEEDED) "Plaintext authentication requires TLS; use STARTTLS first"'
        assert s.cmd("STARTTLS").ok
        caps = capabilities(s.starttls())
        assert caps["SASL"] == "PLAIN LOGIN" and "STARTTLS" not in caps
        assert s.login(*user).ok


def test_script_count_and_size_limits(strict):
    user = strict.new_user("limits")
    with session(strict, user) as s:
        assert s.cmd(b'PUTSCRIPT "one" ' + literal(b"keep;\r\n")).ok
        assert s.cmd(b'PUTSCRIPT "two" ' + literal(b"keep;\r\n")).ok
        r = s.cmd(b'PUTSCRIPT "three" ' + literal(b"keep;\r\n"))
        assert r.code == b"QUOTA/MAXSCRIPTS" and r.status.startswith(b"NO "), r
        assert s.cmd('HAVESPACE "three" 10').code == b"QUOTA/MAXSCRIPTS"
        assert s.cmd('HAVESPACE "two" 10').ok  # replacing an existing script needs no new slot
        assert s.cmd(b'PUTSCRIPT "two" ' + literal(b"discard;\r\n")).ok
        assert s.cmd('HAVESPACE "two" 1025').code == b"QUOTA/MAXSIZE"
        assert s.cmd('HAVESPACE "two" 1024').ok
        # within the read slack: the store refuses it; far beyond: refused on the wire
        assert s.cmd(b'PUTSCRIPT "two" ' + literal(b"#" * 2000 + b"\r\nkeep;\r\n")).code == b"QUOTA/MAXSIZE"
        r = s.cmd(b'PUTSCRIPT "two" ' + literal(b"#" * 20000 + b"\r\nkeep;\r\n"))
        assert r.status == b'NO (QUOTA/MAXSIZE) "Script too big (at most 1024 octets)"'
        # CHECKSCRIPT does not look at the script count (RFC 5804 §2.12)
        assert s.cmd(b"CHECKSCRIPT " + literal(b"keep;\r\n")).ok
        assert s.cmd("LISTSCRIPTS").lines == [b'"one"', b'"two"']
        assert s.cmd('GETSCRIPT "two"').lines == [b"{10}\r\ndiscard;\r\n"]


def test_store_failure_is_trylater(strict):
    user = strict.new_user("locked")
    with session(strict, user) as s:
        lock = sqlite3.connect(strict.sqlite_path, isolation_level=None, timeout=10)
        lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            r = s.cmd(b'PUTSCRIPT "rules" ' + literal(b"keep;\r\n"))
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert r.code == b"TRYLATER" and r.status.startswith(b"NO "), r
        assert s.cmd(b'PUTSCRIPT "rules" ' + literal(b"keep;\r\n")).ok  # and it works once the lock is gone
        assert s.cmd("LISTSCRIPTS").lines == [b'"rules"']


def test_bad_command_limit(strict):
    with Sieve(strict.managesieve) as s:
        assert s.cmd("BOGUS").status.startswith(b"NO ")
        assert s.cmd("LISTSCRIPTS").status.startswith(b"NO ")  # not valid before login: counts too
        s.send("BOGUS\r\n")
        assert s.response().status.startswith(b"NO ")
        assert s.response().status == b'BYE "Too many invalid commands."'
        assert s.closed_by_server()


def test_autologout_before_and_after_login(strict):
    user = strict.new_user("idle")
    with Sieve(strict.managesieve) as idle, Sieve(strict.managesieve) as hung, session(strict, user) as busy:
        idle.sock.settimeout(10)
        hung.sock.settimeout(10)
        busy.sock.settimeout(10)
        assert hung.cmd("STARTTLS").ok and hung.starttls().ok
        hung.send('AUTHENTICATE "PLAIN"\r\n')  # and the response to the challenge never comes
        assert hung.line() == b'""'
        started = time.monotonic()
        for s in (idle, hung, busy):
            assert s.response().status == b'BYE "Disconnected for inactivity."'
            assert s.closed_by_server()
        assert time.monotonic() - started < 6
    assert "autologout" in strict.log()
