-- rebound store, schema 12: several runners on one campaign (one per process or host).

-- Each runner that sends a campaign has its own row, refreshed by its heartbeat; its
-- claimed sends carry its name and lease (schema 6), so runners share the campaign's rows
-- without a lock on the campaign. A row whose `expires_at` has passed belongs to a runner
-- that died: the next runner to join removes it, and the dead runner's claims go back to
-- the queue when their lease expires. The rows are leases only: a process still running
-- the campaign while this migrates joins again at its next heartbeat's failure.
DROP TABLE campaign_runners;
CREATE TABLE campaign_runners (
    campaign_id  BIGINT NOT NULL REFERENCES campaigns (id),
    owner        TEXT    NOT NULL,
    started_at   BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (campaign_id, owner)
);
