//! Expired policy state is deleted by a process that only ingests through
//! `Stages::ingest` (IMAP, provider webhooks), not only after POP3 passes: else its
//! expired keys would count against `state_max_keys` for ever. A binary of its own: the
//! prune runs at most once an hour per process.

use std::sync::Arc;
use std::time::Duration;

use rebound::config::RulesConfig;
use rebound::pipeline::Stages;
use rebound::policy::PolicyChain;
use rebound::store::policy_state::StateWrite;
use rebound::store::{EventContext, Store, Timestamp};

#[tokio::test]
async fn ingest_prunes_expired_state_in_the_background() {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let now = Timestamp::now();
    let write = |key: &str, expires_at: Timestamp| StateWrite::Set {
        policy: "counter".into(),
        key: key.into(),
        value: "1".into(),
        expires_at,
    };
    store
        .apply_policy_state(&[
            write("gone", Timestamp(now.0 - 1)),
            write("kept", Timestamp(now.0 + 3_600_000)),
        ])
        .await
        .unwrap();
    assert_eq!(store.policy_state_keys("counter").await.unwrap(), 2);
    let stages = Stages {
        chain: Arc::new(arc_swap::ArcSwap::from_pointee(PolicyChain::empty())),
        rules: RulesConfig::default(),
        unsubscribe: None,
        archive: false,
    };
    let raw = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: hello\r\n\r\nnot a bounce\r\n";
    stages
        .ingest(&store, EventContext::webhook("test", "1"), raw)
        .await
        .unwrap();
    let mut keys = 2;
    for _ in 0..200 {
        keys = store.policy_state_keys("counter").await.unwrap();
        if keys == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(keys, 1, "the expired entry is pruned, the live one kept");
    let kept = store
        .policy_state_get("counter", "kept", Timestamp::now())
        .await
        .unwrap();
    assert!(kept.is_some());
}
