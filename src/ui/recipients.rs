//! `/ui/recipients`: search by address (prefix or contains) and state, one recipient's
//! state, counts and history, its bounces' raw messages, and the Reactivate button.

use std::fmt::Write;
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::page::{self, Nav, html_escape, url_part, when};
use super::{PageResult, Ui, UiError};
use crate::store::{self, EventFilter, EventKind, Recipient, RecipientState, address_key};

/// Rows per page of the list.
const PAGE: usize = 50;
/// A "contains" search reads at most this many recipients per page of results (it has no
/// index to use); the page says so and links on.
const CONTAINS_SCAN: usize = 20_000;
/// The headings of an event's columns in a recipient's history.
const EVENT_HEAD: [&str; 8] = [
    "When",
    "Kind",
    "Class",
    "Status",
    "Reason",
    "Diagnostic",
    "Decided by",
    "Campaign",
];
/// Events per page of a recipient's history.
const HISTORY: u32 = 100;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    q: Option<String>,
    mode: Option<String>,
    state: Option<String>,
    after: Option<String>,
}

/// A page of recipients matching the query, and the cursor to go on from (`None`: no
/// more), and how many rows were read.
async fn search(
    store: &store::Store,
    state: Option<RecipientState>,
    needle: &str,
    contains: bool,
    after: Option<&str>,
) -> store::Result<(Vec<Recipient>, Option<String>, usize)> {
    if needle.is_empty() {
        let page = store
            .recipients_page(state, after, u32::try_from(PAGE).unwrap_or(50))
            .await?;
        let n = page.items.len();
        return Ok((page.items, page.next, n));
    }
    // Keys are ordered, so every key with a prefix follows the prefix: start just before
    // it (its last character one lower) and stop at the first key without it.
    let mut cursor = match after {
        Some(a) => a.to_owned(),
        None if contains => String::new(),
        None => before(needle),
    };
    let mut found = Vec::new();
    let mut read = 0;
    loop {
        let page = store.recipients_page(state, Some(&cursor), 500).await?;
        for r in page.items {
            let key = address_key(&r.address);
            read += 1;
            cursor.clone_from(&key);
            if contains {
                if key.contains(needle) {
                    found.push(r);
                }
            } else if key.starts_with(needle) {
                found.push(r);
            } else if key.as_str() > needle {
                return Ok((found, None, read));
            }
            if found.len() == PAGE || (contains && read >= CONTAINS_SCAN) {
                return Ok((found, Some(cursor), read));
            }
        }
        if page.next.is_none() {
            return Ok((found, None, read));
        }
    }
}

/// The greatest string below `s` that no key between it and `s` can follow from: `s`
/// with its last character one lower (or dropped when it is the lowest).
fn before(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    match chars.pop() {
        Some(c) => {
            let mut out: String = chars.into_iter().collect();
            if let Some(lower) = u32::from(c).checked_sub(1).and_then(char::from_u32) {
                out.push(lower);
                out.push(char::MAX);
            }
            out
        }
        None => String::new(),
    }
}

pub(crate) async fn list(State(ui): State<Arc<Ui>>, Query(q): Query<ListQuery>) -> PageResult {
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            RecipientState::from_str(s)
                .map_err(|e| UiError::new(StatusCode::BAD_REQUEST, e.to_string()))?,
        ),
    };
    let needle = address_key(q.q.as_deref().unwrap_or(""));
    let contains = q.mode.as_deref() == Some("contains");
    let (rows, next, read) = search(
        &ui.app.store,
        state,
        &needle,
        contains,
        q.after.as_deref().filter(|a| !a.is_empty()),
    )
    .await?;

    let mut body = String::from("<form method=\"get\" action=\"/ui/recipients\" class=\"search\">");
    let _ = write!(
        body,
        "<input type=\"search\" name=\"q\" id=\"q\" placeholder=\"address\" value=\"{}\">",
        html_escape(q.q.as_deref().unwrap_or(""))
    );
    body.push_str("<select name=\"mode\">");
    for (value, label) in [("prefix", "starts with"), ("contains", "contains")] {
        let sel = if (value == "contains") == contains {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option value=\"{value}\"{sel}>{label}</option>");
    }
    body.push_str("</select><select name=\"state\"><option value=\"\">any state</option>");
    for s in RecipientState::ALL {
        let sel = if state == Some(*s) { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{s}\"{sel}>{s}</option>");
    }
    body.push_str("</select><button type=\"submit\">Search</button></form>");

    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!(
                    "<a class=\"recipient\" href=\"/ui/recipients/{}\">{}</a>",
                    url_part(&r.address),
                    html_escape(&r.address)
                ),
                format!("<span class=\"state {0}\">{0}</span>", r.state),
                r.hard_count.to_string(),
                r.soft_count.to_string(),
                r.complaint_count.to_string(),
                html_escape(r.last_reason.as_deref().unwrap_or("")),
                r.last_bounce_at.map(when).unwrap_or_default(),
            ]
        })
        .collect();
    body.push_str(&page::table(
        "recipients",
        &[
            "Address",
            "State",
            "Hard",
            "Soft",
            "Complaints",
            "Last reason",
            "Last bounce",
        ],
        &table_rows,
    ));
    if contains && !needle.is_empty() {
        let _ = write!(
            body,
            "<p class=\"hint\">Read {read} addresses for this page (a \"contains\" search reads \
             the recipients in address order, at most {CONTAINS_SCAN} per page).</p>"
        );
    }
    if let Some(next) = next {
        let _ = write!(
            body,
            "<p><a id=\"next\" href=\"/ui/recipients?q={}&amp;mode={}&amp;state={}&amp;after={}\">Next page</a></p>",
            url_part(q.q.as_deref().unwrap_or("")),
            if contains { "contains" } else { "prefix" },
            state.map_or("", RecipientState::as_str),
            url_part(&next)
        );
    }
    Ok(page::page("Recipients", Nav::Recipients, !ui.open(), &body))
}

#[derive(Deserialize)]
pub(crate) struct ShowQuery {
    after: Option<i64>,
    note: Option<String>,
}

pub(crate) async fn show(
    State(ui): State<Arc<Ui>>,
    Path(address): Path<String>,
    Query(q): Query<ShowQuery>,
) -> PageResult {
    let store = &ui.app.store;
    let r = store
        .recipient(&address)
        .await?
        .ok_or_else(|| UiError::new(StatusCode::NOT_FOUND, format!("no recipient {address:?}")))?;
    let history = store
        .events_page(
            &EventFilter {
                recipient: Some(r.address.clone()),
                after: q.after,
                ..EventFilter::default()
            },
            HISTORY,
        )
        .await?;
    let mut body = String::new();
    match q.note.as_deref() {
        Some("reactivated") => body.push_str("<p class=\"note\" id=\"note\">Reactivated.</p>"),
        Some("already-active") => {
            body.push_str("<p class=\"note\" id=\"note\">It was active already.</p>");
        }
        _ => {}
    }
    let _ = write!(
        body,
        "<h2 id=\"address\">{}</h2><dl class=\"facts\">\
         <dt>State</dt><dd id=\"state\" class=\"state {state}\">{state}</dd>\
         <dt>Hard bounces</dt><dd id=\"hard\">{}</dd>\
         <dt>Soft bounces</dt><dd id=\"soft\">{}</dd>\
         <dt>Complaints</dt><dd id=\"complaints\">{}</dd>\
         <dt>Last status</dt><dd>{}</dd><dt>Last reason</dt><dd>{}</dd>\
         <dt>State changed</dt><dd>{}</dd></dl>",
        html_escape(&r.address),
        r.hard_count,
        r.soft_count,
        r.complaint_count,
        html_escape(r.last_status.as_deref().unwrap_or("")),
        html_escape(r.last_reason.as_deref().unwrap_or("")),
        r.state_changed_at.map(when).unwrap_or_default(),
        state = r.state,
    );
    if r.state != RecipientState::Active {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/ui/recipients/{}/reactivate\">\
             <button type=\"submit\" id=\"reactivate\">Reactivate</button></form>",
            url_part(&r.address)
        );
    }
    // The columns an event shows, here and among the superseded ones.
    let cells = |e: &store::Event| {
        vec![
            when(e.at),
            html_escape(e.kind.as_str()),
            e.class.map_or("", |c| c.as_str()).to_owned(),
            html_escape(e.status.as_deref().unwrap_or("")),
            html_escape(e.reason.as_deref().unwrap_or("")),
            format!(
                "<span class=\"diag\">{}</span>",
                html_escape(e.diagnostic.as_deref().unwrap_or(""))
            ),
            html_escape(&e.decided_by),
            e.campaign_id.map(|c| c.to_string()).unwrap_or_default(),
        ]
    };
    let rows: Vec<Vec<String>> = history
        .items
        .iter()
        .map(|e| {
            let mut row = cells(e);
            row.push(
                if e.mailbox.is_some() && matches!(e.kind, EventKind::Message(_)) {
                    format!(
                        "<a class=\"raw\" href=\"/ui/events/{}/raw\">raw message</a>",
                        e.id
                    )
                } else {
                    String::new()
                },
            );
            row
        })
        .collect();
    body.push_str("<h2>History</h2>");
    body.push_str(&page::table(
        "history",
        &[&EVENT_HEAD[..], &[""]].concat(),
        &rows,
    ));
    if let Some(next) = history.next {
        let _ = write!(
            body,
            "<p><a href=\"/ui/recipients/{}?after={next}\">Later events</a></p>",
            url_part(&r.address)
        );
    }
    // What `rebound reprocess` replaced: kept, no longer counted.
    let superseded = store.superseded_of(&r.address).await?;
    if !superseded.is_empty() {
        let rows: Vec<Vec<String>> = superseded
            .iter()
            .map(|x| {
                let mut row = cells(&x.event);
                row.push(when(x.superseded_at));
                row
            })
            .collect();
        body.push_str("<h2>Replaced by reprocessing</h2>");
        body.push_str(&page::table(
            "superseded",
            &[&EVENT_HEAD[..], &["Replaced"]].concat(),
            &rows,
        ));
    }
    Ok(page::page("Recipient", Nav::Recipients, !ui.open(), &body))
}

pub(crate) async fn reactivate(
    State(ui): State<Arc<Ui>>,
    Path(address): Path<String>,
) -> PageResult {
    let note = match ui.app.store.reactivate(&address, "ui").await? {
        Ok(change) => {
            tracing::info!(from = %change.from, "recipient reactivated from the dashboard");
            "reactivated"
        }
        Err(store::Refusal::AlreadyActive) => "already-active",
        Err(store::Refusal::NotFound) => {
            return Err(UiError::new(
                StatusCode::NOT_FOUND,
                format!("no recipient {address:?}"),
            ));
        }
    };
    Ok(Redirect::to(&format!(
        "/ui/recipients/{}?note={note}",
        url_part(&address)
    ))
    .into_response())
}

/// The archived message an event was recorded from, as text (escaped, in a `<pre>`).
pub(crate) async fn raw(State(ui): State<Arc<Ui>>, Path(id): Path<i64>) -> PageResult {
    let raw = ui.app.store.raw_of_event(id).await?.ok_or_else(|| {
        UiError::new(
            StatusCode::NOT_FOUND,
            format!("event {id} has no archived message"),
        )
    })?;
    let body = format!(
        "<p class=\"hint\">As fetched from the mailbox ({} bytes; invalid UTF-8 shown as \
         U+FFFD).</p><pre id=\"raw\">{}</pre>",
        raw.len(),
        html_escape(&String::from_utf8_lossy(&raw))
    );
    Ok(page::page(
        &format!("Event {id}: raw message"),
        Nav::Recipients,
        !ui.open(),
        &body,
    ))
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_start_of_a_prefix_search_is_just_below_it() {
        let b = before("bob");
        assert!(b.as_str() < "bob" && b.as_str() > "boa" && b.as_str() > "boazzz");
        assert_eq!(before("a"), format!("`{}", char::MAX));
        assert_eq!(before(""), "");
        assert_eq!(before("\0"), "");
    }
}
