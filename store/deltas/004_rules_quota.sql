-- Haven schema, delta 4: server-side rules and quotas.
-- sieve_scripts: an account's Sieve scripts (RFC 5804); at most one has active = 1.
-- accounts.rules_version changes whenever the active script's text or choice changes, so the
-- delivery pipeline can keep compiled scripts cached and still never run a stale one.
-- vacation_replies: one row per (account, vacation :handle + sender) until the reply period
-- ends (RFC 5230 §4.2: one reply per sender per period).
-- Quota limits in bytes: NULL = the server default ([quota] in haven.ini), 0 = unlimited.
-- quota_warned = 1 once the warning message was delivered, reset when usage drops below warn.

CREATE TABLE sieve_scripts (
    id {pk},
    account_id BIGINT NOT NULL,
    name {name} NOT NULL,
    script {text} NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE vacation_replies (
    account_id BIGINT NOT NULL,
    sender_key CHAR(64) NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, sender_key)
);
CREATE INDEX vacation_replies_expiry ON vacation_replies (expires_at);

ALTER TABLE accounts ADD COLUMN rules_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN quota_warn BIGINT;
ALTER TABLE accounts ADD COLUMN quota_soft BIGINT;
ALTER TABLE accounts ADD COLUMN quota_hard BIGINT;
ALTER TABLE accounts ADD COLUMN quota_warned INTEGER NOT NULL DEFAULT 0;

-- usage (live messages of an account) from the index alone
CREATE INDEX messages_usage ON messages (account_id, deleted_at, size);
