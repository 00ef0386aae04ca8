//! JSON delivery notifications sent by mail (Amazon SES through SNS, and the same shape
//! without the SNS envelope): the text of the message in, the notification type and its
//! per-recipient facts out.

use serde_json::Value;

use super::{DeliveryReport, dsn};

/// What a JSON notification says.
#[derive(Debug, Default)]
pub(crate) struct Notification {
    /// `Bounce`, `Complaint` or `Delivery`.
    pub kind: String,
    /// Per-recipient facts.
    pub reports: Vec<DeliveryReport>,
    /// For complaints: the feedback type.
    pub feedback_type: Option<String>,
    /// The original message's id and headers, when given.
    pub headers: Vec<(String, String)>,
}

/// Reads a JSON notification from the text, if there is one.
pub(crate) fn parse(text: &str) -> Option<Notification> {
    if !text.contains("notificationType") && !text.contains("eventType") {
        return None;
    }
    // SNS wraps long lines with "!" + newline + space when it mails a notification.
    let cleaned = text.replace("!\n ", "");
    let start = cleaned.find('{')?;
    let slice = cleaned.get(start..)?;
    let mut stream = serde_json::Deserializer::from_str(slice).into_iter::<Value>();
    let mut value = stream.next()?.ok()?;
    if let Some(inner) = value.get("Message").and_then(Value::as_str) {
        value = serde_json::from_str(inner).ok()?;
    }
    let kind = value
        .get("notificationType")
        .or_else(|| value.get("eventType"))
        .and_then(Value::as_str)?
        .to_owned();
    let mut n = Notification {
        kind: kind.clone(),
        ..Default::default()
    };
    if let Some(headers) = value.pointer("/mail/headers").and_then(Value::as_array) {
        for h in headers.iter().take(200) {
            if let (Some(name), Some(v)) = (
                h.get("name").and_then(Value::as_str),
                h.get("value").and_then(Value::as_str),
            ) {
                n.headers.push((name.to_owned(), v.to_owned()));
            }
        }
    }
    let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    match kind.as_str() {
        "Bounce" => {
            let b = value.get("bounce")?;
            let mta = str_of(b, "reportingMTA").map(|m| dsn::strip_type(&m).to_owned());
            let permanent = b.get("bounceType").and_then(Value::as_str) == Some("Permanent");
            for r in b
                .get("bouncedRecipients")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                n.reports.push(DeliveryReport {
                    final_recipient: str_of(r, "emailAddress").and_then(|a| dsn::address(&a)),
                    action: str_of(r, "action")
                        .or_else(|| Some(if permanent { "failed" } else { "delayed" }.to_owned())),
                    status: str_of(r, "status"),
                    diagnostic_code: str_of(r, "diagnosticCode")
                        .map(|d| dsn::strip_type(&d).to_owned()),
                    remote_mta: mta.clone(),
                    ..Default::default()
                });
            }
        }
        "Complaint" => {
            let c = value.get("complaint")?;
            n.feedback_type =
                str_of(c, "complaintFeedbackType").or_else(|| Some("abuse".to_owned()));
            for r in c
                .get("complainedRecipients")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                n.reports.push(DeliveryReport {
                    final_recipient: str_of(r, "emailAddress").and_then(|a| dsn::address(&a)),
                    ..Default::default()
                });
            }
        }
        "Delivery" => {
            let d = value.get("delivery")?;
            let mta = str_of(d, "reportingMTA").map(|m| dsn::strip_type(&m).to_owned());
            let diag = str_of(d, "smtpResponse");
            for r in d
                .get("recipients")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(a) = r.as_str() {
                    n.reports.push(DeliveryReport {
                        final_recipient: dsn::address(a),
                        action: Some("delivered".to_owned()),
                        diagnostic_code: diag.clone(),
                        remote_mta: mta.clone(),
                        ..Default::default()
                    });
                }
            }
        }
        _ => return None,
    }
    Some(n)
}
