//! The built-in bounce detector: raw message bytes in, a [`Detection`] out — the facts
//! read off the message ([`BounceReport`]) and the built-in [`Verdict`].
//!
//! A hostile message is data, not an error: [`detect`] never fails and never panics; what
//! it could not understand becomes kind `other` with [`BounceReport::error`] set.
//!
//! The sub-parsers are tried in a fixed order; the first that recognises the message
//! decides (`BounceReport::parser` names it):
//!
//! 1. `arf` — RFC 5965 feedback reports and one-click unsubscribe requests → complaint
//! 2. `json` — JSON notifications mailed by a sending service (Amazon SES)
//! 3. `dsn` — RFC 3464 reports: `message/delivery-status` parts, also nested in an
//!    attached report or mislabelled as text → bounce, or delivery-notice when every
//!    recipient was delivered, relayed or expanded
//! 4. `auto-reply` — RFC 3834 automatic replies → auto-reply
//! 5. `heuristic` — non-standard bounce texts ([`heuristic`](self) rules) → bounce
//! 6. anything else → other
//!
//! The reason of each recipient comes from [`reason::classify`]; hard or soft from
//! [`BounceClass::derive`].

use serde::Serialize;

use crate::verdict::{BUILTIN, Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

mod arf;
mod autoreply;
mod dsn;
mod heuristic;
mod mime;
mod notification;
mod original;
pub mod reason;
pub mod status;
mod transfer;

/// One per-recipient block of a delivery-status report (RFC 3464), or the same facts read
/// off a non-standard bounce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryReport {
    /// `Final-Recipient`, without the `rfc822;` type.
    pub final_recipient: Option<String>,
    /// `Original-Recipient`, without the `rfc822;` type.
    pub original_recipient: Option<String>,
    /// `Action`: failed, delayed, delivered, relayed, expanded.
    pub action: Option<String>,
    /// `Status`: the RFC 3463 code.
    pub status: Option<String>,
    /// `Diagnostic-Code`, without the `smtp;` type, unfolded.
    pub diagnostic_code: Option<String>,
    /// `Remote-MTA`, without the `dns;` type.
    pub remote_mta: Option<String>,
    /// `Last-Attempt-Date`.
    pub last_attempt_date: Option<String>,
}

/// The returned original message, when the bounce carries it (whole or headers only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OriginalMessage {
    /// Its `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    /// Its headers, in order, as (name, value).
    pub headers: Vec<(String, String)>,
}

impl OriginalMessage {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the detector read off one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BounceReport {
    /// The top-level headers, in order, as (name, decoded value).
    pub headers: Vec<(String, String)>,
    /// The decoded `Subject`.
    pub subject: Option<String>,
    /// The `From` address.
    pub from: Option<String>,
    /// The human-readable text of the message, decoded to UTF-8 (bounded).
    pub text: String,
    /// The delivery reports, one per recipient block, in message order.
    pub reports: Vec<DeliveryReport>,
    /// The original message, when attached.
    pub original: Option<OriginalMessage>,
    /// Which sub-parser recognised the message (`dsn`, `arf`, `heuristic:postfix`, …).
    pub parser: Option<String>,
    /// Set when the message could not be parsed at all.
    pub error: Option<String>,
}

/// The detector's output for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Detection {
    /// The facts read off the message.
    pub report: BounceReport,
    /// The built-in verdict (`decided_by` = `builtin`).
    pub verdict: Verdict,
}

/// Reads one raw message (LF, CRLF or CR line endings) and returns the facts and the
/// built-in verdict. Never fails, never panics.
///
/// # Examples
/// ```
/// use rebound::detector::detect;
/// use rebound::verdict::MessageKind;
/// let d = detect(b"From: a@example.com\nTo: b@example.net\nSubject: hello\n\nJust a note.\n");
/// assert_eq!(d.verdict.kind, MessageKind::Other);
/// ```
pub fn detect(raw: &[u8]) -> Detection {
    if let Ok(d) = std::panic::catch_unwind(|| detect_message(raw)) {
        return d;
    }
    // The MIME parser gave up on this structure (it has debug assertions on malformed
    // nesting). Read the message once more as one plain-text body.
    let flat = without_mime_headers(raw);
    match std::panic::catch_unwind(|| detect_message(&flat)) {
        Ok(mut d) => {
            d.report.error = Some("MIME structure could not be read; read as plain text".into());
            d
        }
        Err(_) => failed("internal error while reading the message"),
    }
}

/// The message with its top-level `Content-Type` and `Content-Transfer-Encoding` headers
/// removed, so the body is read as plain text.
fn without_mime_headers(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_headers = true;
    let mut skipping = false;
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if in_headers {
            let trimmed: &[u8] = line.strip_suffix(b"\n").unwrap_or(line);
            let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
            if trimmed.is_empty() {
                in_headers = false;
            } else if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                if skipping {
                    continue;
                }
            } else {
                let lower = trimmed.to_ascii_lowercase();
                skipping = lower.starts_with(b"content-type:")
                    || lower.starts_with(b"content-transfer-encoding:");
                if skipping {
                    continue;
                }
            }
        }
        out.extend_from_slice(line);
    }
    out
}

/// At most this many recipients are read from one message.
const MAX_RECIPIENTS: usize = 1000;

/// At most this much human-readable text goes into [`BounceReport::text`].
const MAX_REPORT_TEXT: usize = 64 * 1024;

fn failed(error: &str) -> Detection {
    Detection {
        report: BounceReport {
            error: Some(error.to_owned()),
            ..Default::default()
        },
        verdict: Verdict {
            kind: MessageKind::Other,
            recipients: Vec::new(),
            decided_by: BUILTIN.into(),
        },
    }
}

/// Builds the detector's tables now instead of on the first message that needs each.
/// They come in two halves of about equal cost (`half` 0 and 1) so that two threads can
/// build them while a one-shot `rebound classify` lists its inputs.
pub fn warm_up(half: usize) {
    if half == 0 {
        reason::warm_up();
    } else {
        mime::warm_up();
        heuristic::warm_up();
        original::warm_up();
        autoreply::warm_up();
    }
}

fn detect_message(raw: &[u8]) -> Detection {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return failed("empty message");
    }
    let normalized = mime::normalize_newlines(raw);
    let Some(mut mail) = mime::read(&normalized) else {
        return failed("no message headers found");
    };
    let full_text = mail.text();
    let split = original::split_point(&full_text);
    let btext = match split {
        Some((cut, _)) => full_text.get(..cut).unwrap_or(&full_text),
        None => &full_text,
    };
    if mail.original.is_none()
        && let Some((_, start)) = split
    {
        mail.original = full_text.get(start..).and_then(original::from_header_text);
    }
    let report = BounceReport {
        subject: mail.subject.clone(),
        from: mail.from.clone(),
        text: truncate(&full_text, MAX_REPORT_TEXT).to_owned(),
        ..Default::default()
    };
    let mut d = decide(&mail, report, &full_text, btext);
    // The headers and the original are moved, not copied, into the report.
    d.report.headers = std::mem::take(&mut mail.headers);
    if d.report.original.is_none() {
        d.report.original = mail.original.take();
    }
    d
}

/// Runs the sub-parsers in order over the flattened message.
fn decide(mail: &mime::Mail, mut report: BounceReport, full_text: &str, btext: &str) -> Detection {
    // 1. Feedback reports.
    if let Some(fb) = arf::parse(mail) {
        report.parser = Some("arf".into());
        let recipients = fb
            .recipients
            .iter()
            .map(|a| RecipientVerdict {
                feedback_type: fb.feedback_type.clone(),
                ..RecipientVerdict::new(a.clone(), Reason::Feedback)
            })
            .collect();
        return done(report, MessageKind::Complaint, recipients);
    }

    // 2. JSON notifications.
    if let Some(n) = notification::parse(full_text) {
        report.parser = Some("json".into());
        if mail.original.is_none() && !n.headers.is_empty() {
            let message_id = n
                .headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("message-id"))
                .map(|(_, v)| original::clean_message_id(v));
            report.original = Some(OriginalMessage {
                message_id,
                headers: n.headers.clone(),
            });
        }
        if n.kind == "Complaint" {
            let recipients = n
                .reports
                .iter()
                .filter_map(|r| r.final_recipient.clone())
                .map(|a| RecipientVerdict {
                    feedback_type: n.feedback_type.clone(),
                    ..RecipientVerdict::new(a, Reason::Feedback)
                })
                .collect();
            report.reports = n.reports;
            return done(report, MessageKind::Complaint, recipients);
        }
        report.reports = n.reports;
        return from_reports(report, mail, btext);
    }

    // 3. Delivery-status reports.
    let mut reports: Vec<DeliveryReport> = Vec::new();
    for part in &mail.status_parts {
        if let Some(f) = dsn::parse(part) {
            reports.extend(f.recipients);
        }
    }
    if reports.is_empty() {
        for t in &mail.texts {
            // One text is the whole text, whose bounce part is known already.
            let bt = if mail.texts.len() == 1 {
                btext
            } else {
                heuristic::bounce_text(t)
            };
            if dsn::looks_like_status(bt)
                && let Some(f) = dsn::parse(bt)
            {
                reports.extend(f.recipients);
            }
        }
    }
    if !reports.is_empty() {
        // Every recipient of a real report, but a bounded number from a hostile one.
        reports.truncate(MAX_RECIPIENTS);
        report.parser = Some("dsn".into());
        report.reports = reports;
        return from_reports(report, mail, btext);
    }

    // 4. Automatic replies.
    let looks_bounce = heuristic::is_bounce(mail, btext);
    if !looks_bounce && autoreply::is_auto_reply(mail) {
        report.parser = Some("auto-reply".into());
        // A reply names the message it answers: that ties it to the send.
        if report.original.is_none()
            && let Some(id) = mail.header("in-reply-to")
        {
            report.original = Some(OriginalMessage {
                message_id: Some(original::clean_message_id(id)),
                headers: Vec::new(),
            });
        }
        let from = mail.from.iter().filter(|a| a.contains('@'));
        // "This inbox is no longer in use": a soft bounce (suspend) for the address the
        // line names, else the one that replied.
        if let Some(line) = autoreply::abandoned(btext) {
            let senders = heuristic::sender_addresses(mail);
            let address = heuristic::addresses(&line)
                .into_iter()
                .find(|a| !senders.contains(a))
                .or_else(|| from.clone().next().cloned());
            if let Some(address) = address {
                let bounce = BounceClass::derive(MessageKind::Bounce, Reason::Suspend, None, None);
                let verdict = RecipientVerdict {
                    bounce,
                    blame: Blame::of_failure(bounce, Reason::Suspend),
                    diagnostic: Some(line),
                    ..RecipientVerdict::new(address, Reason::Suspend)
                };
                return done(report, MessageKind::Bounce, vec![verdict]);
            }
        }
        let recipients = from
            .map(|a| RecipientVerdict::new(a.clone(), Reason::Vacation))
            .collect();
        return done(report, MessageKind::AutoReply, recipients);
    }

    // 5. Non-standard bounces.
    if looks_bounce {
        let found = heuristic::recipients(mail, btext);
        if !found.is_empty() {
            report.parser = Some("heuristic".into());
            let whole_permanence = heuristic::permanence(btext);
            report.reports = found
                .iter()
                .map(|f| {
                    let diag = heuristic::diagnostic_lines(&f.block, &f.address);
                    let permanent = heuristic::permanence(&f.block).or(whole_permanence);
                    DeliveryReport {
                        final_recipient: Some(f.address.clone()),
                        action: Some(
                            if permanent == Some(false) {
                                "delayed"
                            } else {
                                "failed"
                            }
                            .to_owned(),
                        ),
                        status: status::pick(&f.block, None),
                        diagnostic_code: diag,
                        ..Default::default()
                    }
                })
                .collect();
            let blocks: Vec<String> = found.into_iter().map(|f| f.block).collect();
            return from_text_reports(report, mail, btext, &blocks);
        }
        // A bounce that names no recipient the rules can trust is still a bounce: the
        // mailbox poller ties it to its send through VERP or the Message-ID.
        report.parser = Some("heuristic".into());
        return done(report, MessageKind::Bounce, Vec::new());
    }

    report.parser = None;
    done(report, MessageKind::Other, Vec::new())
}

/// The verdict for an SMTP reply received while sending (a synchronous rejection), read
/// with the same rules as a bounce's diagnostic: `550 5.1.1 <a@example.com>: User unknown`
/// for `RCPT TO` is a hard user-unknown, `554 5.7.1 … spam` a soft spam-detected.
/// Replies below 400 are not failures and get no class.
///
/// # Examples
/// ```
/// use rebound::detector::verdict_for_reply;
/// use rebound::verdict::{BounceClass, Reason};
/// let v = verdict_for_reply("a@example.com", 550, "5.1.1 <a@example.com>: Recipient address rejected: User unknown");
/// assert_eq!((v.bounce, v.reason), (Some(BounceClass::Hard), Reason::UserUnknown));
/// ```
pub fn verdict_for_reply(address: &str, code: u16, text: &str) -> RecipientVerdict {
    let failed = code >= 400;
    let class = char::from(b'0' + (code / 100).min(9) as u8);
    let line = format!("{code} {text}");
    let mut st = status::pick(&line, Some(class));
    let action = if code >= 500 {
        "failed"
    } else if failed {
        "delayed"
    } else {
        "delivered"
    };
    let reason = if failed {
        // The reply answers RCPT TO unless the text says otherwise.
        reason::classify_in(
            &line,
            "in reply to RCPT TO command",
            st.as_deref(),
            Some(action),
        )
    } else {
        Reason::Delivered
    };
    if st.is_none() {
        st = status::synthesize(class, reason);
    }
    let kind = if failed {
        MessageKind::Bounce
    } else {
        MessageKind::DeliveryNotice
    };
    let bounce = BounceClass::derive(kind, reason, st.as_deref(), Some(action));
    RecipientVerdict {
        address: dsn::normalize_address(address),
        bounce,
        status: st,
        reason,
        blame: Blame::of_failure(bounce, reason),
        diagnostic: Some(line),
        action: Some(action.to_owned()),
        remote_mta: None,
        feedback_type: None,
        aliases: Vec::new(),
    }
}

fn done(report: BounceReport, kind: MessageKind, recipients: Vec<RecipientVerdict>) -> Detection {
    Detection {
        report,
        verdict: Verdict {
            kind,
            recipients,
            decided_by: BUILTIN.into(),
        },
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Verdict from DSN-like reports (standard or JSON).
fn from_reports(mut report: BounceReport, mail: &mime::Mail, btext: &str) -> Detection {
    // Fill in recipients the report left out from the text.
    // A recipient field without a usable address (a pipe, "@host") counts as missing.
    for r in report.reports.iter_mut() {
        let usable = |a: &Option<String>| {
            a.as_deref().is_some_and(|a| {
                // A host's local name without a dotted domain is not an address we sent to.
                a.split_once('@').is_some_and(|(l, d)| {
                    !l.is_empty()
                        && d.contains('.')
                        && !d.starts_with('.')
                        && !d.ends_with('.')
                        && !a.contains(' ')
                        && !a.starts_with('|')
                })
            })
        };
        if !usable(&r.final_recipient) && !usable(&r.original_recipient) {
            r.final_recipient = None;
            r.original_recipient = None;
        }
    }
    let text_found = if report
        .reports
        .iter()
        .any(|r| r.final_recipient.is_none() && r.original_recipient.is_none())
    {
        heuristic::recipients(mail, btext)
    } else {
        Vec::new()
    };
    let mut unnamed = 0usize;
    for r in report.reports.iter_mut() {
        if r.final_recipient.is_none() && r.original_recipient.is_none() {
            if let Some(f) = text_found.get(unnamed) {
                r.final_recipient = Some(f.address.clone());
            }
            unnamed += 1;
        }
    }
    let lower = btext.to_lowercase();
    let blocks: Vec<String> = report
        .reports
        .iter()
        .map(|r| {
            address_of(r)
                .and_then(|a| heuristic::block_for(btext, &lower, &a))
                .unwrap_or_default()
        })
        .collect();
    from_text_reports(report, mail, btext, &blocks)
}

fn address_of(r: &DeliveryReport) -> Option<String> {
    let f = r.final_recipient.as_deref().filter(|a| a.contains('@'));
    let o = r.original_recipient.as_deref().filter(|a| a.contains('@'));
    f.or(o)
        .or(r.final_recipient.as_deref())
        .or(r.original_recipient.as_deref())
        .map(str::to_owned)
}

/// The verdict for reports whose facts are in `report.reports`; `blocks[i]` is the human
/// text about recipient `i` (may be empty).
fn from_text_reports(
    report: BounceReport,
    mail: &mime::Mail,
    btext: &str,
    blocks: &[String],
) -> Detection {
    // Addresses that are never aliases: the report's recipients and the sender's own
    // ([`heuristic::sender_addresses`]), read only when a diagnostic names an address.
    let mut not_aliases: Option<Vec<String>> = None;
    let mut recipients: Vec<RecipientVerdict> = Vec::new();
    // A report in which nothing failed — delivered, relayed, expanded — is a notice, not a
    // bounce. A delay warning is a (soft) bounce: delivery failed so far, and the sender
    // should know; the store counts it once with the final failure of the same message.
    let all_delivered = report.reports.iter().all(|r| {
        r.action
            .as_deref()
            .is_some_and(|a| matches!(a, "delivered" | "relayed" | "expanded" | "deliverable"))
            || r.status
                .as_deref()
                .is_some_and(|s| s.trim_start().starts_with('2'))
    });
    let kind = if all_delivered {
        MessageKind::DeliveryNotice
    } else {
        MessageKind::Bounce
    };
    // The reason the whole bounce text names, read once: every recipient without a text
    // block of its own falls back to it.
    let mut btext_reason: Option<Option<Reason>> = None;
    let mut from_text = |text: &str| {
        if std::ptr::eq(text, btext) {
            *btext_reason.get_or_insert_with(|| reason::from_text(btext))
        } else {
            reason::from_text(text)
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (i, r) in report.reports.iter().enumerate() {
        let Some(address) = address_of(r) else {
            continue;
        };
        if !seen.insert(address.clone()) {
            continue;
        }
        let block = blocks.get(i).map(String::as_str).unwrap_or("");
        let diag = r.diagnostic_code.clone().filter(|d| !d.trim().is_empty());
        let diag_text = diag.as_deref().unwrap_or("");
        // Status: the report's, made more specific by the diagnostic when it only says x.0.0.
        let mut st = r.status.as_deref().and_then(status::normalize);
        let class = st.as_deref().and_then(|s| s.chars().next());
        // The remote server's own code is more precise than the reporting MTA's summary:
        // a code of the same class in the diagnostic (not the one the report repeats) wins.
        // When the diagnostic repeats the report's own code, they agree and it stands.
        let agrees = st
            .as_deref()
            .is_some_and(|s| status::enhanced_codes(diag_text).any(|c| c == s));
        let from_diag = status::pick(diag_text, class);
        match (&st, &from_diag) {
            (Some(_), _) if agrees => {}
            (None, Some(d)) => st = Some(d.clone()),
            (Some(s), Some(d)) if d.get(..1) == s.get(..1) && !d.ends_with(".0.0") => {
                st = Some(d.clone())
            }
            _ => {}
        }
        // A missing or unspecific (x.0.0) code is taken from the text about this recipient.
        if st.as_deref().is_none_or(|s| s.ends_with(".0.0"))
            && let Some(b) = status::pick(block, class).filter(|b| !b.ends_with(".0.0"))
        {
            st = Some(b);
        }
        let reply = status::find_reply_code(diag_text)
            .or_else(|| status::find_reply_code(block))
            .filter(|c| {
                *c >= 400
                    || r.action.as_deref().is_some_and(|a| {
                        matches!(a, "delivered" | "relayed" | "expanded" | "deliverable")
                    })
            });
        let action = r.action.clone();
        let delivered = matches!(
            action.as_deref(),
            Some("delivered" | "relayed" | "expanded" | "deliverable")
        );
        let found = reason::from_text(diag_text);
        let mut reason =
            reason::classify_found(found, diag_text, block, st.as_deref(), action.as_deref());
        let weak = matches!(reason, Reason::Undefined | Reason::OnHold)
            || st.as_deref().and_then(reason::from_status) == Some(reason) && found.is_none();
        if weak && !delivered {
            let context = if block.is_empty() { btext } else { block };
            let mut found_in = from_text(context).map(|r| (r, context));
            // A single recipient's reason may stand before its address ("Failure
            // Reasons: …" then the address): when nothing else (not even the status)
            // gave a reason, the text up to the address line is read.
            if found_in.is_none()
                && matches!(reason, Reason::Undefined | Reason::OnHold)
                && report.reports.len() == 1
                && let Some(lead) = heuristic::text_through(btext, &address)
                && lead != context
            {
                found_in = from_text(lead).map(|r| (r, lead));
                // Its code, too, when the report's is missing or unspecific.
                if found_in.is_some()
                    && st.as_deref().is_none_or(|s| s.ends_with(".0.0"))
                    && let Some(b) = status::pick(lead, class).filter(|b| !b.ends_with(".0.0"))
                {
                    st = Some(b);
                }
            }
            if let Some((r2, context)) = found_in {
                reason =
                    reason::against_contrary(reason::confirm(r2, context, st.as_deref()), context);
            }
        }
        // Contrary evidence in the human-readable part makes a recipient-level reason
        // uncertain: the report says "user unknown", the text says "disk full".
        let human = if !block.is_empty() {
            block
        } else if report.reports.len() == 1 {
            btext
        } else {
            ""
        };
        if reason.is_recipient_permanent()
            && report.parser.as_deref() == Some("dsn")
            && let Some(other) = from_text(human)
            && matches!(
                other,
                Reason::MailboxFull | Reason::SystemFull | Reason::MesgTooBig
            )
        {
            reason = other;
        }
        // A post to a Google Groups list that the group refused (its notice gives no code,
        // and is written in the sender's language).
        if matches!(reason, Reason::Undefined | Reason::OnHold)
            && address.ends_with("@googlegroups.com")
            && !delivered
        {
            reason = Reason::Rejected;
        }
        if st.is_none() && !delivered {
            let class = match reply {
                Some(code) => char::from(b'0' + (code / 100) as u8),
                None => match action.as_deref() {
                    Some("failed") => '5',
                    Some("delayed") => '4',
                    _ => 'x',
                },
            };
            st = status::synthesize(class, reason);
        }
        if st.is_none() && delivered {
            st = Some("2.0.0".to_owned());
        }
        let diagnostic = diag.or_else(|| {
            if block.is_empty() {
                None
            } else {
                heuristic::diagnostic_lines(block, &address)
            }
        });
        // A recipient delivered, relayed or expanded beside failed ones did not bounce.
        let bounce = if delivered {
            None
        } else {
            BounceClass::derive(kind, reason, st.as_deref(), action.as_deref())
        };
        let aliases = match diagnostic.as_deref() {
            Some(d) if d.contains('@') => {
                let exclude = not_aliases.get_or_insert_with(|| {
                    let mut v = heuristic::sender_addresses(mail).to_vec();
                    v.extend(report.reports.iter().filter_map(address_of));
                    v
                });
                heuristic::aliases_in(d, &address, exclude)
            }
            _ => Vec::new(),
        };
        recipients.push(RecipientVerdict {
            aliases,
            address,
            bounce,
            status: st,
            reason,
            blame: Blame::of_failure(bounce, reason),
            diagnostic,
            action,
            remote_mta: r.remote_mta.clone(),
            feedback_type: None,
        });
    }
    // A report whose recipients are all unusable (no address, a dotless host name) is
    // still a report of its kind: the mailbox poller ties it to its send through VERP or
    // the Message-ID.
    done(report, kind, recipients)
}

#[cfg(test)]
mod test {
    #[test]
    fn warm_up_builds_every_table_on_either_thread() {
        let halves = [0, 1].map(|h| std::thread::spawn(move || super::warm_up(h)));
        for h in halves {
            h.join().expect("a table failed to build");
        }
        assert!(super::reason::PHRASES.is_some());
    }

    use super::*;

    #[test]
    fn detect_never_fails_on_odd_input() {
        for raw in [
            &b""[..],
            b"\n\n\n",
            b"\xff\xfe\x00",
            b"From: a@example.com\n",
            b"Content-Type: multipart/report; boundary=x\n\n--x\n--x--",
        ] {
            let d = detect(raw);
            assert_eq!(d.verdict.decided_by, BUILTIN);
        }
    }

    #[test]
    fn detect_reads_cr_only_like_lf() {
        let lf = b"From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail Returned to Sender\nX-Failed-Recipients: a@example.com\n\n<a@example.com>: host said: 550 5.1.1 User unknown (in reply to RCPT TO command)\n".to_vec();
        let cr: Vec<u8> = lf
            .iter()
            .map(|&b| if b == b'\n' { b'\r' } else { b })
            .collect();
        assert_eq!(detect(&lf).verdict, detect(&cr).verdict);
        assert_eq!(
            detect(&lf).verdict.recipients[0].bounce,
            Some(BounceClass::Hard)
        );
    }

    #[test]
    fn delay_warnings_are_soft_bounces_whatever_their_code() {
        let raw = b"From: MAILER-DAEMON@example.net\nSubject: Delivery delayed\nContent-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b\nContent-Type: text/plain\n\nStill trying.\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; a@example.com\nAction: delayed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown (in reply to RCPT TO command)\n--b--\n";
        let d = detect(raw);
        assert_eq!(d.verdict.kind, MessageKind::Bounce);
        let r = &d.verdict.recipients[0];
        assert_eq!(
            (r.bounce, r.action.as_deref()),
            (Some(BounceClass::Soft), Some("delayed"))
        );
    }

    #[test]
    fn verdict_for_reply_uses_the_bounce_rules() {
        let hard = verdict_for_reply("A@Example.com", 550, "5.1.1 User unknown");
        assert_eq!(
            (hard.bounce, hard.reason, hard.status.as_deref()),
            (Some(BounceClass::Hard), Reason::UserUnknown, Some("5.1.1"))
        );
        let spam = verdict_for_reply("a@example.com", 554, "5.7.1 Message rejected as spam");
        assert_eq!(
            (spam.bounce, spam.reason),
            (Some(BounceClass::Soft), Reason::SpamDetected)
        );
        let busy = verdict_for_reply(
            "a@example.com",
            421,
            "4.7.0 Try again later, too many connections",
        );
        assert_eq!(busy.bounce, Some(BounceClass::Soft));
        assert_eq!(
            verdict_for_reply("a@example.com", 250, "2.1.5 Ok").bounce,
            None
        );
        assert_eq!(hard.address, "a@example.com");
    }

    #[test]
    fn detect_bounds_recipients_of_hostile_messages() {
        let mut m = String::from(
            "From: MAILER-DAEMON@example.net\nSubject: Undelivered Mail Returned to Sender\n\nThe following addresses failed:\n\n",
        );
        for i in 0..5000 {
            m.push_str(&format!(
                "<user{i}@example.com>: 550 5.1.1 User unknown (in reply to RCPT TO command)\n"
            ));
        }
        let d = detect(m.as_bytes());
        assert_eq!(d.verdict.kind, MessageKind::Bounce);
        assert!(!d.verdict.recipients.is_empty() && d.verdict.recipients.len() <= 1000);
    }
}
