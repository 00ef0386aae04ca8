//! The host side of a policy's `state` (WIT 0.3.0): a small key-value store per policy,
//! kept in the database.
//!
//! A [`StateSession`] is what the calls of one run see: the committed state (read through
//! a [`StateBackend`], the store) under every write made earlier in the same session. The
//! writes made while judging one message are taken off the session after its chain run
//! ([`StateSession::take_writes`]) and travel with the message to its commit
//! (`EventContext::state_writes`): they are committed in the message's own transaction,
//! or not at all. A session without a backend starts empty and writes nothing anywhere
//! (`rebound policy test`, `rebound classify`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use super::bindings::StateError;
use crate::store::policy_state::{StateEntry, StateWrite};
use crate::store::{Store, Timestamp};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// Most writes (`set`, `delete`) one call may make.
pub const MAX_WRITES_PER_CALL: u32 = 64;
/// Longest time an entry is kept: a longer `ttl-seconds` is cut to it.
pub const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);

/// What one policy may keep (`[policy_limits] state_max_keys`, `state_max_value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLimits {
    /// Most keys.
    pub max_keys: u64,
    /// Longest value, in bytes.
    pub max_value: usize,
}

/// Where the committed state is read from.
pub trait StateBackend: Send + Sync {
    /// The entry of (`policy`, `key`), unless it has expired at `now`.
    ///
    /// # Errors
    /// The store's error, as text (the call that read it traps).
    fn get(&self, policy: &str, key: &str, now: Timestamp) -> Result<Option<StateEntry>, String>;

    /// How many keys `policy` holds.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    fn keys(&self, policy: &str) -> Result<u64, String>;
}

/// The store as a [`StateBackend`]. Its reads block the calling thread on the runtime it
/// was made on, so the chain must run where blocking is allowed: `pipeline::judge` runs a
/// chain that uses state on a blocking thread.
pub struct StoreBackend {
    store: Store,
    runtime: tokio::runtime::Handle,
}

impl StoreBackend {
    /// A backend reading `store` on the current Tokio runtime; `None` outside one.
    pub fn for_store(store: &Store) -> Option<Arc<dyn StateBackend>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        Some(Arc::new(StoreBackend {
            store: store.clone(),
            runtime,
        }))
    }
}

impl StateBackend for StoreBackend {
    fn get(&self, policy: &str, key: &str, now: Timestamp) -> Result<Option<StateEntry>, String> {
        self.runtime
            .block_on(self.store.policy_state_get(policy, key, now))
            .map_err(|e| e.to_string())
    }

    fn keys(&self, policy: &str) -> Result<u64, String> {
        self.runtime
            .block_on(self.store.policy_state_keys(policy))
            .map_err(|e| e.to_string())
    }
}

/// The state the calls of one run see, and the writes they made. `Send + Sync`: share it
/// behind an `Arc`.
pub struct StateSession {
    backend: Option<Arc<dyn StateBackend>>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// When the message being judged came in.
    now: Timestamp,
    /// What this session knows of each (policy, key): read from the backend or written
    /// here (`None`: not there).
    view: HashMap<(String, String), Option<StateEntry>>,
    /// How many keys each policy holds: the backend's count when first needed, plus the
    /// keys this session added.
    keys: HashMap<String, u64>,
    /// The writes since the last [`StateSession::take_writes`], in order.
    writes: Vec<StateWrite>,
    /// What each write changed in `view` and `keys`, to undo the writes of a failed call.
    undo: Vec<Undo>,
}

/// What one write replaced: the view's entry (`None`: there was none) and the policy's
/// key count.
struct Undo {
    id: (String, String),
    view: Option<Option<StateEntry>>,
    keys: Option<u64>,
}

/// Where a call started: [`StateSession::rollback`] undoes every write after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checkpoint {
    writes: usize,
    undo: usize,
}

impl std::fmt::Debug for StateSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSession")
            .field("backend", &self.backend.is_some())
            .finish_non_exhaustive()
    }
}

impl StateSession {
    /// A session over `backend` (`None`: it starts empty), for a message that came in at
    /// `now`.
    pub fn new(backend: Option<Arc<dyn StateBackend>>, now: SystemTime) -> Arc<StateSession> {
        Arc::new(StateSession {
            backend,
            inner: Mutex::new(Inner {
                now: Timestamp::from(now),
                ..Inner::default()
            }),
        })
    }

    /// A session that starts empty, with the time now: what a run that must not touch the
    /// database sees.
    pub fn ephemeral() -> Arc<StateSession> {
        StateSession::new(None, SystemTime::now())
    }

    /// The next message being judged came in at `now`.
    pub fn begin_message(&self, now: SystemTime) {
        self.lock().now = Timestamp::from(now);
    }

    /// The writes made since the last call, in order: the ones of the message just
    /// judged. They stay visible to the session's later reads.
    pub fn take_writes(&self) -> Vec<StateWrite> {
        std::mem::take(&mut self.lock().writes)
    }

    /// Where the next call starts.
    pub(crate) fn checkpoint(&self) -> Checkpoint {
        let inner = self.lock();
        Checkpoint {
            writes: inner.writes.len(),
            undo: inner.undo.len(),
        }
    }

    /// Forgets the writes made since `at`: a call that failed leaves nothing behind, as
    /// its verdict does not count either.
    pub(crate) fn rollback(&self, at: Checkpoint) {
        let mut inner = self.lock();
        inner.writes.truncate(at.writes);
        while inner.undo.len() > at.undo {
            let Some(u) = inner.undo.pop() else { break };
            match u.view {
                Some(entry) => inner.view.insert(u.id.clone(), entry),
                None => inner.view.remove(&u.id),
            };
            match u.keys {
                Some(n) => inner.keys.insert(u.id.0, n),
                None => inner.keys.remove(&u.id.0),
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `now`, in seconds since the Unix epoch.
    pub(crate) fn now_secs(&self) -> u64 {
        u64::try_from(self.lock().now.0 / 1000).unwrap_or(0)
    }

    /// The live value of `key` for `policy`.
    pub(crate) fn get(&self, policy: &str, key: &str) -> Result<Option<String>, String> {
        let mut inner = self.lock();
        let now = inner.now;
        let entry = self.entry(&mut inner, policy, key)?;
        Ok(entry
            .filter(|e| e.expires_at > now)
            .map(|e| e.value.clone()))
    }

    /// Sets `key` of `policy`, within `limits`. The outer error is the backend's.
    pub(crate) fn set(
        &self,
        policy: &str,
        limits: StateLimits,
        key: String,
        value: String,
        ttl_seconds: u32,
    ) -> Result<Result<(), StateError>, String> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > limits.max_value {
            return Ok(Err(StateError::TooLarge));
        }
        let mut inner = self.lock();
        let now = inner.now;
        let exists = self
            .entry(&mut inner, policy, &key)?
            .is_some_and(|e| e.expires_at > now);
        let keys = self.keys(&mut inner, policy)?;
        if !exists && keys >= limits.max_keys {
            return Ok(Err(StateError::Full));
        }
        inner.remember(policy, &key, keys);
        if !exists {
            inner.keys.insert(policy.to_owned(), keys + 1);
        }
        let ttl = Duration::from_secs(u64::from(ttl_seconds)).min(MAX_TTL);
        let expires_at = Timestamp(now.0.saturating_add(ttl.as_millis() as i64));
        let entry = StateEntry {
            value: value.clone(),
            expires_at,
        };
        inner
            .view
            .insert((policy.to_owned(), key.clone()), Some(entry));
        inner.writes.push(StateWrite::Set {
            policy: policy.to_owned(),
            key,
            value,
            expires_at,
        });
        Ok(Ok(()))
    }

    /// Deletes `key` of `policy`. The outer error is the backend's.
    pub(crate) fn delete(
        &self,
        policy: &str,
        key: String,
    ) -> Result<Result<(), StateError>, String> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        let mut inner = self.lock();
        let exists = self.entry(&mut inner, policy, &key)?.is_some();
        let keys = self.keys(&mut inner, policy)?;
        inner.remember(policy, &key, keys);
        if exists {
            inner.keys.insert(policy.to_owned(), keys.saturating_sub(1));
        }
        inner.view.insert((policy.to_owned(), key.clone()), None);
        inner.writes.push(StateWrite::Delete {
            policy: policy.to_owned(),
            key,
        });
        Ok(Ok(()))
    }

    /// The entry this session knows of, read from the backend the first time.
    fn entry<'a>(
        &self,
        inner: &'a mut Inner,
        policy: &str,
        key: &str,
    ) -> Result<Option<&'a StateEntry>, String> {
        let id = (policy.to_owned(), key.to_owned());
        if !inner.view.contains_key(&id) {
            let read = match &self.backend {
                Some(b) => b.get(policy, key, inner.now)?,
                None => None,
            };
            inner.view.insert(id.clone(), read);
        }
        Ok(inner.view.get(&id).and_then(Option::as_ref))
    }

    fn keys(&self, inner: &mut Inner, policy: &str) -> Result<u64, String> {
        if let Some(n) = inner.keys.get(policy) {
            return Ok(*n);
        }
        let n = match &self.backend {
            Some(b) => b.keys(policy)?,
            None => 0,
        };
        inner.keys.insert(policy.to_owned(), n);
        Ok(n)
    }
}

impl Inner {
    /// Notes what a write of (`policy`, `key`) is about to change, for [`StateSession::rollback`].
    fn remember(&mut self, policy: &str, key: &str, keys: u64) {
        let id = (policy.to_owned(), key.to_owned());
        let view = self.view.get(&id).cloned();
        self.undo.push(Undo {
            id,
            view,
            keys: Some(keys),
        });
    }
}

/// How often a process deletes expired state: expired entries are invisible already, so
/// the prune only keeps the table, and the keys counted against each policy's
/// `state_max_keys`, small; an hour is often enough.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// When this process last pruned (`None`: not yet).
static PRUNED: Mutex<Option<std::time::Instant>> = Mutex::new(None);

/// Is a prune due? Marks it done now when it is, so that sources finishing at once prune
/// once.
fn prune_due() -> bool {
    let mut last = PRUNED.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
        return false;
    }
    *last = Some(std::time::Instant::now());
    true
}

async fn prune(store: &Store) {
    match store.prune_policy_state(Timestamp::now()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(pruned = n, "expired policy state deleted"),
        Err(e) => tracing::warn!("pruning the policy state: {e}"),
    }
}

/// Deletes the expired state of every policy when this process has not done so for an
/// hour (after a mailbox pass).
pub async fn prune_expired(store: &Store) {
    if prune_due() {
        prune(store).await;
    }
}

/// [`prune_expired`] on a task of its own, for the paths that answer a request (a webhook
/// must not wait for a million deletions), so that a process fed only by webhooks prunes
/// too.
pub fn prune_expired_in_background(store: &Store) {
    if prune_due() {
        let store = store.clone();
        tokio::spawn(async move { prune(&store).await });
    }
}

fn check_key(key: &str) -> Result<(), StateError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        Err(StateError::BadKey)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const LIMITS: StateLimits = StateLimits {
        max_keys: 2,
        max_value: 8,
    };

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn writes_are_seen_by_later_reads_and_taken_per_message() {
        let s = StateSession::new(None, at(1000));
        assert_eq!(s.now_secs(), 1000);
        assert_eq!(s.get("p", "k"), Ok(None));
        assert_eq!(s.set("p", LIMITS, "k".into(), "1".into(), 60), Ok(Ok(())));
        assert_eq!(s.get("p", "k"), Ok(Some("1".into())));
        assert_eq!(s.get("q", "k"), Ok(None), "another policy's namespace");
        let first = s.take_writes();
        assert_eq!(
            first,
            vec![StateWrite::Set {
                policy: "p".into(),
                key: "k".into(),
                value: "1".into(),
                expires_at: Timestamp(1_060_000),
            }]
        );
        s.begin_message(at(1059));
        assert_eq!(
            s.get("p", "k"),
            Ok(Some("1".into())),
            "kept across messages"
        );
        assert_eq!(s.delete("p", "k".into()), Ok(Ok(())));
        assert_eq!(s.get("p", "k"), Ok(None));
        assert_eq!(s.take_writes().len(), 1);
        assert!(s.take_writes().is_empty());
    }

    #[test]
    fn entries_expire_against_the_message_time() {
        let s = StateSession::new(None, at(1000));
        assert_eq!(s.set("p", LIMITS, "k".into(), "v".into(), 60), Ok(Ok(())));
        s.begin_message(at(1060));
        assert_eq!(s.get("p", "k"), Ok(None));
        // A ttl over 400 days is cut to it.
        assert_eq!(
            s.set("p", LIMITS, "k".into(), "v".into(), u32::MAX),
            Ok(Ok(()))
        );
        let Some(StateWrite::Set { expires_at, .. }) = s.take_writes().pop() else {
            panic!("a set");
        };
        assert_eq!(expires_at.0, (1060 + MAX_TTL.as_secs() as i64) * 1000);
    }

    #[test]
    fn limits_refuse_the_write_and_write_nothing() {
        let s = StateSession::ephemeral();
        assert_eq!(
            s.set("p", LIMITS, String::new(), "v".into(), 1),
            Ok(Err(StateError::BadKey))
        );
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert_eq!(
            s.set("p", LIMITS, long, "v".into(), 1),
            Ok(Err(StateError::BadKey))
        );
        assert_eq!(
            s.set("p", LIMITS, "k".into(), "123456789".into(), 1),
            Ok(Err(StateError::TooLarge))
        );
        assert!(s.take_writes().is_empty());
        assert_eq!(s.set("p", LIMITS, "a".into(), "v".into(), 10), Ok(Ok(())));
        assert_eq!(s.set("p", LIMITS, "b".into(), "v".into(), 10), Ok(Ok(())));
        assert_eq!(
            s.set("p", LIMITS, "c".into(), "v".into(), 10),
            Ok(Err(StateError::Full))
        );
        assert_eq!(
            s.set("p", LIMITS, "a".into(), "w".into(), 10),
            Ok(Ok(())),
            "an existing key may change"
        );
        assert_eq!(
            s.set("q", LIMITS, "c".into(), "v".into(), 10),
            Ok(Ok(())),
            "per policy"
        );
        assert_eq!(s.delete("p", "b".into()), Ok(Ok(())));
        assert_eq!(
            s.set("p", LIMITS, "c".into(), "v".into(), 10),
            Ok(Ok(())),
            "room again"
        );
        assert_eq!(s.take_writes().len(), 6);
    }

    #[test]
    fn a_rollback_forgets_the_failed_call_only() {
        let s = StateSession::ephemeral();
        assert_eq!(s.set("p", LIMITS, "a".into(), "1".into(), 10), Ok(Ok(())));
        let mark = s.checkpoint();
        assert_eq!(s.set("p", LIMITS, "a".into(), "2".into(), 10), Ok(Ok(())));
        assert_eq!(s.set("p", LIMITS, "b".into(), "1".into(), 10), Ok(Ok(())));
        assert_eq!(
            s.set("p", LIMITS, "c".into(), "1".into(), 10),
            Ok(Err(StateError::Full))
        );
        s.rollback(mark);
        assert_eq!(s.get("p", "a"), Ok(Some("1".into())));
        assert_eq!(s.get("p", "b"), Ok(None));
        assert_eq!(s.take_writes().len(), 1);
        // The key count came back too: one more key fits.
        assert_eq!(s.set("p", LIMITS, "b".into(), "1".into(), 10), Ok(Ok(())));
    }

    /// A backend that counts its reads, over fixed entries.
    struct Fixed(Mutex<u32>);

    impl StateBackend for Fixed {
        fn get(&self, _: &str, key: &str, _: Timestamp) -> Result<Option<StateEntry>, String> {
            *self.0.lock().unwrap() += 1;
            match key {
                "down" => Err("database is down".into()),
                "there" => Ok(Some(StateEntry {
                    value: "stored".into(),
                    expires_at: Timestamp(i64::MAX),
                })),
                _ => Ok(None),
            }
        }

        fn keys(&self, _: &str) -> Result<u64, String> {
            Ok(1)
        }
    }

    #[test]
    fn the_backend_is_read_once_per_key_and_its_errors_surface() {
        let backend = Arc::new(Fixed(Mutex::new(0)));
        let s = StateSession::new(Some(backend.clone()), at(5));
        assert_eq!(s.get("p", "there"), Ok(Some("stored".into())));
        assert_eq!(s.get("p", "there"), Ok(Some("stored".into())));
        assert_eq!(*backend.0.lock().unwrap(), 1);
        assert_eq!(s.get("p", "down"), Err("database is down".into()));
        // One key stored, one more fits under a limit of 2, a third does not.
        assert_eq!(s.set("p", LIMITS, "new".into(), "v".into(), 10), Ok(Ok(())));
        assert_eq!(
            s.set("p", LIMITS, "newer".into(), "v".into(), 10),
            Ok(Err(StateError::Full))
        );
        assert_eq!(
            s.set("p", LIMITS, "there".into(), "v".into(), 10),
            Ok(Ok(()))
        );
    }
}
