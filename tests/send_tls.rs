//! The lettre-backed sender against the aiosmtpd test server with TLS and AUTH:
//! STARTTLS and implicit TLS with a private CA, AUTH that works, AUTH that fails (a
//! fatal error, not a hang), and a certificate the sender must not trust.

#[path = "support/smtp.rs"]
mod smtp;

use std::time::{Duration, Instant};

use rebound::config::TlsMode;
use rebound::smtp::{Envelope, Mailer, SmtpMailerBuilder, Stage};
use serde_json::json;

const MESSAGE: &[u8] =
    b"From: news@example.org\r\nTo: a@example.com\r\nSubject: tls\r\n\r\nHello over TLS.\r\n";

fn envelope() -> Envelope {
    Envelope::new(
        "bounces+1-1-0011223344556677@bounces.example.org",
        "a@example.com",
    )
}

#[tokio::test]
async fn sender_speaks_starttls_and_implicit_tls_with_auth() {
    if smtp::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = smtp::make_certs(dir.path());
    let ca = std::fs::read(&certs.ca).unwrap();
    for implicit in [false, true] {
        let server = smtp::SmtpServer::start(json!({
            "tls_cert": certs.cert, "tls_key": certs.key, "implicit_tls": implicit,
            "auth": {"sender": "s3cret"},
        }));
        let mode = if implicit {
            TlsMode::Implicit
        } else {
            TlsMode::Starttls
        };
        let mailer = SmtpMailerBuilder::new("localhost", server.port)
            .tls(mode)
            .ca_pem(ca.clone())
            .credentials("sender", "s3cret")
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for _ in 0..3 {
            mailer
                .send_raw(&envelope(), MESSAGE)
                .await
                .unwrap_or_else(|e| panic!("{mode:?}: {e}\n{}", server.log()));
        }
        mailer.shutdown().await;
        let got = server.received();
        assert_eq!(got.len(), 3, "{mode:?}");
        assert!(String::from_utf8_lossy(&server.message(&got[0])).contains("Hello over TLS."));

        // A wrong password is a fatal answer during connect, and it comes quickly.
        let wrong = SmtpMailerBuilder::new("localhost", server.port)
            .tls(mode)
            .ca_pem(ca.clone())
            .credentials("sender", "wrong")
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let t = Instant::now();
        let e = wrong.send_raw(&envelope(), MESSAGE).await.unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(5));
        assert_eq!((e.stage(), e.code()), (Stage::Connect, Some(535)), "{e}");
        assert!(e.is_fatal() && !e.is_recipient_failure(), "{e}");
    }
}

#[tokio::test]
async fn sender_refuses_an_untrusted_certificate_and_a_missing_starttls() {
    if smtp::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = smtp::make_certs(dir.path());
    let server = smtp::SmtpServer::start(json!({"tls_cert": certs.cert, "tls_key": certs.key}));
    // The system's roots do not include the test CA.
    let mailer = SmtpMailerBuilder::new("localhost", server.port)
        .tls(TlsMode::Starttls)
        .build()
        .unwrap();
    let e = mailer.send_raw(&envelope(), MESSAGE).await.unwrap_err();
    assert!(e.is_fatal(), "{e}");
    // A server that does not offer STARTTLS is not talked to in the clear.
    let plain = smtp::SmtpServer::start(json!({}));
    let ca = std::fs::read(&certs.ca).unwrap();
    let mailer = SmtpMailerBuilder::new("localhost", plain.port)
        .tls(TlsMode::Starttls)
        .ca_pem(ca)
        .build()
        .unwrap();
    let e = mailer.send_raw(&envelope(), MESSAGE).await.unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(plain.received().is_empty() && server.received().is_empty());
}
