//! `POST /recipients/{address}/reactivate` on a real `rebound serve` over a real SQLite
//! file: token-protected, 200 with the previous state, 409 for an active recipient, 404
//! for an unknown one, and the reactivation is an event of the recipient (source `api`).

#[path = "support/serve.rs"]
mod serve;

use rebound::config::RulesConfig;
use rebound::store::{EventContext, Store};
use rebound::verdict::{BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};
use serve::Server;

const CONFIG: &str = "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n";

async fn complain_and_bounce(dir: &std::path::Path) {
    let url = format!("sqlite://{}", dir.join("rebound.db").display());
    let store = Store::open(&url).await.unwrap();
    let rules = RulesConfig::default();
    let complaint = Verdict {
        kind: MessageKind::Complaint,
        recipients: vec![RecipientVerdict::new(
            "angry@example.net".into(),
            Reason::Feedback,
        )],
        decided_by: "builtin".into(),
    };
    let _ = store
        .record_verdict(&EventContext::smtp(), &complaint, &rules)
        .await
        .unwrap();
    let hard = Verdict {
        kind: MessageKind::Bounce,
        recipients: vec![RecipientVerdict {
            bounce: Some(BounceClass::Hard),
            status: Some("5.1.1".into()),
            action: Some("failed".into()),
            ..RecipientVerdict::new("active@example.net".into(), Reason::MailboxFull)
        }],
        decided_by: "builtin".into(),
    };
    // Mailbox-full with a hard class from a policy: recipient-blamed, so bounced.
    let _ = store
        .record_verdict(&EventContext::smtp(), &hard, &rules)
        .await
        .unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reactivate_route_undoes_a_suppression_once() {
    let dir = tempfile::tempdir().unwrap();
    complain_and_bounce(dir.path()).await;
    let server = Server::start(dir.path(), CONFIG, &[]);

    let none = server
        .try_request(
            "POST",
            "/recipients/angry@example.net/reactivate",
            None,
            &[],
        )
        .unwrap();
    assert_eq!(none.status, 401);

    let ok = server.request("POST", "/recipients/Angry@Example.net/reactivate", None);
    assert_eq!(ok.status, 200, "{}", ok.text());
    let body = ok.json();
    assert_eq!(body["previous_state"], "complained");
    assert_eq!(body["state"], "active");
    assert_eq!(body["recipient"]["state"], "active");

    let again = server.request("POST", "/recipients/angry@example.net/reactivate", None);
    assert_eq!(again.status, 409, "{}", again.text());
    assert!(
        again.json()["error"]
            .as_str()
            .unwrap()
            .contains("already active")
    );

    let unknown = server.request("POST", "/recipients/nobody@example.net/reactivate", None);
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert!(
        unknown.json()["error"]
            .as_str()
            .unwrap()
            .contains("nobody@example.net")
    );

    let one = server
        .request("GET", "/recipients/angry@example.net", None)
        .json();
    let events = one["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{one}");
    assert_eq!(events[1]["kind"], "reactivation");
    assert_eq!(events[1]["previous_state"], "complained");
    assert_eq!(events[1]["source"], "api");

    let bounced = server
        .request("GET", "/recipients/active@example.net", None)
        .json();
    assert_eq!(bounced["recipient"]["state"], "bounced");
    assert_eq!(bounced["events"][0]["blame"], "recipient");
    let ok = server.request("POST", "/recipients/active@example.net/reactivate", None);
    assert_eq!(ok.json()["previous_state"], "bounced");

    let spec = server.request("GET", "/openapi.json", None).json();
    assert!(spec["paths"]["/recipients/{address}/reactivate"]["post"].is_object());
}
