//! `repeated-mailbox-full`: the third "mailbox full" for one address within 30 days is a
//! hard bounce.
//!
//! A full mailbox is a soft bounce: it empties when its owner reads mail. One that stays
//! full over weeks of sends has usually been given up (its owner no longer reads it), and
//! mailing it on only piles up soft bounces. This policy remembers, in its `state`, each
//! final mailbox-full failure per address and makes the `after`-th within `window_days`
//! (3 and 30 unless configured) a hard bounce. The reason stays `mailbox-full` and the
//! blame the recipient's; the diagnostic says why it is hard.
//!
//! Only what the recipient's mailbox is blamed for counts: a soft bounce with reason
//! `mailbox-full` and an action other than `delayed` (a delay notice is followed by the
//! final failure of the same send, which counts then). One send told twice (the same
//! original Message-ID) counts once.
//!
//! Config (optional): `after` (default 3), `window_days` (default 30).

use rebound_sdk::state;
use rebound_sdk::{BounceClass, Decision, Message, MessageKind, Policy, PolicyError, Reason, Verdict};

struct RepeatedMailboxFull;

impl Policy for RepeatedMailboxFull {
    fn evaluate(message: &Message, mut current: Verdict) -> Result<Decision, PolicyError> {
        if current.kind != MessageKind::Bounce {
            return Ok(Decision::Keep);
        }
        let after = number("after", 3)?;
        let days = number("window_days", 30)?;
        let window = u32::try_from(days * 86_400).unwrap_or(u32::MAX);
        let send = message.original().and_then(|o| o.message_id.clone());
        let mut changed = false;
        for r in &mut current.recipients {
            let full = r.reason == Reason::MailboxFull && r.bounce == Some(BounceClass::Soft);
            if !full || !r.is_recipient_blamed() || r.action.as_deref() == Some("delayed") {
                continue;
            }
            let key = format!("full:{}", r.address.to_ascii_lowercase());
            let seen = state::record_event(&key, send.as_deref().unwrap_or(""), window)
                .map_err(|e| PolicyError::new(format!("remembering {key}: {e:?}")))?;
            if seen >= after as usize {
                r.bounce = Some(BounceClass::Hard);
                let said = r.diagnostic.take().unwrap_or_default();
                r.diagnostic = Some(format!(
                    "mailbox full {seen} times in {days} days: {said}"
                ));
                changed = true;
            }
        }
        Ok(if changed {
            Decision::Replace(current)
        } else {
            Decision::Keep
        })
    }
}

/// A whole number from the config, `default` when unset.
fn number(key: &str, default: u64) -> Result<u64, PolicyError> {
    match rebound_sdk::config(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| PolicyError::new(format!("config {key} = {v:?}: not a whole number above 0"))),
    }
}

rebound_sdk::export!(RepeatedMailboxFull);
