//! Hostile guest: recurses without end (unless the message says "behave").

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

/// Plain recursion: every frame lives on the wasm stack (no locals in linear memory), so
/// it is the engine's stack limit that stops it.
#[inline(never)]
fn dive(depth: u64) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    std::hint::black_box(dive(depth + 1)).wrapping_add(depth)
}

struct DeepRecursion;

impl Policy for DeepRecursion {
    fn evaluate(message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        if message.raw_contains("behave") {
            return Ok(Decision::Keep);
        }
        let n = dive(0);
        Err(PolicyError::new(format!("unreachable: {n}")))
    }
}

rebound_sdk::export!(DeepRecursion);
