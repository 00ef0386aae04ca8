//! Campaigns: the first outbound stage. A campaign file (`campaign.toml`) comes in; out
//! go a campaign queued in the store (one row per mailable recipient) and, per send, the
//! rendered message with its correlation stamps (VERP envelope sender, Message-ID,
//! `X-Rebound-*` headers, see [`crate::verp`]).
//!
//! ```toml
//! name = "2026-11-newsletter"        # unique; sending the same name again resumes it
//! from = "News <news@example.org>"   # default: [smtp] from
//! subject = "November news"
//! text_file = "news.txt"             # and/or text = "…"; html / html_file likewise
//! [recipients]
//! file = "subscribers.txt"           # one address a line, '#' comments; or:
//! # store = "active"                 # every active recipient of the store
//! ```
//!
//! Recipients the store knows as bounced, complained or unsubscribed are never queued,
//! whichever the source. Relative paths are relative to the campaign file.
//!
//! Inbound, [`attribute`] does the reverse: it ties a returned message to the send it
//! came from (verified VERP token → send row → recipient and campaign).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use serde::Deserialize;

use crate::detector::BounceReport;
use crate::dkim::Dkim;
use crate::store::campaigns::{CampaignRecord, NewCampaign};
use crate::store::{self, RecipientState, Store};
use crate::verp::{self, Signer, Token};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("reading {path}: {cause}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not also a `source()`, which would print it twice in an error chain).
        cause: std::io::Error,
    },
    /// The campaign file is not valid.
    #[error("parsing campaign {path}: {cause}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (in the message, not also a `source()`, which would print it twice in an error chain).
        cause: toml::de::Error,
    },
    /// The campaign makes no sense (no body, two recipient sources, bad From).
    #[error("campaign: {0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A message could not be built.
    #[error("building message to {to}: {reason}")]
    Message {
        /// The recipient.
        to: String,
        /// Why.
        reason: String,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Where a campaign's recipients come from: exactly one of the two.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientSource {
    /// A file with one address a line (blank lines and `#` comments are skipped).
    pub file: Option<PathBuf>,
    /// `"active"`: every active recipient of the store.
    pub store: Option<String>,
}

/// A campaign file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSpec {
    /// Unique name; sending a campaign of the same name again resumes it.
    pub name: String,
    /// The From header (default: `[smtp] from`).
    pub from: Option<String>,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// A file holding the plain-text body.
    pub text_file: Option<PathBuf>,
    /// The HTML body.
    pub html: Option<String>,
    /// A file holding the HTML body.
    pub html_file: Option<PathBuf>,
    /// The recipients.
    pub recipients: RecipientSource,
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|cause| Error::Read {
        path: path.to_owned(),
        cause,
    })
}

impl CampaignSpec {
    /// Reads a campaign file and the body files it names (resolved next to it); after
    /// this, `text` and `html` hold the bodies.
    ///
    /// # Errors
    /// [`Error::Read`], [`Error::Parse`], [`Error::Invalid`].
    pub fn load(path: &Path) -> Result<CampaignSpec> {
        let text = read(path)?;
        let mut spec: CampaignSpec = toml::from_str(&text).map_err(|cause| Error::Parse {
            path: path.to_owned(),
            cause,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if let Some(f) = spec.text_file.take() {
            spec.text = Some(read(&base.join(f))?);
        }
        if let Some(f) = spec.html_file.take() {
            spec.html = Some(read(&base.join(f))?);
        }
        if let Some(f) = spec.recipients.file.take() {
            spec.recipients.file = Some(base.join(f));
        }
        spec.validate()?;
        Ok(spec)
    }

    /// Checks that there is a body and exactly one recipient source.
    ///
    /// # Errors
    /// [`Error::Invalid`].
    pub fn validate(&self) -> Result<()> {
        if self.name.trim().is_empty() {
            return Err(Error::Invalid("the name is empty".into()));
        }
        if self.text.is_none() && self.html.is_none() {
            return Err(Error::Invalid(
                "no body: set text, text_file, html or html_file".into(),
            ));
        }
        match (&self.recipients.file, &self.recipients.store) {
            (Some(_), None) => Ok(()),
            (None, Some(s)) if s == "active" => Ok(()),
            (None, Some(s)) => Err(Error::Invalid(format!(
                "recipients.store must be \"active\", not {s:?}"
            ))),
            _ => Err(Error::Invalid(
                "set exactly one of recipients.file and recipients.store".into(),
            )),
        }
    }
}

/// The valid addresses of a list, and its invalid lines (1-based number, text).
pub type AddressList = (Vec<String>, Vec<(usize, String)>);

/// Reads an address list: one address a line, blank lines and `#` comments skipped.
/// Returns the valid addresses in order and the invalid lines (1-based number, text).
///
/// # Errors
/// [`Error::Read`].
pub fn read_address_list(path: &Path) -> Result<AddressList> {
    let text = read(path)?;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match lettre::Address::from_str(line.trim_start_matches('<').trim_end_matches('>')) {
            Ok(a) => good.push(a.to_string()),
            Err(_) => bad.push((i + 1, line.to_owned())),
        }
    }
    Ok((good, bad))
}

/// What [`enqueue`] did.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The campaign.
    pub campaign: CampaignRecord,
    /// True when a campaign of that name already existed (nothing new was queued).
    pub existing: bool,
    /// Recipients queued now.
    pub queued: u64,
    /// Recipients left out (not mailable, duplicates, invalid lines).
    pub skipped: u64,
}

/// Queues a campaign in the store, or finds the one of the same name (to resume it).
///
/// # Errors
/// [`Error::Read`] for the address file, [`Error::Store`].
#[tracing::instrument(name = "rebound.campaign.enqueue", skip_all, fields(campaign = %spec.name))]
pub async fn enqueue(store: &Store, spec: &CampaignSpec, default_from: &str) -> Result<Enqueued> {
    let existing = store.campaign_by_name(&spec.name).await?;
    if let Some(campaign) = existing.as_ref().filter(|c| c.enqueued) {
        return Ok(Enqueued {
            campaign: campaign.clone(),
            existing: true,
            queued: 0,
            skipped: 0,
        });
    }
    let (addresses, invalid) = match &spec.recipients.file {
        Some(path) => read_address_list(path)?,
        None => {
            let active = store.recipients(Some(RecipientState::Active)).await?;
            (active.into_iter().map(|r| r.address).collect(), Vec::new())
        }
    };
    if let Some(campaign) = existing {
        // Queueing stopped half-way (the process died): add the rest.
        tracing::info!(campaign = campaign.id, "queueing the rest of a campaign");
        let queued = store.add_sends(campaign.id, &addresses).await?;
        store.mark_enqueued(campaign.id).await?;
        let campaign = store.campaign(campaign.id).await?.unwrap_or(campaign);
        return Ok(Enqueued {
            campaign,
            existing: true,
            queued,
            skipped: 0,
        });
    }
    for (line, text) in &invalid {
        tracing::warn!(line, text = %text, "skipping an invalid address");
    }
    let from = spec.from.clone().unwrap_or_else(|| default_from.to_owned());
    Mailbox::from_str(&from).map_err(|e| Error::Invalid(format!("from {from:?}: {e}")))?;
    let new = NewCampaign {
        name: spec.name.clone(),
        from,
        subject: spec.subject.clone(),
        text: spec.text.clone(),
        html: spec.html.clone(),
    };
    let total = addresses.len() + invalid.len();
    let (campaign, queued) = match store.create_campaign(&new, &addresses).await {
        Ok(created) => created,
        // Another process created it a moment ago (two senders started together): queue
        // the list too (what it queued already is left out), so this one does not
        // depend on the other finishing.
        Err(e) if e.is_unique_violation() => {
            let Some(campaign) = store.campaign_by_name(&spec.name).await? else {
                return Err(e.into());
            };
            let queued = store.add_sends(campaign.id, &addresses).await?;
            store.mark_enqueued(campaign.id).await?;
            let campaign = store.campaign(campaign.id).await?.unwrap_or(campaign);
            return Ok(Enqueued {
                campaign,
                existing: true,
                queued,
                skipped: 0,
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(Enqueued {
        campaign,
        existing: false,
        queued,
        skipped: total as u64 - queued,
    })
}

/// Renders campaign messages: one per recipient, with its correlation stamps.
#[derive(Clone)]
pub struct Renderer {
    campaign: CampaignRecord,
    from: Mailbox,
    bounce_domain: String,
    /// `[api] public_url` without a trailing `/`: the one-click unsubscribe link's base.
    public_url: Option<String>,
    dkim: Option<Arc<Dkim>>,
}

impl fmt::Debug for Renderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Renderer")
            .field("campaign", &self.campaign.id)
            .finish_non_exhaustive()
    }
}

/// One rendered message.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The VERP envelope sender.
    pub envelope_from: String,
    /// The Message-ID (without angle brackets).
    pub message_id: String,
    /// The token.
    pub token: Token,
    /// The message, CRLF line endings.
    pub bytes: Vec<u8>,
}

impl Renderer {
    /// A renderer for a stored campaign.
    ///
    /// # Errors
    /// [`Error::Invalid`] when the stored From is not a mailbox.
    pub fn new(campaign: CampaignRecord, bounce_domain: impl Into<String>) -> Result<Renderer> {
        let from = Mailbox::from_str(&campaign.from)
            .map_err(|e| Error::Invalid(format!("from {:?}: {e}", campaign.from)))?;
        Ok(Renderer {
            campaign,
            from,
            bounce_domain: bounce_domain.into(),
            public_url: None,
            dkim: None,
        })
    }

    /// Signs every message with `dkim` (none: unsigned, the default).
    pub fn with_dkim(mut self, dkim: Option<Arc<Dkim>>) -> Renderer {
        self.dkim = dkim;
        self
    }

    /// Links the messages' unsubscribe header to `rebound serve` at `public_url`
    /// (`[api] public_url`, e.g. `https://rebound.example.com`): RFC 8058's one-click
    /// `POST`, besides the `mailto:` every message carries.
    pub fn with_public_url(mut self, public_url: Option<&str>) -> Renderer {
        self.public_url = public_url.map(|u| u.trim_end_matches('/').to_owned());
        self
    }

    /// The campaign.
    pub fn campaign(&self) -> &CampaignRecord {
        &self.campaign
    }

    /// The message for send `send_id` to `to`.
    ///
    /// # Errors
    /// [`Error::Message`] for an address lettre cannot put in a header.
    pub fn render(&self, signer: &Signer, send_id: i64, to: &str) -> Result<Rendered> {
        let err = |reason: String| Error::Message {
            to: to.to_owned(),
            reason,
        };
        let token = signer.sign(self.campaign.id, send_id);
        let message_id = verp::message_id(&token, &self.bounce_domain);
        let to_box = Mailbox::from_str(to).map_err(|e| err(e.to_string()))?;
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(self.campaign.subject.clone())
            .date(SystemTime::now())
            .message_id(Some(format!("<{message_id}>")))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(verp::HEADER_CAMPAIGN),
                self.campaign.id.to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(verp::HEADER_TOKEN),
                token.to_string(),
            ));
        // RFC 2369's List-Unsubscribe, and RFC 8058's one-click POST when there is an
        // HTTPS link to post to (what Gmail and Yahoo require of bulk senders).
        let unsubscribe = signer.unsubscribe_token(self.campaign.id, send_id);
        let mailto = format!(
            "<mailto:{}?subject=unsubscribe>",
            verp::unsubscribe_address(&unsubscribe, &self.bounce_domain)
        );
        let link = self
            .public_url
            .as_ref()
            .map(|base| format!("<{base}/u/{unsubscribe}>"));
        let builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            match &link {
                Some(link) => format!("{link}, {mailto}"),
                None => mailto,
            },
        ));
        let builder = match &link {
            Some(link) if link.starts_with("<https://") => builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            )),
            _ => builder,
        };
        // Gmail's feedback loop groups complaints by these fields; the last identifies
        // the sender.
        let builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Feedback-ID"),
            format!("{}:campaign:{}", self.campaign.id, self.bounce_domain),
        ));
        let mut message = match (&self.campaign.text, &self.campaign.html) {
            (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (None, Some(html)) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html.clone()),
            ),
            (Some(text), None) => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text.clone()),
            ),
            (None, None) => builder.body(String::new()),
        }
        .map_err(|e| err(e.to_string()))?;
        if let Some(dkim) = &self.dkim {
            dkim.sign(&mut message);
        }
        Ok(Rendered {
            envelope_from: verp::verp_address(&token, &self.bounce_domain),
            message_id,
            token,
            bytes: message.formatted(),
        })
    }
}

/// A returned message tied to the send it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    /// The campaign.
    pub campaign_id: i64,
    /// The send.
    pub send_id: i64,
    /// The recipient the message was sent to.
    pub recipient: String,
    /// The Message-ID it was sent with.
    pub message_id: Option<String>,
    /// Where the token was found.
    pub found: verp::Found,
}

/// Ties a returned message to its send. Each token candidate ([`verp::candidates`], best
/// evidence first) must name a send of the store that belongs to the token's campaign,
/// and be authentic: it verifies under `signer` when one is given, and it is the very
/// token the store recorded for that send when the store has one. Without a signer the
/// stored token is the proof (it was HMAC-signed when the message went out), so the
/// poller needs no secret. `None` when no candidate passes.
///
/// # Errors
/// [`store::Error`] from a lookup.
pub async fn attribute(
    store: &Store,
    signer: Option<&Signer>,
    report: &BounceReport,
) -> store::Result<Option<Attribution>> {
    for c in verp::candidates(report) {
        if signer.is_some_and(|s| !s.verify(&c.token)) {
            continue;
        }
        let Some(send) = store.campaign_send(c.token.send).await? else {
            continue;
        };
        if send.campaign_id != c.token.campaign {
            continue;
        }
        let stored_matches = send
            .verp_token
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(&c.token.to_string()));
        if !stored_matches && (signer.is_none() || send.verp_token.is_some()) {
            continue;
        }
        return Ok(Some(Attribution {
            campaign_id: send.campaign_id,
            send_id: send.id,
            recipient: send.address,
            message_id: send.message_id,
            found: c.found,
        }));
    }
    Ok(None)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn spec_needs_a_body_and_one_source() {
        let spec: CampaignSpec = toml::from_str(
            "name = \"n\"\nsubject = \"s\"\ntext = \"t\"\n[recipients]\nstore = \"active\"\n",
        )
        .unwrap();
        spec.validate().unwrap();
        let both: CampaignSpec = toml::from_str(
            "name = \"n\"\nsubject = \"s\"\ntext = \"t\"\n[recipients]\nstore = \"active\"\nfile = \"x\"\n",
        )
        .unwrap();
        assert!(both.validate().is_err());
        let nobody: CampaignSpec =
            toml::from_str("name = \"n\"\nsubject = \"s\"\n[recipients]\nstore = \"active\"\n")
                .unwrap();
        assert!(nobody.validate().is_err());
        assert!(
            toml::from_str::<CampaignSpec>("name = \"n\"\nsubjct = \"s\"\n[recipients]\n").is_err()
        );
    }

    #[test]
    fn address_list_skips_comments_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list.txt");
        std::fs::write(
            &p,
            "# list\na@example.com\n\n<b@example.com>  # b\nnot an address\n",
        )
        .unwrap();
        let (good, bad) = read_address_list(&p).unwrap();
        assert_eq!(good, vec!["a@example.com", "b@example.com"]);
        assert_eq!(bad, vec![(5, "not an address".to_owned())]);
    }

    /// Records send `id` as sent with the stamps of `m`.
    async fn mark_sent(store: &Store, id: i64, m: &Rendered) {
        store
            .checkpoint_sends(&[crate::store::campaigns::SendUpdate {
                id,
                state: crate::store::campaigns::SendState::Sent,
                counted: true,
                not_before: None,
                message_id: Some(m.message_id.clone()),
                verp_token: Some(m.token.to_string()),
                code: Some(250),
                text: None,
            }])
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn enqueue_from_the_store_takes_active_recipients_only() {
        use crate::config::RulesConfig;
        use crate::store::EventContext;
        use crate::verdict::{BounceClass, Reason, Verdict};
        let store = Store::open("sqlite::memory:").await.unwrap();
        let bounce = |address: &str, class: BounceClass, status: &str, reason: Reason| {
            Verdict::one_bounce(address, class, status, reason, "failed")
        };
        let rules = RulesConfig::default();
        let ctx = EventContext::smtp();
        let _ = store
            .record_verdict(
                &ctx,
                &bounce(
                    "soft@example.com",
                    BounceClass::Soft,
                    "4.2.2",
                    Reason::MailboxFull,
                ),
                &rules,
            )
            .await;
        let _ = store
            .record_verdict(
                &ctx,
                &bounce(
                    "hard@example.com",
                    BounceClass::Hard,
                    "5.1.1",
                    Reason::UserUnknown,
                ),
                &rules,
            )
            .await;
        let spec: CampaignSpec = toml::from_str(
            "name = \"s\"\nsubject = \"s\"\ntext = \"t\"\n[recipients]\nstore = \"active\"\n",
        )
        .unwrap();
        let e = enqueue(&store, &spec, "News <news@example.org>")
            .await
            .unwrap();
        assert_eq!((e.existing, e.queued), (false, 1));
        let sends = store.campaign_sends(e.campaign.id).await.unwrap();
        assert_eq!(sends[0].address, "soft@example.com");
        let again = enqueue(&store, &spec, "News <news@example.org>")
            .await
            .unwrap();
        assert!(again.existing);
        assert_eq!(again.campaign.id, e.campaign.id);
    }

    #[tokio::test]
    async fn complaint_about_a_campaign_message_counts_for_its_campaign() {
        use crate::config::RulesConfig;
        use crate::store::EventContext;
        let store = Store::open("sqlite::memory:").await.unwrap();
        let new = NewCampaign {
            name: "fbl".into(),
            from: "News <news@example.org>".into(),
            subject: "March".into(),
            text: Some("Hello Dave.".into()),
            html: None,
        };
        let (campaign, _) = store
            .create_campaign(&new, ["dave@example.net"])
            .await
            .unwrap();
        let send = store.claim_sends(campaign.id, 1).await.unwrap().remove(0);
        let signer = Signer::new(b"k").unwrap();
        let m = Renderer::new(campaign.clone(), "bounces.example.org")
            .unwrap()
            .render(&signer, send.id, &send.address)
            .unwrap();
        mark_sent(&store, send.id, &m).await;
        // A feedback loop report sent to an abuse address: no VERP address at the top,
        // only the returned original carries the stamps.
        let mut arf = b"From: Feedback Loop <fbl@example.net>\r\nTo: abuse@example.org\r\n\
Subject: Complaint\r\nMessage-ID: <fbl.1@example.net>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=feedback-report; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nAn abuse report.\r\n\
--b\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\n\
Version: 1\r\nOriginal-Rcpt-To: <dave@example.net>\r\n\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\n"
            .to_vec();
        arf.extend_from_slice(&m.bytes);
        arf.extend_from_slice(b"\r\n--b--\r\n");
        let detection = crate::detector::detect(&arf);
        assert_eq!(
            detection.verdict.kind,
            crate::verdict::MessageKind::Complaint
        );
        let a = attribute(&store, None, &detection.report)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.campaign_id, a.recipient.as_str()),
            (campaign.id, "dave@example.net")
        );
        let ctx = crate::pipeline::correlate(&store, EventContext::mailbox("mb", "1"), &detection)
            .await
            .unwrap();
        assert_eq!(ctx.campaign_id, Some(campaign.id));
        let _ = store
            .record_verdict(&ctx, &detection.verdict, &RulesConfig::default())
            .await
            .unwrap();
        let counts = store.campaign_counts().await.unwrap();
        assert_eq!(counts[0].complaints, 1);
    }

    #[tokio::test]
    async fn rendered_message_carries_one_click_unsubscribe_only_with_an_https_link() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let new = NewCampaign {
            name: "u".into(),
            from: "news@example.org".into(),
            subject: "Hi".into(),
            text: Some("plain".into()),
            html: None,
        };
        let (campaign, _) = store
            .create_campaign(&new, ["erin@example.net"])
            .await
            .unwrap();
        let send = store.claim_sends(campaign.id, 1).await.unwrap().remove(0);
        let signer = Signer::new(b"k").unwrap();
        let token = signer.unsubscribe_token(campaign.id, send.id);
        let headers = |public_url: Option<&str>| {
            let m = Renderer::new(campaign.clone(), "b.example.org")
                .unwrap()
                .with_public_url(public_url)
                .render(&signer, send.id, &send.address)
                .unwrap();
            let parsed = mail_parser::MessageParser::default()
                .parse(&m.bytes)
                .unwrap();
            let get = |name: &str| {
                parsed
                    .header_raw(name)
                    .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            };
            (
                get("List-Unsubscribe"),
                get("List-Unsubscribe-Post"),
                get("Feedback-ID"),
            )
        };
        let mailto = format!("<mailto:bounces+u-{token}@b.example.org?subject=unsubscribe>");
        assert_eq!(
            headers(Some("https://rebound.example.com/")),
            (
                Some(format!("<https://rebound.example.com/u/{token}>, {mailto}")),
                Some("List-Unsubscribe=One-Click".into()),
                Some(format!("{}:campaign:b.example.org", campaign.id)),
            )
        );
        // No link, or one that is not HTTPS: no one-click promise (RFC 8058 §3.1).
        assert_eq!(headers(None).0, Some(mailto.clone()));
        assert_eq!(headers(None).1, None);
        assert_eq!(headers(Some("http://10.0.0.1:8025")).1, None);
    }

    #[tokio::test]
    async fn rendered_message_carries_the_stamps_and_attributes_back() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let spec: CampaignSpec = toml::from_str(
            "name = \"n\"\nsubject = \"Hello\"\ntext = \"plain\"\nhtml = \"<p>html</p>\"\n[recipients]\nstore = \"active\"\n",
        )
        .unwrap();
        let (campaign, _) = store
            .create_campaign(
                &NewCampaign {
                    name: spec.name.clone(),
                    from: "News <news@example.org>".into(),
                    subject: spec.subject.clone(),
                    text: spec.text.clone(),
                    html: spec.html.clone(),
                },
                ["kijitora@example.jp"],
            )
            .await
            .unwrap();
        let send = store.claim_sends(campaign.id, 1).await.unwrap().remove(0);
        let signer = Signer::new(b"k").unwrap();
        let r = Renderer::new(campaign.clone(), "bounces.example.org").unwrap();
        let m = r.render(&signer, send.id, &send.address).unwrap();
        let text = String::from_utf8(m.bytes.clone()).unwrap();
        assert!(
            text.contains(&format!("Message-ID: <{}>", m.message_id)),
            "{text}"
        );
        assert!(text.contains(&format!("X-Rebound-Campaign: {}", campaign.id)));
        assert!(text.contains("multipart/alternative"));
        assert!(m.envelope_from.starts_with("bounces+"));
        let report = BounceReport {
            headers: vec![("To".into(), m.envelope_from.clone())],
            ..BounceReport::default()
        };
        let a = attribute(&store, Some(&signer), &report)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (a.campaign_id, a.recipient.as_str()),
            (campaign.id, "kijitora@example.jp")
        );
        // Without the secret, only the token the store recorded counts.
        assert_eq!(attribute(&store, None, &report).await.unwrap(), None);
        mark_sent(&store, send.id, &m).await;
        let a = attribute(&store, None, &report).await.unwrap().unwrap();
        assert_eq!(a.message_id.as_deref(), Some(m.message_id.as_str()));
        let forged = Signer::new(b"other").unwrap().sign(campaign.id, send.id);
        let report = BounceReport {
            headers: vec![(
                "To".into(),
                verp::verp_address(&forged, "bounces.example.org"),
            )],
            ..BounceReport::default()
        };
        assert_eq!(attribute(&store, None, &report).await.unwrap(), None);
    }
}
