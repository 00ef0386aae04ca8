-- rebound store, schema 20: the outbox of event webhooks (src/store/outbox.rs).
-- One row per ([[notify]] endpoint, recipient state change), written in the transaction
-- that changed the state: a committed change is delivered even after a crash, a rolled
-- back one sends nothing. `payload` is rebound's JSON event; `idempotency_key` goes with
-- every attempt. A row is due while `delivered_at` and `dead_at` are NULL and
-- `next_at` has come; a deliverer claims it until `lease_until` (`lease_owner`), so
-- two processes never send one row at once, and a lease of a process that died
-- expires: the row is sent again (at least once).
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    endpoint        TEXT    NOT NULL,
    event           TEXT    NOT NULL,
    address         TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_at         INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    delivered_at    INTEGER,
    dead_at         INTEGER,
    last_error      TEXT
);

-- The due rows, in the order they are claimed; delivered and dead rows leave it.
CREATE INDEX outbox_due ON outbox (next_at, id) WHERE delivered_at IS NULL AND dead_at IS NULL;
