//! The PostgreSQL dialect: every statement of the store as PostgreSQL (15 and later)
//! runs it. Same names, parameters and result columns as [`super::sqlite`]; a statement
//! whose text is the same on both is re-exported from there by name.
//!
//! What differs, and why:
//! - Lists travel as one JSON text parameter, as on SQLite, read by
//!   `jsonb_array_elements_text($n::jsonb)` (objects: `jsonb_each_text`) instead of
//!   `json_each`; a key list as `key = ANY (ARRAY(SELECT …))`, which the planner serves
//!   from the key's index, where `key IN (SELECT …)` became a hash join over a whole
//!   `sends` table whose statistics were older than its rows.
//! - Every column read back is `int8` or `text` (what the store reads on both):
//!   comparisons that PostgreSQL returns as `bool` are cast, counts use
//!   `COUNT(*) FILTER (…)` (already `int8`) where SQLite sums comparisons.
//! - SQLite's scalar `MAX(a, b)` is `GREATEST`, `IS NOT` is `IS DISTINCT FROM`, `rowid`
//!   is `ctid`, `LIMIT -1` (no limit) is `LIMIT NULL`.
//! - Parameters whose type nothing around them tells (inside `VALUES`, or a select list
//!   feeding an `INSERT`) are cast, so that each statement also prepares without the
//!   bound types (`Store::check_queries`).
//!
//! # Several hosts on one database
//!
//! SQLite runs one write transaction at a time (`BEGIN IMMEDIATE`). PostgreSQL runs
//! them side by side under `READ COMMITTED`: each statement sees what was committed when
//! it started, and a read does not stop another transaction from changing what it read.
//! So each transaction that decides on what it read locks it first:
//!
//! | transaction | lock |
//! |---|---|
//! | recording verdicts (`record_in`) | the ledger row (`INSERT_LEDGER`'s `ON CONFLICT` waits for a concurrent insert of the same message, then sees it: the second recording is a duplicate); the recipient row (`UPSERT_RECIPIENT` always updates it, so it holds its lock to the commit: the state it returns is current, and the soft rule's count of events sees every event of transactions that held it before); a campaign's domain pause ([`LOCK_DOMAIN_PAUSE`], before its counts) |
//! | a message's policy state writes (`record_in`) | each key written (`POLICY_STATE_INSERT`'s `ON CONFLICT` waits for a concurrent insert of it; the update or delete then holds it to the commit); each usage row changed (`POLICY_STATE_USAGE_ADD`), after the keys |
//! | reprocessing's rebooking (`Store::rebook`) | the message ([`LOCK_MESSAGE`], before it reads the events it replaces) |
//! | reactivation | the recipient row ([`LOCK_RECIPIENT_BY_KEY`]: `FOR UPDATE`) |
//! | a pass's fetch failures | the mailbox's failure rows ([`MAILBOX_FETCH_FAILURES`]: `FOR UPDATE`), so the prune deletes what was read |
//! | claim | the pending rows taken ([`CLAIM_SENDS`]: `FOR UPDATE SKIP LOCKED`): two runners never take one row, and neither waits for the other |
//! | heartbeat | the runner's own row (`HEARTBEAT_RUNNER` updates it, so another runner's `PRUNE_RUNNERS` waits and then finds it fresh); the owner's claims not locked by anyone else ([`EXTEND_LEASES`]: `SKIP LOCKED`) |
//! | checkpoint | the rows it updates (`update_sends`; the `WHERE` is checked again on the latest row, so a row another runner took over is not written) |
//! | rate reservation, releasing reserved times | every rate limit ([`LOCK_RATES`], a transaction-scoped advisory lock taken first): the reservations of all hosts are one sequence |
//!
//! Single statements (`JOIN_RUNNER`, `PRUNE_RUNNERS`, `RECORD_PAUSE`, `RECORD_FETCH_FAILURE`,
//! `INSERT_SENDS`, `RESET_CLAIMED`, …) are atomic on their rows as they are: an
//! `ON CONFLICT DO UPDATE` or `UPDATE` works on the latest committed row, locked.
//!
//! Row locks taken in different orders by two transactions can deadlock; PostgreSQL then
//! aborts one of them with `40P01`, which [`crate::store::Error::is_busy`] takes for
//! "try again", as the store's callers do.

use super::{EventFilters, UPDATE_SENDS_ROW};

pub use super::sqlite::{LEDGER_CONTAINS, LEDGER_ENTRY};

/// The ledger rows among a set of UIDs, with the size LIST gave. `$1` mailbox, `$2` the
/// UIDs as a JSON array.
pub const LEDGER_ENTRIES: &str = "SELECT uid, outcome, kind, size FROM ledger \
     WHERE mailbox = $1 AND uid = ANY (ARRAY(SELECT jsonb_array_elements_text($2::text::jsonb)))";

/// Claims a ledger row (see SQLite's). On PostgreSQL a concurrent insert of the same
/// message makes this one wait for its commit and then do nothing (0 rows): the message
/// is recorded once.
#[doc(inline)]
pub use super::sqlite::INSERT_LEDGER;

/// Gives ledger rows that have no size the size LIST gives now. `$1` mailbox, `$2` a
/// JSON object UID → size.
pub const LEDGER_ADOPT_SIZES: &str = "UPDATE ledger SET size = j.value::int8 \
     FROM jsonb_each_text($2::text::jsonb) j \
     WHERE ledger.mailbox = $1 AND ledger.size IS NULL AND ledger.uid = j.key";

pub use super::sqlite::{COUNT_LEDGER, IMAP_DIGEST_RECORDED, MARK_QUARANTINED, PUT_IMAP_DIGEST};

/// Records message `$3` as the same message as its recorded `$2` (see SQLite's); the
/// select list's parameters cast, as they feed an `INSERT`.
pub const LEDGER_ALIAS: &str = "INSERT INTO ledger (mailbox, uid, processed_at, outcome, kind, events, size) \
     SELECT mailbox, $3::text, $4::int8, outcome, kind, 0, size FROM ledger WHERE mailbox = $1 AND uid = $2 \
     ON CONFLICT (mailbox, uid) DO NOTHING";

/// Counts a failed fetch of a message and quarantines it when its failures reach `$5`;
/// returns its failures so far. `$1` mailbox, `$2` uid, `$3` the error, `$4` now. (The
/// casts: inside `CASE`, PostgreSQL would take `$4` for text.) One statement: it works
/// on the latest row, locked.
pub const RECORD_FETCH_FAILURE: &str = "INSERT INTO fetch_failures \
     (mailbox, uid, failures, last_error, last_at, first_at, quarantined_at) \
     VALUES ($1, $2, 1, $3, $4::int8, $4::int8, CASE WHEN 1 >= $5::int8 THEN $4::int8 END) \
     ON CONFLICT (mailbox, uid) DO UPDATE SET \
     failures = fetch_failures.failures + 1, last_error = excluded.last_error, last_at = excluded.last_at, \
     quarantined_at = COALESCE(fetch_failures.quarantined_at, \
         CASE WHEN fetch_failures.failures + 1 >= $5::int8 THEN excluded.last_at END) \
     RETURNING failures";

/// The failed-fetch counts among a set of UIDs, and whether each is quarantined (1/0).
/// `$1` mailbox, `$2` the UIDs as a JSON array.
pub const FETCH_FAILURES: &str = "SELECT uid, failures, (quarantined_at IS NOT NULL)::int4::int8 \
     FROM fetch_failures WHERE mailbox = $1 AND uid = ANY (ARRAY(SELECT jsonb_array_elements_text($2::text::jsonb)))";

/// Every failed fetch of one mailbox, as [`FETCH_FAILURES`]. `$1` mailbox. Locks the
/// rows (`FOR UPDATE`; a handful) to the end of the pass's first transaction, which
/// deletes those no longer listed: a failure counted meanwhile by another host waits and
/// then counts afresh, instead of being deleted unseen.
pub const MAILBOX_FETCH_FAILURES: &str = "SELECT uid, failures, (quarantined_at IS NOT NULL)::int4::int8 \
     FROM fetch_failures WHERE mailbox = $1 FOR UPDATE";

/// Forgets the failures of messages that are no longer on the server. `$1` mailbox, `$2`
/// their UIDs, as a JSON array.
pub const PRUNE_FETCH_FAILURES: &str = "DELETE FROM fetch_failures \
     WHERE mailbox = $1 AND uid = ANY (ARRAY(SELECT jsonb_array_elements_text($2::text::jsonb)))";

/// The quarantined messages, of one mailbox (`$1`) or of all (`$1` NULL). (The casts:
/// PostgreSQL cannot tell the type of a parameter first seen in `IS NULL`.)
pub const QUARANTINED: &str = "SELECT mailbox, uid, failures, COALESCE(first_at, last_at), last_at, \
     last_error, quarantined_at FROM fetch_failures \
     WHERE quarantined_at IS NOT NULL AND ($1::text IS NULL OR mailbox = $1::text) \
     ORDER BY mailbox, quarantined_at, uid";

/// Releases quarantined messages; returns what was released. `$1` mailbox or NULL for
/// all, `$2` the UIDs as a JSON array.
pub const RELEASE_QUARANTINED: &str = "DELETE FROM fetch_failures \
     WHERE quarantined_at IS NOT NULL AND ($1::text IS NULL OR mailbox = $1::text) \
     AND uid = ANY (ARRAY(SELECT jsonb_array_elements_text($2::text::jsonb))) RETURNING mailbox, uid";

/// Releases every quarantined message of one mailbox (`$1`) or of all (`$1` NULL).
pub const RELEASE_ALL_QUARANTINED: &str = "DELETE FROM fetch_failures \
     WHERE quarantined_at IS NOT NULL AND ($1::text IS NULL OR mailbox = $1::text) RETURNING mailbox, uid";

/// Creates or touches a recipient (see SQLite's). On PostgreSQL it always updates the
/// row, so it holds the row's lock to the commit: a concurrent recording of the same
/// recipient waits, and the state returned is the latest committed one.
#[doc(inline)]
pub use super::sqlite::UPSERT_RECIPIENT;

pub use super::sqlite::RECIPIENT_ID_BY_KEY;

/// [`RECIPIENT_ID_BY_KEY`], locking the row (`FOR UPDATE`) for the reactivation that
/// decides on its state: two reactivations (or a reactivation and a bounce) of one
/// recipient run one after the other. `$1` address_key.
pub const LOCK_RECIPIENT_BY_KEY: &str =
    "SELECT id, state, counts_since FROM recipients WHERE address_key = $1 FOR UPDATE";

pub use super::sqlite::{
    CAMPAIGN_DOMAIN_REFUSALS, CAMPAIGN_DOMAIN_SENDS, COUNT_COMPLAINT, COUNT_HARD_BOUNCE,
    COUNT_SOFT_BOUNCE, EVENTS_WITHOUT_BLAME, PAUSE_UNTIL, REACTIVATE_RECIPIENT, SET_EVENT_BLAME,
    SOFT_EVENTS_SINCE, UPSERT_PAUSE,
};

/// Serializes the pause decisions of one campaign and domain to the commit: the
/// transaction that counts the refusals and sends (`CAMPAIGN_DOMAIN_REFUSALS`, …) then
/// sees the refusals of every transaction that decided before it, so two hosts
/// recording the refusals that cross the threshold do not each miss the other's. A
/// transaction-scoped advisory lock (rebound's key space `'rbnd'`, then a hash of the
/// pair): there may be no `domain_pauses` row to lock yet. `$1` campaign, `$2` domain.
pub const LOCK_DOMAIN_PAUSE: &str = "SELECT pg_advisory_xact_lock(1919053412, \
     hashtext($1::int8::text || ' ' || $2::text))";

pub use super::sqlite::{
    COUNT_RECIPIENTS_BY_STATE, INSERT_EVENT, SELECT_RECIPIENT, SELECT_RECIPIENTS,
    SELECT_RECIPIENTS_IN_STATE, SENDER_REFUSALS_SINCE, SENDS_BY_DOMAIN_SINCE, SET_RECIPIENT_STATE,
};

/// Events by id after a cursor, as SQLite's `select_events`: placeholders in this order,
/// only for the filters set: recipient key, kind, mailbox, campaign id, since (ms); then
/// the cursor and the limit (negative: no limit, PostgreSQL's `LIMIT NULL`).
pub fn select_events(f: EventFilters) -> String {
    super::events_query(f, |limit| {
        format!("LIMIT CASE WHEN ${limit}::int8 < 0 THEN NULL ELSE ${limit}::int8 END")
    })
}

pub use super::sqlite::{
    ARCHIVE_PAGE, EVENTS_OF_MESSAGE, INSERT_RAW, MESSAGE_RECIPIENT_IDS, PRUNE_RAW, RAW_OF_EVENT,
    RAW_OF_MESSAGE, RECOUNT_RECIPIENT, REPLAY_EVENTS, SUPERSEDE_DELETE,
};

/// Serialises rebookings of one message: a transaction-scoped advisory lock (key space
/// `'rbnd'`, a hash of mailbox and UID), so that a second `rebound reprocess` on the
/// same message reads its events only after the first's commit and replaces exactly
/// what it reads. `$1` mailbox, `$2` UID.
pub const LOCK_MESSAGE: &str = "SELECT pg_advisory_xact_lock(1919053412, \
     hashtext('message ' || $1::text || ' ' || $2::text))";

/// Copies one message's bookings to `superseded_events` (see SQLite's); the time in the
/// select list is cast.
pub const SUPERSEDE_COPY: &str = "INSERT INTO superseded_events (id, at, source, mailbox, uid, \
     recipient, recipient_id, kind, class, status, reason, diagnostic, decided_by, \
     original_message_id, campaign_id, error, blame, action, domain, aliases, previous_state, \
     superseded_at) SELECT id, at, source, mailbox, uid, recipient, recipient_id, kind, class, \
     status, reason, diagnostic, decided_by, original_message_id, campaign_id, error, blame, \
     action, domain, aliases, previous_state, $4::int8 FROM events WHERE mailbox = $1 AND uid = $2 \
     AND at = $3 AND kind NOT IN ('reactivation', 'unsubscribe')";

/// Messages archived, their bytes and their compressed bytes (`SUM` of `int8` is
/// `numeric`: cast back).
pub const ARCHIVE_STATS: &str = "SELECT COUNT(*), COALESCE(SUM(size), 0)::int8, \
     COALESCE(SUM(octet_length(data)), 0)::int8 FROM raw_messages";

pub use super::sqlite::{
    COUNT_EVENTS, COUNT_SUPERSEDED, INSERT_CAMPAIGN, SELECT_CAMPAIGN_BY_ID,
    SELECT_CAMPAIGN_BY_NAME, SUPERSEDED_OF_RECIPIENT,
};

/// Queues a chunk of recipients, each unless the store knows it as not mailable or it
/// is queued already. `$1` campaign, `$2` now, `$3` a JSON array of
/// `[address, address_key, domain]`.
pub const INSERT_SENDS: &str = "INSERT INTO sends (campaign_id, address, address_key, updated_at, domain) \
     SELECT $1::int8, j.value->>0, j.value->>1, $2::int8, j.value->>2 \
     FROM jsonb_array_elements($3::text::jsonb) j WHERE NOT EXISTS \
     (SELECT 1 FROM recipients r WHERE r.address_key = j.value->>1 AND r.state <> 'active') \
     ON CONFLICT (campaign_id, address_key) DO NOTHING";

pub use super::sqlite::{
    HEARTBEAT_RUNNER, JOIN_RUNNER, PRUNE_RUNNERS, RELEASE_RUNNER, RESET_CLAIMED, SELECT_RUNNERS,
    SET_ENQUEUED,
};

/// A lease is taken by one upsert (`ON CONFLICT … DO UPDATE … WHERE`): two hosts asking at
/// once for the same name are serialized on its row, and the second sees the first's
/// lease, not the row it read before.
pub use super::sqlite::{RELEASE_LEASE, RENEW_LEASE, SELECT_LEASE, TAKE_LEASE, TAKE_LEASE_FROM};

/// The policy chain is changed by one `UPDATE … WHERE version = $3` (no lock held across
/// the change): of two hosts writing over the same version, the second updates no row
/// and makes its change again over the first's.
pub use super::sqlite::{
    INSERT_POLICY_CHAIN, INSERT_POLICY_MODULE, POLICY_CHAIN_VERSION, SELECT_POLICY_CHAIN,
    SELECT_POLICY_MODULE, UPDATE_POLICY_CHAIN,
};

/// The heartbeat extends the owner's claims too. `$1` campaign, `$2` owner, `$3` new
/// lease end. Rows locked by another transaction are skipped (`SKIP LOCKED`): they are
/// the runner's own checkpoint writing them out of `claimed` (waiting for it while it
/// waits for a row this statement locked would deadlock), or a takeover of claims whose
/// lease had already expired. A row skipped and still claimed is extended by the next
/// heartbeat, a third of a lease later.
pub const EXTEND_LEASES: &str = "UPDATE sends SET lease_until = $3 WHERE id IN \
     (SELECT id FROM sends WHERE campaign_id = $1 AND state = 'claimed' AND owner = $2 \
     FOR UPDATE SKIP LOCKED)";

/// [`super::sqlite::IMPORT_SUBSCRIBERS`] with `jsonb`. The chunk has no key twice (one
/// `INSERT … ON CONFLICT DO UPDATE` cannot update a row twice); recipient rows it
/// updates are locked to the commit, like every other upsert of them.
pub const IMPORT_SUBSCRIBERS: &str = "INSERT INTO recipients (address, address_key, name, fields, subscribed_at, created_at, updated_at) \
     SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, $1::int8, $1::int8, $1::int8 \
     FROM jsonb_array_elements($2::text::jsonb) j \
     ON CONFLICT (address_key) DO UPDATE SET name = COALESCE(excluded.name, recipients.name), \
     fields = COALESCE(excluded.fields, recipients.fields), \
     subscribed_at = COALESCE(recipients.subscribed_at, excluded.subscribed_at), updated_at = excluded.updated_at";
/// [`super::sqlite::COUNT_KNOWN_KEYS`] with `jsonb`.
pub const COUNT_KNOWN_KEYS: &str = "SELECT COUNT(*)::int8, COALESCE(SUM(CASE WHEN state <> 'active' THEN 1 ELSE 0 END), 0)::int8 \
     FROM recipients WHERE address_key = ANY (ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb)))";

/// Serializes the rate reservations of every host: a transaction-scoped advisory lock
/// (rebound's key space `'rbnd'`, key 0), the first statement of `reserve_rate` and of
/// `release_rate_times`. A reservation reads the GCRA state and the windows, then writes
/// them: without it two hosts could read the same `tat` and both take the same slot.
/// No parameters.
pub const LOCK_RATES: &str = "SELECT pg_advisory_xact_lock(1919053412, 0)";

pub use super::sqlite::{INSERT_RATE, PRUNE_WINDOW, SELECT_RATE, UPDATE_RATE};

/// One reserved time `$2` of window `$1` nobody used (one row of equal ones, by `ctid`:
/// the table has no key). Runs under [`LOCK_RATES`], so no other deletion of the same
/// row races it.
pub const RELEASE_WINDOW: &str = "DELETE FROM rate_window_sends WHERE ctid IN \
     (SELECT ctid FROM rate_window_sends WHERE name = $1 AND at = $2 LIMIT 1)";

pub use super::sqlite::{INSERT_WINDOW, NEWEST_IN_WINDOW, SELECT_PAUSE, WINDOW_TIMES};

/// Relay `$1` asked for a pause until `$2` (µs), the `$3`-th in a row; `$4` now (µs). A
/// pause still on is only lengthened (its streak kept if larger); an expired one is
/// replaced. One statement: it works on the latest row, locked.
pub const RECORD_PAUSE: &str = "INSERT INTO rate_pauses (relay, until, streak) VALUES ($1, $2, $3) \
     ON CONFLICT (relay) DO UPDATE SET until = GREATEST(rate_pauses.until, excluded.until), \
     streak = CASE WHEN rate_pauses.until > $4 THEN GREATEST(rate_pauses.streak, excluded.streak) \
     ELSE excluded.streak END";

/// `$1` campaign, `$2` state, `$3` now (cast: inside `CASE`, PostgreSQL would take it
/// for text).
pub const SET_CAMPAIGN_STATE: &str = "UPDATE campaigns SET state = $2, \
     started_at = CASE WHEN $2 = 'sending' THEN COALESCE(started_at, $3::int8) ELSE started_at END, \
     finished_at = CASE WHEN $2 = 'done' THEN $3::int8 ELSE NULL END WHERE id = $1";

/// Claims for owner `$4` until `$5` up to `$2` due pending rows of campaign `$1` with
/// an id above `$6`, in id order, skipping destination domains the campaign has paused;
/// none while the campaign itself is paused. `$3` now. The rows are taken `FOR UPDATE SKIP LOCKED`: a row another runner is
/// claiming (or writing) is passed over instead of waited for, and a row claimed and
/// committed since this statement began fails the `state = 'pending'` check on the
/// latest row: two hosts never claim one row.
pub const CLAIM_SENDS: &str = "UPDATE sends SET state = 'claimed', claimed_at = $3, updated_at = $3, \
     owner = $4, lease_until = $5 \
     WHERE id IN (SELECT id FROM sends WHERE campaign_id = $1 AND state = 'pending' AND id > $6 \
     AND not_before <= $3 \
     AND NOT EXISTS (SELECT 1 FROM campaigns c WHERE c.id = sends.campaign_id AND c.paused_at IS NOT NULL) \
     AND NOT EXISTS (SELECT 1 FROM domain_pauses p WHERE p.campaign_id = sends.campaign_id \
     AND p.domain = sends.domain AND p.until > $3) \
     ORDER BY id LIMIT $2 FOR UPDATE OF sends SKIP LOCKED) RETURNING id, address, attempts";

/// Of the rows just claimed (`$1`, a JSON array of ids), those whose recipient is no
/// longer mailable become `skipped`. `$2` now. Returns their ids.
pub const SKIP_CLAIMED_UNMAILABLE: &str = "UPDATE sends SET state = 'skipped', result_text = 'recipient is ' || \
     (SELECT r.state FROM recipients r WHERE r.address_key = sends.address_key), claimed_at = NULL, \
     owner = NULL, lease_until = NULL, updated_at = $2 \
     WHERE id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb)::int8)) AND EXISTS \
     (SELECT 1 FROM recipients r WHERE r.address_key = sends.address_key AND r.state <> 'active') RETURNING id";

pub use super::sqlite::{LAST_SENT_AT, SENT_SINCE, SKIP_UNMAILABLE};

/// Writes `rows` results in one statement, as SQLite's `update_sends` (same
/// parameters). Each `VALUES` parameter is cast to its `sends` column's type (PostgreSQL
/// would take them for text). Each row is locked as it is updated, and the owner check
/// is made on the latest row: a row another runner took over after this owner's lease
/// expired is left alone.
pub fn update_sends(rows: usize) -> String {
    const TYPES: [&str; UPDATE_SENDS_ROW] = [
        "int8", "text", "int8", "int8", "text", "text", "int8", "text", "int8", "int8",
    ];
    let mut values = String::with_capacity(rows * 120);
    for r in 0..rows {
        let first = 3 + r * UPDATE_SENDS_ROW;
        values.push_str(if r == 0 { "(" } else { ", (" });
        for (i, ty) in TYPES.iter().enumerate() {
            if i > 0 {
                values.push_str(", ");
            }
            values.push_str(&format!("${}::{ty}", first + i));
        }
        values.push(')');
    }
    format!(
        "UPDATE sends SET state = v.column2, attempts = attempts + v.column3, not_before = v.column4, \
         message_id = COALESCE(v.column5, message_id), verp_token = COALESCE(v.column6, verp_token), \
         result_code = v.column7, result_text = v.column8, sent_at = COALESCE(v.column9, sent_at), \
         claimed_at = NULL, owner = NULL, lease_until = NULL, updated_at = $1::int8, maybe_delivered = v.column10 \
         FROM (VALUES {values}) AS v \
         WHERE sends.id = v.column1 AND ($2::text IS NULL OR (sends.owner = $2::text AND sends.state = 'claimed'))"
    )
}

/// Pending and claimed rows, and the earliest time a pending one may be sent (its
/// `not_before`, or the end of its domain's pause). `$1` campaign, `$2` now.
/// Claims of owner `$3` are not counted (NULL: all are).
pub const OPEN_SENDS: &str = "SELECT COUNT(*) FILTER (WHERE state = 'pending'), \
     COUNT(*) FILTER (WHERE state = 'claimed' AND ($3::text IS NULL OR owner IS DISTINCT FROM $3::text)), \
     MIN(CASE WHEN state = 'pending' THEN GREATEST(not_before, COALESCE((SELECT p.until FROM domain_pauses p \
     WHERE p.campaign_id = sends.campaign_id AND p.domain = sends.domain AND p.until > $2), 0)) END) \
     FROM sends WHERE campaign_id = $1";

pub use super::sqlite::SELECT_PAUSES;

/// Ends a campaign's pauses in force (all, or one domain's) now. `$1` campaign,
/// `$2` domain or NULL, `$3` now.
pub const RESUME_PAUSES: &str = "UPDATE domain_pauses SET until = $3 \
     WHERE campaign_id = $1 AND ($2::text IS NULL OR domain = $2::text) AND until > $3";

pub use super::sqlite::{
    CAMPAIGN_COMPLAINT_GAUGES, CAMPAIGN_COMPLAINTS_SINCE, CAMPAIGN_COUNTS,
    CAMPAIGN_DOMAIN_COMPLAINTS, CAMPAIGN_DOMAIN_COUNTS, CAMPAIGN_GUARD_STATE,
    CAMPAIGN_SENT_SINCE_UP_TO, CAMPAIGN_SENT_UP_TO, PAUSE_CAMPAIGN, RESUME_CAMPAIGN, SELECT_SEND,
    SELECT_SENDS,
};

/// Adds signed counts to rollup rows (see SQLite's), in the array's order (the key's:
/// two transactions lock the rows they share in the same order).
pub const ROLLUP_FLUSH: &str = "INSERT INTO rollup (dim, span, bucket, campaign_id, domain, reason, \
     sends, hard, soft, complaints, sender_refusals) \
     SELECT (j.v->>0)::int8, (j.v->>1)::int8, (j.v->>2)::int8, (j.v->>3)::int8, j.v->>4, j.v->>5, \
        (j.v->>6)::int8, (j.v->>7)::int8, (j.v->>8)::int8, (j.v->>9)::int8, (j.v->>10)::int8 \
     FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS j(v, n) ORDER BY j.n \
     ON CONFLICT (dim, span, bucket, campaign_id, domain, reason) DO UPDATE SET \
     sends = rollup.sends + excluded.sends, hard = rollup.hard + excluded.hard, \
     soft = rollup.soft + excluded.soft, complaints = rollup.complaints + excluded.complaints, \
     sender_refusals = rollup.sender_refusals + excluded.sender_refusals";

/// The sends a checkpoint is about to mark accepted (see SQLite's), locked: the
/// checkpoint's update that follows writes exactly these (a runner taking one over
/// waits for the commit, then finds it no longer claimed).
pub const ROLLUP_ACCEPTING: &str = "SELECT campaign_id, domain FROM sends \
     WHERE id = ANY (ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb)::int8)) \
     AND state <> 'sent' AND ($2::text IS NULL OR (owner = $2::text AND state = 'claimed')) \
     FOR UPDATE";

/// The overview's series (see SQLite's); `SUM` cast back to `int8`.
pub const OVERVIEW_SERIES: &str = "SELECT bucket - bucket % $3::int8, SUM(sends)::int8, \
     SUM(hard)::int8, SUM(soft)::int8, SUM(complaints)::int8, SUM(sender_refusals)::int8 FROM rollup \
     WHERE dim = 0 AND span = 3600000 AND bucket >= $1 AND bucket < $2 \
     GROUP BY 1 HAVING SUM(sends + hard + soft + complaints + sender_refusals) > 0 ORDER BY 1";

/// SQLite's `rollup_range!` (day rows inside, hour rows at the ends).
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

/// Bounces by reason (see SQLite's); `SUM` cast back to `int8`.
pub const OVERVIEW_REASONS: &str = concat!(
    "SELECT reason, SUM(hard + soft + sender_refusals)::int8 ",
    rollup_range!("3"),
    "GROUP BY reason HAVING SUM(hard + soft + sender_refusals) > 0 ORDER BY 2 DESC, reason LIMIT 12"
);

/// Counts by destination domain (see SQLite's); `SUM` cast back to `int8`.
pub const OVERVIEW_DOMAINS: &str = concat!(
    "SELECT domain, SUM(sends)::int8, SUM(hard)::int8, SUM(soft)::int8, SUM(complaints)::int8, \
     SUM(sender_refusals)::int8 ",
    rollup_range!("2"),
    "GROUP BY domain HAVING SUM(sends + hard + soft + complaints + sender_refusals) > 0 \
     ORDER BY SUM(sends + hard + soft + sender_refusals) DESC, domain LIMIT 20"
);

/// Counts by campaign (see SQLite's); `SUM` cast back to `int8`.
pub const OVERVIEW_CAMPAIGNS: &str = concat!(
    "SELECT campaign_id, COALESCE((SELECT c.name FROM campaigns c WHERE c.id = rollup.campaign_id), ''), \
     SUM(sends)::int8, SUM(hard)::int8, SUM(soft)::int8, SUM(complaints)::int8, \
     SUM(sender_refusals)::int8 ",
    rollup_range!("1"),
    "GROUP BY campaign_id HAVING SUM(sends + hard + soft + complaints + sender_refusals) > 0 \
     ORDER BY campaign_id DESC LIMIT 20"
);

pub use super::sqlite::{
    INSERT_OUTBOX, OUTBOX_CAUSE, OUTBOX_DELIVERED, OUTBOX_RETRY_DEAD, OUTBOX_ROWS, PRUNE_OUTBOX,
};

/// As SQLite's, the candidates taken `FOR UPDATE SKIP LOCKED`: a row another host is
/// claiming is passed over, and one claimed and committed since this statement began
/// fails the lease check on its latest version, so two hosts never claim one row.
pub const CLAIM_OUTBOX: &str = "UPDATE outbox SET lease_owner = $2, lease_until = $3 \
     WHERE id IN (SELECT id FROM outbox WHERE delivered_at IS NULL AND dead_at IS NULL AND next_at <= $1 \
     AND (lease_until IS NULL OR lease_until <= $1) \
     AND endpoint = ANY (ARRAY(SELECT jsonb_array_elements_text($4::text::jsonb))) \
     ORDER BY next_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
     RETURNING id, endpoint, event, address, payload, idempotency_key, attempts, created_at";

/// As SQLite's; the dead time cast (a parameter only in a `CASE` would be text).
pub const OUTBOX_FAILED: &str = "UPDATE outbox SET attempts = attempts + 1, next_at = $3, last_error = $4, \
     lease_owner = NULL, lease_until = NULL, dead_at = CASE WHEN attempts + 1 >= $5 THEN $6::int8 ELSE NULL END \
     WHERE id = $1 AND lease_owner = $2 AND delivered_at IS NULL RETURNING dead_at";

/// As SQLite's, with `GREATEST` for its two-argument `MAX`.
pub const OUTBOX_NEXT_DUE: &str = "SELECT MIN(GREATEST(next_at, COALESCE(lease_until, 0))) FROM outbox \
     WHERE delivered_at IS NULL AND dead_at IS NULL \
     AND endpoint = ANY (ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb)))";

/// As SQLite's, the sums cast to `int8`.
pub const OUTBOX_STATUS: &str = "SELECT endpoint, \
     SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END)::int8, \
     SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END)::int8, \
     SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END)::int8, \
     MIN(CASE WHEN delivered_at IS NULL AND dead_at IS NULL THEN created_at END) \
     FROM outbox GROUP BY endpoint ORDER BY endpoint";
/// The webhook token statements (see SQLite's): the same text on both.
pub use super::sqlite::{PRUNE_WEBHOOK_TOKENS, WEBHOOK_TOKEN_CLAIM, WEBHOOK_TOKEN_DIGEST};

/// The policy state statements (see SQLite's): the same text on both. A concurrent
/// insert of the same key makes `POLICY_STATE_INSERT` wait for its commit and then do
/// nothing (the key is there: it is updated), and `PRUNE_POLICY_STATE` checks the expiry
/// again on a row another transaction has renewed meanwhile: every row change is
/// counted once in the usage rows.
pub use super::sqlite::{
    CLEAR_POLICY_STATE, POLICY_STATE_DELETE, POLICY_STATE_GET, POLICY_STATE_INSERT,
    POLICY_STATE_KEYS, POLICY_STATE_UPDATE, POLICY_STATE_USAGE_ADD, PRUNE_POLICY_STATE,
};

/// As SQLite's; the cursor's type cast (only `IS NULL` would tell it first).
pub const POLICY_STATE_ENTRIES: &str = "SELECT key, value, expires_at FROM policy_state \
     WHERE policy = $1 AND key >= $2 AND substr(key, 1, length($2)) = $2 \
     AND ($3::text IS NULL OR key > $3::text) AND expires_at > $4 ORDER BY key LIMIT $5";

#[cfg(test)]
mod test {
    use crate::config::{PauseRule, RulesConfig};
    use crate::store::campaigns::{NewCampaign, RateRequest};
    use crate::store::postgres_support as pg;
    use crate::store::{EventContext, RecipientState, Refusal, Store};
    use crate::verdict::{Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};
    use sqlx::Row;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    /// Two stores on one new database: two hosts sharing it. `None` when PostgreSQL is
    /// not installed (the test is reported as skipped).
    async fn two_hosts() -> Option<(Store, Store)> {
        if !pg::available() {
            return None;
        }
        let url = pg::database();
        let a = Store::open(&url).await.unwrap();
        let b = Store::open(&url).await.unwrap();
        Some((a, b))
    }

    fn bounce(address: &str, class: BounceClass, reason: Reason) -> Verdict {
        Verdict {
            kind: MessageKind::Bounce,
            recipients: vec![RecipientVerdict {
                address: address.into(),
                bounce: Some(class),
                status: Some("5.0.0".into()),
                reason,
                blame: Blame::of_failure(Some(class), reason),
                diagnostic: None,
                action: Some("failed".into()),
                remote_mta: None,
                feedback_type: None,
                aliases: Vec::new(),
            }],
            decided_by: crate::verdict::BUILTIN.into(),
        }
    }

    fn new_campaign() -> NewCampaign {
        NewCampaign {
            name: "c".into(),
            from: "n@example.org".into(),
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
        }
    }

    fn sent_message(id: &str) -> EventContext {
        EventContext {
            original_message_id: Some(id.into()),
            ..EventContext::smtp()
        }
    }

    #[tokio::test]
    async fn postgres_prepares_every_statement() {
        let Some((s, _)) = two_hosts().await else {
            return;
        };
        s.check_queries().await.unwrap();
        // Every session ends a transaction its host left idle (a hung host's locks).
        let idle: String = sqlx::query_scalar("SHOW idle_in_transaction_session_timeout")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(idle, "30s");
    }

    /// Every column a statement returns is `int8` or `text`, what the store reads on both
    /// databases (an `int4`, `bool` or `numeric` would not read as `i64`), or `bytea`
    /// for a policy component's and an archived message's bytes. Not read: `LEDGER_CONTAINS`'s (it asks whether
    /// there is a row) and the locks' (`void`).
    #[tokio::test]
    async fn postgres_statements_return_only_int8_and_text() {
        use sqlx::any::AnyTypeInfoKind::{BigInt, Blob, Null, Text};
        use sqlx::{Column, Executor, TypeInfo};
        let Some((s, _)) = two_hosts().await else {
            return;
        };
        let mut conn = s.pool().acquire().await.unwrap();
        let sql = &crate::store::sql::POSTGRES;
        let mut all: Vec<(String, String)> = sql
            .all()
            .into_iter()
            .filter(|(name, _)| *name != "LEDGER_CONTAINS")
            .map(|(n, q)| (n.to_string(), q.to_string()))
            .collect();
        for f in super::EventFilters::all() {
            all.push((format!("select_events({f:?})"), (sql.select_events)(f)));
        }
        all.push(("update_sends(2)".into(), (sql.update_sends)(2)));
        for (name, q) in all {
            let d = conn.describe(&q).await.unwrap();
            for c in d.columns() {
                let kind = c.type_info().kind();
                let lock = name.starts_with("LOCK_") && kind == Null;
                let bytes = matches!(
                    name.as_str(),
                    "SELECT_POLICY_MODULE" | "RAW_OF_EVENT" | "RAW_OF_MESSAGE" | "ARCHIVE_PAGE"
                ) && kind == Blob;
                assert!(
                    matches!(kind, BigInt | Text) || lock || bytes,
                    "{name}: column {} is {}",
                    c.name(),
                    c.type_info().name()
                );
            }
        }
    }

    /// Tables, columns in order, their nullability and the indexes: as SQLite's after
    /// its migrations.
    #[tokio::test]
    async fn postgres_schema_matches_sqlite() {
        let Some((pg, _)) = two_hosts().await else {
            return;
        };
        let lite = Store::open("sqlite::memory:").await.unwrap();
        type Columns = BTreeMap<String, Vec<(String, bool)>>;
        let mut sqlite: Columns = BTreeMap::new();
        for row in sqlx::query(
            "SELECT m.name, c.name, c.\"notnull\" OR c.pk FROM sqlite_master m, pragma_table_info(m.name) c \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite%' AND m.name <> '_sqlx_migrations' \
             ORDER BY m.name, c.cid",
        )
        .fetch_all(lite.pool())
        .await
        .unwrap()
        {
            let nn: i64 = row.get(2);
            sqlite
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), nn != 0));
        }
        let mut postgres: Columns = BTreeMap::new();
        for row in sqlx::query(
            "SELECT table_name::text, column_name::text, (is_nullable = 'NO')::int4::int8 \
             FROM information_schema.columns WHERE table_schema = 'public' \
             AND table_name <> '_sqlx_migrations' ORDER BY table_name, ordinal_position",
        )
        .fetch_all(pg.pool())
        .await
        .unwrap()
        {
            let nn: i64 = row.get(2);
            postgres
                .entry(row.get(0))
                .or_default()
                .push((row.get(1), nn != 0));
        }
        assert_eq!(postgres, sqlite);
        let sqlite: BTreeSet<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'",
        )
        .fetch_all(lite.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
        // Not the indexes of primary keys and UNIQUE constraints (SQLite's automatic ones).
        let postgres: BTreeSet<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' \
             AND tablename <> '_sqlx_migrations' AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        )
        .fetch_all(pg.pool())
        .await
        .unwrap()
        .into_iter()
        .collect();
        assert_eq!(postgres, sqlite);
    }

    /// Several runners on two hosts claim one campaign at once: every row is claimed
    /// exactly once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_claims_of_two_hosts_never_overlap() {
        let Some((a, b)) = two_hosts().await else {
            return;
        };
        let addrs: Vec<String> = (0..600).map(|i| format!("r{i}@example.com")).collect();
        let (c, queued) = a.create_campaign(&new_campaign(), &addrs).await.unwrap();
        assert_eq!(queued, 600);
        let mut tasks = Vec::new();
        for (i, s) in [a.clone(), b.clone(), a.clone(), b.clone(), a, b]
            .into_iter()
            .enumerate()
        {
            tasks.push(tokio::spawn(async move {
                let owner = format!("runner-{i}");
                let mut ids = Vec::new();
                loop {
                    let claim = s
                        .claim(c.id, &owner, Duration::from_secs(60), 0, 7)
                        .await
                        .unwrap();
                    if claim.rows.is_empty() {
                        break ids;
                    }
                    ids.extend(claim.rows.iter().map(|r| r.id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let distinct: BTreeSet<i64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "a row was claimed twice");
        assert_eq!(all.len(), 600);
    }

    /// Deliverers on two hosts claim one outbox at once: every row is claimed exactly
    /// once (`FOR UPDATE SKIP LOCKED`, the lease checked on the latest row).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_outbox_claims_of_two_hosts_never_overlap() {
        use crate::store::outbox::{NotifyEvent, Subscription};
        let Some((mut a, b)) = two_hosts().await else {
            return;
        };
        a.set_notify(vec![Subscription {
            endpoint: "hooks".into(),
            events: NotifyEvent::ALL.to_vec(),
        }]);
        let items: Vec<(EventContext, Verdict)> = (0..300)
            .map(|i| {
                (
                    EventContext::mailbox("bounces", format!("o{i}")),
                    bounce(
                        &format!("o{i}@example.com"),
                        BounceClass::Hard,
                        Reason::UserUnknown,
                    ),
                )
            })
            .collect();
        let _ = a
            .record_verdicts(&items, &RulesConfig::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for (i, s) in [a.clone(), b.clone(), a, b].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                let (owner, names) = (format!("deliverer-{i}"), vec!["hooks".to_owned()]);
                let mut ids = Vec::new();
                loop {
                    let rows = s
                        .claim_outbox(&owner, &names, Duration::from_secs(60), 7)
                        .await
                        .unwrap();
                    if rows.is_empty() {
                        break ids;
                    }
                    ids.extend(rows.iter().map(|r| r.id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let distinct: BTreeSet<i64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len(), "a row was claimed twice");
        assert_eq!(all.len(), 300);
    }

    /// Rate reservations of two hosts at once are one sequence: none reads a GCRA state
    /// another is about to overwrite.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_rate_reservations_of_two_hosts_are_one_sequence() {
        let Some((a, b)) = two_hosts().await else {
            return;
        };
        let mut tasks = Vec::new();
        for s in [a.clone(), b.clone(), a.clone(), b.clone(), a.clone(), b] {
            tasks.push(tokio::spawn(async move {
                let names = ["10/s".to_string()];
                for _ in 0..25 {
                    let req = RateRequest {
                        smooth: &names,
                        windows: &[],
                        batch: 1,
                        relay: None,
                        released: &[],
                    };
                    s.reserve_rate(&req, |v| {
                        v.tats[0] += 1;
                        ((), Vec::new())
                    })
                    .await
                    .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let tat: i64 = sqlx::query_scalar(a.sql.SELECT_RATE)
            .bind("10/s")
            .fetch_one(a.pool())
            .await
            .unwrap();
        assert_eq!(tat, 150, "reservations were lost");
    }

    /// Two reactivations of one recipient at once: one reactivates, the other finds it
    /// active.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_reactivations_at_once_reactivate_once() {
        let Some((a, b)) = two_hosts().await else {
            return;
        };
        let rules = RulesConfig::default();
        for i in 0..10 {
            let address = format!("r{i}@example.com");
            let out = a
                .record_verdict(
                    &sent_message(&format!("<m{i}@x>")),
                    &bounce(&address, BounceClass::Hard, Reason::UserUnknown),
                    &rules,
                )
                .await
                .unwrap();
            assert_eq!(out.changes.len(), 1);
            let (x, y) = tokio::join!(a.reactivate(&address, "cli"), b.reactivate(&address, "api"));
            let done = [x.unwrap(), y.unwrap()];
            assert_eq!(done.iter().filter(|r| r.is_ok()).count(), 1, "{done:?}");
            assert!(done.contains(&Err(Refusal::AlreadyActive)), "{done:?}");
        }
    }

    /// Two soft bounces of one recipient recorded at once by two hosts count together.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_soft_bounces_recorded_at_once_count_together() {
        let Some((a, b)) = two_hosts().await else {
            return;
        };
        let rules = RulesConfig {
            soft_bounces_to_bounce: 2,
            ..RulesConfig::default()
        };
        for i in 0..10 {
            let address = format!("r{i}@example.com");
            let v = bounce(&address, BounceClass::Soft, Reason::MailboxFull);
            let (ca, cb) = (
                sent_message(&format!("<a{i}@x>")),
                sent_message(&format!("<b{i}@x>")),
            );
            let (x, y) = tokio::join!(
                a.record_verdict(&ca, &v, &rules),
                b.record_verdict(&cb, &v, &rules)
            );
            let (_, _) = (x.unwrap(), y.unwrap());
            let r = a.recipient(&address).await.unwrap().unwrap();
            assert_eq!(r.state, RecipientState::Bounced, "{address}");
        }
    }

    /// Two sender-side refusals of one campaign's domain recorded at once by two hosts
    /// are counted together by the pause rule.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_refusals_recorded_at_once_pause_the_domain() {
        let Some((a, b)) = two_hosts().await else {
            return;
        };
        let rules = RulesConfig {
            pause_on_sender_blocks: Some(PauseRule {
                threshold: 1.0,
                min_sends: 2,
                window: Duration::from_secs(3600),
            }),
            ..RulesConfig::default()
        };
        for campaign in 1..=10 {
            let ctx = |m: &str| EventContext {
                campaign_id: Some(campaign),
                ..sent_message(m)
            };
            let (ca, cb) = (
                ctx(&format!("<a{campaign}@x>")),
                ctx(&format!("<b{campaign}@x>")),
            );
            let va = bounce("a@example.net", BounceClass::Soft, Reason::Blocked);
            let vb = bounce("b@example.net", BounceClass::Soft, Reason::Blocked);
            let (x, y) = tokio::join!(
                a.record_verdict(&ca, &va, &rules),
                b.record_verdict(&cb, &vb, &rules)
            );
            let paused = x.unwrap().paused.len() + y.unwrap().paused.len();
            assert_eq!(paused, 1, "campaign {campaign}");
        }
    }

    /// One mailbox message recorded by two hosts at once is recorded once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_one_message_recorded_by_two_hosts_counts_once() {
        let Some((a, b)) = two_hosts().await else {
            return;
        };
        let rules = RulesConfig::default();
        for i in 0..10 {
            let ctx = EventContext {
                size: Some(1000),
                ..EventContext::mailbox("bounces@example.org", format!("uid{i}"))
            };
            let v = bounce(
                &format!("r{i}@example.com"),
                BounceClass::Hard,
                Reason::UserUnknown,
            );
            let (x, y) = tokio::join!(
                a.record_verdict(&ctx, &v, &rules),
                b.record_verdict(&ctx, &v, &rules)
            );
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(x.duplicate != y.duplicate, "{x:?} {y:?}");
        }
        assert_eq!(a.event_count().await.unwrap(), 10);
    }

    /// A runner's heartbeat while its checkpoint writes the same claimed rows (in another
    /// order) neither deadlocks nor waits for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_heartbeat_and_checkpoint_of_one_runner_do_not_deadlock() {
        use crate::store::campaigns::{SendState, SendUpdate};
        let Some((a, b)) = two_hosts().await else {
            return;
        };
        let addrs: Vec<String> = (0..400).map(|i| format!("r{i}@example.com")).collect();
        let (c, _) = a.create_campaign(&new_campaign(), &addrs).await.unwrap();
        let lease = Duration::from_secs(60);
        a.join_campaign(c.id, "me", lease).await.unwrap();
        let beat = {
            let b = b.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    b.heartbeat_runner(c.id, "me", lease).await.unwrap();
                }
            })
        };
        loop {
            let claim = a.claim(c.id, "me", lease, 0, 40).await.unwrap();
            if claim.rows.is_empty() {
                break;
            }
            // Newest first: the other order from the heartbeat's.
            let updates: Vec<SendUpdate> = claim
                .rows
                .iter()
                .rev()
                .map(|r| SendUpdate {
                    id: r.id,
                    state: SendState::Sent,
                    counted: true,
                    not_before: None,
                    message_id: None,
                    verp_token: None,
                    code: Some(250),
                    text: None,
                })
                .collect();
            assert_eq!(a.checkpoint_owned("me", &updates).await.unwrap(), 40);
        }
        beat.await.unwrap();
    }
}
