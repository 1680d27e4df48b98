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
