-- rebound store, schema 13: named leases, one holder at a time (a mailbox's poller).

-- A process that must be the only one doing something (polling one mailbox) takes the
-- lease of that name: it holds it while its heartbeat renews `expires_at`; a lease that
-- has expired belongs to a process that died and is taken over by the next to ask.
CREATE TABLE leases (
    name         TEXT    NOT NULL PRIMARY KEY,
    owner        TEXT    NOT NULL,
    acquired_at  INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
