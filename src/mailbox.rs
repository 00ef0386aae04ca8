//! What the mailbox sources (POP3: [`crate::pop3::poller`], IMAP: [`crate::imap`]) share:
//! the lease that keeps one reader per mailbox across processes and hosts, and the
//! reports of messages a pass leaves where they are.

use std::time::Duration;

use serde::Serialize;

/// How long a source holds its mailbox's lease without a heartbeat: another one takes a
/// dead one's place this long after its last heartbeat at most.
pub const MAILBOX_LEASE: Duration = Duration::from_secs(60);

/// How many of a pass's committed messages were of each kind (flattened into the pass
/// summaries: `bounces`, `complaints`, ... are fields of their JSON).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct KindCounts {
    /// Bounces.
    pub bounces: usize,
    /// Complaints.
    pub complaints: usize,
    /// Auto-replies.
    pub auto_replies: usize,
    /// Delivery notices.
    pub notices: usize,
    /// Other mail.
    pub other: usize,
}

impl KindCounts {
    /// One more message of `kind`.
    pub fn count(&mut self, kind: crate::verdict::MessageKind) {
        use crate::verdict::MessageKind;
        match kind {
            MessageKind::Bounce => self.bounces += 1,
            MessageKind::Complaint => self.complaints += 1,
            MessageKind::AutoReply => self.auto_replies += 1,
            MessageKind::DeliveryNotice => self.notices += 1,
            MessageKind::Other => self.other += 1,
        }
    }

    /// Adds another pass's counts.
    pub fn add(&mut self, other: KindCounts) {
        self.bounces += other.bounces;
        self.complaints += other.complaints;
        self.auto_replies += other.auto_replies;
        self.notices += other.notices;
        self.other += other.other;
    }
}

/// `3 bounces, 1 complaints, 0 auto-replies, 0 notices, 2 other`.
impl std::fmt::Display for KindCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bounces, {} complaints, {} auto-replies, {} notices, {} other",
            self.bounces, self.complaints, self.auto_replies, self.notices, self.other
        )
    }
}

/// A message left on the server because it is larger than `max_message_size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TooLarge {
    /// Its id in the mailbox (POP3 UIDL, IMAP `UIDVALIDITY.UID`).
    pub uid: String,
    /// Its size as the server lists it.
    pub size: u64,
}

/// A message left on the server because its fetch failed `max_fetch_failures` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quarantined {
    /// Its id in the mailbox.
    pub uid: String,
    /// Its failed fetches so far.
    pub failures: u32,
}

/// How [`under_lease`] went.
#[derive(Debug)]
pub enum Leased<T> {
    /// Another reader holds the mailbox (its owner, when the store knows it): nothing ran.
    HeldBy(Option<String>),
    /// The pass ran, to this end.
    Ran(T),
}

/// Runs `pass` under the mailbox's lease `mailbox:NAME` in the store, as every mailbox
/// source does, so two processes or hosts never read one mailbox at once: takes it (from a
/// reader of this host whose process is gone at once, from one of another host once its
/// lease has expired), renews it every third of `lease` while the pass runs, gives it up
/// at the end, and then deletes archived messages older than `keep_raw` when the archive
/// is on, and expired policy state (at most once an hour per process). `lost` is set when
/// the lease lapses during the pass (the store unreachable for a whole lease): the pass,
/// which holds `lost` too, then fetches nothing more.
///
/// # Errors
/// [`crate::store::Error`] when the lease cannot be taken; the pass's own result is in
/// [`Leased::Ran`].
pub async fn under_lease<T>(
    store: &crate::store::Store,
    mailbox: &str,
    owner: &str,
    lease: Duration,
    keep_raw: Option<Duration>,
    lost: &std::sync::atomic::AtomicBool,
    pass: impl std::future::Future<Output = T>,
) -> crate::store::Result<Leased<T>> {
    use crate::store::leases::{self, Taken};
    use std::sync::atomic::Ordering;
    use std::time::Instant;

    let name = format!("mailbox:{mailbox}");
    if let Taken::HeldBy(holder) = store.take_lease(&name, owner, lease).await? {
        let dead = match &holder {
            Some(l) if leases::is_dead_here(&l.owner) => {
                store.take_lease_from(&name, owner, &l.owner, lease).await?
            }
            _ => false,
        };
        if !dead {
            return Ok(Leased::HeldBy(holder.map(|l| l.owner)));
        }
        tracing::info!(%mailbox, "took the mailbox over from a reader of this host that died");
    }
    let heartbeat = async {
        let every = (lease / 3).max(Duration::from_millis(10));
        let mut held_until = Instant::now() + lease;
        loop {
            tokio::time::sleep(every).await;
            match store.renew_lease(&name, owner, lease).await {
                Ok(true) => held_until = Instant::now() + lease,
                Ok(false) => break,
                Err(e) if Instant::now() < held_until => {
                    tracing::warn!(%mailbox, "renewing the mailbox's lease: {e}");
                }
                Err(_) => break,
            }
        }
        tracing::warn!(%mailbox,
            "this reader's lease on the mailbox lapsed: fetching no more in this pass");
        lost.store(true, Ordering::Relaxed);
        std::future::pending::<()>().await;
    };
    let result = tokio::select! {
        biased;
        r = pass => r,
        () = heartbeat => unreachable!("the heartbeat never ends"),
    };
    if let Err(e) = store.release_lease(&name, owner).await {
        tracing::warn!(%mailbox, "giving the mailbox's lease up: {e}");
    }
    if let Some(keep) = keep_raw {
        let ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX / 2);
        let before = crate::store::Timestamp(crate::store::Timestamp::now().0.saturating_sub(ms));
        match store.prune_archive(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(pruned = n, "archived messages older than keep_raw deleted"),
            Err(e) => tracing::warn!("pruning the archive: {e}"),
        }
    }
    crate::policy::state::prune_expired(store).await;
    Ok(Leased::Ran(result))
}
