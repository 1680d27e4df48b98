"""Store.message_previews (IMAP PREVIEW, RFC 8970) on every engine and both blob layouts: what
formats.mime.preview says of each message, cached per blob after the first call, shared
by copies, purged with the blob; the Store base class's slow default answers the same."""

from __future__ import annotations

from formats import mime
from store.interfaces import Store

from . import test_bulk_reads

corpus = test_bulk_reads.corpus  # the tests/data/mail corpus in a fresh INBOX, inline and file blobs


def test_previews_computed_then_cached(store, backstage, run, corpus):
    account, folder_id, raws = corpus
    recs = {r.meta.uid: r for r in run(store.fetch_messages, folder_id, list(raws))}
    stored = {uid: run(store.read_blob, recs[uid].blob_id) for uid in raws}
    expected = {uid: mime.preview(raw, mime.analyze(raw)["structure"]) for uid, raw in stored.items()}
    assert any(expected.values()) and all(len(p) <= 256 for p in expected.values())
    assert backstage.count("blob_previews") == 0
    assert run(Store.message_previews, store, folder_id, list(raws)) == expected  # the slow default
    assert run(store.message_previews, folder_id, list(raws)) == expected
    assert backstage.count("blob_previews") == len(set(r.blob_id for r in recs.values()))
    # the cache answers now, even when it says something else than the blob would
    uid = next(u for u, p in expected.items() if p)
    backstage.execute("UPDATE blob_previews SET preview = ? WHERE blob_id = ?", "cached text", recs[uid].blob_id)
    assert run(store.message_previews, folder_id, [uid]) == {uid: "cached text"}
    # a copy shares its blob, so its preview; expunged messages are left out
    trash = run(store.create_folder, account.id, "Copies")
    res = run(store.copy_messages, account.id, folder_id, [uid], trash.id)
    assert run(store.message_previews, trash.id, [res.pairs[0][1]]) == {res.pairs[0][1]: "cached text"}
    run(store.store_flags, account.id, folder_id, [uid], "add", ["\\Deleted"])
    run(store.expunge, account.id, folder_id)
    assert uid not in run(store.message_previews, folder_id, list(raws))
    assert run(store.message_previews, folder_id, []) == {}
    # the purge takes a blob's preview with the blob (the copy still holds that one)
    gone_blob = recs[uid].blob_id
    others = [u for u in raws if u != uid and recs[u].blob_id != gone_blob]
    run(store.store_flags, account.id, folder_id, others, "add", ["\\Deleted"])
    run(store.expunge, account.id, folder_id)
    before = backstage.count("blob_previews")
    run(store.purge, 0)
    assert backstage.count("blob_previews") == 1 == before - len({recs[u].blob_id for u in others})
    assert backstage.scalar("SELECT blob_id FROM blob_previews") == gone_blob
