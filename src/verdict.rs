//! Verdicts: the last stage before the store. A [`Verdict`] says what kind of message
//! came back and, per recipient, hard or soft, the status, the reason and who decided.
//!
//! Hard versus soft is *derived* in one place, [`BounceClass::derive`], from the message
//! kind, the reason and the status code; it is never stored as an independent fact.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of message came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageKind {
    /// A delivery failure for one or more recipients: permanent, temporary, or a delay
    /// warning (`Action: delayed`, always soft).
    Bounce,
    /// A feedback report (RFC 5965): a recipient marked the message as spam or opted out.
    Complaint,
    /// An automatic reply (RFC 3834): vacation, out of office, ticket acknowledgements.
    AutoReply,
    /// A delivery or relay notice: nothing failed.
    DeliveryNotice,
    /// Anything else: ordinary mail, or a message that could not be understood.
    Other,
}

impl MessageKind {
    /// Every kind.
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Bounce,
        MessageKind::Complaint,
        MessageKind::AutoReply,
        MessageKind::DeliveryNotice,
        MessageKind::Other,
    ];

    /// The kebab-case name used in JSON, SQL and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Bounce => "bounce",
            MessageKind::Complaint => "complaint",
            MessageKind::AutoReply => "auto-reply",
            MessageKind::DeliveryNotice => "delivery-notice",
            MessageKind::Other => "other",
        }
    }
}

/// How final a bounce is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BounceClass {
    /// The address will never work: a permanent, recipient-level failure.
    Hard,
    /// Anything else that failed: temporary failures, policy and content rejections.
    Soft,
}

impl BounceClass {
    /// Both classes.
    pub const ALL: [BounceClass; 2] = [BounceClass::Hard, BounceClass::Soft];

    /// The name used in JSON, SQL, metrics and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
        }
    }
}

/// Whom a failure is about: the one question the recipient's state depends on.
///
/// Only `recipient` failures count against the recipient; `sender` failures (our IP,
/// domain, authentication, content or reputation) are the operator's problem and are
/// counted per campaign and destination domain instead; `transit` failures (network,
/// expiry, remote system trouble, rate limits) say nothing about either. SparkPost's
/// bounce categories (hard / soft / block, where block never suppresses) are the precedent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Blame {
    /// The address or its mailbox: unknown, moved, full, disabled, filtering us.
    Recipient,
    /// Our side: the sending IP or domain, authentication, content, reputation.
    Sender,
    /// Neither: the network, expiry, the remote system, rate limits.
    Transit,
    /// Nothing in the message says.
    Unknown,
}

impl Blame {
    /// Every blame.
    pub const ALL: [Blame; 4] = [
        Blame::Recipient,
        Blame::Sender,
        Blame::Transit,
        Blame::Unknown,
    ];

    /// The name used in JSON, SQL, WIT, metrics and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Blame::Recipient => "recipient",
            Blame::Sender => "sender",
            Blame::Transit => "transit",
            Blame::Unknown => "unknown",
        }
    }

    /// The blame of a recipient record: `None` unless it failed (has a class).
    pub fn of_failure(class: Option<BounceClass>, reason: Reason) -> Option<Blame> {
        class.and(Blame::of(reason))
    }

    /// Whom a failure with this reason is about; `None` for reasons that are not
    /// failures (delivered, feedback, vacation).
    pub fn of(reason: Reason) -> Option<Blame> {
        use Reason::*;
        Some(match reason {
            UserUnknown | HostUnknown | HasMoved | NotAccept | MailboxFull | Suspend | Filtered => {
                Blame::Recipient
            }
            MesgTooBig | Rejected | Blocked | SpamDetected | VirusDetected | ContentError
            | PolicyViolation | AuthFailure | RequirePtr | SecurityError | FailedStarttls
            | NotCompliantRfc | BadReputation | NoRelaying | ExceedLimit | SyntaxError => {
                Blame::Sender
            }
            Expired | NetworkError | SystemError | SystemFull | TooManyConn | Speeding
            | MailerError | OnHold => Blame::Transit,
            Undefined => Blame::Unknown,
            Delivered | Feedback | Vacation => return None,
        })
    }
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Blame {
    type Err = UnknownBlame;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Blame::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownBlame(s.to_owned()))
    }
}

/// Error for a blame name that is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown blame {0:?} (recipient, sender, transit or unknown)")]
pub struct UnknownBlame(pub String);

macro_rules! reasons {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// Why a recipient bounced: Sisimai's reason names, in kebab-case.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Reason {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Reason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Reason] = &[$(Reason::$variant,)*];

            /// The kebab-case name used in JSON, SQL, WIT and config.
            pub fn as_str(self) -> &'static str {
                match self { $(Reason::$variant => $name,)* }
            }
        }
    };
}

reasons! {
    /// The mailbox does not exist.
    UserUnknown => "user-unknown",
    /// The domain has no mail host (NXDOMAIN, null MX).
    HostUnknown => "host-unknown",
    /// The recipient has moved to another address.
    HasMoved => "has-moved",
    /// The domain or host does not accept mail at all.
    NotAccept => "not-accept",
    /// The mailbox is full or over quota.
    MailboxFull => "mailbox-full",
    /// The message is larger than the recipient accepts.
    MesgTooBig => "mesg-too-big",
    /// The recipient's mailbox is disabled or suspended.
    Suspend => "suspend",
    /// The recipient filters mail from the sender (recipient-side rules).
    Filtered => "filtered",
    /// The sender's address or domain was rejected.
    Rejected => "rejected",
    /// The sending IP or host was blocked (blocklists, reputation of the IP).
    Blocked => "blocked",
    /// The message was judged to be spam.
    SpamDetected => "spam-detected",
    /// The message carried a virus.
    VirusDetected => "virus-detected",
    /// The content was refused (banned attachments, headers).
    ContentError => "content-error",
    /// A site policy refused the message.
    PolicyViolation => "policy-violation",
    /// SPF, DKIM or DMARC failed.
    AuthFailure => "auth-failure",
    /// The sending IP has no (or a mismatched) reverse DNS record.
    RequirePtr => "require-ptr",
    /// A TLS or other security requirement was not met.
    SecurityError => "security-error",
    /// STARTTLS failed.
    FailedStarttls => "failed-starttls",
    /// The message does not comply with the RFCs.
    NotCompliantRfc => "not-compliant-rfc",
    /// The sender's reputation is bad.
    BadReputation => "bad-reputation",
    /// Delivery was given up after retrying for too long.
    Expired => "expired",
    /// A network problem: DNS lookups, routing loops, connection failures.
    NetworkError => "network-error",
    /// The remote system had an error.
    SystemError => "system-error",
    /// The remote system's disk is full.
    SystemFull => "system-full",
    /// Too many connections from the sender.
    TooManyConn => "too-many-conn",
    /// Too many messages or recipients: a rate or count limit.
    ExceedLimit => "exceed-limit",
    /// Sending too fast.
    Speeding => "speeding",
    /// The remote host refused to relay.
    NoRelaying => "no-relaying",
    /// A local mailer program failed.
    MailerError => "mailer-error",
    /// An SMTP syntax error.
    SyntaxError => "syntax-error",
    /// Delivery is held or deferred for an undetermined reason.
    OnHold => "on-hold",
    /// Delivered: a successful delivery notice.
    Delivered => "delivered",
    /// A feedback report (complaint).
    Feedback => "feedback",
    /// An automatic vacation reply.
    Vacation => "vacation",
    /// The reason could not be determined.
    Undefined => "undefined",
}

impl Reason {
    /// True for reasons that say the recipient address itself will never work.
    pub fn is_recipient_permanent(self) -> bool {
        matches!(
            self,
            Reason::UserUnknown | Reason::HostUnknown | Reason::HasMoved | Reason::NotAccept
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error for a reason name that is not known.
#[derive(Debug, thiserror::Error)]
#[error("unknown bounce reason {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for Reason {
    type Err = UnknownReason;
    /// Accepts the kebab-case name and also Sisimai's run-together form (`userunknown`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let squashed: String = s.chars().filter(|c| *c != '-' && *c != '_').collect();
        Reason::ALL
            .iter()
            .copied()
            .find(|r| r.as_str().replace('-', "").eq_ignore_ascii_case(&squashed))
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Reason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl BounceClass {
    /// The one rule for hard versus soft: **hard needs agreement.** A recipient is hard
    /// only when every piece of evidence says the address is permanently gone:
    ///
    /// | evidence | must say |
    /// |---|---|
    /// | kind | a bounce |
    /// | status class | permanent (5.x.x) |
    /// | action | not `delayed` (a delayed recipient is still being tried) |
    /// | reason (from the text, see [`crate::detector::reason`]) | user-unknown, host-unknown, has-moved or not-accept |
    /// | status subject and detail (RFC 3463) | the same thing: see [`status_agrees`] |
    ///
    /// Everything else that failed is soft. The reason already carries the text's contrary
    /// evidence and the SMTP stage: the detector replaces a recipient-level reason when
    /// the diagnostic also names size, quota, spam, policy, a temporary condition or the
    /// sender's IP or domain, and a "user unknown" that answered `DATA` or `MAIL FROM` is
    /// not user-unknown ([`crate::detector::reason::confirm`]). So a 5.1.1 whose text says
    /// "message size exceeds" is a soft mesg-too-big, and "550 5.2.1 mailbox disabled"
    /// (the status says the mailbox exists) is soft whatever words come with it.
    pub fn derive(
        kind: MessageKind,
        reason: Reason,
        status: Option<&str>,
        action: Option<&str>,
    ) -> Option<BounceClass> {
        if kind != MessageKind::Bounce {
            return None;
        }
        let permanent = status.is_some_and(|s| s.starts_with('5')) && action != Some("delayed");
        if permanent && reason.is_recipient_permanent() && status_agrees(reason, status) {
            Some(BounceClass::Hard)
        } else {
            Some(BounceClass::Soft)
        }
    }
}

/// Whether an enhanced status code (RFC 3463) says what a recipient-level reason says.
///
/// | reason | agreeing codes |
/// |---|---|
/// | user-unknown | x.1.1 bad destination mailbox, x.1.3 bad mailbox syntax, x.1.10 (Exchange Online: recipient not found), a vendor's own x.1.100+, x.4.1 with Exchange Online's directory answer |
/// | has-moved | x.1.6 mailbox moved, x.1.1 |
/// | host-unknown | x.1.2 bad destination system, x.4.4 unable to route, x.1.10 null MX (RFC 7505) |
/// | not-accept | x.1.10 null MX, x.1.2, x.4.4 |
/// | any of them | the unspecific "other or undefined" x.0.0, x.1.0, x.3.0 and x.5.0, which many servers give to every refusal (then the text alone speaks) |
///
/// Nothing else agrees: x.2.x says the mailbox exists (x.2.0 "the mailbox exists, but…",
/// x.2.1 "mailbox disabled"), x.7.x is a policy or security refusal, x.3.x and x.4.x are
/// system and network conditions, x.5.x and x.6.x protocol and content.
pub fn status_agrees(reason: Reason, status: Option<&str>) -> bool {
    let Some(status) = status else {
        return false;
    };
    let mut parts = status.split('.').skip(1).map(|p| p.parse::<u16>().ok());
    let (Some(Some(subject)), Some(Some(detail))) = (parts.next(), parts.next()) else {
        return false;
    };
    let unspecific = matches!((subject, detail), (0, 0) | (1, 0) | (3, 0) | (5, 0));
    unspecific
        || match reason {
            // x.1.10 is also Exchange Online's documented "recipient not found"; details
            // of 100 and more are vendors' own addressing codes (5.1.351).
            // x.4.1 only comes with user-unknown from Exchange Online's documented
            // directory answer ("550 5.4.1 Recipient address rejected: Access denied").
            Reason::UserUnknown => {
                matches!((subject, detail), (1, 1) | (1, 3) | (1, 10) | (4, 1))
                    || subject == 1 && detail >= 100
            }
            Reason::HasMoved => matches!((subject, detail), (1, 6) | (1, 1)),
            Reason::HostUnknown => matches!((subject, detail), (1, 2) | (4, 4) | (1, 10)),
            Reason::NotAccept => matches!((subject, detail), (1, 10) | (1, 2) | (4, 4)),
            _ => false,
        }
}

/// The verdict for one recipient named in a returned message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientVerdict {
    /// The recipient's address, as the report gives it (lower-cased domain).
    pub address: String,
    /// Hard or soft; `None` for complaints, auto-replies and notices.
    pub bounce: Option<BounceClass>,
    /// The RFC 3463 enhanced status code (`5.1.1`), when known.
    pub status: Option<String>,
    /// Why it bounced.
    pub reason: Reason,
    /// Whom the failure is about; `None` for complaints, auto-replies and notices.
    #[serde(default)]
    pub blame: Option<Blame>,
    /// The diagnostic text of the remote server or MTA.
    pub diagnostic: Option<String>,
    /// The DSN action (`failed`, `delayed`, `delivered`, `relayed`, `expanded`).
    pub action: Option<String>,
    /// The remote MTA that answered, when known.
    pub remote_mta: Option<String>,
    /// For complaints: the feedback type (`abuse`, `opt-out`, …).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub feedback_type: Option<String>,
    /// Other addresses the report names for this recipient (a forwarding target inside
    /// its diagnostic): reported, never bounced on their own.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub aliases: Vec<String>,
}

impl RecipientVerdict {
    /// A record that knows only the address and the reason (no class, status or report).
    pub fn new(address: String, reason: Reason) -> RecipientVerdict {
        RecipientVerdict {
            address,
            bounce: None,
            status: None,
            reason,
            blame: None,
            diagnostic: None,
            action: None,
            remote_mta: None,
            feedback_type: None,
            aliases: Vec::new(),
        }
    }
}

/// The verdict for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// What kind of message it is.
    pub kind: MessageKind,
    /// One entry per recipient the message reports on.
    pub recipients: Vec<RecipientVerdict>,
    /// Who decided: `builtin` or `policy:<name>`.
    pub decided_by: String,
}

/// `decided_by` of a verdict the built-in detector made.
pub const BUILTIN: &str = "builtin";

#[cfg(test)]
impl Verdict {
    /// A built-in bounce verdict for one recipient (test data).
    pub(crate) fn one_bounce(
        address: &str,
        class: BounceClass,
        status: &str,
        reason: Reason,
        action: &str,
    ) -> Verdict {
        Verdict {
            kind: MessageKind::Bounce,
            recipients: vec![RecipientVerdict {
                bounce: Some(class),
                status: Some(status.into()),
                action: Some(action.into()),
                ..RecipientVerdict::new(address.into(), reason)
            }],
            decided_by: BUILTIN.into(),
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn reason_round_trips_through_its_name() {
        for r in Reason::ALL {
            assert_eq!(r.as_str().parse::<Reason>().unwrap(), *r);
        }
        assert_eq!(
            "userunknown".parse::<Reason>().unwrap(),
            Reason::UserUnknown
        );
        assert_eq!("NoRelaying".parse::<Reason>().unwrap(), Reason::NoRelaying);
        assert!("nonsense".parse::<Reason>().is_err());
    }

    #[test]
    fn kind_and_class_names_are_their_json_names() {
        for k in MessageKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for c in BounceClass::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }

    #[test]
    fn class_is_hard_only_for_permanent_recipient_failures() {
        use BounceClass::*;
        let b = MessageKind::Bounce;
        assert_eq!(
            BounceClass::derive(b, Reason::UserUnknown, Some("5.1.1"), Some("failed")),
            Some(Hard)
        );
        assert_eq!(
            BounceClass::derive(b, Reason::UserUnknown, Some("5.1.1"), Some("delayed")),
            Some(Soft)
        );
        assert_eq!(
            BounceClass::derive(b, Reason::UserUnknown, Some("4.1.1"), None),
            Some(Soft)
        );
        assert_eq!(
            BounceClass::derive(b, Reason::UserUnknown, None, None),
            Some(Soft)
        );
        assert_eq!(
            BounceClass::derive(b, Reason::SpamDetected, Some("5.7.1"), None),
            Some(Soft)
        );
        assert_eq!(
            BounceClass::derive(MessageKind::Complaint, Reason::Feedback, None, None),
            None
        );
        // Hard needs agreement: a status that says the mailbox exists, or a policy or
        // system condition, is not a dead address whatever the words.
        for status in ["5.2.1", "5.2.0", "5.7.1", "5.3.2", "5.4.2", "5.5.2"] {
            assert_eq!(
                BounceClass::derive(b, Reason::UserUnknown, Some(status), Some("failed")),
                Some(Soft),
                "{status}"
            );
        }
        for (reason, status) in [
            (Reason::UserUnknown, "5.0.0"),
            (Reason::UserUnknown, "5.1.0"),
            (Reason::HostUnknown, "5.4.4"),
            (Reason::HostUnknown, "5.1.2"),
            (Reason::NotAccept, "5.1.10"),
            (Reason::HasMoved, "5.1.6"),
        ] {
            assert_eq!(
                BounceClass::derive(b, reason, Some(status), Some("failed")),
                Some(Hard),
                "{reason} {status}"
            );
        }
        assert_eq!(
            BounceClass::derive(b, Reason::HostUnknown, Some("5.1.1"), Some("failed")),
            Some(Soft)
        );
    }

    #[test]
    fn blame_follows_the_reason_and_only_failures_have_one() {
        assert_eq!(Blame::of(Reason::MailboxFull), Some(Blame::Recipient));
        assert_eq!(Blame::of(Reason::Blocked), Some(Blame::Sender));
        assert_eq!(Blame::of(Reason::SpamDetected), Some(Blame::Sender));
        assert_eq!(Blame::of(Reason::Expired), Some(Blame::Transit));
        assert_eq!(Blame::of(Reason::Undefined), Some(Blame::Unknown));
        assert_eq!(Blame::of(Reason::Feedback), None);
        assert_eq!(Blame::of_failure(None, Reason::Blocked), None);
        for b in Blame::ALL {
            assert_eq!(b.as_str().parse::<Blame>().unwrap(), b);
            assert_eq!(serde_json::to_value(b).unwrap(), b.as_str());
        }
        assert!("nobody".parse::<Blame>().is_err());
        // Every failure reason has a blame.
        for r in Reason::ALL {
            let failure = !matches!(r, Reason::Delivered | Reason::Feedback | Reason::Vacation);
            assert_eq!(Blame::of(*r).is_some(), failure, "{r}");
        }
    }
}
