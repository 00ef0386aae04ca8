//! SNS for tests and benches: a private CA made with `openssl` and a certificate it issued
//! to sns.amazonaws.com (and localhost), a second CA that no one trusts with one of its
//! own, a loopback HTTPS server serving both certificates (and answering SubscribeURLs),
//! and signed SNS messages. Include it with `#[path = "support/sns.rs"] mod sns;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{Value, json};

/// A value never used before in this process (tokens, event ids).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos:x}-{}", N.fetch_add(1, Ordering::SeqCst))
}

/// A private CA, a certificate it issued to sns.amazonaws.com (and localhost, so the test's
/// HTTPS server can serve with it too), and a second, untrusted CA with such a certificate.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn openssl(args: &[&str], dir: &Path) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn make_pki(dir: &Path) -> Result<Pki, String> {
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName = DNS:sns.amazonaws.com, DNS:localhost\nbasicConstraints = CA:FALSE\n\
         keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n",
    )
    .map_err(|e| e.to_string())?;
    for (ca, leaf) in [("ca", "leaf"), ("rogue-ca", "rogue")] {
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=rebound test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ],
            dir,
        )?;
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=sns.amazonaws.com",
                "-keyout",
                &format!("{leaf}.key"),
                "-out",
                &format!("{leaf}.csr"),
            ],
            dir,
        )?;
        openssl(
            &[
                "x509",
                "-req",
                "-days",
                "2",
                "-set_serial",
                "2",
                "-in",
                &format!("{leaf}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-extfile",
                "leaf.ext",
                "-out",
                &format!("{leaf}.pem"),
            ],
            dir,
        )?;
    }
    Ok(Pki {
        dir: dir.to_owned(),
    })
}

/// A loopback HTTPS server (the leaf certificate) that serves `/cert.pem`, `/rogue.pem`
/// and records every path asked for.
pub struct Https {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
}

pub fn start_https(pki: &Pki) -> Https {
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pki_types::CertificateDer::pem_file_iter(pki.path("leaf.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(pki.path("leaf.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let files: Vec<(String, Vec<u8>)> = vec![
        (
            "/cert.pem".into(),
            std::fs::read(pki.path("leaf.pem")).unwrap(),
        ),
        (
            "/rogue.pem".into(),
            std::fs::read(pki.path("rogue.pem")).unwrap(),
        ),
    ];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, files, seen) = (acceptor.clone(), files.clone(), seen2.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let path = text.split_whitespace().nth(1).unwrap_or("").to_owned();
                    seen.lock().unwrap().push(path.clone());
                    let body = files
                        .iter()
                        .find(|(p, _)| *p == path)
                        .map(|(_, b)| b.clone())
                        .or_else(|| path.starts_with("/subscribe").then(|| b"<ok/>".to_vec()));
                    let response = match body {
                        Some(b) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                                b.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&b);
                            r
                        }
                        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
                    };
                    let _ = tls.write_all(&response).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    });
    Https { port, seen }
}

/// Signs `text` with `key` (`sha1` or `sha256`), base64.
pub fn openssl_sign(dir: &Path, key: &Path, digest: &str, text: &str) -> String {
    let input = dir.join(unique("canon"));
    std::fs::write(&input, text).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", &format!("-{digest}"), "-sign"])
        .arg(key)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    base64::engine::general_purpose::STANDARD.encode(out.stdout)
}

pub struct Sns<'a> {
    pub dir: &'a Path,
    pub key: PathBuf,
    pub cert_url: String,
    pub version: &'a str,
}

impl Sns<'_> {
    /// A signed Notification carrying `message` from `topic`.
    pub fn notification(&self, topic: &str, message: &Value) -> (String, Vec<u8>) {
        let id = unique("sns");
        let message = message.to_string();
        let ts = "2026-12-03T10:00:00.000Z";
        let canonical = format!(
            "Message\n{message}\nMessageId\n{id}\nTimestamp\n{ts}\nTopicArn\n{topic}\nType\nNotification\n"
        );
        let digest = if self.version == "1" {
            "sha1"
        } else {
            "sha256"
        };
        let sig = openssl_sign(self.dir, &self.key, digest, &canonical);
        let body = json!({
            "Type": "Notification", "MessageId": id, "TopicArn": topic, "Message": message,
            "Timestamp": ts, "SignatureVersion": self.version, "Signature": sig,
            "SigningCertURL": self.cert_url,
            "UnsubscribeURL": "https://localhost/unsubscribe",
        });
        (id, serde_json::to_vec(&body).unwrap())
    }

    /// A signed SubscriptionConfirmation for `topic`.
    pub fn subscription(&self, topic: &str, subscribe_url: &str) -> Vec<u8> {
        let id = unique("sns");
        let token = unique("subscription-token");
        let message = format!("Visit the SubscribeURL to confirm the subscription to {topic}.");
        let ts = "2026-12-03T10:00:00.000Z";
        let canonical = format!(
            "Message\n{message}\nMessageId\n{id}\nSubscribeURL\n{subscribe_url}\nTimestamp\n{ts}\n\
             Token\n{token}\nTopicArn\n{topic}\nType\nSubscriptionConfirmation\n"
        );
        let sig = openssl_sign(self.dir, &self.key, "sha256", &canonical);
        serde_json::to_vec(&json!({
            "Type": "SubscriptionConfirmation", "MessageId": id, "Token": token,
            "TopicArn": topic, "Message": message, "SubscribeURL": subscribe_url,
            "Timestamp": ts, "SignatureVersion": "2", "Signature": sig,
            "SigningCertURL": self.cert_url,
        }))
        .unwrap()
    }
}

/// A copy of `s`.
pub fn good_clone<'a>(s: &Sns<'a>) -> Sns<'a> {
    Sns {
        dir: s.dir,
        key: s.key.clone(),
        cert_url: s.cert_url.clone(),
        version: s.version,
    }
}
