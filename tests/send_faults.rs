//! `rebound send` against relays that misbehave, scripted in the aiosmtpd test server: a
//! slow answer to the end of DATA (waited for, not resent), no answer at all or a
//! connection lost after the final "." (maybe delivered, never resent), a 4xx that never
//! ends (the run stops with the answer, resumable), and addresses the relay cannot take
//! (an IDN domain goes out as its A-label; a non-ASCII local part without SMTPUTF8 fails
//! that recipient alone, without counting against it). Postfix's `smtp-sink` shows the
//! end-of-DATA faults too, and a relay without 8BITMIME.

#[path = "support/postfix.rs"]
mod postfix;
#[path = "support/smtp.rs"]
mod smtp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rebound::store::Store;
use rebound::store::campaigns::{SendRecord, SendState};
use serde_json::{Value, json};

fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
    cmd.arg("--config")
        .arg(dir.join("rebound.toml"))
        .args(args)
        .env("REBOUND_VERP_SECRET", "test-secret")
        .env("REBOUND_LOG", "warn");
    cmd
}

fn rebound(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("running rebound")
}

/// Runs `rebound send`, killing it (and failing) if it has not ended within `limit`.
fn send_within(dir: &Path, campaign: &Path, limit: Duration) -> Output {
    let mut child = command(
        dir,
        &["send", "--quiet", "--campaign", campaign.to_str().unwrap()],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("running rebound send");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "rebound send still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn setup(dir: &Path, port: u16, recipients: &[&str], smtp_extra: &str) -> PathBuf {
    let config = format!(
        "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\n{smtp_extra}\n",
        dir.display()
    );
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
    std::fs::write(dir.join("list.txt"), recipients.join("\n")).unwrap();
    let campaign = dir.join("campaign.toml");
    std::fs::write(
        &campaign,
        "name = \"faults\"\nsubject = \"Hello\"\ntext = \"Hello from rebound.\"\n\
         [recipients]\nfile = \"list.txt\"\n",
    )
    .unwrap();
    campaign
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn counts(dir: &Path) -> Value {
    let out = rebound(dir, &["campaigns", "--format", "json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0].clone()
}

fn sends(dir: &Path) -> Vec<SendRecord> {
    let url = format!("sqlite://{}/rebound.db", dir.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let store = Store::open(&url).await.unwrap();
        let s = store.campaign_sends(1).await.unwrap();
        store.close().await;
        s
    })
}

fn event_count(dir: &Path) -> usize {
    let out = rebound(dir, &["events", "--format", "json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .map_or(0, Vec::len)
}

fn received_by(server: &smtp::SmtpServer, rcpt: &str) -> usize {
    server
        .received()
        .iter()
        .filter(|r| r.rcpt_tos.iter().any(|t| t.eq_ignore_ascii_case(rcpt)))
        .count()
}

#[test]
fn a_slow_end_of_data_is_waited_for_not_resent() {
    if smtp::skip() {
        return;
    }
    // 2 s before the 250, with 1 s per command: the end of DATA has its own timeout.
    let server = smtp::SmtpServer::start(json!({"slow_data": {"slow@example.com": 2}}));
    let dir = tempfile::tempdir().unwrap();
    let campaign = setup(
        dir.path(),
        server.port,
        &["a@example.com", "slow@example.com", "b@example.com"],
        "workers = 1\ntimeout = \"1s\"\nthrottle_delay = \"50ms\"\n",
    );
    let out = send_within(dir.path(), &campaign, Duration::from_secs(30));
    assert!(out.status.success(), "{}\n{}", text(&out), server.log());
    assert_eq!(received_by(&server, "slow@example.com"), 1);
    assert_eq!(server.received().len(), 3);
    let c = counts(dir.path());
    assert_eq!(
        (c["sent"].as_u64(), c["maybe_delivered"].as_u64()),
        (Some(3), Some(0)),
        "{c}"
    );
}

#[test]
fn no_answer_after_the_final_dot_is_maybe_delivered_and_never_resent() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({
        "slow_data": {"slow@example.com": 4},
        "drop_data": ["drop@example.com"],
    }));
    let dir = tempfile::tempdir().unwrap();
    let recipients = [
        "a@example.com",
        "slow@example.com",
        "b@example.com",
        "drop@example.com",
        "c@example.com",
    ];
    let campaign = setup(
        dir.path(),
        server.port,
        &recipients,
        "workers = 2\ndata_timeout = \"1s\"\nthrottle_delay = \"50ms\"\nretry_delay = \"50ms\"\n",
    );
    let out = send_within(dir.path(), &campaign, Duration::from_secs(40));
    assert!(out.status.success(), "{}\n{}", text(&out), server.log());
    // The server has both messages (it stored them before it stalled or hung up), once.
    assert_eq!(received_by(&server, "slow@example.com"), 1);
    assert_eq!(received_by(&server, "drop@example.com"), 1);
    assert_eq!(server.received().len(), 5);

    let c = counts(dir.path());
    assert_eq!(c["state"], "done", "{c}");
    assert_eq!(
        (
            c["sent"].as_u64(),
            c["maybe_delivered"].as_u64(),
            c["failed"].as_u64(),
            c["queued"].as_u64()
        ),
        (Some(3), Some(2), Some(0), Some(0)),
        "{c}"
    );
    for s in sends(dir.path()) {
        if s.address.starts_with("slow") || s.address.starts_with("drop") {
            assert_eq!(
                (s.state, s.attempts),
                (SendState::MaybeDelivered, 1),
                "{s:?}"
            );
            let why = s.result_text.as_deref().unwrap_or("");
            assert!(why.contains("no answer to the end of DATA"), "{why}");
            assert!(s.message_id.is_some(), "a bounce can still be tied to it");
        } else {
            assert_eq!(s.state, SendState::Sent, "{s:?}");
        }
    }
    // Not a bounce, nor anything against the recipients.
    assert_eq!(event_count(dir.path()), 0);
    let table = text(&rebound(dir.path(), &["campaigns"]));
    assert!(table.contains("MAYBE DELIVERED"), "{table}");

    // Running again sends nothing.
    let out = send_within(dir.path(), &campaign, Duration::from_secs(20));
    assert!(out.status.success(), "{}", text(&out));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.received().len(), 5);
}

#[test]
fn a_4xx_that_never_ends_stops_the_run_with_the_answer() {
    if smtp::skip() {
        return;
    }
    for (behaviour, answer) in [
        (
            json!({"mail_reply": "451 4.3.0 Local error in processing"}),
            "451 4.3.0 Local error in processing",
        ),
        (
            json!({"rcpt_reply": "450 4.1.8 <bounces@bounces.example.org>: Sender address rejected: Domain not found"}),
            "450 4.1.8 <bounces@bounces.example.org>: Sender address rejected: Domain not found",
        ),
    ] {
        let server = smtp::SmtpServer::start(behaviour);
        let dir = tempfile::tempdir().unwrap();
        let campaign = setup(
            dir.path(),
            server.port,
            &["a@example.com", "b@example.com", "c@example.com"],
            "workers = 2\nthrottle_delay = \"100ms\"\nmax_throttled_time = \"2s\"\n\
             retry_delay = \"50ms\"\nmax_attempts = 3\n",
        );
        let t = Instant::now();
        let out = send_within(dir.path(), &campaign, Duration::from_secs(30));
        let err = text(&out);
        assert!(!out.status.success(), "{err}");
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
        assert!(err.contains(answer), "{err}");
        assert!(err.contains("throttled or deferred every message"), "{err}");
        // Resumable, and nothing was held against the recipients.
        let c = counts(dir.path());
        assert_eq!(
            (
                c["queued"].as_u64(),
                c["sent"].as_u64(),
                c["failed"].as_u64()
            ),
            (Some(3), Some(0), Some(0)),
            "{c}"
        );
        assert_eq!(event_count(dir.path()), 0, "{answer}");
        assert!(sends(dir.path()).iter().all(|s| s.attempts == 0));
    }
}

#[test]
fn addresses_the_relay_cannot_take_fail_alone_and_idn_goes_as_a_label() {
    if smtp::skip() {
        return;
    }
    let recipients = [
        "a@example.com",
        "jörg@example.com",
        "info@bücher.example",
        "b@example.com",
    ];
    // aiosmtpd offers no SMTPUTF8 by default.
    let server = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let campaign = setup(dir.path(), server.port, &recipients, "workers = 1\n");
    let out = send_within(dir.path(), &campaign, Duration::from_secs(30));
    assert!(out.status.success(), "{}\n{}", text(&out), server.log());
    let got: Vec<String> = server
        .received()
        .iter()
        .flat_map(|r| r.rcpt_tos.clone())
        .collect();
    assert_eq!(
        got,
        [
            "a@example.com",
            "info@xn--bcher-kva.example",
            "b@example.com"
        ]
    );
    let idn = server
        .received()
        .into_iter()
        .find(|r| r.rcpt_tos[0].starts_with("info@"))
        .unwrap();
    let raw = server.message(&idn);
    assert!(raw.is_ascii());
    assert!(
        String::from_utf8_lossy(&raw).contains("To: info@xn--bcher-kva.example"),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    let c = counts(dir.path());
    assert_eq!(c["state"], "done", "{c}");
    assert_eq!(
        (c["sent"].as_u64(), c["failed"].as_u64()),
        (Some(3), Some(1)),
        "{c}"
    );
    let jorg = sends(dir.path())
        .into_iter()
        .find(|s| s.address.starts_with("jörg"))
        .unwrap();
    assert_eq!(jorg.state, SendState::Failed);
    let why = jorg.result_text.unwrap_or_default();
    assert!(why.contains("SMTPUTF8"), "{why}");
    // A limitation of the relay, not of the recipient: no bounce, still active.
    assert_eq!(event_count(dir.path()), 0);
    let out = rebound(
        dir.path(),
        &["recipients", "--state", "bounced", "--format", "json"],
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!([])
    );

    // A relay with SMTPUTF8 takes it.
    let utf8 = smtp::SmtpServer::start(json!({"smtputf8": true}));
    let dir = tempfile::tempdir().unwrap();
    let campaign = setup(
        dir.path(),
        utf8.port,
        &["jörg@example.com"],
        "workers = 1\n",
    );
    let out = send_within(dir.path(), &campaign, Duration::from_secs(30));
    assert!(out.status.success(), "{}\n{}", text(&out), utf8.log());
    assert_eq!(received_by(&utf8, "jörg@example.com"), 1, "{}", utf8.log());
}

/// Postfix's `smtp-sink` with these options, on a free loopback port; killed when dropped.
struct Sink {
    child: std::process::Child,
    port: u16,
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sink(opts: &[&str]) -> Option<Sink> {
    if !postfix::available() {
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("smtp-sink")
        .args(["-u", "nobody"])
        .args(opts)
        .arg(format!("127.0.0.1:{port}"))
        .arg("16")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting smtp-sink (package postfix)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "smtp-sink did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Sink { child, port })
}

fn sink_mailer(port: u16, timeout: u64, data_timeout: u64) -> rebound::smtp::SmtpMailer {
    rebound::smtp::SmtpMailerBuilder::new("127.0.0.1", port)
        .tls(rebound::config::TlsMode::None)
        .timeout(Duration::from_secs(timeout))
        .data_timeout(Duration::from_secs(data_timeout))
        .max_connections(1)
        .build()
        .unwrap()
}

#[tokio::test]
async fn smtp_sink_end_of_data_faults_and_a_relay_without_8bitmime() {
    use rebound::smtp::{Envelope, Mailer, Stage};
    const ASCII: &[u8] = b"Subject: x\r\nTo: a@example.com\r\n\r\nhello\r\n";
    const EIGHT_BIT: &[u8] = "Subject: x\r\nTo: a@example.com\r\n\r\nGrüße\r\n".as_bytes();
    let env = Envelope::new("bounces+x@bounces.example.org", "a@example.com");

    // No 8BITMIME: an 8-bit message fails for its recipient alone, nothing is sent, and
    // the connection stays usable.
    let Some(s) = sink(&["-8"]) else { return };
    let m = sink_mailer(s.port, 5, 5);
    let e = m.send_raw(&env, EIGHT_BIT).await.unwrap_err();
    assert_eq!(e.stage(), Stage::Rcpt, "{e}");
    assert!(
        !e.is_fatal() && !e.is_throttling() && e.code().is_none(),
        "{e}"
    );
    assert!(e.text().contains("8BITMIME"), "{e}");
    m.send_raw(&env, ASCII).await.unwrap();

    // 3 s before the answer to ".": waited for with the end-of-DATA timeout, however short
    // the command timeout; unconfirmed with a shorter end-of-DATA timeout.
    let Some(s) = sink(&["-W", ".:3"]) else {
        return;
    };
    sink_mailer(s.port, 1, 10)
        .send_raw(&env, ASCII)
        .await
        .unwrap();
    let e = sink_mailer(s.port, 10, 1)
        .send_raw(&env, ASCII)
        .await
        .unwrap_err();
    assert!(e.is_unconfirmed() && !e.is_transient(), "{e:?}");

    // Hanging up after "." leaves it unconfirmed; hanging up after DATA (before the body)
    // is an ordinary network failure, to be retried.
    let Some(s) = sink(&["-q", "."]) else { return };
    let e = sink_mailer(s.port, 5, 5)
        .send_raw(&env, ASCII)
        .await
        .unwrap_err();
    assert!(e.is_unconfirmed(), "{e:?}");
    let Some(s) = sink(&["-q", "DATA"]) else {
        return;
    };
    let e = sink_mailer(s.port, 5, 5)
        .send_raw(&env, ASCII)
        .await
        .unwrap_err();
    assert!(!e.is_unconfirmed() && e.is_throttling(), "{e:?}");
}
