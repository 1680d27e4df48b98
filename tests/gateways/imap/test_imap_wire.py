"""IMAP over real loopback sockets against a real ``haven serve`` (both engines): transcripts
with stdlib imaplib, imapclient and raw bytes."""

from __future__ import annotations

import base64
import imaplib
import re
import time
from pathlib import Path

import pytest
from imapclient import IMAPClient

from .wire import Wire

MAIL = Path(__file__).resolve().parents[2] / "data" / "mail"


def as_delivered(raw: bytes) -> bytes:
    """What the store keeps of a delivered message: bare LF made CRLF (bare CR kept), final CRLF."""
    out = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    return out if out.endswith(b"\r\n") else out + b"\r\n"


def _lines(raw: bytes) -> bytes:
    return re.sub(rb"\r\n|\n", b"\n", raw).rstrip(b"\n")


def client(haven, user) -> IMAPClient:
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(*user)
    return c


@pytest.fixture
def user(haven):
    return haven.new_user()


@pytest.fixture(scope="module")
def corpus(haven):
    """One account with every tests/data/mail/*.eml delivered over LMTP, in name order."""
    address, password = haven.new_user("corpus")
    files = sorted(MAIL.glob("*.eml"))
    for f in files:
        haven.deliver(address, f.read_bytes())
    return (address, password), {f.name: i + 1 for i, f in enumerate(files)}


# -- connection, auth, capabilities ------------------------------------------------------------
def test_greeting_capabilities_and_login(haven, user):
    with Wire(haven.imap) as w:
        assert w.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ") and b"AUTH=PLAIN" in w.greeting
        assert w.greeting.endswith(b"Haven IMAP ready.")
        lines = w.ok("CAPABILITY")
        assert b"STARTTLS" in lines[0]
        lines = w.ok('LOGIN "%s" "%s"' % user)
        caps = lines[-1]
        for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"NAMESPACE",
                    b"LITERAL+", b"ENABLE", b"ID", b"APPENDLIMIT="):
            assert cap in caps
        assert b"STARTTLS" not in w.ok("CAPABILITY")[0]
        assert w.ok("NAMESPACE")[0] == b'* NAMESPACE (("" "/")) NIL NIL'
        assert w.ok('ID ("name" "pytest")')[0].startswith(b'* ID ("name" "Haven"')
        assert w.cmd("LOGIN a b")[-1].split(b" ")[1] == b"BAD"  # already authenticated
        lines = w.ok("LOGOUT")
        assert lines[0].startswith(b"* BYE")


def test_login_failures_do_not_tell_which(haven, user):
    with Wire(haven.imap) as w:
        wrong = w.cmd('LOGIN "%s" "nope"' % user[0])[-1]
        unknown = w.cmd('LOGIN "nobody-%d@example.test" "nope"' % time.time_ns())[-1]
        assert wrong.split(b" ", 1)[1] == unknown.split(b" ", 1)[1] == b"NO [AUTHENTICATIONFAILED] Authentication failed."
        assert w.cmd("SELECT INBOX")[-1].split(b" ")[1] == b"BAD"  # not authenticated


def test_authenticate_plain(haven, user):
    token = base64.b64encode(b"\0" + user[0].encode() + b"\0" + user[1].encode())
    with Wire(haven.imap) as w:  # SASL-IR (RFC 4959)
        assert w.cmd(b"AUTHENTICATE PLAIN " + token)[-1].split(b" ")[1] == b"OK"
    with Wire(haven.imap) as w:  # with a continuation
        w.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert w.line() == b"+ "
        w.send(token + b"\r\n")
        assert w.until("a1")[-1].startswith(b"a1 OK")
    with Wire(haven.imap) as w:  # cancelled
        w.send(b"a1 AUTHENTICATE PLAIN\r\n")
        w.line()
        w.send(b"*\r\n")
        assert w.until("a1")[-1].startswith(b"a1 BAD")
        assert w.cmd(b"AUTHENTICATE PLAIN " + base64.b64encode(b"\0x\0y"))[-1].split(b" ")[1] == b"NO"
    with Wire(haven.imap) as w:  # a continuation line over the line limit: answered, never a hang
        w.send(b"a1 AUTHENTICATE PLAIN\r\n")
        assert w.line() == b"+ "
        w.send(b"A" * 70000 + b"\r\n")
        assert w.until("a1")[-1].split(b" ")[1] in (b"BAD", b"NO")
        assert w.cmd(b"AUTHENTICATE PLAIN " + token)[-1].split(b" ")[1] == b"OK"


def test_starttls(haven, user):
    import ssl
    c = imaplib.IMAP4(*haven.imap)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c.starttls(ctx)
    assert "STARTTLS" not in c.capabilities
    c.login(*user)
    assert c.select("INBOX")[0] == "OK"
    c.logout()


def test_logout_over_tls_closes_the_connection(haven, user):
    import socket
    import ssl
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(haven.imap, timeout=5)
    raw.recv(4096)
    raw.sendall(b"a STARTTLS\r\n")
    assert raw.recv(4096).startswith(b"a OK")
    tls = ctx.wrap_socket(raw)
    tls.sendall(b'b LOGIN "%s" "%s"\r\nc LOGOUT\r\n' % (user[0].encode(), user[1].encode()))
    data = b""
    while True:  # the server must end the TLS session, not wait for the client (5 s timeout)
        chunk = tls.recv(4096)
        if not chunk:
            break
        data += chunk
    assert b"* BYE" in data and b"c OK" in data
    tls.close()


# -- mailboxes -------------------------------------------------------------------------------
def test_list_special_use(haven, user):
    with Wire(haven.imap) as w:
        w.login(*user)
        lines = w.ok('LIST "" "*"')
        listing = {l.split(b' "/" ', 1)[1]: l for l in lines[:-1]}
        assert set(listing) == {b'"INBOX"', b'"Drafts"', b'"Sent"', b'"Trash"', b'"Junk"', b'"Archive"',
                                b'"Recovered Items"'}  # the last: recovery (no special use, none fits)
        assert listing[b'"Recovered Items"'] == b'* LIST (\\HasNoChildren) "/" "Recovered Items"'
        assert b"\\Sent" in listing[b'"Sent"'] and b"\\HasNoChildren" in listing[b'"Sent"']
        assert b"Calendar" not in b"".join(lines) and b"Contacts" not in b"".join(lines)
        lines = w.ok('LIST "" "*" RETURN (SPECIAL-USE)')
        assert len(lines) == 8
        lines = w.ok('LIST (SPECIAL-USE) "" "*"')
        assert {l.rsplit(b" ", 1)[1] for l in lines[:-1]} == {b'"Drafts"', b'"Sent"', b'"Trash"', b'"Junk"', b'"Archive"'}
        assert w.ok('LIST "" ""')[0] == b'* LIST (\\Noselect) "/" ""'
        lines = w.ok('LIST "" "inbox"')
        assert lines[0] == b'* LIST (\\HasNoChildren) "/" "INBOX"'
        lines = w.ok('LIST "" (INBOX Sent) RETURN (STATUS (MESSAGES UIDNEXT))')
        assert lines[1].startswith(b'* STATUS "INBOX" (MESSAGES 0 UIDNEXT ')
        lines = w.ok('LSUB "" "*"')
        assert any(l.endswith(b'"INBOX"') for l in lines)


def test_create_rename_delete_hierarchy_utf7(haven, user):
    c = client(haven, user)
    c.create_folder("Projekte/Entwürfe")  # parents created too (RFC 3501 §6.3.3)
    names = {f[2]: f[0] for f in c.list_folders()}
    assert "Projekte" in names and "Projekte/Entwürfe" in names
    assert b"\\HasChildren" in names["Projekte"] and b"\\HasNoChildren" in names["Projekte/Entwürfe"]
    with Wire(haven.imap) as w:
        w.login(*user)
        lines = w.ok('LIST "" "Projekte/%"')
        assert lines[0].endswith(b'"Projekte/Entw&APw-rfe"')
        lines = w.ok('LIST "" "%"')
        assert not any(b"Entw" in l for l in lines)
        assert w.cmd("CREATE Projekte")[-1].split(b" ", 2)[1:] == [b"NO", b"[ALREADYEXISTS] " + w.cmd("CREATE Projekte")[-1].split(b"] ", 1)[1]]
        assert b"[NONEXISTENT]" in w.cmd('SELECT "Nope"')[-1]
        assert b"[NONEXISTENT]" in w.cmd("SELECT Calendar")[-1]  # a calendar is not a mailbox
        assert b"NO" in w.cmd("DELETE INBOX")[-1]
        assert w.cmd("CREATE Bad&")[-1].split(b" ", 3)[1:3] == [b"NO", b"[CANNOT]"]  # not modified UTF-7
    c.rename_folder("Projekte", "Archiv 2024")
    names = {f[2] for f in c.list_folders()}
    assert "Archiv 2024/Entwürfe" in names and "Projekte" not in names
    c.select_folder("Archiv 2024/Entwürfe")
    c.close_folder()
    c.delete_folder("Archiv 2024/Entwürfe")
    c.delete_folder("Archiv 2024")
    assert not any(n.startswith("Archiv 2024") for n in (f[2] for f in c.list_folders()))
    c.create_folder("Later", )
    c.subscribe_folder("Later")
    assert "Later" in {f[2] for f in c.list_sub_folders()}
    c.unsubscribe_folder("Later")
    assert "Later" not in {f[2] for f in c.list_sub_folders()}
    c.logout()


def test_status(haven, user):
    c = client(haven, user)
    c.append("INBOX", b"Subject: s\r\n\r\nbody\r\n", flags=[b"\\Seen"])
    c.append("INBOX", b"Subject: t\r\n\r\nbody\r\n")
    st = c.folder_status("INBOX", ["MESSAGES", "UNSEEN", "UIDNEXT", "UIDVALIDITY", "RECENT", "HIGHESTMODSEQ"])
    assert st[b"MESSAGES"] == 2 and st[b"UNSEEN"] == 1 and st[b"UIDNEXT"] == 3
    assert st[b"RECENT"] == 2  # no session has selected INBOX yet
    assert st[b"HIGHESTMODSEQ"] > 0
    c.logout()


# -- APPEND and FETCH --------------------------------------------------------------------------
def test_append_with_flags_and_date_roundtrip(haven, user):
    raw = b"From: a@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHello \xe2\x82\xac\r\n.\r\n\r\n"
    with Wire(haven.imap) as w:
        w.login(*user)
        w.send(b'a1 APPEND Drafts (\\Draft $Later) "05-Mar-2024 10:11:12 +0100" {%d}\r\n' % len(raw))
        assert w.line().startswith(b"+ ")
        w.send(raw + b"\r\n")
        tagged = w.until("a1")[-1]
        m = re.match(rb"a1 OK \[APPENDUID (\d+) (\d+)\]", tagged)
        assert m, tagged
        w.ok("SELECT Drafts")
        lines = w.ok("UID FETCH %s (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])" % m.group(2).decode())
        assert lines[0].startswith(b"* 1 FETCH (UID %s FLAGS (\\Draft \\Recent $Later) INTERNALDATE \" 5-Mar-2024 09:11:12 +0000\" "
                                   b"RFC822.SIZE %d BODY[] {%d}\r\n" % (m.group(2), len(raw), len(raw)))
        assert lines[0].endswith(raw + b")")
        assert b"[TRYCREATE]" in w.cmd(b"APPEND Nowhere {1+}\r\nx")[-1]


def test_append_literal_plus_and_imaplib(haven, user):
    with Wire(haven.imap) as w:
        w.login(*user)
        body = b"Subject: lp\r\n\r\nnon-synchronizing\r\n"
        lines = w.cmd(b"APPEND INBOX (\\Seen) {%d+}\r\n%s" % (len(body), body))
        assert b"[APPENDUID" in lines[-1]
    c = imaplib.IMAP4(*haven.imap)
    c.login(*user)
    typ, data = c.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1700000000), b"Subject: x\r\n\r\ny\r\n")
    assert typ == "OK"
    c.select("INBOX")
    typ, data = c.fetch("2", "(FLAGS INTERNALDATE)")
    assert b"\\Flagged" in data[0] and b"14-Nov-2023 22:13:20 +0000" in data[0]
    c.logout()


def test_fetch_every_item_on_corpus(haven, corpus):
    user, seqs = corpus
    c = client(haven, user)
    c.select_folder("INBOX", readonly=True)
    items = [b"FLAGS", b"INTERNALDATE", b"RFC822.SIZE", b"ENVELOPE", b"BODY", b"BODYSTRUCTURE", b"UID",
             b"RFC822.HEADER", b"BODY.PEEK[]", b"BODY.PEEK[TEXT]", b"BODY.PEEK[HEADER]", b"BODY.PEEK[1]",
             b"BODY.PEEK[1.MIME]", b"BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]", b"MODSEQ"]
    resp = c.fetch(sorted(seqs.values()), items)
    assert len(resp) == len(seqs)
    for name, seq in seqs.items():
        r = resp[seq]
        original = as_delivered((MAIL / name).read_bytes())
        whole = r[b"BODY[]"]
        # LMTP adds Return-Path/Received in front and may mend line endings; compare the rest
        assert _lines(whole).endswith(_lines(original)), name
        exact = (MAIL / name).read_bytes()
        if exact.endswith(b"\r\n") and not re.search(rb"\r(?!\n)|(?<!\r)\n", exact):
            assert whole.endswith(exact), name  # a well-formed message comes back byte for byte
        assert r[b"RFC822.SIZE"] == len(whole)
        assert r[b"BODY[HEADER]"] + r[b"BODY[TEXT]"] == whole
        assert r[b"RFC822.HEADER"] == r[b"BODY[HEADER]"]
        assert r[b"BODYSTRUCTURE"] is not None and r[b"BODY"] is not None
        assert set(r[b"FLAGS"]) <= {b"\\Recent"}  # EXAMINE: no implicit \Seen
        assert r[b"MODSEQ"][0] > 0
    # RFC822 and BODY[] set \Seen on a read-write mailbox; the response carries FLAGS
    c.select_folder("INBOX")
    seq = seqs["plain-ascii.eml"]
    r = c.fetch(str(seq), [b"RFC822"])[seq]
    assert r[b"RFC822"].endswith(as_delivered((MAIL / "plain-ascii.eml").read_bytes()))
    assert b"\\Seen" in r[b"FLAGS"]
    c.remove_flags(str(seq), [b"\\Seen"])
    c.logout()


def test_fetch_sections_and_partials(haven, corpus):
    user, seqs = corpus
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("EXAMINE INBOX")
        seq = seqs["forwarded-rfc822.eml"]
        lines = w.ok(b"FETCH %d (BODY.PEEK[]<0.100> BODY[2.1] BODY.PEEK[2.HEADER.FIELDS (Subject)] BODY[1]<8.9> BODY[9])" % seq)
        line = lines[0]
        assert re.search(rb"BODY\[\]<0> \{100\}\r\nReturn-Path: ", line)
        assert b"BODY[2.1] {34}\r\nKeynote at 09:00 in hall Zanzibar." in line
        assert b"BODY[2.HEADER.FIELDS (Subject)] {32}\r\nSubject: Conference schedule\r\n\r\n" in line
        assert b"BODY[1]<8> {9}\r\nforwarded" in line
        assert b"BODY[9] NIL" in line
        assert b"FLAGS" not in line  # EXAMINE: nothing set implicitly
        nested = seqs["nested-related.eml"]  # mixed(alternative(plain, related(html, gif)), docx)
        line = w.ok(b"FETCH %d (BODY.PEEK[1.2] BODY.PEEK[1.2.1.MIME] BODY.PEEK[1.2.2]<0.6>)" % nested)[0]
        assert b"BODY[1.2] {" in line and b"}\r\n--=_rel_003\r\nContent-Type: text/html" in line
        assert re.search(rb"BODY\[1\.2\.1\.MIME\] \{\d+\}\r\nContent-Type: text/html; charset=utf-8\r\n", line)
        assert b"BODY[1.2.2]<0> {6}\r\n" in line
        lines = w.ok(b"FETCH %d BODY.PEEK[]<100000.10>" % seq)
        assert b'BODY[]<100000> {0}\r\n)' in lines[0]
        lines = w.ok(b"FETCH %d BODYSTRUCTURE" % seqs["alternative.eml"])
        assert b'"ALTERNATIVE" ("BOUNDARY" "b1_5f8e2c0a7d") NIL NIL NIL))' in lines[0]
        assert w.cmd(b"FETCH 9999 FLAGS")[-1].split(b" ")[1] == b"BAD"
        assert w.cmd(b"FETCH 1 (BODY[)")[-1].split(b" ")[1] == b"BAD"


def test_search(haven, corpus):
    user, seqs = corpus
    c = client(haven, user)
    c.select_folder("INBOX", readonly=True)
    ids = c.search(["BODY", "ZANZIBAR"])
    assert ids == [seqs["forwarded-rfc822.eml"]] or seqs["forwarded-rfc822.eml"] in ids
    assert c.search(["UNSEEN"]) == sorted(seqs.values())
    assert c.search(["SEEN"]) == []
    assert c.search(["SINCE", "1-Jan-2000"]) == sorted(seqs.values())
    assert c.search(["BEFORE", "1-Jan-2000"]) == []
    big = seqs["mixed-pdf-image.eml"]
    assert big in c.search(["LARGER", "10000"])
    assert seqs["plain-ascii.eml"] not in c.search(["LARGER", "10000"])
    lunch = c.search(["SUBJECT", "Lunch on"])
    assert seqs["plain-ascii.eml"] in lunch and seqs["alternative.eml"] not in lunch
    assert c.search(["OR", "SUBJECT", "Lunch on", "SUBJECT", "Q1 report"]) == sorted(
        lunch + [seqs["alternative.eml"]])
    assert seqs["plain-ascii.eml"] not in c.search(["NOT", "SUBJECT", "Lunch"])
    assert c.search(["HEADER", "Message-ID", "alt-1@example.com"]) == [seqs["alternative.eml"]]
    assert c.search(["FROM", "dana"]) == [seqs["alternative.eml"]]
    uids = c.search(["UID", "1:3"])
    assert uids == [1, 2, 3]
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("EXAMINE INBOX")
        assert w.ok("UID SEARCH CHARSET UTF-8 ALL")[0].startswith(b"* SEARCH 1 2 3")
        assert b"[BADCHARSET" in w.cmd("SEARCH CHARSET KOI8-R ALL")[-1]
        lines = w.ok("SEARCH MODSEQ 1")
        assert re.search(rb"\(MODSEQ \d+\)$", lines[0])
    c.logout()


def test_search_base64_body_and_encoded_subject(haven, user):
    c = client(haven, user)
    for name in ("base64-text.eml", "encoded-words.eml", "quoted-printable.eml"):
        haven.deliver(user[0], (MAIL / name).read_bytes())
    c.select_folder("INBOX")
    from formats import mime
    raw = as_delivered((MAIL / "base64-text.eml").read_bytes())
    text = mime.decoded_text(raw, mime.analyze(raw)["structure"])
    word = max(re.findall(r"[A-Za-zÀ-ÿ]{6,}", text), key=len)
    assert word.encode() not in raw  # only findable decoded
    assert c.search(["BODY", word]) == [1]
    enc = (MAIL / "encoded-words.eml").read_bytes()
    subject = mime.decode_header_value(re.search(rb"^Subject: (.*)$", enc, re.M).group(1).decode().strip())
    needle = subject.split()[-1]
    assert 2 in c.search(["SUBJECT", needle], charset="UTF-8")
    c.logout()


# -- STORE, COPY, MOVE, EXPUNGE --------------------------------------------------------------
def _fill(haven, user, n):
    for i in range(n):
        haven.deliver(user[0], b"Subject: msg %d\r\nMessage-ID: <m%d@x>\r\n\r\nbody %d\r\n" % (i, i, i))


def test_store_flags(haven, user):
    _fill(haven, user, 3)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("SELECT INBOX")
        lines = w.ok("STORE 1:2 +FLAGS (\\Flagged $Work)")
        assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)"  # new: announced first
        assert lines[2:4] == [b"* 1 FETCH (FLAGS (\\Flagged \\Recent $Work))",  # recent: this session's SELECT
                              b"* 2 FETCH (FLAGS (\\Flagged \\Recent $Work))"]
        assert len(w.ok("STORE 1 -FLAGS.SILENT (\\Flagged)")) == 1
        lines = w.ok("UID STORE 1:3 FLAGS (\\Seen)")
        assert lines[0] == b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))"
        assert len(lines) == 4
        lines = w.ok("FETCH 1:3 FLAGS")
        assert all(b"(\\Seen \\Recent)" in l for l in lines[:3])
        w.ok("STORE 3 +FLAGS.SILENT ($Work)")
        assert b"$Work" in w.ok("SELECT INBOX")[1]  # FLAGS lists keywords in use
        assert w.cmd("STORE 1 +FLAGS (\\Bogus)")[-1].split(b" ")[1] == b"BAD"


def test_copy_move_with_copyuid(haven, user):
    _fill(haven, user, 4)
    c = client(haven, user)
    c.select_folder("INBOX")
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("SELECT INBOX")
        tagged = w.ok("COPY 1:2 Archive")[-1]
        assert re.search(rb"OK \[COPYUID \d+ 1:2 1:2\]", tagged)
        lines = w.ok("UID MOVE 3 Trash")
        assert re.match(rb"\* OK \[COPYUID \d+ 3 1\]", lines[0])
        assert lines[1] == b"* 3 EXPUNGE"
        lines = w.ok("MOVE 1 Junk")
        assert lines[1] == b"* 1 EXPUNGE"
        assert b"[TRYCREATE]" in w.cmd("COPY 1 Nowhere")[-1]
    assert c.folder_status("Archive", ["MESSAGES"])[b"MESSAGES"] == 2
    assert c.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] == 2
    c.logout()


def test_expunge_and_uid_expunge(haven, user):
    _fill(haven, user, 5)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("SELECT INBOX")
        w.ok("STORE 2,4,5 +FLAGS.SILENT (\\Deleted)")
        lines = w.ok("UID EXPUNGE 4:5")  # RFC 4315: only these UIDs
        assert lines[:2] == [b"* 5 EXPUNGE", b"* 4 EXPUNGE"]
        lines = w.ok("EXPUNGE")
        assert lines[0] == b"* 2 EXPUNGE"
        assert w.ok("UID SEARCH ALL")[0] == b"* SEARCH 1 3"
        w.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        w.ok("CLOSE")  # expunges silently
        assert w.ok("SELECT INBOX")[2] == b"* 1 EXISTS"


def test_examine_is_read_only(haven, user):
    _fill(haven, user, 1)
    with Wire(haven.imap) as w:
        w.login(*user)
        assert b"[READ-ONLY]" in w.ok("EXAMINE INBOX")[-1]
        lines = w.ok("FETCH 1 BODY[]")
        assert b"FLAGS" not in lines[0]
        assert b"NO" in w.cmd("STORE 1 +FLAGS (\\Seen)")[-1]
        assert b"NO" in w.cmd("EXPUNGE")[-1]
        assert w.ok("FETCH 1 FLAGS")[0] == b"* 1 FETCH (FLAGS (\\Recent))"  # EXAMINE claims nothing
        assert b"[READ-WRITE]" in w.ok("SELECT INBOX")[-1]
        lines = w.ok("FETCH 1 BODY[TEXT]")
        assert lines[0].endswith(b"FLAGS (\\Seen \\Recent))")


# -- CONDSTORE / QRESYNC -------------------------------------------------------------------------
def test_condstore(haven, user):
    _fill(haven, user, 3)
    with Wire(haven.imap) as w:
        w.login(*user)
        lines = w.ok("SELECT INBOX (CONDSTORE)")
        hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
        lines = w.ok("FETCH 1:3 (MODSEQ)")
        modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", l).group(1)) for l in lines[:3]]
        assert max(modseqs) <= hms
        lines = w.ok("STORE 1 +FLAGS (\\Flagged)")
        m1 = int(re.search(rb"MODSEQ \((\d+)\)", lines[0]).group(1))
        assert m1 > hms
        assert w.ok("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % hms)[0].startswith(b"* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ")
        assert len(w.ok("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)" % m1)) == 1
        # RFC 7162 §3.1.3: message 1 changed after hms -> MODIFIED; 2 and 3 are stored
        lines = w.ok("STORE 1:3 (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Answered)" % hms)
        assert lines[-1].split(b" ")[2] == b"[MODIFIED" and b"[MODIFIED 1]" in lines[-1]
        assert {l.split(b" ")[1] for l in lines[:-1]} == {b"2", b"3"}
        assert all(b"MODSEQ" in l for l in lines[:-1])
        lines = w.ok("UID SEARCH MODSEQ %d" % (m1 + 1))
        assert lines[0].startswith(b"* SEARCH 2 3 (MODSEQ ")
        st = w.ok("STATUS INBOX (HIGHESTMODSEQ)")[0]
        assert int(re.search(rb"HIGHESTMODSEQ (\d+)", st).group(1)) > m1


def test_qresync(haven, user):
    _fill(haven, user, 4)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("ENABLE QRESYNC")
        lines = w.ok("SELECT INBOX")
        uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(lines)).group(1))
        hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(lines)).group(1))
        w.ok("STORE 2 +FLAGS.SILENT (\\Deleted \\Seen)")
        w.ok("STORE 3 +FLAGS.SILENT (\\Flagged)")
        lines = w.ok("EXPUNGE")
        assert lines[0] == b"* VANISHED 2"
        w.ok("UNSELECT")
        lines = w.ok("SELECT INBOX (QRESYNC (%d %d 1:4))" % (uidvalidity, hms))
        assert b"* VANISHED (EARLIER) 2" in lines
        assert any(l.startswith(b"* 2 FETCH (UID 3 FLAGS (\\Flagged) MODSEQ") for l in lines)
        lines = w.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % hms)
        assert lines[0] == b"* VANISHED (EARLIER) 2"
