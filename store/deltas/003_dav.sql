-- Haven schema, delta 3: calendar and address-book objects (CalDAV/CardDAV, later ActiveSync).
-- Collections are folders of kind calendar / contacts / tasks; their WebDAV properties live in
-- dav_collections (one row once a property was set).  An item is one iCalendar object or vCard.
-- live_href / live_uid equal href / uid while the row is live and are NULL on tombstones, so
-- the unique keys hold among live rows only (NULLs never collide) on both engines.
-- dtstart / dtend: the enclosing time range of every occurrence (Unix seconds; open-ended
-- recurrences reach the far future), so a time-range REPORT does not parse every item.
-- {name} columns compare exactly on both engines (UIDs differing in a trailing blank differ).

CREATE TABLE dav_collections (
    folder_id BIGINT NOT NULL PRIMARY KEY,
    account_id BIGINT NOT NULL,
    props {text},
    purged_modseq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE dav_items (
    id {pk},
    account_id BIGINT NOT NULL,
    folder_id BIGINT NOT NULL,
    href {name} NOT NULL,
    live_href {name},
    uid {name} NOT NULL DEFAULT '',
    live_uid {name},
    etag VARCHAR(80) NOT NULL,
    component VARCHAR(16) NOT NULL,
    data {text} NOT NULL,
    size BIGINT NOT NULL,
    dtstart BIGINT NOT NULL,
    dtend BIGINT NOT NULL,
    modseq BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT NOT NULL DEFAULT 0,
    moved INTEGER NOT NULL DEFAULT 0,
    UNIQUE (folder_id, live_href),
    UNIQUE (folder_id, live_uid)
);
CREATE INDEX dav_items_folder_modseq ON dav_items (folder_id, modseq);
CREATE INDEX dav_items_folder_start ON dav_items (folder_id, dtstart);
CREATE INDEX dav_items_deleted ON dav_items (deleted_at);
CREATE INDEX dav_items_account ON dav_items (account_id);
