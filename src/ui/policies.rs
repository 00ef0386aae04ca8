//! `/ui/policies`: the chain in order, uploading a `.wasm` (the page's script sends the
//! file's bytes), moving a module up, rolling one back, and a dry run of one module over
//! the archived messages — the registry and the dry run the API's handlers use.

use std::fmt::Write;
use std::sync::Arc;

use axum::Form;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use serde::Deserialize;

use super::page::{self, Nav, html_escape, url_part, when};
use super::{PageResult, Ui, UiError};
use crate::reprocess::Report;
use crate::store::Booking;

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    note: Option<String>,
}

pub(crate) async fn list(State(ui): State<Arc<Ui>>, Query(q): Query<ListQuery>) -> PageResult {
    let chain = ui.app.policies.list().await;
    let mut body = String::new();
    if let Some(note) = q.note.as_deref().filter(|n| !n.is_empty()) {
        let _ = write!(
            body,
            "<p class=\"note\" id=\"note\">{}</p>",
            html_escape(note)
        );
    }
    let rows: Vec<Vec<String>> = chain
        .iter()
        .map(|p| {
            let name = url_part(&p.stats.name);
            let mut actions = String::new();
            if p.position > 1 {
                let _ = write!(
                    actions,
                    "<form method=\"post\" action=\"/ui/policies/{name}/up\">\
                     <button type=\"submit\" class=\"up\">Move up</button></form>"
                );
            }
            if p.version > 1 {
                let _ = write!(
                    actions,
                    "<form method=\"post\" action=\"/ui/policies/{name}/rollback\">\
                     <button type=\"submit\" class=\"rollback\">Roll back</button></form>"
                );
            }
            let _ = write!(
                actions,
                "<form method=\"post\" action=\"/ui/policies/{name}/dry-run\" class=\"dry-run\">\
                 <select name=\"history\"><option>24h</option><option>7d</option>\
                 <option selected>30d</option></select>\
                 <button type=\"submit\" class=\"dry-run\">Dry run against history</button></form>"
            );
            vec![
                p.position.to_string(),
                format!(
                    "<span class=\"policy-name\">{}</span>",
                    html_escape(&p.stats.name)
                ),
                p.version.to_string(),
                if p.from_config { "config" } else { "upload" }.to_owned(),
                format!(
                    "<code title=\"{0}\">{1}</code>",
                    html_escape(&p.stats.digest),
                    html_escape(p.stats.digest.get(..12).unwrap_or(&p.stats.digest))
                ),
                p.stats.calls.to_string(),
                p.stats.changed.to_string(),
                p.stats.failures.to_string(),
                if p.stats.disabled { "disabled" } else { "" }.to_owned(),
                actions,
            ]
        })
        .collect();
    body.push_str(&page::table(
        "policies",
        &[
            "#", "Name", "Version", "From", "Digest", "Calls", "Changed", "Failures", "", "",
        ],
        &rows,
    ));
    body.push_str(
        "<h2>Upload</h2><form id=\"upload\" class=\"upload\">\
         <label>Name <input name=\"name\" id=\"policy-name\" required \
         pattern=\"[A-Za-z0-9_.\\-]+\"></label>\
         <label>Component <input type=\"file\" id=\"policy-file\" accept=\".wasm\" required></label>\
         <button type=\"submit\" id=\"upload-button\">Upload</button></form>\
         <p class=\"error\" id=\"upload-error\" hidden></p>\
         <p class=\"hint\">A new name goes to the end of the chain; an existing one gets a new \
         version.</p>",
    );
    Ok(page::page("Policies", Nav::Policies, !ui.open(), &body))
}

/// The page's script posts the file's bytes here; errors come back as an error page,
/// whose message the script shows.
pub(crate) async fn upload(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let info = ui.app.policies.put(&name, body.to_vec()).await?;
    tracing::info!(policy = %name, digest = %info.stats.digest, version = info.version, "policy uploaded from the dashboard");
    Ok(redirect_note(&format!(
        "Uploaded {name}, version {}.",
        info.version
    )))
}

pub(crate) async fn rollback(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> PageResult {
    let info = ui.app.policies.rollback(&name).await?;
    tracing::info!(policy = %name, version = info.version, "policy rolled back from the dashboard");
    Ok(redirect_note(&format!(
        "Rolled {name} back to version {}.",
        info.version
    )))
}

/// Swaps a module with the one before it.
pub(crate) async fn move_up(State(ui): State<Arc<Ui>>, Path(name): Path<String>) -> PageResult {
    let mut order: Vec<String> = ui
        .app
        .policies
        .list()
        .await
        .into_iter()
        .map(|p| p.stats.name)
        .collect();
    let i = order
        .iter()
        .position(|n| *n == name)
        .ok_or_else(|| UiError::new(StatusCode::NOT_FOUND, format!("no policy named {name:?}")))?;
    if i > 0 {
        order.swap(i - 1, i);
        ui.app.policies.reorder(&order).await?;
    }
    Ok(redirect_note(&format!("Moved {name} up.")))
}

fn redirect_note(note: &str) -> axum::response::Response {
    Redirect::to(&format!("/ui/policies?note={}", url_part(note))).into_response()
}

#[derive(Deserialize)]
pub(crate) struct DryRunForm {
    history: String,
}

pub(crate) async fn dry_run(
    State(ui): State<Arc<Ui>>,
    Path(name): Path<String>,
    Form(form): Form<DryRunForm>,
) -> PageResult {
    let module = crate::api::chain_module(&ui.app, &name)?;
    let report = crate::api::dry_run_module(&ui.app, module, &form.history).await?;
    Ok(page::page(
        &format!("Dry run of {name}"),
        Nav::Policies,
        !ui.open(),
        &report_html(&name, &form.history, &report),
    ))
}

fn booking(b: Option<&Booking>) -> String {
    match b {
        None => "<span class=\"none\">not booked</span>".to_owned(),
        Some(b) => {
            let mut s = html_escape(b.kind.as_str());
            if let Some(c) = b.class {
                let _ = write!(s, " {}", c.as_str());
            }
            let _ = write!(s, " {}", html_escape(&b.reason.to_string()));
            if let Some(blame) = b.blame {
                let _ = write!(s, " ({})", html_escape(&blame.to_string()));
            }
            s
        }
    }
}

/// The report: its totals and one row per recipient whose booking would change.
fn report_html(name: &str, history: &str, r: &Report) -> String {
    let mut body = format!(
        "<p id=\"dry-run-summary\">Over the messages archived in the last {}: \
         <span id=\"dry-run-messages\">{}</span> read, \
         <span id=\"dry-run-changed\">{}</span> would change, \
         <span id=\"dry-run-failed\">{}</span> failed in <b>{}</b>. Nothing was written.</p>",
        html_escape(history),
        r.messages,
        r.changed,
        r.failed,
        html_escape(name)
    );
    let rows: Vec<Vec<String>> = r
        .changes
        .iter()
        .map(|c| {
            vec![
                when(c.at),
                format!(
                    "<a href=\"/ui/recipients/{}\">{}</a>",
                    url_part(&c.recipient),
                    html_escape(&c.recipient)
                ),
                format!(
                    "<span class=\"before\">{}</span>",
                    booking(c.before.as_ref())
                ),
                format!("<span class=\"after\">{}</span>", booking(c.after.as_ref())),
                c.state.to_string(),
                c.would_be.map(|s| s.to_string()).unwrap_or_default(),
                html_escape(&format!("{}/{}", c.mailbox, c.uid)),
            ]
        })
        .collect();
    body.push_str(&page::table(
        "diff",
        &[
            "Recorded",
            "Recipient",
            "Booked as",
            "Would be",
            "State",
            "Would become",
            "Message",
        ],
        &rows,
    ));
    body.push_str("<p><a href=\"/ui/policies\">Back to the policies</a></p>");
    body
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::store::{RecipientState, Timestamp};
    use crate::verdict::{BounceClass, MessageKind, Reason};

    #[test]
    fn a_report_shows_before_and_after_escaped() {
        let change = crate::reprocess::Change {
            archive_id: 1,
            mailbox: "default".into(),
            uid: "u1".into(),
            at: Timestamp(0),
            recipient: "<b>@example.net".into(),
            before: None,
            after: Some(Booking {
                recipient: "<b>@example.net".into(),
                kind: MessageKind::Bounce,
                class: Some(BounceClass::Hard),
                reason: Reason::UserUnknown,
                blame: None,
            }),
            state: RecipientState::Active,
            would_be: Some(RecipientState::Bounced),
        };
        let report = Report {
            messages: 3,
            changed: 1,
            failed: 0,
            changes: vec![change],
            ..Report::default()
        };
        let html = report_html("p", "30d", &report);
        assert!(
            html.contains("<span id=\"dry-run-changed\">1</span>"),
            "{html}"
        );
        assert!(html.contains("not booked"), "{html}");
        assert!(html.contains("bounce hard user-unknown"), "{html}");
        assert!(html.contains("&lt;b&gt;@example.net"), "{html}");
        assert!(!html.contains("<b>@"), "{html}");
    }
}
