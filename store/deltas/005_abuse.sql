-- Haven schema, delta 5: defences against abuse and against doing things twice.
-- Each part below is self-contained (its own header); parts are added, never edited.

-- == Idempotency keys (store/idempotency.py) ==
-- One row per write a client is told about (a delivery's group commit, a submission's queue
-- entry), committed with the write: a transaction retried after its COMMIT landed finds its
-- key and returns the recorded result (JSON) instead of storing the message again.
-- Rows older than a day are pruned by the purge job.
CREATE TABLE idempotency_keys (
    id_key CHAR(32) NOT NULL PRIMARY KEY,
    created_at BIGINT NOT NULL,
    result {text} NOT NULL
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);

-- == Submission rate counters (store/rates.py) ==
-- Messages and recipients an account submitted, per minute; a limit per hour is the sum of the
-- last 60 rows.  Counted in the database so every Haven node on it shares the count.  Keyed by
-- account: every sender address of a submission (the account's own, +detail, its aliases)
-- resolves to the account, so aliases share its counter.  Rows older than two hours are
-- pruned by the purge job.
CREATE TABLE submission_counts (
    account_id BIGINT NOT NULL,
    minute BIGINT NOT NULL,
    messages BIGINT NOT NULL DEFAULT 0,
    recipients BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id, minute)
);
CREATE INDEX submission_counts_age ON submission_counts (minute);

-- == Login throttle failures (store/authfail.py, auth/cred.py) ==
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
