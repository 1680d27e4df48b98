"""POP3 with non-default ``[pop3]`` settings, on one extra SQLite ``haven serve``:
``allow_plaintext_auth = loopback`` (the default) seen from a non-loopback peer, the autologout timer, and a store
failure at QUIT (another process holds the SQLite write lock past the busy timeout)."""

from __future__ import annotations

import socket
import sqlite3
import time

import pytest

from tests.conftest import ENGINES, HavenServer, free_port, non_loopback_ipv4, wait_port

from .test_pop3_wire import deliver_n
from .wire import POP

pytestmark = pytest.mark.skipif("sqlite" not in ENGINES, reason="HAVEN_TEST_ENGINES excludes sqlite")


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """Plain POP3 on a non-loopback address with plaintext login refused, POP3S on loopback,
    a 1.2 s autologout and a 1.5 s login deadline, a 200 ms SQLite busy timeout."""
    ip = non_loopback_ipv4()
    port = free_port()
    server = HavenServer(tmp_path_factory.mktemp("haven-pop3-strict"), "sqlite", {
        "pop3.listen": f"{ip or '127.0.0.1'}:{port}",
        "pop3.allow_plaintext_auth": "loopback",
        "pop3.idle_timeout": "0.02",
        "pop3.login_timeout": "1.5",
        "store.busy_timeout_ms": "200",
    })
    server.gateways.remove("pop3")  # start() waits on loopback ports; this one is checked below
    server.pop3 = (ip or "127.0.0.1", port)
    server.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(server.pop3, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        wait_port(server.pop3s[1], server.proc)
        server.remote = ip is not None
        yield server
    finally:
        server.close()


def test_plaintext_login_refused_before_tls_from_a_remote_peer(strict):
    if not strict.remote:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    user = strict.new_user("strict")
    with POP(strict.pop3) as w:
        _, caps = w.multi("CAPA")
        assert b"STLS\r\n" in caps and b"USER" not in caps and b"SASL" not in caps
        tls_required = b"-ERR [SYS/PERM] TLS required"
        assert w.cmd("USER " + user[0]) == tls_required
        assert w.cmd("PASS " + user[1]) == tls_required
        assert w.cmd("AUTH PLAIN AHVzZXIAcGFzcw==") == tls_required
        assert w.multi("AUTH")[1] == b".\r\n"  # no mechanism offered in plaintext
        assert w.cmd("STLS") == b"+OK Begin TLS negotiation"
        w.starttls()
        _, caps = w.multi("CAPA")
        assert b"USER\r\n" in caps and b"SASL PLAIN\r\n" in caps and b"STLS" not in caps
        assert w.login(*user).startswith(b"+OK Logged in")
    with POP(strict.pop3s, tls=True) as w:  # implicit TLS
        assert w.login(*user).startswith(b"+OK Logged in")


def test_autologout_closes_silently_and_deletes_nothing(strict):
    user = strict.new_user("idle")
    deliver_n(strict, user[0], 2)
    with POP(strict.pop3s, tls=True) as w, POP(strict.pop3s, tls=True) as hung:
        assert w.login(*user).startswith(b"+OK Logged in, 2 messages")
        assert w.cmd("DELE 1").startswith(b"+OK")
        assert hung.cmd("AUTH PLAIN") == b"+ "  # and the continuation never comes: login_timeout
        started = time.monotonic()
        w.sock.settimeout(10)
        hung.sock.settimeout(10)
        assert w.closed_by_server()  # RFC 1939 §3: no reply, no UPDATE state
        assert hung.closed_by_server()
        assert 0.8 < time.monotonic() - started < 5
    with POP(strict.pop3s, tls=True) as w:
        assert w.login(*user).startswith(b"+OK Logged in, 2 messages")
    assert "autologout" in strict.log()


def test_store_failure_at_quit_is_sys_temp_and_deletes_nothing(strict):
    user = strict.new_user("locked")
    deliver_n(strict, user[0], 2)
    with POP(strict.pop3s, tls=True) as w:
        w.login(*user)
        assert w.cmd("DELE 1").startswith(b"+OK")
        lock = sqlite3.connect(strict.sqlite_path, isolation_level=None, timeout=10)
        lock.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        try:
            reply = w.cmd("QUIT")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert reply.startswith(b"-ERR [SYS/TEMP] Some deleted messages not removed"), reply
        assert w.closed_by_server()
    with POP(strict.pop3s, tls=True) as w:
        assert w.login(*user).startswith(b"+OK Logged in, 2 messages")
        assert w.cmd("DELE 1").startswith(b"+OK")
        assert w.cmd("QUIT").startswith(b"+OK Haven POP3 signing off (1 message deleted)")
    assert "QUIT could not delete 1 messages" in strict.log()
