//! The built-in bounce detector: raw message bytes in, a [`Detection`] out — the facts
//! read off the message ([`BounceReport`]) and the built-in [`Verdict`].
//!
//! A hostile message is data, not an error: [`detect`] never fails and never panics; what
//! it could not understand becomes kind `other` with [`BounceReport::error`] set.

use serde::Serialize;

use crate::verdict::{MessageKind, Verdict};

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
pub fn detect(raw: &[u8]) -> Detection {
    let _ = raw;
    Detection {
        report: BounceReport::default(),
        verdict: Verdict { kind: MessageKind::Other, recipients: Vec::new(), decided_by: crate::verdict::BUILTIN.into() },
    }
}
