//! The poll loop against servers that misbehave, played by a tiny fake POP3 server: one
//! that hangs up in the middle of a message, one that answers garbage. Nothing may be
//! recorded or deleted, the error must say what happened, and the loop must retry. And a
//! mailbox with one poisoned message (the server hangs up on its RETR): the others are
//! recorded and deleted in the same pass, the bad one is counted and, after
//! `max_fetch_failures`, quarantined.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rebound::config::{Pop3Config, RulesConfig};
use rebound::policy::PolicyChain;
use rebound::pop3::poller::Poller;
use rebound::store::Store;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How the fake server behaves after login.
#[derive(Clone, Copy)]
enum Fault {
    /// RETR sends half a message, then closes.
    HangUpMidMessage,
    /// The greeting is not POP3.
    Garbage,
}

/// Serves every connection with `fault`; counts connections.
async fn fake_server(fault: Fault) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&connections);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                if let Fault::Garbage = fault {
                    let _ = w.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                    return;
                }
                let _ = w.write_all(b"+OK fake ready\r\n").await;
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    let reply: &[u8] = match cmd.split(' ').next().unwrap_or("") {
                        "CAPA" => b"+OK\r\nUIDL\r\nUSER\r\n.\r\n",
                        "USER" | "PASS" => b"+OK\r\n",
                        "LIST" => b"+OK 2 messages\r\n1 120\r\n2 120\r\n.\r\n",
                        "UIDL" => b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n",
                        "RETR" => {
                            let _ = w.write_all(b"+OK 120 octets\r\nFrom: x@example.org\r\nSubject: cut\r\n\r\nhalf of the bo").await;
                            let _ = w.shutdown().await;
                            return;
                        }
                        "QUIT" => b"+OK bye\r\n",
                        _ => b"-ERR unknown\r\n",
                    };
                    if w.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, connections)
}

fn config(port: u16) -> Pop3Config {
    config_with(port, "mailbox = \"fake\"\n")
}

fn config_with(port: u16, extra: &str) -> Pop3Config {
    toml::from_str(&format!(
        "host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\npassword_env = \"UNUSED\"\n\
         timeout = \"2s\"\npoll_interval = \"1s\"\n{extra}"
    ))
    .unwrap()
}

async fn poller(port: u16) -> (Poller, Store) {
    poller_with(config(port)).await
}

async fn poller_with(config: Pop3Config) -> (Poller, Store) {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let p = Poller::new(
        config,
        "pw".into(),
        store.clone(),
        Arc::new(PolicyChain::empty()),
        RulesConfig::default(),
    );
    (p, store)
}

#[tokio::test]
async fn poll_server_hanging_up_mid_message_records_nothing() {
    let (port, _) = fake_server(Fault::HangUpMidMessage).await;
    let (p, store) = poller(port).await;
    let started = std::time::Instant::now();
    let err = p.poll_once().await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "no spinning, no waiting for the timeout"
    );
    let text = err.to_string();
    assert!(
        text.contains("RETR 1") && text.contains("closed the connection"),
        "{text}"
    );
    assert!(!store.ledger_contains("fake", "aaa").await.unwrap());
    assert_eq!(store.event_count().await.unwrap(), 0);
}

#[tokio::test]
async fn poll_garbage_server_is_a_protocol_error() {
    let (port, _) = fake_server(Fault::Garbage).await;
    let (p, _store) = poller(port).await;
    let err = p.poll_once().await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("greeting") && text.contains("HTTP/1.1 400"),
        "{text}"
    );
}

#[tokio::test]
async fn poll_loop_retries_a_failing_server_with_backoff() {
    let (port, connections) = fake_server(Fault::HangUpMidMessage).await;
    // Never quarantined here: every pass fails on both messages.
    let (p, store) = poller_with(config_with(
        port,
        "mailbox = \"fake\"\nmax_fetch_failures = 100\n",
    ))
    .await;
    // Backoff 1s, then 1s (capped at poll_interval): attempts at 0s, 1s, 2s, 3s, each
    // a connection per message (a RETR that hangs up is followed by a reconnect).
    p.run(tokio::time::sleep(Duration::from_millis(3500))).await;
    let n = connections.load(Ordering::SeqCst);
    assert!((6..=10).contains(&n), "{n} connections");
    assert_eq!(store.event_count().await.unwrap(), 0);
}

/// A mailbox of real state across sessions: messages marked by DELE go at QUIT (and only
/// then); RETR of the message with UID `poison` sends half of it and hangs up. Every
/// command is logged.
struct Mailbox {
    messages: Vec<(String, Vec<u8>)>,
    log: Vec<String>,
}

fn ordinary(i: usize) -> Vec<u8> {
    format!(
        "From: Someone <p{i}@example.net>\r\nTo: bounces@example.org\r\nSubject: Hello {i}\r\n\
         Message-ID: <m{i}@example.net>\r\n\r\nJust a note, number {i}.\r\n"
    )
    .into_bytes()
}

async fn poisoned_server(
    uids: &[&str],
    poison: &'static str,
) -> (u16, Arc<std::sync::Mutex<Mailbox>>) {
    poisoned_server_with(uids, poison, b"+OK\r\nUIDL\r\nUSER\r\n.\r\n").await
}

async fn poisoned_server_with(
    uids: &[&str],
    poison: &'static str,
    capa: &'static [u8],
) -> (u16, Arc<std::sync::Mutex<Mailbox>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mailbox = Arc::new(std::sync::Mutex::new(Mailbox {
        messages: uids
            .iter()
            .enumerate()
            .map(|(i, u)| ((*u).to_owned(), ordinary(i)))
            .collect(),
        log: Vec::new(),
    }));
    let shared = Arc::clone(&mailbox);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let mailbox = Arc::clone(&shared);
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                let _ = w.write_all(b"+OK fake ready\r\n").await;
                // This session's view: numbers are positions at login.
                let view: Vec<(String, Vec<u8>)> = mailbox.lock().unwrap().messages.clone();
                let mut marked = std::collections::BTreeSet::new();
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let cmd = line.trim_end().to_ascii_uppercase();
                    mailbox.lock().unwrap().log.push(cmd.clone());
                    let mut words = cmd.split(' ');
                    let verb = words.next().unwrap_or("");
                    let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    let reply: Vec<u8> = match verb {
                        "CAPA" => capa.to_vec(),
                        "USER" | "PASS" => b"+OK\r\n".to_vec(),
                        "LIST" => {
                            let mut out = format!("+OK {} messages\r\n", view.len());
                            for (i, (_, raw)) in view.iter().enumerate() {
                                out += &format!("{} {}\r\n", i + 1, raw.len());
                            }
                            (out + ".\r\n").into_bytes()
                        }
                        "UIDL" => {
                            let mut out = String::from("+OK\r\n");
                            for (i, (uid, _)) in view.iter().enumerate() {
                                out += &format!("{} {uid}\r\n", i + 1);
                            }
                            (out + ".\r\n").into_bytes()
                        }
                        "RETR" if (1..=view.len()).contains(&n) => {
                            let (uid, raw) = &view[n - 1];
                            if uid == poison {
                                let _ = w
                                    .write_all(b"+OK 120 octets\r\nFrom: x@example.org\r\n")
                                    .await;
                                let _ = w.shutdown().await;
                                return;
                            }
                            let mut out = format!("+OK {} octets\r\n", raw.len()).into_bytes();
                            out.extend_from_slice(raw);
                            out.extend_from_slice(b".\r\n");
                            out
                        }
                        "DELE" if (1..=view.len()).contains(&n) => {
                            marked.insert(view[n - 1].0.clone());
                            b"+OK marked\r\n".to_vec()
                        }
                        "QUIT" => {
                            mailbox
                                .lock()
                                .unwrap()
                                .messages
                                .retain(|(uid, _)| !marked.contains(uid));
                            let _ = w.write_all(b"+OK bye\r\n").await;
                            return;
                        }
                        _ => b"-ERR unknown\r\n".to_vec(),
                    };
                    if w.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, mailbox)
}

fn remaining(mailbox: &std::sync::Mutex<Mailbox>) -> Vec<String> {
    let m = mailbox.lock().unwrap();
    m.messages.iter().map(|(u, _)| u.clone()).collect()
}

#[tokio::test]
async fn poll_poisoned_message_is_skipped_the_rest_recorded_and_deleted() {
    let (port, mailbox) = poisoned_server(&["u1", "bad", "u3", "u4", "u5"], "bad").await;
    let (p, store) = poller(port).await;

    // Pass 1: the other four are recorded and deleted (QUIT on the new session).
    let s = p.poll_once().await.unwrap();
    assert_eq!((s.processed, s.fetch_failed, s.deleted), (4, 1, 4), "{s}");
    assert!(s.quarantined.is_empty(), "{s}");
    for uid in ["u1", "u3", "u4", "u5"] {
        assert!(store.ledger_contains("fake", uid).await.unwrap(), "{uid}");
    }
    assert!(!store.ledger_contains("fake", "bad").await.unwrap());
    assert_eq!(remaining(&mailbox), ["bad"]);
    assert!(mailbox.lock().unwrap().log.contains(&"QUIT".to_owned()));
    let counts = store.fetch_failures("fake", &["bad", "u1"]).await.unwrap();
    assert_eq!(counts.get("bad"), Some(&1));
    assert_eq!(counts.get("u1"), None);

    // Passes 2 and 3: only the bad message is left; every fetch of the pass broke the
    // connection, so the pass is an error (and names the message's RETR).
    for n in 2..=3 {
        let err = p.poll_once().await.unwrap_err().to_string();
        assert!(
            err.contains("RETR 1") && err.contains("closed the connection"),
            "{err}"
        );
        let counts = store.fetch_failures("fake", &["bad"]).await.unwrap();
        assert_eq!(counts.get("bad"), Some(&n));
    }

    // From now on it is quarantined: named, left on the server, not fetched again.
    let before = rebound::metrics::get(rebound::metrics::POP3_QUARANTINED, &[("mailbox", "fake")]);
    assert_eq!(before, 1);
    for _ in 0..2 {
        mailbox.lock().unwrap().log.clear();
        let s = p.poll_once().await.unwrap();
        assert_eq!((s.processed, s.fetch_failed, s.deleted), (0, 0, 0), "{s}");
        assert_eq!(s.quarantined.len(), 1, "{s}");
        assert_eq!(
            (s.quarantined[0].uid.as_str(), s.quarantined[0].failures),
            ("bad", 3)
        );
        assert!(s.to_string().contains("quarantined: message bad"), "{s}");
        let log = mailbox.lock().unwrap().log.clone();
        assert!(!log.iter().any(|c| c.starts_with("RETR")), "{log:?}");
        assert_eq!(log.last().map(String::as_str), Some("QUIT"));
    }
    assert_eq!(remaining(&mailbox), ["bad"]);
    assert_eq!(
        store.event_count().await.unwrap(),
        0,
        "ordinary mail books no event"
    );
    assert!(
        rebound::metrics::render().contains("rebound_pop3_quarantined_total{mailbox=\"fake\"} 1")
    );
}

#[tokio::test]
async fn poll_poisoned_message_quarantined_in_a_pass_that_got_others_through() {
    // The limit reached in a pass where other messages were fetched: named there already.
    let (port, mailbox) = poisoned_server(&["bad", "u2"], "bad").await;
    let (p, store) = poller_with(config_with(
        port,
        "mailbox = \"fake1\"\nmax_fetch_failures = 1\n",
    ))
    .await;
    let s = p.poll_once().await.unwrap();
    assert_eq!((s.processed, s.fetch_failed, s.deleted), (1, 1, 1), "{s}");
    assert_eq!(s.quarantined.len(), 1, "{s}");
    assert_eq!(s.quarantined[0].uid, "bad");
    assert_eq!(remaining(&mailbox), ["bad"]);
    assert!(store.ledger_contains("fake1", "u2").await.unwrap());
}

#[tokio::test]
async fn poll_poisoned_message_with_pipelining_redoes_the_lost_deletions() {
    // Commands sent after the failed RETR, and DELEs of the dead session, are redone on
    // the next one: everything but the bad message goes.
    let uids: Vec<String> = (1..=12).map(|i| format!("p{i}")).collect();
    let mut refs: Vec<&str> = uids.iter().map(String::as_str).collect();
    refs[6] = "bad";
    let (port, mailbox) =
        poisoned_server_with(&refs, "bad", b"+OK\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n").await;
    let (p, store) = poller_with(config_with(port, "mailbox = \"fake2\"\n")).await;
    let s = p.poll_once().await.unwrap();
    assert_eq!((s.processed, s.fetch_failed, s.deleted), (11, 1, 11), "{s}");
    assert_eq!(remaining(&mailbox), ["bad"]);
    assert_eq!(store.ledger_len("fake2").await.unwrap(), 11);
}
