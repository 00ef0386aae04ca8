//! The outbox of event webhooks (table `outbox`, schema 20): the store side of
//! `[[notify]]`. What comes in is a recipient's [`StateChange`], inside the transaction
//! that made it; what goes out is one row per subscribed endpoint, claimed and marked by
//! the deliverer (`crate::notify::deliver`).
//!
//! * [`Store::set_notify`] tells the store which endpoints take which events. With none
//!   (the default) nothing is read or written: a store without webhooks pays nothing.
//! * `enqueue_in` writes the rows of a transaction's changes before its commit, so a
//!   committed change is delivered even after a crash and a rolled-back one sends
//!   nothing. The payload is rebound's JSON event ([`Payload`]); every row gets its own
//!   random idempotency key, sent with each attempt.
//! * [`Store::claim_outbox`], [`Store::outbox_delivered`], [`Store::outbox_failed`]: the
//!   deliverer's lease, success and retry (or death after `max_attempts`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::{RecipientState, Result, StateChange, Store, Timestamp, address_key, q, sql};

/// A state change an endpoint can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    /// The recipient became bounced (hard bounce, or soft bounces over the rule).
    Bounced,
    /// The recipient became complained (feedback report).
    Complained,
    /// The recipient became unsubscribed (link, `mailto:`, or a complaint under
    /// `complaint = "unsubscribe"`).
    Unsubscribed,
    /// The recipient became active again after being suppressed (reactivation through
    /// the API or CLI, or reprocessing that undid a bounce or complaint).
    Reactivated,
}

impl NotifyEvent {
    /// Every event, in the order listings show them.
    pub const ALL: &'static [NotifyEvent] = &[
        NotifyEvent::Bounced,
        NotifyEvent::Complained,
        NotifyEvent::Unsubscribed,
        NotifyEvent::Reactivated,
    ];

    /// The name in config, payloads and the outbox.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Bounced => "bounced",
            NotifyEvent::Complained => "complained",
            NotifyEvent::Unsubscribed => "unsubscribed",
            NotifyEvent::Reactivated => "reactivated",
        }
    }

    /// The event a change from `from` to `to` is: the suppressed state it enters, or
    /// `reactivated` for a suppressed recipient made active. `None` for no change.
    pub fn of_change(from: RecipientState, to: RecipientState) -> Option<NotifyEvent> {
        if from == to {
            return None;
        }
        Some(match to {
            RecipientState::Bounced => NotifyEvent::Bounced,
            RecipientState::Complained => NotifyEvent::Complained,
            RecipientState::Unsubscribed => NotifyEvent::Unsubscribed,
            RecipientState::Active => NotifyEvent::Reactivated,
        })
    }
}

impl std::fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotifyEvent {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        NotifyEvent::ALL
            .iter()
            .copied()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown notify event {s:?}"))
    }
}

/// One endpoint as the store sees it: its name and the events it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The endpoint's name (the outbox row's `endpoint`).
    pub endpoint: String,
    /// The events it takes.
    pub events: Vec<NotifyEvent>,
}

/// The store's webhook settings ([`Store::set_notify`]).
#[derive(Debug, Default)]
pub(crate) struct Notify {
    /// The endpoints; empty: nothing is enqueued.
    subscriptions: Vec<Subscription>,
    /// Woken after a commit that enqueued rows, so a deliverer of this process sends
    /// them at once instead of at its next look.
    pub(crate) added: tokio::sync::Notify,
}

impl Notify {
    /// Whether any endpoint takes `event`.
    fn wants(&self, event: NotifyEvent) -> bool {
        self.subscriptions.iter().any(|s| s.events.contains(&event))
    }
}

/// rebound's JSON event, the body of a `format = "rebound"` POST (and what a listmonk
/// body is made from). Fields without a value are left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// `bounced`, `complained`, `unsubscribed` or `reactivated`.
    pub event: NotifyEvent,
    /// The recipient's address.
    pub address: String,
    /// The state before.
    pub from: RecipientState,
    /// The state after.
    pub to: RecipientState,
    /// When the state changed (RFC 3339, UTC): the commit of the change.
    pub at: String,
    /// When the event that caused it happened (a bounce's message time, which may be
    /// much earlier for a message reprocessed), when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_at: Option<String>,
    /// The event (`GET /events`) whose booking changed the state: the recipient's latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<i64>,
    /// That event's kind (`bounce`, `complaint`, `unsubscribe`, `reactivation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `hard` or `soft`, for a bounce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// The bounce reason (Sisimai's names), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The SMTP enhanced status code, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The rebound campaign the message belonged to, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<i64>,
    /// Where the event came from (`pop3:…`, `api`, `cli`, `reprocess`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// Writes the outbox rows of `changes` in the caller's open transaction (before its
/// commit): for each change that is a [`NotifyEvent`], one row per endpoint that takes
/// it, with a payload naming the recipient's latest event. Returns the rows written.
/// Reads and writes nothing when no endpoint takes any of the events.
pub(crate) async fn enqueue_in(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    notify: &Notify,
    changes: &[StateChange],
) -> Result<usize> {
    let mut written = 0;
    for change in changes {
        let Some(event) = NotifyEvent::of_change(change.from, change.to) else {
            continue;
        };
        if !notify.wants(event) {
            continue;
        }
        let cause = sqlx::query(sql.OUTBOX_CAUSE)
            .bind(address_key(&change.address))
            .fetch_optional(&mut **tx)
            .await
            .map_err(q("OUTBOX_CAUSE"))?;
        let now = Timestamp::now();
        let mut payload = Payload {
            event,
            address: change.address.clone(),
            from: change.from,
            to: change.to,
            at: now.to_string(),
            event_at: None,
            event_id: None,
            kind: None,
            class: None,
            reason: None,
            status: None,
            campaign_id: None,
            source: None,
        };
        if let Some(row) = cause {
            let g = q("reading the change's event");
            payload.event_id = Some(row.try_get(0).map_err(g)?);
            payload.kind = Some(row.try_get(2).map_err(g)?);
            payload.class = row.try_get(3).map_err(g)?;
            payload.reason = row.try_get(4).map_err(g)?;
            payload.status = row.try_get(5).map_err(g)?;
            payload.campaign_id = row.try_get(6).map_err(g)?;
            payload.source = Some(row.try_get(7).map_err(g)?);
            payload.event_at = Some(Timestamp(row.try_get(1).map_err(g)?).to_string());
        }
        let body = serde_json::to_string(&payload).map_err(|e| super::Error::Query {
            what: "serialising a webhook payload",
            cause: sqlx::Error::Protocol(e.to_string()),
        })?;
        for s in notify
            .subscriptions
            .iter()
            .filter(|s| s.events.contains(&event))
        {
            sqlx::query(sql.INSERT_OUTBOX)
                .bind(&s.endpoint)
                .bind(event.as_str())
                .bind(&change.address)
                .bind(&body)
                .bind(idempotency_key())
                .bind(now.0)
                .execute(&mut **tx)
                .await
                .map_err(q("INSERT_OUTBOX"))?;
            written += 1;
        }
    }
    Ok(written)
}

/// A new idempotency key: 128 random bits in hex, stable for the row's every attempt.
fn idempotency_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A row claimed for delivery ([`Store::claim_outbox`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The row.
    pub id: i64,
    /// The endpoint's name.
    pub endpoint: String,
    /// The event.
    pub event: String,
    /// The recipient.
    pub address: String,
    /// rebound's JSON event ([`Payload`]).
    pub payload: String,
    /// The row's idempotency key.
    pub idempotency_key: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: Timestamp,
}

/// One outbox row as listed ([`Store::outbox_rows`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The row.
    pub id: i64,
    /// The endpoint's name.
    pub endpoint: String,
    /// The event.
    pub event: String,
    /// The recipient.
    pub address: String,
    /// rebound's JSON event.
    pub payload: String,
    /// The idempotency key.
    pub idempotency_key: String,
    /// Attempts made.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: Timestamp,
    /// When it is (or was) due next.
    pub next_at: Timestamp,
    /// When an attempt was answered 2xx.
    pub delivered_at: Option<Timestamp>,
    /// When it was given up after `max_attempts`.
    pub dead_at: Option<Timestamp>,
    /// The last failure.
    pub last_error: Option<String>,
}

/// An endpoint's rows by state ([`Store::outbox_status`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointStatus {
    /// The endpoint's name.
    pub endpoint: String,
    /// Rows not yet delivered (due now or later, or being sent).
    pub pending: u64,
    /// Rows given up after `max_attempts`.
    pub dead: u64,
    /// Rows delivered.
    pub delivered: u64,
    /// When the oldest pending row was enqueued.
    pub oldest_pending: Option<Timestamp>,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn names_json(endpoints: &[String]) -> String {
    serde_json::to_string(endpoints).unwrap_or_else(|_| "[]".into())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Sets the endpoints that get state changes (from `[[notify]]`, at start-up): from
    /// now on each recipient state change is enqueued in its own transaction for every
    /// endpoint that takes its event. An empty list (the default) turns enqueueing off.
    /// Affects this handle and its later clones.
    pub fn set_notify(&mut self, subscriptions: Vec<Subscription>) {
        self.notify = Arc::new(Notify {
            subscriptions: subscriptions
                .into_iter()
                .filter(|s| !s.events.is_empty())
                .collect(),
            added: tokio::sync::Notify::new(),
        });
    }

    /// Whether any endpoint is set ([`Store::set_notify`]).
    pub fn notifies(&self) -> bool {
        !self.notify.subscriptions.is_empty()
    }

    /// Resolves once after a commit of this process enqueued rows (or at once, when one
    /// did since the last call).
    pub async fn outbox_added(&self) {
        self.notify.added.notified().await;
    }

    /// [`enqueue_in`] with this store's endpoints; nothing at all when none is set.
    pub(crate) async fn enqueue_changes(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        changes: &[StateChange],
    ) -> Result<usize> {
        if self.notify.subscriptions.is_empty() || changes.is_empty() {
            return Ok(0);
        }
        enqueue_in(self.sql, tx, &self.notify, changes).await
    }

    /// Tells this process's deliverer that rows were committed.
    pub(crate) fn wake_deliverer(&self, enqueued: usize) {
        if enqueued > 0 {
            self.notify.added.notify_one();
        }
    }

    /// Claims for `owner` up to `limit` due rows of `endpoints` for `lease` (a row whose
    /// lease runs out is due again: its sender died or hung), oldest due first.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn claim_outbox(
        &self,
        owner: &str,
        endpoints: &[String],
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Claimed>> {
        let now = Timestamp::now();
        let mut tx = self.begin().await?;
        let rows = sqlx::query(self.sql.CLAIM_OUTBOX)
            .bind(now.0)
            .bind(owner)
            .bind(now.0.saturating_add(millis(lease)))
            .bind(names_json(endpoints))
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await
            .map_err(q("CLAIM_OUTBOX"))?;
        tx.commit().await.map_err(q("commit"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let g = q("reading claimed outbox rows");
            out.push(Claimed {
                id: row.try_get(0).map_err(g)?,
                endpoint: row.try_get(1).map_err(g)?,
                event: row.try_get(2).map_err(g)?,
                address: row.try_get(3).map_err(g)?,
                payload: row.try_get(4).map_err(g)?,
                idempotency_key: row.try_get(5).map_err(g)?,
                attempts: u32::try_from(row.try_get::<i64, _>(6).map_err(g)?).unwrap_or(0),
                created_at: Timestamp(row.try_get(7).map_err(g)?),
            });
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }

    /// Deletes the rows delivered before `before` (dead and pending rows stay); how many.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn prune_outbox(&self, before: Timestamp) -> Result<u64> {
        let done = sqlx::query(self.sql.PRUNE_OUTBOX)
            .bind(before.0)
            .execute(&self.pool)
            .await
            .map_err(q("PRUNE_OUTBOX"))?;
        Ok(done.rows_affected())
    }

    /// Row `id` was answered 2xx: delivered. `false` when it was delivered already (by
    /// another attempt whose lease had run out).
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn outbox_delivered(&self, id: i64) -> Result<bool> {
        let done = sqlx::query(self.sql.OUTBOX_DELIVERED)
            .bind(id)
            .bind(Timestamp::now().0)
            .execute(&self.pool)
            .await
            .map_err(q("OUTBOX_DELIVERED"))?;
        Ok(done.rows_affected() > 0)
    }

    /// `owner`'s attempt at row `id` failed with `error`: due again after `retry_in`,
    /// or dead when this was attempt `max_attempts`. `Some(true)` dead, `Some(false)`
    /// to be retried, `None` when the lease was lost meanwhile (nothing changed).
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn outbox_failed(
        &self,
        id: i64,
        owner: &str,
        retry_in: Duration,
        error: &str,
        max_attempts: u32,
    ) -> Result<Option<bool>> {
        let now = Timestamp::now();
        let dead: Option<Option<i64>> = sqlx::query_scalar(self.sql.OUTBOX_FAILED)
            .bind(id)
            .bind(owner)
            .bind(now.0.saturating_add(millis(retry_in)))
            .bind(error)
            .bind(i64::from(max_attempts))
            .bind(now.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(q("OUTBOX_FAILED"))?;
        Ok(dead.map(|d| d.is_some()))
    }

    /// When the next row of `endpoints` is due (its lease's end, for a row being sent);
    /// `None` when none waits.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn outbox_next_due(&self, endpoints: &[String]) -> Result<Option<Timestamp>> {
        let at: Option<i64> = sqlx::query_scalar(self.sql.OUTBOX_NEXT_DUE)
            .bind(names_json(endpoints))
            .fetch_one(&self.pool)
            .await
            .map_err(q("OUTBOX_NEXT_DUE"))?;
        Ok(at.map(Timestamp))
    }

    /// Every endpoint's rows by state, by name.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn outbox_status(&self) -> Result<Vec<EndpointStatus>> {
        let rows = sqlx::query(self.sql.OUTBOX_STATUS)
            .fetch_all(&self.pool)
            .await
            .map_err(q("OUTBOX_STATUS"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let g = q("reading the outbox status");
            out.push(EndpointStatus {
                endpoint: row.try_get(0).map_err(g)?,
                pending: count(row.try_get(1).map_err(g)?),
                dead: count(row.try_get(2).map_err(g)?),
                delivered: count(row.try_get(3).map_err(g)?),
                oldest_pending: row.try_get::<Option<i64>, _>(4).map_err(g)?.map(Timestamp),
            });
        }
        Ok(out)
    }

    /// Up to `limit` outbox rows after id `after`, in id order.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn outbox_rows(&self, after: i64, limit: u32) -> Result<Vec<Entry>> {
        let rows = sqlx::query(self.sql.OUTBOX_ROWS)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(q("OUTBOX_ROWS"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let g = q("reading outbox rows");
            out.push(Entry {
                id: row.try_get(0).map_err(g)?,
                endpoint: row.try_get(1).map_err(g)?,
                event: row.try_get(2).map_err(g)?,
                address: row.try_get(3).map_err(g)?,
                payload: row.try_get(4).map_err(g)?,
                idempotency_key: row.try_get(5).map_err(g)?,
                attempts: u32::try_from(row.try_get::<i64, _>(6).map_err(g)?).unwrap_or(0),
                created_at: Timestamp(row.try_get(7).map_err(g)?),
                next_at: Timestamp(row.try_get(8).map_err(g)?),
                delivered_at: row.try_get::<Option<i64>, _>(9).map_err(g)?.map(Timestamp),
                dead_at: row.try_get::<Option<i64>, _>(10).map_err(g)?.map(Timestamp),
                last_error: row.try_get(11).map_err(g)?,
            });
        }
        Ok(out)
    }

    /// Gives `endpoint`'s dead rows a fresh set of attempts, due now. Returns how many.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn outbox_retry_dead(&self, endpoint: &str) -> Result<u64> {
        let done = sqlx::query(self.sql.OUTBOX_RETRY_DEAD)
            .bind(endpoint)
            .bind(Timestamp::now().0)
            .execute(&self.pool)
            .await
            .map_err(q("OUTBOX_RETRY_DEAD"))?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::RulesConfig;
    use crate::store::EventContext;
    use crate::verdict::{Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

    fn hard(address: &str) -> Verdict {
        Verdict {
            kind: MessageKind::Bounce,
            recipients: vec![RecipientVerdict {
                address: address.into(),
                bounce: Some(BounceClass::Hard),
                status: Some("5.1.1".into()),
                reason: Reason::UserUnknown,
                blame: Some(Blame::Recipient),
                diagnostic: Some("550 5.1.1 no such user".into()),
                action: Some("failed".into()),
                remote_mta: None,
                feedback_type: None,
                aliases: Vec::new(),
            }],
            decided_by: crate::verdict::BUILTIN.into(),
        }
    }

    fn subs() -> Vec<Subscription> {
        vec![
            Subscription {
                endpoint: "all".into(),
                events: NotifyEvent::ALL.to_vec(),
            },
            Subscription {
                endpoint: "bounces".into(),
                events: vec![NotifyEvent::Bounced],
            },
            Subscription {
                endpoint: "complaints".into(),
                events: vec![NotifyEvent::Complained],
            },
        ]
    }

    async fn rows(s: &Store) -> Vec<Entry> {
        s.outbox_rows(0, 1000).await.unwrap()
    }

    on_both_backends!(outbox_bounce_enqueues_one_row_per_subscribed_endpoint);
    async fn outbox_bounce_enqueues_one_row_per_subscribed_endpoint(mut s: Store) {
        s.set_notify(subs());
        let rules = RulesConfig::default();
        let ctx = EventContext::mailbox("bounces@example.org", "0001");
        let out = s
            .record_verdict(&ctx, &hard("Kijitora@Example.COM"), &rules)
            .await
            .unwrap();
        assert_eq!(out.changes.len(), 1);
        let r = rows(&s).await;
        let endpoints: Vec<&str> = r.iter().map(|e| e.endpoint.as_str()).collect();
        assert_eq!(
            endpoints,
            ["all", "bounces"],
            "one row per subscribed endpoint"
        );
        assert_ne!(r[0].idempotency_key, r[1].idempotency_key);
        let p: Payload = serde_json::from_str(&r[0].payload).unwrap();
        assert_eq!(p.event, NotifyEvent::Bounced);
        assert_eq!(p.address, "Kijitora@example.com");
        assert_eq!(
            (p.from, p.to),
            (RecipientState::Active, RecipientState::Bounced)
        );
        assert_eq!(p.class.as_deref(), Some("hard"));
        assert_eq!(p.reason.as_deref(), Some("user-unknown"));
        assert_eq!(p.status.as_deref(), Some("5.1.1"));
        let events = s
            .events(&crate::store::EventFilter::default())
            .await
            .unwrap();
        assert_eq!(p.event_id, Some(events[0].id));
        assert!(
            r.iter()
                .all(|e| e.delivered_at.is_none() && e.attempts == 0)
        );

        // The same message again is a duplicate: nothing is booked, nothing enqueued.
        let again = s
            .record_verdict(&ctx, &hard("kijitora@example.com"), &rules)
            .await
            .unwrap();
        assert!(again.duplicate);
        // Another bounce of a recipient bounced already changes nothing either.
        let other = EventContext::mailbox("bounces@example.org", "0002");
        let _ = s
            .record_verdict(&other, &hard("kijitora@example.com"), &rules)
            .await
            .unwrap();
        assert_eq!(rows(&s).await.len(), 2);

        // Reactivation and unsubscribe: only the endpoint that takes every event.
        s.reactivate("kijitora@example.com", "api")
            .await
            .unwrap()
            .unwrap();
        s.unsubscribe("kijitora@example.com", None, "api")
            .await
            .unwrap()
            .unwrap();
        let r = rows(&s).await;
        let tail: Vec<(&str, &str)> = r[2..]
            .iter()
            .map(|e| (e.endpoint.as_str(), e.event.as_str()))
            .collect();
        assert_eq!(tail, [("all", "reactivated"), ("all", "unsubscribed")]);
        let status = s.outbox_status().await.unwrap();
        assert_eq!(status.len(), 2);
        assert_eq!((status[0].endpoint.as_str(), status[0].pending), ("all", 3));
        assert_eq!(
            (status[1].endpoint.as_str(), status[1].pending),
            ("bounces", 1)
        );
    }

    on_both_backends!(outbox_without_notify_writes_nothing);
    async fn outbox_without_notify_writes_nothing(s: Store) {
        assert!(!s.notifies());
        let rules = RulesConfig::default();
        let out = s
            .record_verdict(&EventContext::smtp(), &hard("a@example.org"), &rules)
            .await
            .unwrap();
        assert_eq!(out.changes.len(), 1);
        s.reactivate("a@example.org", "cli").await.unwrap().unwrap();
        assert!(rows(&s).await.is_empty());
        assert!(s.outbox_status().await.unwrap().is_empty());
    }

    on_both_backends!(outbox_group_commit_enqueues_each_change);
    async fn outbox_group_commit_enqueues_each_change(mut s: Store) {
        s.set_notify(subs()[1..].to_vec());
        let items: Vec<(EventContext, Verdict)> = (0..5)
            .map(|i| {
                (
                    EventContext::mailbox("bounces@example.org", format!("u{i}")),
                    hard(&format!("r{i}@example.org")),
                )
            })
            .collect();
        let _ = s
            .record_verdicts(&items, &RulesConfig::default())
            .await
            .unwrap();
        let r = rows(&s).await;
        assert_eq!(r.len(), 5);
        assert!(
            r.iter()
                .all(|e| e.endpoint == "bounces" && e.event == "bounced")
        );
    }

    on_both_backends!(outbox_claims_delivers_retries_and_gives_up);
    async fn outbox_claims_delivers_retries_and_gives_up(mut s: Store) {
        s.set_notify(subs()[..1].to_vec());
        let rules = RulesConfig::default();
        for i in 0..3 {
            let _ = s
                .record_verdict(
                    &EventContext::smtp(),
                    &hard(&format!("r{i}@example.org")),
                    &rules,
                )
                .await
                .unwrap();
        }
        let names = vec!["all".to_owned()];
        let lease = Duration::from_secs(60);
        let a = s.claim_outbox("a", &names, lease, 2).await.unwrap();
        assert_eq!(a.len(), 2);
        // Leased rows are not claimed again; only the third is left.
        let b = s.claim_outbox("b", &names, lease, 10).await.unwrap();
        assert_eq!(b.len(), 1);
        assert!(a.iter().all(|r| r.id != b[0].id));
        assert!(
            s.claim_outbox("c", &names, lease, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Rows of endpoints not asked for are not claimed.
        assert!(
            s.claim_outbox("d", &["other".to_owned()], lease, 10)
                .await
                .unwrap()
                .is_empty()
        );

        assert!(s.outbox_delivered(a[0].id).await.unwrap());
        assert!(
            !s.outbox_delivered(a[0].id).await.unwrap(),
            "delivered once"
        );
        // A failure of another owner's lease changes nothing.
        assert_eq!(
            s.outbox_failed(a[1].id, "b", Duration::ZERO, "x", 3)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.outbox_failed(a[1].id, "a", Duration::ZERO, "HTTP 500", 2)
                .await
                .unwrap(),
            Some(false)
        );
        let again = s.claim_outbox("a", &names, lease, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id, again[0].attempts), (a[1].id, 1));
        assert_eq!(
            s.outbox_failed(a[1].id, "a", Duration::ZERO, "HTTP 500", 2)
                .await
                .unwrap(),
            Some(true),
            "dead after max_attempts"
        );
        assert!(
            s.claim_outbox("a", &names, lease, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // b's row, retried far in the future, is not due; next_due says when.
        assert_eq!(
            s.outbox_failed(b[0].id, "b", Duration::from_secs(3600), "timeout", 5)
                .await
                .unwrap(),
            Some(false)
        );
        let due = s.outbox_next_due(&names).await.unwrap().unwrap();
        assert!(due.0 > Timestamp::now().0 + 3_000_000);
        let st = &s.outbox_status().await.unwrap()[0];
        assert_eq!((st.pending, st.dead, st.delivered), (1, 1, 1));
        let dead = rows(&s)
            .await
            .into_iter()
            .find(|e| e.dead_at.is_some())
            .unwrap();
        assert_eq!(
            (dead.attempts, dead.last_error.as_deref()),
            (2, Some("HTTP 500"))
        );
        assert_eq!(s.outbox_retry_dead("all").await.unwrap(), 1);
        // A lease that runs out makes its row due again (its sender died or hung).
        let short = s
            .claim_outbox("a", &names, Duration::ZERO, 10)
            .await
            .unwrap();
        assert_eq!(short.len(), 1);
        let taken = s.claim_outbox("e", &names, lease, 10).await.unwrap();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].id, short[0].id);

        // Pruning takes the delivered row only, and only once it is old enough.
        assert_eq!(s.prune_outbox(Timestamp(0)).await.unwrap(), 0);
        let later = Timestamp(Timestamp::now().0 + 1_000);
        assert_eq!(s.prune_outbox(later).await.unwrap(), 1);
        let st = &s.outbox_status().await.unwrap()[0];
        assert_eq!(st.delivered, 0);
        assert_eq!(rows(&s).await.len(), 2, "pending and leased rows stay");
    }
}
