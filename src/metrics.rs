//! Process-wide counters, rendered in the Prometheus text format by `GET /metrics`.
//!
//! Every stage counts what it does with [`inc`] (or [`add`]); the names are constants here
//! so the set of metrics is visible in one place.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

/// Messages classified, by `kind`.
pub const MESSAGES: &str = "rebound_messages_total";
/// Recipients that bounced, by `class` and `reason`.
pub const BOUNCES: &str = "rebound_bounces_total";
/// Policy module calls, by `policy` and `outcome` (keep, replace, not-bounce, error, timeout).
pub const POLICY_CALLS: &str = "rebound_policy_calls_total";
/// Send attempts, by `result` (sent, bounced, deferred, throttled, failed, maybe_delivered).
pub const SENDS: &str = "rebound_sends_total";
/// Times a sender waited for the rate limiter.
pub const RATE_LIMIT_WAITS: &str = "rebound_rate_limit_waits_total";
/// POP3 polls, by `result` (ok, error, held).
pub const POP3_POLLS: &str = "rebound_pop3_polls_total";
/// IMAP passes, by `result` (ok, error, held).
pub const IMAP_PASSES: &str = "rebound_imap_passes_total";
/// Times the IMAP source was woken in IDLE by new mail.
pub const IMAP_IDLE_WAKEUPS: &str = "rebound_imap_idle_wakeups_total";
/// HTTP API requests, by `route` and `status`.
pub const HTTP_REQUESTS: &str = "rebound_http_requests_total";
/// Failures booked to recipients by the store, by `blame` (recipient, sender, transit,
/// unknown).
pub const FAILURES: &str = "rebound_failures_total";
/// Sender-blamed refusals booked by the store, by destination `domain`: the first
/// [`MAX_DOMAIN_LABELS`] domains seen get their own label, the rest count as `other`.
pub const SENDER_REFUSALS: &str = "rebound_sender_refusals_total";
/// Campaign sends to a destination domain paused by `[rules] pause_on_sender_blocks`.
pub const DOMAIN_PAUSES: &str = "rebound_domain_pauses_total";
/// Complaints booked by the store, by destination `domain` (bounded like
/// [`SENDER_REFUSALS`]).
pub const COMPLAINTS: &str = "rebound_complaints_total";
/// Campaigns paused by `[rules] max_complaint_rate`.
pub const CAMPAIGN_PAUSES: &str = "rebound_campaign_pauses_total";

/// Mailbox messages quarantined (their fetch failed `[pop3] max_fetch_failures` times), by
/// `mailbox`.
pub const POP3_QUARANTINED: &str = "rebound_pop3_quarantined_total";
/// Unsubscribe requests applied, by `source` (one-click, page, mailto).
pub const UNSUBSCRIBES: &str = "rebound_unsubscribes_total";

/// Webhook attempts, by `endpoint` and `result` (delivered, failed: due again, dead:
/// given up after max_attempts).
pub const NOTIFY_DELIVERIES: &str = "rebound_notify_deliveries_total";
/// Provider webhook requests, by `provider` (a configured one, else `other`) and
/// `result` (recorded, duplicate, ignored, subscription, malformed, unauthenticated,
/// forbidden, not_configured, too_large, unavailable).
pub const WEBHOOK_REQUESTS: &str = "rebound_webhook_requests_total";

/// Distinct `domain` labels of [`SENDER_REFUSALS`], at most (label cardinality bound).
pub const MAX_DOMAIN_LABELS: usize = 20;

const HELP: &[(&str, &str)] = &[
    (MESSAGES, "Messages classified, by kind."),
    (BOUNCES, "Bounced recipients, by class and reason."),
    (POLICY_CALLS, "Policy module calls, by policy and outcome."),
    (SENDS, "Messages sent, by result."),
    (
        RATE_LIMIT_WAITS,
        "Times a sender waited for the rate limiter.",
    ),
    (
        POP3_POLLS,
        "POP3 polls, by result (ok, error; held: another poller had the mailbox).",
    ),
    (
        IMAP_PASSES,
        "IMAP passes, by result (ok, error; held: another source had the folder).",
    ),
    (
        IMAP_IDLE_WAKEUPS,
        "Times the IMAP source was woken in IDLE by new mail.",
    ),
    (
        POP3_QUARANTINED,
        "Mailbox messages quarantined after repeated fetch failures, by mailbox.",
    ),
    (HTTP_REQUESTS, "Admin API requests, by route and status."),
    (
        WEBHOOK_REQUESTS,
        "Provider webhook requests, by provider and result.",
    ),
    (
        UNSUBSCRIBES,
        "Unsubscribe requests applied, by source (one-click, page, mailto).",
    ),
    (FAILURES, "Failures booked to recipients, by blame."),
    (
        SENDER_REFUSALS,
        "Sender-blamed refusals, by destination domain (bounded; the rest as other).",
    ),
    (
        DOMAIN_PAUSES,
        "Campaign sends to a destination domain paused for sender-side refusals.",
    ),
    (
        COMPLAINTS,
        "Complaints booked, by destination domain (bounded; the rest as other).",
    ),
    (
        CAMPAIGN_PAUSES,
        "Campaigns paused for a complaint rate over [rules] max_complaint_rate.",
    ),
    (
        NOTIFY_DELIVERIES,
        "Webhook attempts, by endpoint and result (delivered, failed, dead).",
    ),
];

type Key = (&'static str, Vec<(&'static str, String)>);

fn counters() -> &'static Mutex<BTreeMap<Key, u64>> {
    static COUNTERS: OnceLock<Mutex<BTreeMap<Key, u64>>> = OnceLock::new();
    COUNTERS.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Adds one to a counter.
pub fn inc(name: &'static str, labels: &[(&'static str, &str)]) {
    add(name, labels, 1);
}

/// Adds `n` to a counter.
pub fn add(name: &'static str, labels: &[(&'static str, &str)], n: u64) {
    let key = (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    );
    let mut map = counters().lock().unwrap_or_else(|e| e.into_inner());
    *map.entry(key).or_insert(0) += n;
}

/// The current value of a counter (0 when never counted).
pub fn get(name: &'static str, labels: &[(&'static str, &str)]) -> u64 {
    let key: Key = (
        name,
        labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
    );
    let map = counters().lock().unwrap_or_else(|e| e.into_inner());
    map.get(&key).copied().unwrap_or(0)
}

/// Counts one classified message and its bounced recipients.
pub fn count_verdict(verdict: &crate::verdict::Verdict) {
    inc(MESSAGES, &[("kind", verdict.kind.as_str())]);
    for r in &verdict.recipients {
        if let Some(class) = r.bounce {
            inc(
                BOUNCES,
                &[("class", class.as_str()), ("reason", r.reason.as_str())],
            );
        }
    }
}

/// Adds one to a counter whose one label (`label`) takes at most `max` distinct values:
/// a value not seen yet once `max` are taken counts as `other`.
pub fn inc_bounded(name: &'static str, label: &'static str, value: &str, max: usize) {
    let mut map = counters().lock().unwrap_or_else(|e| e.into_inner());
    let key = |v: &str| -> Key { (name, vec![(label, v.to_owned())]) };
    let seen = map.contains_key(&key(value));
    let taken = map
        .range((name, Vec::new())..)
        .take_while(|((n, _), _)| *n == name)
        .filter(|((_, l), _)| l.first().is_some_and(|(_, v)| v != "other"))
        .count();
    let value = if seen || taken < max { value } else { "other" };
    *map.entry(key(value)).or_insert(0) += 1;
}

/// Counts what the store booked: failures by blame, sender-blamed refusals and
/// complaints by destination domain (bounded), domain and campaign pauses.
pub fn count_booked(outcome: &crate::store::RecordOutcome) {
    for f in &outcome.failures {
        inc(FAILURES, &[("blame", f.blame.as_str())]);
        if f.blame == crate::verdict::Blame::Sender {
            let domain = f.domain.as_deref().unwrap_or("unknown");
            inc_bounded(SENDER_REFUSALS, "domain", domain, MAX_DOMAIN_LABELS);
        }
    }
    if !outcome.paused.is_empty() {
        add(DOMAIN_PAUSES, &[], outcome.paused.len() as u64);
    }
    for domain in &outcome.complaints {
        let domain = domain.as_deref().unwrap_or("unknown");
        inc_bounded(COMPLAINTS, "domain", domain, MAX_DOMAIN_LABELS);
    }
    if !outcome.paused_campaigns.is_empty() {
        add(CAMPAIGN_PAUSES, &[], outcome.paused_campaigns.len() as u64);
    }
}

/// The outbox's gauges from the store (every process that shares it reports the same):
/// rows pending and dead per `[[notify]]` endpoint.
pub fn render_outbox_gauges(status: &[crate::store::outbox::EndpointStatus]) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        (
            "rebound_notify_pending",
            "Webhook rows not yet delivered, by endpoint.",
            (|s: &crate::store::outbox::EndpointStatus| s.pending) as fn(&_) -> u64,
        ),
        (
            "rebound_notify_dead",
            "Webhook rows given up after max_attempts, by endpoint.",
            |s| s.dead,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for s in status {
            let _ = writeln!(
                out,
                "{name}{{endpoint=\"{}\"}} {}",
                escape(&s.endpoint),
                value(s)
            );
        }
    }
    out
}

/// Per-campaign gauges from the store (every process that shares it reports the same):
/// accepted sends, complaints and whether the complaint-rate guard paused it, for the
/// campaigns not done or done within the last 7 days.
pub fn render_campaign_gauges(gauges: &[crate::store::campaigns::ComplaintGauge]) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, value: &dyn Fn(usize) -> u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (i, g) in gauges.iter().enumerate() {
            let (campaign, id) = (escape(&g.name), g.id);
            let _ = writeln!(
                out,
                "{name}{{campaign=\"{campaign}\",id=\"{id}\"}} {}",
                value(i)
            );
        }
    };
    gauge(
        "rebound_campaign_sent",
        "Messages of a campaign accepted by the relay.",
        &|i| gauges[i].sent,
    );
    gauge(
        "rebound_campaign_complaints",
        "Recipients of a campaign who complained.",
        &|i| gauges[i].complaints,
    );
    gauge(
        "rebound_campaign_paused",
        "1 while the complaint-rate guard holds a campaign paused.",
        &|i| u64::from(gauges[i].paused),
    );
    out
}

/// All counters in the Prometheus text exposition format.
pub fn render() -> String {
    let map = counters().lock().unwrap_or_else(|e| e.into_inner());
    let mut out = String::new();
    for (name, help) in HELP {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let mut any = false;
        for ((n, labels), value) in map.range((*name, Vec::new())..) {
            if n != name {
                break;
            }
            any = true;
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
            }
        }
        if !any {
            let _ = writeln!(out, "{name} 0");
        }
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn campaign_gauges_name_each_campaign() {
        let g =
            |id, name: &str, sent, complaints, paused| crate::store::campaigns::ComplaintGauge {
                id,
                name: name.into(),
                sent,
                complaints,
                paused,
            };
        let text =
            render_campaign_gauges(&[g(1, "spring", 4000, 13, true), g(2, "a\"b", 10, 0, false)]);
        assert!(
            text.contains("# TYPE rebound_campaign_complaints gauge"),
            "{text}"
        );
        assert!(
            text.contains("rebound_campaign_sent{campaign=\"spring\",id=\"1\"} 4000"),
            "{text}"
        );
        assert!(
            text.contains("rebound_campaign_complaints{campaign=\"spring\",id=\"1\"} 13"),
            "{text}"
        );
        assert!(
            text.contains("rebound_campaign_paused{campaign=\"spring\",id=\"1\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("rebound_campaign_paused{campaign=\"a\\\"b\",id=\"2\"} 0"),
            "{text}"
        );
    }

    #[test]
    fn render_shows_labelled_counters() {
        inc(SENDS, &[("result", "sent")]);
        add(SENDS, &[("result", "sent")], 2);
        let text = render();
        assert!(text.contains("# TYPE rebound_sends_total counter"));
        assert!(get(SENDS, &[("result", "sent")]) >= 3);
        assert!(text.contains("rebound_sends_total{result=\"sent\"}"));
        assert!(text.contains("rebound_pop3_polls_total"));
    }

    #[test]
    fn domain_labels_stay_bounded() {
        const NAME: &str = "rebound_test_bounded_total";
        for i in 0..30 {
            inc_bounded(NAME, "domain", &format!("d{i}.example"), 5);
        }
        inc_bounded(NAME, "domain", "d0.example", 5);
        assert_eq!(get(NAME, &[("domain", "d0.example")]), 2);
        assert_eq!(get(NAME, &[("domain", "d4.example")]), 1);
        assert_eq!(get(NAME, &[("domain", "d5.example")]), 0);
        assert_eq!(get(NAME, &[("domain", "other")]), 25);
    }
}
