//! Mailbox ingest benchmark: a private Dovecot holding N messages (the Sisimai corpus,
//! cycled, plus ordinary mail), one `poll_once` pass over STLS into a SQLite file store:
//! fetch, detect, policy chain (empty), commit, delete. Reports messages per second and
//! the peak RSS of the polling process for 1 000 and 10 000 messages, each size in a
//! fresh child process so the peaks can be compared.
//!
//! `cargo bench --bench ingest` (or `make bench`). Needs dovecot and openssl, as the
//! integration tests do. `REBOUND_BENCH_SIZES=1000,10000` changes the sizes (e.g.
//! `10000,100000`); `REBOUND_BENCH_SYNCHRONOUS=normal` opens the store with
//! `synchronous = NORMAL` instead of the store's `FULL`, to measure what durability costs.

#[path = "../tests/support/corpus.rs"]
mod corpus;
#[path = "../tests/support/dovecot.rs"]
mod dovecot;

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use rebound::config::{RulesConfig, TlsMode};
use rebound::policy::PolicyChain;
use rebound::poller::Poller;
use rebound::store::{EventContext, Store};

fn corpus() -> Vec<Vec<u8>> {
    let mut out = corpus::bsd_messages();
    for i in 0..50 {
        out.push(
            format!(
                "From: Someone <p{i}@example.net>\nTo: bounces@example.org\nSubject: note {i}\n\
                 Message-ID: <n{i}@example.net>\n\nJust a note.\n"
            )
            .into_bytes(),
        );
    }
    out
}

/// Peak resident set size of this process, in KiB (`VmHWM`).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Child: fill a mailbox with `n` messages, ingest it once, print one result line.
/// The `synchronous` setting the run measures (the store's own is FULL).
fn synchronous() -> sqlx::sqlite::SqliteSynchronous {
    match std::env::var("REBOUND_BENCH_SYNCHRONOUS").as_deref() {
        Ok("normal" | "NORMAL") => sqlx::sqlite::SqliteSynchronous::Normal,
        _ => sqlx::sqlite::SqliteSynchronous::Full,
    }
}

fn child(n: usize) {
    let messages = corpus();
    let d = dovecot::Dovecot::start();
    let mut bytes = 0usize;
    for i in 0..n {
        let raw = &messages[i % messages.len()];
        bytes += raw.len();
        d.add_message(raw);
    }
    let work = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", work.path().join("bench.db").display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let rss_before = peak_rss_kib();
    let (summary, secs) = rt.block_on(async {
        let store = Store::open_with_synchronous(&url, synchronous())
            .await
            .unwrap();
        let mut cfg = d.config(TlsMode::Starttls);
        cfg.batch_limit = usize::MAX;
        // Dovecot indexes a maildir filled behind its back at the first session (tens of
        // seconds for 100 000 files): done before the clock starts, as a delivery agent
        // would have done it on delivery.
        cfg.timeout = std::time::Duration::from_secs(600);
        let mut warm = rebound::pop3::Client::connect(&rebound::pop3::Options::from_config(&cfg))
            .await
            .unwrap();
        warm.login(dovecot::USER, dovecot::PASSWORD).await.unwrap();
        let listed = warm.uidl().await.unwrap().len();
        warm.quit().await.unwrap();
        assert_eq!(listed, n);
        let p = Poller::new(
            cfg,
            dovecot::PASSWORD.into(),
            store,
            Arc::new(PolicyChain::empty()),
            RulesConfig::default(),
        );
        let started = Instant::now();
        let s = p.poll_once().await.unwrap();
        (s, started.elapsed().as_secs_f64())
    });
    let peak_after_poll = peak_rss_kib();
    // The stages alone, on the same messages: detector, and one commit per message.
    let served: Vec<Vec<u8>> = (0..n)
        .map(|i| dovecot::as_served(&messages[i % messages.len()]))
        .collect();
    let started = Instant::now();
    let detections: Vec<_> = served
        .iter()
        .map(|raw| rebound::detector::detect(raw))
        .collect();
    let detect_us = started.elapsed().as_secs_f64() * 1e6 / n as f64;
    let commit_us = rt.block_on(async {
        let url = format!("sqlite://{}", work.path().join("stage.db").display());
        let store = Store::open_with_synchronous(&url, synchronous())
            .await
            .unwrap();
        let rules = RulesConfig::default();
        let started = Instant::now();
        for (i, d) in detections.iter().enumerate() {
            let ctx = EventContext::mailbox("stage", i.to_string());
            let _ = store
                .record_verdict(&ctx, &d.verdict, &rules)
                .await
                .unwrap();
        }
        started.elapsed().as_secs_f64() * 1e6 / n as f64
    });
    assert_eq!(summary.processed, n, "{summary}");
    assert_eq!(summary.deleted, n, "{summary}");
    assert_eq!(d.message_count(), 0);
    println!(
        "RESULT n={n} secs={secs:.3} rate={:.0} bytes={bytes} bounces={} complaints={} other={} peak_rss_kib={} rss_before_kib={rss_before} detect_us={detect_us:.0} commit_us={commit_us:.0}",
        n as f64 / secs,
        summary.bounces,
        summary.complaints,
        summary.other,
        peak_after_poll
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args[i + 1].parse().unwrap());
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    if !dovecot::available() {
        eprintln!("ingest: dovecot is not installed; skipped");
        return;
    }
    let sizes: Vec<usize> = std::env::var("REBOUND_BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .map(|s| s.trim().parse().unwrap())
        .collect();
    println!(
        "mailbox ingest: fetch (POP3 STLS, local Dovecot) + detect + commit (SQLite WAL, synchronous = {:?}) + DELE",
        synchronous()
    );
    println!(
        "| messages | seconds | msg/s | peak RSS (KiB) | detect alone (µs/msg) | commit alone (µs/msg) | mix |"
    );
    println!("|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().unwrap();
    for n in sizes {
        let out = Command::new(&exe)
            .arg("--child")
            .arg(n.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .unwrap_or_else(|| {
                panic!(
                    "child {n} failed: {}\n{}",
                    text,
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{k}=")))
                .unwrap_or("?")
                .to_owned()
        };
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} bounces, {} complaints, {} other |",
            field("secs"),
            field("rate"),
            field("peak_rss_kib"),
            field("detect_us"),
            field("commit_us"),
            field("bounces"),
            field("complaints"),
            field("other")
        );
    }
}
