"""The haven command as an admin and an MTA use it: real processes, real databases."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import HavenServer, ROOT

MESSAGE = b"From: a@example.org\nSubject: piped\n\nhello over a pipe\n"


@pytest.fixture
def admin(engine, tmp_path):
    """A configured but not running Haven (CLI only), its store made by `haven db migrate`."""
    server = HavenServer(tmp_path, engine)
    r = server.cli("db", "migrate")
    assert r.returncode == 0 and b"applied 001_initial" in r.stdout, r.stderr
    yield server
    server.close()


def test_user_lifecycle(admin):
    status = admin.cli("db", "status")
    assert status.returncode == 0 and b"schema version" in status.stdout
    r = admin.cli("user", "add", "Zed@Example.TEST", "--password-stdin", "--name", "Zed", input=b"pw\n")
    assert r.returncode == 0 and b"created zed@example.test" in r.stdout
    r = admin.cli("user", "add", "zed@example.test", "--password-stdin", input=b"pw\n")
    assert r.returncode != 0 and b"already exists" in r.stderr
    assert b"zed@example.test\tactive\t0 bytes\t0\tnever\tZed\n" in admin.cli("user", "list").stdout
    assert admin.cli("user", "passwd", "zed@example.test", "--password-stdin", input=b"new\n").returncode == 0
    r = admin.cli("user", "passwd", "nobody@example.test", "--password-stdin", input=b"new\n")
    assert r.returncode != 0 and b"no account" in r.stderr
    assert admin.cli("user", "add", "x@example.test", "--password-stdin", input=b"\n").returncode != 0
    assert admin.cli("user", "del", "zed@example.test").returncode == 0
    assert b"zed@example.test\tdeleted, purged after " in admin.cli("user", "list").stdout
    assert admin.cli("user", "del", "zed@example.test", "--now", "--yes").returncode == 0
    assert b"zed@" not in admin.cli("user", "list").stdout


def test_deliver_exit_codes_and_alias(admin):
    admin.cli("user", "add", "pipe@example.test", "--password-stdin", input=b"pw\n", check=True)
    assert admin.cli("alias", "add", "postmaster@example.test", "pipe@example.test").returncode == 0
    assert b"postmaster@example.test\tpipe@example.test" in admin.cli("alias", "list").stdout
    for rcpt in ("pipe@example.test", "postmaster@example.test", "pipe+tag@example.test"):
        r = admin.cli("deliver", "-f", "a@example.org", rcpt, input=MESSAGE)
        assert r.returncode == 0, r.stderr
    r = admin.cli("deliver", "nobody@example.test", input=MESSAGE)
    assert r.returncode == 67 and b"no such user" in r.stderr
    if admin.engine == "sqlite":
        db = sqlite3.connect(admin.sqlite_path)
        rows = db.execute("SELECT uid, size FROM messages ORDER BY uid").fetchall()
        assert [r[0] for r in rows] == [1, 2, 3]
        header = db.execute("SELECT header FROM messages WHERE uid = 1").fetchone()[0]
        assert header.startswith(b"Return-Path: <a@example.org>\r\n") and b"\r\n\r\n" in header


def test_deliver_refusals_use_the_codes_an_mta_knows(admin):
    """Over quota is 77 "mailbox full" (bounced), or 75 with [lmtp] over_quota = temporary
    (deferred); too large is 77 too: never 65, which Postfix's pipe would read as a data error."""
    admin.cli("user", "add", "full@example.test", "--password-stdin", input=b"pw\n", check=True)
    admin.cli("user", "quota", "full@example.test", "--hard", "1K", check=True)
    big = MESSAGE + b"x" * 2048 + b"\n"
    r = admin.cli("deliver", "full@example.test", input=big)
    assert r.returncode == 77 and b"full@example.test: mailbox full" in r.stderr, r.stderr
    config = admin.config_path.read_text()
    admin.config_path.write_text(config.replace("[lmtp]\n", "[lmtp]\nover_quota = temporary\n"))
    r = admin.cli("deliver", "full@example.test", input=big)
    assert r.returncode == 75 and b"mailbox full" in r.stderr, r.stderr
    admin.config_path.write_text(config.replace("[server]\n", "[server]\nmax_message_size = 100\n"))
    admin.cli("user", "add", "small@example.test", "--password-stdin", input=b"pw\n", check=True)
    r = admin.cli("deliver", "small@example.test", input=big)
    assert r.returncode == 77 and b"too large" in r.stderr, r.stderr


def test_deliver_temporary_failure_is_75(engine, tmp_path):
    if engine != "sqlite":
        pytest.skip("locks the SQLite file")
    # each write waits busy_timeout_ms per attempt before it gives up as a temporary failure
    admin = HavenServer(tmp_path, engine, {"store.busy_timeout_ms": "200"})
    admin.cli("db", "migrate", check=True)
    admin.cli("user", "add", "busy@example.test", "--password-stdin", input=b"pw\n", check=True)
    locker = sqlite3.connect(admin.sqlite_path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        r = admin.cli("deliver", "busy@example.test", input=MESSAGE)
    finally:
        locker.execute("ROLLBACK")
    assert r.returncode == 75, r.stderr
    assert locker.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    admin.close()


def test_out_of_date_schema_is_refused(admin):
    admin.cli("user", "add", "old@example.test", "--password-stdin", input=b"pw\n", check=True)
    if admin.engine == "sqlite":
        db = sqlite3.connect(admin.sqlite_path)
        db.execute("DELETE FROM applied_schema_deltas WHERE version = (SELECT MAX(version) FROM applied_schema_deltas)")
        db.commit()
    else:
        import pymysql
        from urllib.parse import urlsplit
        u = urlsplit(admin.url)
        conn = pymysql.connect(host=u.hostname, port=u.port, user=u.username, password=u.password or "",
                               database=u.path.lstrip("/"), autocommit=True)
        with conn.cursor() as cur:
            cur.execute("DELETE FROM applied_schema_deltas ORDER BY version DESC LIMIT 1")
        conn.close()
    proc = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(admin.config_path), "serve"],
                          capture_output=True, timeout=60, cwd=admin.tmp, env=admin.env())
    assert proc.returncode == 78
    assert b"haven --config " + str(admin.config_path).encode() + b" db migrate" in proc.stderr
    status = admin.cli("db", "status")
    assert status.returncode == 78 and b"run `haven db migrate`" in status.stdout


def test_only_db_migrate_creates_a_store(engine, tmp_path):
    """A mistyped data_dir or an empty database is refused by every command (serve and deliver
    included), naming the store and the config, and nothing is created; `haven deliver` says 75
    so the MTA retries instead of bouncing."""
    server = HavenServer(tmp_path, engine)
    data_dir = tmp_path / "data"
    try:
        for args in (("user", "list"), ("dav", "list", "a@example.test"), ("user", "add", "a@example.test",
                                                                          "--password-stdin"), ("db", "status")):
            r = server.cli(*args, input=b"pw\n")
            assert r.returncode == 78, (args, r.stderr)
            err = r.stderr + r.stdout
            assert b"db migrate" in err and str(server.config_path).encode() in err, err
            assert b"Traceback" not in err
        r = server.cli("deliver", "a@example.test", input=MESSAGE)
        assert r.returncode == 75 and b"no Haven store" in r.stderr or b"holds no Haven store" in r.stderr, r.stderr
        proc = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(server.config_path), "serve"],
                              capture_output=True, timeout=60, cwd=server.tmp, env=server.env())
        assert proc.returncode == 78 and b"db migrate" in proc.stderr, proc.stderr
        if engine == "sqlite":
            assert not server.sqlite_path.exists()
        r = server.cli("db", "migrate")
        assert r.returncode == 0 and b"applied 001_initial" in r.stdout
        assert server.cli("user", "list").returncode == 0
    finally:
        server.close()
    assert data_dir.exists()


def test_a_relative_data_dir_is_beside_the_config_file(tmp_path):
    conf = tmp_path / "etc" / "haven.ini"
    conf.parent.mkdir()
    conf.write_text("[server]\ndata_dir = store-here\n")
    r = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(conf), "db", "migrate"],
                       capture_output=True, cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "etc" / "store-here" / "haven.db").is_file()
    assert not (tmp_path / "store-here").exists()


def test_config_errors_say_what_to_change(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[imap]\nlisten = 127.0.0.1:1143\nlistne = x\n")
    r = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(bad), "user", "list"],
                       capture_output=True, cwd=ROOT)
    assert r.returncode == 78 and b"unknown key 'listne' in [imap]" in r.stderr
    r = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(tmp_path / "missing.ini"), "user",
                        "list"], capture_output=True, cwd=ROOT)
    assert r.returncode == 78 and b"does not exist" in r.stderr
    # a value read only when its gateway starts: one line and 78 too, not a traceback
    late = tmp_path / "late.ini"
    late.write_text(f"[server]\ndata_dir = {tmp_path / 'data'}\n"
                    + "".join(f"[{s}]\nlisten =\n" for s in ("imap", "pop3", "lmtp", "submission", "managesieve"))
                    + "[http]\nlisten = 127.0.0.1:0\n")
    r = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(late), "serve"],
                       capture_output=True, cwd=ROOT, timeout=60)
    assert r.returncode == 78 and b"haven: [http] listen = '127.0.0.1:0': expected HOST:PORT" in r.stderr
    assert b"Traceback" not in r.stderr
    help_text = subprocess.run([sys.executable, "-m", "gateways.cli", "--help"], capture_output=True, cwd=ROOT).stdout
    for command in (b"serve", b"db", b"user", b"alias", b"deliver", b"purge", b"recover"):
        assert command in help_text


def test_recover_and_purge(admin):
    admin.cli("user", "add", "rec@example.test", "--password-stdin", input=b"pw\n", check=True)
    admin.cli("deliver", "rec@example.test", input=MESSAGE, check=True)
    if admin.engine != "sqlite":
        pytest.skip("soft-deletes the row through the SQLite file")
    db = sqlite3.connect(admin.sqlite_path)
    db.execute("UPDATE messages SET deleted_at = 1000")  # a tombstone from long ago
    db.commit()
    listing = admin.cli("recover", "list", "rec@example.test").stdout.decode()
    assert "INBOX" in listing and "piped" in listing
    message_id = listing.split("\t")[0]
    r = admin.cli("recover", "restore", "rec@example.test", message_id, "999999", "dav:888888")
    assert r.returncode == 65 and b"999999, dav:888888; nothing restored" in r.stderr  # unknown IDs
    assert b"restored 1" in admin.cli("recover", "restore", "rec@example.test", message_id).stdout
    assert db.execute("SELECT uid FROM messages WHERE deleted_at = 0").fetchall() == [(2,)]
    r = admin.cli("recover", "restore", "rec@example.test", message_id)  # restored: no longer listed
    assert r.returncode == 65 and f"{message_id}; nothing restored".encode() in r.stderr
    r = admin.cli("purge")
    # the restored tombstone goes, but it is not a message removed: its message is back
    assert r.returncode == 0 and b"purged 0 messages" in r.stdout
    db.execute("UPDATE messages SET deleted_at = 1000")
    db.commit()
    assert b"purged 1 messages, 0 calendar/contact items, 0 folders, 1 blobs, 0 deleted accounts" in \
        admin.cli("purge").stdout
    assert not list((admin.data_dir / "blobs").glob("??/??/*.zst"))


def test_serve_demo_prints_a_login_that_works(admin):
    import imaplib
    import re
    import time
    proc = subprocess.Popen([sys.executable, "-m", "gateways.cli", "--config", str(admin.config_path), "serve",
                             "--demo"], stderr=subprocess.PIPE, cwd=admin.tmp, env=admin.env())
    try:
        banner, deadline = b"", time.monotonic() + 30
        while b"try:" not in banner and time.monotonic() < deadline:
            banner += proc.stderr.readline()
        m = re.search(rb"demo account: (\S+)\s+password: (\S+)", banner)
        assert m, banner
        assert b"IMAP: 127.0.0.1:%d" % admin.imap[1] in banner
        imap = imaplib.IMAP4(*admin.imap)
        imap.login(m.group(1).decode(), m.group(2).decode())
        assert imap.select("INBOX")[0] == "OK"
        imap.logout()
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.returncode == 0


def test_ctrl_c_exits_130_without_a_traceback(admin):
    """SIGINT while a command waits (here for the password on standard input): exit 130, quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "gateways.cli", "--config", str(admin.config_path), "user", "add",
                             "later@example.test", "--password-stdin"], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=admin.tmp, env=admin.env())
    deadline = time.monotonic() + 20
    wchan = Path(f"/proc/{proc.pid}/wchan")
    while time.monotonic() < deadline and "pipe" not in (wchan.read_text() if wchan.exists() else "pipe"):
        time.sleep(0.05)  # until it blocks reading the pipe
    if not wchan.exists():
        time.sleep(2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert b"Traceback" not in err and b"KeyboardInterrupt" not in err, err
