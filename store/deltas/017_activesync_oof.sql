-- Haven schema, delta 17: out-of-office replies (ActiveSync Settings Oof; store/sievestore.py,
-- replies made at delivery by store/rules.py with the vacation machinery of delta 4).
-- One row per account that ever set them.  state: 0 off, 1 on, 2 scheduled from start_at until
-- end_at (Unix times).  since: when the current period began (each sender is answered once per
-- period: vacation_replies keys include it).  Three replies: internal (senders of the account's
-- own domain), known (senders in the account's address books), unknown (everyone else); each
-- enabled or not, its text, and whether that text is HTML.

CREATE TABLE out_of_office (
    account_id BIGINT NOT NULL PRIMARY KEY,
    state INTEGER NOT NULL DEFAULT 0,
    start_at BIGINT NOT NULL DEFAULT 0,
    end_at BIGINT NOT NULL DEFAULT 0,
    since BIGINT NOT NULL DEFAULT 0,
    internal_enabled INTEGER NOT NULL DEFAULT 0,
    internal_message {text},
    internal_html INTEGER NOT NULL DEFAULT 0,
    known_enabled INTEGER NOT NULL DEFAULT 0,
    known_message {text},
    known_html INTEGER NOT NULL DEFAULT 0,
    unknown_enabled INTEGER NOT NULL DEFAULT 0,
    unknown_message {text},
    unknown_html INTEGER NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
)
