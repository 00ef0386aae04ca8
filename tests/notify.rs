//! Event webhooks end to end: recipient state changes made through the real binary (the
//! admin API's reactivation) and booked bounces reach a receiver on loopback that checks
//! every signature and fails half the requests at random (a 500 or a dropped
//! connection); the delivering `rebound serve` is killed (SIGKILL) mid-way and started
//! again. Every event is acknowledged; a key is acknowledged twice only when the killed
//! process had its answer in hand and had not yet booked it (at least once). And the
//! listmonk format, delivered by `rebound notify run --once`, against a receiver that
//! checks listmonk's body and `Authorization`. And bounces read from a real Dovecot by
//! `rebound poll --once`, which sends what its pass enqueued.

// The support helpers each include support/skip.rs; the copies are harmless.
#![allow(clippy::duplicate_mod)]

#[path = "support/cli.rs"]
mod cli;
#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/hooks.rs"]
mod hooks;
#[path = "support/serve.rs"]
mod serve;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use hooks::{Check, Receiver};
use rebound::config::RulesConfig;
use rebound::store::outbox::{NotifyEvent, Subscription};
use rebound::store::{EventContext, Store};
use rebound::verdict::{Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

const SECRET: &str = "hook-secret-0123456789";

fn hard(address: &str) -> Verdict {
    Verdict {
        kind: MessageKind::Bounce,
        recipients: vec![RecipientVerdict {
            address: address.into(),
            bounce: Some(BounceClass::Hard),
            status: Some("5.1.1".into()),
            reason: Reason::UserUnknown,
            blame: Some(Blame::Recipient),
            diagnostic: Some("550 5.1.1 no such user".into()),
            action: Some("failed".into()),
            remote_mta: None,
            feedback_type: None,
            aliases: Vec::new(),
        }],
        decided_by: "builtin".into(),
    }
}

/// Books a hard bounce for each address in the store of `dir`, the outbox on for
/// `endpoint` (as `rebound poll` books them).
async fn bounce_all(dir: &Path, endpoint: &str, addresses: &[String]) {
    let mut store = Store::open(&format!("sqlite://{}/rebound.db", dir.display()))
        .await
        .unwrap();
    store.set_notify(vec![Subscription {
        endpoint: endpoint.into(),
        events: NotifyEvent::ALL.to_vec(),
    }]);
    let rules = RulesConfig::default();
    for (i, a) in addresses.iter().enumerate() {
        let ctx = EventContext::mailbox("bounces@example.org", format!("{i:05}"));
        let out = store.record_verdict(&ctx, &hard(a), &rules).await.unwrap();
        assert_eq!(out.changes.len(), 1);
    }
    store.close().await;
}

async fn open(dir: &Path) -> Store {
    Store::open(&format!("sqlite://{}/rebound.db", dir.display()))
        .await
        .unwrap()
}

async fn all_rows(store: &Store) -> Vec<rebound::store::outbox::Entry> {
    store.outbox_rows(0, 100_000).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_reach_a_flaky_receiver_and_survive_a_kill() {
    const N: usize = 300;
    let receiver = Receiver::start(
        Check::Signed {
            key: SECRET.as_bytes().to_vec(),
            wrong: b"not-the-secret".to_vec(),
        },
        0.5,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let addresses: Vec<String> = (0..N).map(|i| format!("r{i}@example.org")).collect();
    bounce_all(dir.path(), "hooks", &addresses).await;
    let config = format!(
        "[store]\nurl = \"sqlite://rebound.db\"\n\n[[notify]]\nname = \"hooks\"\nurl = \"{}\"\n\
         secret_env = \"HOOK_SECRET\"\ntimeout = \"2s\"\nretry_delay = \"100ms\"\n\
         max_retry_delay = \"1s\"\nmax_attempts = 60\n",
        receiver.url()
    );
    let env = [("HOOK_SECRET", SECRET)];
    let server = serve::Server::start(dir.path(), &config, &env);

    // Real state changes through the binary: every bounced recipient reactivated.
    let addr = server.addr.clone();
    let reactivations = tokio::task::spawn_blocking({
        let addresses = addresses.clone();
        move || {
            for a in &addresses {
                let r = serve::request(
                    &addr,
                    "POST",
                    &format!("/recipients/{a}/reactivate"),
                    None,
                    &[("Authorization", &format!("Bearer {}", serve::TOKEN))],
                )
                .unwrap();
                assert_eq!(r.status, 200, "{}", r.text());
            }
        }
    });
    reactivations.await.unwrap();

    // Mid-way: SIGKILL (dropping the server kills it).
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.acked() < 2 * N / 3 {
        assert!(
            Instant::now() < deadline,
            "deliveries stalled; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(server);
    let store = open(dir.path()).await;
    let rows = all_rows(&store).await;
    assert_eq!(
        rows.len(),
        2 * N,
        "a bounced and a reactivated event per recipient"
    );
    let delivered_at_kill: HashSet<String> = rows
        .iter()
        .filter(|r| r.delivered_at.is_some())
        .map(|r| r.idempotency_key.clone())
        .collect();
    assert!(
        delivered_at_kill.len() < 2 * N,
        "the kill came after the end"
    );
    // Answered but not booked when the process died: these may be sent again.
    let in_hand: HashSet<String> = {
        let seen = receiver.seen.lock().unwrap();
        assert_eq!(
            seen.repeats(),
            0,
            "a key was acknowledged twice before the kill"
        );
        seen.acked
            .keys()
            .filter(|k| !delivered_at_kill.contains(*k))
            .cloned()
            .collect()
    };

    let mut server = serve::Server::start(dir.path(), &config, &env);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let st = store.outbox_status().await.unwrap();
        if st.iter().all(|s| s.pending == 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not drained: {st:?}\nlog:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = server.request("GET", "/metrics", None).text();
    assert!(server.terminate().success(), "log:\n{}", server.log());

    let rows = all_rows(&store).await;
    assert!(
        rows.iter()
            .all(|r| r.delivered_at.is_some() && r.dead_at.is_none())
    );
    let keys: BTreeSet<&str> = rows.iter().map(|r| r.idempotency_key.as_str()).collect();
    assert_eq!(keys.len(), 2 * N, "one key per row");
    let seen = receiver.seen.lock().unwrap();
    assert!(
        seen.refused.is_empty(),
        "refused: {:?}",
        &seen.refused[..seen.refused.len().min(5)]
    );
    assert_eq!(
        seen.wrong_key_verified, 0,
        "a signature verified under the wrong key"
    );
    let acked: BTreeSet<&str> = seen.acked.keys().map(String::as_str).collect();
    assert_eq!(acked, keys, "every event acknowledged");
    for (key, n) in &seen.acked {
        assert!(
            *n == 1 || in_hand.contains(key),
            "{key} acknowledged {n} times"
        );
    }
    assert!(seen.failed > 0 && seen.dropped > 0, "{seen:?}");
    for r in &rows {
        let body = &seen.bodies[&r.idempotency_key];
        assert_eq!(body["event"], r.event.as_str());
        assert_eq!(body["address"], r.address.as_str());
    }
    let events: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| (r.event.as_str(), r.address.as_str()))
        .collect();
    assert_eq!(events.len(), 2 * N);
    assert!(rows.iter().filter(|r| r.event == "reactivated").count() == N);
    assert!(
        metrics.contains("rebound_notify_pending{endpoint=\"hooks\"} 0"),
        "{metrics}"
    );
    eprintln!(
        "notify e2e: {} rows, {} requests ({} 500s, {} dropped), {} sent again after the kill",
        rows.len(),
        seen.requests,
        seen.failed,
        seen.dropped,
        seen.repeats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listmonk_endpoint_gets_its_bounce_body_and_auth() {
    let receiver = Receiver::start(
        Check::Listmonk {
            authorization: "token rebound:lm-token-42".into(),
        },
        0.3,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let addresses: Vec<String> = (0..20).map(|i| format!("l{i}@example.org")).collect();
    bounce_all(dir.path(), "listmonk", &addresses).await;
    std::fs::write(
        dir.path().join("rebound.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n[[notify]]\nname = \"listmonk\"\n\
             url = \"{}\"\nformat = \"listmonk\"\nusername = \"rebound\"\n\
             token_env = \"LISTMONK_TOKEN\"\nretry_delay = \"10ms\"\nmax_retry_delay = \"50ms\"\n\
             max_attempts = 60\n",
            dir.path().display(),
            receiver.url()
        ),
    )
    .unwrap();
    let env = [("LISTMONK_TOKEN", "lm-token-42")];
    // Without the token the command refuses to start, naming the variable.
    let out = cli::rebound(dir.path(), &["notify", "status"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LISTMONK_TOKEN"));
    // A command that does not deliver needs no secret.
    let events = cli::rebound(dir.path(), &["events"], &[]);
    assert!(
        events.status.success(),
        "{}",
        String::from_utf8_lossy(&events.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = cli::rebound(dir.path(), &["notify", "run", "--once"], &env);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let status = cli::rebound(dir.path(), &["notify", "status", "--format", "json"], &env);
        let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        if st[0]["pending"] == 0 {
            assert_eq!(st[0]["delivered"], 20, "{st}");
            assert_eq!(st[0]["dead"], 0, "{st}");
            break;
        }
        assert!(Instant::now() < deadline, "not drained: {st}");
        std::thread::sleep(Duration::from_millis(30));
    }
    let seen = receiver.seen.lock().unwrap();
    assert!(seen.refused.is_empty(), "refused: {:?}", seen.refused);
    assert_eq!(seen.acked.len(), 20);
    let emails: BTreeSet<&str> = seen
        .bodies
        .values()
        .map(|b| {
            assert_eq!(b["type"], "hard");
            assert_eq!(b["source"], "rebound");
            let meta: serde_json::Value =
                serde_json::from_str(b["meta"].as_str().unwrap()).unwrap();
            assert_eq!(meta["reason"], "user-unknown");
            b["email"].as_str().unwrap()
        })
        .collect();
    let expected: BTreeSet<&str> = addresses.iter().map(String::as_str).collect();
    assert_eq!(emails, expected);
}

fn dsn(n: usize, recipient: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-{n}@mx.example.org>\r\n\
Date: Wed, 02 Dec 2026 09:00:00 +0000\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b{n}\"\r\n\r\n\
--b{n}\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--b{n}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown\r\n\r\n\
--b{n}--\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_bounces_are_announced_by_the_poll_itself() {
    if !dovecot::available() {
        return;
    }
    let receiver = Receiver::start(
        Check::Signed {
            key: SECRET.as_bytes().to_vec(),
            wrong: b"not-the-secret".to_vec(),
        },
        0.0,
    )
    .await;
    let mailbox = dovecot::Dovecot::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let addresses: Vec<String> = (0..40).map(|i| format!("p{i}@example.net")).collect();
    for (i, a) in addresses.iter().enumerate() {
        mailbox.add_message(&dsn(i, a));
    }
    std::fs::write(
        d.join("rebound.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n{}\n\n[[notify]]\nname = \"hooks\"\n\
             url = \"{}\"\nsecret_env = \"HOOK_SECRET\"\nevents = [\"bounced\"]\n",
            d.display(),
            mailbox.config_toml(rebound::config::TlsMode::Implicit, "REBOUND_POP3_PASSWORD"),
            receiver.url()
        ),
    )
    .unwrap();
    let env = [
        ("REBOUND_POP3_PASSWORD", dovecot::PASSWORD),
        ("HOOK_SECRET", SECRET),
    ];
    let poll = cli::rebound(d, &["poll", "--once"], &env);
    assert!(
        poll.status.success(),
        "{}",
        String::from_utf8_lossy(&poll.stderr)
    );
    assert_eq!(mailbox.message_count(), 0);
    let seen = receiver.seen.lock().unwrap();
    assert!(seen.refused.is_empty(), "{:?}", seen.refused);
    let got: BTreeSet<&str> = seen
        .bodies
        .values()
        .map(|b| {
            assert_eq!(b["event"], "bounced");
            assert_eq!(b["reason"], "user-unknown");
            b["address"].as_str().unwrap()
        })
        .collect();
    let expected: BTreeSet<&str> = addresses.iter().map(String::as_str).collect();
    assert_eq!(
        got, expected,
        "every bounce announced by the poll that booked it"
    );
    assert_eq!(seen.repeats(), 0);
}
