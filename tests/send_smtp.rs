//! `rebound send` against the real test SMTP server (aiosmtpd): refusals at RCPT and
//! after DATA become bounce events classified like bounce mail, 4xx answers are retried
//! and then recorded as soft, a throttling server (421) is survived, and every message
//! carries its signed VERP sender and Message-ID.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/smtp.rs"]
mod smtp;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

fn rebound(dir: &Path, args: &[&str]) -> std::process::Output {
    cli::rebound(dir, args, &[("REBOUND_VERP_SECRET", "test-secret")])
}

fn setup(dir: &Path, port: u16, recipients: &[String], smtp_extra: &str) -> PathBuf {
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
        "name = \"test-campaign\"\nsubject = \"Hello\"\ntext = \"Hello from rebound.\"\n\
         html = \"<p>Hello from rebound.</p>\"\n[recipients]\nfile = \"list.txt\"\n",
    )
    .unwrap();
    campaign
}

#[test]
fn send_records_refusals_and_survives_throttling() {
    if smtp::skip() {
        return;
    }
    let server = smtp::SmtpServer::start(json!({
        "reject": ["r5@example.com", "r17@example.com"],
        "reject_data": ["r23@example.com"],
        "defer": {"r30@example.com": -1, "r31@example.com": 1},
        "throttle": {"every": 9, "code": 421, "first": 40},
    }));
    let dir = tempfile::tempdir().unwrap();
    let recipients: Vec<String> = (0..60).map(|i| format!("r{i}@example.com")).collect();
    let campaign = setup(
        dir.path(),
        server.port,
        &recipients,
        "workers = 4\nmax_attempts = 3\nretry_delay = \"100ms\"\nthrottle_delay = \"50ms\"\n\
         [[smtp.rate_limit]]\nmessages = 200\nper = \"1s\"\n",
    );
    let out = rebound(
        dir.path(),
        &["send", "--quiet", "--campaign", campaign.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "send failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );

    // Everyone but the four refused recipients got exactly one message.
    let received = server.received();
    let per_rcpt = server.deliveries();
    assert_eq!(per_rcpt.len(), 56, "{per_rcpt:?}");
    assert!(per_rcpt.values().all(|n| *n == 1), "{per_rcpt:?}");
    for gone in [
        "r5@example.com",
        "r17@example.com",
        "r23@example.com",
        "r30@example.com",
    ] {
        assert!(!per_rcpt.contains_key(gone), "{gone}");
    }
    assert!(per_rcpt.contains_key("r31@example.com"));
    // The server did throttle, and the throttled messages were sent later.
    assert!(server.events().iter().filter(|e| e.code == 421).count() >= 3);

    // VERP sender and Message-ID on every message.
    for r in &received {
        assert!(
            r.mail_from.starts_with("bounces+") && r.mail_from.ends_with("@bounces.example.org"),
            "{}",
            r.mail_from
        );
        let mid = r.message_id.as_deref().unwrap_or("");
        assert!(
            mid.starts_with("<rb.") && mid.ends_with("@bounces.example.org>"),
            "{mid}"
        );
        let body = String::from_utf8_lossy(&server.message(r)).to_string();
        assert!(body.contains("X-Rebound-Campaign: 1"), "{body}");
    }

    // The 550s are hard bounces: the recipients are bounced at once.
    let out = rebound(
        dir.path(),
        &["recipients", "--state", "bounced", "--format", "json"],
    );
    let bounced: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut addrs: Vec<&str> = bounced
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    addrs.sort();
    assert_eq!(addrs, vec!["r17@example.com", "r5@example.com"]);
    assert_eq!(bounced[0]["last_reason"], "user-unknown");

    // The events name the campaign and say smtp.
    let out = rebound(
        dir.path(),
        &["events", "--campaign", "1", "--format", "json"],
    );
    let events: Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(events.iter().all(|e| e["source"] == "smtp"));

    let out = rebound(dir.path(), &["campaigns", "--format", "json"]);
    let counts: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &counts[0];
    assert_eq!(c["state"], "done");
    assert_eq!(
        (
            c["recipients"].as_u64(),
            c["sent"].as_u64(),
            c["failed"].as_u64()
        ),
        (Some(60), Some(56), Some(4))
    );
    assert_eq!(
        (c["hard_bounces"].as_u64(), c["soft_bounces"].as_u64()),
        (Some(2), Some(2)),
        "{c}"
    );

    // Sending the same campaign again does nothing.
    let out = rebound(
        dir.path(),
        &["send", "--quiet", "--campaign", campaign.to_str().unwrap()],
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("already done"));
    assert_eq!(server.received().len(), received.len());
}
