-- rebound store, schema 19 (PostgreSQL; the same as SQLite's): the dashboard overview's
-- counters, kept by the writes
-- themselves (src/store/rollup.rs) so that an overview reads a few hundred rows instead
-- of scanning events. One row per (dimension, span, bucket, key):
--   dim 0  all events and sends of the bucket      campaign_id 0, domain '', reason ''
--   dim 1  one campaign's                          campaign_id,   domain '', reason ''
--   dim 2  one destination domain's                campaign_id 0, domain,    reason ''
--   dim 3  one bounce reason's                     campaign_id 0, domain '', reason
-- `span` is 3600000 (the bucket is an hour) or 86400000 (a UTC day); dim 0 has hours
-- only (a 30-day series is 720 rows), the others both, so that a long range reads day
-- rows and only its ragged ends hour rows. Every read is a range of the primary key.
-- `hard` and `soft` are recipient-side (or transit, or unknown) bounces,
-- `sender_refusals` sender-blamed ones (never among `hard` or `soft`), `sends` accepted
-- campaign sends at the hour of their checkpoint.
CREATE TABLE rollup (
    dim             BIGINT  NOT NULL,
    span            BIGINT  NOT NULL,
    bucket          BIGINT  NOT NULL,
    campaign_id     BIGINT  NOT NULL,
    domain          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    sends           BIGINT  NOT NULL DEFAULT 0,
    hard            BIGINT  NOT NULL DEFAULT 0,
    soft            BIGINT  NOT NULL DEFAULT 0,
    complaints      BIGINT  NOT NULL DEFAULT 0,
    sender_refusals BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (dim, span, bucket, campaign_id, domain, reason)
);

-- The backfill: what the store holds now, counted as rollup::Tally::count_event and
-- rollup::Tally::count_sends count each write (markers of unparseable messages, events of
-- other kinds and bounces without a class count nothing). One pass over events and
-- sends into an hourly table by every key, then each dimension from it.
CREATE TABLE rollup_backfill AS
SELECT at - at % 3600000 AS hour, COALESCE(campaign_id, 0) AS campaign_id,
       COALESCE(domain, '') AS domain,
       CASE WHEN kind = 'bounce' THEN COALESCE(reason, '') ELSE '' END AS reason,
       0 AS sends,
       SUM(CASE WHEN kind = 'bounce' AND class = 'hard' AND COALESCE(blame, '') <> 'sender'
           THEN 1 ELSE 0 END) AS hard,
       SUM(CASE WHEN kind = 'bounce' AND class <> 'hard' AND COALESCE(blame, '') <> 'sender'
           THEN 1 ELSE 0 END) AS soft,
       SUM(CASE WHEN kind = 'complaint' THEN 1 ELSE 0 END) AS complaints,
       SUM(CASE WHEN kind = 'bounce' AND blame = 'sender' THEN 1 ELSE 0 END) AS sender_refusals
FROM events
WHERE error IS NULL AND ((kind = 'bounce' AND class IS NOT NULL) OR kind = 'complaint')
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT COALESCE(sent_at, updated_at) - COALESCE(sent_at, updated_at) % 3600000, campaign_id,
       COALESCE(domain, ''), '', COUNT(*), 0, 0, 0, 0
FROM sends WHERE state = 'sent'
GROUP BY 1, 2, 3;

INSERT INTO rollup
SELECT 0, 3600000, hour, 0, '', '', SUM(sends), SUM(hard), SUM(soft), SUM(complaints),
       SUM(sender_refusals)
FROM rollup_backfill GROUP BY hour;

INSERT INTO rollup
SELECT 1, s.span, s.bucket, s.campaign_id, '', '', SUM(s.sends), SUM(s.hard), SUM(s.soft),
       SUM(s.complaints), SUM(s.sender_refusals)
FROM (SELECT 3600000 AS span, hour AS bucket, b.* FROM rollup_backfill b
      UNION ALL SELECT 86400000, hour - hour % 86400000, b.* FROM rollup_backfill b) s
WHERE s.campaign_id <> 0 GROUP BY s.span, s.bucket, s.campaign_id;

INSERT INTO rollup
SELECT 2, s.span, s.bucket, 0, s.domain, '', SUM(s.sends), SUM(s.hard), SUM(s.soft),
       SUM(s.complaints), SUM(s.sender_refusals)
FROM (SELECT 3600000 AS span, hour AS bucket, b.* FROM rollup_backfill b
      UNION ALL SELECT 86400000, hour - hour % 86400000, b.* FROM rollup_backfill b) s
WHERE s.domain <> '' GROUP BY s.span, s.bucket, s.domain;

INSERT INTO rollup
SELECT 3, s.span, s.bucket, 0, '', s.reason, 0, SUM(s.hard), SUM(s.soft), 0,
       SUM(s.sender_refusals)
FROM (SELECT 3600000 AS span, hour AS bucket, b.* FROM rollup_backfill b
      UNION ALL SELECT 86400000, hour - hour % 86400000, b.* FROM rollup_backfill b) s
WHERE s.reason <> '' GROUP BY s.span, s.bucket, s.reason;

DROP TABLE rollup_backfill;
