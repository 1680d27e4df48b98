"""Submission and the sender's quota, against a real ``haven serve`` on each engine, with stock
smtplib: at or over its *soft* limit an account may not send (``552 5.2.2`` at MAIL FROM);
warn and hard limits do not stop sending, and the recipients' quotas play no part at MAIL.
Limits are set with ``haven user quota``; the mailbox is filled over LMTP and emptied over IMAP.
"""

from __future__ import annotations

import imaplib
import re
import smtplib

import pytest

from tests.gateways.smtp_helpers import imap_messages
from .wire import connect, message, wait_for_log

OVER_QUOTA = b"5.2.2 Mailbox over quota: delete some mail before sending"


def _set_quota(haven, address: str, **limits) -> None:
    args = []
    for level, size in limits.items():
        args += [f"--{level}", size]
    result = haven.cli("user", "quota", address, *args)
    assert result.returncode == 0, result.stderr.decode()


def _fill(haven, address: str, size: int = 3000) -> None:
    haven.deliver(address, message("filler", "x@example.org", address, body=b"z" * size + b"\r\n"))


def _usage(haven, address: str, password: str) -> int:
    """The account's usage in octets: the STATUS SIZE of its INBOX (its only non-empty folder)."""
    conn = imaplib.IMAP4(*haven.imap, timeout=15)
    try:
        conn.login(address, password)
        typ, data = conn.status("INBOX", "(SIZE)")
        assert typ == "OK", data
        return int(re.search(rb"SIZE (\d+)", data[0]).group(1))
    finally:
        conn.logout()


def _expunge_all(haven, address: str, password: str) -> None:
    conn = imaplib.IMAP4(*haven.imap, timeout=15)
    try:
        conn.login(address, password)
        conn.select("INBOX")
        conn.store("1:*", "+FLAGS.SILENT", "(\\Deleted)")
        assert conn.expunge()[0] == "OK"
    finally:
        conn.logout()


@pytest.fixture
def pair(haven):
    """(sender, recipient): two fresh accounts, (address, password) each."""
    return haven.new_user("qsend"), haven.new_user("qrcpt")


def test_over_soft_quota_refused_at_mail_then_allowed_after_expunge(haven, pair):
    (user, password), (rcpt, rpw) = pair
    _fill(haven, user)
    used = _usage(haven, user, password)
    _set_quota(haven, user, soft=str(used))  # reaching the soft limit is enough
    with connect(haven) as s:
        s.login(user, password)
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            s.sendmail(user, [rcpt], message("over soft", user, rcpt))
        assert (refused.value.smtp_code, refused.value.smtp_error) == (552, OVER_QUOTA)
        # every transaction asks again: MAIL by hand, same answer, the session is still fine
        assert s.mail(user) == (552, OVER_QUOTA)
        assert s.rset()[0] == 250
        # deleting mail (expunged: soft-deleted messages do not count) lets the account send
        _expunge_all(haven, user, password)
        assert s.sendmail(user, [rcpt], message("after expunge", user, rcpt)) == {}
    assert [m for m in imap_messages(haven, rcpt, rpw) if b"Subject: after expunge\r\n" in m]
    assert not [m for m in imap_messages(haven, rcpt, rpw) if b"Subject: over soft\r\n" in m]
    wait_for_log(haven, re.escape(f"user=<{user}> over soft quota ({used} of {used} octets)"))


def test_under_soft_quota_accepted(haven, pair):
    (user, password), (rcpt, rpw) = pair
    _fill(haven, user)
    used = _usage(haven, user, password)
    _set_quota(haven, user, soft=str(used + 1))
    with connect(haven) as s:
        s.login(user, password)
        assert s.sendmail(user, [rcpt], message("just under", user, rcpt)) == {}
    assert b"Subject: just under\r\n" in imap_messages(haven, rcpt, rpw)[-1]


def test_warn_and_hard_do_not_stop_sending(haven, pair):
    (user, password), (rcpt, rpw) = pair
    _fill(haven, user)
    # usage (~3 KiB) is over warn and over hard, soft is unlimited: sending still works
    _set_quota(haven, user, warn="1K", hard="2K", soft="0")
    # the recipient being over its own soft limit does not matter at MAIL either
    _fill(haven, rcpt)
    _set_quota(haven, rcpt, soft="1K")
    with connect(haven) as s:
        s.login(user, password)
        assert s.sendmail(user, [rcpt], message("over warn and hard", user, rcpt)) == {}
    assert b"Subject: over warn and hard\r\n" in imap_messages(haven, rcpt, rpw)[-1]


def test_server_default_soft_quota(haven_factory, haven):
    server = haven_factory(haven.engine, **{"quota.soft": "2K"})
    (user, password), (rcpt, _rpw) = server.new_user("dsend"), server.new_user("drcpt")
    with connect(server) as s:
        s.login(user, password)
        assert s.sendmail(user, [rcpt], message("empty mailbox", user, rcpt)) == {}
        _fill(server, user)
        assert s.mail(user) == (552, OVER_QUOTA)
        s.rset()
        # the account's own limit overrides the default
        _set_quota(server, user, soft="1M")
        assert s.sendmail(user, [rcpt], message("own limit", user, rcpt)) == {}
