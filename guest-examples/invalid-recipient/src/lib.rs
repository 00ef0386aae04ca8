//! `invalid-recipient`: a message whose content says "invalid recipient" is a hard bounce
//! for the recipient the message names.
//!
//! Some gateways answer an unknown mailbox with a plain-text note ("Invalid recipient:
//! <jane@example.org>") and no delivery-status report, so the built-in detector cannot be
//! sure the address is dead. This policy is: it finds the address named next to the phrase
//! (else the recipient of the report, else the first address in the text that is not the
//! sender of the bounce), and makes it a hard `user-unknown` bounce with the 5.x.x code the
//! message gives (5.1.1 if none). Every other recipient of the verdict stays as it was.
//!
//! Config (optional): `phrase` replaces the phrase to look for.

use rebound_sdk::status::{self, StatusCode};
use rebound_sdk::{
    Decision, Message, MessageKind, Policy, PolicyError, Reason, RecipientVerdict, Verdict,
};

struct InvalidRecipient;

impl Policy for InvalidRecipient {
    fn evaluate(message: &Message, mut current: Verdict) -> Result<Decision, PolicyError> {
        let phrase = rebound_sdk::config("phrase").unwrap_or_else(|| "invalid recipient".into());
        // The decoded text first; else the raw message (a transcript in an attachment the
        // detector did not decode, or a message it could not read at all).
        let raw_text;
        let text = if message.contains(&phrase) {
            message.text()
        } else if message.raw_contains(&phrase) {
            raw_text = message.raw_text();
            &raw_text
        } else {
            return Ok(Decision::Keep);
        };
        // The lines that say it: diagnostics and text lines with the phrase.
        let mut evidence: Vec<&str> = message
            .diagnostics()
            .filter(|d| rebound_sdk::contains_ignore_case(d, &phrase))
            .collect();
        evidence.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| rebound_sdk::contains_ignore_case(l, &phrase)),
        );
        let sender = message
            .header("from")
            .map(rebound_sdk::find_addresses)
            .unwrap_or_default();
        let not_sender = |a: &String| !sender.iter().any(|s| s.eq_ignore_ascii_case(a));

        let address = evidence
            .iter()
            .flat_map(|line| rebound_sdk::find_addresses(line))
            .find(not_sender)
            .or_else(|| message.recipients().next().map(str::to_owned))
            .or_else(|| {
                rebound_sdk::find_addresses(text)
                    .into_iter()
                    .find(not_sender)
            });
        let Some(address) = address else {
            return Err(PolicyError::new(
                "the message says invalid recipient but names no address",
            ));
        };
        let status = evidence
            .iter()
            .flat_map(|line| status::find_all(line))
            .find(StatusCode::is_permanent)
            .map(|c| c.to_string())
            .unwrap_or_else(|| "5.1.1".into());
        let diagnostic = evidence.first().copied().unwrap_or(phrase.as_str());

        if current.kind != MessageKind::Bounce {
            current = Verdict::bounce(Vec::new());
        }
        match current.recipient_mut(&address) {
            Some(r) => {
                r.set_reason(Reason::UserUnknown);
                r.status = Some(status);
                r.bounce = Some(rebound_sdk::BounceClass::Hard);
                if r.diagnostic.is_none() {
                    r.diagnostic = Some(diagnostic.chars().take(1000).collect());
                }
            }
            None => current.recipients.push(
                RecipientVerdict::new(&address, Reason::UserUnknown)
                    .with_status(&status)
                    .with_diagnostic(diagnostic)
                    .with_action("failed")
                    .hard(),
            ),
        }
        rebound_sdk::info(&format!(
            "invalid recipient: hard bounce, status {}",
            current
                .recipients
                .iter()
                .find(|r| r.address.eq_ignore_ascii_case(&address))
                .and_then(|r| r.status.as_deref())
                .unwrap_or("-")
        ));
        Ok(Decision::Replace(current))
    }
}

rebound_sdk::export!(InvalidRecipient);
