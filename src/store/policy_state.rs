//! STUB until the state-store branch lands (replaced by it at the merge).
use super::{Result, Store, Timestamp};

/// One write a policy made while judging a message; applied in the message's own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// `key` holds `value` until `expires_at`.
    Set {
        /// The policy.
        policy: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Until when.
        expires_at: Timestamp,
    },
    /// `key` is gone.
    Delete {
        /// The policy.
        policy: String,
        /// The key.
        key: String,
    },
}

/// A live entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// The value.
    pub value: String,
    /// Until when.
    pub expires_at: Timestamp,
}

impl Store {
    /// stub
    pub async fn policy_state_get(&self, _p: &str, _k: &str, _now: Timestamp) -> Result<Option<StateEntry>> {
        Ok(None)
    }
    /// stub
    pub async fn policy_state_keys(&self, _p: &str) -> Result<u64> {
        Ok(0)
    }
    /// stub
    pub async fn policy_state_entries(&self, _p: &str, _prefix: &str, _after: Option<&str>, _limit: u32, _now: Timestamp) -> Result<Vec<(String, StateEntry)>> {
        Ok(Vec::new())
    }
    /// stub
    pub async fn clear_policy_state(&self, _p: &str) -> Result<u64> {
        Ok(0)
    }
    /// stub
    pub async fn apply_policy_state(&self, _w: &[StateWrite]) -> Result<()> {
        Ok(())
    }
    /// stub
    pub async fn prune_policy_state(&self, _now: Timestamp) -> Result<u64> {
        Ok(0)
    }
}
