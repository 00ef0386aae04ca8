//! Every SQL statement of the store, as a named constant: no SQL lives outside
//! `src/store/`. Placeholders are `$1`, `$2`, … (SQLite and PostgreSQL both read them),
//! times are milliseconds since the Unix epoch.
//!
//! [`ALL`] lists every statement so a test (and `Store::check_queries`) can prepare each
//! one against the migrated schema.

/// Is this message of this mailbox already in the ledger? `$1` mailbox, `$2` uid.
pub const LEDGER_CONTAINS: &str = "SELECT 1 FROM ledger WHERE mailbox = $1 AND uid = $2";

/// The outcome and kind of a ledger row. `$1` mailbox, `$2` uid.
pub const LEDGER_ENTRY: &str = "SELECT outcome, kind FROM ledger WHERE mailbox = $1 AND uid = $2";

/// The ledger rows among a set of UIDs. `$1` mailbox, `$2` the UIDs as a JSON array
/// (SQLite's `json_each`; PostgreSQL would take `= ANY($2)`).
pub const LEDGER_ENTRIES: &str = "SELECT uid, outcome, kind FROM ledger \
     WHERE mailbox = $1 AND uid IN (SELECT value FROM json_each($2))";

/// Claims a ledger row; does nothing (0 rows) when the message is already there.
/// `$1` mailbox, `$2` uid, `$3` processed_at, `$4` outcome, `$5` kind, `$6` events, `$7` size.
pub const INSERT_LEDGER: &str = "INSERT INTO ledger (mailbox, uid, processed_at, outcome, kind, events, size) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (mailbox, uid) DO NOTHING";

/// Number of ledger rows of one mailbox. `$1` mailbox.
pub const COUNT_LEDGER: &str = "SELECT COUNT(*) FROM ledger WHERE mailbox = $1";

/// Creates a recipient or touches an existing one; returns its id and state.
/// `$1` address, `$2` address_key, `$3` now.
pub const UPSERT_RECIPIENT: &str = "INSERT INTO recipients (address, address_key, created_at, updated_at) \
     VALUES ($1, $2, $3, $3) \
     ON CONFLICT (address_key) DO UPDATE SET updated_at = excluded.updated_at \
     RETURNING id, state";

/// The id and state of a recipient, by key. `$1` address_key.
pub const RECIPIENT_ID_BY_KEY: &str = "SELECT id, state FROM recipients WHERE address_key = $1";

/// Counts a hard bounce. `$1` id, `$2` at, `$3` status, `$4` reason.
pub const COUNT_HARD_BOUNCE: &str = "UPDATE recipients SET hard_count = hard_count + 1, last_bounce_at = $2, \
     last_status = $3, last_reason = $4, updated_at = $2 WHERE id = $1";

/// Counts a soft bounce. `$1` id, `$2` at, `$3` status, `$4` reason.
pub const COUNT_SOFT_BOUNCE: &str = "UPDATE recipients SET soft_count = soft_count + 1, last_bounce_at = $2, \
     last_status = $3, last_reason = $4, updated_at = $2 WHERE id = $1";

/// Counts a complaint. `$1` id, `$2` at.
pub const COUNT_COMPLAINT: &str =
    "UPDATE recipients SET complaint_count = complaint_count + 1, updated_at = $2 WHERE id = $1";

/// Sent messages that soft-bounced for a recipient at or after a time: events of the same
/// original message (a delay warning, then its final failure) count once; an event whose
/// original is unknown counts alone. `$1` recipient id, `$2` since.
pub const COUNT_SOFT_SINCE: &str = "SELECT COUNT(DISTINCT COALESCE(original_message_id, 'event:' || id)) \
     FROM events WHERE recipient_id = $1 AND class = 'soft' AND at >= $2";

/// Moves a recipient to a new state. `$1` id, `$2` state, `$3` at.
pub const SET_RECIPIENT_STATE: &str =
    "UPDATE recipients SET state = $2, state_changed_at = $3, updated_at = $3 WHERE id = $1";

/// Records one event. `$1` at, `$2` source, `$3` mailbox, `$4` uid, `$5` recipient,
/// `$6` recipient_id, `$7` kind, `$8` class, `$9` status, `$10` reason, `$11` diagnostic,
/// `$12` decided_by, `$13` original_message_id, `$14` campaign_id, `$15` error.
pub const INSERT_EVENT: &str = "INSERT INTO events (at, source, mailbox, uid, recipient, recipient_id, kind, class, \
     status, reason, diagnostic, decided_by, original_message_id, campaign_id, error) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// Columns of a recipient row, in the order `Recipient::from_row` reads them.
macro_rules! recipient_columns {
    () => {
        "SELECT id, address, state, hard_count, soft_count, complaint_count, last_bounce_at, \
         last_status, last_reason, state_changed_at, created_at, updated_at FROM recipients "
    };
}

/// One recipient, by key. `$1` address_key.
pub const SELECT_RECIPIENT: &str = concat!(recipient_columns!(), "WHERE address_key = $1");

/// Every recipient, by address. `$1` state or NULL for all.
pub const SELECT_RECIPIENTS: &str = concat!(
    recipient_columns!(),
    "WHERE ($1 IS NULL OR state = $1) ORDER BY address_key"
);

/// Number of recipients per state.
pub const COUNT_RECIPIENTS_BY_STATE: &str =
    "SELECT state, COUNT(*) FROM recipients GROUP BY state ORDER BY state";

/// Events, oldest first, filtered. `$1` recipient key or NULL, `$2` kind or NULL,
/// `$3` mailbox or NULL, `$4` campaign id or NULL, `$5` since (ms) or NULL, `$6` limit.
pub const SELECT_EVENTS: &str = "SELECT e.id, e.at, e.source, e.mailbox, e.uid, e.recipient, e.kind, e.class, \
     e.status, e.reason, e.diagnostic, e.decided_by, e.original_message_id, e.campaign_id, e.error \
     FROM events e LEFT JOIN recipients r ON r.id = e.recipient_id \
     WHERE ($1 IS NULL OR r.address_key = $1) AND ($2 IS NULL OR e.kind = $2) \
     AND ($3 IS NULL OR e.mailbox = $3) AND ($4 IS NULL OR e.campaign_id = $4) \
     AND ($5 IS NULL OR e.at >= $5) \
     ORDER BY e.id LIMIT $6";

/// Number of events.
pub const COUNT_EVENTS: &str = "SELECT COUNT(*) FROM events";

/// Every statement above, for preparing them all at start-up and in tests.
pub const ALL: &[(&str, &str)] = &[
    ("LEDGER_CONTAINS", LEDGER_CONTAINS),
    ("LEDGER_ENTRY", LEDGER_ENTRY),
    ("LEDGER_ENTRIES", LEDGER_ENTRIES),
    ("INSERT_LEDGER", INSERT_LEDGER),
    ("COUNT_LEDGER", COUNT_LEDGER),
    ("UPSERT_RECIPIENT", UPSERT_RECIPIENT),
    ("RECIPIENT_ID_BY_KEY", RECIPIENT_ID_BY_KEY),
    ("COUNT_HARD_BOUNCE", COUNT_HARD_BOUNCE),
    ("COUNT_SOFT_BOUNCE", COUNT_SOFT_BOUNCE),
    ("COUNT_COMPLAINT", COUNT_COMPLAINT),
    ("COUNT_SOFT_SINCE", COUNT_SOFT_SINCE),
    ("SET_RECIPIENT_STATE", SET_RECIPIENT_STATE),
    ("INSERT_EVENT", INSERT_EVENT),
    ("SELECT_RECIPIENT", SELECT_RECIPIENT),
    ("SELECT_RECIPIENTS", SELECT_RECIPIENTS),
    ("COUNT_RECIPIENTS_BY_STATE", COUNT_RECIPIENTS_BY_STATE),
    ("SELECT_EVENTS", SELECT_EVENTS),
    ("COUNT_EVENTS", COUNT_EVENTS),
];
