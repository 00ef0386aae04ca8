//! One TLS policy for POP3 and SMTP: `tls = "none"` only for a loopback host (refused by
//! `check-config`, at start-up and when connecting, naming the host), and both clients
//! trust the system's store (here `SSL_CERT_FILE`, read by the platform verifier) besides
//! their `ca_file`: a real Dovecot and the aiosmtpd test server, each with a private CA
//! that only the system store knows.

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/smtp.rs"]
mod smtp;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use rebound::config::TlsMode;
use rebound::smtp::{Mailer, SmtpMailerBuilder};
use serde_json::json;

const PASSWORD_ENV: &str = "REBOUND_TLS_TEST_POP3_PASSWORD";

fn rebound(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
    cmd.current_dir(dir)
        .arg("--config")
        .arg(dir.join("rebound.toml"))
        .args(args)
        .env(PASSWORD_ENV, dovecot::PASSWORD)
        .env("REBOUND_VERP_SECRET", "test-secret")
        .env("REBOUND_LOG", "warn")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("running rebound")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pop3_section(host: &str, tls: &str) -> String {
    format!(
        "[pop3]\nhost = \"{host}\"\nport = 110\ntls = \"{tls}\"\nusername = \"u\"\n\
         password_env = \"{PASSWORD_ENV}\"\n"
    )
}

fn smtp_section(host: &str, tls: &str) -> String {
    format!(
        "[smtp]\nhost = \"{host}\"\nport = 25\ntls = \"{tls}\"\nfrom = \"a@example.org\"\n\
         bounce_domain = \"bounces.example.org\"\n"
    )
}

#[test]
fn check_config_refuses_plaintext_to_a_remote_host_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = "[store]\nurl = \"sqlite://r.db\"\n";
    for (section, body) in [
        ("pop3", pop3_section("pop.example.net", "none")),
        ("smtp", smtp_section("10.1.2.3", "none")),
        ("smtp", smtp_section("localhost.example.net", "none")),
    ] {
        std::fs::write(dir.path().join("rebound.toml"), format!("{store}{body}")).unwrap();
        let out = rebound(dir.path(), &["check-config"], &[]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains(&format!("[{section}] tls = \"none\"")), "{t}");
        let host = body.lines().find(|l| l.starts_with("host")).unwrap();
        let host = host.split('"').nth(1).unwrap();
        assert!(t.contains(&format!("{host:?}")), "{t}");
        // The daemon and the other commands refuse it the same way (they load the config
        // the same way).
        let out = rebound(dir.path(), &["poll", "--once"], &[]);
        assert!(!out.status.success());
        assert!(text(&out).contains(&format!("{host:?}")), "{}", text(&out));
    }
    for host in [
        "localhost",
        "127.0.0.1",
        "127.3.4.5",
        "::1",
        "[::1]",
        "LOCALHOST.",
    ] {
        let body = format!(
            "{}{}",
            pop3_section(host, "none"),
            smtp_section(host, "none")
        );
        std::fs::write(dir.path().join("rebound.toml"), format!("{store}{body}")).unwrap();
        let out = rebound(dir.path(), &["check-config"], &[]);
        assert!(out.status.success(), "{host}: {}", text(&out));
    }
    // TLS to a remote host is fine, of course.
    let body = format!(
        "{}{}",
        pop3_section("pop.example.net", "starttls"),
        smtp_section("smtp.example.net", "implicit")
    );
    std::fs::write(dir.path().join("rebound.toml"), format!("{store}{body}")).unwrap();
    let out = rebound(dir.path(), &["check-config"], &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn clients_refuse_plaintext_to_a_remote_host_before_connecting() {
    // Built from code, without a config file: refused all the same.
    let e = SmtpMailerBuilder::new("smtp.example.net", 25)
        .tls(TlsMode::None)
        .credentials("u", "p")
        .build()
        .unwrap_err();
    assert!(e.is_fatal(), "{e}");
    assert!(e.to_string().contains("\"smtp.example.net\""), "{e}");
    let opts = rebound::pop3::Options {
        host: "pop.example.net".into(),
        port: 110,
        tls: TlsMode::None,
        ca_file: None,
        timeout: Duration::from_secs(5),
    };
    let e = rebound::pop3::Client::connect(&opts).await.err().unwrap();
    assert!(
        matches!(&e, rebound::pop3::Error::Plaintext { host } if host == "pop.example.net"),
        "{e}"
    );
}

#[test]
fn pop3_trusts_the_system_store_like_smtp() {
    if !dovecot::available() {
        return;
    }
    let d = dovecot::Dovecot::start();
    d.add_message(b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n");
    let dir = tempfile::tempdir().unwrap();
    // No ca_file: the private CA is known only through the system store.
    let pop3: String = d
        .config_toml(TlsMode::Implicit, PASSWORD_ENV)
        .lines()
        .filter(|l| !l.starts_with("ca_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        dir.path().join("rebound.toml"),
        format!("[store]\nurl = \"sqlite://r.db\"\n{pop3}"),
    )
    .unwrap();
    let out = rebound(dir.path(), &["poll", "--once"], &[]);
    assert!(
        !out.status.success(),
        "an unknown CA must not be trusted: {}",
        text(&out)
    );
    assert_eq!(d.message_count(), 1);
    let out = rebound(
        dir.path(),
        &["poll", "--once"],
        &[("SSL_CERT_FILE", &d.ca_file)],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), d.log());
    assert_eq!(d.message_count(), 0, "the pass went through and deleted it");
}

#[test]
fn smtp_trusts_the_system_store_and_its_ca_file_together() {
    if smtp::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = smtp::make_certs(dir.path());
    let other = tempfile::tempdir().unwrap();
    let other_certs = smtp::make_certs(other.path());
    let server = smtp::SmtpServer::start(json!({
        "tls_cert": certs.cert, "tls_key": certs.key,
    }));
    std::fs::write(
        dir.path().join("list.txt"),
        "a@example.com\nb@example.com\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("campaign.toml"),
        "name = \"tls\"\nsubject = \"s\"\ntext = \"t\"\n[recipients]\nfile = \"list.txt\"\n",
    )
    .unwrap();
    // ca_file names an unrelated CA: it is an extra root, so the system store (which
    // knows the server's CA) is still trusted.
    std::fs::write(
        dir.path().join("rebound.toml"),
        format!(
            "[store]\nurl = \"sqlite://r.db\"\n[smtp]\nhost = \"localhost\"\nport = {}\n\
             tls = \"starttls\"\nfrom = \"News <news@example.org>\"\nbounce_domain = \"b.example.org\"\n\
             ca_file = \"{}\"\ntimeout = \"10s\"\n",
            server.port,
            other_certs.ca.display()
        ),
    )
    .unwrap();
    let out = rebound(
        dir.path(),
        &["send", "--quiet", "--campaign", "campaign.toml"],
        &[("SSL_CERT_FILE", &certs.ca)],
    );
    assert!(out.status.success(), "{}\n{}", text(&out), server.log());
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn smtp_ca_file_is_trusted_without_the_system_store_knowing_it() {
    if smtp::skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certs = smtp::make_certs(dir.path());
    let server = smtp::SmtpServer::start(json!({
        "tls_cert": certs.cert, "tls_key": certs.key, "implicit_tls": true,
    }));
    let mailer = SmtpMailerBuilder::new("localhost", server.port)
        .tls(TlsMode::Implicit)
        .ca_pem(std::fs::read(&certs.ca).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let env = rebound::smtp::Envelope::new("bounces+x@b.example.org", "a@example.com");
    mailer
        .send_raw(&env, b"Subject: x\r\n\r\nhi\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    mailer.shutdown().await;
}
