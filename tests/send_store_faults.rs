//! `rebound send` against the real test SMTP server when the store misbehaves or the
//! limiter makes it wait:
//!
//! * another process holds the SQLite write lock for longer than the store's busy
//!   timeout (10 s) in the middle of a campaign: the run waits for it and finishes, with
//!   every recipient sent once;
//! * a quota makes the run wait (for an hour): the results sent so far are in the store
//!   at once, and SIGTERM during the wait ends the process within a moment, with nothing
//!   left claimed, so the campaign resumes.

#[path = "support/smtp.rs"]
mod smtp;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn setup(dir: &Path, port: u16, n: usize, extra: &str) -> PathBuf {
    let config = format!(
        "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\nworkers = 4\n{extra}\n",
        dir.display()
    );
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
    let list: Vec<String> = (0..n).map(|i| format!("f{i}@example.com")).collect();
    std::fs::write(dir.join("list.txt"), list.join("\n")).unwrap();
    let campaign = dir.join("campaign.toml");
    std::fs::write(
        &campaign,
        "name = \"faults\"\nsubject = \"Hi\"\ntext = \"Hello.\"\n[recipients]\nfile = \"list.txt\"\n",
    )
    .unwrap();
    campaign
}

fn rebound(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebound"));
    c.arg("--config")
        .arg(dir.join("rebound.toml"))
        .env("REBOUND_VERP_SECRET", "test-secret")
        .env("REBOUND_LOG", "warn");
    c
}

fn spawn_send(dir: &Path, campaign: &Path) -> Child {
    let log = std::fs::File::create(dir.join("send.log")).unwrap();
    rebound(dir)
        .args(["send", "--quiet", "--campaign"])
        .arg(campaign)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn wait(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The campaign's counts as `rebound campaigns --format json` shows them.
fn counts(dir: &Path) -> Value {
    let out = rebound(dir)
        .args(["campaigns", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list[0].clone()
}

#[test]
fn send_waits_for_a_store_locked_past_the_busy_timeout() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let n = 1500;
    let campaign = setup(d, server.port, n, "");
    let mut send = spawn_send(d, &campaign);
    assert!(
        server.wait_for(50, Duration::from_secs(30)),
        "{}",
        server.log()
    );
    // Another process takes the write lock and keeps it for 12 s.
    let mut locker = Command::new(smtp::python())
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(12)\n\
             c.execute('COMMIT')\n",
        )
        .arg(d.join("rebound.db"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(locker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let locked_at = server.received().len();
    let status = wait(&mut send, Duration::from_secs(120)).expect("send finishes");
    assert!(locker.wait().unwrap().success());
    let log = std::fs::read_to_string(d.join("send.log")).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("store is busy"), "{log}");
    let per = server.deliveries();
    assert_eq!(per.len(), n);
    assert!(per.values().all(|c| *c == 1), "someone got it twice");
    eprintln!("{locked_at} sent when the lock was taken; all {n} once after it");
    assert_eq!(counts(d)["sent"], n);
}

#[test]
fn sigterm_during_a_quota_wait_exits_promptly_with_results_saved() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let campaign = setup(
        d,
        server.port,
        10,
        "[[smtp.rate_limit]]\nmessages = 3\nper = \"1h\"\n",
    );
    let mut send = spawn_send(d, &campaign);
    assert!(
        server.wait_for(3, Duration::from_secs(30)),
        "{}",
        server.log()
    );
    // The quota is used up: the run waits for an hour. What it sent is saved meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    while counts(d)["sent"] != 3 {
        assert!(
            Instant::now() < deadline,
            "the three results were not saved before the wait: {}",
            counts(d)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(send.try_wait().unwrap().is_none(), "still waiting");
    let term = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &send.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait(&mut send, Duration::from_secs(10));
    let log = std::fs::read_to_string(d.join("send.log")).unwrap_or_default();
    let Some(status) = status else {
        let _ = send.kill();
        panic!("SIGTERM did not end the limiter wait: {log}");
    };
    eprintln!("exited {status} {:?} after SIGTERM", term.elapsed());
    assert!(
        term.elapsed() < Duration::from_secs(5),
        "{:?}",
        term.elapsed()
    );
    assert!(log.contains("run again to resume"), "{log}");
    let c = counts(d);
    assert_eq!(
        (c["sent"].as_u64(), c["queued"].as_u64()),
        (Some(3), Some(7)),
        "{c}"
    );
    assert_eq!(server.received().len(), 3);
}
