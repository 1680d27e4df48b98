-- Haven schema, delta 1: accounts, folders, messages, blobs.
-- {pk} {text} {blob} are replaced per engine (store/schema.py).  Never edit a landed delta.
-- deleted_at is 0 for live rows, the Unix time of the soft delete for tombstones.

CREATE TABLE domains (
    id {pk},
    name VARCHAR(255) NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (name)
);

CREATE TABLE accounts (
    id {pk},
    address VARCHAR(320) NOT NULL,
    domain_id BIGINT NOT NULL,
    name VARCHAR(255),
    password_hash VARCHAR(512),
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    highest_modseq BIGINT NOT NULL DEFAULT 0,
    UNIQUE (address)
);

CREATE TABLE aliases (
    id {pk},
    address VARCHAR(320) NOT NULL,
    account_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (address)
);
CREATE INDEX aliases_account ON aliases (account_id);

CREATE TABLE folders (
    id {pk},
    account_id BIGINT NOT NULL,
    name VARCHAR(500) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    special_use VARCHAR(16),
    subscribed INTEGER NOT NULL DEFAULT 1,
    uidvalidity BIGINT NOT NULL,
    uidnext BIGINT NOT NULL DEFAULT 1,
    highest_modseq BIGINT NOT NULL DEFAULT 0,
    created_modseq BIGINT NOT NULL DEFAULT 0,
    deleted_at BIGINT NOT NULL DEFAULT 0,
    UNIQUE (account_id, name, deleted_at)
);

-- A blob's compressed bytes are either inline in `data` (small messages: one fsync per
-- delivery, the database's) or, when `data` is NULL, a file under data_dir/blobs/.
CREATE TABLE blobs (
    id CHAR(64) NOT NULL PRIMARY KEY,
    size BIGINT NOT NULL,
    stored_size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    data {blob}
);

CREATE TABLE messages (
    id {pk},
    account_id BIGINT NOT NULL,
    folder_id BIGINT NOT NULL,
    uid BIGINT NOT NULL,
    modseq BIGINT NOT NULL,
    created_modseq BIGINT NOT NULL,
    sysflags INTEGER NOT NULL DEFAULT 0,
    keywords VARCHAR(2000) NOT NULL DEFAULT '',
    internaldate BIGINT NOT NULL,
    size BIGINT NOT NULL,
    blob_id CHAR(64) NOT NULL,
    header {blob},
    envelope {text},
    structure {text},
    deleted_at BIGINT NOT NULL DEFAULT 0,
    UNIQUE (folder_id, uid)
);
CREATE INDEX messages_folder_modseq ON messages (folder_id, modseq);
CREATE INDEX messages_blob ON messages (blob_id);
CREATE INDEX messages_deleted ON messages (deleted_at);
CREATE INDEX messages_account ON messages (account_id);
