//! Hostile guest: calls `wasi:cli/stderr.get-stderr` in a loop and never drops the
//! returned handles, so every call adds an entry to the host's resource table (unless the
//! message says "behave"). The host must stop it at its resource cap and stay up.

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

#[link(wasm_import_module = "wasi:cli/stderr@0.2.0")]
unsafe extern "C" {
    /// Returns a fresh `own<output-stream>` handle (an index into the guest's table).
    #[link_name = "get-stderr"]
    fn get_stderr() -> i32;
}

struct ResourceHog;

impl Policy for ResourceHog {
    fn evaluate(message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        if message.raw_contains("behave") {
            return Ok(Decision::Keep);
        }
        let mut handles = 0u64;
        loop {
            // SAFETY: an import without arguments that returns a handle; the handle is
            // deliberately leaked.
            let h = unsafe { get_stderr() };
            handles = handles.wrapping_add(std::hint::black_box(h) as u64);
        }
    }
}

rebound_sdk::export!(ResourceHog);
