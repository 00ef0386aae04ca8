//! `rebound serve` sending a campaign created over HTTP, stopped with SIGTERM in the
//! middle: it exits 0 after committing the batch in flight, and once restarted finishes
//! the campaign with every recipient sent and nothing counted twice.

#[path = "support/serve.rs"]
mod serve;
#[path = "support/smtp.rs"]
mod smtp;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use serve::Server;

fn config(port: u16) -> String {
    format!(
        "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n\
         [smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"News <news@example.org>\"\nbounce_domain = \"bounces.example.org\"\n\
         workers = 2\nmax_items_per_batch = 10\nsend_batch_size = 5\n\
         [[smtp.rate_limit]]\nmessages = 40\nper = \"1s\"\n"
    )
}

fn counts(server: &Server, id: i64) -> serde_json::Value {
    server
        .request("GET", &format!("/campaigns/{id}"), None)
        .json()
}

#[test]
fn sigterm_mid_campaign_loses_nothing() {
    if smtp::skip() {
        return;
    }
    let smtp_server = smtp::SmtpServer::start(json!({"reject": ["gone@example.com"]}));
    let dir = tempfile::tempdir().unwrap();
    let env = [("REBOUND_VERP_SECRET", "serve-secret")];
    let mut server = Server::start(dir.path(), &config(smtp_server.port), &env);

    let n = 120;
    let mut recipients: Vec<String> = (0..n - 1).map(|i| format!("r{i}@example.com")).collect();
    recipients.push("gone@example.com".into());
    let body = json!({
        "name": "weekly", "from": "News <news@example.org>", "subject": "Weekly",
        "text": "Hello", "recipients": recipients,
    });
    let created = server.request_json("POST", "/campaigns", body.to_string().as_bytes());
    assert_eq!(created.status, 201, "{}", created.text());
    let id = created.json()["campaign"]["id"].as_i64().unwrap();
    assert_eq!(
        server
            .request_json("POST", "/campaigns", body.to_string().as_bytes())
            .status,
        409
    );

    // Stop it part-way: at 40/s the campaign takes 3 s.
    assert!(
        smtp_server.wait_for(20, Duration::from_secs(30)),
        "nothing was sent: {}",
        server.log()
    );
    let status = server.terminate();
    assert!(
        status.success(),
        "serve exited with {status}: {}",
        server.log()
    );
    let sent_before = smtp_server.received().len();
    assert!(
        sent_before < n,
        "the campaign finished before SIGTERM; make it longer"
    );

    let server = Server::start(dir.path(), &config(smtp_server.port), &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let c = loop {
        let c = counts(&server, id);
        if c["state"] == "done" {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "campaign not done: {c}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(c["recipients"], n as u64);
    assert_eq!(c["sent"], (n - 1) as u64, "{c}");
    assert_eq!(c["failed"], 1, "{c}");
    assert_eq!(c["hard_bounces"], 1, "{c}");

    let received = smtp_server.received();
    let distinct: BTreeSet<&str> = received
        .iter()
        .flat_map(|r| r.rcpt_tos.iter().map(String::as_str))
        .collect();
    assert_eq!(
        distinct.len(),
        n - 1,
        "every deliverable recipient got the message"
    );
    // SIGTERM finishes the batch in flight, so nothing should be sent twice.
    assert_eq!(received.len(), n - 1, "re-sent after a clean stop");

    let metrics = server.request("GET", "/metrics", None).text();
    assert!(
        metrics.contains("rebound_sends_total{result=\"sent\"}"),
        "{metrics}"
    );
    // The campaign's gauges come from the store, whichever process sent.
    let sent = counts(&server, id)["sent"].as_u64().unwrap();
    assert!(
        metrics.contains(&format!(
            "rebound_campaign_sent{{campaign=\"weekly\",id=\"{id}\"}} {sent}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "rebound_campaign_paused{{campaign=\"weekly\",id=\"{id}\"}} 0"
    )));
    let resumed = server.request("POST", &format!("/campaigns/{id}/resume"), None);
    assert_eq!(resumed.status, 200);
    assert!(resumed.json()["was_paused"].is_null());
    assert_eq!(
        server.request("POST", "/campaigns/999/resume", None).status,
        404
    );
    // Paused by hand (once), shown, resumed.
    let paused = server.request("POST", &format!("/campaigns/{id}/pause"), None);
    assert_eq!(paused.status, 200, "{}", paused.text());
    assert_eq!(paused.json()["paused"], true);
    let again = server.request("POST", &format!("/campaigns/{id}/pause"), None);
    assert_eq!(again.json()["paused"], false, "paused already");
    assert_eq!(
        counts(&server, id)["pause"]["reason"],
        "paused by an operator (api)"
    );
    let resumed = server.request("POST", &format!("/campaigns/{id}/resume"), None);
    assert_eq!(resumed.json()["was_paused"], "paused by an operator (api)");
    assert!(counts(&server, id)["pause"].is_null());
    assert_eq!(
        server.request("POST", "/campaigns/999/pause", None).status,
        404
    );

    let gone = server
        .request("GET", "/recipients/gone@example.com", None)
        .json();
    assert_eq!(gone["recipient"]["state"], "bounced", "{gone}");
    assert_eq!(gone["events"][0]["campaign_id"], id, "{gone}");
}
