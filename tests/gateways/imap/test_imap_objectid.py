"""OBJECTID (RFC 8474) on the wire, both engines: MAILBOXID on CREATE, SELECT and STATUS, kept
across RENAME and new for a re-created name; EMAILID kept by COPY and MOVE; THREADID shared by
a thread's replies; SEARCH EMAILID and THREADID."""

from __future__ import annotations

import re

import pytest

from .wire import Wire


@pytest.fixture
def session(haven):
    user = haven.new_user("objid")
    haven.deliver(user[0], b"Subject: start\r\nMessage-ID: <root@x>\r\n\r\nfirst\r\n")
    haven.deliver(user[0], b"Subject: Re: start\r\nMessage-ID: <r1@x>\r\nIn-Reply-To: <root@x>\r\n"
                           b"References: <root@x>\r\n\r\nsecond\r\n")
    haven.deliver(user[0], b"Subject: Re: start\r\nMessage-ID: <r2@x>\r\nIn-Reply-To: <r1@x>\r\n"
                           b"References: <root@x>\r\n <r1@x>\r\n\r\nthird\r\n")
    haven.deliver(user[0], b"Subject: other\r\nMessage-ID: <other@x>\r\n\r\nelse\r\n")
    with Wire(haven.imap) as w:
        w.login(*user)
        yield w


def ids(lines, name: str) -> dict:
    out = {}
    for line in lines:
        m = re.match(rb"\* \d+ FETCH \(.*UID (\d+).*%s \(([A-Za-z0-9_-]+)\)" % name.encode(), line)
        if m:
            out[int(m.group(1))] = m.group(2).decode()
    return out


def test_mailboxid(session):
    w = session
    assert b"OBJECTID" in w.ok("CAPABILITY")[0]
    created = w.ok("CREATE Projects")[-1]
    mailboxid = re.search(rb"\[MAILBOXID \((F[\w-]+)\)\]", created).group(1)
    assert re.search(rb"\* OK \[MAILBOXID \(%s\)\]" % mailboxid, b"\n".join(w.ok("SELECT Projects")))
    w.ok("UNSELECT")
    w.ok("RENAME Projects Work")
    assert w.ok("STATUS Work (MAILBOXID MESSAGES)")[0] == b'* STATUS "Work" (MAILBOXID (%s) MESSAGES 0)' % mailboxid
    w.ok("DELETE Work")
    again = re.search(rb"\[MAILBOXID \((F[\w-]+)\)\]", w.ok("CREATE Work")[-1]).group(1)
    assert again != mailboxid


def test_emailid_survives_copy_and_move_and_threadid_groups_replies(session):
    w = session
    w.ok("SELECT INBOX")
    lines = w.ok("UID FETCH 1:* (EMAILID THREADID)")
    emails, threads = ids(lines, "EMAILID"), ids(lines, "THREADID")
    assert len(set(emails.values())) == 4 and all(e.startswith("M") for e in emails.values())
    assert threads[1] == threads[2] == threads[3] != threads[4]
    w.ok("UID COPY 2 Archive")
    w.ok("UID MOVE 3 Archive")
    w.ok("SELECT Archive")
    moved = ids(w.ok("UID FETCH 1:* (EMAILID THREADID)"), "EMAILID")
    assert sorted(moved.values()) == sorted([emails[2], emails[3]])
    # SEARCH by the ids (RFC 8474 §6), in another mailbox too
    found = w.ok("UID SEARCH EMAILID %s" % emails[3])[0]
    assert found == b"* SEARCH %d" % [uid for uid, e in moved.items() if e == emails[3]][0]
    assert w.ok("UID SEARCH THREADID %s" % threads[1])[0] == b"* SEARCH 1 2"
    w.ok("SELECT INBOX")
    assert w.ok("UID SEARCH THREADID %s" % threads[1])[0] == b"* SEARCH 1 2"
    assert w.ok("UID SEARCH EMAILID Mnothing")[0] == b"* SEARCH"
