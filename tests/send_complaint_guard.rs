//! The complaint-rate guard end to end: a `rebound send` through the test SMTP server,
//! feedback reports (RFC 5965) about some of the messages it sent delivered to a real
//! Dovecot, `rebound poll --once` books them, the campaign's complaint rate passes
//! `[rules] max_complaint_rate`, the campaign pauses and the running sender stops with the
//! reason; `rebound campaigns` shows it paused; `rebound send` again resumes it and every
//! recipient gets the message once.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/senders.rs"]
mod senders;
#[path = "support/smtp.rs"]
mod smtp;

use std::path::Path;

use std::time::Duration;

use rebound::config::TlsMode;
use serde_json::json;

const RECIPIENTS: usize = 80;

/// A feedback report about `original` (the message as the server received it).
fn complaint(n: usize, recipient: &str, original: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "From: Feedback Loop <fbl@isp.example.net>\r\n\
To: bounces@bounces.example.org\r\n\
Subject: Complaint about message from news@example.org\r\n\
Message-ID: <fbl-{n}@isp.example.net>\r\n\
Date: Wed, 02 Dec 2026 12:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"fb{n}\"\r\n\
\r\n\
--fb{n}\r\n\
Content-Type: text/plain\r\n\
\r\n\
This is an email abuse report for a message received from 198.51.100.7.\r\n\
--fb{n}\r\n\
Content-Type: message/feedback-report\r\n\
\r\n\
Feedback-Type: abuse\r\n\
User-Agent: ExampleFBL/1.0\r\n\
Version: 1\r\n\
Original-Rcpt-To: <{recipient}>\r\n\
Source-IP: 198.51.100.7\r\n\
\r\n\
--fb{n}\r\n\
Content-Type: message/rfc822\r\n\
\r\n"
    )
    .into_bytes();
    raw.extend_from_slice(original);
    raw.extend_from_slice(format!("\r\n--fb{n}--\r\n").as_bytes());
    raw
}

fn rebound(dir: &Path, args: &[&str]) -> std::process::Output {
    cli::rebound(
        dir,
        args,
        &[
            ("REBOUND_VERP_SECRET", "test-secret"),
            ("REBOUND_POP3_PASSWORD", dovecot::PASSWORD),
        ],
    )
}

#[test]
fn complaints_past_the_limit_pause_the_campaign_until_send_resumes_it() {
    if smtp::skip() || !dovecot::available() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({}));
    let mailbox = dovecot::Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 3 complaints over at most 60 sends is past 4 %; the guard judges from 20 sends.
    senders::write_config(
        d,
        server.port,
        &format!(
            "rate_limit = [\"10/s\"]\n\n[rules]\nmax_complaint_rate = \"4%\"\n\
             complaint_rate_min_sends = 20\n\n{}",
            mailbox.config_toml(TlsMode::Implicit, "REBOUND_POP3_PASSWORD")
        ),
    );
    let campaign = senders::write_campaign(d, "spring", "reader", RECIPIENTS);
    let mut first = senders::spawn_send(d, &campaign, &[], "first.log");
    assert!(
        server.wait_for(25, Duration::from_secs(30)),
        "the server got 25 messages: {}",
        server.log()
    );
    let received = server.received();
    for (n, r) in received.iter().take(3).enumerate() {
        mailbox.add_message(&complaint(n, &r.rcpt_tos[0], &server.message(r)));
    }
    let poll = rebound(d, &["poll", "--once"]);
    let out = String::from_utf8_lossy(&poll.stdout);
    assert!(
        poll.status.success(),
        "{}",
        String::from_utf8_lossy(&poll.stderr)
    );
    assert!(
        out.contains("campaign 1 paused: complaint rate"),
        "the pass's summary names the pause: {out}"
    );

    // The running sender sees the pause at its next claim and stops, with the reason.
    let status = senders::wait(&mut first, Duration::from_secs(30));
    let log = std::fs::read_to_string(d.join("first.log")).unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("paused: complaint rate") && log.contains("max_complaint_rate 4.0 %"),
        "{log}"
    );
    let stopped_at = server.received().len();
    assert!(
        stopped_at < RECIPIENTS,
        "the sender stopped before the end: {stopped_at}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.received().len(),
        stopped_at,
        "nothing sent while paused"
    );

    let list = rebound(d, &["campaigns"]);
    let table = String::from_utf8_lossy(&list.stdout);
    assert!(table.contains("paused"), "{table}");
    assert!(
        table.contains("3 ("),
        "three complaints with their rate: {table}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&rebound(d, &["campaigns", "--format", "json"]).stdout).unwrap();
    let c = &json[0];
    assert_eq!(c["complaints"], 3);
    assert!(
        c["pause"]["reason"].as_str().is_some_and(
            |r| r.contains(" complaints over ") && r.contains("max_complaint_rate 4.0 %")
        ),
        "{c}"
    );
    assert_eq!(c["complaints_by_domain"][0]["domain"], "example.com");
    assert_eq!(c["complaints_by_domain"][0]["complaints"], 3);

    // `rebound send` resumes it: the guard counts from then, the rest goes out once.
    let mut second = senders::spawn_send(d, &campaign, &[], "second.log");
    let status = senders::wait(&mut second, Duration::from_secs(60));
    let log = std::fs::read_to_string(d.join("second.log")).unwrap();
    assert!(status.success(), "{log}");
    assert!(log.contains("it was paused (complaint rate"), "{log}");
    let deliveries = server.deliveries();
    assert_eq!(deliveries.len(), RECIPIENTS, "{deliveries:?}");
    assert!(
        deliveries.values().all(|n| *n == 1),
        "every recipient once: {deliveries:?}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&rebound(d, &["campaigns", "--format", "json"]).stdout).unwrap();
    assert_eq!(json[0]["state"], "done");
    assert!(json[0]["pause"].is_null(), "{}", json[0]);
}
