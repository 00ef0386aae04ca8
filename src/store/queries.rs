//! Every SQL statement of the store, as a named constant: no SQL lives outside
//! `src/store/`. Placeholders are `$1`, `$2`, … (SQLite and PostgreSQL both read them),
//! times are milliseconds since the Unix epoch.
//!
//! [`ALL`] lists every statement so a test (and `Store::check_queries`) can prepare each
//! one against the migrated schema; the events listing, one statement per combination of
//! filters, is built by [`select_events`] (prepared for each of [`EventFilters::all`]).

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

/// Failure events recorded before blame existed. No parameters.
pub const EVENTS_WITHOUT_BLAME: &str =
    "SELECT id, class, reason FROM events WHERE blame IS NULL AND class IS NOT NULL";

/// Sets an old event's blame. `$1` id, `$2` blame.
pub const SET_EVENT_BLAME: &str = "UPDATE events SET blame = $2 WHERE id = $1";

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

/// Which filters an events query has; each is one `AND` of [`select_events`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventFilters {
    /// `recipient_id` of a recipient key (index `events_recipient_id (recipient_id, id)`).
    pub recipient: bool,
    /// `kind` (index `events_kind_id (kind, id)`).
    pub kind: bool,
    /// `mailbox` (index `events_mailbox_uid`).
    pub mailbox: bool,
    /// `campaign_id` (index `events_campaign`, which ends in the id).
    pub campaign: bool,
    /// `at >=` a time.
    pub since: bool,
}

impl EventFilters {
    /// Every combination, for preparing each query.
    pub fn all() -> impl Iterator<Item = EventFilters> {
        (0u8..32).map(|bits| EventFilters {
            recipient: bits & 1 != 0,
            kind: bits & 2 != 0,
            mailbox: bits & 4 != 0,
            campaign: bits & 8 != 0,
            since: bits & 16 != 0,
        })
    }
}

/// Events by id (oldest first) after a cursor, one statement per combination of filters
/// so that each is planned on its own index (a `$1 IS NULL OR …` in one statement made
/// SQLite scan the whole table). Placeholders in this order, only for the filters set:
/// recipient key, kind, mailbox, campaign id, since (ms); then the cursor (the last id
/// of the page before, 0 for the first) and the limit (-1: no limit).
pub fn select_events(f: EventFilters) -> String {
    let mut sql = String::from(
        "SELECT e.id, e.at, e.source, e.mailbox, e.uid, e.recipient, e.kind, e.class, \
         e.status, e.reason, e.diagnostic, e.decided_by, e.original_message_id, e.campaign_id, e.error, \
         e.blame, e.action, e.domain, e.aliases, e.previous_state FROM events e WHERE ",
    );
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    for (on, condition) in [
        (
            f.recipient,
            "e.recipient_id = (SELECT id FROM recipients WHERE address_key = $N)",
        ),
        (f.kind, "e.kind = $N"),
        (f.mailbox, "e.mailbox = $N"),
        (f.campaign, "e.campaign_id = $N"),
        (f.since, "e.at >= $N"),
    ] {
        if on {
            sql.push_str(&condition.replace("$N", &format!("${}", next())));
            sql.push_str(" AND ");
        }
    }
    let after = next();
    let limit = next();
    sql.push_str(&format!("e.id > ${after} ORDER BY e.id LIMIT ${limit}"));
    sql
}

/// Number of events.
pub const COUNT_EVENTS: &str = "SELECT COUNT(*) FROM events";

/// Every statement above, for preparing them all at start-up and in tests.
pub const ALL: &[(&str, &str)] = &[
    ("LEDGER_CONTAINS", LEDGER_CONTAINS),
    ("LEDGER_ENTRY", LEDGER_ENTRY),
    ("LEDGER_ENTRIES", LEDGER_ENTRIES),
    ("INSERT_LEDGER", INSERT_LEDGER),
    ("LEDGER_ADOPT_SIZES", LEDGER_ADOPT_SIZES),
    ("COUNT_LEDGER", COUNT_LEDGER),
    ("RECORD_FETCH_FAILURE", RECORD_FETCH_FAILURE),
    ("FETCH_FAILURES", FETCH_FAILURES),
    ("MARK_QUARANTINED", MARK_QUARANTINED),
    ("MAILBOX_FETCH_FAILURES", MAILBOX_FETCH_FAILURES),
    ("PRUNE_FETCH_FAILURES", PRUNE_FETCH_FAILURES),
    ("QUARANTINED", QUARANTINED),
    ("RELEASE_QUARANTINED", RELEASE_QUARANTINED),
    ("RELEASE_ALL_QUARANTINED", RELEASE_ALL_QUARANTINED),
    ("UPSERT_RECIPIENT", UPSERT_RECIPIENT),
    ("RECIPIENT_ID_BY_KEY", RECIPIENT_ID_BY_KEY),
    ("COUNT_HARD_BOUNCE", COUNT_HARD_BOUNCE),
    ("COUNT_SOFT_BOUNCE", COUNT_SOFT_BOUNCE),
    ("COUNT_COMPLAINT", COUNT_COMPLAINT),
    ("SOFT_EVENTS_SINCE", SOFT_EVENTS_SINCE),
    ("REACTIVATE_RECIPIENT", REACTIVATE_RECIPIENT),
    ("EVENTS_WITHOUT_BLAME", EVENTS_WITHOUT_BLAME),
    ("SET_EVENT_BLAME", SET_EVENT_BLAME),
    ("CAMPAIGN_DOMAIN_REFUSALS", CAMPAIGN_DOMAIN_REFUSALS),
    ("CAMPAIGN_DOMAIN_SENDS", CAMPAIGN_DOMAIN_SENDS),
    ("PAUSE_UNTIL", PAUSE_UNTIL),
    ("UPSERT_PAUSE", UPSERT_PAUSE),
    ("SENDER_REFUSALS_SINCE", SENDER_REFUSALS_SINCE),
    ("SENDS_BY_DOMAIN_SINCE", SENDS_BY_DOMAIN_SINCE),
    ("SET_RECIPIENT_STATE", SET_RECIPIENT_STATE),
    ("INSERT_EVENT", INSERT_EVENT),
    ("SELECT_RECIPIENT", SELECT_RECIPIENT),
    ("SELECT_RECIPIENTS", SELECT_RECIPIENTS),
    ("SELECT_RECIPIENTS_IN_STATE", SELECT_RECIPIENTS_IN_STATE),
    ("COUNT_RECIPIENTS_BY_STATE", COUNT_RECIPIENTS_BY_STATE),
    ("COUNT_EVENTS", COUNT_EVENTS),
];
