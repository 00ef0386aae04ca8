//! VERP envelope senders, Message-IDs and correlation headers: what ties a returned
//! message to the send it came from.
//!
//! Every campaign message gets a [`Token`] naming its campaign and its send (the queue
//! row, which knows the recipient), signed with an HMAC-SHA256 key from the config:
//!
//! ```text
//! envelope sender   bounces+42-1337-9f86d081884c7d65@bounces.example.org
//! Message-ID        <rb.42-1337-9f86d081884c7d65@bounces.example.org>
//! headers           X-Rebound-Campaign: 42
//!                   X-Rebound-Token: 42-1337-9f86d081884c7d65
//! ```
//!
//! Bounces go to the envelope sender, so the token comes back in the bounce's own
//! `To`/`Delivered-To`/`X-Original-To`, and usually again in the returned original's
//! headers and Message-ID. [`correlate`] looks in all those places and accepts a token
//! only when its signature checks out, so a forged bounce cannot mark an arbitrary
//! address: it would have to guess 64 bits of HMAC for one send.
//!
//! The token is lower-case hex and decimal, fits easily in the 64 octets RFC 5321 allows
//! a local part, and survives MTAs that fold the local part's case.

use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::detector::BounceReport;

/// Header naming the campaign (decimal id).
pub const HEADER_CAMPAIGN: &str = "X-Rebound-Campaign";
/// Header carrying the signed [`Token`] of the send.
pub const HEADER_TOKEN: &str = "X-Rebound-Token";
/// Local part before the `+` of every VERP address.
pub const VERP_PREFIX: &str = "bounces";
/// Prefix of the Message-IDs rebound generates (before the token).
pub const MESSAGE_ID_PREFIX: &str = "rb.";

const MAC_LEN: usize = 8;

/// Errors of this module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The signing secret is empty.
    #[error("the VERP secret is empty")]
    EmptySecret,
    /// The text is not a token.
    #[error("not a VERP token: {0:?}")]
    Syntax(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// A signed reference to one send of one campaign: `CAMPAIGN-SEND-MAC`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    /// The campaign id.
    pub campaign: i64,
    /// The send (queue row) id.
    pub send: i64,
    mac: [u8; MAC_LEN],
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}-{}",
            self.campaign,
            self.send,
            hex::encode(self.mac)
        )
    }
}

impl FromStr for Token {
    type Err = Error;
    /// Parses the text form (case-insensitive); says nothing about the signature.
    fn from_str(s: &str) -> Result<Token> {
        let err = || Error::Syntax(s.to_owned());
        let (campaign, send, m) = split_token(s).ok_or_else(err)?;
        let mut mac = [0u8; MAC_LEN];
        hex::decode_to_slice(m, &mut mac).map_err(|_| err())?;
        Ok(Token {
            campaign,
            send,
            mac,
        })
    }
}

/// `CAMPAIGN-SEND-MAC` (case-insensitive) as its ids and its MAC's hex, lower-cased; the
/// text form of the VERP token and of the unsubscribe token.
fn split_token(s: &str) -> Option<(i64, i64, String)> {
    let lower = s.trim().to_ascii_lowercase();
    let mut parts = lower.split('-');
    let (Some(c), Some(n), Some(m), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let digits = |x: &str| !x.is_empty() && x.len() <= 18 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(c) || !digits(n) {
        return None;
    }
    Some((c.parse().ok()?, n.parse().ok()?, m.to_owned()))
}

/// Signs and verifies [`Token`]s with one secret.
#[derive(Clone)]
pub struct Signer {
    key: Hmac<Sha256>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer(..)")
    }
}

impl Signer {
    /// A signer with this secret.
    ///
    /// # Errors
    /// [`Error::EmptySecret`].
    pub fn new(secret: &[u8]) -> Result<Signer> {
        if secret.is_empty() {
            return Err(Error::EmptySecret);
        }
        let key = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| Error::EmptySecret)?;
        Ok(Signer { key })
    }

    /// The MAC of (campaign, send) under `label`: each kind of token has its own.
    fn mac_with(&self, label: &[u8], campaign: i64, send: i64) -> Hmac<Sha256> {
        let mut m = self.key.clone();
        m.update(label);
        m.update(&campaign.to_be_bytes());
        m.update(&send.to_be_bytes());
        m
    }

    fn mac(&self, campaign: i64, send: i64) -> Hmac<Sha256> {
        self.mac_with(b"rebound-verp-v1\0", campaign, send)
    }

    /// The token for `send` of `campaign`.
    pub fn sign(&self, campaign: i64, send: i64) -> Token {
        let full = self.mac(campaign, send).finalize().into_bytes();
        let mut mac = [0u8; MAC_LEN];
        mac.copy_from_slice(&full[..MAC_LEN]);
        Token {
            campaign,
            send,
            mac,
        }
    }

    /// Does the token carry this secret's signature? (Constant-time.)
    pub fn verify(&self, token: &Token) -> bool {
        self.mac(token.campaign, token.send)
            .verify_truncated_left(&token.mac)
            .is_ok()
    }

    /// Parses and verifies a token's text.
    pub fn check(&self, text: &str) -> Option<Token> {
        text.parse().ok().filter(|t| self.verify(t))
    }
}

impl Signer {
    fn unsubscribe_mac(&self, campaign: i64, send: i64) -> Hmac<Sha256> {
        self.mac_with(b"rebound-unsubscribe-v1\0", campaign, send)
    }

    /// The unsubscribe token of `send` of `campaign`: `CAMPAIGN-SEND-MAC`, a 128-bit MAC
    /// under a label of its own. It is not the VERP token, which every returned copy
    /// shows to the servers on the way: this one only unsubscribes, and `POST /u/TOKEN`
    /// answers anyone who asks, so its MAC is twice as long.
    pub fn unsubscribe_token(&self, campaign: i64, send: i64) -> String {
        let full = self.unsubscribe_mac(campaign, send).finalize().into_bytes();
        format!(
            "{campaign}-{send}-{}",
            hex::encode(&full[..UNSUBSCRIBE_MAC_LEN])
        )
    }

    /// The (campaign, send) of an unsubscribe token whose MAC checks out (constant-time).
    pub fn check_unsubscribe(&self, text: &str) -> Option<(i64, i64)> {
        let (campaign, send, m) = split_token(text)?;
        if m.len() != 2 * UNSUBSCRIBE_MAC_LEN {
            return None;
        }
        let mac = hex::decode(m).ok()?;
        self.unsubscribe_mac(campaign, send)
            .verify_truncated_left(&mac)
            .is_ok()
            .then_some((campaign, send))
    }
}

const UNSUBSCRIBE_MAC_LEN: usize = 16;

/// The `mailto:` unsubscribe address for a token: `bounces+u-TOKEN@bounce_domain`, which
/// reaches the bounce mailbox as the VERP addresses do.
pub fn unsubscribe_address(unsubscribe_token: &str, bounce_domain: &str) -> String {
    format!("{VERP_PREFIX}+{UNSUBSCRIBE_PREFIX}{unsubscribe_token}@{bounce_domain}")
}

/// The unsubscribe token text inside an address (`bounces+u-TOKEN@domain`, with or
/// without angle brackets), if it is one. The domain is not checked.
pub fn unsubscribe_token_in_address(address: &str) -> Option<&str> {
    token_in_address(address)?.strip_prefix(UNSUBSCRIBE_PREFIX)
}

/// The unsubscribe token a message sent to an unsubscribe address carries: the first one
/// in its envelope headers (`Delivered-To`, `X-Original-To`, `To`, …; a display name
/// before the address is skipped). Not verified.
pub fn unsubscribe_token_in_headers(headers: &[(String, String)]) -> Option<&str> {
    ENVELOPE_HEADERS.iter().find_map(|name| {
        header_values(headers, name).find_map(|value| {
            value.split(',').find_map(|addr| {
                let addr = addr.rsplit_once('<').map_or(addr, |(_, a)| a);
                unsubscribe_token_in_address(addr)
            })
        })
    })
}

/// What follows the `+` of an unsubscribe address, before the token.
const UNSUBSCRIBE_PREFIX: &str = "u-";

/// The VERP envelope sender for a token: `bounces+TOKEN@bounce_domain`.
pub fn verp_address(token: &Token, bounce_domain: &str) -> String {
    format!("{VERP_PREFIX}+{token}@{bounce_domain}")
}

/// The Message-ID (without angle brackets) for a token: `rb.TOKEN@bounce_domain`.
pub fn message_id(token: &Token, bounce_domain: &str) -> String {
    format!("{MESSAGE_ID_PREFIX}{token}@{bounce_domain}")
}

/// The token text inside a VERP address (`bounces+TOKEN@domain`, with or without angle
/// brackets or a `rfc822;` type), if it is one. The domain is not checked.
pub fn token_in_address(address: &str) -> Option<&str> {
    let a = address.trim();
    let a = a.split_once(';').map_or(a, |(ty, rest)| {
        if ty.trim().eq_ignore_ascii_case("rfc822") {
            rest
        } else {
            a
        }
    });
    let a = a.trim().trim_start_matches('<').trim_end_matches('>');
    let (local, _domain) = a.rsplit_once('@')?;
    let (prefix, token) = local.split_once('+')?;
    prefix.eq_ignore_ascii_case(VERP_PREFIX).then_some(token)
}

/// The token text inside a Message-ID rebound generated, if it is one.
pub fn token_in_message_id(message_id: &str) -> Option<&str> {
    let m = message_id
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    let (local, _domain) = m.rsplit_once('@')?;
    let prefix = local.get(..MESSAGE_ID_PREFIX.len())?;
    prefix
        .eq_ignore_ascii_case(MESSAGE_ID_PREFIX)
        .then(|| &local[MESSAGE_ID_PREFIX.len()..])
}

/// Where [`correlate`] found the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A top-level header of the bounce (`To`, `Delivered-To`, `X-Original-To`, …): the
    /// VERP address the bounce was delivered to.
    Envelope,
    /// The returned original's headers (`Return-Path`, `X-Rebound-Token`).
    OriginalHeaders,
    /// The returned original's Message-ID.
    MessageId,
    /// Somewhere in the text of the bounce.
    Text,
}

/// A bounce tied to the send it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correlation {
    /// The verified token.
    pub token: Token,
    /// Where it was found.
    pub found: Found,
}

const ENVELOPE_HEADERS: &[&str] = &[
    "Delivered-To",
    "X-Original-To",
    "To",
    "Envelope-To",
    "X-Envelope-To",
    "X-Original-Rcpt-To",
    "Return-Path",
];

/// Ties a returned message to the send it came from: the first of [`candidates`] whose
/// signature checks out. A token that does not verify is ignored.
pub fn correlate(report: &BounceReport, signer: &Signer) -> Option<Correlation> {
    candidates(report)
        .into_iter()
        .find(|c| signer.verify(&c.token))
}

/// Every well-formed token in a returned message, best evidence first, *not verified*:
/// the bounce's envelope headers (`Delivered-To`, `X-Original-To`, `To`, …), then the
/// returned original's `X-Rebound-Token`, `Return-Path` and Message-ID, then
/// `In-Reply-To`/`References`, then anywhere in the text.
pub fn candidates(report: &BounceReport) -> Vec<Correlation> {
    let mut out: Vec<Correlation> = Vec::new();
    let mut push = |text: Option<&str>, found: Found| {
        if let Some(token) = text.and_then(|t| t.parse::<Token>().ok())
            && !out.iter().any(|c| c.token == token)
        {
            out.push(Correlation { token, found });
        }
    };
    for name in ENVELOPE_HEADERS {
        for value in header_values(&report.headers, name) {
            for addr in value.split(',') {
                push(token_in_address(addr), Found::Envelope);
            }
        }
    }
    if let Some(original) = &report.original {
        for (name, value) in &original.headers {
            if name.eq_ignore_ascii_case(HEADER_TOKEN) {
                push(Some(value), Found::OriginalHeaders);
            } else if name.eq_ignore_ascii_case("Return-Path")
                || name.eq_ignore_ascii_case("Sender")
            {
                push(token_in_address(value), Found::OriginalHeaders);
            }
        }
        for id in original
            .message_id
            .iter()
            .map(String::as_str)
            .chain(original.header("Message-ID"))
        {
            push(token_in_message_id(id), Found::MessageId);
        }
    }
    for name in ["In-Reply-To", "References"] {
        for value in header_values(&report.headers, name) {
            for id in value.split_whitespace() {
                push(token_in_message_id(id), Found::MessageId);
            }
        }
    }
    for t in tokens_in_text(&report.text) {
        push(Some(t), Found::Text);
    }
    out
}

fn header_values<'a>(
    headers: &'a [(String, String)],
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every `bounces+TOKEN@` and `rb.TOKEN@` candidate in free text.
fn tokens_in_text(text: &str) -> impl Iterator<Item = &str> {
    let lower_starts =
        |s: &str, p: &str| s.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p));
    let plus = format!("{VERP_PREFIX}+");
    text.char_indices().filter_map(move |(i, _)| {
        let rest = &text[i..];
        let skip = if lower_starts(rest, &plus) {
            plus.len()
        } else if lower_starts(rest, MESSAGE_ID_PREFIX) {
            MESSAGE_ID_PREFIX.len()
        } else {
            return None;
        };
        let body = &rest[skip..];
        let end = body.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))?;
        body[end..].starts_with('@').then(|| &body[..end])
    })
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::detector::OriginalMessage;

    fn signer() -> Signer {
        Signer::new(b"test secret").unwrap()
    }

    #[test]
    fn unsubscribe_tokens_check_out_only_with_their_secret_and_label() {
        let s = signer();
        let t = s.unsubscribe_token(42, 1337);
        assert_eq!(s.check_unsubscribe(&t), Some((42, 1337)));
        assert_eq!(s.check_unsubscribe(&t.to_uppercase()), Some((42, 1337)));
        assert_eq!(t.rsplit('-').next().map(str::len), Some(32));
        // Another secret, another send, a cut MAC, the VERP token of the same send.
        assert_eq!(Signer::new(b"other").unwrap().check_unsubscribe(&t), None);
        let other_send = t.replacen("1337", "1338", 1);
        assert_eq!(s.check_unsubscribe(&other_send), None);
        assert_eq!(s.check_unsubscribe(&t[..t.len() - 2]), None);
        assert_eq!(s.check_unsubscribe(&s.sign(42, 1337).to_string()), None);
        for junk in ["", "42-1337", "a-b-c", "42-1337-zz", "1-2-3-4"] {
            assert_eq!(s.check_unsubscribe(junk), None, "{junk:?}");
        }
        let address = unsubscribe_address(&t, "b.example.org");
        assert_eq!(address, format!("bounces+u-{t}@b.example.org"));
        assert_eq!(
            unsubscribe_token_in_address(&format!("<{address}>")),
            Some(&*t)
        );
        let headers = vec![
            ("From".to_owned(), "ann@example.com".to_owned()),
            ("To".to_owned(), format!("Unsubscribe <{address}>")),
        ];
        assert_eq!(unsubscribe_token_in_headers(&headers), Some(&*t));
        assert_eq!(unsubscribe_token_in_headers(&headers[..1]), None);
        // A VERP address is not an unsubscribe address.
        let verp = verp_address(&s.sign(42, 1337), "b.example.org");
        assert_eq!(unsubscribe_token_in_address(&verp), None);
    }

    #[test]
    fn token_round_trips_and_verifies() {
        let s = signer();
        let t = s.sign(42, 1337);
        let text = t.to_string();
        assert_eq!(text.parse::<Token>().unwrap(), t);
        assert!(s.verify(&t));
        assert_eq!(s.check(&text.to_ascii_uppercase()), Some(t));
        let other = Signer::new(b"another secret").unwrap();
        assert!(!other.verify(&t));
        // A forged token for another send does not verify.
        let forged = format!("42-1338-{}", &text[8..]);
        assert_eq!(s.check(&forged), None);
        assert!(Signer::new(b"").is_err());
    }

    #[test]
    fn verp_address_fits_a_local_part() {
        let t = signer().sign(i64::from(u32::MAX), i64::from(u32::MAX));
        let a = verp_address(&t, "bounces.example.org");
        let local = a.split('@').next().unwrap();
        assert!(local.len() <= 64, "{local}");
        assert_eq!(
            token_in_address(&format!("<{a}>")),
            Some(t.to_string().as_str())
        );
        assert_eq!(token_in_address("rfc822; news@example.org"), None);
        let m = message_id(&t, "bounces.example.org");
        assert_eq!(
            token_in_message_id(&format!("<{m}>")),
            Some(t.to_string().as_str())
        );
    }

    fn report(
        headers: &[(&str, &str)],
        original: Option<OriginalMessage>,
        text: &str,
    ) -> BounceReport {
        BounceReport {
            headers: headers
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            original,
            text: text.into(),
            ..BounceReport::default()
        }
    }

    #[test]
    fn correlate_finds_the_token_wherever_it_is() {
        let s = signer();
        let t = s.sign(3, 99);
        let addr = verp_address(&t, "b.example.org");
        let r = report(&[("To", &addr)], None, "");
        assert_eq!(
            correlate(&r, &s),
            Some(Correlation {
                token: t,
                found: Found::Envelope
            })
        );
        let orig = OriginalMessage {
            message_id: Some(message_id(&t, "b.example.org")),
            headers: vec![("Subject".into(), "hi".into())],
        };
        let r = report(&[("To", "bounces@b.example.org")], Some(orig), "");
        assert_eq!(correlate(&r, &s).map(|c| c.found), Some(Found::MessageId));
        let orig = OriginalMessage {
            message_id: None,
            headers: vec![(HEADER_TOKEN.into(), t.to_string())],
        };
        let r = report(&[], Some(orig), "");
        assert_eq!(
            correlate(&r, &s).map(|c| c.found),
            Some(Found::OriginalHeaders)
        );
        let r = report(
            &[],
            None,
            &format!("The mail from <{addr}> could not be delivered."),
        );
        assert_eq!(correlate(&r, &s).map(|c| c.found), Some(Found::Text));
    }

    #[test]
    fn correlate_ignores_forged_tokens() {
        let s = signer();
        let forged = Signer::new(b"attacker").unwrap().sign(3, 99);
        let r = report(
            &[("To", &verp_address(&forged, "b.example.org"))],
            None,
            "bounces+1-2-0011223344556677@x",
        );
        assert_eq!(correlate(&r, &s), None);
    }
}
