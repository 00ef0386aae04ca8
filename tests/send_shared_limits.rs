//! Two `rebound send` processes on one SQLite store, each with a campaign of its own,
//! against the real test SMTP server: a rolling-window quota holds for both together
//! (not once per process), and a "slow down" one of them hears pauses the other too.
//! Counted by the server's clock.

#[path = "support/senders.rs"]
mod senders;
#[path = "support/smtp.rs"]
mod smtp;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::json;

use senders::{create_store, spawn_send, write_campaign, write_config};

/// Runs senders of `campaigns` at once until all have exited 0.
fn run_senders(dir: &Path, campaigns: &[PathBuf]) {
    let mut children: Vec<Child> = campaigns
        .iter()
        .enumerate()
        .map(|(i, c)| spawn_send(dir, c, &[], &format!("{i}.log")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (i, child) in children.iter_mut().enumerate() {
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rebound send {i} did not finish in time");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(dir.join(format!("{i}.log"))).unwrap_or_default();
        assert!(status.success(), "sender {i}: {status}: {log}");
    }
}

#[test]
fn two_senders_on_one_store_share_a_quota() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(d, server.port, "rate_limit = [\"20/3s,window\"]");
    create_store(d);
    let campaigns = [
        write_campaign(d, "a", "a", 30),
        write_campaign(d, "b", "b", 30),
    ];
    let t = Instant::now();
    run_senders(d, &campaigns);
    let per = server.deliveries();
    assert_eq!(per.len(), 60, "everyone got the message");
    assert!(per.values().all(|n| *n == 1), "sent twice: {per:?}");
    let mails = server.mail_times();
    let most = smtp::max_in_window(&mails, 3.0);
    eprintln!(
        "most MAIL in one 3 s window across two senders: {most} of {} in {:?}",
        mails.len(),
        t.elapsed()
    );
    // Each process counting only its own sends would let ~40 through in the first window.
    assert!(most <= 20, "{most} in one window of 3 s");
}

#[test]
fn a_pause_one_sender_hears_pauses_the_other() {
    if smtp::skip() {
        return;
    }
    // The 30th MAIL (of either sender) is answered 454 "slow down".
    let server =
        smtp::SmtpServer::start(json!({"throttle": {"every": 30, "first": 30, "code": 454}}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(
        d,
        server.port,
        "throttle_delay = \"2s\"\nrate_limit = [\"40/s\"]",
    );
    create_store(d);
    let campaigns = [
        write_campaign(d, "a", "a", 50),
        write_campaign(d, "b", "b", 50),
    ];
    run_senders(d, &campaigns);
    let per = server.deliveries();
    assert_eq!(per.len(), 100, "everyone got the message");
    let events = server.events();
    let throttled: Vec<f64> = events
        .iter()
        .filter(|e| e.cmd == "MAIL" && e.code == 454)
        .map(|e| e.ts)
        .collect();
    assert_eq!(throttled.len(), 1, "{throttled:?}");
    let at = throttled[0];
    // Messages already on their way (each process reserves ~100 ms of send times) may
    // still arrive just after (half a second is left for them on a loaded machine);
    // then neither process sends until the 2 s pause is over.
    let during: Vec<f64> = server
        .mail_times()
        .into_iter()
        .filter(|t| *t > at + 0.5 && *t < at + 1.7)
        .map(|t| t - at)
        .collect();
    eprintln!("MAIL within 0.5-1.7 s after the 454: {during:?}");
    assert!(during.is_empty(), "sent during the pause: {during:?}");
}
