-- rebound store, schema 15: subscribers. Recipients were only the addresses the store
-- heard of (bounced, complained); `rebound recipients import` adds the list itself, with
-- a name and the list's other columns (a JSON object), so that `recipients.store =
-- "active"` means the subscribers that are not suppressed. An import never changes a
-- state.
ALTER TABLE recipients ADD COLUMN name TEXT;
ALTER TABLE recipients ADD COLUMN fields TEXT;
ALTER TABLE recipients ADD COLUMN subscribed_at INTEGER;
