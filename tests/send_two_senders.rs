//! Several `rebound send` processes on one SQLite store, against the real test SMTP
//! server: two on the same campaign and a third on another, under one 50/s limit. The
//! two share the campaign's recipients and nobody gets a message twice, every process
//! exits 0, and the limit holds across all of them, counted by the server's clock. And
//! the rows of a runner killed with SIGKILL are sent by another once their lease expires.

#[path = "support/senders.rs"]
mod senders;
#[path = "support/smtp.rs"]
mod smtp;

use std::process::Command;
use std::time::{Duration, Instant};

use senders::{sent_in, spawn_send, wait, write_campaign, write_config};

use serde_json::json;

#[test]
fn three_senders_on_one_store_send_once_under_one_limit() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(
        d,
        server.port,
        "[[smtp.rate_limit]]\nmessages = 50\nper = \"1s\"\n",
    );
    let shared = write_campaign(d, "shared", "s", 300);
    let other = write_campaign(d, "other", "o", 200);
    // The store exists first (two processes migrating a new file at once is another
    // matter).
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .arg("--config")
        .arg(d.join("rebound.toml"))
        .arg("campaigns")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // All at once: the two senders of `shared` race to queue it and to run it.
    let mut a = spawn_send(d, &shared, &["--lease", "3s"], "a.log");
    let mut b = spawn_send(d, &shared, &["--lease", "3s"], "b.log");
    let mut c = spawn_send(d, &other, &["--lease", "3s"], "c.log");
    let statuses = [
        wait(&mut a, Duration::from_secs(120)),
        wait(&mut b, Duration::from_secs(120)),
        wait(&mut c, Duration::from_secs(120)),
    ];
    let logs: Vec<String> = ["a.log", "b.log", "c.log"]
        .iter()
        .map(|l| std::fs::read_to_string(d.join(l)).unwrap_or_default())
        .collect();
    for (s, log) in statuses.iter().zip(&logs) {
        assert!(s.success(), "{s}: {log}");
    }
    // Both senders of `shared` sent part of it (300 at 50/s take 6 s: both are running
    // long before the end), together each recipient once.
    let sent: Vec<u64> = logs[..2].iter().map(|l| sent_in(l).unwrap()).collect();
    assert!(sent.iter().all(|n| *n > 0), "both sent: {sent:?} {logs:?}");
    assert_eq!(sent[0] + sent[1], 300, "{logs:?}");
    let per = server.deliveries();
    assert_eq!(per.len(), 500, "everyone got the message");
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    // The limit holds across the processes (MAIL is when a transaction starts).
    let mails = server.mail_times();
    let most = smtp::max_in_window(&mails, 1.0);
    eprintln!("most MAIL in one second across three senders: {most}");
    // Two or three processes each allowed the limit would show ~100-150 here. The
    // reserved times are 20.3 ms apart, but the server's clock sees the scheduling jitter
    // of four processes on a loaded 2-core machine (single messages 20-40 ms late were
    // measured), so one over the limit in a window is tolerated here.
    assert!(most <= 51, "{most} in one second");
}

#[test]
fn a_killed_runners_rows_are_sent_by_another_when_their_lease_expires() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_config(
        d,
        server.port,
        "[[smtp.rate_limit]]\nmessages = 10\nper = \"1s\"\n",
    );
    let campaign = write_campaign(d, "takeover", "t", 40);
    let mut first = spawn_send(d, &campaign, &["--lease", "3s"], "first.log");
    assert!(
        server.wait_for(8, Duration::from_secs(30)),
        "{}",
        server.log()
    );
    first.kill().unwrap();
    let _ = first.wait();
    let killed = Instant::now();
    let mut second = spawn_send(d, &campaign, &["--lease", "3s"], "second.log");
    let status = wait(&mut second, Duration::from_secs(60));
    let log = std::fs::read_to_string(d.join("second.log")).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
    // The dead runner's claims (their lease last renewed at most a third of 3 s before
    // the kill) could not be sent again before it had expired.
    assert!(killed.elapsed() >= Duration::from_secs(1), "{log}");
    let per = server.deliveries();
    assert_eq!(per.len(), 40, "everyone got the message");
    let twice = per.values().filter(|n| **n > 1).count();
    // Only the unsaved results of the messages in flight at the kill (4 workers, at most
    // a second of results each at 10/s).
    assert!(twice <= 10, "{twice} sent twice");
}
