//! The dashboard in a real headless Chromium: bounces polled from a real Dovecot by
//! `rebound poll --once`, then a `rebound serve` with a token on the same store, and in
//! the browser: the login form, the overview's chart with the pass's numbers, a bounced
//! recipient, its raw bounce, Reactivate (checked through the API), a policy upload and
//! its dry run over the archive, and the campaigns page's live numbers. A screenshot of
//! each page goes to `target/ui-screenshots/` (the ones in docs/screenshots/ are from
//! this test).

#[path = "support/browser.rs"]
mod browser;
#[path = "support/cli.rs"]
mod cli;
#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "policy_support/mod.rs"]
mod policy_support;
#[path = "support/serve.rs"]
mod serve;
// `support/browser.rs` reports skips through `crate::skip`: the copy policy_support has.
use policy_support::skip;

use std::path::{Path, PathBuf};

use browser::Browser;
use rebound::config::TlsMode;

/// A delivery-status report for `recipient` with `status` (`5.1.1`, `4.2.2`).
fn dsn(n: usize, recipient: &str, status: &str, text: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <ui-dsn-{n}@mx.example.org>\r\n\
Date: Wed, 02 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b{n}\"\r\n\r\n\
--b{n}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--b{n}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n\
Diagnostic-Code: smtp; {code} {status} <{recipient}>: {text}\r\n\r\n\
--b{n}--\r\n",
        code = if status.starts_with('5') { 550 } else { 452 },
    )
    .into_bytes()
}

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots")
}

fn poll_once(dir: &Path) {
    let out = cli::rebound(
        dir,
        &["poll", "--once"],
        &[("REBOUND_POP3_PASSWORD", dovecot::PASSWORD)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_in_a_browser() {
    if !dovecot::available() {
        return;
    }
    let Some(wasm) = policy_support::guest("invalid-recipient") else {
        return;
    };
    let Some(b) = Browser::start() else {
        return;
    };

    // A real mailbox pass: two hard bounces, a soft one, and a gateway note only the
    // invalid-recipient policy can read.
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
    mailbox.add_message(&dsn(1, "ann@example.net", "5.1.1", "User unknown"));
    mailbox.add_message(&dsn(2, "bob@example.com", "5.1.1", "User unknown"));
    mailbox.add_message(&dsn(
        3,
        "cy@example.net",
        "4.2.2",
        "Mailbox full <img src=x onerror=alert(1)>",
    ));
    mailbox.add_message(policy_support::INVALID_RECIPIENT);
    poll_once(d);
    assert_eq!(mailbox.message_count(), 0, "every message recorded");

    let server = serve::Server::start(d, &store, &[("REBOUND_CACHE_DIR", "cache")]);
    let base = format!("http://{}", server.addr);
    // What the store says the pass booked, for the chart to show.
    let events = server.request("GET", "/events?kind=bounce", None).json();
    let booked = |class: &str| {
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["class"] == class && e["blame"] != "sender")
            .count() as u64
    };
    let (hard, soft) = (booked("hard"), booked("soft"));
    let user_unknown = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"] == "user-unknown")
        .count();
    assert!(hard >= 2 && soft >= 1, "{events}");

    // Not logged in: every page sends the browser to the form.
    b.goto(&format!("{base}/ui/recipients"));
    assert!(b.url().ends_with("/ui/login"), "{}", b.url());
    b.type_into(&b.find("#token"), "not-the-token");
    b.click(&b.find("#login"));
    assert!(
        b.text(&b.find("#login-error")).contains("not the token"),
        "{}",
        b.source()
    );
    b.screenshot(&shots().join("login.png"));
    b.type_into(&b.find("#token"), serve::TOKEN);
    b.click(&b.find("#login"));
    b.wait_until("the overview", |b| b.url().ends_with("/ui"));
    let cookies = b.cookies();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "rebound_session")
        .unwrap_or_else(|| panic!("no session cookie: {cookies:?}"));
    assert_ne!(
        session["value"],
        serve::TOKEN,
        "the cookie is not the token"
    );
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Strict");
    assert_eq!(session["path"], "/ui");
    assert_eq!(
        b.script("return document.cookie"),
        "",
        "scripts cannot read it"
    );

    // The overview: the chart's totals are the pass's bookings.
    let total = |series: &str| -> u64 {
        let e = b.find(&format!("#series text.legend[data-series='{series}']"));
        let shown = b.text(&e);
        let n: u64 = b.attr(&e, "data-total").unwrap().parse().unwrap();
        assert_eq!(shown, format!("{series} {n}"), "the legend says it too");
        n
    };
    assert_eq!(total("hard"), hard);
    assert_eq!(total("soft"), soft);
    assert_eq!(total("sends"), 0);
    let points: u64 = b
        .find_all("#series g[data-series='hard'] circle")
        .iter()
        .map(|c| b.attr(c, "data-value").unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(points, hard, "the points add up to the total");
    let reasons = b.find("#by-reason g.bar[data-label='user-unknown']");
    assert_eq!(
        b.attr(&reasons, "data-value").unwrap(),
        user_unknown.to_string()
    );
    b.screenshot(&shots().join("overview.png"));

    // A bounced recipient, found by a search.
    b.goto(&format!("{base}/ui/recipients?q=ann%40"));
    let found = b.find_all("a.recipient");
    assert_eq!(found.len(), 1, "{}", b.source());
    assert_eq!(b.text(&found[0]), "ann@example.net");
    b.goto(&format!("{base}/ui/recipients?q=example.net&mode=contains"));
    assert_eq!(
        b.find_all("a.recipient").len(),
        2,
        "ann and cy: {}",
        b.source()
    );
    b.screenshot(&shots().join("recipients.png"));
    b.goto(&format!("{base}/ui/recipients?q=cy"));
    b.click(&b.find("a.recipient"));
    // The bounce text's markup is shown, not run.
    let diag = b.text(&b.find("table.history .diag"));
    assert!(
        diag.contains("<img src=x onerror=alert(1)>") && diag.contains("<cy@example.net>"),
        "{diag}"
    );
    assert_eq!(b.script("return document.images.length"), 0);

    b.goto(&format!("{base}/ui/recipients?q=ann"));
    b.click(&b.find("a.recipient"));
    assert_eq!(b.text(&b.find("#state")), "bounced");
    assert_eq!(b.text(&b.find("#hard")), "1");
    b.screenshot(&shots().join("recipient.png"));
    b.click(&b.find("a.raw"));
    let raw = b.text(&b.find("#raw"));
    assert!(
        raw.contains("Final-Recipient: rfc822; ann@example.net")
            && raw.contains("Message-ID: <ui-dsn-1@mx.example.org>"),
        "{raw}"
    );
    b.screenshot(&shots().join("raw.png"));
    b.script("history.back()");
    b.click(&b.find("#reactivate"));
    b.wait_until("the reactivation", |b| b.url().contains("note=reactivated"));
    assert_eq!(b.text(&b.find("#state")), "active");
    let api = server.request("GET", "/recipients/ann@example.net", None);
    assert_eq!(api.json()["recipient"]["state"], "active", "{}", api.text());
    assert_eq!(
        api.json()["events"].as_array().unwrap().last().unwrap()["source"],
        "ui"
    );

    // A policy upload, then its dry run over the archive.
    b.goto(&format!("{base}/ui/policies"));
    b.type_into(&b.find("#policy-name"), "invalid-recipient");
    b.type_into(&b.find("#policy-file"), wasm.to_str().unwrap());
    b.click(&b.find("#upload-button"));
    b.wait_until("the upload", |b| b.url().contains("note="));
    assert!(
        b.text(&b.find("#note"))
            .contains("Uploaded invalid-recipient, version 1"),
        "{}",
        b.source()
    );
    let names: Vec<String> = b
        .find_all("table.policies .policy-name")
        .iter()
        .map(|e| b.text(e))
        .collect();
    assert_eq!(names, ["invalid-recipient"]);
    let listed = server.request("GET", "/policies", None).json();
    assert_eq!(listed[0]["name"], "invalid-recipient", "{listed}");
    b.screenshot(&shots().join("policies.png"));
    let jane = || {
        server
            .request("GET", "/recipients/jane.doe@example.org", None)
            .text()
    };
    let jane_before = jane();
    b.click(&b.find("form[action='/ui/policies/invalid-recipient/dry-run'] button"));
    let changed: u64 = b
        .text(&b.find("#dry-run-changed"))
        .parse()
        .expect("a number");
    assert_eq!(b.text(&b.find("#dry-run-messages")), "4");
    assert!(changed >= 1, "{}", b.source());
    let diff = b.text(&b.find("table.diff"));
    assert!(
        diff.contains("jane.doe@example.org") && diff.contains("bounce hard user-unknown"),
        "{diff}"
    );
    b.screenshot(&shots().join("dry-run.png"));
    assert_eq!(jane(), jane_before, "a dry run writes nothing");

    // Applied with the chain the dashboard built: her page shows the new booking and,
    // apart, the one it replaced.
    let applied = cli::rebound(d, &["reprocess", "--since", "1h"], &[]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    b.goto(&format!("{base}/ui/recipients/jane.doe%40example.org"));
    assert_eq!(b.text(&b.find("#state")), "bounced");
    let replaced = b.text(&b.find("table.superseded"));
    assert!(
        replaced.contains("soft") && replaced.contains("builtin"),
        "{replaced}"
    );
    assert!(
        b.text(&b.find("table.history"))
            .contains("policy:invalid-recipient")
    );

    // Logging out ends the session.
    b.click(&b.find("form.logout button"));
    b.wait_until("the login form", |b| b.url().ends_with("/ui/login"));
    b.goto(&format!("{base}/ui/campaigns"));
    assert!(b.url().ends_with("/ui/login"), "{}", b.url());
    b.type_into(&b.find("#token"), serve::TOKEN);
    b.click(&b.find("#login"));
    b.wait_until("the overview", |b| b.url().ends_with("/ui"));

    // The campaigns page, and its live numbers from the event stream: a campaign (no
    // [smtp], so it stays queued).
    let created = server.request_json(
        "POST",
        "/campaigns",
        br#"{"name": "December news", "from": "News <news@example.org>", "subject": "Hi",
             "text": "Hello", "recipients": ["dee@example.net", "eve@example.net", "fay@example.org"]}"#,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let campaign = created.json()["campaign"]["id"].as_i64().unwrap();
    b.goto(&format!("{base}/ui/campaigns"));
    assert_eq!(b.text(&b.find(&format!("#c-{campaign}-queued"))), "3");
    b.script(&format!(
        "document.getElementById('c-{campaign}-queued').textContent = 'stale'"
    ));
    b.wait_until("a live update", |b| {
        b.text(&b.find(&format!("#c-{campaign}-queued"))) == "3"
    });
    // Pause by hand, then Resume: as the API sees it.
    let pause_of = || {
        server
            .request("GET", &format!("/campaigns/{campaign}"), None)
            .json()["pause"]
            .clone()
    };
    b.click(&b.find(&format!(
        "form[action='/ui/campaigns/{campaign}/pause'] button"
    )));
    // Read by a script: the form's POST reloads the page under an element found before.
    let paused_cell = |b: &browser::Browser| {
        b.script(&format!(
            "const e = document.getElementById('c-{campaign}-paused'); return e ? e.textContent : null"
        ))
    };
    b.wait_until("the pause", |b| {
        paused_cell(b) == "paused by an operator (ui)"
    });
    assert_eq!(pause_of()["reason"], "paused by an operator (ui)");
    b.screenshot(&shots().join("campaigns.png"));
    b.click(&b.find(&format!(
        "form[action='/ui/campaigns/{campaign}/resume'] button"
    )));
    b.wait_until("the resume", |b| paused_cell(b) == "");
    assert!(pause_of().is_null(), "{}", pause_of());

    // An open event stream does not hold up the graceful shutdown.
    let mut server = server;
    let started = std::time::Instant::now();
    assert!(server.terminate().success(), "{}", server.log());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
}
