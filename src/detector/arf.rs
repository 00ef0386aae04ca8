//! RFC 5965 feedback reports (ARF) and one-click unsubscribe requests: a parsed message
//! in, the complained-about recipients and the feedback type out. A complaint is never a
//! bounce: the recipients get no hard/soft class.

use super::dsn;
use super::mime::Mail;

/// What a feedback report says.
#[derive(Debug, Default)]
pub(crate) struct Feedback {
    /// `Feedback-Type` (`abuse`, `opt-out`, `auth-failure`, …), lower-case.
    pub feedback_type: Option<String>,
    /// The recipients complained about.
    pub recipients: Vec<String>,
}

/// Reads a feedback report, if the message is one.
pub(crate) fn parse(mail: &Mail) -> Option<Feedback> {
    let is_report =
        mail.report_type.as_deref() == Some("feedback-report") || !mail.feedback_parts.is_empty();
    if is_report {
        let mut fb = Feedback::default();
        let mut removal = Vec::new();
        for part in &mail.feedback_parts {
            for (name, value) in dsn::fields(part).into_iter().flatten() {
                match name.as_str() {
                    "feedback-type" if fb.feedback_type.is_none() => {
                        fb.feedback_type = Some(value.trim().to_ascii_lowercase());
                    }
                    "original-rcpt-to" => push_unique(&mut fb.recipients, dsn::address(&value)),
                    "removal-recipient" => push_unique(&mut removal, dsn::address(&value)),
                    _ => {}
                }
            }
        }
        if fb.recipients.is_empty() {
            fb.recipients = removal;
        }
        if fb.recipients.is_empty()
            && let Some(to) = mail.original.as_ref().and_then(|o| o.header("to"))
        {
            for a in super::heuristic::addresses(to) {
                push_unique(&mut fb.recipients, Some(a));
            }
        }
        if fb.feedback_type.is_none() {
            fb.feedback_type = Some("abuse".to_owned());
        }
        return Some(fb);
    }
    // A provider's complaint that is not ARF: "complaint about message from <ip>" with the
    // complained-about message attached.
    let subject = mail
        .subject
        .as_deref()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if subject.starts_with("complaint about message")
        && let Some(o) = &mail.original
    {
        let mut fb = Feedback {
            feedback_type: Some("abuse".to_owned()),
            recipients: Vec::new(),
        };
        for name in ["x-hmxmroriginalrecipient", "x-original-to", "to"] {
            if let Some(v) = o.header(name) {
                for a in super::heuristic::addresses(v) {
                    push_unique(&mut fb.recipients, Some(a));
                }
            }
            if !fb.recipients.is_empty() {
                break;
            }
        }
        return Some(fb);
    }
    // A mailbox provider's one-click unsubscribe request sent on the subscriber's behalf.
    if mail
        .header("x-apple-unsubscribe")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        let mut fb = Feedback {
            feedback_type: Some("opt-out".to_owned()),
            recipients: Vec::new(),
        };
        push_unique(&mut fb.recipients, mail.from.clone());
        return Some(fb);
    }
    None
}

fn push_unique(list: &mut Vec<String>, a: Option<String>) {
    if let Some(a) = a
        && !a.is_empty()
        && !list.contains(&a)
    {
        list.push(a);
    }
}
