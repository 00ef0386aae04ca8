//! The SQLite file store under concurrent writers: the daemon records SMTP-time
//! rejections and mailbox verdicts at the same time, possibly from two processes' worth
//! of connections. Every write must land exactly once, with no "database is locked".

use std::sync::Arc;

use rebound::config::RulesConfig;
use rebound::store::{EventContext, RecipientState, Store};
use rebound::verdict::{BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

fn soft(address: &str) -> Verdict {
    Verdict {
        kind: MessageKind::Bounce,
        recipients: vec![RecipientVerdict {
            address: address.into(),
            bounce: Some(BounceClass::Soft),
            status: Some("4.2.2".into()),
            reason: Reason::MailboxFull,
            blame: Some(rebound::verdict::Blame::Recipient),
            diagnostic: Some("452 4.2.2 mailbox full".into()),
            action: Some("delayed".into()),
            remote_mta: None,
            feedback_type: None,
            aliases: Vec::new(),
        }],
        decided_by: "builtin".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_concurrent_writers_on_one_file_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    // Two independent pools on the same file, as two processes would have.
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    let rules = Arc::new(RulesConfig {
        soft_bounces_to_bounce: 1000,
        ..RulesConfig::default()
    });
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        let rules = Arc::clone(&rules);
        tasks.push(tokio::spawn(async move {
            for i in 0..50 {
                // Half the writes hit one shared recipient, half a task-private one;
                // every mailbox UID is claimed by two tasks, so one of them is a duplicate.
                let address = if i % 2 == 0 {
                    "shared@example.org".to_owned()
                } else {
                    format!("t{t}@example.org")
                };
                let ctx = EventContext::mailbox("mb", format!("{}-{i}", t / 2));
                let _ = store
                    .record_verdict(&ctx, &soft(&address), &rules)
                    .await
                    .unwrap();
                let _ = store
                    .record_verdict(&EventContext::smtp(), &soft(&address), &rules)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // 8 tasks × 50 SMTP events, plus 4 × 50 distinct mailbox UIDs recorded once each.
    assert_eq!(a.event_count().await.unwrap(), 400 + 200);
    assert_eq!(a.ledger_len("mb").await.unwrap(), 200);
    let total_soft: i64 = a
        .recipients(None)
        .await
        .unwrap()
        .iter()
        .map(|r| r.soft_count)
        .sum();
    assert_eq!(total_soft, 600);
    let shared = b.recipient("SHARED@example.org").await.unwrap().unwrap();
    assert_eq!(shared.state, RecipientState::Active);
    assert_eq!(a.recipients(None).await.unwrap().len(), 9);
}
