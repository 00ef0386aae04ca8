//! The raw message archive end to end: `rebound poll --once` against a real Dovecot keeps
//! every message it records, compressed, in the SQLite file; `rebound events --raw ID`
//! and `GET /events/{id}/raw` of a `rebound serve` on the same store give back the bounce
//! exactly as the server handed it out; with `[store] keep_raw = 0` nothing is kept.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Output;

use rebound::config::TlsMode;

fn dsn(n: usize, recipient: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{n}@mx.example.org>\r\n\
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

fn rebound(dir: &Path, args: &[&str]) -> Output {
    cli::rebound(dir, args, &[("REBOUND_POP3_PASSWORD", dovecot::PASSWORD)])
}

fn config(dir: &Path, mailbox: &dovecot::Dovecot, keep_raw: &str) -> String {
    format!(
        "[store]\nurl = \"sqlite://{}/rebound.db\"\n{keep_raw}\n\n{}",
        dir.display(),
        mailbox.config_toml(TlsMode::Implicit, "REBOUND_POP3_PASSWORD")
    )
}

/// The id of the newest event of `recipient`.
fn event_id(dir: &Path, recipient: &str) -> i64 {
    let out = rebound(
        dir,
        &["events", "--recipient", recipient, "--format", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    events.as_array().unwrap().last().unwrap()["id"]
        .as_i64()
        .unwrap()
}

#[test]
fn polled_messages_are_kept_and_shown_as_fetched() {
    if !dovecot::available() {
        return;
    }
    let mailbox = dovecot::Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rebound.toml"), config(d, &mailbox, "")).unwrap();
    let bounce = dsn(1, "ann@example.net");
    mailbox.add_message(&bounce);
    mailbox.add_message(b"From: bob@example.org\r\nSubject: lunch?\r\n\r\nAt noon.\r\n");
    let poll = rebound(d, &["poll", "--once"]);
    assert!(
        poll.status.success(),
        "{}",
        String::from_utf8_lossy(&poll.stderr)
    );
    assert_eq!(mailbox.message_count(), 0, "both deleted from the server");

    let id = event_id(d, "ann@example.net");
    let shown = rebound(d, &["events", "--raw", &id.to_string()]);
    assert!(
        shown.status.success(),
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    assert_eq!(
        shown.stdout,
        dovecot::as_served(&bounce),
        "the bounce as fetched"
    );
    let none = rebound(d, &["events", "--raw", "999999"]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no archived message"));

    // Reprocessed with the same detector and no policy: nothing would change.
    let again = rebound(d, &["reprocess", "--dry-run", "--since", "1h"]);
    let said = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{said}");
    assert!(
        said.contains("reprocessed 2 archived messages: 0 would change, 2 unchanged"),
        "{said}"
    );
    // Applied: nothing to write either, and the history is untouched.
    let events = event_id(d, "ann@example.net");
    let apply = rebound(d, &["reprocess", "--since", "1h"]);
    let said = String::from_utf8_lossy(&apply.stderr);
    assert!(apply.status.success(), "{said}");
    assert!(
        said.contains("reprocessed 2 archived messages: 0 booked again, 2 unchanged"),
        "{said}"
    );
    assert_eq!(event_id(d, "ann@example.net"), events, "the same event");

    // The API of a serve on the same store.
    let store_only = format!("[store]\nurl = \"sqlite://{}/rebound.db\"\n", d.display());
    let server = serve::Server::start(d, &store_only, &[]);
    let raw = server.request("GET", &format!("/events/{id}/raw"), None);
    assert_eq!(raw.status, 200);
    assert_eq!(raw.body, dovecot::as_served(&bounce));
    assert_eq!(
        server.request("GET", "/events/999999/raw", None).status,
        404
    );
    drop(server);

    // keep_raw = 0: the next bounce is recorded, not kept.
    std::fs::write(d.join("rebound.toml"), config(d, &mailbox, "keep_raw = 0")).unwrap();
    mailbox.add_message(&dsn(2, "cy@example.net"));
    let poll = rebound(d, &["poll", "--once"]);
    assert!(
        poll.status.success(),
        "{}",
        String::from_utf8_lossy(&poll.stderr)
    );
    let id = event_id(d, "cy@example.net");
    let shown = rebound(d, &["events", "--raw", &id.to_string()]);
    assert_eq!(
        shown.status.code(),
        Some(1),
        "nothing kept with keep_raw = 0"
    );
}
