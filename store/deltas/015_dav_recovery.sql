-- Haven schema, delta 15: the user's own view of deleted calendar objects and vCards
-- (CalDAV "Deleted events", CardDAV "Deleted contacts", later ActiveSync).
-- restored_modseq: the modseq at which a recoverable tombstone was restored (0: never); the
-- view reports it gone from then on.  accounts.dav_deleted_purged: the modseq the purge
-- stamped when it last removed tombstones of the account: a sync token of the view older than
-- that cannot be answered incrementally any more (RFC 6578 §3.2).
-- dav_items_account_uid: a PUT finds the recoverable tombstones of its UID without a scan;
-- dav_items_account_deleted: the views read an account's tombstones, not its live items.

ALTER TABLE dav_items ADD COLUMN restored_modseq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN dav_deleted_purged BIGINT NOT NULL DEFAULT 0;
CREATE INDEX dav_items_account_uid ON dav_items (account_id, uid);
CREATE INDEX dav_items_account_deleted ON dav_items (account_id, deleted_at);
