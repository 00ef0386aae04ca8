//! Test guest: counts its calls in a global and reports the count as the address of the
//! one recipient of its verdict (`call-<n>@example.org`). A reused instance counts up; a
//! fresh instance starts again at 1.

use std::sync::atomic::{AtomicU32, Ordering};

use rebound_sdk::{Decision, Message, Policy, PolicyError, Reason, RecipientVerdict, Verdict};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct CallCounter;

impl Policy for CallCounter {
    fn evaluate(_message: &Message, _current: Verdict) -> Result<Decision, PolicyError> {
        let n = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let r = RecipientVerdict::new(&format!("call-{n}@example.org"), Reason::Undefined);
        Ok(Decision::Replace(Verdict::bounce(vec![r])))
    }
}

rebound_sdk::export!(CallCounter);
