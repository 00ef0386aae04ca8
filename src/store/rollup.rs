//! The dashboard overview: sends, hard and soft bounces, complaints and sender-side
//! refusals over time, by reason, by destination domain and by campaign, read from
//! counters that every write keeps in its own transaction (table `rollup`, schema 19),
//! so that an overview reads a few hundred rows whatever the number of events.
//!
//! * [`Tally::count_event`] counts an event: [`super::book_in`], the one place counted
//!   events are inserted, calls it with `+1`; code that takes an event back out of
//!   `events` (the reprocessing's supersede) calls it with the old event's facts and
//!   `-1`.
//! * [`Tally::count_sends`] counts sends as they become accepted (the checkpoint,
//!   `Store::checkpoint_*`), at the checkpoint's time, as `sent_at` records it.
//! * [`flush_in`] writes what a transaction counted, just before its commit.
//! * [`Store::overview`] reads them.
//!
//! What counts: a `bounce` event with a class is a sender refusal when blamed on the
//! `sender`, else (recipient, transit, unknown) hard or soft by its class, so a sender
//! refusal is never a recipient's bounce; a `complaint` event is a complaint; markers of
//! unparseable messages and other kinds count nothing. A delay warning is a soft bounce
//! event like any other (the overview counts events, not recipients). Migration 19
//! counts what a store held before, by the same rules, and the test
//! `rollup_backfill_equals_live_upkeep` keeps the two in step.
//!
//! Each event or send counts in its hour's total row and the hour and UTC day rows of
//! its campaign, destination domain and (bounces) reason; a transaction sums its counts
//! in memory ([`Tally`]) and writes each row it touched once, all in one statement,
//! before its commit (a group commit of 64 messages: one statement). A range's series
//! reads hour totals (720 rows for 30 days), its breakdowns day rows for the days wholly
//! inside and hour rows for the ragged ends (BENCHMARKS.md, "Dashboard overview").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use sqlx::Row;

use super::{Event, EventKind, EventRow, Result, Store, Timestamp, q, sql};
use crate::verdict::{Blame, BounceClass, MessageKind};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 86_400_000;

/// The buckets of an overview's series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    /// An hour.
    Hour,
    /// A UTC day.
    Day,
}

impl Bucket {
    /// The bucket's length in milliseconds.
    pub fn millis(self) -> i64 {
        match self {
            Bucket::Hour => HOUR,
            Bucket::Day => DAY,
        }
    }
}

/// What happened in a bucket, or to a domain or a campaign.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Campaign sends accepted by the server (`sent`, or maybe delivered).
    pub sends: u64,
    /// Hard bounces blamed on the recipient (or transit, or unknown).
    pub hard: u64,
    /// Soft bounces blamed on the recipient (or transit, or unknown).
    pub soft: u64,
    /// Complaints.
    pub complaints: u64,
    /// Bounces blamed on the sender (never among `hard` or `soft`).
    pub sender_refusals: u64,
}

impl Counts {
    /// Hard and soft bounces and sender refusals.
    pub fn failures(&self) -> u64 {
        self.hard + self.soft + self.sender_refusals
    }

    /// The five counts from columns `at`… of a row.
    fn from_row(row: &sqlx::any::AnyRow, at: usize) -> Result<Counts> {
        let n = |i: usize| -> Result<u64> {
            let v: i64 = row.try_get(at + i).map_err(q("reading rollup counts"))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        Ok(Counts {
            sends: n(0)?,
            hard: n(1)?,
            soft: n(2)?,
            complaints: n(3)?,
            sender_refusals: n(4)?,
        })
    }
}

/// The dashboard's overview of a time range ([`Store::overview`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overview {
    /// Bucket start and counts, ascending; empty buckets left out.
    pub series: Vec<(Timestamp, Counts)>,
    /// Bounces (hard, soft and sender refusals) by reason, most first (then by name),
    /// the first 12.
    pub by_reason: Vec<(String, u64)>,
    /// Destination domains by sends and failures (complaints not among them), most
    /// first (then by name), the first 20.
    pub by_domain: Vec<(String, Counts)>,
    /// Campaigns with activity in the range (id, name), newest (highest id) first, the
    /// first 20.
    pub by_campaign: Vec<(i64, String, Counts)>,
}

/// What the rollup reads of an event: where it falls and what it counts as.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventFacts<'a> {
    /// When it happened.
    pub(crate) at: Timestamp,
    /// The kind's name (`bounce`, `complaint`, …).
    pub(crate) kind: &'a str,
    /// Hard or soft.
    pub(crate) class: Option<BounceClass>,
    /// Whom it is about.
    pub(crate) blame: Option<Blame>,
    /// The reason's name.
    pub(crate) reason: Option<&'a str>,
    /// The recipient's domain.
    pub(crate) domain: Option<&'a str>,
    /// The campaign.
    pub(crate) campaign_id: Option<i64>,
    /// A marker of an unparseable message (counts nothing).
    pub(crate) marker: bool,
}

impl<'a> EventFacts<'a> {
    /// The facts of a stored event (one being taken back: delta −1). Its blame is as
    /// [`Event`] reads it (derived from the reason for events from before blame, as
    /// `backfill_blame` stores it).
    pub(crate) fn of_event(e: &'a Event) -> EventFacts<'a> {
        EventFacts {
            at: e.at,
            kind: e.kind.as_str(),
            class: e.class,
            blame: e.blame,
            reason: e.reason.as_deref(),
            domain: e.domain.as_deref(),
            campaign_id: e.campaign_id,
            marker: e.error.is_some(),
        }
    }

    /// The facts of a row being inserted.
    pub(super) fn of_row(e: &'a EventRow<'_>) -> EventFacts<'a> {
        EventFacts {
            at: e.at,
            kind: e.kind,
            class: e.class,
            blame: e.blame,
            reason: e.rec.map(|r| r.reason.as_str()),
            domain: e.domain,
            campaign_id: e.campaign_id,
            marker: e.error.is_some(),
        }
    }

    /// The signed counts of the event (`delta` each), or `None` when it counts nothing.
    fn tally(&self, delta: i64) -> Option<[i64; 5]> {
        if self.marker {
            return None;
        }
        let bounce = EventKind::Message(MessageKind::Bounce).as_str();
        let complaint = EventKind::Message(MessageKind::Complaint).as_str();
        // sends, hard, soft, complaints, sender refusals
        let mut d = [0; 5];
        if self.kind == bounce {
            let i = match (self.class?, self.blame) {
                (_, Some(Blame::Sender)) => 4,
                (BounceClass::Hard, _) => 1,
                (BounceClass::Soft, _) => 2,
            };
            d[i] = delta;
        } else if self.kind == complaint {
            d[3] = delta;
        } else {
            return None;
        }
        Some(d)
    }

    /// The reason key: bounces only.
    fn reason_key(&self) -> Option<&'a str> {
        (self.kind == EventKind::Message(MessageKind::Bounce).as_str())
            .then_some(self.reason)
            .flatten()
    }
}

/// Whether writes keep the rollup (always, but for the comparison in
/// benches/overview.rs).
static UPKEEP: AtomicBool = AtomicBool::new(true);

/// Turns the rollup's upkeep off or on for every store of the process. For
/// benches/overview.rs only, to measure what the upkeep costs a write: with it off the
/// overview no longer matches the events.
#[doc(hidden)]
pub fn set_upkeep(on: bool) {
    UPKEEP.store(on, Ordering::Relaxed);
}

/// Whether writes keep the rollup ([`set_upkeep`]).
pub(crate) fn upkeep() -> bool {
    UPKEEP.load(Ordering::Relaxed)
}

/// A rollup row's key, exactly as the table's primary key: dim, span, bucket,
/// campaign_id, domain, reason (0 and empty for no key, as in migration 19).
type RowKey = (i64, i64, i64, i64, String, String);

/// The rollup's signed deltas of one transaction, kept in memory: the counting adds
/// here ([`Tally::count_event`], [`Tally::count_sends`], [`Tally::blame_changed`]) and
/// [`flush_in`] writes every row at once, in one statement, just before the commit
/// (BENCHMARKS.md, "Dashboard overview"). Rows in key order, so that two transactions
/// lock the rows they share in the same order.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Sends, hard, soft, complaints, sender refusals, by row.
    rows: BTreeMap<RowKey, [i64; 5]>,
}

impl Tally {
    /// An empty tally.
    pub(crate) fn new() -> Tally {
        Tally::default()
    }

    /// Counts one event: `delta` is `1` for an event inserted, `-1` for one taken back
    /// out of `events` (for example superseded by reprocessing: pass
    /// [`EventFacts::of_event`] of the old row). Does nothing for an event that counts
    /// nothing.
    pub(crate) fn count_event(&mut self, e: &EventFacts<'_>, delta: i64) {
        if !upkeep() {
            return;
        }
        let Some(d) = e.tally(delta) else {
            return;
        };
        self.add(e.at, e.campaign_id, e.domain, e.reason_key(), d);
    }

    /// Moves an event's count from what `counted` says (an event from before blame,
    /// counted by migration 19 as the recipient's) to the blame `to` that
    /// `backfill_blame` gave it.
    pub(crate) fn blame_changed(&mut self, counted: &EventFacts<'_>, to: Blame) {
        self.count_event(counted, -1);
        self.count_event(
            &EventFacts {
                blame: Some(to),
                ..*counted
            },
            1,
        );
    }

    /// Counts sends that became accepted at `at` (the checkpoint's time): their campaign
    /// and destination domain, as [`sql::Sql::ROLLUP_ACCEPTING`] reads them.
    pub(crate) fn count_sends(&mut self, at: Timestamp, sends: &[(i64, Option<String>)]) {
        if !upkeep() {
            return;
        }
        for (campaign, domain) in sends {
            self.add(
                at,
                Some(*campaign),
                domain.as_deref(),
                None,
                [1, 0, 0, 0, 0],
            );
        }
    }

    /// Adds `d` to the hour's total row and the hour and day rows of each key given
    /// (campaign 0 and empty names are no key, as in migration 19).
    fn add(
        &mut self,
        at: Timestamp,
        campaign: Option<i64>,
        domain: Option<&str>,
        reason: Option<&str>,
        d: [i64; 5],
    ) {
        // `%` as SQL's (truncating), so that a row lands where migration 19 puts it.
        let hour = at.0 - at.0 % HOUR;
        let day = hour - hour % DAY;
        let mut row = |dim: i64, span: i64, campaign: i64, domain: &str, reason: &str| {
            let bucket = if span == HOUR { hour } else { day };
            let counts = self
                .rows
                .entry((dim, span, bucket, campaign, domain.into(), reason.into()))
                .or_default();
            for (c, d) in counts.iter_mut().zip(d) {
                *c += d;
            }
        };
        row(0, HOUR, 0, "", "");
        if let Some(c) = campaign.filter(|&c| c != 0) {
            row(1, HOUR, c, "", "");
            row(1, DAY, c, "", "");
        }
        if let Some(x) = domain.filter(|x| !x.is_empty()) {
            row(2, HOUR, 0, x, "");
            row(2, DAY, 0, x, "");
        }
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            row(3, HOUR, 0, "", r);
            row(3, DAY, 0, "", r);
        }
    }
}

/// Writes `tally`'s rows ([`sql::Sql::ROLLUP_FLUSH`]: one statement, rows in key order,
/// those whose deltas add up to nothing left out) and empties it; no statement when
/// there is nothing to write. Call it in the transaction that counted, just before its
/// commit.
///
/// # Errors
/// [`super::Error::Query`].
pub(crate) async fn flush_in(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tally: &mut Tally,
) -> Result<()> {
    let rows = std::mem::take(&mut tally.rows);
    let rows: Vec<_> = rows
        .iter()
        .filter(|(_, d)| d.iter().any(|&x| x != 0))
        .map(|((dim, span, bucket, campaign, domain, reason), d)| {
            (
                dim, span, bucket, campaign, domain, reason, d[0], d[1], d[2], d[3], d[4],
            )
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    sqlx::query(sql.ROLLUP_FLUSH)
        .bind(json)
        .execute(&mut **tx)
        .await
        .map_err(q("ROLLUP_FLUSH"))?;
    Ok(())
}

impl Store {
    /// The overview of the hours that start in `since` (rounded down to its hour) up to
    /// `until` (exclusive): the series in `bucket`s (UTC days for [`Bucket::Day`]; the
    /// first and last may hold only the range's part of the day), and the breakdowns
    /// by reason, destination domain and campaign over the whole range. Reads the
    /// rollup only; the four reads run side by side, each a consistent snapshot of its
    /// own.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn overview(
        &self,
        since: Timestamp,
        until: Timestamp,
        bucket: Bucket,
    ) -> Result<Overview> {
        let from = since.0 - since.0.rem_euclid(HOUR);
        let to = until.0;
        // Days wholly inside [from, to) come from day rows, the hours around them from
        // hour rows; a range within one day is hours only.
        let (mut first_day, mut end_day) = (
            from + (DAY - from.rem_euclid(DAY)) % DAY,
            to - to.rem_euclid(DAY),
        );
        if first_day >= end_day {
            (first_day, end_day) = (to, to);
        }
        let range = |statement: &'static str| {
            sqlx::query(statement)
                .bind(from)
                .bind(to)
                .bind(first_day)
                .bind(end_day)
                .fetch_all(self.pool())
        };
        let (series, reasons, domains, campaigns) = tokio::try_join!(
            async {
                sqlx::query(self.sql.OVERVIEW_SERIES)
                    .bind(from)
                    .bind(to)
                    .bind(bucket.millis())
                    .fetch_all(self.pool())
                    .await
                    .map_err(q("OVERVIEW_SERIES"))
            },
            async {
                range(self.sql.OVERVIEW_REASONS)
                    .await
                    .map_err(q("OVERVIEW_REASONS"))
            },
            async {
                range(self.sql.OVERVIEW_DOMAINS)
                    .await
                    .map_err(q("OVERVIEW_DOMAINS"))
            },
            async {
                range(self.sql.OVERVIEW_CAMPAIGNS)
                    .await
                    .map_err(q("OVERVIEW_CAMPAIGNS"))
            },
        )?;
        let g = q("reading the overview");
        let mut out = Overview::default();
        for row in &series {
            out.series.push((
                Timestamp(row.try_get(0).map_err(g)?),
                Counts::from_row(row, 1)?,
            ));
        }
        for row in &reasons {
            let n: i64 = row.try_get(1).map_err(g)?;
            out.by_reason
                .push((row.try_get(0).map_err(g)?, u64::try_from(n).unwrap_or(0)));
        }
        for row in &domains {
            out.by_domain
                .push((row.try_get(0).map_err(g)?, Counts::from_row(row, 1)?));
        }
        for row in &campaigns {
            out.by_campaign.push((
                row.try_get(0).map_err(g)?,
                row.try_get(1).map_err(g)?,
                Counts::from_row(row, 2)?,
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod test {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::config::RulesConfig;
    use crate::store::campaigns::{NewCampaign, SendState, SendUpdate};
    use crate::store::{Backend, EventContext, EventFilter};
    use crate::verdict::{BUILTIN, Reason, RecipientVerdict, Verdict};

    fn bounce(address: &str, class: BounceClass, reason: Reason, blame: Blame) -> RecipientVerdict {
        RecipientVerdict {
            bounce: Some(class),
            blame: Some(blame),
            action: Some("failed".into()),
            ..RecipientVerdict::new(address.into(), reason)
        }
    }

    async fn record(
        s: &Store,
        at: i64,
        campaign: Option<i64>,
        kind: MessageKind,
        rec: RecipientVerdict,
    ) {
        let ctx = EventContext {
            at: Some(UNIX_EPOCH + Duration::from_millis(u64::try_from(at).unwrap())),
            campaign_id: campaign,
            ..EventContext::smtp()
        };
        let v = Verdict {
            kind,
            recipients: vec![rec],
            decided_by: BUILTIN.into(),
        };
        let _booked = s
            .record_verdict(&ctx, &v, &RulesConfig::default())
            .await
            .unwrap();
    }

    async fn campaign(s: &Store, name: &str, addrs: &[&str]) -> i64 {
        let new = NewCampaign {
            name: name.into(),
            from: "n@example.org".into(),
            subject: "s".into(),
            text: Some("t".into()),
            html: None,
        };
        s.create_campaign(&new, addrs).await.unwrap().0.id
    }

    /// The known data: two campaigns (4 sends accepted in one checkpoint at hour `h`,
    /// one refused, which is no send), and events a day before and in hour `h` of every
    /// kind that counts and one that does not. Returns (the day-before time, `h`, the
    /// campaigns' ids).
    async fn fill(s: &Store) -> (i64, i64, i64, i64) {
        let a = campaign(
            s,
            "spring",
            &["a1@a.example", "a2@a.example", "b1@b.example"],
        )
        .await;
        let b = campaign(s, "summer", &["b2@b.example", "a3@a.example"]).await;
        let mut updates = Vec::new();
        for c in [a, b] {
            for x in s.claim_sends(c, 10).await.unwrap() {
                let refused = x.address == "a3@a.example";
                updates.push(SendUpdate {
                    id: x.id,
                    state: if refused {
                        SendState::Bounced
                    } else {
                        SendState::Sent
                    },
                    counted: true,
                    not_before: None,
                    message_id: Some(format!("m{}@example.org", x.id)),
                    verp_token: None,
                    code: Some(if refused { 550 } else { 250 }),
                    text: Some("ok".into()),
                });
            }
        }
        s.checkpoint_sends(&updates).await.unwrap();
        // Once more: rows already accepted are not counted again.
        s.checkpoint_sends(&updates).await.unwrap();
        let sent_at: i64 = sqlx::query_scalar("SELECT MAX(sent_at) FROM sends")
            .fetch_one(s.pool())
            .await
            .unwrap();
        let h = sent_at - sent_at % HOUR;
        let before = h - 25 * HOUR + 600_000;
        use {BounceClass::*, MessageKind::*};
        let rec = |addr, class, reason, blame| bounce(addr, class, reason, blame);
        record(
            s,
            before,
            Some(a),
            Bounce,
            rec("a1@a.example", Hard, Reason::UserUnknown, Blame::Recipient),
        )
        .await;
        record(
            s,
            before + 1,
            Some(a),
            Bounce,
            rec("b1@b.example", Soft, Reason::MailboxFull, Blame::Transit),
        )
        .await;
        record(
            s,
            h + 1,
            Some(b),
            Bounce,
            rec("b2@b.example", Hard, Reason::Blocked, Blame::Sender),
        )
        .await;
        record(
            s,
            h + 2,
            Some(a),
            Complaint,
            RecipientVerdict::new("a2@a.example".into(), Reason::Feedback),
        )
        .await;
        record(
            s,
            h + 3,
            None,
            Bounce,
            rec("x@c.example", Hard, Reason::UserUnknown, Blame::Unknown),
        )
        .await;
        record(
            s,
            h + 4,
            Some(a),
            AutoReply,
            RecipientVerdict::new("a1@a.example".into(), Reason::Vacation),
        )
        .await;
        (before, h, a, b)
    }

    fn counts(sends: u64, hard: u64, soft: u64, complaints: u64, sender_refusals: u64) -> Counts {
        Counts {
            sends,
            hard,
            soft,
            complaints,
            sender_refusals,
        }
    }

    on_both_backends!(rollup_overview_counts_each_kind);
    async fn rollup_overview_counts_each_kind(s: Store) {
        let (before, h, a, b) = fill(&s).await;
        let breakdowns = |o: &Overview| {
            (
                o.by_reason.clone(),
                o.by_domain.clone(),
                o.by_campaign.clone(),
            )
        };
        let expected = (
            vec![
                ("user-unknown".to_string(), 2),
                ("blocked".to_string(), 1),
                ("mailbox-full".to_string(), 1),
            ],
            vec![
                ("b.example".to_string(), counts(2, 0, 1, 0, 1)),
                ("a.example".to_string(), counts(2, 1, 0, 1, 0)),
                ("c.example".to_string(), counts(0, 1, 0, 0, 0)),
            ],
            vec![
                (b, "summer".to_string(), counts(1, 0, 0, 0, 1)),
                (a, "spring".to_string(), counts(3, 1, 1, 1, 0)),
            ],
        );
        // Three days ending after `h`: the day before's rows from day rows, `h`'s day
        // from hour rows.
        let since = Timestamp(h - 3 * DAY + 1);
        let until = Timestamp(h + HOUR);
        let hours = s.overview(since, until, Bucket::Hour).await.unwrap();
        assert_eq!(
            hours.series,
            vec![
                (Timestamp(before - before % HOUR), counts(0, 1, 1, 0, 0)),
                (Timestamp(h), counts(4, 1, 0, 1, 1)),
            ]
        );
        assert_eq!(breakdowns(&hours), expected);
        let days = s.overview(since, until, Bucket::Day).await.unwrap();
        assert_eq!(
            days.series,
            vec![
                (Timestamp(before - before % DAY), counts(0, 1, 1, 0, 0)),
                (Timestamp(h - h % DAY), counts(4, 1, 0, 1, 1)),
            ]
        );
        assert_eq!(breakdowns(&days), expected);

        // Hour `h` alone (a range inside one day), and a range with nothing.
        let one = s
            .overview(Timestamp(h), Timestamp(h + 1), Bucket::Hour)
            .await
            .unwrap();
        assert_eq!(one.series, vec![(Timestamp(h), counts(4, 1, 0, 1, 1))]);
        assert_eq!(
            one.by_reason,
            vec![("blocked".to_string(), 1), ("user-unknown".to_string(), 1)]
        );
        assert_eq!(
            one.by_campaign[1],
            (a, "spring".to_string(), counts(3, 0, 0, 1, 0))
        );
        let none = s
            .overview(Timestamp(h + HOUR), Timestamp(h + DAY), Bucket::Day)
            .await
            .unwrap();
        assert_eq!(none, Overview::default());
    }

    /// Every rollup row, in key order.
    async fn rows(s: &Store) -> Vec<(i64, i64, i64, i64, String, String, [i64; 5])> {
        sqlx::query(
            "SELECT dim, span, bucket, campaign_id, domain, reason, sends, hard, soft, complaints, \
             sender_refusals FROM rollup ORDER BY dim, span, bucket, campaign_id, domain, reason",
        )
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let c = |i| r.get::<i64, _>(i);
            (
                c(0),
                c(1),
                c(2),
                c(3),
                r.get(4),
                r.get(5),
                [c(6), c(7), c(8), c(9), c(10)],
            )
        })
        .collect()
    }

    on_both_backends!(rollup_backfill_equals_live_upkeep);
    async fn rollup_backfill_equals_live_upkeep(s: Store) {
        fill(&s).await;
        let live = rows(&s).await;
        // 1 + 2 × (2 campaigns + 3 domains + 3 reasons) a day before, as many in `h`'s
        // hour and day, less what the day before lacks (no sends: campaign b, no
        // complaint or blocked).
        assert!(live.len() > 20, "{live:?}");
        let migrations = match s.backend() {
            Backend::Sqlite => crate::store::MIGRATIONS,
            Backend::Postgres => crate::store::POSTGRES_MIGRATIONS,
        };
        let (_, _, migration) = migrations.iter().find(|m| m.0 == 19).unwrap();
        sqlx::raw_sql("DROP TABLE rollup")
            .execute(s.pool())
            .await
            .unwrap();
        sqlx::raw_sql(migration).execute(s.pool()).await.unwrap();
        assert_eq!(rows(&s).await, live);
    }

    on_both_backends!(rollup_follows_the_blame_an_old_event_is_given);
    async fn rollup_follows_the_blame_an_old_event_is_given(s: Store) {
        fill(&s).await;
        let live = rows(&s).await;
        // A store from before blame: migration 19 counts every failure as the
        // recipient's, then the blame backfill moves the sender's refusals.
        sqlx::raw_sql("UPDATE events SET blame = NULL")
            .execute(s.pool())
            .await
            .unwrap();
        let migrations = match s.backend() {
            Backend::Sqlite => crate::store::MIGRATIONS,
            Backend::Postgres => crate::store::POSTGRES_MIGRATIONS,
        };
        let (_, _, migration) = migrations.iter().find(|m| m.0 == 19).unwrap();
        sqlx::raw_sql("DROP TABLE rollup")
            .execute(s.pool())
            .await
            .unwrap();
        sqlx::raw_sql(migration).execute(s.pool()).await.unwrap();
        assert_ne!(rows(&s).await, live, "the refusal counted as a bounce");
        s.backfill_blame().await.unwrap();
        assert_eq!(rows(&s).await, live);
    }

    on_both_backends!(rollup_negative_delta_takes_an_event_back);
    async fn rollup_negative_delta_takes_an_event_back(s: Store) {
        let (_, h, _, b) = fill(&s).await;
        let all = s.events(&EventFilter::default()).await.unwrap();
        let refusal = all.iter().find(|e| e.blame == Some(Blame::Sender)).unwrap();
        let range = (Timestamp(h - 3 * DAY), Timestamp(h + HOUR));
        let before = s.overview(range.0, range.1, Bucket::Day).await.unwrap();
        let mut tx = s.begin().await.unwrap();
        let mut tally = Tally::new();
        tally.count_event(&EventFacts::of_event(refusal), -1);
        flush_in(s.sql, &mut tx, &mut tally).await.unwrap();
        tx.commit().await.unwrap();
        let after = s.overview(range.0, range.1, Bucket::Day).await.unwrap();
        assert_eq!(after.series[1].1, counts(4, 1, 0, 1, 0));
        assert!(
            after.by_reason.iter().all(|(r, _)| r != "blocked"),
            "{after:?}"
        );
        assert!(
            after
                .by_domain
                .contains(&("b.example".to_string(), counts(2, 0, 1, 0, 0))),
            "{after:?}"
        );
        assert_eq!(
            after.by_campaign[0],
            (b, "summer".to_string(), counts(1, 0, 0, 0, 0))
        );
        // And back.
        let mut tx = s.begin().await.unwrap();
        let mut tally = Tally::new();
        tally.count_event(&EventFacts::of_event(refusal), 1);
        flush_in(s.sql, &mut tx, &mut tally).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            s.overview(range.0, range.1, Bucket::Day).await.unwrap(),
            before
        );
    }

    on_both_backends!(rollup_tally_sums_a_key_once_and_nets_out);
    async fn rollup_tally_sums_a_key_once_and_nets_out(s: Store) {
        let (_, h, a, _) = fill(&s).await;
        let before = rows(&s).await;
        let facts = |at| EventFacts {
            at: Timestamp(at),
            kind: "bounce",
            class: Some(BounceClass::Hard),
            blame: Some(Blame::Recipient),
            reason: Some("user-unknown"),
            domain: Some("new.example"),
            campaign_id: Some(a),
            marker: false,
        };
        // +1 and −1 of an event net to nothing: no row written, not even a zero one.
        let mut tally = Tally::new();
        tally.count_event(&facts(h + 5), 1);
        tally.count_event(&facts(h + 5), -1);
        assert_eq!(tally.rows.len(), 7);
        let mut tx = s.begin().await.unwrap();
        flush_in(s.sql, &mut tx, &mut tally).await.unwrap();
        tx.commit().await.unwrap();
        assert!(tally.rows.is_empty());
        assert_eq!(rows(&s).await, before);
        // Three events of one hour (ten days on: rows of their own) with the same keys
        // and a send: one row each, with the sum.
        let hour = h + 10 * DAY;
        for at in [hour + 1, hour + 2, hour + 3] {
            tally.count_event(&facts(at), 1);
        }
        tally.count_sends(Timestamp(hour + 4), &[(a, Some("new.example".into()))]);
        assert_eq!(tally.rows.len(), 7);
        let mut tx = s.begin().await.unwrap();
        flush_in(s.sql, &mut tx, &mut tally).await.unwrap();
        tx.commit().await.unwrap();
        let after = rows(&s).await;
        let new: Vec<_> = after
            .iter()
            .filter(|r| !before.contains(r))
            .cloned()
            .collect();
        let day = hour - hour % DAY;
        let (both, bounces) = ([1, 3, 0, 0, 0], [0, 3, 0, 0, 0]);
        let row = |dim, span, bucket, c, d: &str, r: &str, n| {
            (dim, span, bucket, c, d.to_string(), r.to_string(), n)
        };
        let mut expected = vec![
            row(0, HOUR, hour, 0, "", "", both),
            row(1, HOUR, hour, a, "", "", both),
            row(1, DAY, day, a, "", "", both),
            row(2, HOUR, hour, 0, "new.example", "", both),
            row(2, DAY, day, 0, "new.example", "", both),
            row(3, HOUR, hour, 0, "", "user-unknown", bounces),
            row(3, DAY, day, 0, "", "user-unknown", bounces),
        ];
        expected.sort();
        assert_eq!(new, expected);
        assert_eq!(after.len(), before.len() + 7);
    }
}
