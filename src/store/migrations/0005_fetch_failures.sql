-- rebound store, schema 5: messages the server would not hand out (RETR dropped the
-- connection, answered -ERR, or sent more than LIST said), counted per UID so that a
-- message failing `[pop3] max_fetch_failures` times is skipped instead of retried first
-- in every pass.

CREATE TABLE fetch_failures (
    mailbox    TEXT NOT NULL,
    uid        TEXT NOT NULL,
    failures   INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    last_at    INTEGER NOT NULL,
    PRIMARY KEY (mailbox, uid)
);
