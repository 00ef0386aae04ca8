//! Unsubscribe requests by mail, against a real Dovecot: a recipient's mail client sends
//! to the `mailto:` of a campaign message's `List-Unsubscribe`
//! (`bounces+u-TOKEN@bounce_domain`), the poller reads it and the recipient becomes
//! unsubscribed, with an `unsubscribe` event of that campaign; a forged token, or the same
//! request again, changes nothing.

#[path = "support/dovecot.rs"]
mod dovecot;

use std::sync::Arc;

use dovecot::Dovecot;
use rebound::config::{RulesConfig, TlsMode};
use rebound::policy::PolicyChain;
use rebound::pop3::poller::Poller;
use rebound::store::campaigns::NewCampaign;
use rebound::store::{EventFilter, EventKind, RecipientState, Store};
use rebound::verp::{Signer, unsubscribe_address};

fn request(to: &str, id: &str) -> Vec<u8> {
    format!(
        "From: Ann <ann@example.com>\r\nTo: {to}\r\nSubject: unsubscribe\r\n\
         Message-ID: <{id}@mail.example.com>\r\nDate: Wed, 02 Dec 2026 10:00:00 +0000\r\n\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn mail_to_the_unsubscribe_address_unsubscribes() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    let store = Store::open("sqlite::memory:").await.unwrap();
    let new = NewCampaign {
        name: "news".into(),
        from: "news@example.org".into(),
        subject: "News".into(),
        text: Some("Hi".into()),
        html: None,
    };
    let (campaign, _) = store
        .create_campaign(&new, ["ann@example.com", "bob@example.com"])
        .await
        .unwrap();
    let sends = store.claim_sends(campaign.id, 10).await.unwrap();
    let signer = Signer::new(b"mailto-secret").unwrap();
    let token = |i: usize| signer.unsubscribe_token(campaign.id, sends[i].id);
    let ann = unsubscribe_address(&token(0), "bounces.example.org");
    // bob's send under a MAC made with another secret.
    let forged = unsubscribe_address(
        &Signer::new(b"guess")
            .unwrap()
            .unsubscribe_token(campaign.id, sends[1].id),
        "bounces.example.org",
    );
    d.add_message(&request(&format!("Unsubscribe <{ann}>"), "u1"));
    d.add_message(&request(&forged, "u2"));

    let poller = Poller::new(
        d.config(TlsMode::Starttls),
        dovecot::PASSWORD.into(),
        store.clone(),
        Arc::new(PolicyChain::empty()),
        RulesConfig::default(),
    )
    .with_unsubscribe(signer.clone());
    let s = poller.poll_once().await.unwrap();
    assert_eq!((s.processed, s.unsubscribes), (2, 1), "{s}");
    assert_eq!(s.state_changes.len(), 1, "{s}");
    assert_eq!(s.state_changes[0].to, RecipientState::Unsubscribed);
    let state = |r: Option<rebound::store::Recipient>| r.map(|r| r.state);
    assert_eq!(
        state(store.recipient("ann@example.com").await.unwrap()),
        Some(RecipientState::Unsubscribed)
    );
    assert_eq!(
        state(store.recipient("bob@example.com").await.unwrap()),
        None
    );
    let filter = EventFilter {
        kind: Some(EventKind::Unsubscribe),
        ..EventFilter::default()
    };
    let events = store.events(&filter).await.unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        (events[0].campaign_id, events[0].source.as_str()),
        (Some(campaign.id), "mailto")
    );

    // The client sends it again: recorded as mail, nothing more for ann.
    d.add_message(&request(&ann, "u3"));
    let s = poller.poll_once().await.unwrap();
    assert_eq!((s.processed, s.unsubscribes), (1, 0), "{s}");
    assert_eq!(store.events(&filter).await.unwrap().len(), 1);
    assert_eq!(d.message_count(), 0);
}
