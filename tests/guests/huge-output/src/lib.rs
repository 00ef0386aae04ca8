//! Hostile guest: returns far more than a verdict may hold (unless the message says
//! "behave"). `config.shape`: `recipients` (100 000 recipients, the default) or `text` (one
//! recipient with a 1 MB diagnostic).

use rebound_sdk::{Decision, Message, Policy, PolicyError, Reason, RecipientVerdict, Verdict};

struct HugeOutput;

impl Policy for HugeOutput {
    fn evaluate(message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        if message.raw_contains("behave") {
            return Ok(Decision::Keep);
        }
        let recipients = if rebound_sdk::config("shape").as_deref() == Some("text") {
            let mut r = RecipientVerdict::new("a@example.org", Reason::Undefined);
            r.diagnostic = Some("x".repeat(1 << 20));
            vec![r]
        } else {
            (0..100_000)
                .map(|i| {
                    RecipientVerdict::new(&format!("user{i}@example.org"), Reason::UserUnknown)
                        .hard()
                })
                .collect()
        };
        Ok(Decision::Replace(Verdict::bounce(recipients)))
    }
}

rebound_sdk::export!(HugeOutput);
