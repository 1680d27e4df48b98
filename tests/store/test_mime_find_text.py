"""formats.mime.find_text and text_extent: the SEARCH BODY/TEXT shortcut must give exactly the
answer of decoding (decoded_text(...).casefold()), on the corpus in tests/data/mail, on crafted
traps for the raw-bytes path, and on random MIME trees; and the text_extent prefix of a message
must decode like the whole of it."""

import base64
import os
import quopri
import random

import pytest

from formats import mime

MAIL = os.path.join(os.path.dirname(__file__), os.pardir, "data", "mail")
FILES = sorted(f for f in os.listdir(MAIL) if f.endswith(".eml"))
NEEDLES = ["", "the", "quetzal", "quet zal", "lunch", "k", "strasse", "a&b", "<p>", "x y", "tagx",
           "tag x", "hello\nworld", "café", "grüße", "schedule", "report", "zanzibar", "=?utf-8?"]


def decoding(raw, structure, needles):
    text = mime.decoded_text(raw, structure).casefold()
    return frozenset(n for n in needles if n in text)


def check(raw, needles):
    structure = mime.analyze(raw)["structure"]
    needles = frozenset(n.casefold() for n in needles)
    want = decoding(raw, structure, needles)
    assert mime.find_text(raw, structure, needles) == want
    extent = mime.text_extent(structure)
    assert extent is not None
    assert mime.decoded_text(raw[:extent], structure) == mime.decoded_text(raw, structure)
    assert mime.find_text(raw[:extent], structure, needles) == want
    return want


@pytest.mark.parametrize("name", FILES)
def test_corpus_answers_like_decoding(name):
    with open(os.path.join(MAIL, name), "rb") as f:
        raw = f.read()
    for i in range(0, len(NEEDLES), 3):
        check(raw, NEEDLES[i:i + 3])
    words = mime.decoded_text(raw, mime.analyze(raw)["structure"]).split()
    if words:
        assert check(raw, [words[len(words) // 2]])  # a word that is there is found


def plain(body: bytes, ctype=b"text/plain", cte=b"7bit", charset=b"us-ascii"):
    return (b"Subject: t\r\nContent-Type: " + ctype + b"; charset=" + charset +
            b"\r\nContent-Transfer-Encoding: " + cte + b"\r\n\r\n" + body)


@pytest.mark.parametrize("raw, needle, found", [
    (plain(b"Quetzalcoatl lives\r\n"), "quetzal", True),
    (plain(b"<b>quet</b>zal", b"text/html"), "quetzal", False),      # the tag leaves a space
    (plain(b"<b>quet</b>zal", b"text/html"), "quet zal", True),
    (plain(b'<a title="quetzal">x</a>', b"text/html"), "quetzal", False),  # only inside a tag
    (plain(b"quetz&#97;l", b"text/html"), "quetzal", True),           # an entity
    (plain(b"\xe2\x84\xaa", charset=b"utf-8", cte=b"8bit"), "k", True),  # KELVIN SIGN casefolds to k
    (plain(b"Stra\xc3\x9fe", charset=b"utf-8", cte=b"8bit"), "strasse", True),
    (plain(b"quetz+AGE-lcoatl", charset=b"utf-7"), "quetzalcoatl", True),  # ASCII, not identity
    (plain(base64.encodebytes(b"quetzal"), cte=b"base64"), "quetzal", True),
    (plain(quopri.encodestring(b"quet=zal"), cte=b"quoted-printable"), "quet=zal", True),
    (b"Subject: x\r\nContent-Type: message/rfc822\r\n\r\nSubject: =?utf-8?q?quetzal?=\r\n\r\nbody\r\n",
     "quetzal", True),                                                # encapsulated header, decoded
    (b"Subject: quetzal\r\n\r\nno", "quetzal", False),                # the top header is not text
    (b"Subject: x\r\nContent-Type: application/octet-stream\r\n\r\nquetzal", "quetzal", False),
    (b"Subject: x\r\nContent-Type: application/pdf\r\n\r\n", "", True),  # "" is in every text
])
def test_traps(raw, needle, found):
    assert check(raw, [needle]) == (frozenset([needle]) if found else frozenset())


def test_random_mime_trees_answer_like_decoding():
    rng = random.Random(20261122)
    words = ["quetzal", "Quetzal", "QUETZAL", "qu<b>etzal</b>", "quet&#122;al", "quet zal", "hello",
             "world", "K", "\u212a", "stra\u00dfe", "a&amp;b", "<p>", "caf\u00e9", "x y", "\u017f", "tag<i>x"]
    needles = ["quetzal", "quet zal", "k", "strasse", "a&b", "<p>", "x y", "", "s", "hello world",
               "hello\nworld", "café", "tag<i>x", "tagx", "tag x", "b>etzal"]

    def text():
        return " ".join(rng.choice(words) for _ in range(rng.randint(0, 10)))

    def leaf():
        sub = rng.choice(["plain", "html", "enriched"])
        cs = rng.choice(["us-ascii", "utf-8", "iso-8859-1", "utf-7", "utf-16", None, "bogus"])
        enc = rng.choice(["7bit", "8bit", "quoted-printable", "base64", None])
        try:
            data = text().encode(cs if cs and cs != "bogus" else "utf-8")
        except UnicodeEncodeError:
            data = text().encode("utf-8")
        if enc == "base64":
            data = base64.encodebytes(data)
        elif enc == "quoted-printable":
            data = quopri.encodestring(data)
        head = "Content-Type: text/%s%s\r\n" % (sub, "; charset=" + cs if cs else "")
        head += "Content-Transfer-Encoding: %s\r\n" % enc if enc else ""
        return head.encode() + b"\r\n" + data

    def entity(depth):
        r = rng.random()
        if depth < 3 and r < 0.3:
            b = b"b%d" % rng.randint(0, 9999)
            parts = b"".join(b"--" + b + b"\r\n" + entity(depth + 1) + b"\r\n" for _ in range(rng.randint(1, 3)))
            return (b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\nquetzal\r\n" + parts +
                    b"--" + b + b"--\r\n")
        if depth < 3 and r < 0.4:
            return (b"Content-Type: message/rfc822\r\n\r\nSubject: " + text().encode() +
                    b"\r\nFrom: =?utf-8?q?quetzal?= <a@b>\r\n" + entity(depth + 1))
        return leaf()

    for _ in range(1500):
        raw = b"From: a@b\r\nSubject: s\r\n" + entity(0)
        check(raw, rng.sample(needles, rng.randint(1, 4)))


def test_broken_structure_falls_back_to_decoding():
    raw = plain(b"quetzal")
    assert mime.find_text(raw, {"parts": [{"type": "text"}]}, ["quetzal"]) == decoding(
        raw, {"parts": [{"type": "text"}]}, ["quetzal"])
    assert mime.text_extent({"parts": "nonsense"}) is None
