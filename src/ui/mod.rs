//! The web dashboard at `/ui`, served by `rebound serve` on the API's router: pages
//! rendered on the server (HTML, SVG charts), a little plain JavaScript, no build step.
//!
//! Login: `POST /ui/login` with the API's token sets a `rebound_session` cookie
//! (`HttpOnly; SameSite=Strict; Path=/ui`, `Secure` behind https). Its value is a random
//! session id that this process keeps in memory (its SHA-256) with an expiry, never the
//! token; `POST /ui/logout` forgets it. Without a token configured the dashboard is open,
//! like the API (loopback only). Every state change is a POST: `SameSite=Strict` keeps the
//! cookie off other sites' requests and the API's Origin check refuses them anyway.

mod campaigns;
mod chart;
mod overview;
pub mod page;
mod policies;
mod recipients;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::api::{ApiError, AppState};
use page::{Nav, html_escape};

/// The session cookie's name.
pub const COOKIE: &str = "rebound_session";
/// How long a login lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// What the dashboard's handlers share: the API's state and the sessions.
pub(crate) struct Ui {
    app: Arc<AppState>,
    sessions: Sessions,
}

/// The logged-in sessions of this process: SHA-256 of each id → its expiry. A restart
/// (or another host of a shared store) asks for a new login.
#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<[u8; 32], Instant>>);

impl Sessions {
    /// A new session; its id (64 hex digits from the OS's random source) for the cookie.
    pub(crate) fn create(&self) -> String {
        let id: [u8; 32] = rand::random();
        let id = hex::encode(id);
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, expiry| *expiry > now);
        map.insert(Sha256::digest(id.as_bytes()).into(), now + SESSION_TTL);
        id
    }

    /// Whether `id` is a live session. Only hashes are kept and looked up, so the
    /// lookup's timing says nothing about the ids.
    pub(crate) fn valid(&self, id: &str) -> bool {
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&key).is_some_and(|expiry| *expiry > Instant::now())
    }

    /// Ends a session.
    pub(crate) fn remove(&self, id: &str) {
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }
}

/// The value of the session cookie in a request's `Cookie` headers.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// The `Set-Cookie` value for a session id (an empty id with `Max-Age=0` clears it).
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    let age = if id.is_empty() {
        0
    } else {
        SESSION_TTL.as_secs()
    };
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={age}{}",
        if secure { "; Secure" } else { "" }
    )
}

impl Ui {
    /// No token configured: the dashboard is open like the API.
    fn open(&self) -> bool {
        self.app.open()
    }

    fn logged_in(&self, headers: &HeaderMap) -> bool {
        self.open() || session_cookie(headers).is_some_and(|id| self.sessions.valid(id))
    }

    /// `Secure` on the cookie: configured (`public_url` is https) or the request came
    /// through an https proxy.
    fn secure(&self, headers: &HeaderMap) -> bool {
        self.app.secure_cookies
            || headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"))
    }
}

/// The dashboard's routes, for [`crate::api::router`] to merge.
pub fn router(app: Arc<AppState>) -> Router<Arc<AppState>> {
    let ui = Arc::new(Ui {
        app,
        sessions: Sessions::default(),
    });
    let pages = Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/overview", get(overview::page))
        .route("/ui/recipients", get(recipients::list))
        .route("/ui/recipients/{address}", get(recipients::show))
        .route(
            "/ui/recipients/{address}/reactivate",
            post(recipients::reactivate),
        )
        .route("/ui/events/{id}/raw", get(recipients::raw))
        .route("/ui/policies", get(policies::list))
        .route("/ui/policies/{name}/upload", post(policies::upload))
        .route("/ui/policies/{name}/rollback", post(policies::rollback))
        .route("/ui/policies/{name}/up", post(policies::move_up))
        .route("/ui/policies/{name}/dry-run", post(policies::dry_run))
        .route("/ui/campaigns", get(campaigns::list))
        .route("/ui/campaigns/{id}/pause", post(campaigns::pause))
        .route("/ui/campaigns/{id}/resume", post(campaigns::resume))
        .route("/ui/campaigns/events", get(campaigns::events))
        .route("/ui/logout", post(logout))
        .route_layer(middleware::from_fn_with_state(ui.clone(), require_session));
    Router::new()
        .route("/ui/login", get(login_form).post(login))
        .route(
            "/ui/static/style.css",
            get(|| async { static_file("text/css; charset=utf-8", page::STYLE) }),
        )
        .route(
            "/ui/static/app.js",
            get(|| async { static_file("text/javascript; charset=utf-8", page::SCRIPT) }),
        )
        .merge(pages)
        .with_state(ui)
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// Every page but the login form: without a live session, 303 to `/ui/login`.
async fn require_session(State(ui): State<Arc<Ui>>, request: Request, next: Next) -> Response {
    if ui.logged_in(request.headers()) {
        next.run(request).await
    } else {
        Redirect::to("/ui/login").into_response()
    }
}

async fn login_form(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    if ui.logged_in(&headers) {
        return Redirect::to("/ui").into_response();
    }
    login_page(StatusCode::OK, None)
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let error = error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" id=\"login-error\">{}</p>",
            html_escape(e)
        )
    });
    let mut response = page::page(
        "Log in",
        Nav::None,
        false,
        &format!(
            "{error}<form method=\"post\" action=\"/ui/login\" class=\"login\">\
             <label>API token <input type=\"password\" name=\"token\" id=\"token\" \
             autocomplete=\"current-password\" required autofocus></label>\
             <button type=\"submit\" id=\"login\">Log in</button></form>\
             <p class=\"hint\">The token of the admin API (the variable <code>[api] token_env</code> \
             names).</p>"
        ),
    );
    *response.status_mut() = status;
    response
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    // The API's own check: the same token, compared in constant time.
    if !ui.app.token_is(&form.token) {
        tracing::warn!("dashboard: a login with a wrong token");
        return login_page(StatusCode::UNAUTHORIZED, Some("That is not the token."));
    }
    let id = ui.sessions.create();
    let mut response = Redirect::to("/ui").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie(&id, ui.secure(&headers))) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Response {
    if let Some(id) = session_cookie(&headers) {
        ui.sessions.remove(id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    if let Ok(v) = HeaderValue::from_str(&set_cookie("", ui.secure(&headers))) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// What the page handlers return: a page, or an error page.
pub(crate) type PageResult = Result<Response, UiError>;

/// An error shown as an HTML page.
pub(crate) struct UiError(StatusCode, String);

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        page::error_page(self.0, &self.1)
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> UiError {
        UiError(e.0, e.1)
    }
}

impl From<crate::store::Error> for UiError {
    fn from(e: crate::store::Error) -> UiError {
        ApiError::from(e).into()
    }
}

impl From<crate::api::registry::Error> for UiError {
    fn from(e: crate::api::registry::Error) -> UiError {
        ApiError::from(e).into()
    }
}

impl UiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError(status, message.into())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sessions_are_random_ids_not_the_token() {
        let s = Sessions::default();
        let a = s.create();
        let b = s.create();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(s.valid(&a) && s.valid(&b));
        assert!(!s.valid("0000"));
        assert!(!s.valid(""));
        s.remove(&a);
        assert!(!s.valid(&a) && s.valid(&b));
    }

    #[test]
    fn expired_sessions_are_refused() {
        let s = Sessions::default();
        let id = s.create();
        let key: [u8; 32] = Sha256::digest(id.as_bytes()).into();
        s.0.lock().unwrap().insert(key, Instant::now());
        assert!(!s.valid(&id));
    }

    #[test]
    fn the_cookie_is_read_among_others_and_set_strictly() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            "a=1; rebound_session=abc ; b=2".parse().unwrap(),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        let mut other = HeaderMap::new();
        other.append(header::COOKIE, "rebound_sessionx=abc".parse().unwrap());
        assert_eq!(session_cookie(&other), None);
        let c = set_cookie("abc", false);
        assert!(c.starts_with("rebound_session=abc; HttpOnly; SameSite=Strict; Path=/ui;"));
        assert!(!c.contains("Secure"));
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert!(set_cookie("", true).contains("Max-Age=0"));
    }
}
