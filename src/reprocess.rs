//! Reprocessing the raw message archive: every archived message of a period goes
//! through the [inbound pipeline](crate::pipeline) again (detector, a policy chain,
//! correlation), exactly as the poller takes it, and what it would be booked as is compared with what its events say. The
//! dry run reports the differences, per message and recipient, with the state the
//! recipient would move to (booked in a transaction that is rolled back), and writes
//! nothing; [`apply`] books each message that
//! differs again ([`Store::rebook`]: the old events kept as superseded, the states
//! recomputed), so a second run finds nothing left to change.

use serde::Serialize;

use crate::config::RulesConfig;
use crate::pipeline::{self, Judged};
use std::sync::Arc;

use crate::policy::{PolicyChain, StateSession};
use crate::store::{
    self, Booking, EventContext, RecipientState, StateChange, Store, Timestamp, archive::Archived,
};
use crate::verdict::{Reason, Verdict};

/// Archived messages read per page.
const PAGE: u32 = 200;

/// How one recipient of one message was booked, and how it would be now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The archived message (its row id).
    pub archive_id: i64,
    /// Its mailbox.
    pub mailbox: String,
    /// Its UID.
    pub uid: String,
    /// When it was recorded.
    pub at: Timestamp,
    /// The recipient (empty: a record that names none).
    pub recipient: String,
    /// As its event says (`None`: no event for this recipient).
    pub before: Option<Booking>,
    /// As it would be booked now (`None`: no longer booked).
    pub after: Option<Booking>,
    /// The recipient's state now.
    pub state: RecipientState,
    /// The state booking the message anew moves it to (`None`: unchanged): its events
    /// replayed with this message's replaced, the soft rule and reactivations included.
    pub would_be: Option<RecipientState>,
}

/// What a dry run found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Archived messages read.
    pub messages: u64,
    /// Those whose bookings would change.
    pub changed: u64,
    /// Those the chain failed on (left out).
    pub failed: u64,
    /// The differences, in archive order.
    pub changes: Vec<Change>,
    /// Whether the changes were written ([`apply`]).
    pub applied: bool,
    /// The recipients whose state the changes move (moved with [`apply`], would move in
    /// a dry run).
    pub state_changes: Vec<StateChange>,
}

/// Reprocesses the messages archived since `since` with `chain`, changing nothing.
///
/// # Errors
/// [`store::Error`] from reading the archive, the events or a correlation lookup.
pub async fn dry_run(
    store: &Store,
    chain: &Arc<PolicyChain>,
    rules: &RulesConfig,
    since: Timestamp,
) -> store::Result<Report> {
    run(store, chain, rules, since, false).await
}

/// Reprocesses the messages archived since `since` with `chain` and books each one whose
/// bookings change again, one transaction per message: its old events are kept as
/// superseded, the new ones recorded at the message's time, and its recipients' states
/// follow from their events as they now stand. Idempotent: a second run with the same
/// chain finds nothing to change; an interrupted run leaves whole messages done or not.
///
/// # Errors
/// [`store::Error`] from reading the archive or writing a message's bookings (the
/// messages before it stay written).
pub async fn apply(
    store: &Store,
    chain: &Arc<PolicyChain>,
    rules: &RulesConfig,
    since: Timestamp,
) -> store::Result<Report> {
    run(store, chain, rules, since, true).await
}

async fn run(
    store: &Store,
    chain: &Arc<PolicyChain>,
    rules: &RulesConfig,
    since: Timestamp,
    write: bool,
) -> store::Result<Report> {
    let mut report = Report {
        applied: write,
        ..Report::default()
    };
    let mut after = 0;
    loop {
        let page = store.archived_page(since, after, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(report);
        };
        after = last.id;
        for m in &page {
            report.messages += 1;
            let Some(Compared {
                changes,
                ctx,
                verdict,
            }) = compare(store, chain, m).await?
            else {
                report.failed += 1;
                continue;
            };
            if changes.is_empty() {
                continue;
            }
            report.changed += 1;
            // The dry run books it too, in a transaction it rolls back: the states
            // shown are exactly what applying would leave.
            let moved = store.rebook(m, &ctx, &verdict, rules, write).await?;
            report.changes.extend(changes.into_iter().map(|mut c| {
                let key = store::address_key(&c.recipient);
                c.would_be = moved
                    .iter()
                    .find(|s| store::address_key(&s.address) == key)
                    .map(|s| s.to);
                c
            }));
            report.state_changes.extend(moved);
        }
    }
}

/// One message reprocessed: what changes, and what it would be booked from.
struct Compared {
    changes: Vec<Change>,
    ctx: EventContext,
    verdict: Verdict,
}

/// The changes of one message; `None` when the chain fails on it.
async fn compare(
    store: &Store,
    chain: &Arc<PolicyChain>,
    m: &Archived,
) -> store::Result<Option<Compared>> {
    // The policies read their state as it is, as of when the message came in; what they
    // write is dropped: the state already holds what this message did the first time.
    let state = StateSession::new(
        crate::policy::state::StoreBackend::for_store(store),
        m.at.to_system_time(),
    );
    let Judged {
        detection, verdict, ..
    } = match pipeline::judge(&m.raw, chain, &state).await {
        Ok(j) => j,
        Err(e) => {
            tracing::warn!(uid = %m.uid, "reprocess: the policy chain failed: {e}");
            return Ok(None);
        }
    };
    let events = store.events_of_message(m).await?;
    // Booked again as the source it came from (its events say which).
    let via = events.first().map_or(store::Inbound::Pop3, |e| {
        store::Inbound::of_source(&e.source)
    });
    let mut ctx = EventContext::new(store::Source::Mailbox {
        via,
        mailbox: m.mailbox.clone(),
        uid: m.uid.clone(),
    });
    ctx.at = Some(m.at.to_system_time());
    let ctx = pipeline::correlate(store, ctx, &detection).await?;
    let after = store::bookings(&ctx, &verdict);
    let before: Vec<Booking> = events
        .into_iter()
        .filter(|e| e.error.is_none())
        .filter_map(|e| {
            let store::EventKind::Message(kind) = e.kind else {
                return None;
            };
            Some(Booking {
                recipient: e.recipient.unwrap_or_default(),
                kind,
                class: e.class,
                reason: e
                    .reason
                    .as_deref()
                    .and_then(|r| r.parse().ok())
                    .unwrap_or(Reason::Undefined),
                blame: e.blame,
            })
        })
        .collect();
    let mut recipients: Vec<&str> = before
        .iter()
        .chain(&after)
        .map(|b| b.recipient.as_str())
        .collect();
    recipients.sort_unstable();
    recipients.dedup();
    let mut changes = Vec::new();
    for r in recipients {
        let old = before.iter().find(|b| b.recipient == r);
        let new = after.iter().find(|b| b.recipient == r);
        if old == new {
            continue;
        }
        let state = match r {
            "" => RecipientState::Active,
            _ => store
                .recipient(r)
                .await?
                .map_or(RecipientState::Active, |x| x.state),
        };
        changes.push(Change {
            archive_id: m.id,
            mailbox: m.mailbox.clone(),
            uid: m.uid.clone(),
            at: m.at,
            recipient: r.to_owned(),
            before: old.cloned(),
            after: new.cloned(),
            state,
            would_be: None,
        });
    }
    Ok(Some(Compared {
        changes,
        ctx,
        verdict,
    }))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::store::archive::RawMessage;
    use crate::store::on_both_backends;
    use crate::verdict::{BounceClass, Verdict};

    const DSN: &[u8] = b"From: MAILER-DAEMON@mx.example.net\r\nTo: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n\
Final-Recipient: rfc822; ann@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown\r\n\r\n\
--b--\r\n";

    /// Records `raw` as message `uid` of the mailbox with `verdict` (what an earlier
    /// detector or chain said), archived.
    async fn recorded(s: &Store, uid: &str, raw: &[u8], verdict: &Verdict) {
        let ctx = EventContext {
            raw: Some(RawMessage::compress(raw).unwrap()),
            ..EventContext::mailbox("bounces", uid)
        };
        let _ = s
            .record_verdict(&ctx, verdict, &RulesConfig::default())
            .await
            .unwrap();
    }

    on_both_backends!(apply_books_again_once_and_recomputes_the_state);
    async fn apply_books_again_once_and_recomputes_the_state(s: Store) {
        let rules = RulesConfig::default();
        // An earlier rule bounced ann hard for what was our own IP on a blocklist.
        let listed = String::from_utf8_lossy(DSN).replace(
            "550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown",
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        ).replace("Status: 5.1.1", "Status: 5.7.1");
        let now = crate::detector::detect(listed.as_bytes()).verdict;
        assert_eq!(
            now.recipients[0].blame,
            Some(crate::verdict::Blame::Sender),
            "{now:?}"
        );
        let wrong = Verdict::one_bounce(
            "ann@example.net",
            BounceClass::Hard,
            "5.1.1",
            Reason::UserUnknown,
            "failed",
        );
        recorded(&s, "1", listed.as_bytes(), &wrong).await;
        let ann = s.recipient("ann@example.net").await.unwrap().unwrap();
        assert_eq!((ann.state, ann.hard_count), (RecipientState::Bounced, 1));
        // A message recorded as the detector says now stays as it is.
        let other = String::from_utf8_lossy(DSN).replace("ann@", "cy@");
        let other = other.as_bytes();
        recorded(&s, "2", other, &crate::detector::detect(other).verdict).await;
        let events_before = s.event_count().await.unwrap();

        let since = Timestamp(Timestamp::now().0 - 60_000);
        let chain = Arc::new(PolicyChain::empty());
        // The dry run shows the way back too, and leaves her bounced.
        let dry = dry_run(&s, &chain, &rules, since).await.unwrap();
        assert_eq!(dry.changes.len(), 1, "{dry:?}");
        assert_eq!(dry.changes[0].state, RecipientState::Bounced);
        assert_eq!(dry.changes[0].would_be, Some(RecipientState::Active));
        let ann = s.recipient("ann@example.net").await.unwrap().unwrap();
        assert_eq!((ann.state, ann.hard_count), (RecipientState::Bounced, 1));
        assert_eq!(s.superseded_count().await.unwrap(), 0);

        let report = apply(&s, &chain, &rules, since).await.unwrap();
        assert_eq!((report.messages, report.changed, report.failed), (2, 1, 0));
        assert!(report.applied);
        assert_eq!(
            report.state_changes,
            vec![StateChange {
                address: "ann@example.net".into(),
                from: RecipientState::Bounced,
                to: RecipientState::Active,
            }]
        );
        // Counted again: the user-unknown is gone, the refusal counts as what it is.
        let ann = s.recipient("ann@example.net").await.unwrap().unwrap();
        let class = now.recipients[0].bounce;
        assert_eq!(
            (ann.state, ann.hard_count, ann.soft_count),
            (
                RecipientState::Active,
                i64::from(class == Some(BounceClass::Hard)),
                i64::from(class == Some(BounceClass::Soft))
            )
        );
        // One event replaced by one: the old one is kept aside, not counted.
        assert_eq!(s.event_count().await.unwrap(), events_before);
        let history = s
            .events(&crate::store::EventFilter {
                recipient: Some("ann@example.net".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].blame, Some(crate::verdict::Blame::Sender));
        assert_eq!(s.superseded_count().await.unwrap(), 1);
        let before = s.superseded_of("ANN@example.net").await.unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].event.reason.as_deref(), Some("user-unknown"));

        // Again: nothing left to change, nothing written.
        let again = apply(&s, &chain, &rules, since).await.unwrap();
        assert_eq!((again.messages, again.changed), (2, 0));
        assert!(again.state_changes.is_empty());
        assert_eq!(s.event_count().await.unwrap(), events_before);
        assert_eq!(s.superseded_count().await.unwrap(), 1);

        // The other way: a policy-free rebooking of a message an earlier rule let go
        // suppresses the recipient it now condemns.
        let missed = String::from_utf8_lossy(DSN).replace("ann@", "dee@");
        let earlier = Verdict::one_bounce(
            "dee@example.net",
            BounceClass::Soft,
            "4.0.0",
            Reason::Undefined,
            "failed",
        );
        recorded(&s, "3", missed.as_bytes(), &earlier).await;
        let report = apply(&s, &chain, &rules, since).await.unwrap();
        assert_eq!(report.changed, 1);
        let dee = s.recipient("dee@example.net").await.unwrap().unwrap();
        assert_eq!(
            (dee.state, dee.hard_count, dee.soft_count),
            (RecipientState::Bounced, 1, 0)
        );

        // A message from before a reactivation condemns no one: the operator's
        // reactivation came after it.
        let eve = String::from_utf8_lossy(DSN).replace("ann@", "eve@");
        let soft = Verdict::one_bounce(
            "eve@example.net",
            BounceClass::Soft,
            "4.0.0",
            Reason::Undefined,
            "failed",
        );
        recorded(&s, "5", eve.as_bytes(), &soft).await;
        let later = eve.replace("Not delivered.", "Still not delivered.");
        recorded(
            &s,
            "6",
            later.as_bytes(),
            &crate::detector::detect(later.as_bytes()).verdict,
        )
        .await;
        assert_eq!(
            s.recipient("eve@example.net").await.unwrap().unwrap().state,
            RecipientState::Bounced
        );
        s.reactivate("eve@example.net", "cli")
            .await
            .unwrap()
            .unwrap();
        let report = apply(&s, &chain, &rules, since).await.unwrap();
        assert_eq!(report.changed, 1, "{report:?}");
        assert!(report.state_changes.is_empty(), "{report:?}");
        assert_eq!(
            s.recipient("eve@example.net").await.unwrap().unwrap().state,
            RecipientState::Active
        );
    }

    on_both_backends!(apply_notifies_the_way_back_and_a_dry_run_nothing);
    async fn apply_notifies_the_way_back_and_a_dry_run_nothing(mut s: Store) {
        use crate::store::outbox::{NotifyEvent, Subscription};
        s.set_notify(vec![Subscription {
            endpoint: "hooks".into(),
            events: NotifyEvent::ALL.to_vec(),
        }]);
        let rules = RulesConfig::default();
        let listed = String::from_utf8_lossy(DSN).replace(
            "550 5.1.1 <ann@example.net>: Recipient address rejected: User unknown",
            "554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
        ).replace("Status: 5.1.1", "Status: 5.7.1");
        let wrong = Verdict::one_bounce(
            "ann@example.net",
            BounceClass::Hard,
            "5.1.1",
            Reason::UserUnknown,
            "failed",
        );
        recorded(&s, "1", listed.as_bytes(), &wrong).await;
        let events = |rows: Vec<crate::store::outbox::Entry>| -> Vec<String> {
            rows.into_iter().map(|r| r.event).collect()
        };
        assert_eq!(events(s.outbox_rows(0, 100).await.unwrap()), ["bounced"]);
        let since = Timestamp(Timestamp::now().0 - 60_000);
        let chain = Arc::new(PolicyChain::empty());
        let dry = dry_run(&s, &chain, &rules, since).await.unwrap();
        assert_eq!(dry.changes.len(), 1);
        // The dry run's transaction is rolled back: nothing is sent.
        assert_eq!(events(s.outbox_rows(0, 100).await.unwrap()), ["bounced"]);
        let report = apply(&s, &chain, &rules, since).await.unwrap();
        assert_eq!(report.state_changes.len(), 1);
        let rows = s.outbox_rows(0, 100).await.unwrap();
        assert_eq!(events(rows.clone()), ["bounced", "reactivated"]);
        let p: crate::store::outbox::Payload = serde_json::from_str(&rows[1].payload).unwrap();
        assert_eq!(
            (p.from, p.to, p.address.as_str()),
            (
                RecipientState::Bounced,
                RecipientState::Active,
                "ann@example.net"
            )
        );
    }

    on_both_backends!(dry_run_shows_what_the_detector_would_change);
    async fn dry_run_shows_what_the_detector_would_change(s: Store) {
        // Recorded as the detector says now: nothing to change.
        let now = crate::detector::detect(DSN).verdict;
        assert_eq!(now.recipients[0].bounce, Some(BounceClass::Hard));
        recorded(&s, "1", DSN, &now).await;
        // Recorded by an earlier rule as a soft "mailbox full" of another recipient.
        let earlier = Verdict::one_bounce(
            "bob@example.net",
            BounceClass::Soft,
            "4.2.2",
            Reason::MailboxFull,
            "failed",
        );
        let second = String::from_utf8_lossy(DSN).replace("ann@", "cy@");
        recorded(&s, "2", second.as_bytes(), &earlier).await;

        let since = Timestamp(Timestamp::now().0 - 60_000);
        let rules = RulesConfig::default();
        let report = dry_run(&s, &Arc::new(PolicyChain::empty()), &rules, since)
            .await
            .unwrap();
        assert_eq!((report.messages, report.changed, report.failed), (2, 1, 0));
        let c: Vec<(&str, Option<&Booking>, Option<&Booking>)> = report
            .changes
            .iter()
            .map(|c| (c.recipient.as_str(), c.before.as_ref(), c.after.as_ref()))
            .collect();
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].0, "bob@example.net");
        assert_eq!(c[0].1.map(|b| b.reason), Some(Reason::MailboxFull));
        assert!(c[0].2.is_none(), "no longer booked to bob");
        assert_eq!(c[1].0, "cy@example.net");
        assert!(c[1].1.is_none());
        assert_eq!(c[1].2.map(|b| b.class), Some(Some(BounceClass::Hard)));
        assert_eq!(report.changes[1].state, RecipientState::Active);
        assert_eq!(report.changes[1].would_be, Some(RecipientState::Bounced));
        // A dry run writes nothing.
        assert!(s.recipient("cy@example.net").await.unwrap().is_none());
        let later = Timestamp(Timestamp::now().0 + 1000);
        let none = dry_run(&s, &Arc::new(PolicyChain::empty()), &rules, later)
            .await
            .unwrap();
        assert_eq!(none.messages, 0);
    }
}
