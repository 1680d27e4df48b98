"""POP3 over real loopback sockets against a real ``haven serve`` (both engines): transcripts
with raw sockets and stdlib poplib, IMAP on the same account where changes must propagate."""

from __future__ import annotations

import base64
import poplib
import re
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient

from .wire import POP, stuffed, unstuff, unverified_context

MAIL = Path(__file__).resolve().parents[2] / "data" / "mail"
CORPUS = ["plain-ascii.eml", "mixed-pdf-image.eml", "utf8-8bit.eml", "lf-only-multipart.eml",
          "broken-bare-cr.eml", "broken-nul-bytes.eml", "broken-no-separator.eml", "iso-2022-jp.eml"]
AUTH_FAILED = b"-ERR [AUTH] Authentication failed."


def as_delivered(raw: bytes) -> bytes:
    """What LMTP stores of a message smtplib sent: smtplib adds CRLF unless the bytes end with
    one, then LMTP makes bare LF CRLF (bare CR kept)."""
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return re.sub(rb"(?<!\r)\n", b"\r\n", raw)


def imap(haven, user) -> IMAPClient:
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(*user)
    return c


def imap_bodies(haven, user) -> list:
    """Every INBOX message as IMAP serves it (RFC822), ascending by UID."""
    c = imap(haven, user)
    try:
        c.select_folder("INBOX", readonly=True)
        uids = c.search("ALL")
        data = c.fetch(uids, ["RFC822"]) if uids else {}
        return [data[u][b"RFC822"] for u in sorted(uids)]
    finally:
        c.logout()


def pop(haven, user) -> poplib.POP3:
    p = poplib.POP3(*haven.pop3, timeout=15)
    p.user(user[0])
    p.pass_(user[1])
    return p


def deliver_n(haven, address: str, n: int, tag: str = "m") -> list:
    raws = [b"Subject: %s %d\r\nMessage-ID: <%s%d@example.org>\r\n\r\nbody %d\r\n" % (tag.encode(), i,
                                                                                      tag.encode(), i, i)
            for i in range(1, n + 1)]
    for raw in raws:
        haven.deliver(address, raw)
    return raws


@pytest.fixture
def user(haven):
    return haven.new_user("pop")


@pytest.fixture(scope="module")
def corpus(haven):
    """One account with a few tests/data/mail files, dot-lines and a message without a final CRLF."""
    user = haven.new_user("corpus")
    raws = [(MAIL / name).read_bytes() for name in CORPUS]
    raws.append(b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nmiddle . dot\r\n...\r\nend\r\n")
    for raw in raws:
        haven.deliver(user[0], raw)
    c = imap(haven, user)
    try:  # not deliverable over LMTP (DATA always ends with CRLF): APPENDed over IMAP
        c.append("INBOX", b"Subject: no final newline\r\n\r\nlast line\r\n.dot without CRLF")
        c.append("INBOX", b"Subject: bare LF\n\nline one\n.dot after bare LF\nlast\n")
    finally:
        c.logout()
    return user, raws


# -- connection, capabilities, authentication ---------------------------------------------------
def test_greeting_and_capa_before_and_after_login(haven, user):
    with POP(haven.pop3) as w:
        assert w.greeting == b"+OK Haven POP3 ready."
        _, body = w.multi("CAPA")
        caps = body.decode().split("\r\n")[:-2]
        assert caps == ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL PLAIN",
                        "STLS", "IMPLEMENTATION Haven"]
        assert w.login(*user).startswith(b"+OK Logged in, 0 messages (0 octets)")
        _, body = w.multi("capa")  # keywords are case-insensitive
        caps = body.decode().split("\r\n")[:-2]
        assert caps == ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "IMPLEMENTATION Haven"]
        assert w.cmd("USER x").startswith(b"-ERR")  # already logged in
        assert w.cmd("STLS").startswith(b"-ERR")
        assert w.cmd("QUIT").startswith(b"+OK")
        assert w.closed_by_server()


def test_user_pass_success_and_failures_look_alike(haven, user):
    with POP(haven.pop3) as w:
        assert w.cmd("STAT").startswith(b"-ERR")  # not before login
        assert w.cmd("PASS x").startswith(b"-ERR")  # PASS needs USER first
        assert w.cmd("APOP %s 0123456789abcdef0123456789abcdef" % user[0]).startswith(b"-ERR")
        assert w.cmd("USER nobody-%s" % user[0]).startswith(b"+OK")  # existence is not told
        unknown = w.cmd("PASS " + user[1])
        assert w.cmd("USER " + user[0]).startswith(b"+OK")
        wrong = w.cmd("PASS wrong-" + user[1])
        assert unknown == wrong == AUTH_FAILED
        assert w.cmd("PASS " + user[1]).startswith(b"-ERR")  # a failed PASS needs USER again
        assert w.login(*user).startswith(b"+OK Logged in")
    p = pop(haven, user)  # poplib
    assert p.stat() == (0, 0)
    p.quit()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop(haven, (user[0], "nope"))


def test_auth_plain_initial_response_and_continuation(haven, user):
    good = base64.b64encode(b"\0%s\0%s" % (user[0].encode(), user[1].encode())).decode()
    bad = base64.b64encode(b"\0%s\0wrong" % user[0].encode()).decode()
    unknown = base64.b64encode(b"\0nobody@example.test\0%s" % user[1].encode()).decode()
    proxied = base64.b64encode(b"admin@example.test\0%s\0%s" % (user[0].encode(), user[1].encode())).decode()
    with POP(haven.pop3) as w:
        assert w.cmd("AUTH PLAIN " + bad) == AUTH_FAILED
        assert w.cmd("AUTH PLAIN " + unknown) == AUTH_FAILED
        assert w.cmd("AUTH PLAIN " + proxied) == AUTH_FAILED
        assert w.cmd("AUTH PLAIN %%%").startswith(b"-ERR")
        assert w.cmd("AUTH CRAM-MD5").startswith(b"-ERR")
        assert w.cmd("AUTH PLAIN") == b"+ "
        assert w.cmd("*").startswith(b"-ERR")  # cancelled (RFC 5034 §4)
        _, body = w.multi("AUTH")  # the legacy listing form
        assert body == b"PLAIN\r\n.\r\n"
        assert w.cmd("AUTH PLAIN") == b"+ "
        assert w.cmd(good).startswith(b"+OK Logged in")
        assert w.cmd("STAT") == b"+OK 0 0"
    with POP(haven.pop3) as w:
        assert w.cmd("AUTH PLAIN " + good).startswith(b"+OK Logged in")
    p = poplib.POP3(*haven.pop3, timeout=15)
    assert p._shortcmd("AUTH PLAIN " + good).startswith(b"+OK")
    p.quit()


# -- the maildrop -------------------------------------------------------------------------------
def test_stat_list_uidl_numbering(haven, user):
    deliver_n(haven, user[0], 3)
    bodies = imap_bodies(haven, user)
    sizes = [len(b) for b in bodies]
    p = pop(haven, user)
    assert p.stat() == (3, sum(sizes))
    status, listing, _ = p.list()
    assert status == b"+OK 3 messages (%d octets)" % sum(sizes)
    assert listing == [b"%d %d" % (i, s) for i, s in enumerate(sizes, 1)]
    assert p.list(2) == b"+OK 2 %d" % sizes[1]
    _, uidls, _ = p.uidl()
    numbers = [u.split()[0] for u in uidls]
    ids = [u.split()[1] for u in uidls]
    assert numbers == [b"1", b"2", b"3"] and len(set(ids)) == 3
    assert all(re.fullmatch(rb"\d+\.\d+", i) and len(i) <= 70 for i in ids)
    assert p.uidl(3) == b"+OK 3 " + ids[2]
    for bad in ("LIST 4", "LIST 0", "LIST x", "UIDL 99", "RETR 4", "TOP 1", "TOP 1 -1", "DELE", "LIST 1 2"):
        with pytest.raises(poplib.error_proto):
            p._shortcmd(bad)
    assert p.noop() == b"+OK"
    p.quit()


def test_retr_is_byte_exact(haven, corpus):
    user, raws = corpus
    stored = imap_bodies(haven, user)
    assert len(stored) == len(raws) + 2
    with POP(haven.pop3) as w:
        assert w.login(*user).startswith(b"+OK Logged in, %d messages" % len(stored))
        sizes = [int(line.split()[1]) for line in w.multi("LIST")[1].split(b"\r\n")[:-2]]
        assert sizes == [len(s) for s in stored]
        for n, (raw, imap_bytes) in enumerate(zip(raws, stored), 1):
            status, body = w.multi("RETR %d" % n)
            assert status == b"+OK %d octets" % len(imap_bytes)
            # LMTP adds Return-Path and Received; the rest is the delivered message, exactly
            assert imap_bytes.endswith(as_delivered(raw)), n
            assert body == stuffed(imap_bytes), (n, CORPUS[n - 1] if n <= len(CORPUS) else "dots")
            assert unstuff(body) == imap_bytes
        dots = unstuff(w.multi("RETR %d" % len(raws))[1])
        assert dots.endswith(b"\r\n.\r\n..\r\n.leading dot\r\nmiddle . dot\r\n...\r\nend\r\n")
        n = len(raws) + 1  # APPENDed without a final CRLF: one is added before the "."
        status, body = w.multi("RETR %d" % n)
        assert body.endswith(b"\r\nlast line\r\n..dot without CRLF\r\n.\r\n")
        assert status == b"+OK %d octets" % len(stored[n - 1])
        # APPENDed with bare LFs: CRLF on the wire, and a "." after a bare LF is stuffed too,
        # so no client that splits lines at LF can be made to see an early end
        _, body = w.multi("RETR %d" % (n + 1))
        assert body == b"Subject: bare LF\r\n\r\nline one\r\n..dot after bare LF\r\nlast\r\n.\r\n"
    p = pop(haven, user)  # poplib sees the same bytes
    for n, imap_bytes in enumerate(stored[:len(raws)], 1):
        assert b"\r\n".join(p.retr(n)[1]) + b"\r\n" == imap_bytes
    p.quit()


def test_top(haven, user):
    raw = b"Subject: top\r\nFrom: a@example.org\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n"
    haven.deliver(user[0], raw)
    haven.deliver(user[0], b"Subject: header only\r\n")  # no body, no blank line
    full = imap_bodies(haven, user)[0]
    header = full[:full.index(b"\r\n\r\n") + 4]
    with POP(haven.pop3) as w:
        w.login(*user)
        assert w.multi("TOP 1 0")[1] == stuffed(header)
        assert w.multi("TOP 1 2")[1] == header + b"line 1\r\n..line 2\r\n.\r\n"
        assert w.multi("TOP 1 3")[1] == stuffed(full)
        assert w.multi("TOP 1 1000")[1] == stuffed(full)
        assert unstuff(w.multi("TOP 2 0")[1]).endswith(b"Subject: header only\r\n")
        assert w.cmd("TOP 3 0").startswith(b"-ERR")
    p = pop(haven, user)
    assert p.top(1, 1)[1][-3:] == [b"From: a@example.org", b"", b"line 1"]
    p.quit()


# -- DELE, RSET, QUIT and the store -------------------------------------------------------------
def test_dele_rset(haven, user):
    deliver_n(haven, user[0], 3)
    p = pop(haven, user)
    total = p.stat()[1]
    size2 = int(p.list(2).split()[2])
    assert p.dele(2) == b"+OK Message 2 deleted"
    assert p.stat() == (2, total - size2)
    assert [line.split()[0] for line in p.list()[1]] == [b"1", b"3"]
    assert [line.split()[0] for line in p.uidl()[1]] == [b"1", b"3"]
    for cmd in ("RETR 2", "TOP 2 0", "LIST 2", "UIDL 2", "DELE 2"):
        with pytest.raises(poplib.error_proto, match="already deleted"):
            p._shortcmd(cmd)
    assert p.rset().startswith(b"+OK Maildrop has 3 messages")
    assert p.stat() == (3, total)
    assert len(p.retr(2)[1]) > 0
    p.quit()
    assert len(imap_bodies(haven, user)) == 3  # RSET then QUIT deleted nothing


def test_dele_quit_removes_and_imap_sees_expunge(haven, user):
    deliver_n(haven, user[0], 4)
    p = pop(haven, user)
    uidls = p.uidl()[1]
    c = imap(haven, user)
    c.select_folder("INBOX")
    p.dele(1)
    p.dele(3)
    assert len(imap_bodies(haven, user)) == 4  # DELE only marks
    assert p.quit().startswith(b"+OK Haven POP3 signing off (2 messages deleted)")
    seen = c.noop()[1]
    assert len([r for r in seen if r[1] == b"EXPUNGE"]) == 2, seen
    assert len(c.search("ALL")) == 2
    c.logout()
    p = pop(haven, user)
    assert p.stat()[0] == 2
    assert [u.split()[1] for u in p.uidl()[1]] == [uidls[1].split()[1], uidls[3].split()[1]]
    p.quit()


def test_dele_then_dropped_connection_removes_nothing(haven, user):
    deliver_n(haven, user[0], 2)
    with POP(haven.pop3) as w:
        w.login(*user)
        assert w.cmd("DELE 1").startswith(b"+OK")
        assert w.cmd("DELE 2").startswith(b"+OK")
    time.sleep(0.2)
    p = pop(haven, user)
    assert p.stat()[0] == 2
    p.quit()
    assert len(imap_bodies(haven, user)) == 2
    assert "disconnected without QUIT; nothing deleted" in haven.log()


def test_imap_expunge_while_pop3_has_it_listed(haven, user):
    deliver_n(haven, user[0], 3)
    p = pop(haven, user)
    listing = p.list()[1]
    c = imap(haven, user)
    c.select_folder("INBOX")
    uids = c.search("ALL")
    c.delete_messages([uids[1]])
    c.expunge()
    assert p.list()[1] == listing  # the snapshot is fixed for the session (RFC 1939)
    with pytest.raises(poplib.error_proto, match="deleted by another session"):
        p.retr(2)
    with pytest.raises(poplib.error_proto, match="deleted by another session"):
        p.top(2, 0)
    assert b"body 1" in b"\r\n".join(p.retr(1)[1])  # the session goes on
    assert p.dele(2).startswith(b"+OK")
    assert p.dele(3).startswith(b"+OK")
    assert p.quit() == b"+OK Haven POP3 signing off (2 messages deleted, 1 of them already deleted by " \
                       b"another session)"
    assert [n for n, what in c.noop()[1] if what == b"EXPUNGE"] == [2]
    assert c.search("ALL") == [uids[0]]
    c.logout()


def test_uidl_stable_across_sessions_and_restart(haven, user):
    deliver_n(haven, user[0], 3)
    first = pop(haven, user)
    listing = first.uidl()[1]
    first.quit()
    again = pop(haven, user)
    assert again.uidl()[1] == listing
    again.quit()
    haven.restart()
    after = pop(haven, user)
    assert after.uidl()[1] == listing
    after.quit()
    other = haven.new_user("pop")  # a second account: its own UIDLs
    deliver_n(haven, other[0], 1)
    p = pop(haven, other)
    assert len(p.uidl()[1]) == 1
    p.quit()


# -- TLS ----------------------------------------------------------------------------------------
def test_stls_then_login(haven, user):
    deliver_n(haven, user[0], 1)
    with POP(haven.pop3) as w:
        # pipelined after STLS in plaintext: discarded, never run inside the TLS session
        w.send(b"USER %s\r\nSTLS\r\nUSER %s\r\n" % (user[0].encode(), user[0].encode()))
        assert w.line().startswith(b"+OK")
        assert w.line() == b"+OK Begin TLS negotiation"
        w.starttls()
        _, body = w.multi("CAPA")
        assert b"STLS" not in body and b"USER" in body
        assert w.cmd("PASS " + user[1]).startswith(b"-ERR")  # neither USER survived the handshake
        assert w.login(*user).startswith(b"+OK Logged in, 1 message")
        assert w.cmd("STLS").startswith(b"-ERR")
        assert w.multi("RETR 1")[1].endswith(b"body 1\r\n.\r\n")
    p = poplib.POP3(*haven.pop3, timeout=15)
    p.stls(unverified_context())
    p.user(user[0])
    p.pass_(user[1])
    assert p.stat()[0] == 1
    p.quit()


def test_implicit_tls(haven, user):
    deliver_n(haven, user[0], 1)
    p = poplib.POP3_SSL(*haven.pop3s, context=unverified_context(), timeout=15)
    assert p.getwelcome() == b"+OK Haven POP3 ready."
    assert "STLS" not in p.capa() and "USER" in p.capa()
    p.user(user[0])
    p.pass_(user[1])
    assert p.retr(1)[1][-1] == b"body 1"
    p.quit()


# -- robustness ---------------------------------------------------------------------------------
def test_garbage_and_long_lines(haven, user):
    with POP(haven.pop3) as w:
        assert w.cmd(b"\x00\xff\xfe garbage").startswith(b"-ERR")
        assert w.cmd("FROB").startswith(b"-ERR Unknown command")
        assert w.cmd("").startswith(b"-ERR")
        assert w.cmd("A" * 9000) == b"-ERR Line too long (limit 8192 octets)"
        assert w.cmd("USER " + "x" * 20000).startswith(b"-ERR Line too long")
        w.send(b"NOOP\nUSER %s\n" % user[0].encode())  # bare LF line ends are accepted
        assert w.line().startswith(b"-ERR")  # NOOP is a TRANSACTION command
        assert w.line().startswith(b"+OK")
        assert w.cmd("PASS " + user[1]).startswith(b"+OK Logged in")
        assert w.cmd("RETR 1").startswith(b"-ERR")
        assert w.cmd("RETR 99999999999999999999").startswith(b"-ERR")
        assert w.cmd("STAT") == b"+OK 0 0"
    with POP(haven.pop3) as w:  # too many bad commands: closed
        w.send(b"BAD\r\n" * 25)
        replies = [w.line() for _ in range(20)]
        assert all(r.startswith(b"-ERR") for r in replies)
        assert w.line() == b"-ERR Too many bad commands; closing the connection"
        assert w.closed_by_server()


def test_pipelined_commands(haven, user):
    deliver_n(haven, user[0], 3)
    with POP(haven.pop3) as w:
        w.send(b"CAPA\r\nUSER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 3\r\n"
               b"NOOP\r\nSTAT\r\nRSET\r\nQUIT\r\n" % (user[0].encode(), user[1].encode()))
        assert w.line().startswith(b"+OK") and b"PIPELINING" in w.body()
        assert w.line().startswith(b"+OK")
        assert w.line().startswith(b"+OK Logged in, 3 messages")
        assert w.line().startswith(b"+OK 3 ")
        assert w.line().startswith(b"+OK") and w.body().count(b"\r\n") == 4
        assert w.line().startswith(b"+OK") and w.body().count(b"\r\n") == 4
        assert w.line().startswith(b"+OK") and w.body().endswith(b"body 1\r\n.\r\n")
        assert w.line().startswith(b"+OK") and w.body().endswith(b"\r\n\r\n.\r\n")
        assert w.line() == b"+OK Message 3 deleted"
        assert w.line() == b"+OK"
        assert w.line().startswith(b"+OK 2 ")
        assert w.line().startswith(b"+OK Maildrop has 3 messages")
        assert w.line().startswith(b"+OK Haven POP3 signing off (0 messages deleted)")
        assert w.closed_by_server()


def test_big_messages_pipelined_to_a_slow_reader(haven, user):
    line = b"x" * 76 + b"\r\n"
    big = b"Subject: big\r\n\r\n" + b".leading dot\r\n" + line * 40000  # ~3 MB
    haven.deliver(user[0], big)
    with POP(haven.pop3, timeout=30) as w:
        w.login(*user)
        w.send(b"RETR 1\r\n" * 4 + b"STAT\r\n")
        time.sleep(0.5)  # not reading: the server must wait for the transport, not buffer all
        for _ in range(4):
            status, body = w.line(), w.body()
            assert status.startswith(b"+OK")
            assert body.endswith(b"\r\n..leading dot\r\n" + line * 40000 + b".\r\n")
        assert w.line().startswith(b"+OK 1 ")
