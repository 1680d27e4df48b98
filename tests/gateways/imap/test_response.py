"""Unit tests of the serializer (strings, ENVELOPE, BODY/BODYSTRUCTURE), FETCH section slicing
and search evaluation, on the corpus in tests/data/mail (hand-checked expected strings)."""

import datetime
from pathlib import Path

from formats import mime
from store.interfaces import MessageMeta, MessageRecord

from gateways.imap import response
from gateways.imap.fetch import FetchPlan, section_data
from gateways.imap.parser import parse_command
from gateways.imap.search import Candidate, Context, evaluate, needs

MAIL = Path(__file__).resolve().parents[2] / "data" / "mail"


def analyzed(name):
    raw = (MAIL / name).read_bytes()
    return raw, mime.analyze(raw)


def test_string_quoting_and_literals():
    assert response.string("plain") == b'"plain"'
    assert response.string('say "hi" \\o/') == b'"say \\"hi\\" \\\\o/"'
    assert response.string("line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert response.string("Grüße") == b"{7}\r\nGr\xc3\xbc\xc3\x9fe"
    assert response.string("x" * 600).startswith(b"{600}\r\n")
    assert response.nstring(None) == b"NIL"
    assert response.mailbox("Entwürfe") == b'"Entw&APw-rfe"'


def test_flags_and_dates():
    assert response.flag_list({"$Junk", "\\Seen", "\\Answered"}) == b"(\\Answered \\Seen $Junk)"
    assert response.flag_list(()) == b"()"
    assert response.internaldate(837596665) == b'"17-Jul-1996 09:44:25 +0000"'
    assert response.internaldate(0) == b'" 1-Jan-1970 00:00:00 +0000"'


def test_envelope_plain():
    _, a = analyzed("plain-ascii.eml")
    assert response.envelope(a["envelope"]) == (
        b'("Tue, 12 Mar 2024 09:14:58 +0100" "Lunch on Thursday?" (("Alice Example" NIL "alice" "example.org")) '
        b'(("Alice Example" NIL "alice" "example.org")) (("Alice Example" NIL "alice" "example.org")) '
        b'(("Bob Example" NIL "bob" "example.net")) NIL NIL NIL "<20240312081458.GA12345@example.org>")')


def test_envelope_group_syntax():
    # RFC 3501 §7.4.2: a group is (NIL NIL "name" NIL) ... (NIL NIL NIL NIL)
    _, a = analyzed("group-syntax.eml")
    env = response.envelope(a["envelope"])
    assert b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))' in env
    assert b'((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")' in env


def test_envelope_missing_is_all_nil():
    assert response.envelope(None) == b"(" + b" ".join([b"NIL"] * 10) + b")"


def test_bodystructure_forwarded_message():
    _, a = analyzed("forwarded-rfc822.eml")
    inner_env = (b'("Wed, 20 Mar 2024 08:00:00 +0000" "Conference schedule" (("Program Committee" NIL "pc" "conf.example")) '
                 b'(("Program Committee" NIL "pc" "conf.example")) (("Program Committee" NIL "pc" "conf.example")) '
                 b'(("Grace" NIL "grace" "example.org")) NIL NIL NIL "<schedule-7@conf.example>")')
    assert response.body_structure(a["structure"], True) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 33 1 NIL NIL NIL NIL)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 480 ' + inner_env +
        b' (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 34 1 NIL NIL NIL NIL)'
        b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 48 1 NIL NIL NIL NIL) "ALTERNATIVE" '
        b'("BOUNDARY" "fwd-inner") NIL NIL NIL) 17 NIL ("INLINE" NIL) NIL NIL) "MIXED" ("BOUNDARY" "fwd-outer") NIL NIL NIL)')
    assert response.body_structure(a["structure"], False) == (
        b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 33 1)'
        b'("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 480 ' + inner_env +
        b' (("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 34 1)'
        b'("TEXT" "HTML" ("CHARSET" "us-ascii") NIL NIL "7BIT" 48 1) "ALTERNATIVE") 17) "MIXED")')


def test_bodystructure_single_part_with_disposition():
    _, a = analyzed("plain-ascii.eml")
    assert response.body_structure(a["structure"], True) == \
        b'("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 122 7 NIL ("INLINE" NIL) NIL NIL)'


def test_bodystructure_empty_multipart_still_grammatical():
    out = response.body_structure({"type": "multipart", "subtype": "mixed", "parts": []}, False)
    assert out == b'(("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 0 0) "MIXED")'


def _record(raw, a, flags=(), uid=1, size=None, date=1700000000):
    header = raw[:a["header_end"]]
    meta = MessageMeta(uid, 5, frozenset(flags), date, size if size is not None else len(raw))
    return MessageRecord(meta, "blob", a["envelope"], a["structure"], header)


def _items(text):
    return parse_command(b"a FETCH 1 " + text).args["items"]


def test_section_slicing_forwarded():
    raw, a = analyzed("forwarded-rfc822.eml")
    rec = _record(raw, a)
    get = lambda spec: section_data(_items(spec)[0], rec, raw)  # noqa: E731
    assert get(b"BODY[1]") == b"See the forwarded schedule below."
    assert get(b"BODY[2.HEADER.FIELDS (Subject)]") == b"Subject: Conference schedule\r\n\r\n"
    assert get(b"BODY[2.1]") == b"Keynote at 09:00 in hall Zanzibar."
    assert get(b"BODY[2.2.MIME]") == b"Content-Type: text/html; charset=us-ascii\r\n\r\n"
    assert get(b"BODY[2.TEXT]").startswith(b"--fwd-inner\r\n")
    assert get(b"BODY[2]").startswith(b"From: Program Committee")
    assert get(b"BODY[1.HEADER]") is None  # not a message/rfc822 part
    assert get(b"BODY[7]") is None
    assert get(b"BODY[HEADER.FIELDS.NOT (Subject From To Date Message-ID MIME-Version)]") == \
        b'Content-Type: multipart/mixed; boundary="fwd-outer"\r\n\r\n'
    assert get(b"BODY[]") == raw
    assert get(b"BODY[TEXT]") == raw[a["header_end"]:]


def test_fetch_plan_needs_and_render():
    raw, a = analyzed("plain-ascii.eml")
    rec = _record(raw, a, flags={"\\Seen"}, uid=42)
    plan = FetchPlan(_items(b"(UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (Subject)])"), readonly=False)
    assert not plan.blob and plan.header and plan.envelope and not plan.sets_seen
    line = plan.render(3, rec, None, False)
    assert line.startswith(b"* 3 FETCH (UID 42 FLAGS (\\Seen) RFC822.SIZE %d ENVELOPE (" % len(raw))
    assert line.endswith(b'BODY[HEADER.FIELDS (Subject)] {31}\r\nSubject: Lunch on Thursday?\r\n\r\n)\r\n')
    plan = FetchPlan(_items(b"(BODY[]<0.10>)"), readonly=False)
    assert plan.blob and plan.sets_seen
    assert plan.render(1, rec, raw, True) == b"* 1 FETCH (BODY[]<0> {10}\r\n" + raw[:10] + b" FLAGS (\\Seen))\r\n"
    assert not FetchPlan(_items(b"BODY[]"), readonly=True).sets_seen
    assert FetchPlan(_items(b"BODYSTRUCTURE"), readonly=False).structure


def _search(text, metas, headers=None, texts=None):
    node = parse_command(b"a SEARCH " + text).args["criteria"]
    ctx = Context(len(metas), max(m.uid for m in metas))
    out = []
    for i, m in enumerate(metas):
        c = Candidate(i + 1, m)
        if headers is not None:
            c.header = headers[i]
        if texts is not None:
            c.text = texts[i].casefold()
        v = evaluate(node, c, ctx)
        out.append(v)
    return out


def test_search_evaluation_meta_keys():
    day = int(datetime.datetime(2024, 3, 5, 12, tzinfo=datetime.timezone.utc).timestamp())
    metas = [MessageMeta(1, 10, frozenset({"\\Seen"}), day, 100),
             MessageMeta(4, 20, frozenset({"\\Flagged", "$Work"}), day + 86400, 5000),
             MessageMeta(9, 30, frozenset(), day + 2 * 86400, 70)]
    assert _search(b"UNSEEN", metas) == [False, True, True]
    assert _search(b"OR SEEN FLAGGED", metas) == [True, True, False]
    assert _search(b"NOT (LARGER 90 SMALLER 1000)", metas) == [False, True, True]
    assert _search(b"SINCE 6-Mar-2024", metas) == [False, True, True]
    assert _search(b"ON 6-Mar-2024", metas) == [False, True, False]
    assert _search(b"BEFORE 6-Mar-2024", metas) == [True, False, False]
    assert _search(b"UID 2:9 KEYWORD $Work", metas) == [False, True, False]
    assert _search(b"2:*", metas) == [False, True, True]
    assert _search(b"MODSEQ 20", metas) == [False, True, True]
    assert _search(b"NEW", metas) == [False, False, False]
    assert _search(b"ALL", metas) == [True, True, True]


def test_search_three_valued_until_loaded():
    metas = [MessageMeta(1, 1, frozenset(), 0, 10), MessageMeta(2, 1, frozenset({"\\Seen"}), 0, 10)]
    node = parse_command(b"a SEARCH UNSEEN SUBJECT lunch").args["criteria"]
    assert needs(node) == {"header"}
    assert _search(b"UNSEEN SUBJECT lunch", metas) == [None, False]
    headers = [b"Subject: =?utf-8?q?Lunch_am_Donnerstag?=\r\n\r\n", b"Subject: lunch\r\n\r\n"]
    assert _search(b"UNSEEN SUBJECT LUNCH", metas, headers) == [True, False]
    assert _search(b'HEADER Subject ""', metas, headers) == [True, True]
    assert _search(b"SENTON 1-Jan-2024", metas, [b"Date: Mon, 1 Jan 2024 23:30:00 -0800\r\n\r\n"] * 2) == [True, True]
    assert _search(b"BODY zanzibar", metas, headers, ["in hall Zanzibar", "nothing"]) == [True, False]
    assert _search(b"TEXT donnerstag", metas, headers, ["", ""]) == [True, False]
