"""SEARCH evaluation over a real store in small batches (several text batches in flight at once)
against a reference answer computed here from the raw messages; and the ENVELOPE cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats import mime
from store.interfaces import INBOX

from gateways.imap import response
from gateways.imap.fetch import EnvelopeCache
from gateways.imap.parser import parse_command
from gateways.imap.search import Candidate, Context, evaluate, run_search, text_needles

MAIL = Path(__file__).resolve().parents[2] / "data" / "mail"


def test_envelope_cache_lru_by_folder_and_octets():
    cache = EnvelopeCache(max_bytes=3 * (10 + EnvelopeCache.ENTRY_OVERHEAD))
    for uid in (1, 2, 3):
        cache.put(7, 100, uid, b"x" * 10)
    assert cache.get_many(7, 100, [1, 2, 3, 4]) == {1: b"x" * 10, 2: b"x" * 10, 3: b"x" * 10}
    assert cache.get_many(7, 101, [1]) == {} and cache.get_many(8, 100, [1]) == {}  # other UIDVALIDITY, folder
    cache.put(7, 100, 4, b"y" * 10)
    assert sorted(cache.get_many(7, 100, [1, 2, 3, 4])) == [2, 3, 4]  # the folder's oldest went
    cache.put(7, 100, 4, b"z" * 10)  # replacing keeps the size right
    assert len(cache) == 3 and cache.size == 3 * (10 + EnvelopeCache.ENTRY_OVERHEAD)
    cache.put(9, 100, 1, b"v" * 10)  # another folder: the least recently used folder gives way
    assert sorted(cache.get_many(7, 100, [2, 3, 4])) == [3, 4] and cache.get_many(9, 100, [1]) == {1: b"v" * 10}
    cache.get_many(7, 100, [3])  # folder 7 is now the most recently used
    cache.put(7, 100, 5, b"u" * 10)
    assert cache.get_many(9, 100, [1]) == {} and sorted(cache.get_many(7, 100, [3, 4, 5])) == [3, 4, 5]
    cache.put(7, 100, 6, b"w" * 1000)  # bigger than everything: the rest goes
    assert cache.get_many(7, 100, [3, 4, 5, 6]) == {} and len(cache) == 0 and cache.size == 0


@pytest.fixture
def mailbox(store, run):
    """The tests/data/mail corpus appended twice, as files (a second batch of blobs)."""
    account = run(store.create_account, "bob@example.test", "x", "Bob")
    inbox = run(store.get_folder, account.id, INBOX)
    raws = {}
    for copy in range(2):
        if copy:
            store.inline_blob_size = 0
        for path in sorted(MAIL.glob("*.eml")):
            raw = path.read_bytes().replace(b"Subject:", b"X-Copy: %d\r\nSubject:" % copy, 1)
            raws[run(store.append_message, account.id, inbox.id, raw)[1]] = raw
    return account, inbox, raws


def reference(node, metas, raws) -> list:
    """What SEARCH must answer, evaluating every message with its header and decoded text."""
    ctx = Context(len(metas), metas[-1].uid)
    out = []
    for i, meta in enumerate(metas):
        raw = raws[meta.uid]
        info = mime.analyze(raw)
        c = Candidate(i + 1, meta)
        c.header = raw[:info["header_end"]]
        c.text = mime.decoded_text(raw, info["structure"]).casefold()
        if evaluate(node, c, ctx):
            out.append(meta.uid)
    return out


@pytest.mark.parametrize("criteria", [
    b"BODY zanzibar", b"BODY the", b"NOT BODY the", b"OR BODY zanzibar SUBJECT lunch",
    b"TEXT lunch", b"TEXT example", b"BODY the SUBJECT report", b"OR (BODY the UNSEEN) TEXT q1",
    b'NOT (OR BODY schedule BODY "caf\xc3\xa9")', b"HEADER X-Copy 1 BODY the", b'BODY ""', b"UID 3:9 BODY a",
])
def test_run_search_in_small_batches(store, run, mailbox, criteria):
    account, inbox, raws = mailbox
    run(store.store_flags, account.id, inbox.id, [2, 5, 30], "add", ["\\Seen"])
    metas = run(store.list_messages, inbox.id)
    node = parse_command(b"a SEARCH CHARSET UTF-8 " + criteria).args["criteria"]
    want = reference(node, metas, raws)
    for batch, window in ((3, 2), (7, 3), (500, 2)):
        ctx = Context(len(metas), metas[-1].uid)
        got = run(run_search, store, inbox.id, [m.uid for m in metas], {m.uid: m for m in metas}, node, ctx,
                  batch, window)
        assert [m.meta.uid for m in got] == want, (batch, window)


def test_text_needles():
    node = parse_command(b'a SEARCH OR BODY A (NOT TEXT "b c") SUBJECT d').args["criteria"]
    assert text_needles(node) == {"a", "b c"}


def test_envelope_bytes_are_what_fetch_renders():
    raw = (MAIL / "group-syntax.eml").read_bytes()
    env = mime.analyze(raw)["envelope"]
    assert response.envelope(env) == response.envelope(tuple(env))


# -- on the wire -------------------------------------------------------------------------------
def test_cached_envelopes_on_the_wire(haven):
    """Second FETCH (and another session's) answers from the ENVELOPE cache byte for byte; a
    message expunged elsewhere is left out even though its ENVELOPE is cached."""
    from .wire import Wire

    user = haven.new_user()
    with Wire(haven.imap) as a, Wire(haven.imap) as b:
        a.login(*user)
        b.login(*user)
        for name in ("plain-ascii.eml", "group-syntax.eml", "encoded-words.eml"):
            raw = (MAIL / name).read_bytes()
            a.ok(b"APPEND INBOX {%d+}\r\n%s" % (len(raw), raw))
        a.ok("SELECT INBOX")
        b.ok("SELECT INBOX")
        cold = a.ok("FETCH 1:* (UID ENVELOPE)")[:-1]
        assert len(cold) == 3 and cold[1].startswith(b'* 2 FETCH (UID 2 ENVELOPE ("')
        assert a.ok("FETCH 1:* (UID ENVELOPE)")[:-1] == cold
        assert b.ok("FETCH 1:* (UID ENVELOPE)")[:-1] == cold
        b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
        lines = a.ok("FETCH 1:* (UID ENVELOPE)")  # 2 is gone; RFC 3501 §7.4.1: no EXPUNGE here
        assert lines[:2] == [cold[0], cold[2]] and b"[EXPUNGEISSUED]" in lines[-1], lines
        assert any(line == b"* 2 EXPUNGE" for line in a.ok("NOOP"))
