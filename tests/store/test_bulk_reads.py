"""The store's batched reads (read_blobs, fetch_messages_with_bodies, search_text) against every
engine and both blob layouts: they answer exactly what the one-message methods answer, and the
Store base class's slow defaults answer the same as SqlStore's overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from formats import mime
from store import errors
from store.interfaces import INBOX, Store

MAIL = Path(__file__).resolve().parent.parent / "data" / "mail"
FILES = sorted(MAIL.glob("*.eml"))
NEEDLES = frozenset(["", "the", "lunch", "report", "schedule", "zanzibar", "café", "k"])


@pytest.fixture(params=["inline", "file"])
def corpus(request, store, run):
    """The tests/data/mail corpus appended to a fresh INBOX: (store, folder id, {uid: raw})."""
    if request.param == "file":
        store.inline_blob_size = 0
    account = run(store.create_account, "bob@example.test", "x", "Bob")
    inbox = run(store.get_folder, account.id, INBOX)
    raws = {}
    for path in FILES:
        _uidvalidity, uid = run(store.append_message, account.id, inbox.id, path.read_bytes())
        raws[uid] = path.read_bytes()
    return account, inbox.id, raws


def test_read_blobs_equals_read_blob(store, run, corpus):
    _account, folder_id, raws = corpus
    recs = run(store.fetch_messages, folder_id, list(raws), structure=True)
    ids = [r.blob_id for r in recs]
    got = run(store.read_blobs, ids + ids[:3])  # duplicates are fine
    assert set(got) == set(ids)
    for r in recs:
        assert got[r.blob_id] == raws[r.meta.uid] == run(store.read_blob, r.blob_id)
    # a prefix read holds at least the octets asked for, and they are the message's
    prefix = {r.blob_id: mime.text_extent(r.structure) for r in recs}
    for _ in range(2):  # the second time some come from the raw cache: same answer
        cut = run(store.read_blobs, ids, prefix)
        for r in recs:
            want = raws[r.meta.uid]
            n = min(prefix[r.blob_id], len(want))
            assert len(cut[r.blob_id]) >= n and want.startswith(cut[r.blob_id])
    assert run(store.read_blobs, []) == {}
    assert run(Store.read_blobs, store, ids[:2]) == {b: got[b] for b in ids[:2]}


def test_fetch_messages_with_bodies(store, run, corpus):
    account, folder_id, raws = corpus
    uids = sorted(raws)
    run(store.store_flags, account.id, folder_id, uids[:2], "add", ["\\Deleted"])
    run(store.expunge, account.id, folder_id)
    asked = uids + [max(uids) + 10]  # expunged and unknown UIDs are left out
    plain = run(store.fetch_messages, folder_id, asked, envelope=True, structure=True, header=True)
    for _ in range(2):  # cold, then from the raw cache
        pairs = run(store.fetch_messages_with_bodies, folder_id, asked, envelope=True, structure=True,
                    header=True)
        assert [r for r, _raw in pairs] == plain
        assert [r.meta.uid for r, _raw in pairs] == uids[2:]
        for r, raw in pairs:
            assert raw == raws[r.meta.uid]
    default = run(Store.fetch_messages_with_bodies, store, folder_id, asked)
    assert [(r.meta.uid, raw) for r, raw in default] == [(r.meta.uid, raw) for r, raw in pairs]


def test_search_text_answers_like_decoding(store, run, corpus):
    account, folder_id, raws = corpus
    uids = sorted(raws)
    expected = {}
    for uid, raw in raws.items():
        text = mime.decoded_text(raw, mime.analyze(raw)["structure"]).casefold()
        expected[uid] = frozenset(n for n in NEEDLES if n in text)
    assert any(e - {""} for e in expected.values()) and not all(e - {""} for e in expected.values())
    assert run(store.search_text, folder_id, uids, NEEDLES) == expected
    assert run(Store.search_text, store, folder_id, uids, NEEDLES) == expected
    run(store.store_flags, account.id, folder_id, uids[:1], "add", ["\\Deleted"])
    run(store.expunge, account.id, folder_id)
    assert uids[0] not in run(store.search_text, folder_id, uids, NEEDLES)
    assert run(store.search_text, folder_id, [], NEEDLES) == {}


def test_missing_and_corrupt_blobs(store, backstage, run, corpus):
    _account, folder_id, raws = corpus
    uid = min(raws)
    rec = run(store.fetch_messages, folder_id, [uid])[0]
    if backstage.blob_file_exists(rec.blob_id):
        backstage.remove_blob_file(rec.blob_id)
        expected = errors.NotFound
    else:
        backstage.execute("UPDATE blobs SET data = ? WHERE id = ?", b"not zlib", rec.blob_id)
        expected = errors.TemporaryFailure
    with pytest.raises(expected):
        run(store.read_blobs, [rec.blob_id])
    with pytest.raises(expected):
        run(store.fetch_messages_with_bodies, folder_id, [uid])
    with pytest.raises(expected):
        run(store.search_text, folder_id, [uid], ["x"])
