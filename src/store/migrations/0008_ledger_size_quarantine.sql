-- rebound store, schema 8: the ledger remembers the size the server listed, and a
-- quarantine is a recorded fact that a person can lift.
--
-- A UIDL is unique only while the server keeps its UID list: a server that rebuilds a
-- mailbox can hand an old UID to a new message. `ledger.size` is now the size LIST gave
-- when the verdict was committed; a message listed under a ledger UID with another size
-- is a new message. The old column held the fetched length (not always LIST's figure),
-- so it is kept as `fetched_size` and the new `size` starts empty: rows without it trust
-- their UID as before, and the next pass that lists them records LIST's size.
ALTER TABLE ledger RENAME COLUMN size TO fetched_size;
ALTER TABLE ledger ADD COLUMN size INTEGER;

-- When the first failed fetch of a message was counted (the old rows only know their
-- last), and when it was quarantined (its failures reached `[pop3] max_fetch_failures`):
-- a quarantined message is not fetched until it is released (its row deleted).
ALTER TABLE fetch_failures ADD COLUMN first_at INTEGER;
ALTER TABLE fetch_failures ADD COLUMN quarantined_at INTEGER;
UPDATE fetch_failures SET first_at = last_at;
