//! A webhook receiver on loopback for the event webhooks' tests and bench: a small
//! HTTP/1.1 server (keep-alive, Content-Length bodies) that checks every request as a
//! real receiver would — rebound's signature ([`rebound::notify::verify`]) or listmonk's
//! auth and body — and fails a share of them at random (a 500, or the connection dropped
//! without an answer). Include it with `#[path = "support/hooks.rs"] mod hooks;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the receiver checks.
#[derive(Clone)]
pub enum Check {
    /// rebound's format: `Rebound-Signature` under this key (and never under `wrong`).
    Signed {
        /// The endpoint's secret.
        key: Vec<u8>,
        /// Another key, which must never verify.
        wrong: Vec<u8>,
    },
    /// listmonk's: `Authorization` must be exactly this, the body listmonk's.
    Listmonk {
        /// `token user:token`.
        authorization: String,
    },
}

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Requests read.
    pub requests: u64,
    /// Answered 500 on purpose.
    pub failed: u64,
    /// Dropped without an answer on purpose.
    pub dropped: u64,
    /// Refused: signature, auth or body wrong (with why).
    pub refused: Vec<String>,
    /// Requests whose signature verified under the wrong key (must stay 0).
    pub wrong_key_verified: u64,
    /// Idempotency key → times answered 2xx.
    pub acked: HashMap<String, u32>,
    /// Idempotency key → the body first acknowledged.
    pub bodies: HashMap<String, serde_json::Value>,
}

impl Seen {
    /// Keys answered 2xx more than once.
    pub fn repeats(&self) -> u64 {
        self.acked
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it saw so far.
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (on the current tokio runtime) that fails
    /// `fail_rate` of the requests (half with a 500, half by dropping the connection).
    pub async fn start(check: Check, fail_rate: f64) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let state = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (state, check) = (state.clone(), check.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, &state, &check, fail_rate).await;
                });
            }
        });
        Receiver { addr, seen, task }
    }

    /// The URL of its one route.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Keys acknowledged so far.
    pub fn acked(&self) -> usize {
        self.seen.lock().unwrap().acked.len()
    }
}

/// One connection: requests until the peer closes, or a drop on purpose.
async fn serve(
    mut conn: TcpStream,
    state: &Mutex<Seen>,
    check: &Check,
    fail_rate: f64,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    loop {
        let Some((head_len, headers)) = read_head(&mut conn, &mut buf).await? else {
            return Ok(());
        };
        let length: usize = header(&headers, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_len + length {
            let mut chunk = [0u8; 8192];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = buf[head_len..head_len + length].to_vec();
        buf.drain(..head_len + length);
        state.lock().unwrap().requests += 1;
        let roll: f64 = rand::random();
        if roll < fail_rate / 2.0 {
            state.lock().unwrap().dropped += 1;
            return Ok(()); // the connection closes with no answer
        }
        if roll < fail_rate {
            state.lock().unwrap().failed += 1;
            respond(&mut conn, 500, "failing on purpose").await?;
            continue;
        }
        match judge(&headers, &body, check, state) {
            Ok(key) => {
                {
                    let mut s = state.lock().unwrap();
                    *s.acked.entry(key.clone()).or_default() += 1;
                    if let Ok(v) = serde_json::from_slice(&body) {
                        s.bodies.entry(key).or_insert(v);
                    }
                }
                respond(&mut conn, 200, "ok").await?;
            }
            Err(why) => {
                state.lock().unwrap().refused.push(why.clone());
                respond(&mut conn, 401, &why).await?;
            }
        }
    }
}

/// Checks a request; returns its idempotency key.
fn judge(
    headers: &[(String, String)],
    body: &[u8],
    check: &Check,
    state: &Mutex<Seen>,
) -> Result<String, String> {
    let key = header(headers, "idempotency-key")
        .ok_or("no Idempotency-Key")?
        .to_owned();
    match check {
        Check::Signed { key: secret, wrong } => {
            let ts = header(headers, "rebound-timestamp").ok_or("no Rebound-Timestamp")?;
            let sig = header(headers, "rebound-signature").ok_or("no Rebound-Signature")?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let tolerance = Duration::from_secs(300);
            if rebound::notify::verify(wrong, ts, sig, body, now, tolerance) {
                state.lock().unwrap().wrong_key_verified += 1;
            }
            if !rebound::notify::verify(secret, ts, sig, body, now, tolerance) {
                return Err(format!("bad signature {sig}"));
            }
        }
        Check::Listmonk { authorization } => {
            if header(headers, "authorization") != Some(authorization.as_str()) {
                return Err("wrong Authorization".into());
            }
            let v: serde_json::Value =
                serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
            let email = v["email"].as_str().unwrap_or_default();
            if !email.contains('@') {
                return Err(format!("no email in {v}"));
            }
            if !matches!(v["type"].as_str(), Some("hard" | "soft" | "complaint")) {
                return Err(format!("type in {v}"));
            }
            if v["source"].as_str().is_none_or(str::is_empty) {
                return Err(format!("no source in {v}"));
            }
            let meta = v["meta"].as_str().ok_or("meta is not a string")?;
            serde_json::from_str::<serde_json::Value>(meta).map_err(|e| format!("meta: {e}"))?;
        }
    }
    Ok(key)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads up to the end of a request head; `None` when the peer closed first.
async fn read_head(
    conn: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(usize, Vec<(String, String)>)>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                .collect();
            return Ok(Some((end + 4, headers)));
        }
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(conn: &mut TcpStream, status: u16, text: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Internal Server Error",
    };
    let out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
    conn.write_all(out.as_bytes()).await
}
