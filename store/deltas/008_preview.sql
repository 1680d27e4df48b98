-- Haven schema, delta 8: the IMAP PREVIEW (RFC 8970) of a message, cached per blob.
-- A preview depends on the message's octets only, so it is keyed by the blob (content-addressed,
-- shared by copies; the row goes with the blob, store/changelog.py drop_unreferenced_blobs_txn).
-- Written by the first FETCH PREVIEW that needs it (store/previews.py); messages stored before
-- this delta get theirs that way too.
CREATE TABLE blob_previews (
    blob_id CHAR(64) NOT NULL PRIMARY KEY,
    preview {text} NOT NULL
);
