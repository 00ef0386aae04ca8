//! The store: the last stage of the inbound flow. Verdicts come in; recipients, bounce
//! events and the mailbox ledger (which UIDs are done) are kept in SQLite.
//!
//! * [`Store::open`] creates the database file if needed, switches it to WAL and runs the
//!   embedded migrations (`src/store/migrations/NNNN_name.sql`, see [`MIGRATIONS`]).
//! * [`Store::record_verdict`] is the only place where a verdict changes a recipient's
//!   state. In one transaction it writes one event per recipient record (one only for a
//!   message correlated to a send), updates the recipients under the [`RulesConfig`] by
//!   the pure rules of [`state`] and, for a message from a mailbox, claims its ledger row;
//!   the policies' state writes of a message ([`policy_state`]) go in that transaction too.
//! * [`Store::reactivate`] is the one manual change (the undo), recorded as an event too.
//! * Every state change (booked verdicts, reprocessing, reactivation, unsubscribe) is
//!   also written to the webhooks' outbox in its own transaction when `[[notify]]`
//!   endpoints are set ([`outbox`], [`Store::set_notify`]).
//! * Every SQL statement is a named constant in [`queries`]; no SQL lives elsewhere.
//!
//! # Addresses
//!
//! Addresses are compared by [`address_key`]: trimmed, angle brackets removed and the
//! *whole* address lower-cased. RFC 5321 lets a server treat the local part as
//! case-sensitive, but practically no mailbox provider does, and for a bounce store the
//! safe mistake is to treat `John@x` and `john@x` as one recipient (the other mistake
//! keeps mailing an address that bounced). The address shown is kept as first seen, with
//! the domain lower-cased ([`normalize_address`]).
//!
//! # Times
//!
//! Times are stored as integer milliseconds since the Unix epoch and shown as RFC 3339.

/// Declares a store test `NAME` (an `async fn NAME(s: Store)` written after it) run on
/// each backend: `NAME::sqlite` on a private in-memory SQLite database and
/// `NAME::postgres` on a fresh database of the test PostgreSQL cluster (skipped,
/// visibly, when PostgreSQL is not installed; a failure under `CI=true`).
#[cfg(test)]
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::store::test_backend::sqlite().await).await
            }
            #[tokio::test]
            async fn postgres() {
                if let Some(s) = $crate::store::test_backend::postgres().await {
                    super::$name(s).await
                }
            }
        }
    };
}
#[cfg(test)]
pub(crate) use on_both_backends;

pub mod archive;
pub mod campaigns;
pub mod leases;
pub mod outbox;
pub mod policies;
pub mod policy_state;
pub mod rollup;
pub mod sql;
pub mod state;
pub mod subscribers;
pub mod webhooks;

/// The test PostgreSQL cluster (shared with the integration tests).
#[cfg(test)]
#[path = "../../tests/support/postgres.rs"]
mod postgres_support;

/// The stores of [`on_both_backends`] tests.
#[cfg(test)]
pub(crate) mod test_backend {
    use super::{Store, postgres_support};

    /// A private in-memory SQLite store.
    pub(crate) async fn sqlite() -> Store {
        Store::open("sqlite::memory:").await.unwrap()
    }

    /// A store on a fresh database of the test PostgreSQL cluster, or `None` (reported
    /// as skipped) when PostgreSQL is not there.
    pub(crate) async fn postgres() -> Option<Store> {
        if !postgres_support::available() {
            return None;
        }
        Some(Store::open(&postgres_support::database()).await.unwrap())
    }
}

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::AnyPool;
use sqlx::Row;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::config::RulesConfig;
use crate::verdict::{Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

/// The embedded migrations, in order: (version, description, SQL).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (
        2,
        "campaigns",
        include_str!("migrations/0002_campaigns.sql"),
    ),
    (
        3,
        "sends_skipped",
        include_str!("migrations/0003_sends_skipped.sql"),
    ),
    (4, "blame", include_str!("migrations/0004_blame.sql")),
    (
        5,
        "fetch_failures",
        include_str!("migrations/0005_fetch_failures.sql"),
    ),
    (
        6,
        "send_leases",
        include_str!("migrations/0006_send_leases.sql"),
    ),
    (
        7,
        "maybe_delivered",
        include_str!("migrations/0007_maybe_delivered.sql"),
    ),
    (
        8,
        "ledger_size_quarantine",
        include_str!("migrations/0008_ledger_size_quarantine.sql"),
    ),
    (
        10,
        "listing_indexes",
        include_str!("migrations/0010_listing_indexes.sql"),
    ),
    (
        11,
        "shared_quotas",
        include_str!("migrations/0011_shared_quotas.sql"),
    ),
    (
        12,
        "runners_per_host",
        include_str!("migrations/0012_runners_per_host.sql"),
    ),
    (13, "leases", include_str!("migrations/0013_leases.sql")),
    (14, "policies", include_str!("migrations/0014_policies.sql")),
    (
        15,
        "subscribers",
        include_str!("migrations/0015_subscribers.sql"),
    ),
    (
        16,
        "complaint_guard",
        include_str!("migrations/0016_complaint_guard.sql"),
    ),
    (17, "archive", include_str!("migrations/0017_archive.sql")),
    (
        18,
        "superseded_events",
        include_str!("migrations/0018_superseded_events.sql"),
    ),
    (19, "rollup", include_str!("migrations/0019_rollup.sql")),
    (20, "outbox", include_str!("migrations/0020_outbox.sql")),
    (
        21,
        "webhook_tokens",
        include_str!("migrations/0021_webhook_tokens.sql"),
    ),
    (
        22,
        "imap_digests",
        include_str!("migrations/0022_imap_digests.sql"),
    ),
    (
        23,
        "policy_state",
        include_str!("migrations/0023_policy_state.sql"),
    ),
];

/// PostgreSQL's migrations: schema 11 (the SQLite schema after its migration 11) in one,
/// then the same numbers as SQLite's for what comes after.
pub const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        11,
        "init",
        include_str!("migrations/postgres/0011_init.sql"),
    ),
    (
        12,
        "runners_per_host",
        include_str!("migrations/postgres/0012_runners_per_host.sql"),
    ),
    (
        13,
        "leases",
        include_str!("migrations/postgres/0013_leases.sql"),
    ),
    (
        14,
        "policies",
        include_str!("migrations/postgres/0014_policies.sql"),
    ),
    (
        15,
        "subscribers",
        include_str!("migrations/postgres/0015_subscribers.sql"),
    ),
    (
        16,
        "complaint_guard",
        include_str!("migrations/postgres/0016_complaint_guard.sql"),
    ),
    (
        17,
        "archive",
        include_str!("migrations/postgres/0017_archive.sql"),
    ),
    (
        18,
        "superseded_events",
        include_str!("migrations/postgres/0018_superseded_events.sql"),
    ),
    (
        19,
        "rollup",
        include_str!("migrations/postgres/0019_rollup.sql"),
    ),
    (
        20,
        "outbox",
        include_str!("migrations/postgres/0020_outbox.sql"),
    ),
    (
        21,
        "webhook_tokens",
        include_str!("migrations/postgres/0021_webhook_tokens.sql"),
    ),
    (
        22,
        "imap_digests",
        include_str!("migrations/postgres/0022_imap_digests.sql"),
    ),
    (
        23,
        "policy_state",
        include_str!("migrations/postgres/0023_policy_state.sql"),
    ),
];

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL is not one this build can open.
    #[error("store url {url:?}: {reason}")]
    Url {
        /// The URL as configured.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Opening the database failed.
    // The cause is in the message and not also a `source()`, so a report of the chain
    // says it once.
    #[error("opening store {url}: {cause}")]
    Open {
        /// The URL.
        url: String,
        /// The database error.
        cause: sqlx::Error,
    },
    /// Running the migrations failed.
    #[error("migrating store: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    /// A statement failed.
    #[error("store {what}: {cause}")]
    Query {
        /// Which statement or step.
        what: &'static str,
        /// The database error.
        cause: sqlx::Error,
    },
    /// A stored value is not one this version understands.
    #[error("store holds an unknown {what} {value:?}")]
    Corrupt {
        /// Which kind of value.
        what: &'static str,
        /// The value.
        value: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

fn q(what: &'static str) -> impl Fn(sqlx::Error) -> Error + Copy {
    move |cause| Error::Query { what, cause }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Error {
        Error::Migrate(e)
    }
}

/// A recipient's state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RecipientState {
    /// Mail may be sent (the default).
    Active,
    /// Bounced: hard once, or soft too often within the window. No more mail.
    Bounced,
    /// Complained (feedback report). No more mail.
    Complained,
    /// Unsubscribed. No more mail.
    Unsubscribed,
}

impl RecipientState {
    /// Every state.
    pub const ALL: &'static [RecipientState] = &[
        RecipientState::Active,
        RecipientState::Bounced,
        RecipientState::Complained,
        RecipientState::Unsubscribed,
    ];

    /// The name used in SQL, JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            RecipientState::Active => "active",
            RecipientState::Bounced => "bounced",
            RecipientState::Complained => "complained",
            RecipientState::Unsubscribed => "unsubscribed",
        }
    }

    /// May mail be sent to a recipient in this state?
    pub fn is_mailable(self) -> bool {
        self == RecipientState::Active
    }
}

impl fmt::Display for RecipientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a state name that is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown recipient state {0:?} (active, bounced, complained, unsubscribed)")]
pub struct UnknownState(pub String);

impl FromStr for RecipientState {
    type Err = UnknownState;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        RecipientState::ALL
            .iter()
            .copied()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

fn parse_kind(s: &str) -> Result<MessageKind> {
    MessageKind::ALL
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| Error::Corrupt {
            what: "message kind",
            value: s.into(),
        })
}

fn parse_class(s: &str) -> Result<BounceClass> {
    BounceClass::ALL
        .into_iter()
        .find(|c| c.as_str() == s)
        .ok_or_else(|| Error::Corrupt {
            what: "bounce class",
            value: s.into(),
        })
}

/// What an event records: a message's record (its kind), or a manual reactivation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    /// A record of a returned message (or an SMTP-time refusal) of this kind.
    Message(MessageKind),
    /// An operator made a suppressed recipient active again (`previous_state` says from
    /// what, `source` who: `cli` or `api`).
    Reactivation,
    /// The recipient asked to receive no more mail (`source`: `one-click`, `page` or
    /// `mailto`; with the campaign whose message it came from).
    Unsubscribe,
}

impl EventKind {
    /// The name in SQL, JSON and tables: the message kind's, or `reactivation`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Message(k) => k.as_str(),
            EventKind::Reactivation => "reactivation",
            EventKind::Unsubscribe => "unsubscribe",
        }
    }
}

impl From<MessageKind> for EventKind {
    fn from(k: MessageKind) -> EventKind {
        EventKind::Message(k)
    }
}

impl PartialEq<MessageKind> for EventKind {
    fn eq(&self, other: &MessageKind) -> bool {
        *self == EventKind::Message(*other)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Error for an event kind name that is not known.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown event kind {0:?} (bounce, complaint, auto-reply, delivery-notice, other, reactivation, unsubscribe)"
)]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("reactivation") {
            return Ok(EventKind::Reactivation);
        }
        if t.eq_ignore_ascii_case("unsubscribe") {
            return Ok(EventKind::Unsubscribe);
        }
        MessageKind::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(t))
            .map(EventKind::Message)
            .ok_or_else(|| UnknownEventKind(s.to_owned()))
    }
}

fn parse_event_kind(s: &str) -> Result<EventKind> {
    s.parse().map_err(|_| Error::Corrupt {
        what: "event kind",
        value: s.into(),
    })
}

fn parse_blame(s: &str) -> Result<Blame> {
    s.parse().map_err(|_| Error::Corrupt {
        what: "blame",
        value: s.into(),
    })
}

/// The domain of an address (lower-cased), the destination domain of its mail.
pub fn domain_of(address: &str) -> Option<String> {
    normalize_address(address)
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty())
}

fn parse_state(s: String) -> Result<RecipientState> {
    s.parse().map_err(|_| Error::Corrupt {
        what: "recipient state",
        value: s,
    })
}

/// Trims an address, drops angle brackets and an `rfc822;` type, and lower-cases the
/// domain; the local part is kept as given.
pub fn normalize_address(address: &str) -> String {
    let mut a = address.trim();
    if let Some((ty, rest)) = a.split_once(';')
        && ty.trim().eq_ignore_ascii_case("rfc822")
    {
        a = rest.trim();
    }
    let a = a.trim_start_matches('<').trim_end_matches('>').trim();
    match a.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => a.to_owned(),
    }
}

/// The key addresses are compared by: [`normalize_address`], then lower-cased whole
/// (see the module docs for why the local part is folded too).
pub fn address_key(address: &str) -> String {
    normalize_address(address).to_lowercase()
}

/// A duration as stored: milliseconds (far beyond any lease when it does not fit).
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// A point in time stored as milliseconds since the Unix epoch; shown as RFC 3339.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Now.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }

    /// As a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(u64::try_from(self.0).unwrap_or(0))
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        let ms = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            humantime::format_rfc3339_seconds(self.to_system_time())
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.to_system_time()))
    }
}

/// How a message with a ledger row reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    /// A POP3 mailbox; the uid is the UIDL.
    Pop3,
    /// An IMAP folder; the uid is `UIDVALIDITY.UID`.
    Imap,
    /// A provider's webhook; the ledger's mailbox is `webhook:<provider>`, the uid the
    /// provider's id of the event (so its retries are recorded once).
    Webhook,
}

impl Inbound {
    /// The kind of source a `source` column names (see [`Source`]'s `Display`).
    pub fn of_source(source: &str) -> Inbound {
        if source.starts_with("imap:") {
            Inbound::Imap
        } else if source.starts_with("webhook:") {
            Inbound::Webhook
        } else {
            Inbound::Pop3
        }
    }
}

/// Where a verdict came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A message of an inbound source with a ledger (a mailbox, a webhook), by its id
    /// there. Recording it claims the ledger row: a message is recorded once.
    Mailbox {
        /// Which kind of source.
        via: Inbound,
        /// The mailbox's name in the ledger.
        mailbox: String,
        /// The message's id in the mailbox.
        uid: String,
    },
    /// A file (`rebound classify --record` and tests).
    File(String),
    /// A rejection during the SMTP dialogue.
    Smtp,
}

impl fmt::Display for Source {
    /// `pop3:<mailbox>/<uid>`, `imap:<mailbox>/<uid>`, `webhook:<provider>/<id>`,
    /// `file:<path>` or `smtp`: the `source` column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Mailbox {
                via: Inbound::Pop3,
                mailbox,
                uid,
            } => write!(f, "pop3:{mailbox}/{uid}"),
            Source::Mailbox {
                via: Inbound::Imap,
                mailbox,
                uid,
            } => write!(f, "imap:{mailbox}/{uid}"),
            // The ledger's name already says `webhook:<provider>`.
            Source::Mailbox {
                via: Inbound::Webhook,
                mailbox,
                uid,
            } => write!(f, "{mailbox}/{uid}"),
            Source::File(path) => write!(f, "file:{path}"),
            Source::Smtp => f.write_str("smtp"),
        }
    }
}

/// What [`Store::record_verdict`] needs to know besides the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// Where the verdict came from.
    pub source: Source,
    /// The Message-ID of the message that bounced, when known.
    pub original_message_id: Option<String>,
    /// The campaign the bounced message belonged to, when correlation found it.
    pub campaign_id: Option<i64>,
    /// The recipient correlation found (e.g. from the VERP token). When set, exactly one
    /// record is booked, to this address: the verdict's record for this address if there
    /// is one, else its most severe (hard over soft); the other addresses the report named
    /// are kept on the event as `aliases` and never booked on their own. A bounce or
    /// complaint that names no recipient at all gets one record for it.
    pub recipient: Option<String>,
    /// When it happened (default: now).
    pub at: Option<SystemTime>,
    /// Set when the message could not be parsed: recorded as a marker event and the
    /// ledger row's outcome `unparseable`.
    pub error: Option<String>,
    /// The message's size in bytes as the mailbox lists it (POP3 LIST), when known:
    /// kept in the ledger, where a later pass compares it ([`LedgerEntry::same_message`]).
    pub size: Option<u64>,
    /// The message itself, compressed, for the archive (mailbox messages only; `None`
    /// with `[store] keep_raw = 0`).
    pub raw: Option<archive::RawMessage>,
    /// What the policies wrote to their state while judging the message
    /// ([`policy_state`]): applied in order in the message's own transaction, and only
    /// when it is recorded (not for a duplicate), so a write is neither lost nor doubled.
    /// Reprocessing ([`Store::rebook`]) discards them.
    pub state_writes: Vec<policy_state::StateWrite>,
}

impl EventContext {
    /// A context for any source, with nothing else known.
    pub fn new(source: Source) -> EventContext {
        EventContext {
            source,
            original_message_id: None,
            campaign_id: None,
            recipient: None,
            at: None,
            error: None,
            size: None,
            raw: None,
            state_writes: Vec::new(),
        }
    }

    /// A context for message `uid` (its UIDL) of POP3 mailbox `mailbox`.
    pub fn mailbox(mailbox: impl Into<String>, uid: impl Into<String>) -> EventContext {
        EventContext::new(Source::Mailbox {
            via: Inbound::Pop3,
            mailbox: mailbox.into(),
            uid: uid.into(),
        })
    }

    /// A context for message `uid` (`UIDVALIDITY.UID`) of IMAP folder `mailbox`.
    pub fn imap(mailbox: impl Into<String>, uid: impl Into<String>) -> EventContext {
        EventContext::new(Source::Mailbox {
            via: Inbound::Imap,
            mailbox: mailbox.into(),
            uid: uid.into(),
        })
    }

    /// A context for event `id` of `provider`'s webhook (ledger mailbox
    /// `webhook:<provider>`).
    pub fn webhook(provider: &str, id: impl Into<String>) -> EventContext {
        EventContext::new(Source::Mailbox {
            via: Inbound::Webhook,
            mailbox: format!("webhook:{provider}"),
            uid: id.into(),
        })
    }

    /// A context for a file.
    pub fn file(path: impl Into<String>) -> EventContext {
        EventContext::new(Source::File(path.into()))
    }

    /// A context for an SMTP-time rejection.
    pub fn smtp() -> EventContext {
        EventContext::new(Source::Smtp)
    }

    /// The mailbox name, for a mailbox source.
    pub fn mailbox_name(&self) -> Option<&str> {
        match &self.source {
            Source::Mailbox { mailbox, .. } => Some(mailbox),
            _ => None,
        }
    }

    /// The UIDL, for a mailbox source.
    pub fn uid(&self) -> Option<&str> {
        match &self.source {
            Source::Mailbox { uid, .. } => Some(uid),
            _ => None,
        }
    }
}

/// One recipient's change of state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateChange {
    /// The recipient's address.
    pub address: String,
    /// The state before.
    pub from: RecipientState,
    /// The state after.
    pub to: RecipientState,
}

/// What [`Store::record_verdict`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct RecordOutcome {
    /// The message was already in the ledger: nothing was recorded (nothing counted twice).
    pub duplicate: bool,
    /// Events written.
    pub events: usize,
    /// Recipients whose state changed.
    pub changes: Vec<StateChange>,
    /// The failures booked (records with a class), with whom they are blamed on.
    pub failures: Vec<BookedFailure>,
    /// Destination domains of a campaign paused by `[rules] pause_on_sender_blocks`.
    pub paused: Vec<DomainPause>,
    /// The destination domain (`None`: the address has none) of each complaint booked.
    pub complaints: Vec<Option<String>>,
    /// Campaigns paused by `[rules] max_complaint_rate`.
    pub paused_campaigns: Vec<ComplaintPause>,
    /// Campaigns a complaint was booked to, for the guard after the commit.
    complaint_campaigns: Vec<i64>,
}

/// A campaign paused by the complaint-rate guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComplaintPause {
    /// The campaign.
    pub campaign_id: i64,
    /// When it paused.
    pub paused_at: Timestamp,
    /// Complaints the guard counted (since the campaign's start or last resume).
    pub complaints: u64,
    /// Accepted sends it counted them against.
    pub sends: u64,
    /// The reason, as stored with the campaign.
    pub reason: String,
}

impl fmt::Display for ComplaintPause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "campaign {} paused: {}; `rebound send` resumes it",
            self.campaign_id, self.reason
        )
    }
}

/// The reason a campaign pauses for its complaint rate.
fn complaint_pause_reason(complaints: u64, sends: u64, max: f64) -> String {
    format!(
        "complaint rate {} ({complaints} complaints over {sends} accepted sends) is over \
         [rules] max_complaint_rate {}",
        percent(complaints as f64 / sends.max(1) as f64),
        percent(max)
    )
}

/// A share as a percentage, with two decimals below 1 %.
pub fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p < 1.0 {
        format!("{p:.2} %")
    } else {
        format!("{p:.1} %")
    }
}

/// One failure booked to a recipient: what the per-domain alarms count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BookedFailure {
    /// The recipient's domain, when the address has one.
    pub domain: Option<String>,
    /// Whom it is blamed on.
    pub blame: Blame,
    /// The reason.
    pub reason: Reason,
    /// The campaign, when known.
    pub campaign_id: Option<i64>,
}

/// A campaign's sends to one destination domain, paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainPause {
    /// The campaign.
    pub campaign_id: i64,
    /// The destination domain.
    pub domain: String,
    /// When it was paused.
    pub paused_at: Timestamp,
    /// When the pause ends by itself.
    pub until: Timestamp,
    /// Sender-blamed refusals within the window when it paused.
    pub refusals: u64,
    /// Sends within the window when it paused.
    pub sends: u64,
}

impl fmt::Display for DomainPause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "campaign {}: sends to {} paused until {} ({} of {} sends refused for sender reasons); \
             `rebound campaigns resume {} --domain {}` resumes at once",
            self.campaign_id,
            self.domain,
            self.until,
            self.refusals,
            self.sends,
            self.campaign_id,
            self.domain
        )
    }
}

/// Sender-side refusals to one destination domain within a recent window: the operator's
/// alarm (our IP on a blocklist, our content called spam).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SenderAlarm {
    /// The destination domain.
    pub domain: String,
    /// Sent messages refused for sender reasons (distinct messages).
    pub refusals: u64,
    /// Sends to the domain that got their answer within the window (0 when the store
    /// has none, e.g. mail sent by another system).
    pub sends: u64,
    /// The most frequent reason.
    pub top_reason: Reason,
    /// The window, in seconds.
    pub window_secs: u64,
}

impl SenderAlarm {
    /// Refusals as a share of the sends (at most 100 %), when there were sends.
    pub fn percent(&self) -> Option<u64> {
        (self.sends > 0)
            .then(|| (self.refusals.min(self.sends) * 100 + self.sends / 2) / self.sends)
    }
}

fn window_words(secs: u64) -> String {
    match secs {
        3600 => "hour".into(),
        86_400 => "day".into(),
        s if s % 3600 == 0 => format!("{} hours", s / 3600),
        s if s % 60 == 0 => format!("{} minutes", s / 60),
        s => format!("{s} s"),
    }
}

fn refused_as(reason: Reason) -> String {
    match reason {
        Reason::SpamDetected => "as spam".into(),
        Reason::Blocked => "as blocked (our IP or host on a blocklist)".into(),
        Reason::BadReputation => "for our reputation".into(),
        Reason::AuthFailure => "for failed authentication (SPF/DKIM/DMARC)".into(),
        Reason::RequirePtr => "for our reverse DNS".into(),
        Reason::VirusDetected => "as carrying a virus".into(),
        other => format!("for sender-side reasons ({other})"),
    }
}

impl fmt::Display for SenderAlarm {
    /// `gmail.com: 37 % of the last hour's sends refused as spam (37 of 100)`, or the
    /// count when the store has no sends to that domain.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = window_words(self.window_secs);
        let why = refused_as(self.top_reason);
        match self.percent() {
            Some(p) => write!(
                f,
                "{}: {p} % of the last {window}'s sends refused {why} ({} of {})",
                self.domain, self.refusals, self.sends
            ),
            None => write!(
                f,
                "{}: {} message(s) refused {why} in the last {window} (no sends to it in the store)",
                self.domain, self.refusals
            ),
        }
    }
}

/// Why [`Store::reactivate`] changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The store knows no such recipient.
    #[error("no such recipient")]
    NotFound,
    /// The recipient is active already.
    #[error("the recipient is already active")]
    AlreadyActive,
}

/// A ledger row: a mailbox message whose verdict is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    /// The message could not be parsed (a marker event was recorded).
    pub unparseable: bool,
    /// The kind of the committed verdict.
    pub kind: MessageKind,
    /// The size the server listed (LIST) for the message when its verdict was committed;
    /// `None` for rows recorded before the ledger kept it (until a pass lists them, see
    /// [`Store::adopt_ledger_sizes`]) and for messages the server did not list a size for.
    pub size: Option<u64>,
}

impl LedgerEntry {
    /// Reads the `outcome` and `kind` columns, which start at column `at`, and `size`
    /// after them when the row has it.
    fn from_row(row: &sqlx::any::AnyRow, at: usize) -> Result<LedgerEntry> {
        let outcome: String = row.try_get(at).map_err(q("reading ledger"))?;
        let kind: String = row.try_get(at + 1).map_err(q("reading ledger"))?;
        let size: Option<i64> = if row.len() > at + 2 {
            row.try_get(at + 2).map_err(q("reading ledger"))?
        } else {
            None
        };
        Ok(LedgerEntry {
            unparseable: outcome == "unparseable",
            kind: parse_kind(&kind)?,
            size: size.and_then(|s| u64::try_from(s).ok()),
        })
    }

    /// Is a message the server lists with `listed` bytes under this row's UID the one
    /// this row recorded? A known size that differs means the server gave the UID to a
    /// new message (a mailbox rebuilt with its UIDs reused); an unknown size on either
    /// side trusts the UID.
    pub fn same_message(&self, listed: Option<u64>) -> bool {
        match (self.size, listed) {
            (Some(recorded), Some(listed)) => recorded == listed,
            _ => true,
        }
    }
}

/// A message whose fetch failed, from [`Store::quarantined`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FetchFailure {
    /// The mailbox's name in the ledger.
    pub mailbox: String,
    /// The message's UIDL.
    pub uid: String,
    /// Its failed fetches.
    pub failures: u32,
    /// The first failed fetch (for rows counted before schema 8: the last known).
    pub first_failure_at: Timestamp,
    /// The last failed fetch.
    pub last_failure_at: Timestamp,
    /// What the last failure said.
    pub last_error: String,
    /// When it was quarantined.
    pub quarantined_at: Option<Timestamp>,
}

/// A message's failed fetches as a pass sees them ([`Store::fetch_failure_states`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    /// Failed fetches so far.
    pub failures: u32,
    /// Quarantined: not fetched again until released.
    pub quarantined: bool,
}

/// A recipient row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipient {
    /// Row id.
    pub id: i64,
    /// The address as first seen (domain lower-cased).
    pub address: String,
    /// The current state.
    pub state: RecipientState,
    /// Hard bounces counted.
    pub hard_count: i64,
    /// Soft bounce events counted since the last reactivation (every delay warning and
    /// sender-blamed refusal too; the soft rule counts only recipient-blamed final
    /// failures of sent messages, see [`Store::record_verdict`]).
    pub soft_count: i64,
    /// Complaints counted.
    pub complaint_count: i64,
    /// When the last bounce happened.
    pub last_bounce_at: Option<Timestamp>,
    /// The status code of the last bounce.
    pub last_status: Option<String>,
    /// The reason of the last bounce.
    pub last_reason: Option<String>,
    /// When the state last changed.
    pub state_changed_at: Option<Timestamp>,
    /// When the row was created.
    pub created_at: Timestamp,
    /// When the row was last touched.
    pub updated_at: Timestamp,
}

impl Recipient {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Recipient> {
        let g = q("reading recipient");
        let state: String = row.try_get(2).map_err(g)?;
        Ok(Recipient {
            id: row.try_get(0).map_err(g)?,
            address: row.try_get(1).map_err(g)?,
            state: parse_state(state)?,
            hard_count: row.try_get(3).map_err(g)?,
            soft_count: row.try_get(4).map_err(g)?,
            complaint_count: row.try_get(5).map_err(g)?,
            last_bounce_at: row.try_get::<Option<i64>, _>(6).map_err(g)?.map(Timestamp),
            last_status: row.try_get(7).map_err(g)?,
            last_reason: row.try_get(8).map_err(g)?,
            state_changed_at: row.try_get::<Option<i64>, _>(9).map_err(g)?.map(Timestamp),
            created_at: Timestamp(row.try_get(10).map_err(g)?),
            updated_at: Timestamp(row.try_get(11).map_err(g)?),
        })
    }
}

/// An event row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Row id (ascending in recording order).
    pub id: i64,
    /// When it happened.
    pub at: Timestamp,
    /// `pop3:<mailbox>/<uid>`, `imap:<mailbox>/<uid>`, `webhook:<provider>/<id>`,
    /// `file:<path>` or `smtp`.
    pub source: String,
    /// The mailbox, for a mailbox source.
    pub mailbox: Option<String>,
    /// The UIDL, for a mailbox source.
    pub uid: Option<String>,
    /// The recipient (None for an unparseable-message marker).
    pub recipient: Option<String>,
    /// The message kind, or `reactivation`.
    pub kind: EventKind,
    /// Hard or soft, for bounces.
    pub class: Option<BounceClass>,
    /// Whom the failure is about (failures only; for events recorded before blame
    /// existed, derived from the stored reason).
    pub blame: Option<Blame>,
    /// The DSN action (`failed`, `delayed`, …), when the report gave one.
    pub action: Option<String>,
    /// The recipient's domain.
    pub domain: Option<String>,
    /// Other addresses the report named for this one correlated send (a forwarding
    /// target, an alias): shown, never booked on their own.
    pub aliases: Vec<String>,
    /// For a reactivation: the state before it.
    pub previous_state: Option<RecipientState>,
    /// The RFC 3463 status.
    pub status: Option<String>,
    /// The reason name.
    pub reason: Option<String>,
    /// The diagnostic text.
    pub diagnostic: Option<String>,
    /// `builtin` or `policy:<name>`.
    pub decided_by: String,
    /// The Message-ID of the message that bounced.
    pub original_message_id: Option<String>,
    /// The campaign, when known.
    pub campaign_id: Option<i64>,
    /// Why the message could not be parsed (marker events only).
    pub error: Option<String>,
}

impl Event {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<Event> {
        let g = q("reading event");
        let kind: String = row.try_get(6).map_err(g)?;
        let class: Option<String> = row.try_get(7).map_err(g)?;
        let class = class.as_deref().map(parse_class).transpose()?;
        let reason: Option<String> = row.try_get(9).map_err(g)?;
        let blame: Option<String> = row.try_get(15).map_err(g)?;
        let blame = match blame {
            Some(b) => Some(parse_blame(&b)?),
            None => reason
                .as_deref()
                .and_then(|r| r.parse::<Reason>().ok())
                .and_then(|r| Blame::of_failure(class, r)),
        };
        let aliases: Option<String> = row.try_get(18).map_err(g)?;
        let previous: Option<String> = row.try_get(19).map_err(g)?;
        Ok(Event {
            id: row.try_get(0).map_err(g)?,
            at: Timestamp(row.try_get(1).map_err(g)?),
            source: row.try_get(2).map_err(g)?,
            mailbox: row.try_get(3).map_err(g)?,
            uid: row.try_get(4).map_err(g)?,
            recipient: row.try_get(5).map_err(g)?,
            kind: parse_event_kind(&kind)?,
            class,
            blame,
            action: row.try_get(16).map_err(g)?,
            domain: row.try_get(17).map_err(g)?,
            aliases: aliases
                .map(|a| serde_json::from_str(&a))
                .transpose()
                .map_err(|_| Error::Corrupt {
                    what: "event aliases",
                    value: format!("event {}", row.try_get::<i64, _>(0).unwrap_or(0)),
                })?
                .unwrap_or_default(),
            previous_state: previous.map(parse_state).transpose()?,
            status: row.try_get(8).map_err(g)?,
            reason,
            diagnostic: row.try_get(10).map_err(g)?,
            decided_by: row.try_get(11).map_err(g)?,
            original_message_id: row.try_get(12).map_err(g)?,
            campaign_id: row.try_get(13).map_err(g)?,
            error: row.try_get(14).map_err(g)?,
        })
    }
}

/// An event that reprocessing replaced ([`Store::superseded_of`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Superseded {
    /// The event as it was.
    #[serde(flatten)]
    pub event: Event,
    /// When a rebooking replaced it.
    pub superseded_at: Timestamp,
}

/// Which events [`Store::events`] returns; every field narrows the set.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this recipient (compared by [`address_key`]).
    pub recipient: Option<String>,
    /// Only this kind.
    pub kind: Option<EventKind>,
    /// Only this mailbox.
    pub mailbox: Option<String>,
    /// Only this campaign.
    pub campaign_id: Option<i64>,
    /// Only at or after this time.
    pub since: Option<SystemTime>,
    /// At most this many (default: all).
    pub limit: Option<u32>,
    /// Only after this event id: the cursor of a page ([`Store::events_page`]).
    pub after: Option<i64>,
}

impl EventFilter {
    /// Which filters are set, naming the statement of [`queries::select_events`].
    fn filters(&self) -> sql::EventFilters {
        sql::EventFilters {
            recipient: self.recipient.is_some(),
            kind: self.kind.is_some(),
            mailbox: self.mailbox.is_some(),
            campaign: self.campaign_id.is_some(),
            since: self.since.is_some(),
        }
    }
}

/// One page of a listing and the cursor of the next (`None` on the last page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    /// The rows, in key order.
    pub items: Vec<T>,
    /// What to pass as `after` for the next page.
    pub next: Option<C>,
}

impl<T, C> Page<T, C> {
    /// A page from up to `limit + 1` rows: the extra one only says that more follow.
    fn from_rows(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> C) -> Page<T, C> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(key)
        } else {
            None
        };
        Page { items, next }
    }
}

/// The embedded migrations as a sqlx migration source.
#[derive(Debug)]
struct Embedded(&'static [(i64, &'static str, &'static str)]);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> futures_core_boxed::BoxFuture<
        'static,
        std::result::Result<Vec<Migration>, sqlx::error::BoxDynError>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A boxed future, spelled out so the store needs no extra crate.
mod futures_core_boxed {
    pub(super) type BoxFuture<'a, T> =
        std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// Which database a store is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (or `sqlite::memory:`): the embedded default, one host.
    Sqlite,
    /// A PostgreSQL server: several hosts on one store.
    Postgres,
}

/// The store: a pool of connections to SQLite or PostgreSQL (sqlx's `Any` driver, one
/// code for both; the SQL of each in [`sql`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The dialect's statements.
    sql: &'static sql::Sql,
    /// For `sqlite::memory:`: one connection held open for the store's lifetime. The
    /// database lives only while a connection to it is open, and the pool drops a
    /// connection whose query was cancelled half-way (a poll pass stopped mid-commit).
    _keeper: Option<Arc<Keeper>>,
    /// The `[[notify]]` endpoints state changes are enqueued for ([`Store::set_notify`]).
    notify: Arc<outbox::Notify>,
}

/// The idle connection that keeps an in-memory database alive.
struct Keeper(#[allow(dead_code)] tokio::sync::Mutex<sqlx::AnyConnection>);

impl fmt::Debug for Keeper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keeper")
    }
}

/// Names each private in-memory database of this process.
static MEMORY_DATABASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// SQLite's `synchronous` setting for a file database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Every commit is synced before it returns (the default).
    Full,
    /// WAL commits are synced at checkpoints only: an OS crash can undo the last ones.
    Normal,
}

impl Store {
    /// Opens (creating if needed) the database at `url` and runs the migrations.
    ///
    /// `sqlite://path/to/file.db` (or `sqlite:file.db`) opens a file in WAL mode with
    /// `synchronous = FULL` and a 10 s busy timeout, with up to 4 connections;
    /// `sqlite::memory:` opens a private in-memory database on one connection (tests).
    /// `postgres://user:password@host:port/database` (or `postgresql://`; `?sslmode=require`
    /// for TLS, verified against the system's roots) opens up to 8 connections to a
    /// PostgreSQL server that several hosts may share.
    ///
    /// `FULL` makes every commit durable before it returns (the WAL is synced at each
    /// commit): the poller deletes a message once its verdict is committed, so a commit
    /// that an OS crash or power loss could still undo (`NORMAL` in WAL mode) would lose
    /// the verdict of a message that is already gone from the server. The poller's group
    /// commit shares one sync between the messages waiting at that moment. PostgreSQL's
    /// commits are durable under its own `synchronous_commit` (on by default).
    ///
    /// # Errors
    /// [`Error::Url`] for a URL that is neither, [`Error::Open`], [`Error::Migrate`].
    ///
    /// # Examples
    /// ```no_run
    /// # async fn f() -> rebound::store::Result<()> {
    /// let store = rebound::store::Store::open("sqlite::memory:").await?;
    /// assert!(!store.ledger_contains("bounces@example.org", "0001").await?);
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str) -> Result<Store> {
        Store::open_with_synchronous(url, Synchronous::Full).await
    }

    /// [`Store::open`] with another `synchronous` setting for a SQLite file: for
    /// measuring what `FULL` costs (benches/ingest.rs). Anything weaker than `FULL` can
    /// lose committed verdicts in an OS crash. Ignored for PostgreSQL.
    ///
    /// # Errors
    /// As [`Store::open`].
    #[doc(hidden)]
    pub async fn open_with_synchronous(url: &str, synchronous: Synchronous) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::Url {
                url: url.into(),
                reason: "a store URL starts with sqlite: or postgres://".into(),
            });
        };
        let open_error = |cause| Error::Open {
            url: redact(url),
            cause,
        };
        let memory = url.contains(":memory:") || url.contains("mode=memory");
        let connect_url = match backend {
            // Each connection parses the URL again, and sqlx names a `:memory:` database
            // anew each time: a name of our own keeps one database for every connection.
            Backend::Sqlite if memory => format!(
                "sqlite:file:rebound-memory-{}-{}?mode=memory&cache=shared",
                std::process::id(),
                MEMORY_DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&connect_url).map_err(|e| Error::Url {
            url: redact(url),
            reason: e.to_string(),
        })?;
        // SQLite connections are in-process: pinging one before each use (sqlx's default)
        // only costs a round trip to its worker thread on every query.
        let pool_options = match backend {
            // Each connection to a memory database is kept: exactly one, for ever.
            Backend::Sqlite if memory => AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .test_before_acquire(false),
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(4)
                .test_before_acquire(false),
            Backend::Postgres => AnyPoolOptions::new().max_connections(8),
        };
        let pragmas = sqlite_pragmas(memory, synchronous);
        let pool_options = pool_options
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if conn.backend_name() == "SQLite" {
                        sqlx::Executor::execute(&mut *conn, pragmas).await?;
                    } else {
                        // A host that hangs inside a transaction (stopped, not dead)
                        // would hold its row and advisory locks, and every other host
                        // would wait for them: the server ends such a session instead.
                        sqlx::Executor::execute(&mut *conn, POSTGRES_SESSION).await?;
                    }
                    Ok(())
                })
            })
            // A future cancelled right after its BEGIN ran can leave a connection that
            // sqlx believes is inside a transaction (no `Transaction` exists to end it);
            // every later BEGIN on it would fail. Such a connection is closed instead of
            // handed out.
            .before_acquire(|conn, _meta| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            });
        let keeper = if backend == Backend::Sqlite && memory {
            let mut conn = sqlx::ConnectOptions::connect(&options)
                .await
                .map_err(open_error)?;
            sqlx::Executor::execute(&mut conn, pragmas)
                .await
                .map_err(open_error)?;
            Some(Arc::new(Keeper(tokio::sync::Mutex::new(conn))))
        } else {
            None
        };
        // Switching a new file to WAL takes an exclusive lock that SQLite does not wait
        // for (no busy handler): a process opening the file at the same moment as another
        // gets "database is locked" and tries again.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut delay = Duration::from_millis(5);
        let pool = loop {
            match pool_options.clone().connect_with(options.clone()).await {
                Ok(pool) => break pool,
                Err(sqlx::Error::Database(db))
                    if backend == Backend::Sqlite
                        && std::time::Instant::now() < deadline
                        && sqlite_busy(&*db) =>
                {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                Err(cause) => return Err(open_error(cause)),
            }
        };
        let sql = match backend {
            Backend::Sqlite => &sql::SQLITE,
            Backend::Postgres => &sql::POSTGRES,
        };
        migrate(&pool, backend).await?;
        let store = Store {
            pool,
            backend,
            sql,
            _keeper: keeper,
            notify: Arc::default(),
        };
        store.backfill_blame().await?;
        Ok(store)
    }

    /// Which database the store is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many migrations the store has applied (0 before the migration table exists).
    async fn applied_migrations(pool: &AnyPool) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .unwrap_or(0)
    }

    /// Gives the failure events recorded before blame existed the blame of their stored
    /// reason ([`Blame::of`], the one mapping); a reason this version does not know is
    /// `unknown`. Runs at every open; does nothing once every such row has its blame.
    async fn backfill_blame(&self) -> Result<()> {
        let rows = sqlx::query(self.sql.EVENTS_WITHOUT_BLAME)
            .fetch_all(&self.pool)
            .await
            .map_err(q("EVENTS_WITHOUT_BLAME"))?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin().await?;
        let mut tally = rollup::Tally::new();
        for row in &rows {
            let g = q("reading an old event");
            let id: i64 = row.try_get(0).map_err(g)?;
            let class: Option<String> = row.try_get(1).map_err(g)?;
            let reason_name: Option<String> = row.try_get(2).map_err(g)?;
            let class = class.as_deref().map(parse_class).transpose()?;
            let reason = reason_name
                .as_deref()
                .and_then(|r| r.parse::<Reason>().ok())
                .unwrap_or(Reason::Undefined);
            let blame = Blame::of_failure(class, reason).unwrap_or(Blame::Unknown);
            sqlx::query(self.sql.SET_EVENT_BLAME)
                .bind(id)
                .bind(blame.as_str())
                .execute(&mut *tx)
                .await
                .map_err(q("SET_EVENT_BLAME"))?;
            // Migration 19 counted it as the recipient's: a sender's refusal moves.
            if blame == Blame::Sender {
                let kind: String = row.try_get(4).map_err(g)?;
                let domain: Option<String> = row.try_get(5).map_err(g)?;
                let error: Option<String> = row.try_get(7).map_err(g)?;
                let counted = rollup::EventFacts {
                    at: Timestamp(row.try_get(3).map_err(g)?),
                    kind: &kind,
                    class,
                    blame: None,
                    reason: reason_name.as_deref(),
                    domain: domain.as_deref(),
                    campaign_id: row.try_get(6).map_err(g)?,
                    marker: error.is_some(),
                };
                tally.blame_changed(&counted, blame);
            }
        }
        rollup::flush_in(self.sql, &mut tx, &mut tally).await?;
        tx.commit().await.map_err(q("commit"))?;
        tracing::info!(
            events = rows.len(),
            "store: old failure events got their blame from their reason"
        );
        Ok(())
    }

    /// Starts a write transaction: on SQLite `BEGIN IMMEDIATE`, so a writer waits for
    /// the lock up front instead of failing to upgrade a read lock; on PostgreSQL a
    /// `READ COMMITTED` transaction whose statements lock the rows they decide on
    /// (`FOR UPDATE`, `ON CONFLICT`; see [`sql::postgres`]).
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        };
        self.pool.begin_with(begin).await.map_err(q("begin"))
    }

    /// The connection pool, for sibling store modules (campaigns).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Prepares every statement of the dialect ([`sql::Sql::all`], the events listing
    /// for every combination of filters, the grouped send update for a few sizes): fails
    /// fast on a schema mismatch.
    ///
    /// # Errors
    /// [`Error::Query`] naming the first statement that does not prepare.
    pub async fn check_queries(&self) -> Result<()> {
        use sqlx::Executor;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(q("acquiring a connection"))?;
        for (name, sql) in self.sql.all() {
            conn.prepare(sql).await.map_err(q(name))?;
        }
        for filters in sql::EventFilters::all() {
            let sql = (self.sql.select_events)(filters);
            conn.prepare(&sql).await.map_err(q("select_events"))?;
        }
        for rows in [1, 2, 500] {
            let sql = (self.sql.update_sends)(rows);
            conn.prepare(&sql).await.map_err(q("update_sends"))?;
        }
        Ok(())
    }

    /// Records a verdict: the one place where recipient state changes.
    ///
    /// In one transaction: when `ctx` names a mailbox message, its ledger row is claimed
    /// first (if it is already there nothing else happens and the outcome says
    /// `duplicate`); then one event per recipient record (one only, for a message
    /// correlation tied to one send: see [`EventContext::recipient`]; plus a marker event
    /// when `ctx.error` is set), and the rules of [`state::transition`]:
    ///
    /// | kind | class | blame | effect |
    /// |---|---|---|---|
    /// | bounce | hard | recipient | active → bounced |
    /// | bounce | soft | recipient | active → bounced once `soft_bounces_to_bounce` sent messages failed for good within `soft_bounce_window` and since the last reactivation (0 turns this off); a delay warning counts only through its message's final failure, and the delays and the failure of one message count once |
    /// | bounce | any | sender, transit, unknown | none (counted per campaign and destination domain; may pause the domain, see `[rules] pause_on_sender_blocks`) |
    /// | complaint | – | – | active or bounced → complained, when `complaint = "unsubscribe"` |
    /// | auto-reply, delivery-notice, other | – | – | none (the event is recorded; no recipient row is created) |
    ///
    /// A bounce record without a class gets the one from [`BounceClass::derive`], one
    /// without a blame the one of its reason ([`Blame::of`]); except that a bounce's
    /// record of a recipient delivered, relayed or expanded (a report in which the
    /// message failed for others) books nothing: no event, no count.
    ///
    /// The policies' state writes the message carries ([`EventContext::state_writes`])
    /// are applied in the same transaction, after the ledger claim: a duplicate applies
    /// none.
    ///
    /// A mailbox message whose UID is in the ledger with another size than `ctx.size`
    /// (both known) is a new message under a reused UID: its row is replaced and it is
    /// recorded.
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    #[tracing::instrument(name = "rebound.store.record_verdict", skip_all, fields(source = %ctx.source))]
    pub async fn record_verdict(
        &self,
        ctx: &EventContext,
        verdict: &Verdict,
        rules: &RulesConfig,
    ) -> Result<RecordOutcome> {
        let mut tx = self.begin().await?;
        let mut tally = rollup::Tally::new();
        let mut out = record_in(self.sql, &mut tx, &mut tally, ctx, verdict, rules).await?;
        rollup::flush_in(self.sql, &mut tx, &mut tally).await?;
        let enqueued = self.enqueue_changes(&mut tx, &out.changes).await?;
        tx.commit().await.map_err(q("commit"))?;
        self.wake_deliverer(enqueued);
        self.guard_complaints(&mut out, rules).await;
        Ok(out)
    }

    /// Books archived message `m` again with `verdict` (reprocessing; `ctx` correlated
    /// as the poller correlates): in one transaction its earlier bookings move to
    /// `superseded_events`, the verdict's records are booked at the message's own time,
    /// and each recipient either names is counted again and put in the state its events
    /// now lead to ([`state::replay`]). Domain pauses are not decided again: they are
    /// about sends in progress, not history. Returns the recipients whose state changed.
    /// With `write` false the transaction is rolled back: what it would change, exactly
    /// (a dry run).
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    pub async fn rebook(
        &self,
        m: &archive::Archived,
        ctx: &EventContext,
        verdict: &Verdict,
        rules: &RulesConfig,
        write: bool,
    ) -> Result<Vec<StateChange>> {
        let (ctx, verdict) = (without_nul_ctx(ctx), without_nul(verdict));
        let (ctx, verdict) = (ctx.as_ref(), verdict.as_ref());
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        sqlx::query(self.sql.LOCK_MESSAGE)
            .bind(&m.mailbox)
            .bind(&m.uid)
            .execute(&mut *tx)
            .await
            .map_err(q("LOCK_MESSAGE"))?;
        let mut ids: std::collections::BTreeSet<i64> = message_recipient_ids(self.sql, &mut tx, m)
            .await?
            .into_iter()
            .collect();
        // The overview's counters give back what the old bookings counted (and count the
        // new ones): one tally, written before the commit.
        let mut tally = rollup::Tally::new();
        let old = sqlx::query(self.sql.EVENTS_OF_MESSAGE)
            .bind(&m.mailbox)
            .bind(&m.uid)
            .bind(m.at.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("EVENTS_OF_MESSAGE"))?;
        // The recipients an old booking may have suppressed: only their states can go
        // back, and only they need their events replayed (booking the new records moves
        // a state forward by itself).
        let mut condemned = std::collections::HashSet::new();
        for row in &old {
            let e = Event::from_row(row)?;
            if !matches!(e.kind, EventKind::Message(_)) {
                continue;
            }
            tally.count_event(&rollup::EventFacts::of_event(&e), -1);
            let condemns = e.kind == MessageKind::Complaint
                || (e.kind == MessageKind::Bounce && e.blame == Some(Blame::Recipient));
            if condemns && let Some(r) = &e.recipient {
                condemned.insert(address_key(r));
            }
        }
        sqlx::query(self.sql.SUPERSEDE_COPY)
            .bind(&m.mailbox)
            .bind(&m.uid)
            .bind(m.at.0)
            .bind(now.0)
            .execute(&mut *tx)
            .await
            .map_err(q("SUPERSEDE_COPY"))?;
        sqlx::query(self.sql.SUPERSEDE_DELETE)
            .bind(&m.mailbox)
            .bind(&m.uid)
            .bind(m.at.0)
            .execute(&mut *tx)
            .await
            .map_err(q("SUPERSEDE_DELETE"))?;
        let records = records_of(ctx, verdict);
        // `ctx.state_writes` are not applied: the message's writes were applied when it
        // was first recorded, and what a policy writes judging it again is discarded.
        let history = RulesConfig {
            pause_on_sender_blocks: None,
            ..rules.clone()
        };
        let booked = book_in(
            self.sql, &mut tx, &mut tally, ctx, verdict, &records, &history, m.at,
        )
        .await?;
        ids.extend(message_recipient_ids(self.sql, &mut tx, m).await?);
        let mut changes = Vec::new();
        for id in ids {
            let Some((state, address, reactivated)) =
                sqlx::query_as::<_, (String, String, Option<i64>)>(self.sql.RECOUNT_RECIPIENT)
                    .bind(id)
                    .bind(now.0)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(q("RECOUNT_RECIPIENT"))?
            else {
                continue;
            };
            let current = parse_state(state)?;
            let key = address_key(&address);
            // The state before this rebooking: booking may have moved it already (its
            // soft count at the message's time reads later events too, so the replay
            // has the last word).
            let moved = booked
                .changes
                .iter()
                .find(|c| address_key(&c.address) == key);
            let from = moved.map_or(current, |c| c.from);
            let suppressed = matches!(
                current,
                RecipientState::Bounced | RecipientState::Complained
            );
            // A hard bounce or a complaint after the last reactivation condemns whatever
            // came before; only a soft-rule count or a message from before a
            // reactivation needs the history.
            let settled = moved.is_some()
                && m.at.0 >= reactivated.unwrap_or(0)
                && records.iter().any(|b| {
                    address_key(&b.rec.address) == key
                        && (verdict.kind == MessageKind::Complaint
                            || class_and_blame(verdict.kind, &b.rec).0 == Some(BounceClass::Hard))
                });
            let to = if (moved.is_some() && !settled) || (suppressed && condemned.contains(&key)) {
                state::replay(&replay_events(self.sql, &mut tx, id).await?, rules)
            } else {
                current
            };
            if to != current {
                sqlx::query(self.sql.SET_RECIPIENT_STATE)
                    .bind(id)
                    .bind(to.as_str())
                    .bind(now.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("SET_RECIPIENT_STATE"))?;
            }
            if to != from {
                changes.push(StateChange { address, from, to });
            }
        }
        if write {
            rollup::flush_in(self.sql, &mut tx, &mut tally).await?;
            let enqueued = self.enqueue_changes(&mut tx, &changes).await?;
            tx.commit().await.map_err(q("commit"))?;
            self.wake_deliverer(enqueued);
        } else {
            tx.rollback().await.map_err(q("rollback"))?;
        }
        Ok(changes)
    }

    /// [`Store::record_verdict`] for several messages in one transaction (the poller's
    /// group commit): each is recorded exactly as `record_verdict` records it, and either
    /// all of them are committed or none.
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    #[tracing::instrument(name = "rebound.store.record_verdicts", skip_all, fields(n = items.len()))]
    pub async fn record_verdicts(
        &self,
        items: &[(EventContext, Verdict)],
        rules: &RulesConfig,
    ) -> Result<Vec<RecordOutcome>> {
        let mut tx = self.begin().await?;
        let mut out = Vec::with_capacity(items.len());
        // The rollup's counts of the whole group, written once before its commit.
        let mut tally = rollup::Tally::new();
        for (ctx, verdict) in items {
            out.push(record_in(self.sql, &mut tx, &mut tally, ctx, verdict, rules).await?);
        }
        rollup::flush_in(self.sql, &mut tx, &mut tally).await?;
        let mut enqueued = 0;
        for o in &out {
            enqueued += self.enqueue_changes(&mut tx, &o.changes).await?;
        }
        tx.commit().await.map_err(q("commit"))?;
        self.wake_deliverer(enqueued);
        for o in &mut out {
            self.guard_complaints(o, rules).await;
        }
        Ok(out)
    }

    /// The complaint-rate guard for the campaigns `out` booked complaints to, after the
    /// commit: its counts read a campaign's sends (up to a million index entries), which
    /// must not hold the write transaction. A failure is logged, not returned: what was
    /// recorded is committed, and the next complaint decides again.
    async fn guard_complaints(&self, out: &mut RecordOutcome, rules: &RulesConfig) {
        let mut campaigns = std::mem::take(&mut out.complaint_campaigns);
        campaigns.sort_unstable();
        campaigns.dedup();
        for campaign in campaigns {
            match guard_campaign(self.sql, self.pool(), rules, campaign).await {
                Ok(Some(p)) => out.paused_campaigns.push(p),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!("campaign {campaign}: the complaint-rate guard failed: {e}")
                }
            }
        }
    }

    /// Is message `uid` of `mailbox` in the ledger (its verdict committed)?
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn ledger_contains(&self, mailbox: &str, uid: &str) -> Result<bool> {
        let row = sqlx::query(self.sql.LEDGER_CONTAINS)
            .bind(mailbox)
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("LEDGER_CONTAINS"))?;
        Ok(row.is_some())
    }

    /// The ledger row of message `uid` of `mailbox`, if its verdict is committed.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn ledger_entry(&self, mailbox: &str, uid: &str) -> Result<Option<LedgerEntry>> {
        let Some(row) = sqlx::query(self.sql.LEDGER_ENTRY)
            .bind(mailbox)
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("LEDGER_ENTRY"))?
        else {
            return Ok(None);
        };
        Ok(Some(LedgerEntry::from_row(&row, 0)?))
    }

    /// The ledger rows of those of `uids` that are in the ledger of `mailbox`: one query
    /// per 500 UIDs instead of one per message.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn ledger_entries(
        &self,
        mailbox: &str,
        uids: &[&str],
    ) -> Result<std::collections::HashMap<String, LedgerEntry>> {
        let mut out = std::collections::HashMap::new();
        for chunk in uids.chunks(500) {
            let json = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into());
            let rows = sqlx::query(self.sql.LEDGER_ENTRIES)
                .bind(mailbox)
                .bind(json)
                .fetch_all(&self.pool)
                .await
                .map_err(q("LEDGER_ENTRIES"))?;
            for row in rows {
                let uid: String = row.try_get(0).map_err(q("reading ledger"))?;
                out.insert(uid, LedgerEntry::from_row(&row, 1)?);
            }
        }
        Ok(out)
    }

    /// Remembers that IMAP message `uid` of `mailbox` holds `digest` (a hash of its
    /// bytes) and returns the uid of another message of the mailbox with that digest
    /// that is recorded (in the ledger), if any: the same message, renumbered by the
    /// server. Called before the message is recorded, so the digest of every recorded
    /// message is known.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn imap_recorded_as(
        &self,
        mailbox: &str,
        uid: &str,
        digest: &str,
    ) -> Result<Option<String>> {
        let earlier: Option<String> = sqlx::query_scalar(self.sql.IMAP_DIGEST_RECORDED)
            .bind(mailbox)
            .bind(digest)
            .bind(uid)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("IMAP_DIGEST_RECORDED"))?;
        sqlx::query(self.sql.PUT_IMAP_DIGEST)
            .bind(mailbox)
            .bind(uid)
            .bind(digest)
            .execute(&self.pool)
            .await
            .map_err(q("PUT_IMAP_DIGEST"))?;
        Ok(earlier)
    }

    /// Records message `uid` of `mailbox` as the same message as `recorded` (which is in
    /// the ledger): a ledger row like its own, with no events, so `uid` is never counted.
    /// Returns false when `recorded` has no row or `uid` has one already.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn alias_ledger(&self, mailbox: &str, recorded: &str, uid: &str) -> Result<bool> {
        let n = sqlx::query(self.sql.LEDGER_ALIAS)
            .bind(mailbox)
            .bind(recorded)
            .bind(uid)
            .bind(Timestamp::now().0)
            .execute(&self.pool)
            .await
            .map_err(q("LEDGER_ALIAS"))?
            .rows_affected();
        Ok(n > 0)
    }

    /// Gives the ledger rows of `mailbox` that have no size yet (recorded before the
    /// ledger kept LIST's size) the size the server lists now: from then on a message
    /// listed under their UID with another size is a new message. Returns the rows
    /// updated.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn adopt_ledger_sizes(&self, mailbox: &str, sizes: &[(&str, u64)]) -> Result<u64> {
        let mut updated = 0;
        for chunk in sizes.chunks(500) {
            let map: serde_json::Map<String, serde_json::Value> = chunk
                .iter()
                .map(|(uid, size)| ((*uid).to_owned(), serde_json::Value::from(*size)))
                .collect();
            let json = serde_json::Value::Object(map).to_string();
            updated += sqlx::query(self.sql.LEDGER_ADOPT_SIZES)
                .bind(mailbox)
                .bind(json)
                .execute(&self.pool)
                .await
                .map_err(q("LEDGER_ADOPT_SIZES"))?
                .rows_affected();
        }
        Ok(updated)
    }

    /// Counts one failed fetch of a message and quarantines it when its failures reach
    /// `max_failures`; returns its failures so far.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn record_fetch_failure(
        &self,
        mailbox: &str,
        uid: &str,
        error: &str,
        max_failures: u32,
    ) -> Result<u32> {
        let n: i64 = sqlx::query_scalar(self.sql.RECORD_FETCH_FAILURE)
            .bind(mailbox)
            .bind(uid)
            .bind(error)
            .bind(Timestamp::now().0)
            .bind(i64::from(max_failures))
            .fetch_one(&self.pool)
            .await
            .map_err(q("RECORD_FETCH_FAILURE"))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// The start of a pass over `mailbox`: forgets the failures of messages no longer
    /// on the server (`listed` is every UID it lists), quarantines those whose failures
    /// reached `max_failures` and are not quarantined yet (counted before quarantines
    /// were recorded, or under a lower limit), and returns the counts of those of
    /// `listed` that have failures. One transaction.
    ///
    /// The mailbox's failure rows (a handful) are matched against `listed` here, one pass
    /// over it: a listing of every UID of a large mailbox is never copied or handed to
    /// SQLite.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn fetch_failure_states<I, S>(
        &self,
        mailbox: &str,
        listed: I,
        max_failures: u32,
    ) -> Result<std::collections::HashMap<String, FailureCount>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut tx = self.begin().await?;
        sqlx::query(self.sql.MARK_QUARANTINED)
            .bind(mailbox)
            .bind(i64::from(max_failures))
            .bind(Timestamp::now().0)
            .execute(&mut *tx)
            .await
            .map_err(q("MARK_QUARANTINED"))?;
        let mut known = std::collections::HashMap::new();
        for row in sqlx::query(self.sql.MAILBOX_FETCH_FAILURES)
            .bind(mailbox)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("MAILBOX_FETCH_FAILURES"))?
        {
            let g = q("reading fetch failures");
            let uid: String = row.try_get(0).map_err(g)?;
            let n: i64 = row.try_get(1).map_err(g)?;
            let quarantined = row.try_get::<i64, _>(2).map_err(g)? != 0;
            let failures = u32::try_from(n).unwrap_or(u32::MAX);
            known.insert(
                uid,
                FailureCount {
                    failures,
                    quarantined,
                },
            );
        }
        // What `listed` does not name is gone from the server.
        let mut gone: std::collections::HashSet<String> = known.keys().cloned().collect();
        for uid in listed {
            if gone.is_empty() {
                break;
            }
            gone.remove(uid.as_ref());
        }
        if !gone.is_empty() {
            let json = serde_json::to_string(&gone).unwrap_or_else(|_| "[]".into());
            let pruned = sqlx::query(self.sql.PRUNE_FETCH_FAILURES)
                .bind(mailbox)
                .bind(&json)
                .execute(&mut *tx)
                .await
                .map_err(q("PRUNE_FETCH_FAILURES"))?
                .rows_affected();
            tracing::info!(
                mailbox,
                pruned,
                "fetch failures of messages no longer on the server forgotten"
            );
            known.retain(|uid, _| !gone.contains(uid));
        }
        tx.commit().await.map_err(q("commit"))?;
        Ok(known)
    }

    /// The quarantined messages of `mailbox` (of every mailbox for `None`), by mailbox
    /// and then in the order they were quarantined.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn quarantined(&self, mailbox: Option<&str>) -> Result<Vec<FetchFailure>> {
        let rows = sqlx::query(self.sql.QUARANTINED)
            .bind(mailbox)
            .fetch_all(&self.pool)
            .await
            .map_err(q("QUARANTINED"))?;
        rows.iter()
            .map(|row| {
                let g = q("reading quarantined messages");
                let failures: i64 = row.try_get(2).map_err(g)?;
                Ok(FetchFailure {
                    mailbox: row.try_get(0).map_err(g)?,
                    uid: row.try_get(1).map_err(g)?,
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                    first_failure_at: Timestamp(row.try_get(3).map_err(g)?),
                    last_failure_at: Timestamp(row.try_get(4).map_err(g)?),
                    last_error: row.try_get(5).map_err(g)?,
                    quarantined_at: row.try_get::<Option<i64>, _>(6).map_err(g)?.map(Timestamp),
                })
            })
            .collect()
    }

    /// Releases quarantined messages of `mailbox` (of any mailbox for `None`): those of
    /// `uids`, or every one for `None`. Their failures are forgotten, so the next pass
    /// fetches them again (and counts up to `max_fetch_failures` afresh). Returns the
    /// (mailbox, UID) pairs released; a UID that was not quarantined is not among them.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn release_quarantined(
        &self,
        mailbox: Option<&str>,
        uids: Option<&[&str]>,
    ) -> Result<Vec<(String, String)>> {
        let rows = match uids {
            Some(uids) => {
                let json = serde_json::to_string(uids).unwrap_or_else(|_| "[]".into());
                sqlx::query(self.sql.RELEASE_QUARANTINED)
                    .bind(mailbox)
                    .bind(json)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(q("RELEASE_QUARANTINED"))?
            }
            None => sqlx::query(self.sql.RELEASE_ALL_QUARANTINED)
                .bind(mailbox)
                .fetch_all(&self.pool)
                .await
                .map_err(q("RELEASE_ALL_QUARANTINED"))?,
        };
        rows.iter()
            .map(|row| {
                let g = q("reading released messages");
                Ok((row.try_get(0).map_err(g)?, row.try_get(1).map_err(g)?))
            })
            .collect()
    }

    /// The failed fetches counted for those of `uids` that have any.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn fetch_failures(
        &self,
        mailbox: &str,
        uids: &[&str],
    ) -> Result<std::collections::HashMap<String, u32>> {
        let mut out = std::collections::HashMap::new();
        for chunk in uids.chunks(500) {
            let json = serde_json::to_string(chunk).unwrap_or_else(|_| "[]".into());
            let rows = sqlx::query(self.sql.FETCH_FAILURES)
                .bind(mailbox)
                .bind(json)
                .fetch_all(&self.pool)
                .await
                .map_err(q("FETCH_FAILURES"))?;
            for row in rows {
                let uid: String = row.try_get(0).map_err(q("reading fetch failures"))?;
                let n: i64 = row.try_get(1).map_err(q("reading fetch failures"))?;
                out.insert(uid, u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
        Ok(out)
    }

    /// How many messages of `mailbox` are in the ledger.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn ledger_len(&self, mailbox: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(self.sql.COUNT_LEDGER)
            .bind(mailbox)
            .fetch_one(&self.pool)
            .await
            .map_err(q("COUNT_LEDGER"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One recipient, compared by [`address_key`].
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn recipient(&self, address: &str) -> Result<Option<Recipient>> {
        sqlx::query(self.sql.SELECT_RECIPIENT)
            .bind(address_key(address))
            .fetch_optional(&self.pool)
            .await
            .map_err(q("SELECT_RECIPIENT"))?
            .map(|row| Recipient::from_row(&row))
            .transpose()
    }

    /// Every recipient (in one state, or all), ordered by address key: read page by page
    /// so that no single read holds the database for the whole table.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn recipients(&self, state: Option<RecipientState>) -> Result<Vec<Recipient>> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .recipients_page(state, after.as_deref(), 10_000)
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// One page of recipients (in one state, or all) by address key: up to `limit`
    /// after the key `after` (the previous page's `next`; `None` for the first page).
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn recipients_page(
        &self,
        state: Option<RecipientState>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Recipient, String>> {
        let after = after.unwrap_or("");
        let fetch = i64::from(limit) + 1;
        let rows = match state {
            None => sqlx::query(self.sql.SELECT_RECIPIENTS)
                .bind(after)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await
                .map_err(q("SELECT_RECIPIENTS"))?,
            Some(state) => sqlx::query(self.sql.SELECT_RECIPIENTS_IN_STATE)
                .bind(state.as_str())
                .bind(after)
                .bind(fetch)
                .fetch_all(&self.pool)
                .await
                .map_err(q("SELECT_RECIPIENTS_IN_STATE"))?,
        };
        let items = rows
            .iter()
            .map(|row| {
                let key: String = row.try_get(12).map_err(q("reading the address key"))?;
                Ok((Recipient::from_row(row)?, key))
            })
            .collect::<Result<Vec<_>>>()?;
        let page = Page::from_rows(items, limit, |(_, key)| key.clone());
        Ok(Page {
            items: page.items.into_iter().map(|(r, _)| r).collect(),
            next: page.next,
        })
    }

    /// Number of recipients in each state (states with none are left out).
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn recipient_counts(&self) -> Result<Vec<(RecipientState, u64)>> {
        let rows = sqlx::query(self.sql.COUNT_RECIPIENTS_BY_STATE)
            .fetch_all(&self.pool)
            .await
            .map_err(q("COUNT_RECIPIENTS_BY_STATE"))?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get(0).map_err(q("reading counts"))?;
                let n: i64 = row.try_get(1).map_err(q("reading counts"))?;
                Ok((parse_state(state)?, u64::try_from(n).unwrap_or(0)))
            })
            .collect()
    }

    /// Events, oldest first (by id), after `filter.after`, at most `filter.limit`.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>> {
        self.select_events(filter, filter.limit.map_or(-1, i64::from))
            .await
    }

    /// One page of events by id: up to `limit` after `filter.after` (the previous
    /// page's `next`); `filter.limit` is not used.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn events_page(&self, filter: &EventFilter, limit: u32) -> Result<Page<Event, i64>> {
        let items = self.select_events(filter, i64::from(limit) + 1).await?;
        Ok(Page::from_rows(items, limit, |e: &Event| e.id))
    }

    /// The statement of the filters set, with only their values bound.
    async fn select_events(&self, filter: &EventFilter, limit: i64) -> Result<Vec<Event>> {
        let sql = (self.sql.select_events)(filter.filters());
        let mut query = sqlx::query(&sql);
        if let Some(r) = &filter.recipient {
            query = query.bind(address_key(r));
        }
        if let Some(kind) = filter.kind {
            query = query.bind(kind.as_str());
        }
        if let Some(mailbox) = &filter.mailbox {
            query = query.bind(mailbox.as_str());
        }
        if let Some(campaign) = filter.campaign_id {
            query = query.bind(campaign);
        }
        if let Some(since) = filter.since {
            query = query.bind(Timestamp::from(since).0);
        }
        let rows = query
            .bind(filter.after.unwrap_or(0))
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(q("SELECT_EVENTS"))?;
        rows.iter().map(Event::from_row).collect()
    }

    /// Number of events.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn event_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(self.sql.COUNT_EVENTS)
            .fetch_one(&self.pool)
            .await
            .map_err(q("COUNT_EVENTS"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// A recipient's events that reprocessing replaced (the latest 100, newest first),
    /// each with when it was superseded: what was decided before.
    ///
    /// # Errors
    /// [`Error::Query`], [`Error::Corrupt`].
    pub async fn superseded_of(&self, address: &str) -> Result<Vec<Superseded>> {
        let rows = sqlx::query(self.sql.SUPERSEDED_OF_RECIPIENT)
            .bind(address_key(address))
            .fetch_all(&self.pool)
            .await
            .map_err(q("SUPERSEDED_OF_RECIPIENT"))?;
        rows.iter()
            .map(|row| {
                Ok(Superseded {
                    event: Event::from_row(row)?,
                    superseded_at: Timestamp(
                        row.try_get(20).map_err(q("reading superseded events"))?,
                    ),
                })
            })
            .collect()
    }

    /// How many events reprocessing replaced ([`Store::rebook`]): kept, not counted.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn superseded_count(&self) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(self.sql.COUNT_SUPERSEDED)
            .fetch_one(&self.pool)
            .await
            .map_err(q("COUNT_SUPERSEDED"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Makes a suppressed recipient (bounced, complained, unsubscribed) active again: the
    /// manual undo. Records a `reactivation` event with the previous state and `by` (who
    /// did it: `cli`, `api`) as its source; the soft count and the soft rule start afresh
    /// (events before now no longer count). Returns the change, or why nothing changed.
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    pub async fn reactivate(
        &self,
        address: &str,
        by: &str,
    ) -> Result<std::result::Result<StateChange, Refusal>> {
        let mut tx = self.begin().await?;
        let Some(row) = sqlx::query(self.sql.LOCK_RECIPIENT_BY_KEY)
            .bind(address_key(address))
            .fetch_optional(&mut *tx)
            .await
            .map_err(q("LOCK_RECIPIENT_BY_KEY"))?
        else {
            return Ok(Err(Refusal::NotFound));
        };
        let RecipientRow {
            id, state: from, ..
        } = id_state(&row)?;
        let to = match state::reactivate(from) {
            Ok(to) => to,
            Err(state::ReactivateError::AlreadyActive) => return Ok(Err(Refusal::AlreadyActive)),
        };
        let at = Timestamp::now();
        sqlx::query(self.sql.REACTIVATE_RECIPIENT)
            .bind(id)
            .bind(at.0)
            .execute(&mut *tx)
            .await
            .map_err(q("REACTIVATE_RECIPIENT"))?;
        let shown = self
            .recipient_in(&mut tx, address)
            .await?
            .map_or_else(|| normalize_address(address), |r| r.address);
        let domain = domain_of(&shown);
        insert_event(
            self.sql,
            &mut tx,
            &EventRow {
                at,
                source: by,
                recipient: Some(&shown),
                recipient_id: Some(id),
                kind: EventKind::Reactivation.as_str(),
                decided_by: "manual",
                domain: domain.as_deref(),
                previous_state: Some(from),
                ..EventRow::default()
            },
        )
        .await?;
        let change = StateChange {
            address: shown,
            from,
            to,
        };
        let enqueued = self
            .enqueue_changes(&mut tx, std::slice::from_ref(&change))
            .await?;
        tx.commit().await.map_err(q("commit"))?;
        self.wake_deliverer(enqueued);
        tracing::info!(by, from = %from, "recipient reactivated");
        Ok(Ok(change))
    }

    /// `address` asked to receive no more mail, from a message of `campaign` (when known):
    /// it becomes unsubscribed ([`state::unsubscribe`]), recorded as an `unsubscribe`
    /// event with source `by`. `None` when it was unsubscribed already: nothing is
    /// written, so a request repeated (a client's retry, a second click) counts once.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn unsubscribe(
        &self,
        address: &str,
        campaign: Option<i64>,
        by: &str,
    ) -> Result<Option<StateChange>> {
        let shown = normalize_address(address);
        let at = Timestamp::now();
        let mut tx = self.begin().await?;
        // The row is created when the store knew nothing of the address, and locked.
        let row = sqlx::query(self.sql.UPSERT_RECIPIENT)
            .bind(&shown)
            .bind(address_key(address))
            .bind(at.0)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("UPSERT_RECIPIENT"))?;
        let RecipientRow {
            id, state: from, ..
        } = id_state(&row)?;
        let Some(to) = state::unsubscribe(from) else {
            tx.rollback().await.map_err(q("rollback"))?;
            return Ok(None);
        };
        if to != from {
            sqlx::query(self.sql.SET_RECIPIENT_STATE)
                .bind(id)
                .bind(to.as_str())
                .bind(at.0)
                .execute(&mut *tx)
                .await
                .map_err(q("SET_RECIPIENT_STATE"))?;
        }
        let shown = self
            .recipient_in(&mut tx, address)
            .await?
            .map_or(shown, |r| r.address);
        let domain = domain_of(&shown);
        insert_event(
            self.sql,
            &mut tx,
            &EventRow {
                at,
                source: by,
                recipient: Some(&shown),
                recipient_id: Some(id),
                kind: EventKind::Unsubscribe.as_str(),
                decided_by: "recipient",
                campaign_id: campaign,
                domain: domain.as_deref(),
                previous_state: Some(from),
                ..EventRow::default()
            },
        )
        .await?;
        let change = StateChange {
            address: shown,
            from,
            to,
        };
        let enqueued = self
            .enqueue_changes(&mut tx, std::slice::from_ref(&change))
            .await?;
        tx.commit().await.map_err(q("commit"))?;
        self.wake_deliverer(enqueued);
        tracing::info!(by, campaign, from = %from, to = %to, "recipient unsubscribed");
        Ok(Some(change))
    }

    async fn recipient_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        address: &str,
    ) -> Result<Option<Recipient>> {
        sqlx::query(self.sql.SELECT_RECIPIENT)
            .bind(address_key(address))
            .fetch_optional(&mut **tx)
            .await
            .map_err(q("SELECT_RECIPIENT"))?
            .map(|row| Recipient::from_row(&row))
            .transpose()
    }

    /// Sender-side refusals per destination domain within the last `window` (every
    /// campaign and source), each against the sends to that domain in the same window,
    /// most refusals first; only domains in `domains` when it is given.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn sender_alarms(
        &self,
        window: Duration,
        domains: Option<&[String]>,
    ) -> Result<Vec<SenderAlarm>> {
        let since = Timestamp::now()
            .0
            .saturating_sub(i64::try_from(window.as_millis()).unwrap_or(i64::MAX));
        let rows = sqlx::query(self.sql.SENDER_REFUSALS_SINCE)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(q("SENDER_REFUSALS_SINCE"))?;
        // domain → (refusals, per-reason counts)
        let mut by_domain: std::collections::BTreeMap<String, (u64, Vec<(u64, Reason)>)> =
            std::collections::BTreeMap::new();
        for row in &rows {
            let g = q("reading refusals");
            let domain: String = row.try_get(0).map_err(g)?;
            if domains.is_some_and(|d| !d.iter().any(|x| x.eq_ignore_ascii_case(&domain))) {
                continue;
            }
            let reason: Option<String> = row.try_get(1).map_err(g)?;
            let reason = reason
                .as_deref()
                .and_then(|r| r.parse::<Reason>().ok())
                .unwrap_or(Reason::Undefined);
            let n = u64::try_from(row.try_get::<i64, _>(2).map_err(g)?).unwrap_or(0);
            let e = by_domain.entry(domain).or_default();
            e.0 += n;
            e.1.push((n, reason));
        }
        if by_domain.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(self.sql.SENDS_BY_DOMAIN_SINCE)
            .bind(since)
            .fetch_all(&self.pool)
            .await
            .map_err(q("SENDS_BY_DOMAIN_SINCE"))?;
        let mut sends = std::collections::BTreeMap::new();
        for row in &rows {
            let g = q("reading sends");
            let domain: String = row.try_get(0).map_err(g)?;
            let n = u64::try_from(row.try_get::<i64, _>(1).map_err(g)?).unwrap_or(0);
            sends.insert(domain, n);
        }
        let mut out: Vec<SenderAlarm> = by_domain
            .into_iter()
            .map(|(domain, (refusals, reasons))| {
                let top_reason = reasons
                    .iter()
                    .max_by_key(|(n, r)| (*n, std::cmp::Reverse(*r)))
                    .map_or(Reason::Undefined, |(_, r)| *r);
                SenderAlarm {
                    sends: sends.get(&domain).copied().unwrap_or(0),
                    domain,
                    refusals,
                    top_reason,
                    window_secs: window.as_secs(),
                }
            })
            .collect();
        out.sort_by(|a, b| b.refusals.cmp(&a.refusals).then(a.domain.cmp(&b.domain)));
        Ok(out)
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Records one verdict inside an open transaction (see [`Store::record_verdict`]), its
/// rollup counts added to `tally` (for [`rollup::flush_in`] before the commit). A
/// message already in the ledger writes nothing: its ledger claim is the first write.
async fn record_in(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tally: &mut rollup::Tally,
    ctx: &EventContext,
    verdict: &Verdict,
    rules: &RulesConfig,
) -> Result<RecordOutcome> {
    // PostgreSQL's text holds no NUL (a decoded diagnostic can carry one): both stores
    // get U+FFFD in its place, so a message records the same on either.
    let (ctx, verdict) = (without_nul_ctx(ctx), without_nul(verdict));
    let (ctx, verdict) = (ctx.as_ref(), verdict.as_ref());
    let at = Timestamp::from(ctx.at.unwrap_or_else(SystemTime::now));
    let records = records_of(ctx, verdict);
    let marker = usize::from(ctx.error.is_some());
    let kind = verdict.kind.as_str();

    if let Source::Mailbox { mailbox, uid, .. } = &ctx.source {
        let outcome = if ctx.error.is_some() {
            "unparseable"
        } else {
            "recorded"
        };
        let claimed = sqlx::query(sql.INSERT_LEDGER)
            .bind(mailbox)
            .bind(uid)
            .bind(at.0)
            .bind(outcome)
            .bind(kind)
            .bind(i64::try_from(records.len() + marker).unwrap_or(i64::MAX))
            .bind(ctx.size.and_then(|s| i64::try_from(s).ok()))
            .execute(&mut **tx)
            .await
            .map_err(q("INSERT_LEDGER"))?;
        if claimed.rows_affected() == 0 {
            return Ok(RecordOutcome {
                duplicate: true,
                ..RecordOutcome::default()
            });
        }
    }

    if let (Source::Mailbox { mailbox, uid, .. }, Some(raw)) = (&ctx.source, &ctx.raw) {
        archive::insert_in(sql, tx, mailbox, uid, at, raw).await?;
    }
    // Like the archive row, only for a message recorded now: a duplicate returned above.
    policy_state::apply_in(sql, tx, &ctx.state_writes).await?;
    book_in(sql, tx, tally, ctx, verdict, &records, rules, at).await
}

/// Books a verdict's records as events at `at` (recipient counts, state, pauses), the
/// ledger and archive already written ([`record_in`]) or the message's earlier bookings
/// superseded ([`Store::rebook`]). The one place events that count in the rollup are
/// inserted: each is added to `tally` (the caller writes it before its commit).
#[allow(clippy::too_many_arguments)]
async fn book_in(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tally: &mut rollup::Tally,
    ctx: &EventContext,
    verdict: &Verdict,
    records: &[Booked],
    rules: &RulesConfig,
    at: Timestamp,
) -> Result<RecordOutcome> {
    let source = ctx.source.to_string();
    let kind = verdict.kind.as_str();
    let mut out = RecordOutcome::default();
    if let Some(error) = &ctx.error {
        let row = EventRow {
            at,
            source: &source,
            mailbox: ctx.mailbox_name(),
            uid: ctx.uid(),
            kind,
            decided_by: &verdict.decided_by,
            original_message_id: ctx.original_message_id.as_deref(),
            campaign_id: ctx.campaign_id,
            error: Some(error),
            ..EventRow::default()
        };
        insert_event(sql, tx, &row).await?;
        // A marker counts nothing; counted anyway, so that the rules stay in one place.
        tally.count_event(&rollup::EventFacts::of_row(&row), 1);
        out.events += 1;
    }
    for Booked { rec, aliases } in records {
        let address = normalize_address(&rec.address);
        let (class, blame) = class_and_blame(verdict.kind, rec);
        let domain = domain_of(&address);
        let counts = matches!(verdict.kind, MessageKind::Bounce | MessageKind::Complaint);
        let recipient = if address.is_empty() {
            None
        } else if counts {
            let row = sqlx::query(sql.UPSERT_RECIPIENT)
                .bind(&address)
                .bind(address_key(&address))
                .bind(at.0)
                .fetch_one(&mut **tx)
                .await
                .map_err(q("UPSERT_RECIPIENT"))?;
            Some(id_state(&row)?)
        } else {
            sqlx::query(sql.RECIPIENT_ID_BY_KEY)
                .bind(address_key(&address))
                .fetch_optional(&mut **tx)
                .await
                .map_err(q("RECIPIENT_ID_BY_KEY"))?
                .map(|row| id_state(&row))
                .transpose()?
        };
        let aliases_json = (!aliases.is_empty())
            .then(|| serde_json::to_string(aliases).unwrap_or_else(|_| "[]".into()));
        let row = EventRow {
            at,
            source: &source,
            mailbox: ctx.mailbox_name(),
            uid: ctx.uid(),
            recipient: (!address.is_empty()).then_some(address.as_str()),
            recipient_id: recipient.map(|r| r.id),
            kind,
            class,
            rec: Some(rec),
            decided_by: &verdict.decided_by,
            original_message_id: ctx.original_message_id.as_deref(),
            campaign_id: ctx.campaign_id,
            error: None,
            blame: class.and(blame),
            domain: domain.as_deref(),
            aliases: aliases_json.as_deref(),
            previous_state: None,
        };
        insert_event(sql, tx, &row).await?;
        // The dashboard's counters, written before the transaction's commit.
        tally.count_event(&rollup::EventFacts::of_row(&row), 1);
        out.events += 1;
        if let (Some(_), Some(blame)) = (class, blame) {
            out.failures.push(BookedFailure {
                domain: domain.clone(),
                blame,
                reason: rec.reason,
                campaign_id: ctx.campaign_id,
            });
        }

        if verdict.kind == MessageKind::Complaint && !address.is_empty() {
            out.complaints.push(domain.clone());
            out.complaint_campaigns.extend(ctx.campaign_id);
        }
        if verdict.kind == MessageKind::Bounce
            && blame == Some(Blame::Sender)
            && let (Some(rule), Some(campaign), Some(domain)) = (
                &rules.pause_on_sender_blocks,
                ctx.campaign_id,
                domain.as_deref(),
            )
            && let Some(p) = pause_if_needed(sql, tx, rule, campaign, domain, at).await?
        {
            out.paused.push(p);
        }

        let Some(RecipientRow {
            id,
            state: current,
            counts_since,
        }) = recipient
        else {
            continue;
        };
        if !counts {
            continue;
        }
        match (verdict.kind, class) {
            (MessageKind::Bounce, Some(BounceClass::Hard)) => {
                bump(tx, sql.COUNT_HARD_BOUNCE, "COUNT_HARD_BOUNCE", id, at, rec).await?;
            }
            (MessageKind::Bounce, _) => {
                bump(tx, sql.COUNT_SOFT_BOUNCE, "COUNT_SOFT_BOUNCE", id, at, rec).await?;
            }
            _ => {
                sqlx::query(sql.COUNT_COMPLAINT)
                    .bind(id)
                    .bind(at.0)
                    .execute(&mut **tx)
                    .await
                    .map_err(q("COUNT_COMPLAINT"))?;
            }
        }
        let soft_messages = if current == RecipientState::Active
            && rules.soft_bounces_to_bounce > 0
            && state::counts_as_soft(verdict.kind, class, blame, rec.action.as_deref())
        {
            let window = i64::try_from(rules.soft_bounce_window.as_millis()).unwrap_or(i64::MAX);
            let since = at.0.saturating_sub(window).max(counts_since.unwrap_or(0));
            soft_messages_since(sql, tx, id, since).await?
        } else {
            0
        };
        let facts = state::Facts {
            kind: verdict.kind,
            class,
            blame,
            soft_messages,
        };
        if let Some(to) = state::transition(current, &facts, rules) {
            sqlx::query(sql.SET_RECIPIENT_STATE)
                .bind(id)
                .bind(to.as_str())
                .bind(at.0)
                .execute(&mut **tx)
                .await
                .map_err(q("SET_RECIPIENT_STATE"))?;
            out.changes.push(StateChange {
                address: address.clone(),
                from: current,
                to,
            });
        }
    }
    Ok(out)
}

/// The recipients archived message `m`'s bookings name.
async fn message_recipient_ids(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    m: &archive::Archived,
) -> Result<Vec<i64>> {
    sqlx::query_scalar(sql.MESSAGE_RECIPIENT_IDS)
        .bind(&m.mailbox)
        .bind(&m.uid)
        .bind(m.at.0)
        .fetch_all(&mut **tx)
        .await
        .map_err(q("MESSAGE_RECIPIENT_IDS"))
}

/// Recipient `id`'s events in the order they happened, as [`state::replay`] reads them.
async fn replay_events(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: i64,
) -> Result<Vec<state::Replayed>> {
    let rows = sqlx::query(sql.REPLAY_EVENTS)
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .map_err(q("REPLAY_EVENTS"))?;
    let mut events = Vec::with_capacity(rows.len());
    for row in &rows {
        let kind: String = row.try_get(7).map_err(q("reading events to replay"))?;
        events.push(state::Replayed {
            at: row.try_get(6).map_err(q("reading events to replay"))?,
            kind: parse_event_kind(&kind)?,
            soft: soft_event(row)?,
        });
    }
    Ok(events)
}

/// An event row read as the soft rule sees it: id, original Message-ID, class, blame,
/// action and reason (the first columns of `SOFT_EVENTS_SINCE` and `REPLAY_EVENTS`).
fn soft_event(row: &sqlx::any::AnyRow) -> Result<state::SoftEvent> {
    let g = q("reading soft events");
    let class: Option<String> = row.try_get(2).map_err(g)?;
    let class = class.as_deref().map(parse_class).transpose()?;
    let blame: Option<String> = row.try_get(3).map_err(g)?;
    let reason: Option<String> = row.try_get(5).map_err(g)?;
    let reason = reason
        .as_deref()
        .and_then(|r| r.parse::<Reason>().ok())
        .unwrap_or(Reason::Undefined);
    let blame = blame.as_deref().map(parse_blame).transpose()?;
    Ok(state::SoftEvent {
        id: row.try_get(0).map_err(g)?,
        original_message_id: row.try_get(1).map_err(g)?,
        class,
        blame: state::effective_blame(blame, class, reason),
        action: row.try_get(4).map_err(g)?,
    })
}

/// The soft rule's count for a recipient: [`state::soft_messages`] over its soft events
/// at or after `since`.
async fn soft_messages_since(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: i64,
    since: i64,
) -> Result<u32> {
    let rows = sqlx::query(sql.SOFT_EVENTS_SINCE)
        .bind(id)
        .bind(since)
        .fetch_all(&mut **tx)
        .await
        .map_err(q("SOFT_EVENTS_SINCE"))?;
    let events = rows.iter().map(soft_event).collect::<Result<Vec<_>>>()?;
    Ok(state::soft_messages(&events))
}

/// `[rules] pause_on_sender_blocks` after a sender-blamed refusal of a campaign's send:
/// counts the campaign's refusals and sends to the domain within the window and pauses
/// the domain when [`state::should_pause`] says so (unless it is paused already).
async fn pause_if_needed(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    rule: &crate::config::PauseRule,
    campaign: i64,
    domain: &str,
    at: Timestamp,
) -> Result<Option<DomainPause>> {
    let window = i64::try_from(rule.window.as_millis()).unwrap_or(i64::MAX);
    // One decision per campaign and domain at a time, to the commit.
    sqlx::query(sql.LOCK_DOMAIN_PAUSE)
        .bind(campaign)
        .bind(domain)
        .execute(&mut **tx)
        .await
        .map_err(q("LOCK_DOMAIN_PAUSE"))?;
    let ended: Option<i64> = sqlx::query_scalar(sql.PAUSE_UNTIL)
        .bind(campaign)
        .bind(domain)
        .fetch_optional(&mut **tx)
        .await
        .map_err(q("PAUSE_UNTIL"))?;
    if ended.is_some_and(|until| until > at.0) {
        return Ok(None); // paused already
    }
    // A new pause needs evidence from after the last one ended (or was resumed).
    let since = at.0.saturating_sub(window).max(ended.unwrap_or(0));
    let refusals: i64 = sqlx::query_scalar(sql.CAMPAIGN_DOMAIN_REFUSALS)
        .bind(campaign)
        .bind(domain)
        .bind(since)
        .fetch_one(&mut **tx)
        .await
        .map_err(q("CAMPAIGN_DOMAIN_REFUSALS"))?;
    let sends: i64 = sqlx::query_scalar(sql.CAMPAIGN_DOMAIN_SENDS)
        .bind(campaign)
        .bind(domain)
        .bind(since)
        .fetch_one(&mut **tx)
        .await
        .map_err(q("CAMPAIGN_DOMAIN_SENDS"))?;
    let (refusals, sends) = (
        u64::try_from(refusals).unwrap_or(0),
        u64::try_from(sends).unwrap_or(0),
    );
    if !state::should_pause(rule, refusals, sends) {
        return Ok(None);
    }
    let until = Timestamp(at.0.saturating_add(window));
    let done = sqlx::query(sql.UPSERT_PAUSE)
        .bind(campaign)
        .bind(domain)
        .bind(at.0)
        .bind(until.0)
        .bind(i64::try_from(refusals).unwrap_or(i64::MAX))
        .bind(i64::try_from(sends).unwrap_or(i64::MAX))
        .execute(&mut **tx)
        .await
        .map_err(q("UPSERT_PAUSE"))?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let pause = DomainPause {
        campaign_id: campaign,
        domain: domain.to_owned(),
        paused_at: at,
        until,
        refusals,
        sends: sends.max(refusals),
    };
    tracing::warn!("{pause}");
    Ok(Some(pause))
}

/// The complaint-rate guard (`[rules] max_complaint_rate`) after a complaint about one of
/// a campaign's sends: counts its complaints and accepted sends since its start or last
/// resume and pauses it when [`state::complaint_level`] says so (unless it is paused
/// already); logs a warning from `warn_complaint_rate` on.
async fn guard_campaign(
    sql: &sql::Sql,
    pool: &AnyPool,
    rules: &RulesConfig,
    campaign: i64,
) -> Result<Option<ComplaintPause>> {
    let at = Timestamp::now();
    let Some(row) = sqlx::query(sql.CAMPAIGN_GUARD_STATE)
        .bind(campaign)
        .fetch_optional(pool)
        .await
        .map_err(q("CAMPAIGN_GUARD_STATE"))?
    else {
        return Ok(None); // a campaign id the store does not know (a forged header)
    };
    let g = q("reading the campaign's pause");
    let paused: Option<i64> = row.try_get(0).map_err(g)?;
    let resumed: Option<i64> = row.try_get(1).map_err(g)?;
    if paused.is_some() {
        return Ok(None);
    }
    let since = resumed.unwrap_or(0);
    let complaints: i64 = sqlx::query_scalar(sql.CAMPAIGN_COMPLAINTS_SINCE)
        .bind(campaign)
        .bind(since)
        .fetch_one(pool)
        .await
        .map_err(q("CAMPAIGN_COMPLAINTS_SINCE"))?;
    let complaints = u64::try_from(complaints).unwrap_or(0);
    // At `enough` sends the rate is under both limits whatever the rest: the count stops
    // there (a healthy campaign of a million sends is not counted whole for every
    // complaint).
    let lowest = rules.warn_complaint_rate.min(rules.max_complaint_rate);
    let enough = if lowest > 0.0 {
        ((complaints as f64 / lowest).floor() as i64).saturating_add(1)
    } else {
        i64::MAX
    };
    let sends: i64 = match resumed {
        None => sqlx::query_scalar(sql.CAMPAIGN_SENT_UP_TO)
            .bind(campaign)
            .bind(enough)
            .fetch_one(pool)
            .await
            .map_err(q("CAMPAIGN_SENT_UP_TO"))?,
        Some(since) => sqlx::query_scalar(sql.CAMPAIGN_SENT_SINCE_UP_TO)
            .bind(campaign)
            .bind(enough)
            .bind(since)
            .fetch_one(pool)
            .await
            .map_err(q("CAMPAIGN_SENT_SINCE_UP_TO"))?,
    };
    let sends = u64::try_from(sends).unwrap_or(0);
    match state::complaint_level(rules, complaints, sends) {
        state::ComplaintLevel::Ok => Ok(None),
        state::ComplaintLevel::Warn => {
            tracing::warn!(
                campaign,
                complaints,
                sends,
                "campaign {campaign}: complaint rate {} is at or over [rules] warn_complaint_rate {}",
                percent(complaints as f64 / sends as f64),
                percent(rules.warn_complaint_rate)
            );
            Ok(None)
        }
        state::ComplaintLevel::Pause => {
            let reason = complaint_pause_reason(complaints, sends, rules.max_complaint_rate);
            let done = sqlx::query(sql.PAUSE_CAMPAIGN)
                .bind(campaign)
                .bind(at.0)
                .bind(&reason)
                .execute(pool)
                .await
                .map_err(q("PAUSE_CAMPAIGN"))?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            let pause = ComplaintPause {
                campaign_id: campaign,
                paused_at: at,
                complaints,
                sends,
                reason,
            };
            tracing::warn!("{pause}");
            Ok(Some(pause))
        }
    }
}

/// The class and blame a record is booked with: its own, else what its reason, status
/// and action give.
fn class_and_blame(
    kind: MessageKind,
    rec: &RecipientVerdict,
) -> (Option<BounceClass>, Option<Blame>) {
    let class = rec.bounce.or_else(|| {
        BounceClass::derive(
            kind,
            rec.reason,
            rec.status.as_deref(),
            rec.action.as_deref(),
        )
    });
    (class, state::effective_blame(rec.blame, class, rec.reason))
}

/// What [`Store::record_verdict`] would book for one record: the event's recipient,
/// class, reason and blame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Booking {
    /// The recipient (normalized; empty when the record names none).
    pub recipient: String,
    /// The message kind.
    pub kind: MessageKind,
    /// Hard or soft.
    pub class: Option<BounceClass>,
    /// Why.
    pub reason: Reason,
    /// Whom it is blamed on.
    pub blame: Option<Blame>,
}

/// The events [`Store::record_verdict`] would write for `verdict` under `ctx` (not the
/// marker of an unparseable message): the same records, classes and blames, for a
/// comparison with what was written.
pub fn bookings(ctx: &EventContext, verdict: &Verdict) -> Vec<Booking> {
    records_of(ctx, verdict)
        .iter()
        .map(|Booked { rec, .. }| {
            let (class, blame) = class_and_blame(verdict.kind, rec);
            Booking {
                recipient: normalize_address(&rec.address),
                kind: verdict.kind,
                class,
                reason: rec.reason,
                blame,
            }
        })
        .collect()
}

/// One record to book, with the other addresses the report named for the same send.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Booked {
    rec: RecipientVerdict,
    aliases: Vec<String>,
}

/// How severe a record is, for picking the one a correlated send books: hard over soft
/// over anything without a class.
fn severity(rec: &RecipientVerdict, kind: MessageKind) -> u8 {
    if got_through(rec, kind) {
        return 0;
    }
    let class = rec.bounce.or_else(|| {
        BounceClass::derive(
            kind,
            rec.reason,
            rec.status.as_deref(),
            rec.action.as_deref(),
        )
    });
    match class {
        Some(BounceClass::Hard) => 2,
        Some(BounceClass::Soft) => 1,
        None => 0,
    }
}

/// A record of a bounce that says this recipient was delivered, relayed or expanded (a
/// report that failed for others): it did not bounce, and nothing is booked for it. A
/// record a policy gave a class stays a bounce.
fn got_through(rec: &RecipientVerdict, kind: MessageKind) -> bool {
    kind == MessageKind::Bounce
        && rec.bounce.is_none()
        && rec.action.as_deref().is_some_and(|a| {
            ["delivered", "relayed", "expanded", "deliverable"]
                .iter()
                .any(|d| a.eq_ignore_ascii_case(d))
        })
}

/// The records to book. Without a correlated recipient: every record of the verdict but
/// those of recipients a bounce says got through ([`got_through`]). With one
/// (`ctx.recipient`: VERP or the Message-ID tied the message to one send): exactly one
/// record, booked to that recipient — the verdict's record for that address if there is
/// one, else the most severe (hard over soft, the first among equals) — with the other
/// addresses the report named as its aliases; none when the report says that
/// recipient's own message got through.
fn records_of(ctx: &EventContext, verdict: &Verdict) -> Vec<Booked> {
    let Some(r) = &ctx.recipient else {
        return verdict
            .recipients
            .iter()
            .filter(|rec| !got_through(rec, verdict.kind))
            .map(|rec| Booked {
                rec: rec.clone(),
                aliases: distinct_aliases(&rec.address, rec.aliases.iter()),
            })
            .collect();
    };
    if verdict.recipients.is_empty() {
        if !matches!(verdict.kind, MessageKind::Bounce | MessageKind::Complaint) {
            return Vec::new();
        }
        let reason = if verdict.kind == MessageKind::Complaint {
            Reason::Feedback
        } else {
            Reason::Undefined
        };
        let bounce = BounceClass::derive(verdict.kind, reason, None, None);
        return vec![Booked {
            rec: RecipientVerdict {
                bounce,
                blame: Blame::of_failure(bounce, reason),
                ..RecipientVerdict::new(r.clone(), reason)
            },
            aliases: Vec::new(),
        }];
    }
    let key = address_key(r);
    let chosen = verdict
        .recipients
        .iter()
        .position(|rec| address_key(&rec.address) == key)
        .unwrap_or_else(|| {
            let mut best = 0;
            for (i, rec) in verdict.recipients.iter().enumerate() {
                if severity(rec, verdict.kind) > severity(&verdict.recipients[best], verdict.kind) {
                    best = i;
                }
            }
            best
        });
    let picked = &verdict.recipients[chosen];
    if got_through(picked, verdict.kind) {
        return Vec::new();
    }
    let named = std::iter::once(&picked.address)
        .chain(&picked.aliases)
        .chain(
            verdict
                .recipients
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != chosen)
                .flat_map(|(_, rec)| std::iter::once(&rec.address).chain(&rec.aliases)),
        );
    let aliases = distinct_aliases(r, named);
    let mut rec = picked.clone();
    rec.address.clone_from(r);
    vec![Booked { rec, aliases }]
}

/// The addresses of `named` (normalised, each once, in order) other than `booked`.
fn distinct_aliases<'a>(booked: &str, named: impl Iterator<Item = &'a String>) -> Vec<String> {
    let key = address_key(booked);
    let mut out: Vec<String> = Vec::new();
    for a in named {
        let a = normalize_address(a);
        if a.is_empty()
            || address_key(&a) == key
            || out.iter().any(|x| address_key(x) == address_key(&a))
        {
            continue;
        }
        out.push(a);
    }
    out
}

/// A recipient row as the recording needs it.
#[derive(Debug, Clone, Copy)]
struct RecipientRow {
    id: i64,
    state: RecipientState,
    counts_since: Option<i64>,
}

fn id_state(row: &sqlx::any::AnyRow) -> Result<RecipientRow> {
    let id: i64 = row.try_get(0).map_err(q("reading recipient id"))?;
    let state: String = row.try_get(1).map_err(q("reading recipient state"))?;
    let counts_since: Option<i64> = row.try_get(2).map_err(q("reading recipient counts"))?;
    Ok(RecipientRow {
        id,
        state: parse_state(state)?,
        counts_since,
    })
}

async fn bump(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    sql: &'static str,
    what: &'static str,
    id: i64,
    at: Timestamp,
    rec: &RecipientVerdict,
) -> Result<()> {
    sqlx::query(sql)
        .bind(id)
        .bind(at.0)
        .bind(rec.status.as_deref())
        .bind(rec.reason.as_str())
        .execute(&mut **tx)
        .await
        .map_err(q(what))?;
    Ok(())
}

/// `s` with every NUL replaced by U+FFFD (PostgreSQL's text and jsonb hold none; both
/// stores record the same).
fn nul_free(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// The verdict, its text without NUL (a copy only when there is one).
fn without_nul(v: &Verdict) -> Cow<'_, Verdict> {
    let has = |s: &str| s.contains('\0');
    let opt = |s: &Option<String>| s.as_deref().is_some_and(has);
    let dirty = has(&v.decided_by)
        || v.recipients.iter().any(|r| {
            has(&r.address)
                || opt(&r.status)
                || opt(&r.diagnostic)
                || opt(&r.action)
                || opt(&r.remote_mta)
                || opt(&r.feedback_type)
                || r.aliases.iter().any(|a| has(a))
        });
    if !dirty {
        return Cow::Borrowed(v);
    }
    let mut v = v.clone();
    nul_free(&mut v.decided_by);
    for r in &mut v.recipients {
        nul_free(&mut r.address);
        for s in [
            &mut r.status,
            &mut r.diagnostic,
            &mut r.action,
            &mut r.remote_mta,
            &mut r.feedback_type,
        ]
        .into_iter()
        .flatten()
        {
            nul_free(s);
        }
        r.aliases.iter_mut().for_each(nul_free);
    }
    Cow::Owned(v)
}

/// The context, its text without NUL.
fn without_nul_ctx(c: &EventContext) -> Cow<'_, EventContext> {
    let has = |s: &Option<String>| s.as_deref().is_some_and(|s| s.contains('\0'));
    if !(has(&c.original_message_id) || has(&c.recipient) || has(&c.error)) {
        return Cow::Borrowed(c);
    }
    let mut c = c.clone();
    for s in [&mut c.original_message_id, &mut c.recipient, &mut c.error]
        .into_iter()
        .flatten()
    {
        nul_free(s);
    }
    Cow::Owned(c)
}

/// The columns of one event row.
#[derive(Debug, Default)]
struct EventRow<'a> {
    at: Timestamp,
    source: &'a str,
    mailbox: Option<&'a str>,
    uid: Option<&'a str>,
    recipient: Option<&'a str>,
    recipient_id: Option<i64>,
    kind: &'a str,
    class: Option<BounceClass>,
    rec: Option<&'a RecipientVerdict>,
    decided_by: &'a str,
    original_message_id: Option<&'a str>,
    campaign_id: Option<i64>,
    error: Option<&'a str>,
    blame: Option<Blame>,
    domain: Option<&'a str>,
    aliases: Option<&'a str>,
    previous_state: Option<RecipientState>,
}

/// Inserts one event row. Counts nothing in the rollup: [`book_in`] adds the events it
/// books to its transaction's [`rollup::Tally`]; the other events (reactivation,
/// unsubscribe) count nothing there.
async fn insert_event(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    e: &EventRow<'_>,
) -> Result<()> {
    let rec = e.rec;
    sqlx::query(sql.INSERT_EVENT)
        .bind(e.at.0)
        .bind(e.source)
        .bind(e.mailbox)
        .bind(e.uid)
        .bind(e.recipient)
        .bind(e.recipient_id)
        .bind(e.kind)
        .bind(e.class.map(BounceClass::as_str))
        .bind(rec.and_then(|r| r.status.as_deref()))
        .bind(rec.map(|r| r.reason.as_str()))
        .bind(rec.and_then(|r| r.diagnostic.as_deref()))
        .bind(e.decided_by)
        .bind(e.original_message_id)
        .bind(e.campaign_id)
        .bind(e.error)
        .bind(e.blame.map(Blame::as_str))
        .bind(rec.and_then(|r| r.action.as_deref()))
        .bind(e.domain)
        .bind(e.aliases)
        .bind(e.previous_state.map(RecipientState::as_str))
        .execute(&mut **tx)
        .await
        .map_err(q("INSERT_EVENT"))?;
    Ok(())
}

/// The settings of every PostgreSQL session: a transaction left idle for 30 s (its host
/// hung) is ended by the server, which releases its locks; no statement of the store
/// leaves a transaction idle for nearly that long.
const POSTGRES_SESSION: &str = "SET idle_in_transaction_session_timeout = 30000";

/// The settings of every SQLite connection: foreign keys; temporary b-trees of
/// statements such as the checkpoint's `UPDATE … FROM (VALUES …)` in memory, not in a
/// file created and deleted each time; 1 000 KiB of page cache per connection instead of
/// SQLite's 2 000 (the pool's caches fill as the store grows, and at 100 000 messages
/// they were the part of a mailbox pass's memory that grew most; the operating system
/// caches the file too, BENCHMARKS.md, ingest); a 10 s busy timeout; and for a file, WAL
/// with the given `synchronous`.
fn sqlite_pragmas(memory: bool, synchronous: Synchronous) -> &'static str {
    macro_rules! common {
        () => {
            "PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -1000; \
             PRAGMA busy_timeout = 10000;"
        };
    }
    match (memory, synchronous) {
        (true, _) => common!(),
        (false, Synchronous::Full) => {
            concat!(
                common!(),
                " PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
            )
        }
        (false, Synchronous::Normal) => {
            concat!(
                common!(),
                " PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
            )
        }
    }
}

/// Is this SQLite's "busy" or "locked" (primary result codes 5 and 6)?
fn sqlite_busy(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some()
        && db
            .code()
            .and_then(|c| c.parse::<i64>().ok())
            .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// A store URL fit for a message: without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Runs the migrations. Two processes opening a new file at once both find migration 1
/// missing; the second to apply it fails ("table … already exists", or a duplicate row in
/// `_sqlx_migrations`) once the first has committed it. Each migration is one transaction,
/// so nothing is half applied: the run is repeated while the other opener makes progress
/// (more migrations applied than before the attempt) or the file is busy, and an error
/// that repeats with nobody progressing is returned.
async fn migrate(pool: &AnyPool, backend: Backend) -> Result<()> {
    let migrations = match backend {
        Backend::Sqlite => MIGRATIONS,
        Backend::Postgres => POSTGRES_MIGRATIONS,
    };
    let migrator = Migrator::new(Embedded(migrations)).await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut delay = Duration::from_millis(5);
    loop {
        let before = Store::applied_migrations(pool).await;
        let err = match migrator.run(pool).await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let busy = match &err {
            sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(db))
            | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(db), _) => {
                backend == Backend::Sqlite && sqlite_busy(&**db)
            }
            sqlx::migrate::MigrateError::Execute(sqlx::Error::PoolTimedOut) => true,
            _ => false,
        };
        let progressed = Store::applied_migrations(pool).await > before;
        if !(busy || progressed) || std::time::Instant::now() >= deadline {
            return Err(err.into());
        }
        tracing::debug!(
            "another process is migrating the store; running the migrations again: {err}"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::ComplaintAction;

    /// Each inbound source has its own `source` prefix, and the prefix says which it was
    /// (reprocessing books a message again as the source it came from).
    #[test]
    fn source_column_names_the_inbound_source() {
        for (ctx, text, via) in [
            (
                EventContext::mailbox("b@x", "7"),
                "pop3:b@x/7",
                Inbound::Pop3,
            ),
            (
                EventContext::imap("b@x/INBOX", "5.7"),
                "imap:b@x/INBOX/5.7",
                Inbound::Imap,
            ),
            (
                EventContext::webhook("ses", "m-1"),
                "webhook:ses/m-1",
                Inbound::Webhook,
            ),
        ] {
            let shown = ctx.source.to_string();
            assert_eq!(shown, text);
            assert_eq!(Inbound::of_source(&shown), via);
        }
        assert_eq!(
            EventContext::webhook("ses", "m-1").mailbox_name(),
            Some("webhook:ses")
        );
    }

    fn rv(
        address: &str,
        class: Option<BounceClass>,
        status: &str,
        reason: Reason,
    ) -> RecipientVerdict {
        RecipientVerdict {
            address: address.into(),
            bounce: class,
            status: Some(status.into()),
            reason,
            blame: crate::verdict::Blame::of_failure(class, reason),
            diagnostic: Some(format!("550 {status} test")),
            action: Some("failed".into()),
            remote_mta: None,
            feedback_type: None,
            aliases: Vec::new(),
        }
    }

    fn verdict(kind: MessageKind, recipients: Vec<RecipientVerdict>) -> Verdict {
        Verdict {
            kind,
            recipients,
            decided_by: crate::verdict::BUILTIN.into(),
        }
    }

    fn hard(address: &str) -> Verdict {
        verdict(
            MessageKind::Bounce,
            vec![rv(
                address,
                Some(BounceClass::Hard),
                "5.1.1",
                Reason::UserUnknown,
            )],
        )
    }

    fn soft(address: &str) -> Verdict {
        verdict(
            MessageKind::Bounce,
            vec![rv(
                address,
                Some(BounceClass::Soft),
                "4.2.2",
                Reason::MailboxFull,
            )],
        )
    }

    fn at(ctx: EventContext, days: u64) -> EventContext {
        EventContext {
            at: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000 + days * 86_400)),
            ..ctx
        }
    }

    #[tokio::test]
    async fn store_errors_say_their_cause_once() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/missing/dir/x.db", dir.path().display());
        let Err(err) = Store::open(&url).await else {
            panic!("opened a store in a directory that does not exist");
        };
        let Error::Open { cause, .. } = &err else {
            panic!("not an open error: {err:?}");
        };
        let cause = cause.to_string();
        // The cause is in the message, and not repeated as the error's source.
        assert!(std::error::Error::source(&err).is_none(), "{err:?}");
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert!(chain.starts_with("opening store"), "{chain}");
        assert_eq!(chain.matches(cause.as_str()).count(), 1, "{chain}");
    }

    on_both_backends!(store_prepares_every_query);
    async fn store_prepares_every_query(s: Store) {
        s.check_queries().await.unwrap();
        assert!(sql::SQLITE.all().len() >= 60);
    }

    on_both_backends!(store_hard_bounce_marks_bounced_at_once);
    async fn store_hard_bounce_marks_bounced_at_once(s: Store) {
        let rules = RulesConfig::default();
        let out = s
            .record_verdict(&EventContext::smtp(), &hard("Kijitora@Example.COM"), &rules)
            .await
            .unwrap();
        assert_eq!(out.events, 1);
        assert_eq!(out.changes.len(), 1);
        let r = s.recipient("kijitora@example.com").await.unwrap().unwrap();
        assert_eq!(r.state, RecipientState::Bounced);
        assert_eq!(r.address, "Kijitora@example.com");
        assert_eq!(r.hard_count, 1);
        assert_eq!(r.last_status.as_deref(), Some("5.1.1"));
        assert_eq!(r.last_reason.as_deref(), Some("user-unknown"));
    }

    on_both_backends!(store_soft_bounces_count_within_the_window);
    async fn store_soft_bounces_count_within_the_window(s: Store) {
        let rules = RulesConfig::default(); // 3 in 30 days
        let a = "neko@example.org";
        // Two soft bounces, then one 40 days later: only 2 inside the window.
        for day in [0, 1, 41] {
            let out = s
                .record_verdict(&at(EventContext::smtp(), day), &soft(a), &rules)
                .await
                .unwrap();
            assert!(out.changes.is_empty(), "day {day}");
        }
        assert_eq!(
            s.recipient(a).await.unwrap().unwrap().state,
            RecipientState::Active
        );
        let _ = s
            .record_verdict(&at(EventContext::smtp(), 42), &soft(a), &rules)
            .await
            .unwrap();
        assert_eq!(
            s.recipient(a).await.unwrap().unwrap().state,
            RecipientState::Active
        );
        let out = s
            .record_verdict(&at(EventContext::smtp(), 43), &soft(a), &rules)
            .await
            .unwrap();
        assert_eq!(out.changes[0].to, RecipientState::Bounced);
        let r = s.recipient(a).await.unwrap().unwrap();
        assert_eq!((r.state, r.soft_count), (RecipientState::Bounced, 5));
    }

    on_both_backends!(store_soft_rule_counts_each_sent_message_once);
    async fn store_soft_rule_counts_each_sent_message_once(s: Store) {
        let rules = RulesConfig::default(); // 3 in 30 days
        let a = "neko@example.org";
        let of = |id: &str, day| EventContext {
            original_message_id: Some(id.into()),
            ..at(EventContext::smtp(), day)
        };
        // Message 1 is delayed twice and then fails; message 2 fails: two messages.
        for (id, day) in [("m1@x", 0), ("m1@x", 1), ("m1@x", 4), ("m2@x", 5)] {
            let out = s
                .record_verdict(&of(id, day), &soft(a), &rules)
                .await
                .unwrap();
            assert!(out.changes.is_empty(), "{id} day {day}");
        }
        let r = s.recipient(a).await.unwrap().unwrap();
        assert_eq!((r.state, r.soft_count), (RecipientState::Active, 4));
        let out = s
            .record_verdict(&of("m3@x", 6), &soft(a), &rules)
            .await
            .unwrap();
        assert_eq!(out.changes[0].to, RecipientState::Bounced);
    }

    on_both_backends!(store_soft_rule_zero_never_bounces);
    async fn store_soft_rule_zero_never_bounces(s: Store) {
        let rules = RulesConfig {
            soft_bounces_to_bounce: 0,
            ..RulesConfig::default()
        };
        for _ in 0..5 {
            let _ = s
                .record_verdict(&EventContext::smtp(), &soft("a@b.c"), &rules)
                .await
                .unwrap();
        }
        assert_eq!(
            s.recipient("a@b.c").await.unwrap().unwrap().state,
            RecipientState::Active
        );
    }

    on_both_backends!(store_complaint_follows_config);
    async fn store_complaint_follows_config(s: Store) {
        let complaint = verdict(
            MessageKind::Complaint,
            vec![RecipientVerdict {
                bounce: None,
                status: None,
                ..rv("x@example.net", None, "", Reason::Feedback)
            }],
        );
        let ignore = RulesConfig {
            complaint: ComplaintAction::Ignore,
            ..RulesConfig::default()
        };
        let _ = s
            .record_verdict(&EventContext::smtp(), &complaint, &ignore)
            .await
            .unwrap();
        let r = s.recipient("x@example.net").await.unwrap().unwrap();
        assert_eq!((r.state, r.complaint_count), (RecipientState::Active, 1));
        let _ = s
            .record_verdict(&EventContext::smtp(), &complaint, &RulesConfig::default())
            .await
            .unwrap();
        assert_eq!(
            s.recipient("x@example.net").await.unwrap().unwrap().state,
            RecipientState::Complained
        );
        let events = s
            .events(&EventFilter {
                kind: Some(MessageKind::Complaint.into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].class, None);
    }

    on_both_backends!(store_auto_reply_changes_nothing);
    async fn store_auto_reply_changes_nothing(s: Store) {
        let v = verdict(
            MessageKind::AutoReply,
            vec![rv("away@example.com", None, "", Reason::Vacation)],
        );
        let out = s
            .record_verdict(&EventContext::smtp(), &v, &RulesConfig::default())
            .await
            .unwrap();
        assert_eq!((out.events, out.changes.len()), (1, 0));
        assert!(s.recipient("away@example.com").await.unwrap().is_none());
        assert_eq!(s.event_count().await.unwrap(), 1);
    }

    on_both_backends!(store_mixed_report_books_only_the_failed_recipient);
    /// A report that failed for one recipient and was delivered or expanded for two:
    /// one bounce event, one recipient counted; the others get nothing.
    async fn store_mixed_report_books_only_the_failed_recipient(s: Store) {
        let got_through = |address: &str, action: &str| RecipientVerdict {
            bounce: None,
            action: Some(action.into()),
            status: Some("2.0.0".into()),
            diagnostic: None,
            blame: None,
            ..rv(address, None, "2.0.0", Reason::Delivered)
        };
        let v = verdict(
            MessageKind::Bounce,
            vec![
                got_through("ok@example.com", "delivered"),
                rv(
                    "gone@example.com",
                    Some(BounceClass::Hard),
                    "5.1.1",
                    Reason::UserUnknown,
                ),
                got_through("list@example.com", "expanded"),
            ],
        );
        let out = s
            .record_verdict(
                &EventContext::mailbox("mb", "1"),
                &v,
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.events, 1);
        let events = s.events(&EventFilter::default()).await.unwrap();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].recipient.as_deref(), Some("gone@example.com"));
        assert_eq!(events[0].class, Some(BounceClass::Hard));
        assert!(s.recipient("ok@example.com").await.unwrap().is_none());
        assert!(s.recipient("list@example.com").await.unwrap().is_none());

        // Tied to a send whose own record says it was expanded: nothing is booked.
        let mut ctx = EventContext::mailbox("mb", "2");
        ctx.recipient = Some("list@example.com".into());
        let out = s
            .record_verdict(&ctx, &v, &RulesConfig::default())
            .await
            .unwrap();
        assert_eq!(out.events, 0);
        assert!(s.recipient("list@example.com").await.unwrap().is_none());
    }

    on_both_backends!(store_ledger_takes_a_reused_uid_of_another_size_as_new);
    /// A UID in the ledger under another size is a new message; the same size, or an
    /// unknown one, is the recorded message.
    async fn store_ledger_takes_a_reused_uid_of_another_size_as_new(s: Store) {
        let rules = RulesConfig::default();
        let sized = |uid: &str, size: Option<u64>| EventContext {
            size,
            ..EventContext::mailbox("mb", uid)
        };
        let first = s
            .record_verdict(&sized("7", Some(1200)), &hard("a@example.com"), &rules)
            .await
            .unwrap();
        assert!(!first.duplicate);
        let same = s
            .record_verdict(&sized("7", Some(1200)), &hard("b@example.com"), &rules)
            .await
            .unwrap();
        assert!(same.duplicate);
        let unknown = s
            .record_verdict(&sized("7", None), &hard("b@example.com"), &rules)
            .await
            .unwrap();
        assert!(unknown.duplicate);
        let reused = s
            .record_verdict(&sized("7", Some(900)), &hard("b@example.com"), &rules)
            .await
            .unwrap();
        assert!(!reused.duplicate);
        assert_eq!(reused.events, 1);
        assert_eq!(s.ledger_len("mb").await.unwrap(), 1);
        let entry = s.ledger_entries("mb", &["7"]).await.unwrap()["7"];
        assert_eq!(entry.size, Some(900));
        assert!(entry.same_message(Some(900)) && !entry.same_message(Some(1200)));
        assert!(s.recipient("b@example.com").await.unwrap().is_some());

        // A row without a size (recorded before the ledger kept it) trusts its UID, and
        // takes the size a pass lists.
        let old = s
            .record_verdict(&sized("8", None), &hard("c@example.com"), &rules)
            .await
            .unwrap();
        assert!(!old.duplicate);
        let entry = s.ledger_entries("mb", &["8"]).await.unwrap()["8"];
        assert!(entry.same_message(Some(5)));
        assert_eq!(
            s.adopt_ledger_sizes("mb", &[("8", 5), ("9", 6)])
                .await
                .unwrap(),
            1
        );
        let entry = s.ledger_entries("mb", &["8"]).await.unwrap()["8"];
        assert_eq!(entry.size, Some(5));
        assert!(!entry.same_message(Some(6)));
    }

    on_both_backends!(store_quarantine_is_listed_released_and_pruned);
    /// Quarantine at the limit, list, release (one, all), and forget the failures of a
    /// message no longer listed.
    async fn store_quarantine_is_listed_released_and_pruned(s: Store) {
        for _ in 0..3 {
            s.record_fetch_failure("mb", "bad", "pop3 RETR 2: closed", 3)
                .await
                .unwrap();
        }
        s.record_fetch_failure("mb", "flaky", "pop3 RETR 3: -ERR", 3)
            .await
            .unwrap();
        s.record_fetch_failure("mb", "gone", "pop3 RETR 4: -ERR", 3)
            .await
            .unwrap();
        s.record_fetch_failure("other", "bad", "x", 1)
            .await
            .unwrap();
        let list = s.quarantined(Some("mb")).await.unwrap();
        assert_eq!(list.len(), 1, "{list:?}");
        assert_eq!((list[0].uid.as_str(), list[0].failures), ("bad", 3));
        assert_eq!(list[0].last_error, "pop3 RETR 2: closed");
        assert!(list[0].first_failure_at <= list[0].last_failure_at);
        assert_eq!(s.quarantined(None).await.unwrap().len(), 2);

        // A pass: "gone" is no longer listed; a lower limit quarantines "flaky" too.
        let states = s
            .fetch_failure_states("mb", &["bad", "flaky", "new"], 1)
            .await
            .unwrap();
        assert_eq!(states.len(), 2);
        assert!(states["bad"].quarantined && states["flaky"].quarantined);
        assert!(s.fetch_failures("mb", &["gone"]).await.unwrap().is_empty());

        let released = s
            .release_quarantined(Some("mb"), Some(&["bad", "nope"]))
            .await
            .unwrap();
        assert_eq!(released, [("mb".to_owned(), "bad".to_owned())]);
        assert!(s.fetch_failures("mb", &["bad"]).await.unwrap().is_empty());
        let released = s.release_quarantined(None, None).await.unwrap();
        assert_eq!(released.len(), 2, "{released:?}");
        assert!(s.quarantined(None).await.unwrap().is_empty());
    }

    on_both_backends!(store_fetch_failure_states_streams_a_large_listing);
    /// A pass over a large mailbox hands its listing as an iterator, read once and never
    /// collected: the failures of the listed UIDs are kept and returned, the others
    /// forgotten, another mailbox's left alone.
    async fn store_fetch_failure_states_streams_a_large_listing(s: Store) {
        for uid in ["00000007", "00199999", "gone"] {
            s.record_fetch_failure("mb", uid, "pop3 RETR: -ERR", 3)
                .await
                .unwrap();
        }
        s.record_fetch_failure("other", "gone", "x", 3)
            .await
            .unwrap();
        let listing = (0..200_000).map(|i| format!("{i:08}"));
        let states = s.fetch_failure_states("mb", listing, 3).await.unwrap();
        let mut uids: Vec<&str> = states.keys().map(String::as_str).collect();
        uids.sort_unstable();
        assert_eq!(uids, ["00000007", "00199999"]);
        assert!(states.values().all(|f| f.failures == 1 && !f.quarantined));
        assert!(s.fetch_failures("mb", &["gone"]).await.unwrap().is_empty());
        assert_eq!(s.fetch_failures("other", &["gone"]).await.unwrap().len(), 1);
        // A mailbox without failures: nothing to match, nothing returned.
        let none = s
            .fetch_failure_states("empty", ["a", "b"], 3)
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    on_both_backends!(store_ledger_makes_a_message_count_once);
    async fn store_ledger_makes_a_message_count_once(s: Store) {
        let rules = RulesConfig::default();
        let ctx = EventContext::mailbox("mb", "0001");
        assert!(!s.ledger_contains("mb", "0001").await.unwrap());
        let first = s
            .record_verdict(&ctx, &soft("a@example.com"), &rules)
            .await
            .unwrap();
        assert!(!first.duplicate);
        let again = s
            .record_verdict(&ctx, &soft("a@example.com"), &rules)
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.events, 0);
        assert!(s.ledger_contains("mb", "0001").await.unwrap());
        assert!(!s.ledger_contains("other", "0001").await.unwrap());
        assert_eq!(
            s.recipient("a@example.com")
                .await
                .unwrap()
                .unwrap()
                .soft_count,
            1
        );
        assert_eq!(s.event_count().await.unwrap(), 1);
        assert_eq!(s.ledger_len("mb").await.unwrap(), 1);
        let found = s
            .ledger_entries("mb", &["0001", "0002", "it's \"odd\""])
            .await
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found["0001"].kind, MessageKind::Bounce);
    }

    on_both_backends!(store_group_commit_records_each_message_once);
    async fn store_group_commit_records_each_message_once(s: Store) {
        let rules = RulesConfig::default();
        let items = vec![
            (EventContext::mailbox("mb", "1"), hard("a@example.com")),
            (EventContext::mailbox("mb", "2"), soft("b@example.com")),
            (EventContext::mailbox("mb", "1"), hard("a@example.com")),
        ];
        let out = s.record_verdicts(&items, &rules).await.unwrap();
        assert_eq!(
            out.iter().map(|o| o.duplicate).collect::<Vec<_>>(),
            [false, false, true]
        );
        assert_eq!(s.event_count().await.unwrap(), 2);
        assert_eq!(
            s.recipient("a@example.com")
                .await
                .unwrap()
                .unwrap()
                .hard_count,
            1
        );
        let again = s.record_verdicts(&items[1..], &rules).await.unwrap();
        assert!(again.iter().all(|o| o.duplicate));
    }

    on_both_backends!(store_unparseable_message_gets_a_marker);
    async fn store_unparseable_message_gets_a_marker(s: Store) {
        let ctx = EventContext {
            error: Some("no headers".into()),
            ..EventContext::mailbox("mb", "x")
        };
        let out = s
            .record_verdict(
                &ctx,
                &verdict(MessageKind::Other, vec![]),
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.events, 1);
        let events = s.events(&EventFilter::default()).await.unwrap();
        assert_eq!(events[0].error.as_deref(), Some("no headers"));
        assert_eq!(events[0].recipient, None);
        assert_eq!(events[0].source, "pop3:mb/x");
        assert!(s.ledger_contains("mb", "x").await.unwrap());
    }

    on_both_backends!(store_addresses_compare_case_insensitively);
    async fn store_addresses_compare_case_insensitively(s: Store) {
        let rules = RulesConfig::default();
        let _ = s
            .record_verdict(&EventContext::smtp(), &soft("<Neko@EXAMPLE.jp>"), &rules)
            .await
            .unwrap();
        let _ = s
            .record_verdict(
                &EventContext::smtp(),
                &soft("rfc822; neko@example.JP"),
                &rules,
            )
            .await
            .unwrap();
        let all = s.recipients(None).await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].address, "Neko@example.jp");
        assert_eq!(all[0].soft_count, 2);
        let ev = s
            .events(&EventFilter {
                recipient: Some("NEKO@example.jp".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ev.len(), 2);
    }

    on_both_backends!(store_correlated_recipient_overrides_the_report);
    async fn store_correlated_recipient_overrides_the_report(s: Store) {
        let ctx = EventContext {
            recipient: Some("real@example.com".into()),
            campaign_id: Some(7),
            original_message_id: Some("abc@example.org".into()),
            ..EventContext::mailbox("mb", "1")
        };
        let _ = s
            .record_verdict(
                &ctx,
                &hard("forwarded@elsewhere.example"),
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        assert!(
            s.recipient("forwarded@elsewhere.example")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            s.recipient("real@example.com")
                .await
                .unwrap()
                .unwrap()
                .state,
            RecipientState::Bounced
        );
        let ev = s
            .events(&EventFilter {
                campaign_id: Some(7),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            ev[0].original_message_id.as_deref(),
            Some("abc@example.org")
        );
        // A bounce that names nobody still counts for the correlated recipient.
        let ctx = EventContext {
            recipient: Some("real2@example.com".into()),
            ..EventContext::smtp()
        };
        let _ = s
            .record_verdict(
                &ctx,
                &verdict(MessageKind::Bounce, vec![]),
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        assert_eq!(
            s.recipient("real2@example.com")
                .await
                .unwrap()
                .unwrap()
                .soft_count,
            1
        );
    }

    on_both_backends!(store_filters_recipients_by_state);
    async fn store_filters_recipients_by_state(s: Store) {
        let rules = RulesConfig::default();
        let _ = s
            .record_verdict(&EventContext::smtp(), &hard("a@x.org"), &rules)
            .await
            .unwrap();
        let _ = s
            .record_verdict(&EventContext::smtp(), &soft("b@x.org"), &rules)
            .await
            .unwrap();
        let bounced = s.recipients(Some(RecipientState::Bounced)).await.unwrap();
        assert_eq!(bounced.len(), 1);
        assert_eq!(bounced[0].address, "a@x.org");
        assert_eq!(s.recipients(None).await.unwrap().len(), 2);
        let counts = s.recipient_counts().await.unwrap();
        assert_eq!(
            counts,
            vec![(RecipientState::Active, 1), (RecipientState::Bounced, 1)]
        );
    }

    on_both_backends!(store_memory_database_survives_a_cancelled_transaction);
    async fn store_memory_database_survives_a_cancelled_transaction(s: Store) {
        let _ = s
            .record_verdict(
                &EventContext::smtp(),
                &hard("a@x.org"),
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        // Cancel a commit half-way, as an aborted poll pass does; the pool may close the
        // connection, but the in-memory database must stay.
        for yields in 0..40 {
            let s2 = s.clone();
            let task = tokio::spawn(async move {
                let _ = s2
                    .record_verdict(
                        &EventContext::smtp(),
                        &soft("b@x.org"),
                        &RulesConfig::default(),
                    )
                    .await;
            });
            for _ in 0..yields {
                tokio::task::yield_now().await;
            }
            task.abort();
            let _ = task.await;
        }
        assert!(s.recipient("a@x.org").await.unwrap().is_some());
        s.check_queries().await.unwrap();
        let out = s
            .record_verdict(
                &EventContext::smtp(),
                &hard("c@x.org"),
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        assert_eq!(out.events, 1);
    }

    /// Every pooled connection of a file store syncs at each commit (`FULL`, 2) in WAL
    /// mode: a committed verdict survives an OS crash.
    #[tokio::test]
    async fn store_file_database_runs_wal_with_synchronous_full() {
        let (_dir, _url, s) = file_store().await;
        // Hold four connections at once, so each of the pool's is asked.
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(s.pool().acquire().await.unwrap());
        }
        for conn in &mut conns {
            let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(sync, 2, "PRAGMA synchronous (2 = FULL)");
            let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
                .fetch_one(&mut **conn)
                .await
                .unwrap();
            assert_eq!(mode, "wal");
        }
    }

    #[tokio::test]
    async fn store_file_database_reopens_with_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let s = Store::open(&url).await.unwrap();
        let _ = s
            .record_verdict(
                &EventContext::smtp(),
                &hard("a@x.org"),
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        s.close().await;
        let s = Store::open(&url).await.unwrap();
        assert_eq!(
            s.recipient("a@x.org").await.unwrap().unwrap().state,
            RecipientState::Bounced
        );
    }

    #[test]
    fn state_round_trips_through_its_name() {
        for st in RecipientState::ALL {
            assert_eq!(st.as_str().parse::<RecipientState>().unwrap(), *st);
        }
        assert!("gone".parse::<RecipientState>().is_err());
    }

    /// A store in a real SQLite file (WAL), kept as long as the directory.
    async fn file_store() -> (tempfile::TempDir, String, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
        let s = Store::open(&url).await.unwrap();
        (dir, url, s)
    }

    /// The bounce an SMTP server's reply makes, read by the detector's own rules.
    fn reply(address: &str, code: u16, text: &str) -> Verdict {
        verdict(
            MessageKind::Bounce,
            vec![crate::detector::verdict_for_reply(address, code, text)],
        )
    }

    const SPAMHAUS: &str =
        "5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org";

    on_both_backends!(store_keeps_blame_on_events);
    async fn store_keeps_blame_on_events(s: Store) {
        let rules = RulesConfig::default();
        let _ = s
            .record_verdict(
                &EventContext::smtp(),
                &reply("a@example.net", 550, SPAMHAUS),
                &rules,
            )
            .await
            .unwrap();
        let _ = s
            .record_verdict(&EventContext::smtp(), &hard("b@example.net"), &rules)
            .await
            .unwrap();
        let ev = s.events(&EventFilter::default()).await.unwrap();
        assert_eq!(ev[0].blame, Some(Blame::Sender), "{:?}", ev[0]);
        assert_eq!(ev[0].action.as_deref(), Some("failed"));
        assert_eq!(ev[0].domain.as_deref(), Some("example.net"));
        assert_eq!(ev[1].blame, Some(Blame::Recipient));
        let json = serde_json::to_value(&ev[0]).unwrap();
        assert_eq!(json["blame"], "sender");
        assert_eq!(json["kind"], "bounce");
    }

    #[tokio::test]
    async fn store_derives_blame_of_old_events_from_their_reason() {
        let (_dir, url, s) = file_store().await;
        let _ = s
            .record_verdict(
                &EventContext::smtp(),
                &soft("old@example.net"),
                &RulesConfig::default(),
            )
            .await
            .unwrap();
        // As a row written before schema 4 looks: no blame, no action.
        sqlx::query("UPDATE events SET blame = NULL, action = NULL")
            .execute(s.pool())
            .await
            .unwrap();
        let ev = s.events(&EventFilter::default()).await.unwrap();
        assert_eq!(ev[0].blame, Some(Blame::Recipient), "read-time fallback");
        s.close().await;
        let s = Store::open(&url).await.unwrap();
        let stored: Option<String> = sqlx::query_scalar("SELECT blame FROM events")
            .fetch_one(s.pool())
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some("recipient"), "backfilled at open");
    }

    on_both_backends!(store_sender_blocks_never_bounce_a_recipient);
    async fn store_sender_blocks_never_bounce_a_recipient(s: Store) {
        let rules = RulesConfig::default(); // 3 in 30 days
        for day in 0..3 {
            let ctx = EventContext {
                original_message_id: Some(format!("m{day}@example.org")),
                ..at(EventContext::smtp(), day)
            };
            let v = reply("jane@example.net", 550, SPAMHAUS);
            assert_eq!(v.recipients[0].blame, Some(Blame::Sender));
            let out = s.record_verdict(&ctx, &v, &rules).await.unwrap();
            assert!(out.changes.is_empty(), "day {day}");
            assert_eq!(out.failures[0].blame, Blame::Sender);
        }
        let r = s.recipient("jane@example.net").await.unwrap().unwrap();
        assert_eq!((r.state, r.soft_count), (RecipientState::Active, 3));
        // Three full mailboxes do make a recipient bounced.
        for day in 0..3 {
            let ctx = EventContext {
                original_message_id: Some(format!("f{day}@example.org")),
                ..at(EventContext::smtp(), day)
            };
            let v = reply(
                "full@example.net",
                552,
                "5.2.2 Mailbox full: user is over quota",
            );
            assert_eq!(v.recipients[0].blame, Some(Blame::Recipient));
            let _ = s.record_verdict(&ctx, &v, &rules).await.unwrap();
        }
        let r = s.recipient("full@example.net").await.unwrap().unwrap();
        assert_eq!(r.state, RecipientState::Bounced);
    }

    on_both_backends!(store_delay_warning_counts_only_when_its_message_fails);
    async fn store_delay_warning_counts_only_when_its_message_fails(s: Store) {
        let rules = RulesConfig::default(); // 3 in 30 days
        let a = "slow@example.net";
        let delayed = |_: ()| {
            verdict(
                MessageKind::Bounce,
                vec![RecipientVerdict {
                    action: Some("delayed".into()),
                    ..rv(a, Some(BounceClass::Soft), "4.2.2", Reason::MailboxFull)
                }],
            )
        };
        let of = |id: &str, day| EventContext {
            original_message_id: Some(id.into()),
            ..at(EventContext::smtp(), day)
        };
        // Three messages only delayed: nothing counts.
        for (i, id) in ["m1@x", "m2@x", "m3@x"].into_iter().enumerate() {
            let out = s
                .record_verdict(&of(id, i as u64), &delayed(()), &rules)
                .await
                .unwrap();
            assert!(out.changes.is_empty());
        }
        // m1 and m2 fail for good: two messages.
        for id in ["m1@x", "m2@x"] {
            let out = s
                .record_verdict(&of(id, 4), &soft(a), &rules)
                .await
                .unwrap();
            assert!(out.changes.is_empty(), "{id}");
        }
        // A transit failure (expired) of m3 does not count either.
        let expired = verdict(
            MessageKind::Bounce,
            vec![rv(a, Some(BounceClass::Soft), "4.4.7", Reason::Expired)],
        );
        let out = s
            .record_verdict(&of("m3@x", 5), &expired, &rules)
            .await
            .unwrap();
        assert!(out.changes.is_empty());
        // The third final recipient failure does.
        let out = s
            .record_verdict(&of("m4@x", 6), &soft(a), &rules)
            .await
            .unwrap();
        assert_eq!(out.changes[0].to, RecipientState::Bounced);
    }

    on_both_backends!(store_records_text_with_a_nul);
    async fn store_records_text_with_a_nul(s: Store) {
        // A quoted-printable diagnostic decoded to a NUL (`=00`), and a policy's text.
        let mut rec = rv(
            "nul@example.com",
            Some(BounceClass::Hard),
            "5.1.1",
            Reason::UserUnknown,
        );
        rec.diagnostic = Some("550 5.1.1 unknown LinkId=\0\0 here".into());
        rec.aliases = vec!["a\0@example.com".into()];
        let mut v = verdict(MessageKind::Bounce, vec![rec]);
        v.decided_by = "policy:x\0".into();
        let mut ctx = EventContext::mailbox("mb", "1");
        ctx.original_message_id = Some("m\0@x".into());
        let out = s
            .record_verdict(&ctx, &v, &RulesConfig::default())
            .await
            .unwrap();
        assert_eq!(out.changes.len(), 1);
        let events = s.events(&EventFilter::default()).await.unwrap();
        assert_eq!(
            events[0].diagnostic.as_deref(),
            Some("550 5.1.1 unknown LinkId=\u{FFFD}\u{FFFD} here")
        );
        assert_eq!(
            events[0].original_message_id.as_deref(),
            Some("m\u{FFFD}@x")
        );
    }

    on_both_backends!(store_unsubscribe_suppresses_once_and_keeps_a_bounce);
    async fn store_unsubscribe_suppresses_once_and_keeps_a_bounce(s: Store) {
        // An address the store never saw: its row is made, unsubscribed.
        let change = s
            .unsubscribe("Ann@Example.com", Some(7), "one-click")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (change.from, change.to),
            (RecipientState::Active, RecipientState::Unsubscribed)
        );
        // Asked again: nothing written.
        assert_eq!(
            s.unsubscribe("ann@example.com", Some(7), "page")
                .await
                .unwrap(),
            None
        );
        let ann = s.recipient("ann@example.com").await.unwrap().unwrap();
        assert_eq!(ann.state, RecipientState::Unsubscribed);
        let filter = EventFilter {
            kind: Some(EventKind::Unsubscribe),
            ..EventFilter::default()
        };
        let events = s.events(&filter).await.unwrap();
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(
            (events[0].campaign_id, events[0].source.as_str()),
            (Some(7), "one-click")
        );
        assert_eq!(events[0].previous_state, Some(RecipientState::Active));
        // A bounced recipient stays bounced; the request is on record.
        let rules = RulesConfig::default();
        let hard = verdict(
            MessageKind::Bounce,
            vec![rv(
                "bob@example.com",
                Some(BounceClass::Hard),
                "5.1.1",
                Reason::UserUnknown,
            )],
        );
        let _ = s
            .record_verdict(&EventContext::mailbox("mb", "1"), &hard, &rules)
            .await
            .unwrap();
        let change = s
            .unsubscribe("bob@example.com", None, "mailto")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(change.to, RecipientState::Bounced);
        assert_eq!(s.events(&filter).await.unwrap().len(), 2);
        // Reactivating the unsubscribed one is the operator's explicit undo.
        assert!(
            s.reactivate("ann@example.com", "cli")
                .await
                .unwrap()
                .is_ok()
        );
        assert!(
            s.unsubscribe("ann@example.com", None, "one-click")
                .await
                .unwrap()
                .is_some()
        );
    }

    on_both_backends!(store_reactivation_is_an_event_and_restarts_the_soft_count);
    async fn store_reactivation_is_an_event_and_restarts_the_soft_count(s: Store) {
        let rules = RulesConfig::default();
        let a = "back@example.net";
        let now = SystemTime::now();
        let before = |secs: u64, id: &str| EventContext {
            at: Some(now - Duration::from_secs(secs)),
            original_message_id: Some(id.into()),
            ..EventContext::smtp()
        };
        for (i, id) in ["m1@x", "m2@x", "m3@x"].into_iter().enumerate() {
            let _ = s
                .record_verdict(&before(600 - i as u64 * 60, id), &soft(a), &rules)
                .await
                .unwrap();
        }
        assert_eq!(
            s.recipient(a).await.unwrap().unwrap().state,
            RecipientState::Bounced
        );
        let change = s
            .reactivate("BACK@example.net", "cli")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (change.from, change.to),
            (RecipientState::Bounced, RecipientState::Active)
        );
        assert_eq!(
            s.reactivate(a, "cli").await.unwrap(),
            Err(Refusal::AlreadyActive)
        );
        assert_eq!(
            s.reactivate("nobody@example.net", "api").await.unwrap(),
            Err(Refusal::NotFound)
        );
        let r = s.recipient(a).await.unwrap().unwrap();
        assert_eq!((r.state, r.soft_count), (RecipientState::Active, 0));
        let ev = s
            .events(&EventFilter {
                kind: Some(EventKind::Reactivation),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].previous_state, Some(RecipientState::Bounced));
        assert_eq!(ev[0].source, "cli");
        assert_eq!(ev[0].recipient.as_deref(), Some(a));
        assert_eq!(
            serde_json::to_value(&ev[0]).unwrap()["kind"],
            "reactivation"
        );
        // The three earlier failures no longer count: two new ones leave her active.
        let after = |id: &str| EventContext {
            original_message_id: Some(id.into()),
            ..EventContext::smtp()
        };
        for id in ["n1@x", "n2@x"] {
            let out = s
                .record_verdict(&after(id), &soft(a), &rules)
                .await
                .unwrap();
            assert!(out.changes.is_empty(), "{id}");
        }
        let out = s
            .record_verdict(&after("n3@x"), &soft(a), &rules)
            .await
            .unwrap();
        assert_eq!(out.changes[0].to, RecipientState::Bounced);
    }

    on_both_backends!(store_correlated_send_books_one_record_with_aliases);
    async fn store_correlated_send_books_one_record_with_aliases(s: Store) {
        let rules = RulesConfig::default();
        // The report names the forwarding target (soft) and the real recipient (hard).
        let v = verdict(
            MessageKind::Bounce,
            vec![
                rv(
                    "forward@elsewhere.example",
                    Some(BounceClass::Soft),
                    "4.2.2",
                    Reason::MailboxFull,
                ),
                rv(
                    "Real@Example.com",
                    Some(BounceClass::Hard),
                    "5.1.1",
                    Reason::UserUnknown,
                ),
            ],
        );
        let ctx = EventContext {
            recipient: Some("real@example.com".into()),
            campaign_id: Some(3),
            ..EventContext::mailbox("mb", "1")
        };
        let out = s.record_verdict(&ctx, &v, &rules).await.unwrap();
        assert_eq!(out.events, 1);
        let ev = s.events(&EventFilter::default()).await.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].recipient.as_deref(), Some("real@example.com"));
        assert_eq!(ev[0].class, Some(BounceClass::Hard));
        assert_eq!(ev[0].aliases, vec!["forward@elsewhere.example".to_owned()]);
        assert!(
            s.recipient("forward@elsewhere.example")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            s.recipient("real@example.com")
                .await
                .unwrap()
                .unwrap()
                .state,
            RecipientState::Bounced
        );
        // No record matches the send's address: the most severe one is booked.
        let v = verdict(
            MessageKind::Bounce,
            vec![
                rv(
                    "a@elsewhere.example",
                    Some(BounceClass::Soft),
                    "4.2.2",
                    Reason::MailboxFull,
                ),
                rv(
                    "b@elsewhere.example",
                    Some(BounceClass::Hard),
                    "5.1.1",
                    Reason::UserUnknown,
                ),
            ],
        );
        let ctx = EventContext {
            recipient: Some("sent@example.com".into()),
            ..EventContext::mailbox("mb", "2")
        };
        let _ = s.record_verdict(&ctx, &v, &rules).await.unwrap();
        let ev = s
            .events(&EventFilter {
                recipient: Some("sent@example.com".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].class, Some(BounceClass::Hard));
        // The booked record's own address first, then the others.
        assert_eq!(
            ev[0].aliases,
            vec!["b@elsewhere.example", "a@elsewhere.example"]
        );
        assert_eq!(s.event_count().await.unwrap(), 2);
    }

    on_both_backends!(store_sender_alarm_compares_refusals_with_sends);
    async fn store_sender_alarm_compares_refusals_with_sends(s: Store) {
        let rules = RulesConfig::default();
        for i in 0..3 {
            let ctx = EventContext {
                original_message_id: Some(format!("m{i}@x")),
                ..EventContext::smtp()
            };
            let v = reply(
                &format!("u{i}@gmail.com"),
                550,
                "5.7.1 Our system has detected that this message is likely unsolicited mail. spam",
            );
            let _ = s.record_verdict(&ctx, &v, &rules).await.unwrap();
        }
        let alarms = s
            .sender_alarms(Duration::from_secs(3600), None)
            .await
            .unwrap();
        assert_eq!(alarms.len(), 1);
        assert_eq!(
            (
                alarms[0].domain.as_str(),
                alarms[0].refusals,
                alarms[0].sends
            ),
            ("gmail.com", 3, 0)
        );
        let text = alarms[0].to_string();
        assert!(
            text.starts_with("gmail.com: 3 message(s) refused as spam in the last hour"),
            "{text}"
        );
        let with_sends = SenderAlarm {
            sends: 8,
            ..alarms[0].clone()
        };
        assert_eq!(
            with_sends.to_string(),
            "gmail.com: 38 % of the last hour's sends refused as spam (3 of 8)"
        );
    }
}
