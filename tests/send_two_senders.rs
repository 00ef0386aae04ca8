//! Several `rebound send` processes on one store, against the real test SMTP server. Each
//! scenario runs on a SQLite store and on a PostgreSQL one (the private cluster of
//! `support/postgres.rs`):
//!
//! - senders of one campaign (three), or of two (two on one, a third on the other), under
//!   one 50/s limit: the senders of a campaign share its recipients and nobody gets a
//!   message twice, every process exits 0, and the limit holds across all of them,
//!   counted by the server's clock;
//! - a runner killed with SIGKILL mid-campaign (frozen with SIGSTOP just before, so that
//!   what it had sent is known): the rows it had claimed are sent by another runner (one
//!   started after the kill, or two already sending) once their lease expires, and only
//!   the results it had not saved go out twice.

// Both servers' helpers include support/skip.rs; two copies of it are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "support/postgres.rs"]
mod postgres;
#[path = "support/senders.rs"]
mod senders;
#[path = "support/smtp.rs"]
mod smtp;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant, SystemTime};

use rebound::verp;
use senders::{
    create_store, sent_in, spawn_send, sqlite_url, wait, write_campaign, write_config_on,
};

use serde_json::json;

/// Where a scenario's processes keep their store.
#[derive(Clone, Copy)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// A new store for a test in `dir`, or None when this backend cannot run here (the
    /// test is then reported skipped).
    fn store(self, dir: &Path) -> Option<String> {
        match self {
            Backend::Sqlite => Some(sqlite_url(dir)),
            Backend::Postgres => postgres::available().then(postgres::database),
        }
    }
}

/// The lease every sender runs with (`--lease`), in seconds: short, so that a dead
/// runner's rows come back within the test.
const LEASE: f64 = 3.0;

fn lease_arg() -> String {
    format!("{LEASE}s")
}

/// Seconds since the Unix epoch: the server's timestamps are on this clock.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn log_of(dir: &Path, log: &str) -> String {
    std::fs::read_to_string(dir.join(log)).unwrap_or_default()
}

/// One campaign of [`senders_share_one_limit`]: its name (also its recipients' prefix),
/// how many recipients, how many `rebound send` processes run it.
struct Campaign {
    name: &'static str,
    recipients: usize,
    senders: usize,
}

/// Starts every sender of `campaigns` at once under one 50/s limit on one store; each
/// recipient once, every sender of a campaign sent part of it, the limit held.
fn senders_share_one_limit(backend: Backend, campaigns: &[Campaign]) {
    const LIMIT: usize = 50;
    if smtp::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(store) = backend.store(d) else {
        return;
    };
    let server = smtp::SmtpServer::start(json!({}));
    write_config_on(
        d,
        &store,
        server.port,
        &format!("[[smtp.rate_limit]]\nmessages = {LIMIT}\nper = \"1s\"\n"),
    );
    // The store exists first (several processes migrating a new store at once is another
    // matter).
    create_store(d);
    let files: Vec<_> = campaigns
        .iter()
        .map(|c| write_campaign(d, c.name, c.name, c.recipients))
        .collect();
    // All at once: the senders of one campaign race to queue it and to run it.
    let lease = lease_arg();
    let mut senders: Vec<(usize, String, Child)> = Vec::new();
    for (i, (c, file)) in campaigns.iter().zip(&files).enumerate() {
        for n in 0..c.senders {
            let log = format!("{}-{n}.log", c.name);
            let child = spawn_send(d, file, &["--lease", &lease], &log);
            senders.push((i, log, child));
        }
    }
    let mut sent = vec![Vec::new(); campaigns.len()];
    for (i, log, child) in &mut senders {
        let status = wait(child, Duration::from_secs(120));
        let text = log_of(d, log);
        assert!(status.success(), "{log}: {status}: {text}");
        sent[*i].push((sent_in(&text), text));
    }
    // Every sender of a campaign sent part of it (300 at 50/s take 6 s: all are running
    // long before the end), together each recipient once.
    for (c, sent) in campaigns.iter().zip(&sent) {
        let counts: Vec<u64> = sent.iter().map(|(n, _)| n.unwrap_or(0)).collect();
        assert!(
            counts.iter().all(|n| *n > 0),
            "{}: every sender sent: {counts:?} {sent:?}",
            c.name
        );
        assert_eq!(
            counts.iter().sum::<u64>(),
            c.recipients as u64,
            "{}: {sent:?}",
            c.name
        );
    }
    let per = server.deliveries();
    let everyone: usize = campaigns.iter().map(|c| c.recipients).sum();
    assert_eq!(per.len(), everyone, "everyone got the message");
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    // The limit holds across the processes (MAIL is when a transaction starts).
    let mails = server.mail_times();
    let most = smtp::max_in_window(&mails, 1.0);
    eprintln!(
        "most MAIL in one second across {} senders: {most}",
        senders.len()
    );
    // Two or three processes each allowed the limit would show ~100-150 here. The
    // reserved times are 20.3 ms apart, but the server's clock sees the scheduling jitter
    // of four processes on a loaded 2-core machine (single messages 20-40 ms late were
    // measured), so one over the limit in a window is tolerated here.
    assert!(
        most <= LIMIT + 1,
        "{most} in one second: {}",
        densest_second(&mails)
    );
}

/// The gaps between the MAILs of the second that holds the most of them (ms), to tell
/// late single messages from a burst.
fn densest_second(times: &[f64]) -> String {
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.total_cmp(b));
    let most = smtp::max_in_window(&t, 1.0);
    let Some(start) = (0..t.len()).find(|&s| t[(s + most - 1).min(t.len() - 1)] - t[s] < 1.0)
    else {
        return String::new();
    };
    let gaps: Vec<String> = t[start..start + most]
        .windows(2)
        .map(|w| format!("{:.0}", (w[1] - w[0]) * 1000.0))
        .collect();
    format!("from {:.3}, gaps {}", t[start], gaps.join(" "))
}

const TWO_CAMPAIGNS: &[Campaign] = &[
    Campaign {
        name: "shared",
        recipients: 300,
        senders: 2,
    },
    Campaign {
        name: "other",
        recipients: 200,
        senders: 1,
    },
];

const ONE_CAMPAIGN: &[Campaign] = &[Campaign {
    name: "shared",
    recipients: 300,
    senders: 3,
}];

#[test]
fn three_senders_on_one_store_send_once_under_one_limit() {
    senders_share_one_limit(Backend::Sqlite, TWO_CAMPAIGNS);
}

#[test]
fn three_senders_on_one_postgres_store_send_once_under_one_limit() {
    senders_share_one_limit(Backend::Postgres, TWO_CAMPAIGNS);
}

#[test]
fn three_senders_of_one_campaign_send_once_under_one_limit() {
    senders_share_one_limit(Backend::Sqlite, ONE_CAMPAIGN);
}

#[test]
fn three_senders_of_one_campaign_on_postgres_send_once_under_one_limit() {
    senders_share_one_limit(Backend::Postgres, ONE_CAMPAIGN);
}

/// When the runners that finish a killed runner's campaign start.
#[derive(Clone, Copy)]
enum Survivors {
    /// This many, started after the kill.
    StartedAfter(usize),
    /// This many, started before it (and sending when it comes, or waiting for the lock
    /// the killed runner held).
    SendingAlready(usize),
}

/// The send (the row in the store) a received message is for, from its VERP sender.
fn send_id(r: &smtp::Received) -> i64 {
    verp::token_in_address(&r.mail_from)
        .and_then(|t| t.parse::<verp::Token>().ok())
        .unwrap_or_else(|| panic!("no send token in {}", r.mail_from))
        .send
}

/// Kills its process when dropped: a test that fails while it is stopped leaves nothing
/// behind.
struct Victim(Child);

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A runner sends 40 recipients at 10/s alone until 8 arrived, is frozen and then
/// killed; the `survivors` finish the campaign.
fn killed_runners_rows_go_to_the_others(backend: Backend, survivors: Survivors) {
    const RECIPIENTS: usize = 40;
    if smtp::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(store) = backend.store(d) else {
        return;
    };
    let server = smtp::SmtpServer::start(json!({}));
    write_config_on(
        d,
        &store,
        server.port,
        "[[smtp.rate_limit]]\nmessages = 10\nper = \"1s\"\n",
    );
    let campaign = write_campaign(d, "takeover", "t", RECIPIENTS);
    let lease = lease_arg();
    let args = ["--lease", lease.as_str()];
    let mut victim = Victim(spawn_send(d, &campaign, &args, "victim.log"));
    assert!(
        server.wait_for(8, Duration::from_secs(30)),
        "{}",
        server.log()
    );
    // Frozen first, so that what it sent is known before anyone else sends: from here on
    // it neither sends nor beats, and its claims and lease stay as a SIGKILL leaves them
    // (the kill follows, after the others started when they start before it).
    let pid = rustix::process::Pid::from_child(&victim.0);
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let stopped = unix_now();
    // A message whose end of DATA had reached the server is recorded within a moment.
    std::thread::sleep(Duration::from_millis(300));
    let by_victim: BTreeSet<i64> = server.received().iter().map(send_id).collect();
    let spawn = |n: usize| spawn_send(d, &campaign, &args, &format!("survivor-{n}.log"));
    let mut others: Vec<Child> = match survivors {
        Survivors::StartedAfter(_) => Vec::new(),
        Survivors::SendingAlready(n) => {
            let others = (0..n).map(spawn).collect();
            // They send meanwhile, unless it was frozen inside a write transaction
            // (SQLite's lock): then they wait for it until the kill. Either way the kill
            // comes before its lease can have expired.
            let sending = server.wait_for(by_victim.len() + 4, Duration::from_millis(1500));
            eprintln!("the others sent before the kill: {sending}");
            others
        }
    };
    victim.0.kill().unwrap();
    let _ = victim.0.wait();
    let killed = Instant::now();
    if let Survivors::StartedAfter(n) = survivors {
        others = (0..n).map(spawn).collect();
    }
    let mut sent_by_others = 0;
    for (n, child) in others.iter_mut().enumerate() {
        let status = wait(child, Duration::from_secs(60));
        let log = log_of(d, &format!("survivor-{n}.log"));
        assert!(status.success(), "survivor {n}: {status}: {log}");
        sent_by_others += sent_in(&log).unwrap_or_else(|| panic!("survivor {n}: {log}"));
    }
    // The dead runner's claims (their lease last renewed at most a third of 3 s before
    // the kill) could not be sent again before it had expired.
    assert!(killed.elapsed() >= Duration::from_secs(1));
    let received = server.received();
    let per = server.deliveries();
    assert_eq!(per.len(), RECIPIENTS, "everyone got the message");
    // When each send's messages arrived, by send id.
    let mut times: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for r in &received {
        times.entry(send_id(r)).or_default().push(r.mail_ts);
    }
    assert_eq!(times.len(), RECIPIENTS, "one send per recipient");
    // It was alone and claims in id order: every row below the last one it sent was
    // claimed by it, and those it had not sent were still its claims at the freeze.
    let last = *by_victim.last().unwrap();
    let held: Vec<i64> = times
        .keys()
        .copied()
        .filter(|i| *i < last && !by_victim.contains(i))
        .collect();
    assert!(
        !held.is_empty(),
        "no claims below its last sent row {last}: {by_victim:?}"
    );
    // They went out once, after their lease (renewed at most a third of it before the
    // freeze, late on a loaded machine) had expired.
    let expired = stopped + LEASE / 3.0;
    for i in &held {
        let t = &times[i];
        assert!(
            t.len() == 1 && t[0] >= expired,
            "send {i}, a claim of the killed runner, sent {:?} s after its freeze",
            t.iter().map(|t| t - stopped).collect::<Vec<_>>()
        );
    }
    // Twice: only what it had sent without saving the result (the messages in flight at
    // the freeze: 4 workers, at most a second of results each at 10/s), sent again once
    // the lease had expired.
    let twice: Vec<i64> = times
        .iter()
        .filter(|(_, t)| t.len() > 1)
        .map(|(i, _)| *i)
        .collect();
    assert!(twice.len() <= 10, "{} sent twice: {twice:?}", twice.len());
    for i in &twice {
        let t = &times[i];
        assert!(
            by_victim.contains(i) && t.len() == 2 && t[1] >= expired,
            "send {i}: sent {:?} s after the freeze",
            t.iter().map(|t| t - stopped).collect::<Vec<_>>()
        );
    }
    // The others sent everything the killed runner had not sent, and what it had not
    // saved.
    assert_eq!(
        sent_by_others,
        (received.len() - by_victim.len()) as u64,
        "{} at the server, {} by the killed runner",
        received.len(),
        by_victim.len()
    );
}

#[test]
fn a_killed_runners_rows_are_sent_by_another_when_their_lease_expires() {
    killed_runners_rows_go_to_the_others(Backend::Sqlite, Survivors::StartedAfter(1));
}

#[test]
fn a_killed_runners_rows_are_sent_by_another_when_their_lease_expires_on_postgres() {
    killed_runners_rows_go_to_the_others(Backend::Postgres, Survivors::StartedAfter(1));
}

#[test]
fn a_killed_runners_rows_are_sent_by_the_runners_still_sending() {
    killed_runners_rows_go_to_the_others(Backend::Sqlite, Survivors::SendingAlready(2));
}

#[test]
fn a_killed_runners_rows_are_sent_by_the_runners_still_sending_on_postgres() {
    killed_runners_rows_go_to_the_others(Backend::Postgres, Survivors::SendingAlready(2));
}
