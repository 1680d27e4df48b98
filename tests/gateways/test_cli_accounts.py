"""The account lifecycle as an admin drives it (``haven user del|restore|disable|enable|list``)
against a running server: what IMAP, POP3 and LMTP clients see after each step."""

from __future__ import annotations

import imaplib
import os
import poplib
import pty
import subprocess
import sys

import pytest

from tests.gateways.lmtp.wire import send_message
from tests.gateways.smtp_helpers import imap_messages

BODY = b"From: a@example.org\r\nSubject: lifecycle\r\n\r\nstill here\r\n"


def lmtp_rcpt(haven, address: str):
    """The reply to RCPT TO (and, when accepted, the delivery's)."""
    rcpt, data = send_message(haven.lmtp, "a@example.org", [address], BODY)
    return rcpt[0], data


def imap_login_refused(haven, address: str, password: str) -> bool:
    conn = imaplib.IMAP4(*haven.imap, timeout=15)
    try:
        conn.login(address, password)
    except imaplib.IMAP4.error:
        return True
    finally:
        conn.shutdown()
    return False


def pop3_login_refused(haven, address: str, password: str) -> bool:
    conn = poplib.POP3(*haven.pop3, timeout=15)
    try:
        conn.user(address)
        conn.pass_(password)
    except poplib.error_proto:
        return True
    finally:
        conn.close()
    return False


def listing(haven) -> dict:
    """``haven user list`` as {address: [state, usage, messages, last login, name]}; checks the header."""
    r = haven.cli("user", "list")
    assert r.returncode == 0, r.stderr
    header, *lines = r.stdout.decode().splitlines()
    assert header.split("\t") == ["ADDRESS", "STATE", "USAGE", "MESSAGES", "LAST LOGIN", "NAME"]
    return {fields[0]: fields[1:] for fields in (line.split("\t") for line in lines)}


def test_del_refuses_every_protocol_and_restore_brings_the_mail_back(haven):
    address, password = haven.new_user("softdel")
    rcpt, data = lmtp_rcpt(haven, address)
    assert rcpt.code == 250 and data[0].code == 250
    assert len(imap_messages(haven, address, password)) == 1

    r = haven.cli("user", "del", address)
    assert r.returncode == 0, r.stderr
    assert f"deleted {address}".encode() in r.stdout and b"purged after" in r.stdout
    assert imap_login_refused(haven, address, password)
    assert pop3_login_refused(haven, address, password)
    rcpt, _ = lmtp_rcpt(haven, address)
    assert rcpt.code == 550 and rcpt.text.startswith("550 5.1.1"), rcpt
    state = listing(haven)[address]
    assert state[0].startswith("deleted, purged after 20") and state[2] == "1"

    r = haven.cli("user", "add", address, "--password-stdin", input=b"other\n")
    assert r.returncode == 65 and b"not yet purged" in r.stderr and b"user restore" in r.stderr
    r = haven.cli("user", "enable", address)
    assert r.returncode == 65 and b"user restore" in r.stderr
    r = haven.cli("user", "del", address)
    assert r.returncode == 65 and b"already deleted" in r.stderr

    r = haven.cli("user", "restore", address)
    assert r.returncode == 0 and f"restored {address}".encode() in r.stdout
    [message] = imap_messages(haven, address, password)
    assert message.endswith(b"still here\r\n")
    assert lmtp_rcpt(haven, address)[0].code == 250
    assert listing(haven)[address][0] == "active"
    r = haven.cli("user", "restore", address)
    assert r.returncode == 65 and b"not deleted" in r.stderr


def test_disable_and_enable(haven):
    address, password = haven.new_user("toggle")
    r = haven.cli("user", "disable", address)
    assert r.returncode == 0 and f"disabled {address}".encode() in r.stdout
    assert b"already disabled" in haven.cli("user", "disable", address).stdout
    assert imap_login_refused(haven, address, password)
    rcpt, _ = lmtp_rcpt(haven, address)
    assert rcpt.code == 550 and rcpt.text.startswith("550 5.1.1")
    assert listing(haven)[address][0] == "disabled"
    r = haven.cli("user", "enable", address)
    assert r.returncode == 0 and f"enabled {address}".encode() in r.stdout
    assert imap_messages(haven, address, password) == []
    assert lmtp_rcpt(haven, address)[0].code == 250
    r = haven.cli("user", "disable", "nobody@example.test")
    assert r.returncode == 65 and b"no account nobody@example.test" in r.stderr


def test_del_now_needs_yes_without_a_terminal(haven):
    address, password = haven.new_user("now")
    r = haven.cli("user", "del", address, "--now")
    assert r.returncode == 64 and b"--yes" in r.stderr
    assert listing(haven)[address][0] == "active"
    r = haven.cli("user", "del", address, "--now", "--yes")
    assert r.returncode == 0 and f"removed {address}".encode() in r.stdout
    assert address not in listing(haven)
    assert imap_login_refused(haven, address, password)
    assert lmtp_rcpt(haven, address)[0].code == 550
    # the address is free at once: a new account there starts empty
    assert haven.cli("user", "add", address, "--password-stdin", input=b"again\n").returncode == 0
    assert imap_messages(haven, address, "again") == []
    r = haven.cli("user", "del", "nobody@example.test", "--now", "--yes")
    assert r.returncode == 65 and b"no account" in r.stderr


def test_del_now_asks_on_a_terminal(haven):
    address, _ = haven.new_user("asked")

    def answer(text: bytes) -> subprocess.CompletedProcess:
        master, slave = pty.openpty()
        try:
            os.write(master, text)
            return subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(haven.config_path),
                                   "user", "del", "--now", address], stdin=slave, capture_output=True,
                                  cwd=haven.tmp, env=haven.env(), timeout=60)
        finally:
            os.close(master)
            os.close(slave)
    r = answer(b"n\n")
    assert r.returncode == 64 and b"nothing removed" in r.stderr
    assert (f"Remove {address} and all its mail, calendars and contacts now? This cannot be undone. [y/N]"
            .encode()) in r.stderr
    assert address in listing(haven)
    r = answer(b"y\n")
    assert r.returncode == 0, r.stderr
    assert address not in listing(haven)


def test_list_shows_usage_and_last_login(haven):
    address, password = haven.new_user("listed")
    assert listing(haven)[address][1:4] == ["0 bytes", "0", "never"]
    lmtp_rcpt(haven, address)
    imap_messages(haven, address, password)  # a login
    state, usage, count, last_login, name = listing(haven)[address]
    assert (state, count, name) == ("active", "1", "")
    assert usage.endswith("bytes") and int(usage.split()[0]) > len(BODY)
    assert last_login.startswith("20") and len(last_login) == len("2026-12-06 10:00")


@pytest.fixture
def purge_now(haven):
    return lambda: haven.cli("purge", "--days", "0")


def test_purge_removes_a_deleted_account(haven, purge_now):
    address, password = haven.new_user("purged")
    lmtp_rcpt(haven, address)
    assert haven.cli("user", "del", address).returncode == 0
    r = purge_now()
    assert r.returncode == 0 and b"deleted accounts" in r.stdout, r.stderr
    assert address not in listing(haven)
    r = haven.cli("user", "restore", address)
    assert r.returncode == 65 and b"no account" in r.stderr
