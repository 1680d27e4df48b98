-- SQLite: message_text clustered by blob_id (WITHOUT ROWID), as InnoDB keeps every table by its
-- primary key.  A search walks the folder's blob ids in order (messages_folder_blob) and reads
-- each one's short columns: clustered, that is one B-tree descent per message instead of two
-- (the key's index, then the rowid), with neighbouring keys on one page.  At 20,000 messages a
-- SUBJECT scan went from 24 ms to 10 ms.  message_body stays a rowid table: its rows are
-- kilobytes long, and a clustered one would put the body bytes into every lookup of its key.
-- MariaDB/MySQL: nothing to do.
{only:sqlite} CREATE TABLE message_text_clustered (
    blob_id CHAR(64) NOT NULL PRIMARY KEY,
    complete INTEGER NOT NULL,
    subject BLOB,
    f_from BLOB,
    f_to BLOB,
    f_cc BLOB,
    f_bcc BLOB
) WITHOUT ROWID;
{only:sqlite} INSERT INTO message_text_clustered (blob_id, complete, subject, f_from, f_to, f_cc, f_bcc)
    SELECT blob_id, complete, subject, f_from, f_to, f_cc, f_bcc FROM message_text;
{only:sqlite} DROP TABLE message_text;
{only:sqlite} ALTER TABLE message_text_clustered RENAME TO message_text
