//! OAuth 2.0 logins against a real Dovecot whose oauth2 passdb checks every token with a
//! POST to an introspection endpoint this test serves on loopback: a token from
//! `token_command` logs the IMAP source in with XOAUTH2 and the POP3 poller with
//! OAUTHBEARER; a wrong token is a login error; the refresh-token flow gets its token
//! from a token endpoint this test also serves.

#[path = "support/cli.rs"]
mod cli;
#[path = "support/dovecot.rs"]
mod dovecot;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

use dovecot::Dovecot;
use rebound::config::TlsMode;

/// The token Dovecot lets the user in with.
const GOOD: &str = "good-access-token-7f3a";
const REFRESH: &str = "refresh-token-91c2";

/// A loopback HTTP server: `POST /introspect` (form `token=…`) answers `{"active": true,
/// "username": "bounces"}` for [`GOOD`], `{"active": false}` otherwise; `POST /token`
/// answers a refresh of [`REFRESH`] with [`GOOD`]. Every request body is kept.
struct Endpoints {
    port: u16,
    bodies: Arc<Mutex<Vec<(String, String)>>>,
}

fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

impl Endpoints {
    fn start() -> Endpoints {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let body = String::from_utf8_lossy(&body).into_owned();
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_owned();
                let answer = if path.starts_with("/introspect") {
                    if form_value(&body, "token") == Some(GOOD) {
                        format!("{{\"active\": true, \"username\": \"{}\"}}", dovecot::USER)
                    } else {
                        "{\"active\": false}".to_owned()
                    }
                } else if form_value(&body, "grant_type") == Some("refresh_token")
                    && form_value(&body, "refresh_token") == Some(REFRESH)
                {
                    format!(
                        "{{\"access_token\": \"{GOOD}\", \"token_type\": \"Bearer\", \"expires_in\": 3600}}"
                    )
                } else {
                    "{\"error\": \"invalid_grant\"}".to_owned()
                };
                let status = if answer.contains("invalid_grant") {
                    "400 Bad Request"
                } else {
                    "200 OK"
                };
                seen.lock().unwrap().push((path, body));
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Endpoints { port, bodies }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self, path: &str) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.starts_with(path))
            .map(|(_, b)| b.clone())
            .collect()
    }
}

fn dsn(recipient: &str) -> Vec<u8> {
    format!(
        "From: MAILER-DAEMON@mx.example.org\r\nTo: bounces@example.org\r\n\
Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <oauth-{recipient}>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n\
Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown\r\n\r\n--b--\r\n"
    )
    .into_bytes()
}

fn token_command(token: &str) -> String {
    format!("token_command = [\"sh\", \"-c\", \"echo {token}\"]")
}

fn write_config(dir: &Path, text: &str) {
    std::fs::write(
        dir.join("rebound.toml"),
        format!(
            "[store]\nurl = \"sqlite://{}/rebound.db\"\n\n{text}",
            dir.display()
        ),
    )
    .unwrap();
}

fn once(dir: &Path, env: &[(&str, &str)]) -> std::process::Output {
    cli::rebound(dir, &["poll", "--once", "--format", "json"], env)
}

#[test]
fn token_command_logs_imap_in_with_xoauth2_and_pop3_with_oauthbearer() {
    if !dovecot::imap_available() {
        return;
    }
    let endpoints = Endpoints::start();
    let server = Dovecot::start_oauth(&endpoints.url("/introspect"));
    server.add_message(&dsn("oauth-1@example.net"));
    let dir = tempfile::tempdir().unwrap();
    let imap = server.imap_toml(
        TlsMode::Implicit,
        "UNUSED",
        &format!(
            "delete_processed = false\nauth = \"xoauth2\"\n{}",
            token_command(GOOD)
        ),
    );
    let pop3 = format!(
        "{}delete_processed = false\nauth = \"oauthbearer\"\n{}\n",
        server.config_toml(TlsMode::Starttls, "UNUSED"),
        token_command(GOOD)
    );
    write_config(dir.path(), &format!("{imap}\n{pop3}"));
    let out = once(dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["imap"]["processed"], 1, "{json}");
    assert_eq!(json["pop3"]["processed"], 1, "{json}");
    let checked = endpoints.requests("/introspect");
    assert!(
        checked.len() >= 2,
        "Dovecot checked both logins: {checked:?}"
    );
    let log = server.log();
    assert!(log.contains("method=XOAUTH2"), "{log}");
    assert!(log.contains("method=OAUTHBEARER"), "{log}");
}

#[test]
fn a_wrong_token_is_a_login_error_for_both_sources() {
    if !dovecot::imap_available() {
        return;
    }
    let endpoints = Endpoints::start();
    let server = Dovecot::start_oauth(&endpoints.url("/introspect"));
    for (section, text) in [
        (
            "imap",
            server.imap_toml(
                TlsMode::Implicit,
                "UNUSED",
                &format!("auth = \"oauthbearer\"\n{}", token_command("wrong-token")),
            ),
        ),
        (
            "pop3",
            format!(
                "{}auth = \"xoauth2\"\n{}\n",
                server.config_toml(TlsMode::Implicit, "UNUSED"),
                token_command("wrong-token")
            ),
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_config(dir.path(), &text);
        let out = once(dir.path(), &[]);
        assert!(!out.status.success(), "{section}: a wrong token logged in");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("login") && err.contains("refused"),
            "{section}: {err}"
        );
        assert!(
            !err.contains("wrong-token"),
            "{section}: the token is in the error: {err}"
        );
    }
    let checked = endpoints.requests("/introspect");
    assert!(
        checked.iter().any(|b| b.contains("wrong-token")),
        "Dovecot asked the endpoint: {checked:?}"
    );
}

#[test]
fn the_refresh_token_flow_gets_the_token_from_the_token_endpoint() {
    if !dovecot::imap_available() {
        return;
    }
    let endpoints = Endpoints::start();
    let server = Dovecot::start_oauth(&endpoints.url("/introspect"));
    server.add_message(&dsn("oauth-2@example.net"));
    let dir = tempfile::tempdir().unwrap();
    let imap = server.imap_toml(
        TlsMode::Implicit,
        "UNUSED",
        &format!(
            "auth = \"xoauth2\"\n[imap.oauth2]\ntoken_url = \"{}\"\nclient_id = \"rebound-test\"\n\
             client_secret_env = \"OAUTH_TEST_SECRET\"\nrefresh_token_env = \"OAUTH_TEST_REFRESH\"\n\
             scope = \"https://mail.example.org/\"",
            endpoints.url("/token")
        ),
    );
    write_config(dir.path(), &imap);
    let env = [
        ("OAUTH_TEST_SECRET", "client-secret-55"),
        ("OAUTH_TEST_REFRESH", REFRESH),
    ];
    let out = once(dir.path(), &env);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["processed"], 1, "{json}");
    let asked = endpoints.requests("/token");
    assert_eq!(asked.len(), 1, "{asked:?}");
    let body = &asked[0];
    assert_eq!(form_value(body, "grant_type"), Some("refresh_token"));
    assert_eq!(form_value(body, "client_id"), Some("rebound-test"));
    assert_eq!(form_value(body, "client_secret"), Some("client-secret-55"));
    assert!(form_value(body, "scope").is_some(), "{body}");

    // A refresh token the endpoint refuses is a clear error naming the endpoint.
    let out = once(
        dir.path(),
        &[
            ("OAUTH_TEST_SECRET", "x"),
            ("OAUTH_TEST_REFRESH", "revoked"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("oauth2 token endpoint") && err.contains("invalid_grant"),
        "{err}"
    );
    assert!(!err.contains("revoked"), "{err}");
}
