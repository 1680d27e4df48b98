-- Haven schema, delta 5: the login throttle's failures (and, below, other abuse limits).
-- auth_failures: one row per (client address, account, wrong password) within the throttle
-- window.  `subject` is 'id:<account id>' when the login named an account or one of its aliases
-- (so aliases share one counter), else the login as typed.  `secret_tag` is a keyed digest of
-- the wrong password (the key never leaves the process), so a phone repeating one stale
-- password counts once, while guessing counts every guess.  Rows older than
-- [auth] throttle_window are pruned as failures are recorded.  In the store, not in memory, so
-- every node behind one database throttles alike.

CREATE TABLE auth_failures (
    remote_ip VARCHAR(64) NOT NULL,
    subject VARCHAR(255) NOT NULL,
    secret_tag CHAR(32) NOT NULL,
    failed_at BIGINT NOT NULL,
    PRIMARY KEY (remote_ip, subject, secret_tag)
);
CREATE INDEX auth_failures_subject ON auth_failures (subject, failed_at);
CREATE INDEX auth_failures_time ON auth_failures (failed_at);
