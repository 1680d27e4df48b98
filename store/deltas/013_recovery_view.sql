-- Haven schema, delta 13: the recovery view (store/recovery.py, store/scope.py).
-- messages.recover_uid: the UID of a recoverable message (a tombstone a user or client deleted)
-- in the account's "Recovered Items" view; 0 until a view is first listed after the delete, then
-- given out from accounts.recover_uidnext in the order the messages were deleted, so a view's
-- UIDs ascend as messages arrive in it (RFC 3501 §2.3.1.1).  Live rows keep 0.
-- messages_account_deleted replaces messages_account: the same account lookups, and the
-- account's tombstones (deleted_at > 0) as one range, without reading its live rows.
ALTER TABLE messages ADD COLUMN recover_uid BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN recover_uidnext BIGINT NOT NULL DEFAULT 1;
CREATE INDEX messages_account_deleted ON messages (account_id, deleted_at);
{only:sqlite} DROP INDEX messages_account;
{only:mysql} DROP INDEX messages_account ON messages
