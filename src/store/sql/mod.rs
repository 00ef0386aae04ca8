//! Every SQL statement of the store, one module per dialect: [`sqlite`] (the embedded
//! default) and [`postgres`] (several hosts on one database). No SQL lives outside
//! `src/store/sql/`. Each dialect defines the same named statements; [`Sql`] holds one
//! dialect's set, chosen when the store opens, and the store's code names a statement
//! as `self.sql.NAME`.
//!
//! Placeholders are `$1`, `$2`, … in both; values are bound as 64-bit integers, text or
//! NULL only (what sqlx's `Any` driver carries to both), and every column read back is
//! one of those (PostgreSQL statements cast what would be `bool` or `numeric`).
//!
//! [`Sql::all`] lists every statement so a test (and `Store::check_queries`) can prepare
//! each one against the migrated schema; the statements built at run time (the events
//! listing, one per combination of filters; the grouped send update, one per group size)
//! are prepared for each of [`EventFilters::all`] and for a few sizes.

/// The columns of an event row, in the order `Event::from_row` reads them.
macro_rules! event_columns {
    () => {
        "SELECT e.id, e.at, e.source, e.mailbox, e.uid, e.recipient, e.kind, e.class, \
         e.status, e.reason, e.diagnostic, e.decided_by, e.original_message_id, e.campaign_id, e.error, \
         e.blame, e.action, e.domain, e.aliases, e.previous_state FROM events e "
    };
}

pub mod postgres;
pub mod sqlite;

/// Parameters of one row of a dialect's `update_sends`.
pub const UPDATE_SENDS_ROW: usize = 10;

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

/// The events listing both dialects share: the filters set, each one `AND` with its
/// placeholder (`$1`, `$2`, … in the order recipient key, kind, mailbox, campaign id,
/// since), then the cursor and the limit, whose clause the dialect writes from the
/// limit's placeholder number.
fn events_query(f: EventFilters, limit_clause: impl Fn(usize) -> String) -> String {
    let mut sql = String::from(concat!(event_columns!(), "WHERE "));
    let mut n = 0;
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
            n += 1;
            sql.push_str(&condition.replace("$N", &format!("${n}")));
            sql.push_str(" AND ");
        }
    }
    let (after, limit) = (n + 1, n + 2);
    sql.push_str(&format!(
        "e.id > ${after} ORDER BY e.id {}",
        limit_clause(limit)
    ));
    sql
}

/// Declares [`Sql`] with one `&'static str` per named statement, and the two dialects'
/// sets, so that a statement missing from a dialect does not compile.
macro_rules! statements {
    ($($name:ident,)*) => {
        /// One dialect's statements.
        #[allow(non_snake_case)]
        #[derive(Debug)]
        pub struct Sql {
            /// The dialect's name, for messages.
            pub dialect: &'static str,
            $(#[doc = concat!("`", stringify!($name), "`")] pub $name: &'static str,)*
            /// Events by id after a cursor, for a combination of filters.
            pub select_events: fn(EventFilters) -> String,
            /// `rows` send results written in one statement.
            pub update_sends: fn(usize) -> String,
        }

        /// SQLite's statements.
        pub static SQLITE: Sql = Sql {
            dialect: "sqlite",
            $($name: sqlite::$name,)*
            select_events: sqlite::select_events,
            update_sends: sqlite::update_sends,
        };

        /// PostgreSQL's statements.
        pub static POSTGRES: Sql = Sql {
            dialect: "postgres",
            $($name: postgres::$name,)*
            select_events: postgres::select_events,
            update_sends: postgres::update_sends,
        };

        impl Sql {
            /// Every named statement with its name.
            pub fn all(&self) -> Vec<(&'static str, &'static str)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

statements! {
    LEDGER_CONTAINS,
    LEDGER_ENTRY,
    LEDGER_ENTRIES,
    INSERT_LEDGER,
    LEDGER_ADOPT_SIZES,
    LEDGER_ALIAS,
    PUT_IMAP_DIGEST,
    IMAP_DIGEST_RECORDED,
    COUNT_LEDGER,
    RECORD_FETCH_FAILURE,
    FETCH_FAILURES,
    MARK_QUARANTINED,
    MAILBOX_FETCH_FAILURES,
    PRUNE_FETCH_FAILURES,
    QUARANTINED,
    RELEASE_QUARANTINED,
    RELEASE_ALL_QUARANTINED,
    UPSERT_RECIPIENT,
    RECIPIENT_ID_BY_KEY,
    LOCK_RECIPIENT_BY_KEY,
    COUNT_HARD_BOUNCE,
    COUNT_SOFT_BOUNCE,
    COUNT_COMPLAINT,
    SOFT_EVENTS_SINCE,
    REACTIVATE_RECIPIENT,
    EVENTS_WITHOUT_BLAME,
    SET_EVENT_BLAME,
    LOCK_DOMAIN_PAUSE,
    CAMPAIGN_DOMAIN_REFUSALS,
    CAMPAIGN_DOMAIN_SENDS,
    PAUSE_UNTIL,
    UPSERT_PAUSE,
    SENDER_REFUSALS_SINCE,
    SENDS_BY_DOMAIN_SINCE,
    SET_RECIPIENT_STATE,
    INSERT_EVENT,
    SELECT_RECIPIENT,
    SELECT_RECIPIENTS,
    SELECT_RECIPIENTS_IN_STATE,
    COUNT_RECIPIENTS_BY_STATE,
    COUNT_EVENTS,
    COUNT_SUPERSEDED,
    SUPERSEDED_OF_RECIPIENT,
    SELECT_CAMPAIGN_BY_NAME,
    SELECT_CAMPAIGN_BY_ID,
    INSERT_CAMPAIGN,
    INSERT_SENDS,
    SET_ENQUEUED,
    RESET_CLAIMED,
    PRUNE_RUNNERS,
    JOIN_RUNNER,
    SELECT_RUNNERS,
    HEARTBEAT_RUNNER,
    EXTEND_LEASES,
    RELEASE_RUNNER,
    TAKE_LEASE,
    TAKE_LEASE_FROM,
    SELECT_LEASE,
    RENEW_LEASE,
    RELEASE_LEASE,
    SELECT_POLICY_CHAIN,
    POLICY_CHAIN_VERSION,
    INSERT_POLICY_CHAIN,
    UPDATE_POLICY_CHAIN,
    INSERT_POLICY_MODULE,
    SELECT_POLICY_MODULE,
    IMPORT_SUBSCRIBERS,
    COUNT_KNOWN_KEYS,
    LOCK_RATES,
    INSERT_RATE,
    SELECT_RATE,
    UPDATE_RATE,
    PRUNE_WINDOW,
    RELEASE_WINDOW,
    NEWEST_IN_WINDOW,
    WINDOW_TIMES,
    INSERT_WINDOW,
    SELECT_PAUSE,
    RECORD_PAUSE,
    SET_CAMPAIGN_STATE,
    CLAIM_SENDS,
    SKIP_CLAIMED_UNMAILABLE,
    SKIP_UNMAILABLE,
    LAST_SENT_AT,
    SENT_SINCE,
    OPEN_SENDS,
    SELECT_PAUSES,
    RESUME_PAUSES,
    CAMPAIGN_DOMAIN_COUNTS,
    CAMPAIGN_DOMAIN_COMPLAINTS,
    CAMPAIGN_COMPLAINTS_SINCE,
    CAMPAIGN_SENT_UP_TO,
    CAMPAIGN_SENT_SINCE_UP_TO,
    CAMPAIGN_GUARD_STATE,
    PAUSE_CAMPAIGN,
    RESUME_CAMPAIGN,
    CAMPAIGN_COMPLAINT_GAUGES,
    SELECT_SEND,
    SELECT_SENDS,
    CAMPAIGN_COUNTS,
    INSERT_RAW,
    RAW_OF_EVENT,
    RAW_OF_MESSAGE,
    PRUNE_RAW,
    ARCHIVE_STATS,
    ARCHIVE_PAGE,
    EVENTS_OF_MESSAGE,
    ROLLUP_FLUSH,
    ROLLUP_ACCEPTING,
    OVERVIEW_SERIES,
    OVERVIEW_REASONS,
    OVERVIEW_DOMAINS,
    OVERVIEW_CAMPAIGNS,
    LOCK_MESSAGE,
    SUPERSEDE_COPY,
    SUPERSEDE_DELETE,
    MESSAGE_RECIPIENT_IDS,
    REPLAY_EVENTS,
    RECOUNT_RECIPIENT,
    OUTBOX_CAUSE,
    INSERT_OUTBOX,
    CLAIM_OUTBOX,
    OUTBOX_DELIVERED,
    OUTBOX_FAILED,
    OUTBOX_NEXT_DUE,
    OUTBOX_STATUS,
    OUTBOX_ROWS,
    OUTBOX_RETRY_DEAD,
    PRUNE_OUTBOX,
    WEBHOOK_TOKEN_CLAIM,
    WEBHOOK_TOKEN_DIGEST,
    PRUNE_WEBHOOK_TOKENS,
    POLICY_STATE_GET,
    POLICY_STATE_INSERT,
    POLICY_STATE_UPDATE,
    POLICY_STATE_DELETE,
    POLICY_STATE_USAGE_ADD,
    POLICY_STATE_KEYS,
    POLICY_STATE_ENTRIES,
    CLEAR_POLICY_STATE,
    PRUNE_POLICY_STATE,
}
