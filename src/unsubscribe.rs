//! Unsubscribe requests: a campaign message's `List-Unsubscribe` names an HTTPS link
//! (`[api] public_url`/u/TOKEN, RFC 8058 one-click) and a `mailto:` address
//! (`bounces+u-TOKEN@bounce_domain`, read by the mailbox poller). Both carry the
//! unsubscribe token of the send ([`crate::verp::Signer::unsubscribe_token`]); a request
//! is applied only when its token checks out and names a send of that campaign, so a
//! forged or guessed link changes nothing.

use crate::store::{self, StateChange, Store};
use crate::verp::Signer;

/// The send an unsubscribe token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The campaign.
    pub campaign_id: i64,
    /// Its name (for the confirmation page).
    pub campaign_name: String,
    /// The send's recipient.
    pub address: String,
}

/// What an applied request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The recipient was active (or bounced, complained: it stays so) and the request is
    /// recorded.
    Recorded(Target, StateChange),
    /// The recipient was unsubscribed already: nothing written.
    Already(Target),
}

/// The send `token` names, when it checks out and the store has that send.
///
/// # Errors
/// [`store::Error`] from the lookups.
pub async fn resolve(store: &Store, signer: &Signer, token: &str) -> store::Result<Option<Target>> {
    let Some((campaign_id, send_id)) = signer.check_unsubscribe(token) else {
        return Ok(None);
    };
    let Some(send) = store.campaign_send(send_id).await? else {
        return Ok(None);
    };
    if send.campaign_id != campaign_id {
        return Ok(None);
    }
    let campaign_name = store
        .campaign(campaign_id)
        .await?
        .map_or_else(String::new, |c| c.name);
    Ok(Some(Target {
        campaign_id,
        campaign_name,
        address: send.address,
    }))
}

/// Applies the request `token` carries, from `source` (`one-click`, `page`, `mailto`);
/// `None` when the token does not name a send.
///
/// # Errors
/// [`store::Error`].
pub async fn apply(
    store: &Store,
    signer: &Signer,
    token: &str,
    source: &str,
) -> store::Result<Option<Outcome>> {
    let Some(target) = resolve(store, signer, token).await? else {
        return Ok(None);
    };
    let change = store
        .unsubscribe(&target.address, Some(target.campaign_id), source)
        .await?;
    Ok(Some(match change {
        Some(change) => {
            crate::metrics::inc(crate::metrics::UNSUBSCRIBES, &[("source", source)]);
            Outcome::Recorded(target, change)
        }
        None => Outcome::Already(target),
    }))
}
