-- rebound store, schema 2: campaigns and their send queue.
-- Times are INTEGER milliseconds since the Unix epoch (UTC).

-- One row per campaign. `name` is unique: sending a campaign file again resumes it.
CREATE TABLE campaigns (
    id          INTEGER PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    from_header TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    text_body   TEXT,
    html_body   TEXT,
    state       TEXT    NOT NULL DEFAULT 'queued'
                CHECK (state IN ('queued', 'sending', 'done')),
    created_at  INTEGER NOT NULL,
    started_at  INTEGER,
    finished_at INTEGER
);

-- One row per recipient of a campaign: the queue item and, once done, its result.
--   pending  waiting to be sent (again, once `not_before` has passed)
--   claimed  in a worker's batch; a sender that starts resets these to pending
--   sent     the server accepted it (250 after DATA)
--   bounced  refused with a 5xx during the dialogue (an event was recorded)
--   failed   4xx until max_attempts ran out (a soft bounce was recorded), or unsendable
CREATE TABLE sends (
    id          INTEGER PRIMARY KEY,
    campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
    address     TEXT    NOT NULL,
    address_key TEXT    NOT NULL,
    state       TEXT    NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'claimed', 'sent', 'bounced', 'failed')),
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

CREATE INDEX sends_queue ON sends (campaign_id, state, not_before, id);
CREATE INDEX sends_message_id ON sends (message_id);
