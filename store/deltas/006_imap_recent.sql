-- Haven schema, delta 6: IMAP's shared mailbox state that is not a message's: subscriptions
-- and \Recent.  Each part below is self-contained (its own header); parts are added, never edited.

-- == Mailbox subscriptions (store/folders.py; IMAP SUBSCRIBE, LSUB, LIST (SUBSCRIBED)) ==
-- A subscription is a name, not a folder (RFC 3501 §6.3.6): it outlives the folder's deletion
-- (LIST (SUBSCRIBED) shows it \NonExistent until it is unsubscribed) and moves with RENAME.
-- A new account's default folders are subscribed, a folder CREATEd later is not (as in
-- Dovecot).  folders.subscribed is no longer read for mail folders: its live, subscribed mail
-- folders are copied here once.
CREATE TABLE mailbox_subscriptions (
    account_id BIGINT NOT NULL,
    name VARCHAR(500) NOT NULL,
    PRIMARY KEY (account_id, name)
);
INSERT INTO mailbox_subscriptions (account_id, name)
    SELECT account_id, name FROM folders WHERE kind = 'mail' AND deleted_at = 0 AND subscribed <> 0;

-- == \Recent (store/folders.py claim_recent; IMAP SELECT, STATUS RECENT, SEARCH NEW) ==
-- recent_uid: the highest UID a session has claimed as recent (RFC 3501 §2.3.2: exactly one
-- session sees a message \Recent).  A session that SELECTs the folder or is told of new
-- messages raises it to uidnext - 1 with a compare-and-set, so sessions on any node on one
-- database claim disjoint ranges; UIDs above it are recent to whoever comes next (STATUS
-- RECENT counts them).  Messages already stored when this delta runs are not recent.
ALTER TABLE folders ADD COLUMN recent_uid BIGINT NOT NULL DEFAULT 0;
UPDATE folders SET recent_uid = uidnext - 1;
