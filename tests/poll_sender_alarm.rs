//! The poll loop against a real, private Dovecot and a real SQLite file: blocklist
//! refusals (blamed on the sender) leave their recipient active and raise the operator's
//! alarm in the summary, against the sends to that domain; full mailboxes (blamed on the
//! recipient) still make a recipient bounced.

#[path = "support/dovecot.rs"]
mod dovecot;

use std::sync::Arc;

use dovecot::Dovecot;
use rebound::config::{RulesConfig, TlsMode};
use rebound::metrics;
use rebound::policy::PolicyChain;
use rebound::pop3::poller::Poller;
use rebound::store::campaigns::{NewCampaign, SendState, SendUpdate};
use rebound::store::{RecipientState, Store};

/// An RFC 3464 report for one recipient with this diagnostic.
fn dsn(n: usize, recipient: &str, status: &str, diagnostic: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\n\
To: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <dsn-{n}@mx.example.org>\r\n\
Date: Tue, 01 Dec 2026 20:00:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b{n}\"\r\n\
\r\n\
--b{n}\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message could not be delivered.\r\n\
--b{n}\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example.org\r\n\
\r\n\
Final-Recipient: rfc822; {recipient}\r\n\
Action: failed\r\n\
Status: {status}\r\n\
Diagnostic-Code: smtp; {diagnostic}\r\n\
\r\n\
--b{n}\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: News <news@example.org>\r\n\
To: {recipient}\r\n\
Subject: November news\r\n\
Message-ID: <orig-{n}@example.org>\r\n\
\r\n\
--b{n}--\r\n"
    )
    .into_bytes()
}

const BLOCKED: &str =
    "550 5.7.1 Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org";

#[tokio::test]
async fn poll_blocklist_refusals_alarm_the_operator_not_the_recipient() {
    if !dovecot::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
    let store = Store::open(&url).await.unwrap();
    // Eight sends to gmail.com accepted within the hour.
    let addrs: Vec<String> = (0..8).map(|i| format!("reader{i}@gmail.com")).collect();
    let (c, _) = store
        .create_campaign(
            &NewCampaign {
                name: "november".into(),
                from: "News <news@example.org>".into(),
                subject: "November news".into(),
                text: Some("hi".into()),
                html: None,
            },
            &addrs,
        )
        .await
        .unwrap();
    let claimed = store.claim_sends(c.id, 8).await.unwrap();
    let done: Vec<SendUpdate> = claimed
        .iter()
        .map(|x| SendUpdate {
            id: x.id,
            state: SendState::Sent,
            counted: true,
            not_before: None,
            message_id: None,
            verp_token: None,
            code: Some(250),
            text: Some("ok".into()),
        })
        .collect();
    store.checkpoint_sends(&done).await.unwrap();

    let d = Dovecot::start();
    for n in 0..3 {
        d.add_message(&dsn(n, "reader0@gmail.com", "5.7.1", BLOCKED));
    }
    for n in 3..6 {
        d.add_message(&dsn(
            n,
            "full@example.net",
            "5.2.2",
            "552 5.2.2 Mailbox full: user is over quota",
        ));
    }
    let sender_before = metrics::get(metrics::FAILURES, &[("blame", "sender")]);
    let poller = Poller::new(
        d.config(TlsMode::Implicit),
        dovecot::PASSWORD.into(),
        store.clone(),
        Arc::new(PolicyChain::empty()),
        RulesConfig::default(),
    );
    let s = poller.poll_once().await.unwrap();
    assert_eq!(s.kinds.bounces, 6, "{s}");
    assert_eq!(
        store
            .recipient("reader0@gmail.com")
            .await
            .unwrap()
            .unwrap()
            .state,
        RecipientState::Active,
        "{s}"
    );
    assert_eq!(
        store
            .recipient("full@example.net")
            .await
            .unwrap()
            .unwrap()
            .state,
        RecipientState::Bounced,
        "{s}"
    );
    assert_eq!(s.sender_alarms.len(), 1, "{s}");
    let alarm = &s.sender_alarms[0];
    assert_eq!(
        (alarm.domain.as_str(), alarm.refusals, alarm.sends),
        ("gmail.com", 3, 8)
    );
    let text = s.to_string();
    assert!(
        text.contains("warning: gmail.com: 38 % of the last hour's sends refused as blocked"),
        "{text}"
    );
    assert!(metrics::get(metrics::FAILURES, &[("blame", "sender")]) >= sender_before + 3);
    assert!(metrics::get(metrics::SENDER_REFUSALS, &[("domain", "gmail.com")]) >= 3);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["sender_alarms"][0]["domain"], "gmail.com");
}
