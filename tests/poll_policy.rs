//! The poll loop with a real policy chain: a module configured `on_error = "fail"` that
//! fails on a message leaves that message on the server, unrecorded (no ledger row, no
//! event), while the others are processed; a policy's verdict is what the store records.
//! Needs the guest components (`make guests`) and Dovecot.

#[path = "support/dovecot.rs"]
mod dovecot;
mod policy_support;

use std::sync::Arc;

use dovecot::Dovecot;
use rebound::config::{OnError, RulesConfig, TlsMode};
use rebound::policy::PolicyChain;
use rebound::pop3::poller::Poller;
use rebound::store::{EventFilter, Store};

use policy_support::*;

fn note(i: usize, word: &str) -> Vec<u8> {
    format!("From: p{i}@example.net\nTo: bounces@example.org\nSubject: note {i}\nMessage-ID: <p{i}@example.net>\n\nThis note says {word}.\n")
        .into_bytes()
}

#[tokio::test]
async fn poll_failing_policy_leaves_its_messages_on_the_server() {
    if !dovecot::available() {
        return;
    }
    let path = guest_or_skip!("scripted");
    let mut options = with_config(&[("action", "error"), ("only_if", "boom")]);
    options.on_error = OnError::Fail;
    let chain = Arc::new(PolicyChain::new(vec![module("fussy", &path, options)]));

    let d = Dovecot::start();
    for (i, word) in ["fine", "boom", "fine", "boom", "fine"].iter().enumerate() {
        d.add_message(&note(i, word));
    }
    let store = Store::open("sqlite::memory:").await.unwrap();
    let p = Poller::new(
        d.config(TlsMode::Starttls),
        dovecot::PASSWORD.into(),
        store.clone(),
        chain,
        RulesConfig::default(),
    );
    for pass in 0..2 {
        let s = p.poll_once().await.unwrap();
        let want = if pass == 0 { (3, 2, 3) } else { (0, 2, 0) };
        assert_eq!(
            (s.processed, s.policy_failed, s.deleted),
            want,
            "pass {pass}: {s}"
        );
        assert_eq!(
            d.message_count(),
            2,
            "pass {pass}: the two failed messages stay"
        );
        assert_eq!(store.ledger_len(p.mailbox()).await.unwrap(), 3);
    }
    assert!(
        store
            .events(&EventFilter::default())
            .await
            .unwrap()
            .is_empty(),
        "ordinary mail names no recipient"
    );
}
