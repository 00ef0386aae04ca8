//! The IMAP source against a real Dovecot (with dovecot-imapd), mostly through the real
//! `rebound` binary: a pass books the project's samples as the POP3 pass does and a
//! second pass changes nothing; processed and unrecognised folders; a crash between the
//! commit and the MOVE; a folder renumbered under a new UIDVALIDITY; IDLE picking new
//! mail up within a second, and again after the server restarts; and the labelled corpus
//! through IMAP, every message recorded once as the pipeline records it from a file.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/corpus.rs"]
mod corpus;
#[path = "support/dovecot.rs"]
mod dovecot;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dovecot::Dovecot;
use rebound::config::{RulesConfig, TlsMode};
use rebound::imap::{ImapSource, Step};
use rebound::pipeline::Stages;
use rebound::policy::PolicyChain;
use rebound::store::{RecipientState, Store};

const PASSWORD_ENV: &str = "REBOUND_IMAP_TEST_PASSWORD";

fn rebound(dir: &Path, args: &[&str]) -> Output {
    cli::rebound(dir, args, &[(PASSWORD_ENV, dovecot::PASSWORD)])
}

fn write_config(dir: &Path, server: &Dovecot, tls: TlsMode, extra: &str) {
    let text = format!(
        "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n{}",
        dir.display(),
        server.imap_toml(tls, PASSWORD_ENV, extra)
    );
    std::fs::write(dir.join("rebound.toml"), text).unwrap();
}

/// `rebound poll --once --format json`, which must succeed.
fn once(dir: &Path) -> serde_json::Value {
    let out = rebound(dir, &["poll", "--once", "--format", "json"]);
    assert!(
        out.status.success(),
        "poll --once failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn samples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/samples"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
    files.sort();
    assert!(!files.is_empty(), "no samples");
    files
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open_store(dir: &Path) -> Store {
    runtime()
        .block_on(Store::open(&format!(
            "sqlite://{}/rebound.db",
            dir.display()
        )))
        .unwrap()
}

/// (bounced addresses, event count) of the store in `dir`.
fn state(dir: &Path) -> (Vec<String>, u64) {
    let rt = runtime();
    rt.block_on(async {
        let store = Store::open(&format!("sqlite://{}/rebound.db", dir.display()))
            .await
            .unwrap();
        let mut bounced: Vec<String> = store
            .recipients(Some(RecipientState::Bounced))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.address)
            .collect();
        bounced.sort();
        let events = store.event_count().await.unwrap();
        store.close().await;
        (bounced, events)
    })
}

fn dsn(n: usize, recipient: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <imap-dsn-{n}@mx.example.org>\r\n\
Date: Wed, 02 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b{n}\"\r\n\r\n\
--b{n}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--b{n}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown\r\n\r\n\
--b{n}--\r\n"
    )
    .into_bytes()
}

#[test]
fn imap_pass_books_the_samples_as_pop3_does_and_a_second_pass_changes_nothing() {
    if !dovecot::imap_available() {
        return;
    }
    let server = Dovecot::start_imap();
    for f in samples() {
        server.add_file(&f);
    }
    let n = samples().len();
    let imap_dir = tempfile::tempdir().unwrap();
    write_config(
        imap_dir.path(),
        &server,
        TlsMode::Implicit,
        "delete_processed = false",
    );
    let first = once(imap_dir.path());
    assert_eq!(first["listed"], n, "{first}");
    assert_eq!(first["processed"], n, "{first}");
    assert_eq!(
        server.folder_count(""),
        n,
        "delete_processed = false keeps them"
    );
    let (bounced, events) = state(imap_dir.path());
    assert!(!bounced.is_empty(), "the samples hold hard bounces");

    let second = once(imap_dir.path());
    assert_eq!(second["processed"], 0, "{second}");
    assert_eq!(second["already_recorded"], n, "{second}");
    assert_eq!(state(imap_dir.path()), (bounced.clone(), events));

    // The POP3 pass over the same messages decides the same.
    let pop_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        pop_dir.path().join("rebound.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n{}delete_processed = false\n",
            pop_dir.path().display(),
            server.config_toml(TlsMode::Implicit, PASSWORD_ENV)
        ),
    )
    .unwrap();
    let pop = once(pop_dir.path());
    assert_eq!(pop["processed"], n, "{pop}");
    assert_eq!(state(pop_dir.path()), (bounced, events));
}

/// The labelled corpus (every bounce, non-bounce and broken message of it) through an
/// IMAP folder, as tests/poll_dovecot.rs sends it through POP3: each distinct message
/// recorded once with the verdict the pipeline gives it read from a file (the same
/// events, recipients and states; byte-identical copies once), the corpus's known hard
/// bounces suppressed, a second pass nothing new.
#[test]
fn imap_pass_over_the_corpus_records_every_verdict_once() {
    if !dovecot::imap_available() {
        return;
    }
    let dir = corpus::dir();
    if !dir.join("bsd").is_dir() {
        corpus::missing();
        return;
    }
    let mut messages: Vec<(String, Vec<u8>)> = Vec::new();
    for sub in ["bsd", "not", "err"] {
        for p in corpus::eml_files(&dir.join(sub)) {
            let name = format!("{sub}/{}", p.file_name().unwrap().to_string_lossy());
            messages.push((name, std::fs::read(&p).unwrap()));
        }
    }
    let server = Dovecot::start_imap();
    for (_, raw) in &messages {
        server.add_message(raw);
    }
    let rt = runtime();
    rt.block_on(async {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let source = source(
            Path::new("."),
            &server,
            "batch_limit = 100000",
            store.clone(),
        );
        let first = source.poll_once().await.unwrap();
        // The corpus holds byte-identical copies under other names: the same message
        // delivered twice, which the folder's content digests record once.
        let mut seen = std::collections::HashSet::new();
        let distinct: Vec<&(String, Vec<u8>)> = messages
            .iter()
            .filter(|(_, raw)| seen.insert(raw.clone()))
            .collect();
        assert_eq!(first.processed, distinct.len(), "{first}");
        assert_eq!(first.renumbered, messages.len() - distinct.len(), "{first}");
        let got = snapshot(&store).await;

        // The reference: each distinct message, as served, through the pipeline from a file.
        let reference = Store::open("sqlite::memory:").await.unwrap();
        for (name, raw) in distinct {
            let raw = dovecot::as_served(raw);
            // The detector's verdict: what an empty policy chain gives.
            let detection = rebound::detector::detect(&raw);
            let ctx = rebound::store::EventContext::file(name.clone());
            let ctx = rebound::pipeline::correlate(&reference, ctx, &detection)
                .await
                .unwrap();
            let _ = reference
                .record_verdict(&ctx, &detection.verdict, &RulesConfig::default())
                .await
                .unwrap();
        }
        assert_eq!(got, snapshot(&reference).await);
        for hard in [
            "kijitora@example.co.jp",
            "userunknown@bouncehammer.jp",
            "userunknown@example.org",
        ] {
            let r = store.recipient(hard).await.unwrap();
            assert_eq!(r.map(|r| r.state), Some(RecipientState::Bounced), "{hard}");
        }
        let again = source.poll_once().await.unwrap();
        assert_eq!(again.processed, 0, "{again}");
        assert_eq!(snapshot(&store).await, got);
    });
}

/// Recipients (address, state, counts) and events (what each says), order aside.
async fn snapshot(store: &Store) -> (Vec<String>, std::collections::BTreeMap<String, usize>) {
    let recipients = store
        .recipients(None)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "{} {:?} {} {} {}",
                r.address, r.state, r.hard_count, r.soft_count, r.complaint_count
            )
        })
        .collect();
    let mut events = std::collections::BTreeMap::new();
    for e in store
        .events(&rebound::store::EventFilter::default())
        .await
        .unwrap()
    {
        let key = format!(
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{}",
            e.recipient, e.kind, e.class, e.status, e.reason, e.error, e.decided_by
        );
        *events.entry(key).or_insert(0) += 1;
    }
    (recipients, events)
}

#[test]
fn recorded_messages_move_to_the_processed_and_unrecognised_folders() {
    if !dovecot::imap_available() {
        return;
    }
    let server = Dovecot::start_imap();
    for f in samples() {
        server.add_file(&f);
    }
    let n = samples().len();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &server,
        TlsMode::Starttls,
        "processed_folder = \"Processed\"\nunrecognised_folder = \"Unrecognised\"",
    );
    let summary = once(dir.path());
    assert_eq!(summary["processed"], n, "{summary}");
    assert_eq!(summary["moved"], n, "{summary}");
    let other = summary["other"].as_u64().unwrap() as usize
        + summary["unparseable"].as_u64().unwrap() as usize;
    assert!(other >= 1, "the samples hold ordinary mail: {summary}");
    assert_eq!(server.folder_count(""), 0, "the folder is empty");
    assert_eq!(server.folder_count("Unrecognised"), other);
    assert_eq!(server.folder_count("Processed"), n - other);
    let again = once(dir.path());
    assert_eq!(again["listed"], 0, "{again}");
}

fn source(dir: &Path, server: &Dovecot, extra: &str, store: Store) -> ImapSource {
    let config = server.imap_config(TlsMode::Implicit, extra);
    let _ = dir;
    let stages = Stages {
        chain: Arc::new(arc_swap::ArcSwap::new(Arc::new(PolicyChain::empty()))),
        rules: RulesConfig::default(),
        unsubscribe: None,
        archive: false,
    };
    ImapSource::new(config, dovecot::PASSWORD.into(), store, stages)
}

#[test]
fn a_crash_between_commit_and_move_moves_it_next_pass_without_counting_again() {
    if !dovecot::imap_available() {
        return;
    }
    let server = Dovecot::start_imap();
    server.add_message(&dsn(1, "crash-1@example.net"));
    server.add_message(&dsn(2, "crash-2@example.net"));
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let rt = runtime();
    let extra = "processed_folder = \"Done\"";
    let crashing = source(dir.path(), &server, extra, store.clone())
        .with_failpoint(Arc::new(|step, _uid| step == Step::AfterCommit));
    let err = rt.block_on(crashing.poll_once()).unwrap_err();
    assert!(err.to_string().contains("failpoint"), "{err}");
    let events = rt.block_on(store.event_count()).unwrap();
    assert_eq!(events, 1, "the first message was committed");
    assert_eq!(server.folder_count(""), 2, "nothing moved");

    let summary = rt
        .block_on(source(dir.path(), &server, extra, store.clone()).poll_once())
        .unwrap();
    assert_eq!(summary.already_recorded, 1, "{summary}");
    assert_eq!(summary.processed, 1, "{summary}");
    assert_eq!(summary.moved, 2, "{summary}");
    assert_eq!(rt.block_on(store.event_count()).unwrap(), 2);
    assert_eq!(server.folder_count(""), 0);
    assert_eq!(server.folder_count("Done"), 2);
}

#[test]
fn a_new_uidvalidity_counts_nothing_twice_and_new_mail_after_it_is_recorded() {
    if !dovecot::imap_available() {
        return;
    }
    let server = Dovecot::start_imap();
    for i in 0..3 {
        server.add_message(&dsn(i, &format!("renum-{i}@example.net")));
    }
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &server,
        TlsMode::Implicit,
        "delete_processed = false",
    );
    let first = once(dir.path());
    assert_eq!(first["processed"], 3, "{first}");
    let validity = first["uid_validity"].as_u64().unwrap();
    let (bounced, events) = state(dir.path());
    assert_eq!(bounced.len(), 3);

    let next = (validity + 1000).to_string();
    server.doveadm(&[
        "mailbox",
        "update",
        "-u",
        dovecot::USER,
        "--uid-validity",
        &next,
        "INBOX",
    ]);
    server.add_message(&dsn(9, "after-renum@example.net"));
    let second = once(dir.path());
    assert_eq!(
        second["uid_validity"].as_u64().unwrap(),
        validity + 1000,
        "{second}"
    );
    assert_eq!(second["renumbered"], 3, "{second}");
    assert_eq!(second["processed"], 1, "{second}");
    let (bounced_after, events_after) = state(dir.path());
    assert_eq!(events_after, events + 1, "only the new message was booked");
    assert_eq!(bounced_after.len(), 4);
    assert!(bounced_after.contains(&"after-renum@example.net".to_string()));

    let third = once(dir.path());
    assert_eq!(third["processed"], 0, "{third}");
    assert_eq!(
        third["renumbered"], 0,
        "the new ids are in the ledger now: {third}"
    );
    assert_eq!(third["already_recorded"], 4, "{third}");
}

#[test]
fn a_wrong_password_is_a_clear_login_error() {
    if !dovecot::imap_available() {
        return;
    }
    let server = Dovecot::start_imap();
    let dir = tempfile::tempdir().unwrap();
    write_config(dir.path(), &server, TlsMode::Implicit, "");
    let out = cli::rebound(
        dir.path(),
        &["poll", "--once"],
        &[(PASSWORD_ENV, "not-the-password")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("imap login refused"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

/// A `rebound poll` (or `serve`) running in the background; stopped with SIGTERM.
struct Running(Child);

impl Running {
    fn start(dir: &Path) -> Running {
        Running::start_with(dir, &["poll"])
    }

    fn start_with(dir: &Path, args: &[&str]) -> Running {
        let child = Command::new(env!("CARGO_BIN_EXE_rebound"))
            .arg("--config")
            .arg(dir.join("rebound.toml"))
            .args(args)
            .env("REBOUND_CACHE_DIR", dir.join("cache"))
            .env("REBOUND_LOG", "info")
            .env(PASSWORD_ENV, dovecot::PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("poll.log")).unwrap())
            .spawn()
            .unwrap();
        Running(child)
    }

    /// SIGTERM, and its exit status within 10 s.
    fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "rebound poll did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until the store holds `events` events; returns how long that took (the
/// source's log in the panic when it does not come).
fn wait_for_events(
    rt: &tokio::runtime::Runtime,
    store: &Store,
    events: u64,
    within: Duration,
    dir: &Path,
) -> Duration {
    let start = Instant::now();
    loop {
        if rt.block_on(store.event_count()).unwrap() >= events {
            return start.elapsed();
        }
        if start.elapsed() > within {
            let log = std::fs::read_to_string(dir.join("poll.log")).unwrap_or_default();
            panic!("no event {events} within {within:?}; the source's log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn idle_records_new_mail_within_a_second_and_again_after_a_server_restart() {
    if !dovecot::imap_available() {
        return;
    }
    let mut server = Dovecot::start_imap();
    let dir = tempfile::tempdir().unwrap();
    // A long poll interval: only IDLE can make the pickup fast.
    write_config(
        dir.path(),
        &server,
        TlsMode::Implicit,
        "poll_interval = \"5m\"",
    );
    // The store exists (migrated) before the source starts writing to it.
    let store = open_store(dir.path());
    let rt = runtime();
    let running = Running::start(dir.path());
    // Let it connect, pass and enter IDLE.
    std::thread::sleep(Duration::from_millis(1500));
    let mut latencies = Vec::new();
    for i in 0..3 {
        server.add_message(&dsn(i, &format!("idle-{i}@example.net")));
        let took = wait_for_events(
            &rt,
            &store,
            i as u64 + 1,
            Duration::from_secs(5),
            dir.path(),
        );
        latencies.push(took);
    }
    eprintln!("IDLE pickup latency (drop → committed): {latencies:?}");
    for took in &latencies {
        assert!(
            *took <= Duration::from_secs(1),
            "took {took:?}: {latencies:?}"
        );
    }
    // Deleted right after each commit.
    let start = Instant::now();
    while server.folder_count("") > 0 && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.folder_count(""), 0, "deleted after the commit");

    server.restart();
    // The source reconnects (backoff from 1 s) and passes; then new mail is picked up.
    server.add_message(&dsn(10, "after-restart@example.net"));
    let took = wait_for_events(&rt, &store, 4, Duration::from_secs(15), dir.path());
    eprintln!("after the restart, recorded in {took:?}");
    std::thread::sleep(Duration::from_millis(1500));
    server.add_message(&dsn(11, "after-restart-2@example.net"));
    let took = wait_for_events(&rt, &store, 5, Duration::from_secs(5), dir.path());
    eprintln!("after the reconnect, IDLE pickup in {took:?}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");

    let status = running.stop();
    let log = std::fs::read_to_string(dir.path().join("poll.log")).unwrap_or_default();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(
        log.contains("imap connection lost") || log.contains("imap pass failed"),
        "{log}"
    );
}

#[test]
fn rebound_serve_runs_the_imap_source_and_stops_on_sigterm() {
    if !dovecot::imap_available() {
        return;
    }
    let server = Dovecot::start_imap();
    let dir = tempfile::tempdir().unwrap();
    write_config(
        dir.path(),
        &server,
        TlsMode::Starttls,
        "poll_interval = \"5m\"",
    );
    let store = open_store(dir.path());
    let rt = runtime();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let running = Running::start_with(dir.path(), &["serve", "--listen", &listen]);
    std::thread::sleep(Duration::from_millis(1500));
    server.add_message(&dsn(1, "serve-1@example.net"));
    let took = wait_for_events(&rt, &store, 1, Duration::from_secs(5), dir.path());
    eprintln!("rebound serve: IDLE pickup in {took:?}");
    assert!(took <= Duration::from_secs(1), "took {took:?}");
    let status = running.stop();
    let log = std::fs::read_to_string(dir.path().join("poll.log")).unwrap_or_default();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains("IMAP source started"), "{log}");
}
