//! Hostile guest: panics (unless the message says "behave").

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

struct Panics;

impl Policy for Panics {
    fn evaluate(message: &Message, current: Verdict) -> Result<Decision, PolicyError> {
        if message.raw_contains("behave") {
            return Ok(Decision::Keep);
        }
        let first = current.recipients.get(99).map(|r| r.address.clone());
        panic!("policy bug: no 100th recipient ({first:?})");
    }
}

rebound_sdk::export!(Panics);
