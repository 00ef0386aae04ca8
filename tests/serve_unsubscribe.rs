//! One-click unsubscribe end to end: `rebound serve` sends a campaign through the real
//! test SMTP server; every message carries `List-Unsubscribe` (the HTTPS link under
//! `[api] public_url` and the `mailto:`) and `List-Unsubscribe-Post`. Then, with no API
//! token, as a recipient's mail client would: a GET of the link changes nothing, the
//! one-click POST unsubscribes (an `unsubscribe` event with the campaign), a repeat changes
//! nothing more, a forged token or a wrong body gets a 4xx and changes nothing, and the
//! next campaign to the same list skips the unsubscribed address; an import of the list
//! does not bring it back and the export of the suppressions names it.

#[path = "support/serve.rs"]
mod serve;
#[path = "support/smtp.rs"]
mod smtp;

use std::time::Duration;

use serde_json::json;
use serve::Server;

fn config(port: u16) -> String {
    format!(
        "[store]\nurl = \"sqlite://rebound.db\"\n\
         [api]\npublic_url = \"https://rebound.example.com\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\nworkers = 2\n"
    )
}

/// Sends a campaign to `recipients` through `server` and waits until the SMTP server has
/// `total` messages.
fn send(server: &Server, smtp: &smtp::SmtpServer, name: &str, recipients: &[&str], total: usize) {
    let body = json!({
        "name": name, "from": "News <news@example.org>", "subject": "Weekly",
        "text": "Hello", "recipients": recipients,
    });
    let created = server.request_json("POST", "/campaigns", body.to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(
        smtp.wait_for(total, Duration::from_secs(30)),
        "the campaign was not sent; log:\n{}",
        server.log()
    );
}

/// The message's header `name`, unfolded.
fn header(raw: &[u8], name: &str) -> Option<String> {
    let parsed = mail_parser::MessageParser::default().parse(raw)?;
    parsed
        .header_raw(name)
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn post(server: &Server, path: &str, body: &[u8]) -> serve::Response {
    server
        .try_request(
            "POST",
            path,
            Some(body),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .unwrap()
}

fn state_of(server: &Server, address: &str) -> String {
    let r = server.request("GET", &format!("/recipients/{address}"), None);
    if r.status == 404 {
        return "unknown".into();
    }
    r.json()["recipient"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn unsubscribe_events(server: &Server) -> Vec<serde_json::Value> {
    let events = server
        .request("GET", "/events?kind=unsubscribe", None)
        .json();
    events["events"]
        .as_array()
        .or_else(|| events.as_array())
        .cloned()
        .unwrap_or_default()
}

#[test]
fn one_click_unsubscribe_through_the_link_of_a_sent_message() {
    if smtp::skip() {
        return;
    }
    let smtp = smtp::SmtpServer::start(json!({}));
    let dir = tempfile::tempdir().unwrap();
    let env = [("REBOUND_VERP_SECRET", "unsubscribe-secret")];
    let server = Server::start(dir.path(), &config(smtp.port), &env);
    let list = ["ann@example.com", "bob@example.com"];
    send(&server, &smtp, "first", &list, 2);

    let mut links = std::collections::BTreeMap::new();
    for r in smtp.received() {
        let raw = smtp.message(&r);
        let unsubscribe = header(&raw, "List-Unsubscribe").expect("List-Unsubscribe");
        assert_eq!(
            header(&raw, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        let link = unsubscribe
            .split(", ")
            .find_map(|l| l.strip_prefix("<https://rebound.example.com"))
            .and_then(|l| l.strip_suffix('>'))
            .unwrap_or_else(|| panic!("no HTTPS link in {unsubscribe:?}"))
            .to_owned();
        assert!(
            unsubscribe.contains("<mailto:bounces+u-"),
            "no mailto: in {unsubscribe:?}"
        );
        links.insert(r.rcpt_tos[0].clone(), link);
    }
    let ann = links["ann@example.com"].clone();
    let bob = links["bob@example.com"].clone();

    // A link scanner's GET: a page with the button, nothing changed.
    let page = server.try_request("GET", &ann, None, &[]).unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(
        page.text().contains("<form method=\"post\""),
        "{}",
        page.text()
    );
    assert_eq!(state_of(&server, "ann@example.com"), "unknown");

    // Forged: another send's number under ann's MAC, a MAC cut short; a wrong body.
    let (head, mac) = ann.rsplit_once('-').unwrap();
    let forged_send = {
        let (campaign_send, _) = bob.rsplit_once('-').unwrap();
        format!("{campaign_send}-{mac}")
    };
    for forged in [forged_send, format!("{head}-{}", &mac[..mac.len() - 2])] {
        let r = post(&server, &forged, b"List-Unsubscribe=One-Click");
        assert_eq!(r.status, 404, "{forged}: {}", r.text());
    }
    assert_eq!(post(&server, &ann, b"List-Unsubscribe=Maybe").status, 400);
    assert_eq!(post(&server, &ann, b"").status, 400);
    assert_eq!(state_of(&server, "ann@example.com"), "unknown");
    assert_eq!(state_of(&server, "bob@example.com"), "unknown");
    assert!(unsubscribe_events(&server).is_empty());

    // The one-click POST, as a mail client sends it, twice.
    for _ in 0..2 {
        let r = post(&server, &ann, b"List-Unsubscribe=One-Click");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(state_of(&server, "ann@example.com"), "unsubscribed");
    assert_eq!(state_of(&server, "bob@example.com"), "unknown");
    let events = unsubscribe_events(&server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["recipient"], "ann@example.com");
    assert_eq!(events[0]["source"], "one-click");
    assert_eq!(events[0]["campaign_id"], 1, "{}", events[0]);

    // The next campaign to the same list skips her.
    send(&server, &smtp, "second", &list, 3);
    std::thread::sleep(Duration::from_millis(500));
    let to_ann = smtp
        .received()
        .iter()
        .filter(|r| r.rcpt_tos.iter().any(|t| t == "ann@example.com"))
        .count();
    assert_eq!(to_ann, 1, "mail after the unsubscribe");
    assert_eq!(smtp.received().len(), 3);

    // The list owner's side: an import does not bring her back, the export names her.
    let imported = server
        .try_request(
            "POST",
            "/recipients/import",
            Some(b"address,name\nann@example.com,Ann\ncy@example.com,Cy\n"),
            &[
                ("Authorization", &format!("Bearer {}", serve::TOKEN)),
                ("Content-Type", "text/csv"),
            ],
        )
        .unwrap();
    assert_eq!(imported.status, 200, "{}", imported.text());
    let counts = &imported.json()["imported"];
    assert_eq!(
        (&counts["added"], &counts["kept_suppressed"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(state_of(&server, "ann@example.com"), "unsubscribed");
    assert_eq!(state_of(&server, "cy@example.com"), "active");
    let export = server.request("GET", "/recipients/export?suppressed=true", None);
    assert_eq!(export.status, 200);
    assert_eq!(
        export
            .text()
            .lines()
            .skip(1)
            .map(|l| l.split(',').take(2).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>(),
        ["ann@example.com,unsubscribed"],
        "{}",
        export.text()
    );
}
