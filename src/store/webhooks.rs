//! The one-time tokens of signed webhook requests (Mailgun signs a timestamp and a token,
//! not the body): a token is taken once; a request that brings it again is a replay,
//! unless it is the very same bytes, which is the provider retrying a delivery whose
//! answer it did not get (the ledger then books the event once).

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Result, Store, Timestamp, q};

/// How long a taken token is kept. Longer than any timestamp window a provider's
/// requests are checked against (a token older than that is refused by its timestamp).
pub const TOKEN_KEEP: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// When this process last pruned the tokens (ms since the epoch).
static LAST_PRUNE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
const PRUNE_EVERY_MS: i64 = 60_000;

/// What [`Store::take_webhook_token`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    /// First seen now.
    Fresh,
    /// Seen before with this very body: a retry of the same request.
    Retry,
    /// Seen before with another body: a replay.
    Replay,
}

impl Store {
    /// Takes `provider`'s one-time `token` for a request with this `body`, and (at most
    /// once a minute) forgets tokens older than [`TOKEN_KEEP`].
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn take_webhook_token(
        &self,
        provider: &str,
        token: &str,
        body: &[u8],
    ) -> Result<TokenUse> {
        let digest = hex::encode(Sha256::digest(body));
        let now = Timestamp::now().0;
        // At most once a minute per process: a prune is a write (a sync) of its own.
        let last = LAST_PRUNE.load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= PRUNE_EVERY_MS
            && LAST_PRUNE
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
        {
            let keep = i64::try_from(TOKEN_KEEP.as_millis()).unwrap_or(i64::MAX / 4);
            sqlx::query(self.sql.PRUNE_WEBHOOK_TOKENS)
                .bind(now - keep)
                .execute(self.pool())
                .await
                .map_err(q("PRUNE_WEBHOOK_TOKENS"))?;
        }
        let taken = sqlx::query(self.sql.WEBHOOK_TOKEN_CLAIM)
            .bind(provider)
            .bind(token)
            .bind(&digest)
            .bind(now)
            .fetch_optional(self.pool())
            .await
            .map_err(q("WEBHOOK_TOKEN_CLAIM"))?;
        if taken.is_some() {
            return Ok(TokenUse::Fresh);
        }
        let first: Option<String> = sqlx::query(self.sql.WEBHOOK_TOKEN_DIGEST)
            .bind(provider)
            .bind(token)
            .fetch_optional(self.pool())
            .await
            .map_err(q("WEBHOOK_TOKEN_DIGEST"))?
            .map(|row| row.get(0));
        Ok(match first {
            Some(d) if d == digest => TokenUse::Retry,
            // Pruned between the two statements: it was old, so not a retry of ours.
            _ => TokenUse::Replay,
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;

    on_both_backends!(webhook_token_taken_once_retry_same_body_only);
    async fn webhook_token_taken_once_retry_same_body_only(s: Store) {
        let take = |t: &'static str, b: &'static [u8]| {
            let s = s.clone();
            async move { s.take_webhook_token("mailgun", t, b).await.unwrap() }
        };
        assert_eq!(take("t1", b"a").await, TokenUse::Fresh);
        assert_eq!(take("t1", b"a").await, TokenUse::Retry);
        assert_eq!(take("t1", b"b").await, TokenUse::Replay);
        assert_eq!(take("t2", b"b").await, TokenUse::Fresh);
        assert_eq!(
            s.take_webhook_token("sendgrid", "t1", b"b").await.unwrap(),
            TokenUse::Fresh
        );
    }
}
