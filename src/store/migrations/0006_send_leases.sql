-- rebound store, schema 6: large campaigns and several senders on one store.

-- A claimed send belongs to one runner (`owner`) until `lease_until` (ms); the runner's
-- heartbeat extends the lease. A runner that starts resets only claims whose lease has
-- expired (or that carry none: claimed before this schema).
ALTER TABLE sends ADD COLUMN owner TEXT;
ALTER TABLE sends ADD COLUMN lease_until INTEGER;

-- The claim walks a campaign's pending rows in id order (keyset: `id > cursor`), so it
-- reads only the rows it takes instead of sorting every pending row by id.
DROP INDEX IF EXISTS sends_queue;
CREATE INDEX sends_claim ON sends (campaign_id, state, id);

-- A campaign is queued in chunks (one transaction per chunk, so a mailbox pass can commit
-- between them); `enqueued` is 1 once every recipient is in `sends`. Campaigns queued
-- before this schema were queued in one transaction.
ALTER TABLE campaigns ADD COLUMN enqueued INTEGER NOT NULL DEFAULT 1;

-- One runner per campaign at a time: the holder refreshes `expires_at` (its heartbeat);
-- another runner may take the row over once it has expired.
CREATE TABLE campaign_runners (
    campaign_id  INTEGER PRIMARY KEY REFERENCES campaigns (id),
    owner        TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);

-- Smooth rate limits shared by every process on the store: GCRA state, one row per limit
-- (named by its spec, e.g. `50/s`): the theoretical arrival time in microseconds since
-- the Unix epoch, advanced in a write transaction.
CREATE TABLE rate_limits (
    name TEXT    PRIMARY KEY,
    tat  INTEGER NOT NULL
);
