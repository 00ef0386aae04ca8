-- rebound store, schema 23: the policies' own key-value state (src/store/policy_state.rs),
-- one namespace per policy name. What a policy writes while judging a message is written
-- in that message's transaction (with its ledger row and events), and only when the
-- message is recorded, not for a duplicate: a crash or a second process neither loses
-- nor doubles it. An entry holds until `expires_at` (ms): a read at or after it sees
-- nothing, and the prune deletes it.
CREATE TABLE policy_state (
    policy     TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (policy, key)
);
-- The prune's order: the entries expired first.
CREATE INDEX policy_state_expires_at ON policy_state (expires_at);

-- How many keys each policy holds (expired ones not yet pruned too), kept by every
-- write in its own transaction: how many keys a policy holds (what a limit on it is
-- checked against) is read from one row, not counted.
CREATE TABLE policy_state_usage (
    policy TEXT    NOT NULL PRIMARY KEY,
    keys   INTEGER NOT NULL
);
