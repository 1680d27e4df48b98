"""Fuzz-style: no RecursionError (nor any other exception) reaches an IMAP client.  Deeply nested,
random, truncated and mutated commands (seeded, tests/fuzz.py) go to the parser directly and
then over the wire to a real ``haven serve`` (both engines): every one is answered OK, NO or
BAD, and the session still serves the next command.  A deeply nested MIME message delivered
over LMTP is stored and served (its structure opaque beyond formats.mime.MAX_DEPTH)."""

from __future__ import annotations

import random

import pytest

from gateways.imap import search
from gateways.imap.parser import ParseError, parse_command
from tests.fuzz import cases
from tests.gateways.smtp_helpers import imap_messages
from .wire import Wire

VALID = [b"SEARCH OR (FROM a SUBJECT b) NOT (SEEN UID 1:*) SINCE 1-Jan-2020",
         b"UID SEARCH CHARSET UTF-8 TEXT \"x\" OR OR ALL NEW (LARGER 10 SMALLER 20)",
         b"FETCH 1:* (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (SUBJECT FROM)]<0.10> BODYSTRUCTURE)",
         b"STORE 1 +FLAGS.SILENT (\\Seen $Junk)",
         b"LIST \"\" (\"INBOX\" \"Sent\") RETURN (SUBSCRIBED CHILDREN)",
         b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN)",
         b"ID (\"name\" \"fuzz\" \"version\" \"1\")",
         b"UID FETCH 1:* (BODY[HEADER] ENVELOPE) (CHANGEDSINCE 1)"]
NESTS = [(b"SEARCH ", b"(", b")", b"ALL"), (b"SEARCH ", b"NOT ", b"", b"SEEN"), (b"SEARCH ", b"OR ALL ", b"", b"ALL"),
         (b"UID SEARCH ", b"(NOT ", b")", b"ALL"), (b"FETCH 1 ", b"(", b")", b"FLAGS"), (b"ID ", b"(", b")", b"NIL"),
         (b"STORE 1 FLAGS ", b"(", b")", b"\\Seen"), (b"FETCH 1 BODY[", b"1.", b"", b"1]"),
         (b"LIST \"\" ", b"(", b")", b"\"x\"")]
TOKENS = [b"SEARCH ", b"FETCH ", b"(", b")", b"NOT ", b"OR ", b"ALL ", b"\"x\" ", b"1:* ", b"BODY[", b"]", b"<0.5>",
          b"HEADER ", b"UID ", b"\\Seen ", b" ", b"\"", b"\\", b"*", b"NIL ", b"~{", b"SUBJECT "]


def imap_cases(seed: int, n: int = 300) -> list:
    return cases(random.Random(seed), VALID, NESTS, TOKENS, n)


def test_parser_answers_every_case_with_a_parse_error_or_a_command():
    for case in imap_cases(20261205, 400):
        try:
            cmd = parse_command(b"a1 " + case)
        except ParseError:
            continue
        # the grammar's tree is walked by the search code: bounded too
        keys = cmd.args.get("keys") or cmd.args.get("criteria")
        if isinstance(keys, tuple):
            search.needs(keys)
            search.text_needles(keys)
            search.uses_modseq(keys)


def _deep_mime(depth: int) -> bytes:
    head = tail = b""
    for i in range(depth):
        head += b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
        tail = b"\r\n--b%d--\r\n" % i + tail
    return (b"From: <deep@example.org>\r\nSubject: deep %d\r\nMIME-Version: 1.0\r\n" % depth + head
            + b"Content-Type: text/plain\r\n\r\nthe innermost text\r\n" + tail)


@pytest.fixture(scope="module")
def account(haven):
    user, password = haven.new_user("fuzz")
    haven.deliver(user, b"From: <a@example.org>\r\nSubject: plain\r\n\r\nhello\r\n")
    for depth in (60, 2000):  # past formats.mime.MAX_DEPTH: stored, nested parts opaque
        haven.deliver(user, _deep_mime(depth))
    return user, password


def test_deeply_nested_mime_is_delivered_and_served(haven, account):
    user, password = account
    stored = imap_messages(haven, user, password)
    assert len(stored) == 3 and b"Subject: deep 2000" in stored[2]
    with Wire(haven.imap) as w:
        assert w.cmd(f"LOGIN {user} {password}")[-1].split()[1] == b"OK"
        assert w.cmd("SELECT INBOX")[-1].split()[1] == b"OK"
        for item in ("BODYSTRUCTURE", "BODY", "BODY.PEEK[" + "1." * 1500 + "1]", "BODY.PEEK[" + "1." * 40 + "TEXT]"):
            lines = w.cmd(f"FETCH 2:3 ({item})")
            assert lines[-1].split()[1] in (b"OK", b"NO", b"BAD"), lines[-1]
        assert w.cmd("SEARCH TEXT innermost")[-1].split()[1] == b"OK"
        assert w.cmd("NOOP")[-1].split()[1] == b"OK"


def test_fuzzed_commands_over_the_wire(haven, account):
    user, password = account
    answers = {}
    with Wire(haven.imap, timeout=30) as w:
        assert w.cmd(f"LOGIN {user} {password}")[-1].split()[1] == b"OK"
        assert w.cmd("SELECT INBOX")[-1].split()[1] == b"OK"
        for case in imap_cases(4190):
            case = case.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"{", b"(")  # one line, no literal
            lines = w.cmd(case)
            assert not any(line.startswith(b"* BYE") for line in lines), (case[:200], lines[-3:])
            status = lines[-1].split(b" ", 2)[1]
            assert status in (b"OK", b"NO", b"BAD"), (case[:200], lines[-1])
            answers[status] = answers.get(status, 0) + 1
            text = b"\n".join(lines)
            assert b"Traceback" not in text and b"RecursionError" not in text
        assert w.cmd("NOOP")[-1].split()[1] == b"OK"
        assert w.cmd("SEARCH ALL")[-1].split()[1] == b"OK"
    assert answers.get(b"BAD", 0) > 100  # most cases are malformed, as meant
    assert "RecursionError" not in haven.log()
