//! `verizon-mms`: Verizon's SMS/MMS e-mail gateways (`vtext.com`, `vzwpix.com`) answer a
//! message to a number that does not exist with a plain-text notice of their own — no
//! delivery-status report, no enhanced status code:
//!
//! ```text
//! From: post_master@vtext.com                 From: MMSC NDR Administrator <sysadmin@m01.vzwpix.com>
//! Error: Invalid user address                 Message could not be delivered to mobile.
//! 550 - Requested action not taken: no such   Error: No valid recipients for this MM
//! user here                                   Original Message: ... To: 0000000000@vzwpix.com
//! RCPT TO: 5551234567@vtext.com
//! ```
//!
//! The built-in detector misses the first entirely and calls the second a soft "filtered"
//! bounce. The number is gone, so both are hard `user-unknown` bounces (5.1.1) for the
//! gateway address the notice names (`RCPT TO:`, else the `To:` of the quoted original).
//!
//! Config (optional): `domains`, a comma-separated list replacing the gateway domains.

use rebound_sdk::{
    BounceClass, Decision, Message, MessageKind, Policy, PolicyError, Reason, RecipientVerdict,
    Verdict,
};

/// The phrases of a dead-number notice.
const DEAD_NUMBER: &[&str] = &[
    "invalid user address",
    "no such user",
    "no valid recipients",
];

struct VerizonMms;

fn gateway_domains() -> Vec<String> {
    let configured = rebound_sdk::config_list("domains");
    if configured.is_empty() {
        vec!["vtext.com".into(), "vzwpix.com".into()]
    } else {
        configured
            .into_iter()
            .map(|d| d.to_ascii_lowercase())
            .collect()
    }
}

fn in_domains(address: &str, domains: &[String]) -> bool {
    rebound_sdk::domain_of(address).is_some_and(|d| {
        domains
            .iter()
            .any(|g| d == *g || d.ends_with(&format!(".{g}")))
    })
}

/// The gateway address the notice is about.
fn recipient(text: &str, domains: &[String]) -> Option<String> {
    let labelled = |label: &str| {
        text.lines()
            .map(str::trim)
            .filter(|l| l.len() > label.len() && l[..label.len()].eq_ignore_ascii_case(label))
            .flat_map(rebound_sdk::find_addresses)
            .find(|a| in_domains(a, domains))
    };
    labelled("RCPT TO:")
        .or_else(|| labelled("To:"))
        .or_else(|| {
            rebound_sdk::find_addresses(text)
                .into_iter()
                .find(|a| in_domains(a, domains))
        })
}

impl Policy for VerizonMms {
    fn evaluate(message: &Message, mut current: Verdict) -> Result<Decision, PolicyError> {
        let domains = gateway_domains();
        let from_gateway = message.from().is_some_and(|f| in_domains(f, &domains))
            || message.header("from").is_some_and(|f| {
                rebound_sdk::find_addresses(f)
                    .iter()
                    .any(|a| in_domains(a, &domains))
            });
        if !from_gateway {
            return Ok(Decision::Keep);
        }
        let text = if message.text().trim().is_empty() {
            message.raw_text().into_owned()
        } else {
            message.text().to_owned()
        };
        let Some(evidence) = DEAD_NUMBER
            .iter()
            .find(|p| rebound_sdk::contains_ignore_case(&text, p))
        else {
            return Ok(Decision::Keep);
        };
        let Some(address) = recipient(&text, &domains) else {
            return Err(PolicyError::new("gateway notice without a gateway address"));
        };
        let diagnostic = text
            .lines()
            .map(str::trim)
            .find(|l| rebound_sdk::contains_ignore_case(l, evidence))
            .unwrap_or(evidence);

        if current.kind != MessageKind::Bounce {
            current = Verdict::bounce(Vec::new());
        }
        match current.recipient_mut(&address) {
            Some(r) => {
                r.set_reason(Reason::UserUnknown);
                r.status = Some("5.1.1".into());
                r.bounce = Some(BounceClass::Hard);
            }
            None => current.recipients.push(
                RecipientVerdict::new(&address, Reason::UserUnknown)
                    .with_status("5.1.1")
                    .with_diagnostic(diagnostic)
                    .with_action("failed")
                    .hard(),
            ),
        }
        Ok(Decision::Replace(current))
    }
}

rebound_sdk::export!(VerizonMms);
