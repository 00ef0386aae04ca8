//! The SQLite dialect: every statement of the store as SQLite runs it.
//!
//! Placeholders are `$1`, `$2`, …; times are milliseconds since the Unix epoch (the rate
//! limiter's, microseconds). Lists of values travel as one JSON parameter read by
//! `json_each`.

use super::{EventFilters, UPDATE_SENDS_ROW};

/// Is this message of this mailbox already in the ledger? `$1` mailbox, `$2` uid.
pub const LEDGER_CONTAINS: &str = "SELECT 1 FROM ledger WHERE mailbox = $1 AND uid = $2";

/// The outcome and kind of a ledger row. `$1` mailbox, `$2` uid.
pub const LEDGER_ENTRY: &str = "SELECT outcome, kind FROM ledger WHERE mailbox = $1 AND uid = $2";

/// The ledger rows among a set of UIDs, with the size LIST gave (NULL for rows older
/// than schema 8). `$1` mailbox, `$2` the UIDs as a JSON array (SQLite's `json_each`;
/// PostgreSQL would take `= ANY($2)`).
pub const LEDGER_ENTRIES: &str = "SELECT uid, outcome, kind, size FROM ledger \
     WHERE mailbox = $1 AND uid IN (SELECT value FROM json_each($2))";

/// Claims a ledger row; does nothing (0 rows) when the message is already there. A row
/// of the same UID with another known size belongs to an earlier message under a reused
/// UID: it is replaced (1 row). `$1` mailbox, `$2` uid, `$3` processed_at, `$4` outcome,
/// `$5` kind, `$6` events, `$7` size (LIST's).
pub const INSERT_LEDGER: &str = "INSERT INTO ledger (mailbox, uid, processed_at, outcome, kind, events, size) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (mailbox, uid) DO UPDATE SET \
     processed_at = excluded.processed_at, outcome = excluded.outcome, kind = excluded.kind, \
     events = excluded.events, size = excluded.size, fetched_size = NULL \
     WHERE ledger.size IS NOT NULL AND excluded.size IS NOT NULL AND ledger.size <> excluded.size";

/// Records message `$3` of mailbox `$1` as the same message as its recorded `$2` (a
/// folder renumbered by the server): a ledger row with `$2`'s outcome, kind and size, no
/// events, at `$4`. Nothing when `$2` has no row or `$3` has one.
pub const LEDGER_ALIAS: &str = "INSERT INTO ledger (mailbox, uid, processed_at, outcome, kind, events, size) \
     SELECT mailbox, $3, $4, outcome, kind, 0, size FROM ledger WHERE mailbox = $1 AND uid = $2 \
     ON CONFLICT (mailbox, uid) DO NOTHING";

/// What IMAP message `$2` of mailbox `$1` holds: `$3` its digest.
pub const PUT_IMAP_DIGEST: &str = "INSERT INTO imap_digests (mailbox, uid, digest) VALUES ($1, $2, $3) \
     ON CONFLICT (mailbox, uid) DO UPDATE SET digest = excluded.digest";

/// Another message of mailbox `$1` than `$3` with digest `$2` that is recorded (has a
/// ledger row): its uid.
pub const IMAP_DIGEST_RECORDED: &str = "SELECT d.uid FROM imap_digests d \
     JOIN ledger l ON l.mailbox = d.mailbox AND l.uid = d.uid \
     WHERE d.mailbox = $1 AND d.digest = $2 AND d.uid <> $3 ORDER BY d.uid LIMIT 1";

/// Gives ledger rows that have no size (older than schema 8) the size LIST gives now.
/// `$1` mailbox, `$2` a JSON object UID → size.
pub const LEDGER_ADOPT_SIZES: &str = "UPDATE ledger SET size = \
     (SELECT value FROM json_each($2) WHERE key = ledger.uid) \
     WHERE mailbox = $1 AND size IS NULL AND uid IN (SELECT key FROM json_each($2))";

/// Number of ledger rows of one mailbox. `$1` mailbox.
pub const COUNT_LEDGER: &str = "SELECT COUNT(*) FROM ledger WHERE mailbox = $1";

/// Counts a failed fetch of a message and quarantines it when its failures reach `$5`
/// (`max_fetch_failures`); returns its failures so far. `$1` mailbox, `$2` uid, `$3` the
/// error, `$4` now.
pub const RECORD_FETCH_FAILURE: &str = "INSERT INTO fetch_failures \
     (mailbox, uid, failures, last_error, last_at, first_at, quarantined_at) \
     VALUES ($1, $2, 1, $3, $4, $4, CASE WHEN 1 >= $5 THEN $4 END) \
     ON CONFLICT (mailbox, uid) DO UPDATE SET \
     failures = fetch_failures.failures + 1, last_error = excluded.last_error, last_at = excluded.last_at, \
     quarantined_at = COALESCE(fetch_failures.quarantined_at, \
         CASE WHEN fetch_failures.failures + 1 >= $5 THEN excluded.last_at END) \
     RETURNING failures";

/// The failed-fetch counts among a set of UIDs, and whether each is quarantined. `$1`
/// mailbox, `$2` the UIDs as a JSON array.
pub const FETCH_FAILURES: &str = "SELECT uid, failures, quarantined_at IS NOT NULL FROM fetch_failures \
     WHERE mailbox = $1 AND uid IN (SELECT value FROM json_each($2))";

/// Quarantines the messages whose failures reached `$2` (counted before schema 8, or
/// under a lower `max_fetch_failures`). `$1` mailbox, `$3` now.
pub const MARK_QUARANTINED: &str = "UPDATE fetch_failures SET quarantined_at = $3 \
     WHERE mailbox = $1 AND quarantined_at IS NULL AND failures >= $2";

/// Every failed fetch of one mailbox (a handful), as [`FETCH_FAILURES`]. `$1` mailbox.
pub const MAILBOX_FETCH_FAILURES: &str = "SELECT uid, failures, quarantined_at IS NOT NULL \
     FROM fetch_failures WHERE mailbox = $1";

/// Forgets the failures of messages that are no longer on the server. `$1` mailbox, `$2`
/// their UIDs, as a JSON array.
pub const PRUNE_FETCH_FAILURES: &str = "DELETE FROM fetch_failures \
     WHERE mailbox = $1 AND uid IN (SELECT value FROM json_each($2))";

/// The quarantined messages, of one mailbox (`$1`) or of all (`$1` NULL; the table
/// holds a handful of rows).
pub const QUARANTINED: &str = "SELECT mailbox, uid, failures, COALESCE(first_at, last_at), last_at, \
     last_error, quarantined_at FROM fetch_failures \
     WHERE quarantined_at IS NOT NULL AND ($1 IS NULL OR mailbox = $1) \
     ORDER BY mailbox, quarantined_at, uid";

/// Releases quarantined messages (their failures are forgotten, so the next pass fetches
/// them again); returns what was released. `$1` mailbox or NULL for all, `$2` the UIDs
/// as a JSON array.
pub const RELEASE_QUARANTINED: &str = "DELETE FROM fetch_failures \
     WHERE quarantined_at IS NOT NULL AND ($1 IS NULL OR mailbox = $1) \
     AND uid IN (SELECT value FROM json_each($2)) RETURNING mailbox, uid";

/// Releases every quarantined message of one mailbox (`$1`) or of all (`$1` NULL).
pub const RELEASE_ALL_QUARANTINED: &str = "DELETE FROM fetch_failures \
     WHERE quarantined_at IS NOT NULL AND ($1 IS NULL OR mailbox = $1) RETURNING mailbox, uid";

/// Creates a recipient or touches an existing one; returns its id, state and when its
/// counts start (`counts_since`, set by a reactivation). `$1` address, `$2` address_key,
/// `$3` now.
pub const UPSERT_RECIPIENT: &str = "INSERT INTO recipients (address, address_key, created_at, updated_at) \
     VALUES ($1, $2, $3, $3) \
     ON CONFLICT (address_key) DO UPDATE SET updated_at = excluded.updated_at \
     RETURNING id, state, counts_since";

/// The id, state and `counts_since` of a recipient, by key. `$1` address_key.
pub const RECIPIENT_ID_BY_KEY: &str =
    "SELECT id, state, counts_since FROM recipients WHERE address_key = $1";

/// [`RECIPIENT_ID_BY_KEY`] for a reactivation, which decides on the state it reads.
/// Nothing more on SQLite: the write transaction (`BEGIN IMMEDIATE`) already keeps every
/// other writer out until the commit (PostgreSQL's locks the row).
pub const LOCK_RECIPIENT_BY_KEY: &str = RECIPIENT_ID_BY_KEY;

/// Counts a hard bounce. `$1` id, `$2` at, `$3` status, `$4` reason.
pub const COUNT_HARD_BOUNCE: &str = "UPDATE recipients SET hard_count = hard_count + 1, last_bounce_at = $2, \
     last_status = $3, last_reason = $4, updated_at = $2 WHERE id = $1";

/// Counts a soft bounce. `$1` id, `$2` at, `$3` status, `$4` reason.
pub const COUNT_SOFT_BOUNCE: &str = "UPDATE recipients SET soft_count = soft_count + 1, last_bounce_at = $2, \
     last_status = $3, last_reason = $4, updated_at = $2 WHERE id = $1";

/// Counts a complaint. `$1` id, `$2` at.
pub const COUNT_COMPLAINT: &str =
    "UPDATE recipients SET complaint_count = complaint_count + 1, updated_at = $2 WHERE id = $1";

/// A recipient's soft bounce events at or after a time, for the soft rule (which ones
/// count is decided in Rust: `store::state::soft_messages`). `$1` recipient id, `$2` since.
pub const SOFT_EVENTS_SINCE: &str = "SELECT id, original_message_id, class, blame, action, reason \
     FROM events WHERE recipient_id = $1 AND kind = 'bounce' AND class = 'soft' AND at >= $2 ORDER BY id";

/// A manual reactivation: active again, the soft count and the soft rule start afresh.
/// `$1` id, `$2` now.
pub const REACTIVATE_RECIPIENT: &str = "UPDATE recipients SET state = 'active', soft_count = 0, \
     counts_since = $2, state_changed_at = $2, updated_at = $2 WHERE id = $1";

/// Failure events recorded before blame existed: id, class, reason, and what the rollup
/// counted them by (at, kind, domain, campaign, error). No parameters.
pub const EVENTS_WITHOUT_BLAME: &str = "SELECT id, class, reason, at, kind, domain, campaign_id, error \
     FROM events WHERE blame IS NULL AND class IS NOT NULL";

/// Sets an old event's blame. `$1` id, `$2` blame.
pub const SET_EVENT_BLAME: &str = "UPDATE events SET blame = $2 WHERE id = $1";

/// Taken before a campaign's pause decision for a domain. Nothing to lock on SQLite (a
/// cheap no-op that names its parameters): the write transaction keeps every other
/// writer out until the commit, so the counts that follow see every earlier decision
/// (PostgreSQL's takes an advisory lock). `$1` campaign, `$2` domain.
pub const LOCK_DOMAIN_PAUSE: &str = "SELECT $1, $2";

/// Sent messages of a campaign to a domain refused for sender reasons at or after a time
/// (a delay warning alone is no refusal). `$1` campaign, `$2` domain, `$3` since.
pub const CAMPAIGN_DOMAIN_REFUSALS: &str = "SELECT COUNT(DISTINCT COALESCE(original_message_id, 'event:' || id)) \
     FROM events WHERE campaign_id = $1 AND domain = $2 AND kind = 'bounce' AND blame = 'sender' \
     AND at >= $3 AND (action IS NULL OR action <> 'delayed')";

/// Sends of a campaign to a domain that got their answer at or after a time: accepted, or
/// refused or given up during the dialogue. `$1` campaign, `$2` domain, `$3` since.
pub const CAMPAIGN_DOMAIN_SENDS: &str = "SELECT COUNT(*) FROM sends WHERE campaign_id = $1 AND domain = $2 \
     AND (sent_at >= $3 OR (state IN ('bounced', 'failed') AND updated_at >= $3))";

/// When a campaign's pause of a domain ends (or ended). `$1` campaign, `$2` domain.
pub const PAUSE_UNTIL: &str =
    "SELECT until FROM domain_pauses WHERE campaign_id = $1 AND domain = $2";

/// Pauses a campaign's sends to a domain, unless a pause is in force already (so arriving
/// refusals do not keep extending it). `$1` campaign, `$2` domain, `$3` now, `$4` until,
/// `$5` refusals, `$6` sends.
pub const UPSERT_PAUSE: &str = "INSERT INTO domain_pauses (campaign_id, domain, paused_at, until, refusals, sends) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (campaign_id, domain) DO UPDATE SET \
     paused_at = excluded.paused_at, until = excluded.until, refusals = excluded.refusals, \
     sends = excluded.sends WHERE domain_pauses.until <= excluded.paused_at";

/// Sender-blamed refusals (distinct sent messages) per destination domain and reason at
/// or after a time, every campaign and source. `$1` since.
pub const SENDER_REFUSALS_SINCE: &str = "SELECT domain, reason, COUNT(DISTINCT COALESCE(original_message_id, 'event:' || id)) \
     FROM events WHERE kind = 'bounce' AND blame = 'sender' AND domain IS NOT NULL AND at >= $1 \
     AND (action IS NULL OR action <> 'delayed') GROUP BY domain, reason ORDER BY domain, reason";

/// Sends per destination domain that got their answer at or after a time. `$1` since.
pub const SENDS_BY_DOMAIN_SINCE: &str = "SELECT domain, COUNT(*) FROM sends WHERE domain IS NOT NULL \
     AND (sent_at >= $1 OR (state IN ('bounced', 'failed') AND updated_at >= $1)) GROUP BY domain ORDER BY domain";

/// Moves a recipient to a new state. `$1` id, `$2` state, `$3` at.
pub const SET_RECIPIENT_STATE: &str =
    "UPDATE recipients SET state = $2, state_changed_at = $3, updated_at = $3 WHERE id = $1";

/// Records one event. `$1` at, `$2` source, `$3` mailbox, `$4` uid, `$5` recipient,
/// `$6` recipient_id, `$7` kind, `$8` class, `$9` status, `$10` reason, `$11` diagnostic,
/// `$12` decided_by, `$13` original_message_id, `$14` campaign_id, `$15` error,
/// `$16` blame, `$17` action, `$18` domain, `$19` aliases (JSON array or NULL),
/// `$20` previous_state (reactivations).
pub const INSERT_EVENT: &str = "INSERT INTO events (at, source, mailbox, uid, recipient, recipient_id, kind, class, \
     status, reason, diagnostic, decided_by, original_message_id, campaign_id, error, blame, action, domain, \
     aliases, previous_state) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";

/// Archives a message: `$1` at, `$2` mailbox, `$3` uid, `$4` size, `$5` zstd bytes.
pub const INSERT_RAW: &str =
    "INSERT INTO raw_messages (at, mailbox, uid, size, data) VALUES ($1, $2, $3, $4, $5)";
/// The archived message (data, size) of event `$1`: the one of its mailbox, UID and time.
pub const RAW_OF_EVENT: &str = "SELECT r.data, r.size FROM events e JOIN raw_messages r \
     ON r.mailbox = e.mailbox AND r.uid = e.uid AND r.at = e.at WHERE e.id = $1 \
     ORDER BY r.id DESC LIMIT 1";
/// The latest archived message (data, size) of mailbox `$1`, UID `$2`.
pub const RAW_OF_MESSAGE: &str = "SELECT data, size FROM raw_messages WHERE mailbox = $1 AND uid = $2 \
     ORDER BY at DESC, id DESC LIMIT 1";
/// Archived messages (id, at, mailbox, uid, data, size) recorded at or after `$1`, with
/// an id above `$2`, in id order, `$3` at most.
pub const ARCHIVE_PAGE: &str = "SELECT id, at, mailbox, uid, data, size FROM raw_messages \
     WHERE at >= $1 AND id > $2 ORDER BY id LIMIT $3";
/// The events one message was recorded as: mailbox `$1`, UID `$2`, at `$3`.
pub const EVENTS_OF_MESSAGE: &str = concat!(
    event_columns!(),
    "WHERE e.mailbox = $1 AND e.uid = $2 AND e.at = $3 ORDER BY e.id"
);
/// The columns an event keeps when it is superseded (all of them).
macro_rules! superseded_columns {
    () => {
        "id, at, source, mailbox, uid, recipient, recipient_id, kind, class, status, reason, \
         diagnostic, decided_by, original_message_id, campaign_id, error, blame, action, domain, \
         aliases, previous_state"
    };
}
/// Which events are one message's bookings: mailbox `$1`, UID `$2`, at `$3`, a message
/// kind (not a reactivation or an unsubscribe that came with it).
macro_rules! message_bookings {
    () => {
        "WHERE mailbox = $1 AND uid = $2 AND at = $3 AND kind NOT IN ('reactivation', 'unsubscribe')"
    };
}
/// Serialises rebookings of one message (`$1` mailbox, `$2` UID): SQLite's write
/// transaction already keeps every other writer out (a no-op that names its parameters).
pub const LOCK_MESSAGE: &str = "SELECT $1, $2";
/// Copies one message's bookings (see `message_bookings!`) to `superseded_events`,
/// superseded at `$4`.
pub const SUPERSEDE_COPY: &str = concat!(
    "INSERT INTO superseded_events (",
    superseded_columns!(),
    ", superseded_at) SELECT ",
    superseded_columns!(),
    ", $4 FROM events ",
    message_bookings!()
);
/// Deletes one message's bookings from `events` (after [`SUPERSEDE_COPY`]).
pub const SUPERSEDE_DELETE: &str = concat!("DELETE FROM events ", message_bookings!());
/// The recipients one message's bookings name.
pub const MESSAGE_RECIPIENT_IDS: &str = concat!(
    "SELECT DISTINCT recipient_id FROM events ",
    message_bookings!(),
    " AND recipient_id IS NOT NULL"
);
/// Recipient `$1`'s events in the order they happened, for `state::replay`: the
/// columns of [`SOFT_EVENTS_SINCE`], then at and kind.
pub const REPLAY_EVENTS: &str = "SELECT id, original_message_id, class, blame, action, reason, at, kind \
     FROM events WHERE recipient_id = $1 ORDER BY at, id";
/// Counts recipient `$1`'s bounces and complaints again from its events, as booking
/// counts them (soft: since the last reactivation), at `$2`; returns its state, address
/// and last reactivation (`counts_since`). One pass over the recipient's events by `events_recipient_at` (conditions
/// on `kind` would let SQLite pick the index of every event of that kind instead).
pub const RECOUNT_RECIPIENT: &str = "UPDATE recipients SET \
     (hard_count, soft_count, complaint_count) = (SELECT \
        COALESCE(SUM(CASE WHEN e.kind = 'bounce' AND e.class = 'hard' THEN 1 ELSE 0 END), 0), \
        COALESCE(SUM(CASE WHEN e.kind = 'bounce' AND (e.class IS NULL OR e.class <> 'hard') \
           AND e.at >= COALESCE(recipients.counts_since, 0) THEN 1 ELSE 0 END), 0), \
        COALESCE(SUM(CASE WHEN e.kind = 'complaint' THEN 1 ELSE 0 END), 0) \
        FROM events e WHERE e.recipient_id = $1), \
     updated_at = $2 WHERE id = $1 RETURNING state, address, counts_since";

/// Deletes up to `$2` messages archived before `$1`.
pub const PRUNE_RAW: &str = "DELETE FROM raw_messages WHERE id IN \
     (SELECT id FROM raw_messages WHERE at < $1 ORDER BY at LIMIT $2)";
/// Messages archived, their bytes and their compressed bytes.
pub const ARCHIVE_STATS: &str = "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(LENGTH(data)), 0) \
     FROM raw_messages";

/// Columns of a recipient row, in the order `Recipient::from_row` reads them.
macro_rules! recipient_columns {
    () => {
        "SELECT id, address, state, hard_count, soft_count, complaint_count, last_bounce_at, \
         last_status, last_reason, state_changed_at, created_at, updated_at FROM recipients "
    };
}

/// The columns of [`recipient_columns`] and then the key, for the listing's cursor.
macro_rules! recipient_columns_and_key {
    () => {
        "SELECT id, address, state, hard_count, soft_count, complaint_count, last_bounce_at, \
         last_status, last_reason, state_changed_at, created_at, updated_at, address_key FROM recipients "
    };
}

/// One recipient, by key. `$1` address_key.
pub const SELECT_RECIPIENT: &str = concat!(recipient_columns!(), "WHERE address_key = $1");

/// A page of recipients (and their keys) by address key, after a cursor (the last key of the page before,
/// `''` for the first page). `$1` after, `$2` limit. The key's unique index serves it.
pub const SELECT_RECIPIENTS: &str = concat!(
    recipient_columns_and_key!(),
    "WHERE address_key > $1 ORDER BY address_key LIMIT $2"
);

/// A page of the recipients in one state by address key, after a cursor. `$1` state,
/// `$2` after, `$3` limit. Served by `recipients_state_key (state, address_key)`.
pub const SELECT_RECIPIENTS_IN_STATE: &str = concat!(
    recipient_columns_and_key!(),
    "WHERE state = $1 AND address_key > $2 ORDER BY address_key LIMIT $3"
);

/// Number of recipients per state.
pub const COUNT_RECIPIENTS_BY_STATE: &str =
    "SELECT state, COUNT(*) FROM recipients GROUP BY state ORDER BY state";

/// Events by id (oldest first) after a cursor, one statement per combination of filters
/// so that each is planned on its own index (a `$1 IS NULL OR …` in one statement made
/// SQLite scan the whole table). Placeholders in this order, only for the filters set:
/// recipient key, kind, mailbox, campaign id, since (ms); then the cursor (the last id
/// of the page before, 0 for the first) and the limit (-1: no limit).
pub fn select_events(f: EventFilters) -> String {
    super::events_query(f, |limit| format!("LIMIT ${limit}"))
}

/// Number of events.
pub const COUNT_EVENTS: &str = "SELECT COUNT(*) FROM events";
/// The latest 100 events reprocessing replaced of the recipient with key `$1`: the
/// event columns (`event_columns!`'s order), then when each was superseded.
pub const SUPERSEDED_OF_RECIPIENT: &str = "SELECT e.id, e.at, e.source, e.mailbox, e.uid, \
     e.recipient, e.kind, e.class, e.status, e.reason, e.diagnostic, e.decided_by, \
     e.original_message_id, e.campaign_id, e.error, e.blame, e.action, e.domain, e.aliases, \
     e.previous_state, e.superseded_at FROM superseded_events e \
     WHERE e.recipient_id = (SELECT id FROM recipients WHERE address_key = $1) \
     ORDER BY e.id DESC LIMIT 100";
/// Events that reprocessing replaced.
pub const COUNT_SUPERSEDED: &str = "SELECT COUNT(*) FROM superseded_events";

/// `$1` name. Columns as [`SELECT_CAMPAIGN_BY_ID`].
pub const SELECT_CAMPAIGN_BY_NAME: &str = "SELECT id, name, from_header, subject, text_body, html_body, state, \
     created_at, started_at, finished_at, enqueued, paused_at, pause_reason FROM campaigns WHERE name = $1";
/// `$1` id.
pub const SELECT_CAMPAIGN_BY_ID: &str = "SELECT id, name, from_header, subject, text_body, html_body, state, \
     created_at, started_at, finished_at, enqueued, paused_at, pause_reason FROM campaigns WHERE id = $1";
/// `$1` name, `$2` from, `$3` subject, `$4` text, `$5` html, `$6` now. Returns the id.
/// Not `enqueued` until its last chunk of recipients is in.
pub const INSERT_CAMPAIGN: &str = "INSERT INTO campaigns (name, from_header, subject, text_body, html_body, \
     created_at, enqueued) VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING id";
/// Queues a chunk of recipients, each unless the store knows it as not mailable or it
/// is queued already. `$1` campaign, `$2` now, `$3` a JSON array of
/// `[address, address_key, domain]`.
pub const INSERT_SENDS: &str = "INSERT INTO sends (campaign_id, address, address_key, updated_at, domain) \
     SELECT $1, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), $2, json_extract(j.value, '$[2]') \
     FROM json_each($3) j WHERE NOT EXISTS \
     (SELECT 1 FROM recipients r WHERE r.address_key = json_extract(j.value, '$[1]') AND r.state <> 'active') \
     ON CONFLICT (campaign_id, address_key) DO NOTHING";
/// Every recipient of campaign `$1` is queued.
pub const SET_ENQUEUED: &str = "UPDATE campaigns SET enqueued = 1 WHERE id = $1";
/// Claims whose lease expired (or that have none) go back to pending. `$1` campaign,
/// `$2` now.
pub const RESET_CLAIMED: &str = "UPDATE sends SET state = 'pending', claimed_at = NULL, owner = NULL, \
     lease_until = NULL, updated_at = $2 WHERE campaign_id = $1 AND state = 'claimed' \
     AND (lease_until IS NULL OR lease_until <= $2)";
/// Forgets the runners of campaign `$1` whose lease expired before `$2` (now): they died.
pub const PRUNE_RUNNERS: &str =
    "DELETE FROM campaign_runners WHERE campaign_id = $1 AND expires_at <= $2";
/// Owner `$2` joins (or joins again) campaign `$1`: now `$3`, its lease until `$4`.
pub const JOIN_RUNNER: &str = "INSERT INTO campaign_runners (campaign_id, owner, started_at, heartbeat_at, expires_at) \
     VALUES ($1, $2, $3, $3, $4) ON CONFLICT (campaign_id, owner) DO UPDATE SET \
     heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at";
/// The runners of campaign `$1`, the earliest first.
pub const SELECT_RUNNERS: &str = "SELECT owner, started_at, heartbeat_at, expires_at FROM campaign_runners \
     WHERE campaign_id = $1 ORDER BY started_at, owner";
/// The heartbeat: owner `$2` of campaign `$1` still runs it (now `$3`, expiring `$4`);
/// no row when it was pruned.
pub const HEARTBEAT_RUNNER: &str = "UPDATE campaign_runners SET heartbeat_at = $3, expires_at = $4 \
     WHERE campaign_id = $1 AND owner = $2";
/// The heartbeat extends the owner's claims too. `$1` campaign, `$2` owner, `$3` new
/// lease end.
pub const EXTEND_LEASES: &str =
    "UPDATE sends SET lease_until = $3 WHERE campaign_id = $1 AND state = 'claimed' AND owner = $2";
/// Owner `$2` is done with campaign `$1`.
pub const RELEASE_RUNNER: &str =
    "DELETE FROM campaign_runners WHERE campaign_id = $1 AND owner = $2";
/// Owner `$2` takes lease `$1` (now `$3`, until `$4`) when nobody holds it, it holds it
/// already (a renewal keeps `acquired_at`) or its holder's lease expired. Returns the
/// owner when taken, no row when another holds it.
pub const TAKE_LEASE: &str = "INSERT INTO leases (name, owner, acquired_at, heartbeat_at, expires_at) \
     VALUES ($1, $2, $3, $3, $4) ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
     acquired_at = CASE WHEN leases.owner = excluded.owner THEN leases.acquired_at ELSE excluded.acquired_at END, \
     heartbeat_at = excluded.heartbeat_at, expires_at = excluded.expires_at \
     WHERE leases.owner = excluded.owner OR leases.expires_at <= excluded.heartbeat_at \
     RETURNING owner";
/// Owner `$2` takes lease `$1` over from `$5`, a holder known to be dead (now `$3`, until
/// `$4`); no row when `$5` no longer holds it.
pub const TAKE_LEASE_FROM: &str = "UPDATE leases SET owner = $2, acquired_at = $3, heartbeat_at = $3, \
     expires_at = $4 WHERE name = $1 AND owner = $5";
/// Lease `$1`: its holder, taken at, last heartbeat, expiry.
pub const SELECT_LEASE: &str =
    "SELECT owner, acquired_at, heartbeat_at, expires_at FROM leases WHERE name = $1";
/// Owner `$2`'s heartbeat on lease `$1` (now `$3`, until `$4`); no row when another has
/// taken it over.
pub const RENEW_LEASE: &str =
    "UPDATE leases SET heartbeat_at = $3, expires_at = $4 WHERE name = $1 AND owner = $2";
/// Owner `$2` gives lease `$1` up (nothing when another holds it).
pub const RELEASE_LEASE: &str = "DELETE FROM leases WHERE name = $1 AND owner = $2";
/// The policy chain: its version and manifest (no row before the first change).
pub const SELECT_POLICY_CHAIN: &str = "SELECT version, manifest FROM policy_chain WHERE id = 1";
/// The policy chain's version alone (what every host polls).
pub const POLICY_CHAIN_VERSION: &str = "SELECT version FROM policy_chain WHERE id = 1";
/// The first chain: manifest `$1`, now `$2`; no row when another wrote one first.
pub const INSERT_POLICY_CHAIN: &str = "INSERT INTO policy_chain (id, version, manifest, changed_at) \
     VALUES (1, 1, $1, $2) ON CONFLICT (id) DO NOTHING";
/// A change of the chain made from version `$3`: manifest `$1`, now `$2`; no row when
/// another change came first.
pub const UPDATE_POLICY_CHAIN: &str = "UPDATE policy_chain SET version = version + 1, manifest = $1, \
     changed_at = $2 WHERE id = 1 AND version = $3";
/// A component's bytes `$2` under digest `$1` (size `$3`, now `$4`), once.
pub const INSERT_POLICY_MODULE: &str = "INSERT INTO policy_modules (digest, bytes, size, added_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (digest) DO NOTHING";
/// A component's bytes by digest `$1`.
pub const SELECT_POLICY_MODULE: &str = "SELECT bytes FROM policy_modules WHERE digest = $1";
/// Imports a chunk of subscribers: `$1` now, `$2` a JSON array of `[address,
/// address_key, name, fields]` (no key twice). A known recipient keeps its state and
/// counts; a name or fields given replace the old ones.
pub const IMPORT_SUBSCRIBERS: &str = "INSERT INTO recipients (address, address_key, name, fields, subscribed_at, created_at, updated_at) \
     SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'), \
     json_extract(j.value, '$[3]'), $1, $1, $1 FROM json_each($2) j WHERE true \
     ON CONFLICT (address_key) DO UPDATE SET name = COALESCE(excluded.name, recipients.name), \
     fields = COALESCE(excluded.fields, recipients.fields), \
     subscribed_at = COALESCE(recipients.subscribed_at, excluded.subscribed_at), updated_at = excluded.updated_at";
/// Of the address keys in JSON array `$1`: how many the store knows, and how many of
/// those are suppressed.
pub const COUNT_KNOWN_KEYS: &str = "SELECT COUNT(*), COALESCE(SUM(CASE WHEN state <> 'active' THEN 1 ELSE 0 END), 0) \
     FROM recipients WHERE address_key IN (SELECT value FROM json_each($1))";
/// The first statement of a rate reservation (and of releasing reserved times). Nothing
/// to lock on SQLite (a cheap no-op): the reservation's first write takes the database's
/// write lock, which keeps every other writer out until the commit (PostgreSQL's takes an
/// advisory lock). No parameters.
pub const LOCK_RATES: &str = "SELECT 1";
/// Creates a rate limit's row (a first write, which takes the write lock at the start
/// of the transaction). `$1` name.
pub const INSERT_RATE: &str =
    "INSERT INTO rate_limits (name, tat) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING";
/// `$1` name.
pub const SELECT_RATE: &str = "SELECT tat FROM rate_limits WHERE name = $1";
/// `$1` name, `$2` tat.
pub const UPDATE_RATE: &str = "UPDATE rate_limits SET tat = $2 WHERE name = $1";
/// Times of window `$1` that have left it (at or before `$2`, µs).
pub const PRUNE_WINDOW: &str = "DELETE FROM rate_window_sends WHERE name = $1 AND at <= $2";
/// One reserved time `$2` of window `$1` nobody used.
pub const RELEASE_WINDOW: &str = "DELETE FROM rate_window_sends WHERE rowid IN \
     (SELECT rowid FROM rate_window_sends WHERE name = $1 AND at = $2 LIMIT 1)";
/// The latest time in window `$1`.
pub const NEWEST_IN_WINDOW: &str = "SELECT MAX(at) FROM rate_window_sends WHERE name = $1";
/// Times in window `$1`, newest first, `$2` of them from the `$3`-th newest on.
pub const WINDOW_TIMES: &str = "SELECT at FROM rate_window_sends WHERE name = $1 \
     ORDER BY at DESC LIMIT $2 OFFSET $3";
/// `$1` name, `$2` at.
pub const INSERT_WINDOW: &str = "INSERT INTO rate_window_sends (name, at) VALUES ($1, $2)";
/// The pause through relay `$1`: until (µs) and streak.
pub const SELECT_PAUSE: &str = "SELECT until, streak FROM rate_pauses WHERE relay = $1";
/// Relay `$1` asked for a pause until `$2` (µs), the `$3`-th in a row; `$4` now (µs). A
/// pause still on is only lengthened (its streak kept if larger); an expired one is
/// replaced.
pub const RECORD_PAUSE: &str = "INSERT INTO rate_pauses (relay, until, streak) VALUES ($1, $2, $3) \
     ON CONFLICT (relay) DO UPDATE SET until = MAX(rate_pauses.until, excluded.until), \
     streak = CASE WHEN rate_pauses.until > $4 THEN MAX(rate_pauses.streak, excluded.streak) \
     ELSE excluded.streak END";
/// `$1` campaign, `$2` state, `$3` now.
pub const SET_CAMPAIGN_STATE: &str = "UPDATE campaigns SET state = $2, \
     started_at = CASE WHEN $2 = 'sending' THEN COALESCE(started_at, $3) ELSE started_at END, \
     finished_at = CASE WHEN $2 = 'done' THEN $3 ELSE NULL END WHERE id = $1";
/// Claims for owner `$4` until `$5` up to `$2` due pending rows of campaign `$1` with
/// an id above `$6`, in id order (the `sends_claim` index), skipping destination
/// domains the campaign has paused; none while the campaign itself is paused. `$3` now.
pub const CLAIM_SENDS: &str = "UPDATE sends SET state = 'claimed', claimed_at = $3, updated_at = $3, \
     owner = $4, lease_until = $5 \
     WHERE id IN (SELECT id FROM sends WHERE campaign_id = $1 AND state = 'pending' AND id > $6 \
     AND not_before <= $3 \
     AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = sends.campaign_id AND c.paused_at IS NOT NULL) \
     AND NOT EXISTS (SELECT 1 FROM domain_pauses p WHERE p.campaign_id = sends.campaign_id \
     AND p.domain = sends.domain AND p.until > $3) \
     ORDER BY id LIMIT $2) RETURNING id, address, attempts";
/// Of the rows just claimed (`$1`, a JSON array of ids), those whose recipient is no
/// longer mailable become `skipped`. `$2` now. Returns their ids.
pub const SKIP_CLAIMED_UNMAILABLE: &str = "UPDATE sends SET state = 'skipped', result_text = 'recipient is ' || \
     (SELECT r.state FROM recipients r WHERE r.address_key = sends.address_key), claimed_at = NULL, \
     owner = NULL, lease_until = NULL, updated_at = $2 \
     WHERE id IN (SELECT value FROM json_each($1)) AND EXISTS \
     (SELECT 1 FROM recipients r WHERE r.address_key = sends.address_key AND r.state <> 'active') RETURNING id";
/// Pending rows whose recipient is no longer mailable become `skipped`. `$1` campaign,
/// `$2` now.
pub const SKIP_UNMAILABLE: &str = "UPDATE sends SET state = 'skipped', result_text = 'recipient is ' || \
     (SELECT r.state FROM recipients r WHERE r.address_key = sends.address_key), updated_at = $2 \
     WHERE campaign_id = $1 AND state = 'pending' AND EXISTS \
     (SELECT 1 FROM recipients r WHERE r.address_key = sends.address_key AND r.state <> 'active')";
/// When the last message of any campaign was accepted (checkpoint time).
pub const LAST_SENT_AT: &str = "SELECT MAX(sent_at) FROM sends";
/// When messages (of any campaign) were accepted since `$1`, oldest first.
pub const SENT_SINCE: &str = "SELECT sent_at FROM sends WHERE sent_at >= $1 ORDER BY sent_at";
/// Writes `rows` results in one statement, each to a row that owner `$2` still holds
/// (NULL: whoever does). `$1` now; then per result, [`UPDATE_SENDS_ROW`] parameters:
/// id, state, attempts added, not_before, message_id, verp_token, code, text,
/// sent_at, maybe_delivered. One statement instead of one per result: each statement
/// is a round trip to the connection's thread.
pub fn update_sends(rows: usize) -> String {
    let mut values = String::with_capacity(rows * 60);
    for r in 0..rows {
        let first = 3 + r * UPDATE_SENDS_ROW;
        values.push_str(if r == 0 { "(" } else { ", (" });
        for p in first..first + UPDATE_SENDS_ROW {
            if p > first {
                values.push_str(", ");
            }
            values.push('$');
            values.push_str(&p.to_string());
        }
        values.push(')');
    }
    format!(
        "UPDATE sends SET state = v.column2, attempts = attempts + v.column3, not_before = v.column4, \
         message_id = COALESCE(v.column5, message_id), verp_token = COALESCE(v.column6, verp_token), \
         result_code = v.column7, result_text = v.column8, sent_at = COALESCE(v.column9, sent_at), \
         claimed_at = NULL, owner = NULL, lease_until = NULL, updated_at = $1, maybe_delivered = v.column10 \
         FROM (VALUES {values}) AS v \
         WHERE sends.id = v.column1 AND ($2 IS NULL OR (sends.owner = $2 AND sends.state = 'claimed'))"
    )
}
/// Pending and claimed rows, and the earliest time a pending one may be sent (its
/// `not_before`, or the end of its domain's pause). `$1` campaign, `$2` now.
/// Claims of owner `$3` are not counted (NULL: all are).
pub const OPEN_SENDS: &str = "SELECT COALESCE(SUM(state = 'pending'), 0), \
     COALESCE(SUM(state = 'claimed' AND ($3 IS NULL OR owner IS NOT $3)), 0), \
     MIN(CASE WHEN state = 'pending' THEN MAX(not_before, COALESCE((SELECT p.until FROM domain_pauses p \
     WHERE p.campaign_id = sends.campaign_id AND p.domain = sends.domain AND p.until > $2), 0)) END) \
     FROM sends WHERE campaign_id = $1";
/// Pauses in force. `$1` now.
pub const SELECT_PAUSES: &str = "SELECT campaign_id, domain, paused_at, until, refusals, sends \
     FROM domain_pauses WHERE until > $1 ORDER BY campaign_id, domain";
/// Ends a campaign's pauses in force (all, or one domain's) now. `$1` campaign,
/// `$2` domain or NULL, `$3` now.
pub const RESUME_PAUSES: &str = "UPDATE domain_pauses SET until = $3 \
     WHERE campaign_id = $1 AND ($2 IS NULL OR domain = $2) AND until > $3";
/// Sender-blamed refusals (recipients) and answered sends per campaign and destination
/// domain, most refusals first within a campaign.
pub const CAMPAIGN_DOMAIN_COUNTS: &str = "SELECT e.campaign_id, e.domain, COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)), \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = e.campaign_id AND s.domain = e.domain \
        AND s.state IN ('sent', 'bounced', 'failed')) \
     FROM events e WHERE e.campaign_id IS NOT NULL AND e.kind = 'bounce' AND e.blame = 'sender' \
     AND e.domain IS NOT NULL AND (e.action IS NULL OR e.action <> 'delayed') \
     GROUP BY e.campaign_id, e.domain ORDER BY e.campaign_id, 3 DESC, e.domain";
/// One send by id. `$1` id.
pub const SELECT_SEND: &str = "SELECT id, campaign_id, address, state, attempts, message_id, verp_token, \
     result_code, result_text, maybe_delivered FROM sends WHERE id = $1";
/// Every send of a campaign in queue order. `$1` campaign.
pub const SELECT_SENDS: &str = "SELECT id, campaign_id, address, state, attempts, message_id, verp_token, \
     result_code, result_text, maybe_delivered FROM sends WHERE campaign_id = $1 ORDER BY id";
/// Per-campaign counts: sends by state, and recipients (not events: a delay warning and
/// the final failure are one recipient) that bounced hard, bounced only soft (recipients
/// with a hard or soft bounce minus those with a hard one: two passes over the
/// campaign's events, no per-event lookup), or complained, from any source. An event
/// without a recipient row counts alone.
pub const CAMPAIGN_COUNTS: &str = "SELECT c.id, c.name, c.state, c.created_at, c.started_at, c.finished_at, \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = c.id), \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = c.id AND s.state IN ('pending', 'claimed')), \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = c.id AND s.state = 'sent' AND s.maybe_delivered = 0), \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = c.id AND s.state IN ('bounced', 'failed')), \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = c.id AND s.state = 'skipped'), \
     (SELECT COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)) FROM events e \
        WHERE e.campaign_id = c.id AND e.kind = 'bounce' AND e.class = 'hard'), \
     (SELECT COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)) FROM events e \
        WHERE e.campaign_id = c.id AND e.kind = 'bounce' AND e.class IS NOT NULL) \
     - (SELECT COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)) FROM events e \
        WHERE e.campaign_id = c.id AND e.kind = 'bounce' AND e.class = 'hard'), \
     (SELECT COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)) FROM events e \
        WHERE e.campaign_id = c.id AND e.kind = 'complaint'), \
     (SELECT COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)) FROM events e \
        WHERE e.campaign_id = c.id AND e.kind = 'bounce' AND e.blame = 'sender' \
        AND (e.action IS NULL OR e.action <> 'delayed')), \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = c.id AND s.state = 'sent' AND s.maybe_delivered = 1), \
     c.paused_at, c.pause_reason \
     FROM campaigns c ORDER BY c.id";
/// Complaints (recipients) and accepted sends per campaign and destination domain, most
/// complaints first within a campaign.
pub const CAMPAIGN_DOMAIN_COMPLAINTS: &str = "SELECT e.campaign_id, e.domain, COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)), \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = e.campaign_id AND s.domain = e.domain \
        AND s.state = 'sent') \
     FROM events e WHERE e.campaign_id IS NOT NULL AND e.kind = 'complaint' AND e.domain IS NOT NULL \
     GROUP BY e.campaign_id, e.domain ORDER BY e.campaign_id, 3 DESC, e.domain";
/// The complaint-rate guard's complaints for campaign `$1` from `$2` (its last resume, 0
/// when never): recipients who complained after it, except about a message accepted
/// before it (by Message-ID, unique per send: the `sends_message_id` index, not a scan
/// of the campaign's sends per complaint).
pub const CAMPAIGN_COMPLAINTS_SINCE: &str = "SELECT COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)) \
     FROM events e WHERE e.campaign_id = $1 AND e.kind = 'complaint' AND e.at > $2 AND NOT EXISTS \
     (SELECT 1 FROM sends s WHERE s.message_id = e.original_message_id AND s.sent_at <= $2)";
/// Campaign `$1`'s accepted sends, counted up to `$2` at most: the guard needs no more
/// to know the rate is low, and the count reads the `sends_claim` index alone.
pub const CAMPAIGN_SENT_UP_TO: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM sends \
     WHERE campaign_id = $1 AND state = 'sent' LIMIT $2) x";
/// [`CAMPAIGN_SENT_UP_TO`] for the sends accepted after `$3` (the last resume).
pub const CAMPAIGN_SENT_SINCE_UP_TO: &str = "SELECT COUNT(*) FROM (SELECT 1 FROM sends \
     WHERE campaign_id = $1 AND state = 'sent' AND sent_at > $3 LIMIT $2) x";
/// Campaign `$1`'s pause and last resume.
pub const CAMPAIGN_GUARD_STATE: &str = "SELECT paused_at, resumed_at FROM campaigns WHERE id = $1";
/// Pauses campaign `$1` at `$2` for reason `$3`, unless it is paused already.
pub const PAUSE_CAMPAIGN: &str = "UPDATE campaigns SET paused_at = $2, pause_reason = $3 \
     WHERE id = $1 AND paused_at IS NULL";
/// Ends campaign `$1`'s pause at `$2` (the guard counts from then). Returns the reason,
/// which stays as the last one until a new pause.
pub const RESUME_CAMPAIGN: &str = "UPDATE campaigns SET paused_at = NULL, resumed_at = $2 \
     WHERE id = $1 AND paused_at IS NOT NULL RETURNING pause_reason";
/// Per campaign not done or finished after `$1`: id, name, accepted sends, complaints
/// (recipients), when it was paused (NULL: it is not). For `/metrics`.
pub const CAMPAIGN_COMPLAINT_GAUGES: &str = "SELECT c.id, c.name, \
     (SELECT COUNT(*) FROM sends s WHERE s.campaign_id = c.id AND s.state = 'sent'), \
     (SELECT COUNT(DISTINCT COALESCE(e.recipient_id, -e.id)) FROM events e \
        WHERE e.campaign_id = c.id AND e.kind = 'complaint'), \
     c.paused_at \
     FROM campaigns c WHERE c.state <> 'done' OR c.finished_at > $1 ORDER BY c.id";

// The dashboard overview's counters (schema 19, `store::rollup`). Table `rollup`: one row
// per (dim, span, bucket, key); dim 0 totals (hours only), 1 campaign, 2 destination
// domain, 3 bounce reason (hours and UTC days each).

/// Adds signed counts to rollup rows, all in one statement: `$1` a JSON array of rows
/// `[dim, span, bucket, campaign_id, domain, reason, sends, hard, soft, complaints,
/// sender_refusals]` (`rollup::Tally`, each key once), written in the array's order.
/// (`WHERE true`: SQLite's upsert after a `SELECT … FROM`.)
pub const ROLLUP_FLUSH: &str = "INSERT INTO rollup (dim, span, bucket, campaign_id, domain, reason, \
     sends, hard, soft, complaints, sender_refusals) \
     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
        json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
        json_extract(value, '$[6]'), json_extract(value, '$[7]'), json_extract(value, '$[8]'), \
        json_extract(value, '$[9]'), json_extract(value, '$[10]') \
     FROM json_each($1) WHERE true ORDER BY key \
     ON CONFLICT (dim, span, bucket, campaign_id, domain, reason) DO UPDATE SET \
     sends = rollup.sends + excluded.sends, hard = rollup.hard + excluded.hard, \
     soft = rollup.soft + excluded.soft, complaints = rollup.complaints + excluded.complaints, \
     sender_refusals = rollup.sender_refusals + excluded.sender_refusals";
/// The sends a checkpoint is about to mark accepted (campaign, domain): ids `$1` (a JSON
/// array) not accepted already, under the checkpoint's own condition (owner `$2`, or
/// NULL: anyone's).
pub const ROLLUP_ACCEPTING: &str = "SELECT campaign_id, domain FROM sends \
     WHERE id IN (SELECT value FROM json_each($1)) AND state <> 'sent' \
     AND ($2 IS NULL OR (owner = $2 AND state = 'claimed'))";
/// The overview's series: total rows of hours `$1` ≤ hour < `$2`, summed per bucket of
/// `$3` ms (an hour or a UTC day), the empty ones left out.
pub const OVERVIEW_SERIES: &str = "SELECT bucket - bucket % $3, SUM(sends), SUM(hard), SUM(soft), \
     SUM(complaints), SUM(sender_refusals) FROM rollup \
     WHERE dim = 0 AND span = 3600000 AND bucket >= $1 AND bucket < $2 \
     GROUP BY 1 HAVING SUM(sends + hard + soft + complaints + sender_refusals) > 0 ORDER BY 1";
/// The rows of one dimension over hours `$1` ≤ h < `$2`: the days `$3` ≤ d < `$4` that
/// lie wholly inside from day rows, the hours before `$3` and from `$4` from hour rows
/// (three ranges of the primary key).
macro_rules! rollup_range {
    ($dim:literal) => {
        concat!(
            "FROM rollup WHERE (dim = ",
            $dim,
            " AND span = 86400000 AND bucket >= $3 AND bucket < $4) \
             OR (dim = ",
            $dim,
            " AND span = 3600000 AND bucket >= $1 AND bucket < $3) \
             OR (dim = ",
            $dim,
            " AND span = 3600000 AND bucket >= $4 AND bucket < $2) "
        )
    };
}
/// Bounces (hard, soft, sender) by reason over a range (`rollup_range!`), most first,
/// the first 12.
pub const OVERVIEW_REASONS: &str = concat!(
    "SELECT reason, SUM(hard + soft + sender_refusals) ",
    rollup_range!("3"),
    "GROUP BY reason HAVING SUM(hard + soft + sender_refusals) > 0 ORDER BY 2 DESC, reason LIMIT 12"
);
/// Counts by destination domain over a range (`rollup_range!`), most sends and failures
/// first, the first 20.
pub const OVERVIEW_DOMAINS: &str = concat!(
    "SELECT domain, SUM(sends), SUM(hard), SUM(soft), SUM(complaints), SUM(sender_refusals) ",
    rollup_range!("2"),
    "GROUP BY domain HAVING SUM(sends + hard + soft + complaints + sender_refusals) > 0 \
     ORDER BY SUM(sends + hard + soft + sender_refusals) DESC, domain LIMIT 20"
);
/// Counts by campaign (id, name) over a range (`rollup_range!`), newest (highest id)
/// first, the first 20.
pub const OVERVIEW_CAMPAIGNS: &str = concat!(
    "SELECT campaign_id, COALESCE((SELECT c.name FROM campaigns c WHERE c.id = rollup.campaign_id), ''), \
     SUM(sends), SUM(hard), SUM(soft), SUM(complaints), SUM(sender_refusals) ",
    rollup_range!("1"),
    "GROUP BY campaign_id HAVING SUM(sends + hard + soft + complaints + sender_refusals) > 0 \
     ORDER BY campaign_id DESC LIMIT 20"
);

/// The latest event of the recipient of address key `$1`: the one whose booking just
/// changed its state (the outbox's payload names it). id, at, kind, class, reason,
/// status, campaign_id, source.
pub const OUTBOX_CAUSE: &str = "SELECT e.id, e.at, e.kind, e.class, e.reason, e.status, e.campaign_id, e.source \
     FROM events e WHERE e.recipient_id = (SELECT id FROM recipients WHERE address_key = $1) \
     ORDER BY e.id DESC LIMIT 1";

/// Queues one webhook: `$1` endpoint, `$2` event, `$3` address, `$4` payload (JSON),
/// `$5` idempotency key, `$6` now (created and first due).
pub const INSERT_OUTBOX: &str = "INSERT INTO outbox (endpoint, event, address, payload, idempotency_key, created_at, next_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6)";

/// Claims for owner `$2` until `$3` up to `$5` due rows (`$1` now) of the endpoints in
/// `$4` (a JSON array of names), oldest due first; a row whose lease has expired is due
/// again. Returns id, endpoint, event, address, payload, idempotency key, attempts,
/// created_at.
pub const CLAIM_OUTBOX: &str = "UPDATE outbox SET lease_owner = $2, lease_until = $3 \
     WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL AND next_at <= $1 \
     AND (lease_until IS NULL OR lease_until <= $1) AND endpoint IN (SELECT value FROM json_each($4)) \
     ORDER BY next_at, id LIMIT $5) \
     RETURNING id, endpoint, event, address, payload, idempotency_key, attempts, created_at";

/// Row `$1` was answered 2xx at `$2`: delivered, whoever holds its lease now (a 2xx is
/// final). 0 rows when it was delivered already.
pub const OUTBOX_DELIVERED: &str = "UPDATE outbox SET delivered_at = $2, attempts = attempts + 1, \
     last_error = NULL, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND delivered_at IS NULL";

/// Owner `$2`'s attempt at row `$1` failed with `$4`: due again at `$3`, or dead at
/// `$6` once this was attempt `$5` (max_attempts). Returns dead_at; no row when the lease
/// was lost or the row was delivered meanwhile.
pub const OUTBOX_FAILED: &str = "UPDATE outbox SET attempts = attempts + 1, next_at = $3, last_error = $4, \
     lease_owner = NULL, lease_until = NULL, dead_at = CASE WHEN attempts + 1 >= $5 THEN $6 ELSE NULL END \
     WHERE id = $1 AND lease_owner = $2 AND delivered_at IS NULL RETURNING dead_at";

/// When the next row of the endpoints in `$1` (a JSON array) is due (its lease's end,
/// for a claimed row); NULL when none waits.
pub const OUTBOX_NEXT_DUE: &str = "SELECT MIN(MAX(next_at, COALESCE(lease_until, 0))) FROM outbox \
     WHERE delivered_at IS NULL AND dead_at IS NULL AND endpoint IN (SELECT value FROM json_each($1))";

/// Per endpoint: pending, dead and delivered rows, and the oldest pending row's
/// created_at (NULL when none).
pub const OUTBOX_STATUS: &str = "SELECT endpoint, \
     SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END), \
     SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), \
     SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), \
     MIN(CASE WHEN delivered_at IS NULL AND dead_at IS NULL THEN created_at END) \
     FROM outbox GROUP BY endpoint ORDER BY endpoint";

/// Up to `$2` outbox rows after id `$1`, in id order: id, endpoint, event, address,
/// payload, idempotency key, attempts, created_at, next_at, delivered_at, dead_at,
/// last_error.
pub const OUTBOX_ROWS: &str = "SELECT id, endpoint, event, address, payload, idempotency_key, attempts, \
     created_at, next_at, delivered_at, dead_at, last_error FROM outbox WHERE id > $1 ORDER BY id LIMIT $2";

/// Deletes the rows delivered before `$1` (ms).
pub const PRUNE_OUTBOX: &str =
    "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1";
/// Endpoint `$1`'s dead rows get a fresh set of attempts, due at `$2`.
pub const OUTBOX_RETRY_DEAD: &str = "UPDATE outbox SET dead_at = NULL, attempts = 0, next_at = $2, \
     lease_owner = NULL, lease_until = NULL WHERE endpoint = $1 AND dead_at IS NOT NULL";
/// Takes a signed webhook request's one-time token (`$1` provider, `$2` token, `$3` the
/// SHA-256 of the request's body in hex, `$4` now in ms); no row when it was taken before.
pub const WEBHOOK_TOKEN_CLAIM: &str = "INSERT INTO webhook_tokens (provider, token, body_sha256, seen_at) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (provider, token) DO NOTHING RETURNING seen_at";
/// The body digest a token was first taken with (`$1` provider, `$2` token).
pub const WEBHOOK_TOKEN_DIGEST: &str =
    "SELECT body_sha256 FROM webhook_tokens WHERE provider = $1 AND token = $2";
/// Forgets the tokens taken before `$1` (ms).
pub const PRUNE_WEBHOOK_TOKENS: &str = "DELETE FROM webhook_tokens WHERE seen_at < $1";

// The policies' key-value state (schema 23, `store::policy_state`). An entry is live
// while `expires_at` is after now; `policy_state_usage` counts each policy's rows, kept by
// the same transactions as the writes (by how many rows each statement changed).

/// The live entry of policy `$1`'s key `$2` at `$3` (ms): value, expires_at.
pub const POLICY_STATE_GET: &str =
    "SELECT value, expires_at FROM policy_state WHERE policy = $1 AND key = $2 AND expires_at > $3";
/// Creates policy `$1`'s key `$2` with value `$3` until `$4`, at `$5`; nothing (0 rows)
/// when the key is there, expired or not ([`POLICY_STATE_UPDATE`] then).
pub const POLICY_STATE_INSERT: &str = "INSERT INTO policy_state (policy, key, value, expires_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (policy, key) DO NOTHING";
/// Replaces the value (`$3`) and expiry (`$4`) of policy `$1`'s existing key `$2`, at `$5`.
pub const POLICY_STATE_UPDATE: &str = "UPDATE policy_state SET value = $3, expires_at = $4, updated_at = $5 \
     WHERE policy = $1 AND key = $2";
/// Deletes policy `$1`'s key `$2` (0 rows when it is not there).
pub const POLICY_STATE_DELETE: &str = "DELETE FROM policy_state WHERE policy = $1 AND key = $2";
/// Adds `$2` (negative: removes) to the keys policy `$1` holds.
pub const POLICY_STATE_USAGE_ADD: &str = "INSERT INTO policy_state_usage (policy, keys) VALUES ($1, $2) \
     ON CONFLICT (policy) DO UPDATE SET keys = policy_state_usage.keys + excluded.keys";
/// The keys policy `$1` holds (no row: none).
pub const POLICY_STATE_KEYS: &str = "SELECT keys FROM policy_state_usage WHERE policy = $1";
/// Up to `$5` live entries (at `$4`) of policy `$1` whose key starts with `$2`, after key
/// `$3` (NULL: from the first), in key order: key, value, expires_at. The index range
/// starts at the prefix; the prefix itself is compared character by character.
pub const POLICY_STATE_ENTRIES: &str = "SELECT key, value, expires_at FROM policy_state \
     WHERE policy = $1 AND key >= $2 AND substr(key, 1, length($2)) = $2 AND ($3 IS NULL OR key > $3) \
     AND expires_at > $4 ORDER BY key LIMIT $5";
/// Deletes every entry of policy `$1`.
pub const CLEAR_POLICY_STATE: &str = "DELETE FROM policy_state WHERE policy = $1";
/// Deletes up to `$2` entries expired at `$1`, the oldest first; returns each one's
/// policy (for its usage row). The outer `expires_at` is checked again on the row deleted,
/// so an entry a concurrent write has just renewed stays.
pub const PRUNE_POLICY_STATE: &str = "DELETE FROM policy_state WHERE expires_at <= $1 AND (policy, key) IN \
     (SELECT policy, key FROM policy_state WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2) \
     RETURNING policy";
