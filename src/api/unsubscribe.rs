//! `GET` and `POST /u/{token}`: the one-click unsubscribe link of campaign messages
//! (RFC 8058), answered without the API token: the recipient has only the link.
//!
//! A `POST` with the body `List-Unsubscribe=One-Click` (what mail clients send for the
//! one-click button; the confirmation page's form sends it too) unsubscribes the
//! recipient. A `GET` only shows the confirmation page with its button and never
//! unsubscribes: mail scanners and link previews fetch every link. A token that does not
//! check out gets 404 and changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::unsubscribe::{self, Outcome, Target};

/// `GET /u/{token}`.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
) -> Response {
    let Some(signer) = &state.unsubscribe else {
        return not_found();
    };
    match unsubscribe::resolve(&state.store, signer, &token).await {
        Ok(Some(target)) => html(
            StatusCode::OK,
            "Unsubscribe",
            &format!(
                "<p>Stop receiving {} at {}?</p>\n\
                 <form method=\"post\">\
                 <input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\
                 <input type=\"hidden\" name=\"via\" value=\"page\">\
                 <button type=\"submit\">Unsubscribe</button></form>",
                campaign(&target),
                escape(&mask(&target.address)),
            ),
        ),
        Ok(None) => not_found(),
        Err(e) => failed(&e),
    }
}

/// `POST /u/{token}`.
pub(super) async fn post(
    State(state): State<Arc<AppState>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let Some(signer) = &state.unsubscribe else {
        return not_found();
    };
    let fields = form_fields(&body);
    let one_click = fields
        .iter()
        .any(|(k, v)| k == "List-Unsubscribe" && v.eq_ignore_ascii_case("One-Click"));
    if !one_click {
        return html(
            StatusCode::BAD_REQUEST,
            "Not unsubscribed",
            "<p>The request did not say <code>List-Unsubscribe=One-Click</code>: nothing changed.</p>",
        );
    }
    let source = if fields.iter().any(|(k, v)| k == "via" && v == "page") {
        "page"
    } else {
        "one-click"
    };
    match unsubscribe::apply(&state.store, signer, &token, source).await {
        Ok(Some(Outcome::Recorded(target, _) | Outcome::Already(target))) => html(
            StatusCode::OK,
            "Unsubscribed",
            &format!(
                "<p>{} will receive no more {}.</p>",
                escape(&mask(&target.address)),
                campaign(&target)
            ),
        ),
        Ok(None) => not_found(),
        Err(e) => failed(&e),
    }
}

/// The pairs of an `application/x-www-form-urlencoded` body (RFC 8058's; `+` and
/// `%XX` decoded). Other bodies (a multipart form) are read for the same pairs loosely:
/// a part named `List-Unsubscribe` whose value is `One-Click`.
fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    if text.contains("name=\"List-Unsubscribe\"") {
        let value = text
            .split("name=\"List-Unsubscribe\"")
            .nth(1)
            .and_then(|rest| rest.split("\r\n\r\n").nth(1))
            .and_then(|v| v.lines().next())
            .unwrap_or_default();
        return vec![("List-Unsubscribe".into(), value.trim().to_owned())];
    }
    text.trim()
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(b) => {
                    out.push(b);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `jane.doe@example.org` → `j•••@example.org`: the page names whose link it is without
/// showing a forwarded message's reader the whole address.
fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first = local.chars().next().map(String::from).unwrap_or_default();
            format!("{first}•••@{domain}")
        }
        None => "•••".into(),
    }
}

fn campaign(target: &Target) -> String {
    if target.campaign_name.is_empty() {
        "these messages".into()
    } else {
        format!("“{}”", escape(&target.campaign_name))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\n\
         <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">\
         <h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Link not valid",
        "<p>This unsubscribe link is not valid: nothing changed.</p>",
    )
}

fn failed(e: &crate::store::Error) -> Response {
    tracing::error!("unsubscribe: store: {e}");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "<p>The request could not be recorded just now: nothing changed. Please try again later.</p>",
    )
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn form_bodies_are_read() {
        let f = form_fields(b"List-Unsubscribe=One-Click");
        assert_eq!(f, [("List-Unsubscribe".into(), "One-Click".into())]);
        let f = form_fields(b"List-Unsubscribe=One-Click&via=page\r\n");
        assert_eq!(f.len(), 2);
        assert_eq!(
            form_fields(b"List%2DUnsubscribe=One%2dClick")[0].0,
            "List-Unsubscribe"
        );
        assert_eq!(form_fields(b"a=b+c%")[0].1, "b c%");
        let multipart = b"--x\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--x--\r\n";
        assert_eq!(form_fields(multipart)[0].1, "One-Click");
        assert!(form_fields(b"").is_empty());
    }

    #[test]
    fn pages_escape_and_mask() {
        assert_eq!(mask("jane.doe@example.org"), "j•••@example.org");
        assert_eq!(
            escape("<a href=\"x\">&"),
            "&lt;a href=&quot;x&quot;&gt;&amp;"
        );
    }
}
