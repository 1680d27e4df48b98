"""IMAP4rev2 (RFC 9051) next to IMAP4rev1, over real sockets on both engines: a transcript for
each behaviour ``ENABLE IMAP4rev2`` changes (RFC 9051 Appendix E), one that an IMAP4rev1 session
keeps its ways beside an IMAP4rev2 one, and imapclient through an IMAP4rev2 session."""

from __future__ import annotations

import re
import time

import pytest
from imapclient import IMAPClient
from imapclient.response_parser import parse_response

from gateways.imap.parser import ParseError, parse_command

from .wire import Wire, untagged


@pytest.fixture
def user(haven):
    return haven.new_user()


def _msg(i: int, extra: bytes = b"") -> bytes:
    return (b"From: Sender <s@example.org>\r\nTo: r@example.test\r\nSubject: message %d\r\n"
            b"Message-ID: <r2-%d-%d@example.org>\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\n\r\nbody %d\r\n%s"
            % (i, i, time.time_ns(), i, extra))


def _fill(haven, user, n: int) -> None:
    for i in range(1, n + 1):
        haven.deliver(user[0], _msg(i))


def _rev2(haven, user) -> Wire:
    w = Wire(haven.imap)
    w.login(*user)
    assert w.ok("ENABLE IMAP4rev2")[0] == b"* ENABLED IMAP4rev2"
    return w


def _recent_lines(lines) -> list:
    return [l for l in lines if re.match(rb"\* \d+ RECENT$", l)]


# -- CAPABILITY and ENABLE ---------------------------------------------------------------------
def test_both_revisions_advertised_and_enable(haven, user):
    with Wire(haven.imap) as w:
        assert w.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
        w.login(*user)
        caps = w.ok("CAPABILITY")[0].split()
        assert caps[1:4] == [b"CAPABILITY", b"IMAP4rev1", b"IMAP4rev2"]
        w.ok("SELECT INBOX")
        # RFC 9051 §6.3.1: only in the authenticated state; nothing changes
        assert b" BAD " in w.cmd("ENABLE IMAP4rev2")[-1]
        assert _recent_lines(w.ok("SELECT INBOX"))
        w.ok("UNSELECT")
        assert w.ok("enable imap4rev2 CONDSTORE")[0] == b"* ENABLED IMAP4rev2 CONDSTORE"
        assert w.ok("ENABLE IMAP4rev2")[0] == b"* ENABLED"  # already on


# -- SELECT / EXAMINE (RFC 9051 §6.3.2) --------------------------------------------------------
def test_select_has_no_recent_nor_unseen_and_ends_with_a_list(haven, user):
    _fill(haven, user, 2)
    with _rev2(haven, user) as w:
        lines = w.ok("SELECT INBOX")
        assert b"* 2 EXISTS" in lines
        assert not _recent_lines(lines) and not [l for l in lines if b"[UNSEEN" in l], lines
        assert lines[-2] == b'* LIST () "/" "INBOX"', lines
        assert re.match(rb"t\d+ OK \[READ-WRITE\]", lines[-1])
        # another spelling of INBOX: the canonical name, and the client's as OLDNAME; switching
        # mailboxes closes the old one first (CLOSED, RFC 9051 §7.1)
        lines = w.ok("EXAMINE inbox")
        assert lines[0] == b"* OK [CLOSED] Previous mailbox closed"
        assert lines[-2] == b'* LIST () "/" "INBOX" ("OLDNAME" ("inbox"))', lines
        assert not _recent_lines(lines)
        lines = w.ok("SELECT Archive")
        assert lines[-2] == b'* LIST () "/" "Archive"' and b"* 0 EXISTS" in lines


# -- no \Recent anywhere (RFC 9051 §2.3.2) -----------------------------------------------------
def test_no_recent_in_exists_fetch_store_or_idle(haven, user):
    _fill(haven, user, 2)
    with _rev2(haven, user) as w, Wire(haven.imap) as old:
        old.login(*user)
        w.ok("SELECT INBOX")
        assert w.ok("FETCH 1:* (FLAGS)")[:-1] == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"]
        assert w.ok("STORE 1 +FLAGS (\\Seen)")[0] == b"* 1 FETCH (FLAGS (\\Seen))"
        assert w.ok("STORE 2 +FLAGS (\\Recent)")[0] == b"* 2 FETCH (FLAGS ())"  # ignored, as ever
        haven.deliver(user[0], _msg(3))
        lines = w.ok("NOOP")
        assert b"* 3 EXISTS" in lines and not _recent_lines(lines), lines
        w.send(b"i1 IDLE\r\n")
        assert w.line().startswith(b"+ ")
        haven.deliver(user[0], _msg(4))
        assert w.wait_for(lambda l: l.startswith(b"* ")) == b"* 4 EXISTS"
        w.send(b"DONE\r\n")
        assert w.until("i1") == [b"i1 OK IDLE terminated"]  # no "* n RECENT" came after EXISTS
        assert b"\\Recent" not in b"".join(w.ok("FETCH 1:* (FLAGS)"))
        # the IMAP4rev2 session claimed nothing: the first IMAP4rev1 SELECT gets them recent
        lines = old.ok("SELECT INBOX")
        assert _recent_lines(lines) == [b"* 4 RECENT"], lines
        assert old.ok("SEARCH RECENT")[0] == b"* SEARCH 1 2 3 4"


# -- SEARCH answers ESEARCH (RFC 9051 §6.4.4) --------------------------------------------------
def test_search_is_answered_with_esearch(haven, user):
    _fill(haven, user, 3)
    with _rev2(haven, user) as w:
        w.ok("SELECT INBOX")
        w.ok("STORE 2 +FLAGS (\\Flagged)")
        assert w.ok("SEARCH ALL", tag="s1")[0] == b'* ESEARCH (TAG "s1") ALL 1:3'
        assert w.ok("UID SEARCH FLAGGED", tag="s2")[0] == b'* ESEARCH (TAG "s2") UID ALL 2'
        assert w.ok("SEARCH CHARSET UTF-8 SUBJECT nothing", tag="s3")[:-1] == [b'* ESEARCH (TAG "s3")']
        assert w.ok("UID SEARCH SUBJECT nothing", tag="s4")[:-1] == [b'* ESEARCH (TAG "s4") UID']
        assert w.ok("SEARCH RETURN () UNFLAGGED", tag="s5")[0] == b'* ESEARCH (TAG "s5") ALL 1,3'
        assert w.ok("SEARCH RETURN (MIN COUNT) ALL", tag="s6")[0] == b'* ESEARCH (TAG "s6") MIN 1 COUNT 3'
        # CONDSTORE: the highest mod-sequence of what was found (RFC 4731 §3.2)
        line = w.ok("SEARCH MODSEQ 1", tag="s7")[0]
        assert re.fullmatch(rb'\* ESEARCH \(TAG "s7"\) ALL 1:3 MODSEQ \d+', line), line
        # SEARCHRES: SAVE alone answers nothing, "$" names the result
        assert w.ok("SEARCH RETURN (SAVE) FLAGGED")[:-1] == []
        assert w.ok("FETCH $ (UID)")[0] == b"* 2 FETCH (UID 2)"
        # SORT and THREAD keep their own responses
        assert w.ok("SORT (SUBJECT) UTF-8 ALL")[0] == b"* SORT 1 2 3"
        # RFC 9051 dropped \Recent and with it RECENT, NEW and OLD: not IMAP4rev2 search keys
        for keys in ("RECENT", "NEW", "NOT OLD", "OR SEEN RECENT", "KEYWORD \\Recent"):
            assert re.match(rb"t\d+ BAD ", w.cmd("SEARCH " + keys)[-1]), keys


# -- STATUS: DELETED and SIZE; no RECENT (RFC 9051 §6.3.11) ------------------------------------
def test_status_deleted_and_size(haven, user):
    _fill(haven, user, 3)
    with _rev2(haven, user) as w:
        w.ok("SELECT INBOX")
        sizes = [int(m) for m in re.findall(rb"RFC822.SIZE (\d+)", b"".join(w.ok("FETCH 1:* (RFC822.SIZE)")))]
        w.ok("STORE 2:3 +FLAGS.SILENT (\\Deleted)")
        line = w.ok("STATUS INBOX (MESSAGES DELETED SIZE UNSEEN)")[0]
        assert line == b'* STATUS "INBOX" (MESSAGES 3 DELETED 2 SIZE %d UNSEEN 3)' % sum(sizes)
        assert re.match(rb"t\d+ BAD ", w.cmd("STATUS INBOX (MESSAGES RECENT)")[-1])
        lines = w.ok('LIST "" INBOX RETURN (STATUS (DELETED SIZE))')
        assert lines[1] == b'* STATUS "INBOX" (DELETED 2 SIZE %d)' % sum(sizes)
        assert re.match(rb"t\d+ BAD ", w.cmd('LIST "" INBOX RETURN (STATUS (RECENT))')[-1])
        w.ok("EXPUNGE")
        assert w.ok("STATUS INBOX (DELETED SIZE)")[0] == b'* STATUS "INBOX" (DELETED 0 SIZE %d)' % sizes[0]


# -- UTF-8 mailbox names (RFC 9051 §5.1) -------------------------------------------------------
def test_mailbox_names_are_utf8(haven, user):
    with _rev2(haven, user) as w, Wire(haven.imap) as old:
        old.login(*user)
        assert w.ok('CREATE "Grüße/Ünter"'.encode())[-1].startswith(b"t")
        listing = b"".join(w.ok('LIST "" "Gr*"'.encode()))
        assert '* LIST (\\HasChildren) "/" "Grüße"'.encode() in listing, listing
        assert '* LIST (\\HasNoChildren) "/" "Grüße/Ünter"'.encode() in listing, listing
        assert b"&" not in listing
        # the same mailboxes in modified UTF-7 to an IMAP4rev1 session
        assert b'"Gr&APwA3w-e/&ANw-nter"' in b"".join(old.ok('LIST "" "*"'))
        # "&" is an ordinary character; the name comes back as sent
        w.ok('CREATE "R&D"')
        assert w.ok('LIST "" "R&D"')[0] == b'* LIST (\\HasNoChildren) "/" "R&D"'
        assert b'"R&-D"' in b"".join(old.ok('LIST "" "R*"'))
        # RFC 9051 §5.1: no mailbox is made under a name that is not Net-Unicode (here NFD)
        lines = w.cmd('CREATE "Gru\u0308n"'.encode())
        assert re.match(rb"t\d+ NO \[CANNOT\] ", lines[-1]), lines
        w.ok('SUBSCRIBE "Grüße/Ünter"'.encode())
        assert w.ok('LSUB "" "Gr*"'.encode())[0] == '* LSUB () "/" "Grüße/Ünter"'.encode()
        assert w.ok('STATUS "Grüße" (MESSAGES)'.encode())[0] == '* STATUS "Grüße" (MESSAGES 0)'.encode()
        w.ok('SETMETADATA "Grüße" (/private/comment "x")'.encode())
        assert w.ok('GETMETADATA "Grüße" /private/comment'.encode())[0] == \
            '* METADATA "Grüße" (/private/comment "x")'.encode()
        w.ok('RENAME "Grüße" "Straße"'.encode())
        lines = w.ok('SELECT "Straße/Ünter"'.encode())
        assert lines[-2] == '* LIST () "/" "Straße/Ünter"'.encode()
        # unlike UTF8=ACCEPT (RFC 6855 §3), IMAP4rev2 keeps SEARCH's CHARSET
        assert w.ok("SEARCH CHARSET UTF-8 ALL", tag="c1")[0] == b'* ESEARCH (TAG "c1")'


# -- LIST selectability, DELETE of a level (RFC 9051 §6.3.5, §6.3.9) ---------------------------
def test_list_nonexistent_and_noselect_and_delete_of_a_level(haven, user):
    with _rev2(haven, user) as w, Wire(haven.imap) as old:
        old.login(*user)
        w.ok("CREATE top/leaf")
        w.ok("SUBSCRIBE top")
        w.ok("DELETE top")  # its inferior stays: "top" is a level now
        # basic LIST: the level is \Noselect; LIST (SUBSCRIBED): the subscribed name that is no
        # mailbox is \NonExistent; never both (one selectability flag, RFC 9051 §9)
        assert w.ok('LIST "" "t%"')[0] == b'* LIST (\\Noselect \\HasChildren) "/" "top"'
        assert w.ok('LIST (SUBSCRIBED) "" "t*"')[0] == b'* LIST (\\NonExistent \\Subscribed \\HasChildren) "/" "top"'
        # the level cannot go while it has inferiors
        lines = w.cmd("DELETE top")
        assert re.match(rb"t\d+ NO \[HASCHILDREN\] ", lines[-1]), lines
        assert re.match(rb"t\d+ NO \[NONEXISTENT\] ", w.cmd("DELETE nowhere")[-1])
        assert re.match(rb"t\d+ NO \[NONEXISTENT\] ", old.cmd("DELETE top")[-1])  # IMAP4rev1: as before


# -- BODYSTRUCTURE parameters (RFC 9051 §7.5.2: decoded as RFC 2231 says) -----------------------
def test_bodystructure_parameters_decoded(haven, user):
    raw = (b"Subject: att\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\n"
           b"Content-Type: application/pdf; name*0*=utf-8''Gr%C3%BC; name*1=\"sse.pdf\"\r\n"
           b"Content-Disposition: attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe.pdf\r\n\r\nx\r\n--B--\r\n")
    haven.deliver(user[0], raw)
    with _rev2(haven, user) as w, Wire(haven.imap) as old:
        old.login(*user)
        w.ok("EXAMINE INBOX")
        old.ok("EXAMINE INBOX")
        line = w.ok("FETCH 1 (BODYSTRUCTURE)")[0]
        assert '("NAME" {11}\r\nGrüsse.pdf)'.encode() in line, line
        assert '("ATTACHMENT" ("FILENAME" {11}\r\nGrüße.pdf))'.encode() in line, line
        assert '("NAME" {11}\r\nGrüsse.pdf)'.encode() in w.ok("FETCH 1 (BODY)")[0]
        # an IMAP4rev1 session gets them as before: RFC 2231-encoded, 7-bit
        line = old.ok("FETCH 1 (BODYSTRUCTURE)")[0]
        assert b'("NAME*" "utf-8\'\'Gr%C3%BCsse.pdf")' in line, line
        assert b'("FILENAME*" "utf-8\'\'Gr%C3%BC%C3%9Fe.pdf")' in line, line


# -- what IMAP4rev2 keeps: UIDPLUS, MOVE, BINARY, literal8 APPEND --------------------------------
def test_appenduid_copyuid_binary_and_literal8(haven, user):
    raw = b"Subject: bin\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\n"
    with _rev2(haven, user) as w:
        lines = w.cmd(b"APPEND INBOX ~{%d+}\r\n%s" % (len(raw), raw))
        assert re.match(rb"t\d+ OK \[APPENDUID \d+ 1\]", lines[-1]), lines
        w.ok("SELECT INBOX")
        assert w.ok("FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1])")[0] == \
            b"* 1 FETCH (BINARY.SIZE[1] 3 BINARY[1] ~{3}\r\n\x00\x01\x02)"
        assert re.match(rb"t\d+ OK \[COPYUID \d+ 1 1\]", w.ok("COPY 1 Archive")[-1])
        lines = w.ok("MOVE 1 Archive")
        assert re.match(rb"\* OK \[COPYUID \d+ 1 2\]", lines[0]) and b"* 1 EXPUNGE" in lines, lines


# -- an IMAP4rev1 session beside an IMAP4rev2 one --------------------------------------------
def test_rev1_session_unchanged_beside_a_rev2_session(haven, user):
    _fill(haven, user, 2)
    with Wire(haven.imap) as old, _rev2(haven, user) as new:
        old.login(*user)
        lines = old.ok("SELECT INBOX")
        assert _recent_lines(lines) == [b"* 2 RECENT"]
        assert b"* OK [UNSEEN 1] First unseen" in lines and not untagged(lines, b"LIST"), lines
        new.ok("SELECT INBOX")
        haven.deliver(user[0], _msg(3))
        lines = old.ok("NOOP")
        assert lines[:2] == [b"* 3 EXISTS", b"* 3 RECENT"], lines  # the rev1 session claims it
        assert b"* 3 EXISTS" in new.ok("NOOP")
        assert old.ok("FETCH 3 (FLAGS)")[0] == b"* 3 FETCH (FLAGS (\\Recent))"
        assert new.ok("FETCH 3 (FLAGS)")[0] == b"* 3 FETCH (FLAGS ())"
        assert old.ok("SEARCH ALL")[0] == b"* SEARCH 1 2 3"
        assert old.ok("SEARCH RECENT")[0] == b"* SEARCH 1 2 3"
        assert new.ok("SEARCH ALL", tag="n1")[0] == b'* ESEARCH (TAG "n1") ALL 1:3'
        assert old.ok("STATUS Archive (RECENT MESSAGES)")[0] == b'* STATUS "Archive" (RECENT 0 MESSAGES 0)'
        # STATUS DELETED and SIZE are there for an IMAP4rev1 session too (STATUS=SIZE, QUOTA)
        assert old.ok("STATUS Archive (DELETED SIZE)")[0] == b'* STATUS "Archive" (DELETED 0 SIZE 0)'


# -- the grammar ---------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [b"SEARCH RECENT", b"SEARCH NEW", b"SEARCH OLD", b"UID SEARCH NOT (RECENT)",
                                     b"SEARCH KEYWORD \\Recent", b"STATUS INBOX (RECENT)",
                                     b"LIST \"\" * RETURN (STATUS (MESSAGES RECENT))"])
def test_rev2_grammar_refuses_what_rfc9051_dropped(command):
    parse_command(b"a " + command)  # IMAP4rev1
    with pytest.raises(ParseError):
        parse_command(b"a " + command, rev2=True)


def test_rev2_names_are_utf8_and_must_be_net_unicode_to_be_made():
    assert parse_command('a SELECT "äb&"'.encode(), rev2=True).args["mailbox"] == "äb&"
    assert parse_command(b'a SELECT "&AOQ-b"').args["mailbox"] == "äb"
    args = parse_command(b"a SELECT inbox/x", rev2=True).args
    assert (args["mailbox"], args["spelled"]) == ("INBOX/x", "inbox/x")
    assert parse_command(b"a SEARCH CHARSET UTF-8 ALL", rev2=True).args["charset"] == "UTF-8"
    for name in ("a\u0308", "a\u0085b", "a\u2028"):
        with pytest.raises(ParseError) as e:
            parse_command(('a CREATE "%s"' % name).encode(), rev2=True)
        assert e.value.code == "CANNOT"
        parse_command(('a SELECT "%s"' % name).encode(), rev2=True)  # looked up as sent


# -- imapclient ----------------------------------------------------------------------------------
def test_imapclient_through_an_imap4rev2_session(haven, user):
    _fill(haven, user, 3)
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    try:
        c.login(*user)
        assert b"IMAP4REV2" in c.capabilities()
        assert c.enable("IMAP4rev2") == [b"IMAP4rev2"]
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 3 and b"RECENT" not in info
        assert info[b"LIST"] == [b'() "/" "INBOX"']
        c.set_flags([2], [b"\\Flagged"])
        assert c.get_flags([1, 2, 3]) == {1: (), 2: (b"\\Flagged",), 3: ()}
        fetched = c.fetch([1, 3], ["ENVELOPE", "RFC822.SIZE"])
        assert fetched[3][b"ENVELOPE"].subject == b"message 3"
        # imapclient 3 reads SEARCH responses only (its search() comes back empty from an
        # IMAP4rev2 server): the ESEARCH that answers the SEARCH is read here with its own parser
        data = c._raw_command_untagged(b"SEARCH", [b"FLAGGED"], response_name="ESEARCH", unpack=True)
        tag, *rest = parse_response([data])
        assert tag[0] == b"TAG" and rest == [b"UID", b"ALL", 2]
        status = c.folder_status("INBOX", ["MESSAGES", "DELETED", "SIZE"])
        assert status[b"MESSAGES"] == 3 and status[b"DELETED"] == 0
        assert status[b"SIZE"] == sum(f[b"RFC822.SIZE"] for f in c.fetch([1, 2, 3], ["RFC822.SIZE"]).values())
        c.unselect_folder()
    finally:
        c.logout()
