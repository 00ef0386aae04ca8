-- rebound store, schema 1: recipients, bounce events and the mailbox ledger.
-- Times are INTEGER milliseconds since the Unix epoch (UTC). The SQL stays within what
-- SQLite and PostgreSQL share, so a PostgreSQL migration set can mirror it.

-- One row per known recipient. `address_key` is the comparison key (see
-- store::address_key): the whole address lower-cased, trimmed, without angle brackets.
CREATE TABLE recipients (
    id               INTEGER PRIMARY KEY,
    address          TEXT    NOT NULL,
    address_key      TEXT    NOT NULL UNIQUE,
    state            TEXT    NOT NULL DEFAULT 'active'
                     CHECK (state IN ('active', 'bounced', 'complained', 'unsubscribed')),
    hard_count       INTEGER NOT NULL DEFAULT 0,
    soft_count       INTEGER NOT NULL DEFAULT 0,
    complaint_count  INTEGER NOT NULL DEFAULT 0,
    last_bounce_at   INTEGER,
    last_status      TEXT,
    last_reason      TEXT,
    state_changed_at INTEGER,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

CREATE INDEX recipients_state ON recipients (state);

-- One row per recipient record of a returned message (or an SMTP-time rejection), plus
-- one marker row (recipient NULL, error set) for a message that could not be parsed.
CREATE TABLE events (
    id                  INTEGER PRIMARY KEY,
    at                  INTEGER NOT NULL,
    source              TEXT    NOT NULL,
    mailbox             TEXT,
    uid                 TEXT,
    recipient           TEXT,
    recipient_id        INTEGER,
    kind                TEXT    NOT NULL,
    class               TEXT,
    status              TEXT,
    reason              TEXT,
    diagnostic          TEXT,
    decided_by          TEXT    NOT NULL,
    original_message_id TEXT,
    campaign_id         INTEGER,
    error               TEXT
);

CREATE INDEX events_recipient_at ON events (recipient_id, at);
CREATE INDEX events_campaign ON events (campaign_id);
CREATE INDEX events_mailbox_uid ON events (mailbox, uid);

-- Every message of a mailbox whose verdict is committed, by UIDL. A UID in here is never
-- counted again; the poller only deletes it.
CREATE TABLE ledger (
    mailbox      TEXT    NOT NULL,
    uid          TEXT    NOT NULL,
    processed_at INTEGER NOT NULL,
    outcome      TEXT    NOT NULL CHECK (outcome IN ('recorded', 'unparseable')),
    kind         TEXT    NOT NULL,
    events       INTEGER NOT NULL,
    size         INTEGER,
    PRIMARY KEY (mailbox, uid)
);
