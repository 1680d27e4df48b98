"""The text index: each message's searchable text, decoded once when it is stored, so a text
search reads plain strings in SQL instead of inflating and MIME-decoding every message.

What it holds (tables ``message_text`` and ``message_body``, delta 007): one row per *blob* (a message's content,
named by its hash), written in the transaction that writes the blob row
(:func:`store.changelog.ensure_blob_txn`), dropped with it (purge, account deletion).  Keyed by
content, not by message row: COPY, MOVE and restore reuse the row for free, and EXPUNGE and soft
delete need nothing, because a search joins the *live* message rows of the folder to it.

Columns, all UTF-8 bytes, casefolded (:func:`store.textindex.text_index_row`); the short ones in
``message_text``, ``header`` and ``body`` in ``message_body`` (so a scan of the short ones reads
few pages):
- ``subject``, ``f_from``, ``f_to``, ``f_cc``, ``f_bcc``: each field's values unfolded and RFC
  2047-decoded (IMAP SEARCH's header keys); the address fields also each parsed address as
  ``name``, ``addr`` and ``name <addr>``;
- ``header``: the whole header section decoded as UTF-8, then every decoded field value
  (SEARCH TEXT's header half);
- ``body``: :func:`formats.mime.decoded_text` (every text part transfer- and charset-decoded,
  HTML reduced to text, encapsulated messages' headers) -- the very string SEARCH BODY means.
- ``complete`` = 0: the text was too long (over :data:`MAX_INDEXED`) or could not be extracted;
  such a message is always a candidate.

Why a table of decoded text and not SQLite FTS5 / MariaDB FULLTEXT (decided and measured, see
docs/store.md): IMAP SEARCH is case-insensitive *substring* matching (RFC 3501 §6.4.4).
MariaDB's FULLTEXT indexes words (minimum length, stop words): "lacie" never finds "glacier",
so it cannot even narrow candidates safely.  FTS5's trigram tokenizer could, on SQLite only,
and costs several times the text in index pages and write time at delivery.  A scan of
pre-decoded text with ``instr``/``LOCATE`` is byte comparison, the same code on both engines,
cheap to write, and at 20,000 messages well under Dovecot's unindexed search.

Exactness: a message is a candidate when its row is missing (not indexed yet), incomplete, or
every term's column holds the needle.  Every value the exact evaluation compares against is a
substring of its column (values are joined with LF), and UTF-8 substring equals character
substring, so the candidates are a superset of the answer; for BODY they are the answer.  The
IMAP gateway still confirms each candidate with its own evaluation (it loads the header and asks
:meth:`Store.search_text`), so a difference in the rules can only cost time, never a result.

Messages stored before delta 007 have no row: :meth:`FulltextStore.index_backlog` builds them in
batches (``haven serve`` runs it in the background at start), and until then they are
candidates, so search stays exact while the backlog is built.
"""

from __future__ import annotations

import json

from store import bulk
from store.changelog import insert_text_row_txn
from store.core import StoreCore
from store.engines import Txn
from store.scope import scope_of
from store.textindex import FIELDS, LONG_FIELDS, incomplete_row, text_index_row

#: blobs indexed per transaction by the backlog builder
BACKLOG_BATCH = 200


def _contains(txn: Txn, column: str) -> str:
    # byte comparison on both engines: the columns are BLOBs and the needle is bytes
    if txn.engine == "sqlite":
        return f"instr({column}, ?) > 0"
    return f"LOCATE(?, {column}) > 0"


def text_candidates_txn(txn: Txn, folder_id: int, terms: list) -> dict:
    """``{uid: indexed}`` of the folder's live messages that may match every term."""
    short = [(f, n) for f, n in terms if f not in LONG_FIELDS]
    long = [(f, n) for f, n in terms if f in LONG_FIELDS]
    conds, args = [], []
    for field, needle in short:
        cols = FIELDS[field]
        conds.append("(" + " OR ".join(_contains(txn, c) for c in cols) + ")")
        args += [needle.encode("utf-8", "replace")] * len(cols)
    join = ""
    if long and not short:
        # body/text terms only: every row's long columns are read anyway; a join scans them
        join = "LEFT JOIN message_body b ON b.blob_id = m.blob_id "
        for field, needle in long:
            cols = FIELDS[field]
            conds.append("(" + " OR ".join(_contains(txn, c) for c in cols) + ")")
            args += [needle.encode("utf-8", "replace")] * len(cols)
    else:
        # Both engines evaluate an AND left to right and stop at a false term: the short terms
        # (message_text) come first, and message_body is read in a subquery only for the rows
        # that passed them.  (A LEFT JOIN of message_body would look up every row's body row
        # before the WHERE clause is tried.)  A complete row always has its message_body row.
        for field, needle in long:
            cols = FIELDS[field]
            conds.append("(SELECT " + " OR ".join(_contains(txn, c) for c in cols)
                         + " FROM message_body b WHERE b.blob_id = m.blob_id)")
            args += [needle.encode("utf-8", "replace")] * len(cols)
    scope = scope_of(txn, folder_id)
    sql = (f"SELECT {scope.uid}, t.complete FROM messages m LEFT JOIN message_text t ON t.blob_id = m.blob_id "
           + join + f"WHERE {scope.where} AND (t.complete IS NULL OR t.complete = 0 OR ("
           + " AND ".join(conds) + "))")
    return {r[0]: bool(r[1]) for r in txn.execute(sql, [*scope.args, *args]).fetchall()}


def backlog_txn(txn: Txn, after: int, limit: int) -> list:
    """Up to ``limit`` ``(message id, blob_id, inline data, structure JSON, header)`` of live
    messages after message id ``after`` whose blob has no text row (stored before delta 007), in
    id order: the caller walks the table once, so a big store is not scanned again per batch."""
    return txn.execute(
        "SELECT m.id, m.blob_id, b.data, m.structure, m.header FROM messages m "
        "JOIN blobs b ON b.id = m.blob_id LEFT JOIN message_text t ON t.blob_id = m.blob_id "
        "WHERE m.id > ? AND t.blob_id IS NULL AND m.deleted_at = 0 ORDER BY m.id LIMIT ?",
        (after, int(limit))).fetchall()


def write_backlog_txn(txn: Txn, rows: list) -> None:
    for row in rows:
        insert_text_row_txn(txn, row)


class FulltextStore(StoreCore):
    async def text_candidates(self, folder_id, terms):
        matches = await self.text_matches(folder_id, terms)
        return None if matches is None else set(matches)

    async def text_matches(self, folder_id, terms):
        terms = [(f, n) for f, n in terms if f in FIELDS and n]
        if not terms:
            return None
        return await self._run("text_candidates", text_candidates_txn, folder_id, terms)

    async def index_backlog(self, limit=BACKLOG_BATCH) -> int:
        # one pass over the messages table per process (new messages are indexed as they come)
        after = getattr(self, "_backlog_after", 0)
        rows = await self._run("text_backlog", backlog_txn, after, limit)
        if not rows:
            return 0
        self._backlog_after = rows[-1][0]
        blobs = {r[1]: r[2:] for r in rows}  # one content held by several messages: once
        built = await self._cpu(self._text_rows, [(b, *rest) for b, rest in blobs.items()])
        await self._run("text_backlog_write", write_backlog_txn, built)
        return len(built)

    def _text_rows(self, rows) -> list:
        """CPU pool: the text rows of backlog blobs (a missing blob file: an incomplete row)."""
        out = []
        for blob_id, data, structure, header in rows:
            try:
                raw = bulk.read_file(self.blobs, blob_id) if data is None else bulk.inflate(blob_id, bytes(data))
            except Exception:
                out.append(incomplete_row(blob_id))
                continue
            out.append(text_index_row(blob_id, raw, bytes(header or b""),
                                      json.loads(structure) if structure else None))
        return out
