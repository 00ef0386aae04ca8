//! Hostile guest: allocates (and touches) memory until it is stopped (unless the message
//! says "behave").

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

struct MemoryBomb;

impl Policy for MemoryBomb {
    fn evaluate(message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        if message.raw_contains("behave") {
            return Ok(Decision::Keep);
        }
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

rebound_sdk::export!(MemoryBomb);
