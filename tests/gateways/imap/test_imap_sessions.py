"""Multi-session consistency, IDLE, limits, bad input, pipelining and client-like flows, over
real sockets against a real ``haven serve``."""

from __future__ import annotations

import re
import threading
import time

import pytest
from imapclient import IMAPClient

from .wire import Wire, untagged


@pytest.fixture
def user(haven):
    return haven.new_user()


def _msg(i: int, extra: bytes = b"") -> bytes:
    return (b"From: Sender <s@example.org>\r\nTo: r@example.test\r\nSubject: message %d\r\n"
            b"Message-ID: <m%d-%d@example.org>\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\n%s\r\nbody %d\r\n"
            % (i, i, time.time_ns(), extra, i))


def _fill(haven, user, n):
    for i in range(n):
        haven.deliver(user[0], _msg(i))


def test_two_sessions_see_each_others_changes(haven, user):
    _fill(haven, user, 3)
    with Wire(haven.imap) as a, Wire(haven.imap) as b:
        a.login(*user)
        b.login(*user)
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        # flags changed by A appear in B at its next NOOP, with the UID
        a.ok("STORE 2 +FLAGS (\\Flagged)")
        lines = b.ok("NOOP")
        assert b"* 2 FETCH (UID 2 FLAGS (\\Flagged))" in lines
        assert len(b.ok("NOOP")) == 1  # reported once
        # A's own change is not repeated to A
        assert len(a.ok("NOOP")) == 1
        # expunge by A: B hears it at NOOP, but not during FETCH (RFC 3501 §7.4.1)
        a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        assert a.ok("EXPUNGE")[0] == b"* 1 EXPUNGE"
        lines = b.ok("FETCH 1:3 (FLAGS)")
        assert not untagged(lines, b"EXPUNGE")
        assert b"[EXPUNGEISSUED]" in lines[-1] or len(untagged(lines, b"FETCH")) >= 2
        lines = b.ok("NOOP")
        assert b"* 1 EXPUNGE" in lines
        assert b.ok("FETCH 1 (UID)")[0] == b"* 1 FETCH (UID 2)"
        # APPEND by A (and LMTP delivery) appear as EXISTS in B
        body = _msg(9)
        assert b"* 3 EXISTS" in a.ok(b"APPEND INBOX {%d+}\r\n%s" % (len(body), body))  # RFC 3501 §6.3.11
        lines = b.ok("NOOP")
        assert b"* 3 EXISTS" in lines
        haven.deliver(user[0], _msg(10))
        assert b"* 4 EXISTS" in b.ok("NOOP")
        # UID commands may carry EXPUNGE responses (RFC 3501 §7.4.1)
        a.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        a.ok("UID EXPUNGE 3")
        lines = b.ok("UID FETCH 1:* (FLAGS)")
        assert b"* 1 EXPUNGE" in lines or b"* 2 EXPUNGE" in lines


def test_idle_woken_by_lmtp_delivery(haven, user):
    _fill(haven, user, 1)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("SELECT INBOX")
        w.send(b"i1 IDLE\r\n")
        assert w.line().startswith(b"+ ")
        start = time.monotonic()
        threading.Thread(target=haven.deliver, args=(user[0], _msg(1))).start()
        line = w.wait_for(lambda l: l.endswith(b"EXISTS"), timeout=5)
        assert line == b"* 2 EXISTS"
        assert time.monotonic() - start < 1.0
        # a flag change by another session wakes it too
        with Wire(haven.imap) as other:
            other.login(*user)
            other.ok("SELECT INBOX")
            other.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        assert w.wait_for(lambda l: b"FETCH" in l) == b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))"  # w SELECTed first
        w.send(b"DONE\r\n")
        assert w.until("i1")[-1].startswith(b"i1 OK")
        w.ok("NOOP")


def test_idle_with_imapclient(haven, user):
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(*user)
    c.select_folder("INBOX")
    c.idle()
    haven.deliver(user[0], _msg(1))
    responses = c.idle_check(timeout=5)
    c.idle_done()
    assert (1, b"EXISTS") in responses
    c.logout()


def test_pipelined_commands(haven, user):
    _fill(haven, user, 2)
    with Wire(haven.imap) as w:
        w.send(b'p1 LOGIN "%s" "%s"\r\np2 SELECT INBOX\r\np3 FETCH 1:2 (UID)\r\np4 STORE 1 +FLAGS (\\Seen)\r\n'
               b"p5 NOOP\r\np6 LOGOUT\r\n" % (user[0].encode(), user[1].encode()))
        lines = []
        while True:
            try:
                lines.append(w.line())
            except ConnectionError:
                break
        tagged = [l.split(b" ")[0] for l in lines if not l.startswith(b"* ")]
        assert tagged == [b"p1", b"p2", b"p3", b"p4", b"p5", b"p6"]
        assert all(l.split(b" ")[1] == b"OK" for l in lines if not l.startswith(b"* "))


def test_bad_input_never_kills_the_connection(haven, user):
    with Wire(haven.imap) as w:
        w.send(b"\x00\x01\x02\xff\r\n")
        assert w.line().startswith(b"* BAD")
        assert w.cmd("FROB")[-1].split(b" ")[1] == b"BAD"
        assert w.cmd('LOGIN "unterminated')[-1].split(b" ")[1] == b"BAD"
        assert w.cmd("FETCH 1 FLAGS")[-1].split(b" ")[1] == b"BAD"  # wrong state
        # an over-long line (> 64 KiB) is refused and the stream resynchronizes
        w.send(b"x1 NOOP " + b"A" * 70000 + b"\r\n")
        assert w.line() == b"x1 BAD Command line too long"
        w.login(*user)
        w.ok("SELECT INBOX")
        assert w.cmd("FETCH 1:* (BODY[1.x])")[-1].split(b" ")[1] == b"BAD"
        assert w.cmd("SEARCH (((")[-1].split(b" ")[1] == b"BAD"
        # an impossible date is refused, not moved to another day
        assert w.cmd(b'APPEND INBOX "31-Feb-2020 10:00:00 +0000" {3+}\r\nx\r\n')[-1].split(b" ")[1] == b"BAD"
        assert w.cmd(b"LIST \"\" \"\xff\xfe\"")[-1].split(b" ")[1] == b"BAD"
        w.ok("NOOP")
        # IDLE waiting for DONE gets an over-long line: IDLE ends with BAD, the session goes on
        w.send(b"i1 IDLE\r\n")
        assert w.line().startswith(b"+ ")
        w.send(b"B" * 70000 + b"\r\n")
        assert w.until("i1")[-1].startswith(b"i1 BAD")
        w.ok("NOOP")


def test_literal_limits(haven_factory, haven):
    big = haven_factory(haven.engine, **{"server.max_message_size": str(10 * 1024 * 1024)})
    user = big.new_user()
    payload = b"Subject: big\r\n\r\n" + (b"x" * 78 + b"\r\n") * (20 * 1024 * 1024 // 80)
    with Wire(big.imap) as w:
        w.login(*user)
        assert b"APPENDLIMIT=10485760" in w.ok("CAPABILITY")[0]
        # synchronizing literal over the limit: no "+", a tagged NO [TOOBIG] (RFC 7888 §4)
        w.send(b"a1 APPEND INBOX {%d}\r\n" % len(payload))
        assert w.line().startswith(b"a1 NO [TOOBIG]")
        # non-synchronizing: read and discarded, then NO [TOOBIG]; the connection lives on
        w.send(b"a2 APPEND INBOX {%d+}\r\n" % len(payload) + payload + b"\r\n")
        assert w.until("a2")[-1].startswith(b"a2 NO [TOOBIG]")
        w.ok("NOOP")
        assert w.ok("STATUS INBOX (MESSAGES)")[0] == b'* STATUS "INBOX" (MESSAGES 0)'
    # the default limit (50 MiB) accepts it
    user = haven.new_user()
    with Wire(haven.imap) as w:
        w.login(*user)
        w.send(b"a1 APPEND INBOX {%d}\r\n" % len(payload))
        assert w.line().startswith(b"+ ")
        w.send(payload + b"\r\n")
        assert b"[APPENDUID" in w.until("a1")[-1]
        w.ok("SELECT INBOX")
        assert w.ok("FETCH 1 RFC822.SIZE")[0] == b"* 1 FETCH (RFC822.SIZE %d)" % len(payload)


def test_thunderbird_like_session(haven, user):
    for i in range(5):
        haven.deliver(user[0], _msg(i, b"X-Priority: 3\r\nIn-Reply-To: <x@y>\r\n"))
    with Wire(haven.imap) as w:
        caps = w.ok("CAPABILITY")[0]
        assert b"IMAP4rev1" in caps
        w.ok('AUTHENTICATE PLAIN ' + __import__("base64").b64encode(
            b"\0" + user[0].encode() + b"\0" + user[1].encode()).decode())
        w.ok('ID ("name" "Thunderbird" "version" "115.0")')
        w.ok("ENABLE CONDSTORE")
        lines = w.ok('LIST (SUBSCRIBED) "" "*" RETURN (SPECIAL-USE)')
        assert any(b"\\Sent" in l for l in lines)
        lines = w.ok('LIST "" "*" RETURN (SPECIAL-USE)')
        assert any(b"\\Trash" in l and b"Trash" in l for l in lines)
        lines = w.ok("SELECT INBOX (CONDSTORE)")
        assert b"* 5 EXISTS" in lines and any(b"HIGHESTMODSEQ" in l for l in lines)
        lines = w.ok("UID FETCH 1:* (FLAGS)")
        assert len(untagged(lines, b"FETCH")) == 5
        assert all(re.match(rb"\* \d FETCH \(UID \d FLAGS \((\\Recent)?\) MODSEQ \(\d+\)\)", l) for l in lines[:-1]), lines
        lines = w.ok("UID FETCH 3:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date "
                     "Message-ID Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])")
        assert len(untagged(lines, b"FETCH")) == 3
        assert b"X-Priority: 3\r\n" in lines[0] and b"Subject: message 2\r\n" in lines[0]
        assert b"body 2" not in lines[0]
        w.send(b"i IDLE\r\n")
        assert w.line().startswith(b"+ ")
        haven.deliver(user[0], _msg(6))
        assert w.wait_for(lambda l: l.endswith(b"EXISTS")) == b"* 6 EXISTS"
        w.send(b"DONE\r\n")
        w.until("i")
        lines = w.ok("UID FETCH 6:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)])")
        assert len(untagged(lines, b"FETCH")) == 1
        lines = w.ok("UID FETCH 6 (UID RFC822.SIZE BODY[])")
        assert b"\\Seen" in lines[0]
        w.ok("UID STORE 1 +FLAGS (\\Deleted)")
        w.ok("UID EXPUNGE 1")
        w.ok("LOGOUT")


def test_mutt_like_session_with_imaplib(haven, user):
    import imaplib
    _fill(haven, user, 3)
    c = imaplib.IMAP4(*haven.imap)
    c.login(*user)
    c.select("INBOX")
    typ, data = c.fetch("1:3", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT TO CC "
                                "MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST "
                                "X-LABEL)])")
    assert typ == "OK" and len([d for d in data if isinstance(d, tuple)]) == 3
    typ, data = c.fetch("2", "BODY[]")
    assert b"body 1" in data[0][1]
    c.store("2", "+FLAGS", "\\Deleted")
    c.expunge()
    typ, data = c.search(None, "ALL")
    assert data == [b"1 2"]
    typ, data = c.uid("COPY", "1", "Archive")
    assert typ == "OK"
    c.close()
    c.logout()


def test_many_envelopes_fetch_fast(haven, user):
    """FETCH 1:* (ENVELOPE FLAGS RFC822.SIZE) of 2,560 messages is quick (batched, no blob reads)."""
    with Wire(haven.imap, timeout=60) as w:
        w.login(*user)
        for i in range(5):
            body = _msg(i)
            w.ok(b"APPEND INBOX {%d+}\r\n%s" % (len(body), body))
        w.ok("SELECT INBOX")
        for _ in range(9):  # 5 * 2**9 messages, one transaction per COPY
            w.ok("COPY 1:* INBOX")
        w.ok("NOOP")
        start = time.monotonic()
        lines = w.ok("FETCH 1:* (UID ENVELOPE FLAGS RFC822.SIZE INTERNALDATE)")
        elapsed = time.monotonic() - start
        assert len(lines) == 2561 and lines[-2].startswith(b"* 2560 FETCH (UID 2560 ENVELOPE (")
        assert elapsed < 2.0, elapsed
        start = time.monotonic()
        lines = w.ok("UID SEARCH SUBJECT \"message 3\"")
        assert len(lines[0].split()) == 2 + 512
        assert time.monotonic() - start < 3.0


def test_plaintext_auth_disabled_and_autologout(haven_factory, haven):
    import imaplib
    import ssl
    srv = haven_factory(haven.engine, **{"imap.allow_plaintext_auth": "no", "imap.idle_timeout": "0.03"})
    user = srv.new_user()
    with Wire(srv.imap) as w:
        assert b"LOGINDISABLED" in w.greeting and b"AUTH=PLAIN" not in w.greeting
        assert b"NO [PRIVACYREQUIRED]" in w.cmd('LOGIN "%s" "%s"' % user)[-1]
    c = imaplib.IMAP4(*srv.imap)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.starttls(ctx)
    assert "AUTH=PLAIN" in c.capabilities and "LOGINDISABLED" not in c.capabilities
    c.login(*user)
    c.select("INBOX")
    time.sleep(2.5)  # idle_timeout = 0.03 minutes: autologout (RFC 3501 §5.4)
    with pytest.raises((imaplib.IMAP4.abort, OSError)):
        c.noop()
        c.noop()


def test_selected_folder_deleted_by_another_session(haven, user):
    with Wire(haven.imap) as a, Wire(haven.imap) as b:
        a.login(*user)
        b.login(*user)
        a.ok("CREATE Doomed")
        a.ok("APPEND Doomed {20+}\r\nSubject: x\r\n\r\nbody\r\n")
        a.ok("APPEND Doomed {20+}\r\nSubject: y\r\n\r\nbody\r\n")
        a.ok("SELECT Doomed")
        b.ok("DELETE Doomed")
        # A's messages are gone from its view at the next command, not an error forever after
        lines = a.ok("NOOP")
        assert sum(1 for line in lines if line.endswith(b" EXPUNGE")) == 2, lines
        assert a.ok("SEARCH ALL")[0].strip() == b"* SEARCH"
        a.ok("SELECT INBOX")


def test_before_login_no_big_literal_and_a_deadline_input_does_not_move(haven_factory, haven):
    srv = haven_factory(haven.engine, **{"imap.login_timeout": "1.5"})
    user = srv.new_user()
    with Wire(srv.imap) as w:
        # a 45 MB APPEND before login: refused before a byte of it is read
        w.send(b"a1 APPEND INBOX {45000010}\r\n")
        assert w.line().startswith(b"a1 NO [TOOBIG]")
        # a password literal still fits
        w.send(b'a2 LOGIN {%d}\r\n' % len(user[0]))
        assert w.line().startswith(b"+")
        w.send(user[0].encode() + b' "wrong"\r\n')
        assert b"a2 NO" in w.until("a2")[-1]
        # NOOPs keep coming, yet the connection ends at the login deadline
        started = time.monotonic()
        with pytest.raises((ConnectionError, OSError, AssertionError)):
            for n in range(40):
                assert w.cmd(f"NOOP{n} NOOP".split()[1])[-1].split(b" ")[1] == b"OK"
                time.sleep(0.2)
        assert time.monotonic() - started < 6
    with Wire(srv.imap) as w:  # a non-synchronizing one is discarded as it comes, never kept
        w.send(b"a1 APPEND INBOX {45000010+}\r\n")
        started = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            while time.monotonic() - started < 6:
                w.sock.sendall(b"x" * 65536)
                time.sleep(0.01)
        assert time.monotonic() - started < 6  # the login deadline ended it
    with Wire(srv.imap) as w:  # logging in in time: the idle timer applies from then on
        w.login(*user)
        time.sleep(2)
        w.ok("NOOP")


def test_before_login_lines_are_short(haven):
    user = haven.new_user()
    with Wire(haven.imap) as w:
        w.send(b"x1 LOGIN " + b"A" * 9000 + b" pw\r\n")
        assert w.line() == b"x1 BAD Command line too long"
        w.login(*user)  # a normal LOGIN still fits, and the session goes on
        w.ok("SELECT INBOX")
        # once logged in, max_line_length (64 KiB) applies
        assert w.cmd(b'SEARCH SUBJECT "' + b"B" * 20000 + b'"')[-1].split(b" ")[1] == b"OK"
