//! What would a policy have changed? Messages polled from a real Dovecot with no policy
//! are archived; `rebound reprocess --dry-run --policy invalid_recipient.wasm` and, after
//! the same component is uploaded to a `rebound serve` on the store,
//! `POST /policies/invalid-recipient/test?history=1h` both find the gateway note the
//! built-in detector could not read and show its recipient becoming bounced, while the
//! store stays as it was; `rebound reprocess` without `--dry-run` then books it (once).

#[path = "support/cli.rs"]
mod cli;
#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "policy_support/mod.rs"]
mod policy_support;
#[path = "support/serve.rs"]
mod serve;

use std::path::Path;
use std::process::Output;

use policy_support::INVALID_RECIPIENT;
use rebound::config::TlsMode;

fn rebound(dir: &Path, args: &[&str]) -> Output {
    cli::rebound(dir, args, &[("REBOUND_POP3_PASSWORD", dovecot::PASSWORD)])
}

#[test]
fn a_policy_is_tried_on_the_archive_before_it_decides() {
    if !dovecot::available() {
        return;
    }
    let Some(wasm) = policy_support::guest("invalid-recipient") else {
        return;
    };
    let mailbox = dovecot::Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = format!("[store]\nurl = \"sqlite://{}/rebound.db\"\n", d.display());
    std::fs::write(
        d.join("rebound.toml"),
        format!(
            "{store}\n{}",
            mailbox.config_toml(TlsMode::Implicit, "REBOUND_POP3_PASSWORD")
        ),
    )
    .unwrap();
    mailbox.add_message(INVALID_RECIPIENT);
    mailbox.add_message(b"From: bob@example.org\r\nSubject: lunch?\r\n\r\nAt noon.\r\n");
    let poll = rebound(d, &["poll", "--once"]);
    assert!(
        poll.status.success(),
        "{}",
        String::from_utf8_lossy(&poll.stderr)
    );

    // `rebound reprocess --since 1h --policy WASM` (and `extra`), its JSON report.
    let reprocess = |extra: &[&str]| {
        let mut args = vec!["reprocess", "--since", "1h", "--format", "json", "--policy"];
        args.push(wasm.to_str().unwrap());
        args.extend(extra);
        let out = rebound(d, &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let report = reprocess(&["--dry-run"]);
    assert_eq!(report["messages"], 2, "{report}");
    assert_eq!(report["changed"], 1, "{report}");
    let change = &report["changes"][0];
    assert_eq!(change["recipient"], "jane.doe@example.org", "{report}");
    assert_eq!(change["after"]["class"], "hard", "{report}");
    assert_eq!(change["state"], "active");
    assert_eq!(change["would_be"], "bounced");

    // The same through the API, for the component once uploaded.
    let server = serve::Server::start(d, &store, &[]);
    let up = server.request(
        "PUT",
        "/policies/invalid-recipient",
        Some(&std::fs::read(&wasm).unwrap()),
    );
    assert_eq!(up.status, 201, "{}", up.text());
    let api = server
        .request("POST", "/policies/invalid-recipient/test?history=1h", None)
        .json();
    assert_eq!(api["changed"], 1, "{api}");
    assert_eq!(api["changes"][0]["recipient"], "jane.doe@example.org");
    assert_eq!(api["changes"][0]["would_be"], "bounced");
    let bad = server.request(
        "POST",
        "/policies/invalid-recipient/test?history=soon",
        None,
    );
    assert_eq!(bad.status, 400);
    // A dry run: nothing was written (the built-in detector booked her a soft
    // "filtered" at the poll, and she stays active with that one event).
    let jane = server
        .request("GET", "/recipients/jane.doe@example.org", None)
        .json();
    assert_eq!(jane["recipient"]["state"], "active", "{jane}");
    assert_eq!(jane["events"].as_array().map(Vec::len), Some(1), "{jane}");

    // Applied: her soft event is replaced by the policy's hard one and she is bounced;
    // a second run finds nothing left to change.
    let applied = reprocess(&[]);
    assert_eq!(applied["applied"], true, "{applied}");
    assert_eq!(applied["changed"], 1, "{applied}");
    assert_eq!(
        applied["state_changes"][0]["address"],
        "jane.doe@example.org"
    );
    assert_eq!(applied["state_changes"][0]["to"], "bounced", "{applied}");
    let jane = server
        .request("GET", "/recipients/jane.doe@example.org", None)
        .json();
    assert_eq!(jane["recipient"]["state"], "bounced", "{jane}");
    let events = jane["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{jane}");
    assert_eq!(events[0]["class"], "hard", "{jane}");
    assert_eq!(
        events[0]["decided_by"], "policy:invalid-recipient",
        "{jane}"
    );
    let before = jane["superseded"].as_array().unwrap();
    assert_eq!(before.len(), 1, "{jane}");
    assert_eq!(before[0]["class"], "soft", "{jane}");
    assert!(before[0]["superseded_at"].is_string(), "{jane}");
    let again = reprocess(&[]);
    assert_eq!(again["changed"], 0, "{again}");
    assert_eq!(again["state_changes"].as_array().map(Vec::len), Some(0));
}
