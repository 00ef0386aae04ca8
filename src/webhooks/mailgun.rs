//! Mailgun's webhooks (JSON, `signature` + `event-data`): the signature checked, each
//! `failed` event made a delivery-status report, each `complained` event a feedback
//! report; the rest ignored.
//!
//! Mailgun signs `timestamp` followed by `token` with HMAC-SHA256 under the account's
//! webhook signing key (hex in `signature.signature`). The body itself is not signed, so
//! a signature could be lifted onto another body: a timestamp more than
//! [`super::MAX_SKEW_SECS`] away from our clock is refused, and so is a token taken before
//! ([`crate::store::Store::take_webhook_token`]) unless the request is byte for byte the
//! one that first brought it (Mailgun retrying).

use serde::Deserialize;

use super::evidence::{self, Action, Bounce, Complaint, Original};
use super::{Error, Parsed, Refusal, Report, malformed};
use crate::store::Store;
use crate::store::webhooks::TokenUse;

/// The Mailgun webhook: its signing key.
pub struct Mailgun {
    key: ring::hmac::Key,
}

#[derive(Deserialize)]
struct Body {
    signature: Option<Signature>,
    #[serde(rename = "event-data")]
    event_data: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Signature {
    timestamp: Option<serde_json::Value>,
    token: Option<String>,
    signature: Option<String>,
}

#[derive(Deserialize, Default)]
struct EventData {
    #[serde(default)]
    event: String,
    id: Option<String>,
    recipient: Option<String>,
    severity: Option<String>,
    reason: Option<String>,
    #[serde(rename = "delivery-status", default)]
    delivery_status: DeliveryStatus,
    #[serde(default)]
    message: Message,
}

#[derive(Deserialize, Default)]
struct DeliveryStatus {
    code: Option<serde_json::Value>,
    message: Option<String>,
    description: Option<String>,
    #[serde(rename = "enhanced-code")]
    enhanced_code: Option<String>,
    #[serde(rename = "mx-host")]
    mx_host: Option<String>,
}

#[derive(Deserialize, Default)]
struct Message {
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
}

impl Mailgun {
    /// The webhook of `[webhooks.mailgun]`, its key read from `signing_key_env`.
    ///
    /// # Errors
    /// [`Error::Env`] when the variable is not set, [`Error::Invalid`] when it is empty.
    pub fn from_config(c: &crate::config::MailgunWebhook) -> Result<Mailgun, Error> {
        let key = crate::config::secret_from_env(&c.signing_key_env).map_err(|_| Error::Env {
            provider: "mailgun",
            var: c.signing_key_env.clone(),
        })?;
        Mailgun::new(key.trim())
    }

    /// A webhook checking signatures with `signing_key`.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty key.
    pub fn new(signing_key: &str) -> Result<Mailgun, Error> {
        if signing_key.is_empty() {
            return Err(Error::Invalid {
                provider: "mailgun",
                reason: "the signing key is empty".into(),
            });
        }
        Ok(Mailgun {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, signing_key.as_bytes()),
        })
    }

    /// Checks one request's signature, timestamp and token, and reads its event.
    ///
    /// # Errors
    /// [`Refusal`]: 400 for a body that is not Mailgun's JSON, 401 without a signature,
    /// 403 for a wrong signature, a stale timestamp or a replayed token, 503 when the
    /// store fails.
    pub async fn parse(&self, store: &Store, body: &[u8]) -> Result<Parsed, Refusal> {
        let b: Body = serde_json::from_slice(body).map_err(|e| malformed(format!("JSON: {e}")))?;
        let sig = b
            .signature
            .ok_or_else(|| Refusal::Unauthenticated("no signature".into()))?;
        let (Some(timestamp), Some(token), Some(signature)) =
            (sig.timestamp, sig.token, sig.signature)
        else {
            return Err(Refusal::Unauthenticated(
                "signature without timestamp, token or signature".into(),
            ));
        };
        // Mailgun sends the timestamp as a string of seconds; a number is taken too.
        let timestamp = match &timestamp {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(Refusal::Forbidden("timestamp is not a number".into())),
        };
        let given = hex::decode(signature.trim())
            .map_err(|_| Refusal::Forbidden("signature is not hex".into()))?;
        let signed = format!("{timestamp}{token}");
        ring::hmac::verify(&self.key, signed.as_bytes(), &given)
            .map_err(|_| Refusal::Forbidden("wrong signature".into()))?;
        let secs: u64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Refusal::Forbidden("timestamp is not a number".into()))?;
        if !super::fresh(secs) {
            return Err(Refusal::Forbidden(format!(
                "timestamp {secs} is more than {} s from now",
                super::MAX_SKEW_SECS
            )));
        }
        if token.is_empty() || token.len() > 200 {
            return Err(Refusal::Forbidden("token missing or too long".into()));
        }
        match store.take_webhook_token("mailgun", &token, body).await {
            Ok(TokenUse::Fresh | TokenUse::Retry) => {}
            Ok(TokenUse::Replay) => {
                return Err(Refusal::Forbidden("token was used before".into()));
            }
            Err(e) => return Err(Refusal::Unavailable(format!("store: {e}"))),
        }
        let data = b.event_data.ok_or_else(|| malformed("no event-data"))?;
        let data: EventData =
            serde_json::from_value(data).map_err(|e| malformed(format!("event-data: {e}")))?;
        Ok(event(data)?.map_or_else(
            || Parsed {
                ignored: 1,
                ..Parsed::default()
            },
            |r| Parsed {
                reports: vec![r],
                ..Parsed::default()
            },
        ))
    }
}

/// The report of one event; `None` for an event that is neither a failure nor a
/// complaint.
fn event(d: EventData) -> Result<Option<Report>, Refusal> {
    if !matches!(d.event.as_str(), "failed" | "complained") {
        return Ok(None);
    }
    let id =
        d.id.filter(|i| !i.trim().is_empty())
            .ok_or_else(|| malformed("event without id"))?;
    let recipient = d
        .recipient
        .as_deref()
        .and_then(evidence::clean_address)
        .ok_or_else(|| malformed("event without a recipient address"))?;
    let original = original(&d.message);
    if d.event == "complained" {
        let raw = evidence::feedback_report(
            "mailgun",
            &id,
            &Complaint {
                recipients: vec![recipient],
                feedback_type: "abuse".into(),
            },
            &original,
        );
        return Ok(Some(Report { id, raw }));
    }
    let severity = d.severity.unwrap_or_default();
    let reason = d.reason.unwrap_or_default();
    let label = format!("{severity}/{reason}");
    let ds = d.delivery_status;
    let (status, diagnostic) = if reason.starts_with("suppress") {
        // Mailgun did not try: the address is on its own bounce, unsubscribe or complaint
        // list. That is the provider's memory of an earlier event, not fresh evidence of
        // ours, so the report carries no code and no text and cannot be a hard bounce.
        (None, None)
    } else {
        let text = ds
            .message
            .filter(|m| !m.trim().is_empty())
            .or(ds.description.filter(|m| !m.trim().is_empty()));
        let code = ds.code.and_then(|c| match c {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        // The reply code goes in front of the server's text when the text does not start
        // with it, as an MTA's Diagnostic-Code has it.
        let diagnostic = match (code, text) {
            (Some(c), Some(t))
                if (200..600).contains(&c) && !t.trim_start().starts_with(&c.to_string()) =>
            {
                Some(format!("{c} {t}"))
            }
            (_, t) => t,
        };
        (
            ds.enhanced_code.filter(|c| !c.trim().is_empty()),
            diagnostic,
        )
    };
    let action = if severity == "temporary" {
        Action::Delayed
    } else {
        Action::Failed
    };
    let raw = evidence::delivery_report(
        "mailgun",
        &id,
        &[Bounce {
            recipient,
            action,
            status,
            diagnostic,
            remote_mta: ds.mx_host,
            label: Some(label),
        }],
        &original,
    );
    Ok(Some(Report { id, raw }))
}

/// The original's headers Mailgun gives (`message.headers`: message-id, from, to, subject).
fn original(m: &Message) -> Original {
    let mut o = Original::default();
    for (name, value) in &m.headers {
        let Some(value) = value.as_str() else {
            continue;
        };
        if name.eq_ignore_ascii_case("message-id") {
            o.message_id = Some(value.to_owned());
        } else {
            o.headers.push((name.clone(), value.to_owned()));
        }
    }
    o
}

#[cfg(test)]
mod test {
    use super::*;

    /// Events whose fields have the wrong types or are missing: a 400 or ignored, never
    /// a panic.
    #[test]
    fn mailgun_odd_events_are_refused_or_ignored() {
        let odd = [
            serde_json::json!({"event": "failed"}),
            serde_json::json!({"event": "failed", "id": "x"}),
            serde_json::json!({"event": "failed", "id": "x", "recipient": "no address"}),
            serde_json::json!({"event": "failed", "id": 3, "recipient": "a@example.net"}),
            serde_json::json!({"event": "failed", "id": "x", "recipient": "a@example.net",
                               "delivery-status": "550"}),
            serde_json::json!({"event": "failed", "id": "x", "recipient": "a@example.net",
                               "message": {"headers": 3}}),
            serde_json::json!({"event": ["failed"]}),
            serde_json::json!({"event": "complained", "id": "", "recipient": "a@example.net"}),
            serde_json::json!(null),
            serde_json::json!("failed"),
        ];
        for v in odd {
            let r = serde_json::from_value::<EventData>(v.clone())
                .map_err(malformed)
                .and_then(event);
            assert!(matches!(r, Err(Refusal::Malformed(_))), "{v}: {r:?}");
        }
        let fine = serde_json::json!({"event": "failed", "id": "x", "recipient": "a@example.net",
            "delivery-status": {"code": "550", "message": "\u{0}\r\n".repeat(10_000)},
            "message": {"headers": {"message-id": 5, "subject": "x\r\nBcc: b@example.com"}}});
        let r = event(serde_json::from_value(fine).unwrap())
            .unwrap()
            .unwrap();
        let text = String::from_utf8(r.raw).unwrap();
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(event(EventData::default()).unwrap().is_none());
    }
}
