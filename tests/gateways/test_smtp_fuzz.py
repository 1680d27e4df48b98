"""Fuzz-style: no RecursionError (nor any other exception) reaches an LMTP or submission client.
Random, deeply nested, truncated and mutated command lines (seeded, tests/fuzz.py) go over the
wire to a real ``haven serve`` (both engines), in a transaction and out of one: every one gets
a 2xx, 4xx or 5xx reply and the session still serves the next command (after a 421 for too
many errors, a new session does).  Then a message whose MIME nests far past
formats.mime.MAX_DEPTH goes through each, and is stored."""

from __future__ import annotations

import random

import pytest

from tests.fuzz import cases
from tests.gateways.lmtp.wire import Transcript
from tests.gateways.smtp_helpers import imap_messages
from tests.gateways.imap.test_imap_fuzz import _deep_mime
from tests.gateways.submission.wire import connect

VALID = [b"MAIL FROM:<a@example.org> BODY=8BITMIME SIZE=100", b"RCPT TO:<b@example.test> NOTIFY=NEVER",
         b"MAIL FROM:<\"quoted local\"@[127.0.0.1]> SMTPUTF8", b"VRFY <b@example.test>", b"NOOP hello", b"RSET",
         b"RCPT TO:<@relay.example,@other.example:b@example.test>", b"HELP MAIL"]
NESTS = [(b"MAIL FROM:", b"<", b">", b"a@b.c"), (b"RCPT TO:", b"<", b">", b"x@example.test"),
         (b"MAIL FROM:<a@b.c> ", b"X=(", b")", b"y"), (b"RCPT TO:<", b"@r.example,", b"", b":x@example.test>"),
         (b"NOOP ", b"(", b")", b"x"), (b"VRFY ", b"\"", b"\"", b"x")]
TOKENS = [b"MAIL ", b"RCPT ", b"FROM:", b"TO:", b"<", b">", b"@", b"a", b".", b" ", b"=", b"\"", b"\\", b"[", b"]",
          b"SIZE=", b"BODY=", b"NOOP", b"RSET", b"\xc3\xa9", b"\x00", b"\t", b"9999999999999999999999"]
VERBS_TO_AVOID = (b"DATA", b"BDAT", b"QUIT", b"STARTTLS", b"AUTH")


def smtp_cases(seed: int, n: int = 250) -> list:
    out = []
    for case in cases(random.Random(seed), VALID, NESTS, TOKENS, n):
        case = case.replace(b"\r", b" ").replace(b"\n", b" ")[:2000]  # one line, within the line limit
        if not case.strip().upper().startswith(VERBS_TO_AVOID):
            out.append(case)
    return out


def _fuzz(open_session, case_list) -> dict:
    codes = {}
    session = open_session()
    try:
        for case in case_list:
            reply = session.cmd(case)
            assert 200 <= reply.code < 600, (case[:200], str(reply))
            assert "Traceback" not in str(reply) and "RecursionError" not in str(reply)
            codes[reply.code // 100] = codes.get(reply.code // 100, 0) + 1
            if reply.code == 421 or "goodbye" in str(reply).lower():
                # too many errors (aiosmtpd: 502 "Too many unrecognized commands, goodbye."),
                # and closed: a protocol answer; a new session is served
                session.close()
                session = open_session()
        assert session.cmd("RSET").code == 250 and session.cmd("NOOP").code == 250
    finally:
        session.close()
    return codes


def test_lmtp_commands(haven):
    user, password = haven.new_user("lmtpfuzz")

    def session():
        t = Transcript(haven.lmtp)
        assert t.lhlo().code == 250
        return t
    codes = _fuzz(session, smtp_cases(2033))
    assert codes.get(5, 0) > 50
    haven.deliver(user, _deep_mime(3000))
    assert b"Subject: deep 3000" in imap_messages(haven, user, password)[-1]
    assert "RecursionError" not in haven.log()


class _Submission:
    """smtplib as a transcript: ``cmd(line)`` -> a reply with ``code``."""

    def __init__(self, haven, user, password):
        self.s = connect(haven)
        self.s.login(user, password)

    def cmd(self, line):
        self.s.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        code, text = self.s.getreply()
        return _Reply(code, text.decode("utf-8", "replace"))

    def close(self):
        try:
            self.s.close()
        except Exception:
            pass


class _Reply:
    def __init__(self, code, text):
        self.code, self.text = code, text

    def __str__(self):
        return f"{self.code} {self.text}"


def test_submission_commands(haven):
    user, password = haven.new_user("subfuzz")
    rcpt, rpw = haven.new_user("subrcpt")
    mine = [c.replace(b"a@example.org", user.encode()).replace(b"b@example.test", rcpt.encode())
            for c in smtp_cases(6409)]
    codes = _fuzz(lambda: _Submission(haven, user, password), mine)
    assert codes.get(5, 0) > 50
    with connect(haven) as s:
        s.login(user, password)
        deep = _deep_mime(3000).replace(b"<deep@example.org>", f"<{user}>".encode())
        assert s.sendmail(user, [rcpt], deep) == {}
    assert b"Subject: deep 3000" in imap_messages(haven, rcpt, rpw)[-1]
    assert "RecursionError" not in haven.log()


@pytest.mark.parametrize("seed", [1])
def test_cases_are_reproducible(seed):
    assert smtp_cases(seed, 50) == smtp_cases(seed, 50)
