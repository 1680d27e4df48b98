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
