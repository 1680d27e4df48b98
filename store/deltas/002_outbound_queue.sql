-- Haven schema, delta 2: the outbound queue of SMTP submission (durable before 250).
-- One row per accepted message, one per recipient with its own retry state.
-- status: queued | sent | failed (permanent) | expired (max queue age reached)

CREATE TABLE outbound_queue (
    id {pk},
    account_id BIGINT NOT NULL,
    mail_from VARCHAR(320) NOT NULL,
    blob_id CHAR(64) NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX outbound_queue_blob ON outbound_queue (blob_id);

CREATE TABLE outbound_recipients (
    id {pk},
    queue_id BIGINT NOT NULL,
    recipient VARCHAR(320) NOT NULL,
    status VARCHAR(16) NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt BIGINT NOT NULL,
    last_error VARCHAR(1000),
    updated_at BIGINT NOT NULL
);
CREATE INDEX outbound_recipients_due ON outbound_recipients (status, next_attempt);
CREATE INDEX outbound_recipients_queue ON outbound_recipients (queue_id);
