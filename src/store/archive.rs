//! The raw message archive (schema 17): every message the mailbox poller records, kept
//! zstd-compressed in the same transaction as its events and ledger row (so a message is
//! archived exactly when it is recorded), for `[store] keep_raw`. A message's events are
//! those of its mailbox, UID and `at`.

use std::sync::Arc;

use super::{Result, Store, Timestamp, q};

/// zstd's default level: a few hundred MB/s, about a fifth of the size for mail.
const LEVEL: i32 = 3;
/// Rows deleted per pruning statement (a short write each, between other writers).
const PRUNE_CHUNK: i64 = 5_000;

/// A message, compressed for the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// Its size in bytes, uncompressed.
    pub size: u64,
    /// zstd frame.
    pub zstd: Arc<Vec<u8>>,
}

impl RawMessage {
    /// Compresses `raw`.
    ///
    /// # Errors
    /// zstd's (it fails only when out of memory).
    pub fn compress(raw: &[u8]) -> std::io::Result<RawMessage> {
        Ok(RawMessage {
            size: raw.len() as u64,
            zstd: Arc::new(zstd::bulk::compress(raw, LEVEL)?),
        })
    }
}

/// One archived message, decompressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// Row id (the archive's order).
    pub id: i64,
    /// When it was recorded (its events' `at`).
    pub at: Timestamp,
    /// The mailbox.
    pub mailbox: String,
    /// Its UID there.
    pub uid: String,
    /// The message as fetched.
    pub raw: Vec<u8>,
}

/// The archive's size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveStats {
    /// Messages kept.
    pub messages: u64,
    /// Their bytes, uncompressed.
    pub raw_bytes: u64,
    /// What they take compressed.
    pub stored_bytes: u64,
}

/// A stored (frame, size) row, decompressed.
fn decompress((data, size): (Vec<u8>, i64)) -> Result<Vec<u8>> {
    zstd::bulk::decompress(&data, usize::try_from(size).unwrap_or(0)).map_err(|e| {
        super::Error::Corrupt {
            what: "archived message",
            value: e.to_string(),
        }
    })
}

pub(super) async fn insert_in(
    sql: &super::sql::Sql,
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    mailbox: &str,
    uid: &str,
    at: Timestamp,
    raw: &RawMessage,
) -> Result<()> {
    sqlx::query(sql.INSERT_RAW)
        .bind(at.0)
        .bind(mailbox)
        .bind(uid)
        .bind(i64::try_from(raw.size).unwrap_or(i64::MAX))
        .bind(raw.zstd.as_slice())
        .execute(&mut **tx)
        .await
        .map_err(q("INSERT_RAW"))?;
    Ok(())
}

impl Store {
    /// The archived message event `id` was recorded from, decompressed; `None` when the
    /// event has none (another source, archived before `keep_raw` ran out, or recorded
    /// with the archive off).
    ///
    /// # Errors
    /// [`super::Error::Query`]; [`super::Error::Corrupt`] when the stored frame does not
    /// decompress.
    pub async fn raw_of_event(&self, id: i64) -> Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>, i64)> = sqlx::query_as(self.sql.RAW_OF_EVENT)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(q("RAW_OF_EVENT"))?;
        row.map(decompress).transpose()
    }

    /// The latest archived message of `mailbox` with `uid` (mail that booked no event,
    /// ordinary mail, is reached this way), decompressed.
    ///
    /// # Errors
    /// As [`Store::raw_of_event`].
    pub async fn raw_of_message(&self, mailbox: &str, uid: &str) -> Result<Option<Vec<u8>>> {
        let row: Option<(Vec<u8>, i64)> = sqlx::query_as(self.sql.RAW_OF_MESSAGE)
            .bind(mailbox)
            .bind(uid)
            .fetch_optional(self.pool())
            .await
            .map_err(q("RAW_OF_MESSAGE"))?;
        row.map(decompress).transpose()
    }

    /// Deletes the messages archived before `before`, a chunk per statement. Returns how
    /// many.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn prune_archive(&self, before: Timestamp) -> Result<u64> {
        let mut pruned = 0;
        loop {
            let n = sqlx::query(self.sql.PRUNE_RAW)
                .bind(before.0)
                .bind(PRUNE_CHUNK)
                .execute(self.pool())
                .await
                .map_err(q("PRUNE_RAW"))?
                .rows_affected();
            pruned += n;
            if n < PRUNE_CHUNK as u64 {
                return Ok(pruned);
            }
        }
    }

    /// Up to `limit` archived messages recorded at or after `since`, with an id above
    /// `after`, in id order (one page of a reprocessing run).
    ///
    /// # Errors
    /// As [`Store::raw_of_event`].
    pub async fn archived_page(
        &self,
        since: Timestamp,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Archived>> {
        let rows: Vec<(i64, i64, String, String, Vec<u8>, i64)> =
            sqlx::query_as(self.sql.ARCHIVE_PAGE)
                .bind(since.0)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await
                .map_err(q("ARCHIVE_PAGE"))?;
        rows.into_iter()
            .map(|(id, at, mailbox, uid, data, size)| {
                Ok(Archived {
                    id,
                    at: Timestamp(at),
                    mailbox,
                    uid,
                    raw: decompress((data, size))?,
                })
            })
            .collect()
    }

    /// The events an archived message was recorded as.
    ///
    /// # Errors
    /// [`super::Error::Query`], [`super::Error::Corrupt`].
    pub async fn events_of_message(&self, m: &Archived) -> Result<Vec<super::Event>> {
        let rows = sqlx::query(self.sql.EVENTS_OF_MESSAGE)
            .bind(&m.mailbox)
            .bind(&m.uid)
            .bind(m.at.0)
            .fetch_all(self.pool())
            .await
            .map_err(q("EVENTS_OF_MESSAGE"))?;
        rows.iter().map(super::Event::from_row).collect()
    }

    /// How many messages the archive holds and what they take.
    ///
    /// # Errors
    /// [`super::Error::Query`].
    pub async fn archive_stats(&self) -> Result<ArchiveStats> {
        let (messages, raw, stored): (i64, i64, i64) = sqlx::query_as(self.sql.ARCHIVE_STATS)
            .fetch_one(self.pool())
            .await
            .map_err(q("ARCHIVE_STATS"))?;
        let u = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(ArchiveStats {
            messages: u(messages),
            raw_bytes: u(raw),
            stored_bytes: u(stored),
        })
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::RulesConfig;
    use crate::store::{EventContext, EventFilter};
    use crate::verdict::{BUILTIN, BounceClass, MessageKind, Reason, Verdict};

    fn archived(uid: &str, raw: &[u8]) -> EventContext {
        EventContext {
            raw: Some(RawMessage::compress(raw).unwrap()),
            size: Some(raw.len() as u64),
            ..EventContext::mailbox("bounces", uid)
        }
    }

    on_both_backends!(recorded_messages_are_archived_once_and_pruned);
    async fn recorded_messages_are_archived_once_and_pruned(s: Store) {
        let rules = RulesConfig::default();
        let bounce: Vec<u8> = b"From: MAILER-DAEMON@mx.example.net\r\nSubject: failure\r\n\r\n"
            .iter()
            .copied()
            .chain("550 5.1.1 user unknown\r\n".repeat(200).into_bytes())
            .collect();
        let hard = Verdict::one_bounce(
            "ann@example.net",
            BounceClass::Hard,
            "5.1.1",
            Reason::UserUnknown,
            "failed",
        );
        let out = s
            .record_verdict(&archived("1", &bounce), &hard, &rules)
            .await
            .unwrap();
        assert_eq!(out.events, 1);
        let ordinary = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello\0there\r\n".to_vec();
        let other = Verdict {
            kind: MessageKind::Other,
            recipients: Vec::new(),
            decided_by: BUILTIN.into(),
        };
        let out = s
            .record_verdict(&archived("2", &ordinary), &other, &rules)
            .await
            .unwrap();
        assert_eq!(out.events, 0, "ordinary mail books no event");
        // The same message again (a pass that died before QUIT): not archived twice.
        let again = s
            .record_verdict(&archived("1", &bounce), &hard, &rules)
            .await
            .unwrap();
        assert!(again.duplicate);

        let events = s.events(&EventFilter::default()).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            s.raw_of_event(events[0].id).await.unwrap(),
            Some(bounce.clone())
        );
        assert_eq!(s.raw_of_event(events[0].id + 1000).await.unwrap(), None);
        assert_eq!(
            s.raw_of_message("bounces", "2").await.unwrap(),
            Some(ordinary.clone())
        );
        assert_eq!(s.raw_of_message("bounces", "3").await.unwrap(), None);
        let stats = s.archive_stats().await.unwrap();
        assert_eq!(stats.messages, 2);
        assert_eq!(stats.raw_bytes, (bounce.len() + ordinary.len()) as u64);
        assert!(stats.stored_bytes < stats.raw_bytes / 4, "{stats:?}");

        // Nothing is older than an hour ago; everything is older than a moment from now.
        let hour_ago = Timestamp(Timestamp::now().0 - 3_600_000);
        assert_eq!(s.prune_archive(hour_ago).await.unwrap(), 0);
        let later = Timestamp(Timestamp::now().0 + 1);
        assert_eq!(s.prune_archive(later).await.unwrap(), 2);
        assert_eq!(s.raw_of_event(events[0].id).await.unwrap(), None);
        assert_eq!(s.archive_stats().await.unwrap().messages, 0);
    }
}
