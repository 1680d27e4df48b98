-- Haven schema, delta 14: ActiveSync devices, their sync states and client ids (store/activesync.py).
-- Everything is keyed by account: a device row is (account_id, device_id), never the DeviceId
-- alone (one phone, several accounts), and every state and client id names its device row and
-- its account, so deleting an account removes them all.
-- eas_devices: policy_key is the acknowledged policy key (0: none yet), pending_policy_key the one
-- issued and not yet acknowledged (0: none).  wipe_requested_at / wipe_done_at: Unix times, 0
-- when not set.  ping_request / sync_request: the cached Ping and the last full Sync request, as
-- the device sent them (WBXML), at most store.activesync.MAX_CACHED_REQUEST octets each.
-- eas_sync_states: one row per (device, collection); collection_id is a folders.id (mail, or a
-- DAV folder's) or 0 for the folder hierarchy (FolderSync).  held: the compressed sorted list of
-- the item ids the device holds (store/activesync.py says how).  last_response: the response
-- that carried sync_key, replayed when the device repeats previous_key.  snapshot: what else the
-- gateway keeps of the device's view (the hierarchy's names and parents), zlib of its JSON.
-- device_id and client_id are {name} columns: compared exactly on both engines.
-- eas_client_ids: (device, collection, ClientId) -> ServerId of an Add (collection 0: SendMail).

CREATE TABLE eas_devices (
    id {pk},
    account_id BIGINT NOT NULL,
    device_id {name} NOT NULL,
    device_type VARCHAR(128) NOT NULL DEFAULT '',
    model VARCHAR(255) NOT NULL DEFAULT '',
    os VARCHAR(255) NOT NULL DEFAULT '',
    user_agent VARCHAR(255) NOT NULL DEFAULT '',
    protocol_version VARCHAR(16) NOT NULL DEFAULT '',
    policy_key BIGINT NOT NULL DEFAULT 0,
    pending_policy_key BIGINT NOT NULL DEFAULT 0,
    wipe_requested_at BIGINT NOT NULL DEFAULT 0,
    wipe_done_at BIGINT NOT NULL DEFAULT 0,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    ping_request {blob},
    sync_request {blob},
    UNIQUE (account_id, device_id)
);

CREATE TABLE eas_sync_states (
    id {pk},
    device BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    collection_id BIGINT NOT NULL,
    sync_key VARCHAR(64) NOT NULL,
    previous_key VARCHAR(64) NOT NULL DEFAULT '',
    modseq BIGINT NOT NULL DEFAULT 0,
    held {blob} NOT NULL,
    held_count BIGINT NOT NULL DEFAULT 0,
    filter_type INTEGER NOT NULL DEFAULT 0,
    options {text},
    last_response {blob},
    snapshot {blob},
    updated_at BIGINT NOT NULL,
    UNIQUE (device, collection_id)
);
CREATE INDEX eas_sync_states_account ON eas_sync_states (account_id);
CREATE INDEX eas_sync_states_collection ON eas_sync_states (collection_id);

CREATE TABLE eas_client_ids (
    device BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    collection_id BIGINT NOT NULL,
    client_id {name} NOT NULL,
    server_id VARCHAR(255) NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (device, collection_id, client_id)
);
CREATE INDEX eas_client_ids_account ON eas_client_ids (account_id);
CREATE INDEX eas_client_ids_created ON eas_client_ids (created_at)
