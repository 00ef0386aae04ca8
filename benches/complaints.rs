//! The complaint-rate guard's cost at a normal list's size: a campaign of N accepted
//! sends (default 1 000 000) in the store, then complaints booked one transaction each —
//! about the campaign's messages (the guard counts the campaign's complaints and sends in
//! the transaction) and, for comparison in the same run, with no campaign (no guard) —
//! and what `rebound campaigns` (`campaign_counts`) and a `/metrics` scrape
//! (`complaint_gauges`) take over that campaign. The guard counts a campaign's sends only
//! up to where the rate is under the limits whatever the rest (1 000 per complaint at
//! 0.1 %); its worst case, a campaign at its warning level, counts them all: the last
//! figure.
//!
//! `cargo bench --bench complaints` (or `make bench`). `REBOUND_BENCH_SENDS=100000`
//! changes N; `REBOUND_BENCH_STORES=sqlite,postgres` (default) picks the stores: a SQLite
//! file, and a database of a private PostgreSQL cluster (tests/support/postgres.rs; its
//! rows are left out with a SKIPPED line without PostgreSQL).

// The support helpers each include support/skip.rs; the copies are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "../tests/support/postgres.rs"]
mod postgres;

use std::time::{Duration, Instant};

use rebound::config::RulesConfig;
use rebound::store::campaigns::NewCampaign;
use rebound::store::{EventContext, Store};
use rebound::verdict::{BUILTIN, MessageKind, Reason, RecipientVerdict, Verdict};

/// Complaints booked per kind (with the guard, without).
const COMPLAINTS: usize = 300;

fn complaint(address: &str) -> Verdict {
    Verdict {
        kind: MessageKind::Complaint,
        recipients: vec![RecipientVerdict::new(address.into(), Reason::Feedback)],
        decided_by: BUILTIN.into(),
    }
}

/// Books `COMPLAINTS` complaints about sends `from..` (their Message-IDs
/// `m{id}@example.org`), with the campaign (`Some`) or without; mean µs per complaint.
async fn book(store: &Store, campaign: Option<i64>, from: usize, first_id: i64) -> f64 {
    // The guard counts as always; it never pauses, so every size runs the same.
    let rules = RulesConfig {
        max_complaint_rate: 1.0,
        ..RulesConfig::default()
    };
    let t = Instant::now();
    for i in from..from + COMPLAINTS {
        let ctx = EventContext {
            campaign_id: campaign,
            original_message_id: Some(format!("m{}@example.org", first_id + i as i64)),
            ..EventContext::smtp()
        };
        let out = store
            .record_verdict(&ctx, &complaint(&format!("r{i}@example.net")), &rules)
            .await
            .unwrap();
        assert!(out.paused_campaigns.is_empty());
    }
    t.elapsed().as_secs_f64() * 1e6 / COMPLAINTS as f64
}

/// Best of three, in ms.
async fn best_ms<F, Fut>(mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        f().await;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

async fn run(label: &str, url: &str, n: usize) {
    let store = Store::open(url).await.unwrap();
    let t = Instant::now();
    let addrs = (0..n).map(|i| format!("r{i}@example.net"));
    let new = NewCampaign {
        name: "big".into(),
        from: "News <news@example.org>".into(),
        subject: "News".into(),
        text: Some("hi".into()),
        html: None,
    };
    let (c, queued) = store.create_campaign(&new, addrs).await.unwrap();
    assert_eq!(queued as usize, n);
    // Every send accepted, with a Message-ID, in one statement (the queue's path is
    // measured by benches/send.rs).
    sqlx::query(
        "UPDATE sends SET state = 'sent', sent_at = $2, \
         message_id = 'm' || CAST(id AS TEXT) || '@example.org' WHERE campaign_id = $1",
    )
    .bind(c.id)
    .bind(rebound::store::Timestamp::now().0)
    .execute(store.pool())
    .await
    .unwrap();
    if url.starts_with("postgres") {
        sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
    }
    let first_id: i64 = sqlx::query_scalar("SELECT MIN(id) FROM sends WHERE campaign_id = $1")
        .bind(c.id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    let setup = t.elapsed().as_secs_f64();

    // Alternate the two kinds, so that drift on a noisy machine hits both.
    let (mut guarded, mut plain) = (Vec::new(), Vec::new());
    for round in 0..2 {
        let base = round * 2 * COMPLAINTS;
        guarded.push(book(&store, Some(c.id), base, first_id).await);
        plain.push(book(&store, None, base + COMPLAINTS, first_id).await);
    }
    let counts = best_ms(|| async {
        let _ = store.campaign_counts().await.unwrap();
    })
    .await;
    let gauges = best_ms(|| async {
        let g = store
            .complaint_gauges(Duration::from_secs(86_400))
            .await
            .unwrap();
        assert_eq!(g[0].sent as usize, n);
    })
    .await;
    // What the guard counts at most (a campaign at its warning level): every accepted
    // send, from the index.
    let full = best_ms(|| async {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sends WHERE campaign_id = $1 AND state = 'sent'",
        )
        .bind(c.id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert!(n > 0);
    })
    .await;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "{label:<8} {n:>9} sends (set-up {setup:.0} s): complaint booked {:.0} µs with the guard \
         vs {:.0} µs without ({:.2}×; rounds {:?} / {:?}); campaign_counts {counts:.0} ms; \
         complaint_gauges {gauges:.0} ms; the guard's full count {full:.1} ms",
        mean(&guarded),
        mean(&plain),
        mean(&guarded) / mean(&plain),
        guarded.iter().map(|x| x.round()).collect::<Vec<_>>(),
        plain.iter().map(|x| x.round()).collect::<Vec<_>>(),
    );
    store.close().await;
}

fn main() {
    let n: usize = std::env::var("REBOUND_BENCH_SENDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let stores = std::env::var("REBOUND_BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    for s in stores.split(',').map(str::trim) {
        match s {
            "sqlite" => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
                rt.block_on(run("sqlite", &url, n));
            }
            "postgres" if postgres::available() => {
                let url = postgres::database();
                rt.block_on(run("postgres", &url, n));
            }
            "postgres" => eprintln!("SKIPPED: complaints bench on PostgreSQL: not installed"),
            other => panic!("REBOUND_BENCH_STORES: unknown store {other:?}"),
        }
    }
}
