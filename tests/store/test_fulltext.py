"""The text index (store/fulltext.py) on both engines: over a generated corpus (charsets,
encoded-words, quoted-printable and base64, HTML, encapsulated messages) its BODY candidates are
exactly the messages whose decoded text holds the needle, and TEXT candidates cover them; it
stays exact through expunge, copy, restore and purge; messages without an index row (stored
before delta 007, or too long) are always candidates, and the backlog builder indexes them."""

from __future__ import annotations

import random

import pytest

from formats import mime
from store import textindex
from store.interfaces import INBOX, Store
from tests.store.textcorpus import corpus, needles

SEED = 20260
COUNT = 160


async def _sql(store, fn):
    return await store._run("test", fn)


def _count_rows(store, run, complete=None) -> int:
    sql = "SELECT COUNT(*) FROM message_text" + ("" if complete is None else f" WHERE complete = {complete}")
    return run(_sql, store, lambda txn: txn.scalar(sql))


@pytest.fixture
def generated(store, run):
    account = run(store.create_account, "bob@example.test", "x", "Bob")
    inbox = run(store.get_folder, account.id, INBOX)
    raws = {}
    for i, raw in enumerate(corpus(SEED, COUNT)):
        store.inline_blob_size = 0 if i % 4 == 0 else 64 * 1024  # some blob files, most inline
        raws[run(store.append_message, account.id, inbox.id, raw)[1]] = raw
    return account, inbox, raws


def _decoded(raws) -> dict:
    return {uid: mime.decoded_text(raw, mime.analyze(raw)["structure"]).casefold() for uid, raw in raws.items()}


def test_body_candidates_are_the_brute_force_answer(store, run, generated):
    _account, inbox, raws = generated
    texts = _decoded(raws)
    heads = {uid: raw[:mime.analyze(raw)["header_end"]].decode("utf-8", "replace").casefold()
             for uid, raw in raws.items()}
    rng = random.Random(SEED)
    narrowed = 0
    for _ in range(60):
        needle = needles(rng).casefold()
        want = {uid for uid, text in texts.items() if needle in text}
        got = run(store.text_candidates, inbox.id, [("body", needle)])
        assert got == want, needle
        narrowed += len(got) < len(raws)
        text = run(store.text_candidates, inbox.id, [("text", needle)])
        assert text >= want | {uid for uid, h in heads.items() if needle in h}, needle
        both = run(store.text_candidates, inbox.id, [("body", needle), ("text", "glacier")])
        assert both == got & run(store.text_candidates, inbox.id, [("text", "glacier")])
        # short and long terms together: the long ones are read only for rows the short ones pass
        mixed = run(store.text_candidates, inbox.id, [("body", needle), ("from", "e"), ("text", "a")])
        assert mixed == got & run(store.text_candidates, inbox.id, [("from", "e")]) \
            & run(store.text_candidates, inbox.id, [("text", "a")])
    assert narrowed > 30  # the index does narrow
    assert run(store.text_candidates, inbox.id, [("body", ""), ("nosuch", "x")]) is None
    assert run(Store.text_candidates, store, inbox.id, [("body", "x")]) is None  # the default: no index


def test_expunge_copy_restore_purge_keep_it_exact(store, run, generated):
    account, inbox, raws = generated
    texts = _decoded(raws)
    hits = sorted(uid for uid, text in texts.items() if "glacier" in text)
    assert len(hits) > 3
    other = run(store.create_folder, account.id, "Other")
    run(store.copy_messages, account.id, inbox.id, hits[:2], other.id)
    assert run(store.text_candidates, other.id, [("body", "glacier")]) == {1, 2}
    run(store.store_flags, account.id, inbox.id, hits[:3], "add", ["\\Deleted"])
    run(store.expunge, account.id, inbox.id)
    assert run(store.text_candidates, inbox.id, [("body", "glacier")]) == set(hits[3:])
    rows = _count_rows(store, run)
    run(store.delete_messages, account.id, other.id, [1, 2])  # the copies: the blobs of hits[0:2] unused
    deleted = run(store.list_deleted, account.id)
    run(store.restore_messages, account.id, [d["id"] for d in deleted if d["uid"] == hits[2]])
    restored = run(store.text_candidates, inbox.id, [("body", "glacier")])
    assert len(restored) == len(hits) - 2 and set(hits[3:]) < restored
    bodies = run(_sql, store, lambda txn: txn.scalar("SELECT COUNT(*) FROM message_body"))
    run(store.purge, 0)  # every tombstone goes; the two blobs no message holds go with their rows
    assert _count_rows(store, run) == rows - 2
    assert run(_sql, store, lambda txn: txn.scalar("SELECT COUNT(*) FROM message_body")) == bodies - 2
    assert run(store.text_candidates, other.id, [("body", "glacier")]) == set()


def test_unindexed_messages_are_candidates_until_the_backlog_is_built(store, run, generated):
    _account, inbox, raws = generated
    texts = _decoded(raws)
    want = {uid for uid, text in texts.items() if "orchid" in text}
    run(_sql, store, lambda txn: txn.execute("DELETE FROM message_text") and txn.execute("DELETE FROM message_body") and None)  # as before delta 007
    assert run(store.text_candidates, inbox.id, [("body", "orchid")]) == set(raws)
    assert run(store.text_matches, inbox.id, [("body", "orchid")]) == {uid: False for uid in raws}
    built = 0
    while True:
        n = run(store.index_backlog, 50)
        if not n:
            break
        built += n
        assert n <= 50
    assert built == len(set(raws.values()))  # one row per distinct content
    assert run(store.text_candidates, inbox.id, [("body", "orchid")]) == want
    assert run(store.text_matches, inbox.id, [("body", "orchid")]) == {uid: True for uid in want}
    assert _count_rows(store, run, complete=1) == built == run(_sql, store, lambda txn: txn.scalar(
        "SELECT COUNT(*) FROM message_body"))


def test_too_long_or_unreadable_text_is_always_a_candidate(store, run, monkeypatch):
    account = run(store.create_account, "ann@example.test", "x", "Ann")
    inbox = run(store.get_folder, account.id, INBOX)
    monkeypatch.setattr(textindex, "MAX_INDEXED", 100)
    long_uid = run(store.append_message, account.id, inbox.id,
                   b"Subject: long\r\n\r\n" + b"word " * 100 + b"\r\n")[1]
    monkeypatch.undo()
    short_uid = run(store.append_message, account.id, inbox.id, b"Subject: short\r\n\r\nword\r\n")[1]
    assert run(store.text_candidates, inbox.id, [("body", "nothing")]) == {long_uid}
    assert run(store.text_candidates, inbox.id, [("subject", "short")]) == {long_uid, short_uid}
    assert _count_rows(store, run, complete=0) == 1


def test_a_delta_landing_below_the_highest_applied_is_migrated(store, run):
    """Delta 007 arrives after later ones were applied (deltas are numbered on parallel
    branches): the database reads as behind until `haven db migrate` applies it."""
    def undo_007(txn):
        txn.execute("DROP TABLE message_text")
        txn.execute("DROP TABLE message_body")
        txn.execute("DROP INDEX messages_folder_blob" + (" ON messages" if txn.engine == "mysql" else ""))
        txn.execute("DELETE FROM applied_schema_deltas WHERE version = 7")
        txn.execute("INSERT INTO applied_schema_deltas (version, name, applied_at) VALUES (99, 'later', 0)")
    run(_sql, store, undo_007)
    current, latest = run(store.schema_version)
    assert current < 7 <= latest
    assert run(store.migrate) == ["007_search_index"]
    assert run(store.schema_version)[0] == 99  # a version this code does not know: "upgrade Haven"
    run(_sql, store, lambda txn: txn.execute("DELETE FROM applied_schema_deltas WHERE version = 99") and None)
    assert run(store.schema_version) == (latest, latest)
    assert run(store.text_candidates, 1, [("body", "x")]) == set()


def test_clustering_the_short_columns_keeps_every_row(store, run, generated):
    """Delta 011 rebuilds SQLite's message_text as a WITHOUT ROWID table (MariaDB's is clustered
    by its key already): an upgraded store answers exactly as before."""
    _account, inbox, _raws = generated
    queries = [[("subject", "e")], [("from", "o"), ("body", "a")], [("to", "example"), ("text", "the")]]
    before = [run(store.text_candidates, inbox.id, q) for q in queries]
    rows = _count_rows(store, run)

    def undo_011(txn):
        if txn.engine == "sqlite":  # back to the rowid table delta 007 made
            txn.execute("CREATE TABLE mt_old AS SELECT * FROM message_text")
            txn.execute("DROP TABLE message_text")
            txn.execute("CREATE TABLE message_text (blob_id CHAR(64) NOT NULL PRIMARY KEY, complete INTEGER "
                        "NOT NULL, subject BLOB, f_from BLOB, f_to BLOB, f_cc BLOB, f_bcc BLOB)")
            txn.execute("INSERT INTO message_text SELECT * FROM mt_old")
            txn.execute("DROP TABLE mt_old")
        txn.execute("DELETE FROM applied_schema_deltas WHERE version = 11")
    run(_sql, store, undo_011)
    assert run(store.migrate) == ["011_text_clustered"]
    assert _count_rows(store, run) == rows
    assert [run(store.text_candidates, inbox.id, q) for q in queries] == before
    if store.db.engine == "sqlite":
        sql = run(_sql, store, lambda txn: txn.scalar("SELECT sql FROM sqlite_master WHERE name = 'message_text'"))
        assert "WITHOUT ROWID" in sql


def test_a_statement_for_one_engine_only():
    from store.schema import _statements
    sql = "CREATE TABLE a (x {blob});\n{only:sqlite} DROP TABLE b;\n{only:mysql}\nDROP TABLE c"
    assert _statements(sql, "sqlite") == ["CREATE TABLE a (x BLOB)", "DROP TABLE b"]
    assert _statements(sql, "mysql") == ["CREATE TABLE a (x MEDIUMBLOB) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 "
                                         "COLLATE=utf8mb4_bin", "DROP TABLE c"]
