//! `/ui/campaigns`: every campaign with its progress, complaint rate and pause, a Pause
//! button for one not done and a Resume button for a paused one (the store's
//! `pause_campaign` and the guard's resume), and the numbers kept live by server-sent
//! events (`/ui/campaigns/events`, read by the page's script).

use std::convert::Infallible;
use std::fmt::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::json;

use super::page::{self, Nav, html_escape, when};
use super::{PageResult, Ui};
use crate::store::campaigns::CampaignCounts;

/// How often the event stream sends fresh numbers.
const TICK: Duration = Duration::from_secs(2);

/// Messages with a final result (sent, maybe delivered, failed, skipped) out of those
/// queued, in percent.
fn progress(c: &CampaignCounts) -> f64 {
    if c.recipients == 0 {
        return 100.0;
    }
    let done = c.sent + c.maybe_delivered + c.failed + c.skipped;
    100.0 * done as f64 / c.recipients as f64
}

/// What the stream sends for one campaign; the page's script sets the element
/// `c-<id>-<key>` to each value.
fn live(c: &CampaignCounts) -> serde_json::Value {
    json!({
        "id": c.id,
        "state": c.state.as_str(),
        "sent": c.sent,
        "queued": c.queued,
        "failed": c.failed,
        "progress": format!("{:.0}%", progress(c)),
        "complaint_rate": crate::store::percent(c.complaint_rate),
        "paused": c.pause.as_ref().map_or(String::new(), |p| p.reason.clone()),
    })
}

pub(crate) async fn list(State(ui): State<Arc<Ui>>) -> PageResult {
    let campaigns = ui.app.store.campaign_counts().await?;
    let rows: Vec<Vec<String>> = campaigns
        .iter()
        .map(|c| {
            let id = c.id;
            let cell = |key: &str, value: String| {
                format!("<span id=\"c-{id}-{key}\">{}</span>", html_escape(&value))
            };
            let button = |action: &str, label: &str| {
                format!(
                    "<form method=\"post\" action=\"/ui/campaigns/{id}/{action}\">\
                     <button type=\"submit\" class=\"{action}\">{label}</button></form>"
                )
            };
            let resume = if c.pause.is_some() {
                button("resume", "Resume")
            } else if c.state != crate::store::campaigns::CampaignState::Done {
                button("pause", "Pause")
            } else {
                String::new()
            };
            vec![
                id.to_string(),
                html_escape(&c.name),
                cell("state", c.state.as_str().to_owned()),
                when(c.created_at),
                c.recipients.to_string(),
                cell("sent", c.sent.to_string()),
                cell("queued", c.queued.to_string()),
                cell("failed", c.failed.to_string()),
                cell("progress", format!("{:.0}%", progress(c))),
                c.hard_bounces.to_string(),
                c.complaints.to_string(),
                cell("complaint_rate", crate::store::percent(c.complaint_rate)),
                cell(
                    "paused",
                    c.pause.as_ref().map_or(String::new(), |p| p.reason.clone()),
                ),
                resume,
            ]
        })
        .collect();
    let mut body = page::table(
        "campaigns",
        &[
            "#",
            "Name",
            "State",
            "Created",
            "Recipients",
            "Sent",
            "Queued",
            "Failed",
            "Progress",
            "Hard bounces",
            "Complaints",
            "Complaint rate",
            "Paused",
            "",
        ],
        &rows,
    );
    let _ = write!(
        body,
        "<p class=\"hint\" id=\"live\" data-events=\"/ui/campaigns/events\">Updated every {} s \
         while this page is open. A campaign pauses by hand (Pause) or through the \
         complaint-rate guard (<code>[rules] max_complaint_rate</code>); Resume ends that \
         pause and its domains' pauses.</p>",
        TICK.as_secs()
    );
    Ok(page::page("Campaigns", Nav::Campaigns, !ui.open(), &body))
}

pub(crate) async fn pause(State(ui): State<Arc<Ui>>, Path(id): Path<i64>) -> PageResult {
    if crate::api::pause(&ui.app, id, "ui").await? {
        tracing::info!(campaign = id, "campaign paused from the dashboard");
    }
    Ok(Redirect::to("/ui/campaigns").into_response())
}

pub(crate) async fn resume(State(ui): State<Arc<Ui>>, Path(id): Path<i64>) -> PageResult {
    crate::api::resume(&ui.app, id).await?;
    tracing::info!(campaign = id, "campaign resumed from the dashboard");
    Ok(Redirect::to("/ui/campaigns").into_response())
}

/// Every [`TICK`], an event `progress` with the live numbers of every campaign; ends
/// when the server shuts down (an open stream would hold the graceful shutdown).
pub(crate) async fn events(State(ui): State<Arc<Ui>>) -> Response {
    let stopping = ui.app.stopping.clone();
    let stream = futures_util::stream::unfold(
        (ui, stopping, true),
        |(ui, mut stopping, first)| async move {
            if !first {
                let stop = async {
                    // A dropped sender (no shutdown signal wired) never stops the stream.
                    if stopping.wait_for(|s| *s).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    () = tokio::time::sleep(TICK) => {}
                    () = stop => return None,
                }
            }
            if *stopping.borrow() {
                return None;
            }
            let event = match ui.app.store.campaign_counts().await {
                Ok(counts) => {
                    let data: Vec<serde_json::Value> = counts.iter().map(live).collect();
                    Event::default()
                        .event("progress")
                        .data(serde_json::Value::from(data).to_string())
                }
                Err(e) => {
                    tracing::warn!("dashboard: reading the campaigns failed: {e}");
                    Event::default()
                        .event("error")
                        .data("the store could not be read")
                }
            };
            Some((Ok::<_, Infallible>(event), (ui, stopping, false)))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}
