//! The whole loop with real servers: `rebound send` hands two messages to a private
//! Postfix, which relays them to the test SMTP server; that refuses one recipient with
//! 550 5.1.1, so Postfix writes a genuine RFC 3464 bounce to the VERP envelope sender;
//! the bounce lands in the Dovecot mailbox, and `rebound poll` marks the recipient
//! bounced and ties the event to the campaign through the VERP token.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/postfix.rs"]
mod postfix;
#[path = "support/smtp.rs"]
mod smtp;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rebound::config::TlsMode;
use serde_json::{Value, json};

const PASSWORD_ENV: &str = "REBOUND_TEST_POP3_PASSWORD";

fn rebound(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rebound"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("REBOUND_VERP_SECRET", "loop-secret")
        .env(PASSWORD_ENV, dovecot::PASSWORD)
        .env("REBOUND_LOG", "warn")
        .output()
        .expect("running rebound")
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn postfix_bounce_of_a_campaign_marks_the_recipient_and_names_the_campaign() {
    if smtp::skip() || !postfix::available() || !dovecot::available() {
        return;
    }
    // The recipients' "remote" server refuses one of them.
    let remote = smtp::SmtpServer::start(json!({"reject": ["gone@remote.test"]}));
    let mailbox = dovecot::Dovecot::start();
    // Postfix relays remote.test to it, and delivers mail for the VERP domain (the
    // bounces it writes) into the Dovecot maildir with its own virtual delivery agent.
    let mta = postfix::Postfix::start_with(
        &[("remote.test", remote.port)],
        Some(("bounces.example.org", &mailbox.maildir)),
    );

    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let config = w.join("rebound.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
             from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\n\
             verp_secret_env = \"REBOUND_VERP_SECRET\"\nhello_name = \"sender.rebound.test\"\n\n{}",
            w.display(),
            mta.port,
            mailbox.config_toml(TlsMode::Starttls, PASSWORD_ENV)
        ),
    )
    .unwrap();
    std::fs::write(w.join("list.txt"), "ok@remote.test\ngone@remote.test\n").unwrap();
    std::fs::write(
        w.join("campaign.toml"),
        "name = \"loop\"\nsubject = \"The loop\"\ntext = \"Round and round.\"\n[recipients]\nfile = \"list.txt\"\n",
    )
    .unwrap();

    let out = rebound(
        &config,
        &[
            "send",
            "--quiet",
            "--campaign",
            w.join("campaign.toml").to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "send: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        mta.log()
    );

    // Postfix relays both; the remote takes one and refuses the other.
    assert!(
        remote.wait_for(1, Duration::from_secs(30)),
        "nothing relayed: {}",
        mta.log()
    );
    assert_eq!(remote.received()[0].rcpt_tos, vec!["ok@remote.test"]);
    // Postfix's bounce goes to the VERP sender of the refused message: into the maildir.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while mailbox.message_count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no bounce delivered: {}",
            mta.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let new_dir = mailbox.maildir.join("new");
    let file = std::fs::read_dir(&new_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let dsn = String::from_utf8_lossy(&std::fs::read(file).unwrap()).to_string();
    assert!(dsn.contains("multipart/report"), "not a DSN: {dsn}");
    assert!(dsn.contains("Delivered-To: bounces+1-"), "{dsn}");
    assert!(
        dsn.contains("Return-Path: <>"),
        "a bounce has the null sender: {dsn}"
    );

    let summary = json_of(&rebound(&config, &["poll", "--once", "--format", "json"]));
    assert_eq!(summary["processed"], 1, "{summary}");

    let bounced = json_of(&rebound(
        &config,
        &["recipients", "--state", "bounced", "--format", "json"],
    ));
    let addrs: Vec<&str> = bounced
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(addrs, vec!["gone@remote.test"]);
    assert_eq!(bounced[0]["last_status"], "5.1.1");

    let events = json_of(&rebound(
        &config,
        &["events", "--campaign", "1", "--format", "json"],
    ));
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["recipient"], "gone@remote.test");
    assert!(
        events[0]["source"].as_str().unwrap().starts_with("pop3:"),
        "{}",
        events[0]
    );
    assert!(
        events[0]["original_message_id"]
            .as_str()
            .unwrap()
            .starts_with("rb.1-"),
        "{}",
        events[0]
    );

    let campaigns = json_of(&rebound(&config, &["campaigns", "--format", "json"]));
    assert_eq!(campaigns[0]["sent"], 2);
    assert_eq!(campaigns[0]["hard_bounces"], 1);
}
