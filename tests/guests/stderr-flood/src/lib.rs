//! Hostile guest: writes megabytes to stderr and stdout and calls `log` thousands of
//! times, then keeps the verdict. The host must stay bounded and answer normally.

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

struct StderrFlood;

impl Policy for StderrFlood {
    fn evaluate(_message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        let line = "flood ".repeat(200);
        for i in 0..10_000 {
            eprintln!("{i} {line}");
            if i % 10 == 0 {
                println!("{i} {line}");
            }
        }
        for i in 0..10_000 {
            rebound_sdk::info(&format!("{i} {}", "y".repeat(10_000)));
        }
        Ok(Decision::Keep)
    }
}

rebound_sdk::export!(StderrFlood);
