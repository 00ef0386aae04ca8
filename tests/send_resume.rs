//! A `rebound send` killed (SIGKILL) in the middle of a campaign and started again:
//! every recipient gets the message, and only the unsaved part of the batches that were
//! in flight is sent twice (at most `send_batch_size` per worker). And a second stop
//! signal ends a run whose first stop waits for a store it cannot write.

#[path = "support/smtp.rs"]
mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

const WORKERS: usize = 4;
const SEND_BATCH: usize = 5;

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebound"));
    c.arg("--config")
        .arg(dir.join("rebound.toml"))
        .args(args)
        .env("REBOUND_VERP_SECRET", "test-secret")
        .env("REBOUND_LOG", "warn");
    c
}

/// Writes the config (the store `rebound.db` in `d`, the test server, then `smtp`'s
/// lines), a list of `n` addresses `PREFIX{i}@example.com` and campaign `name`; returns
/// the campaign file.
fn setup(d: &Path, port: u16, smtp: &str, name: &str, prefix: &str, n: usize) -> PathBuf {
    std::fs::write(
        d.join("rebound.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/rebound.db\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
             from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\n{smtp}",
            d.display(),
        ),
    )
    .unwrap();
    let list: Vec<String> = (0..n).map(|i| format!("{prefix}{i}@example.com")).collect();
    std::fs::write(d.join("list.txt"), list.join("\n")).unwrap();
    let campaign = d.join("campaign.toml");
    std::fs::write(
        &campaign,
        format!(
            "name = \"{name}\"\nsubject = \"{name}\"\ntext = \"Hi\"\n[recipients]\nfile = \"list.txt\"\n"
        ),
    )
    .unwrap();
    campaign
}

#[test]
fn killed_send_resumes_with_nothing_lost() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 300;
    let campaign = setup(
        d,
        server.port,
        &format!(
            "workers = {WORKERS}\nmax_items_per_batch = 10\nsend_batch_size = {SEND_BATCH}\n\
             [[smtp.rate_limit]]\nmessages = 100\nper = \"1s\"\n"
        ),
        "resume",
        "k",
        n,
    );
    // A short hold: the second run takes over once the killed one's has expired.
    let args = [
        "send",
        "--quiet",
        "--lease",
        "2s",
        "--campaign",
        campaign.to_str().unwrap(),
    ];

    let log = std::fs::File::create(d.join("first.log")).unwrap();
    let mut first = command(d, &args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(
        server.wait_for(90, Duration::from_secs(30)),
        "first run too slow: {}",
        server.log()
    );
    first.kill().unwrap();
    let _ = first.wait();
    let before_restart = server.received().len();
    assert!(
        before_restart < n,
        "the first run finished before it was killed"
    );

    let out = command(d, &args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let per_rcpt = server.deliveries();
    assert_eq!(per_rcpt.len(), n, "a recipient was skipped");
    let twice: usize = per_rcpt.values().map(|c| c - 1).sum();
    eprintln!("killed after {before_restart} messages; {twice} sent twice");
    assert!(twice <= WORKERS * SEND_BATCH, "{twice} re-sent");

    let out = command(d, &["campaigns", "--format", "json"])
        .output()
        .unwrap();
    let counts: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts[0]["sent"].as_u64(), Some(n as u64));
    assert_eq!(counts[0]["state"], "done");
}

/// A stop that cannot finish: the store is locked by another process, so the results in
/// flight cannot be saved and the first SIGTERM waits for it; a second SIGTERM exits at
/// once (exit code 1), and the campaign resumes afterwards with every recipient sent.
#[tokio::test]
async fn a_second_stop_signal_exits_while_the_store_is_locked() {
    use sqlx::Connection;
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 200;
    let db = d.join("rebound.db");
    let campaign = setup(
        d,
        server.port,
        &format!(
            "workers = 2\nmax_items_per_batch = 5\nsend_batch_size = {SEND_BATCH}\n\
             [[smtp.rate_limit]]\nmessages = 20\nper = \"1s\"\n"
        ),
        "stop",
        "t",
        n,
    );
    let args = [
        "send",
        "--quiet",
        "--lease",
        "2s",
        "--campaign",
        campaign.to_str().unwrap(),
    ];
    let log = d.join("first.log");
    let mut first = command(d, &args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    assert!(
        server.wait_for(10, Duration::from_secs(30)),
        "{}",
        server.log()
    );

    // Another process takes the store's write lock and keeps it.
    let mut locker = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::Executor::execute(&mut locker, "BEGIN EXCLUSIVE")
        .await
        .unwrap();
    let term = |pid: u32| {
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
    };
    term(first.id());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first stop should wait for the locked store; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    term(first.id());
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "a second SIGTERM did not end it"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("stopped at once"), "{text}");

    // The lock goes; the campaign resumes and every recipient gets it.
    sqlx::Executor::execute(&mut locker, "ROLLBACK")
        .await
        .unwrap();
    drop(locker);
    let again = command(d, &args).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let got: std::collections::BTreeSet<String> = server
        .received()
        .iter()
        .flat_map(|r| r.rcpt_tos.clone())
        .collect();
    assert_eq!(got.len(), n, "every recipient at least once");
}
