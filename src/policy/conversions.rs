//! Conversions between the generated WIT types ([`super::bindings`]) and rebound's domain
//! types ([`crate::detector`], [`crate::verdict`]).
//!
//! Into the guest: a [`BounceReport`] plus the raw bytes become a WIT `message`, a domain
//! [`Verdict`] a WIT `verdict`. Out of the guest: a WIT `verdict` becomes a domain verdict
//! only through [`verdict_from_guest`], which enforces the limits on returned data and
//! applies the hard/soft rule and the blame table where the policy left them open.
//!
//! The domain types convert to and from the current world's types (`rebound:policy@0.3.0`)
//! only. An older component's types convert to and from 0.3.0's (the `legacy` conversions
//! at the end): 0.2.0's are the same types, one to one; a 0.1.0 component is shown the
//! verdict without blame, and what it returns has no blame, so [`verdict_from_guest`]
//! derives it from the reason.

use crate::detector::{BounceReport, DeliveryReport, OriginalMessage};
use crate::verdict::{self, Blame, BounceClass, MessageKind, Reason, RecipientVerdict, Verdict};

use super::bindings as wit;
use super::bindings::v0_1::rebound::policy::host as host01;
use super::bindings::v0_1::rebound::policy::types as types01;
use super::bindings::v0_2::rebound::policy::host as host02;
use super::bindings::v0_2::rebound::policy::types as types02;
use super::bindings::v0_3::rebound::policy::host as host03;
use super::bindings::v0_3::rebound::policy::types as types03;

/// Most recipients a returned verdict may name.
pub const MAX_RECIPIENTS: usize = 1000;
/// Longest address a returned verdict may carry, in bytes.
pub const MAX_ADDRESS_LEN: usize = 320;
/// Longest status code a returned verdict may carry, in bytes.
pub const MAX_STATUS_LEN: usize = 32;
/// Longest of any other string a returned verdict may carry, in bytes.
pub const MAX_TEXT_LEN: usize = 4096;

/// Why a returned verdict was refused (the guest's output counts as garbage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GarbageError {
    /// More recipients than [`MAX_RECIPIENTS`].
    #[error("returned {0} recipients (at most {MAX_RECIPIENTS})")]
    TooManyRecipients(usize),
    /// A string over its limit.
    #[error("returned a {field} of {len} bytes (at most {max})")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An address that is not an address.
    #[error("returned an address without a local part and a domain: {0:?}")]
    BadAddress(String),
}

impl From<MessageKind> for wit::MessageKind {
    fn from(k: MessageKind) -> Self {
        match k {
            MessageKind::Bounce => wit::MessageKind::Bounce,
            MessageKind::Complaint => wit::MessageKind::Complaint,
            MessageKind::AutoReply => wit::MessageKind::AutoReply,
            MessageKind::DeliveryNotice => wit::MessageKind::DeliveryNotice,
            MessageKind::Other => wit::MessageKind::Other,
        }
    }
}

impl From<wit::MessageKind> for MessageKind {
    fn from(k: wit::MessageKind) -> Self {
        match k {
            wit::MessageKind::Bounce => MessageKind::Bounce,
            wit::MessageKind::Complaint => MessageKind::Complaint,
            wit::MessageKind::AutoReply => MessageKind::AutoReply,
            wit::MessageKind::DeliveryNotice => MessageKind::DeliveryNotice,
            wit::MessageKind::Other => MessageKind::Other,
        }
    }
}

impl From<BounceClass> for wit::BounceClass {
    fn from(c: BounceClass) -> Self {
        match c {
            BounceClass::Hard => wit::BounceClass::Hard,
            BounceClass::Soft => wit::BounceClass::Soft,
        }
    }
}

impl From<wit::BounceClass> for BounceClass {
    fn from(c: wit::BounceClass) -> Self {
        match c {
            wit::BounceClass::Hard => BounceClass::Hard,
            wit::BounceClass::Soft => BounceClass::Soft,
        }
    }
}

impl From<Blame> for wit::Blame {
    fn from(b: Blame) -> Self {
        match b {
            Blame::Recipient => wit::Blame::Recipient,
            Blame::Sender => wit::Blame::Sender,
            Blame::Transit => wit::Blame::Transit,
            Blame::Unknown => wit::Blame::Unknown,
        }
    }
}

impl From<wit::Blame> for Blame {
    fn from(b: wit::Blame) -> Self {
        match b {
            wit::Blame::Recipient => Blame::Recipient,
            wit::Blame::Sender => Blame::Sender,
            wit::Blame::Transit => Blame::Transit,
            wit::Blame::Unknown => Blame::Unknown,
        }
    }
}

/// Both directions between the same enum (`$ty`, with these cases) of two WIT versions.
macro_rules! same_enum {
    ($old:ident => $new:ident, $ty:ident { $($v:ident),* $(,)? }) => {
        impl From<$old::$ty> for $new::$ty {
            fn from(x: $old::$ty) -> Self {
                match x { $($old::$ty::$v => $new::$ty::$v,)* }
            }
        }
        impl From<$new::$ty> for $old::$ty {
            fn from(x: $new::$ty) -> Self {
                match x { $($new::$ty::$v => $old::$ty::$v,)* }
            }
        }
    };
}

/// One table for both directions (and for the 0.1.0 world's reasons), so a reason added
/// on one side and not the other does not compile.
macro_rules! reason_table {
    ($($v:ident),* $(,)?) => {
        impl From<Reason> for wit::Reason {
            fn from(r: Reason) -> Self {
                match r { $(Reason::$v => wit::Reason::$v,)* }
            }
        }
        impl From<wit::Reason> for Reason {
            fn from(r: wit::Reason) -> Self {
                match r { $(wit::Reason::$v => Reason::$v,)* }
            }
        }
        same_enum!(types01 => types03, Reason { $($v),* });
        same_enum!(types02 => types03, Reason { $($v),* });
    };
}

reason_table! {
    UserUnknown, HostUnknown, HasMoved, NotAccept, MailboxFull, MesgTooBig, Suspend, Filtered,
    Rejected, Blocked, SpamDetected, VirusDetected, ContentError, PolicyViolation, AuthFailure,
    RequirePtr, SecurityError, FailedStarttls, NotCompliantRfc, BadReputation, Expired,
    NetworkError, SystemError, SystemFull, TooManyConn, ExceedLimit, Speeding, NoRelaying,
    MailerError, SyntaxError, OnHold, Delivered, Feedback, Vacation, Undefined,
}

impl From<&DeliveryReport> for wit::DeliveryReport {
    fn from(r: &DeliveryReport) -> Self {
        wit::DeliveryReport {
            final_recipient: r.final_recipient.clone(),
            original_recipient: r.original_recipient.clone(),
            action: r.action.clone(),
            status: r.status.clone(),
            diagnostic_code: r.diagnostic_code.clone(),
            remote_mta: r.remote_mta.clone(),
            last_attempt_date: r.last_attempt_date.clone(),
        }
    }
}

impl From<&OriginalMessage> for wit::OriginalMessage {
    fn from(o: &OriginalMessage) -> Self {
        wit::OriginalMessage {
            message_id: o.message_id.clone(),
            headers: header_block(&o.headers),
        }
    }
}

/// Headers as the WIT `headers` string: `Name: value` lines joined by LF, with any line
/// break inside a value turned into a space.
pub fn header_block(headers: &[(String, String)]) -> String {
    let mut out = String::with_capacity(headers.iter().map(|(n, v)| n.len() + v.len() + 3).sum());
    for (name, value) in headers {
        out.push_str(name);
        out.push_str(": ");
        out.extend(
            value
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
        );
        out.push('\n');
    }
    out
}

/// The message as a policy sees it: the raw bytes and what the detector read off them,
/// built once per chain run and shared (behind an `Arc`) by every policy's handle.
#[derive(Debug, Clone)]
pub struct MessageParts {
    /// The raw message.
    pub raw: Vec<u8>,
    /// The top-level headers as one block ([`header_block`]).
    pub headers: String,
    /// The top-level headers, for `header(name)`.
    pub header_list: Vec<(String, String)>,
    /// The decoded subject.
    pub subject: Option<String>,
    /// The `From` address.
    pub from: Option<String>,
    /// The decoded text.
    pub text: String,
    /// The delivery reports.
    pub reports: Vec<wit::DeliveryReport>,
    /// The returned original message.
    pub original: Option<wit::OriginalMessage>,
    /// The detector's sub-parser.
    pub parser: Option<String>,
}

/// What a guest's `message` handle points at (the resource type of the WIT `message`).
#[derive(Debug, Clone)]
pub struct MessageData(pub std::sync::Arc<MessageParts>);

/// The message as a policy sees it: the raw bytes and what the detector read off them.
pub fn message(raw: &[u8], report: &BounceReport) -> MessageParts {
    MessageParts {
        raw: raw.to_vec(),
        headers: header_block(&report.headers),
        header_list: report.headers.clone(),
        subject: report.subject.clone(),
        from: report.from.clone(),
        text: report.text.clone(),
        reports: report.reports.iter().map(Into::into).collect(),
        original: report.original.as_ref().map(Into::into),
        parser: report.parser.clone(),
    }
}

impl From<&RecipientVerdict> for wit::RecipientVerdict {
    fn from(r: &RecipientVerdict) -> Self {
        wit::RecipientVerdict {
            address: r.address.clone(),
            bounce: r.bounce.map(Into::into),
            status: r.status.clone(),
            reason: r.reason.into(),
            blame: r.blame.map(Into::into),
            diagnostic: r.diagnostic.clone(),
            action: r.action.clone(),
            remote_mta: r.remote_mta.clone(),
            feedback_type: r.feedback_type.clone(),
        }
    }
}

impl From<&Verdict> for wit::Verdict {
    fn from(v: &Verdict) -> Self {
        wit::Verdict {
            kind: v.kind.into(),
            recipients: v.recipients.iter().map(Into::into).collect(),
            decided_by: v.decided_by.clone(),
        }
    }
}

fn check_len(field: &'static str, s: Option<&str>, max: usize) -> Result<(), GarbageError> {
    match s {
        Some(s) if s.len() > max => Err(GarbageError::TooLong {
            field,
            len: s.len(),
            max,
        }),
        _ => Ok(()),
    }
}

/// A verdict a policy returned, checked against the limits and made a domain verdict
/// decided by `decided_by`.
///
/// The class follows the WIT contract: only bounces have one, and a bounce recipient
/// without one gets [`BounceClass::derive`]'s. So does the blame: only a recipient with a
/// class has one, the policy's own if it gave one, else [`Blame::of_failure`]'s (always
/// the case for a 0.1.0 policy, whose verdicts have no blame). Addresses get a lower-cased
/// domain.
///
/// # Errors
/// [`GarbageError`] when the verdict is over a limit or names a non-address.
pub fn verdict_from_guest(v: wit::Verdict, decided_by: &str) -> Result<Verdict, GarbageError> {
    if v.recipients.len() > MAX_RECIPIENTS {
        return Err(GarbageError::TooManyRecipients(v.recipients.len()));
    }
    let kind = MessageKind::from(v.kind);
    let mut recipients = Vec::with_capacity(v.recipients.len());
    for r in v.recipients {
        check_len("address", Some(&r.address), MAX_ADDRESS_LEN)?;
        check_len("status", r.status.as_deref(), MAX_STATUS_LEN)?;
        check_len("diagnostic", r.diagnostic.as_deref(), MAX_TEXT_LEN)?;
        check_len("action", r.action.as_deref(), MAX_TEXT_LEN)?;
        check_len("remote-mta", r.remote_mta.as_deref(), MAX_TEXT_LEN)?;
        check_len("feedback-type", r.feedback_type.as_deref(), MAX_TEXT_LEN)?;
        let address = normalise_address(r.address.trim())
            .ok_or_else(|| GarbageError::BadAddress(r.address.clone()))?;
        let reason = Reason::from(r.reason);
        let bounce = match (kind, r.bounce) {
            (MessageKind::Bounce, Some(class)) => Some(class.into()),
            (_, _) => BounceClass::derive(kind, reason, r.status.as_deref(), r.action.as_deref()),
        };
        let blame = match (bounce, r.blame) {
            (Some(_), Some(given)) => Some(given.into()),
            (_, _) => Blame::of_failure(bounce, reason),
        };
        recipients.push(RecipientVerdict {
            address,
            bounce,
            status: r.status,
            reason,
            blame,
            diagnostic: r.diagnostic,
            action: r.action,
            remote_mta: r.remote_mta,
            feedback_type: r.feedback_type,
            aliases: Vec::new(),
        });
    }
    Ok(Verdict {
        kind,
        recipients,
        decided_by: decided_by.to_owned(),
    })
}

/// `Local@Domain.Example` → `Local@domain.example`; `None` without both parts.
fn normalise_address(a: &str) -> Option<String> {
    let a = a.trim_start_matches('<').trim_end_matches('>');
    let (local, domain) = a.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || a.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    Some(format!("{local}@{}", domain.to_ascii_lowercase()))
}

/// The verdict for a message a policy called not a bounce.
pub fn not_bounce(decided_by: &str) -> Verdict {
    Verdict {
        kind: MessageKind::Other,
        recipients: Vec::new(),
        decided_by: decided_by.to_owned(),
    }
}

/// `decided_by` of a verdict the policy `name` changed.
pub fn decided_by(name: &str) -> String {
    format!("policy:{name}")
}

/// True if `decided_by` names the built-in detector.
pub fn is_builtin(decided_by: &str) -> bool {
    decided_by == verdict::BUILTIN
}

// ---------------------------------------------------------------------------------------
// legacy: rebound:policy@0.2.0 and 0.1.0 types to and from 0.3.0's

same_enum!(types02 => types03, MessageKind { Bounce, Complaint, AutoReply, DeliveryNotice, Other });
same_enum!(types02 => types03, BounceClass { Hard, Soft });
same_enum!(types02 => types03, Blame { Recipient, Sender, Transit, Unknown });
same_enum!(host02 => host03, Level { Debug, Info, Warn, Error });
same_enum!(types01 => types03, MessageKind { Bounce, Complaint, AutoReply, DeliveryNotice, Other });
same_enum!(types01 => types03, BounceClass { Hard, Soft });
same_enum!(host01 => host03, Level { Debug, Info, Warn, Error });

/// One direction between records with the same fields.
macro_rules! same_record {
    ($from:ident => $to:ident, $ty:ident { $($f:ident),* $(,)? }) => {
        impl From<$from::$ty> for $to::$ty {
            fn from(x: $from::$ty) -> Self {
                $to::$ty { $($f: x.$f.into(),)* }
            }
        }
    };
}

// 0.2.0: the same types as 0.3.0's.
same_record!(types03 => types02, DeliveryReport {
    final_recipient, original_recipient, action, status, diagnostic_code, remote_mta,
    last_attempt_date,
});
same_record!(types03 => types02, OriginalMessage { message_id, headers });
same_record!(types02 => types03, PolicyError { message });

/// A recipient and a verdict between 0.3.0 and 0.2.0, in both directions: the same
/// fields, the enums converted.
macro_rules! same_verdict {
    ($from:ident => $to:ident) => {
        impl From<&$from::RecipientVerdict> for $to::RecipientVerdict {
            fn from(r: &$from::RecipientVerdict) -> Self {
                $to::RecipientVerdict {
                    address: r.address.clone(),
                    bounce: r.bounce.map(Into::into),
                    status: r.status.clone(),
                    reason: r.reason.into(),
                    blame: r.blame.map(Into::into),
                    diagnostic: r.diagnostic.clone(),
                    action: r.action.clone(),
                    remote_mta: r.remote_mta.clone(),
                    feedback_type: r.feedback_type.clone(),
                }
            }
        }

        impl From<&$from::Verdict> for $to::Verdict {
            fn from(v: &$from::Verdict) -> Self {
                $to::Verdict {
                    kind: v.kind.into(),
                    recipients: v.recipients.iter().map(Into::into).collect(),
                    decided_by: v.decided_by.clone(),
                }
            }
        }
    };
}

same_verdict!(types03 => types02);
same_verdict!(types02 => types03);

impl From<types02::Verdict> for types03::Verdict {
    fn from(v: types02::Verdict) -> Self {
        types03::Verdict::from(&v)
    }
}

impl From<types02::Decision> for types03::Decision {
    fn from(d: types02::Decision) -> Self {
        match d {
            types02::Decision::Keep => types03::Decision::Keep,
            types02::Decision::Replace(v) => types03::Decision::Replace(v.into()),
            types02::Decision::NotBounce => types03::Decision::NotBounce,
        }
    }
}

// 0.1.0: what the host hands a 0.1.0 guest's message handle, and its orderly failure.
same_record!(types03 => types01, DeliveryReport {
    final_recipient, original_recipient, action, status, diagnostic_code, remote_mta,
    last_attempt_date,
});
same_record!(types03 => types01, OriginalMessage { message_id, headers });
same_record!(types01 => types03, PolicyError { message });

/// A 0.3.0 recipient for a 0.1.0 guest: the same, without blame.
impl From<&types03::RecipientVerdict> for types01::RecipientVerdict {
    fn from(r: &types03::RecipientVerdict) -> Self {
        types01::RecipientVerdict {
            address: r.address.clone(),
            bounce: r.bounce.map(Into::into),
            status: r.status.clone(),
            reason: r.reason.into(),
            diagnostic: r.diagnostic.clone(),
            action: r.action.clone(),
            remote_mta: r.remote_mta.clone(),
            feedback_type: r.feedback_type.clone(),
        }
    }
}

/// A 0.1.0 guest's recipient: blame `none`, so [`verdict_from_guest`] derives it.
impl From<types01::RecipientVerdict> for types03::RecipientVerdict {
    fn from(r: types01::RecipientVerdict) -> Self {
        types03::RecipientVerdict {
            address: r.address,
            bounce: r.bounce.map(Into::into),
            status: r.status,
            reason: r.reason.into(),
            blame: None,
            diagnostic: r.diagnostic,
            action: r.action,
            remote_mta: r.remote_mta,
            feedback_type: r.feedback_type,
        }
    }
}

impl From<&types03::Verdict> for types01::Verdict {
    fn from(v: &types03::Verdict) -> Self {
        types01::Verdict {
            kind: v.kind.into(),
            recipients: v.recipients.iter().map(Into::into).collect(),
            decided_by: v.decided_by.clone(),
        }
    }
}

impl From<types01::Verdict> for types03::Verdict {
    fn from(v: types01::Verdict) -> Self {
        types03::Verdict {
            kind: v.kind.into(),
            recipients: v.recipients.into_iter().map(Into::into).collect(),
            decided_by: v.decided_by,
        }
    }
}

impl From<types01::Decision> for types03::Decision {
    fn from(d: types01::Decision) -> Self {
        match d {
            types01::Decision::Keep => types03::Decision::Keep,
            types01::Decision::Replace(v) => types03::Decision::Replace(v.into()),
            types01::Decision::NotBounce => types03::Decision::NotBounce,
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn wit_recipient(
        address: &str,
        reason: wit::Reason,
        status: Option<&str>,
    ) -> wit::RecipientVerdict {
        wit::RecipientVerdict {
            address: address.into(),
            bounce: None,
            status: status.map(Into::into),
            reason,
            blame: None,
            diagnostic: None,
            action: None,
            remote_mta: None,
            feedback_type: None,
        }
    }

    #[test]
    fn headers_become_one_line_each() {
        let h = vec![
            ("Subject".to_owned(), "a\r\n b".to_owned()),
            ("X-A".to_owned(), String::new()),
        ];
        assert_eq!(header_block(&h), "Subject: a   b\nX-A: \n");
    }

    #[test]
    fn reasons_round_trip_through_wit() {
        for r in Reason::ALL {
            assert_eq!(Reason::from(wit::Reason::from(*r)), *r);
        }
    }

    #[test]
    fn returned_verdict_gets_class_by_the_rule_when_left_open() {
        let v = wit::Verdict {
            kind: wit::MessageKind::Bounce,
            recipients: vec![
                wit_recipient("A@Example.ORG", wit::Reason::UserUnknown, Some("5.1.1")),
                wit_recipient("b@example.org", wit::Reason::MailboxFull, Some("5.2.2")),
            ],
            decided_by: "ignored".into(),
        };
        let v = verdict_from_guest(v, "policy:p").unwrap();
        assert_eq!(v.decided_by, "policy:p");
        assert_eq!(v.recipients[0].address, "A@example.org");
        assert_eq!(v.recipients[0].bounce, Some(BounceClass::Hard));
        assert_eq!(v.recipients[1].bounce, Some(BounceClass::Soft));
    }

    #[test]
    fn returned_verdict_over_limits_is_garbage() {
        let many = (0..=MAX_RECIPIENTS)
            .map(|i| wit_recipient(&format!("u{i}@example.org"), wit::Reason::Undefined, None))
            .collect();
        let v = wit::Verdict {
            kind: wit::MessageKind::Bounce,
            recipients: many,
            decided_by: String::new(),
        };
        assert!(matches!(
            verdict_from_guest(v, "x"),
            Err(GarbageError::TooManyRecipients(_))
        ));
        let mut r = wit_recipient("a@example.org", wit::Reason::Undefined, None);
        r.diagnostic = Some("x".repeat(MAX_TEXT_LEN + 1));
        let v = wit::Verdict {
            kind: wit::MessageKind::Bounce,
            recipients: vec![r],
            decided_by: String::new(),
        };
        assert!(matches!(
            verdict_from_guest(v, "x"),
            Err(GarbageError::TooLong {
                field: "diagnostic",
                ..
            })
        ));
        let r = wit_recipient("not an address", wit::Reason::Undefined, None);
        let v = wit::Verdict {
            kind: wit::MessageKind::Bounce,
            recipients: vec![r],
            decided_by: String::new(),
        };
        assert!(matches!(
            verdict_from_guest(v, "x"),
            Err(GarbageError::BadAddress(_))
        ));
    }

    #[test]
    fn class_is_dropped_when_not_a_bounce() {
        let mut r = wit_recipient("a@example.org", wit::Reason::Feedback, None);
        r.bounce = Some(wit::BounceClass::Hard);
        let v = wit::Verdict {
            kind: wit::MessageKind::Complaint,
            recipients: vec![r],
            decided_by: String::new(),
        };
        assert_eq!(
            verdict_from_guest(v, "x").unwrap().recipients[0].bounce,
            None
        );
    }

    #[test]
    fn returned_blame_is_kept_on_failures_and_derived_when_left_open() {
        let mut given = wit_recipient("a@example.org", wit::Reason::UserUnknown, Some("5.1.1"));
        given.blame = Some(wit::Blame::Sender);
        let open = wit_recipient("b@example.org", wit::Reason::Blocked, Some("5.7.1"));
        let v = wit::Verdict {
            kind: wit::MessageKind::Bounce,
            recipients: vec![given, open],
            decided_by: String::new(),
        };
        let v = verdict_from_guest(v, "x").unwrap();
        assert_eq!(
            v.recipients[0].blame,
            Some(Blame::Sender),
            "the policy's own"
        );
        assert_eq!(
            v.recipients[1].blame,
            Some(Blame::Sender),
            "derived: blocked"
        );

        let mut r = wit_recipient("a@example.org", wit::Reason::Feedback, None);
        r.blame = Some(wit::Blame::Recipient);
        let v = wit::Verdict {
            kind: wit::MessageKind::Complaint,
            recipients: vec![r],
            decided_by: String::new(),
        };
        let r = &verdict_from_guest(v, "x").unwrap().recipients[0];
        assert_eq!((r.bounce, r.blame), (None, None), "not a failure: no blame");
    }

    #[test]
    fn blames_round_trip_through_wit() {
        for b in Blame::ALL {
            assert_eq!(Blame::from(wit::Blame::from(b)), b);
        }
    }

    #[test]
    fn legacy_verdicts_lose_blame_going_in_and_get_it_derived_coming_out() {
        let domain = Verdict {
            kind: MessageKind::Bounce,
            recipients: vec![RecipientVerdict {
                blame: Some(Blame::Sender),
                ..RecipientVerdict::new("a@example.org".into(), Reason::UserUnknown)
            }],
            decided_by: "builtin".into(),
        };
        let current = wit::Verdict::from(&domain);
        assert_eq!(current.recipients[0].blame, Some(wit::Blame::Sender));
        let old = types01::Verdict::from(&current);
        assert_eq!(old.recipients[0].address, "a@example.org");
        assert_eq!(old.recipients[0].reason, types01::Reason::UserUnknown);

        let back = types03::Decision::from(types01::Decision::Replace(old));
        let types03::Decision::Replace(back) = back else {
            panic!("not a replace: {back:?}");
        };
        assert_eq!(back.recipients[0].blame, None);
        let v = verdict_from_guest(back, "policy:old").unwrap();
        assert_eq!(v.recipients[0].bounce, Some(BounceClass::Soft));
        assert_eq!(
            v.recipients[0].blame,
            Some(Blame::Recipient),
            "user-unknown"
        );
        for r in Reason::ALL {
            let old = types01::Reason::from(wit::Reason::from(*r));
            assert_eq!(Reason::from(types03::Reason::from(old)), *r);
        }
    }
}
