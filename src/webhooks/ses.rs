//! Amazon SES notifications delivered by an SNS topic's HTTPS subscription.
//!
//! Every SNS message is checked before anything is read from it:
//!
//! 1. its `TopicArn` is one of `[webhooks.ses] topic_arns` (otherwise 403);
//! 2. its `SigningCertURL` is `https://` on an allowed host (`cert_hosts`, default
//!    `sns.*.amazonaws.com` and `sns.*.amazonaws.com.cn`; otherwise 403);
//! 3. the certificate there (fetched once, then cached by URL) chains to a trust root
//!    (the system's plus `ca_file`; further certificates in the PEM are taken as
//!    intermediates), is valid now and is issued to `sns.amazonaws.com` (otherwise 403);
//! 4. `Signature` verifies under it: `SignatureVersion` 1 is SHA1withRSA, 2 SHA256withRSA,
//!    over the canonical string SNS signs (the name and value of each signed field, each
//!    followed by a newline, in SNS's order; otherwise 403).
//!
//! Then a `SubscriptionConfirmation` is confirmed by fetching its `SubscribeURL` (same
//! host rule), an `UnsubscribeConfirmation` is logged, and a `Notification`'s `Message`
//! is read as an SES notification (`notificationType`) or an SES event (`eventType`):
//! `Bounce` and `DeliveryDelay` become one delivery-status report, `Complaint` a feedback
//! report, under the SNS `MessageId` (which SNS keeps for its retries); other types are
//! ignored.
//!
//! SES's labels are not evidence: `bounceType: Permanent` with the subtype `Suppressed`
//! or `OnAccountSuppressionList` means SES did not try, because the address is on SES's
//! own list (an earlier bounce, maybe of another sender's), so such a report carries
//! neither code nor text and can only be a soft bounce of unknown blame. A complaint of
//! subtype `OnAccountSuppressionList` is ignored the same way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, ServerName,
    SignatureVerificationAlgorithm, TrustAnchor, UnixTime,
};
use serde::Deserialize;

use super::evidence::{self, Action, Bounce, Complaint, Original};
use super::{Error, Parsed, Refusal, Report, malformed};

/// The name the signing certificate must be issued to.
pub const SIGNING_CERT_NAME: &str = "sns.amazonaws.com";
/// The largest certificate file fetched.
const MAX_CERT_BYTES: usize = 64 * 1024;
/// Certificates kept (SNS uses a handful of URLs; a flood of others cannot grow this).
const MAX_CACHED: usize = 32;
/// How long a fetch (certificate, SubscribeURL) may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The algorithms a certificate chain may be signed with.
static CHAIN_ALGS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::ring::RSA_PKCS1_2048_8192_SHA256,
    webpki::ring::RSA_PKCS1_2048_8192_SHA384,
    webpki::ring::RSA_PKCS1_2048_8192_SHA512,
    webpki::ring::ECDSA_P256_SHA256,
    webpki::ring::ECDSA_P256_SHA384,
    webpki::ring::ECDSA_P384_SHA256,
    webpki::ring::ECDSA_P384_SHA384,
];

/// SHA1withRSA over ring, for SNS's `SignatureVersion` 1 (webpki ships no SHA-1, being
/// about certificates); used only on messages, never on a certificate chain.
#[derive(Debug)]
struct RsaSha1;

impl SignatureVerificationAlgorithm for RsaSha1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        rustls_pki_types::alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        // sha1WithRSAEncryption (1.2.840.113549.1.1.5) with NULL parameters.
        AlgorithmIdentifier::from_slice(&[
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
        ])
    }
}

/// The SES webhook: allowed topics and certificate hosts, trust roots, an HTTPS client
/// and the certificates fetched so far.
pub struct Ses {
    topics: Vec<String>,
    cert_hosts: Vec<String>,
    anchors: Vec<TrustAnchor<'static>>,
    http: reqwest::Client,
    /// Signing certificate URL → the PEM's certificates (leaf first).
    certs: Mutex<HashMap<String, Arc<Vec<CertificateDer<'static>>>>>,
}

/// An SNS message's envelope (the fields SNS signs and the signature).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    #[serde(rename = "Type")]
    kind: Option<String>,
    message_id: Option<String>,
    topic_arn: Option<String>,
    subject: Option<String>,
    message: Option<String>,
    timestamp: Option<String>,
    token: Option<String>,
    #[serde(rename = "SubscribeURL")]
    subscribe_url: Option<String>,
    signature_version: Option<String>,
    signature: Option<String>,
    #[serde(rename = "SigningCertURL")]
    signing_cert_url: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Notification {
    notification_type: Option<String>,
    event_type: Option<String>,
    bounce: Option<SesBounce>,
    complaint: Option<SesComplaint>,
    delivery_delay: Option<SesDelay>,
    #[serde(default)]
    mail: Mail,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SesBounce {
    bounce_type: Option<String>,
    bounce_sub_type: Option<String>,
    #[serde(default)]
    bounced_recipients: Vec<SesRecipient>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SesRecipient {
    email_address: Option<String>,
    action: Option<String>,
    status: Option<String>,
    diagnostic_code: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SesComplaint {
    #[serde(default)]
    complained_recipients: Vec<SesRecipient>,
    complaint_feedback_type: Option<String>,
    complaint_sub_type: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SesDelay {
    delay_type: Option<String>,
    #[serde(default)]
    delayed_recipients: Vec<SesRecipient>,
    reporting_mta: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Mail {
    #[serde(default)]
    headers: Vec<Header>,
    common_headers: Option<CommonHeaders>,
}

#[derive(Deserialize)]
struct Header {
    name: String,
    value: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CommonHeaders {
    message_id: Option<String>,
    subject: Option<String>,
}

/// Whether `host` matches `pattern` (case-insensitive, label by label; `*` stands for
/// one label of letters, digits and hyphens).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
    let (p, h): (Vec<&str>, Vec<&str>) = (pattern.split('.').collect(), host.split('.').collect());
    p.len() == h.len()
        && p.iter().zip(&h).all(|(p, h)| {
            if *p == "*" {
                !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            } else {
                p == h
            }
        })
}

fn read_pem(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let invalid = |reason: String| Error::Invalid {
        provider: "ses",
        reason,
    };
    let pem =
        std::fs::read(path).map_err(|e| invalid(format!("ca_file {}: {e}", path.display())))?;
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(format!("ca_file {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "ca_file {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

impl Ses {
    /// The webhook of `[webhooks.ses]`: the system's trust roots plus `ca_file`'s.
    ///
    /// # Errors
    /// [`Error::Invalid`] for no topic, a `ca_file` that cannot be read or holds no
    /// certificate, or an HTTPS client that cannot be built.
    pub fn from_config(c: &crate::config::SesWebhook) -> Result<Ses, Error> {
        let invalid = |reason: String| Error::Invalid {
            provider: "ses",
            reason,
        };
        if c.topic_arns.is_empty() {
            return Err(invalid(
                "topic_arns is empty: no topic would be taken".into(),
            ));
        }
        let mut roots = Vec::new();
        let native = rustls_native_certs::load_native_certs();
        if !native.errors.is_empty() {
            tracing::warn!(
                "[webhooks.ses]: some system trust roots could not be read: {:?}",
                native.errors
            );
        }
        roots.extend(native.certs);
        let extra = match &c.ca_file {
            Some(path) => read_pem(path)?,
            None => Vec::new(),
        };
        let mut http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            // An allowed host must not send us elsewhere.
            .redirect(reqwest::redirect::Policy::none());
        for cert in &extra {
            let cert = reqwest::Certificate::from_der(cert.as_ref())
                .map_err(|e| invalid(format!("ca_file: {e}")))?;
            http = http.add_root_certificate(cert);
        }
        roots.extend(extra);
        let anchors: Vec<TrustAnchor<'static>> = roots
            .iter()
            .filter_map(|der| webpki::anchor_from_trusted_cert(der).ok())
            .map(|a| a.to_owned())
            .collect();
        let http = http
            .build()
            .map_err(|e| invalid(format!("HTTPS client: {e}")))?;
        Ok(Ses {
            topics: c.topic_arns.clone(),
            cert_hosts: c.cert_hosts.clone(),
            anchors,
            http,
            certs: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `url` is `https://` on an allowed host, without user information.
    fn url_allowed(&self, url: &str) -> bool {
        let Ok(u) = reqwest::Url::parse(url) else {
            return false;
        };
        u.scheme() == "https"
            && u.username().is_empty()
            && u.password().is_none()
            && u.host_str()
                .is_some_and(|h| self.cert_hosts.iter().any(|p| host_matches(p, h)))
    }

    /// The certificates at `url`, from the cache or fetched.
    async fn certificates(&self, url: &str) -> Result<Arc<Vec<CertificateDer<'static>>>, Refusal> {
        if let Ok(cache) = self.certs.lock()
            && let Some(c) = cache.get(url)
        {
            return Ok(c.clone());
        }
        let unavailable =
            |e: String| Refusal::Unavailable(format!("fetching the signing certificate: {e}"));
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(Refusal::Forbidden(format!(
                "the signing certificate URL answered {}",
                response.status()
            )));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_CERT_BYTES as u64)
        {
            return Err(Refusal::Forbidden(
                "the signing certificate is too large".into(),
            ));
        }
        let pem = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if pem.len() > MAX_CERT_BYTES {
            return Err(Refusal::Forbidden(
                "the signing certificate is too large".into(),
            ));
        }
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &pem[..])
            .collect::<Result<_, _>>()
            .map_err(|_| Refusal::Forbidden("the signing certificate is not PEM".into()))?;
        if certs.is_empty() {
            return Err(Refusal::Forbidden(
                "no certificate at the signing certificate URL".into(),
            ));
        }
        // Only a certificate that checks out now is kept.
        self.check_chain(&certs)?;
        let certs = Arc::new(certs);
        if let Ok(mut cache) = self.certs.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(url.to_owned(), certs.clone());
        }
        Ok(certs)
    }

    /// The leaf chains to a trust root, is valid now and is issued to
    /// [`SIGNING_CERT_NAME`].
    fn check_chain(&self, certs: &[CertificateDer<'static>]) -> Result<(), Refusal> {
        let forbidden = |e: webpki::Error| {
            Refusal::Forbidden(format!("the signing certificate does not check out: {e}"))
        };
        let (leaf, intermediates) = certs
            .split_first()
            .ok_or_else(|| Refusal::Forbidden("no signing certificate".into()))?;
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(forbidden)?;
        ee.verify_for_usage(
            CHAIN_ALGS,
            &self.anchors,
            intermediates,
            UnixTime::now(),
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map_err(forbidden)?;
        let name = ServerName::try_from(SIGNING_CERT_NAME)
            .map_err(|_| Refusal::Forbidden("signing certificate name".into()))?;
        ee.verify_is_valid_for_subject_name(&name)
            .map_err(forbidden)?;
        Ok(())
    }

    /// Checks one SNS message and reads what it carries.
    ///
    /// # Errors
    /// [`Refusal`]: 400 for a body that is not an SNS message, 401 without a signature,
    /// 403 for a topic, certificate URL, certificate or signature that does not check
    /// out, 503 when the certificate or the SubscribeURL cannot be fetched.
    pub async fn parse(&self, body: &[u8]) -> Result<Parsed, Refusal> {
        let e: Envelope =
            serde_json::from_slice(body).map_err(|e| malformed(format!("SNS message: {e}")))?;
        let (Some(version), Some(signature), Some(cert_url)) =
            (&e.signature_version, &e.signature, &e.signing_cert_url)
        else {
            return Err(Refusal::Unauthenticated(
                "no Signature, SignatureVersion or SigningCertURL".into(),
            ));
        };
        let (Some(kind), Some(message_id), Some(topic), Some(message), Some(timestamp)) = (
            &e.kind,
            &e.message_id,
            &e.topic_arn,
            &e.message,
            &e.timestamp,
        ) else {
            return Err(malformed(
                "SNS message without Type, MessageId, TopicArn, Message or Timestamp",
            ));
        };
        if !self.topics.iter().any(|t| t == topic) {
            return Err(Refusal::Forbidden(format!(
                "topic {:?} is not in [webhooks.ses] topic_arns",
                evidence::one_line(topic)
            )));
        }
        if !self.url_allowed(cert_url) {
            return Err(Refusal::Forbidden(format!(
                "SigningCertURL {:?} is not https on an allowed host ([webhooks.ses] cert_hosts)",
                evidence::one_line(cert_url)
            )));
        }
        let mut signed = String::with_capacity(message.len() + 256);
        let mut field = |name: &str, value: &str| {
            signed.push_str(name);
            signed.push('\n');
            signed.push_str(value);
            signed.push('\n');
        };
        match kind.as_str() {
            "Notification" => {
                field("Message", message);
                field("MessageId", message_id);
                if let Some(s) = &e.subject {
                    field("Subject", s);
                }
                field("Timestamp", timestamp);
                field("TopicArn", topic);
                field("Type", kind);
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                let (Some(url), Some(token)) = (&e.subscribe_url, &e.token) else {
                    return Err(malformed(format!("{kind} without SubscribeURL or Token")));
                };
                field("Message", message);
                field("MessageId", message_id);
                field("SubscribeURL", url);
                field("Timestamp", timestamp);
                field("Token", token);
                field("TopicArn", topic);
                field("Type", kind);
            }
            other => {
                return Err(malformed(format!(
                    "unknown SNS message type {:?}",
                    evidence::one_line(other)
                )));
            }
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| Refusal::Forbidden("Signature is not base64".into()))?;
        let alg: &dyn SignatureVerificationAlgorithm = match version.as_str() {
            "1" => &RsaSha1,
            "2" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            v => {
                return Err(Refusal::Forbidden(format!(
                    "SignatureVersion {:?} is not 1 or 2",
                    evidence::one_line(v)
                )));
            }
        };
        let certs = self.certificates(cert_url).await?;
        // Checked on every message, not only when fetched: a cached certificate expires.
        self.check_chain(&certs)?;
        let leaf = certs
            .first()
            .ok_or_else(|| Refusal::Forbidden("no signing certificate".into()))?;
        let ee = webpki::EndEntityCert::try_from(leaf)
            .map_err(|e| Refusal::Forbidden(format!("signing certificate: {e}")))?;
        ee.verify_signature(alg, signed.as_bytes(), &signature)
            .map_err(|_| Refusal::Forbidden("wrong signature".into()))?;

        match kind.as_str() {
            "SubscriptionConfirmation" => {
                let url = e.subscribe_url.as_deref().unwrap_or_default();
                if !self.url_allowed(url) {
                    return Err(Refusal::Forbidden(
                        "SubscribeURL is not https on an allowed host".into(),
                    ));
                }
                let r = self.http.get(url).send().await.map_err(|e| {
                    Refusal::Unavailable(format!("confirming the subscription: {e}"))
                })?;
                if !r.status().is_success() {
                    return Err(Refusal::Unavailable(format!(
                        "confirming the subscription: SubscribeURL answered {}",
                        r.status()
                    )));
                }
                tracing::info!(topic = %topic, "SNS subscription confirmed");
                Ok(Parsed {
                    subscription: Some("subscribed"),
                    ..Parsed::default()
                })
            }
            "UnsubscribeConfirmation" => {
                tracing::warn!(topic = %topic, "SNS says the subscription was removed");
                Ok(Parsed {
                    subscription: Some("unsubscribed"),
                    ..Parsed::default()
                })
            }
            _ => notification(message_id, message),
        }
    }
}

/// An SES notification or event (the SNS `Message`) as reports under `id`.
fn notification(id: &str, message: &str) -> Result<Parsed, Refusal> {
    let n: Notification = serde_json::from_str(message)
        .map_err(|e| malformed(format!("SES notification in Message: {e}")))?;
    let kind = n
        .notification_type
        .as_deref()
        .or(n.event_type.as_deref())
        .unwrap_or_default();
    let ignored = Parsed {
        ignored: 1,
        ..Parsed::default()
    };
    let original = original(&n.mail);
    let raw = match kind {
        "Bounce" => {
            let b = n.bounce.ok_or_else(|| malformed("Bounce without bounce"))?;
            let sub = b.bounce_sub_type.unwrap_or_default();
            let suppressed = matches!(sub.as_str(), "Suppressed" | "OnAccountSuppressionList");
            let label = format!("{}/{sub}", b.bounce_type.unwrap_or_default());
            let bounces: Vec<Bounce> = b
                .bounced_recipients
                .into_iter()
                .filter_map(|r| {
                    let recipient = r
                        .email_address
                        .as_deref()
                        .and_then(evidence::clean_address)?;
                    let action = match r.action.as_deref() {
                        Some("delayed") => Action::Delayed,
                        _ => Action::Failed,
                    };
                    let (status, diagnostic) = if suppressed {
                        // SES's own list, not a refusal we saw (see the module docs).
                        (None, None)
                    } else {
                        (r.status, r.diagnostic_code.map(strip_smtp))
                    };
                    Some(Bounce {
                        recipient,
                        action,
                        status,
                        diagnostic,
                        remote_mta: None,
                        label: Some(label.clone()),
                    })
                })
                .collect();
            if bounces.is_empty() {
                return Err(malformed("Bounce without a bounced recipient"));
            }
            evidence::delivery_report("ses", id, &bounces, &original)
        }
        "DeliveryDelay" => {
            let d = n
                .delivery_delay
                .ok_or_else(|| malformed("DeliveryDelay without deliveryDelay"))?;
            let label = d.delay_type.unwrap_or_default();
            let mta = d.reporting_mta.map(|m| strip_type(&m));
            let bounces: Vec<Bounce> = d
                .delayed_recipients
                .into_iter()
                .filter_map(|r| {
                    Some(Bounce {
                        recipient: r
                            .email_address
                            .as_deref()
                            .and_then(evidence::clean_address)?,
                        action: Action::Delayed,
                        status: r.status,
                        diagnostic: r.diagnostic_code.map(strip_smtp),
                        remote_mta: mta.clone(),
                        label: Some(label.clone()),
                    })
                })
                .collect();
            if bounces.is_empty() {
                return Err(malformed("DeliveryDelay without a delayed recipient"));
            }
            evidence::delivery_report("ses", id, &bounces, &original)
        }
        "Complaint" => {
            let c = n
                .complaint
                .ok_or_else(|| malformed("Complaint without complaint"))?;
            if c.complaint_sub_type.as_deref() == Some("OnAccountSuppressionList") {
                // SES did not send: the address is on SES's own list.
                return Ok(ignored);
            }
            let recipients: Vec<String> = c
                .complained_recipients
                .iter()
                .filter_map(|r| r.email_address.as_deref().and_then(evidence::clean_address))
                .collect();
            if recipients.is_empty() {
                return Err(malformed("Complaint without a complained recipient"));
            }
            evidence::feedback_report(
                "ses",
                id,
                &Complaint {
                    recipients,
                    feedback_type: c.complaint_feedback_type.unwrap_or_else(|| "abuse".into()),
                },
                &original,
            )
        }
        _ => return Ok(ignored),
    };
    Ok(Parsed {
        reports: vec![Report {
            id: id.to_owned(),
            raw,
        }],
        ..Parsed::default()
    })
}

/// `smtp; 550 …` → `550 …` (the report adds its own type).
fn strip_smtp(d: String) -> String {
    strip_type(&d)
}

fn strip_type(d: &str) -> String {
    match d.split_once(';') {
        Some((ty, rest)) if !ty.is_empty() && ty.len() <= 8 && !ty.contains(' ') => {
            rest.trim().to_owned()
        }
        _ => d.trim().to_owned(),
    }
}

/// The original's headers (`mail.headers` when SES includes them, else its
/// `commonHeaders`). SES's own `mail.messageId` is not the Message-ID header.
fn original(m: &Mail) -> Original {
    let mut o = Original::default();
    for h in &m.headers {
        if h.name.eq_ignore_ascii_case("message-id") {
            o.message_id.get_or_insert_with(|| h.value.clone());
        } else {
            o.headers.push((h.name.clone(), h.value.clone()));
        }
    }
    if let Some(c) = &m.common_headers {
        if o.message_id.is_none() {
            o.message_id = c.message_id.clone();
        }
        if m.headers.is_empty()
            && let Some(s) = &c.subject
        {
            o.headers.push(("Subject".into(), s.clone()));
        }
    }
    o
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ses_host_patterns_match_one_label() {
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "sns.eu-west-1.amazonaws.com"
        ));
        assert!(host_matches(
            "sns.*.amazonaws.com",
            "SNS.us-east-1.amazonaws.com."
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.evil.example.amazonaws.com"
        ));
        assert!(!host_matches(
            "sns.*.amazonaws.com",
            "sns.eu-west-1.amazonaws.com.evil.example"
        ));
        assert!(!host_matches("sns.*.amazonaws.com", "evil.example"));
        assert!(host_matches("localhost", "localhost"));
    }

    #[test]
    fn ses_suppressed_bounce_carries_no_evidence() {
        let m = serde_json::json!({
            "notificationType": "Bounce",
            "bounce": {"bounceType": "Permanent", "bounceSubType": "OnAccountSuppressionList",
                "bouncedRecipients": [{"emailAddress": "tama@example.net",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown", "status": "5.1.1"}]},
            "mail": {"commonHeaders": {"messageId": "<m1@example.org>"}}
        });
        let p = notification("sns-1", &m.to_string()).unwrap();
        let d = crate::detector::detect(&p.reports[0].raw);
        assert_ne!(
            d.verdict.recipients[0].bounce,
            Some(crate::verdict::BounceClass::Hard),
            "{d:?}"
        );
    }

    #[test]
    fn ses_complaint_names_every_complained_recipient() {
        let m = serde_json::json!({
            "eventType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": "a@example.net"},
                {"emailAddress": "not an address"}, {"emailAddress": "b@example.net"}],
                "complaintFeedbackType": "abuse"},
        });
        let p = notification("sns-2", &m.to_string()).unwrap();
        let d = crate::detector::detect(&p.reports[0].raw);
        assert_eq!(
            d.verdict.kind,
            crate::verdict::MessageKind::Complaint,
            "{d:?}"
        );
        let who: Vec<&str> = d
            .verdict
            .recipients
            .iter()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(who, ["a@example.net", "b@example.net"]);
    }

    #[test]
    fn ses_malformed_notifications_are_400() {
        for m in [
            "",
            "{",
            "[]",
            "{\"notificationType\": \"Bounce\"}",
            "{\"notificationType\": 3}",
        ] {
            let r = notification("x", m);
            assert!(matches!(r, Err(Refusal::Malformed(_))), "{m}: {r:?}");
        }
        assert_eq!(notification("x", "{}").unwrap().ignored, 1);
    }
}
