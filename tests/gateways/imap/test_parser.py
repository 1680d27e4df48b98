"""Unit tests of the pure IMAP layers: framing, parser, sequence sets, modified UTF-7."""

import random

import pytest

from gateways.imap import utf7
from gateways.imap.framing import Continue, Frame, Framer, Rejected
from gateways.imap.parser import ParseError, parse_command
from gateways.imap.reader import parse_date_time
from gateways.imap.seqset import SequenceSet, SeqSetError, format_pairs, format_set

from ..sink import RecordingSink


# -- modified UTF-7 (RFC 3501 §5.1.3) ------------------------------------------------------
@pytest.mark.parametrize("text,wire", [
    ("INBOX", "INBOX"),
    ("a&b", "a&-b"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("Дела", "&BBQENQQ7BDA-"),
    ("😀 smile", "&2D3eAA- smile"),
    ("", ""),
])
def test_utf7_roundtrip(text, wire):
    assert utf7.encode(text) == wire
    assert utf7.decode(wire) == text


@pytest.mark.parametrize("bad", ["&", "&Jjo", "&AGE-", "&U,BTF2XlZyyKng-x&=-", "\x01", "&!!-"])
def test_utf7_rejects_malformed(bad):
    with pytest.raises(ValueError):
        utf7.decode(bad)


def test_utf7_random_roundtrip():
    rnd = random.Random(7)
    for _ in range(300):
        s = "".join(chr(rnd.choice([rnd.randint(0x20, 0x7E), rnd.randint(0xA0, 0x2FFF), rnd.randint(0x1F600, 0x1F64F)]))
                    for _ in range(rnd.randint(0, 12)))
        assert utf7.decode(utf7.encode(s)) == s


# -- sequence sets ---------------------------------------------------------------------------
def test_seqset_sequence_numbers():
    assert SequenceSet.parse("1:3,5,7:*").seqs(9) == [1, 2, 3, 5, 7, 8, 9]
    assert SequenceSet.parse("*:4").seqs(5) == [4, 5]
    assert SequenceSet.parse("1:*").seqs(0) == []
    assert SequenceSet.parse("10:*").seqs(5) == [5]
    with pytest.raises(SeqSetError):
        SequenceSet.parse("6").seqs(5)


def test_seqset_uids():
    uids = [3, 5, 9, 12, 40]
    assert SequenceSet.parse("1:10").uids(uids) == [3, 5, 9]
    assert SequenceSet.parse("41:*").uids(uids) == [40]  # RFC 3501 §6.4.8
    assert SequenceSet.parse("9,3,9:12").uids(uids) == [3, 9, 12]
    assert SequenceSet.parse("100").uids(uids) == []
    assert SequenceSet.parse("*").uids([]) == []


@pytest.mark.parametrize("bad", ["", "0", "1:", ",1", "a", "1,,2", "01", "99999999999", "4294967296"])
def test_seqset_rejects(bad):
    with pytest.raises(SeqSetError):
        SequenceSet.parse(bad)


def test_format_sets():
    assert format_set([5, 1, 2, 3, 9, 10]) == "1:3,5,9:10"
    assert format_pairs([4, 5, 6, 2]) == "4:6,2"


# -- framing -------------------------------------------------------------------------------
def feed_all(framer, chunks):
    out = []
    for c in chunks:
        out.extend(framer.feed(c))
    return out


def test_framing_lines_and_pipelining():
    ev = Framer().feed(b"a NOOP\r\nb CAPABILITY\r\nc LOG")
    assert ev == [Frame(b"a NOOP"), Frame(b"b CAPABILITY")]


def test_framing_synchronizing_literal_byte_by_byte():
    data = b"a LOGIN {4}\r\nuser {4}\r\npass\r\n"
    ev = feed_all(Framer(), [bytes([c]) for c in data])
    assert ev == [Continue(), Continue(), Frame(b"a LOGIN {4}\r\nuser {4}\r\npass")]


def test_framing_literal_plus_sends_no_continuation():
    ev = Framer().feed(b"a APPEND INBOX {5+}\r\nhello\r\n")
    assert ev == [Frame(b"a APPEND INBOX {5+}\r\nhello")]


def test_framing_literal_containing_crlf_and_braces():
    ev = Framer().feed(b"a APPEND x {9+}\r\n{3}\r\nab\r\n\r\n")
    assert ev == [Frame(b"a APPEND x {9+}\r\n{3}\r\nab\r\n")]


def test_framing_too_big_sync_literal_answered_without_continuation():
    f = Framer(literal_limit=lambda name: 1000 if name == "APPEND" else 10)
    ev = f.feed(b"a APPEND INBOX {2000}\r\n")
    assert ev == [Rejected("a", "APPEND", "literal-too-big", 2000)]
    assert f.feed(b"b NOOP\r\n") == [Frame(b"b NOOP")]


def test_framing_too_big_nonsync_literal_is_discarded():
    f = Framer(literal_limit=lambda name: 100)
    ev = f.feed(b"a APPEND INBOX {300+}\r\n" + b"x" * 150)
    assert ev == []
    ev = f.feed(b"y" * 150 + b"\r\nb NOOP\r\n")
    assert ev == [Rejected("a", "APPEND", "literal-too-big", 300), Frame(b"b NOOP")]
    assert f.idle


def test_framing_overlong_line_resyncs():
    f = Framer(max_line=100)
    ev = f.feed(b"a FETCH " + b"1," * 200)
    assert ev == [Rejected("a", "FETCH", "line-too-long")]
    ev = f.feed(b"9\r\nb NOOP\r\n")
    assert ev == [Frame(b"b NOOP")]


def test_framing_endless_garbage_is_fatal():
    f = Framer(max_line=100)
    ev = []
    for _ in range(40):
        ev.extend(f.feed(b"z" * 100))
    assert ev[0].reason == "line-too-long" and any(e.fatal for e in ev)


def test_framing_bare_lf_accepted():
    assert Framer().feed(b"a NOOP\nb NOOP\n") == [Frame(b"a NOOP"), Frame(b"b NOOP")]


# -- parser --------------------------------------------------------------------------------
def test_parse_login_quoted_and_literal():
    c = parse_command(b'a1 LOGIN "us\\"er" {4}\r\np w"')
    assert (c.tag, c.name, c.args) == ("a1", "LOGIN", {"user": b'us"er', "password": b'p w"'})


def test_parse_authenticate_sasl_ir():
    c = parse_command(b"a AUTHENTICATE PLAIN AHVzZXIAcGFzcw==")
    assert c.args == {"mechanism": "PLAIN", "initial": b"AHVzZXIAcGFzcw=="}
    assert parse_command(b"a authenticate plain").args["initial"] is None


def test_parse_select_params():
    c = parse_command(b"a SELECT inbox (CONDSTORE)")
    assert c.args["mailbox"] == "INBOX" and c.args["condstore"]
    c = parse_command(b"a EXAMINE \"Entw&APw-rfe\"")
    assert c.args["mailbox"] == "Entwürfe"
    c = parse_command(b"a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211 (1:10 41:50)))")
    q = c.args["qresync"]
    assert q["uidvalidity"] == 67890007 and q["modseq"] == 20050715194045000
    assert q["known_uids"].uids(list(range(1, 300)))[:3] == [41, 43, 44]
    assert q["seq_match"] is not None


def test_parse_inbox_case_and_children():
    assert parse_command(b"a CREATE iNbOx/Sub").args["mailbox"] == "INBOX/Sub"
    assert parse_command(b"a CREATE inboxes").args["mailbox"] == "inboxes"


def test_parse_list_variants():
    c = parse_command(b'a LIST "" "*"')
    assert c.args["patterns"] == ["*"] and c.args["reference"] == ""
    c = parse_command(b'a LIST "" % RETURN (SPECIAL-USE)')
    assert c.args["returns"] == {"SPECIAL-USE"}
    c = parse_command(b'a LIST (SPECIAL-USE RECURSIVEMATCH SUBSCRIBED) "" ("INBOX" "Sent/%") '
                      b'RETURN (CHILDREN STATUS (MESSAGES UIDNEXT))')
    assert c.args["select"] == {"SPECIAL-USE", "RECURSIVEMATCH", "SUBSCRIBED"}
    assert c.args["patterns"] == ["INBOX", "Sent/%"]
    assert c.args["status"] == ["MESSAGES", "UIDNEXT"]
    c = parse_command(b"a LSUB \"\" *")
    assert c.name == "LSUB"


def test_parse_append():
    c = parse_command(b'a APPEND Drafts (\\Draft $Label1) " 5-Mar-2024 10:00:00 +0100" {3+}\r\nabc')
    assert c.args["flags"] == ["\\Draft", "$Label1"]
    assert c.args["internaldate"] == 1709629200
    assert c.args["message"] == b"abc"
    c = parse_command(b"a APPEND INBOX {3}\r\nxyz")
    assert c.args["flags"] == [] and c.args["internaldate"] is None and c.args["message"] == b"xyz"


def test_parse_date_time():
    assert parse_date_time("17-Jul-1996 02:44:25 -0700") == 837596665
    assert parse_date_time("29-Feb-2024 00:00:00 +0000") == 1709164800
    for impossible in ("31-Feb-2020 10:00:00 +0000", "29-Feb-2023 10:00:00 +0000", "31-Apr-2026 10:00:00 +0000",
                       "00-Jan-2026 10:00:00 +0000"):
        with pytest.raises(ParseError):
            parse_date_time(impossible)
    with pytest.raises(ParseError):
        parse_date_time("31-Foo-1996 02:44:25 -0700")


def test_parse_fetch_items():
    c = parse_command(b"a UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Message-ID)])")
    assert c.uid and c.name == "FETCH"
    item = c.args["items"][-1]
    assert item.peek and item.section.fields == ("From", "To", "Message-ID")
    assert item.label == "BODY[HEADER.FIELDS (From To Message-ID)]"
    c = parse_command(b"a FETCH 2 (BODY[1.2.MIME] BODY[]<0.100> BODY[3.HEADER.FIELDS.NOT (X-A)] BODY[TEXT])")
    labels = [i.label for i in c.args["items"]]
    assert labels == ["BODY[1.2.MIME]", "BODY[]<0>", "BODY[3.HEADER.FIELDS.NOT (X-A)]", "BODY[TEXT]"]
    assert [i.name for i in parse_command(b"a FETCH 1 full").args["items"]] == \
        ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]
    assert parse_command(b"a FETCH 1 body[]").args["items"][0].section.path == ()
    c = parse_command(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)")
    assert c.args["changedsince"] == 12345 and c.args["vanished"]


def test_parse_store():
    c = parse_command(b"a STORE 1:3 +FLAGS.SILENT (\\Seen \\DELETED)")
    assert c.args["op"] == "add" and c.args["silent"] and c.args["flags"] == ["\\Seen", "\\Deleted"]
    c = parse_command(b"a UID STORE 5 (UNCHANGEDSINCE 17) -FLAGS \\Flagged Junk")
    assert c.args["unchangedsince"] == 17 and c.args["flags"] == ["\\Flagged", "Junk"]
    assert parse_command(b"a STORE 1 FLAGS ()").args["flags"] == []


def test_parse_search():
    c = parse_command(b'a SEARCH CHARSET UTF-8 OR (FROM "bob" SUBJECT {5}\r\nhallo) NOT 2:4 SINCE "1-Feb-2024"')
    kind, keys = c.args["criteria"]
    assert kind == "and" and keys[0][0] == "or" and keys[0][2] == ("not", ("seq", SequenceSet(((2, 4),))))
    assert keys[0][1] == ("and", [("address", "from", "bob"), ("header", "subject", "hallo")])
    assert keys[1][0] == "date"
    c = parse_command(b"a UID SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338 UNKEYWORD $Junk HEADER X-Spam yes")
    assert c.args["criteria"][1][0] == ("modseq", 620162338)
    with pytest.raises(ParseError) as e:
        parse_command(b"a SEARCH CHARSET KOI8-R TEXT x")
    assert e.value.code.startswith("BADCHARSET")


def test_parse_misc_commands():
    assert parse_command(b"a ID NIL").args["params"] is None
    assert parse_command(b'a ID ("name" "Thunderbird" "version" "115")').args["params"]["name"] == "Thunderbird"
    assert parse_command(b"a ENABLE CONDSTORE qresync").args["capabilities"] == ["CONDSTORE", "QRESYNC"]
    assert parse_command(b"a UID EXPUNGE 3:5").uid
    assert parse_command(b"a UID MOVE 1:2 Trash").args["mailbox"] == "Trash"
    assert parse_command(b"a RENAME a b").args == {"old": "a", "new": "b"}
    assert parse_command(b"a STATUS INBOX (MESSAGES UNSEEN HIGHESTMODSEQ)").args["items"][2] == "HIGHESTMODSEQ"
    assert parse_command(b"a CREATE Later (USE (\\Archive))").args["special_use"] == ["\\Archive"]


@pytest.mark.parametrize("bad", [
    b"", b"NOOP", b"a", b"a FOO", b"a NOOP extra", b"a LOGIN user", b'a LOGIN "unterminated',
    b"a SELECT", b"a FETCH 1 (FLAGS", b"a FETCH 1 BODY[1.FOO]", b"a FETCH x FLAGS", b"a STORE 1 FLAGS (\\Bogus)",
    b"a SEARCH", b"a SEARCH NOT", b"a SEARCH BEFORE 30-Feb-2024", b"a APPEND INBOX {10}\r\nshort",
    b"a LIST", b"a UID NOOP", b"* NOOP", b"a+ NOOP", b"a CREATE &Jjo", b"a SEARCH " + b"(" * 5000,
    b"a STATUS INBOX (BOGUS)", b"a FETCH 0 FLAGS", b"a FETCH 1 BODY[]<5>",
])
def test_parse_errors(bad):
    with pytest.raises(ParseError):
        parse_command(bad)


def test_parse_error_carries_tag():
    with pytest.raises(ParseError) as e:
        parse_command(b"x17 FETCH 1 (BOGUS)")
    assert e.value.tag == "x17"


def test_parser_fuzz_only_raises_parse_error():
    rnd = random.Random(3501)
    seeds = [b"a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From)]<0.10>)", b'a SEARCH OR FROM "x" NOT (SEEN 1:4)',
             b"a APPEND INBOX (\\Seen) {3+}\r\nabc", b'a LIST (SUBSCRIBED) "" ("%" "*") RETURN (STATUS (MESSAGES))',
             b"a SELECT INBOX (QRESYNC (1 2 1:5 (1:2 3:4)))", b"a UID STORE 1 (UNCHANGEDSINCE 3) +FLAGS (a b)"]
    alphabet = b' ()[]{}<>"\\*%:,.+-0123456789aAzZ\r\n\x00\xff'
    for _ in range(6000):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 6)):
            op = rnd.random()
            pos = rnd.randrange(len(data) + 1)
            if op < 0.4 and data:
                del data[pos:pos + rnd.randint(1, 4)]
            elif op < 0.8:
                data[pos:pos] = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(1, 3)))
            else:
                data = data[:pos]
        try:
            parse_command(bytes(data))
        except ParseError:
            pass
    for _ in range(3000):
        try:
            parse_command(bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40))))
        except ParseError:
            pass


def test_framer_fuzz_never_raises():
    rnd = random.Random(2)
    for _ in range(500):
        f = Framer(max_line=64, literal_limit=lambda n: 50)
        for _ in range(20):
            f.feed(bytes(rnd.choice(b"a{}+0123456789\r\n x") for _ in range(rnd.randint(0, 30))))


def test_framer_spools_a_big_append_literal():
    sinks = []

    def spool(name, size):
        if name != "APPEND" or size < 10:
            return None
        sinks.append(RecordingSink())
        return sinks[-1]
    framer = Framer(spool=spool)
    msg = b"From: a\r\n\r\n" + b"x" * 50
    stream = b"a APPEND INBOX (\\Seen) {%d+}\r\n%s\r\nb NOOP\r\n" % (len(msg), msg)
    events = feed_all(framer, [stream[i:i + 7] for i in range(0, len(stream), 7)])
    frame, noop = [e for e in events if isinstance(e, Frame)]
    assert bytes(sinks[0].data) == msg and not sinks[0].closed
    assert frame.data == b"a APPEND INBOX (\\Seen) {%d+}\r\n" % len(msg)  # the octets are not in memory
    assert frame.spools == ((len(frame.data), sinks[0]),)
    cmd = parse_command(frame.data, frame.spools)
    assert cmd.args["message"] is sinks[0] and cmd.args["flags"] == ["\\Seen"]
    assert parse_command(noop.data).name == "NOOP"
    frame.close()
    assert sinks[0].closed
    # a literal cut off by the connection's end: the framer's reset closes its spool
    framer.feed(b"c APPEND INBOX {100+}\r\n" + b"y" * 30)
    assert len(sinks) == 2 and not sinks[1].closed
    framer.reset()
    assert sinks[1].closed
    # a big literal elsewhere than APPEND's message is refused by the parser
    framer.feed(b"d APPEND {20+}\r\n" + b"m" * 20)
    [frame] = framer.feed(b" {3+}\r\nabc\r\n")
    with pytest.raises(ParseError):
        parse_command(frame.data, frame.spools)
    frame.close()
    assert sinks[2].closed
