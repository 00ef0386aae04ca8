//! Event webhooks: after the store, the way out of rebound to the tool that owns the list
//! (listmonk, Mautic, a shop). Recipient state changes come in as rows of the store's
//! outbox ([`crate::store::outbox`], written in the transaction of each change); what
//! goes out is one signed POST per row and `[[notify]]` endpoint, retried until it is
//! answered 2xx ([`deliver`]).
//!
//! * [`Endpoint`] is one `[[notify]]` entry with its secrets read from the environment.
//! * The `rebound` format posts rebound's JSON event ([`crate::store::outbox::Payload`])
//!   with `Rebound-Timestamp` (Unix seconds), `Rebound-Signature: v1=<hex>` (HMAC-SHA256
//!   of the secret over `timestamp + "." + body`, [`sign`]) and `Idempotency-Key`; a
//!   receiver checks them with [`verify`] (docs/webhooks.md shows it in other languages).
//! * The `listmonk` format posts listmonk's bounce webhook body ([`listmonk`]).
//!
//! Delivery is at least once: a process that dies after the receiver answered but before
//! the store marked the row sends it again later, with the same idempotency key.

pub mod deliver;
pub mod listmonk;

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{NotifyConfig, NotifyFormat};
use crate::store::outbox::{Claimed, NotifyEvent, Subscription};

/// Errors setting up or building a webhook.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment variable a `[[notify]]` entry names is not set (or is empty).
    #[error("[[notify]] {endpoint:?}: environment variable {var} is not set")]
    MissingEnv {
        /// The endpoint.
        endpoint: String,
        /// The variable.
        var: String,
    },
    /// The config entry is inconsistent.
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    /// An outbox row's payload is not rebound's JSON event (a row written by another
    /// version, or edited by hand).
    #[error("outbox row {id}: unreadable payload: {reason}")]
    Payload {
        /// The row.
        id: i64,
        /// Why.
        reason: String,
    },
    /// The HTTP client could not be built (TLS roots).
    #[error("building the HTTP client: {0}")]
    Client(String),
}

/// The name of the header with the signing time (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "Rebound-Timestamp";
/// The name of the header with the signature (`v1=<hex>`).
pub const SIGNATURE_HEADER: &str = "Rebound-Signature";
/// The name of the header with the row's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// How an endpoint is authenticated.
#[derive(Clone)]
enum Auth {
    /// HMAC-SHA256 key of the signature.
    Signed(Vec<u8>),
    /// listmonk's `Authorization: token <user>:<token>`.
    Listmonk(String),
}

/// One `[[notify]]` endpoint, ready to send: its config with the secrets it names read.
#[derive(Clone)]
pub struct Endpoint {
    /// The name (outbox rows, logs, metrics).
    pub name: String,
    /// Where the POSTs go.
    pub url: String,
    /// The events it takes.
    pub events: Vec<NotifyEvent>,
    /// The body and authentication.
    pub format: NotifyFormat,
    /// How long one POST may take.
    pub timeout: Duration,
    /// Attempts before a row is dead.
    pub max_attempts: u32,
    /// The first retry's wait.
    pub retry_delay: Duration,
    /// The longest wait between attempts.
    pub max_retry_delay: Duration,
    auth: Auth,
}

impl std::fmt::Debug for Endpoint {
    /// Without the secret or token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// A POST ready to go: the body and the headers besides `Content-Type: application/json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The body.
    pub body: Vec<u8>,
    /// The headers, in order.
    pub headers: Vec<(&'static str, String)>,
}

fn secret(endpoint: &str, var: &str) -> Result<String, Error> {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::MissingEnv {
            endpoint: endpoint.to_owned(),
            var: var.to_owned(),
        })
}

impl Endpoint {
    /// The endpoint of `config`, its secret (`secret_env`) or listmonk token
    /// (`token_env`) read from the environment.
    ///
    /// # Errors
    /// [`Error::Config`] for an entry [`NotifyConfig::validate`] refuses,
    /// [`Error::MissingEnv`] for a variable that is not set.
    pub fn from_config(config: &NotifyConfig) -> Result<Endpoint, Error> {
        config.validate()?;
        let name = config.endpoint_name();
        let auth = match config.format {
            NotifyFormat::Rebound => {
                let var = config.secret_env.as_deref().unwrap_or_default();
                Auth::Signed(secret(&name, var)?.into_bytes())
            }
            NotifyFormat::Listmonk => {
                let var = config.token_env.as_deref().unwrap_or_default();
                let token = secret(&name, var)?;
                let user = config.username.as_deref().unwrap_or_default();
                Auth::Listmonk(format!("token {user}:{token}"))
            }
        };
        Ok(Endpoint {
            events: config.subscribed(),
            url: config.url.clone(),
            format: config.format,
            timeout: config.timeout,
            max_attempts: config.max_attempts,
            retry_delay: config.retry_delay,
            max_retry_delay: config.max_retry_delay,
            auth,
            name,
        })
    }

    /// The POST for outbox row `row`, signed at `unix_seconds` (rebound format).
    ///
    /// # Errors
    /// [`Error::Payload`] when the row's payload is not rebound's JSON event (listmonk
    /// format only: the rebound format sends the stored payload as it is).
    pub fn request(&self, row: &Claimed, unix_seconds: u64) -> Result<Request, Error> {
        let mut headers = vec![(IDEMPOTENCY_HEADER, row.idempotency_key.clone())];
        match &self.auth {
            Auth::Signed(key) => {
                let body = row.payload.clone().into_bytes();
                let ts = unix_seconds.to_string();
                headers.push((TIMESTAMP_HEADER, ts.clone()));
                headers.push((SIGNATURE_HEADER, sign(key, &ts, &body)));
                Ok(Request { body, headers })
            }
            Auth::Listmonk(authorization) => {
                let body =
                    listmonk::body(row).map_err(|reason| Error::Payload { id: row.id, reason })?;
                headers.push(("Authorization", authorization.clone()));
                Ok(Request { body, headers })
            }
        }
    }

    /// The wait before attempt `attempt + 1` after `attempt` failures: `retry_delay`
    /// doubled per failure, capped at `max_retry_delay`, with ±20 % jitter (so that the
    /// rows of one outage do not all come back in the same second).
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(attempt, self.retry_delay, self.max_retry_delay)
    }
}

/// What the store needs to enqueue for `[[notify]]`: each endpoint's name and events,
/// checked as [`endpoints`] checks them but without reading a secret: a command that only
/// makes changes (`rebound recipients reactivate`, `rebound reprocess`) enqueues them for
/// the deliverer of `rebound serve` or `rebound poll`, which needs the secrets.
///
/// # Errors
/// [`Error::Config`] for an entry [`NotifyConfig::validate`] refuses, or two endpoints of
/// one name.
pub fn subscriptions(configs: &[NotifyConfig]) -> Result<Vec<Subscription>, Error> {
    let mut out: Vec<Subscription> = Vec::with_capacity(configs.len());
    for c in configs {
        c.validate()?;
        let endpoint = c.endpoint_name();
        if out.iter().any(|o| o.endpoint == endpoint) {
            return Err(crate::config::Error::Notify(format!(
                "two endpoints are named {endpoint:?}: give each its own `name`"
            ))
            .into());
        }
        out.push(Subscription {
            endpoint,
            events: c.subscribed(),
        });
    }
    Ok(out)
}

/// The endpoints of `[[notify]]`, secrets read.
///
/// # Errors
/// As [`subscriptions`] and [`Endpoint::from_config`].
pub fn endpoints(configs: &[NotifyConfig]) -> Result<Vec<Endpoint>, Error> {
    subscriptions(configs)?;
    configs.iter().map(Endpoint::from_config).collect()
}

/// `retry_delay · 2^(attempt-1)`, capped at `cap`, with ±20 % jitter; at least 1 ms.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let doublings = attempt.saturating_sub(1).min(40);
    let plain = base.saturating_mul(1u32 << doublings.min(31)).min(cap);
    let plain = if doublings > 31 { cap } else { plain };
    let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.8..1.2);
    plain.mul_f64(jitter).max(Duration::from_millis(1))
}

/// The signature of `body` signed at `timestamp` (Unix seconds, as sent in
/// `Rebound-Timestamp`): `v1=` and the hex HMAC-SHA256 under `key` of
/// `timestamp + "." + body`.
///
/// # Examples
/// ```
/// let sig = rebound::notify::sign(b"key", "1700000000", br#"{"event":"bounced"}"#);
/// assert!(sig.starts_with("v1=") && sig.len() == 3 + 64);
/// ```
pub fn sign(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "v1={}",
        hex::encode(mac(key, timestamp, body).finalize().into_bytes())
    )
}

fn mac(key: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    m.update(timestamp.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// Checks a received webhook as a receiver should: `signature` (the
/// `Rebound-Signature` header; several `v1=` values separated by commas are allowed, for
/// a key rotation) must be the HMAC of `timestamp` and `body` under `key`, compared in
/// constant time, and `timestamp` within `tolerance` of `now_unix` (an old request
/// replayed is refused).
pub fn verify(
    key: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_unix: u64,
    tolerance: Duration,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<u64>() else {
        return false;
    };
    if ts.abs_diff(now_unix) > tolerance.as_secs() {
        return false;
    }
    signature.split(',').any(|s| {
        let Some(hex_sig) = s.trim().strip_prefix("v1=") else {
            return false;
        };
        let Ok(given) = hex::decode(hex_sig) else {
            return false;
        };
        mac(key, timestamp.trim(), body)
            .verify_slice(&given)
            .is_ok()
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn signature_verifies_and_a_wrong_key_or_body_fails() {
        let body = br#"{"event":"bounced","address":"a@example.org"}"#;
        let sig = sign(b"secret", "1700000000", body);
        let day = Duration::from_secs(300);
        assert!(verify(b"secret", "1700000000", &sig, body, 1700000100, day));
        assert!(!verify(b"other", "1700000000", &sig, body, 1700000100, day));
        assert!(!verify(
            b"secret",
            "1700000001",
            &sig,
            body,
            1700000100,
            day
        ));
        assert!(!verify(
            b"secret",
            "1700000000",
            &sig,
            b"{}",
            1700000100,
            day
        ));
        assert!(!verify(
            b"secret",
            "1700000000",
            &sig,
            body,
            1700009999,
            day
        ));
        assert!(!verify(b"secret", "x", &sig, body, 1700000100, day));
        let rotated = format!("v1=00, {sig}");
        assert!(verify(
            b"secret",
            "1700000000",
            &rotated,
            body,
            1700000000,
            day
        ));
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(3600));
        for (attempt, plain) in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 512.0), (13, 3600.0)] {
            let d = backoff(attempt, base, cap).as_secs_f64();
            assert!(d >= plain * 0.8 && d <= plain * 1.2, "{attempt}: {d}");
        }
        assert!(backoff(u32::MAX, base, cap) <= cap.mul_f64(1.2));
        assert!(backoff(0, Duration::ZERO, cap) >= Duration::from_millis(1));
    }
}
