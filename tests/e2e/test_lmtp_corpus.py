"""Real-world mail, broken mail included, in over LMTP and back out over IMAP byte for byte.

Every ``tests/data/mail/*.eml`` is sent as its file bytes (dot-stuffed, nothing else done to
them) in one LMTP session; each must get ``250`` and come back over IMAP ``BODY[]`` as exactly
those bytes after the Return-Path/Received pair Haven prepends, with bare LFs as CRLF
(gateways/lmtp: the one normalization it does) and a final line break when the file had none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateways.lmtp.wire import Transcript, crlf_normalized, split_trace
from tests.gateways.smtp_helpers import imap_messages

MAIL = Path(__file__).resolve().parent.parent / "data" / "mail"
FILES = sorted(MAIL.glob("*.eml"))


def wire_for(raw: bytes) -> bytes:
    """The DATA stream for ``raw`` sent as-is but for what the end marker needs: a leading dot
    doubled on every CRLF line (RFC 5321 §4.5.2), and the message ending in CRLF (a final bare
    LF becomes one, as in any MTA; otherwise a CRLF is added)."""
    if raw.endswith(b"\n") and not raw.endswith(b"\r\n"):
        raw = raw[:-1] + b"\r\n"
    stuffed = raw.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    if stuffed and not stuffed.endswith(b"\r\n"):
        stuffed += b"\r\n"
    return stuffed + b".\r\n"


@pytest.fixture(scope="module")
def corpus(haven):
    """{file name: (DATA reply, stored bytes)}: one LMTP session delivering every file, one IMAP
    session reading them all back (UID order = delivery order)."""
    address, password = haven.new_user("corpus")
    replies = {}
    with Transcript(haven.lmtp, timeout=30) as t:
        t.lhlo("corpus.example")
        for path in FILES:
            assert t.cmd("MAIL FROM:<corpus@example.org> BODY=8BITMIME").code == 250
            assert t.cmd(f"RCPT TO:<{address}>").code == 250
            assert t.cmd("DATA").code == 354
            t.send(wire_for(path.read_bytes()))
            replies[path.name] = t.reply()
        assert t.cmd("QUIT").code == 221
    delivered = [name for name, reply in replies.items() if reply.code == 250]
    stored = dict(zip(delivered, imap_messages(haven, address, password)))
    return {name: (reply, stored.get(name)) for name, reply in replies.items()}


def test_corpus_is_not_empty():
    assert len(FILES) >= 10, f"expected the mail corpus in {MAIL}"


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_delivered_and_read_back_byte_identical(corpus, path):
    reply, stored = corpus[path.name]
    assert reply.code == 250 and reply.text.startswith("250 2.0.0 "), reply
    assert stored is not None, "delivered but not in the mailbox"
    trace, message = split_trace(stored)
    assert trace["path"] == "corpus@example.org"
    assert message == crlf_normalized(path.read_bytes())
