//! The poll loop: UIDL → RETR → [the inbound pipeline](crate::pipeline) (detector →
//! policy chain → correlation → one store transaction) → DELE.
//!
//! One pass ([`Poller::poll_once`]) connects, logs in, lists the mailbox and then, for
//! every message not yet in the store's ledger (at most `batch_limit` per pass): fetches it,
//! hands it through a bounded channel to a classifying task (the
//! [detector] and the [policy chain](crate::policy)), then through another
//! to a commit task ([`pipeline::correlate`] and [`Store::record_verdicts`]: events, recipient
//! updates and the ledger row in one transaction, shared by the messages that are waiting
//! at that moment), and only once that has committed marks it for deletion. RETR and DELE
//! are pipelined when the server offers PIPELINING. A message that is already in the
//! ledger was committed by an earlier pass that did not get to `QUIT`: it is only deleted,
//! never counted again. `QUIT` ends the pass; only then does the server remove what was
//! marked.
//!
//! So a crash at any point loses nothing and counts nothing twice: before the commit the
//! message is still on the server and not in the ledger; after it, the ledger remembers.
//! The store syncs every commit to disk (`synchronous = FULL`, see [`Store::open`]), so
//! this holds for an OS crash or a power cut too, not only for a killed process.
//!
//! The ledger keeps the size LIST gave for each message. A UID is the server's promise,
//! and a server that rebuilds a mailbox can break it (hand an old UID to a new message):
//! a message listed under a ledger UID with another size is treated as new (fetched,
//! recorded, its ledger row replaced; counted in [`PollSummary::reused_uids`]). A new
//! message of exactly the old size under a reused UID cannot be told apart.
//!
//! A failed fetch is an outcome of that message, not of the pass: it is counted against
//! the UID in the store and the message stays on the server. When the RETR broke the
//! connection, the pass logs in again (its DELEs died with the old session and are sent
//! again) and goes on with the next message, so what was committed is deleted at the
//! final `QUIT`. A message whose fetches failed `max_fetch_failures` times is quarantined:
//! not fetched again, named in every summary, until a person releases it (`rebound poll
//! release`, `POST /quarantine/release`: its failures are forgotten and the next pass
//! fetches it). The failures of a message that is no longer on the server are forgotten
//! at the start of the next pass. A pass in which every fetch broke the
//! connection still sends its `QUIT`, then fails (the server, not a message, is the
//! likely fault; the failures are counted all the same).
//!
//! One poller at a time per mailbox ([`crate::mailbox::under_lease`], as for IMAP): a pass
//! first takes the mailbox's lease in the store
//! (`mailbox:NAME`, [`Store::take_lease`]), renews it every third of [`MAILBOX_LEASE`]
//! while it runs and gives it up at the end. A poller of another process or host that
//! finds it held skips its pass ([`PollSummary::held_by`]) and tries again at its next;
//! a poller of another host that died holds it until its lease expires, one of this host
//! (its process is gone) is replaced at once. Were the lease lost during a
//! pass anyway (the store unreachable for a whole lease), the pass fetches nothing more
//! and ends; the ledger still counts every message once.
//!
//! [`Poller::run`] repeats passes every `poll_interval`, retrying a failed pass (server
//! down, garbage, wrong password) with exponential backoff; it never gives up.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{self, Pop3Config, RulesConfig};
use crate::detector::Detection;
pub use crate::mailbox::{MAILBOX_LEASE, Quarantined, TooLarge};
use crate::pipeline::{self, Judged};
use crate::policy::PolicyChain;
use crate::pop3;
use crate::store::{self, EventContext, Store};
use crate::verdict::{MessageKind, Verdict};

/// Messages fetched but not yet committed, at most (the bounded hand-off).
const IN_FLIGHT: usize = 16;
/// Messages committed in one transaction, at most (those that are waiting).
const COMMIT_BATCH: usize = 32;
/// Commands (RETR, DELE) sent ahead of their replies when the server offers PIPELINING.
const PIPELINE: usize = 8;

/// Errors of a poll pass.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mailbox could not be read (connect, TLS, login, a command).
    #[error("mailbox {mailbox}: {cause}")]
    Pop3 {
        /// The mailbox's name.
        mailbox: String,
        /// What failed.
        cause: pop3::Error,
    },
    /// The store failed; the message stays on the server.
    #[error("mailbox {mailbox}: {cause}")]
    Store {
        /// The mailbox's name.
        mailbox: String,
        /// What failed.
        cause: store::Error,
    },
    /// The password variable is not set.
    #[error("pop3 password: {0}")]
    Password(#[from] config::Error),
    /// No OAuth 2.0 access token could be had (`auth = "xoauth2"` / `"oauthbearer"`).
    #[error("pop3 login token: {0}")]
    Token(#[from] crate::oauth::Error),
    /// A failpoint stopped the pass as a crash would (tests only).
    #[error("failpoint {step:?} at message {uid}")]
    Failpoint {
        /// Where.
        step: Step,
        /// Which message.
        uid: String,
    },
    /// The processing task died.
    #[error("mailbox {mailbox}: processing task failed: {message}")]
    Task {
        /// The mailbox's name.
        mailbox: String,
        /// The panic or cancellation.
        message: String,
    },
}

impl Error {
    /// True when the server refused the login.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Pop3 { cause, .. } if cause.is_auth())
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Points in a pass where a test can stop it as a crash would (no further command, no
/// `QUIT`, an open transaction rolled back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A message was fetched; nothing committed for it yet.
    AfterRetr,
    /// A message's verdict was committed; it is not marked for deletion yet.
    AfterCommit,
    /// Every message is handled; `QUIT` not sent yet (so no deletion happened).
    BeforeQuit,
}

/// A test hook: called at every [`Step`] with the message's UID (empty for
/// `BeforeQuit`); returning true stops the pass there.
pub type Failpoint = Arc<dyn Fn(Step, &str) -> bool + Send + Sync>;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[must_use]
pub struct PollSummary {
    /// Messages in the mailbox.
    pub listed: usize,
    /// Messages fetched and committed in this pass.
    pub processed: usize,
    /// Of those, by kind.
    #[serde(flatten)]
    pub kinds: crate::mailbox::KindCounts,
    /// Messages that could not be parsed (recorded with a marker event).
    pub unparseable: usize,
    /// Events written.
    pub events: usize,
    /// Unsubscribe requests by mail applied in this pass (each also counted as other
    /// mail); those that changed a state are in `state_changes` too.
    pub unsubscribes: usize,
    /// Recipients whose state changed.
    pub state_changes: Vec<store::StateChange>,
    /// Messages already in the ledger (an earlier pass committed them): only deleted.
    pub already_recorded: usize,
    /// Messages listed under a UID the ledger holds with another size: the server gave
    /// the UID to a new message (a rebuilt mailbox), so they were handled as new.
    pub reused_uids: usize,
    /// Messages marked for deletion (removed by the server at QUIT).
    pub deleted: usize,
    /// Messages left on the server because they are too large.
    pub too_large: Vec<TooLarge>,
    /// Messages a policy module with `on_error = "fail"` failed on: left on the server.
    pub policy_failed: usize,
    /// Fetches that failed in this pass (`-ERR` to RETR, the connection dropped or the
    /// message larger than listed): each is counted against its UID and the message is
    /// left for the next pass, until it is quarantined.
    pub fetch_failed: usize,
    /// Messages skipped because their fetch failed `max_fetch_failures` times (also those
    /// that reached it in this pass): they stay on the server until a person removes them.
    pub quarantined: Vec<Quarantined>,
    /// New messages left for the next pass because of `batch_limit`.
    pub left_for_next_pass: usize,
    /// The operator's alarm: destination domains that refused mail of this pass for
    /// sender-side reasons (blocklists, spam, reputation), each with its refusals against
    /// the sends to it over the last hour ([`ALARM_WINDOW`]).
    pub sender_alarms: Vec<store::SenderAlarm>,
    /// Campaign sends to a destination domain paused in this pass
    /// (`[rules] pause_on_sender_blocks`).
    pub paused: Vec<store::DomainPause>,
    /// Campaigns paused in this pass for their complaint rate (`[rules] max_complaint_rate`).
    pub paused_campaigns: Vec<store::ComplaintPause>,
    /// The pass did not run: this other poller (`host/pid/…`) holds the mailbox's lease.
    pub held_by: Option<String>,
    /// Destination domains with a sender-blamed refusal in this pass.
    #[serde(skip)]
    refused_domains: std::collections::BTreeSet<String>,
}

/// The window the poll summary's sender alarms are computed over.
pub const ALARM_WINDOW: Duration = Duration::from_secs(3600);

impl std::fmt::Display for PollSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(holder) = &self.held_by {
            return write!(f, "not polled: {holder} is polling this mailbox");
        }
        write!(
            f,
            "{} listed, {} processed ({}, {} unparseable), {} unsubscribes, {} events, {} state changes, {} already recorded, {} reused UIDs, {} deleted, \
             {} too large, {} policy failures, {} fetch failures, {} quarantined, {} left for the next pass",
            self.listed,
            self.processed,
            self.kinds,
            self.unparseable,
            self.unsubscribes,
            self.events,
            self.state_changes.len(),
            self.already_recorded,
            self.reused_uids,
            self.deleted,
            self.too_large.len(),
            self.policy_failed,
            self.fetch_failed,
            self.quarantined.len(),
            self.left_for_next_pass
        )?;
        for q in &self.quarantined {
            write!(
                f,
                "\n  quarantined: message {} ({} failed fetches), left on the server",
                q.uid, q.failures
            )?;
        }
        for alarm in &self.sender_alarms {
            write!(f, "\n  warning: {alarm}")?;
        }
        for pause in &self.paused {
            write!(f, "\n  paused: {pause}")?;
        }
        for pause in &self.paused_campaigns {
            write!(f, "\n  {pause}")?;
        }
        Ok(())
    }
}

/// Everything the processing task needs.
struct Shared {
    store: Store,
    /// Loaded afresh for every message, so a chain swapped in by the API applies at once.
    chain: Arc<arc_swap::ArcSwap<PolicyChain>>,
    rules: RulesConfig,
    mailbox: String,
    delete: bool,
    keep_other: bool,
    failpoint: Option<Failpoint>,
    /// Checks the tokens of unsubscribe requests sent to `bounces+u-TOKEN@…` (the
    /// `mailto:` of campaign messages); `None`: such mail is recorded as other mail only.
    unsubscribe: Option<crate::verp::Signer>,
    /// `[store] keep_raw`: every recorded message is archived, and the pass prunes what is
    /// older; `None`: nothing is archived.
    keep_raw: Option<Duration>,
}

impl Shared {
    fn failpoint(&self, step: Step, uid: &str) -> Result<()> {
        match &self.failpoint {
            Some(f) if f(step, uid) => Err(Error::Failpoint {
                step,
                uid: uid.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Should a committed message of this kind be deleted?
    fn wants_delete(&self, kind: MessageKind, unparseable: bool) -> bool {
        self.delete && !(self.keep_other && (kind == MessageKind::Other || unparseable))
    }

    fn store_err(&self, cause: store::Error) -> Error {
        Error::Store {
            mailbox: self.mailbox.clone(),
            cause,
        }
    }
}

/// A message of the pass, as the pass's first listing named it. The pass refers to a
/// message by its position in that listing, so what it keeps per message is this and an
/// index or two: the mailbox can be large (100 000 messages), the pass's memory should not
/// grow with it more than it must.
///
/// It has the layout of a [`pop3::UidEntry`], so the listing becomes these in place.
struct Listed {
    uid: Box<str>,
    /// The size LIST gave, kept in the ledger; [`NO_SIZE`] when LIST did not give one.
    size: u64,
    /// Its number in the current session (message numbers belong to one session; a
    /// reconnect may renumber); 0 when that session does not list it (it is gone).
    msg: u32,
}

/// [`Listed::size`] of a message LIST did not size.
const NO_SIZE: u64 = u64::MAX;

impl Listed {
    fn size(&self) -> Option<u64> {
        (self.size != NO_SIZE).then_some(self.size)
    }
}

/// A message's position in the pass's listing: 4 bytes, as POP3's message numbers are,
/// because the pass queues one per message (100 000 of them in a large mailbox).
type Pos = u32;

/// A fetched message on its way to the processing task.
struct Job {
    /// Its position in the pass's listing.
    pos: Pos,
    uid: String,
    /// The size LIST gave, kept in the ledger.
    listed: Option<u64>,
    raw: Vec<u8>,
}

/// A message with its verdict, on its way to the commit.
struct Classified {
    pos: Pos,
    uid: String,
    /// LIST's size.
    size: Option<u64>,
    detection: Detection,
    verdict: Verdict,
    /// The message, compressed, when the archive is on.
    raw: Option<store::archive::RawMessage>,
    /// What the policies wrote to their state judging it.
    state_writes: Vec<store::policy_state::StateWrite>,
}

/// A committed message on its way back, to be deleted.
struct Done {
    pos: Pos,
    delete: bool,
}

/// A command sent and not answered yet, by the position of the message it is about.
enum Sent {
    Retr(Pos),
    Dele(Pos),
}

/// The name a `[pop3]` section's mailbox has in the ledger and the fetch failures: its
/// `mailbox`, else `username@host`.
pub fn mailbox_name(config: &Pop3Config) -> String {
    config
        .mailbox
        .clone()
        .unwrap_or_else(|| format!("{}@{}", config.username, config.host))
}

/// The pass's messages from its first session's UIDL and LIST (a message LIST does not
/// size has no size).
fn listed(uids: Vec<pop3::UidEntry>, mut list: Vec<pop3::ListEntry>) -> Vec<Listed> {
    list.sort_unstable_by_key(|e| e.msg);
    uids.into_iter()
        .map(|e| Listed {
            size: list
                .binary_search_by_key(&e.msg, |l| l.msg)
                .map_or(NO_SIZE, |i| list[i].size),
            msg: e.msg,
            uid: e.uid.into_boxed_str(),
        })
        .collect()
}

/// Gives the pass's messages their numbers in a new session (0 for those it does not list).
fn renumber(msgs: &mut [Listed], uids: &[pop3::UidEntry]) {
    let by_uid: std::collections::HashMap<&str, u32> =
        uids.iter().map(|e| (e.uid.as_str(), e.msg)).collect();
    for m in msgs {
        m.msg = by_uid.get(&*m.uid).copied().unwrap_or(0);
    }
}

/// UIDs looked up in the ledger per query when a pass starts.
const LEDGER_CHUNK: usize = 500;

/// Polls one bounce mailbox.
pub struct Poller {
    config: Pop3Config,
    credentials: crate::oauth::Credentials,
    shared: Arc<Shared>,
    /// This poller's name as the mailbox lease's holder.
    owner: String,
    lease: Duration,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Poller {
    /// A poller for the `[pop3]` section, logging in as its `auth` says: with the password
    /// of the variable it names, or with SASL XOAUTH2 / OAUTHBEARER and an access token
    /// (see [`crate::oauth`]).
    ///
    /// # Errors
    /// [`Error::Password`] when a variable it names is not set.
    pub fn from_config(
        config: &Pop3Config,
        store: Store,
        chain: Arc<PolicyChain>,
        rules: RulesConfig,
    ) -> Result<Poller> {
        let credentials = crate::oauth::Credentials::from_login("pop3", &config.login()).map_err(
            |e| match e {
                crate::oauth::Error::Config(e) => Error::Password(e),
                e => Error::Token(e),
            },
        )?;
        let mut poller = Poller::new(config.clone(), String::new(), store, chain, rules);
        poller.credentials = credentials;
        Ok(poller)
    }

    /// A poller with an explicit password.
    ///
    /// The mailbox's name in the ledger is [`mailbox_name`] of `config`.
    pub fn new(
        config: Pop3Config,
        password: String,
        store: Store,
        chain: Arc<PolicyChain>,
        rules: RulesConfig,
    ) -> Poller {
        let mailbox = mailbox_name(&config);
        let shared = Shared {
            store,
            chain: Arc::new(arc_swap::ArcSwap::new(chain)),
            rules,
            mailbox,
            delete: config.delete_processed,
            keep_other: config.keep_other,
            failpoint: None,
            unsubscribe: None,
            keep_raw: None,
        };
        Poller {
            config,
            credentials: crate::oauth::Credentials::Password(password),
            shared: Arc::new(shared),
            owner: store::leases::owner_name(),
            lease: MAILBOX_LEASE,
        }
    }

    /// Holds the mailbox's lease for `lease` between heartbeats instead of
    /// [`MAILBOX_LEASE`] (tests: a dead poller's place taken sooner).
    pub fn with_lease(mut self, lease: Duration) -> Poller {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// Takes the chain from a swappable cell (the daemon's live chain) instead.
    pub fn with_live_chain(mut self, chain: Arc<arc_swap::ArcSwap<PolicyChain>>) -> Poller {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.chain = chain;
        }
        self
    }

    /// Applies the unsubscribe requests that arrive by mail (the `mailto:` of campaign
    /// messages), checking their tokens with the campaigns' signer.
    pub fn with_unsubscribe(mut self, signer: crate::verp::Signer) -> Poller {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.unsubscribe = Some(signer);
        }
        self
    }

    /// Archives every message it records (compressed, with its ledger row and events) and
    /// prunes, after each pass, what was archived longer than `keep` ago (`[store]
    /// keep_raw`; zero: no archive).
    pub fn with_archive(mut self, keep: Duration) -> Poller {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.keep_raw = (!keep.is_zero()).then_some(keep);
        }
        self
    }

    /// Installs a failpoint (tests: stop a pass where a crash would).
    pub fn with_failpoint(mut self, failpoint: Failpoint) -> Poller {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.failpoint = Some(failpoint);
        }
        self
    }

    /// The mailbox's name in the ledger.
    pub fn mailbox(&self) -> &str {
        &self.shared.mailbox
    }

    fn pop3_err(&self, cause: pop3::Error) -> Error {
        Error::Pop3 {
            mailbox: self.shared.mailbox.clone(),
            cause,
        }
    }

    /// One pass over the mailbox (see the module docs), unless another poller holds the
    /// mailbox: then nothing but [`PollSummary::held_by`].
    ///
    /// # Errors
    /// [`Error::Pop3`] when the server cannot be used, [`Error::Store`] when a commit
    /// fails (or the lease cannot be taken). Everything committed before the error stays
    /// committed and is deleted by the next pass.
    #[tracing::instrument(name = "rebound.poller.poll", skip_all, fields(mailbox = %self.shared.mailbox))]
    pub async fn poll_once(&self) -> Result<PollSummary> {
        let shared = &self.shared;
        let lost = AtomicBool::new(false);
        let leased = crate::mailbox::under_lease(
            &shared.store,
            &shared.mailbox,
            &self.owner,
            self.lease,
            shared.keep_raw,
            &lost,
            self.pass(&lost),
        )
        .await
        .map_err(|e| shared.store_err(e))?;
        match leased {
            crate::mailbox::Leased::Ran(result) => result,
            crate::mailbox::Leased::HeldBy(holder) => Ok(PollSummary {
                held_by: Some(holder.unwrap_or_else(|| "another poller".into())),
                ..PollSummary::default()
            }),
        }
    }

    /// The pass itself, once the lease is held; `lost` is set when it lapses.
    async fn pass(&self, lost: &AtomicBool) -> Result<PollSummary> {
        let shared = &self.shared;
        let (mut client, uids) = self.session().await?;
        let list = client
            .list_sized(uids.len())
            .await
            .map_err(|e| self.pop3_err(e))?;
        let mut msgs = listed(uids, list);

        let mut summary = PollSummary {
            listed: msgs.len(),
            ..PollSummary::default()
        };

        // Decide up front: delete only (already in the ledger), leave (too large,
        // quarantined, over the batch limit), or fetch. The ledger is asked a chunk at a
        // time, so only a chunk's rows are held at once.
        let max_failures = self.config.max_fetch_failures.max(1);
        let failures = shared
            .store
            .fetch_failure_states(&shared.mailbox, msgs.iter().map(|m| &*m.uid), max_failures)
            .await
            .map_err(|e| shared.store_err(e))?;
        let mut to_delete: VecDeque<Pos> = VecDeque::new();
        let mut to_fetch: VecDeque<Pos> = VecDeque::new();
        for base in (0..msgs.len()).step_by(LEDGER_CHUNK) {
            let chunk = &msgs[base..msgs.len().min(base + LEDGER_CHUNK)];
            let uid_list: Vec<&str> = chunk.iter().map(|m| &*m.uid).collect();
            let ledger = shared
                .store
                .ledger_entries(&shared.mailbox, &uid_list)
                .await
                .map_err(|e| shared.store_err(e))?;
            // Ledger rows from before the ledger kept LIST's size: they take today's.
            let mut adopt: Vec<(&str, u64)> = Vec::new();
            // A listing has fewer than 2³² entries: POP3 numbers its messages with u32s.
            for (pos, entry) in (base as Pos..).zip(chunk) {
                let uid = &*entry.uid;
                let size = entry.size();
                if let Some(done) = ledger.get(uid) {
                    if done.same_message(size) {
                        summary.already_recorded += 1;
                        if let (None, Some(size)) = (done.size, size) {
                            adopt.push((uid, size));
                        }
                        if shared.wants_delete(done.kind, done.unparseable) {
                            to_delete.push_back(pos);
                        }
                        continue;
                    }
                    // The server gave a recorded UID to another message (a rebuilt mailbox).
                    tracing::warn!(mailbox = %shared.mailbox, %uid, recorded = ?done.size,
                        listed = ?size, "a recorded UID is listed with another size: a new message, fetched");
                    summary.reused_uids += 1;
                }
                let size = size.unwrap_or(0);
                let failed = failures.get(uid).copied();
                if let Some(failed) = failed.filter(|f| f.quarantined) {
                    summary.quarantined.push(Quarantined {
                        uid: uid.to_owned(),
                        failures: failed.failures,
                    });
                } else if size > self.config.max_message_size {
                    tracing::warn!(%uid, size, limit = self.config.max_message_size,
                        "message larger than max_message_size: left on the server");
                    summary.too_large.push(TooLarge {
                        uid: uid.to_owned(),
                        size,
                    });
                } else if to_fetch.len() >= self.config.batch_limit {
                    summary.left_for_next_pass += 1;
                } else {
                    to_fetch.push_back(pos);
                }
            }
            if !adopt.is_empty() {
                shared
                    .store
                    .adopt_ledger_sizes(&shared.mailbox, &adopt)
                    .await
                    .map_err(|e| shared.store_err(e))?;
            }
        }
        drop(failures);

        let (job_tx, job_rx) = mpsc::channel::<Job>(IN_FLIGHT);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        let (classified_tx, classified_rx) = mpsc::channel::<Classified>(IN_FLIGHT);
        let classifier = tokio::spawn(classify(Arc::clone(shared), job_rx, classified_tx));
        let processor = tokio::spawn(process(Arc::clone(shared), classified_rx, done_tx));
        let mut job_tx = Some(job_tx);
        let limit = self.config.max_message_size;
        // A fetch that broke the connection, and whether any fetch got through: a pass in
        // which every fetch broke it is reported as failed (the server, not one message,
        // is the likely fault), after its QUIT.
        let mut broken_fetch: Option<pop3::Error> = None;
        let mut fetched_any = false;
        // The session broke on a RETR; a new one is opened when there is work for it.
        let mut dead = false;
        // Off after a hang-up with pipelined commands in flight (see below).
        let mut pipeline = true;

        let fetch: Result<()> = async {
            let mut sent: VecDeque<Sent> = VecDeque::new();
            // DELEs answered in this session: lost if it ends without QUIT.
            let mut session_deleted: Vec<Pos> = Vec::new();
            loop {
                if lost.load(Ordering::Relaxed) && !to_fetch.is_empty() {
                    // Another poller may have the mailbox now: leave the rest to it.
                    summary.left_for_next_pass += to_fetch.len();
                    to_fetch.clear();
                }
                while let Ok(done) = done_rx.try_recv() {
                    if done.delete {
                        to_delete.push_back(done.pos);
                    }
                }
                if dead && (!to_delete.is_empty() || (job_tx.is_some() && !to_fetch.is_empty())) {
                    let (fresh, uids) = self.session().await?;
                    client = fresh;
                    renumber(&mut msgs, &uids);
                    dead = false;
                }
                let window = if pipeline && client.pipelining() {
                    PIPELINE
                } else {
                    1
                };
                // Keep the pipeline full: deletions first, then the next messages. A
                // message the current session does not list is gone from the server:
                // skipped.
                while !dead && client.pending() < window {
                    if let Some(pos) = to_delete.pop_front() {
                        let msg = msgs[pos as usize].msg;
                        if msg != 0 {
                            client.send_dele(msg);
                            sent.push_back(Sent::Dele(pos));
                        }
                    } else if job_tx.is_some()
                        && let Some(pos) = to_fetch.pop_front()
                    {
                        let msg = msgs[pos as usize].msg;
                        if msg != 0 {
                            client.send_retr(msg);
                            sent.push_back(Sent::Retr(pos));
                        }
                    } else {
                        break;
                    }
                }
                if dead || client.pending() == 0 {
                    if to_fetch.is_empty() {
                        // Everything is fetched: let the processing task finish.
                        job_tx = None;
                    }
                    match done_rx.recv().await {
                        Some(done) => {
                            if done.delete {
                                to_delete.push_back(done.pos);
                            }
                            continue;
                        }
                        None => break,
                    }
                }
                let reply = client.read_reply(limit).await;
                let command = sent.pop_front();
                match (reply, command) {
                    (Ok(pop3::Reply::Dele { .. }), Some(Sent::Dele(pos))) => {
                        summary.deleted += 1;
                        session_deleted.push(pos);
                    }
                    (
                        Ok(pop3::Reply::Retr {
                            result: Ok(raw), ..
                        }),
                        Some(Sent::Retr(pos)),
                    ) => {
                        fetched_any = true;
                        let m = &msgs[pos as usize];
                        shared.failpoint(Step::AfterRetr, &m.uid)?;
                        if let Some(tx) = &job_tx
                            && tx
                                .send(Job {
                                    pos,
                                    uid: m.uid.to_string(),
                                    listed: m.size(),
                                    raw,
                                })
                                .await
                                .is_err()
                        {
                            // The processing task stopped (a store error): fetch no more.
                            job_tx = None;
                            to_fetch.clear();
                        }
                    }
                    (
                        Ok(pop3::Reply::Retr {
                            result: Err(err), ..
                        }),
                        Some(Sent::Retr(pos)),
                    ) => {
                        self.fetch_failed(&mut summary, &msgs[pos as usize].uid, &err, max_failures)
                            .await?;
                    }
                    (Err(err), Some(command))
                        if !matches!(err, pop3::Error::Broken)
                            && (matches!(command, Sent::Retr(_)) || !sent.is_empty()) =>
                    {
                        if sent.is_empty()
                            && let Sent::Retr(pos) = &command
                        {
                            // Nothing was sent after this RETR: the message is to blame.
                            self.fetch_failed(&mut summary, &msgs[*pos as usize].uid, &err, max_failures)
                                .await?;
                            broken_fetch.get_or_insert(err);
                        } else {
                            // Pipelined commands were in flight: a hang-up (a reset drops
                            // replies already sent) can surface on an earlier command, so
                            // blame no one and go on one command at a time.
                            tracing::warn!(mailbox = %shared.mailbox,
                                "connection lost with pipelined commands in flight, retrying without pipelining: {err}");
                            pipeline = false;
                            sent.push_front(command);
                        }
                        // The session died without QUIT, so its DELEs did not happen:
                        // redo them, and what was sent after the failed command, on a new one.
                        summary.deleted -= session_deleted.len();
                        for command in sent.drain(..).rev() {
                            match command {
                                Sent::Retr(pos) => to_fetch.push_front(pos),
                                Sent::Dele(pos) => to_delete.push_front(pos),
                            }
                        }
                        for pos in session_deleted.drain(..).rev() {
                            to_delete.push_front(pos);
                        }
                        dead = true;
                    }
                    (Err(err), _) => return Err(self.pop3_err(err)),
                    (Ok(_), _) => {
                        return Err(self.pop3_err(pop3::Error::Protocol {
                            during: "pipelining".into(),
                            line: "a reply to another command than sent".into(),
                        }));
                    }
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = fetch {
            // As a crash would: no more commands and no QUIT. The processing task commits
            // what it already has (a transaction is never cut off half-way: that would
            // hand a connection with a pending rollback back to the pool); those messages
            // are deleted by the next pass.
            drop(job_tx);
            let _ = classifier.await;
            let _ = processor.await;
            return Err(e);
        }
        let policy_failed = classifier.await.map_err(|e| Error::Task {
            mailbox: shared.mailbox.clone(),
            message: e.to_string(),
        })?;
        let processed = processor.await.map_err(|e| Error::Task {
            mailbox: shared.mailbox.clone(),
            message: e.to_string(),
        })?;
        let processed = match processed {
            Ok(p) => p,
            Err(e @ Error::Failpoint { .. }) => return Err(e),
            Err(e) => {
                // Delete what was committed, then report the failure.
                if !dead {
                    client.quit().await.map_err(|q| self.pop3_err(q))?;
                }
                return Err(e);
            }
        };
        merge(&mut summary, processed);
        summary.policy_failed += policy_failed;
        if !summary.refused_domains.is_empty() {
            let domains: Vec<String> = summary.refused_domains.iter().cloned().collect();
            summary.sender_alarms = shared
                .store
                .sender_alarms(ALARM_WINDOW, Some(&domains))
                .await
                .map_err(|e| shared.store_err(e))?;
            for alarm in &summary.sender_alarms {
                tracing::warn!(mailbox = %shared.mailbox, domain = %alarm.domain, "sender-side refusals: {alarm}");
            }
        }
        for q in &summary.quarantined {
            tracing::warn!(mailbox = %shared.mailbox, uid = %q.uid, failures = q.failures,
                "message quarantined after repeated fetch failures: left on the server, not fetched");
        }
        shared.failpoint(Step::BeforeQuit, "")?;
        // A dead session has nothing marked: its DELEs were redone on a later one.
        if !dead {
            client.quit().await.map_err(|e| self.pop3_err(e))?;
        }
        match broken_fetch {
            Some(err) if !fetched_any => Err(self.pop3_err(err)),
            _ => Ok(summary),
        }
    }

    /// Connects, logs in and lists the UIDs.
    async fn session(&self) -> Result<(pop3::Client, Vec<pop3::UidEntry>)> {
        let mut client = pop3::Client::connect(&pop3::Options::from_config(&self.config))
            .await
            .map_err(|e| self.pop3_err(e))?;
        let user = &self.config.username;
        let login = match self.credentials.login(user).await? {
            crate::oauth::LoginWith::Sasl(mechanism, initial) => {
                client.authenticate(user, mechanism, &initial).await
            }
            crate::oauth::LoginWith::Password(password) => client.login(user, password).await,
        };
        if let Err(e) = login {
            if e.is_auth() {
                self.credentials.refused();
            }
            return Err(self.pop3_err(e));
        }
        let count = self.count(&mut client).await?;
        let uids = client
            .uidl_sized(count)
            .await
            .map_err(|e| self.pop3_err(e))?;
        Ok((client, uids))
    }

    /// STAT's message count, to size the listings; 0 from a server that refuses STAT.
    async fn count(&self, client: &mut pop3::Client) -> Result<usize> {
        match client.stat().await {
            Ok((n, _)) => Ok(n as usize),
            Err(pop3::Error::Server { .. }) => Ok(0),
            Err(e) => Err(self.pop3_err(e)),
        }
    }

    /// Counts a failed fetch against its UID; at `max_failures` the message is quarantined.
    async fn fetch_failed(
        &self,
        summary: &mut PollSummary,
        uid: &str,
        err: &pop3::Error,
        max_failures: u32,
    ) -> Result<()> {
        let shared = &self.shared;
        summary.fetch_failed += 1;
        let failures = shared
            .store
            .record_fetch_failure(&shared.mailbox, uid, &err.to_string(), max_failures)
            .await
            .map_err(|e| shared.store_err(e))?;
        tracing::warn!(mailbox = %shared.mailbox, %uid, failures, max_failures,
            "fetch failed, message left on the server: {err}");
        if failures == max_failures {
            crate::metrics::inc(
                crate::metrics::POP3_QUARANTINED,
                &[("mailbox", shared.mailbox.as_str())],
            );
        }
        if failures >= max_failures {
            summary.quarantined.push(Quarantined {
                uid: uid.to_owned(),
                failures,
            });
        }
        Ok(())
    }

    /// Polls every `poll_interval` until `shutdown` completes. A failed pass is logged and
    /// retried with exponential backoff (from 1s up to the poll interval); a pass that
    /// hit `batch_limit` is followed at once by the next.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let first_backoff = Duration::from_secs(1).min(self.config.poll_interval);
        let mut backoff = first_backoff;
        loop {
            let wait = match self.poll_once().await {
                Ok(summary) if summary.held_by.is_some() => {
                    crate::metrics::inc(crate::metrics::POP3_POLLS, &[("result", "held")]);
                    tracing::info!(mailbox = %self.shared.mailbox, "poll: {summary}");
                    backoff = first_backoff;
                    self.config.poll_interval
                }
                Ok(summary) => {
                    crate::metrics::inc(crate::metrics::POP3_POLLS, &[("result", "ok")]);
                    tracing::info!(mailbox = %self.shared.mailbox, "poll: {summary}");
                    backoff = first_backoff;
                    if summary.left_for_next_pass > 0 {
                        Duration::ZERO
                    } else {
                        self.config.poll_interval
                    }
                }
                Err(err) => {
                    crate::metrics::inc(crate::metrics::POP3_POLLS, &[("result", "error")]);
                    tracing::error!(mailbox = %self.shared.mailbox, retry_in = ?backoff, "poll failed: {err:#}");
                    let wait = backoff;
                    backoff = (backoff * 2).min(self.config.poll_interval.max(first_backoff));
                    wait
                }
            };
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

fn merge(summary: &mut PollSummary, p: PollSummary) {
    summary.processed += p.processed;
    summary.kinds.add(p.kinds);
    summary.unparseable += p.unparseable;
    summary.unsubscribes += p.unsubscribes;
    summary.events += p.events;
    summary.state_changes.extend(p.state_changes);
    summary.paused.extend(p.paused);
    summary.paused_campaigns.extend(p.paused_campaigns);
    summary.refused_domains.extend(p.refused_domains);
    summary.policy_failed += p.policy_failed;
    summary.already_recorded += p.already_recorded;
}

/// The classifying task: detector → policy chain, in fetch order, on its own task so it
/// runs beside the commits. Returns how many messages the chain failed on (they are left
/// on the server, unrecorded).
///
/// The policies' state is one session for the pass: a message judged here sees what the
/// messages before it wrote, though their commits may not have happened yet (a failed
/// commit ends the pass, and the next pass judges them again from the store).
async fn classify(
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<Job>,
    out: mpsc::Sender<Classified>,
) -> usize {
    let mut policy_failed = 0;
    let state = pipeline::state_of(&shared.store);
    while let Some(job) = jobs.recv().await {
        state.begin_message(std::time::SystemTime::now());
        let judged = pipeline::judge(&job.raw, &shared.chain.load_full(), &state).await;
        let Judged {
            detection,
            verdict,
            state_writes,
        } = match judged {
            Ok(j) => j,
            Err(err) => {
                tracing::warn!(uid = %job.uid, "policy chain failed, message left on the server: {err}");
                policy_failed += 1;
                continue;
            }
        };
        // Compressed here, beside the commits, not in them.
        let raw = shared.keep_raw.and_then(|_| {
            store::archive::RawMessage::compress(&job.raw)
                .map_err(
                    |e| tracing::warn!(uid = %job.uid, "not archived: compressing failed: {e}"),
                )
                .ok()
        });
        let next = Classified {
            pos: job.pos,
            uid: job.uid,
            size: job.listed,
            detection,
            verdict,
            raw,
            state_writes,
        };
        if out.send(next).await.is_err() {
            // The commit task stopped (a store error or a failpoint).
            break;
        }
    }
    policy_failed
}

/// The commit task: correlate → commit, in fetch order; the messages waiting when a
/// commit starts share its transaction (group commit), and each committed message is
/// reported back for deletion.
async fn process(
    shared: Arc<Shared>,
    mut jobs: mpsc::Receiver<Classified>,
    done: mpsc::UnboundedSender<Done>,
) -> Result<PollSummary> {
    let mut summary = PollSummary::default();
    let mut batch = Vec::with_capacity(COMMIT_BATCH);
    while let Some(first) = jobs.recv().await {
        // Group commit: whatever has arrived meanwhile goes into the same transaction.
        batch.push(first);
        while batch.len() < COMMIT_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut items = Vec::with_capacity(batch.len());
        let mut fetched = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            if let Some(signer) = &shared.unsubscribe
                && let Some(change) = pipeline::unsubscribe(&shared.store, signer, &job.detection)
                    .await
                    .map_err(|e| shared.store_err(e))?
            {
                summary.unsubscribes += 1;
                if change.from != change.to {
                    summary.state_changes.push(change);
                }
            }
            let mut ctx = EventContext::mailbox(shared.mailbox.clone(), job.uid.clone());
            ctx.size = job.size;
            ctx.raw = job.raw;
            ctx.state_writes = job.state_writes;
            let ctx = pipeline::correlate(&shared.store, ctx, &job.detection)
                .await
                .map_err(|e| shared.store_err(e))?;
            fetched.push((job.pos, job.uid));
            items.push((ctx, job.verdict));
        }
        let outcomes = shared
            .store
            .record_verdicts(&items, &shared.rules)
            .await
            .map_err(|e| shared.store_err(e))?;
        for (((pos, uid), (ctx, verdict)), outcome) in fetched.into_iter().zip(items).zip(outcomes)
        {
            shared.failpoint(Step::AfterCommit, &uid)?;
            let unparseable = ctx.error.is_some();
            if outcome.duplicate {
                summary.already_recorded += 1;
            } else {
                summary.processed += 1;
                summary.kinds.count(verdict.kind);
                crate::metrics::count_verdict(&verdict);
                summary.unparseable += usize::from(unparseable);
                summary.events += outcome.events;
                crate::metrics::count_booked(&outcome);
                for f in &outcome.failures {
                    if f.blame == crate::verdict::Blame::Sender
                        && let Some(d) = &f.domain
                    {
                        summary.refused_domains.insert(d.clone());
                    }
                }
                summary.state_changes.extend(outcome.changes);
                summary.paused.extend(outcome.paused);
                summary.paused_campaigns.extend(outcome.paused_campaigns);
            }
            let delete = shared.wants_delete(verdict.kind, unparseable);
            if done.send(Done { pos, delete }).is_err() {
                return Ok(summary);
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod test {
    use super::*;

    /// The listing becomes the pass's entries in place (no second buffer of 100 000
    /// entries), with LIST's sizes matched by message number.
    #[test]
    fn listing_becomes_the_pass_entries_in_place() {
        assert_eq!(
            std::mem::size_of::<Listed>(),
            std::mem::size_of::<pop3::UidEntry>()
        );
        assert_eq!(
            std::mem::align_of::<Listed>(),
            std::mem::align_of::<pop3::UidEntry>()
        );
        let uids: Vec<pop3::UidEntry> = (1..=3)
            .map(|msg| pop3::UidEntry {
                msg,
                uid: format!("u{msg}"),
            })
            .collect();
        let buffer = uids.as_ptr().cast::<u8>();
        let list = vec![
            pop3::ListEntry { msg: 3, size: 30 },
            pop3::ListEntry { msg: 1, size: 10 },
        ];
        let msgs = listed(uids, list);
        assert_eq!(
            msgs.as_ptr().cast::<u8>(),
            buffer,
            "a new buffer was allocated"
        );
        let got: Vec<(&str, Option<u64>, u32)> =
            msgs.iter().map(|m| (&*m.uid, m.size(), m.msg)).collect();
        assert_eq!(
            got,
            [("u1", Some(10), 1), ("u2", None, 2), ("u3", Some(30), 3)]
        );
    }

    #[test]
    fn summary_names_quarantined_messages() {
        let summary = PollSummary {
            listed: 1,
            quarantined: vec![Quarantined {
                uid: "000042".into(),
                failures: 3,
            }],
            ..PollSummary::default()
        };
        let text = summary.to_string();
        assert!(text.contains("1 quarantined"), "{text}");
        assert!(
            text.contains("quarantined: message 000042 (3 failed fetches)"),
            "{text}"
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(json["quarantined"][0]["uid"], "000042");
    }
}
