//! The admin HTTP API of `rebound serve` (axum): uploaded policy modules, classification
//! on demand, recipients and campaigns, `/metrics` and `/healthz`.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <token>`; the token comes from
//! the environment and is compared in constant time. Every route checks `Host` (a
//! loopback name or address, the listen address or `[api] allowed_hosts`: 421 otherwise,
//! against DNS rebinding) and refuses a cross-site browser request (an `Origin` that is
//! not the `Host`'s, `Sec-Fetch-Site: cross-site`: 403); JSON bodies must say
//! `Content-Type: application/json` (415), so a web page's form cannot post them. Errors are JSON:
//! `{"error": "…"}` with a fitting status code. The routes are described in
//! `docs/openapi.json` (served at `GET /openapi.json`). The web dashboard ([`crate::ui`],
//! `/ui`) is merged in with its own login (a session cookie) behind the same Host/Origin check.

pub mod registry;
mod unsubscribe;

use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;

use crate::classify::Record;
use crate::detector;
use crate::metrics;
use crate::store::campaigns::NewCampaign;
use crate::store::{self, EventFilter, RecipientState, Store};
use registry::PolicyRegistry;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

/// What the handlers share.
pub struct AppState {
    /// The store.
    pub store: Store,
    /// The live policy chain and its uploads.
    pub policies: PolicyRegistry,
    /// SHA-256 of the bearer token; `None` means no authentication (loopback only).
    token_hash: Option<[u8; 32]>,
    /// Wakes the campaign runner when a campaign is created.
    pub campaign_added: Arc<Notify>,
    /// Checks the one-click unsubscribe links (the VERP secret of `[smtp]`); without it
    /// `/u/{token}` is 404.
    unsubscribe: Option<crate::verp::Signer>,
    /// `[rules]`, for the dry runs over the archive.
    rules: crate::config::RulesConfig,
    /// The dashboard's session cookie gets `Secure` (`[api] public_url` is https).
    pub(crate) secure_cookies: bool,
    /// Turns true when the server shuts down: ends the dashboard's event streams, which
    /// would otherwise hold the graceful shutdown open.
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// State for the router.
    pub fn new(
        store: Store,
        policies: PolicyRegistry,
        token: Option<&str>,
        campaign_added: Arc<Notify>,
    ) -> AppState {
        AppState {
            store,
            policies,
            token_hash: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            campaign_added,
            unsubscribe: None,
            rules: crate::config::RulesConfig::default(),
            secure_cookies: false,
            stopping: tokio::sync::watch::channel(false).1,
        }
    }

    /// Marks the dashboard's session cookie `Secure` (when it is reached over https).
    pub fn with_secure_cookies(mut self, secure: bool) -> AppState {
        self.secure_cookies = secure;
        self
    }

    /// The shutdown signal, which ends the dashboard's event streams.
    pub fn with_stop(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> AppState {
        self.stopping = stopping;
        self
    }

    /// The `[rules]` a dry run over the archive judges recipient states by.
    pub fn with_rules(mut self, rules: crate::config::RulesConfig) -> AppState {
        self.rules = rules;
        self
    }

    /// Answers `/u/{token}`, checking tokens with the campaigns' signer.
    pub fn with_unsubscribe(mut self, signer: crate::verp::Signer) -> AppState {
        self.unsubscribe = Some(signer);
        self
    }

    /// Whether an `Authorization` header value (`Bearer <token>`) carries the token.
    fn authorised(&self, header: Option<&str>) -> bool {
        match header.and_then(|h| h.strip_prefix("Bearer ")) {
            Some(token) => self.token_is(token),
            None => self.token_hash.is_none(),
        }
    }

    /// Whether `token` is the API's (any is, with none configured). Compares hashes so
    /// the comparison takes the same time whatever the token's length.
    pub(crate) fn token_is(&self, token: &str) -> bool {
        let Some(expected) = &self.token_hash else {
            return true;
        };
        let given: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        bool::from(given.ct_eq(expected))
    }

    /// No token is configured: every request is let in (loopback only).
    pub(crate) fn open(&self) -> bool {
        self.token_hash.is_none()
    }
}

/// An API error: a status and a message, rendered as JSON.
#[derive(Debug)]
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<registry::Error> for ApiError {
    fn from(e: registry::Error) -> ApiError {
        use registry::Error as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::NoPrevious(_) => StatusCode::CONFLICT,
            E::InvalidName(_) | E::BadOrder(_) => StatusCode::BAD_REQUEST,
            E::Policy(crate::policy::Error::Engine(_))
            | E::Io { .. }
            | E::PolicyFile { .. }
            | E::Store(_)
            | E::Manifest { .. } => {
                tracing::error!("{e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
            E::Policy(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        tracing::error!("store: {e}");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store: {e}"))
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The `Host` values the API answers to. A browser puts the name it resolved in `Host`,
/// so a page whose name was rebound to 127.0.0.1 still says its own name and is refused;
/// names are therefore allowed only by configuration, while any port goes.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// The listen address; `None` (0.0.0.0, ::) allows every IP address literal, which
    /// no rebinding page can send.
    listen: Option<IpAddr>,
    /// `[api] allowed_hosts`, lower-cased, without a port.
    names: Vec<String>,
}

impl HostPolicy {
    /// Loopback, `listen` and the given names (each a name or an address, a port is
    /// ignored).
    ///
    /// # Errors
    /// An entry that is not a host name or address.
    pub fn new(listen: IpAddr, allowed: &[String]) -> Result<HostPolicy, String> {
        let mut names = Vec::with_capacity(allowed.len());
        for entry in allowed {
            let host = host_of(entry.trim())
                .filter(|h| {
                    !h.is_empty()
                        && h.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
                })
                .ok_or_else(|| format!("[api] allowed_hosts: {entry:?} is not a host name"))?;
            names.push(host.to_ascii_lowercase());
        }
        Ok(HostPolicy {
            listen: (!listen.is_unspecified()).then_some(listen),
            names,
        })
    }

    /// Whether a `Host` header value (name or address, maybe with a port) is allowed.
    pub fn allows(&self, authority: &str) -> bool {
        let Some(host) = host_of(authority) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        if host == "localhost" || host.ends_with(".localhost") {
            return true;
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            let ip = ip.to_canonical();
            if ip.is_loopback() || self.listen.is_none_or(|l| l.to_canonical() == ip) {
                return true;
            }
        }
        self.names.contains(&host)
    }
}

/// The host of an authority (`name`, `name:port`, `1.2.3.4:80`, `[::1]:80`), brackets
/// off; `None` when it is malformed.
fn host_of(authority: &str) -> Option<&str> {
    let port_ok = |p: &str| p.is_empty() || p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':').unwrap_or(after);
        return (after.is_empty() || (after.starts_with(':') && port_ok(port))).then_some(host);
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, _)) if host.contains(':') => Some(authority),
        Some((host, port)) => port_ok(port).then_some(host),
        None => Some(authority),
    }
}

/// Refuses what a browser sends on a web page's behalf: a `Host` that is not ours (DNS
/// rebinding: 421) and a cross-site request (`Origin` other than the `Host`'s own, or
/// `Sec-Fetch-Site: cross-site`/`same-site`: 403). Clients that are not browsers (curl, scripts)
/// send the right `Host` and no `Origin`.
async fn check_host_and_origin(
    State(hosts): State<Arc<HostPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    match refusal(&hosts, &request) {
        Some(error) => error.into_response(),
        None => next.run(request).await,
    }
}

fn refusal(hosts: &HostPolicy, request: &Request) -> Option<ApiError> {
    let headers = request.headers();
    let host = match headers.get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => request.uri().authority().map(|a| a.as_str()),
    };
    let Some(host) = host.filter(|h| hosts.allows(h)) else {
        let shown = headers
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
        return Some(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            match shown {
                Some(h) => format!(
                    "Host {h:?} is not this server's: use a loopback address, the listen \
                     address or a name in [api] allowed_hosts"
                ),
                None => "the request has no Host header".to_owned(),
            },
        ));
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = String::from_utf8_lossy(origin.as_bytes());
        let authority = origin
            .split_once("://")
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if !authority.is_some_and(|a| a.eq_ignore_ascii_case(host)) {
            return Some(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin {origin:?} does not match Host {host:?}: cross-site requests \
                     are refused"
                ),
            ));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && matches!(site.as_bytes(), b"cross-site" | b"same-site")
    {
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "Sec-Fetch-Site {:?}: cross-site requests are refused",
                String::from_utf8_lossy(site.as_bytes())
            ),
        ));
    }
    None
}

/// The router with every route, its auth, its Host/Origin check and its upload cap.
pub fn router(state: Arc<AppState>, max_upload: usize, hosts: HostPolicy) -> Router {
    let authed = Router::new()
        .route("/metrics", get(get_metrics))
        .route(
            "/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .route("/policies", get(list_policies))
        .route("/policies/{name}", put(put_policy).delete(delete_policy))
        .route("/policies/{name}/rollback", post(rollback_policy))
        .route("/policies/{name}/test", post(test_policy))
        .route("/chain", get(list_policies).put(put_chain_order))
        .route("/classify", post(post_classify))
        .route("/recipients", get(list_recipients))
        .route("/events", get(list_events))
        .route("/events/{id}/raw", get(event_raw))
        .route("/recipients/import", post(import_recipients))
        .route("/recipients/export", get(export_recipients))
        .route("/recipients/{address}", get(get_recipient))
        .route(
            "/recipients/{address}/reactivate",
            post(reactivate_recipient),
        )
        .route("/campaigns", get(list_campaigns).post(post_campaign))
        .route("/campaigns/{id}", get(get_campaign))
        .route("/campaigns/{id}/pause", post(pause_campaign))
        .route("/campaigns/{id}/resume", post(resume_campaign))
        .route("/quarantine", get(list_quarantine).post(release_quarantine))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/u/{token}", get(unsubscribe::page).post(unsubscribe::post))
        .merge(authed)
        // The dashboard: its own login (a session cookie), behind the same Host/Origin check.
        .merge(crate::ui::router(state.clone()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn(move |request, next| {
            json_errors(max_upload, request, next)
        }))
        .layer(middleware::from_fn_with_state(
            Arc::new(hosts),
            check_host_and_origin,
        ))
        .layer(middleware::from_fn(count_requests))
        .layer(DefaultBodyLimit::max(max_upload))
        .with_state(state)
}

/// Turns axum's own plain-text (or empty) error responses — a body over the upload cap,
/// a wrong method, a malformed path or query — into the API's JSON error shape, keeping
/// their status and headers (`Allow`, …).
async fn json_errors(max_upload: usize, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    // The unsubscribe pages' errors are pages of their own, for a person's browser.
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        format!("the body is larger than the upload limit of {max_upload} bytes ([api] max_upload)")
    } else {
        // axum's rejection texts are short; anything longer is cut, not buffered whole.
        let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_lowercase()
        } else {
            text
        }
    };
    let json = ApiError::new(status, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, json.into_body())
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    if state.authorised(header) {
        next.run(request).await
    } else {
        let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::inc(
        metrics::HTTP_REQUESTS,
        &[("route", &route), ("status", response.status().as_str())],
    );
    response
}

/// How long a finished campaign keeps its gauges in `/metrics`.
const RECENT_CAMPAIGNS: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

async fn get_metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let mut text = metrics::render();
    match state.store.complaint_gauges(RECENT_CAMPAIGNS).await {
        Ok(gauges) => text.push_str(&metrics::render_campaign_gauges(&gauges)),
        // The counters are still worth a scrape.
        Err(e) => tracing::warn!("/metrics: reading the campaign gauges failed: {e}"),
    }
    if state.store.notifies() {
        match state.store.outbox_status().await {
            Ok(status) => text.push_str(&metrics::render_outbox_gauges(&status)),
            Err(e) => tracing::warn!("/metrics: reading the outbox failed: {e}"),
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

async fn list_policies(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    Json(state.policies.list().await)
}

async fn put_policy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let info = state.policies.put(&name, body.to_vec()).await?;
    tracing::info!(policy = %name, digest = %info.stats.digest, version = info.version, "policy uploaded");
    Ok((StatusCode::CREATED, Json(info)).into_response())
}

async fn delete_policy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    state.policies.remove(&name).await?;
    tracing::info!(policy = %name, "policy removed");
    Ok(StatusCode::NO_CONTENT)
}

async fn rollback_policy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let info = state.policies.rollback(&name).await?;
    tracing::info!(policy = %name, version = info.version, "policy rolled back");
    Ok(Json(info).into_response())
}

#[derive(Deserialize)]
struct ChainOrder {
    order: Vec<String>,
}

/// Parses a JSON body, which must say `Content-Type: application/json`: the types a web
/// page's form can post without the browser asking first (text/plain, …) are refused
/// (415), so a page the operator opens cannot drive the API.
fn json_body<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> ApiResult<T> {
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let essence = given
        .as_deref()
        .map(|t| t.split(';').next().unwrap_or_default().trim());
    if !essence.is_some_and(|t| t.eq_ignore_ascii_case("application/json")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            match given {
                Some(t) => format!("the body must be Content-Type: application/json, not {t:?}"),
                None => "the body must be Content-Type: application/json (none given)".to_owned(),
            },
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")))
}

async fn put_chain_order(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let body: ChainOrder = json_body(&headers, &body)?;
    Ok(Json(state.policies.reorder(&body.order).await?).into_response())
}

/// What one message gave: the built-in verdict, the chain's, and each module's step.
struct Classified {
    builtin: Record,
    record: Record,
    steps: Vec<serde_json::Value>,
}

/// Runs detection and a chain on a blocking thread (guests burn CPU; a policy's state is
/// read from the store, and what it writes is dropped: nothing is recorded).
async fn classify_with(
    store: &crate::store::Store,
    chain: Arc<crate::policy::PolicyChain>,
    raw: Bytes,
) -> ApiResult<Classified> {
    let policy_state = crate::pipeline::state_of(store);
    tokio::task::spawn_blocking(move || {
        let detection = detector::detect(&raw);
        let (verdict, steps, error) = match chain.run_with(&raw, &detection, &policy_state) {
            Ok(run) => {
                let steps = run
                    .steps
                    .iter()
                    .map(|s| json!({ "policy": s.module, "outcome": outcome_name(&s.outcome) }))
                    .collect();
                (run.verdict, steps, None)
            }
            Err(e) => (detection.verdict.clone(), Vec::new(), Some(e.to_string())),
        };
        metrics::count_verdict(&verdict);
        let builtin = Record::new("request", &detection, detection.verdict.clone());
        let mut record = Record::new("request", &detection, verdict);
        record.error = record.error.or(error);
        Classified {
            builtin,
            record,
            steps,
        }
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("classify task failed: {e}"),
        )
    })
}

fn outcome_name(outcome: &crate::policy::Outcome) -> String {
    use crate::policy::Outcome;
    match outcome {
        Outcome::Kept => "keep".into(),
        Outcome::Replaced(_) => "replace".into(),
        Outcome::NotBounce(_) => "not-bounce".into(),
        Outcome::Failed(f) => format!("failed: {f}"),
        Outcome::Disabled => "disabled".into(),
    }
}

async fn post_classify(State(state): State<Arc<AppState>>, body: Bytes) -> ApiResult<Json<Record>> {
    Ok(Json(
        classify_with(&state.store, state.policies.chain(), body)
            .await?
            .record,
    ))
}

/// The built-in verdict next to the verdict of this one policy.
#[derive(Deserialize)]
struct PolicyTestQuery {
    /// `30d`: a dry run over the messages archived within that long instead of the body.
    history: Option<String>,
}

/// The module of the live chain named `name` (404 when there is none).
pub(crate) fn chain_module(
    state: &AppState,
    name: &str,
) -> ApiResult<Arc<crate::policy::PolicyModule>> {
    state
        .policies
        .chain()
        .modules()
        .iter()
        .find(|m| m.name() == name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no policy named {name:?}")))
}

/// A dry run of `module` alone over the messages archived within `history` (`30d`):
/// what `POST /policies/{name}/test?history=` and the dashboard show.
pub(crate) async fn dry_run_module(
    state: &AppState,
    module: Arc<crate::policy::PolicyModule>,
    history: &str,
) -> ApiResult<crate::reprocess::Report> {
    let period = crate::config::parse_duration(history)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("history: {e}")))?;
    let since = crate::store::Timestamp(
        crate::store::Timestamp::now().0
            - i64::try_from(period.as_millis()).unwrap_or(i64::MAX / 2),
    );
    let (store, rules) = (state.store.clone(), state.rules.clone());
    let alone = Arc::new(crate::policy::PolicyChain::new(vec![module]));
    // The chain runs on this thread for every archived message: not on the runtime's.
    let handle = tokio::runtime::Handle::current();
    Ok(tokio::task::spawn_blocking(move || {
        handle.block_on(crate::reprocess::dry_run(&store, &alone, &rules, since))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??)
}

async fn test_policy(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<PolicyTestQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let module = chain_module(&state, &name)?;
    if let Some(history) = query.history {
        let report = dry_run_module(&state, module, &history).await?;
        return Ok(Json(report).into_response());
    }
    let Classified {
        builtin,
        record,
        steps,
    } = classify_with(
        &state.store,
        Arc::new(crate::policy::PolicyChain::new(vec![module])),
        body,
    )
    .await?;
    let changed =
        builtin.message_kind != record.message_kind || builtin.recipients != record.recipients;
    Ok(
        Json(json!({ "builtin": builtin, "policy": record, "changed": changed, "steps": steps }))
            .into_response(),
    )
}

/// Rows per page of `GET /recipients` and `GET /events` unless `limit` says otherwise.
pub const DEFAULT_PAGE: u32 = 100;
/// The largest `limit` a listing takes.
pub const MAX_PAGE: u32 = 1000;

/// `limit` of a listing: [`DEFAULT_PAGE`] when absent, 1 to [`MAX_PAGE`].
fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n @ 1..=MAX_PAGE) => Ok(n),
        Some(n) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("limit {n}: give 1 to {MAX_PAGE}"),
        )),
    }
}

#[derive(Deserialize)]
struct RecipientQuery {
    state: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /recipients`: a page by address key, `next` the cursor of the next page (`after`).
async fn list_recipients(
    State(state): State<Arc<AppState>>,
    Query(q): Query<RecipientQuery>,
) -> ApiResult<Response> {
    let filter = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            RecipientState::from_str(s)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
    };
    let limit = page_limit(q.limit)?;
    let page = state
        .store
        .recipients_page(filter, q.after.as_deref().filter(|a| !a.is_empty()), limit)
        .await?;
    Ok(Json(json!({ "recipients": page.items, "next": page.next })).into_response())
}

#[derive(Deserialize)]
struct EventQuery {
    recipient: Option<String>,
    kind: Option<String>,
    mailbox: Option<String>,
    campaign: Option<i64>,
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /events`: a page by id (oldest first), each filter narrowing it.
async fn list_events(
    State(state): State<Arc<AppState>>,
    Query(q): Query<EventQuery>,
) -> ApiResult<Response> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let kind = match q.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(
            k.parse::<store::EventKind>()
                .map_err(|e| bad(e.to_string()))?,
        ),
    };
    let after = event_cursor(q.after.as_deref(), "GET /events")?;
    let limit = page_limit(q.limit)?;
    let filter = EventFilter {
        recipient: q.recipient.filter(|r| !r.is_empty()),
        kind,
        mailbox: q.mailbox.filter(|m| !m.is_empty()),
        campaign_id: q.campaign,
        after,
        ..EventFilter::default()
    };
    let page = state.store.events_page(&filter, limit).await?;
    Ok(Json(json!({
        "events": page.items,
        "next": page.next.map(|id| id.to_string()),
    }))
    .into_response())
}

/// `after` of an events page: the `next` (an event id) of the page before.
fn event_cursor(after: Option<&str>, route: &str) -> ApiResult<Option<i64>> {
    match after {
        None | Some("") => Ok(None),
        Some(a) => a.parse::<i64>().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("after {a:?}: not a cursor of {route}"),
            )
        }),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /recipients/{address}`: the recipient and a page of its events by id (oldest
/// first), `next` the cursor of the next page (`after`), as `GET /events`.
async fn get_recipient(
    State(state): State<Arc<AppState>>,
    Path(address): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Response> {
    let after = event_cursor(q.after.as_deref(), "GET /recipients/{address}")?;
    let limit = page_limit(q.limit)?;
    let recipient =
        state.store.recipient(&address).await?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no recipient {address:?}"))
        })?;
    let page = state
        .store
        .events_page(
            &EventFilter {
                recipient: Some(recipient.address.clone()),
                after,
                ..EventFilter::default()
            },
            limit,
        )
        .await?;
    let superseded = state.store.superseded_of(&recipient.address).await?;
    Ok(Json(json!({
        "recipient": recipient,
        "events": page.items,
        "next": page.next.map(|id| id.to_string()),
        "superseded": superseded,
    }))
    .into_response())
}

/// `POST /recipients/{address}/reactivate`: a suppressed recipient becomes active again
/// (a `reactivation` event with source `api`); 404 for an unknown recipient, 409 for one
/// that is active already.
async fn reactivate_recipient(
    State(state): State<Arc<AppState>>,
    Path(address): Path<String>,
) -> ApiResult<Response> {
    match state.store.reactivate(&address, "api").await? {
        Ok(change) => {
            let recipient = state.store.recipient(&change.address).await?;
            Ok(Json(json!({
                "recipient": recipient,
                "previous_state": change.from,
                "state": change.to,
            }))
            .into_response())
        }
        Err(store::Refusal::NotFound) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no recipient {address:?}"),
        )),
        Err(store::Refusal::AlreadyActive) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("recipient {address:?} is already active"),
        )),
    }
}

/// `POST /recipients/import`: a CSV subscriber list (as `rebound recipients import`); the
/// counts, and the rows left out with their lines.
async fn import_recipients(State(state): State<Arc<AppState>>, body: Bytes) -> ApiResult<Response> {
    let (subscribers, left_out) = crate::subscribers::parse_csv(&body);
    let imported = state.store.import_subscribers(&subscribers).await?;
    Ok(Json(json!({
        "subscribers": subscribers.len(),
        "imported": imported,
        "left_out": left_out,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    suppressed: bool,
    format: Option<String>,
}

/// `GET /recipients/export?suppressed=true&format=csv|json`: every recipient, or the
/// suppressed ones, for the tool that owns the list.
async fn export_recipients(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ExportQuery>,
) -> ApiResult<Response> {
    let list = crate::subscribers::export(&state.store, q.suppressed).await?;
    match q.format.as_deref() {
        None | Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            crate::subscribers::to_csv(&list),
        )
            .into_response()),
        Some("json") => Ok(Json(list).into_response()),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("format {other:?}: use csv or json"),
        )),
    }
}

/// `POST /campaigns`: a campaign with its recipients listed inline.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CampaignRequest {
    name: String,
    from: String,
    subject: String,
    text: Option<String>,
    html: Option<String>,
    recipients: Vec<String>,
}

async fn post_campaign(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: CampaignRequest = json_body(&headers, &body)?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    if req.name.trim().is_empty() {
        return Err(bad("the name is empty".into()));
    }
    if req.text.is_none() && req.html.is_none() {
        return Err(bad("no body: set text or html".into()));
    }
    lettre::message::Mailbox::from_str(&req.from)
        .map_err(|e| bad(format!("from {:?}: {e}", req.from)))?;
    if let Some(a) = req
        .recipients
        .iter()
        .find(|a| lettre::Address::from_str(a).is_err())
    {
        return Err(bad(format!("invalid recipient address {a:?}")));
    }
    if state.store.campaign_by_name(&req.name).await?.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("a campaign named {:?} exists", req.name),
        ));
    }
    let new = NewCampaign {
        name: req.name,
        from: req.from,
        subject: req.subject,
        text: req.text,
        html: req.html,
    };
    let (campaign, queued) = state.store.create_campaign(&new, &req.recipients).await?;
    state.campaign_added.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(json!({ "campaign": campaign, "queued": queued })),
    )
        .into_response())
}

async fn list_campaigns(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    Ok(Json(state.store.campaign_counts().await?).into_response())
}

async fn get_campaign(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let counts = state.store.campaign_counts().await?;
    let c = counts
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no campaign {id}")))?;
    Ok(Json(c).into_response())
}

/// `GET /events/{id}/raw`: the archived message the event was recorded from
/// (`message/rfc822`), 404 when none is kept.
async fn event_raw(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> ApiResult<Response> {
    let raw = state.store.raw_of_event(id).await?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("event {id} has no archived message"),
        )
    })?;
    Ok(([(header::CONTENT_TYPE, "message/rfc822")], raw).into_response())
}

/// Pauses campaign `id` by hand (`by`: `api`, `ui`); `false` when it was paused already.
/// 404 for an unknown campaign.
pub(crate) async fn pause(state: &AppState, id: i64, by: &str) -> ApiResult<bool> {
    known_campaign(state, id).await?;
    Ok(state.store.pause_campaign(id, by).await?)
}

/// Ends campaign `id`'s pauses (by hand or the complaint-rate guard's, and its
/// destination domains') and wakes the runner: the reason it was paused for, the domains
/// resumed. 404 for an unknown campaign.
pub(crate) async fn resume(state: &AppState, id: i64) -> ApiResult<(Option<String>, Vec<String>)> {
    known_campaign(state, id).await?;
    let was_paused = state.store.resume_campaign_pause(id).await?;
    let domains = state.store.resume_paused(id, None).await?;
    state.campaign_added.notify_one();
    Ok((was_paused, domains))
}

async fn known_campaign(state: &AppState, id: i64) -> ApiResult<()> {
    match state.store.campaign(id).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no campaign {id}"),
        )),
    }
}

/// `POST /campaigns/{id}/pause`: pauses the campaign by hand (its sends are not claimed
/// until it is resumed); `paused` is false when it was paused already.
async fn pause_campaign(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let paused = pause(&state, id, "api").await?;
    Ok(Json(json!({ "campaign": id, "paused": paused })).into_response())
}

/// `POST /campaigns/{id}/resume`: ends the campaign's pauses (by hand or the
/// complaint-rate guard's, and its destination domains') and wakes the runner.
async fn resume_campaign(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
) -> ApiResult<Response> {
    let (was_paused, domains) = resume(&state, id).await?;
    Ok(
        Json(json!({ "campaign": id, "was_paused": was_paused, "domains_resumed": domains }))
            .into_response(),
    )
}

#[derive(Deserialize)]
struct QuarantineQuery {
    mailbox: Option<String>,
}

/// `GET /quarantine`: the quarantined messages (of every mailbox, or of `?mailbox=`).
async fn list_quarantine(
    State(state): State<Arc<AppState>>,
    Query(q): Query<QuarantineQuery>,
) -> ApiResult<Response> {
    let mailbox = q.mailbox.as_deref().filter(|m| !m.is_empty());
    Ok(Json(state.store.quarantined(mailbox).await?).into_response())
}

/// `POST /quarantine`: releases quarantined messages (`{"uids": […]}` or `{"all": true}`,
/// optionally of one `mailbox`); the next pass fetches them again.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseRequest {
    mailbox: Option<String>,
    #[serde(default)]
    uids: Vec<String>,
    #[serde(default)]
    all: bool,
}

async fn release_quarantine(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let req: ReleaseRequest = json_body(&headers, &body)?;
    if req.all != req.uids.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "give either \"uids\" (a non-empty list) or \"all\": true",
        ));
    }
    let uids: Vec<&str> = req.uids.iter().map(String::as_str).collect();
    let released = state
        .store
        .release_quarantined(
            req.mailbox.as_deref(),
            (!req.all).then_some(uids.as_slice()),
        )
        .await?;
    let not_quarantined: Vec<&str> = uids
        .iter()
        .copied()
        .filter(|u| !released.iter().any(|(_, r)| r == u))
        .collect();
    let released: Vec<serde_json::Value> = released
        .into_iter()
        .map(|(mailbox, uid)| json!({ "mailbox": mailbox, "uid": uid }))
        .collect();
    Ok(Json(json!({ "released": released, "not_quarantined": not_quarantined })).into_response())
}

#[cfg(test)]
mod test {
    use std::collections::BTreeSet;

    use super::*;

    /// `(path, method)` of every `.route(…)` in [`router`]'s source: axum cannot list a
    /// router's routes, so the source is read.
    fn routes_in_source() -> BTreeSet<(String, String)> {
        let src = include_str!("mod.rs");
        let start = src.find("pub fn router(").expect("the router function");
        let body = &src[start..];
        let body = &body[..body.find("\n}\n").expect("the router's end")];
        let mut out = BTreeSet::new();
        let mut rest = body;
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let open = rest.find('"').expect("a path literal");
            let close = open + 1 + rest[open + 1..].find('"').expect("its end");
            let path = &rest[open + 1..close];
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(j, _)| j)
                .expect("the route's closing parenthesis");
            let methods = &rest[close + 1..end];
            for method in ["get", "post", "put", "delete", "patch"] {
                for (k, _) in methods.match_indices(&format!("{method}(")) {
                    let before = methods[..k].trim_end();
                    if before.ends_with(',') || before.ends_with('.') {
                        out.insert((path.to_owned(), method.to_owned()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_in_openapi_and_back() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut documented = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                    documented.insert((path.clone(), method.clone()));
                }
            }
        }
        let routed = routes_in_source();
        assert!(routed.len() >= 17, "{routed:?}");
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(
            missing.is_empty(),
            "routes missing from docs/openapi.json: {missing:?}"
        );
        assert!(
            extra.is_empty(),
            "openapi.json paths with no route: {extra:?}"
        );
        // The errors every route can give are documented on each.
        for (path, method) in &documented {
            let responses = &spec["paths"][path][method]["responses"];
            for code in ["403", "421", "default"] {
                assert!(responses[code].is_object(), "{method} {path}: no {code}");
            }
        }
        for (path, method) in [("/chain", "put"), ("/campaigns", "post")] {
            assert!(spec["paths"][path][method]["responses"]["415"].is_object());
        }
    }

    #[test]
    fn host_policy_allows_loopback_the_listen_address_and_configured_names() {
        let hosts = HostPolicy::new(
            "127.0.0.1".parse().unwrap(),
            &["Rebound.Example.com".into(), "admin.test:8443".into()],
        )
        .unwrap();
        for ok in [
            "127.0.0.1:8025",
            "127.1.2.3",
            "localhost",
            "LOCALHOST:1",
            "api.localhost:8025",
            "[::1]:8025",
            "::1",
            "rebound.example.com:8025",
            "admin.test",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8025",
            "localhost.evil.example",
            "10.0.0.1:8025",
            "",
            "[::1",
            "a:b",
            "rebound.example.com.evil",
        ] {
            assert!(!hosts.allows(refused), "{refused}");
        }
        let any = HostPolicy::new("0.0.0.0".parse().unwrap(), &[]).unwrap();
        assert!(any.allows("10.0.0.1:8025") && any.allows("[2001:db8::1]:80"));
        assert!(!any.allows("evil.example"));
        let listen = HostPolicy::new("10.0.0.5".parse().unwrap(), &[]).unwrap();
        assert!(listen.allows("10.0.0.5:8025") && !listen.allows("10.0.0.6"));
        assert!(HostPolicy::new("127.0.0.1".parse().unwrap(), &["http://x/".into()]).is_err());
    }
}
