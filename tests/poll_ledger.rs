//! The ledger against a real, private Dovecot: a UID the server hands to a new message
//! after a mailbox rebuild is not mistaken for the recorded one (the ledger compares
//! LIST's size), and a mixed report (one recipient failed, two delivered or expanded)
//! gives exactly one bounce event.

#[path = "support/dovecot.rs"]
mod dovecot;

use std::sync::Arc;

use dovecot::Dovecot;
use rebound::config::{Pop3Config, RulesConfig, TlsMode};
use rebound::policy::PolicyChain;
use rebound::pop3;
use rebound::pop3::poller::Poller;
use rebound::store::{EventFilter, RecipientState, Store};
use rebound::verdict::MessageKind;

fn poller(cfg: Pop3Config, store: &Store) -> Poller {
    Poller::new(
        cfg,
        dovecot::PASSWORD.into(),
        store.clone(),
        Arc::new(PolicyChain::empty()),
        RulesConfig::default(),
    )
}

/// The mailbox's (UID, LIST size) pairs, in order.
async fn listing(cfg: &Pop3Config) -> Vec<(String, u64)> {
    let mut c = pop3::Client::connect(&pop3::Options::from_config(cfg))
        .await
        .unwrap();
    c.login(dovecot::USER, dovecot::PASSWORD).await.unwrap();
    let uids = c.uidl().await.unwrap();
    let list = c.list().await.unwrap();
    c.quit().await.unwrap();
    uids.into_iter()
        .map(|u| {
            let size = list.iter().find(|l| l.msg == u.msg).unwrap().size;
            (u.uid, size)
        })
        .collect()
}

fn hard_bounce(address: &str, padding: usize) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\n\
         Subject: Undelivered Mail Returned to Sender\nX-Failed-Recipients: {address}\n\
         Message-ID: <bounce-{padding}@mx.example.net>\n\n\
         <{address}>: host mx.example.net said: 550 5.1.1 <{address}>: Recipient address \
         rejected: User unknown (in reply to RCPT TO command)\n{}\n",
        "x".repeat(padding)
    )
    .into_bytes()
}

/// Rebuilds the maildir's UID list as a server restored from a backup would: the same
/// UIDVALIDITY, the next UID back at the start, the index files gone. The next message
/// delivered gets the first UID again.
fn rebuild_uid_list(d: &Dovecot) {
    let uidlist = d.maildir.join("dovecot-uidlist");
    let text = std::fs::read_to_string(&uidlist).expect("dovecot-uidlist after a pass");
    let header = text.lines().next().unwrap();
    let fields: Vec<String> = header
        .split(' ')
        .map(|f| match f.strip_prefix('N') {
            Some(_) => "N1".to_owned(),
            None => f.to_owned(),
        })
        .collect();
    std::fs::write(&uidlist, format!("{}\n", fields.join(" "))).unwrap();
    for entry in std::fs::read_dir(&d.maildir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("dovecot.index")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
}

#[tokio::test]
async fn poll_reused_uid_with_another_size_is_a_new_message() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    let cfg = d.config(TlsMode::Starttls);
    let work = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", work.path().join("rebound.db").display());
    let store = Store::open(&url).await.unwrap();
    let p = poller(cfg.clone(), &store);

    d.add_message(&hard_bounce("anna@example.net", 10));
    let first = listing(&cfg).await;
    let s = p.poll_once().await.unwrap();
    assert_eq!((s.processed, s.deleted, s.reused_uids), (1, 1, 0), "{s}");
    assert_eq!(d.message_count(), 0);

    // The server loses its UID list; a new, longer bounce gets the old UID.
    rebuild_uid_list(&d);
    d.add_message(&hard_bounce("bert@example.net", 400));
    let second = listing(&cfg).await;
    assert_eq!(second.len(), 1);
    assert_eq!(
        second[0].0, first[0].0,
        "the rebuilt mailbox must reuse the UID for this test to mean anything"
    );
    assert_ne!(second[0].1, first[0].1);

    let s = p.poll_once().await.unwrap();
    assert_eq!(
        (
            s.processed,
            s.already_recorded,
            s.reused_uids,
            s.kinds.bounces,
            s.deleted
        ),
        (1, 0, 1, 1, 1),
        "{s}"
    );
    let bert = store.recipient("bert@example.net").await.unwrap().unwrap();
    assert_eq!(bert.state, RecipientState::Bounced);
    assert_eq!(store.ledger_len("test").await.unwrap(), 1);
    assert_eq!(d.message_count(), 0);

    // A crash after the commit, before QUIT: the next pass finds the same UID with the
    // size now recorded, and only deletes it (counts nothing twice).
    rebuild_uid_list(&d);
    d.add_message(&hard_bounce("carl@example.net", 900));
    assert_eq!(listing(&cfg).await[0].0, first[0].0);
    let crashing = poller(cfg.clone(), &store).with_failpoint(Arc::new(|step, _| {
        step == rebound::pop3::poller::Step::BeforeQuit
    }));
    assert!(crashing.poll_once().await.is_err());
    assert_eq!(d.message_count(), 1);
    let s = p.poll_once().await.unwrap();
    assert_eq!(
        (s.processed, s.already_recorded, s.reused_uids, s.deleted),
        (0, 1, 0, 1),
        "{s}"
    );
    let carl = store.recipient("carl@example.net").await.unwrap().unwrap();
    assert_eq!(carl.hard_count, 1);
    assert_eq!(
        store
            .events(&EventFilter::default())
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == MessageKind::Bounce)
            .count(),
        3
    );
}

#[tokio::test]
async fn poll_mixed_report_gives_one_bounce_event() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    d.add_file(std::path::Path::new(
        "tests/fixtures/bounces/uncertain/07-delivered-and-expanded-beside-failed.eml",
    ));
    let store = Store::open("sqlite::memory:").await.unwrap();
    let s = poller(d.config(TlsMode::Starttls), &store)
        .poll_once()
        .await
        .unwrap();
    assert_eq!(
        (s.processed, s.kinds.bounces, s.events, s.deleted),
        (1, 1, 1, 1),
        "{s}"
    );
    let events = store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].recipient.as_deref(), Some("olga@example.net"));
    assert!(events[0].kind == MessageKind::Bounce);
    let recipients = store.recipients(None).await.unwrap();
    assert_eq!(recipients.len(), 1, "{recipients:#?}");
    assert_eq!(recipients[0].address, "olga@example.net");
    assert_eq!(recipients[0].state, RecipientState::Bounced);
    assert_eq!((recipients[0].hard_count, recipients[0].soft_count), (1, 0));
}
