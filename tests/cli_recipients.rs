//! `rebound events`, `rebound recipients reactivate`, `rebound campaigns` (and its
//! `resume`) and `check-config` with `[rules] pause_on_sender_blocks`, against a real
//! SQLite file the library filled.

use std::path::Path;
use std::process::Command;

use rebound::config::RulesConfig;
use rebound::store::{EventContext, Store};
use rebound::verdict::{MessageKind, Verdict};

const CONFIG: &str = "[store]\nurl = \"sqlite://r.db\"\n[rules]\n\
    pause_on_sender_blocks = { threshold = \"20%\", min_sends = 50, window = \"1h\" }\n";

fn rebound(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .current_dir(dir)
        .args(["--config", "rebound.toml"])
        .args(args)
        .env("REBOUND_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn reply(address: &str, code: u16, text: &str) -> Verdict {
    Verdict {
        kind: MessageKind::Bounce,
        recipients: vec![rebound::detector::verdict_for_reply(address, code, text)],
        decided_by: "builtin".into(),
    }
}

async fn fill(dir: &Path) {
    let url = format!("sqlite://{}", dir.join("r.db").display());
    let store = Store::open(&url).await.unwrap();
    let rules = RulesConfig::default();
    let _ = store
        .record_verdict(
            &EventContext::smtp(),
            &reply(
                "gone@example.net",
                550,
                "5.1.1 <gone@example.net>: user unknown",
            ),
            &rules,
        )
        .await
        .unwrap();
    // A report naming a forwarding target, tied by correlation to jane's send.
    let mut blocked = reply(
        "forward@elsewhere.example",
        550,
        "5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org",
    );
    blocked
        .recipients
        .push(rebound::detector::verdict_for_reply(
            "jane@example.net",
            550,
            "5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org",
        ));
    let ctx = EventContext {
        recipient: Some("jane@example.net".into()),
        original_message_id: Some("rb.1-1@bounces.example.org".into()),
        ..EventContext::file("blocked.eml")
    };
    let _ = store.record_verdict(&ctx, &blocked, &rules).await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_shows_blame_and_aliases_and_reactivates() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rebound.toml"), CONFIG).unwrap();
    fill(dir.path()).await;

    let (code, out, err) = rebound(dir.path(), &["events", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let events: serde_json::Value = serde_json::from_str(&out).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{out}");
    assert_eq!(events[0]["blame"], "recipient");
    assert_eq!(events[1]["recipient"], "jane@example.net");
    assert_eq!(events[1]["blame"], "sender");
    assert_eq!(events[1]["aliases"][0], "forward@elsewhere.example");

    let (code, out, _) = rebound(dir.path(), &["events"]);
    assert_eq!(code, 0);
    let header = out.lines().next().unwrap();
    assert!(
        header.contains("BLAME") && header.contains("ALIASES"),
        "{out}"
    );
    assert!(
        out.contains("sender") && out.contains("forward@elsewhere.example"),
        "{out}"
    );

    // Blocked by a blocklist: jane stays active; the forwarding address is no recipient.
    let (_, out, _) = rebound(dir.path(), &["recipients", "--format", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let states: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("gone@example.net".to_owned(), "bounced".to_owned()),
            ("jane@example.net".to_owned(), "active".to_owned())
        ]
    );

    let (code, out, err) = rebound(
        dir.path(),
        &["recipients", "reactivate", "Gone@Example.net"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "gone@example.net: bounced -> active");
    let (code, _, err) = rebound(
        dir.path(),
        &["recipients", "reactivate", "gone@example.net"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("already active"), "{err}");
    let (code, _, err) = rebound(
        dir.path(),
        &["recipients", "reactivate", "nobody@example.net"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no such recipient"), "{err}");
    let (code, out, _) = rebound(dir.path(), &["recipients", "--state", "bounced"]);
    assert_eq!(code, 0);
    assert!(!out.contains("gone@example.net"), "{out}");

    let (code, out, _) = rebound(
        dir.path(),
        &["events", "--kind", "reactivation", "--format", "json"],
    );
    assert_eq!(code, 0);
    let ev: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(ev.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(ev[0]["kind"], "reactivation");
    assert_eq!(ev[0]["previous_state"], "bounced");
    assert_eq!(ev[0]["source"], "cli");
}

#[test]
fn cli_campaigns_resume_and_check_config_accept_the_pause_rule() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rebound.toml"), CONFIG).unwrap();
    let (code, out, err) = rebound(dir.path(), &["check-config"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = rebound(dir.path(), &["campaigns", "--format", "json"]);
    assert_eq!((code, out.trim()), (0, "[]"));
    let (code, _, err) = rebound(dir.path(), &["campaigns", "resume", "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("no paused destination domain"), "{err}");
    std::fs::write(
        dir.path().join("rebound.toml"),
        "[rules]\npause_on_sender_blocks = { threshold = \"150%\" }\n",
    )
    .unwrap();
    let (code, out, err) = rebound(dir.path(), &["check-config"]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains("150"), "{err}");
}

/// `rebound recipients import` adds the list (a suppressed address stays suppressed, a
/// row without an address is reported and makes the exit code 1), `export --suppressed`
/// writes the suppression list as CSV, and a campaign from the store takes the active
/// subscribers only.
#[tokio::test]
async fn recipients_import_keeps_suppressions_and_export_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rebound.toml"), CONFIG).unwrap();
    fill(d).await;
    std::fs::write(
        d.join("list.csv"),
        "email,name,plan\nann@example.com,Ann,pro\ngone@example.net,Gone,\nnobody,,\nbob@example.com,,free\n",
    )
    .unwrap();
    let (code, out, err) = rebound(d, &["recipients", "import", "list.csv"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("list.csv:4:"), "{err}");
    assert!(
        out.contains("3 subscribers: 2 added, 1 known (1 suppressed, kept so)"),
        "{out}"
    );
    let (code, out, _) = rebound(d, &["recipients", "--state", "active", "--format", "json"]);
    assert_eq!(code, 0);
    let active: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut names: Vec<&str> = active
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    // The two new subscribers beside the active recipient `fill` left; not the bounced one.
    assert_eq!(
        names,
        ["ann@example.com", "bob@example.com", "jane@example.net"]
    );

    let (code, csv, err) = rebound(d, &["recipients", "export", "--suppressed"]);
    assert_eq!(code, 0, "{err}");
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("address,state,"));
    let rows: Vec<&str> = lines.collect();
    assert!(
        rows.iter()
            .any(|l| l.starts_with("gone@example.net,bounced,")),
        "{csv}"
    );
    assert!(!csv.contains("ann@example.com"), "{csv}");
    let (_, all, _) = rebound(d, &["recipients", "export", "--format", "json"]);
    let all: serde_json::Value = serde_json::from_str(&all).unwrap();
    assert!(all.as_array().unwrap().len() >= 3);
}
