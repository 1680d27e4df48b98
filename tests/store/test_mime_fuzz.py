"""Fuzz-style: the MIME parser (formats/mime.py) answers every input, deeply nested multiparts
and message/rfc822 bodies, random, truncated and mutated messages (seeded, tests/fuzz.py),
without an exception; its structure stops at MAX_DEPTH (deeper parts opaque).  And delivery
stores such a message, through the Sieve rules too, on every engine."""

from __future__ import annotations

import json
import random

from formats import mime
from tests.fuzz import cases
from tests.store.test_submission import inbox

VALID = [b"From: =?utf-8?q?J=C3=B6rg?= <j@example.org>\r\nTo: a@b.c, \"x, y\" <x@y.z>\r\nSubject: =?utf-8?b?w6k=?=\r\n"
         b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"o\"\r\n\r\npre\r\n--o\r\n"
         b"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
         b"caf=E9\r\n--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: multipart/alternative;"
         b" boundary=i\r\n\r\n--i\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--i--\r\n--o\r\n"
         b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--o--\r\n"]
NESTS = [(b"Subject: mp\r\n", b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n', b"\r\n--b--\r\n",
          b"Content-Type: text/plain\r\n\r\nleaf"),
         (b"Subject: rfc822\r\n", b"Content-Type: message/rfc822\r\n\r\n", b"", b"Subject: leaf\r\n\r\nbody"),
         (b"Subject: digest\r\n", b'Content-Type: multipart/digest; boundary="d"\r\n\r\n--d\r\n', b"\r\n--d--\r\n",
          b"\r\nleaf"),
         (b"Subject: ", b"=?utf-8?q?", b"?=", b"x")]
TOKENS = [b"Content-Type: ", b"multipart/mixed; boundary=", b"\"b\"", b"\r\n", b"--b", b"--", b"message/rfc822",
          b"\r\n\r\n", b"Content-Transfer-Encoding: base64", b"=?", b"?q?", b"?=", b";", b"\t", b" ", b"\x00", b"\xff"]


def mime_cases(seed: int, n: int = 300) -> list:
    return cases(random.Random(seed), VALID, NESTS, TOKENS, n)


def _depth(part: dict) -> int:
    deepest, level = 0, [part]
    while level:
        deepest += 1
        nxt = []
        for p in level:
            nxt.extend(p.get("parts") or ())
            if p.get("message"):
                nxt.append(p["message"].get("structure") or {})
        level = nxt
    return deepest


def test_every_input_is_analyzed_and_read_without_an_exception():
    for raw in mime_cases(2045, 400):
        info = mime.analyze(raw)
        structure = info["structure"]
        json.dumps(info)  # stored as JSON with the message
        assert _depth(structure) <= mime.MAX_DEPTH + 2
        mime.decoded_text(raw, structure)
        mime.text_extent(structure)
        mime.find_text(raw, structure, frozenset(["leaf", "x"]))
        for path in ([1], [1] * 10, [1] * 60, [2, 1], [9999]):
            mime.section_offsets(structure, path)
        mime.header_fields(raw[:info["header_end"]])
        mime.decode_header_value(raw[:2000].decode("latin-1"))


def test_deep_mime_is_delivered_through_rules(store, run):
    account = run(store.create_account, "deep@example.test", "x")
    run(store.put_sieve_script, account.id, "r",
        'require ["body", "fileinto"];\n'
        'if anyof (body :text :contains "leaf", header :contains "subject" "never") { keep; }\n')
    run(store.set_active_sieve_script, account.id, "r")
    deep = [c for c in mime_cases(2046) if len(c) > 20000][:4]
    assert deep

    async def deliver(raw):
        delivery = store.begin_delivery("a@example.org")
        await delivery.add_recipient("deep@example.test")
        return await delivery.commit(raw)
    for raw in deep:
        assert [r.error for r in run(deliver, raw)] == [None]
    assert len(inbox(store, run, account.id)) == len(deep)
