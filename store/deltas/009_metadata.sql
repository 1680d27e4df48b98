-- Haven schema, delta 9: IMAP METADATA (RFC 5464), server and mailbox annotations.
-- One row per (account, mailbox, entry): folder_id 0 holds the server's entries as this account
-- sees them (RFC 5464 §3.2: mailbox ""); entry names are kept lower-cased (they compare without
-- regard to case, §3.2) and start with /private/ or /shared/.  A folder's entries go with the
-- folder (its id survives renames); an account's with the account.

CREATE TABLE metadata_entries (
    account_id BIGINT NOT NULL,
    folder_id BIGINT NOT NULL,
    name VARCHAR(255) NOT NULL,
    value {blob} NOT NULL,
    PRIMARY KEY (account_id, folder_id, name)
);
