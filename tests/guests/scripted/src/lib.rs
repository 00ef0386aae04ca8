//! Test guest: does what its config says, so one component covers every decision.
//!
//! `action`: `keep` (default), `not-bounce`, `append` (adds a hard `user-unknown` recipient
//! `config.address` to the verdict, making it a bounce), `soften` (every recipient soft),
//! `blame` (every recipient's blame set to `config.blame`: `recipient`, `sender`, `transit`
//! or `unknown`), `error` (returns a policy-error), `replace-same` (returns the verdict
//! unchanged).
//! If `only_if` is set, the action applies only when the message contains that text.

use rebound_sdk::{
    Blame, Decision, Message, MessageKind, Policy, PolicyError, Reason, RecipientVerdict, Verdict,
};

struct Scripted;

impl Policy for Scripted {
    fn evaluate(message: &Message, mut current: Verdict) -> Result<Decision, PolicyError> {
        if let Some(needle) = rebound_sdk::config("only_if")
            && !message.contains(&needle)
            && !message.raw_contains(&needle)
        {
            return Ok(Decision::Keep);
        }
        let action = rebound_sdk::config("action").unwrap_or_else(|| "keep".into());
        match action.as_str() {
            "keep" => Ok(Decision::Keep),
            "not-bounce" => Ok(Decision::NotBounce),
            "replace-same" => Ok(Decision::Replace(current)),
            "append" => {
                let address =
                    rebound_sdk::config("address").unwrap_or_else(|| "appended@example.org".into());
                current.kind = MessageKind::Bounce;
                current.recipients.push(
                    RecipientVerdict::new(&address, Reason::UserUnknown).with_status("5.1.1"),
                );
                Ok(Decision::Replace(current))
            }
            "soften" => {
                for r in &mut current.recipients {
                    r.bounce = Some(rebound_sdk::BounceClass::Soft);
                }
                Ok(Decision::Replace(current))
            }
            "blame" => {
                let name = rebound_sdk::config("blame").unwrap_or_default();
                let Some(blame) = Blame::from_name(&name) else {
                    return Err(PolicyError::new(format!("unknown blame {name:?}")));
                };
                for r in &mut current.recipients {
                    r.blame = Some(blame);
                }
                Ok(Decision::Replace(current))
            }
            "error" => Err(PolicyError::new("scripted failure")),
            other => Err(PolicyError::new(format!("unknown action {other}"))),
        }
    }
}

rebound_sdk::export!(Scripted);
