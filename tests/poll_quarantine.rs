//! Lifting a quarantine: `rebound poll quarantine` lists what a real Dovecot mailbox has
//! quarantined, `rebound poll release` lets the next pass fetch it, the failures of a
//! message no longer on the server are forgotten, and `GET`/`POST /quarantine` on a
//! real `rebound serve` do the same.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Command;

use dovecot::Dovecot;
use rebound::config::TlsMode;
use rebound::pop3;
use rebound::store::Store;

const PASSWORD_ENV: &str = "REBOUND_QUARANTINE_TEST_POP3_PASSWORD";

fn rebound(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rebound"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env(PASSWORD_ENV, dovecot::PASSWORD)
        .env("REBOUND_LOG", "warn")
        .output()
        .unwrap()
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn poll_release_lets_the_next_pass_fetch_a_quarantined_message() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    d.add_message(
        b"From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\nSubject: Undelivered Mail\n\
          X-Failed-Recipients: held@example.net\n\n<held@example.net>: host mx.example.net said: \
          550 5.1.1 User unknown (in reply to RCPT TO command)\n",
    );
    d.add_message(b"From: someone@example.net\nSubject: note\n\nhello\n");
    let cfg = d.config(TlsMode::Starttls);
    let mut c = pop3::Client::connect(&pop3::Options::from_config(&cfg))
        .await
        .unwrap();
    c.login(dovecot::USER, dovecot::PASSWORD).await.unwrap();
    let uids = c.uidl().await.unwrap();
    c.quit().await.unwrap();
    let held = uids[0].uid.clone();

    let work = tempfile::tempdir().unwrap();
    let db = work.path().join("rebound.db");
    let config = work.path().join("rebound.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}\"\n\n{}",
            db.display(),
            d.config_toml(TlsMode::Starttls, PASSWORD_ENV)
        ),
    )
    .unwrap();
    // As three earlier passes that broke on it would have left it, plus a message that
    // has left the server since.
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    for _ in 0..3 {
        store
            .record_fetch_failure(
                "test",
                &held,
                "pop3 RETR 1: the server closed the connection",
                3,
            )
            .await
            .unwrap();
    }
    store
        .record_fetch_failure("test", "00000099deadbeef", "pop3 RETR 5: -ERR", 3)
        .await
        .unwrap();
    store.close().await;

    let s = json(&rebound(&config, &["poll", "--once", "--format", "json"]));
    assert_eq!(s["processed"], 1, "{s}");
    assert_eq!(s["quarantined"][0]["uid"], held.as_str(), "{s}");
    assert_eq!(d.message_count(), 1, "the quarantined message stays");

    let list = json(&rebound(
        &config,
        &["poll", "quarantine", "--format", "json"],
    ));
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["uid"], held.as_str());
    assert_eq!(list[0]["failures"], 3);
    assert_eq!(
        list[0]["last_error"],
        "pop3 RETR 1: the server closed the connection"
    );
    assert!(list[0]["first_failure_at"].is_string());
    let table = rebound(&config, &["poll", "quarantine"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.starts_with("UID") && text.contains("LAST ERROR") && text.contains(&held),
        "{text}"
    );

    // The message gone from the server was forgotten by the pass.
    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    assert!(
        store
            .fetch_failures("test", &["00000099deadbeef"])
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;

    let wrong = rebound(&config, &["poll", "release", "nope"]);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("nope: not quarantined"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    let none = rebound(&config, &["poll", "release"]);
    assert!(!none.status.success(), "a UID or --all is required");

    let ok = rebound(&config, &["poll", "release", &held]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains(&format!("{held}: released")));

    let s = json(&rebound(&config, &["poll", "--once", "--format", "json"]));
    assert_eq!(
        (s["processed"].as_u64(), s["bounces"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    assert!(s["quarantined"].as_array().unwrap().is_empty(), "{s}");
    assert_eq!(d.message_count(), 0);
    let list = json(&rebound(
        &config,
        &["poll", "quarantine", "--format", "json"],
    ));
    assert!(list.as_array().unwrap().is_empty());
    let out = rebound(&config, &["poll", "release", "--all"]);
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn quarantine_routes_list_and_release() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
    let store = Store::open(&url).await.unwrap();
    for (mailbox, uid) in [("a", "u1"), ("a", "u2"), ("b", "u1")] {
        store
            .record_fetch_failure(mailbox, uid, "pop3 RETR 1: -ERR no such file", 1)
            .await
            .unwrap();
    }
    store.close().await;
    let server = serve::Server::start(
        dir.path(),
        "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n",
        &[],
    );

    let all = server.request("GET", "/quarantine", None);
    assert_eq!(all.status, 200);
    assert_eq!(all.json().as_array().unwrap().len(), 3);
    let a = server.request("GET", "/quarantine?mailbox=a", None).json();
    assert_eq!(a.as_array().unwrap().len(), 2);
    assert_eq!(a[0]["last_error"], "pop3 RETR 1: -ERR no such file");

    let bad = server.request_json("POST", "/quarantine", b"{}");
    assert_eq!(bad.status, 400);
    let both = server.request_json("POST", "/quarantine", br#"{"uids": ["u1"], "all": true}"#);
    assert_eq!(both.status, 400);

    let one = server.request_json(
        "POST",
        "/quarantine",
        br#"{"mailbox": "a", "uids": ["u1", "u9"]}"#,
    );
    assert_eq!(one.status, 200);
    let one = one.json();
    assert_eq!(
        one["released"],
        serde_json::json!([{"mailbox": "a", "uid": "u1"}])
    );
    assert_eq!(one["not_quarantined"], serde_json::json!(["u9"]));
    let rest = server
        .request_json("POST", "/quarantine", br#"{"all": true}"#)
        .json();
    assert_eq!(rest["released"].as_array().unwrap().len(), 2);
    assert!(
        server
            .request("GET", "/quarantine", None)
            .json()
            .as_array()
            .unwrap()
            .is_empty()
    );

    let spec = server.request("GET", "/openapi.json", None).json();
    assert!(spec["paths"]["/quarantine"]["get"].is_object());
    assert!(spec["paths"]["/quarantine"]["post"].is_object());
}
