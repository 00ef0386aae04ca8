//! Provider webhooks against a real `rebound serve` on loopback, with real signatures:
//! Mailgun (HMAC), SendGrid (ECDSA P-256), Postmark (basic authentication) and SES
//! through SNS (RSA under a certificate of a private CA made with `openssl`, served by an
//! HTTPS server of the test). For each: a user-unknown bounce bounces the recipient, a
//! sender-side refusal the provider calls permanent does not, a retry is recorded once,
//! and a request that does not authenticate changes nothing.

#[path = "support/serve.rs"]
mod serve;
#[path = "support/skip.rs"]
mod skip;
#[path = "support/sns.rs"]
mod sns;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};
use serve::Server;
use sns::{Https, Pki, Sns, good_clone, make_pki, start_https, unique};

const BASE: &str = r#"
[store]
url = "sqlite://rebound.db"
[api]
data_dir = "policies"
[policy_limits]
cache_dir = "cache"
"#;

const MAILGUN_KEY: &str = "key-test-0123456789abcdef";
const POSTMARK_PASSWORD: &str = "pm-secret-password";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:rebound-bounces";

const USER_UNKNOWN: &str = "550 5.1.1 <tama@example.net>: Recipient address rejected: User unknown in virtual mailbox table";
const BLOCKLISTED: &str =
    "550 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn post(server: &Server, path: &str, body: &[u8], headers: &[(&str, &str)]) -> serve::Response {
    let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
    h.extend_from_slice(headers);
    server
        .try_request("POST", path, Some(body), &h)
        .unwrap_or_else(|e| panic!("POST {path}: {e}\nlog:\n{}", server.log()))
}

/// The recipient's state, `None` when the store has no such recipient.
fn state(server: &Server, address: &str) -> Option<String> {
    let r = server.request("GET", &format!("/recipients/{address}"), None);
    match r.status {
        404 => None,
        200 => Some(r.json()["recipient"]["state"].as_str().unwrap().to_owned()),
        s => panic!("GET /recipients/{address}: {s} {}", r.text()),
    }
}

fn events(server: &Server, provider: &str) -> Vec<Value> {
    let r = server.request("GET", &format!("/events?mailbox=webhook:{provider}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"].as_array().unwrap().clone()
}

fn assert_status(r: &serve::Response, status: u16, server: &Server) {
    assert_eq!(r.status, status, "{}\nlog:\n{}", r.text(), server.log());
}

/// A refusal with this status whose error says `why`.
fn assert_refused(r: &serve::Response, status: u16, why: &str, server: &Server) {
    assert_status(r, status, server);
    let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains(why), "{error:?} does not say {why:?}");
}

// ---------------------------------------------------------------- Mailgun

fn mailgun_config() -> String {
    format!("{BASE}[webhooks.mailgun]\nsigning_key_env = \"REBOUND_TEST_MAILGUN_KEY\"\n")
}

fn start_mailgun(dir: &Path) -> Server {
    Server::start(
        dir,
        &mailgun_config(),
        &[("REBOUND_TEST_MAILGUN_KEY", MAILGUN_KEY)],
    )
}

fn mailgun_signed(key: &str, timestamp: u64, token: &str, event: Value) -> Vec<u8> {
    let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes());
    let sig = hex::encode(ring::hmac::sign(
        &k,
        format!("{timestamp}{token}").as_bytes(),
    ));
    serde_json::to_vec(&json!({
        "signature": {"timestamp": timestamp.to_string(), "token": token, "signature": sig},
        "event-data": event,
    }))
    .unwrap()
}

fn mailgun_failed(id: &str, recipient: &str, enhanced: &str, message: &str) -> Value {
    json!({
        "event": "failed", "id": id, "severity": "permanent", "reason": "bounce",
        "recipient": recipient, "timestamp": now() as f64,
        "delivery-status": {"code": 550, "enhanced-code": enhanced, "message": message,
                            "mx-host": "mx.example.net"},
        "message": {"headers": {"message-id": format!("{id}@mail.example.org"),
                                "subject": "News", "to": recipient}},
    })
}

#[test]
fn mailgun_user_unknown_bounces_and_a_retry_is_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_mailgun(dir.path());
    let body = mailgun_signed(
        MAILGUN_KEY,
        now(),
        &unique("tok"),
        mailgun_failed(&unique("ev"), "tama@example.net", "5.1.1", USER_UNKNOWN),
    );
    let r = post(&server, "/webhooks/mailgun", &body, &[]);
    assert_status(&r, 200, &server);
    assert_eq!(r.json()["recorded"], 1, "{}", r.text());
    assert_eq!(
        state(&server, "tama@example.net").as_deref(),
        Some("bounced")
    );
    // Mailgun retries the very same request: taken, and recorded once. (The provider
    // reaches the server under its public name: webhooks are not behind the API's Host
    // check.)
    let r = post(
        &server,
        "/webhooks/mailgun",
        &body,
        &[("Host", "hooks.example.com")],
    );
    assert_status(&r, 200, &server);
    assert_eq!(r.json()["duplicates"], 1, "{}", r.text());
    let ev = events(&server, "mailgun");
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["class"], "hard", "{ev:#?}");
    assert_eq!(ev[0]["status"], "5.1.1", "{ev:#?}");
    // The report is archived like a mailbox message.
    let id = ev[0]["id"].as_i64().unwrap();
    let raw = server.request("GET", &format!("/events/{id}/raw"), None);
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert!(
        raw.text()
            .contains("Final-Recipient: rfc822; tama@example.net")
    );
}

#[test]
fn mailgun_blocklist_refusal_called_permanent_does_not_bounce_the_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_mailgun(dir.path());
    let body = mailgun_signed(
        MAILGUN_KEY,
        now(),
        &unique("tok"),
        mailgun_failed(&unique("ev"), "mike@example.net", "5.7.1", BLOCKLISTED),
    );
    let r = post(&server, "/webhooks/mailgun", &body, &[]);
    assert_status(&r, 200, &server);
    assert_eq!(r.json()["recorded"], 1, "{}", r.text());
    assert_ne!(
        state(&server, "mike@example.net").as_deref(),
        Some("bounced")
    );
    let ev = events(&server, "mailgun");
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["blame"], "sender", "{ev:#?}");

    // Mailgun's own suppression list is not evidence either.
    let mut suppressed = mailgun_failed(&unique("ev"), "lulu@example.net", "5.1.1", USER_UNKNOWN);
    suppressed["reason"] = json!("suppress-bounce");
    let body = mailgun_signed(MAILGUN_KEY, now(), &unique("tok"), suppressed);
    assert_status(
        &post(&server, "/webhooks/mailgun", &body, &[]),
        200,
        &server,
    );
    assert_ne!(
        state(&server, "lulu@example.net").as_deref(),
        Some("bounced")
    );

    // A delivery is taken and ignored.
    let delivered = json!({"event": "delivered", "id": unique("ev"), "recipient": "a@example.net"});
    let body = mailgun_signed(MAILGUN_KEY, now(), &unique("tok"), delivered);
    let r = post(&server, "/webhooks/mailgun", &body, &[]);
    assert_status(&r, 200, &server);
    assert_eq!(r.json()["ignored"], 1);
    assert_eq!(events(&server, "mailgun").len(), 2);
}

#[test]
fn mailgun_refuses_what_does_not_authenticate_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_mailgun(dir.path());
    let event = || mailgun_failed(&unique("ev"), "tama@example.net", "5.1.1", USER_UNKNOWN);
    // Wrong key.
    let body = mailgun_signed("another-key", now(), &unique("tok"), event());
    let r = post(&server, "/webhooks/mailgun", &body, &[]);
    assert_refused(&r, 403, "wrong signature", &server);
    // No signature.
    let body = serde_json::to_vec(&json!({"event-data": event()})).unwrap();
    assert_status(
        &post(&server, "/webhooks/mailgun", &body, &[]),
        401,
        &server,
    );
    // Stale timestamp, correctly signed.
    let body = mailgun_signed(MAILGUN_KEY, now() - 600, &unique("tok"), event());
    let r = post(&server, "/webhooks/mailgun", &body, &[]);
    assert_refused(&r, 403, "from now", &server);
    // A token taken before, lifted onto another body.
    let token = unique("tok");
    let ts = now();
    let first = mailgun_signed(
        MAILGUN_KEY,
        ts,
        &token,
        json!({"event": "opened", "id": unique("ev")}),
    );
    assert_status(
        &post(&server, "/webhooks/mailgun", &first, &[]),
        200,
        &server,
    );
    let replay = mailgun_signed(MAILGUN_KEY, ts, &token, event());
    let r = post(&server, "/webhooks/mailgun", &replay, &[]);
    assert_refused(&r, 403, "used before", &server);
    // Malformed bodies, a body over the limit, a provider not configured.
    for bad in [&b"not json"[..], b"[]", b"{\"signature\": 3}", b""] {
        let r = post(&server, "/webhooks/mailgun", bad, &[]);
        assert!(matches!(r.status, 400 | 401), "{}: {}", r.status, r.text());
    }
    let huge = vec![b'x'; 2 * 1024 * 1024];
    assert_status(
        &post(&server, "/webhooks/mailgun", &huge, &[]),
        413,
        &server,
    );
    assert_status(
        &post(&server, "/webhooks/sendgrid", b"[]", &[]),
        404,
        &server,
    );
    assert_status(&post(&server, "/webhooks/nosuch", b"[]", &[]), 404, &server);
    assert_eq!(state(&server, "tama@example.net"), None);
    assert!(events(&server, "mailgun").is_empty());
    let metrics = server.request("GET", "/metrics", None).text();
    assert!(
        metrics.contains(
            "rebound_webhook_requests_total{provider=\"mailgun\",result=\"forbidden\"} 3"
        ),
        "{metrics}"
    );
}

#[test]
fn mailgun_missing_signing_key_is_a_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rebound.toml"), mailgun_config()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rebound"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--config",
            "rebound.toml",
            "--listen",
            "127.0.0.1:0",
        ])
        .env_remove("REBOUND_TEST_MAILGUN_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("REBOUND_TEST_MAILGUN_KEY"), "{err}");
}

/// A campaign send recorded in the store (as the sender records it), and a webhook bounce
/// carrying its Message-ID is booked to that campaign and recipient.
#[test]
fn mailgun_bounce_is_booked_to_the_campaign_of_the_send() {
    use rebound::store::Store;
    use rebound::store::campaigns::{NewCampaign, SendState, SendUpdate};
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (campaign, message_id) = rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        let (c, _) = store
            .create_campaign(
                &NewCampaign {
                    name: "december".into(),
                    from: "News <news@example.org>".into(),
                    subject: "December news".into(),
                    text: Some("hi".into()),
                    html: None,
                },
                ["kuro@example.net"],
            )
            .await
            .unwrap();
        let sends = store.claim_sends(c.id, 1).await.unwrap();
        let signer = rebound::verp::Signer::new(b"a verp secret for the test").unwrap();
        let token = signer.sign(c.id, sends[0].id);
        let message_id = rebound::verp::message_id(&token, "bounces.example.org");
        store
            .checkpoint_sends(&[SendUpdate {
                id: sends[0].id,
                state: SendState::Sent,
                counted: true,
                not_before: None,
                message_id: Some(message_id.clone()),
                verp_token: Some(token.to_string()),
                code: Some(250),
                text: Some("ok".into()),
            }])
            .await
            .unwrap();
        store.close().await;
        (c.id, message_id)
    });
    let server = start_mailgun(dir.path());
    let mut event = mailgun_failed(&unique("ev"), "kuro@example.net", "5.1.1", USER_UNKNOWN);
    event["message"]["headers"]["message-id"] = json!(format!("<{message_id}>"));
    let body = mailgun_signed(MAILGUN_KEY, now(), &unique("tok"), event);
    assert_status(
        &post(&server, "/webhooks/mailgun", &body, &[]),
        200,
        &server,
    );
    let ev = events(&server, "mailgun");
    assert_eq!(ev.len(), 1, "{ev:#?}");
    assert_eq!(ev[0]["campaign_id"], campaign, "{ev:#?}");
    assert_eq!(ev[0]["recipient"], "kuro@example.net", "{ev:#?}");
    assert_eq!(
        state(&server, "kuro@example.net").as_deref(),
        Some("bounced")
    );
}

// ---------------------------------------------------------------- SendGrid

const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

struct SendgridKey {
    pair: ring::signature::EcdsaKeyPair,
    /// base64 DER SubjectPublicKeyInfo, as SendGrid shows it.
    public: String,
}

fn sendgrid_key() -> SendgridKey {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    SendgridKey {
        pair,
        public: base64::engine::general_purpose::STANDARD.encode(spki),
    }
}

fn sendgrid_signature(key: &SendgridKey, timestamp: &str, body: &[u8]) -> String {
    let rng = ring::rand::SystemRandom::new();
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig = key.pair.sign(&rng, &signed).unwrap();
    base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
}

fn sendgrid_post(server: &Server, key: &SendgridKey, ts: u64, body: &[u8]) -> serve::Response {
    let ts = ts.to_string();
    let sig = sendgrid_signature(key, &ts, body);
    post(
        server,
        "/webhooks/sendgrid",
        body,
        &[
            ("X-Twilio-Email-Event-Webhook-Signature", &sig),
            ("X-Twilio-Email-Event-Webhook-Timestamp", &ts),
        ],
    )
}

#[test]
fn sendgrid_signed_batch_is_judged_per_event_and_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = sendgrid_key();
    let server = Server::start(
        dir.path(),
        &format!("{BASE}[webhooks.sendgrid]\npublic_key_env = \"REBOUND_TEST_SENDGRID_KEY\"\n"),
        &[("REBOUND_TEST_SENDGRID_KEY", &key.public)],
    );
    let events_json = json!([
        {"email": "tama@example.net", "timestamp": now(), "event": "bounce", "type": "bounce",
         "sg_event_id": unique("sg"), "smtp-id": "<a1@mail.example.org>", "status": "5.1.1",
         "reason": USER_UNKNOWN, "bounce_classification": "Invalid Address"},
        {"email": "mike@example.net", "timestamp": now(), "event": "bounce", "type": "blocked",
         "sg_event_id": unique("sg"), "smtp-id": "<a2@mail.example.org>", "status": "5.7.1",
         "reason": BLOCKLISTED, "bounce_classification": "Reputation"},
        {"email": "kuro@example.net", "timestamp": now(), "event": "delivered",
         "sg_event_id": unique("sg")},
        {"email": "lulu@example.net", "timestamp": now(), "event": "dropped",
         "sg_event_id": unique("sg"), "reason": "Bounced Address"},
    ]);
    let body = serde_json::to_vec(&events_json).unwrap();
    let r = sendgrid_post(&server, &key, now(), &body);
    assert_status(&r, 200, &server);
    assert_eq!(
        (r.json()["recorded"].as_u64(), r.json()["ignored"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(
        state(&server, "tama@example.net").as_deref(),
        Some("bounced")
    );
    assert_ne!(
        state(&server, "mike@example.net").as_deref(),
        Some("bounced")
    );
    assert_eq!(state(&server, "lulu@example.net"), None);
    let r = sendgrid_post(&server, &key, now(), &body);
    assert_status(&r, 200, &server);
    assert_eq!(r.json()["duplicates"], 2, "{}", r.text());
    assert_eq!(events(&server, "sendgrid").len(), 2);

    // Wrong key, no signature, stale timestamp, a body changed after signing.
    let bounce = serde_json::to_vec(&json!([{"email": "kuro@example.net", "event": "bounce",
        "sg_event_id": unique("sg"), "status": "5.1.1", "reason": USER_UNKNOWN}]))
    .unwrap();
    let r = sendgrid_post(&server, &sendgrid_key(), now(), &bounce);
    assert_refused(&r, 403, "wrong signature", &server);
    assert_status(
        &post(&server, "/webhooks/sendgrid", &bounce, &[]),
        401,
        &server,
    );
    let r = sendgrid_post(&server, &key, now() - 600, &bounce);
    assert_refused(&r, 403, "from now", &server);
    let ts = now().to_string();
    let sig = sendgrid_signature(&key, &ts, &bounce);
    let mut changed = bounce.clone();
    changed.push(b' ');
    let r = post(
        &server,
        "/webhooks/sendgrid",
        &changed,
        &[
            ("X-Twilio-Email-Event-Webhook-Signature", &sig),
            ("X-Twilio-Email-Event-Webhook-Timestamp", &ts),
        ],
    );
    assert_status(&r, 403, &server);
    // Signed, but not an array of events.
    assert_status(
        &sendgrid_post(&server, &key, now(), b"{\"a\":1}"),
        400,
        &server,
    );
    assert_eq!(state(&server, "kuro@example.net"), None);
    assert_eq!(events(&server, "sendgrid").len(), 2);
}

// ---------------------------------------------------------------- Postmark

#[test]
fn postmark_bounces_complaints_and_basic_authentication() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &format!(
            "{BASE}[webhooks.postmark]\nusername = \"pm\"\npassword_env = \"REBOUND_TEST_POSTMARK_PASSWORD\"\n"
        ),
        &[("REBOUND_TEST_POSTMARK_PASSWORD", POSTMARK_PASSWORD)],
    );
    let auth = |user: &str, pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let good = auth("pm", POSTMARK_PASSWORD);
    let bounce = |id: u64, email: &str, details: &str| {
        serde_json::to_vec(&json!({
            "RecordType": "Bounce", "ID": id, "Type": "HardBounce", "TypeCode": 1,
            "Name": "Hard bounce", "MessageID": "0f1e2d3c-0000-4000-8000-000000000001",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": details, "Email": email, "From": "news@example.org",
            "BouncedAt": "2026-12-03T10:00:00Z", "Subject": "News",
        }))
        .unwrap()
    };
    let hard = bounce(
        4_000_000_001,
        "tama@example.net",
        &format!("smtp;{USER_UNKNOWN}"),
    );
    let r = post(
        &server,
        "/webhooks/postmark",
        &hard,
        &[("Authorization", &good)],
    );
    assert_status(&r, 200, &server);
    assert_eq!(
        state(&server, "tama@example.net").as_deref(),
        Some("bounced")
    );
    let r = post(
        &server,
        "/webhooks/postmark",
        &hard,
        &[("Authorization", &good)],
    );
    assert_eq!(r.json()["duplicates"], 1, "{}", r.text());

    let blocked = bounce(
        4_000_000_002,
        "mike@example.net",
        &format!("smtp;{BLOCKLISTED}"),
    );
    assert_status(
        &post(
            &server,
            "/webhooks/postmark",
            &blocked,
            &[("Authorization", &good)],
        ),
        200,
        &server,
    );
    assert_ne!(
        state(&server, "mike@example.net").as_deref(),
        Some("bounced")
    );
    // Postmark's label and generic description alone do not bounce anyone.
    let bare = bounce(4_000_000_003, "lulu@example.net", "");
    assert_status(
        &post(
            &server,
            "/webhooks/postmark",
            &bare,
            &[("Authorization", &good)],
        ),
        200,
        &server,
    );
    assert_ne!(
        state(&server, "lulu@example.net").as_deref(),
        Some("bounced")
    );

    let complaint = serde_json::to_vec(&json!({
        "RecordType": "SpamComplaint", "ID": 4_000_000_004u64, "Type": "SpamComplaint",
        "TypeCode": 100001, "Email": "kuro@example.net", "From": "news@example.org",
        "MessageID": "0f1e2d3c-0000-4000-8000-000000000002", "Subject": "News",
    }))
    .unwrap();
    assert_status(
        &post(
            &server,
            "/webhooks/postmark",
            &complaint,
            &[("Authorization", &good)],
        ),
        200,
        &server,
    );
    assert_eq!(
        state(&server, "kuro@example.net").as_deref(),
        Some("complained")
    );
    assert_eq!(events(&server, "postmark").len(), 4);

    // No credentials: 401; wrong ones: 403; nothing changes.
    let other = bounce(
        4_000_000_005,
        "sora@example.net",
        &format!("smtp;{USER_UNKNOWN}"),
    );
    assert_status(
        &post(&server, "/webhooks/postmark", &other, &[]),
        401,
        &server,
    );
    for a in [
        auth("pm", "wrong"),
        auth("admin", POSTMARK_PASSWORD),
        "Basic !!".into(),
    ] {
        let r = post(
            &server,
            "/webhooks/postmark",
            &other,
            &[("Authorization", &a)],
        );
        assert_status(&r, 403, &server);
    }
    assert_status(
        &post(
            &server,
            "/webhooks/postmark",
            b"{\"ID\": ",
            &[("Authorization", &good)],
        ),
        400,
        &server,
    );
    assert_eq!(state(&server, "sora@example.net"), None);
    assert_eq!(events(&server, "postmark").len(), 4);
}

// ---------------------------------------------------------------- SES via SNS

fn ses_bounce(email: &str, sub_type: &str, status: &str, diagnostic: &str) -> Value {
    json!({
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent", "bounceSubType": sub_type,
            "bouncedRecipients": [{"emailAddress": email, "action": "failed",
                                   "status": status, "diagnosticCode": format!("smtp; {diagnostic}")}],
            "timestamp": "2026-12-03T10:00:00.000Z", "feedbackId": unique("fb"),
            "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-12-03T09:59:00.000Z", "source": "news@example.org",
            "messageId": unique("ses"), "destination": [email],
            "commonHeaders": {"messageId": "<n1@mail.example.org>", "subject": "News"},
        },
    })
}

/// The PKI, the HTTPS server and a `rebound serve` with `[webhooks.ses]`; `None` (a
/// visible skip) without openssl.
fn ses_setup(dir: &Path, cert_hosts: Option<&str>) -> Option<(Pki, Https, Server)> {
    let pki = match make_pki(dir) {
        Ok(p) => p,
        Err(e) => {
            skip::skip_current(&format!("no private CA: {e}"));
            return None;
        }
    };
    let https = start_https(&pki);
    let hosts = cert_hosts
        .map(|h| format!("cert_hosts = {h}\n"))
        .unwrap_or_default();
    let config = format!(
        "{BASE}[webhooks.ses]\ntopic_arns = [\"{TOPIC}\"]\n{hosts}ca_file = \"{}\"\n",
        pki.path("ca.pem").display()
    );
    let server = Server::start(dir, &config, &[]);
    Some((pki, https, server))
}

#[test]
fn ses_signed_notifications_are_judged_like_mail_and_recorded_once() {
    let dir = tempfile::tempdir().unwrap();
    let Some((pki, https, server)) = ses_setup(dir.path(), Some("[\"localhost\"]")) else {
        return;
    };
    let cert_url = format!("https://localhost:{}/cert.pem", https.port);
    for version in ["2", "1"] {
        let sns = Sns {
            dir: dir.path(),
            key: pki.path("leaf.key"),
            cert_url: cert_url.clone(),
            version,
        };
        let who = format!("tama{version}@example.net");
        let (_, body) =
            sns.notification(TOPIC, &ses_bounce(&who, "General", "5.1.1", USER_UNKNOWN));
        let r = post(&server, "/webhooks/ses", &body, &[]);
        assert_status(&r, 200, &server);
        assert_eq!(r.json()["recorded"], 1, "{}", r.text());
        assert_eq!(state(&server, &who).as_deref(), Some("bounced"));
        // SNS retries with the same MessageId: recorded once.
        let r = post(&server, "/webhooks/ses", &body, &[]);
        assert_eq!(r.json()["duplicates"], 1, "{}", r.text());
    }
    let sns = Sns {
        dir: dir.path(),
        key: pki.path("leaf.key"),
        cert_url: cert_url.clone(),
        version: "2",
    };
    // A sender-side refusal SES calls Permanent: not the recipient's.
    let (_, body) = sns.notification(
        TOPIC,
        &ses_bounce("mike@example.net", "General", "5.7.1", BLOCKLISTED),
    );
    assert_status(&post(&server, "/webhooks/ses", &body, &[]), 200, &server);
    assert_ne!(
        state(&server, "mike@example.net").as_deref(),
        Some("bounced")
    );
    // SES's own suppression list: not evidence.
    let (_, body) = sns.notification(
        TOPIC,
        &ses_bounce(
            "lulu@example.net",
            "OnAccountSuppressionList",
            "5.1.1",
            USER_UNKNOWN,
        ),
    );
    assert_status(&post(&server, "/webhooks/ses", &body, &[]), 200, &server);
    assert_ne!(
        state(&server, "lulu@example.net").as_deref(),
        Some("bounced")
    );
    // A complaint (event publishing's shape).
    let complaint = json!({
        "eventType": "Complaint",
        "complaint": {"complainedRecipients": [{"emailAddress": "kuro@example.net"}],
                      "complaintFeedbackType": "abuse", "feedbackId": unique("fb")},
        "mail": {"headers": [{"name": "Message-ID", "value": "<n2@mail.example.org>"}]},
    });
    let (_, body) = sns.notification(TOPIC, &complaint);
    assert_status(&post(&server, "/webhooks/ses", &body, &[]), 200, &server);
    assert_eq!(
        state(&server, "kuro@example.net").as_deref(),
        Some("complained")
    );
    // A delivery: ignored.
    let (_, body) = sns.notification(TOPIC, &json!({"notificationType": "Delivery"}));
    let r = post(&server, "/webhooks/ses", &body, &[]);
    assert_eq!(r.json()["ignored"], 1, "{}", r.text());
    assert_eq!(events(&server, "ses").len(), 5);
    // The certificate was fetched once and then cached.
    let fetched = https
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| *p == "/cert.pem")
        .count();
    assert_eq!(fetched, 1);
}

#[test]
fn ses_refuses_bad_signatures_certificates_and_topics() {
    let dir = tempfile::tempdir().unwrap();
    let Some((pki, https, server)) = ses_setup(dir.path(), Some("[\"localhost\"]")) else {
        return;
    };
    let good = Sns {
        dir: dir.path(),
        key: pki.path("leaf.key"),
        cert_url: format!("https://localhost:{}/cert.pem", https.port),
        version: "2",
    };
    let bounce = || ses_bounce("tama@example.net", "General", "5.1.1", USER_UNKNOWN);
    // Signed by another key than the certificate's.
    let wrong_key = Sns {
        key: pki.path("rogue.key"),
        ..good_clone(&good)
    };
    let (_, body) = wrong_key.notification(TOPIC, &bounce());
    let r = post(&server, "/webhooks/ses", &body, &[]);
    assert_refused(&r, 403, "wrong signature", &server);
    // A certificate of a CA that is not a trust root.
    let rogue = Sns {
        key: pki.path("rogue.key"),
        cert_url: format!("https://localhost:{}/rogue.pem", https.port),
        ..good_clone(&good)
    };
    let (_, body) = rogue.notification(TOPIC, &bounce());
    let r = post(&server, "/webhooks/ses", &body, &[]);
    assert_refused(&r, 403, "does not check out", &server);
    // Not https, or not an allowed host.
    for url in [
        format!("http://localhost:{}/cert.pem", https.port),
        "https://sns.eu-west-1.amazonaws.com.evil.example/cert.pem".to_owned(),
    ] {
        let s = Sns {
            cert_url: url,
            ..good_clone(&good)
        };
        let (_, body) = s.notification(TOPIC, &bounce());
        let r = post(&server, "/webhooks/ses", &body, &[]);
        assert_refused(&r, 403, "not https on an allowed host", &server);
    }
    // Another topic.
    let (_, body) = good.notification("arn:aws:sns:eu-west-1:123456789012:other", &bounce());
    let r = post(&server, "/webhooks/ses", &body, &[]);
    assert_refused(&r, 403, "topic_arns", &server);
    // A message changed after signing.
    let (_, body) = good.notification(TOPIC, &bounce());
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["Message"] = json!(bounce().to_string().replace("tama@", "sora@"));
    let body = serde_json::to_vec(&v).unwrap();
    let r = post(&server, "/webhooks/ses", &body, &[]);
    assert_refused(&r, 403, "wrong signature", &server);
    // No signature; an unknown signature version; not an SNS message.
    v.as_object_mut().unwrap().remove("Signature");
    let body = serde_json::to_vec(&v).unwrap();
    assert_status(&post(&server, "/webhooks/ses", &body, &[]), 401, &server);
    let (_, body) = good.notification(TOPIC, &bounce());
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["SignatureVersion"] = json!("3");
    let body = serde_json::to_vec(&v).unwrap();
    let r = post(&server, "/webhooks/ses", &body, &[]);
    assert_refused(&r, 403, "SignatureVersion", &server);
    assert_status(&post(&server, "/webhooks/ses", b"{]", &[]), 400, &server);
    assert_eq!(state(&server, "tama@example.net"), None);
    assert_eq!(state(&server, "sora@example.net"), None);
    assert!(events(&server, "ses").is_empty());
    // Never fetched from a host that is not allowed.
    assert!(
        https
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|p| p.ends_with(".pem")),
        "{:?}",
        https.seen.lock().unwrap()
    );
}

#[test]
fn ses_default_cert_hosts_refuse_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let Some((pki, https, server)) = ses_setup(dir.path(), None) else {
        return;
    };
    // A certificate that would check out, on a host the defaults do not allow.
    let s = Sns {
        dir: dir.path(),
        key: pki.path("leaf.key"),
        cert_url: format!("https://localhost:{}/cert.pem", https.port),
        version: "2",
    };
    let (_, body) = s.notification(
        TOPIC,
        &ses_bounce("tama@example.net", "General", "5.1.1", USER_UNKNOWN),
    );
    let r = post(&server, "/webhooks/ses", &body, &[]);
    assert_refused(&r, 403, "cert_hosts", &server);
    assert!(https.seen.lock().unwrap().is_empty());
    assert_eq!(state(&server, "tama@example.net"), None);
}

#[test]
fn ses_subscription_is_confirmed_for_a_configured_topic_only() {
    let dir = tempfile::tempdir().unwrap();
    let Some((pki, https, server)) = ses_setup(dir.path(), Some("[\"localhost\"]")) else {
        return;
    };
    let s = Sns {
        dir: dir.path(),
        key: pki.path("leaf.key"),
        cert_url: format!("https://localhost:{}/cert.pem", https.port),
        version: "2",
    };
    let url = format!(
        "https://localhost:{}/subscribe?Action=ConfirmSubscription&n=1",
        https.port
    );
    let r = post(&server, "/webhooks/ses", &s.subscription(TOPIC, &url), &[]);
    assert_status(&r, 200, &server);
    assert_eq!(r.json()["subscription"], "subscribed");
    assert!(
        https
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("/subscribe?") && p.ends_with("n=1")),
        "{:?}",
        https.seen.lock().unwrap()
    );
    let other = format!(
        "https://localhost:{}/subscribe?Action=ConfirmSubscription&n=2",
        https.port
    );
    let r = post(
        &server,
        "/webhooks/ses",
        &s.subscription("arn:aws:sns:eu-west-1:123456789012:other", &other),
        &[],
    );
    assert_status(&r, 403, &server);
    assert!(
        !https
            .seen
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.ends_with("n=2")),
        "{:?}",
        https.seen.lock().unwrap()
    );
}

/// The store cannot write (another process holds SQLite's write lock past the busy
/// timeout): 503 and nothing recorded, so the provider retries; the retry is recorded.
#[test]
fn sendgrid_store_failure_is_503_and_the_retry_is_recorded() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let key = sendgrid_key();
    let server = Server::start(
        dir.path(),
        &format!("{BASE}[webhooks.sendgrid]\npublic_key_env = \"REBOUND_TEST_SENDGRID_KEY\"\n"),
        &[("REBOUND_TEST_SENDGRID_KEY", &key.public)],
    );
    let body = serde_json::to_vec(&json!([{"email": "tama@example.net", "event": "bounce",
        "sg_event_id": unique("sg"), "status": "5.1.1", "reason": USER_UNKNOWN}]))
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("rebound.db").display());
    let mut lock = rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut c)
            .await
            .unwrap();
        c
    });
    let r = sendgrid_post(&server, &key, now(), &body);
    assert_refused(&r, 503, "not recorded", &server);
    rt.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut lock).await.unwrap();
        lock.close().await.unwrap();
    });
    assert_eq!(state(&server, "tama@example.net"), None);
    assert!(events(&server, "sendgrid").is_empty());
    let r = sendgrid_post(&server, &key, now(), &body);
    assert_status(&r, 200, &server);
    assert_eq!(r.json()["recorded"], 1, "{}", r.text());
    assert_eq!(
        state(&server, "tama@example.net").as_deref(),
        Some("bounced")
    );
}
