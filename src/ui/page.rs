//! The dashboard's layout and escaping: every page is one HTML string built here, every
//! interpolated string goes through [`html_escape`] (addresses, bounce texts and policy
//! names come from outside), every link part through [`url_part`].

use std::fmt::Write;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The stylesheet and the script, served from the binary (no build step, no CDN).
pub(crate) const STYLE: &str = include_str!("static/style.css");
/// See [`STYLE`].
pub(crate) const SCRIPT: &str = include_str!("static/app.js");

/// Only the dashboard's own files run or load: a string that escaped escaping still
/// could not run a script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// `s` safe inside HTML text and quoted attribute values (and SVG).
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` percent-encoded as one path segment or query value (everything but RFC 3986's
/// unreserved characters).
pub fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Which entry of the navigation is lit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Recipients,
    Policies,
    Campaigns,
    None,
}

/// A whole page: `body` is HTML already escaped by the caller. `logout`: show the
/// logout button (there is a session to end).
pub(crate) fn page(title: &str, nav: Nav, logout: bool, body: &str) -> Response {
    let mut html = String::with_capacity(body.len() + 1024);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — rebound</title><link rel=\"stylesheet\" href=\"/ui/static/style.css\">\
         <script src=\"/ui/static/app.js\" defer></script></head><body>",
        html_escape(title)
    );
    if nav != Nav::None {
        html.push_str("<header><nav><span class=\"brand\">rebound</span>");
        for (entry, href, label) in [
            (Nav::Overview, "/ui", "Overview"),
            (Nav::Recipients, "/ui/recipients", "Recipients"),
            (Nav::Policies, "/ui/policies", "Policies"),
            (Nav::Campaigns, "/ui/campaigns", "Campaigns"),
        ] {
            let class = if entry == nav { " class=\"on\"" } else { "" };
            let _ = write!(html, "<a href=\"{href}\"{class}>{label}</a>");
        }
        if logout {
            html.push_str(
                "<form method=\"post\" action=\"/ui/logout\" class=\"logout\">\
                 <button type=\"submit\">Log out</button></form>",
            );
        }
        html.push_str("</nav></header>");
    }
    let _ = writeln!(
        html,
        "<main><h1>{}</h1>{body}</main></body></html>",
        html_escape(title)
    );
    html_response(StatusCode::OK, html)
}

/// An HTML response with the dashboard's headers.
pub(crate) fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// An error page (HTML, so the API's JSON error middleware leaves it alone).
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let mut response = page(
        status.canonical_reason().unwrap_or("Error"),
        Nav::Overview,
        false,
        &format!("<p class=\"error\">{}</p>", html_escape(message)),
    );
    *response.status_mut() = status;
    response
}

/// A table: the header cells, then rows of cells already escaped.
pub(crate) fn table(class: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut html = format!("<table class=\"{class}\"><thead><tr>");
    for h in head {
        let _ = write!(html, "<th>{h}</th>");
    }
    html.push_str("</tr></thead><tbody>");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let _ = write!(html, "<td>{cell}</td>");
        }
        html.push_str("</tr>");
    }
    if rows.is_empty() {
        let _ = write!(
            html,
            "<tr><td colspan=\"{}\" class=\"none\">none</td></tr>",
            head.len()
        );
    }
    html.push_str("</tbody></table>");
    html
}

/// A timestamp as `YYYY-MM-DD HH:MM` UTC.
pub(crate) fn when(t: crate::store::Timestamp) -> String {
    let secs = t.0.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's civil-from-days).
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn escaping_covers_text_and_attributes() {
        assert_eq!(
            html_escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(html_escape("ann@example.net"), "ann@example.net");
        assert_eq!(html_escape("é ü"), "é ü");
    }

    #[test]
    fn url_parts_are_one_segment() {
        assert_eq!(url_part("a+b/c@x.net"), "a%2Bb%2Fc%40x.net");
        assert_eq!(url_part("\"><x"), "%22%3E%3Cx");
        assert_eq!(url_part("é"), "%C3%A9");
    }

    #[test]
    fn timestamps_are_utc_dates() {
        assert_eq!(when(crate::store::Timestamp(0)), "1970-01-01 00:00");
        // 2026-12-02T09:30:00Z
        assert_eq!(
            when(crate::store::Timestamp(1_796_203_800_000)),
            "2026-12-02 09:30"
        );
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(59), (1970, 3, 1));
    }

    #[test]
    fn pages_are_html_with_a_content_security_policy() {
        let r = page("<T>", Nav::Recipients, true, "<p>x</p>");
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
    }
}
