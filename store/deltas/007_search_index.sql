-- Haven schema, delta 7: the text index (store/fulltext.py, store/textindex.py).
-- One row per blob (a message's content): its searchable text decoded once at delivery/APPEND,
-- casefolded UTF-8, so IMAP SEARCH (and later ActiveSync Search, DAV text-match) scan plain
-- bytes in SQL instead of inflating and MIME-decoding every message.  Written and dropped with
-- the blob row; searches join the live message rows, so expunge and soft delete need nothing.
-- complete = 0: not indexed (too long, unreadable): such a message is always a candidate.
-- Blobs stored before this delta have no row: `haven serve` builds them in the background
-- (FulltextStore.index_backlog); until then they are candidates too, so the migration is instant.
-- The body column is last: a row's long text is read only when a term asks for it.
CREATE TABLE message_text (
    blob_id CHAR(64) NOT NULL PRIMARY KEY,
    complete INTEGER NOT NULL,
    subject {blob},
    f_from {blob},
    f_to {blob},
    f_cc {blob},
    f_bcc {blob},
    header {blob},
    body {blob}
);
