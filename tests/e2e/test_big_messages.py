"""Big messages over the wire, on both engines: an APPEND spooled to disk as it arrives, then
read back piece by piece over IMAP FETCH (whole, partial, sections) and POP3 RETR/TOP, byte
exact, with lines starting with "." and CRLFs placed across the pieces the server reads in; a
connection dropped in the middle of an APPEND leaves neither a message nor a spool file.

A few MB each, so the suite stays fast; bench/bigmsg.py measures memory with 45-50 MB ones."""

from __future__ import annotations

import base64
import imaplib
import os
import poplib
import re
import socket
import time
from pathlib import Path

import pytest

#: the POP3 gateway's read/write piece (POP3Config.write_chunk) and IMAP's (STREAM_PIECE)
PIECE = 256 * 1024


def big_message(size: int) -> bytes:
    """A CRLF multipart message of about ``size`` octets whose awkward lines sit on PIECE
    boundaries: a "." line start just after one, a CRLF split by one, a lone "." line, "..".
    The trailing CRLF is kept (the store keeps messages as given)."""
    head = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n")
    body = bytearray(head)
    k = 1
    while len(body) < size:
        boundary = k * PIECE
        filler = boundary - len(body) - 2
        if filler > 80:
            line = b"x" * 76
            while filler > 80:
                body += line[:min(76, filler - 80)] + b"\r\n"
                filler = boundary - len(body) - 2
            body += b"y" * filler + b"\r\n"  # ends right at the boundary: "." starts the next piece
        kind = k % 4
        if kind == 0:
            body += b".dot line after a boundary\r\n"
        elif kind == 1:
            body += b"..two dots\r\n.\r\n"
        elif kind == 2:
            body = body[:-1] + b"\n.split crlf\r\n"  # the CR ends one piece, the LF starts the next
        else:
            body += b"\r\n.\r\n..\r\n"
        k += 1
    attach = base64.encodebytes(b"\x00\xff" * 3000).replace(b"\n", b"\r\n")
    return bytes(body) + b"\r\n--XX\r\nContent-Type: application/octet-stream\r\n" \
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attach + b"--XX--\r\n"


def stuffed(raw: bytes) -> bytes:
    """RFC 1939 §3 multi-line body of a CRLF message, written out independently of the server."""
    lines = raw.split(b"\r\n")
    assert lines[-1] == b""
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines[:-1]) + b".\r\n"


def spool_fds(haven) -> list:
    """The server's open files in its spool directory (unnamed files show as ``... (deleted)``)."""
    spool = str(haven.data_dir / "spool")
    out = []
    fd_dir = Path(f"/proc/{haven.proc.pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(spool):
            out.append(target)
    return out


def spooling(haven, timeout: float = 5.0) -> list:
    """The spool files open in the server, once there are some (or [] after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while not spool_fds(haven) and time.monotonic() < deadline:
        time.sleep(0.02)
    return spool_fds(haven)


def no_spool_left(haven, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while spool_fds(haven) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_fds(haven) == []
    assert list((haven.data_dir / "spool").iterdir()) == []
    tmp = haven.data_dir / "blobs" / ".tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


@pytest.fixture(scope="module")
def big(haven):
    """One account holding one big message APPENDed over IMAP."""
    user = haven.new_user()
    raw = big_message(3 * 1024 * 1024)
    c = imaplib.IMAP4(*haven.imap)
    c.login(*user)
    typ, data = c.append("INBOX", None, None, raw)
    assert typ == "OK", data
    c.logout()
    no_spool_left(haven)
    return user, raw


def fetch(haven, user, items: str) -> list:
    c = imaplib.IMAP4(*haven.imap)
    try:
        c.login(*user)
        c.select("INBOX", readonly=True)
        typ, data = c.fetch("1", items)
        assert typ == "OK", data
        return data
    finally:
        c.logout()


def test_big_append_fetch_whole_is_byte_exact(haven, big):
    user, raw = big
    data = fetch(haven, user, "(RFC822.SIZE BODY.PEEK[])")
    assert b"RFC822.SIZE %d" % len(raw) in data[0][0]
    assert data[0][1] == raw
    data = fetch(haven, user, "(RFC822)")
    assert data[0][1] == raw


def test_big_fetch_partial_and_sections(haven, big):
    user, raw = big
    head_end = raw.index(b"\r\n\r\n") + 4
    start, length = PIECE - 3, 2 * PIECE + 5
    data = fetch(haven, user, "(BODY.PEEK[]<%d.%d>)" % (start, length))
    assert data[0][0].endswith(b"BODY[]<%d> {%d}" % (start, length))
    assert data[0][1] == raw[start:start + length]
    data = fetch(haven, user, "(BODY.PEEK[]<%d.100>)" % (len(raw) - 10))
    assert data[0][1] == raw[-10:]
    data = fetch(haven, user, "(BODY.PEEK[TEXT]<0.20> BODY.PEEK[HEADER])")
    assert data[0][1] == raw[head_end:head_end + 20]
    assert data[1][1] == raw[:head_end]
    part1 = raw[raw.index(b"text/plain\r\n\r\n") + len(b"text/plain\r\n\r\n"):raw.index(b"\r\n--XX\r\nContent-Type: app")]
    data = fetch(haven, user, "(BODY.PEEK[1])")
    assert data[0][1] == part1
    data = fetch(haven, user, "(BODY.PEEK[2.MIME])")
    assert data[0][1].startswith(b"Content-Type: application/octet-stream\r\n")


def test_big_pop3_retr_is_stuffed_exactly(haven, big):
    user, raw = big
    s = socket.create_connection(haven.pop3, timeout=20)
    f = s.makefile("rb")
    try:
        assert f.readline().startswith(b"+OK")
        s.sendall(b"USER %s\r\nPASS %s\r\nRETR 1\r\n" % (user[0].encode(), user[1].encode()))
        assert f.readline().startswith(b"+OK")
        assert f.readline().startswith(b"+OK")
        assert f.readline() == b"+OK %d octets\r\n" % len(raw)
        want = stuffed(raw)
        got = f.read(len(want))
        assert got == want
        s.sendall(b"QUIT\r\n")
        assert f.readline().startswith(b"+OK")
    finally:
        f.close()
        s.close()


def test_big_pop3_retr_and_top_with_poplib(haven, big):
    user, raw = big
    p = poplib.POP3(*haven.pop3, timeout=20)
    try:
        p.user(user[0])
        p.pass_(user[1])
        _resp, lines, _octets = p.retr(1)
        assert b"\r\n".join(lines) + b"\r\n" == raw
        _resp, lines, _octets = p.top(1, 3)
        head = raw[:raw.index(b"\r\n\r\n") + 4].split(b"\r\n")[:-2]
        body = raw[raw.index(b"\r\n\r\n") + 4:].split(b"\r\n")[:3]
        assert lines == head + [b""] + [line[1:] if line.startswith(b"..") else line for line in body]
    finally:
        p.quit()


def _count(haven, user) -> int:
    c = imaplib.IMAP4(*haven.imap)
    try:
        c.login(*user)
        typ, data = c.select("INBOX", readonly=True)
        return int(data[0])
    finally:
        c.logout()


def test_disconnect_mid_append_leaves_no_spool_and_no_message(haven):
    user = haven.new_user()
    s = socket.create_connection(haven.imap, timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    s.sendall(b'a LOGIN "%s" "%s"\r\n' % (user[0].encode(), user[1].encode()))
    while not f.readline().startswith(b"a OK"):
        pass
    s.sendall(b"b APPEND INBOX {3000000}\r\n")
    assert f.readline().startswith(b"+")
    s.sendall(b"From: x@example.org\r\n\r\n" + b"z" * 1500000)
    assert spooling(haven), "the literal should be on disk while it arrives"
    f.close()
    s.close()
    no_spool_left(haven)
    assert _count(haven, user) == 0


def test_refused_and_failed_appends_leave_no_spool(haven):
    user = haven.new_user()
    c = imaplib.IMAP4(*haven.imap)
    c.login(*user)
    raw = b"From: x@example.org\r\n\r\n" + b"q" * 600000 + b"\r\n"
    typ, data = c.append("No/Such/Folder", None, None, raw)
    assert typ == "NO" and b"TRYCREATE" in data[0]
    typ, data = c.append("INBOX", None, None, raw)
    assert typ == "OK"
    c.logout()
    no_spool_left(haven)
    assert _count(haven, user) == 1
    assert fetch(haven, user, "(BODY.PEEK[])")[0][1] == raw


def test_spooled_literal_is_only_an_append_message(haven):
    """A big literal anywhere else in APPEND (the mailbox name) is refused, not misread."""
    user = haven.new_user()
    s = socket.create_connection(haven.imap, timeout=10)
    f = s.makefile("rb")
    try:
        f.readline()
        s.sendall(b'a LOGIN "%s" "%s"\r\n' % (user[0].encode(), user[1].encode()))
        while not f.readline().startswith(b"a OK"):
            pass
        s.sendall(b"b APPEND {300000+}\r\n" + b"m" * 300000 + b" {5+}\r\nhello\r\n")
        line = f.readline()
        assert re.match(rb"b (NO|BAD) ", line), line
    finally:
        f.close()
        s.close()
    no_spool_left(haven)


# -- LMTP and submission DATA: spooled as it arrives ---------------------------------------------
def _inbox_bodies(haven, user) -> list:
    c = imaplib.IMAP4(*haven.imap)
    try:
        c.login(*user)
        typ, data = c.select("INBOX", readonly=True)
        if int(data[0]) == 0:
            return []
        typ, data = c.fetch("1:*", "(BODY.PEEK[])")
        return [d[1] for d in data if isinstance(d, tuple)]
    finally:
        c.logout()


def test_big_lmtp_delivery_is_byte_exact(haven):
    user = haven.new_user()
    raw = big_message(2 * 1024 * 1024)
    haven.deliver(user[0], raw)
    [body] = _inbox_bodies(haven, user)
    assert body.startswith(b"Return-Path: <sender@example.org>\r\nReceived: ") and body.endswith(raw)
    no_spool_left(haven)


def test_big_submission_is_byte_exact(haven):
    import smtplib
    import ssl
    user, other = haven.new_user(), haven.new_user()
    raw = big_message(2 * 1024 * 1024).replace(b"From: a@example.org", b"From: " + user[0].encode())
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with smtplib.SMTP(*haven.submission, timeout=30) as s:
        s.starttls(context=ctx)
        s.login(*user)
        assert s.sendmail(user[0], [other[0]], raw) == {}
    [body] = _inbox_bodies(haven, other)
    assert body.endswith(raw) and b"\r\nReceived: " in body[:len(body) - len(raw)]
    no_spool_left(haven)


def _lmtp_session(haven, user):
    s = socket.create_connection(haven.lmtp, timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"220")
    s.sendall(b"LHLO test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<%s>\r\nDATA\r\n" % user[0].encode())
    lines = []
    while not (lines and lines[-1].startswith(b"354")):
        lines.append(f.readline())
    return s, f


def test_disconnect_mid_data_leaves_no_spool_and_no_message(haven):
    user = haven.new_user()
    s, f = _lmtp_session(haven, user)
    s.sendall(b"Subject: cut\r\n\r\n" + (b"line of text\r\n" * 100000))  # 1.4 MB, no end marker
    assert spooling(haven), "a big DATA should be on disk while it arrives"
    f.close()
    s.close()
    no_spool_left(haven)
    assert _count(haven, user) == 0


@pytest.mark.parametrize("engine", ["sqlite", "mariadb"])
def test_data_over_max_message_size_is_refused_552_unheld(haven_factory, engine):
    small = haven_factory(engine, **{"server.max_message_size": "1000000"})
    user = small.new_user()
    s, f = _lmtp_session(small, user)
    try:
        s.sendall(b"Subject: big\r\n\r\n" + (b"line of text\r\n" * 150000) + b".\r\n")  # 2.1 MB
        reply = f.readline()
        assert reply.startswith(b"552 5.3.4 "), reply
        s.sendall(b"QUIT\r\n")
    finally:
        f.close()
        s.close()
    no_spool_left(small)
    assert _count(small, user) == 0


def test_fetch_of_big_and_small_messages_together_sets_seen(haven):
    """A big message between small ones: each FETCH response whole and in order; a non-PEEK
    body fetch sets \\Seen and reports FLAGS in the same response (RFC 3501 §6.4.5)."""
    user = haven.new_user()
    big = big_message(1536 * 1024)
    small = b"From: a@example.org\r\nSubject: small\r\n\r\n.just a line\r\n"
    c = imaplib.IMAP4(*haven.imap)
    try:
        c.login(*user)
        for raw in (small, big, small + b"two\r\n"):
            assert c.append("INBOX", None, None, raw)[0] == "OK"
        c.select("INBOX")
        typ, data = c.fetch("1:3", "(UID BODY[] RFC822.SIZE)")
        assert typ == "OK"
        parts = [d for d in data if isinstance(d, tuple)]
        assert [p[1] for p in parts] == [small, big, small + b"two\r\n"]
        tails = [data[i + 1] for i, d in enumerate(data) if isinstance(d, tuple)]
        assert tails == [b" RFC822.SIZE %d FLAGS (\\Seen \\Recent))" % len(r) for r in (small, big, small + b"two\r\n")]
        heads = [p[0] for p in parts]
        assert heads[1].startswith(b"2 (UID 2 BODY[] {%d}" % len(big)), heads[1]
        typ, data = c.fetch("2", "(FLAGS)")
        assert b"\\Seen" in data[0]
        typ, data = c.fetch("2", "(BODY.PEEK[1]<0.5> BODY.PEEK[2]<10.10> BODY.PEEK[3])")
        assert data[0][1] == big[big.index(b"text/plain\r\n\r\n") + 14:][:5]
        assert data[1][1] == big[big.index(b"base64\r\n\r\n") + 10:][10:20]
        assert data[2] == b" BODY[3] NIL)"
    finally:
        c.logout()


def test_fetch_of_a_big_message_whose_blob_is_missing_answers_no(haven):
    """The blob is opened before the response starts: a store failure is a tagged NO, not a
    cut-off literal, and the session goes on."""
    import hashlib
    user = haven.new_user()
    raw = big_message(1536 * 1024).replace(b"Subject: big", b"Subject: missing blob")
    digest = hashlib.sha256(raw).hexdigest()
    path = haven.data_dir / "blobs" / digest[:2] / digest[2:4] / (digest + ".zst")
    c = imaplib.IMAP4(*haven.imap)
    try:
        c.login(*user)
        assert c.append("INBOX", None, None, raw)[0] == "OK"
        c.select("INBOX", readonly=True)
        path.rename(path.with_suffix(".away"))
        try:
            typ, data = c.fetch("1", "(BODY.PEEK[])")
            assert typ == "NO", data
            assert c.noop()[0] == "OK"
        finally:
            path.with_suffix(".away").rename(path)
        assert c.fetch("1", "(BODY.PEEK[])")[1][0][1] == raw
    finally:
        c.logout()


def test_a_spool_that_cannot_be_written_is_a_temporary_failure(haven):
    """The disk refuses the spool (here: the spool directory is not a directory): LMTP answers
    4xx per recipient, APPEND ``NO [UNAVAILABLE]``; nothing is stored and both sessions go on."""
    user = haven.new_user()
    spool = haven.data_dir / "spool"
    away = haven.data_dir / "spool.away"
    spool.rename(away)
    spool.write_bytes(b"")
    try:
        s, f = _lmtp_session(haven, user)
        try:
            s.sendall(b"Subject: no room\r\n\r\n" + (b"line of text\r\n" * 50000) + b".\r\n")
            reply = f.readline()
            assert reply.startswith(b"4"), reply
            s.sendall(b"NOOP\r\n")
            assert f.readline().startswith(b"250")
        finally:
            f.close()
            s.close()
        c = imaplib.IMAP4(*haven.imap)
        try:
            c.login(*user)
            typ, data = c.append("INBOX", None, None, b"Subject: x\r\n\r\n" + b"z" * 400000 + b"\r\n")
            assert typ == "NO" and b"UNAVAILABLE" in data[0], data
            assert c.noop()[0] == "OK"
        finally:
            c.logout()
    finally:
        spool.unlink()
        away.rename(spool)
    assert _count(haven, user) == 0
    no_spool_left(haven)
