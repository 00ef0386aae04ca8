//! Hostile guest: loops forever (unless the message says "behave").

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

struct EndlessLoop;

impl Policy for EndlessLoop {
    fn evaluate(message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        if message.raw_contains("behave") {
            return Ok(Decision::Keep);
        }
        let mut x: u64 = 0;
        loop {
            x = std::hint::black_box(x.wrapping_add(1));
        }
    }
}

rebound_sdk::export!(EndlessLoop);
