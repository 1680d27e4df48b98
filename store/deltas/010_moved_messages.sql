-- A MOVE leaves a tombstone in the source folder, as an expunge does (sync clients learn of the
-- UID's going from it), but it is not a deletion: the message lives on in the target.  Marked
-- here, it is left out of what can be recovered and out of what the purge reports as removed
-- (dav_items has had its own `moved` since delta 003).
ALTER TABLE messages ADD COLUMN moved INTEGER NOT NULL DEFAULT 0
