-- rebound store, schema 3: a send can be `skipped` (its recipient stopped being mailable
-- after the campaign was queued: bounced, complained or unsubscribed meanwhile).
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt.

CREATE TABLE sends_new (
    id          INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    address     TEXT    NOT NULL,
    address_key TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'claimed', 'sent', 'bounced', 'failed', 'skipped')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL DEFAULT 0,
    claimed_at  INTEGER,
    message_id  TEXT,
    verp_token  TEXT,
    result_code INTEGER,
    result_text TEXT,
    sent_at     INTEGER,
    updated_at  INTEGER NOT NULL,
    UNIQUE (campaign_id, address_key)
);

INSERT INTO sends_new SELECT id, campaign_id, address, address_key, state, attempts, not_before, claimed_at,
    message_id, verp_token, result_code, result_text, sent_at, updated_at FROM sends;
DROP TABLE sends;
ALTER TABLE sends_new RENAME TO sends;

CREATE INDEX sends_queue ON sends (campaign_id, state, not_before, id);
CREATE INDEX sends_message_id ON sends (message_id);
CREATE INDEX sends_sent_at ON sends (sent_at);
