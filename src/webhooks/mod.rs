//! Provider webhooks: the inbound source that sending services push their events to,
//! `POST /webhooks/{provider}` of `rebound serve` for Amazon SES (through SNS), SendGrid,
//! Postmark and Mailgun.
//!
//! ```text
//! request ──► provider check ──► event → report ──► Stages::ingest (detect → chain → correlate → commit + archive)
//!             signature / auth    evidence           crate::pipeline
//! ```
//!
//! Each provider's module checks the request's authentication (a signature, or basic
//! authentication) and turns each bounce or complaint event into the standard report a
//! mailbox would have held ([`evidence`]): an RFC 3464 delivery-status notification or an
//! RFC 5965 feedback report. That report goes through [`crate::pipeline::Stages::ingest`]
//! like a mailbox message, with the ledger row `webhook:<provider>` / the provider's event
//! id, so the detector's rules and the policy chain judge it, the archive keeps it, and a
//! provider's retry of an event is a duplicate, recorded once. Other events (deliveries,
//! opens, clicks) are answered 200 and ignored.
//!
//! | answer | when |
//! |---|---|
//! | 200 | recorded, or a duplicate (a retry), or ignored; SNS: a subscription confirmed |
//! | 400 | the body is not what the provider sends |
//! | 401 | no credentials (signature, authentication) |
//! | 403 | credentials present but wrong, stale, replayed, or a certificate URL or topic not allowed |
//! | 404 | the provider is not configured |
//! | 413 | the body is over `[webhooks] max_body` |
//! | 503 | the store, the policy chain (or fetching SNS's certificate) failed: the provider retries; nothing was recorded |
//!
//! These routes answer requests from the providers, not from a browser: they need no API
//! token and are not behind the API's Host/Origin check (a page that rebinds a name
//! cannot sign a provider's request), only behind the provider's own authentication.

pub mod evidence;
pub mod mailgun;
pub mod postmark;
pub mod sendgrid;
pub mod ses;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;

use crate::config::WebhooksConfig;
use crate::metrics;
use crate::pipeline::{IngestError, Stages};
use crate::store::{EventContext, Store};

/// How far a signed request's timestamp may be from our clock (Mailgun, SendGrid).
pub const MAX_SKEW_SECS: u64 = 5 * 60;

/// Why the webhooks could not be set up (at start-up).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An environment variable the config names is not set.
    #[error("[webhooks.{provider}]: environment variable {var} (named in the config) is not set")]
    Env {
        /// The provider's section.
        provider: &'static str,
        /// The variable.
        var: String,
    },
    /// A configured value cannot be used.
    #[error("[webhooks.{provider}]: {reason}")]
    Invalid {
        /// The provider's section.
        provider: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// Why a request is refused; nothing was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the body is not what the provider sends.
    Malformed(String),
    /// 401: no credentials.
    Unauthenticated(String),
    /// 403: credentials present but wrong, stale, replayed or not allowed.
    Forbidden(String),
    /// 404: the provider is not configured.
    NotConfigured(String),
    /// 413: the body is over the limit (bytes).
    TooLarge(usize),
    /// 503: the store, the chain or an upstream fetch failed; the provider should retry.
    Unavailable(String),
}

impl Refusal {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            Refusal::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::NotConfigured(_) => StatusCode::NOT_FOUND,
            Refusal::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The `result` label of [`metrics::WEBHOOK_REQUESTS`].
    pub fn result(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed",
            Refusal::Unauthenticated(_) => "unauthenticated",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::NotConfigured(_) => "not_configured",
            Refusal::TooLarge(_) => "too_large",
            Refusal::Unavailable(_) => "unavailable",
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Malformed(m)
            | Refusal::Unauthenticated(m)
            | Refusal::Forbidden(m)
            | Refusal::NotConfigured(m)
            | Refusal::Unavailable(m) => m.clone(),
            Refusal::TooLarge(max) => {
                format!("the body is larger than [webhooks] max_body ({max} bytes)")
            }
        }
    }
}

/// Shorthand for a 400.
pub(crate) fn malformed(what: impl std::fmt::Display) -> Refusal {
    Refusal::Malformed(what.to_string())
}

/// One event made into a report, for [`Stages::ingest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The provider's id of the event: the ledger's uid.
    pub id: String,
    /// The report ([`evidence`]).
    pub raw: Vec<u8>,
}

/// What a provider made of one request.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The bounce and complaint events, as reports.
    pub reports: Vec<Report>,
    /// Events taken and ignored (deliveries, opens, …).
    pub ignored: usize,
    /// SNS: the request was a subscription (confirmed) or an unsubscribe confirmation.
    pub subscription: Option<&'static str>,
}

/// What [`Webhooks::receive`] did with an accepted request.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Received {
    /// Events recorded.
    pub recorded: usize,
    /// Events that were recorded before (the provider's retries).
    pub duplicates: usize,
    /// Events ignored.
    pub ignored: usize,
    /// SNS: `subscribed` or `unsubscribed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription: Option<&'static str>,
}

/// The configured providers and the pipeline their events go through.
pub struct Webhooks {
    store: Store,
    stages: Stages,
    /// On SQLite, one request writes at a time: requests wait here, in order, instead of
    /// in SQLite's busy handler, whose growing sleeps (up to 100 ms) make the tail.
    writes: tokio::sync::Mutex<()>,
    max_body: usize,
    mailgun: Option<mailgun::Mailgun>,
    ses: Option<ses::Ses>,
    sendgrid: Option<sendgrid::Sendgrid>,
    postmark: Option<postmark::Postmark>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("max_body", &self.max_body)
            .field("mailgun", &self.mailgun.is_some())
            .field("ses", &self.ses.is_some())
            .field("sendgrid", &self.sendgrid.is_some())
            .field("postmark", &self.postmark.is_some())
            .finish_non_exhaustive()
    }
}

impl Webhooks {
    /// The providers of `[webhooks]`, each with its secret read from the environment
    /// now, feeding `stages` on `store`.
    ///
    /// # Errors
    /// [`Error::Env`] for a secret's variable that is not set, [`Error::Invalid`] for a
    /// key, a CA file or a pattern that cannot be used.
    pub fn from_config(
        config: &WebhooksConfig,
        store: Store,
        stages: Stages,
    ) -> Result<Webhooks, Error> {
        Ok(Webhooks {
            store,
            stages,
            writes: tokio::sync::Mutex::new(()),
            max_body: usize::try_from(config.max_body).unwrap_or(usize::MAX),
            mailgun: config
                .mailgun
                .as_ref()
                .map(mailgun::Mailgun::from_config)
                .transpose()?,
            ses: config.ses.as_ref().map(ses::Ses::from_config).transpose()?,
            sendgrid: config
                .sendgrid
                .as_ref()
                .map(sendgrid::Sendgrid::from_config)
                .transpose()?,
            postmark: config
                .postmark
                .as_ref()
                .map(postmark::Postmark::from_config)
                .transpose()?,
        })
    }

    /// The names of the configured providers.
    pub fn providers(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.mailgun.is_some() {
            out.push("mailgun");
        }
        if self.ses.is_some() {
            out.push("ses");
        }
        if self.sendgrid.is_some() {
            out.push("sendgrid");
        }
        if self.postmark.is_some() {
            out.push("postmark");
        }
        out
    }

    /// One request to `provider`'s webhook: authenticated, parsed, each event through
    /// the pipeline.
    ///
    /// # Errors
    /// [`Refusal`]; nothing is recorded then, except the events of the request that were
    /// recorded before a later one failed (the provider's retry finds those duplicates).
    pub async fn receive(
        &self,
        provider: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Received, Refusal> {
        let parsed = match provider {
            "mailgun" => match &self.mailgun {
                Some(p) => {
                    let _serial = self.serial().await;
                    p.parse(&self.store, body).await?
                }
                None => return Err(not_configured(provider)),
            },
            "ses" => match &self.ses {
                Some(p) => p.parse(body).await?,
                None => return Err(not_configured(provider)),
            },
            "sendgrid" => match &self.sendgrid {
                Some(p) => p.parse(headers, body)?,
                None => return Err(not_configured(provider)),
            },
            "postmark" => match &self.postmark {
                Some(p) => p.parse(headers, body)?,
                None => return Err(not_configured(provider)),
            },
            _ => return Err(not_configured(provider)),
        };
        let mut out = Received {
            ignored: parsed.ignored,
            subscription: parsed.subscription,
            ..Received::default()
        };
        let _serial = self.serial().await;
        for report in parsed.reports {
            let ctx = EventContext::webhook(provider, &report.id);
            match self.stages.ingest(&self.store, ctx, &report.raw).await {
                Ok(ingested) if ingested.outcome.duplicate => out.duplicates += 1,
                Ok(ingested) => {
                    metrics::count_verdict(&ingested.verdict);
                    metrics::count_booked(&ingested.outcome);
                    out.recorded += 1;
                }
                Err(e @ IngestError::Policy(_)) => {
                    tracing::warn!(provider, event = %report.id, "not recorded: {e}");
                    return Err(Refusal::Unavailable(format!("not recorded: {e}")));
                }
                Err(e @ IngestError::Store(_)) => {
                    tracing::error!(provider, event = %report.id, "not recorded: {e}");
                    return Err(Refusal::Unavailable(format!("not recorded: {e}")));
                }
            }
        }
        Ok(out)
    }

    /// Waits for this process's turn to write, on SQLite (see `writes`).
    async fn serial(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.store.backend() {
            crate::store::Backend::Sqlite => Some(self.writes.lock().await),
            crate::store::Backend::Postgres => None,
        }
    }

    /// Reads a body of at most [`WebhooksConfig::max_body`] bytes.
    async fn read_body(&self, body: Body) -> Result<axum::body::Bytes, Refusal> {
        axum::body::to_bytes(body, self.max_body)
            .await
            .map_err(|_| Refusal::TooLarge(self.max_body))
    }
}

fn not_configured(provider: &str) -> Refusal {
    Refusal::NotConfigured(format!(
        "no webhook for provider {:?} is configured ([webhooks.<provider>])",
        evidence::one_line(provider)
            .chars()
            .take(40)
            .collect::<String>()
    ))
}

/// The seconds since the Unix epoch now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a timestamp (seconds since the epoch) is within [`MAX_SKEW_SECS`] of now.
pub(crate) fn fresh(timestamp: u64) -> bool {
    now_secs().abs_diff(timestamp) <= MAX_SKEW_SECS
}

/// `POST /webhooks/{provider}`, to merge into the server's router.
pub fn router(hooks: Arc<Webhooks>) -> Router {
    Router::new()
        .route("/webhooks/{provider}", post(receive))
        .with_state(hooks)
}

async fn receive(
    State(hooks): State<Arc<Webhooks>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A provider not configured is 404 before its body is read.
    let result = if !hooks.providers().contains(&provider.as_str()) {
        Err(not_configured(&provider))
    } else {
        match hooks.read_body(body).await {
            Ok(body) => hooks.receive(&provider, &headers, &body).await,
            Err(e) => Err(e),
        }
    };
    // Only configured providers get a label of their own (bounded cardinality).
    let label = if hooks.providers().contains(&provider.as_str()) {
        provider.as_str()
    } else {
        "other"
    };
    match result {
        Ok(received) => {
            let result = if received.subscription.is_some() {
                "subscription"
            } else if received.recorded > 0 {
                "recorded"
            } else if received.duplicates > 0 {
                "duplicate"
            } else {
                "ignored"
            };
            metrics::inc(
                metrics::WEBHOOK_REQUESTS,
                &[("provider", label), ("result", result)],
            );
            (StatusCode::OK, axum::Json(received)).into_response()
        }
        Err(refusal) => {
            metrics::inc(
                metrics::WEBHOOK_REQUESTS,
                &[("provider", label), ("result", refusal.result())],
            );
            if matches!(refusal, Refusal::Unauthenticated(_) | Refusal::Forbidden(_)) {
                tracing::warn!(provider = label, "webhook refused: {}", refusal.message());
            }
            let mut response = (
                refusal.status(),
                axum::Json(json!({ "error": refusal.message() })),
            )
                .into_response();
            if matches!(refusal, Refusal::Unauthenticated(_)) && provider == "postmark" {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"rebound webhooks\""),
                );
            }
            response
        }
    }
}
