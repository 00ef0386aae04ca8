-- rebound store, schema 14: the policy chain lives in the store, shared by every host.

-- Every uploaded policy component, by the SHA-256 of its bytes (hex): the chain names
-- versions by digest, so the same bytes uploaded twice, or under two names, are one row.
CREATE TABLE policy_modules (
    digest   TEXT    NOT NULL PRIMARY KEY,
    bytes    BLOB    NOT NULL,
    size     INTEGER NOT NULL,
    added_at INTEGER NOT NULL
);

-- The chain: one row, a JSON manifest (the modules in order, each with its versions,
-- oldest first) and a version that every change increments. Hosts poll `version` and
-- load the manifest when it moved; a change is written only over the version it was
-- made from, so two hosts changing the chain at once never lose one of the changes.
CREATE TABLE policy_chain (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    version    INTEGER NOT NULL,
    manifest   TEXT    NOT NULL,
    changed_at INTEGER NOT NULL
);
