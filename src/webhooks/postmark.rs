//! Postmark's bounce and spam complaint webhooks (JSON, one record a request), behind
//! HTTP basic authentication set in the webhook's URL (`https://user:pass@host/…`).
//!
//! A `Bounce` record becomes a delivery-status report from its `Details` (the remote
//! server's reply; Postmark's `Description` of the type is only a label); a `SpamComplaint` record a feedback report;
//! the ledger id is the record's `ID`. Postmark's `Type` is only a label: bounces that
//! Postmark files as transient (`Transient`, `SoftBounce`, `DnsError`) are reported as
//! delays, records that say nothing about delivery to the recipient (`Subscribe`,
//! `AutoResponder`, `ManuallyDeactivated`, …) are ignored, and the text decides the rest.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::evidence::{self, Action, Bounce, Complaint, Original};
use super::{Error, Parsed, Refusal, Report, malformed};

/// The Postmark webhook: the credentials it expects, hashed (compared in constant time
/// whatever their length).
pub struct Postmark {
    credentials: [u8; 32],
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Record {
    #[serde(default)]
    record_type: String,
    #[serde(rename = "ID")]
    id: Option<serde_json::Value>,
    #[serde(rename = "Type")]
    kind: Option<String>,
    details: Option<String>,
    description: Option<String>,
    email: Option<String>,
    #[serde(rename = "MessageID")]
    message_id: Option<String>,
    subject: Option<String>,
    from: Option<String>,
}

fn hash(user: &str, password: &str) -> [u8; 32] {
    Sha256::digest(format!("{user}:{password}").as_bytes()).into()
}

impl Postmark {
    /// The webhook of `[webhooks.postmark]`, its password read from `password_env`.
    ///
    /// # Errors
    /// [`Error::Env`] when the variable is not set, [`Error::Invalid`] for an empty user
    /// name or password.
    pub fn from_config(c: &crate::config::PostmarkWebhook) -> Result<Postmark, Error> {
        let password = crate::config::secret_from_env(&c.password_env).map_err(|_| Error::Env {
            provider: "postmark",
            var: c.password_env.clone(),
        })?;
        Postmark::new(&c.username, &password)
    }

    /// A webhook expecting these credentials.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an empty user name or password.
    pub fn new(username: &str, password: &str) -> Result<Postmark, Error> {
        if username.is_empty() || password.is_empty() || username.contains(':') {
            return Err(Error::Invalid {
                provider: "postmark",
                reason: "username and password must be set (and the username without ':')".into(),
            });
        }
        Ok(Postmark {
            credentials: hash(username, password),
        })
    }

    /// Checks one request's credentials and reads its record.
    ///
    /// # Errors
    /// [`Refusal`]: 401 without basic credentials, 403 for wrong ones, 400 for a body
    /// that is not a Postmark record.
    pub fn parse(&self, headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Refusal> {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
            })
            .ok_or_else(|| Refusal::Unauthenticated("no basic authentication".into()))?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(given)
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| Refusal::Forbidden("malformed basic credentials".into()))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| Refusal::Forbidden("malformed basic credentials".into()))?;
        if !bool::from(hash(user, password).ct_eq(&self.credentials)) {
            return Err(Refusal::Forbidden("wrong credentials".into()));
        }
        let r: Record =
            serde_json::from_slice(body).map_err(|e| malformed(format!("JSON record: {e}")))?;
        Ok(match record(r)? {
            Some(report) => Parsed {
                reports: vec![report],
                ..Parsed::default()
            },
            None => Parsed {
                ignored: 1,
                ..Parsed::default()
            },
        })
    }
}

fn record(r: Record) -> Result<Option<Report>, Refusal> {
    let kind = r.kind.clone().unwrap_or_default();
    let complaint = r.record_type == "SpamComplaint" || kind == "SpamComplaint";
    if r.record_type != "Bounce" && !complaint {
        return Ok(None);
    }
    let action = match kind.as_str() {
        _ if complaint => None,
        "HardBounce" | "BadEmailAddress" | "Blocked" | "DMARCPolicy" | "SpamNotification"
        | "VirusNotification" | "Unknown" | "SMTPApiError" | "" => Some(Action::Failed),
        "Transient" | "SoftBounce" | "DnsError" => Some(Action::Delayed),
        // Nothing about delivery to the recipient (list subscriptions, auto-replies, a
        // deactivation on Postmark's side, …).
        _ => return Ok(None),
    };
    let id = match &r.id {
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => return Err(malformed("record without ID")),
    };
    let recipient = r
        .email
        .as_deref()
        .and_then(evidence::clean_address)
        .ok_or_else(|| malformed("record without an Email address"))?;
    let mut original = Original::default();
    // Postmark's MessageID is its own id of the message, not the Message-ID header: kept
    // for people reading the report, never taken for ours.
    if let Some(id) = r.message_id.filter(|m| !m.trim().is_empty()) {
        original.headers.push(("X-PM-Message-Id".into(), id));
    }
    if let Some(s) = r.subject {
        original.headers.push(("Subject".into(), s));
    }
    if let Some(f) = r.from {
        original.headers.push(("From".into(), f));
    }
    let Some(action) = action else {
        let raw = evidence::feedback_report(
            "postmark",
            &id,
            &Complaint {
                recipients: vec![recipient],
                feedback_type: "abuse".into(),
            },
            &original,
        );
        return Ok(Some(Report { id, raw }));
    };
    // `Details` is the remote server's reply, often with an `smtp;` type in front.
    let diagnostic = r
        .details
        .map(|d| {
            let t = d.trim();
            match t.get(..5) {
                Some(p) if p.eq_ignore_ascii_case("smtp;") => t[5..].trim().to_owned(),
                _ => t.to_owned(),
            }
        })
        .filter(|d| !d.is_empty());
    // `Description` is Postmark's generic text for the `Type` ("… ex: unknown user …"),
    // the same for every bounce of that type: a label, never a diagnostic.
    let label = [Some(kind), r.description]
        .into_iter()
        .flatten()
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let raw = evidence::delivery_report(
        "postmark",
        &id,
        &[Bounce {
            recipient,
            action,
            status: None,
            diagnostic,
            remote_mta: None,
            label: (!label.is_empty()).then_some(label),
        }],
        &original,
    );
    Ok(Some(Report { id, raw }))
}

#[cfg(test)]
mod test {
    use super::*;

    fn headers(user: &str, pass: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        h.insert(header::AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    /// Odd records, with the right credentials: a 400 or ignored, never a panic.
    #[test]
    fn postmark_odd_records_are_refused_or_ignored() {
        let p = Postmark::new("pm", "pw").unwrap();
        let h = headers("pm", "pw");
        for (body, ignored) in [
            (&b"{}"[..], true),
            (b"{\"RecordType\": \"Delivery\", \"ID\": 1}", true),
            (
                b"{\"RecordType\": \"Bounce\", \"Type\": \"Subscribe\", \"ID\": 1}",
                true,
            ),
            (b"{\"RecordType\": \"Bounce\", \"ID\": 1}", false),
            (
                b"{\"RecordType\": \"Bounce\", \"ID\": null, \"Email\": \"a@example.net\"}",
                false,
            ),
            (
                b"{\"RecordType\": \"Bounce\", \"ID\": 1, \"Email\": 5}",
                false,
            ),
            (b"{\"RecordType\": 5}", false),
            (b"[1, 2]", false),
            (b"\xff\xfe", false),
        ] {
            let r = p.parse(&h, body);
            match r {
                Ok(parsed) => assert!(ignored && parsed.ignored == 1, "{body:?}"),
                Err(e) => assert!(
                    !ignored && matches!(e, Refusal::Malformed(_)),
                    "{body:?}: {e:?}"
                ),
            }
        }
        let r = p.parse(&h, b"{\"RecordType\": \"Bounce\", \"ID\": 7, \"Type\": \"HardBounce\", \"Email\": \"a@example.net\", \"Details\": \"smtp;\"}");
        assert_eq!(r.unwrap().reports.len(), 1);
        assert!(matches!(
            p.parse(&headers("pm", "other"), b"{}"),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            p.parse(&HeaderMap::new(), b"{}"),
            Err(Refusal::Unauthenticated(_))
        ));
    }
}
