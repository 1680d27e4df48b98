-- Haven schema, delta 16: the account-only remote wipe of EAS 16.1 (MS-ASPROV
-- AccountOnlyRemoteWipe): the phone removes this account's data and keeps the rest of itself.
-- wipe_account_only is 1 when the wipe requested (wipe_requested_at) is of that kind.
ALTER TABLE eas_devices ADD COLUMN wipe_account_only INTEGER NOT NULL DEFAULT 0
