-- rebound store, schema 18: events replaced by reprocessing. `rebound reprocess` books
-- an archived message again; when its bookings change, the message's old events move
-- here (same ids and columns, plus when they were superseded) and the new ones go into
-- `events`. Every count reads `events` alone, so nothing is counted twice; the history
-- of what was decided before stays.
CREATE TABLE superseded_events (
    id                  BIGINT  PRIMARY KEY,
    at                  BIGINT  NOT NULL,
    source              TEXT    NOT NULL,
    mailbox             TEXT,
    uid                 TEXT,
    recipient           TEXT,
    recipient_id        BIGINT,
    kind                TEXT    NOT NULL,
    class               TEXT,
    status              TEXT,
    reason              TEXT,
    diagnostic          TEXT,
    decided_by          TEXT    NOT NULL,
    original_message_id TEXT,
    campaign_id         BIGINT,
    error               TEXT,
    blame               TEXT,
    action              TEXT,
    domain              TEXT,
    aliases             TEXT,
    previous_state      TEXT,
    superseded_at       BIGINT  NOT NULL
);
CREATE INDEX superseded_events_mailbox_uid ON superseded_events (mailbox, uid, at);
CREATE INDEX superseded_events_recipient ON superseded_events (recipient_id, id);
