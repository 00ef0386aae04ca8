-- rebound store, schema 10: indexes for the keyset pages of `GET /recipients`,
-- `GET /events` and `rebound recipients` / `rebound events`, so that every filter reads
-- its rows in key order instead of scanning and sorting the table.

-- Recipients of one state by address key; it also serves everything `recipients_state`
-- served.
DROP INDEX recipients_state;
CREATE INDEX recipients_state_key ON recipients (state, address_key);

-- Events of one recipient, of one kind, by id (`events_recipient_at` stays for the soft
-- rule's time window; `events_campaign` already ends in the id).
CREATE INDEX events_recipient_id ON events (recipient_id, id);
CREATE INDEX events_kind_id ON events (kind, id);
