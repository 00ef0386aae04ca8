//! Campaigns and their send queue (schema `0002_campaigns.sql`).
//!
//! A campaign is queued once ([`Store::create_campaign`]: one `sends` row per mailable
//! recipient, written in chunks of [`ENQUEUE_CHUNK`] rows, one transaction each, so other
//! writers such as a mailbox pass commit in between; the campaign is `enqueued` once the
//! last chunk is in). Workers [`claim`](Store::claim) batches of pending rows in id order
//! from a cursor (an index walk of the rows taken, not a sort of every pending row) and
//! write their results back in [`checkpoints`](Store::checkpoint_owned).
//!
//! Several processes (on several hosts, with PostgreSQL) may share one store and send one
//! campaign together: each runner joins it ([`Store::join_campaign`]: its own
//! `campaign_runners` row, an expiry its heartbeat renews). A claimed row carries its
//! owner and a lease; a claim takes only pending rows (on PostgreSQL, skipping rows
//! another runner is claiming at that moment), a checkpoint writes only rows the owner
//! still holds, and a runner resets only claims whose lease has expired
//! ([`Store::resume_campaign`]), so every row is sent by one runner, nothing is skipped,
//! and at most the batch that was in flight when a sender died is sent again.
//! [`Store::reserve_rate`] keeps the rate limits that every process on the store shares:
//! the smooth limits' GCRA state (`rate_limits`), the send times reserved under rolling
//! windows (`rate_window_sends`) and the relay's throttling pause (`rate_pauses`).
//!
//! A store that is busy (another process holds the write lock past the busy timeout)
//! answers [`Error::is_busy`]; the queue waits and retries such errors instead of
//! ending a run.

use serde::Serialize;
use sqlx::Row;

use super::{Error, Result, Store, Timestamp, address_key, millis, normalize_address, q};

/// A campaign's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignState {
    /// Created, not started.
    Queued,
    /// A sender has started it (it may have died since: sending again resumes).
    Sending,
    /// Every recipient has a final result.
    Done,
}

impl CampaignState {
    /// The SQL name.
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignState::Queued => "queued",
            CampaignState::Sending => "sending",
            CampaignState::Done => "done",
        }
    }

    fn parse(s: &str) -> Result<CampaignState> {
        Ok(match s {
            "queued" => CampaignState::Queued,
            "sending" => CampaignState::Sending,
            "done" => CampaignState::Done,
            _ => {
                return Err(Error::Corrupt {
                    what: "campaign state",
                    value: s.into(),
                });
            }
        })
    }
}

/// What a new campaign is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCampaign {
    /// Unique name.
    pub name: String,
    /// The From header.
    pub from: String,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignRecord {
    /// Row id (the number in VERP tokens and `X-Rebound-Campaign`).
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// The From header.
    pub from: String,
    /// The subject.
    pub subject: String,
    /// The plain-text body.
    pub text: Option<String>,
    /// The HTML body.
    pub html: Option<String>,
    /// Where it stands.
    pub state: CampaignState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a sender first started it.
    pub started_at: Option<Timestamp>,
    /// When the last recipient got a final result.
    pub finished_at: Option<Timestamp>,
    /// Every recipient is queued (false while the chunks of a new campaign are written,
    /// or after a sender died half-way: queueing it again adds the rest).
    pub enqueued: bool,
    /// Paused (by hand or by the complaint-rate guard): none of its sends is claimed
    /// until resumed.
    pub pause: Option<CampaignPause>,
}

/// Why and since when a campaign is paused (`[rules] max_complaint_rate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CampaignPause {
    /// When it paused.
    pub paused_at: Timestamp,
    /// Why.
    pub reason: String,
}

/// Columns `i` (paused_at) and `i + 1` (pause_reason) of a campaign row.
fn pause_at(row: &sqlx::any::AnyRow, i: usize) -> Result<Option<CampaignPause>> {
    let g = q("reading the campaign's pause");
    let paused_at: Option<i64> = row.try_get(i).map_err(g)?;
    let reason: Option<String> = row.try_get(i + 1).map_err(g)?;
    Ok(paused_at.map(|at| CampaignPause {
        paused_at: Timestamp(at),
        reason: reason.unwrap_or_default(),
    }))
}

impl CampaignRecord {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<CampaignRecord> {
        let g = q("reading campaign");
        let state: String = row.try_get(6).map_err(g)?;
        Ok(CampaignRecord {
            id: row.try_get(0).map_err(g)?,
            name: row.try_get(1).map_err(g)?,
            from: row.try_get(2).map_err(g)?,
            subject: row.try_get(3).map_err(g)?,
            text: row.try_get(4).map_err(g)?,
            html: row.try_get(5).map_err(g)?,
            state: CampaignState::parse(&state)?,
            created_at: Timestamp(row.try_get(7).map_err(g)?),
            started_at: row.try_get::<Option<i64>, _>(8).map_err(g)?.map(Timestamp),
            finished_at: row.try_get::<Option<i64>, _>(9).map_err(g)?.map(Timestamp),
            enqueued: row.try_get::<i64, _>(10).map_err(g)? != 0,
            pause: pause_at(row, 11)?,
        })
    }
}

/// The state of one queue row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SendState {
    /// Waiting (possibly for a retry time).
    Pending,
    /// In a worker's batch.
    Claimed,
    /// Accepted by the server.
    Sent,
    /// Refused with a 5xx during the dialogue.
    Bounced,
    /// Given up after 4xx answers, or unsendable.
    Failed,
    /// Not sent: the recipient stopped being mailable after the campaign was queued.
    Skipped,
    /// The whole message went out but the end of DATA got no answer (its timeout ran out,
    /// or the connection was lost after the final "."): it may have been delivered. Final:
    /// counted as an attempt, never sent again automatically. Stored as `sent` with
    /// `maybe_delivered = 1`, so it counts against rate limits like a sent message.
    #[serde(rename = "maybe_delivered")]
    MaybeDelivered,
}

impl SendState {
    /// The name (the SQL state, except `maybe_delivered`, which is stored as `sent`).
    pub fn as_str(self) -> &'static str {
        match self {
            SendState::Pending => "pending",
            SendState::Claimed => "claimed",
            SendState::Sent => "sent",
            SendState::Bounced => "bounced",
            SendState::Failed => "failed",
            SendState::Skipped => "skipped",
            SendState::MaybeDelivered => "maybe_delivered",
        }
    }

    /// The value of the `state` column.
    fn sql(self) -> &'static str {
        match self {
            SendState::MaybeDelivered => "sent",
            other => other.as_str(),
        }
    }

    /// From the `state` and `maybe_delivered` columns.
    fn parse(s: &str, maybe_delivered: bool) -> Result<SendState> {
        Ok(match s {
            "pending" => SendState::Pending,
            "claimed" => SendState::Claimed,
            "sent" if maybe_delivered => SendState::MaybeDelivered,
            "sent" => SendState::Sent,
            "bounced" => SendState::Bounced,
            "failed" => SendState::Failed,
            "skipped" => SendState::Skipped,
            _ => {
                return Err(Error::Corrupt {
                    what: "send state",
                    value: s.into(),
                });
            }
        })
    }
}

/// A claimed queue item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// The send id (signed into the VERP token).
    pub id: i64,
    /// The recipient.
    pub address: String,
    /// Attempts so far that got a 4xx.
    pub attempts: u32,
}

/// A stored send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SendRecord {
    /// The send id.
    pub id: i64,
    /// Its campaign.
    pub campaign_id: i64,
    /// The recipient.
    pub address: String,
    /// Where it stands.
    pub state: SendState,
    /// Attempts made.
    pub attempts: u32,
    /// The Message-ID it was sent with (without angle brackets).
    pub message_id: Option<String>,
    /// The VERP token it was sent with.
    pub verp_token: Option<String>,
    /// The last reply code.
    pub result_code: Option<u16>,
    /// The last reply text.
    pub result_text: Option<String>,
}

impl SendRecord {
    fn from_row(row: &sqlx::any::AnyRow) -> Result<SendRecord> {
        let g = q("reading send");
        let state: String = row.try_get(3).map_err(g)?;
        let maybe: i64 = row.try_get(9).map_err(g)?;
        Ok(SendRecord {
            id: row.try_get(0).map_err(g)?,
            campaign_id: row.try_get(1).map_err(g)?,
            address: row.try_get(2).map_err(g)?,
            state: SendState::parse(&state, maybe != 0)?,
            attempts: u32::try_from(row.try_get::<i64, _>(4).map_err(g)?).unwrap_or(0),
            message_id: row.try_get(5).map_err(g)?,
            verp_token: row.try_get(6).map_err(g)?,
            result_code: row
                .try_get::<Option<i64>, _>(7)
                .map_err(g)?
                .and_then(|c| u16::try_from(c).ok()),
            result_text: row.try_get(8).map_err(g)?,
        })
    }
}

/// The result of one send, written at the next checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendUpdate {
    /// The send id.
    pub id: i64,
    /// The new state (`pending` for a retry).
    pub state: SendState,
    /// Whether this attempt counts against `max_attempts`.
    pub counted: bool,
    /// For `pending`: not before this time.
    pub not_before: Option<Timestamp>,
    /// The Message-ID used.
    pub message_id: Option<String>,
    /// The VERP token used.
    pub verp_token: Option<String>,
    /// The reply code.
    pub code: Option<u16>,
    /// The reply text.
    pub text: Option<String>,
}

/// What is left of a campaign's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenSends {
    /// Rows waiting.
    pub pending: u64,
    /// Rows in a worker's batch.
    pub claimed: u64,
    /// The earliest time a pending row may be sent.
    pub next_due: Option<Timestamp>,
}

/// A campaign's counts, for `rebound campaigns`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignCounts {
    /// Campaign id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// State.
    pub state: CampaignState,
    /// When it was created.
    pub created_at: Timestamp,
    /// When sending started.
    pub started_at: Option<Timestamp>,
    /// When it was done.
    pub finished_at: Option<Timestamp>,
    /// Recipients queued.
    pub recipients: u64,
    /// Not sent yet (pending or in flight).
    pub queued: u64,
    /// Accepted by the server.
    pub sent: u64,
    /// Sent whole, but the end of DATA got no answer (timeout, connection lost): may have
    /// been delivered; not sent again automatically. Not among `sent`.
    pub maybe_delivered: u64,
    /// Refused during the dialogue or given up.
    pub failed: u64,
    /// Not sent: the recipient bounced, complained or unsubscribed after it was queued.
    pub skipped: u64,
    /// Recipients that bounced hard (SMTP-time or from the mailbox).
    pub hard_bounces: u64,
    /// Recipients that bounced soft only (delay warnings, full mailboxes, …), however many
    /// times.
    pub soft_bounces: u64,
    /// Recipients that complained.
    pub complaints: u64,
    /// `complaints` over the messages accepted (`sent` and `maybe_delivered`); 0 before
    /// any was.
    pub complaint_rate: f64,
    /// Complaints per destination domain, most first, each against the campaign's
    /// accepted sends to that domain.
    pub complaints_by_domain: Vec<DomainComplaints>,
    /// Paused by hand or by the complaint-rate guard (`[rules] max_complaint_rate`).
    pub pause: Option<CampaignPause>,
    /// Recipients whose message was refused for sender-side reasons (our IP on a
    /// blocklist, our content called spam, authentication, reputation): never counted
    /// against them, the operator's alarm. Also among `soft_bounces`.
    pub sender_refusals: u64,
    /// The same per destination domain (the recipient's), most first, each against the
    /// campaign's answered sends to that domain.
    pub sender_refusals_by_domain: Vec<DomainRefusals>,
    /// Destination domains whose sends are paused now (`[rules] pause_on_sender_blocks`).
    pub paused_domains: Vec<super::DomainPause>,
}

/// A campaign's complaints from one destination domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainComplaints {
    /// The destination domain.
    pub domain: String,
    /// Recipients at that domain who complained.
    pub complaints: u64,
    /// The campaign's accepted sends to that domain.
    pub sends: u64,
}

/// One campaign's complaint numbers for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComplaintGauge {
    /// Campaign id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Messages accepted.
    pub sent: u64,
    /// Recipients who complained.
    pub complaints: u64,
    /// Paused by the complaint-rate guard.
    pub paused: bool,
}

/// A campaign's sender-side refusals to one destination domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainRefusals {
    /// The destination domain.
    pub domain: String,
    /// Recipients at that domain whose message was refused for sender-side reasons.
    pub refusals: u64,
    /// The campaign's sends to that domain that got an answer (sent, bounced, failed).
    pub sends: u64,
}

/// Recipients per enqueue transaction.
pub const ENQUEUE_CHUNK: usize = 5_000;
/// The pause between two enqueue chunks, in which another writer can take the lock.
const ENQUEUE_GAP: std::time::Duration = std::time::Duration::from_millis(10);

/// What [`Store::reserve_rate`] reserves under.
#[derive(Debug, Clone, Copy)]
pub struct RateRequest<'a> {
    /// The smooth limits' rows (by spec).
    pub smooth: &'a [String],
    /// The rolling windows.
    pub windows: &'a [RateWindow],
    /// The most times the reservation will take (how much of each window it reads).
    pub batch: usize,
    /// The relay whose pause to read (`host:port`).
    pub relay: Option<&'a str>,
    /// Times reserved earlier that nobody used: out of every window.
    pub released: &'a [i64],
}

/// A rolling-window limit kept in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateWindow {
    /// The row name (the spec).
    pub name: String,
    /// At most this many in any window.
    pub limit: u32,
    /// How long a time stays in the window (µs).
    pub span_us: i64,
}

/// What a window holds, as a reservation sees it.
#[derive(Debug, Clone, Default)]
pub struct WindowView {
    /// Its latest time.
    pub newest: Option<i64>,
    /// `deciding[i]` is the `offset + i`-th newest time (0: the newest).
    pub offset: usize,
    /// Times newest first, from the `offset`-th newest up to the `limit`-th: the ones
    /// that decide when the next `batch` may go.
    pub deciding: Vec<i64>,
}

impl WindowView {
    /// The `i`-th newest time (0: the newest), if the window holds it and it was read.
    pub fn nth_newest(&self, i: usize) -> Option<i64> {
        i.checked_sub(self.offset)
            .and_then(|k| self.deciding.get(k))
            .copied()
    }
}

/// The shared rate state inside a reservation.
#[derive(Debug)]
pub struct RateView<'a> {
    /// The store's clock (µs since the Unix epoch) when the state was read.
    pub now: i64,
    /// Per smooth limit, its theoretical arrival time; the reservation advances them.
    pub tats: &'a mut [i64],
    /// Per rolling window, what it holds.
    pub windows: Vec<WindowView>,
    /// The relay's pause, if one is on: until (µs) and streak.
    pub pause: Option<(i64, u32)>,
}

fn unix_micros_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4))
        .unwrap_or(0)
}

/// A runner of a campaign (its `campaign_runners` row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runner {
    /// The campaign.
    pub campaign_id: i64,
    /// The runner: `host/pid/random`.
    pub owner: String,
    /// When it joined the campaign.
    pub started_at: Timestamp,
    /// Its last heartbeat.
    pub heartbeat_at: Timestamp,
    /// When its lease ends unless it beats again.
    pub expires_at: Timestamp,
}

impl std::fmt::Display for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ago = (Timestamp::now().0 - self.heartbeat_at.0).max(0);
        let left = (self.expires_at.0 - Timestamp::now().0).max(0);
        write!(
            f,
            "campaign {} is being sent by {} (since {}, last heartbeat {:.1} s ago, its lease expires in {:.1} s)",
            self.campaign_id,
            self.owner,
            self.started_at,
            ago as f64 / 1000.0,
            left as f64 / 1000.0
        )
    }
}

/// What [`Store::claim`] took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The rows to send, in id order.
    pub rows: Vec<Claimed>,
    /// Rows taken and marked `skipped` (their recipient is no longer mailable).
    pub skipped: u64,
    /// The highest id taken (sent or skipped): where the next claim goes on from.
    pub last_id: Option<i64>,
}

impl Error {
    /// Is this a unique constraint (e.g. a campaign name that is taken)?
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Error::Query { cause: sqlx::Error::Database(db), .. }
            if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
    }

    /// Is this the store being busy or out of reach for a moment (SQLite: another
    /// connection or process held the write lock past the busy timeout; PostgreSQL: a
    /// deadlock or serialization failure, or the connection to the server broke; either:
    /// every pooled connection was in use)? Waiting and trying again is the cure: the
    /// transaction was rolled back.
    pub fn is_busy(&self) -> bool {
        let Error::Query { cause, .. } = self else {
            return false;
        };
        match cause {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => true,
            sqlx::Error::Database(db) => {
                super::sqlite_busy(&**db)
                    // PostgreSQL's serialization_failure, deadlock_detected, and the
                    // connection exceptions of class 08 and admin shutdown of 57P.
                    || db.code().is_some_and(|c| {
                        matches!(&*c, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
                            || c.starts_with("08")
                    })
            }
            _ => false,
        }
    }
}

fn count(row: &sqlx::any::AnyRow, i: usize) -> Result<u64> {
    let n: i64 = row.try_get(i).map_err(q("reading counts"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

impl Store {
    /// The campaign of that name, if any.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn campaign_by_name(&self, name: &str) -> Result<Option<CampaignRecord>> {
        let row = sqlx::query(self.sql.SELECT_CAMPAIGN_BY_NAME)
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(q("SELECT_CAMPAIGN_BY_NAME"))?;
        row.as_ref().map(CampaignRecord::from_row).transpose()
    }

    /// The campaign with that id, if any.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn campaign(&self, id: i64) -> Result<Option<CampaignRecord>> {
        let row = sqlx::query(self.sql.SELECT_CAMPAIGN_BY_ID)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(q("SELECT_CAMPAIGN_BY_ID"))?;
        row.as_ref().map(CampaignRecord::from_row).transpose()
    }

    /// Creates a campaign and queues its recipients ([`Store::add_sends`]), then marks it
    /// `enqueued`. Recipients the store knows as bounced, complained or unsubscribed are
    /// left out, and so are duplicates (compared by [`address_key`]). Returns the campaign
    /// and how many recipients were queued.
    ///
    /// The recipients go in chunks of [`ENQUEUE_CHUNK`], one transaction each, so that a
    /// million of them never hold the write lock for longer than a chunk: if this fails
    /// half-way the campaign exists but is not `enqueued`, and queueing it again
    /// ([`crate::campaign::enqueue`]) adds the rest.
    ///
    /// # Errors
    /// [`Error::Query`] (also when the name is taken: nothing is written then).
    pub async fn create_campaign<I, S>(
        &self,
        new: &NewCampaign,
        recipients: I,
    ) -> Result<(CampaignRecord, u64)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let id: i64 = sqlx::query_scalar(self.sql.INSERT_CAMPAIGN)
            .bind(&new.name)
            .bind(&new.from)
            .bind(&new.subject)
            .bind(&new.text)
            .bind(&new.html)
            .bind(Timestamp::now().0)
            .fetch_one(self.pool())
            .await
            .map_err(q("INSERT_CAMPAIGN"))?;
        let queued = self.add_sends(id, recipients).await?;
        self.mark_enqueued(id).await?;
        let record = self.campaign(id).await?.ok_or(Error::Corrupt {
            what: "campaign",
            value: id.to_string(),
        })?;
        Ok((record, queued))
    }

    /// Queues recipients of an existing campaign, in chunks of [`ENQUEUE_CHUNK`] (one
    /// transaction each, with a short pause between them so that other writers get the
    /// lock). Recipients already queued or not mailable are left out, so this can be run
    /// again after a failure. Returns how many were added. A chunk that finds the store
    /// busy is retried.
    ///
    /// # Errors
    /// [`Error::Query`]; the chunks written before stay.
    pub async fn add_sends<I, S>(&self, campaign: i64, recipients: I) -> Result<u64>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut queued = 0u64;
        let mut chunk: Vec<(String, String, Option<String>)> = Vec::with_capacity(ENQUEUE_CHUNK);
        let mut first = true;
        let mut iter = recipients.into_iter().peekable();
        while iter.peek().is_some() {
            chunk.clear();
            for r in iter.by_ref() {
                let address = normalize_address(r.as_ref());
                if address.is_empty() {
                    continue;
                }
                let key = address_key(&address);
                let domain = super::domain_of(&address);
                chunk.push((address, key, domain));
                if chunk.len() >= ENQUEUE_CHUNK {
                    break;
                }
            }
            if chunk.is_empty() {
                break;
            }
            if !first {
                // Room for a mailbox pass (or a checkpoint) waiting for the write lock.
                tokio::time::sleep(ENQUEUE_GAP).await;
            }
            first = false;
            let json = serde_json::to_string(&chunk).map_err(|e| Error::Corrupt {
                what: "recipient chunk",
                value: e.to_string(),
            })?;
            let mut delay = std::time::Duration::from_millis(10);
            loop {
                let done = sqlx::query(self.sql.INSERT_SENDS)
                    .bind(campaign)
                    .bind(Timestamp::now().0)
                    .bind(&json)
                    .execute(self.pool())
                    .await
                    .map_err(q("INSERT_SENDS"));
                match done {
                    Ok(d) => {
                        queued += d.rows_affected();
                        break;
                    }
                    Err(e) if e.is_busy() => {
                        tracing::warn!("store busy while queueing recipients; retrying: {e}");
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(std::time::Duration::from_secs(1));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(queued)
    }

    /// Marks a campaign as completely queued.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn mark_enqueued(&self, campaign: i64) -> Result<()> {
        sqlx::query(self.sql.SET_ENQUEUED)
            .bind(campaign)
            .execute(self.pool())
            .await
            .map_err(q("SET_ENQUEUED"))?;
        Ok(())
    }

    /// Makes a campaign ready to be sent by its runner: claims whose lease has expired
    /// (a sender that died, or claims made before leases existed) go back to pending and
    /// the campaign is marked `sending`. Claims another runner still holds are left
    /// alone. Returns how many rows were reset (the batches that were in flight).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn resume_campaign(&self, id: i64) -> Result<u64> {
        let reset = self.reset_expired_claims(id).await?;
        self.set_campaign_state(id, CampaignState::Sending).await?;
        Ok(reset)
    }

    /// Claims of a campaign whose lease has expired go back to pending; returns how many.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn reset_expired_claims(&self, id: i64) -> Result<u64> {
        Ok(sqlx::query(self.sql.RESET_CLAIMED)
            .bind(id)
            .bind(Timestamp::now().0)
            .execute(self.pool())
            .await
            .map_err(q("RESET_CLAIMED"))?
            .rows_affected())
    }

    /// `owner` joins the runners of `campaign` for `lease` (again, if it had): first the
    /// runners whose lease expired are forgotten (they died; their claims go back to
    /// the queue as their leases expire, [`Store::resume_campaign`]).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn join_campaign(
        &self,
        campaign: i64,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<()> {
        let now = Timestamp::now().0;
        let pruned = sqlx::query(self.sql.PRUNE_RUNNERS)
            .bind(campaign)
            .bind(now)
            .execute(self.pool())
            .await
            .map_err(q("PRUNE_RUNNERS"))?
            .rows_affected();
        if pruned > 0 {
            tracing::info!(campaign, pruned, "forgot runners whose lease had expired");
        }
        sqlx::query(self.sql.JOIN_RUNNER)
            .bind(campaign)
            .bind(owner)
            .bind(now)
            .bind(now + millis(lease))
            .execute(self.pool())
            .await
            .map_err(q("JOIN_RUNNER"))?;
        Ok(())
    }

    /// Who runs a campaign now (runners whose lease expired included), the earliest
    /// first.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn runners(&self, campaign: i64) -> Result<Vec<Runner>> {
        let rows = sqlx::query(self.sql.SELECT_RUNNERS)
            .bind(campaign)
            .fetch_all(self.pool())
            .await
            .map_err(q("SELECT_RUNNERS"))?;
        rows.iter()
            .map(|r| {
                let g = q("reading runner");
                Ok(Runner {
                    campaign_id: campaign,
                    owner: r.try_get(0).map_err(g)?,
                    started_at: Timestamp(r.try_get(1).map_err(g)?),
                    heartbeat_at: Timestamp(r.try_get(2).map_err(g)?),
                    expires_at: Timestamp(r.try_get(3).map_err(g)?),
                })
            })
            .collect()
    }

    /// The runner's heartbeat: extends its lease on the campaign and the leases of its
    /// claims by `lease` from now. Returns false when `owner` is no longer a runner of
    /// the campaign (its lease expired and another runner forgot it: its claims may be
    /// another's now).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn heartbeat_runner(
        &self,
        campaign: i64,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<bool> {
        let now = Timestamp::now().0;
        let until = now + millis(lease);
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(q("beginning a transaction"))?;
        let held = sqlx::query(self.sql.HEARTBEAT_RUNNER)
            .bind(campaign)
            .bind(owner)
            .bind(now)
            .bind(until)
            .execute(&mut *tx)
            .await
            .map_err(q("HEARTBEAT_RUNNER"))?
            .rows_affected()
            > 0;
        if held {
            sqlx::query(self.sql.EXTEND_LEASES)
                .bind(campaign)
                .bind(owner)
                .bind(until)
                .execute(&mut *tx)
                .await
                .map_err(q("EXTEND_LEASES"))?;
        }
        tx.commit().await.map_err(q("committing a heartbeat"))?;
        Ok(held)
    }

    /// `owner` is done with the campaign.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn release_runner(&self, campaign: i64, owner: &str) -> Result<()> {
        sqlx::query(self.sql.RELEASE_RUNNER)
            .bind(campaign)
            .bind(owner)
            .execute(self.pool())
            .await
            .map_err(q("RELEASE_RUNNER"))?;
        Ok(())
    }

    /// Reserves send times under the rate limits every process on the store shares, in
    /// one write transaction (so the reservations of all processes are one sequence):
    /// reads the GCRA state of the smooth limits `req.smooth` (theoretical arrival times,
    /// µs since the Unix epoch; 0 for a limit never used), what the rolling windows
    /// `req.windows` hold (after deleting the times that have left them and the unused
    /// times `req.released`) and the pause of `req.relay`; lets `reserve` advance the
    /// state and pick the times, and writes both back. Returns what `reserve` returns.
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    pub async fn reserve_rate<R>(
        &self,
        req: &RateRequest<'_>,
        reserve: impl FnOnce(RateView<'_>) -> (R, Vec<i64>),
    ) -> Result<R> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(q("beginning a transaction"))?;
        // Every reservation of every process is one sequence (PostgreSQL: a lock).
        sqlx::query(self.sql.LOCK_RATES)
            .execute(&mut *tx)
            .await
            .map_err(q("LOCK_RATES"))?;
        // SQLite: a write first, so the transaction holds the write lock from here and
        // the reads below cannot go stale before the update.
        for name in req.smooth {
            sqlx::query(self.sql.INSERT_RATE)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(q("INSERT_RATE"))?;
        }
        let now = unix_micros_now();
        let mut windows = Vec::with_capacity(req.windows.len());
        for w in req.windows {
            sqlx::query(self.sql.PRUNE_WINDOW)
                .bind(&w.name)
                .bind(now - w.span_us)
                .execute(&mut *tx)
                .await
                .map_err(q("PRUNE_WINDOW"))?;
            for at in req.released {
                sqlx::query(self.sql.RELEASE_WINDOW)
                    .bind(&w.name)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("RELEASE_WINDOW"))?;
            }
            let newest: Option<i64> = sqlx::query_scalar(self.sql.NEWEST_IN_WINDOW)
                .bind(&w.name)
                .fetch_one(&mut *tx)
                .await
                .map_err(q("NEWEST_IN_WINDOW"))?;
            let limit = usize::try_from(w.limit).unwrap_or(usize::MAX);
            let offset = limit.saturating_sub(req.batch.max(1));
            let deciding: Vec<i64> = sqlx::query_scalar(self.sql.WINDOW_TIMES)
                .bind(&w.name)
                .bind(i64::try_from(limit - offset).unwrap_or(i64::MAX))
                .bind(i64::try_from(offset).unwrap_or(i64::MAX))
                .fetch_all(&mut *tx)
                .await
                .map_err(q("WINDOW_TIMES"))?;
            windows.push(WindowView {
                newest,
                offset,
                deciding,
            });
        }
        let mut tats = Vec::with_capacity(req.smooth.len());
        for name in req.smooth {
            let tat: i64 = sqlx::query_scalar(self.sql.SELECT_RATE)
                .bind(name)
                .fetch_one(&mut *tx)
                .await
                .map_err(q("SELECT_RATE"))?;
            tats.push(tat);
        }
        let pause = match req.relay {
            Some(relay) => sqlx::query(self.sql.SELECT_PAUSE)
                .bind(relay)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q("SELECT_PAUSE"))?
                .map(|row| -> Result<(i64, u32)> {
                    let g = q("reading a pause");
                    let until: i64 = row.try_get(0).map_err(g)?;
                    let streak: i64 = row.try_get(1).map_err(g)?;
                    Ok((until, u32::try_from(streak).unwrap_or(0)))
                })
                .transpose()?
                .filter(|(until, _)| *until > now),
            None => None,
        };
        let (out, times) = reserve(RateView {
            now,
            tats: &mut tats,
            windows,
            pause,
        });
        for (name, tat) in req.smooth.iter().zip(&tats) {
            sqlx::query(self.sql.UPDATE_RATE)
                .bind(name)
                .bind(tat)
                .execute(&mut *tx)
                .await
                .map_err(q("UPDATE_RATE"))?;
        }
        for w in req.windows {
            for at in &times {
                sqlx::query(self.sql.INSERT_WINDOW)
                    .bind(&w.name)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("INSERT_WINDOW"))?;
            }
        }
        tx.commit()
            .await
            .map_err(q("committing a rate reservation"))?;
        Ok(out)
    }

    /// Takes reserved times nobody used (`times`, µs) out of the rolling windows.
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    pub async fn release_rate_times(&self, windows: &[RateWindow], times: &[i64]) -> Result<()> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(q("beginning a transaction"))?;
        sqlx::query(self.sql.LOCK_RATES)
            .execute(&mut *tx)
            .await
            .map_err(q("LOCK_RATES"))?;
        for w in windows {
            for at in times {
                sqlx::query(self.sql.RELEASE_WINDOW)
                    .bind(&w.name)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(q("RELEASE_WINDOW"))?;
            }
        }
        tx.commit()
            .await
            .map_err(q("committing released send times"))?;
        Ok(())
    }

    /// The pause through `relay` still on (until, µs since the Unix epoch; streak).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn rate_pause(&self, relay: &str) -> Result<Option<(i64, u32)>> {
        let row = sqlx::query(self.sql.SELECT_PAUSE)
            .bind(relay)
            .fetch_optional(self.pool())
            .await
            .map_err(q("SELECT_PAUSE"))?;
        let Some(row) = row else { return Ok(None) };
        let g = q("reading a pause");
        let until: i64 = row.try_get(0).map_err(g)?;
        let streak: i64 = row.try_get(1).map_err(g)?;
        Ok((until > unix_micros_now()).then_some((until, u32::try_from(streak).unwrap_or(0))))
    }

    /// `relay` asked for a pause until `until` (µs since the Unix epoch), the `streak`-th
    /// in a row: every process sending through it pauses until then. A pause already on
    /// is only lengthened.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn record_rate_pause(&self, relay: &str, until: i64, streak: u32) -> Result<()> {
        sqlx::query(self.sql.RECORD_PAUSE)
            .bind(relay)
            .bind(until)
            .bind(i64::from(streak))
            .bind(unix_micros_now())
            .execute(self.pool())
            .await
            .map_err(q("RECORD_PAUSE"))?;
        Ok(())
    }

    /// Sets a campaign's state (and its start or finish time).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn set_campaign_state(&self, id: i64, state: CampaignState) -> Result<()> {
        sqlx::query(self.sql.SET_CAMPAIGN_STATE)
            .bind(id)
            .bind(state.as_str())
            .bind(Timestamp::now().0)
            .execute(self.pool())
            .await
            .map_err(q("SET_CAMPAIGN_STATE"))?;
        Ok(())
    }

    /// Claims up to `limit` due pending rows of a campaign, in queue order, for an
    /// anonymous owner with a one-minute lease (tests and tools; the queue uses
    /// [`Store::claim`]).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn claim_sends(&self, campaign: i64, limit: usize) -> Result<Vec<Claimed>> {
        let c = self
            .claim(
                campaign,
                "local",
                std::time::Duration::from_secs(60),
                0,
                limit,
            )
            .await?;
        Ok(c.rows)
    }

    /// Claims for `owner` (for `lease`) up to `limit` due pending rows of a campaign with
    /// an id above `after`, in id order, skipping paused destination domains. Of the rows
    /// taken, those whose recipient stopped being mailable are marked `skipped` in the
    /// same transaction (checked on these rows only) and not returned.
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is claimed then.
    pub async fn claim(
        &self,
        campaign: i64,
        owner: &str,
        lease: std::time::Duration,
        after: i64,
        limit: usize,
    ) -> Result<Claim> {
        let now = Timestamp::now().0;
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(q("beginning a transaction"))?;
        let rows = sqlx::query(self.sql.CLAIM_SENDS)
            .bind(campaign)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(now)
            .bind(owner)
            .bind(now + millis(lease))
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .map_err(q("CLAIM_SENDS"))?;
        let mut out = rows
            .iter()
            .map(|r| {
                let g = q("reading claimed send");
                Ok(Claimed {
                    id: r.try_get(0).map_err(g)?,
                    address: r.try_get(1).map_err(g)?,
                    attempts: u32::try_from(r.try_get::<i64, _>(2).map_err(g)?).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|c| c.id);
        let last_id = out.last().map(|c| c.id);
        let mut skipped = 0;
        if !out.is_empty() {
            let ids: Vec<i64> = out.iter().map(|c| c.id).collect();
            let json = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
            let gone: Vec<i64> = sqlx::query_scalar(self.sql.SKIP_CLAIMED_UNMAILABLE)
                .bind(json)
                .bind(now)
                .fetch_all(&mut *tx)
                .await
                .map_err(q("SKIP_CLAIMED_UNMAILABLE"))?;
            if !gone.is_empty() {
                skipped = gone.len() as u64;
                out.retain(|c| !gone.contains(&c.id));
            }
        }
        tx.commit().await.map_err(q("committing a claim"))?;
        Ok(Claim {
            rows: out,
            skipped,
            last_id,
        })
    }

    /// Writes a batch of results in one transaction: the checkpoint (whoever holds the
    /// rows; the queue uses [`Store::checkpoint_owned`]).
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    pub async fn checkpoint_sends(&self, updates: &[SendUpdate]) -> Result<()> {
        self.checkpoint(None, updates).await.map(|_| ())
    }

    /// Writes a batch of results of rows `owner` still holds, in one transaction.
    /// Returns how many were written: fewer than given when another runner took some
    /// over after `owner`'s lease expired (their results are dropped: the new holder
    /// sends them).
    ///
    /// # Errors
    /// [`Error::Query`]; nothing is written then.
    pub async fn checkpoint_owned(&self, owner: &str, updates: &[SendUpdate]) -> Result<u64> {
        self.checkpoint(Some(owner), updates).await
    }

    async fn checkpoint(&self, owner: Option<&str>, updates: &[SendUpdate]) -> Result<u64> {
        if updates.is_empty() {
            return Ok(0);
        }
        let now = Timestamp::now().0;
        // A write transaction from the start (SQLite: `BEGIN IMMEDIATE`): the rollup's
        // read of the sends comes before the update.
        let mut tx = self.begin().await?;
        let mut tally = super::rollup::Tally::new();
        let mut written = 0;
        // Well below SQLite's 32 766 parameters a statement.
        for chunk in updates.chunks(500) {
            // The sends this chunk makes accepted, for the dashboard's counters: read
            // (on PostgreSQL locked) before the update changes their state.
            let accepting: Vec<i64> = chunk
                .iter()
                .filter(|u| matches!(u.state, SendState::Sent | SendState::MaybeDelivered))
                .map(|u| u.id)
                .collect();
            let accepted = if accepting.is_empty() || !super::rollup::upkeep() {
                Vec::new()
            } else {
                let ids = serde_json::to_string(&accepting).unwrap_or_else(|_| "[]".into());
                let rows = sqlx::query(self.sql.ROLLUP_ACCEPTING)
                    .bind(ids)
                    .bind(owner)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(q("ROLLUP_ACCEPTING"))?;
                let g = q("reading accepted sends");
                rows.iter()
                    .map(|r| Ok((r.try_get(0).map_err(g)?, r.try_get(1).map_err(g)?)))
                    .collect::<Result<Vec<(i64, Option<String>)>>>()?
            };
            let sql = (self.sql.update_sends)(chunk.len());
            let mut update = sqlx::query(&sql).bind(now).bind(owner);
            for u in chunk {
                let sent_at =
                    matches!(u.state, SendState::Sent | SendState::MaybeDelivered).then_some(now);
                update = update
                    .bind(u.id)
                    .bind(u.state.sql())
                    .bind(i64::from(u.counted))
                    .bind(u.not_before.map_or(0, |t| t.0))
                    .bind(&u.message_id)
                    .bind(&u.verp_token)
                    .bind(u.code.map(i64::from))
                    .bind(&u.text)
                    .bind(sent_at)
                    .bind(i64::from(u.state == SendState::MaybeDelivered));
            }
            written += update
                .execute(&mut *tx)
                .await
                .map_err(q("UPDATE_SENDS"))?
                .rows_affected();
            tally.count_sends(Timestamp(now), &accepted);
        }
        super::rollup::flush_in(self.sql, &mut tx, &mut tally).await?;
        tx.commit().await.map_err(q("committing a checkpoint"))?;
        Ok(written)
    }

    /// Marks the pending rows of a campaign whose recipient is no longer mailable as
    /// `skipped`; returns how many.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn skip_unmailable(&self, campaign: i64) -> Result<u64> {
        Ok(sqlx::query(self.sql.SKIP_UNMAILABLE)
            .bind(campaign)
            .bind(Timestamp::now().0)
            .execute(self.pool())
            .await
            .map_err(q("SKIP_UNMAILABLE"))?
            .rows_affected())
    }

    /// When the last message of any campaign was accepted (as of its checkpoint).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn last_sent_at(&self) -> Result<Option<Timestamp>> {
        let t: Option<i64> = sqlx::query_scalar(self.sql.LAST_SENT_AT)
            .fetch_one(self.pool())
            .await
            .map_err(q("LAST_SENT_AT"))?;
        Ok(t.map(Timestamp))
    }

    /// When messages of any campaign were accepted since `since` (checkpoint times),
    /// oldest first: what a rolling rate-limit window needs to know after a restart.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn sent_since(&self, since: Timestamp) -> Result<Vec<Timestamp>> {
        let rows: Vec<i64> = sqlx::query_scalar(self.sql.SENT_SINCE)
            .bind(since.0)
            .fetch_all(self.pool())
            .await
            .map_err(q("SENT_SINCE"))?;
        Ok(rows.into_iter().map(Timestamp).collect())
    }

    /// What is left of a campaign's queue.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn open_sends(&self, campaign: i64) -> Result<OpenSends> {
        self.open_sends_excluding(campaign, None).await
    }

    /// What is left of a campaign's queue, not counting the claims of `owner` (a runner
    /// asking whether anyone else still holds rows).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn open_sends_excluding(
        &self,
        campaign: i64,
        owner: impl Into<Option<&str>>,
    ) -> Result<OpenSends> {
        let row = sqlx::query(self.sql.OPEN_SENDS)
            .bind(campaign)
            .bind(Timestamp::now().0)
            .bind(owner.into())
            .fetch_one(self.pool())
            .await
            .map_err(q("OPEN_SENDS"))?;
        Ok(OpenSends {
            pending: count(&row, 0)?,
            claimed: count(&row, 1)?,
            next_due: row
                .try_get::<Option<i64>, _>(2)
                .map_err(q("OPEN_SENDS"))?
                .map(Timestamp),
        })
    }

    /// One send by id (what a VERP token points at).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn campaign_send(&self, id: i64) -> Result<Option<SendRecord>> {
        let row = sqlx::query(self.sql.SELECT_SEND)
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(q("SELECT_SEND"))?;
        row.as_ref().map(SendRecord::from_row).transpose()
    }

    /// Every send of a campaign, in queue order.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn campaign_sends(&self, campaign: i64) -> Result<Vec<SendRecord>> {
        let rows = sqlx::query(self.sql.SELECT_SENDS)
            .bind(campaign)
            .fetch_all(self.pool())
            .await
            .map_err(q("SELECT_SENDS"))?;
        rows.iter().map(SendRecord::from_row).collect()
    }

    /// Counts per campaign: queue states and bounce events from every source.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn campaign_counts(&self) -> Result<Vec<CampaignCounts>> {
        let mut domains: std::collections::BTreeMap<i64, Vec<DomainRefusals>> =
            std::collections::BTreeMap::new();
        for r in sqlx::query(self.sql.CAMPAIGN_DOMAIN_COUNTS)
            .fetch_all(self.pool())
            .await
            .map_err(q("CAMPAIGN_DOMAIN_COUNTS"))?
        {
            let g = q("reading domain counts");
            let id: i64 = r.try_get(0).map_err(g)?;
            domains.entry(id).or_default().push(DomainRefusals {
                domain: r.try_get(1).map_err(g)?,
                refusals: count(&r, 2)?,
                sends: count(&r, 3)?,
            });
        }
        let mut complaints: std::collections::BTreeMap<i64, Vec<DomainComplaints>> =
            std::collections::BTreeMap::new();
        for r in sqlx::query(self.sql.CAMPAIGN_DOMAIN_COMPLAINTS)
            .fetch_all(self.pool())
            .await
            .map_err(q("CAMPAIGN_DOMAIN_COMPLAINTS"))?
        {
            let g = q("reading domain complaints");
            let id: i64 = r.try_get(0).map_err(g)?;
            complaints.entry(id).or_default().push(DomainComplaints {
                domain: r.try_get(1).map_err(g)?,
                complaints: count(&r, 2)?,
                sends: count(&r, 3)?,
            });
        }
        let mut paused: std::collections::BTreeMap<i64, Vec<super::DomainPause>> =
            std::collections::BTreeMap::new();
        for p in self.domain_pauses().await? {
            paused.entry(p.campaign_id).or_default().push(p);
        }
        let rows = sqlx::query(self.sql.CAMPAIGN_COUNTS)
            .fetch_all(self.pool())
            .await
            .map_err(q("CAMPAIGN_COUNTS"))?;
        rows.iter()
            .map(|r| {
                let g = q("reading campaign counts");
                let state: String = r.try_get(2).map_err(g)?;
                let (sent, maybe_delivered, complaints) =
                    (count(r, 8)?, count(r, 15)?, count(r, 13)?);
                let accepted = sent + maybe_delivered;
                Ok(CampaignCounts {
                    id: r.try_get(0).map_err(g)?,
                    name: r.try_get(1).map_err(g)?,
                    state: CampaignState::parse(&state)?,
                    created_at: Timestamp(r.try_get(3).map_err(g)?),
                    started_at: r.try_get::<Option<i64>, _>(4).map_err(g)?.map(Timestamp),
                    finished_at: r.try_get::<Option<i64>, _>(5).map_err(g)?.map(Timestamp),
                    recipients: count(r, 6)?,
                    queued: count(r, 7)?,
                    sent,
                    failed: count(r, 9)?,
                    skipped: count(r, 10)?,
                    hard_bounces: count(r, 11)?,
                    soft_bounces: count(r, 12)?,
                    complaints,
                    complaint_rate: if accepted == 0 {
                        0.0
                    } else {
                        complaints as f64 / accepted as f64
                    },
                    complaints_by_domain: Vec::new(),
                    pause: pause_at(r, 16)?,
                    sender_refusals: count(r, 14)?,
                    maybe_delivered,
                    sender_refusals_by_domain: Vec::new(),
                    paused_domains: Vec::new(),
                })
            })
            .collect::<Result<Vec<CampaignCounts>>>()
            .map(|mut list| {
                for c in &mut list {
                    c.sender_refusals_by_domain = domains.remove(&c.id).unwrap_or_default();
                    c.paused_domains = paused.remove(&c.id).unwrap_or_default();
                    c.complaints_by_domain = complaints.remove(&c.id).unwrap_or_default();
                }
                list
            })
    }

    /// Pauses in force now (`[rules] pause_on_sender_blocks`), by campaign and domain.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn domain_pauses(&self) -> Result<Vec<super::DomainPause>> {
        let rows = sqlx::query(self.sql.SELECT_PAUSES)
            .bind(Timestamp::now().0)
            .fetch_all(self.pool())
            .await
            .map_err(q("SELECT_PAUSES"))?;
        rows.iter()
            .map(|r| {
                let g = q("reading pauses");
                Ok(super::DomainPause {
                    campaign_id: r.try_get(0).map_err(g)?,
                    domain: r.try_get(1).map_err(g)?,
                    paused_at: Timestamp(r.try_get(2).map_err(g)?),
                    until: Timestamp(r.try_get(3).map_err(g)?),
                    refusals: count(r, 4)?,
                    sends: count(r, 5)?,
                })
            })
            .collect()
    }

    /// Pauses a campaign now, by hand (`by`: `cli`, `api` or `ui`): its sends are not
    /// claimed until it is resumed ([`Store::resume_campaign_pause`], or `rebound send`
    /// on it), a running `rebound send` stops as for the complaint-rate guard's pause.
    /// `false` when it was paused already (the earlier pause and its reason stay).
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn pause_campaign(&self, campaign: i64, by: &str) -> Result<bool> {
        let done = sqlx::query(self.sql.PAUSE_CAMPAIGN)
            .bind(campaign)
            .bind(Timestamp::now().0)
            .bind(format!("paused by an operator ({by})"))
            .execute(self.pool())
            .await
            .map_err(q("PAUSE_CAMPAIGN"))?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends the complaint-rate pause of a campaign now; the guard then counts from this
    /// moment (complaints about messages accepted before it do not count). Returns the
    /// reason it was paused for, `None` when it was not paused.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn resume_campaign_pause(&self, campaign: i64) -> Result<Option<String>> {
        let reason: Option<Option<String>> = sqlx::query_scalar(self.sql.RESUME_CAMPAIGN)
            .bind(campaign)
            .bind(Timestamp::now().0)
            .fetch_optional(self.pool())
            .await
            .map_err(q("RESUME_CAMPAIGN"))?;
        Ok(reason.map(Option::unwrap_or_default))
    }

    /// Sends and complaints of the campaigns not done, or done within `recent`, for the
    /// gauges of `/metrics`.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn complaint_gauges(
        &self,
        recent: std::time::Duration,
    ) -> Result<Vec<ComplaintGauge>> {
        let since = Timestamp::now().0 - millis(recent);
        let rows = sqlx::query(self.sql.CAMPAIGN_COMPLAINT_GAUGES)
            .bind(since)
            .fetch_all(self.pool())
            .await
            .map_err(q("CAMPAIGN_COMPLAINT_GAUGES"))?;
        rows.iter()
            .map(|r| {
                let g = q("reading complaint gauges");
                Ok(ComplaintGauge {
                    id: r.try_get(0).map_err(g)?,
                    name: r.try_get(1).map_err(g)?,
                    sent: count(r, 2)?,
                    complaints: count(r, 3)?,
                    paused: r.try_get::<Option<i64>, _>(4).map_err(g)?.is_some(),
                })
            })
            .collect()
    }

    /// Ends a campaign's pauses now: every paused domain's, or only `domain`'s. Returns
    /// the domains resumed. A new pause then needs refusals recorded after this moment.
    ///
    /// # Errors
    /// [`Error::Query`].
    pub async fn resume_paused(&self, campaign: i64, domain: Option<&str>) -> Result<Vec<String>> {
        let now = Timestamp::now();
        let domain = domain.map(str::to_ascii_lowercase);
        let before: Vec<String> = self
            .domain_pauses()
            .await?
            .into_iter()
            .filter(|p| p.campaign_id == campaign && domain.as_ref().is_none_or(|d| *d == p.domain))
            .map(|p| p.domain)
            .collect();
        sqlx::query(self.sql.RESUME_PAUSES)
            .bind(campaign)
            .bind(domain.as_deref())
            .bind(now.0)
            .execute(self.pool())
            .await
            .map_err(q("RESUME_PAUSES"))?;
        Ok(before)
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::config::RulesConfig;
    use crate::store::EventContext;
    use crate::verdict::{BounceClass, Reason, Verdict};

    fn new(name: &str) -> NewCampaign {
        NewCampaign {
            name: name.into(),
            from: "News <news@example.org>".into(),
            subject: "Hello".into(),
            text: Some("hi".into()),
            html: None,
        }
    }

    on_both_backends!(campaigns_prepare_every_query);
    async fn campaigns_prepare_every_query(s: Store) {
        s.check_queries().await.unwrap();
    }

    on_both_backends!(campaign_skips_bounced_and_duplicate_recipients);
    async fn campaign_skips_bounced_and_duplicate_recipients(s: Store) {
        record_user_unknown(&s, "gone@example.com").await;
        let (c, queued) = s
            .create_campaign(
                &new("n1"),
                [
                    "a@example.com",
                    "A@Example.com",
                    "gone@example.com",
                    "b@example.com",
                ],
            )
            .await
            .unwrap();
        assert_eq!(queued, 2);
        assert_eq!(c.state, CampaignState::Queued);
        assert!(
            s.create_campaign(&new("n1"), ["x@example.com"])
                .await
                .is_err()
        );
        assert_eq!(s.campaign_by_name("n1").await.unwrap().unwrap().id, c.id);
    }

    on_both_backends!(only_expired_claims_return_to_pending_on_resume);
    async fn only_expired_claims_return_to_pending_on_resume(s: Store) {
        use std::time::Duration;
        let addrs: Vec<String> = (0..25).map(|i| format!("r{i}@example.com")).collect();
        let (c, _) = s.create_campaign(&new("n2"), &addrs).await.unwrap();
        // A runner that died (its lease is over at once) and one that still runs.
        let first = s
            .claim(c.id, "dead", Duration::ZERO, 0, 10)
            .await
            .unwrap()
            .rows;
        assert_eq!(first.len(), 10);
        assert_eq!(first[0].address, "r0@example.com");
        let second = s
            .claim(c.id, "alive", Duration::from_secs(60), 0, 10)
            .await
            .unwrap();
        assert_eq!(second.rows[0].address, "r10@example.com");
        assert_eq!(second.last_id, Some(second.rows[9].id));
        let done: Vec<SendUpdate> = first[..5]
            .iter()
            .map(|x| SendUpdate {
                id: x.id,
                state: SendState::Sent,
                counted: true,
                not_before: None,
                message_id: Some(format!("m{}", x.id)),
                verp_token: None,
                code: Some(250),
                text: Some("ok".into()),
            })
            .collect();
        assert_eq!(s.checkpoint_owned("dead", &done).await.unwrap(), 5);
        // The first sender dies here; a new one resumes: only its claims go back.
        assert_eq!(s.resume_campaign(c.id).await.unwrap(), 5);
        let open = s.open_sends(c.id).await.unwrap();
        assert_eq!((open.pending, open.claimed), (10, 10));
        assert_eq!(
            s.open_sends_excluding(c.id, "alive").await.unwrap().claimed,
            0
        );
        // The dead one's late results are not written over rows it no longer holds.
        assert_eq!(s.checkpoint_owned("dead", &done[..1]).await.unwrap(), 0);
        let again = s.claim_sends(c.id, 100).await.unwrap();
        assert_eq!(again.len(), 10);
        assert_eq!(again[0].address, "r5@example.com");
        let counts = s.campaign_counts().await.unwrap();
        assert_eq!(
            (counts[0].sent, counts[0].queued, counts[0].recipients),
            (5, 20, 25)
        );
        let send = s.campaign_send(done[0].id).await.unwrap().unwrap();
        assert_eq!(
            (send.state, send.message_id.as_deref()),
            (SendState::Sent, Some("m1"))
        );
        // A cursor above the last claimed row finds nothing more.
        let rest = s
            .claim(c.id, "alive", Duration::from_secs(60), i64::MAX - 1, 10)
            .await
            .unwrap();
        assert!(rest.rows.is_empty() && rest.last_id.is_none());
    }

    on_both_backends!(runners_share_a_campaign_and_the_dead_are_forgotten);
    async fn runners_share_a_campaign_and_the_dead_are_forgotten(s: Store) {
        use std::time::Duration;
        let (c, _) = s
            .create_campaign(&new("lock"), ["a@example.com"])
            .await
            .unwrap();
        let lease = Duration::from_millis(300);
        s.join_campaign(c.id, "one", lease).await.unwrap();
        // Again by the same owner: still one row, its start kept.
        let first = s.runners(c.id).await.unwrap();
        s.join_campaign(c.id, "one", lease).await.unwrap();
        s.join_campaign(c.id, "two", Duration::from_secs(60))
            .await
            .unwrap();
        let both = s.runners(c.id).await.unwrap();
        let owners: Vec<&str> = both.iter().map(|r| r.owner.as_str()).collect();
        assert_eq!(owners, ["one", "two"]);
        assert_eq!(both[0].started_at, first[0].started_at);
        assert!(
            both[1].to_string().contains("being sent by two"),
            "{}",
            both[1]
        );
        assert!(s.heartbeat_runner(c.id, "one", lease).await.unwrap());
        tokio::time::sleep(Duration::from_millis(350)).await;
        // "one" stopped beating: the next runner to join forgets it, and "one" learns it
        // at its next beat.
        s.join_campaign(c.id, "three", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(!s.heartbeat_runner(c.id, "one", lease).await.unwrap());
        let owners: Vec<String> = s
            .runners(c.id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.owner)
            .collect();
        assert_eq!(owners, ["two", "three"]);
        s.release_runner(c.id, "two").await.unwrap();
        s.release_runner(c.id, "three").await.unwrap();
        assert!(s.runners(c.id).await.unwrap().is_empty());
    }

    on_both_backends!(enqueue_goes_in_chunks_and_skips_unmailable_on_claim);
    async fn enqueue_goes_in_chunks_and_skips_unmailable_on_claim(s: Store) {
        let n = ENQUEUE_CHUNK * 2 + 7;
        let mut addrs: Vec<String> = (0..n).map(|i| format!("u{i}@example.com")).collect();
        addrs.push("U0@Example.com".into());
        let (c, queued) = s.create_campaign(&new("big"), &addrs).await.unwrap();
        assert_eq!(queued, n as u64);
        assert!(c.enqueued);
        // Adding the same again (a resumed enqueue) adds nothing.
        assert_eq!(s.add_sends(c.id, &addrs).await.unwrap(), 0);
        // A recipient that bounced after it was queued is skipped when claimed.
        record_user_unknown(&s, "u1@example.com").await;
        let claim = s
            .claim(c.id, "o", std::time::Duration::from_secs(60), 0, 3)
            .await
            .unwrap();
        let got: Vec<&str> = claim.rows.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(got, ["u0@example.com", "u2@example.com"]);
        assert_eq!(claim.skipped, 1);
        let sends = s.campaign_sends(c.id).await.unwrap();
        assert_eq!(sends[1].state, SendState::Skipped);
        assert_eq!(
            sends[1].result_text.as_deref(),
            Some("recipient is bounced")
        );
    }

    on_both_backends!(rate_state_is_one_row_per_limit);
    async fn rate_state_is_one_row_per_limit(s: Store) {
        let names = vec!["50/s".to_owned(), "10/200ms".to_owned()];
        let req = |smooth| RateRequest {
            smooth,
            windows: &[],
            batch: 4,
            relay: None,
            released: &[],
        };
        let got = s
            .reserve_rate(&req(&names), |v| {
                assert_eq!(v.tats, [0, 0]);
                v.tats[0] = 7;
                v.tats[1] = 9;
                ("ok", Vec::new())
            })
            .await
            .unwrap();
        assert_eq!(got, "ok");
        s.reserve_rate(&req(&names[1..]), |v| {
            assert_eq!(v.tats, [9]);
            ((), Vec::new())
        })
        .await
        .unwrap();
    }

    on_both_backends!(rate_window_keeps_reserved_times_until_they_leave_it);
    async fn rate_window_keeps_reserved_times_until_they_leave_it(s: Store) {
        let windows = [RateWindow {
            name: "3/10s,window".into(),
            limit: 3,
            span_us: 10_000_000,
        }];
        let req = |released: &'static [i64]| RateRequest {
            smooth: &[],
            windows: &windows,
            batch: 2,
            relay: Some("127.0.0.1:25"),
            released,
        };
        let now = unix_micros_now();
        let old = now - 20_000_000;
        s.reserve_rate(&req(&[]), |v| {
            assert_eq!(v.windows[0].newest, None);
            ((), vec![old, now - 3, now - 2, now - 1])
        })
        .await
        .unwrap();
        // The old one left the window; the 2nd and 3rd newest decide the next two.
        let released: &'static [i64] = Box::leak(Box::new([now - 1]));
        s.reserve_rate(&req(released), |v| {
            let w = &v.windows[0];
            assert_eq!(w.newest, Some(now - 2), "released");
            assert_eq!(w.offset, 1);
            assert_eq!(
                (w.nth_newest(0), w.nth_newest(1), w.nth_newest(2)),
                (None, Some(now - 3), None)
            );
            assert_eq!(v.pause, None);
            ((), Vec::new())
        })
        .await
        .unwrap();
        s.record_rate_pause("127.0.0.1:25", now + 5_000_000, 1)
            .await
            .unwrap();
        // A shorter pause does not shorten it; the streak of a pause still on is kept.
        s.record_rate_pause("127.0.0.1:25", now + 1_000_000, 0)
            .await
            .unwrap();
        assert_eq!(
            s.rate_pause("127.0.0.1:25").await.unwrap(),
            Some((now + 5_000_000, 1))
        );
        assert_eq!(s.rate_pause("127.0.0.1:26").await.unwrap(), None);
        s.reserve_rate(&req(&[]), |v| {
            assert_eq!(v.pause, Some((now + 5_000_000, 1)));
            ((), Vec::new())
        })
        .await
        .unwrap();
    }

    on_both_backends!(campaign_counts_recipients_not_events);
    async fn campaign_counts_recipients_not_events(s: Store) {
        let (c, _) = s
            .create_campaign(&new("n3"), ["slow@example.com", "gone@example.com"])
            .await
            .unwrap();
        let bounce = |address: &str, class, action: &str| match class {
            BounceClass::Hard => {
                Verdict::one_bounce(address, class, "5.1.1", Reason::UserUnknown, action)
            }
            BounceClass::Soft => {
                Verdict::one_bounce(address, class, "4.4.1", Reason::NetworkError, action)
            }
        };
        let ctx = EventContext {
            campaign_id: Some(c.id),
            ..EventContext::smtp()
        };
        let rules = RulesConfig::default();
        // slow@: two delay warnings, then it fails for good (soft); gone@: a delay, then
        // user unknown (hard).
        for (address, class, action) in [
            ("slow@example.com", BounceClass::Soft, "delayed"),
            ("slow@example.com", BounceClass::Soft, "delayed"),
            ("slow@example.com", BounceClass::Soft, "failed"),
            ("gone@example.com", BounceClass::Soft, "delayed"),
            ("gone@example.com", BounceClass::Hard, "failed"),
        ] {
            let v = bounce(address, class, action);
            let _ = s.record_verdict(&ctx, &v, &rules).await.unwrap();
        }
        let counts = s.campaign_counts().await.unwrap();
        assert_eq!((counts[0].hard_bounces, counts[0].soft_bounces), (1, 1));
    }

    /// Queues `addrs`, claims the first `sent` of them and checkpoints those as sent.
    async fn sent_campaign(s: &Store, name: &str, addrs: &[String], sent: usize) -> i64 {
        let (c, _) = s.create_campaign(&new(name), addrs).await.unwrap();
        send_next(s, c.id, sent).await;
        c.id
    }

    /// Claims the next `n` rows of campaign `id` and checkpoints them as sent, each with
    /// Message-ID `m{send id}@example.org`.
    async fn send_next(s: &Store, id: i64, n: usize) {
        let claimed = s.claim_sends(id, n).await.unwrap();
        let done: Vec<SendUpdate> = claimed
            .iter()
            .map(|x| SendUpdate {
                id: x.id,
                state: SendState::Sent,
                counted: true,
                not_before: None,
                message_id: Some(format!("m{}@example.org", x.id)),
                verp_token: None,
                code: Some(250),
                text: Some("ok".into()),
            })
            .collect();
        s.checkpoint_sends(&done).await.unwrap();
    }

    /// A complaint (feedback report) about the message with `message_id` of `campaign`.
    async fn complain(
        s: &Store,
        campaign: i64,
        address: &str,
        message_id: Option<String>,
    ) -> crate::store::RecordOutcome {
        let complaint = Verdict {
            kind: crate::verdict::MessageKind::Complaint,
            recipients: vec![crate::verdict::RecipientVerdict::new(
                address.into(),
                Reason::Feedback,
            )],
            decided_by: crate::verdict::BUILTIN.into(),
        };
        let ctx = EventContext {
            campaign_id: Some(campaign),
            original_message_id: message_id,
            ..EventContext::smtp()
        };
        s.record_verdict(&ctx, &complaint, &RulesConfig::default())
            .await
            .unwrap()
    }

    on_both_backends!(a_campaign_paused_by_hand_is_not_claimed_until_resumed);
    async fn a_campaign_paused_by_hand_is_not_claimed_until_resumed(s: Store) {
        let addrs: Vec<String> = (0..20).map(|i| format!("p{i}@example.net")).collect();
        let id = sent_campaign(&s, "by hand", &addrs, 5).await;
        assert!(s.pause_campaign(id, "cli").await.unwrap());
        assert!(
            !s.pause_campaign(id, "api").await.unwrap(),
            "paused already"
        );
        let pause = s.campaign(id).await.unwrap().unwrap().pause.unwrap();
        assert_eq!(pause.reason, "paused by an operator (cli)");
        assert!(s.claim_sends(id, 10).await.unwrap().is_empty());
        assert_eq!(
            s.resume_campaign_pause(id).await.unwrap().as_deref(),
            Some("paused by an operator (cli)")
        );
        assert_eq!(s.claim_sends(id, 10).await.unwrap().len(), 10);
    }

    on_both_backends!(complaint_rate_pauses_the_campaign_until_resumed);
    async fn complaint_rate_pauses_the_campaign_until_resumed(s: Store) {
        let addrs: Vec<String> = (0..2200).map(|i| format!("r{i}@example.net")).collect();
        let id = sent_campaign(&s, "complaints", &addrs, 1000).await;
        let sends = s.campaign_sends(id).await.unwrap();
        let mid = |i: usize| Some(format!("m{}@example.org", sends[i].id));
        // 0.3 % of 1000 is the limit, not past it: flagged only.
        for (i, address) in addrs.iter().enumerate().take(3) {
            let out = complain(&s, id, address, mid(i)).await;
            assert!(out.paused_campaigns.is_empty(), "complaint {i}");
            assert_eq!(out.complaints, [Some("example.net".to_owned())]);
        }
        assert!(s.campaign(id).await.unwrap().unwrap().pause.is_none());
        let out = complain(&s, id, &addrs[3], mid(3)).await;
        assert_eq!(out.paused_campaigns.len(), 1, "4 of 1000 is past 0.3 %");
        let p = &out.paused_campaigns[0];
        assert_eq!((p.campaign_id, p.complaints, p.sends), (id, 4, 1000));
        assert!(p.reason.contains("0.40 %"), "{}", p.reason);
        let stored = s.campaign(id).await.unwrap().unwrap().pause.unwrap();
        assert_eq!(stored.reason, p.reason);
        // A paused campaign's rows are not claimed; another complaint pauses nothing more.
        assert!(s.claim_sends(id, 10).await.unwrap().is_empty());
        assert!(
            complain(&s, id, &addrs[4], mid(4))
                .await
                .paused_campaigns
                .is_empty()
        );
        let counts = s.campaign_counts().await.unwrap();
        let c = counts.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.complaints, 5);
        assert!(
            (c.complaint_rate - 0.005).abs() < 1e-9,
            "{}",
            c.complaint_rate
        );
        assert_eq!(c.pause.as_ref().map(|p| &p.reason), Some(&p.reason));
        assert_eq!(
            c.complaints_by_domain,
            [DomainComplaints {
                domain: "example.net".into(),
                complaints: 5,
                sends: 1000
            }]
        );
        let gauges = s
            .complaint_gauges(std::time::Duration::from_secs(60))
            .await
            .unwrap();
        let g = gauges.iter().find(|g| g.id == id).unwrap();
        assert_eq!((g.sent, g.complaints, g.paused), (1000, 5, true));

        // Resumed: the guard counts from now. Complaints about messages accepted before
        // do not count; those about later ones (or about no known message) do.
        assert_eq!(
            s.resume_campaign_pause(id).await.unwrap(),
            Some(p.reason.clone())
        );
        assert_eq!(s.resume_campaign_pause(id).await.unwrap(), None);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        send_next(&s, id, 1100).await;
        let sends = s.campaign_sends(id).await.unwrap();
        let mid = |i: usize| Some(format!("m{}@example.org", sends[i].id));
        for (i, address) in addrs.iter().enumerate().take(15).skip(5) {
            let out = complain(&s, id, address, mid(i)).await;
            assert!(
                out.paused_campaigns.is_empty(),
                "complaint {i} is about an earlier message"
            );
        }
        for (i, address) in addrs.iter().enumerate().take(1003).skip(1000) {
            let out = complain(&s, id, address, mid(i)).await;
            assert!(out.paused_campaigns.is_empty(), "3 of 1100 is under 0.3 %");
        }
        let out = complain(&s, id, &addrs[1003], None).await;
        assert_eq!(out.paused_campaigns.len(), 1, "4 of 1100 is past 0.3 %");
        assert_eq!(
            (
                out.paused_campaigns[0].complaints,
                out.paused_campaigns[0].sends
            ),
            (4, 1100)
        );
    }

    /// Records a hard "user unknown" bounce for `address`, as the SMTP sender would.
    async fn record_user_unknown(s: &Store, address: &str) {
        let hard = Verdict::one_bounce(
            address,
            BounceClass::Hard,
            "5.1.1",
            Reason::UserUnknown,
            "failed",
        );
        let _ = s
            .record_verdict(&EventContext::smtp(), &hard, &RulesConfig::default())
            .await
            .unwrap();
    }

    fn spam_refusal(address: &str) -> Verdict {
        Verdict::one_bounce(
            address,
            BounceClass::Soft,
            "5.7.1",
            Reason::SpamDetected,
            "failed",
        )
    }

    fn pause_rules() -> RulesConfig {
        RulesConfig {
            pause_on_sender_blocks: Some(crate::config::PauseRule {
                threshold: 0.2,
                min_sends: 50,
                window: std::time::Duration::from_secs(3600),
            }),
            ..RulesConfig::default()
        }
    }

    #[tokio::test]
    async fn sender_refusals_pause_a_domain_until_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let s = Store::open(&url).await.unwrap();
        let mut addrs: Vec<String> = (0..50).map(|i| format!("n{i}@example.net")).collect();
        addrs.extend((0..5).map(|i| format!("o{i}@other.org")));
        addrs.extend((0..10).map(|i| format!("p{i}@example.net")));
        addrs.extend((0..2).map(|i| format!("q{i}@other.org")));
        let id = sent_campaign(&s, "pause", &addrs, 55).await;
        let rules = pause_rules();
        let refuse = |i: usize| EventContext {
            campaign_id: Some(id),
            recipient: Some(format!("n{i}@example.net")),
            original_message_id: Some(format!("n{i}")),
            ..EventContext::smtp()
        };
        for i in 0..9 {
            let out = s
                .record_verdict(&refuse(i), &spam_refusal("x@example.net"), &rules)
                .await
                .unwrap();
            assert!(out.paused.is_empty(), "{i}: 18 % is below 20 %");
            assert!(out.changes.is_empty());
        }
        let out = s
            .record_verdict(&refuse(9), &spam_refusal("x@example.net"), &rules)
            .await
            .unwrap();
        assert_eq!(out.paused.len(), 1);
        assert_eq!(
            (
                out.paused[0].domain.as_str(),
                out.paused[0].refusals,
                out.paused[0].sends
            ),
            ("example.net", 10, 50)
        );
        // The claim skips the paused domain; the other goes on.
        let claimed = s.claim_sends(id, 100).await.unwrap();
        let got: Vec<&str> = claimed.iter().map(|c| c.address.as_str()).collect();
        assert_eq!(got, ["q0@other.org", "q1@other.org"]);
        let open = s.open_sends(id).await.unwrap();
        assert_eq!(open.pending, 10);
        assert!(open.next_due.unwrap().0 > Timestamp::now().0 + 3_000_000);
        let counts = s.campaign_counts().await.unwrap();
        let c = counts.iter().find(|c| c.id == id).unwrap();
        assert_eq!(c.sender_refusals, 10);
        assert_eq!(
            c.sender_refusals_by_domain,
            vec![DomainRefusals {
                domain: "example.net".into(),
                refusals: 10,
                sends: 50
            }]
        );
        assert_eq!(c.paused_domains.len(), 1);
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(json["sender_refusals"], 10);
        assert_eq!(json["paused_domains"][0]["domain"], "example.net");
        // Nobody was blamed for it.
        assert!(
            s.recipients(Some(crate::store::RecipientState::Bounced))
                .await
                .unwrap()
                .is_empty()
        );
        // Resumed by hand: claimed again; one more refusal is no new evidence enough.
        assert_eq!(
            s.resume_paused(id, Some("Example.NET")).await.unwrap(),
            ["example.net"]
        );
        assert!(s.resume_paused(id, None).await.unwrap().is_empty());
        let out = s
            .record_verdict(&refuse(10), &spam_refusal("x@example.net"), &rules)
            .await
            .unwrap();
        assert!(out.paused.is_empty());
        assert_eq!(s.claim_sends(id, 100).await.unwrap().len(), 10);
    }

    #[tokio::test]
    async fn domain_pause_ends_by_itself_after_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let s = Store::open(&url).await.unwrap();
        let mut addrs: Vec<String> = (0..50).map(|i| format!("n{i}@example.net")).collect();
        addrs.push("late@example.net".into());
        let id = sent_campaign(&s, "expiring", &addrs, 50).await;
        let rules = pause_rules();
        // Refusals recorded as of two hours ago: the pause they cause ended an hour ago.
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        let mut paused = 0;
        for i in 0..20 {
            let ctx = EventContext {
                campaign_id: Some(id),
                recipient: Some(format!("n{i}@example.net")),
                original_message_id: Some(format!("n{i}")),
                at: Some(two_hours_ago),
                ..EventContext::smtp()
            };
            let out = s
                .record_verdict(&ctx, &spam_refusal("x@example.net"), &rules)
                .await
                .unwrap();
            paused += out.paused.len();
        }
        assert_eq!(paused, 1);
        assert!(s.domain_pauses().await.unwrap().is_empty());
        let claimed = s.claim_sends(id, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].address, "late@example.net");
    }

    on_both_backends!(pause_is_off_by_default);
    async fn pause_is_off_by_default(s: Store) {
        let addrs: Vec<String> = (0..60).map(|i| format!("n{i}@example.net")).collect();
        let id = sent_campaign(&s, "off", &addrs, 50).await;
        for i in 0..50 {
            let ctx = EventContext {
                campaign_id: Some(id),
                recipient: Some(format!("n{i}@example.net")),
                ..EventContext::smtp()
            };
            let out = s
                .record_verdict(
                    &ctx,
                    &spam_refusal("x@example.net"),
                    &RulesConfig::default(),
                )
                .await
                .unwrap();
            assert!(out.paused.is_empty());
        }
        assert_eq!(s.claim_sends(id, 100).await.unwrap().len(), 10);
    }
}
