//! IMAP source benchmark against a private Dovecot (with dovecot-imapd), into a SQLite
//! file store:
//!
//! - IDLE pickup: the source runs (`ImapSource::run`, IDLE, a 5-minute poll interval so
//!   only IDLE can wake it); one bounce at a time is dropped into the folder and the time
//!   from the drop to its event in the store is measured; p50, p99 and max over
//!   `REBOUND_BENCH_IDLE_MESSAGES` (default 50).
//! - A pass: `REBOUND_BENCH_PASS_MESSAGES` (default 1000) bounces in the folder, one
//!   `poll_once` (fetch, detect, empty chain, commit, `\Deleted` + UID EXPUNGE per
//!   message; with `REBOUND_BENCH_MOVE=1` a MOVE to a processed folder instead), in
//!   messages per second. Dovecot indexes the filled maildir before the clock starts.
//!
//! `cargo bench --bench imap_idle`. Without Dovecot's IMAP server it says SKIPPED.

// The support helpers each include support/skip.rs; the copies are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "../tests/support/dovecot.rs"]
mod dovecot;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rebound::config::{RulesConfig, TlsMode};
use rebound::imap::ImapSource;
use rebound::pipeline::Stages;
use rebound::policy::PolicyChain;
use rebound::store::Store;

fn dsn(n: usize) -> Vec<u8> {
    let recipient = format!("bench-{n}@example.net");
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bench-{n}@mx.example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b{n}\"\r\n\r\n\
--b{n}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--b{n}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown\r\n\r\n\
--b{n}--\r\n"
    )
    .into_bytes()
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stages() -> Stages {
    Stages {
        chain: Arc::new(arc_swap::ArcSwap::new(Arc::new(PolicyChain::empty()))),
        rules: RulesConfig::default(),
        unsubscribe: None,
        archive: false,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn idle_pickup(rt: &tokio::runtime::Runtime, n: usize) {
    let server = dovecot::Dovecot::start_imap();
    let work = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", work.path().join("bench.db").display());
    let store = rt.block_on(Store::open(&url)).unwrap();
    let config = server.imap_config(TlsMode::Implicit, "poll_interval = \"5m\"");
    let source = ImapSource::new(config, dovecot::PASSWORD.into(), store.clone(), stages());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = rt.spawn(async move {
        source
            .run(async move {
                let _ = stop_rx.await;
            })
            .await;
    });
    // Connected, passed, in IDLE.
    std::thread::sleep(Duration::from_millis(1500));
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        server.add_message(&dsn(i));
        let start = Instant::now();
        loop {
            if rt.block_on(store.event_count()).unwrap() > i as u64 {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "message {i} not recorded within 30 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        latencies.push(start.elapsed());
    }
    let _ = stop_tx.send(());
    rt.block_on(task).unwrap();
    latencies.sort();
    println!(
        "imap IDLE pickup, drop → committed, {n} messages: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, min {:.1} ms",
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        latencies[0].as_secs_f64() * 1e3,
    );
}

fn pass_throughput(rt: &tokio::runtime::Runtime, n: usize, move_to: bool) {
    let server = dovecot::Dovecot::start_imap();
    let mut bytes = 0;
    for i in 0..n {
        let raw = dsn(i);
        bytes += raw.len();
        server.add_message(&raw);
    }
    // Indexed before the clock starts, as a delivery agent would have done on delivery.
    server.doveadm(&[
        "mailbox",
        "status",
        "-u",
        dovecot::USER,
        "messages",
        "INBOX",
    ]);
    let work = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", work.path().join("bench.db").display());
    let store = rt.block_on(Store::open(&url)).unwrap();
    let extra = if move_to {
        "processed_folder = \"Processed\"\nbatch_limit = 1000000"
    } else {
        "batch_limit = 1000000"
    };
    let config = server.imap_config(TlsMode::Implicit, extra);
    let source = ImapSource::new(config, dovecot::PASSWORD.into(), store.clone(), stages());
    let started = Instant::now();
    let summary = rt.block_on(source.poll_once()).unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(summary.processed, n, "{summary}");
    assert_eq!(server.folder_count(""), 0, "{summary}");
    println!(
        "imap pass, {n} messages ({:.1} MB), {}: {:.2} s, {:.0} msg/s",
        bytes as f64 / 1e6,
        if move_to {
            "MOVE to a processed folder"
        } else {
            "\\Deleted + UID EXPUNGE"
        },
        secs,
        n as f64 / secs
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    if !dovecot::imap_available() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    idle_pickup(&rt, env_usize("REBOUND_BENCH_IDLE_MESSAGES", 50));
    let n = env_usize("REBOUND_BENCH_PASS_MESSAGES", 1000);
    pass_throughput(&rt, n, false);
    if std::env::var("REBOUND_BENCH_MOVE").as_deref() == Ok("1") {
        pass_throughput(&rt, n, true);
    }
}
