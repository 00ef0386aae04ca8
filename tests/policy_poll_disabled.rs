//! A fail-closed policy (`on_error = "fail"`) disabled by failures in a row holds the
//! mailbox's messages: the poll loop leaves every later message on the server, unrecorded,
//! rather than letting it through unjudged. Needs the guest components (`make guests`) and
//! Dovecot.

#[path = "support/dovecot.rs"]
mod dovecot;
mod policy_support;

use std::sync::Arc;

use dovecot::Dovecot;
use rebound::config::{OnError, RulesConfig, TlsMode};
use rebound::policy::PolicyChain;
use rebound::pop3::poller::Poller;
use rebound::store::Store;

use policy_support::*;

fn bounce_note(i: usize, word: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.org\nSubject: Undelivered Mail Returned to Sender\nMessage-ID: <d{i}@mx.example.net>\n\n<jane{i}@example.org>: host mx.example.org said: 550 5.1.1 user unknown ({word})\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn poll_holds_every_message_while_a_fail_closed_policy_is_disabled() {
    if !dovecot::available() {
        return;
    }
    let path = guest_or_skip!("scripted");
    let mut options = with_config(&[("action", "error"), ("only_if", "boom")]);
    options.on_error = OnError::Fail;
    options.max_failures = 2;
    let strict = module("strict", &path, options);
    let chain = Arc::new(PolicyChain::new(vec![strict.clone()]));

    let d = Dovecot::start();
    for (i, word) in ["boom", "boom", "fine", "fine"].iter().enumerate() {
        d.add_message(&bounce_note(i, word));
    }
    let store = Store::open("sqlite::memory:").await.unwrap();
    let p = Poller::new(
        d.config(TlsMode::Starttls),
        dovecot::PASSWORD.into(),
        store.clone(),
        chain,
        RulesConfig::default(),
    );
    let s = p.poll_once().await.unwrap();
    // Two failures disable it; the two bounces after them are held, not recorded unjudged.
    assert!(strict.is_disabled());
    assert_eq!((s.processed, s.policy_failed, s.deleted), (0, 4, 0), "{s}");
    assert_eq!(d.message_count(), 4, "every message stays on the server");
    assert_eq!(store.ledger_len(p.mailbox()).await.unwrap(), 0);
    assert_eq!(strict.stats().held, 2);

    // Enabled again, it fails on the two first messages again and is disabled before the
    // others: still nothing passes unjudged.
    strict.enable();
    let s = p.poll_once().await.unwrap();
    assert_eq!((s.processed, s.policy_failed), (0, 4), "{s}");
    assert!(strict.is_disabled());

    // A policy that judges them lets every message through.
    let mut o = with_config(&[("action", "keep")]);
    o.on_error = OnError::Fail;
    let lenient = Poller::new(
        d.config(TlsMode::Starttls),
        dovecot::PASSWORD.into(),
        store.clone(),
        Arc::new(PolicyChain::new(vec![module("strict", &path, o)])),
        RulesConfig::default(),
    );
    let s = lenient.poll_once().await.unwrap();
    assert_eq!((s.processed, s.policy_failed, s.deleted), (4, 0, 4), "{s}");
    assert_eq!(d.message_count(), 0);
}
