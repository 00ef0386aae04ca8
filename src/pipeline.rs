//! The inbound pipeline every source of returned mail feeds, in this order:
//!
//! ```text
//! raw message ──► detect ──► policy chain ──► correlate ──► commit (+ archive)
//!                 detector    policy           this module   Store::record_verdicts
//! ```
//!
//! [`judge`] is the first two stages (CPU-bound: the poller runs it on a task of its own,
//! beside the commits; a chain whose policies keep `state` reads it from the store, so it
//! runs on a blocking thread), [`correlate`] the third (store lookups: which send,
//! recipient and campaign the message is about). The mailbox poller runs the stages for
//! each new message, reprocessing runs them again over the raw message archive, so a
//! message is judged the same way whichever way it comes in.

use std::sync::Arc;

use crate::detector::{self, Detection};
use crate::policy::{self, PolicyChain, StateSession};
use crate::store::{self, EventContext, Store};
use crate::verdict::Verdict;

/// A message through the detector and the policy chain.
#[derive(Debug, Clone)]
pub struct Judged {
    /// What the detector read (the report correlation needs, the built-in verdict).
    pub detection: Detection,
    /// The chain's verdict (the detector's when the chain is empty).
    pub verdict: Verdict,
    /// What the policies wrote to their state: committed with the message
    /// (`EventContext::state_writes`), or dropped with it.
    pub state_writes: Vec<store::policy_state::StateWrite>,
}

/// Detect → policy chain, the policies' state in `state` (see [`state_of`]).
///
/// # Errors
/// [`policy::Error`] when the chain fails on the message (the caller leaves it
/// unrecorded: a failing policy never decides; nothing it wrote to its state stays).
pub async fn judge(
    raw: &[u8],
    chain: &Arc<PolicyChain>,
    state: &Arc<StateSession>,
) -> Result<Judged, policy::Error> {
    let uses_state = chain.uses_state();
    let chain = chain.clone();
    let run = move |raw: &[u8], state: &Arc<StateSession>| {
        let detection = detector::detect(raw);
        let run = chain.run_with(raw, &detection, state)?;
        Ok(Judged {
            detection,
            verdict: run.verdict,
            state_writes: run.state_writes,
        })
    };
    if !uses_state {
        return run(raw, state);
    }
    // Each state read blocks on the store: off the async threads, so the runtime (even a
    // current-thread one) goes on driving the store's I/O meanwhile.
    let (raw, state) = (raw.to_vec(), state.clone());
    tokio::task::spawn_blocking(move || run(&raw, &state))
        .await
        .map_err(|e| policy::Error::Engine(format!("the policy thread failed: {e}")))?
}

/// The policies' state for messages that come in now: read from `store` (on the current
/// Tokio runtime), written with each message's commit.
pub fn state_of(store: &Store) -> Arc<StateSession> {
    StateSession::new(
        policy::state::StoreBackend::for_store(store),
        std::time::SystemTime::now(),
    )
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

/// Applies the unsubscribe request a message carries (mail to `bounces+u-TOKEN@…`, the
/// `mailto:` of campaign messages): the recipient's change when it was recorded, `None`
/// when there is none, it was unsubscribed already, or the token does not check out
/// (then the message is recorded as other mail only). The sources apply it before the
/// message's commit: were that lost, applying it again changes nothing.
///
/// # Errors
/// [`store::Error`].
pub async fn unsubscribe(
    store: &Store,
    signer: &crate::verp::Signer,
    detection: &Detection,
) -> store::Result<Option<store::StateChange>> {
    let Some(token) = crate::verp::unsubscribe_token_in_headers(&detection.report.headers) else {
        return Ok(None);
    };
    Ok(
        match crate::unsubscribe::apply(store, signer, token, "mailto").await? {
            Some(crate::unsubscribe::Outcome::Recorded(_, change)) => Some(change),
            Some(crate::unsubscribe::Outcome::Already(_)) => None,
            None => {
                tracing::warn!(
                    "mail to an unsubscribe address whose token does not check out: recorded as other mail only"
                );
                None
            }
        },
    )
}

/// What one source's messages go through, besides the store: the policy chain (loaded
/// afresh per message, so a chain the API swaps in applies at once), the rules, the
/// unsubscribe signer and whether the archive is on.
#[derive(Clone)]
pub struct Stages {
    /// The live policy chain.
    pub chain: std::sync::Arc<arc_swap::ArcSwap<PolicyChain>>,
    /// `[rules]`.
    pub rules: crate::config::RulesConfig,
    /// Checks the tokens of unsubscribe requests sent to `bounces+u-TOKEN@…`; `None`:
    /// such mail is recorded as other mail only.
    pub unsubscribe: Option<crate::verp::Signer>,
    /// `[store] keep_raw` is on: the message is archived with its bookings.
    pub archive: bool,
}

impl std::fmt::Debug for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stages")
            .field("archive", &self.archive)
            .finish_non_exhaustive()
    }
}

/// What [`Stages::ingest`] did with a message.
#[derive(Debug)]
pub struct Ingested {
    /// The verdict it was booked with.
    pub verdict: Verdict,
    /// It could not be parsed (booked as a marker).
    pub unparseable: bool,
    /// The commit's outcome (`duplicate`: it was in the ledger already, nothing written).
    pub outcome: store::RecordOutcome,
    /// An unsubscribe request it carried, applied.
    pub unsubscribed: Option<store::StateChange>,
}

/// Why [`Stages::ingest`] did not record a message; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The policy chain failed on it: a failing policy never decides, so the message is
    /// left where it was (the source tries again later).
    #[error("policy chain: {0}")]
    Policy(#[from] policy::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] store::Error),
}

impl Stages {
    /// One message through every stage, in one transaction: detect → chain → correlate →
    /// commit (+ archive). `ctx` names its source (its ledger row: a message recorded
    /// before is a `duplicate`, nothing counted twice).
    ///
    /// # Errors
    /// [`IngestError`]; nothing is recorded then.
    pub async fn ingest(
        &self,
        store: &Store,
        mut ctx: EventContext,
        raw: &[u8],
    ) -> Result<Ingested, IngestError> {
        let Judged {
            detection,
            verdict,
            state_writes,
        } = judge(raw, &self.chain.load_full(), &state_of(store)).await?;
        ctx.state_writes = state_writes;
        let unsubscribed = match &self.unsubscribe {
            Some(signer) => unsubscribe(store, signer, &detection).await?,
            None => None,
        };
        if self.archive {
            ctx.raw = store::archive::RawMessage::compress(raw)
                .map_err(|e| tracing::warn!("not archived: compressing failed: {e}"))
                .ok();
        }
        let ctx = correlate(store, ctx, &detection).await?;
        let unparseable = ctx.error.is_some();
        let outcome = store.record_verdict(&ctx, &verdict, &self.rules).await?;
        policy::state::prune_expired_in_background(store);
        Ok(Ingested {
            verdict,
            unparseable,
            outcome,
            unsubscribed,
        })
    }
}
