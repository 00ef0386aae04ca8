//! A real crash: `rebound poll` is killed (SIGKILL) again and again in the middle of
//! ingesting a mailbox, then `rebound poll --once` finishes the job. The store must end
//! exactly as after one uninterrupted pass: nothing lost, nothing counted twice. A second
//! test kills it at random moments (seed printed, `REBOUND_CRASH_SEED` repeats a run) over
//! a mailbox of one bounce per recipient and checks each is counted exactly once.

#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/dovecot.rs"]
mod dovecot;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use dovecot::Dovecot;
use rebound::config::{RulesConfig, TlsMode};

use rebound::store::{EventContext, EventFilter, RecipientState, Store};

const PASSWORD_ENV: &str = "REBOUND_CRASH_TEST_POP3_PASSWORD";

fn corpus_messages() -> Vec<Vec<u8>> {
    let mut out = corpus::bsd_messages();
    // Ordinary mail, so the test means something without the corpus too.
    for i in 0..200 {
        out.push(format!("From: p{i}@example.net\nSubject: note {i}\nMessage-ID: <n{i}@example.net>\n\nhello\n").into_bytes());
    }
    out
}

type Snapshot = (
    Vec<(String, RecipientState, i64, i64, i64)>,
    BTreeMap<String, usize>,
);

async fn snapshot(store: &Store) -> Snapshot {
    let recipients = store
        .recipients(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.address,
                r.state,
                r.hard_count,
                r.soft_count,
                r.complaint_count,
            )
        })
        .collect();
    let mut events = BTreeMap::new();
    for e in store.events(&EventFilter::default()).await.unwrap() {
        let key = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}",
            e.recipient, e.kind, e.class, e.status, e.reason, e.error
        );
        *events.entry(key).or_insert(0) += 1;
    }
    (recipients, events)
}

fn rebound(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env(PASSWORD_ENV, dovecot::PASSWORD)
        .env("REBOUND_LOG", "warn");
    cmd
}

/// Runs `poll --once` until a pass lists nothing, at most `passes` times.
fn clean_passes(config: &Path, passes: usize) {
    for _ in 0..passes {
        let out = rebound(config, &["poll", "--once", "--format", "json"])
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success(), "poll --once failed");
        let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if summary["listed"] == 0 {
            return;
        }
    }
}

#[tokio::test]
async fn poll_killed_repeatedly_ends_as_one_clean_pass() {
    if !dovecot::available() {
        return;
    }
    let messages = corpus_messages();
    let d = Dovecot::start();
    for raw in &messages {
        d.add_message(raw);
    }
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("rebound.db");
    let config = work.path().join("rebound.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n\n{}batch_limit = 120\n",
            db.display(),
            d.config_toml(TlsMode::Starttls, PASSWORD_ENV)
        ),
    )
    .unwrap();

    // Kill the poller at different moments of its first passes.
    let mut kills = 0;
    for delay_ms in (0..24u64).map(|i| 150 + 30 * i) {
        if d.message_count() == 0 {
            break;
        }
        let mut child = rebound(&config, &["poll"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let store = Store::open(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        let done = store.ledger_len("test").await.unwrap();
        store.close().await;
        eprintln!(
            "killed after {delay_ms} ms: {done} in the ledger, {} of {} left",
            d.message_count(),
            messages.len()
        );
    }
    assert!(kills > 0);

    // Finish with clean passes.
    clean_passes(&config, 10);
    assert_eq!(d.message_count(), 0, "every message ends deleted");

    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    assert_eq!(
        store.ledger_len("test").await.unwrap(),
        messages.len() as u64
    );

    // What one uninterrupted ingest records.
    let reference = Store::open("sqlite::memory:").await.unwrap();
    for raw in &messages {
        let raw = dovecot::as_served(raw);
        // The detector's verdict: what an empty policy chain gives.
        let detection = rebound::detector::detect(&raw);
        let verdict = detection.verdict.clone();
        let ctx = rebound::pipeline::correlate(&reference, EventContext::file("x"), &detection)
            .await
            .unwrap();
        let _ = reference
            .record_verdict(&ctx, &verdict, &RulesConfig::default())
            .await
            .unwrap();
    }
    assert_eq!(
        snapshot(&store).await,
        snapshot(&reference).await,
        "after {kills} kills"
    );

    // The listing commands read the same store.
    let out = rebound(&config, &["recipients", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        store.recipients(None).await.unwrap().len()
    );
    let out = rebound(&config, &["events", "--limit", "5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ID"));
}

#[tokio::test]
async fn poll_once_reports_a_server_that_is_down() {
    let work = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = work.path().join("rebound.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/r.db\"\n[pop3]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"implicit\"\n\
             username = \"u\"\npassword_env = \"{PASSWORD_ENV}\"\n",
            work.path().display()
        ),
    )
    .unwrap();
    let out = rebound(&config, &["poll", "--once"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("connecting to 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(!err.contains(dovecot::PASSWORD), "{err}");
}

/// A hard bounce for `r{i}@example.net`, one recipient per message.
fn numbered_bounce(i: usize) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\n\
         Subject: Undelivered Mail Returned to Sender\nX-Failed-Recipients: r{i}@example.net\n\
         Message-ID: <crash-{i}@mx.example.net>\n\n\
         <r{i}@example.net>: host mx.example.net said: 550 5.1.1 <r{i}@example.net>: \
         Recipient address rejected: User unknown (in reply to RCPT TO command)\n"
    )
    .into_bytes()
}

/// xorshift64: kill points that differ from run to run, printed so a failing run can be
/// repeated (`REBOUND_CRASH_SEED`).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// SIGKILL at random moments of the passes (fetching, classifying, committing, deleting,
/// between passes), then clean passes: every bounce is in the store exactly once (one
/// event, a hard count of one) and nothing is lost (every message in the ledger, the
/// mailbox empty). The store syncs every commit (`synchronous = FULL`), so what a killed
/// process committed is what an OS crash would have left too.
#[tokio::test]
async fn poll_killed_at_random_points_counts_every_bounce_once() {
    if !dovecot::available() {
        return;
    }
    const N: usize = 1500;
    let d = Dovecot::start();
    for i in 0..N {
        d.add_message(&numbered_bounce(i));
    }
    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("rebound.db");
    let url = format!("sqlite://{}", db.display());
    let config = work.path().join("rebound.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"{url}\"\n\n{}batch_limit = 60\n",
            d.config_toml(TlsMode::Starttls, PASSWORD_ENV)
        ),
    )
    .unwrap();
    let seed = std::env::var("REBOUND_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("REBOUND_CRASH_SEED={seed}");
    let mut state = seed;
    let mut kills = 0;
    let mut done_before = 0;
    let mut progressed = 0;
    for _ in 0..24 {
        if d.message_count() == 0 {
            break;
        }
        // Start-up takes ~100 ms; then up to ~0.5 s into the passes.
        let delay_ms = 60 + next(&mut state) % 500;
        let mut child = rebound(&config, &["poll"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let store = Store::open(&url).await.unwrap();
        let done = store.ledger_len("test").await.unwrap();
        store.close().await;
        progressed += usize::from(done > done_before);
        done_before = done;
        eprintln!(
            "killed after {delay_ms} ms: {done} in the ledger, {} of {N} on the server",
            d.message_count()
        );
    }
    assert!(kills >= 3, "{kills} kills");
    assert!(progressed > 0, "no kill came after a commit");

    // Enough clean passes of `batch_limit` for the whole mailbox, however little the
    // killed ones got through on a loaded machine.
    clean_passes(&config, N / 60 + 5);
    assert_eq!(d.message_count(), 0, "every message ends deleted");

    let store = Store::open(&url).await.unwrap();
    assert_eq!(store.ledger_len("test").await.unwrap(), N as u64);
    let recipients = store.recipients(None).await.unwrap();
    assert_eq!(recipients.len(), N, "seed {seed}");
    for r in &recipients {
        assert_eq!(
            (r.state, r.hard_count, r.soft_count),
            (RecipientState::Bounced, 1, 0),
            "{} (seed {seed})",
            r.address
        );
    }
    let mut per_recipient: BTreeMap<String, usize> = BTreeMap::new();
    for e in store.events(&EventFilter::default()).await.unwrap() {
        *per_recipient
            .entry(e.recipient.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    assert_eq!(per_recipient.len(), N, "seed {seed}");
    assert!(
        per_recipient.values().all(|&n| n == 1),
        "a bounce counted twice (seed {seed}): {:?}",
        per_recipient
            .iter()
            .filter(|(_, n)| **n != 1)
            .collect::<Vec<_>>()
    );
}
