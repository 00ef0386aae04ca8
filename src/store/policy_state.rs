//! The policies' own key-value state (tables `policy_state` and `policy_state_usage`,
//! schema 23): a small store per policy name. A policy reads it while judging a message;
//! what it writes travels with the message as [`EventContext::state_writes`] and is
//! applied by `record_in` in the message's own transaction (with its ledger row and
//! events), and only when the message is recorded, not for a duplicate: a crash or a
//! second process neither loses nor doubles a write. Reprocessing applies none.
//!
//! * An entry holds until its `expires_at`: a read at or after it sees nothing, and
//!   [`Store::prune_policy_state`] deletes it (a process prunes at most once an hour,
//!   after a mailbox pass or an ingested message: `policy::state::prune_expired`).
//! * `policy_state_usage` counts each policy's keys (expired ones not yet pruned too),
//!   changed in the transaction that adds or removes the rows, by the rows each
//!   statement changed: [`Store::policy_state_keys`] reads one row.
//! * Text is stored without NUL (U+FFFD in its place; PostgreSQL's text holds none), on
//!   both backends alike, as the rest of the store does.
//!
//! [`EventContext::state_writes`]: super::EventContext::state_writes

use std::borrow::Cow;
use std::collections::BTreeMap;

use super::{Result, Store, Timestamp, q, sql};

/// Entries deleted per pruning transaction (a short write each, between other writers).
const PRUNE_CHUNK: i64 = 10_000;

/// One write a policy made while judging a message; applied in the message's own transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateWrite {
    /// `key` holds `value` until `expires_at` (a later read at or after it sees nothing).
    Set {
        /// The policy's name (its namespace).
        policy: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// When the entry stops being seen.
        expires_at: Timestamp,
    },
    /// `key` is gone.
    Delete {
        /// The policy's name.
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
    /// When it stops being seen.
    pub expires_at: Timestamp,
}

/// `s` without NUL (a copy only when it has one).
fn clean(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// Applies `writes` in order inside `tx`, then each policy's change of keys to its usage
/// row (in policy order, one statement per policy whose count changed). A `Set` replaces
/// an existing key's value and expiry (expired or not); a `Delete` of a missing key does
/// nothing.
pub(super) async fn apply_in(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    writes: &[StateWrite],
) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now();
    let mut usage: BTreeMap<Cow<'_, str>, i64> = BTreeMap::new();
    for w in writes {
        match w {
            StateWrite::Set {
                policy,
                key,
                value,
                expires_at,
            } => {
                let (policy, key, value) = (clean(policy), clean(key), clean(value));
                if set_in(sql, tx, &policy, &key, &value, *expires_at, now).await? {
                    *usage.entry(policy).or_default() += 1;
                }
            }
            StateWrite::Delete { policy, key } => {
                let policy = clean(policy);
                let deleted = sqlx::query(sql.POLICY_STATE_DELETE)
                    .bind(&*policy)
                    .bind(&*clean(key))
                    .execute(&mut **tx)
                    .await
                    .map_err(q("POLICY_STATE_DELETE"))?
                    .rows_affected();
                if deleted > 0 {
                    *usage.entry(policy).or_default() -= i64::try_from(deleted).unwrap_or(0);
                }
            }
        }
    }
    add_usage_in(sql, tx, &usage).await
}

/// Sets one key; true when it made a new row. Inserting first and updating when the key
/// is there (rather than one upsert) is what tells the two apart on both backends.
async fn set_in(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    policy: &str,
    key: &str,
    value: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<bool> {
    loop {
        let inserted = sqlx::query(sql.POLICY_STATE_INSERT)
            .bind(policy)
            .bind(key)
            .bind(value)
            .bind(expires_at.0)
            .bind(now.0)
            .execute(&mut **tx)
            .await
            .map_err(q("POLICY_STATE_INSERT"))?
            .rows_affected();
        if inserted > 0 {
            return Ok(true);
        }
        let updated = sqlx::query(sql.POLICY_STATE_UPDATE)
            .bind(policy)
            .bind(key)
            .bind(value)
            .bind(expires_at.0)
            .bind(now.0)
            .execute(&mut **tx)
            .await
            .map_err(q("POLICY_STATE_UPDATE"))?
            .rows_affected();
        if updated > 0 {
            return Ok(false);
        }
        // PostgreSQL: another transaction deleted (cleared, pruned) the key between the
        // two statements and committed; it is missing now, so it is inserted.
    }
}

/// Adds each policy's change of keys to its usage row.
async fn add_usage_in(
    sql: &sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    usage: &BTreeMap<Cow<'_, str>, i64>,
) -> Result<()> {
    for (policy, &delta) in usage {
        if delta == 0 {
            continue;
        }
        sqlx::query(sql.POLICY_STATE_USAGE_ADD)
            .bind(&**policy)
            .bind(delta)
            .execute(&mut **tx)
            .await
            .map_err(q("POLICY_STATE_USAGE_ADD"))?;
    }
    Ok(())
}

impl Store {
    /// The entry of (`policy`, `key`) if it has not expired at `now`.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn policy_state_get(
        &self,
        policy: &str,
        key: &str,
        now: Timestamp,
    ) -> Result<Option<StateEntry>> {
        let row: Option<(String, i64)> = sqlx::query_as(self.sql.POLICY_STATE_GET)
            .bind(&*clean(policy))
            .bind(&*clean(key))
            .bind(now.0)
            .fetch_optional(self.pool())
            .await
            .map_err(q("POLICY_STATE_GET"))?;
        Ok(row.map(|(value, expires_at)| StateEntry {
            value,
            expires_at: Timestamp(expires_at),
        }))
    }

    /// How many keys `policy` holds, expired ones not yet pruned too: one row, kept in
    /// the same transactions as the writes.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn policy_state_keys(&self, policy: &str) -> Result<u64> {
        let keys: Option<i64> = sqlx::query_scalar(self.sql.POLICY_STATE_KEYS)
            .bind(&*clean(policy))
            .fetch_optional(self.pool())
            .await
            .map_err(q("POLICY_STATE_KEYS"))?;
        Ok(keys.and_then(|k| u64::try_from(k).ok()).unwrap_or(0))
    }

    /// Applies writes outside any message (for tests and tools), in one transaction, as
    /// a recorded message's are applied.
    ///
    /// # Errors
    /// [`super::Error::Query`]; nothing is written then.
    pub async fn apply_policy_state(&self, writes: &[StateWrite]) -> Result<()> {
        let mut tx = self.begin().await?;
        apply_in(self.sql, &mut tx, writes).await?;
        tx.commit().await.map_err(q("commit"))
    }

    /// The live entries of `policy` whose key starts with `prefix`, in key order (by the
    /// key's bytes, on both backends), at most `limit`, starting after `after` (keyset
    /// paging: the last key of the previous page) — for a `rebound policy state` CLI.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn policy_state_entries(
        &self,
        policy: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
        now: Timestamp,
    ) -> Result<Vec<(String, StateEntry)>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(self.sql.POLICY_STATE_ENTRIES)
            .bind(&*clean(policy))
            .bind(&*clean(prefix))
            .bind(after.map(clean).as_deref())
            .bind(now.0)
            .bind(i64::from(limit))
            .fetch_all(self.pool())
            .await
            .map_err(q("POLICY_STATE_ENTRIES"))?;
        Ok(rows
            .into_iter()
            .map(|(key, value, expires_at)| {
                let expires_at = Timestamp(expires_at);
                (key, StateEntry { value, expires_at })
            })
            .collect())
    }

    /// Deletes every entry of `policy`; returns how many.
    ///
    /// # Errors
    /// [`super::Error::Query`]; nothing is deleted then.
    pub async fn clear_policy_state(&self, policy: &str) -> Result<u64> {
        let policy = clean(policy);
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(self.sql.CLEAR_POLICY_STATE)
            .bind(&*policy)
            .execute(&mut *tx)
            .await
            .map_err(q("CLEAR_POLICY_STATE"))?
            .rows_affected();
        // By the rows deleted, not to zero: a key a concurrent transaction adds stays
        // counted.
        let usage = BTreeMap::from([(policy, -i64::try_from(deleted).unwrap_or(0))]);
        add_usage_in(self.sql, &mut tx, &usage).await?;
        tx.commit().await.map_err(q("commit"))?;
        Ok(deleted)
    }

    /// Deletes the entries expired at `now` (every policy), keeping the usage rows
    /// right; returns how many. Up to 10 000 entries per transaction, until none is left.
    ///
    /// # Errors
    /// [`super::Error::Query`]; the chunks committed before stay deleted.
    pub async fn prune_policy_state(&self, now: Timestamp) -> Result<u64> {
        self.prune_policy_state_by(now, PRUNE_CHUNK).await
    }

    /// [`Store::prune_policy_state`] with `chunk` entries per transaction.
    async fn prune_policy_state_by(&self, now: Timestamp, chunk: i64) -> Result<u64> {
        let mut pruned = 0;
        loop {
            let mut tx = self.begin().await?;
            let policies: Vec<String> = sqlx::query_scalar(self.sql.PRUNE_POLICY_STATE)
                .bind(now.0)
                .bind(chunk)
                .fetch_all(&mut *tx)
                .await
                .map_err(q("PRUNE_POLICY_STATE"))?;
            let mut usage: BTreeMap<Cow<'_, str>, i64> = BTreeMap::new();
            for p in &policies {
                *usage.entry(Cow::Borrowed(p.as_str())).or_default() -= 1;
            }
            add_usage_in(self.sql, &mut tx, &usage).await?;
            tx.commit().await.map_err(q("commit"))?;
            let n = policies.len() as u64;
            pruned += n;
            if n < chunk as u64 {
                return Ok(pruned);
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::RulesConfig;
    use crate::store::archive::RawMessage;
    use crate::store::{EventContext, RecordOutcome};
    use crate::verdict::{BUILTIN, MessageKind, Verdict};

    /// A time in the tests' past and future: entries expire relative to it.
    const T: Timestamp = Timestamp(1_700_000_000_000);

    fn at(ms: i64) -> Timestamp {
        Timestamp(T.0 + ms)
    }

    fn set(policy: &str, key: &str, value: &str, expires_at: Timestamp) -> StateWrite {
        StateWrite::Set {
            policy: policy.into(),
            key: key.into(),
            value: value.into(),
            expires_at,
        }
    }

    fn delete(policy: &str, key: &str) -> StateWrite {
        StateWrite::Delete {
            policy: policy.into(),
            key: key.into(),
        }
    }

    fn entry(value: &str, expires_at: Timestamp) -> Option<StateEntry> {
        Some(StateEntry {
            value: value.into(),
            expires_at,
        })
    }

    /// Ordinary mail: the ledger row is claimed, nothing else is booked.
    fn other() -> Verdict {
        Verdict {
            kind: MessageKind::Other,
            recipients: Vec::new(),
            decided_by: BUILTIN.into(),
        }
    }

    /// Message `uid` of the mailbox, carrying `writes`.
    fn message(uid: &str, writes: Vec<StateWrite>) -> EventContext {
        EventContext {
            state_writes: writes,
            ..EventContext::mailbox("bounces", uid)
        }
    }

    async fn record(s: &Store, ctx: &EventContext) -> RecordOutcome {
        s.record_verdict(ctx, &other(), &RulesConfig::default())
            .await
            .unwrap()
    }

    on_both_backends!(policy_state_set_get_overwrite_delete_expire);
    async fn policy_state_set_get_overwrite_delete_expire(s: Store) {
        assert_eq!(s.policy_state_get("p", "k", T).await.unwrap(), None);
        s.apply_policy_state(&[set("p", "k", "1", at(1000))])
            .await
            .unwrap();
        assert_eq!(
            s.policy_state_get("p", "k", T).await.unwrap(),
            entry("1", at(1000))
        );
        // An overwrite replaces value and expiry.
        s.apply_policy_state(&[set("p", "k", "2", at(2000))])
            .await
            .unwrap();
        assert_eq!(
            s.policy_state_get("p", "k", at(1500)).await.unwrap(),
            entry("2", at(2000))
        );
        // Seen just before its expiry, not at it nor after.
        assert!(
            s.policy_state_get("p", "k", at(1999))
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(s.policy_state_get("p", "k", at(2000)).await.unwrap(), None);
        assert_eq!(s.policy_state_get("p", "k", at(5000)).await.unwrap(), None);
        // A Set on the expired key brings it back.
        s.apply_policy_state(&[set("p", "k", "3", at(9000))])
            .await
            .unwrap();
        assert_eq!(
            s.policy_state_get("p", "k", at(5000)).await.unwrap(),
            entry("3", at(9000))
        );
        // Deleted; deleting a missing key is no error and changes nothing.
        s.apply_policy_state(&[delete("p", "k"), delete("p", "missing")])
            .await
            .unwrap();
        assert_eq!(s.policy_state_get("p", "k", T).await.unwrap(), None);
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 0);
        // Expiry and prune: an entry expired at `now` goes, a live one stays.
        s.apply_policy_state(&[set("p", "old", "x", at(100)), set("p", "new", "y", at(300))])
            .await
            .unwrap();
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 2);
        assert_eq!(s.prune_policy_state(at(99)).await.unwrap(), 0);
        assert_eq!(s.prune_policy_state(at(100)).await.unwrap(), 1);
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 1);
        assert_eq!(
            s.policy_state_get("p", "new", at(100)).await.unwrap(),
            entry("y", at(300))
        );
        // Gone from the table, not only unseen: a read at an earlier time finds nothing.
        assert_eq!(s.policy_state_get("p", "old", T).await.unwrap(), None);
        // Text with a NUL is stored as the rest of the store stores it, on both backends.
        s.apply_policy_state(&[set("p", "n\0", "a\0b", at(100))])
            .await
            .unwrap();
        assert_eq!(
            s.policy_state_get("p", "n\0", T).await.unwrap(),
            entry("a\u{FFFD}b", at(100))
        );
    }

    on_both_backends!(policy_state_is_one_namespace_per_policy);
    async fn policy_state_is_one_namespace_per_policy(s: Store) {
        s.apply_policy_state(&[
            set("a", "k", "of a", at(1000)),
            set("b", "k", "of b", at(1000)),
        ])
        .await
        .unwrap();
        assert_eq!(
            s.policy_state_get("a", "k", T).await.unwrap(),
            entry("of a", at(1000))
        );
        assert_eq!(
            s.policy_state_get("b", "k", T).await.unwrap(),
            entry("of b", at(1000))
        );
        s.apply_policy_state(&[delete("a", "k")]).await.unwrap();
        assert_eq!(s.policy_state_get("a", "k", T).await.unwrap(), None);
        assert_eq!(
            s.policy_state_get("b", "k", T).await.unwrap(),
            entry("of b", at(1000))
        );
        assert_eq!(s.policy_state_keys("a").await.unwrap(), 0);
        assert_eq!(s.policy_state_keys("b").await.unwrap(), 1);
        assert_eq!(s.policy_state_keys("nobody").await.unwrap(), 0);
    }

    on_both_backends!(policy_state_usage_counts_exactly);
    async fn policy_state_usage_counts_exactly(s: Store) {
        let keys = |p: &'static str| {
            let s = s.clone();
            async move { s.policy_state_keys(p).await.unwrap() }
        };
        // Three new keys, one of them set twice in one transaction.
        s.apply_policy_state(&[
            set("p", "a", "1", at(100)),
            set("p", "b", "1", at(100)),
            set("p", "a", "2", at(100)),
            set("p", "c", "1", at(5000)),
            set("q", "a", "1", at(100)),
        ])
        .await
        .unwrap();
        assert_eq!((keys("p").await, keys("q").await), (3, 1));
        // Overwrites add nothing (whether a key has expired is a read's question); a
        // missing key's delete removes nothing.
        s.apply_policy_state(&[set("p", "a", "3", at(100)), delete("p", "zz")])
            .await
            .unwrap();
        s.apply_policy_state(&[set("p", "b", "2", at(200))])
            .await
            .unwrap();
        assert_eq!(keys("p").await, 3);
        // Expired keys count until pruned.
        assert_eq!(s.policy_state_get("p", "a", at(150)).await.unwrap(), None);
        assert_eq!(keys("p").await, 3);
        // Set then delete, and delete then set, in one transaction.
        s.apply_policy_state(&[
            set("p", "d", "1", at(5000)),
            delete("p", "d"),
            delete("p", "c"),
            set("p", "c", "2", at(5000)),
        ])
        .await
        .unwrap();
        assert_eq!(keys("p").await, 3);
        assert_eq!(s.policy_state_get("p", "d", T).await.unwrap(), None);
        assert_eq!(
            s.policy_state_get("p", "c", T).await.unwrap(),
            entry("2", at(5000))
        );
        // The prune removes p's a and b (expired at 200) and q's a, in chunks of two.
        assert_eq!(s.prune_policy_state_by(at(200), 2).await.unwrap(), 3);
        assert_eq!((keys("p").await, keys("q").await), (1, 0));
        assert_eq!(s.prune_policy_state(at(200)).await.unwrap(), 0);
        assert_eq!(keys("p").await, 1);
        s.apply_policy_state(&[delete("p", "c")]).await.unwrap();
        assert_eq!(keys("p").await, 0);
    }

    on_both_backends!(policy_state_writes_go_with_their_message_once);
    async fn policy_state_writes_go_with_their_message_once(s: Store) {
        let first = message("1", vec![set("p", "seen", "1", at(1000))]);
        assert!(!record(&s, &first).await.duplicate);
        assert_eq!(
            s.policy_state_get("p", "seen", T).await.unwrap(),
            entry("1", at(1000))
        );
        // The same message recorded again (a pass that died before deleting it, another
        // process): its writes, whatever the policy said this time, are not applied.
        let again = message(
            "1",
            vec![
                set("p", "seen", "2", at(2000)),
                set("p", "more", "x", at(2000)),
            ],
        );
        assert!(record(&s, &again).await.duplicate);
        assert_eq!(
            s.policy_state_get("p", "seen", T).await.unwrap(),
            entry("1", at(1000))
        );
        assert_eq!(s.policy_state_get("p", "more", T).await.unwrap(), None);
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 1);
        let delete_again = message("1", vec![delete("p", "seen")]);
        assert!(record(&s, &delete_again).await.duplicate);
        assert!(s.policy_state_get("p", "seen", T).await.unwrap().is_some());
        // Another message's writes are applied; so are those of a source without a
        // ledger (nothing there is a duplicate).
        assert!(
            !record(&s, &message("2", vec![delete("p", "seen")]))
                .await
                .duplicate
        );
        assert_eq!(s.policy_state_get("p", "seen", T).await.unwrap(), None);
        let smtp = EventContext {
            state_writes: vec![set("p", "smtp", "y", at(1000))],
            ..EventContext::smtp()
        };
        let _ = record(&s, &smtp).await;
        assert!(s.policy_state_get("p", "smtp", T).await.unwrap().is_some());
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 1);
    }

    on_both_backends!(policy_state_writes_of_a_group_apply_in_order);
    async fn policy_state_writes_of_a_group_apply_in_order(s: Store) {
        assert!(!record(&s, &message("0", Vec::new())).await.duplicate);
        let items = vec![
            (
                message(
                    "1",
                    vec![
                        set("p", "k", "1", at(1000)),
                        set("p", "gone", "x", at(1000)),
                    ],
                ),
                other(),
            ),
            // Recorded already: its writes would undo the others'.
            (
                message(
                    "0",
                    vec![
                        set("p", "k", "dup", at(1000)),
                        set("p", "dup", "x", at(1000)),
                    ],
                ),
                other(),
            ),
            (
                message("2", vec![set("p", "k", "2", at(2000)), delete("p", "gone")]),
                other(),
            ),
            (message("3", vec![set("p", "k", "3", at(3000))]), other()),
        ];
        let out = s
            .record_verdicts(&items, &RulesConfig::default())
            .await
            .unwrap();
        assert_eq!(
            out.iter().map(|o| o.duplicate).collect::<Vec<_>>(),
            [false, true, false, false]
        );
        assert_eq!(
            s.policy_state_get("p", "k", T).await.unwrap(),
            entry("3", at(3000))
        );
        assert_eq!(s.policy_state_get("p", "gone", T).await.unwrap(), None);
        assert_eq!(s.policy_state_get("p", "dup", T).await.unwrap(), None);
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 1);
    }

    on_both_backends!(policy_state_is_not_written_by_reprocessing);
    async fn policy_state_is_not_written_by_reprocessing(s: Store) {
        let raw = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello\r\n";
        let ctx = EventContext {
            raw: Some(RawMessage::compress(raw).unwrap()),
            ..message("1", vec![set("p", "k", "1", at(1000))])
        };
        let _ = record(&s, &ctx).await;
        let m = s
            .archived_page(Timestamp(0), 0, 10)
            .await
            .unwrap()
            .remove(0);
        let again = message(
            "1",
            vec![set("p", "k", "2", at(2000)), set("p", "j", "x", at(2000))],
        );
        let _ = s
            .rebook(&m, &again, &other(), &RulesConfig::default(), true)
            .await
            .unwrap();
        assert_eq!(
            s.policy_state_get("p", "k", T).await.unwrap(),
            entry("1", at(1000))
        );
        assert_eq!(s.policy_state_get("p", "j", T).await.unwrap(), None);
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 1);
    }

    on_both_backends!(policy_state_entries_page_by_prefix);
    async fn policy_state_entries_page_by_prefix(s: Store) {
        let mut writes: Vec<StateWrite> =
            ["a/1", "a/2", "a/3", "a/4", "a/B", "a/b", "a_x", "ab", "b/1"]
                .into_iter()
                .map(|k| set("p", k, &format!("v{k}"), at(1000)))
                .collect();
        writes.push(set("p", "a/0", "expired", at(10)));
        writes.push(set("q", "a/1", "other policy", at(1000)));
        s.apply_policy_state(&writes).await.unwrap();
        let keys = |prefix: &'static str, after: Option<&'static str>, limit: u32| {
            let s = s.clone();
            async move {
                s.policy_state_entries("p", prefix, after, limit, at(10))
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect::<Vec<_>>()
            }
        };
        // Pages of two through the prefix `a/`, the expired entry and the other policy
        // left out, in byte order (digits, upper case, lower case; a linguistic
        // collation would put `a/b` before `a/B`).
        assert_eq!(keys("a/", None, 2).await, ["a/1", "a/2"]);
        assert_eq!(keys("a/", Some("a/2"), 2).await, ["a/3", "a/4"]);
        assert_eq!(keys("a/", Some("a/4"), 2).await, ["a/B", "a/b"]);
        assert_eq!(keys("a/", Some("a/b"), 2).await, Vec::<String>::new());
        // A prefix is text, not a pattern: `_` matches itself only.
        assert_eq!(keys("a_", None, 10).await, ["a_x"]);
        // No prefix: every live key of the policy, by bytes (`/` < `_` < `b`; a
        // collation that skips punctuation would put `ab` before `a_x`).
        assert_eq!(
            keys("", None, 100).await,
            ["a/1", "a/2", "a/3", "a/4", "a/B", "a/b", "a_x", "ab", "b/1"]
        );
        assert_eq!(keys("", Some("ab"), 100).await, ["b/1"]);
        let page = s
            .policy_state_entries("p", "a/", Some("a/3"), 1, at(10))
            .await
            .unwrap();
        assert_eq!(page, [("a/4".to_owned(), entry("va/4", at(1000)).unwrap())]);
        // The expired entry is listed before its expiry.
        assert_eq!(
            s.policy_state_entries("p", "a/", None, 1, T).await.unwrap()[0].0,
            "a/0"
        );
    }

    on_both_backends!(policy_state_clear_deletes_one_policy);
    async fn policy_state_clear_deletes_one_policy(s: Store) {
        s.apply_policy_state(&[
            set("p", "a", "1", at(1000)),
            set("p", "b", "1", at(10)),
            set("q", "a", "1", at(1000)),
        ])
        .await
        .unwrap();
        assert_eq!(s.clear_policy_state("p").await.unwrap(), 2);
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 0);
        assert_eq!(s.policy_state_get("p", "a", T).await.unwrap(), None);
        assert!(
            s.policy_state_entries("p", "", None, 10, T)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(s.policy_state_keys("q").await.unwrap(), 1);
        assert!(s.policy_state_get("q", "a", T).await.unwrap().is_some());
        assert_eq!(s.clear_policy_state("p").await.unwrap(), 0);
        // Cleared, the policy counts from zero again.
        s.apply_policy_state(&[set("p", "c", "1", at(1000))])
            .await
            .unwrap();
        assert_eq!(s.policy_state_keys("p").await.unwrap(), 1);
    }
}
