"""IMAP extensions on real sockets, both engines: PREVIEW (RFC 8970), MULTIAPPEND (RFC 3502),
BINARY (RFC 3516).  Raw transcripts first, then imapclient where it speaks the extension."""

from __future__ import annotations

import base64
import quopri
import random
import re

import pytest
from imapclient import IMAPClient

from gateways.imap.parser import ParseError, parse_command
from tests.fuzz import cases

from .wire import Wire

MULTI = (b"From: a@example.org\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
         b"Content-Type: multipart/mixed; boundary=BB\r\n\r\n"
         b"--BB\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"<html><head><style>p {color: red}</style></head><body><p>Gr=C3=BC=C3=9Fe,&nbsp;\r\n"
         b"<b>world</b>\t\t and   more</p></body></html>\r\n"
         b"--BB\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         + base64.encodebytes(bytes(range(256)) * 4).replace(b"\n", b"\r\n") +
         b"--BB\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n"
         b"--BB--\r\n")


def _append(w: Wire, raw: bytes, mailbox: str = "INBOX") -> int:
    lines = w.cmd(b"APPEND %s {%d+}\r\n%s" % (mailbox.encode(), len(raw), raw))
    m = re.search(rb"APPENDUID \d+ (\d+)", lines[-1])
    assert m, lines
    return int(m.group(1))


@pytest.fixture
def user(haven):
    return haven.new_user()


def test_capabilities_after_login(haven, user):
    with Wire(haven.imap) as w:
        assert b"PREVIEW" not in w.greeting
        w.login(*user)
        caps = w.ok("CAPABILITY")[0].split()
        for cap in (b"BINARY", b"MULTIAPPEND", b"PREVIEW"):
            assert cap in caps


# -- PREVIEW --------------------------------------------------------------------------------
def test_preview_of_html_plain_and_no_text(haven, user):
    long_text = b"word " * 200
    with Wire(haven.imap) as w:
        w.login(*user)
        _append(w, MULTI)
        _append(w, b"Subject: plain\r\n\r\n  Hello,\r\n\r\n  \"quoted\" \\ back\r\n")
        _append(w, b"Subject: long\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                + base64.encodebytes(long_text).replace(b"\n", b"\r\n"))
        _append(w, b"Subject: att\r\nContent-Type: application/pdf\r\n\r\n%PDF\r\n")
        w.ok("SELECT INBOX")
        lines = w.ok("FETCH 1:4 (PREVIEW)")
        # RFC 8970 §3: decoded, HTML reduced to text (no style), whitespace runs one space
        assert lines[0] == "* 1 FETCH (PREVIEW {23}\r\nGrüße, world and more)".encode()
        assert lines[1] == b'* 2 FETCH (PREVIEW {22}\r\nHello, "quoted" \\ back)'
        m = re.match(rb'\* 3 FETCH \(PREVIEW "([^"]*)"\)$', lines[2])
        assert m and len(m.group(1)) == 256 and m.group(1).startswith(b"word word"), lines[2]
        assert lines[3] == b'* 4 FETCH (PREVIEW "")'
        assert w.ok("UID FETCH 2 (UID PREVIEW (LAZY) FLAGS)")[0].startswith(
            b"* 2 FETCH (UID 2 PREVIEW {22}\r\nHello,")
        # PREVIEW does not set \Seen, alone or with a body section read
        assert b"\\Seen" not in w.ok("FETCH 2 (PREVIEW BODY.PEEK[TEXT] FLAGS)")[0]
        assert w.cmd("FETCH 1 (PREVIEW (FAST))")[-1].startswith(b"t")
        assert b" BAD " in w.cmd("FETCH 1 (PREVIEW (FAST))")[-1]


def test_preview_with_imapclient(haven, user):
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(*user)
    c.append("INBOX", b"Subject: ic\r\n\r\nfirst line\r\nsecond   line\r\n")
    c.select_folder("INBOX")
    data = c.fetch([1], ["PREVIEW"])
    assert data[1][b"PREVIEW"] == b"first line second line"
    c.logout()


# -- MULTIAPPEND ---------------------------------------------------------------------------
def test_multiappend_literal_plus_sync_and_flags(haven, user):
    a, b, c = b"Subject: a\r\n\r\none\r\n", b"Subject: b\r\n\r\ntwo\r\n", b"Subject: c\r\n\r\nthree\r\n"
    with Wire(haven.imap) as w:
        w.login(*user)
        w.send(b'm1 APPEND INBOX (\\Seen) {%d+}\r\n%s (\\Flagged $X) "05-Mar-2024 10:11:12 +0100" {%d}\r\n'
               % (len(a), a, len(b)))
        assert w.line().startswith(b"+ ")
        w.send(b + b" {%d+}\r\n%s\r\n" % (len(c), c))
        tagged = w.until("m1")[-1]
        m = re.match(rb"m1 OK \[APPENDUID (\d+) 1:3\]", tagged)
        assert m, tagged
        w.ok("SELECT INBOX")
        lines = w.ok("FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[])")
        # appended, then claimed \Recent by this first SELECT (RFC 3501 §2.3.2)
        assert lines[0].startswith(b"* 1 FETCH (FLAGS (\\Seen \\Recent)") and lines[0].endswith(a + b")")
        assert b"FLAGS (\\Flagged \\Recent $X) INTERNALDATE \" 5-Mar-2024 09:11:12 +0000\"" in lines[1]
        assert lines[1].endswith(b + b")") and lines[2].endswith(c + b")")


def test_multiappend_is_all_or_nothing(haven, user):
    good = b"Subject: ok\r\n\r\nbody\r\n"
    with Wire(haven.imap) as w:
        w.login(*user)
        # an empty second message: nothing is stored
        tagged = w.cmd(b"APPEND INBOX {%d+}\r\n%s {0+}\r\n" % (len(good), good))[-1]
        assert b" NO " in tagged, tagged
        # a malformed tail (a quoted string is not a message there): BAD, nothing stored
        tagged = w.cmd(b'APPEND INBOX {%d+}\r\n%s "x"' % (len(good), good))[-1]
        assert b" BAD " in tagged, tagged
        status = w.ok("STATUS INBOX (MESSAGES UIDNEXT)")[0]
        assert b"MESSAGES 0" in status and b"UIDNEXT 1" in status, status
        assert b"[TRYCREATE]" in w.cmd(b"APPEND Nowhere {1+}\r\nx {1+}\r\ny")[-1]


def test_multiappend_over_quota_stores_none(haven_factory, haven):
    server = haven_factory(haven.engine, **{"quota.hard": "3000"})
    user = server.new_user()
    msg = b"Subject: q\r\n\r\n" + b"x" * 1000 + b"\r\n"
    with Wire(server.imap) as w:
        w.login(*user)
        tagged = w.cmd(b"APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s {%d+}\r\n%s" % (
            len(msg), msg, len(msg), msg, len(msg), msg))[-1]
        assert b"NO [OVERQUOTA]" in tagged, tagged
        assert b"MESSAGES 0" in w.ok("STATUS INBOX (MESSAGES)")[0]
        assert b"APPENDUID" in w.cmd(b"APPEND INBOX {%d+}\r\n%s {%d+}\r\n%s" % (len(msg), msg, len(msg), msg))[-1]


def test_multiappend_big_spooled_literals(haven, user):
    big = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 5000  # 400 KB: spooled to disk
    with Wire(haven.imap) as w:
        w.login(*user)
        w.send(b"s1 APPEND INBOX {%d}\r\n" % len(big))
        assert w.line().startswith(b"+ ")
        w.send(big + b" {%d+}\r\n%s\r\n" % (len(big), big))
        assert b"[APPENDUID" in w.until("s1")[-1]
        w.ok("SELECT INBOX")
        assert w.ok("FETCH 1:2 RFC822.SIZE")[:2] == [b"* 1 FETCH (RFC822.SIZE %d)" % len(big),
                                                     b"* 2 FETCH (RFC822.SIZE %d)" % len(big)]


def test_multiappend_with_imapclient(haven, user):
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(*user)
    res = c.multiappend("INBOX", [b"Subject: 1\r\n\r\na\r\n",
                                  {"msg": b"Subject: 2\r\n\r\nb\r\n", "flags": [b"\\Seen"]}])
    assert res[0] == "OK" and res[1][0].endswith(b" 1:2] APPEND completed"), res
    c.select_folder("INBOX")
    assert c.get_flags([2])[2] == (b"\\Seen", b"\\Recent")
    c.logout()


# -- BINARY --------------------------------------------------------------------------------
def test_binary_fetch_decodes_parts(haven, user):
    blob = bytes(range(256)) * 4
    html = quopri.decodestring(MULTI.split(b"quoted-printable\r\n\r\n")[1].split(b"\r\n--BB")[0])
    with Wire(haven.imap) as w:
        w.login(*user)
        _append(w, MULTI)
        w.ok("SELECT INBOX")
        lines = w.ok("FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.SIZE[1] FLAGS)")
        # RFC 3516 §4.2: NUL octets: a literal8
        assert lines[0] == (b"* 1 FETCH (BINARY[2] ~{1024}\r\n" + blob +
                            b" BINARY.SIZE[2] 1024 BINARY.SIZE[1] %d FLAGS (\\Recent))" % len(html))
        lines = w.ok("FETCH 1 (BINARY[1]<3.10>)")
        assert lines[0] == b"* 1 FETCH (BINARY[1]<3> {10}\r\n" + html[3:13] + b" FLAGS (\\Seen \\Recent))"
        assert w.ok("FETCH 1 BINARY.PEEK[]")[0] == b"* 1 FETCH (BINARY[] {%d}\r\n%s)" % (len(MULTI), MULTI)
        assert w.ok("FETCH 1 BINARY.PEEK[9]")[0] == b"* 1 FETCH (BINARY[9] NIL)"
        # RFC 3516 §4.2: an encoding the server does not know
        assert b"NO [UNKNOWN-CTE]" in w.cmd("FETCH 1 BINARY.PEEK[3]")[-1]
        assert b" BAD " in w.cmd("FETCH 1 BINARY.SIZE[1]<0.3>")[-1]
        assert b" BAD " in w.cmd("FETCH 1 BINARY[1.MIME]")[-1]


def test_append_literal8_binary_content(haven, user):
    raw = b"Subject: bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n" \
          + bytes(range(256)) + b"\r\n"
    with Wire(haven.imap) as w:
        w.login(*user)
        w.send(b"b1 APPEND INBOX ~{%d}\r\n" % len(raw))
        assert w.line().startswith(b"+ ")
        w.send(raw + b"\r\n")
        assert b"[APPENDUID" in w.until("b1")[-1]
        assert b"[APPENDUID" in w.cmd(b"APPEND INBOX (\\Seen) ~{%d+}\r\n%s" % (len(raw), raw))[-1]
        w.ok("SELECT INBOX")
        assert w.ok("FETCH 2 BINARY.PEEK[1]")[0] == b"* 2 FETCH (BINARY[1] ~{258}\r\n%s)" % (
            bytes(range(256)) + b"\r\n")
        # literal8 is only for APPEND's message
        assert b" BAD " in w.cmd(b"LOGIN ~{1+}\r\nx y")[-1]


def test_binary_of_a_streamed_big_message(haven, user):
    payload = bytes(range(256)) * 8192  # 2 MiB decoded, ~2.7 MiB encoded: streamed
    raw = (b"Subject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=ZZ\r\n\r\n"
           b"--ZZ\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
           b"--ZZ\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           + base64.encodebytes(payload).replace(b"\n", b"\r\n") +
           b"--ZZ\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-gzip64\r\n\r\nzz\r\n--ZZ--\r\n")
    assert len(raw) > 1 << 21
    with Wire(haven.imap, timeout=30) as w:
        w.login(*user)
        _append(w, raw)
        w.ok("SELECT INBOX")
        lines = w.ok("FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2]<1000.300> BINARY.SIZE[1] BINARY[1] PREVIEW)")
        assert lines[0] == (b"* 1 FETCH (BINARY.SIZE[2] %d BINARY[2]<1000> ~{300}\r\n%s BINARY.SIZE[1] 14 "
                            b"BINARY[1] {14}\r\nsee attachment PREVIEW \"see attachment\" FLAGS (\\Seen \\Recent))"
                            % (len(payload), payload[1000:1300]))
        full = w.ok("FETCH 1 BINARY.PEEK[2]")[0]
        assert full == b"* 1 FETCH (BINARY[2] ~{%d}\r\n%s)" % (len(payload), payload)
        # UNKNOWN-CTE before any of the response is sent
        lines = w.cmd("FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[3])")
        assert len(lines) == 1 and b"NO [UNKNOWN-CTE]" in lines[0], lines
        assert w.ok("NOOP")


def test_binary_with_imapclient(haven, user):
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(*user)
    c.append("INBOX", MULTI)
    c.select_folder("INBOX", readonly=True)
    # imapclient 3 reads {n} but not ~{n} literal8: a part without NUL octets
    data = c.fetch([1], ["BINARY.PEEK[1]", "BINARY.SIZE[2]"])
    assert data[1][b"BINARY[1]"].startswith("<html><head><style>p {color: red}</style></head><body><p>Grüße,".encode())
    assert data[1][b"BINARY.SIZE[2]"] == 1024
    c.logout()


# -- the pure pieces ---------------------------------------------------------------------
def test_parser_binary_preview_and_multiappend_grammar():
    items = parse_command(b"a FETCH 1 (BINARY.PEEK[1.2]<0.5> BINARY.SIZE[] BINARY[3] PREVIEW (LAZY))").args["items"]
    assert [i.label for i in items] == ["BINARY[1.2]<0>", "BINARY.SIZE[]", "BINARY[3]", "PREVIEW"]
    assert items[0].peek and not items[2].peek and items[0].partial == (0, 5)
    args = parse_command(b'a APPEND INBOX {1}\r\nx (\\Seen) ~{1}\r\ny UTF8 (~{2}\r\nzz)').args
    assert args["message"] == b"x" and [m["message"] for m in args["more"]] == [b"y", b"zz"]
    assert args["more"][0]["flags"] == ["\\Seen"]
    for bad in (b"a FETCH 1 BINARY[1.TEXT]", b"a FETCH 1 BINARY[1", b"a APPEND INBOX {1}\r\nx x",
                b"a APPEND INBOX UTF8 ({1}\r\nx)", b"a APPEND INBOX ~x"):
        with pytest.raises(ParseError):
            parse_command(bad)


def test_mime_preview_and_transfer_decode():
    from formats import mime
    info = mime.analyze(MULTI)
    assert mime.preview(MULTI, info["structure"]) == "Grüße, world and more"
    assert mime.preview(MULTI[:mime.preview_extent(info["structure"])], info["structure"]) == "Grüße, world and more"
    assert mime.transfer_decode(b"=41=\r\nB", "Quoted-Printable") == b"AB"
    assert mime.transfer_decode(b"QU\r\nJD\r\n", "BASE64") == b"ABC"
    assert mime.transfer_decode(b"\x00x", "8bit") == b"\x00x"
    with pytest.raises(mime.UnknownEncoding):
        mime.transfer_decode(b"x", "x-uuencode")
    raw = b"Subject: x\r\n\r\n\x01ctl\x7f  chars\r\n"
    assert mime.preview(raw, mime.analyze(raw)["structure"]) == "ctl chars"


# -- UTF8=ACCEPT ---------------------------------------------------------------------------
def test_utf8_accept_names_append_and_search(haven, user):
    raw = "From: Jörg <jörg@example.org>\r\nSubject: Grüße\r\n\r\nÜber\r\n".encode()
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok('CREATE "&AOQ-b"')  # modified UTF-7 until enabled
        assert b'"&AOQ-b"' in b"".join(w.ok('LIST "" "*"'))
        w.ok("SELECT INBOX")
        assert b" BAD " in w.cmd("ENABLE UTF8=ACCEPT")[-1]  # RFC 6855 §3: authenticated state only
        w.ok("UNSELECT")
        assert w.ok("ENABLE UTF8=ACCEPT")[0] == b"* ENABLED UTF8=ACCEPT"
        assert w.ok("ENABLE UTF8=ACCEPT")[0] == b"* ENABLED"
        listing = b"".join(w.ok('LIST "" "*"'))
        assert '"äb"'.encode() in listing and b"&AOQ-" not in listing
        w.ok('CREATE "ö&x"'.encode())  # "&" is just a character now
        assert '"ö&x"'.encode() in b"".join(w.ok('LIST "" "ö*"'.encode()))
        assert w.ok('STATUS "äb" (MESSAGES)'.encode())[0] == '* STATUS "äb" (MESSAGES 0)'.encode()
        w.ok('SETMETADATA "äb" (/private/comment "c")'.encode())
        assert w.ok('GETMETADATA "äb" /private/comment'.encode())[0] == \
            '* METADATA "äb" (/private/comment "c")'.encode()
        # RFC 6855 §3: names are Net-Unicode; a decomposed (NFD) one is not made
        assert b" NO [CANNOT] " in w.cmd('CREATE "a\u0308b"'.encode())[-1]
        # RFC 6855 §4: the UTF8 APPEND data extension; the message is stored as sent
        lines = w.cmd('APPEND "äb" UTF8 (~{%d+}\r\n'.encode() % len(raw) + raw + b")")
        assert b"[APPENDUID" in lines[-1], lines
        w.ok('SELECT "äb"'.encode())
        assert w.ok("FETCH 1 BODY.PEEK[]")[0] == b"* 1 FETCH (BODY[] {%d}\r\n%s)" % (len(raw), raw)
        assert w.ok('SEARCH SUBJECT "Grüße"'.encode())[0] == b"* SEARCH 1"
        assert b" BAD " in w.cmd("SEARCH CHARSET UTF-8 ALL")[-1]  # RFC 6855 §3


def test_utf8_accept_with_imaplib(haven, user):
    import imaplib
    c = imaplib.IMAP4(*haven.imap)
    c.login(*user)
    typ, _ = c.enable("UTF8=ACCEPT")
    assert typ == "OK" and c.utf8_enabled
    assert c.create('"Привет"')[0] == "OK"
    typ, data = c.list()
    assert '(\\HasNoChildren) "/" "Привет"'.encode() in data
    assert c.select('"Привет"')[0] == "OK"
    c.logout()
    c = imaplib.IMAP4(*haven.imap)  # a session without UTF8=ACCEPT sees modified UTF-7
    c.login(*user)
    assert b'(\\HasNoChildren) "/" "&BB8EQAQ4BDIENQRC-"' in c.list()[1]
    c.logout()


_FUZZ_VALID = [b"FETCH 1:* (BINARY.PEEK[1.2]<0.10> BINARY.SIZE[3] PREVIEW (LAZY) UID)",
               b"APPEND INBOX (\\Seen) {1}\r\nx (\\Flagged) \"05-Mar-2024 10:11:12 +0100\" ~{2}\r\nyy UTF8 (~{1}\r\nz)",
               b"LIST \"\" \"\xc3\xa4*\"", b"COMPRESS DEFLATE", b"ENABLE UTF8=ACCEPT CONDSTORE",
               b"SEARCH CHARSET UTF-8 SUBJECT \"\xc3\xa4\"", b"SEARCH OR NEW (OLD RECENT) ALL",
               b"STATUS \"\xc3\xa4\" (RECENT DELETED SIZE)", b"SELECT \"inbox/\xc3\xa4\""]
_FUZZ_NESTS = [(b"FETCH 1 ", b"(", b")", b"PREVIEW"), (b"FETCH 1 BINARY[", b"1.", b"", b"1]"),
               (b"APPEND INBOX ", b"UTF8 (", b")", b"~{1}\r\nx")]
_FUZZ_TOKENS = [b"BINARY[", b"BINARY.SIZE[", b"]", b"<0.5>", b"PREVIEW ", b"(LAZY) ", b"UTF8 (", b"~{1}\r\nx",
                b"{1+}\r\ny", b" ", b"(", b")", b"\"\xc3\xa4\" ", b"&AOQ-", b"COMPRESS "]


def test_parser_fuzz_of_the_extension_grammar():
    """Every mutated command is a Command or a ParseError, with UTF8=ACCEPT and IMAP4rev2 off and on."""
    for case in cases(random.Random(6855), _FUZZ_VALID, _FUZZ_NESTS, _FUZZ_TOKENS, 400):
        for utf8, rev2 in ((False, False), (True, False), (False, True), (True, True)):
            try:
                parse_command(b"a1 " + case, utf8=utf8, rev2=rev2)
            except ParseError:
                pass
