"""SEARCH with the store's text index (Store.text_candidates) answers what a brute-force scan
answers: over a generated corpus (UTF-8, ISO-8859-1, encoded-words in headers, quoted-printable
and base64 parts, HTML, message/rfc822), random SUBJECT/FROM/TO/CC/BCC/BODY/TEXT keys alone, ANDed,
under OR and NOT, on both engines; and with the index rows gone (messages stored before the
index), the same again."""

from __future__ import annotations

import random

import pytest

from formats import mime
from gateways.imap.parser import parse_command
from gateways.imap.search import Context, index_terms, run_search
from tests.gateways.imap.test_search_and_cache import reference  # the brute-force answer
from store.interfaces import INBOX
from tests.store.textcorpus import corpus, needles

SEED = 4711
COUNT = 150
KEYS = ["SUBJECT", "FROM", "TO", "CC", "BCC", "BODY", "TEXT"]


def _quoted(text: str) -> bytes:
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("utf-8") + b'"'


def _criteria(rng: random.Random) -> bytes:
    def key() -> bytes:
        return rng.choice(KEYS).encode() + b" " + _quoted(needles(rng))
    shape = rng.random()
    if shape < 0.35:
        return key()
    if shape < 0.7:
        return key() + b" " + key()
    if shape < 0.85:
        return b"OR " + key() + b" " + key()
    return b"NOT " + key() + b" " + key()


@pytest.fixture
def generated(store, run):
    account = run(store.create_account, "bob@example.test", "x", "Bob")
    inbox = run(store.get_folder, account.id, INBOX)
    raws = {}
    for raw in corpus(SEED, COUNT):
        raws[run(store.append_message, account.id, inbox.id, raw)[1]] = raw
    return account, inbox, raws


def _search(store, run, inbox, metas, node) -> list:
    got = run(run_search, store, inbox.id, [m.uid for m in metas], {m.uid: m for m in metas}, node,
              Context(len(metas), metas[-1].uid))
    return [m.meta.uid for m in got]


async def _forget_index(store):
    await store._run("test", lambda txn: txn.execute("DELETE FROM message_text") and txn.execute("DELETE FROM message_body") and None)


async def _forget_some(store, uids, folder_id):
    def forget(txn):
        for uid in uids:
            blob = txn.scalar("SELECT blob_id FROM messages WHERE folder_id = ? AND uid = ?", (folder_id, uid))
            txn.execute("DELETE FROM message_text WHERE blob_id = ?", (blob,))
            txn.execute("DELETE FROM message_body WHERE blob_id = ?", (blob,))
    await store._run("test", forget)


def test_indexed_search_equals_brute_force(store, run, generated):
    _account, inbox, raws = generated
    metas = run(store.list_messages, inbox.id)
    rng = random.Random(SEED)
    cases = []
    for _ in range(80):
        criteria = _criteria(rng)
        node = parse_command(b"a SEARCH CHARSET UTF-8 " + criteria).args["criteria"]
        want = reference(node, metas, raws)
        assert _search(store, run, inbox, metas, node) == want, criteria
        cases.append((criteria, node, want))
    assert sum(1 for _c, node, want in cases if index_terms(node) and 0 < len(want) < len(metas)) > 20
    # BODY keys the index alone decides (an indexed message that passed it needs no text search),
    # beside keys that still need one, with half the messages not indexed
    body = []
    for _ in range(30):
        a, b = _quoted(needles(rng)), _quoted(needles(rng))
        body.append(rng.choice([b"BODY " + a, b"BODY " + a + b" BODY " + b, b"BODY " + a + b" NOT BODY " + a,
                                b"BODY " + a + b" NOT BODY " + b, b"BODY " + a + b" OR BODY " + b + b" SUBJECT " + a,
                                b"BODY " + a + b" TEXT " + a, b"BODY " + a + b" SUBJECT " + b]))
    for half in (False, True):
        if half:
            run(_forget_some, store, sorted({m.uid for m in metas})[::2], inbox.id)
        for criteria in body:
            node = parse_command(b"a SEARCH CHARSET UTF-8 " + criteria).args["criteria"]
            assert _search(store, run, inbox, metas, node) == reference(node, metas, raws), criteria
    run(_forget_index, store)  # as if stored before the index: every message is a candidate
    for criteria, node, want in cases[:20]:
        assert _search(store, run, inbox, metas, node) == want, criteria


def test_index_terms_only_from_the_top_conjunction():
    def terms(criteria: bytes) -> list:
        return index_terms(parse_command(b"a SEARCH " + criteria).args["criteria"])
    assert terms(b"BODY glacier SUBJECT orchid") == [("body", "glacier"), ("subject", "orchid")]
    assert terms(b"(FROM Ann (TO bob)) UNSEEN TEXT x") == [("from", "ann"), ("to", "bob"), ("text", "x")]
    assert terms(b"HEADER Subject Orchid BCC b CC c") == [("subject", "orchid"), ("bcc", "b"), ("cc", "c")]
    assert terms(b"OR BODY a BODY b") == [] and terms(b"NOT BODY a") == [] and terms(b'BODY ""') == []
    assert terms(b"HEADER X-Spam yes") == []


async def _index_rows(store) -> int:
    return await store._run("test", lambda txn: txn.scalar("SELECT COUNT(*) FROM message_text"))


def test_serve_indexes_older_messages_in_the_background(engine, haven_factory):
    """Messages without index rows (as stored before delta 007) are found by SEARCH at once,
    and `haven serve` indexes them in the background."""
    import imaplib
    import time
    from tests.conftest import run_on_reactor
    server = haven_factory(engine)
    address, password = server.new_user("idx")
    raws = corpus(SEED, 30)
    for raw in raws:
        server.deliver(address, raw)
    want = set()
    for i, raw in enumerate(raws, 1):
        info = mime.analyze(raw)
        if "glacier" in mime.decoded_text(raw, info["structure"]).casefold():
            want.add(i)
    assert 0 < len(want) < len(raws)
    server.stop()
    store = server.admin_store()
    run_on_reactor(_forget_index, store)
    server.start()
    imap = imaplib.IMAP4(*server.imap, timeout=15)
    try:
        imap.login(address, password)
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", "BODY", "GLACIER")
        assert typ == "OK" and {int(u) for u in data[0].split()} == want
        deadline = time.monotonic() + 20
        while run_on_reactor(_index_rows, store) < len(raws) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert run_on_reactor(_index_rows, store) == len(raws), server.log()
        typ, data = imap.uid("SEARCH", "BODY", "GLACIER")
        assert typ == "OK" and {int(u) for u in data[0].split()} == want
    finally:
        imap.logout()
