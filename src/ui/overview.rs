//! `/ui` (and `/ui/overview`): sends, hard and soft bounces, complaints and sender-side
//! refusals over time (`?range=24h` hourly, `7d` or `30d` daily), then by reason, by
//! destination domain and by campaign — from the store's rollup ([`Store::overview`]).
//!
//! [`Store::overview`]: crate::store::Store::overview

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::chart;
use super::page::{self, Nav, html_escape};
use super::{PageResult, Ui, UiError};
use crate::store::Timestamp;
use crate::store::rollup::{Bucket, Counts, Overview};

/// The series' names, in the order of [`values`].
const SERIES: [&str; 5] = ["sends", "hard", "soft", "complaints", "sender refusals"];

fn values(c: &Counts) -> [u64; 5] {
    [c.sends, c.hard, c.soft, c.complaints, c.sender_refusals]
}

#[derive(Deserialize)]
pub(crate) struct RangeQuery {
    range: Option<String>,
}

/// A range: its name, its bucket and how many buckets (the current one last).
fn range(name: &str) -> Option<(Bucket, i64)> {
    match name {
        "24h" => Some((Bucket::Hour, 24)),
        "7d" => Some((Bucket::Day, 7)),
        "30d" => Some((Bucket::Day, 30)),
        _ => None,
    }
}

/// The bucket starts of a range ending with the bucket `now` is in.
fn buckets(now: Timestamp, bucket: Bucket, n: i64) -> Vec<Timestamp> {
    let len = bucket.millis();
    let current = now.0 - now.0.rem_euclid(len);
    (0..n).rev().map(|i| Timestamp(current - i * len)).collect()
}

/// The overview's series with a value for every bucket (the store leaves out empty
/// ones), one vector per series.
fn filled(ov: &Overview, starts: &[Timestamp], bucket: Bucket) -> Vec<Vec<u64>> {
    let len = bucket.millis();
    let mut out = vec![vec![0u64; starts.len()]; SERIES.len()];
    for (at, counts) in &ov.series {
        let start = at.0 - at.0.rem_euclid(len);
        if let Some(i) = starts.iter().position(|s| s.0 == start) {
            for (j, v) in values(counts).into_iter().enumerate() {
                out[j][i] += v;
            }
        }
    }
    out
}

fn label(t: Timestamp, bucket: Bucket) -> String {
    let full = page::when(t);
    match bucket {
        // "2026-12-02 09:00" → "09:00"; days keep "12-02".
        Bucket::Hour => full.get(11..).unwrap_or(&full).to_owned(),
        Bucket::Day => full.get(5..10).unwrap_or(&full).to_owned(),
    }
}

fn counts_cells(c: &Counts) -> Vec<String> {
    values(c).iter().map(u64::to_string).collect()
}

pub(crate) async fn page(State(ui): State<Arc<Ui>>, Query(q): Query<RangeQuery>) -> PageResult {
    let name = q.range.as_deref().unwrap_or("24h");
    let (bucket, n) = range(name).ok_or_else(|| {
        UiError::new(
            StatusCode::BAD_REQUEST,
            format!("range {name:?}: use 24h, 7d or 30d"),
        )
    })?;
    let now = Timestamp::now();
    let starts = buckets(now, bucket, n);
    let since = starts.first().copied().unwrap_or(now);
    let until = Timestamp(starts.last().map_or(now.0, |s| s.0) + bucket.millis());
    let ov = ui.app.store.overview(since, until, bucket).await?;
    let body = render(name, bucket, &starts, &ov);
    Ok(page::page("Overview", Nav::Overview, !ui.open(), &body))
}

/// The page's body for an overview.
fn render(name: &str, bucket: Bucket, starts: &[Timestamp], ov: &Overview) -> String {
    let mut body = String::from("<p class=\"range\">");
    for r in ["24h", "7d", "30d"] {
        if r == name {
            let _ = write!(body, "<b>{r}</b> ");
        } else {
            let _ = write!(body, "<a href=\"/ui?range={r}\">{r}</a> ");
        }
    }
    body.push_str("</p>");

    let series = filled(ov, starts, bucket);
    let totals: Vec<String> = series
        .iter()
        .map(|s| s.iter().sum::<u64>().to_string())
        .collect();
    body.push_str(&page::table("totals", &SERIES, &[totals]));

    let labels: Vec<String> = starts.iter().map(|s| label(*s, bucket)).collect();
    let named: Vec<(&str, Vec<u64>)> = SERIES.iter().copied().zip(series).collect();
    let _ = write!(
        body,
        "<h2>Over time ({}, UTC)</h2>{}",
        match bucket {
            Bucket::Hour => "hourly",
            Bucket::Day => "daily",
        },
        chart::lines("series", &labels, &named)
    );

    body.push_str("<div class=\"grid\"><section><h2>By reason</h2>");
    let reasons: Vec<(String, u64)> = ov.by_reason.clone();
    body.push_str(&chart::bars("by-reason", &reasons));
    body.push_str("</section><section><h2>By destination domain</h2>");
    let domains: Vec<(String, u64)> = ov
        .by_domain
        .iter()
        .map(|(d, c)| (d.clone(), c.failures()))
        .collect();
    body.push_str(&chart::bars("by-domain", &domains));
    body.push_str("<p class=\"hint\">Bars: bounces and sender refusals.</p>");
    let domain_rows: Vec<Vec<String>> = ov
        .by_domain
        .iter()
        .map(|(d, c)| {
            let mut row = vec![html_escape(d)];
            row.extend(counts_cells(c));
            row
        })
        .collect();
    let mut head = vec!["Domain"];
    head.extend(SERIES);
    body.push_str(&page::table("domains", &head, &domain_rows));
    body.push_str("</section></div><h2>By campaign</h2>");
    let campaign_rows: Vec<Vec<String>> = ov
        .by_campaign
        .iter()
        .map(|(id, campaign, c)| {
            let mut row = vec![id.to_string(), html_escape(campaign)];
            row.extend(counts_cells(c));
            row
        })
        .collect();
    let mut head = vec!["#", "Campaign"];
    head.extend(SERIES);
    body.push_str(&page::table("campaigns", &head, &campaign_rows));
    body
}

#[cfg(test)]
mod test {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn every_bucket_gets_a_value() {
        let now = Timestamp(1_796_203_800_000); // 2026-12-02 09:30 UTC
        let starts = buckets(now, Bucket::Hour, 24);
        assert_eq!(starts.len(), 24);
        assert_eq!(starts[23].0, now.0 - 30 * 60_000);
        assert_eq!(starts[0].0, starts[23].0 - 23 * HOUR);
        let hard = Counts {
            hard: 2,
            ..Counts::default()
        };
        let ov = Overview {
            series: vec![(starts[23], hard), (Timestamp(starts[3].0 + 5), hard)],
            by_reason: vec![("user-unknown".into(), 4)],
            by_domain: vec![("<x>.example".into(), hard)],
            by_campaign: Vec::new(),
        };
        let s = filled(&ov, &starts, Bucket::Hour);
        assert_eq!(s[1][23], 2);
        assert_eq!(s[1][3], 2);
        assert_eq!(s[1].iter().sum::<u64>(), 4);
        assert_eq!(s[0].iter().sum::<u64>(), 0);

        let html = render("24h", Bucket::Hour, &starts, &ov);
        assert!(
            html.contains("data-series=\"hard\" data-total=\"4\""),
            "{html}"
        );
        assert!(html.contains("<title>09:00: hard 2</title>"), "{html}");
        assert!(html.contains("data-label=\"user-unknown\" data-value=\"4\""));
        assert!(html.contains("&lt;x&gt;.example") && !html.contains("<x>"));
    }

    #[test]
    fn days_are_utc_days() {
        let now = Timestamp(1_796_203_800_000);
        let starts = buckets(now, Bucket::Day, 7);
        assert_eq!(page::when(starts[6]), "2026-12-02 00:00");
        assert_eq!(page::when(starts[0]), "2026-11-26 00:00");
        assert_eq!(label(starts[6], Bucket::Day), "12-02");
        assert!(range("1y").is_none());
    }
}
