"""ESEARCH (RFC 4731), SEARCHRES (RFC 5182), SORT/ESORT (RFC 5256, RFC 5267) and THREAD
(RFC 5256) over real loopback sockets against a real ``haven serve`` (both engines): raw
transcripts and imapclient."""

from __future__ import annotations

import re

import pytest
from imapclient import IMAPClient

from .wire import Wire, untagged

# (subject, from mailbox, Date, Message-ID, References, In-Reply-To, INTERNALDATE)
MESSAGES = [
    ("Re: lunch", "zed", "Tue, 02 Jan 2024 10:00:00 +0000", "<2@x>", "<1@x>", None, "05-Jan-2024 00:00:00 +0000"),
    ("lunch", "alice", "Mon, 01 Jan 2024 10:00:00 +0000", "<1@x>", None, None, "05-Jan-2024 00:00:01 +0000"),
    ("[team] Budget", "bob", None, "<3@x>", None, None, "01-Dec-2023 00:00:00 +0000"),
    ("Re: [team] budget", "carol", "Wed, 03 Jan 2024 12:00:00 +0200", "<4@x>", None, "<3@x>",
     "05-Jan-2024 00:00:02 +0000"),
    ("Fwd: lunch", "dave", "Thu, 04 Jan 2024 10:00:00 +0000", "<5@x>", "<1@x> <2@x>", None,
     "05-Jan-2024 00:00:03 +0000"),
    ("=?utf-8?q?unrelated?=", "Eve", "Fri, 05 Jan 2024 10:00:00 +0000", "<6@x>", "<missing@x>", None,
     "05-Jan-2024 00:00:04 +0000"),
]


def raw_message(subject, frm, date, mid, refs, irt) -> bytes:
    lines = ["From: %s <%s@example.org>" % (frm.title(), frm), "To: you@example.org", "Subject: " + subject,
             "Message-ID: " + mid]
    if date:
        lines.append("Date: " + date)
    if refs:
        lines.append("References: " + refs)
    if irt:
        lines.append("In-Reply-To: " + irt)
    return ("\r\n".join(lines) + "\r\n\r\nbody of %s\r\n" % mid).encode()


def append(w: Wire, mailbox: str, raw: bytes, date: str) -> None:
    tag = w.tag()
    w.send(b'%s APPEND %s "%s" {%d+}\r\n%s\r\n' % (tag.encode(), mailbox.encode(), date.encode(), len(raw), raw))
    assert w.until(tag)[-1].split(b" ")[1] == b"OK"


@pytest.fixture(scope="module")
def sorted_user(haven):
    """An account whose INBOX holds MESSAGES as sequence numbers 1-6 and UIDs 2-7."""
    user = haven.new_user()
    with Wire(haven.imap) as w:
        w.login(*user)
        append(w, "INBOX", b"Subject: gone\r\n\r\nx\r\n", "01-Jan-2020 00:00:00 +0000")
        for subject, frm, date, mid, refs, irt, internal in MESSAGES:
            append(w, "INBOX", raw_message(subject, frm, date, mid, refs, irt), internal)
        w.ok("SELECT INBOX")
        w.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        w.ok("EXPUNGE")
    return user


@pytest.fixture
def w(haven, sorted_user):
    with Wire(haven.imap) as wire:
        wire.login(*sorted_user)
        wire.ok("SELECT INBOX")
        yield wire


def test_capabilities(w):
    caps = w.ok("CAPABILITY")[0].split()
    for cap in (b"ESEARCH", b"SEARCHRES", b"SORT", b"SORT=DISPLAY", b"ESORT", b"THREAD=ORDEREDSUBJECT",
                b"THREAD=REFERENCES"):
        assert cap in caps


# -- SORT ------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, answer", [
    ("SORT (SUBJECT) UTF-8 ALL", b"* SORT 3 4 1 2 5 6"),  # budget, lunch, unrelated; ties in mailbox order
    ("SORT (DATE) UTF-8 ALL", b"* SORT 3 2 1 4 5 6"),  # 3 has no Date: its INTERNALDATE (Dec 2023)
    ("SORT (REVERSE DATE) UTF-8 ALL", b"* SORT 6 5 4 1 2 3"),
    ("SORT (ARRIVAL) US-ASCII ALL", b"* SORT 3 1 2 4 5 6"),
    ("SORT (FROM) UTF-8 ALL", b"* SORT 2 3 4 5 6 1"),
    ("SORT (DISPLAYFROM) UTF-8 ALL", b"* SORT 2 3 4 5 6 1"),
    ("SORT (TO SUBJECT) UTF-8 ALL", b"* SORT 3 4 1 2 5 6"),  # equal To: the next criterion decides
    ("SORT (SUBJECT REVERSE DATE) UTF-8 NOT FROM alice", b"* SORT 4 3 5 1 6"),
    ("SORT (DATE) UTF-8 SUBJECT nothing", b"* SORT"),
    ("UID SORT (SUBJECT) UTF-8 ALL", b"* SORT 4 5 2 3 6 7"),
    ("UID SORT (DATE) UTF-8 UID 3:5", b"* SORT 4 3 5"),
])
def test_sort(w, command, answer):
    lines = w.ok(command)
    assert untagged(lines, b"SORT") == [answer]


def test_sort_errors(w):
    assert w.cmd("SORT (DATE) KOI8-R ALL", "x1")[-1].startswith(b"x1 NO [BADCHARSET (UTF-8 US-ASCII)]")
    assert w.cmd("SORT (SPEED) UTF-8 ALL", "x2")[-1].startswith(b"x2 BAD")
    assert w.cmd("SORT () UTF-8 ALL", "x3")[-1].startswith(b"x3 BAD")
    assert w.cmd("THREAD REFS UTF-8 ALL", "x4")[-1].startswith(b"x4 BAD")
    w.ok("UNSELECT")
    assert w.cmd("SORT (DATE) UTF-8 ALL", "x5")[-1].startswith(b"x5 BAD")  # not in the selected state
    assert w.cmd("THREAD REFERENCES UTF-8 ALL", "x6")[-1].startswith(b"x6 BAD")


def test_esort(w):
    lines = w.ok("SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL", tag="s1")
    # RFC 5267 §3.1: MIN/MAX are the first and last in sort order, ALL keeps the order
    assert lines[0] == b'* ESEARCH (TAG "s1") MIN 3 MAX 6 COUNT 6 ALL 3,2,1,4:6'
    lines = w.ok("UID SORT RETURN () (REVERSE SUBJECT) UTF-8 SUBJECT lunch", tag="s2")
    assert lines[0] == b'* ESEARCH (TAG "s2") UID ALL 2:3,6'
    lines = w.ok("SORT RETURN (COUNT) (DATE) UTF-8 SUBJECT nothing", tag="s3")
    assert lines[0] == b'* ESEARCH (TAG "s3") COUNT 0'


# -- THREAD ----------------------------------------------------------------------------------
@pytest.mark.parametrize("command, answer", [
    ("THREAD ORDEREDSUBJECT UTF-8 ALL", b"* THREAD (3 4)(2 (1)(5))(6)"),
    ("THREAD REFERENCES UTF-8 ALL", b"* THREAD (3 4)(2 1 5)(6)"),
    ("UID THREAD REFERENCES UTF-8 ALL", b"* THREAD (4 5)(3 2 6)(7)"),
    ("THREAD REFERENCES UTF-8 NOT SUBJECT budget", b"* THREAD (2 1 5)(6)"),
    # without 2 (<1@x>), 1 and 5 hang off a dummy with one child, which goes (step 4B)
    ("THREAD REFERENCES UTF-8 NOT 2", b"* THREAD (3 4)(1 5)(6)"),
    ("THREAD ORDEREDSUBJECT UTF-8 SUBJECT nothing", b"* THREAD"),
])
def test_thread(w, command, answer):
    lines = w.ok(command)
    assert untagged(lines, b"THREAD") == [answer]


# -- ESEARCH ---------------------------------------------------------------------------------
def test_esearch(w):
    lines = w.ok("SEARCH RETURN (MIN MAX COUNT ALL) SUBJECT lunch", tag="e1")
    assert lines == [b'* ESEARCH (TAG "e1") MIN 1 MAX 5 COUNT 3 ALL 1:2,5', b"e1 OK SEARCH completed"]
    lines = w.ok("UID SEARCH RETURN () CHARSET UTF-8 SUBJECT lunch", tag="e2")
    assert lines[0] == b'* ESEARCH (TAG "e2") UID ALL 2:3,6'
    lines = w.ok("SEARCH RETURN (MIN COUNT ALL) SUBJECT nothing", tag="e3")
    assert lines[0] == b'* ESEARCH (TAG "e3") COUNT 0'  # RFC 4731 §3.1: no MIN/ALL for no match
    lines = w.ok("UID SEARCH RETURN (MAX) ALL", tag="e4")
    assert lines[0] == b'* ESEARCH (TAG "e4") UID MAX 7'
    lines = w.ok("SEARCH RETURN (COUNT) MODSEQ 1", tag="e5")
    assert lines[0].startswith(b'* ESEARCH (TAG "e5") COUNT 6 MODSEQ ')  # RFC 4731 §3.2
    assert w.cmd("SEARCH RETURN (FIRST) ALL")[-1].split(b" ")[1] == b"BAD"
    assert untagged(w.ok("SEARCH SUBJECT lunch"), b"SEARCH") == [b"* SEARCH 1 2 5"]  # plain SEARCH unchanged


# -- SEARCHRES -------------------------------------------------------------------------------
def test_searchres(w):
    lines = w.ok("SEARCH RETURN (SAVE) SUBJECT budget", tag="r1")
    assert lines == [b"r1 OK SEARCH completed"]  # SAVE alone: no ESEARCH response
    assert untagged(w.ok("FETCH $ (UID)"), b"FETCH") == [b"* 3 FETCH (UID 4)", b"* 4 FETCH (UID 5)"]
    assert untagged(w.ok("UID FETCH $ (FLAGS)"), b"FETCH") == [b"* 3 FETCH (UID 4 FLAGS ())",
                                                               b"* 4 FETCH (UID 5 FLAGS ())"]
    assert untagged(w.ok('SEARCH $ SUBJECT "re:"'), b"SEARCH") == [b"* SEARCH 4"]
    assert untagged(w.ok("UID SEARCH OR UID $ SUBJECT unrelated"), b"SEARCH") == [b"* SEARCH 4 5 7"]
    lines = w.ok("STORE $ +FLAGS (\\Flagged)")
    assert untagged(lines, b"FETCH") == [b"* 3 FETCH (FLAGS (\\Flagged))", b"* 4 FETCH (FLAGS (\\Flagged))"]
    assert w.ok("COPY $ Archive")[-1].split(b" ")[2].startswith(b"[COPYUID")
    # SAVE with MIN alone saves only that message (RFC 5182 §2.1); ESEARCH still answers MIN
    lines = w.ok("UID SEARCH RETURN (SAVE MIN) FLAGGED", tag="r2")
    assert lines[0] == b'* ESEARCH (TAG "r2") UID MIN 4'
    assert untagged(w.ok("FETCH $ (UID)"), b"FETCH") == [b"* 3 FETCH (UID 4)"]
    w.ok("SEARCH RETURN (SAVE MIN MAX) SUBJECT lunch")
    assert untagged(w.ok("FETCH $ (UID)"), b"FETCH") == [b"* 1 FETCH (UID 2)", b"* 5 FETCH (UID 6)"]
    # the result of a sorted search can be saved too (ESORT + SEARCHRES)
    w.ok("SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT unrelated")
    assert untagged(w.ok("UID FETCH $ (UID)"), b"FETCH") == [b"* 6 FETCH (UID 7)"]
    # pipelined: SEARCH with SAVE, then commands using "$" run after it, in order (RFC 5182 §2.4)
    w.send(b"p1 SEARCH RETURN (SAVE) SUBJECT lunch\r\np2 FETCH $ (UID)\r\np3 STORE $ -FLAGS (\\Flagged)\r\n")
    w.until("p1")
    assert untagged(w.until("p2"), b"FETCH") == [b"* 1 FETCH (UID 2)", b"* 2 FETCH (UID 3)", b"* 5 FETCH (UID 6)"]
    assert w.until("p3")[-1].startswith(b"p3 OK")
    # SELECT starts with an empty "$" (RFC 5182 §2.1)
    w.ok("SELECT INBOX")
    assert untagged(w.ok("FETCH $ (UID)"), b"FETCH") == []
    assert untagged(w.ok("SEARCH $"), b"SEARCH") == [b"* SEARCH"]
    assert w.cmd("FETCH $,1 (UID)")[-1].split(b" ")[1] == b"BAD"


def test_searchres_expunged_message_leaves_the_result(haven, sorted_user):
    with Wire(haven.imap) as w, Wire(haven.imap) as other:
        w.login(*sorted_user)
        other.login(*sorted_user)
        w.ok("CREATE Scratch")
        w.ok("SELECT INBOX")
        w.ok("COPY 1:3 Scratch")
        w.ok("SELECT Scratch")
        w.ok("SEARCH RETURN (SAVE) ALL")
        other.ok("SELECT Scratch")
        other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
        lines = w.ok("NOOP")
        assert untagged(lines, b"EXPUNGE") == [b"* 1 EXPUNGE"]
        assert untagged(w.ok("FETCH $ (UID)"), b"FETCH") == [b"* 1 FETCH (UID 2)", b"* 2 FETCH (UID 3)"]
        assert untagged(w.ok("UID SEARCH UID $"), b"SEARCH") == [b"* SEARCH 2 3"]
        # MOVE and UID EXPUNGE take "$" too
        w.ok("SEARCH RETURN (SAVE) UID 3")
        w.ok("CREATE Elsewhere")
        lines = w.ok("MOVE $ Elsewhere")
        assert untagged(lines, b"EXPUNGE") == [b"* 2 EXPUNGE"]
        assert untagged(w.ok("FETCH $ (UID)"), b"FETCH") == []  # the moved message left "$"
        w.ok("SEARCH RETURN (SAVE) ALL")
        w.ok("STORE $ +FLAGS.SILENT (\\Deleted)")
        assert untagged(w.ok("UID EXPUNGE $"), b"EXPUNGE") == [b"* 1 EXPUNGE"]
        assert untagged(w.ok("SEARCH ALL"), b"SEARCH") == [b"* SEARCH"]


# -- imapclient ------------------------------------------------------------------------------
def test_imapclient_sort_thread_search(haven, sorted_user):
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    try:
        c.login(*sorted_user)
        assert c.has_capability("SORT") and c.has_capability("THREAD=REFERENCES")
        c.select_folder("INBOX", readonly=True)
        assert c.sort(["SUBJECT"]) == [4, 5, 2, 3, 6, 7]  # imapclient speaks UID SORT
        assert c.sort(["REVERSE", "DATE"], ["NOT", "FROM", "alice"]) == [7, 6, 5, 2, 4]
        assert c.thread("REFERENCES") == ((4, 5), (3, 2, 6), (7,))
        assert c.thread("ORDEREDSUBJECT") == ((4, 5), (3, (2,), (6,)), (7,))
        assert c.search(["SUBJECT", "lunch"]) == [2, 3, 6]
    finally:
        c.logout()


def test_searchres_failed_save_empties_the_result(w):
    w.ok("SEARCH RETURN (SAVE) SUBJECT lunch")
    assert len(untagged(w.ok("FETCH $ (UID)"), b"FETCH")) == 3
    # BAD by its syntax, but a SEARCH with SAVE: "$" is now empty (RFC 5182 §2.1)
    assert w.cmd("SEARCH RETURN (SAVE) SUBJECT", "f1")[-1].startswith(b"f1 BAD")
    assert untagged(w.ok("FETCH $ (UID)"), b"FETCH") == []
    w.ok("SORT RETURN (SAVE) (DATE) UTF-8 SUBJECT lunch")
    assert len(untagged(w.ok("UID FETCH $ (UID)"), b"FETCH")) == 3
    assert w.cmd("SORT RETURN (SAVE) (DATE) KOI8-R ALL", "f2")[-1].startswith(b"f2 NO [BADCHARSET")
    assert untagged(w.ok("UID FETCH $ (UID)"), b"FETCH") == []
    # a failing command that does not save leaves "$" alone
    w.ok("SEARCH RETURN (SAVE) SUBJECT lunch")
    assert w.cmd("SEARCH RETURN (COUNT) SUBJECT", "f3")[-1].startswith(b"f3 BAD")
    assert w.cmd("FETCH $ (NOSUCHITEM)", "f4")[-1].startswith(b"f4 BAD")
    assert len(untagged(w.ok("FETCH $ (UID)"), b"FETCH")) == 3


def test_sort_modseq(w):
    lines = w.ok("SORT (DATE) UTF-8 MODSEQ 1")
    assert re.fullmatch(rb"\* SORT 3 2 1 4 5 6 \(MODSEQ \d+\)", untagged(lines, b"SORT")[0])


def test_sort_and_thread_in_a_worker_thread(haven):
    """More messages than cmd_sort.INLINE_MAX: the computation leaves the reactor thread."""
    user = haven.new_user()
    count = 260
    with Wire(haven.imap) as w:
        w.login(*user)
        out = []
        for i in range(count):
            raw = raw_message("Re: s%03d" % (count - i), "u%03d" % (i % 7), None, "<m%d@x>" % i,
                              "<m%d@x>" % (i - 1) if i else None, None)
            out.append(b'a%d APPEND INBOX "01-Feb-2024 00:00:00 +0000" {%d+}\r\n%s\r\n' % (i, len(raw), raw))
        w.send(b"".join(out))
        assert w.until("a%d" % (count - 1))[-1].startswith(b"a%d OK" % (count - 1))
        w.ok("SELECT INBOX")
        lines = w.ok("SORT (SUBJECT) UTF-8 ALL")
        assert untagged(lines, b"SORT") == [b"* SORT " + " ".join(str(count - i) for i in range(count)).encode()]
        lines = w.ok("SORT (FROM REVERSE ARRIVAL) UTF-8 ALL")
        # one INTERNALDATE for all: REVERSE ARRIVAL leaves the ties in mailbox order
        want = sorted(range(1, count + 1), key=lambda s: (s - 1) % 7)
        assert untagged(lines, b"SORT") == [b"* SORT " + " ".join(map(str, want)).encode()]
        lines = w.ok("THREAD REFERENCES UTF-8 ALL")
        assert untagged(lines, b"THREAD") == [b"* THREAD (" + " ".join(str(i + 1) for i in range(count)).encode() + b")"]
