//! Hostile guest: executes `unreachable` without a panic message (unless the message says
//! "behave").

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

struct Traps;

impl Policy for Traps {
    fn evaluate(message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        if message.raw_contains("behave") {
            return Ok(Decision::Keep);
        }
        core::arch::wasm32::unreachable()
    }
}

rebound_sdk::export!(Traps);
