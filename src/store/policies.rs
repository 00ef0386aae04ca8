//! The policy chain kept in the store, so that every host on one store runs the same
//! chain (see [`crate::api::registry`], which owns its meaning): each component's bytes
//! by digest, and one manifest row whose version every change increments.
//!
//! A change is written only over the version it was made from
//! ([`Store::save_policy_chain`]); a change that lost the race is made again over the new
//! version by its caller. Hosts notice a change by polling the version
//! ([`Store::policy_chain_version`]), one indexed single-row read.

use sqlx::Row;

use super::{Result, Store, Timestamp, q};

/// The chain's row: its version and manifest (JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRow {
    /// Incremented by every change; 1 for the first chain.
    pub version: i64,
    /// The manifest, as the registry wrote it.
    pub manifest: String,
}

impl Store {
    /// The chain's row; `None` before the first chain was saved.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn policy_chain(&self) -> Result<Option<ChainRow>> {
        let row = sqlx::query(self.sql.SELECT_POLICY_CHAIN)
            .fetch_optional(self.pool())
            .await
            .map_err(q("SELECT_POLICY_CHAIN"))?;
        row.map(|r| {
            let g = q("reading the policy chain");
            Ok(ChainRow {
                version: r.try_get(0).map_err(g)?,
                manifest: r.try_get(1).map_err(g)?,
            })
        })
        .transpose()
    }

    /// The chain's version; 0 before the first chain was saved.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn policy_chain_version(&self) -> Result<i64> {
        let version: Option<i64> = sqlx::query_scalar(self.sql.POLICY_CHAIN_VERSION)
            .fetch_optional(self.pool())
            .await
            .map_err(q("POLICY_CHAIN_VERSION"))?;
        Ok(version.unwrap_or(0))
    }

    /// Saves `manifest` as the change of the chain at version `from` (0: the first
    /// chain). Returns the new version, or `None` when another change came first (nothing
    /// is written then).
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn save_policy_chain(&self, from: i64, manifest: &str) -> Result<Option<i64>> {
        let now = Timestamp::now().0;
        let written = if from == 0 {
            sqlx::query(self.sql.INSERT_POLICY_CHAIN)
                .bind(manifest)
                .bind(now)
                .execute(self.pool())
                .await
                .map_err(q("INSERT_POLICY_CHAIN"))?
        } else {
            sqlx::query(self.sql.UPDATE_POLICY_CHAIN)
                .bind(manifest)
                .bind(now)
                .bind(from)
                .execute(self.pool())
                .await
                .map_err(q("UPDATE_POLICY_CHAIN"))?
        };
        Ok((written.rows_affected() > 0).then_some(from + 1))
    }

    /// Keeps a component's bytes under their digest (once: the same digest again is a
    /// no-op). The caller computed `digest` from `bytes`.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn put_policy_module(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query(self.sql.INSERT_POLICY_MODULE)
            .bind(digest)
            .bind(bytes)
            .bind(i64::try_from(bytes.len()).unwrap_or(i64::MAX))
            .bind(Timestamp::now().0)
            .execute(self.pool())
            .await
            .map_err(q("INSERT_POLICY_MODULE"))?;
        Ok(())
    }

    /// A component's bytes by digest.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn policy_module(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        sqlx::query_scalar(self.sql.SELECT_POLICY_MODULE)
            .bind(digest)
            .fetch_optional(self.pool())
            .await
            .map_err(q("SELECT_POLICY_MODULE"))
    }
}

#[cfg(test)]
mod test {
    use super::*;

    on_both_backends!(chain_changes_are_written_over_the_version_they_came_from);
    async fn chain_changes_are_written_over_the_version_they_came_from(s: Store) {
        assert_eq!(s.policy_chain().await.unwrap(), None);
        assert_eq!(s.policy_chain_version().await.unwrap(), 0);
        assert_eq!(s.save_policy_chain(0, "first").await.unwrap(), Some(1));
        // Another host wrote its first chain at the same time: it lost.
        assert_eq!(s.save_policy_chain(0, "other first").await.unwrap(), None);
        assert_eq!(s.save_policy_chain(1, "second").await.unwrap(), Some(2));
        // A change made from version 1 comes too late.
        assert_eq!(s.save_policy_chain(1, "stale").await.unwrap(), None);
        assert_eq!(
            s.policy_chain().await.unwrap(),
            Some(ChainRow {
                version: 2,
                manifest: "second".into()
            })
        );
        assert_eq!(s.policy_chain_version().await.unwrap(), 2);
    }

    on_both_backends!(module_bytes_are_kept_whole_once_per_digest);
    async fn module_bytes_are_kept_whole_once_per_digest(s: Store) {
        // Every byte value, NUL and invalid UTF-8 included, and a size past 1 MB.
        let bytes: Vec<u8> = (0..=255u8).cycle().take(1_500_000).collect();
        s.put_policy_module("d1", &bytes).await.unwrap();
        s.put_policy_module("d1", b"ignored: the same digest")
            .await
            .unwrap();
        assert_eq!(s.policy_module("d1").await.unwrap(), Some(bytes));
        assert_eq!(s.policy_module("d2").await.unwrap(), None);
    }
}
