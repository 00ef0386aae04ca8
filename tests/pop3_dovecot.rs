//! The POP3 client against a real, private Dovecot: STLS and implicit TLS with a private
//! CA, dot-stuffing, the size cap, a wrong password, deletion at QUIT.

#[path = "support/dovecot.rs"]
mod dovecot;

use std::time::Duration;

use dovecot::Dovecot;
use rebound::config::TlsMode;
use rebound::pop3::{Client, Error, Options};

fn options(d: &Dovecot, tls: TlsMode) -> Options {
    Options::from_config(&d.config(tls))
}

async fn login(d: &Dovecot, tls: TlsMode) -> Client {
    let mut c = Client::connect(&options(d, tls)).await.unwrap();
    c.login(dovecot::USER, dovecot::PASSWORD).await.unwrap();
    c
}

const STUFFED: &[u8] = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nafter a lone dot\r\n. space\r\n";

#[tokio::test]
async fn pop3_starttls_and_implicit_tls_fetch_the_same_bytes() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    d.add_message(STUFFED);
    d.add_message(b"Subject: second\n\nbody with LF endings\n");
    for tls in [TlsMode::Starttls, TlsMode::Implicit] {
        let mut c = login(&d, tls).await;
        assert!(c.is_tls(), "{tls:?}");
        assert!(c.has_capability("UIDL"));
        assert_eq!(c.stat().await.unwrap().0, 2);
        let list = c.list().await.unwrap();
        let uids = c.uidl().await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(uids.len(), 2);
        assert_ne!(uids[0].uid, uids[1].uid);
        let first = c.retr(1, 1 << 20).await.unwrap();
        assert_eq!(first, STUFFED, "dot-unstuffing through {tls:?}");
        assert_eq!(first.len() as u64, list[0].size);
        let second = c.retr(2, 1 << 20).await.unwrap();
        assert_eq!(second, b"Subject: second\r\n\r\nbody with LF endings\r\n");
        c.quit().await.unwrap();
    }
    assert_eq!(d.message_count(), 2, "nothing deleted without DELE");
}

#[tokio::test]
async fn pop3_plain_connection_without_tls() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    d.add_message(b"Subject: x\r\n\r\ny\r\n");
    let mut c = login(&d, TlsMode::None).await;
    assert!(!c.is_tls());
    assert!(c.has_capability("STLS"));
    assert_eq!(c.retr(1, 100).await.unwrap(), b"Subject: x\r\n\r\ny\r\n");
    c.quit().await.unwrap();
}

#[tokio::test]
async fn pop3_dele_takes_effect_at_quit_only() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    for i in 0..3 {
        d.add_message(format!("Subject: {i}\r\n\r\nbody\r\n").as_bytes());
    }
    // DELE without QUIT (a crash): nothing is removed.
    let mut c = login(&d, TlsMode::Starttls).await;
    c.dele(1).await.unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(d.message_count(), 3);
    // DELE twice is the server's -ERR, with its text.
    let mut c = login(&d, TlsMode::Starttls).await;
    c.dele(1).await.unwrap();
    let err = c.dele(1).await.unwrap_err();
    assert!(matches!(err, Error::Server { .. }), "{err}");
    assert!(err.to_string().contains("DELE 1"), "{err}");
    c.quit().await.unwrap();
    assert_eq!(d.message_count(), 2);
}

#[tokio::test]
async fn pop3_wrong_password_is_refused_with_the_server_text() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    let mut c = Client::connect(&options(&d, TlsMode::Starttls))
        .await
        .unwrap();
    let err = c
        .login(dovecot::USER, "not-the-password")
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err}");
    let text = err.to_string();
    assert!(text.contains("Authentication failed"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
}

#[tokio::test]
async fn pop3_untrusted_certificate_is_a_tls_error() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    for tls in [TlsMode::Starttls, TlsMode::Implicit] {
        let mut o = options(&d, tls);
        o.ca_file = None;
        let err = Client::connect(&o).await.unwrap_err();
        assert!(matches!(err, Error::Tls { .. }), "{tls:?}: {err}");
        // The certificate names localhost and 127.0.0.1, not this name.
        let mut o = options(&d, tls);
        o.host = "127.0.0.2".into();
        assert!(Client::connect(&o).await.is_err());
    }
}

#[tokio::test]
async fn pop3_huge_message_is_refused_by_the_cap() {
    if !dovecot::available() {
        return;
    }
    let d = Dovecot::start();
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    for _ in 0..40_000 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789012\r\n",
        );
    }
    d.add_message(&big);
    let mut c = login(&d, TlsMode::Implicit).await;
    let size = c.list().await.unwrap()[0].size;
    assert!(size > 3_000_000);
    let err = c.retr(1, 1_000_000).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                msg: 1,
                limit: 1_000_000
            }
        ),
        "{err}"
    );
    drop(c);
    let mut c = login(&d, TlsMode::Implicit).await;
    assert_eq!(c.retr(1, 10_000_000).await.unwrap(), big);
    c.quit().await.unwrap();
}

#[tokio::test]
async fn pop3_server_down_is_a_connect_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = Options {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::Implicit,
        ca_file: None,
        timeout: Duration::from_secs(2),
    };
    let err = Client::connect(&o).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}
