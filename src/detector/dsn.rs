//! RFC 3464 delivery-status fields: the body of a `message/delivery-status` part (or the
//! same fields found in a mislabelled text part) in, the per-message fields and one
//! [`DeliveryReport`] per recipient block out.
//!
//! Blocks are split on blank lines *and* on a repeated recipient field, so reports that
//! forget the blank line between recipients still give every recipient.

use super::DeliveryReport;

/// A parsed delivery-status body.
#[derive(Debug, Default)]
pub(crate) struct StatusFields {
    /// Per-message fields (`Reporting-MTA`, `Arrival-Date`, …) as (lower-case name, value).
    pub per_message: Vec<(String, String)>,
    /// One report per recipient block, in order.
    pub recipients: Vec<DeliveryReport>,
}

impl StatusFields {
    #[cfg(test)]
    pub(crate) fn message_field(&self, name: &str) -> Option<&str> {
        self.per_message
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Unfolds `Name: value` lines (continuations start with white space). Blank lines are
/// kept as `None` so callers can see block boundaries.
pub(crate) fn fields(text: &str) -> Vec<Option<(String, String)>> {
    let mut out: Vec<Option<(String, String)>> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            out.push(None);
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(Some((_, v))) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value))
                if !name.is_empty()
                    && name.len() <= 64
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                out.push(Some((name.to_ascii_lowercase(), value.trim().to_owned())));
            }
            _ => out.push(None),
        }
    }
    out
}

/// Strips an address-type or MTA-type prefix (`rfc822;`, `dns;`, `smtp;`).
pub(crate) fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((ty, rest))
            if !ty.is_empty() && ty.len() <= 16 && !ty.contains(' ') && !ty.contains('@') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

/// An address from a recipient field: `rfc822; <A@Example.COM>` → `A@example.com`.
pub(crate) fn address(value: &str) -> Option<String> {
    let v = strip_type(value);
    let v = v
        .trim_matches(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"' || c == '\'');
    let v = v.split_whitespace().next().unwrap_or("");
    let v = v.trim_matches(|c: char| {
        c == '<' || c == '>' || c == '"' || c == '\'' || c == ',' || c == ';'
    });
    if v.is_empty() {
        return None;
    }
    // A quoted local part: "a..b"@example.com → a..b@example.com.
    let unquoted;
    let v = match v.rsplit_once('@') {
        Some((local, domain))
            if local.len() >= 2 && local.starts_with('"') && local.ends_with('"') =>
        {
            unquoted = format!("{}@{}", local.trim_matches('"'), domain);
            unquoted.as_str()
        }
        Some((local, domain)) if local.ends_with('"') && !local.contains(' ') => {
            unquoted = format!("{}@{}", local.trim_matches('"'), domain);
            unquoted.as_str()
        }
        _ => v,
    };
    Some(normalize_address(v))
}

/// Lower-cases the domain part (and the local part: mailbox names are matched without case
/// in practice, and reports disagree on case).
pub(crate) fn normalize_address(addr: &str) -> String {
    addr.trim().trim_end_matches('.').to_lowercase()
}

/// Parses delivery-status fields. Returns `None` when there is not one recipient block.
pub(crate) fn parse(text: &str) -> Option<StatusFields> {
    let mut out = StatusFields::default();
    let mut current: Option<DeliveryReport> = None;
    let mut seen_recipient_field = false;
    let mut blank_since_last = false;
    for item in fields(text) {
        let Some((name, value)) = item else {
            blank_since_last = true;
            continue;
        };
        let is_recipient_field = matches!(
            name.as_str(),
            "final-recipient"
                | "original-recipient"
                | "action"
                | "status"
                | "diagnostic-code"
                | "remote-mta"
                | "last-attempt-date"
                | "will-retry-until"
                | "x-actual-recipient"
        );
        if !is_recipient_field {
            if !seen_recipient_field {
                out.per_message.push((name, value));
            }
            continue;
        }
        seen_recipient_field = true;
        let starts_new = match current.as_ref() {
            None => true,
            Some(r) => match name.as_str() {
                "original-recipient" => {
                    r.original_recipient.is_some()
                        || r.final_recipient.is_some() && blank_since_last
                        || r.final_recipient.is_some() && r.status.is_some()
                }
                "final-recipient" => r.final_recipient.is_some(),
                "action" => r.action.is_some() && (blank_since_last || r.final_recipient.is_some()),
                "status" => r.status.is_some() && blank_since_last,
                _ => false,
            },
        };
        blank_since_last = false;
        if starts_new {
            if let Some(r) = current.take() {
                out.recipients.push(r);
            }
            current = Some(DeliveryReport::default());
        }
        let Some(r) = current.as_mut() else { continue };
        match name.as_str() {
            "final-recipient" => r.final_recipient = address(&value),
            "original-recipient" => r.original_recipient = address(&value),
            "x-actual-recipient"
                if r.final_recipient
                    .as_deref()
                    .is_none_or(|f| !f.contains('@')) =>
            {
                r.final_recipient = address(&value);
            }
            "action" => {
                r.action = Some(
                    value
                        .split_whitespace()
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase(),
                )
            }
            "status" => r.status = Some(value),
            "diagnostic-code" => {
                // Only the SMTP types are dropped; `X-Unix;` and the like say who answered.
                let smtp = value.split_once(';').is_some_and(|(t, _)| {
                    matches!(
                        t.trim().to_ascii_lowercase().as_str(),
                        "smtp" | "esmtp" | "lmtp"
                    )
                });
                let d = if smtp {
                    strip_type(&value)
                } else {
                    value.trim()
                };
                if !d.is_empty() {
                    r.diagnostic_code = Some(d.to_owned());
                }
            }
            "remote-mta" => {
                let m = strip_type(&value);
                if !m.is_empty() {
                    r.remote_mta = Some(m.trim_matches(|c| c == '[' || c == ']').to_owned());
                }
            }
            "last-attempt-date" => r.last_attempt_date = Some(value),
            _ => {}
        }
    }
    if let Some(r) = current.take() {
        out.recipients.push(r);
    }
    out.recipients.retain(|r| {
        r.final_recipient.is_some()
            || r.original_recipient.is_some()
            || r.status.is_some()
            || r.action.is_some()
    });
    if out.recipients.is_empty() {
        None
    } else {
        Some(out)
    }
}

/// True when `text` carries delivery-status fields (a mislabelled report).
pub(crate) fn looks_like_status(text: &str) -> bool {
    let mut final_rcpt = false;
    let mut status_or_action = false;
    for line in text.lines() {
        let l = line.trim_start().as_bytes();
        let starts = |p: &str| {
            l.get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p.as_bytes()))
        };
        if starts("final-recipient:") || starts("original-recipient:") {
            final_rcpt = true;
        } else if starts("action:") || starts("status:") || starts("diagnostic-code:") {
            status_or_action = true;
        }
        if final_rcpt && status_or_action {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn parse_reads_every_recipient_block() {
        let text = "Reporting-MTA: dns; mx.example.net\nArrival-Date: today\n\nFinal-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <a@example.com>:\n  User unknown\n\nFinal-Recipient: rfc822; B@Example.COM\nAction: delayed\nStatus: 4.4.1\nRemote-MTA: dns; [192.0.2.1]\n";
        let f = parse(text).unwrap();
        assert_eq!(
            f.message_field("reporting-mta"),
            Some("dns; mx.example.net")
        );
        assert_eq!(f.recipients.len(), 2);
        assert_eq!(
            f.recipients[0].diagnostic_code.as_deref(),
            Some("550 5.1.1 <a@example.com>: User unknown")
        );
        assert_eq!(
            f.recipients[1].final_recipient.as_deref(),
            Some("b@example.com")
        );
        assert_eq!(f.recipients[1].remote_mta.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn parse_splits_blocks_without_blank_lines() {
        let text = "Final-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1\nFinal-Recipient: rfc822; b@example.com\nAction: failed\nStatus: 5.2.2\n";
        let f = parse(text).unwrap();
        assert_eq!(f.recipients.len(), 2);
        assert_eq!(f.recipients[1].status.as_deref(), Some("5.2.2"));
    }

    #[test]
    fn parse_rejects_text_without_recipient_fields() {
        assert!(parse("Hello: world\n\nnothing here").is_none());
    }
}
