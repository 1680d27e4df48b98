"""A store outage during login is a temporary failure on every protocol, never "wrong password"
(clients would tell the user the password is wrong, and some drop the saved one), and never
counts towards the login throttle: the right password works as soon as the store is back.

The outage: the accounts table renamed away under a running server (on either engine), so every
credential lookup fails in the database, then renamed back."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import poplib
import smtplib
import socket
import sqlite3
from urllib.parse import urlsplit

import pytest

from tests.conftest import HavenServer


@pytest.fixture(scope="module")
def server(haven, tmp_path_factory):
    s = HavenServer(tmp_path_factory.mktemp(f"haven-outage-{haven.engine}"), haven.engine, {
        "store.busy_timeout_ms": "200",
        "auth.failure_delay": "0",
    })
    s.start()
    yield s
    s.close()


def _sql(server, statement: str) -> None:
    if server.engine == "sqlite":
        db = sqlite3.connect(server.sqlite_path, isolation_level=None, timeout=10)
        db.execute(statement)
        db.close()
        return
    import pymysql  # only the MariaDB run needs the driver here
    u = urlsplit(server.url)
    conn = pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username, password=u.password or "",
                           database=u.path.lstrip("/"), autocommit=True)
    with conn.cursor() as cur:
        cur.execute(statement)
    conn.close()


@contextlib.contextmanager
def outage(server):
    _sql(server, "ALTER TABLE accounts RENAME TO accounts_away")
    try:
        yield
    finally:
        _sql(server, "ALTER TABLE accounts_away RENAME TO accounts")


def _imap(server, user, password) -> str:
    c = imaplib.IMAP4(*server.imap)
    try:
        c.login(user, password)
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        c.shutdown()


def _pop3(server, user, password) -> str:
    c = poplib.POP3(*server.pop3, timeout=10)
    try:
        c.user(user)
        return c.pass_(password).decode()
    except poplib.error_proto as e:
        return e.args[0].decode()
    finally:
        c.close()


def _sieve(server, user, password) -> bytes:
    with socket.create_connection(server.managesieve, timeout=10) as s:
        f = s.makefile("rb")
        while not f.readline().startswith(b"OK"):
            pass
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
        s.sendall(b'AUTHENTICATE "PLAIN" "' + token + b'"\r\n')
        return f.readline().rstrip()


def _submission(server, user, password) -> tuple:
    with smtplib.SMTP(*server.submission, timeout=10) as c:
        c.ehlo()
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        return c.docmd("AUTH", "PLAIN " + token)


def _http(server, user, password) -> tuple:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    with socket.create_connection(server.http, timeout=10) as s:
        s.sendall(f"PROPFIND /dav/ HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nAuthorization: Basic {token}\r\n"
                  "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        head = s.makefile("rb").read().split(b"\r\n\r\n", 1)[0]
    lines = head.split(b"\r\n")
    return int(lines[0].split()[1]), {k.lower(): v.strip() for k, _, v in (l.partition(b":") for l in lines[1:])}


def test_a_store_outage_is_try_again_later_on_every_protocol(server):
    user, password = server.new_user("outage")
    with outage(server):
        for _ in range(4):  # more than enough to be throttled, were these counted as failures
            assert "[UNAVAILABLE]" in _imap(server, user, password)
            assert _pop3(server, user, password).startswith("-ERR [SYS/TEMP]")
            assert _sieve(server, user, password).startswith(b'NO (TRYLATER)')
            assert _submission(server, user, password) == (454, b"4.7.0 Temporary authentication failure")
            status, headers = _http(server, user, password)
            assert status == 503 and headers.get(b"retry-after"), (status, headers)
    # back: the right password works at once everywhere, nothing was counted against it
    assert _imap(server, user, password) == "OK"
    assert _pop3(server, user, password).startswith("+OK")
    assert _sieve(server, user, password).startswith(b"OK")
    assert _submission(server, user, password)[0] == 235
    assert _http(server, user, password)[0] == 207
    # and a wrong password is still a wrong password
    assert "AUTHENTICATIONFAILED" in _imap(server, user, "wrong")
