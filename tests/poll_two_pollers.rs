//! Two pollers on one mailbox and one store (two processes or hosts; here two stores
//! opened on one database, on SQLite and on PostgreSQL) against a real Dovecot: only one
//! polls at a time, the other skips its pass and names the holder; a poller that died
//! holding the mailbox is replaced once its lease has expired; every bounce is counted
//! once.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/postgres.rs"]
mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use dovecot::Dovecot;
use rebound::config::{Pop3Config, RulesConfig, TlsMode};
use rebound::policy::PolicyChain;
use rebound::pop3::poller::{Poller, Step, mailbox_name};
use rebound::store::leases::Taken;
use rebound::store::{RecipientState, Store};

fn poller(cfg: &Pop3Config, store: Store) -> Poller {
    Poller::new(
        cfg.clone(),
        dovecot::PASSWORD.into(),
        store,
        Arc::new(PolicyChain::empty()),
        RulesConfig::default(),
    )
}

fn hard_bounce(i: usize) -> Vec<u8> {
    let address = format!("user{i}@example.net");
    format!(
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\n\
         Subject: Undelivered Mail Returned to Sender\nX-Failed-Recipients: {address}\n\
         Message-ID: <bounce-{i}@mx.example.net>\n\n\
         <{address}>: host mx.example.net said: 550 5.1.1 <{address}>: Recipient address \
         rejected: User unknown (in reply to RCPT TO command)\n"
    )
    .into_bytes()
}

async fn one_at_a_time(url: &str) {
    let d = Dovecot::start();
    let cfg = d.config(TlsMode::Starttls);
    for i in 0..6 {
        d.add_message(&hard_bounce(i));
    }
    let (one, two) = (
        Store::open(url).await.unwrap(),
        Store::open(url).await.unwrap(),
    );

    // The first poller is slowed down in its pass (each fetched message takes 500 ms: a
    // window of 3 s for the other's attempt, room on a loaded machine), and says when it
    // is inside it.
    let inside = Arc::new(AtomicBool::new(false));
    let slow = poller(&cfg, one.clone()).with_failpoint(Arc::new({
        let inside = Arc::clone(&inside);
        move |step, _| {
            if step == Step::AfterRetr {
                inside.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(500));
            }
            false
        }
    }));
    let first = tokio::spawn(async move { slow.poll_once().await });
    while !inside.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let other = poller(&cfg, two.clone());
    let skipped = other.poll_once().await.unwrap();
    assert!(skipped.held_by.is_some(), "{skipped}");
    assert_eq!((skipped.listed, skipped.processed), (0, 0), "{skipped}");
    assert!(skipped.to_string().starts_with("not polled: "), "{skipped}");

    let done = first.await.unwrap().unwrap();
    assert_eq!((done.processed, done.deleted), (6, 6), "{done}");
    // The lease was given up at the end of the pass: the other polls now.
    let after = other.poll_once().await.unwrap();
    assert_eq!(
        (after.held_by.as_deref(), after.listed),
        (None, 0),
        "{after}"
    );

    // A poller died holding the mailbox: nobody polls until its lease has expired.
    d.add_message(&hard_bounce(6));
    let lease = format!("mailbox:{}", mailbox_name(&cfg));
    assert_eq!(
        one.take_lease(&lease, "dead-host/1/0", Duration::from_millis(400))
            .await
            .unwrap(),
        Taken::Yes
    );
    let held = other.poll_once().await.unwrap();
    assert_eq!(held.held_by.as_deref(), Some("dead-host/1/0"), "{held}");
    assert_eq!(d.message_count(), 1);
    tokio::time::sleep(Duration::from_millis(450)).await;
    let taken_over = other.poll_once().await.unwrap();
    assert_eq!(
        (taken_over.held_by.as_deref(), taken_over.processed),
        (None, 1),
        "{taken_over}"
    );

    // Every bounce once, whoever polled it.
    for i in 0..7 {
        let r = two
            .recipient(&format!("user{i}@example.net"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.state, r.hard_count), (RecipientState::Bounced, 1));
    }
    assert_eq!(two.ledger_len(&mailbox_name(&cfg)).await.unwrap(), 7);
    assert_eq!(d.message_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pollers_on_sqlite_poll_one_at_a_time() {
    if !dovecot::available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    one_at_a_time(&format!("sqlite://{}", work.path().join("r.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pollers_on_postgres_poll_one_at_a_time() {
    if !dovecot::available() || !postgres::available() {
        return;
    }
    one_at_a_time(&postgres::database()).await;
}
