//! SendGrid's signed event webhook: a JSON array of events, signed with ECDSA P-256 /
//! SHA-256 over the `X-Twilio-Email-Event-Webhook-Timestamp` header followed by the raw
//! body (signature in `X-Twilio-Email-Event-Webhook-Signature`, base64 of the DER
//! signature). Each `bounce` event becomes a delivery-status report (`deferred`: a delay),
//! each `spamreport` a feedback report, each under its own `sg_event_id`; the rest is
//! ignored.
//!
//! `dropped` events are ignored too: SendGrid did not try to deliver (the address is on
//! its own suppression lists, or the message was refused before sending), so nothing was
//! learnt about the recipient.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde::Deserialize;

use super::evidence::{self, Action, Bounce, Complaint, Original};
use super::{Error, Parsed, Refusal, Report, malformed};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-twilio-email-event-webhook-signature";
/// The header carrying the signed timestamp.
pub const TIMESTAMP_HEADER: &str = "x-twilio-email-event-webhook-timestamp";

/// The DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, the
/// bit string's header): what comes after it is the uncompressed point ring verifies with.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The SendGrid webhook: its verification key.
pub struct Sendgrid {
    /// The uncompressed P-256 point.
    point: Vec<u8>,
}

#[derive(Deserialize, Default)]
struct Event {
    #[serde(default)]
    event: String,
    email: Option<String>,
    sg_event_id: Option<String>,
    #[serde(rename = "smtp-id")]
    smtp_id: Option<String>,
    reason: Option<String>,
    response: Option<String>,
    status: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    bounce_classification: Option<String>,
    mx: Option<String>,
}

impl Sendgrid {
    /// The webhook of `[webhooks.sendgrid]`, its key read from `public_key_env`.
    ///
    /// # Errors
    /// [`Error::Env`] when the variable is not set, [`Error::Invalid`] when it is not a
    /// base64 P-256 public key.
    pub fn from_config(c: &crate::config::SendgridWebhook) -> Result<Sendgrid, Error> {
        let key = crate::config::secret_from_env(&c.public_key_env).map_err(|_| Error::Env {
            provider: "sendgrid",
            var: c.public_key_env.clone(),
        })?;
        Sendgrid::new(&key)
    }

    /// A webhook checking signatures with `public_key` (base64 DER SubjectPublicKeyInfo,
    /// as SendGrid shows it; a PEM's armour is taken off).
    ///
    /// # Errors
    /// [`Error::Invalid`] when it is not a P-256 key.
    pub fn new(public_key: &str) -> Result<Sendgrid, Error> {
        let b64: String = public_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .flat_map(|l| l.chars())
            .filter(|c| !c.is_whitespace())
            .collect();
        let invalid = |reason: &str| Error::Invalid {
            provider: "sendgrid",
            reason: reason.into(),
        };
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| invalid("the public key is not base64"))?;
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX[..])
            .filter(|p| p.len() == 65 && p[0] == 4)
            .ok_or_else(|| invalid("the public key is not an ECDSA P-256 SubjectPublicKeyInfo"))?;
        Ok(Sendgrid {
            point: point.to_vec(),
        })
    }

    /// Checks one request's signature and timestamp, and reads its events.
    ///
    /// # Errors
    /// [`Refusal`]: 401 without the signature headers, 403 for a wrong signature or a
    /// timestamp more than [`super::MAX_SKEW_SECS`] away, 400 for a body that is not an
    /// array of events.
    pub fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Refusal> {
        let (Some(signature), Some(timestamp)) =
            (headers.get(SIGNATURE_HEADER), headers.get(TIMESTAMP_HEADER))
        else {
            return Err(Refusal::Unauthenticated(
                "no X-Twilio-Email-Event-Webhook-Signature/-Timestamp".into(),
            ));
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature.as_bytes())
            .map_err(|_| Refusal::Forbidden("signature is not base64".into()))?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &self.point,
        )
        .verify(&signed, &signature)
        .map_err(|_| Refusal::Forbidden("wrong signature".into()))?;
        let secs: u64 = std::str::from_utf8(timestamp.as_bytes())
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .ok_or_else(|| Refusal::Forbidden("timestamp is not a number".into()))?;
        if !super::fresh(secs) {
            return Err(Refusal::Forbidden(format!(
                "timestamp {secs} is more than {} s from now",
                super::MAX_SKEW_SECS
            )));
        }
        let events: Vec<serde_json::Value> =
            serde_json::from_slice(body).map_err(|e| malformed(format!("JSON array: {e}")))?;
        let mut out = Parsed::default();
        for e in events {
            // One event SendGrid wrote oddly does not hold back the others of the batch
            // (SendGrid would post the whole batch again and again).
            let Ok(e) = serde_json::from_value::<Event>(e) else {
                tracing::warn!("sendgrid: an event that is not an object of known fields, ignored");
                out.ignored += 1;
                continue;
            };
            match event(e) {
                Some(r) => out.reports.push(r),
                None => out.ignored += 1,
            }
        }
        Ok(out)
    }
}

fn event(e: Event) -> Option<Report> {
    let action = match e.event.as_str() {
        "bounce" => Action::Failed,
        "deferred" => Action::Delayed,
        "spamreport" => {
            let id = e.sg_event_id.filter(|i| !i.trim().is_empty())?;
            let recipient = e.email.as_deref().and_then(evidence::clean_address)?;
            let raw = evidence::feedback_report(
                "sendgrid",
                &id,
                &Complaint {
                    recipients: vec![recipient],
                    feedback_type: "abuse".into(),
                },
                &original(e.smtp_id),
            );
            return Some(Report { id, raw });
        }
        _ => return None,
    };
    let Some(id) = e.sg_event_id.filter(|i| !i.trim().is_empty()) else {
        tracing::warn!("sendgrid: a {} event without sg_event_id, ignored", e.event);
        return None;
    };
    let Some(recipient) = e.email.as_deref().and_then(evidence::clean_address) else {
        tracing::warn!("sendgrid: a {} event without an address, ignored", e.event);
        return None;
    };
    // `reason` is the remote server's reply of a bounce, `response` that of a deferral.
    let diagnostic = e.reason.or(e.response).filter(|t| !t.trim().is_empty());
    let label = [e.kind, e.bounce_classification]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/");
    let raw = evidence::delivery_report(
        "sendgrid",
        &id,
        &[Bounce {
            recipient,
            action,
            status: e.status.filter(|s| !s.trim().is_empty()),
            diagnostic,
            remote_mta: e.mx,
            label: (!label.is_empty()).then_some(label),
        }],
        &original(e.smtp_id),
    );
    Some(Report { id, raw })
}

/// `smtp-id` is the Message-ID the message was sent with.
fn original(smtp_id: Option<String>) -> Original {
    Original {
        message_id: smtp_id.filter(|s| !s.trim().is_empty()),
        headers: Vec::new(),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sendgrid_keys_that_are_not_p256_are_refused_at_start() {
        for key in [
            "",
            "not base64!",
            "AAAA",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
        ] {
            assert!(Sendgrid::new(key).is_err(), "{key:?}");
        }
    }

    /// Odd events of a batch are ignored one by one; none panics.
    #[test]
    fn sendgrid_odd_events_are_ignored() {
        for e in [
            serde_json::json!({"event": "bounce"}),
            serde_json::json!({"event": "bounce", "sg_event_id": "x"}),
            serde_json::json!({"event": "bounce", "sg_event_id": "x", "email": "a b"}),
            serde_json::json!({"event": "spamreport", "email": "a@example.net"}),
            serde_json::json!({"event": "open", "sg_event_id": "x", "email": "a@example.net"}),
        ] {
            let e: Event = serde_json::from_value(e).unwrap();
            assert!(event(e).is_none());
        }
        assert!(serde_json::from_value::<Event>(serde_json::json!({"event": 5})).is_err());
    }
}
