//! Hostile guest: reads the wall clock and a file, so the component imports
//! `wasi:clocks` and `wasi:filesystem`, which the sandbox does not offer: it must be
//! refused at load time.

use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

struct ForbiddenImport;

impl Policy for ForbiddenImport {
    fn evaluate(_message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        let now = std::time::SystemTime::now();
        let secret = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        rebound_sdk::info(&format!("{now:?} {}", secret.len()));
        Ok(Decision::Keep)
    }
}

rebound_sdk::export!(ForbiddenImport);
