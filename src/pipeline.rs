//! The inbound pipeline every source of returned mail feeds, in this order:
//!
//! ```text
//! raw message ──► detect ──► policy chain ──► correlate ──► commit (+ archive)
//!                 detector    policy           this module   Store::record_verdicts
//! ```
//!
//! [`judge`] is the first two stages (pure, CPU-bound: the poller runs it on a task of
//! its own, beside the commits), [`correlate`] the third (store lookups: which send,
//! recipient and campaign the message is about). The mailbox poller runs the stages for
//! each new message, reprocessing runs them again over the raw message archive, so a
//! message is judged the same way whichever way it comes in.

use crate::detector::{self, Detection};
use crate::policy::{self, PolicyChain};
use crate::store::{self, EventContext, Store};
use crate::verdict::Verdict;

/// A message through the detector and the policy chain.
#[derive(Debug, Clone)]
pub struct Judged {
    /// What the detector read (the report correlation needs, the built-in verdict).
    pub detection: Detection,
    /// The chain's verdict (the detector's when the chain is empty).
    pub verdict: Verdict,
}

/// Detect → policy chain.
///
/// # Errors
/// [`policy::Error`] when the chain fails on the message (the caller leaves it
/// unrecorded: a failing policy never decides).
pub fn judge(raw: &[u8], chain: &PolicyChain) -> Result<Judged, policy::Error> {
    let detection = detector::detect(raw);
    let verdict = chain.run(raw, &detection)?;
    Ok(Judged { detection, verdict })
}

/// Ties a message to the recipient and campaign it bounced for, filling in the
/// [`EventContext`] handed to [`Store::record_verdicts`]: the parse error (an
/// unparseable message is recorded as such), the original Message-ID from the returned
/// message, and from the sending side ([`crate::campaign::attribute`]: VERP token in the
/// envelope recipient, the original's headers or Message-ID → send → recipient and
/// campaign), when the token is the one the store recorded for a send, the recipient
/// and campaign the events are booked to.
///
/// # Errors
/// [`store::Error`] from a lookup.
pub async fn correlate(
    store: &Store,
    mut ctx: EventContext,
    detection: &Detection,
) -> store::Result<EventContext> {
    ctx.error = detection.report.error.clone();
    if let Some(original) = &detection.report.original {
        ctx.original_message_id = original.message_id.clone();
    }
    if let Some(a) = crate::campaign::attribute(store, None, &detection.report).await? {
        ctx.campaign_id = Some(a.campaign_id);
        ctx.recipient = Some(a.recipient);
        ctx.original_message_id = a.message_id.or(ctx.original_message_id);
    }
    Ok(ctx)
}
