//! The deliverer: claims due outbox rows, POSTs each to its endpoint and books the
//! answer. In: the store's outbox; out: HTTP requests, and each row marked delivered,
//! due again later, or dead.
//!
//! * A 2xx marks the row delivered.
//! * Anything else (a timeout, a refused or dropped connection, 5xx, 408, 429, and also
//!   the other 4xx) is a failure: the row is due again after [`Endpoint::backoff`] (or
//!   the `Retry-After` of a 429 or 503, when longer), and dead once it failed
//!   `max_attempts` times. A dead row is logged, counted, listed by `rebound notify
//!   status` and sent again by `rebound notify retry`.
//! * Rows are claimed under a lease (PostgreSQL: `FOR UPDATE SKIP LOCKED`), so two
//!   processes never send one row at once; a process that dies leaves its rows to come
//!   back when the lease runs out (sent again, same idempotency key: at least once).
//! * Delivered rows are kept for [`DELIVERED_KEPT`] (for `rebound notify status` and a
//!   look at what went out), then deleted, at most once per [`PRUNE_EVERY`]; dead and
//!   pending rows stay until they are delivered.
//! * Stopping: no new batch is claimed; the batch in flight is sent and booked (each
//!   POST is bounded by its endpoint's timeout), so a row either completes or stays due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::metrics;
use crate::store::Store;
use crate::store::outbox::Claimed;

use super::{Endpoint, Error};

/// Rows claimed at once.
const BATCH: u32 = 64;
/// The longest sleep when nothing is due (rows enqueued by another process are seen
/// this late at most).
const IDLE: Duration = Duration::from_secs(1);
/// How long a delivered row is kept.
pub const DELIVERED_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the delivered rows older than [`DELIVERED_KEPT`] are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Kept of a refused answer's body in `last_error`.
const ERROR_BODY: usize = 200;

/// What one [`Deliverer::pass`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pass {
    /// Rows claimed.
    pub claimed: usize,
    /// Rows answered 2xx.
    pub delivered: usize,
    /// Attempts that failed (the row is due again).
    pub failed: usize,
    /// Rows given up after `max_attempts`.
    pub dead: usize,
}

impl std::ops::AddAssign for Pass {
    fn add_assign(&mut self, o: Pass) {
        self.claimed += o.claimed;
        self.delivered += o.delivered;
        self.failed += o.failed;
        self.dead += o.dead;
    }
}

/// Sends the outbox rows of a set of endpoints.
#[derive(Debug, Clone)]
pub struct Deliverer {
    store: Store,
    endpoints: Arc<BTreeMap<String, Endpoint>>,
    names: Arc<Vec<String>>,
    client: reqwest::Client,
    owner: Arc<str>,
    lease: Duration,
}

/// How one attempt ended.
enum Outcome {
    Delivered,
    Failed {
        error: String,
        retry_after: Option<Duration>,
    },
}

impl Deliverer {
    /// A deliverer of `endpoints`' rows in `store`, claiming them as a fresh owner
    /// (`host:pid:random`). The lease is twice the longest endpoint timeout plus 5 s (the answer and its booking fit in it; a row of a process that died comes back that late).
    ///
    /// # Errors
    /// [`Error::Client`] when the HTTP client cannot be built.
    pub fn new(store: Store, endpoints: Vec<Endpoint>) -> Result<Deliverer, Error> {
        // Redirects are not followed: a 3xx is a failure to fix at the endpoint, never a
        // signed body sent on to somewhere else.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("rebound/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Client(e.to_string()))?;
        let longest = endpoints
            .iter()
            .map(|e| e.timeout)
            .max()
            .unwrap_or(Duration::from_secs(10));
        let names = endpoints.iter().map(|e| e.name.clone()).collect();
        let owner = format!(
            "{}:{}:{:08x}",
            hostname(),
            std::process::id(),
            rand::random::<u32>()
        );
        Ok(Deliverer {
            store,
            endpoints: Arc::new(endpoints.into_iter().map(|e| (e.name.clone(), e)).collect()),
            names: Arc::new(names),
            client,
            owner: owner.into(),
            lease: longest.saturating_mul(2) + Duration::from_secs(5),
        })
    }

    /// This deliverer's lease owner name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Claims one batch of due rows and sends them all at once, each booked as its answer
    /// comes. Returns what it did (nothing claimed: nothing is due).
    ///
    /// # Errors
    /// [`crate::store::Error`] from claiming; a failure to book one answer is logged
    /// and its row comes back when its lease runs out.
    pub async fn pass(&self) -> crate::store::Result<Pass> {
        let rows = self
            .store
            .claim_outbox(&self.owner, &self.names, self.lease, BATCH)
            .await?;
        let mut pass = Pass {
            claimed: rows.len(),
            ..Pass::default()
        };
        let mut sends = tokio::task::JoinSet::new();
        for row in rows {
            let me = self.clone();
            sends.spawn(async move { me.deliver(row).await });
        }
        while let Some(done) = sends.join_next().await {
            match done {
                Ok(p) => pass += p,
                Err(e) => tracing::error!("notify: a delivery task ended abnormally: {e}"),
            }
        }
        Ok(pass)
    }

    /// Passes until nothing is due now (rows waiting for a retry later are left). For
    /// `rebound notify run --once`.
    ///
    /// # Errors
    /// As [`Deliverer::pass`].
    pub async fn drain(&self) -> crate::store::Result<Pass> {
        let mut total = Pass::default();
        loop {
            let p = self.pass().await?;
            if p.claimed == 0 {
                return Ok(total);
            }
            total += p;
        }
    }

    /// Delivers until `stop` resolves: a pass whenever rows are due, else a sleep until
    /// the next is due (at most 1 s) or this process enqueues one. The pass in
    /// flight when `stop` resolves is finished first.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut failures = 0u32;
        let mut pruned_at: Option<std::time::Instant> = None;
        loop {
            if pruned_at.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
                pruned_at = Some(std::time::Instant::now());
                self.prune().await;
            }
            let wait = match self.pass().await {
                Ok(p) if p.claimed > 0 => {
                    failures = 0;
                    Duration::ZERO
                }
                Ok(_) => {
                    failures = 0;
                    match self.store.outbox_next_due(&self.names).await {
                        Ok(Some(at)) => Duration::from_millis(
                            u64::try_from(at.0 - crate::store::Timestamp::now().0).unwrap_or(0),
                        )
                        .min(IDLE),
                        Ok(None) => IDLE,
                        Err(e) => {
                            tracing::warn!("notify: reading the outbox failed: {e}");
                            IDLE
                        }
                    }
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    let wait = super::backoff(failures, IDLE, Duration::from_secs(60));
                    tracing::warn!("notify: claiming outbox rows failed (again in {wait:?}): {e}");
                    wait
                }
            };
            if wait.is_zero() {
                // A stop between two busy passes still ends the loop.
                if futures_util::FutureExt::now_or_never(&mut stop).is_some() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.store.outbox_added() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Deletes the rows delivered more than [`DELIVERED_KEPT`] ago (a failure is only
    /// logged: the next prune tries again).
    async fn prune(&self) {
        let keep = i64::try_from(DELIVERED_KEPT.as_millis()).unwrap_or(i64::MAX);
        let before = crate::store::Timestamp(crate::store::Timestamp::now().0.saturating_sub(keep));
        match self.store.prune_outbox(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "notify: delivered outbox rows older than 7 days deleted"
            ),
            Err(e) => tracing::warn!("notify: pruning the outbox failed: {e}"),
        }
    }

    /// Sends one row and books the answer.
    async fn deliver(&self, row: Claimed) -> Pass {
        let mut pass = Pass::default();
        let Some(endpoint) = self.endpoints.get(&row.endpoint) else {
            return pass; // not claimed: only configured endpoints' rows are
        };
        let outcome = self.attempt(endpoint, &row).await;
        let name = endpoint.name.as_str();
        match outcome {
            Outcome::Delivered => match self.store.outbox_delivered(row.id).await {
                Ok(_) => {
                    pass.delivered += 1;
                    metrics::inc(
                        metrics::NOTIFY_DELIVERIES,
                        &[("endpoint", name), ("result", "delivered")],
                    );
                }
                Err(e) => tracing::warn!(
                    endpoint = name,
                    "notify: row {} was delivered but marking it failed (it is sent again): {e}",
                    row.id
                ),
            },
            Outcome::Failed { error, retry_after } => {
                let attempt = row.attempts.saturating_add(1);
                let mut wait = endpoint.backoff(attempt);
                if let Some(asked) = retry_after {
                    wait = wait.max(asked.min(endpoint.max_retry_delay));
                }
                match self
                    .store
                    .outbox_failed(row.id, &self.owner, wait, &error, endpoint.max_attempts)
                    .await
                {
                    Ok(Some(true)) => {
                        pass.dead += 1;
                        metrics::inc(
                            metrics::NOTIFY_DELIVERIES,
                            &[("endpoint", name), ("result", "dead")],
                        );
                        tracing::error!(
                            endpoint = name,
                            event = %row.event,
                            "notify: row {} is dead after {attempt} attempts (last: {error}); \
                             `rebound notify retry {name}` sends it again",
                            row.id
                        );
                    }
                    Ok(Some(false)) => {
                        pass.failed += 1;
                        metrics::inc(
                            metrics::NOTIFY_DELIVERIES,
                            &[("endpoint", name), ("result", "failed")],
                        );
                        tracing::debug!(
                            endpoint = name,
                            "notify: row {} attempt {attempt} failed ({error}); again in {wait:?}",
                            row.id
                        );
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        endpoint = name,
                        "notify: booking a failed attempt at row {} failed (it comes back when its lease ends): {e}",
                        row.id
                    ),
                }
            }
        }
        pass
    }

    /// One POST.
    async fn attempt(&self, endpoint: &Endpoint, row: &Claimed) -> Outcome {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let request = match endpoint.request(row, now) {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Failed {
                    error: e.to_string(),
                    retry_after: None,
                };
            }
        };
        let mut post = self
            .client
            .post(&endpoint.url)
            .timeout(endpoint.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.body);
        for (name, value) in request.headers {
            post = post.header(name, value);
        }
        match post.send().await {
            Ok(resp) if resp.status().is_success() => Outcome::Delivered,
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(ERROR_BODY).collect();
                // 4xx other than 408 and 429 is retried too: it usually means the
                // endpoint is misconfigured (a token revoked, a route moved, a
                // receiver's bug), which is fixed on the receiving side; giving up at
                // once would lose the event, and max_attempts bounds the retries.
                Outcome::Failed {
                    error: format!("HTTP {status}: {}", text.trim()),
                    retry_after: matches!(status.as_u16(), 429 | 503)
                        .then_some(retry_after)
                        .flatten(),
                }
            }
            // Without the URL: its query may carry a secret.
            Err(e) => Outcome::Failed {
                error: describe(&e.without_url()),
                retry_after: None,
            },
        }
    }
}

/// A reqwest error with its causes (the top level alone says only "error sending
/// request").
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// This host's name for lease owners (`HOSTNAME`, else `/etc/hostname`, else `host`).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}
