//! Provider webhook throughput and latency of a running `rebound serve` on a SQLite
//! store: `POST /webhooks/mailgun` (HMAC, a token taken per request), `/webhooks/sendgrid`
//! (ECDSA P-256, one event per request) and `/webhooks/ses` (SNS, RSA SHA-256 under a
//! certificate of a private CA, fetched once then cached). Every request is signed,
//! carries a distinct event id and is booked (a hard bounce or a sender-side refusal);
//! a few clients post at once over keep-alive connections on loopback.
//!
//! `cargo bench --bench webhooks`; needs `openssl` (for the SNS part).

#[path = "../tests/support/skip.rs"]
mod skip;
#[path = "../tests/support/sns.rs"]
mod sns;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

const CLIENTS: usize = 4;
const REQUESTS: usize = 2000;
const SES_REQUESTS: usize = 1000;
const MAILGUN_KEY: &str = "bench-mailgun-key";
const TOPIC: &str = "arn:aws:sns:eu-west-1:123456789012:bench";
const USER_UNKNOWN: &str = "550 5.1.1 <x@example.net>: Recipient address rejected: User unknown";
const BLOCKLISTED: &str = "550 5.7.1 Client host [192.0.2.7] blocked using zen.spamhaus.org";

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn start(dir: &Path, config: &str, env: &[(&str, &str)], port: u16) -> Server {
    std::fs::write(dir.join("rebound.toml"), config).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
    cmd.current_dir(dir)
        .args([
            "serve",
            "--config",
            "rebound.toml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env_remove("REBOUND_API_TOKEN")
        .env("REBOUND_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("starting rebound serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rebound serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Server(child)
}

/// One request: its body and extra headers.
struct Req {
    body: Vec<u8>,
    headers: Vec<(String, String)>,
}

/// Reads one response on a keep-alive connection; its status.
fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> u16 {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).expect("reading a response");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).expect("reading a body");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
    status
}

/// Posts every request with [`CLIENTS`] keep-alive clients; (requests/s, p50 ms, p99 ms).
fn run(port: u16, path: &str, reqs: Vec<Req>) -> (f64, f64, f64) {
    let reqs = Arc::new(reqs);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut threads = Vec::new();
    for _ in 0..CLIENTS {
        let (reqs, next, path) = (reqs.clone(), next.clone(), path.to_owned());
        threads.push(std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buf = Vec::new();
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(r) = reqs.get(i) else {
                    break lat;
                };
                let mut msg = format!(
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    r.body.len()
                );
                for (k, v) in &r.headers {
                    msg.push_str(&format!("{k}: {v}\r\n"));
                }
                msg.push_str("\r\n");
                let t = Instant::now();
                stream.write_all(msg.as_bytes()).unwrap();
                stream.write_all(&r.body).unwrap();
                let status = read_response(&mut stream, &mut buf);
                lat.push(t.elapsed());
                assert_eq!(
                    status,
                    200,
                    "{path}: {}",
                    String::from_utf8_lossy(&buf)
                );
            }
        }));
    }
    let mut lat: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len() - 1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    (
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
    )
}

fn recipient(i: usize) -> (String, &'static str, &'static str) {
    if i.is_multiple_of(2) {
        (format!("user{i}@example.net"), "5.1.1", USER_UNKNOWN)
    } else {
        (format!("user{i}@example.net"), "5.7.1", BLOCKLISTED)
    }
}

fn mailgun_requests(n: usize) -> Vec<Req> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, MAILGUN_KEY.as_bytes());
    (0..n)
        .map(|i| {
            let (to, code, text) = recipient(i);
            let (ts, token) = (now(), sns::unique("mg-token"));
            let sig = hex::encode(ring::hmac::sign(&key, format!("{ts}{token}").as_bytes()));
            let body = json!({
                "signature": {"timestamp": ts.to_string(), "token": token, "signature": sig},
                "event-data": {"event": "failed", "id": sns::unique("mg"), "severity": "permanent",
                    "reason": "bounce", "recipient": to,
                    "delivery-status": {"code": 550, "enhanced-code": code, "message": text},
                    "message": {"headers": {"message-id": format!("m{i}@mail.example.org")}}},
            });
            Req {
                body: serde_json::to_vec(&body).unwrap(),
                headers: Vec::new(),
            }
        })
        .collect()
}

const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The public key (base64 SPKI) and `n` signed one-event requests.
fn sendgrid_requests(n: usize) -> (String, Vec<Req>) {
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let mut spki = P256_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let b64 = base64::engine::general_purpose::STANDARD;
    let reqs = (0..n)
        .map(|i| {
            let (to, code, text) = recipient(i);
            let body = serde_json::to_vec(&json!([{"email": to, "event": "bounce",
                "sg_event_id": sns::unique("sg"), "smtp-id": format!("<s{i}@mail.example.org>"),
                "status": code, "reason": text, "type": "bounce"}]))
            .unwrap();
            let ts = now().to_string();
            let mut signed = ts.as_bytes().to_vec();
            signed.extend_from_slice(&body);
            let sig = b64.encode(pair.sign(&rng, &signed).unwrap().as_ref());
            Req {
                body,
                headers: vec![
                    ("X-Twilio-Email-Event-Webhook-Signature".into(), sig),
                    ("X-Twilio-Email-Event-Webhook-Timestamp".into(), ts),
                ],
            }
        })
        .collect();
    (b64.encode(spki), reqs)
}

/// `n` SNS notifications signed (SignatureVersion 2) with the PKI's leaf key.
fn ses_requests(pki: &sns::Pki, cert_url: &str, n: usize) -> Vec<Req> {
    use rustls_pki_types::pem::PemObject;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.path("leaf.key")).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(key.secret_der()).unwrap();
    let rng = ring::rand::SystemRandom::new();
    (0..n)
        .map(|i| {
            let (to, code, text) = recipient(i);
            let message = json!({"notificationType": "Bounce",
                "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
                    "bouncedRecipients": [{"emailAddress": to, "action": "failed", "status": code,
                                           "diagnosticCode": format!("smtp; {text}")}]},
                "mail": {"commonHeaders": {"messageId": format!("<e{i}@mail.example.org>")}}})
            .to_string();
            let id = sns::unique("sns");
            let ts = "2026-12-03T10:00:00.000Z";
            let canonical = format!(
                "Message\n{message}\nMessageId\n{id}\nTimestamp\n{ts}\nTopicArn\n{TOPIC}\nType\nNotification\n"
            );
            let mut sig = vec![0u8; pair.public().modulus_len()];
            pair.sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &rng,
                canonical.as_bytes(),
                &mut sig,
            )
            .unwrap();
            let body = json!({"Type": "Notification", "MessageId": id, "TopicArn": TOPIC,
                "Message": message, "Timestamp": ts, "SignatureVersion": "2",
                "Signature": base64::engine::general_purpose::STANDARD.encode(&sig),
                "SigningCertURL": cert_url});
            Req {
                body: serde_json::to_vec(&body).unwrap(),
                headers: Vec::new(),
            }
        })
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (sendgrid_key, sendgrid) = sendgrid_requests(REQUESTS);
    let pki = sns::make_pki(dir.path());
    let mut config = String::from(
        "[store]\nurl = \"sqlite://rebound.db\"\n[api]\ndata_dir = \"policies\"\n\
         [policy_limits]\ncache_dir = \"cache\"\n\
         [webhooks.mailgun]\nsigning_key_env = \"BENCH_MAILGUN_KEY\"\n\
         [webhooks.sendgrid]\npublic_key_env = \"BENCH_SENDGRID_KEY\"\n",
    );
    let https = match &pki {
        Ok(pki) => {
            config.push_str(&format!(
                "[webhooks.ses]\ntopic_arns = [\"{TOPIC}\"]\ncert_hosts = [\"localhost\"]\nca_file = \"{}\"\n",
                pki.path("ca.pem").display()
            ));
            Some(sns::start_https(pki))
        }
        Err(e) => {
            skip::skip_current(&format!("SES part: no private CA: {e}"));
            None
        }
    };
    let port = free_port();
    let server_dir = tempfile::tempdir_in(dir.path()).unwrap();
    let _server = start(
        server_dir.path(),
        &config,
        &[
            ("BENCH_MAILGUN_KEY", MAILGUN_KEY),
            ("BENCH_SENDGRID_KEY", &sendgrid_key),
        ],
        port,
    );
    println!(
        "POST /webhooks/<provider>, {CLIENTS} keep-alive clients, every request signed and booked (SQLite store)"
    );
    let mut runs: Vec<(&str, Vec<Req>)> = vec![
        ("mailgun", mailgun_requests(REQUESTS)),
        ("sendgrid", sendgrid),
    ];
    if let (Ok(pki), Some(https)) = (&pki, &https) {
        let url = format!("https://localhost:{}/cert.pem", https.port);
        runs.push(("ses", ses_requests(pki, &url, SES_REQUESTS)));
    }
    for (provider, reqs) in runs {
        let n = reqs.len();
        let (rps, p50, p99) = run(port, &format!("/webhooks/{provider}"), reqs);
        println!(
            "{provider:>9}: {n:>5} requests  {rps:>7.0} req/s   p50 {p50:>6.2} ms   p99 {p99:>6.2} ms"
        );
    }
}
