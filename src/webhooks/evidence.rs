//! What a provider's event becomes before the pipeline judges it: the standard report
//! the detector already reads from a mailbox. A bounce is an RFC 3464 `multipart/report`
//! delivery-status notification, a complaint an RFC 5965 feedback report; either carries
//! the original message's headers (its Message-ID above all, which correlation ties to
//! our send) as a `text/rfc822-headers` part when the provider gives them.
//!
//! The report says only what the provider said, verbatim: the enhanced status code, the
//! remote server's diagnostic text, the remote MTA. The provider's own label ("hard",
//! "Permanent") goes into an `X-Provider-Label` field, which no rule reads: a label is a
//! summary, not evidence. The human-readable part says where the report came from and
//! nothing the detector could take for a reason.
//!
//! Every value is cut to one line (CR, LF and other controls become spaces) and to a
//! bounded length, so a provider's field can neither start a header nor a MIME boundary.

use std::fmt::Write as _;

/// The most characters kept of one provider value (a diagnostic text, a header).
const MAX_VALUE: usize = 4000;
/// The most original headers carried.
const MAX_HEADERS: usize = 100;

const BOUNDARY: &str = "=_rebound_webhook_report";

/// Whether delivery failed for good or is still being tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The provider gave up: `Action: failed`.
    Failed,
    /// The provider is still trying: `Action: delayed`.
    Delayed,
}

/// The headers of the message that bounced or was complained about, as the provider
/// gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Original {
    /// Its Message-ID (with or without angle brackets).
    pub message_id: Option<String>,
    /// Further headers, in order (a `Message-ID` among them is not repeated).
    pub headers: Vec<(String, String)>,
}

impl Original {
    /// Nothing is known of the original.
    pub fn is_empty(&self) -> bool {
        self.message_id.is_none() && self.headers.is_empty()
    }
}

/// One recipient's failure as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounce {
    /// The recipient's address.
    pub recipient: String,
    /// Failed or delayed.
    pub action: Action,
    /// The enhanced status code (RFC 3463, `5.1.1`), when the provider gives one.
    pub status: Option<String>,
    /// The remote server's reply or the provider's diagnostic text, verbatim.
    pub diagnostic: Option<String>,
    /// The remote MTA's name, when given.
    pub remote_mta: Option<String>,
    /// The provider's own label of the event (`Permanent/General`, `hard`), kept for
    /// people reading the report; no rule reads it.
    pub label: Option<String>,
}

/// A complaint as a provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Complaint {
    /// The recipients who complained (usually one).
    pub recipients: Vec<String>,
    /// `Feedback-Type` (`abuse` unless the provider says which).
    pub feedback_type: String,
}

/// Only the characters of `value` that can stand in one header line: controls become
/// spaces, white space runs are one, at most [`MAX_VALUE`] characters.
pub fn one_line(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_VALUE));
    let mut space = false;
    for c in value.trim().chars().take(MAX_VALUE) {
        if c.is_control() || c.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out.trim_end().to_owned()
}

/// An address as a DSN field can carry it: one token with an `@`, no brackets, no white
/// space or controls; `None` otherwise.
pub fn clean_address(value: &str) -> Option<String> {
    let a = value
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    let ok = !a.is_empty()
        && a.len() <= 320
        && a.contains('@')
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c));
    ok.then(|| a.to_owned())
}

/// A header name as it may stand in a header block (RFC 5322 ftext), or `None`.
fn header_name(name: &str) -> Option<&str> {
    let n = name.trim();
    (!n.is_empty() && n.len() <= 76 && n.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
        .then_some(n)
}

fn message_id(id: &str) -> String {
    let id = one_line(id);
    let bare = id.trim_start_matches('<').trim_end_matches('>');
    format!("<{bare}>")
}

/// The report's own headers and its human-readable first part.
fn head(out: &mut String, provider: &str, event_id: &str, report_type: &str, subject: &str) {
    let provider = one_line(provider);
    let id = one_line(event_id);
    let local: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '.' })
        .take(200)
        .collect();
    let _ = write!(
        out,
        "From: rebound webhook <webhook@{provider}.rebound.invalid>\r\n\
         Subject: {subject}\r\n\
         Message-ID: <webhook.{local}@{provider}.rebound.invalid>\r\n\
         X-Rebound-Webhook: {provider}; {id}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type={report_type}; boundary=\"{BOUNDARY}\"\r\n\
         \r\n\
         --{BOUNDARY}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Report made by rebound from {provider} webhook event {id}.\r\n\
         \r\n"
    );
}

/// The `text/rfc822-headers` part and the closing boundary.
fn tail(out: &mut String, original: &Original) {
    if !original.is_empty() {
        let _ = write!(
            out,
            "--{BOUNDARY}\r\nContent-Type: text/rfc822-headers; charset=utf-8\r\n\r\n"
        );
        if let Some(id) = &original.message_id {
            let _ = write!(out, "Message-ID: {}\r\n", message_id(id));
        }
        for (name, value) in original.headers.iter().take(MAX_HEADERS) {
            let Some(name) = header_name(name) else {
                continue;
            };
            if original.message_id.is_some() && name.eq_ignore_ascii_case("message-id") {
                continue;
            }
            let _ = write!(out, "{name}: {}\r\n", one_line(value));
        }
        out.push_str("\r\n");
    }
    let _ = write!(out, "--{BOUNDARY}--\r\n");
}

/// An RFC 3464 report of `bounces` (one recipient block each) from `provider`'s event
/// `event_id`, with the original's headers when known.
pub fn delivery_report(
    provider: &str,
    event_id: &str,
    bounces: &[Bounce],
    original: &Original,
) -> Vec<u8> {
    let mut out = String::with_capacity(1024);
    let failed = bounces.iter().any(|b| b.action == Action::Failed);
    let subject = if failed {
        "Delivery Status Notification (Failure)"
    } else {
        "Delivery Status Notification (Delay)"
    };
    head(&mut out, provider, event_id, "delivery-status", subject);
    let _ = write!(
        out,
        "--{BOUNDARY}\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; {}.rebound.invalid\r\n",
        one_line(provider)
    );
    for b in bounces {
        let Some(recipient) = clean_address(&b.recipient) else {
            continue;
        };
        let _ = write!(out, "\r\nFinal-Recipient: rfc822; {recipient}\r\n");
        let action = match b.action {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        };
        let _ = write!(out, "Action: {action}\r\n");
        if let Some(status) = b.status.as_deref().map(one_line).filter(|s| !s.is_empty()) {
            let _ = write!(out, "Status: {status}\r\n");
        }
        if let Some(mta) = b
            .remote_mta
            .as_deref()
            .map(one_line)
            .filter(|s| !s.is_empty())
        {
            let _ = write!(out, "Remote-MTA: dns; {mta}\r\n");
        }
        if let Some(d) = b
            .diagnostic
            .as_deref()
            .map(one_line)
            .filter(|s| !s.is_empty())
        {
            let _ = write!(out, "Diagnostic-Code: smtp; {d}\r\n");
        }
        if let Some(label) = b.label.as_deref().map(one_line).filter(|s| !s.is_empty()) {
            let _ = write!(out, "X-Provider-Label: {label}\r\n");
        }
    }
    out.push_str("\r\n");
    tail(&mut out, original);
    out.into_bytes()
}

/// An RFC 5965 feedback report of `complaint` from `provider`'s event `event_id`, with
/// the original's headers when known.
pub fn feedback_report(
    provider: &str,
    event_id: &str,
    complaint: &Complaint,
    original: &Original,
) -> Vec<u8> {
    let mut out = String::with_capacity(1024);
    head(
        &mut out,
        provider,
        event_id,
        "feedback-report",
        "Complaint about message",
    );
    let feedback_type = one_line(&complaint.feedback_type)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect::<String>();
    let feedback_type = if feedback_type.is_empty() {
        "abuse".to_owned()
    } else {
        feedback_type.to_ascii_lowercase()
    };
    let _ = write!(
        out,
        "--{BOUNDARY}\r\nContent-Type: message/feedback-report\r\n\r\n\
         Feedback-Type: {feedback_type}\r\n\
         User-Agent: rebound-webhook/{}\r\n\
         Version: 1\r\n",
        one_line(provider)
    );
    for r in complaint.recipients.iter().filter_map(|r| clean_address(r)) {
        let _ = write!(out, "Original-Rcpt-To: <{r}>\r\n");
    }
    out.push_str("\r\n");
    tail(&mut out, original);
    out.into_bytes()
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::verdict::{BounceClass, MessageKind};

    fn bounce(status: Option<&str>, diagnostic: Option<&str>) -> Bounce {
        Bounce {
            recipient: "Kijitora@Example.net".into(),
            action: Action::Failed,
            status: status.map(Into::into),
            diagnostic: diagnostic.map(Into::into),
            remote_mta: Some("mx.example.net".into()),
            label: Some("Permanent".into()),
        }
    }

    fn original() -> Original {
        Original {
            message_id: Some("rb.1-2-abc@example.org".into()),
            headers: vec![("Subject".into(), "Hello\r\nBcc: x@example.com".into())],
        }
    }

    #[test]
    fn evidence_user_unknown_is_a_hard_bounce_with_the_original() {
        let raw = delivery_report(
            "mailgun",
            "ev-1",
            &[bounce(
                Some("5.1.1"),
                Some("550 5.1.1 <kijitora@example.net>: Recipient address rejected: User unknown"),
            )],
            &original(),
        );
        let d = crate::detector::detect(&raw);
        assert_eq!(d.verdict.kind, MessageKind::Bounce, "{d:?}");
        let r = &d.verdict.recipients[0];
        assert_eq!(r.bounce, Some(BounceClass::Hard), "{d:?}");
        assert_eq!(r.status.as_deref(), Some("5.1.1"));
        assert_eq!(
            d.report.original.as_ref().unwrap().message_id.as_deref(),
            Some("rb.1-2-abc@example.org")
        );
        // A provider's value never starts a header line of its own.
        let text = String::from_utf8(raw).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
    }

    #[test]
    fn evidence_blocklisted_ip_is_not_the_recipients_fault() {
        let raw = delivery_report(
            "mailgun",
            "ev-2",
            &[bounce(
                Some("5.7.1"),
                Some(
                    "550 5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org",
                ),
            )],
            &Original::default(),
        );
        let d = crate::detector::detect(&raw);
        let r = &d.verdict.recipients[0];
        assert_ne!(r.bounce, Some(BounceClass::Hard), "{d:?}");
        assert_eq!(r.blame, Some(crate::verdict::Blame::Sender), "{d:?}");
    }

    #[test]
    fn evidence_label_alone_is_not_a_hard_bounce() {
        let raw = delivery_report("ses", "ev-3", &[bounce(None, None)], &Original::default());
        let d = crate::detector::detect(&raw);
        let r = &d.verdict.recipients[0];
        assert_eq!(d.verdict.kind, MessageKind::Bounce);
        assert_ne!(r.bounce, Some(BounceClass::Hard), "{d:?}");
    }

    #[test]
    fn evidence_complaint_is_a_feedback_report() {
        let raw = feedback_report(
            "postmark",
            "ev-4",
            &Complaint {
                recipients: vec!["kijitora@example.net".into()],
                feedback_type: "abuse".into(),
            },
            &original(),
        );
        let d = crate::detector::detect(&raw);
        assert_eq!(d.verdict.kind, MessageKind::Complaint, "{d:?}");
        assert_eq!(d.verdict.recipients[0].address, "kijitora@example.net");
    }

    #[test]
    fn evidence_values_are_one_bounded_line() {
        assert_eq!(one_line(" a\r\n\tb\u{0}c "), "a b c");
        assert_eq!(one_line(&"x".repeat(10_000)).len(), MAX_VALUE);
        assert_eq!(
            clean_address("<a@b.example>").as_deref(),
            Some("a@b.example")
        );
        assert_eq!(clean_address("a b@c"), None);
        assert_eq!(clean_address("nobody"), None);
    }
}
