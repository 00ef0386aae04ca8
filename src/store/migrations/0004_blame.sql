-- rebound store, schema 4: whom a failure is about (blame), and what the rules built on
-- it need: the DSN action (a delay warning counts only through its final failure), the
-- recipient's domain (sender-side refusals are counted per destination domain), the
-- other addresses a correlated report named (aliases, a JSON array), the state before a
-- manual reactivation, when the recipient's counts start afresh, and per-campaign
-- pauses of a destination domain.
-- Old events get their blame from their stored reason when the store opens (the one
-- mapping is verdict::Blame::of, in Rust).

ALTER TABLE events ADD COLUMN blame TEXT CHECK (blame IN ('recipient', 'sender', 'transit', 'unknown'));
ALTER TABLE events ADD COLUMN action TEXT;
ALTER TABLE events ADD COLUMN domain TEXT;
ALTER TABLE events ADD COLUMN aliases TEXT;
ALTER TABLE events ADD COLUMN previous_state TEXT;

UPDATE events SET domain = lower(substr(recipient, instr(recipient, '@') + 1))
    WHERE recipient LIKE '%@%';

CREATE INDEX events_domain_at ON events (domain, at);

-- Events before this time no longer count towards the soft rule (set on reactivation).
ALTER TABLE recipients ADD COLUMN counts_since INTEGER;

ALTER TABLE sends ADD COLUMN domain TEXT;
UPDATE sends SET domain = substr(address_key, instr(address_key, '@') + 1)
    WHERE address_key LIKE '%@%';
CREATE INDEX sends_domain ON sends (campaign_id, domain);

-- A campaign's sends to `domain` are not claimed before `until`.
CREATE TABLE domain_pauses (
    campaign_id INTEGER NOT NULL,
    domain      TEXT    NOT NULL,
    paused_at   INTEGER NOT NULL,
    until       INTEGER NOT NULL,
    refusals    INTEGER NOT NULL,
    sends       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, domain)
);
