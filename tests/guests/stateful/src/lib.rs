//! Test guest: keeps `state` as its `config.op` says, and reports what happened in the
//! diagnostic of every recipient of the verdict (which it replaces):
//!
//! - `count` (default): adds one to `n:<address>` for each recipient (`config.ttl` seconds,
//!   default 3600) and reports `count=N now=T`;
//! - `flood`: tries to set 100 new keys `f:<now>:<i>` and reports `ok=N <error>=M ...`;
//! - `big`: sets `big` to `config.size` bytes and reports `ok` or the error;
//! - `trap`: adds to `n:<address>` like `count`, then panics (the writes must not stay);
//! - `delete`: deletes `n:<address>` and reports `deleted`.

use rebound_sdk::state::{self, StateError};
use rebound_sdk::{Decision, Message, Policy, PolicyError, Verdict};

struct Stateful;

fn error_name(e: StateError) -> &'static str {
    match e {
        StateError::BadKey => "bad-key",
        StateError::TooLarge => "too-large",
        StateError::Full => "full",
        StateError::TooManyWrites => "too-many-writes",
    }
}

fn count(address: &str) -> Result<String, PolicyError> {
    let ttl = rebound_sdk::config("ttl")
        .and_then(|t| t.parse().ok())
        .unwrap_or(3600);
    let key = format!("n:{address}");
    let n = state::get(&key)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    state::set(&key, &n.to_string(), ttl).map_err(|e| PolicyError::new(error_name(e)))?;
    Ok(format!("count={n} now={}", state::now()))
}

impl Policy for Stateful {
    fn evaluate(_message: &Message, mut current: Verdict) -> Result<Decision, PolicyError> {
        let op = rebound_sdk::config("op").unwrap_or_else(|| "count".into());
        for r in &mut current.recipients {
            let report = match op.as_str() {
                "count" => count(&r.address)?,
                "trap" => {
                    count(&r.address)?;
                    panic!("trapping after a write");
                }
                "delete" => {
                    state::delete(&format!("n:{}", r.address))
                        .map_err(|e| PolicyError::new(error_name(e)))?;
                    "deleted".to_owned()
                }
                "flood" => {
                    let mut tally: Vec<(&str, u32)> = Vec::new();
                    for i in 0..100 {
                        let name = match state::set(&format!("f:{}:{i}", state::now()), "x", 60) {
                            Ok(()) => "ok",
                            Err(e) => error_name(e),
                        };
                        match tally.iter_mut().find(|(n, _)| *n == name) {
                            Some((_, c)) => *c += 1,
                            None => tally.push((name, 1)),
                        }
                    }
                    let parts: Vec<String> = tally.iter().map(|(n, c)| format!("{n}={c}")).collect();
                    parts.join(" ")
                }
                "big" => {
                    let size = rebound_sdk::config("size")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(1024);
                    match state::set("big", &"x".repeat(size), 60) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => error_name(e).to_owned(),
                    }
                }
                other => return Err(PolicyError::new(format!("unknown op {other}"))),
            };
            r.diagnostic = Some(report);
        }
        Ok(Decision::Replace(current))
    }
}

rebound_sdk::export!(Stateful);
