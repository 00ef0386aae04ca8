//! The poll loop against servers that misbehave, played by a tiny fake POP3 server: one
//! that hangs up in the middle of a message, one that answers garbage. Nothing may be
//! recorded or deleted, the error must say what happened, and the loop must retry.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rebound::config::{Pop3Config, RulesConfig};
use rebound::policy::PolicyChain;
use rebound::poller::Poller;
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
    toml::from_str(&format!(
        "host = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nusername = \"u\"\npassword_env = \"UNUSED\"\n\
         timeout = \"2s\"\npoll_interval = \"1s\"\nmailbox = \"fake\"\n"
    ))
    .unwrap()
}

async fn poller(port: u16) -> (Poller, Store) {
    let store = Store::open("sqlite::memory:").await.unwrap();
    let p = Poller::new(
        config(port),
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
    let (p, store) = poller(port).await;
    // Backoff 1s, then 1s (capped at poll_interval): attempts at 0s, 1s, 2s, 3s.
    p.run(tokio::time::sleep(Duration::from_millis(3500))).await;
    let n = connections.load(Ordering::SeqCst);
    assert!((3..=5).contains(&n), "{n} attempts");
    assert_eq!(store.event_count().await.unwrap(), 0);
}
