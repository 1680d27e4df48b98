"""IMAP QUOTA (RFC 9208) and the hard quota at APPEND/COPY, over real sockets against a real
``haven serve`` on each engine.  Limits are set the way an admin does: ``haven user quota``
(the CLI on the server's database) or the ``[quota]`` server defaults.

One quota root per account, ``""``, present only while the account has a hard limit; STORAGE
in units of 1024 octets (usage rounded up, limit rounded down); SETQUOTA refused.
"""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from gateways.imap.cmd_quota import storage_resources
from gateways.imap.parser import ParseError, parse_command
from store.interfaces import Quota

from .wire import Wire, untagged


def _set_quota(haven, address: str, **limits) -> None:
    args = []
    for level, size in limits.items():
        args += [f"--{level}", size]
    result = haven.cli("user", "quota", address, *args)
    assert result.returncode == 0, result.stderr.decode()


def _message(size: int, subject: str = "quota") -> bytes:
    """A message of exactly ``size`` octets (CRLF line endings)."""
    head = b"From: <s@example.org>\r\nTo: <r@example.test>\r\nSubject: %s\r\n\r\n" % subject.encode()
    body_len = size - len(head) - 2
    assert body_len >= 0
    lines, rest = divmod(body_len, 80)
    body = (b"x" * 78 + b"\r\n") * lines + b"y" * rest
    raw = head + body + b"\r\n"
    assert len(raw) == size
    return raw


def _append(w: Wire, mailbox: str, raw: bytes, sync: bool = True) -> list:
    """APPEND with a synchronizing (waits for "+") or a LITERAL+ literal; all response lines."""
    tag = w.tag()
    if sync:
        w.send(b"%s APPEND %s {%d}\r\n" % (tag.encode(), mailbox.encode(), len(raw)))
        first = w.line()
        if not first.startswith(b"+ "):
            return [first]
        w.send(raw + b"\r\n")
    else:
        w.send(b"%s APPEND %s {%d+}\r\n%s\r\n" % (tag.encode(), mailbox.encode(), len(raw), raw))
    return w.until(tag)


def _status(lines: list) -> bytes:
    return lines[-1].split(b" ", 2)[1]


@pytest.fixture
def user(haven):
    return haven.new_user("quota")


# -- the pure parts: grammar and units ----------------------------------------------------------
def test_parse_quota_commands():
    assert parse_command(b'a GETQUOTA ""').args == {"root": b""}
    assert parse_command(b"a GETQUOTA {4+}\r\nroot").args == {"root": b"root"}
    assert parse_command(b"a GETQUOTAROOT inbox/Sub").args == {"mailbox": "INBOX/Sub"}
    assert parse_command(b'a SETQUOTA "" (storage 512 MESSAGE 10)').args == {
        "root": b"", "limits": [("STORAGE", 512), ("MESSAGE", 10)]}
    assert parse_command(b'a SETQUOTA "" ()').args == {"root": b"", "limits": []}
    assert parse_command(b"a STATUS INBOX (DELETED deleted-storage)").args["items"] == ["DELETED", "DELETED-STORAGE"]
    for bad in (b"a GETQUOTA", b'a GETQUOTA "" x', b"a GETQUOTAROOT", b'a SETQUOTA ""', b'a SETQUOTA "" (STORAGE)',
                b'a SETQUOTA "" (STORAGE x)', b'a SETQUOTA "" (STORAGE 1 MESSAGE)', b"a UID GETQUOTA \"\""):
        with pytest.raises(ParseError):
            parse_command(bad)


@pytest.mark.parametrize("used,hard,wire", [
    (0, 0, None),  # no hard limit: no root, nothing to report
    (10 ** 9, 0, None),
    (0, 20480, b"(STORAGE 0 20)"),
    (1, 20480, b"(STORAGE 1 20)"),  # usage rounds up ...
    (1024, 20480, b"(STORAGE 1 20)"),
    (1025, 20480, b"(STORAGE 2 20)"),
    (0, 20479, b"(STORAGE 0 19)"),  # ... the limit down
    (5000, 3000, b"(STORAGE 5 2)"),  # over the limit (lowered after the fact)
    (0, 500, b"(STORAGE 0 0)"),
    (3 << 40, 4 << 40, b"(STORAGE 3221225472 4294967296)"),  # number64
])
def test_storage_resource_units(used, hard, wire):
    # warn and soft are Haven's own and never reported
    assert storage_resources(Quota(used_bytes=used, used_messages=1, warn=1, soft=2, hard=hard)) == wire


# -- capabilities, no limit -------------------------------------------------------------------
def test_capabilities(haven, user):
    with Wire(haven.imap) as w:
        w.login(*user)
        caps = w.ok("CAPABILITY")[0].split()
        assert b"QUOTA" in caps and b"QUOTA=RES-STORAGE" in caps
        # no SETQUOTA for clients, no message-count limit to report
        assert b"QUOTASET" not in caps and b"QUOTA=RES-MESSAGE" not in caps


def test_unlimited_account_has_no_quota_root(haven, user):
    with Wire(haven.imap) as w:
        w.login(*user)
        # RFC 9208 §7: a QUOTA response lists at least one resource; without a limit there is
        # none, so the mailbox has no root and no QUOTA line follows
        assert w.ok("GETQUOTAROOT INBOX") == [b'* QUOTAROOT "INBOX"', b"t2 OK GETQUOTAROOT completed"]
        assert w.cmd('GETQUOTA ""')[-1] == b"t3 NO [NONEXISTENT] No such quota root"
        assert w.cmd("GETQUOTAROOT Nonexistent")[-1].startswith(b"t4 NO [NONEXISTENT]")
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    try:
        c.login(*user)
        roots, quotas = c.get_quota_root("INBOX")
        assert (roots.mailbox, roots.quota_roots, quotas) == ("INBOX", [], [])
    finally:
        c.logout()


# -- usage and limit --------------------------------------------------------------------------
def test_usage_after_append_and_expunge(haven, user):
    _set_quota(haven, user[0], hard="20K", soft="10K", warn="5K")
    with Wire(haven.imap) as w:
        w.login(*user)
        # the limit is the hard one, in KiB; warn and soft are not IMAP's business
        assert w.ok("GETQUOTAROOT INBOX")[:2] == [b'* QUOTAROOT "INBOX" ""', b'* QUOTA "" (STORAGE 0 20)']
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 0 20)'
        assert b"[APPENDUID" in _append(w, "INBOX", _message(1500))[-1]
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 2 20)'  # 1500 octets: rounded up
        w.ok("CREATE Projects")
        assert b"[APPENDUID" in _append(w, "Projects", _message(3000), sync=False)[-1]
        # one root for all the account's mailboxes, usage summed over them
        lines = w.ok("GETQUOTAROOT Projects")
        assert lines[:2] == [b'* QUOTAROOT "Projects" ""', b'* QUOTA "" (STORAGE 5 20)']
        # \Deleted messages still count until EXPUNGE; STATUS tells what EXPUNGE would free
        w.ok("SELECT INBOX")
        w.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        assert (w.ok("STATUS INBOX (MESSAGES DELETED DELETED-STORAGE SIZE)")[0]
                == b'* STATUS "INBOX" (MESSAGES 1 DELETED 1 DELETED-STORAGE 1500 SIZE 1500)')
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 5 20)'
        assert w.ok("EXPUNGE")[0] == b"* 1 EXPUNGE"
        # soft-deleted (expunged, waiting for the purge) messages do not count
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 3 20)'
        assert (w.ok("STATUS INBOX (DELETED DELETED-STORAGE)")[0]
                == b'* STATUS "INBOX" (DELETED 0 DELETED-STORAGE 0)')
        # LIST-STATUS takes the same items
        lines = w.ok('LIST "" "Projects" RETURN (STATUS (DELETED-STORAGE))')
        assert b'* STATUS "Projects" (DELETED-STORAGE 0)' in lines
    # a stock client parses it
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    try:
        c.login(*user)
        roots, quotas = c.get_quota_root("INBOX")
        assert roots.quota_roots == [""]
        assert [(q.quota_root, q.resource, q.usage, q.limit) for q in quotas] == [("", "STORAGE", 3, 20)]
    finally:
        c.logout()


def test_limit_rounds_down_and_usage_may_pass_it(haven, user):
    with Wire(haven.imap) as w:
        w.login(*user)
        for _ in range(2):
            assert _status(_append(w, "INBOX", _message(2000))) == b"OK"
        # the admin lowers the limit under the usage: reported as it is, APPEND now refused
        _set_quota(haven, user[0], hard="3000")
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 4 2)'
        assert _append(w, "INBOX", _message(100))[-1].split(b" ", 1)[1].startswith(b"NO [OVERQUOTA] ")
        # back to unlimited: the root is gone again
        _set_quota(haven, user[0], hard="0")
        assert w.ok("GETQUOTAROOT INBOX")[0] == b'* QUOTAROOT "INBOX"'
        assert _status(_append(w, "INBOX", _message(100))) == b"OK"


def test_server_default_limit(haven_factory, haven):
    server = haven_factory(haven.engine, **{"quota.hard": "20K"})
    user = server.new_user("dflt")
    with Wire(server.imap) as w:
        w.login(*user)
        assert w.ok("GETQUOTAROOT INBOX")[1] == b'* QUOTA "" (STORAGE 0 20)'
        # the account's own limit overrides the default, "default" goes back to it
        _set_quota(server, user[0], hard="1M")
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 0 1024)'
        _set_quota(server, user[0], hard="default")
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 0 20)'


# -- over the hard limit ----------------------------------------------------------------------
def test_append_over_hard_quota(haven, user):
    _set_quota(haven, user[0], hard="4K")
    with Wire(haven.imap) as w:
        w.login(*user)
        assert _status(_append(w, "INBOX", _message(3000))) == b"OK"
        # synchronizing literal: "+" is sent, the literal read whole, then the refusal
        lines = _append(w, "INBOX", _message(3000))
        assert lines[-1].startswith(b"t3 NO [OVERQUOTA] ")
        # the stream is in sync: the next command works
        assert w.ok("NOOP") == [b"t4 OK NOOP completed"]
        # LITERAL+ likewise, and a command pipelined behind it
        raw = _message(3000)
        w.send(b"p1 APPEND INBOX {%d+}\r\n%s\r\np2 STATUS INBOX (MESSAGES)\r\n" % (len(raw), raw))
        assert w.until("p1")[-1].startswith(b"p1 NO [OVERQUOTA] ")
        assert w.until("p2") == [b'* STATUS "INBOX" (MESSAGES 1)', b"p2 OK STATUS completed"]
        # what still fits goes in (3000 + 1000 <= 4096)
        assert _status(_append(w, "INBOX", _message(1000))) == b"OK"
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 4 4)'
    # imaplib sees the code too
    conn = imaplib.IMAP4(*haven.imap, timeout=15)
    try:
        conn.login(*user)
        typ, data = conn.append("INBOX", None, None, _message(200))
        assert typ == "NO" and data[0].startswith(b"[OVERQUOTA]")
        assert conn.select("INBOX")[0] == "OK"
    finally:
        conn.logout()


def test_copy_over_hard_quota_move_is_not(haven, user):
    _set_quota(haven, user[0], hard="5K")
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("CREATE Projects")
        assert _status(_append(w, "INBOX", _message(3000))) == b"OK"
        w.ok("SELECT INBOX")
        # a copy would double the usage past the limit
        assert w.cmd("COPY 1 Projects")[-1].startswith(b"t5 NO [OVERQUOTA] ")
        assert w.cmd("UID COPY 1 Projects")[-1].startswith(b"t6 NO [OVERQUOTA] ")
        assert w.ok("STATUS Projects (MESSAGES)")[0] == b'* STATUS "Projects" (MESSAGES 0)'
        # MOVE does not add to the usage
        lines = w.ok("MOVE 1 Projects")
        assert b"* 1 EXPUNGE" in lines
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 3 5)'
        assert w.ok("STATUS Projects (MESSAGES)")[0] == b'* STATUS "Projects" (MESSAGES 1)'
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    try:
        c.login(*user)
        c.select_folder("Projects")
        with pytest.raises(IMAPClientError, match=r"OVERQUOTA"):
            c.copy([1], "INBOX")
        c.noop()  # the session goes on
    finally:
        c.logout()


# -- SETQUOTA and bad input -------------------------------------------------------------------
def test_setquota_refused_and_bad_arguments(haven, user):
    _set_quota(haven, user[0], hard="1M")
    with Wire(haven.imap) as w:
        assert w.cmd("GETQUOTAROOT INBOX")[-1].startswith(b"t1 BAD GETQUOTAROOT not allowed")
        w.login(*user)
        # RFC 9208 §4.1.3: no QUOTASET, limits are the administrator's
        assert (w.cmd('SETQUOTA "" (STORAGE 2048)')[-1]
                == b"t3 NO [NOPERM] Quota limits are set by the server administrator")
        assert w.cmd('SETQUOTA "" ()')[-1].startswith(b"t4 NO [NOPERM]")
        assert w.ok('GETQUOTA ""')[0] == b'* QUOTA "" (STORAGE 0 1024)'
        # malformed: BAD, and the connection goes on
        for tag, line in (("b1", 'SETQUOTA "" STORAGE 1'), ("b2", 'SETQUOTA "" (STORAGE)'), ("b3", "GETQUOTA"),
                          ("b4", 'GETQUOTA "" extra'), ("b5", "GETQUOTAROOT")):
            assert w.cmd(line, tag)[-1].startswith(tag.encode() + b" BAD "), line
        # an unknown root, and an existing mailbox name that is no root
        assert w.cmd('GETQUOTA "user quota"')[-1] == b"t6 NO [NONEXISTENT] No such quota root"
        assert w.cmd("GETQUOTA INBOX")[-1] == b"t7 NO [NONEXISTENT] No such quota root"
        # works in the selected state too
        w.ok("SELECT INBOX")
        lines = w.ok("GETQUOTAROOT inbox")
        assert untagged(lines, b"QUOTAROOT") == [b'* QUOTAROOT "INBOX" ""']
