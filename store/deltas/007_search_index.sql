-- Haven schema, delta 7: the text index (store/fulltext.py, store/textindex.py).
-- One row per blob (a message's content): its searchable text decoded once at delivery/APPEND,
-- casefolded UTF-8, so IMAP SEARCH (and later ActiveSync Search, DAV text-match) scan plain
-- bytes in SQL instead of inflating and MIME-decoding every message.  Written and dropped with
-- the blob row; searches join the live message rows, so expunge and soft delete need nothing.
-- complete = 0: not indexed (too long, unreadable): such a message is always a candidate.
-- Blobs stored before this delta have no row: `haven serve` builds them in the background
-- (FulltextStore.index_backlog); until then they are candidates too, so the migration is instant.
-- The long text is a table of its own: a search on the short fields reads few pages (MariaDB
-- keeps rows under ~8 KB inside the clustered index), and a body is read only for the rows
-- that passed the short terms.  A complete message_text row has its message_body row.
CREATE TABLE message_text (
    blob_id CHAR(64) NOT NULL PRIMARY KEY,
    complete INTEGER NOT NULL,
    subject {blob},
    f_from {blob},
    f_to {blob},
    f_cc {blob},
    f_bcc {blob}
);

CREATE TABLE message_body (
    blob_id CHAR(64) NOT NULL PRIMARY KEY,
    body {blob},
    header {blob}
);

-- A search walks the folder's live messages for their blob ids: from this covering index, not
-- from the message rows (which hold header, envelope and structure: 60 MB of pages at 20,000).
CREATE INDEX messages_folder_blob ON messages (folder_id, deleted_at, blob_id, uid);
