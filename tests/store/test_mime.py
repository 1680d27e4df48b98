"""formats.mime against the corpus in tests/data/mail (see its README.md).

Expected values are written out by hand from the files' bytes; Python's email package is
the second opinion where its model matches IMAP's. The fuzz tests call mime._analyze,
which has no last-resort exception guard, so a bug cannot hide behind it.
"""
import base64
import binascii
import email
import hashlib
import json
import os
import random
import re
import time
from email import policy
from email.header import decode_header, make_header
from email.utils import getaddresses

import pytest

from formats import mime

MAIL = os.path.join(os.path.dirname(__file__), os.pardir, "data", "mail")
FILES = sorted(f for f in os.listdir(MAIL) if f.endswith(".eml"))


def load(name):
    with open(os.path.join(MAIL, name), "rb") as f:
        return f.read()


def walk(part):
    """Pre-order over a structure, descending into encapsulated messages."""
    yield part
    for child in part["parts"] or []:
        yield from walk(child)
    if part["message"]:
        yield from walk(part["message"]["structure"])


def body(raw, part):
    return raw[part["body_start"]:part["end"]]


def transfer_decoded(raw, part):
    data = body(raw, part)
    enc = part["encoding"].lower()
    if enc == "base64":
        return binascii.a2b_base64(data)
    if enc == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


KEYS = {"type", "subtype", "params", "id", "description", "encoding", "header_start",
        "body_start", "end", "size", "lines", "md5", "disposition", "language", "location",
        "parts", "message"}


def check_part(part, lo, hi, depth=0):
    """Offsets in bounds and nested monotonically; shapes as documented."""
    assert set(part) == KEYS
    assert lo <= part["header_start"] <= part["body_start"] <= part["end"] <= hi
    assert part["size"] == part["end"] - part["body_start"]
    assert part["type"] == part["type"].lower() and part["subtype"] == part["subtype"].lower()
    assert part["type"] and part["subtype"] and part["encoding"]
    assert all(len(p) == 2 and all(isinstance(x, str) for x in p) for p in part["params"])
    if part["type"] == "text" or part["message"] is not None:
        assert isinstance(part["lines"], int) and part["lines"] >= 0
    else:
        assert part["lines"] is None
    if part["type"] == "multipart":
        assert part["parts"], "a multipart always has at least one part"
        prev = part["body_start"]
        for child in part["parts"]:
            assert child["header_start"] >= prev
            check_part(child, part["body_start"], part["end"], depth + 1)
            prev = child["end"]
    else:
        assert part["parts"] is None
    if part["type"] == "message" and part["subtype"] in ("rfc822", "global"):
        msg = part["message"]
        assert len(msg["envelope"]) == 10
        assert msg["structure"]["header_start"] == part["body_start"]
        check_part(msg["structure"], part["body_start"], part["end"], depth + 1)
    else:
        assert part["message"] is None
    assert depth <= mime.MAX_DEPTH + 1


def check_envelope(env):
    assert len(env) == 10
    for i in (0, 1, 8, 9):
        assert env[i] is None or isinstance(env[i], str)
    for i in range(2, 8):
        assert env[i] is None or (env[i] and all(len(a) == 4 for a in env[i]))
        for addr in env[i] or []:
            assert all(x is None or isinstance(x, str) for x in addr)


def check_result(raw, result):
    assert set(result) == {"envelope", "structure", "header_end"}
    he = result["header_end"]
    assert 0 <= he <= len(raw)
    top = result["structure"]
    assert (top["header_start"], top["body_start"], top["end"]) == (0, he, len(raw))
    check_part(top, 0, len(raw))
    check_envelope(result["envelope"])
    assert json.loads(json.dumps(result)) == result      # JSON-able, lists not tuples


# -- the corpus as a whole -----------------------------------------------------------------

def test_corpus_is_complete_and_documented():
    assert 25 <= len(FILES) <= 40
    with open(os.path.join(MAIL, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    for name in FILES:
        assert "`%s`" % name in readme, name
        assert len(load(name)) < 40_000
    crlf = [n for n in FILES if b"\r\n" in load(n)]
    assert len(crlf) >= len(FILES) - 3                   # most as delivered over SMTP
    assert b"\r" not in load("lf-only-multipart.eml")


@pytest.mark.parametrize("name", FILES)
def test_every_file_analyzes_with_sane_offsets(name):
    raw = load(name)
    result = mime._analyze(raw)
    check_result(raw, result)
    assert mime.analyze(raw) == result
    header = raw[:result["header_end"]]
    pos = 0
    for name, field in mime.header_fields(header):        # whole lines, in order
        at = header.find(field, pos)
        assert field.startswith(name.encode()) and at >= pos
        assert at == 0 or header[at - 1:at] == b"\n"
        pos = at + len(field)
    text = mime.decoded_text(raw, result["structure"])
    assert isinstance(text, str)
    for value in (result["envelope"][1], result["envelope"][0]):
        if value is not None:
            assert isinstance(mime.decode_header_value(value), str)


GOOD = [n for n in FILES if not n.startswith("broken-")]
# Python's email parses these bodies as header blocks; IMAP treats them as leaves.
PY_MODEL_DIFFERS = {"dsn-bounce.eml", "rfc2231-filename.eml"}


@pytest.mark.parametrize("name", GOOD)
def test_agrees_with_python_email(name):
    raw = load(name)
    result = mime.analyze(raw)
    msg = email.message_from_bytes(raw, policy=policy.compat32)
    env = result["envelope"]
    for i, field in ((0, "date"), (1, "subject"), (8, "in-reply-to"), (9, "message-id")):
        value = msg.get(field)
        value = None if value is None else re.sub(r"\r?\n", "", str(value)).strip()
        assert env[i] == value, field
    if name != "group-syntax.eml":
        for i, field in ((2, "from"), (5, "to"), (6, "cc")):
            ours = [(a[0] or "", a[2] + "@" + a[3]) for a in env[i] or []]
            assert ours == getaddresses(msg.get_all(field, [])), field
    if name in PY_MODEL_DIFFERS:
        return
    ours = list(walk(result["structure"]))
    theirs = list(msg.walk())
    assert ["%s/%s" % (p["type"], p["subtype"]) for p in ours] == \
        [p.get_content_type() for p in theirs]
    for part, py in zip(ours, theirs):
        if part["parts"] is None and part["message"] is None:
            assert transfer_decoded(raw, part) == py.get_payload(decode=True)


# -- hand-checked envelopes and structures ------------------------------------------------

def test_plain_ascii():
    raw = load("plain-ascii.eml")
    r = mime.analyze(raw)
    alice = [["Alice Example", None, "alice", "example.org"]]
    assert r["envelope"] == [
        "Tue, 12 Mar 2024 09:14:58 +0100", "Lunch on Thursday?", alice, alice, alice,
        [["Bob Example", None, "bob", "example.net"]], None, None, None,
        "<20240312081458.GA12345@example.org>"]
    s = r["structure"]
    assert raw[:r["header_end"]].endswith(b"Content-Disposition: inline\r\n\r\n")
    assert body(raw, s) == (b"Hi Bob,\r\n\r\nare you free for lunch on Thursday? The new "
                            b"ramen place near the\r\nstation opened last week.\r\n\r\n"
                            b"Cheers,\r\nAlice\r\n")
    assert (s["type"], s["subtype"], s["params"]) == ("text", "plain", [["charset", "us-ascii"]])
    assert s["encoding"] == "7BIT" and s["lines"] == 7 and s["size"] == len(body(raw, s))
    assert s["disposition"] == ["inline", []]
    assert s["parts"] is None and s["message"] is None


def test_alternative_with_preamble_and_epilogue():
    raw = load("alternative.eml")
    s = mime.analyze(raw)["structure"]
    assert (s["type"], s["subtype"], s["params"]) == \
        ("multipart", "alternative", [["boundary", "b1_5f8e2c0a7d"]])
    text, html = s["parts"]
    assert body(raw, text) == (b"Hi team,\r\n\r\nthe quarterly report is attached to the wiki. "
                               b"Highlights:\r\n\r\n* revenue up 12%\r\n* two new hires in Lyon"
                               b"\r\n\r\n-- \r\nDana\r\n")
    assert raw[text["header_start"]:text["body_start"]] == \
        b"Content-Type: text/plain; charset=us-ascii\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
    assert text["lines"] == 9
    assert body(raw, html).startswith(b"<html><head>")
    assert body(raw, html).endswith(b"<p>-- <br>Dana</p></body></html>\r\n")
    assert raw[html["end"]:html["end"] + 19] == b"\r\n--b1_5f8e2c0a7d--"


def test_mixed_with_attachments_and_transport_padding():
    raw = load("mixed-pdf-image.eml")
    r = mime.analyze(raw)
    assert r["envelope"][6] == [["Carol", None, "carol", "example.net"]]
    text, pdf, png = r["structure"]["parts"]
    assert body(raw, text) == (b"Dear Bob,\r\n\r\nplease find invoice 2024-0042 attached, "
                               b"and our new logo.\r\n\r\nRegards,\r\nFinance")
    # The delimiter after the text part carries transport padding: "  \t".
    assert raw[text["end"]:pdf["header_start"]] == b"\r\n------=_Part_1234_5678.1710842398  \t\r\n"
    assert (pdf["type"], pdf["subtype"], pdf["encoding"]) == ("application", "pdf", "BASE64")
    assert pdf["params"] == [["name", "invoice-2024-0042.pdf"]]
    assert pdf["description"] == "Invoice" and pdf["lines"] is None
    data = transfer_decoded(raw, pdf)
    assert pdf["disposition"] == ["attachment", [["filename", "invoice-2024-0042.pdf"],
                                                 ["size", str(len(data))]]]
    assert data.startswith(b"%PDF-1.4\n") and data.endswith(b"%%EOF\n")
    assert png["id"] == "<logo.png@example.com>"
    assert png["disposition"] == ["inline", [["filename", "logo.png"]]]
    assert transfer_decoded(raw, png).startswith(b"\x89PNG\r\n\x1a\n")


def test_nested_related():
    raw = load("nested-related.eml")
    s = mime.analyze(raw)["structure"]
    shape = [(p["type"], p["subtype"]) for p in walk(s)]
    assert shape == [("multipart", "mixed"), ("multipart", "alternative"), ("text", "plain"),
                     ("multipart", "related"), ("text", "html"), ("image", "gif"),
                     ("application",
                      "vnd.openxmlformats-officedocument.wordprocessingml.document")]
    related = mime.section_offsets(s, [1, 2])
    assert related["params"] == [["boundary", "=_rel_003"], ["type", "text/html"]]
    gif = mime.section_offsets(s, [1, 2, 2])
    assert gif["id"] == "<dot@example.com>"
    data = transfer_decoded(raw, gif)
    assert data.startswith(b"GIF89a")
    assert gif["md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    html = mime.section_offsets(s, [1, 2, 1])
    assert html["language"] == ["en", "de"]
    assert html["location"] == "https://news.example.com/2024/03/draft.html"
    assert gif["language"] is None and gif["location"] is None
    assert body(raw, mime.section_offsets(s, [1, 1])) == b"Newsletter draft, plain version."
    docx = mime.section_offsets(s, [2])
    assert docx["params"] == [["name", "draft.docx"]]           # folded onto its own line
    assert transfer_decoded(raw, docx).startswith(b"PK\x03\x04")


def test_forwarded_message():
    raw = load("forwarded-rfc822.eml")
    s = mime.analyze(raw)["structure"]
    fwd = mime.section_offsets(s, [2])
    assert (fwd["type"], fwd["subtype"]) == ("message", "rfc822")
    assert fwd["disposition"] == ["inline", []]
    assert fwd["lines"] == 17
    env = fwd["message"]["envelope"]
    pc = [["Program Committee", None, "pc", "conf.example"]]
    assert env == ["Wed, 20 Mar 2024 08:00:00 +0000", "Conference schedule", pc, pc, pc,
                   [["Grace", None, "grace", "example.org"]], None, None, None,
                   "<schedule-7@conf.example>"]
    inner = fwd["message"]["structure"]
    # BODY[2] is the whole encapsulated message; BODY[2.HEADER] its header.
    assert body(raw, fwd).startswith(b"From: Program Committee <pc@conf.example>\r\n")
    assert body(raw, fwd).endswith(b"--fwd-inner--\r\n")
    assert raw[inner["header_start"]:inner["body_start"]].endswith(
        b"boundary=\"fwd-inner\"\r\n\r\n")
    assert (inner["type"], inner["subtype"]) == ("multipart", "alternative")
    assert body(raw, mime.section_offsets(s, [2, 1])) == b"Keynote at 09:00 in hall Zanzibar."
    assert mime.section_offsets(s, [2, 2])["subtype"] == "html"
    assert mime.section_offsets(s, [2, 3]) is None


def test_digest_defaults_to_message_rfc822():
    raw = load("digest.eml")
    s = mime.analyze(raw)["structure"]
    digest = mime.section_offsets(s, [2])
    assert digest["subtype"] == "digest"
    first, second = digest["parts"]
    assert first["header_start"] + 2 == first["body_start"]     # no MIME header at all
    assert (first["type"], first["subtype"], first["params"]) == ("message", "rfc822", [])
    assert first["message"]["envelope"][1] == "Kernel panic on boot"
    assert second["message"]["envelope"][8] == "<panic-1@example.com>"
    # A non-multipart encapsulated message: 2.1.1 is its body (RFC 3501 §6.4.5).
    leaf = mime.section_offsets(s, [2, 1, 1])
    assert leaf is first["message"]["structure"]
    assert body(raw, leaf) == b"My laptop panics on boot since the last update."
    assert mime.section_offsets(s, [2, 1, 2]) is None
    assert mime.section_offsets(s, [2, 1, 1, 1]) is None


def test_rfc2231_parameters():
    raw = load("rfc2231-filename.eml")
    _, pdf, ext, stuff = mime.analyze(raw)["structure"]["parts"]
    # Non-ASCII results stay in RFC 2231 form (IMAP-safe); continuations are joined.
    assert pdf["params"] == [["name*", "utf-8''Gr%C3%BC%C3%9Fe.pdf"]]
    assert pdf["disposition"] == [
        "attachment", [["filename*", "utf-8''Gr%C3%BC%C3%9Fe%20aus%20K%C3%B6ln.pdf"]]]
    assert ext["params"] == [["access-type", "URL"],
                             ["url", "ftp://cs.utk.edu/pub/moore/bulk-mailer/bulk-mailer.tar"]]
    assert stuff["params"] == [["title", "This is ***fun***"]]


def test_encoded_words_stay_raw_in_envelope():
    raw = load("encoded-words.eml")
    env = mime.analyze(raw)["envelope"]
    assert env[1] == "=?UTF-8?B?4pyTIENhZsOpIG1lZXRpbmc=?= =?ISO-8859-1?Q?_=E0_midi?="
    assert mime.decode_header_value(env[1]) == "\u2713 Caf\u00e9 meeting \u00e0 midi"
    assert env[2] == [["=?ISO-8859-1?Q?Andr=E9?= Pirard", None, "PIRARD", "vm1.ulg.ac.be"]]
    assert mime.decode_header_value(env[2][0][0]) == "Andr\u00e9 Pirard"
    names = [mime.decode_header_value(a[0]) for a in env[5]]
    assert names == ["\u0418\u0432\u0430\u043d \u041f\u0435\u0442\u0440\u043e\u0432",
                     "M\u00fcller, Hans"]
    assert [a[2:] for a in env[5]] == [["ivan", "example.ru"], ["hans", "example.de"]]
    assert mime.decode_header_value(env[6][0][0]) == "Olle J\u00e4rnefors"


def test_group_syntax():
    raw = load("group-syntax.eml")
    env = mime.analyze(raw)["envelope"]
    assert env[3] == [["Secretary", None, "sec", "silly.example"]]
    assert env[4] == [["Replies", None, "replies", "silly.example"]]
    assert env[5] == [[None, None, "undisclosed-recipients", None], [None, None, None, None]]
    assert env[6] == [[None, None, "A Group", None],
                      ["Ed Jones", None, "c", "a.test"],
                      [None, None, "joe", "where.test"],
                      ["John", None, "jdoe", "one.test"],
                      [None, None, None, None],
                      ["Mary Smith", None, "mary", "x.test"]]
    assert env[7] is None                                   # "Bcc:" with nothing in it
    # Second opinion: the modern email policy parses groups too.
    cc = email.message_from_bytes(raw, policy=policy.default)["Cc"]
    groups = [(g.display_name, [(a.display_name, a.addr_spec) for a in g.addresses])
              for g in cc.groups]
    assert groups == [("A Group", [("Ed Jones", "c@a.test"), ("", "joe@where.test"),
                                   ("John", "jdoe@one.test")]),
                      (None, [("Mary Smith", "mary@x.test")])]


def test_addresses_edge_cases():
    parse = mime._addresses
    assert parse('"Doe, John" <john@example.com>') == [["Doe, John", None, "john", "example.com"]]
    assert parse("john@example.com (John Doe)") == [["John Doe", None, "john", "example.com"]]
    assert parse("<@relay.example,@b.example:joe@example.com>") == \
        [[None, "@relay.example,@b.example", "joe", "example.com"]]
    assert parse('"john doe"@example.com') == [[None, None, '"john doe"', "example.com"]]
    assert parse("a@b.example; c@d.example") == [[None, None, "a", "b.example"],
                                                 [None, None, "c", "d.example"]]
    assert parse("nobody") == [[None, None, "nobody", ""]]   # host "" never means a group
    assert parse("a@b.example,,") == [[None, None, "a", "b.example"]]
    assert parse("Team: a@b.example") == [[None, None, "Team", None],
                                          [None, None, "a", "b.example"],
                                          [None, None, None, None]]
    assert parse("") is None and parse(" , ") is None
    for junk in ('"unterminated <a@b', "(((", "<<<>>>", "a@b@c", "::;;", "\\", '"\\'):
        assert parse(junk) is None or all(len(a) == 4 for a in parse(junk))


def test_long_folded_headers_are_unfolded():
    raw = load("long-folded-headers.eml")
    r = mime.analyze(raw)
    env = r["envelope"]
    assert env[1] == ("Re: [project-dev] Proposal: move the build system to\tsomething that "
                      "does not require three different scripting languages,\ta custom "
                      "preprocessor and a full moon to produce a release tarball\t(was: Re: "
                      "release 2.4 is late)")
    assert env[2] == [["Maintainer With A Rather Long Display Name Indeed", None,
                       "maintainer", "example.org"]]
    assert [a[2] for a in env[5]] == ["dev%02d" % i for i in range(20)]
    assert env[8] == "<thread-11.1710001067@lists.example.org>"
    assert r["structure"]["params"] == [["charset", "us-ascii"], ["format", "flowed"]]


def test_calendar_invite_and_signed():
    raw = load("calendar-invite.eml")
    s = mime.analyze(raw)["structure"]
    cal = mime.section_offsets(s, [1, 3])
    assert (cal["type"], cal["subtype"]) == ("text", "calendar")
    assert cal["params"] == [["charset", "UTF-8"], ["method", "REQUEST"]]
    assert body(raw, cal).startswith(b"BEGIN:VCALENDAR\r\n")
    assert body(raw, cal).endswith(b"END:VCALENDAR\r\n")
    ics = mime.section_offsets(s, [2])
    assert transfer_decoded(raw, ics) == body(raw, cal)

    raw = load("smime-signed.eml")
    s = mime.analyze(raw)["structure"]
    assert s["params"] == [["protocol", "application/pkcs7-signature"], ["micalg", "sha-256"],
                           ["boundary", "------------ms010203040506070809000102"]]
    signed, sig = s["parts"]
    # What a verifier hashes: MIME header + body of part 1, exact bytes.
    assert raw[signed["header_start"]:signed["end"]] == (
        b"Content-Type: text/plain; charset=UTF-8; format=flowed\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n\r\n"
        b"This message is signed. Do not change a byte.\r\n")
    assert transfer_decoded(raw, sig)[:2] == b"\x30\x82"


def test_lf_and_mixed_line_endings():
    raw = load("lf-only-multipart.eml")
    r = mime.analyze(raw)
    assert raw[:r["header_end"]].endswith(b"boundary=\"lf-bound\"\n\n")
    text, html = r["structure"]["parts"]
    assert body(raw, text) == b"Line endings are bare LF in this file."
    assert body(raw, html) == b"<p>Line endings are bare LF in this file.</p>"
    assert raw[html["end"]:] == b"\n--lf-bound--\n"

    raw = load("broken-mixed-line-endings.eml")
    one, two = mime.analyze(raw)["structure"]["parts"]
    assert body(raw, one) == b"LF part one."
    assert body(raw, two) == b"CRLF part two."
    assert raw[one["header_start"]:one["body_start"]] == b"Content-Type: text/plain\n\n"


def test_boundary_prefix_is_not_a_delimiter():
    raw = load("nested-boundary-prefix.eml")
    s = mime.analyze(raw)["structure"]
    assert len(s["parts"]) == 2
    assert body(raw, mime.section_offsets(s, [1, 1])) == (
        b"Inner text. The next line only looks like a delimiter:\r\n--=_abcdef is not one.")
    assert body(raw, mime.section_offsets(s, [2])) == b"Outer second part."


# -- broken input -----------------------------------------------------------------------------

def test_broken_multiparts():
    raw = load("broken-missing-boundary.eml")
    r = mime.analyze(raw)
    (only,) = r["structure"]["parts"]
    assert r["structure"]["subtype"] == "mixed"
    assert (only["type"], only["subtype"]) == ("text", "plain")
    assert only["header_start"] == only["body_start"] == r["header_end"]
    assert only["end"] == len(raw)

    raw = load("broken-boundary-never-appears.eml")
    (only,) = mime.analyze(raw)["structure"]["parts"]
    assert body(raw, only).startswith(b"--spectre\r\n")

    raw = load("broken-unclosed-boundary.eml")
    first, second = mime.analyze(raw)["structure"]["parts"]
    assert body(raw, first) == b"First part."
    assert body(raw, second) == b"Second part runs to the end of the message.\r\n"
    assert second["end"] == len(raw)

    raw = load("broken-truncated.eml")
    text, pdf = mime.analyze(raw)["structure"]["parts"]
    assert pdf["subtype"] == "pdf" and pdf["end"] == len(raw)
    assert transfer_decoded(raw, {**pdf, "encoding": "7bit"}) == body(raw, pdf)
    assert mime._b64(body(raw, pdf)).startswith(b"%PDF")

    raw = load("broken-duplicate-content-type.eml")
    s = mime.analyze(raw)["structure"]
    assert (s["type"], s["subtype"], len(s["parts"])) == ("multipart", "mixed", 1)
    assert email.message_from_bytes(raw).get_content_type() == "multipart/mixed"


def test_broken_headers():
    raw = load("broken-no-separator.eml")
    r = mime.analyze(raw)
    assert r["header_end"] == len(raw)
    assert r["structure"]["size"] == 0 and r["structure"]["lines"] == 0
    assert r["envelope"][9] == "<broken-no-separator@example.com>"

    raw = load("broken-no-headers.eml")
    r = mime.analyze(raw)
    assert r["header_end"] == 2 and r["envelope"] == [None] * 10
    assert r["structure"]["params"] == [["charset", "us-ascii"]]

    raw = load("broken-header-no-colon.eml")
    r = mime.analyze(raw)
    fields = mime.header_fields(raw[:r["header_end"]])
    assert [n for n, _ in fields] == ["From", "To", "Subject", "Date", "Message-ID",
                                      "Content-Type"]
    assert fields[1] == ("To", b"To: bob@example.net\r\n")
    assert r["envelope"][1] == "lines without colon in the header"
    assert body(raw, r["structure"]) == b"Body after garbage header lines.\r\n"

    raw = load("broken-8bit-headers.eml")
    env = mime.analyze(raw)["envelope"]
    assert env[1] == "R\u00e9union d\u00e9plac\u00e9e \u00e0 jeudi"       # Latin-1 fallback
    assert env[2] == [["Fran\u00e7ois L\u00e9vesque", None, "francois", "example.fr"]]
    assert env[5] == [["\u00c9lodie", None, "elodie", "example.net"]]

    env = mime.analyze(load("utf8-8bit.eml"))["envelope"]
    assert mime.decode_header_value(env[1]) == "Gr\u00fc\u00dfe aus K\u00f6ln"

    raw = load("broken-missing-headers.eml")
    assert mime.analyze(raw)["envelope"] == [
        None, "no Date, no From, no Message-ID", None, None, None,
        [[None, None, "bob", "example.net"]], None, None, None, None]

    raw = load("broken-nul-bytes.eml")
    assert mime.analyze(raw)["envelope"][1] == "NUL\x00bytes"

    raw = load("broken-bare-cr.eml")
    r = mime.analyze(raw)
    assert body(raw, r["structure"]).startswith(b"Classic Mac line endings:\rline two\r")
    assert r["structure"]["lines"] == 2


def test_broken_content_type():
    raw = load("broken-garbage-content-type.eml")
    a, b, c = mime.analyze(raw)["structure"]["parts"]
    assert (a["type"], a["subtype"], a["params"]) == ("text", "plain", [["charset", "us-ascii"]])
    assert a["disposition"] is None
    assert (b["type"], b["subtype"]) == ("text", "plain")
    assert b["params"] == [["charset", "utf-8"], ["name", 'a"b.txt']]
    assert (c["type"], c["subtype"], c["encoding"]) == ("text", "plain", "BASE64")
    assert mime._content_type("multipart/mixed boundary=x", False) == \
        ("multipart", "mixed", [["boundary", "x"]])
    assert mime._content_type("TEXT/HTML; CHARSET=\"UTF-8\" (comment)", False)[:2] == \
        ("text", "html")
    assert mime._content_type(None, True) == ("message", "rfc822", [])


# -- section numbers (RFC 3501 §6.4.5) ----------------------------------------------------------

def test_section_offsets_semantics():
    s = mime.analyze(load("plain-ascii.eml"))["structure"]
    assert mime.section_offsets(s, []) is s
    assert mime.section_offsets(s, [1]) is s          # part 1 of a non-multipart: the body
    for path in ([2], [0], [1, 1], [-1]):
        assert mime.section_offsets(s, path) is None

    s = mime.analyze(load("alternative.eml"))["structure"]
    assert mime.section_offsets(s, [2]) is s["parts"][1]
    for path in ([0], [3], [1, 1], [2, 1], [10 ** 9]):
        assert mime.section_offsets(s, path) is None

    s = mime.analyze(load("nested-related.eml"))["structure"]
    assert mime.section_offsets(s, [1, 2, 1])["subtype"] == "html"
    assert mime.section_offsets(s, [1, 2, 3]) is None
    assert mime.section_offsets({"garbage": True}, [1, 2]) is None


# -- search text --------------------------------------------------------------------------------

@pytest.mark.parametrize("name,words", [
    ("quoted-printable.eml", ["d\u00e9m\u00e9nagement", "tr\u00e8s longue",
                              "supercalifragilisticexpialidocious", "1+1=2"]),
    ("base64-text.eml", ["z\u00e9phyr", "\u039a\u03b1\u03bb\u03b7\u03bc\u03ad\u03c1\u03b1"]),
    ("latin1-body.eml", ["co\u00fbte", "No\u00ebl"]),
    ("utf8-8bit.eml", ["Gr\u00fc\u00dfe", "\u65e5\u672c\u8a9e"]),
    ("html-only.eml", ["Spring\u00a0sale", "Don\u2019t", "cr\u00e8me br\u00fbl\u00e9e",
                       "moulds \u2013 now"]),
    ("alternative.eml", ["revenue up 12%", "new caf\u00e9"]),
    ("iso-2022-jp.eml", ["\u4f1a\u8b70"]),
    ("forwarded-rfc822.eml", ["See the forwarded", "Zanzibar", "Conference schedule"]),
    ("calendar-invite.eml", ["invited to Sprint planning", "Room Aurora"]),
    ("apple-mail-folded-params.eml", ["Troms\u00f8"]),
    ("broken-invalid-base64.eml", ["pelican"]),
    ("broken-unknown-charset.eml", ["na\u00efve fa\u00e7ade", "r\u00e9sum\u00e9"]),
    ("broken-8bit-headers.eml", ["caf\u00e9 sera offert"]),
    ("broken-nul-bytes.eml", ["after NUL"]),
])
def test_decoded_text_finds_words(name, words):
    raw = load(name)
    text = mime.decoded_text(raw, mime.analyze(raw)["structure"])
    for word in words:
        assert word in text, word


def test_decoded_text_strips_tags_and_skips_binary():
    raw = load("mixed-pdf-image.eml")
    text = mime.decoded_text(raw, mime.analyze(raw)["structure"])
    assert "invoice 2024-0042" in text and "%PDF" not in text
    raw = load("html-only.eml")
    text = mime.decoded_text(raw, mime.analyze(raw)["structure"])
    assert "<b>" not in text and "<td>" not in text


def test_decoded_text_is_bounded():
    raw = load("quoted-printable.eml")
    s = mime.analyze(raw)["structure"]
    assert len(mime.decoded_text(raw, s, max_bytes=20)) <= 20
    big = b"Subject: big\r\n\r\n" + b"word " * 400_000
    assert len(mime.decoded_text(big, mime.analyze(big)["structure"], max_bytes=1000)) <= 1000
    assert mime.decoded_text(raw, {"nonsense": 1}) == ""


def test_decode_header_value():
    dec = mime.decode_header_value
    assert dec("plain text") == "plain text"
    assert dec("=?utf-8?q?a?= =?utf-8?q?b?=") == "ab"               # RFC 2047 §6.2
    assert dec("=?utf-8?q?a?= b") == "a b"
    assert dec("x =?utf-8?q?a?=") == "x a"
    # One UTF-8 character split over two encoded-words.
    assert dec("=?utf-8?b?w6k=?=") == "\u00e9"
    assert dec("=?utf-8?q?=C3?= =?utf-8?q?=A9?=") == "\u00e9"
    assert dec("=?ISO-8859-1*fr?Q?caf=E9?=") == "caf\u00e9"          # RFC 2231 §5
    assert dec("=?x-unknown?B?dW5rbm93biBjaGFyc2V0?=") == "unknown charset"
    assert dec("=?utf-8?B?###?=") == ""
    assert isinstance(dec("=?utf-8?B?w6?="), str)
    assert dec("=?utf-8?q?unterminated") == "=?utf-8?q?unterminated"
    assert dec("=?base64?q?x?=") == "x"
    for value in ("=?utf-8?q?Hello_World?=", "=?iso-8859-1?q?Andr=E9?= Pirard",
                  "Re: =?utf-8?b?w6TDtsO8?= and more",
                  "=?utf-8?q?a?=  =?iso-8859-1?q?=E9?="):
        assert dec(value) == str(make_header(decode_header(value))), value


def test_header_fields():
    header = (b"Subject: one\r\n two\r\nX-Empty:\r\nfrom : x\r\n\r\nBody: not a header\r\n")
    assert mime.header_fields(header) == [("Subject", b"Subject: one\r\n two\r\n"),
                                          ("X-Empty", b"X-Empty:\r\n"),
                                          ("from", b"from : x\r\n")]
    assert mime.header_fields(b"") == []
    assert mime.header_fields(b"No-Newline: x") == [("No-Newline", b"No-Newline: x")]
    assert mime.header_fields(b" orphan\r\nA: 1\r\n") == [("A", b"A: 1\r\n")]


# -- hostile input ------------------------------------------------------------------------------

def _depth(part):
    children = list(part["parts"] or [])
    if part["message"]:
        children.append(part["message"]["structure"])
    return 1 + max((_depth(c) for c in children), default=0)


def test_deep_nesting_is_capped():
    n = 200
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                   for i in range(n))
    raw += b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    raw += b"".join(b"--b%d--\r\n" % i for i in reversed(range(n)))
    r = mime._analyze(raw)
    check_result(raw, r)
    assert _depth(r["structure"]) == mime.MAX_DEPTH + 2
    deepest = r["structure"]
    while deepest["parts"]:
        deepest = deepest["parts"][0]
    assert deepest["header_start"] == deepest["body_start"]    # the opaque rest
    assert b"innermost" in body(raw, deepest)

    raw = b"Content-Type: message/rfc822\r\n\r\n" * 5000 + b"Subject: inner\r\n\r\nbody"
    r = mime._analyze(raw)
    check_result(raw, r)
    assert _depth(r["structure"]) == mime.MAX_DEPTH + 2


def test_part_count_is_capped():
    raw = (b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
           + b"--x\r\n\r\npart\r\n" * 20000 + b"--x--\r\n")
    start = time.perf_counter()
    r = mime._analyze(raw)
    assert time.perf_counter() - start < 2
    check_result(raw, r)
    parts = r["structure"]["parts"]
    assert len(parts) <= mime.MAX_PARTS
    assert parts[-1]["end"] == len(raw)                        # the rest is one opaque part


@pytest.mark.parametrize("raw", [
    b"", b"\r\n", b"\n", b"\r", b"\r\n\r\n", b":", b"\x00" * 100, bytes(range(256)),
    b"Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n",
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a",
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a--",
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a--",
    b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n\r\n",
    b"Content-Type: message/rfc822\r\n\r\n",
    b"Content-Type: message/rfc822",
    b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n--d--",
    b"Content-Type: text/plain; " + b"a*%d*=%%ff;" * 300 % tuple(range(300)),
    b"Content-Type: text/plain; name*0*=bogus'; name*1=x\r\n\r\n",
    b"To: " + b"(" * 5000 + b"\r\n\r\n",
    b"To: " + b'"' * 5001 + b"\r\n\r\n",
    b"Subject: =?" * 1000 + b"\r\n\r\n",
])
def test_edge_inputs(raw):
    r = mime._analyze(raw)
    check_result(raw, r)
    mime.decoded_text(raw, r["structure"])
    for value in r["envelope"]:
        if isinstance(value, str):
            mime.decode_header_value(value)


def _paths(msg, prefix=()):
    """Every IMAP section number inside the message whose top entity is msg."""
    for i, child in enumerate(msg["parts"] or [msg], 1):  # non-multipart: 1 is the body
        path = prefix + (i,)
        yield list(path)
        if child["parts"] and child is not msg:
            yield from _paths(child, path)
        elif child["message"]:
            yield from _paths(child["message"]["structure"], path)


TOKENS = [b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"--", b":", b";", b"=", b'"', b"\\", b"(", b")",
          b"<", b">", b",", b"@", b"*0*=", b"=?utf-8?b?", b"?=", b"\x00", b"\xff", b"\xc3",
          b"Content-Type: multipart/mixed; boundary=", b"Content-Type: message/rfc822\r\n\r\n",
          b"Content-Transfer-Encoding: base64", b" ", b"\t"]


def _mutate(rng, raw):
    data = bytearray(raw)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        pos = rng.randint(0, len(data))
        if op == 0 and data:
            data[min(pos, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[pos:pos] = rng.choice(TOKENS)
        elif op == 2:
            del data[pos:pos + rng.randint(1, 64)]
        elif op == 3:
            del data[pos:]
        elif op == 4 and data:                               # duplicate a slice elsewhere
            a = rng.randrange(len(data))
            chunk = data[a:a + rng.randint(1, 300)]
            data[pos:pos] = chunk
        else:                                                # re-use a real boundary line
            m = re.search(rb"\n--[^\r\n]{1,80}", bytes(data))
            if m:
                data[pos:pos] = m.group(0)
    return bytes(data)


def test_fuzz_mutations_never_raise():
    rng = random.Random(20240601)
    corpus = [load(n) for n in FILES]
    start = time.perf_counter()
    runs = 0
    for raw in corpus:
        for _ in range(150):
            data = _mutate(rng, raw)
            r = mime._analyze(data)
            check_result(data, r)
            text = mime.decoded_text(data, r["structure"])
            assert isinstance(text, str)
            for path in [[]] + list(_paths(r["structure"])):
                assert mime.section_offsets(r["structure"], path) is not None
            mime.header_fields(data[:r["header_end"]])
            for value in r["envelope"][:2]:
                if value is not None:
                    mime.decode_header_value(value)
            runs += 1
    assert runs == 150 * len(corpus)
    assert time.perf_counter() - start < 4


def test_random_bytes_never_raise():
    rng = random.Random(7)
    for _ in range(300):
        data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
        check_result(data, mime._analyze(data))


def test_speed():
    raw = load("mixed-pdf-image.eml")
    assert 27_000 < len(raw) < 30_000
    mime.analyze(raw)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        mime.analyze(raw)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 0.002, per_call                     # ~0.1 ms on a laptop
    # Linear: 100x the size costs roughly 100x, not 10000x.
    big = raw.replace(b"Regards,", b"Regards,\r\n" + b"filler line\r\n" * 200_000)
    start = time.perf_counter()
    mime.analyze(big)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("value,forms", [
    ("<user-from (comment)@ (comment) domain.org>", ["user-from@domain.org"]),
    ("Someone <user-to\r\n @domain.org>", ["user-to@domain.org", "Someone"]),
    ('(c) "=?utf-8?q?J=C3=BCrgen?=" <u @ (x) d . org>, x@y', ["u@d.org", "Jürgen", "x@y"]),
    ("Group: a@b.c;", ["a@b.c"]),
    ("undisclosed-recipients:;", []),
    ("", []),
])
def test_address_forms(value, forms):
    assert mime.address_forms(value) == forms


def test_header_value_is_what_envelope_carries():
    raw = b"Subject: x\r\nMessage-ID:\r\n <folded@example.org>\r\nmessage-id: <second@x>\r\n\r\nMessage-ID: <body@x>\r\n"
    assert mime.header_value(raw, "Message-ID") == mime.analyze(raw)["envelope"][9] == "<folded@example.org>"
    assert mime.header_value(raw, "In-Reply-To") is None
    assert mime.header_value(b"Message-ID: <a@b>\n\nbody", "message-id") == "<a@b>"
