//! What the mailbox sources (POP3: [`crate::pop3::poller`], IMAP: [`crate::imap`]) share:
//! the lease that keeps one reader per mailbox across processes and hosts, and the
//! reports of messages a pass leaves where they are.

use std::time::Duration;

use serde::Serialize;

/// How long a source holds its mailbox's lease without a heartbeat: another one takes a
/// dead one's place this long after its last heartbeat at most.
pub const MAILBOX_LEASE: Duration = Duration::from_secs(60);

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
