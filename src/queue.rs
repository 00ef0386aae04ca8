//! The send queue: the stage between a queued campaign and the SMTP sender.
//!
//! A coordinator ([`Queue::run`]) first joins the campaign's runners: any number of
//! processes, on any number of hosts sharing the store, send one campaign together
//! ([`Store::join_campaign`]: a row with the runner's name and an expiry that a heartbeat
//! every third of [`QueueOptions::lease`] renews; runners whose lease expired, which
//! died, are forgotten). The runner then resets the claims whose lease has expired, and
//! starts `workers` workers. Each worker claims a batch of up to `max_items_per_batch`
//! due rows (in id order from a cursor shared by this runner's workers; the rows are
//! owned by this runner and leased like its row; another runner's claims are never
//! taken while their lease runs), and for each
//! one renders the message, waits for the shared [`RateLimiter`], sends it and hands the
//! result to the checkpoint writer. The writer is one task that writes the results every
//! worker has handed over in one transaction (a group commit: the store's sync, one per
//! transaction, is shared by all of them): as soon as a worker waits for one of them,
//! when 500 are waiting, or when the oldest has waited 20 ms. A worker never has more than
//! `send_batch_size` results unwritten (it waits for the writer when it gets that far
//! ahead), and waits for its results to be written before any long wait on the limiter (a
//! throttling pause, a full quota), so a long wait never leaves results unsaved. Killed at
//! any moment, a campaign therefore resumes with nothing skipped and at most
//! `send_batch_size` results per worker sent again; stopped ([`Queue::stop_flag`],
//! SIGTERM), even during a limiter wait, it saves its results and ends within a moment.
//!
//! A worker claims up to `max_items_per_batch` rows at a time, fewer under a slow rate
//! limit (about a second of its share of the rate), so a claimed row waits at most about
//! a second before it is sent and its recipient's suppression check, done at the claim,
//! is that fresh.
//!
//! A store that is busy (another process holding the write lock past the busy timeout)
//! is waited for: claims, checkpoints and heartbeats are retried with a growing pause
//! (up to 2 s), never a reason to end a run.
//!
//! What an answer does (decided only through the [`smtp::Error`] predicates):
//!
//! | answer | effect |
//! |---|---|
//! | 250 | `sent` |
//! | no answer to the end of DATA (its own `data_timeout`, or the connection lost after the final ".") | `maybe_delivered`: counted, final, never sent again automatically |
//! | throttling (421, 454, a rate-limit 4xx, any 4xx to MAIL, a sender-address 4xx such as `450 4.1.8`, a lost connection) | every worker pauses ([`RateLimiter::throttled`]); the row goes back to the queue, not counted against the recipient; when nothing but throttling came for `max_throttled_time`, the run stops with the last answer (resumable) |
//! | other 4xx at RCPT/DATA | retried after `retry_delay` × 2^(attempt−1); after `max_attempts` the row is `failed` and a soft bounce is recorded |
//! | 5xx at RCPT/DATA | `bounced`; a bounce event is recorded via [`Store::record_verdict`] (source `smtp`), classified by the same rules as a bounce mail |
//! | TLS failure, AUTH or sender refused | the run stops with an error (the campaign stays resumable) |

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::campaign::Renderer;
use crate::config::{RulesConfig, SmtpConfig};
use crate::ratelimit::RateLimiter;
use crate::smtp::{self, Envelope, Mailer};
use crate::store::campaigns::{CampaignState, Claimed, SendState, SendUpdate};
use crate::store::{self, EventContext, Store, Timestamp};
use crate::verdict::{BounceClass, MessageKind, Verdict};
use crate::verp::Signer;

/// Errors that stop a run. The campaign stays resumable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The relay refused us in a way retrying cannot fix (TLS, AUTH, sender refused).
    #[error("sending stopped: {0}")]
    Smtp(smtp::Error),
    /// The relay could not be reached this many times in a row.
    #[error("sending stopped: the relay failed {count} times in a row, last: {last}")]
    Unreachable {
        /// Failures in a row.
        count: u32,
        /// The last one.
        last: smtp::Error,
    },
    /// The relay answered every message with throttling (or a sender-side 4xx) for
    /// longer than `max_throttled_time`, accepting none in between: not a rate limit
    /// that passes, but something the operator must look at.
    #[error(
        "sending stopped: the relay throttled or deferred every message for {}, last answer: {}",
        humantime::format_duration(*.lasted),
        .last.diagnostic()
    )]
    Throttled {
        /// How long it went on (rounded to the second).
        lasted: Duration,
        /// The last answer.
        last: smtp::Error,
    },
    /// The run was asked to stop.
    #[error("sending stopped on request")]
    Stopped,
    /// The campaign was paused (by hand, or by the complaint-rate guard: `[rules]
    /// max_complaint_rate`): none of its sends is claimed until it is resumed (`rebound
    /// send` on it, `rebound campaigns resume`).
    #[error("campaign {campaign} paused: {reason}; `rebound send` resumes it")]
    Paused {
        /// The campaign.
        campaign: i64,
        /// Why.
        reason: String,
    },
    /// This runner's lease on the campaign expired (it could not beat in time) and
    /// another runner forgot it, so its claims may be another's now: it stopped.
    #[error(
        "campaign {campaign}: this runner's lease expired and another runner took its place; stopped"
    )]
    TakenOver {
        /// The campaign.
        campaign: i64,
    },
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// How the queue works.
#[derive(Debug, Clone)]
pub struct QueueOptions {
    /// Concurrent workers (default 4).
    pub workers: usize,
    /// Rows a worker claims at once, at most (default 50); under a rate limit, about one
    /// second of the worker's share of it.
    pub max_items_per_batch: usize,
    /// Results a worker may have unwritten at most (default 5): what a killed run can send
    /// twice, per worker.
    pub send_batch_size: usize,
    /// Attempts for a 4xx before it is a soft bounce (default 5).
    pub max_attempts: u32,
    /// First retry delay after a 4xx (default 1m), doubled per attempt.
    pub retry_delay: Duration,
    /// Network failures in a row after which the run stops (default 10).
    pub max_connection_failures: u32,
    /// The run stops when every answer has been throttling for this long, with no message
    /// accepted in between (default 30m).
    pub max_throttled_time: Duration,
    /// The recipient rules for recorded bounces.
    pub rules: RulesConfig,
    /// The relay's name, recorded as remote MTA of SMTP-time bounces.
    pub relay: String,
    /// How long a runner's lease on a campaign and its claims last without a heartbeat
    /// (default 60 s; the heartbeat comes every third of it). Another runner puts the
    /// claims of a runner whose lease expired back in the queue.
    pub lease: Duration,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            workers: 4,
            max_items_per_batch: 50,
            send_batch_size: 5,
            max_attempts: 5,
            retry_delay: Duration::from_secs(60),
            max_connection_failures: 10,
            max_throttled_time: Duration::from_secs(1800),
            rules: RulesConfig::default(),
            relay: String::new(),
            lease: DEFAULT_LEASE,
        }
    }
}

impl QueueOptions {
    /// Options from the `[smtp]` and `[rules]` sections.
    pub fn from_config(smtp: &SmtpConfig, rules: &RulesConfig) -> QueueOptions {
        QueueOptions {
            workers: smtp.workers.max(1),
            max_items_per_batch: smtp.max_items_per_batch.max(1),
            send_batch_size: smtp.send_batch_size.max(1),
            max_attempts: smtp.max_attempts.max(1),
            retry_delay: smtp.retry_delay,
            max_connection_failures: 10,
            max_throttled_time: smtp.max_throttled_time,
            rules: rules.clone(),
            relay: smtp.host.clone(),
            lease: DEFAULT_LEASE,
        }
    }
}

/// A limiter wait at least this long is waited out before the send (results saved
/// first, a stop noticed); shorter ones are the limiter's own precise wait.
const LONG_WAIT: Duration = Duration::from_millis(100);

/// The default [`QueueOptions::lease`].
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// Runs a store call until it does not fail with [`store::Error::is_busy`], pausing
/// 10 ms, doubling up to 2 s, between tries.
async fn retry_busy<T, F, Fut>(what: &'static str, mut f: F) -> store::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = store::Result<T>>,
{
    let mut delay = Duration::from_millis(10);
    let mut tries = 0u32;
    loop {
        match f().await {
            Err(e) if e.is_busy() => {
                tries += 1;
                if tries == 1 || tries.is_multiple_of(10) {
                    tracing::warn!(what, tries, "the store is busy; waiting: {e}");
                }
                crate::metrics::inc(crate::metrics::SENDS, &[("result", "store_busy")]);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

/// Live counters of a run, for the progress display.
#[derive(Debug)]
pub struct Progress {
    total: AtomicU64,
    done_before: AtomicU64,
    sent: AtomicU64,
    bounced: AtomicU64,
    failed: AtomicU64,
    deferred: AtomicU64,
    throttled: AtomicU64,
    skipped: AtomicU64,
    maybe_delivered: AtomicU64,
    started: Instant,
    recent: Mutex<VecDeque<Instant>>,
}

/// A snapshot of [`Progress`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSnapshot {
    /// Recipients in the campaign.
    pub total: u64,
    /// Finished before this run started.
    pub done_before: u64,
    /// Accepted in this run.
    pub sent: u64,
    /// Refused with 5xx in this run.
    pub bounced: u64,
    /// Given up after 4xx (or unsendable) in this run.
    pub failed: u64,
    /// 4xx answers that will be retried.
    pub deferred: u64,
    /// Throttling answers.
    pub throttled: u64,
    /// Not sent because the recipient stopped being mailable after it was queued.
    pub skipped: u64,
    /// Sent whole without an answer to the end of DATA: may have been delivered, not sent
    /// again.
    pub maybe_delivered: u64,
    /// Not finished yet.
    pub remaining: u64,
    /// Accepted per second over the last 5 seconds.
    pub rate: f64,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Estimated time left at the current rate.
    pub eta: Option<Duration>,
}

/// Send outcomes other than "sent" that [`Progress`] counts.
#[derive(Debug, Clone, Copy)]
enum Counted {
    Bounced,
    Failed,
    Deferred,
    Throttled,
    MaybeDelivered,
}

const RATE_WINDOW: Duration = Duration::from_secs(5);

impl Progress {
    /// Empty counters; the clock starts now.
    pub fn new() -> Progress {
        Progress {
            total: AtomicU64::new(0),
            done_before: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            bounced: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            deferred: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            maybe_delivered: AtomicU64::new(0),
            started: Instant::now(),
            recent: Mutex::new(VecDeque::new()),
        }
    }

    /// Counts one outcome here and in the process-wide metrics.
    fn count(&self, outcome: Counted) {
        let (counter, label) = match outcome {
            Counted::Bounced => (&self.bounced, "bounced"),
            Counted::Failed => (&self.failed, "failed"),
            Counted::Deferred => (&self.deferred, "deferred"),
            Counted::Throttled => (&self.throttled, "throttled"),
            Counted::MaybeDelivered => (&self.maybe_delivered, "maybe_delivered"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::inc(crate::metrics::SENDS, &[("result", label)]);
    }

    fn record_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        crate::metrics::inc(crate::metrics::SENDS, &[("result", "sent")]);
        let now = Instant::now();
        if let Ok(mut r) = self.recent.lock() {
            r.push_back(now);
            while r.front().is_some_and(|t| now - *t > RATE_WINDOW) {
                r.pop_front();
            }
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> ProgressSnapshot {
        let now = Instant::now();
        let elapsed = now - self.started;
        let recent = self
            .recent
            .lock()
            .map(|r| r.iter().filter(|t| now - **t <= RATE_WINDOW).count())
            .unwrap_or(0);
        let window = elapsed.min(RATE_WINDOW).as_secs_f64().max(0.001);
        let rate = recent as f64 / window;
        let total = self.total.load(Ordering::Relaxed);
        let done_before = self.done_before.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        let bounced = self.bounced.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let skipped = self.skipped.load(Ordering::Relaxed);
        let maybe_delivered = self.maybe_delivered.load(Ordering::Relaxed);
        let remaining =
            total.saturating_sub(done_before + sent + bounced + failed + skipped + maybe_delivered);
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / rate));
        ProgressSnapshot {
            total,
            done_before,
            sent,
            bounced,
            failed,
            deferred: self.deferred.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            skipped,
            maybe_delivered,
            remaining,
            rate,
            elapsed,
            eta,
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// What a finished run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The campaign.
    pub campaign_id: i64,
    /// Rows a previous sender left in flight, put back in the queue.
    pub resumed_in_flight: u64,
    /// The final counters.
    pub progress: ProgressSnapshot,
    /// Every recipient has a final result; the campaign is `done`.
    pub finished: bool,
}

/// The coordinator: runs one campaign with a pool of workers.
pub struct Queue<M> {
    store: Store,
    mailer: Arc<M>,
    limiter: Arc<RateLimiter>,
    signer: Arc<Signer>,
    options: QueueOptions,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    owner: String,
}

struct Shared<M> {
    store: Store,
    mailer: Arc<M>,
    limiter: Arc<RateLimiter>,
    signer: Arc<Signer>,
    options: QueueOptions,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
    renderer: Renderer,
    failure: Mutex<Option<Error>>,
    network_failures: AtomicU32,
    /// Since when every answer has been throttling (`None` after an accepted message).
    throttled_since: Mutex<Option<Instant>>,
    /// This run's own stop (a failure, a lost lease); `stop` is the caller's.
    halt: Arc<AtomicBool>,
    owner: String,
    /// The highest id claimed so far: the next claim goes on above it.
    cursor: std::sync::atomic::AtomicI64,
    /// Results on their way to the store.
    checkpoints: Checkpoints,
}

/// Results handed over by the workers and not yet written, numbered in the order they
/// came: the writer task takes them in one go, writes them in one transaction, and then
/// publishes the number of the last one written. It takes them when a worker waits for
/// one of them, when [`GROUP`] are waiting, or when the oldest has waited [`GROUP_DELAY`]:
/// a transaction (and its sync) as soon as any result came cost more than the sending
/// itself at a million recipients.
struct Checkpoints {
    /// How long a result waits for the writer when nobody waits for it ([`GROUP_DELAY`]).
    delay: Duration,
    waiting: Mutex<Waiting>,
    /// Wakes the writer.
    handed: tokio::sync::Notify,
    /// The number of the last result written (`u64::MAX` once the writer has given up:
    /// the run is failing, nobody waits for it any longer).
    written: tokio::sync::watch::Sender<u64>,
}

/// Results that make the writer write at once.
const GROUP: usize = 500;
/// The longest a result waits for the writer when nobody waits for it.
const GROUP_DELAY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct Waiting {
    results: Vec<SendUpdate>,
    /// When the oldest of `results` was handed over.
    oldest: Option<Instant>,
    /// Results handed over in all: the number of the last one.
    count: u64,
    /// The highest result number a worker waits for.
    wanted: u64,
    /// No more results will come: the writer ends once it has written these.
    closed: bool,
}

impl Checkpoints {
    fn new(delay: Duration) -> Checkpoints {
        Checkpoints {
            delay,
            waiting: Mutex::new(Waiting::default()),
            handed: tokio::sync::Notify::new(),
            written: tokio::sync::watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands one result over; returns its number.
    fn hand_over(&self, result: SendUpdate) -> u64 {
        let (n, wake) = {
            let mut w = self.lock();
            w.results.push(result);
            w.oldest.get_or_insert_with(Instant::now);
            w.count += 1;
            // The writer needs waking for the first (its delay starts) and at a group.
            (w.count, w.results.len() == 1 || w.results.len() >= GROUP)
        };
        if wake {
            self.handed.notify_one();
        }
        n
    }

    /// Returns once result number `n` (and every one before it) is written, or the
    /// writer has given up.
    async fn written(&self, n: u64) {
        let mut rx = self.written.subscribe();
        if *rx.borrow() >= n {
            return;
        }
        {
            let mut w = self.lock();
            w.wanted = w.wanted.max(n);
        }
        self.handed.notify_one();
        let _ = rx.wait_for(|w| *w >= n).await;
    }

    /// Returns once every result handed over so far is written (or the writer gave up).
    async fn all_written(&self) {
        let n = self.lock().count;
        self.written(n).await;
    }

    fn close(&self) {
        self.lock().closed = true;
        self.handed.notify_one();
    }

    /// What is to be written now, with the number of the last one; `None` once closed
    /// and empty.
    async fn take(&self) -> Option<(Vec<SendUpdate>, u64)> {
        loop {
            let delay = {
                let mut w = self.lock();
                if w.results.is_empty() {
                    if w.closed {
                        return None;
                    }
                    None
                } else {
                    let waited = w.oldest.map_or(self.delay, |t| t.elapsed());
                    let someone_waits = w.wanted > *self.written.borrow();
                    if w.closed || someone_waits || w.results.len() >= GROUP || waited >= self.delay
                    {
                        w.oldest = None;
                        return Some((std::mem::take(&mut w.results), w.count));
                    }
                    Some(self.delay - waited)
                }
            };
            match delay {
                None => self.handed.notified().await,
                Some(delay) => {
                    let _ = tokio::time::timeout(delay, self.handed.notified()).await;
                }
            }
        }
    }
}

impl<M: Mailer + 'static> Queue<M> {
    /// A queue sending through `mailer` under `limiter`, signing with `signer`.
    pub fn new(
        store: Store,
        mailer: Arc<M>,
        limiter: Arc<RateLimiter>,
        signer: Arc<Signer>,
        options: QueueOptions,
    ) -> Queue<M> {
        Queue {
            store,
            mailer,
            limiter,
            signer,
            options,
            progress: Arc::new(Progress::new()),
            stop: Arc::new(AtomicBool::new(false)),
            owner: store::leases::owner_name(),
        }
    }

    /// Sets [`QueueOptions::lease`].
    pub fn set_lease(&mut self, lease: Duration) {
        self.options.lease = lease.max(Duration::from_millis(300));
    }

    /// This runner's name in the store (`host/pid/random`): the owner of its claims and
    /// of its row among the campaign's runners.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The live counters.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Setting this flag stops the run after the messages in flight; their batches are
    /// checkpointed and unsent rows go back to the queue.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Sends the campaign of `renderer` until every recipient has a final result (or the
    /// run is stopped).
    ///
    /// # Errors
    /// [`Error`] when a worker met something retrying cannot fix; checkpoints written
    /// before that stay, so running again resumes.
    #[tracing::instrument(name = "rebound.queue.run", skip_all, fields(campaign = renderer.campaign().id))]
    pub async fn run(&self, renderer: Renderer) -> Result<Summary> {
        let campaign_id = renderer.campaign().id;
        let (store, owner, lease) = (&self.store, self.owner.as_str(), self.options.lease);
        retry_busy("JOIN_RUNNER", || {
            store.join_campaign(campaign_id, owner, lease)
        })
        .await?;
        let halt = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let heartbeat = {
            let (store, owner) = (self.store.clone(), self.owner.clone());
            let (halt, lost) = (halt.clone(), lost.clone());
            tokio::spawn(async move {
                let every = (lease / 3).max(Duration::from_millis(50));
                loop {
                    tokio::time::sleep(every).await;
                    let held = retry_busy("HEARTBEAT_RUNNER", || {
                        store.heartbeat_runner(campaign_id, &owner, lease)
                    })
                    .await;
                    match held {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(
                                campaign = campaign_id,
                                "this runner's lease on the campaign expired; stopping"
                            );
                            lost.store(true, Ordering::SeqCst);
                            halt.store(true, Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!("campaign heartbeat failed: {e}"),
                    }
                }
            })
        };
        let result = self.run_joined(renderer, halt).await;
        heartbeat.abort();
        // Send times reserved in the store's quotas and not used go back to the others.
        self.limiter.release_unused().await;
        if lost.load(Ordering::SeqCst) {
            return Err(Error::TakenOver {
                campaign: campaign_id,
            });
        }
        if let Err(e) = retry_busy("RELEASE_RUNNER", || {
            store.release_runner(campaign_id, owner)
        })
        .await
        {
            tracing::warn!(
                "leaving the campaign's runners failed (its lease expires by itself): {e}"
            );
        }
        result
    }

    async fn run_joined(&self, renderer: Renderer, halt: Arc<AtomicBool>) -> Result<Summary> {
        let campaign_id = renderer.campaign().id;
        let store = &self.store;
        let resumed = retry_busy("RESET_CLAIMED", || store.resume_campaign(campaign_id)).await?;
        if resumed > 0 {
            tracing::info!(resumed, "put rows whose lease expired back in the queue");
        }
        // The limits hold across restarts too: rolling windows (quotas) learn what earlier
        // runs sent within them, and (unless the store keeps the smooth limits) the first
        // message keeps the spacing of the smooth limits from the last one a previous run
        // (of any campaign) committed.
        if let Some(window) = self.limiter.longest_window()
            && !self.limiter.is_seeded()
        {
            let since = Timestamp(
                Timestamp::now().0 - i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2),
            );
            let sent = retry_busy("SENT_SINCE", || store.sent_since(since)).await?;
            self.limiter
                .seed(sent.into_iter().map(Timestamp::to_system_time));
        }
        if !self.limiter.is_shared()
            && let (Some(last), Some(gap)) = (
                retry_busy("LAST_SENT_AT", || store.last_sent_at()).await?,
                self.limiter.max_interval(),
            )
        {
            let since =
                Duration::from_millis(u64::try_from(Timestamp::now().0 - last.0).unwrap_or(0));
            if since < gap {
                tokio::time::sleep(gap - since).await;
            }
        }
        let sends = retry_busy("CAMPAIGN_COUNTS", || store.campaign_counts()).await?;
        let counts = sends.iter().find(|c| c.id == campaign_id);
        let total = counts.map_or(0, |c| c.recipients);
        let open = counts.map_or(0, |c| c.queued);
        self.progress.total.store(total, Ordering::Relaxed);
        self.progress
            .done_before
            .store(total - open.min(total), Ordering::Relaxed);

        let workers = self.options.workers.max(1);
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            mailer: self.mailer.clone(),
            limiter: self.limiter.clone(),
            signer: self.signer.clone(),
            options: self.options.clone(),
            progress: self.progress.clone(),
            stop: self.stop.clone(),
            renderer,
            failure: Mutex::new(None),
            network_failures: AtomicU32::new(0),
            throttled_since: Mutex::new(None),
            halt,
            owner: self.owner.clone(),
            cursor: std::sync::atomic::AtomicI64::new(0),
            checkpoints: Checkpoints::new(GROUP_DELAY),
        });
        let writer = {
            let s = shared.clone();
            tokio::spawn(async move { s.write_checkpoints().await })
        };
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..workers {
            let s = shared.clone();
            tasks.spawn(async move { s.worker(n).await });
        }
        while let Some(r) = tasks.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a send worker panicked");
                shared.halt.store(true, Ordering::SeqCst);
            }
        }
        shared.checkpoints.close();
        if let Err(e) = writer.await {
            tracing::error!(error = %e, "the checkpoint writer panicked");
            shared.halt.store(true, Ordering::SeqCst);
        }
        if let Some(e) = shared.failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        let owner = self.owner.as_str();
        let open = retry_busy("OPEN_SENDS", || {
            store.open_sends_excluding(campaign_id, owner)
        })
        .await?;
        // A campaign still being queued (by another process) is not done yet.
        let enqueued = retry_busy("SELECT_CAMPAIGN_BY_ID", || store.campaign(campaign_id))
            .await?
            .is_none_or(|c| c.enqueued);
        let finished = open.pending == 0 && open.claimed == 0 && enqueued;
        if finished {
            retry_busy("SET_CAMPAIGN_STATE", || {
                store.set_campaign_state(campaign_id, CampaignState::Done)
            })
            .await?;
        } else if shared.stopped() {
            return Err(Error::Stopped);
        }
        Ok(Summary {
            campaign_id,
            resumed_in_flight: resumed,
            progress: self.progress.snapshot(),
            finished,
        })
    }
}

/// What became of one claimed row.
enum Outcome {
    Done(SendUpdate),
    /// Stop the run after checkpointing (the row goes back to the queue).
    Stop(SendUpdate, Error),
}

impl<M: Mailer + 'static> Shared<M> {
    fn fail(&self, e: Error) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(e);
        }
        self.halt.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.halt.load(Ordering::SeqCst)
    }

    /// Returns once the run is stopped (polled: the caller's flag is a plain bool).
    async fn until_stopped(&self) {
        while !self.stopped() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn worker(&self, n: usize) {
        if let Err(e) = self.work(n).await {
            self.fail(e);
        }
    }

    async fn work(&self, n: usize) -> Result<()> {
        let campaign = self.renderer.campaign().id;
        let (store, owner) = (&self.store, self.owner.as_str());
        let lease = self.options.lease;
        let limit = claim_size(
            self.options.max_items_per_batch,
            self.limiter.sustained_per_second(),
            self.options.workers,
        );
        // This worker's results not yet known to be written, by number.
        let mut unwritten = VecDeque::new();
        while !self.stopped() {
            let after = self.cursor.load(Ordering::SeqCst);
            let claim = retry_busy("CLAIM_SENDS", || {
                store.claim(campaign, owner, lease, after, limit)
            })
            .await?;
            self.progress
                .skipped
                .fetch_add(claim.skipped, Ordering::Relaxed);
            if let Some(last) = claim.last_id {
                self.cursor.fetch_max(last, Ordering::SeqCst);
            }
            if !claim.rows.is_empty() {
                self.send_batch(claim.rows, &mut unwritten).await?;
                continue;
            }
            if claim.last_id.is_some() {
                continue; // all of them were skipped
            }
            if after > 0 {
                // The end of the queue: once more from the start, for rows that came due
                // again (retries) or were reset.
                let _ = self
                    .cursor
                    .compare_exchange(after, 0, Ordering::SeqCst, Ordering::SeqCst);
                continue;
            }
            // What is left is judged from the store: every result handed over so far (a
            // throttled row goes back to the queue with its result) must be in it first.
            self.checkpoints.all_written().await;
            unwritten.clear();
            // Rows whose recipient bounced or complained meanwhile are never claimed.
            let skipped = retry_busy("SKIP_UNMAILABLE", || store.skip_unmailable(campaign)).await?;
            self.progress.skipped.fetch_add(skipped, Ordering::Relaxed);
            // A paused campaign's rows are not claimed: the run ends.
            if let Some(pause) = retry_busy("SELECT_CAMPAIGN_BY_ID", || store.campaign(campaign))
                .await?
                .and_then(|c| c.pause)
            {
                return Err(Error::Paused {
                    campaign,
                    reason: pause.reason,
                });
            }
            let open =
                retry_busy("OPEN_SENDS", || store.open_sends_excluding(campaign, owner)).await?;
            let wait = match open.next_due.filter(|_| open.pending > 0) {
                Some(due) => {
                    Duration::from_millis(u64::try_from(due.0 - Timestamp::now().0).unwrap_or(0))
                }
                None if open.claimed > 0 => {
                    // Claims of a runner that died, whose lease had not expired when this
                    // run started: wait for them.
                    retry_busy("RESET_CLAIMED", || store.reset_expired_claims(campaign)).await?;
                    Duration::from_millis(250)
                }
                None => {
                    tracing::debug!(worker = n, "nothing left to claim");
                    return Ok(());
                }
            };
            tokio::select! {
                () = tokio::time::sleep(
                    wait.clamp(Duration::from_millis(20), Duration::from_millis(250)),
                ) => {}
                () = self.until_stopped() => {}
            }
        }
        Ok(())
    }

    /// The checkpoint writer: writes what the workers handed over, all of it in one
    /// transaction (retrying while the store is busy), until the run is over. A store
    /// failure stops the run; what was not written goes back to the queue when the
    /// claims' lease expires.
    async fn write_checkpoints(&self) {
        let (store, owner) = (&self.store, self.owner.as_str());
        while let Some((results, last)) = self.checkpoints.take().await {
            match retry_busy("UPDATE_SENDS", || store.checkpoint_owned(owner, &results)).await {
                Ok(written) => {
                    if written < results.len() as u64 {
                        tracing::warn!(
                            dropped = results.len() as u64 - written,
                            "results of rows another runner took over were not written"
                        );
                    }
                    self.checkpoints.written.send_replace(last);
                }
                Err(e) => {
                    self.checkpoints.written.send_replace(u64::MAX);
                    self.fail(e.into());
                    return;
                }
            }
        }
    }

    /// Hands a result to the writer; waits until fewer than `send_batch_size` of this
    /// worker's results are unwritten (with the one it sends next, at most that many are
    /// unsaved when the process is killed).
    async fn save(&self, result: SendUpdate, unwritten: &mut VecDeque<u64>) {
        unwritten.push_back(self.checkpoints.hand_over(result));
        if unwritten.len() >= self.options.send_batch_size.max(1)
            && let Some(oldest) = unwritten.pop_front()
        {
            self.checkpoints.written(oldest).await;
        }
        let written = *self.checkpoints.written.borrow();
        unwritten.retain(|m| *m > written);
    }

    /// Waits out a limiter wait that is known to be long (a throttling pause, a full
    /// quota), interrupted by a stop. False when stopped.
    async fn wait_ready(&self) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let wait = self.limiter.ready_in();
            if wait < LONG_WAIT {
                // The rest is the limiter's own (precise) wait.
                return true;
            }
            tokio::time::sleep((wait - LONG_WAIT / 2).min(Duration::from_millis(100))).await;
        }
    }

    async fn send_batch(&self, batch: Vec<Claimed>, unwritten: &mut VecDeque<u64>) -> Result<()> {
        let mut stop_error = None;
        for item in batch {
            if stop_error.is_some() || self.stopped() {
                self.save(requeue(&item, None), unwritten).await;
                continue;
            }
            // Results are saved before any long wait on the limiter.
            if let Some(&n) = unwritten.back()
                && self.limiter.ready_in() >= LONG_WAIT
            {
                self.checkpoints.written(n).await;
                unwritten.clear();
            }
            if !self.wait_ready().await {
                self.save(requeue(&item, None), unwritten).await;
                continue;
            }
            let (update, stop) = match self.send_one(&item).await? {
                Outcome::Done(u) => (u, None),
                Outcome::Stop(u, e) => (u, Some(e)),
            };
            self.save(update, unwritten).await;
            stop_error = stop_error.or(stop);
        }
        if let Some(e) = stop_error {
            return Err(e);
        }
        Ok(())
    }

    async fn send_one(&self, item: &Claimed) -> Result<Outcome> {
        // An IDN domain is written as its A-label in the To header too; an invalid one is
        // refused by the mailer, for this recipient alone.
        let to = smtp::wire_address(&item.address).unwrap_or_else(|_| item.address.clone());
        let rendered = match self.renderer.render(&self.signer, item.id, &to) {
            Ok(r) => r,
            Err(e) => {
                self.progress.count(Counted::Failed);
                return Ok(Outcome::Done(SendUpdate {
                    id: item.id,
                    state: SendState::Failed,
                    counted: true,
                    not_before: None,
                    message_id: None,
                    verp_token: None,
                    code: None,
                    text: Some(e.to_string()),
                }));
            }
        };
        let envelope = Envelope::new(rendered.envelope_from.clone(), item.address.clone());
        // A stop during the limiter wait abandons the send before anything went out (the
        // gate opens before MAIL FROM); once past the gate it runs to its answer.
        let aborted = AtomicBool::new(false);
        let gate = async {
            tokio::select! {
                () = self.limiter.acquire() => {}
                () = self.until_stopped() => {
                    aborted.store(true, Ordering::SeqCst);
                    std::future::pending::<()>().await;
                }
            }
        };
        let abandoned = async {
            while !aborted.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let result = tokio::select! {
            r = self.mailer.send_gated(&envelope, &rendered.bytes, gate) => r,
            () = abandoned => return Ok(Outcome::Done(requeue(item, None))),
        };
        let stamped =
            |state: SendState, counted: bool, not_before: Option<Timestamp>, code, text| {
                SendUpdate {
                    id: item.id,
                    state,
                    counted,
                    not_before,
                    message_id: Some(rendered.message_id.clone()),
                    verp_token: Some(rendered.token.to_string()),
                    code,
                    text,
                }
            };
        let e = match result {
            Ok(sent) => {
                self.limiter.succeeded();
                self.network_failures.store(0, Ordering::Relaxed);
                if let Ok(mut t) = self.throttled_since.lock() {
                    *t = None;
                }
                self.progress.record_sent();
                return Ok(Outcome::Done(stamped(
                    SendState::Sent,
                    true,
                    None,
                    Some(sent.code),
                    Some(sent.text),
                )));
            }
            Err(e) => e,
        };
        if e.code().is_some() {
            self.network_failures.store(0, Ordering::Relaxed);
        }
        let code = e.code();
        let text = Some(e.diagnostic());
        if e.is_unconfirmed() {
            // The server may have the message: resending could deliver it twice.
            self.progress.count(Counted::MaybeDelivered);
            tracing::warn!(error = %e, send = item.id, "no answer to the end of DATA; marked maybe delivered, not sent again");
            return Ok(Outcome::Done(stamped(
                SendState::MaybeDelivered,
                true,
                None,
                None,
                text,
            )));
        }
        if e.is_fatal() && !e.is_recipient_failure() {
            tracing::error!(error = %e, "the relay refused us; stopping");
            return Ok(Outcome::Stop(requeue(item, Some(&e)), Error::Smtp(e)));
        }
        if e.is_throttling() {
            self.progress.count(Counted::Throttled);
            if code.is_none() {
                let n = self.network_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= self.options.max_connection_failures {
                    return Ok(Outcome::Stop(
                        requeue(item, Some(&e)),
                        Error::Unreachable { count: n, last: e },
                    ));
                }
            }
            let since = self
                .throttled_since
                .lock()
                .map(|mut t| *t.get_or_insert_with(Instant::now))
                .unwrap_or_else(|_| Instant::now());
            if since.elapsed() >= self.options.max_throttled_time {
                let lasted = Duration::from_secs(since.elapsed().as_secs());
                tracing::error!(error = %e, "the relay throttled everything for too long; stopping");
                return Ok(Outcome::Stop(
                    requeue(item, Some(&e)),
                    Error::Throttled { lasted, last: e },
                ));
            }
            let pause = self.limiter.throttled();
            tracing::info!(error = %e, pause_ms = pause.as_millis() as u64, "throttled; the message goes back to the queue");
            return Ok(Outcome::Done(stamped(
                SendState::Pending,
                false,
                None,
                code,
                text,
            )));
        }
        if e.is_permanent() {
            self.progress.count(Counted::Bounced);
            self.record(item, &rendered.message_id, &e).await?;
            return Ok(Outcome::Done(stamped(
                SendState::Bounced,
                true,
                None,
                code,
                text,
            )));
        }
        if e.is_transient() {
            let attempt = item.attempts + 1;
            if attempt >= self.options.max_attempts {
                self.progress.count(Counted::Failed);
                self.record(item, &rendered.message_id, &e).await?;
                return Ok(Outcome::Done(stamped(
                    SendState::Failed,
                    true,
                    None,
                    code,
                    text,
                )));
            }
            self.progress.count(Counted::Deferred);
            let delay = self
                .options
                .retry_delay
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(Duration::from_secs(86_400));
            let at = Timestamp(
                Timestamp::now().0 + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2),
            );
            return Ok(Outcome::Done(stamped(
                SendState::Pending,
                true,
                Some(at),
                code,
                text,
            )));
        }
        // Unsendable for this recipient (e.g. an address the relay cannot take).
        self.progress.count(Counted::Failed);
        Ok(Outcome::Done(stamped(
            SendState::Failed,
            true,
            None,
            code,
            text,
        )))
    }

    /// Records an SMTP-time refusal as a bounce event: classified by the detector's rules
    /// from the reply text and status, hard or soft by [`BounceClass::derive`].
    async fn record(&self, item: &Claimed, message_id: &str, e: &smtp::Error) -> Result<()> {
        let verdict = smtp_verdict(&item.address, e, &self.options.relay);
        let ctx = EventContext {
            campaign_id: Some(self.renderer.campaign().id),
            original_message_id: Some(message_id.to_owned()),
            recipient: Some(item.address.clone()),
            ..EventContext::smtp()
        };
        let (store, rules) = (&self.store, &self.options.rules);
        let outcome = retry_busy("record_verdict", || {
            store.record_verdict(&ctx, &verdict, rules)
        })
        .await?;
        for change in &outcome.changes {
            tracing::info!(from = %change.from, to = %change.to, "recipient state changed by an SMTP refusal");
        }
        crate::metrics::count_booked(&outcome);
        Ok(())
    }
}

/// The verdict for a refusal during the SMTP dialogue: one bounce record for the
/// recipient, read by the detector's [`verdict_for_reply`](crate::detector::verdict_for_reply)
/// (the same rules as a bounce's diagnostic; hard or soft by [`BounceClass::derive`]).
/// A 4xx recorded here is one the queue gave up on, so its action is `failed` too.
pub fn smtp_verdict(address: &str, e: &smtp::Error, relay: &str) -> Verdict {
    // Only replies are recorded; a reply-less failure would be a 4xx "try again".
    let code = e.code().unwrap_or(451);
    let mut record = crate::detector::verdict_for_reply(address, code, e.text());
    if record.bounce.is_none() {
        record.bounce = BounceClass::derive(
            MessageKind::Bounce,
            record.reason,
            record.status.as_deref(),
            Some("failed"),
        );
    }
    record.action = Some("failed".into());
    record.remote_mta = (!relay.is_empty()).then(|| relay.to_owned());
    Verdict {
        kind: MessageKind::Bounce,
        recipients: vec![record],
        decided_by: crate::verdict::BUILTIN.into(),
    }
}

/// How many rows a worker claims at once: `max`, or under a rate limit about one second
/// of the worker's share of it (at least one), so that a claimed row is sent soon after
/// its suppression check.
fn claim_size(max: usize, per_second: Option<f64>, workers: usize) -> usize {
    let max = max.max(1);
    match per_second {
        Some(rate) if rate.is_finite() => {
            let share = (rate / workers.max(1) as f64).ceil();
            if share < max as f64 {
                (share as usize).max(1)
            } else {
                max
            }
        }
        _ => max,
    }
}

fn requeue(item: &Claimed, e: Option<&smtp::Error>) -> SendUpdate {
    SendUpdate {
        id: item.id,
        state: SendState::Pending,
        counted: false,
        not_before: None,
        message_id: None,
        verp_token: None,
        code: e.and_then(smtp::Error::code),
        text: e.map(smtp::Error::diagnostic),
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::campaign::Renderer;
    use crate::smtp::{Stage, StubMailer};
    use crate::store::RecipientState;
    use crate::store::campaigns::NewCampaign;

    async fn setup(n: usize) -> (Store, Renderer) {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let addrs: Vec<String> = (0..n).map(|i| format!("r{i}@example.com")).collect();
        let (c, _) = store
            .create_campaign(
                &NewCampaign {
                    name: "t".into(),
                    from: "News <news@example.org>".into(),
                    subject: "s".into(),
                    text: Some("body".into()),
                    html: None,
                },
                &addrs,
            )
            .await
            .unwrap();
        (store, Renderer::new(c, "bounces.example.org").unwrap())
    }

    fn queue(store: &Store, mailer: StubMailer, options: QueueOptions) -> Queue<StubMailer> {
        Queue::new(
            store.clone(),
            Arc::new(mailer),
            Arc::new(
                RateLimiter::new([]).with_backoff(crate::ratelimit::Backoff {
                    base: Duration::from_millis(5),
                    max: Duration::from_millis(20),
                }),
            ),
            Arc::new(Signer::new(b"k").unwrap()),
            options,
        )
    }

    /// A send's result: delivered.
    fn update(id: i64) -> SendUpdate {
        SendUpdate {
            id,
            state: SendState::Sent,
            counted: true,
            not_before: None,
            message_id: None,
            verp_token: None,
            code: Some(250),
            text: None,
        }
    }

    #[tokio::test]
    async fn the_writer_takes_results_in_groups_not_one_by_one() {
        let c = Arc::new(Checkpoints::new(GROUP_DELAY));
        c.hand_over(update(1));
        let started = Instant::now();
        let writer = {
            let c = Arc::clone(&c);
            tokio::spawn(async move { c.take().await })
        };
        // The writer sees the first result; two more come while it holds off.
        tokio::task::yield_now().await;
        c.hand_over(update(2));
        c.hand_over(update(3));
        let (taken, last) = writer.await.unwrap().unwrap();
        assert_eq!((taken.len(), last), (3, 3));
        assert!(started.elapsed() >= GROUP_DELAY, "{:?}", started.elapsed());
        // A full group is taken at once, however long the delay.
        let c = Checkpoints::new(Duration::from_secs(3600));
        for id in 0..GROUP as i64 {
            c.hand_over(update(id));
        }
        let (taken, _) = tokio::time::timeout(Duration::from_secs(10), c.take())
            .await
            .expect("a full group is taken at once")
            .unwrap();
        assert_eq!(taken.len(), GROUP);
        c.close();
        assert!(c.take().await.is_none());
    }

    #[tokio::test]
    async fn a_worker_waiting_for_its_result_has_it_written_at_once() {
        // A delay no test outlasts: only the waiting worker can make the writer take it.
        let c = Arc::new(Checkpoints::new(Duration::from_secs(3600)));
        let n = c.hand_over(update(1));
        let writer = {
            let c = Arc::clone(&c);
            tokio::spawn(async move {
                let (taken, last) = c.take().await.unwrap();
                c.written.send_replace(last);
                taken.len()
            })
        };
        tokio::task::yield_now().await;
        tokio::time::timeout(Duration::from_secs(10), c.written(n))
            .await
            .expect("the writer writes what a worker waits for");
        assert_eq!(writer.await.unwrap(), 1);
    }

    #[test]
    fn claims_are_about_a_second_of_a_workers_share_of_the_rate() {
        assert_eq!(claim_size(50, None, 4), 50);
        assert_eq!(claim_size(50, Some(10_000.0), 4), 50);
        assert_eq!(claim_size(50, Some(100.0), 4), 25);
        assert_eq!(claim_size(50, Some(10.0), 4), 3);
        // A daily quota: one row at a time.
        assert_eq!(claim_size(50, Some(50_000.0 / 86_400.0), 4), 1);
        assert_eq!(claim_size(0, None, 0), 1);
    }

    #[tokio::test]
    async fn queue_sends_everyone_once() {
        let (store, r) = setup(53).await;
        let stub = StubMailer::new_ok();
        let s = queue(&store, stub.clone(), QueueOptions::default())
            .run(r)
            .await
            .unwrap();
        assert!(s.finished);
        assert_eq!(s.progress.sent, 53);
        let mut to: Vec<String> = stub.messages().into_iter().map(|(e, _)| e.to).collect();
        to.sort();
        to.dedup();
        assert_eq!(to.len(), 53);
        let counts = store.campaign_counts().await.unwrap();
        assert_eq!((counts[0].sent, counts[0].queued), (53, 0));
        assert_eq!(counts[0].state, CampaignState::Done);
    }

    #[tokio::test]
    async fn queue_records_5xx_as_bounce_and_retries_4xx_then_soft() {
        let (store, r) = setup(6).await;
        let stub = StubMailer::new_ok();
        stub.reject(
            "r1@example.com",
            smtp::Error::reply(Stage::Rcpt, 550, "5.1.1 <r1@example.com>: user unknown"),
        );
        stub.reject(
            "r2@example.com",
            smtp::Error::reply(Stage::Rcpt, 451, "4.2.0 try later"),
        );
        stub.script(
            "r3@example.com",
            smtp::Error::reply(Stage::Rcpt, 451, "4.2.0 try later"),
        );
        stub.script(
            "r4@example.com",
            smtp::Error::reply(Stage::Mail, 421, "4.7.0 slow down"),
        );
        let options = QueueOptions {
            max_attempts: 3,
            retry_delay: Duration::from_millis(10),
            ..QueueOptions::default()
        };
        let s = queue(&store, stub.clone(), options).run(r).await.unwrap();
        assert!(s.finished);
        assert_eq!(
            (s.progress.sent, s.progress.bounced, s.progress.failed),
            (4, 1, 1)
        );
        assert_eq!(s.progress.throttled, 1);
        let r1 = store.recipient("r1@example.com").await.unwrap().unwrap();
        assert_eq!(r1.state, RecipientState::Bounced);
        assert_eq!(r1.last_reason.as_deref(), Some("user-unknown"));
        let r2 = store.recipient("r2@example.com").await.unwrap().unwrap();
        assert_eq!((r2.state, r2.soft_count), (RecipientState::Active, 1));
        let sends = store.campaign_sends(s.campaign_id).await.unwrap();
        assert_eq!(sends[2].attempts, 3);
        assert_eq!(sends[2].state, SendState::Failed);
        // The throttled one was not counted against its recipient.
        assert_eq!((sends[4].state, sends[4].attempts), (SendState::Sent, 1));
        let counts = store.campaign_counts().await.unwrap();
        assert_eq!(
            (
                counts[0].hard_bounces,
                counts[0].soft_bounces,
                counts[0].failed
            ),
            (1, 1, 2)
        );
    }

    #[tokio::test]
    async fn queue_marks_an_unanswered_end_of_data_maybe_delivered_and_never_resends() {
        let (store, r) = setup(4).await;
        let stub = StubMailer::new_ok();
        stub.script(
            "r2@example.com",
            smtp::Error::unconfirmed("no answer within 10m"),
        );
        let s = queue(&store, stub.clone(), QueueOptions::default())
            .run(r)
            .await
            .unwrap();
        assert!(s.finished);
        assert_eq!((s.progress.sent, s.progress.maybe_delivered), (3, 1));
        assert_eq!(stub.attempts(), 4, "not sent again");
        let sends = store.campaign_sends(s.campaign_id).await.unwrap();
        assert_eq!(
            (sends[2].state, sends[2].attempts),
            (SendState::MaybeDelivered, 1)
        );
        assert!(sends[2].message_id.is_some());
        let c = &store.campaign_counts().await.unwrap()[0];
        assert_eq!((c.sent, c.maybe_delivered, c.failed), (3, 1, 0));
        assert_eq!(store.event_count().await.unwrap(), 0);
        // It counts as sent for the limits.
        assert_eq!(store.sent_since(Timestamp(0)).await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn queue_stops_when_nothing_but_throttling_comes_for_too_long() {
        let (store, r) = setup(3).await;
        let stub = StubMailer::new_ok();
        for i in 0..3 {
            stub.reject(
                &format!("r{i}@example.com"),
                smtp::Error::reply(Stage::Mail, 451, "4.3.0 Local error in processing"),
            );
        }
        let options = QueueOptions {
            workers: 2,
            max_throttled_time: Duration::from_millis(300),
            ..QueueOptions::default()
        };
        let err = tokio::time::timeout(
            Duration::from_secs(10),
            queue(&store, stub.clone(), options).run(r.clone()),
        )
        .await
        .expect("the run does not stall")
        .unwrap_err();
        assert!(matches!(err, Error::Throttled { .. }), "{err}");
        assert!(err.to_string().contains("451 4.3.0 Local error"), "{err}");
        let open = store.open_sends(r.campaign().id).await.unwrap();
        assert_eq!((open.pending, open.claimed), (3, 0));
        assert_eq!(store.event_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn queue_skips_recipients_that_bounced_after_queueing() {
        let (store, r) = setup(8).await;
        let hard = smtp_verdict(
            "r3@example.com",
            &smtp::Error::reply(Stage::Rcpt, 550, "5.1.1 user unknown"),
            "",
        );
        let _ = store
            .record_verdict(&EventContext::smtp(), &hard, &RulesConfig::default())
            .await
            .unwrap();
        let stub = StubMailer::new_ok();
        let s = queue(&store, stub.clone(), QueueOptions::default())
            .run(r)
            .await
            .unwrap();
        assert!(s.finished);
        assert_eq!(
            (s.progress.sent, s.progress.skipped, s.progress.remaining),
            (7, 1, 0)
        );
        assert!(
            stub.messages()
                .iter()
                .all(|(e, _)| e.to != "r3@example.com")
        );
        let sends = store.campaign_sends(s.campaign_id).await.unwrap();
        assert_eq!(sends[3].state, SendState::Skipped);
        assert_eq!(
            sends[3].result_text.as_deref(),
            Some("recipient is bounced")
        );
        assert_eq!(store.campaign_counts().await.unwrap()[0].skipped, 1);
    }

    #[tokio::test]
    async fn queue_gives_up_on_an_unreachable_relay_without_blaming_anyone() {
        let (store, r) = setup(5).await;
        let stub = StubMailer::new_ok();
        for i in 0..5 {
            stub.reject(
                &format!("r{i}@example.com"),
                smtp::Error::network(Stage::Connect, "connection refused"),
            );
        }
        let options = QueueOptions {
            workers: 2,
            max_connection_failures: 4,
            ..QueueOptions::default()
        };
        let err = queue(&store, stub.clone(), options)
            .run(r.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unreachable { count: 4, .. }), "{err}");
        let sends = store.campaign_sends(r.campaign().id).await.unwrap();
        assert!(
            sends
                .iter()
                .all(|s| s.state == SendState::Pending && s.attempts == 0),
            "{sends:?}"
        );
        assert_eq!(store.event_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn queue_quota_holds_across_a_restart() {
        let (store, r) = setup(3).await;
        let window = || Arc::new(RateLimiter::new(["3/1200ms,window".parse().unwrap()]));
        let signer = Arc::new(Signer::new(b"k").unwrap());
        let first = Queue::new(
            store.clone(),
            Arc::new(StubMailer::new_ok()),
            window(),
            signer.clone(),
            QueueOptions::default(),
        );
        assert!(first.run(r).await.unwrap().finished);
        // A new process (a fresh limiter) sends another campaign: the quota is used up
        // until the first three leave the window.
        let (c, _) = store
            .create_campaign(
                &NewCampaign {
                    name: "second".into(),
                    from: "News <news@example.org>".into(),
                    subject: "s".into(),
                    text: Some("b".into()),
                    html: None,
                },
                ["late@example.com"],
            )
            .await
            .unwrap();
        let t = Instant::now();
        let second = Queue::new(
            store.clone(),
            Arc::new(StubMailer::new_ok()),
            window(),
            signer,
            QueueOptions::default(),
        );
        assert!(
            second
                .run(Renderer::new(c, "b.example.org").unwrap())
                .await
                .unwrap()
                .finished
        );
        assert!(
            t.elapsed() >= Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test]
    async fn queue_stops_on_a_fatal_answer_and_resumes_later() {
        let (store, r) = setup(12).await;
        let stub = StubMailer::new_ok();
        stub.script(
            "r3@example.com",
            smtp::Error::reply(Stage::Connect, 535, "5.7.8 authentication failed"),
        );
        let options = QueueOptions {
            workers: 1,
            ..QueueOptions::default()
        };
        let err = queue(&store, stub.clone(), options.clone())
            .run(r.clone())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Smtp(_)), "{err}");
        let open = store.open_sends(r.campaign().id).await.unwrap();
        assert_eq!((open.pending, open.claimed), (9, 0));
        let s = queue(&store, stub.clone(), options).run(r).await.unwrap();
        assert!(s.finished);
        assert_eq!(stub.messages().len(), 12);
    }

    #[tokio::test]
    async fn queue_waits_for_a_paused_domain_and_goes_on_when_resumed() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("q.db").display());
        let store = Store::open(&url).await.unwrap();
        let mut addrs: Vec<String> = (0..50).map(|i| format!("n{i}@example.net")).collect();
        addrs.extend((0..5).map(|i| format!("p{i}@example.net")));
        addrs.extend((0..3).map(|i| format!("o{i}@other.org")));
        let (c, _) = store
            .create_campaign(
                &NewCampaign {
                    name: "paused".into(),
                    from: "News <news@example.org>".into(),
                    subject: "s".into(),
                    text: Some("body".into()),
                    html: None,
                },
                &addrs,
            )
            .await
            .unwrap();
        // The first 50 went out earlier; 10 of them were refused as spam.
        let first = store.claim_sends(c.id, 50).await.unwrap();
        let sent: Vec<SendUpdate> = first.iter().map(|x| update(x.id)).collect();
        store.checkpoint_sends(&sent).await.unwrap();
        let rules = RulesConfig {
            pause_on_sender_blocks: Some(crate::config::PauseRule::default()),
            ..RulesConfig::default()
        };
        for i in 0..10 {
            let ctx = EventContext {
                campaign_id: Some(c.id),
                recipient: Some(format!("n{i}@example.net")),
                ..EventContext::smtp()
            };
            let v = Verdict::one_bounce(
                "x@example.net",
                BounceClass::Soft,
                "5.7.1",
                crate::verdict::Reason::SpamDetected,
                "failed",
            );
            let _ = store.record_verdict(&ctx, &v, &rules).await.unwrap();
        }
        assert_eq!(store.domain_pauses().await.unwrap().len(), 1);

        let stub = StubMailer::new_ok();
        let q = queue(&store, stub.clone(), QueueOptions::default());
        let renderer = Renderer::new(c.clone(), "bounces.example.org").unwrap();
        let run = tokio::spawn(async move { q.run(renderer).await });
        tokio::time::sleep(Duration::from_millis(600)).await;
        let to = |stub: &StubMailer| -> Vec<String> {
            let mut v: Vec<String> = stub.messages().into_iter().map(|(e, _)| e.to).collect();
            v.sort();
            v
        };
        assert_eq!(to(&stub), ["o0@other.org", "o1@other.org", "o2@other.org"]);
        assert!(!run.is_finished(), "the run waits for the paused domain");
        assert_eq!(
            store.resume_paused(c.id, None).await.unwrap(),
            ["example.net"]
        );
        let summary = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the run goes on once resumed")
            .unwrap()
            .unwrap();
        assert!(summary.finished);
        assert_eq!(to(&stub).len(), 8);
        assert!(
            store
                .recipients(Some(RecipientState::Bounced))
                .await
                .unwrap()
                .is_empty()
        );
    }
}
