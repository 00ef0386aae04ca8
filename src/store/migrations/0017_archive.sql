-- rebound store, schema 17: the raw message archive. Every message the mailbox poller
-- records is kept, zstd-compressed, for `[store] keep_raw` (pruned by the poller): a
-- bounce can be shown again and reprocessed. Its events are the ones of the same
-- mailbox, UID and `at` (the one time a message's events are recorded at).
CREATE TABLE raw_messages (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    mailbox TEXT    NOT NULL,
    uid     TEXT    NOT NULL,
    size    INTEGER NOT NULL,
    data    BLOB    NOT NULL
);
CREATE INDEX raw_messages_mailbox_uid ON raw_messages (mailbox, uid, at);
CREATE INDEX raw_messages_at ON raw_messages (at);
