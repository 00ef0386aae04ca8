//! Test guest: a policy built straight against the old WIT, `wit/0.2.0/policy.wit`
//! (`rebound:policy@0.2.0`, no `state` interface), as a component built before 0.3.0 would
//! be. The host must load it and run it, its own blame kept.
//!
//! It replaces the verdict: it keeps the current recipients (which it sees without blame),
//! makes the message a bounce and adds a recipient for every report block's
//! `Final-Recipient` that the verdict does not name, with the reason of `config.reason`
//! (`blocked` by default: a sender-side failure), the blame of `config.blame` (none by
//! default: the host derives it) and the report's status (`5.7.1` if none). It logs through
//! the 0.2.0 host interface. It keeps messages that do not say "legacy".

wit_bindgen::generate!({
    world: "policy",
    path: "../../../wit/0.2.0",
});

// The world `use`s message, verdict, decision and policy-error: they are at the root.
use rebound::policy::host::{self, Level};
use rebound::policy::types::{Blame, MessageKind, Reason, RecipientVerdict};

struct Legacy;

/// The reasons this guest can be told to use, by their WIT names.
fn reason(name: &str) -> Option<Reason> {
    Some(match name {
        "blocked" => Reason::Blocked,
        "user-unknown" => Reason::UserUnknown,
        "mailbox-full" => Reason::MailboxFull,
        "network-error" => Reason::NetworkError,
        "undefined" => Reason::Undefined,
        _ => return None,
    })
}

impl Guest for Legacy {
    fn evaluate(message: &Message, mut current: Verdict) -> Result<Decision, PolicyError> {
        if !message.text().to_ascii_lowercase().contains("legacy") {
            return Ok(Decision::Keep);
        }
        let name = host::config("reason").unwrap_or_else(|| "blocked".into());
        let Some(reason) = reason(&name) else {
            return Err(PolicyError {
                message: format!("unknown reason {name}"),
            });
        };
        let blame = match host::config("blame").as_deref() {
            None => None,
            Some("sender") => Some(Blame::Sender),
            Some("recipient") => Some(Blame::Recipient),
            Some("transit") => Some(Blame::Transit),
            Some(other) => {
                return Err(PolicyError {
                    message: format!("unknown blame {other}"),
                });
            }
        };
        current.kind = MessageKind::Bounce;
        for report in message.reports() {
            let Some(address) = report.final_recipient else {
                continue;
            };
            if current
                .recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(&address))
            {
                continue;
            }
            current.recipients.push(RecipientVerdict {
                address,
                bounce: None,
                status: Some(report.status.unwrap_or_else(|| "5.7.1".into())),
                reason,
                blame,
                diagnostic: report.diagnostic_code,
                action: report.action,
                remote_mta: report.remote_mta,
                feedback_type: None,
            });
        }
        host::log(
            Level::Info,
            &format!("legacy policy: {} recipients", current.recipients.len()),
        );
        Ok(Decision::Replace(current))
    }
}

export!(Legacy);
