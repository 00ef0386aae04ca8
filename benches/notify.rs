//! Event webhooks benchmark, on a SQLite file store (`synchronous = FULL`, as in
//! production):
//!
//! 1. The booking cost per bounce with the outbox off (no `[[notify]]`) and on (one
//!    endpoint taking every event; then three): `REBOUND_BENCH_BOUNCES` (default 5 000)
//!    hard bounces of distinct recipients, each one state change, booked in the poller's
//!    group commits of 64 messages (`record_verdicts`), each setting in a fresh store,
//!    the settings alternated over `REBOUND_BENCH_ROUNDS` (default 3) rounds; the median.
//! 2. Draining the outbox: `REBOUND_BENCH_EVENTS` (default 10 000) rows delivered by one
//!    [`Deliverer`] to a receiver on loopback (tests/support/hooks.rs: signatures
//!    checked) that fails 0 % and then 50 % of the requests (a 500 or a dropped
//!    connection), retries after 10 ms doubling to 100 ms: time to drain, deliveries per
//!    second, attempts per event.
//!
//! `cargo bench --bench notify`.

// The support helpers each include support/skip.rs; the copies are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "../tests/support/hooks.rs"]
mod hooks;

use std::time::{Duration, Instant};

use rebound::config::{NotifyConfig, RulesConfig};
use rebound::notify::deliver::Deliverer;
use rebound::store::outbox::{NotifyEvent, Subscription};
use rebound::store::{EventContext, Store};
use rebound::verdict::{Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

const SECRET: &str = "bench-secret";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

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
        decided_by: "builtin".into(),
    }
}

fn subscriptions(n: usize) -> Vec<Subscription> {
    (0..n)
        .map(|i| Subscription {
            endpoint: format!("hooks{i}"),
            events: NotifyEvent::ALL.to_vec(),
        })
        .collect()
}

/// Books `n` hard bounces of distinct recipients in groups of 64 in a fresh file store
/// of `dir` with `endpoints` endpoints; returns the store and the booking time.
async fn book(dir: &std::path::Path, n: usize, endpoints: usize) -> (Store, Duration) {
    let mut store = Store::open(&format!("sqlite://{}/rebound.db", dir.display()))
        .await
        .expect("opening the store");
    store.set_notify(subscriptions(endpoints));
    let rules = RulesConfig::default();
    let items: Vec<(EventContext, Verdict)> = (0..n)
        .map(|i| {
            (
                EventContext::mailbox("bounces@example.org", format!("{i:07}")),
                hard(&format!("r{i}@example.org")),
            )
        })
        .collect();
    let start = Instant::now();
    for group in items.chunks(64) {
        let out = store.record_verdicts(group, &rules).await.expect("booking");
        assert!(out.iter().all(|o| o.changes.len() == 1));
    }
    (store, start.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn booking_cost() {
    let n = env_usize("REBOUND_BENCH_BOUNCES", 5_000);
    let rounds = env_usize("REBOUND_BENCH_ROUNDS", 3).max(1);
    println!("## Booking cost per bounce ({n} hard bounces, group commits of 64, SQLite FULL)\n");
    println!("| outbox | µs per bounce (median of {rounds}) | rows written |");
    println!("|---|---|---|");
    let settings = [
        ("off", 0usize),
        ("on, 1 endpoint", 1),
        ("on, 3 endpoints", 3),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); settings.len()];
    let mut rows = vec![0usize; settings.len()];
    for _ in 0..rounds {
        for (i, (_, endpoints)) in settings.iter().enumerate() {
            let dir = tempfile::tempdir().expect("tempdir");
            let (store, took) = book(dir.path(), n, *endpoints).await;
            times[i].push(took.as_secs_f64() * 1e6 / n as f64);
            rows[i] = store.outbox_rows(0, u32::MAX).await.expect("rows").len();
            store.close().await;
        }
    }
    for (i, (name, _)) in settings.iter().enumerate() {
        println!("| {name} | {:.1} | {} |", median(times[i].clone()), rows[i]);
    }
    println!();
}

async fn drain(events: usize, fail_rate: f64) {
    let receiver = hooks::Receiver::start(
        hooks::Check::Signed {
            key: SECRET.as_bytes().to_vec(),
            wrong: b"wrong".to_vec(),
        },
        fail_rate,
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = book(dir.path(), events, 1).await;
    let config: NotifyConfig = toml::from_str(&format!(
        "name = \"hooks0\"\nurl = \"{}\"\nsecret_env = \"REBOUND_BENCH_HOOK_SECRET\"\n\
         timeout = \"5s\"\nretry_delay = \"10ms\"\nmax_retry_delay = \"100ms\"\nmax_attempts = 100\n",
        receiver.url()
    ))
    .expect("config");
    let endpoint = rebound::notify::Endpoint::from_config(&config).expect("endpoint");
    let deliverer = Deliverer::new(store.clone(), vec![endpoint]).expect("deliverer");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let start = Instant::now();
    let task = tokio::spawn(async move {
        deliverer
            .run(async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await;
    });
    loop {
        if receiver.acked() >= events {
            let st = store.outbox_status().await.expect("status");
            if st.iter().all(|s| s.pending == 0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = start.elapsed();
    let _ = stop_tx.send(true);
    let _ = task.await;
    let dead = store.outbox_status().await.expect("status")[0].dead;
    {
        let seen = receiver.seen.lock().expect("seen");
        assert!(
            seen.refused.is_empty(),
            "refused: {:?}",
            seen.refused.first()
        );
        println!(
            "| {:.0} % | {events} | {:.2} | {:.0} | {:.2} | {} | {} |",
            fail_rate * 100.0,
            took.as_secs_f64(),
            events as f64 / took.as_secs_f64(),
            seen.requests as f64 / events as f64,
            seen.repeats(),
            dead
        );
    }
    store.close().await;
}

fn main() {
    // Set before the runtime starts any thread.
    // SAFETY: no other thread exists yet to read the environment.
    unsafe { std::env::set_var("REBOUND_BENCH_HOOK_SECRET", SECRET) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        booking_cost().await;
        let events = env_usize("REBOUND_BENCH_EVENTS", 10_000);
        println!("## Draining the outbox (one endpoint, one deliverer, batches of 64 in parallel)\n");
        println!("| receiver fails | events | s to drain | deliveries/s | attempts per event | acknowledged twice | dead |");
        println!("|---|---|---|---|---|---|---|");
        for fail in [0.0, 0.5] {
            drain(events, fail).await;
        }
    });
}
