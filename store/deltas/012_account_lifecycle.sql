-- Haven schema, delta 12: the account lifecycle.
-- deleted_at: 0 for a live account, else the Unix time of `haven user del`; the account then
-- logs in nowhere and receives nothing, its data stays, and the purge removes it once
-- softdelete_lifetime has passed (`haven user restore` clears it before then).
-- last_login: Unix time of the last successful login (0: never), written at most once an hour
-- per account, so a busy account costs no write per login.

ALTER TABLE accounts ADD COLUMN deleted_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN last_login BIGINT NOT NULL DEFAULT 0;
