//! The IMAP source: a folder on an IMAP server → [`Stages::ingest`] (detect → policy chain
//! → unsubscribe → correlate → commit, + archive) → MOVE or delete, and IDLE for new mail.
//!
//! # A pass
//!
//! [`ImapSource::poll_once`] takes the mailbox's lease (`mailbox:NAME`, renewed while the
//! pass runs, as the POP3 poller does: one source per folder across processes and
//! hosts), connects, logs in, SELECTs the folder and reads its UIDVALIDITY. A message's
//! id in the ledger is `UIDVALIDITY.UID` under the mailbox name `mailbox` (default
//! `username@host/FOLDER`). Then, for every message of the folder:
//!
//! - in the ledger already (committed by a pass that ended before its MOVE or delete):
//!   only moved or deleted, never counted again;
//! - quarantined, larger than `max_message_size` (RFC822.SIZE), or over `batch_limit`:
//!   left in the folder and reported;
//! - else fetched (`BODY.PEEK[]`: `\Seen` is not set), handed to [`Stages::ingest`], and
//!   only once that has committed moved to `unrecognised_folder` (kind other, or
//!   unparseable) or `processed_folder`, created when missing (UID MOVE; UID COPY +
//!   `\Deleted` + expunge on a server without MOVE), else deleted (`\Deleted` + UID
//!   EXPUNGE) with `delete_processed`, else left where it is: the ledger keeps it from
//!   being counted again. MOVEs and deletes are sent [`ACTION_BATCH`] messages at a
//!   time (one UID set per command) and at the end of the pass.
//!
//! A policy failure leaves the message in place, unrecorded (the next pass tries again).
//! A failed fetch is that message's: counted against its id, quarantined after
//! `max_fetch_failures`, as for POP3; a fetch that lost the connection ends the pass.
//!
//! # UIDVALIDITY
//!
//! A server that rebuilds a folder gives it a new UIDVALIDITY and renumbers every
//! message: the ids `V.UID` of the messages it still holds are all new, and counting
//! them by id would count each one again. So a message is also known by its content:
//! before a fetched message is recorded, the SHA-256 of its bytes is stored beside its id
//! (`imap_digests`). A message whose digest is that of another id which is in the ledger
//! is that message, renumbered: its new id gets a ledger row like the old one's (no
//! events: nothing is counted), and it is moved or deleted as the old one would have
//! been. The digest is written before the commit, so every recorded message's digest is
//! known; a digest whose id never committed (a pass that stopped in between) is ignored.
//! Content is compared whatever the UIDVALIDITY, so this needs no memory of the last
//! one seen, and it holds for any renumbering. Its cost: one indexed lookup and one
//! insert per new message. Two deliveries of byte-identical mail are counted once, which
//! is the safe side of the promise (a recipient is marked only when we are sure). A
//! server that rewrites messages while rebuilding (other bytes) would defeat it; Dovecot
//! keeps the files.
//!
//! # IDLE
//!
//! [`ImapSource::run`] keeps one connection: a pass, then, when the server offers IDLE
//! and `idle = true`, IDLE until the server reports a new message (EXISTS), the next
//! pass at once. IDLE is re-issued at the latest every 29 minutes (RFC 2177), or every
//! `poll_interval` when that is shorter; a new message reported between commands (during
//! a pass) runs another pass before IDLE. Without IDLE it logs out and passes every
//! `poll_interval`. A lost connection or a failed pass is retried with exponential
//! backoff (1s up to `poll_interval`), reconnecting, for ever; the shutdown future ends
//! IDLE with DONE and logs out.

mod client;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use sha2::Digest as _;

use crate::config::{self, ImapConfig};
use crate::mailbox::{MAILBOX_LEASE, Quarantined, TooLarge};
use crate::pipeline::{IngestError, Stages};
use crate::store::{self, EventContext, LedgerEntry, Store};
use crate::verdict::MessageKind;

use client::{Connection, Wake};

/// The longest wait in IDLE before it is re-issued (RFC 2177: at most 29 minutes).
pub const IDLE_REISSUE: Duration = Duration::from_secs(29 * 60);

/// Errors of the IMAP source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TCP connection failed.
    #[error("imap connect {host}:{port}: {cause}")]
    Connect {
        /// The host.
        host: String,
        /// The port.
        port: u16,
        /// Why.
        cause: std::io::Error,
    },
    /// TLS failed (configuring, the handshake, the certificate).
    #[error("imap TLS {during}: {message}")]
    Tls {
        /// The step.
        during: String,
        /// What failed.
        message: String,
    },
    /// The server did not answer in time.
    #[error("imap {during}: no answer within {timeout:?}")]
    Timeout {
        /// The command.
        during: String,
        /// The section's `timeout`.
        timeout: Duration,
    },
    /// The server refused the login.
    #[error("imap login refused: {0}")]
    Auth(String),
    /// A command failed or the connection was lost.
    #[error("imap {during}: {cause}")]
    Imap {
        /// The command.
        during: String,
        /// What the client saw.
        cause: async_imap::error::Error,
    },
    /// The server said something this source cannot work with.
    #[error("imap: {0}")]
    Protocol(String),
    /// The password variable is not set.
    #[error("imap password: {0}")]
    Password(#[from] config::Error),
    /// No OAuth 2.0 access token could be had (`auth = "xoauth2"` / `"oauthbearer"`).
    #[error("imap login token: {0}")]
    Token(#[from] crate::oauth::Error),
    /// The store failed; the message stays in the folder.
    #[error("mailbox {mailbox}: {cause}")]
    Store {
        /// The mailbox's name.
        mailbox: String,
        /// What failed.
        cause: store::Error,
    },
    /// A failpoint stopped the pass as a crash would (tests only).
    #[error("failpoint {step:?} at message {uid}")]
    Failpoint {
        /// Where.
        step: Step,
        /// Which message (`UIDVALIDITY.UID`).
        uid: String,
    },
}

impl Error {
    /// True when the server refused the login.
    pub fn is_auth(&self) -> bool {
        matches!(self, Error::Auth(_))
    }

    /// True when a command was refused (NO, BAD) without losing the connection.
    fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Imap {
                cause: async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_),
                ..
            }
        )
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Points in a pass where a test can stop it as a crash would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A message was fetched; nothing committed for it yet.
    AfterFetch,
    /// A message's verdict was committed; it is not moved or deleted yet.
    AfterCommit,
}

/// A test hook: called at every [`Step`] with the message's id; returning true stops the
/// pass there.
pub type Failpoint = Arc<dyn Fn(Step, &str) -> bool + Send + Sync>;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[must_use]
pub struct ImapSummary {
    /// The folder's UIDVALIDITY.
    pub uid_validity: u32,
    /// Messages in the folder.
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
    /// Recipients whose state changed.
    pub state_changes: Vec<store::StateChange>,
    /// Messages already in the ledger (an earlier pass committed them): only moved or
    /// deleted.
    pub already_recorded: usize,
    /// Messages found by their content to be recorded ones under a new id (the server
    /// renumbered the folder): not counted, only moved or deleted.
    pub renumbered: usize,
    /// Messages moved to `processed_folder` or `unrecognised_folder`.
    pub moved: usize,
    /// Messages deleted.
    pub deleted: usize,
    /// Recorded messages whose MOVE or delete the server refused (they stay; the next
    /// pass tries again).
    pub action_failed: usize,
    /// Messages left in the folder because they are too large.
    pub too_large: Vec<TooLarge>,
    /// Messages the policy chain failed on (left in the folder, unrecorded).
    pub policy_failed: usize,
    /// Failed fetches (the messages stay in the folder).
    pub fetch_failed: usize,
    /// Messages not fetched because their fetches failed `max_fetch_failures` times.
    pub quarantined: Vec<Quarantined>,
    /// Messages over `batch_limit`, left for the next pass.
    pub left_for_next_pass: usize,
    /// Set when another source held the folder's lease: nothing was done.
    pub held_by: Option<String>,
}

impl std::fmt::Display for ImapSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(holder) = &self.held_by {
            return write!(f, "not polled: {holder} is reading this folder");
        }
        write!(
            f,
            "{} listed, {} processed ({}, {} unparseable), {} events, {} state changes, {} already recorded, {} renumbered, {} moved, \
             {} deleted, {} too large, {} policy failures, {} fetch failures, {} quarantined, {} left for the next pass",
            self.listed,
            self.processed,
            self.kinds,
            self.unparseable,
            self.events,
            self.state_changes.len(),
            self.already_recorded,
            self.renumbered,
            self.moved,
            self.deleted,
            self.too_large.len(),
            self.policy_failed,
            self.fetch_failed,
            self.quarantined.len(),
            self.left_for_next_pass,
        )?;
        if self.action_failed > 0 {
            write!(
                f,
                "\n  {} recorded messages could not be moved or deleted (tried again next pass)",
                self.action_failed
            )?;
        }
        for q in &self.quarantined {
            write!(
                f,
                "\n  quarantined: message {} ({} failed fetches), left in the folder",
                q.uid, q.failures
            )?;
        }
        Ok(())
    }
}

/// The name an `[imap]` section's folder has in the ledger: its `mailbox`, else
/// `username@host/FOLDER`.
pub fn mailbox_name(config: &ImapConfig) -> String {
    config
        .mailbox
        .clone()
        .unwrap_or_else(|| format!("{}@{}/{}", config.username, config.host, config.folder))
}

/// Recorded messages moved or deleted in one command, at most.
const ACTION_BATCH: usize = 200;

/// MOVEs and deletes of recorded messages not sent yet, by UID.
#[derive(Debug, Default)]
struct Pending {
    moves: std::collections::BTreeMap<String, Vec<u32>>,
    deletes: Vec<u32>,
}

impl Pending {
    fn len(&self) -> usize {
        self.deletes.len() + self.moves.values().map(Vec::len).sum::<usize>()
    }
}

/// What happens to a recorded message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Leave,
    Move(String),
    Delete,
}

/// Reads one IMAP folder.
pub struct ImapSource {
    config: ImapConfig,
    credentials: crate::oauth::Credentials,
    store: Store,
    stages: Stages,
    mailbox: String,
    owner: String,
    lease: Duration,
    keep_raw: Option<Duration>,
    failpoint: Option<Failpoint>,
}

impl std::fmt::Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource")
            .field("config", &self.config)
            .field("mailbox", &self.mailbox)
            .finish_non_exhaustive()
    }
}

impl ImapSource {
    /// A source for the `[imap]` section, logging in as its `auth` says (the password of
    /// the variable it names, or SASL XOAUTH2 / OAUTHBEARER with an access token, see
    /// [`crate::oauth`]); messages go through `stages`.
    ///
    /// # Errors
    /// [`Error::Password`] when a variable it names is not set.
    pub fn from_config(config: &ImapConfig, store: Store, stages: Stages) -> Result<ImapSource> {
        let credentials = crate::oauth::Credentials::from_login("imap", &config.login()).map_err(
            |e| match e {
                crate::oauth::Error::Config(e) => Error::Password(e),
                e => Error::Token(e),
            },
        )?;
        let mut source = ImapSource::new(config.clone(), String::new(), store, stages);
        source.credentials = credentials;
        Ok(source)
    }

    /// A source with an explicit password. Its name in the ledger is [`mailbox_name`].
    pub fn new(config: ImapConfig, password: String, store: Store, stages: Stages) -> ImapSource {
        ImapSource {
            mailbox: mailbox_name(&config),
            config,
            credentials: crate::oauth::Credentials::Password(password),
            store,
            stages,
            owner: store::leases::owner_name(),
            lease: MAILBOX_LEASE,
            keep_raw: None,
            failpoint: None,
        }
    }

    /// After each pass, deletes what the archive holds from longer than `keep` ago
    /// (`[store] keep_raw`; zero: nothing is pruned).
    pub fn with_prune(mut self, keep: Duration) -> ImapSource {
        self.keep_raw = (!keep.is_zero()).then_some(keep);
        self
    }

    /// Holds the folder's lease for `lease` between heartbeats instead of
    /// [`MAILBOX_LEASE`] (tests).
    pub fn with_lease(mut self, lease: Duration) -> ImapSource {
        self.lease = lease.max(Duration::from_millis(30));
        self
    }

    /// Installs a failpoint (tests: stop a pass where a crash would).
    pub fn with_failpoint(mut self, failpoint: Failpoint) -> ImapSource {
        self.failpoint = Some(failpoint);
        self
    }

    /// The folder's name in the ledger.
    pub fn mailbox(&self) -> &str {
        &self.mailbox
    }

    fn store_err(&self, cause: store::Error) -> Error {
        Error::Store {
            mailbox: self.mailbox.clone(),
            cause,
        }
    }

    fn failpoint(&self, step: Step, uid: &str) -> Result<()> {
        match &self.failpoint {
            Some(f) if f(step, uid) => Err(Error::Failpoint {
                step,
                uid: uid.to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// Where a recorded message of this kind goes.
    fn action(&self, kind: MessageKind, unparseable: bool) -> Action {
        let unrecognised = kind == MessageKind::Other || unparseable;
        if unrecognised {
            if let Some(folder) = &self.config.unrecognised_folder {
                return Action::Move(folder.clone());
            }
            if self.config.keep_other {
                return Action::Leave;
            }
        }
        if let Some(folder) = &self.config.processed_folder {
            return Action::Move(folder.clone());
        }
        if self.config.delete_processed {
            Action::Delete
        } else {
            Action::Leave
        }
    }

    /// Connects and logs in.
    async fn connect(&self) -> Result<Connection> {
        Connection::open(&self.config, &self.credentials).await
    }

    /// One pass on a connection of its own (see the module docs), unless another source
    /// holds the folder: then nothing but [`ImapSummary::held_by`].
    ///
    /// # Errors
    /// Connecting, logging in or a command failed ([`Error::is_auth`] for a refused
    /// login), or the store failed. What was committed stays committed; the next pass
    /// moves or deletes it.
    pub async fn poll_once(&self) -> Result<ImapSummary> {
        let mut conn: Option<Connection> = None;
        let result = self.leased_pass(&mut conn).await;
        if let Some(c) = conn {
            c.logout().await;
        }
        result
    }

    /// A pass under the folder's lease, on `conn` (opened when `None`).
    #[tracing::instrument(name = "rebound.imap.pass", skip_all, fields(mailbox = %self.mailbox))]
    async fn leased_pass(&self, conn: &mut Option<Connection>) -> Result<ImapSummary> {
        let lost = AtomicBool::new(false);
        let pass = async {
            if conn.is_none() {
                *conn = Some(self.connect().await?);
            }
            match conn.as_mut() {
                Some(c) => self.pass(c, &lost).await,
                None => Err(Error::Protocol("no connection".into())),
            }
        };
        let leased = crate::mailbox::under_lease(
            &self.store,
            &self.mailbox,
            &self.owner,
            self.lease,
            self.keep_raw,
            &lost,
            pass,
        )
        .await
        .map_err(|e| self.store_err(e))?;
        match leased {
            crate::mailbox::Leased::Ran(result) => result,
            crate::mailbox::Leased::HeldBy(holder) => Ok(ImapSummary {
                held_by: Some(holder.unwrap_or_else(|| "another source".into())),
                ..ImapSummary::default()
            }),
        }
    }

    /// The pass itself, once the lease is held; `lost` is set when it lapses.
    async fn pass(&self, conn: &mut Connection, lost: &AtomicBool) -> Result<ImapSummary> {
        let (validity, exists) = conn.select(&self.config.folder).await?;
        let listing = if exists == 0 {
            Vec::new()
        } else {
            conn.list().await?
        };
        let mut summary = ImapSummary {
            uid_validity: validity,
            listed: listing.len(),
            ..ImapSummary::default()
        };
        let ids: Vec<String> = listing
            .iter()
            .map(|l| format!("{validity}.{}", l.uid))
            .collect();
        let max_failures = self.config.max_fetch_failures.max(1);
        let failures = self
            .store
            .fetch_failure_states(&self.mailbox, ids.iter(), max_failures)
            .await
            .map_err(|e| self.store_err(e))?;
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let ledger = self
            .store
            .ledger_entries(&self.mailbox, &id_refs)
            .await
            .map_err(|e| self.store_err(e))?;

        let mut to_fetch = Vec::new();
        let mut pending = Pending::default();
        for (entry, id) in listing.iter().zip(&ids) {
            if let Some(done) = ledger.get(id.as_str()) {
                summary.already_recorded += 1;
                let action = self.action(done.kind, done.unparseable);
                self.act(conn, &mut summary, &mut pending, entry.uid, action)
                    .await?;
                continue;
            }
            let size = entry.size.unwrap_or(0);
            if let Some(f) = failures.get(id.as_str()).filter(|f| f.quarantined) {
                summary.quarantined.push(Quarantined {
                    uid: id.clone(),
                    failures: f.failures,
                });
            } else if size > self.config.max_message_size {
                tracing::warn!(mailbox = %self.mailbox, uid = %id, size,
                    limit = self.config.max_message_size,
                    "message larger than max_message_size: left in the folder");
                summary.too_large.push(TooLarge {
                    uid: id.clone(),
                    size,
                });
            } else if to_fetch.len() >= self.config.batch_limit {
                summary.left_for_next_pass += 1;
            } else {
                to_fetch.push((entry.uid, entry.size, id.as_str()));
            }
        }

        for (uid, size, id) in to_fetch {
            if lost.load(Ordering::Relaxed) {
                break;
            }
            let raw = match conn.fetch(uid).await {
                Ok(Some(raw)) => raw,
                // Expunged since the listing (another client): nothing to do.
                Ok(None) => continue,
                Err(err) => {
                    summary.fetch_failed += 1;
                    let failures = self
                        .store
                        .record_fetch_failure(&self.mailbox, id, &err.to_string(), max_failures)
                        .await
                        .map_err(|e| self.store_err(e))?;
                    tracing::warn!(mailbox = %self.mailbox, uid = %id, failures, max_failures,
                        "fetch failed, message left in the folder: {err}");
                    if failures >= max_failures {
                        summary.quarantined.push(Quarantined {
                            uid: id.to_owned(),
                            failures,
                        });
                    }
                    if err.is_refusal() {
                        continue;
                    }
                    return Err(err);
                }
            };
            self.failpoint(Step::AfterFetch, id)?;
            let digest = hex::encode(sha2::Sha256::digest(&raw));
            let earlier = self
                .store
                .imap_recorded_as(&self.mailbox, id, &digest)
                .await
                .map_err(|e| self.store_err(e))?;
            if let Some(earlier) = earlier {
                let entry: Option<LedgerEntry> = self
                    .store
                    .ledger_entry(&self.mailbox, &earlier)
                    .await
                    .map_err(|e| self.store_err(e))?;
                if let Some(entry) = entry {
                    self.store
                        .alias_ledger(&self.mailbox, &earlier, id)
                        .await
                        .map_err(|e| self.store_err(e))?;
                    tracing::info!(mailbox = %self.mailbox, uid = %id, recorded_as = %earlier,
                        "message recorded before under another id (the folder was renumbered): not counted again");
                    summary.renumbered += 1;
                    let action = self.action(entry.kind, entry.unparseable);
                    self.act(conn, &mut summary, &mut pending, uid, action)
                        .await?;
                    continue;
                }
            }
            let mut ctx = EventContext::imap(self.mailbox.clone(), id);
            ctx.size = size;
            let ingested = match self.stages.ingest(&self.store, ctx, &raw).await {
                Ok(i) => i,
                Err(IngestError::Policy(err)) => {
                    summary.policy_failed += 1;
                    tracing::warn!(mailbox = %self.mailbox, uid = %id,
                        "policy chain failed, message left in the folder: {err}");
                    continue;
                }
                Err(IngestError::Store(e)) => return Err(self.store_err(e)),
            };
            self.failpoint(Step::AfterCommit, id)?;
            let outcome = ingested.outcome;
            if outcome.duplicate {
                summary.already_recorded += 1;
            } else {
                summary.processed += 1;
                summary.kinds.count(ingested.verdict.kind);
                crate::metrics::count_verdict(&ingested.verdict);
                summary.unparseable += usize::from(ingested.unparseable);
                summary.events += outcome.events;
                crate::metrics::count_booked(&outcome);
                summary.state_changes.extend(outcome.changes);
            }
            if let Some(change) = ingested.unsubscribed
                && change.from != change.to
            {
                summary.state_changes.push(change);
            }
            let action = self.action(ingested.verdict.kind, ingested.unparseable);
            self.act(conn, &mut summary, &mut pending, uid, action)
                .await?;
        }
        self.flush(conn, &mut summary, &mut pending).await?;
        for q in &summary.quarantined {
            tracing::warn!(mailbox = %self.mailbox, uid = %q.uid, failures = q.failures,
                "message quarantined after repeated fetch failures: left in the folder, not fetched");
        }
        Ok(summary)
    }

    /// Queues a recorded message's MOVE or delete; the queue is sent at
    /// [`ACTION_BATCH`] messages and at the end of the pass.
    async fn act(
        &self,
        conn: &mut Connection,
        summary: &mut ImapSummary,
        pending: &mut Pending,
        uid: u32,
        action: Action,
    ) -> Result<()> {
        match action {
            Action::Leave => return Ok(()),
            Action::Move(folder) => pending.moves.entry(folder).or_default().push(uid),
            Action::Delete => pending.deletes.push(uid),
        }
        if pending.len() >= ACTION_BATCH {
            self.flush(conn, summary, pending).await?;
        }
        Ok(())
    }

    /// Sends the queued MOVEs and deletes: one command set per folder and one for the
    /// deletes. A refusal (NO) is counted and those messages stay (the next pass tries
    /// again: they are in the ledger); a lost connection ends the pass.
    async fn flush(
        &self,
        conn: &mut Connection,
        summary: &mut ImapSummary,
        pending: &mut Pending,
    ) -> Result<()> {
        for (folder, uids) in std::mem::take(&mut pending.moves) {
            match conn.move_to(&uids, &folder).await {
                Ok(()) => summary.moved += uids.len(),
                Err(e) if e.is_refusal() => {
                    summary.action_failed += uids.len();
                    tracing::warn!(mailbox = %self.mailbox, %folder, messages = uids.len(),
                        "recorded messages not moved: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        let uids = std::mem::take(&mut pending.deletes);
        match conn.delete(&uids).await {
            Ok(()) => summary.deleted += uids.len(),
            Err(e) if e.is_refusal() => {
                summary.action_failed += uids.len();
                tracing::warn!(mailbox = %self.mailbox, messages = uids.len(),
                    "recorded messages not deleted: {e}");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Reads the folder until `shutdown` completes: a pass, then IDLE (or a sleep of
    /// `poll_interval`), again and again; a failure is logged and retried with
    /// exponential backoff (1s up to `poll_interval`), reconnecting. Never gives up.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let interval = self.config.poll_interval.max(Duration::from_millis(10));
        let first_backoff = Duration::from_secs(1).min(interval);
        let mut backoff = first_backoff;
        let mut conn: Option<Connection> = None;
        loop {
            let failed = match self.leased_pass(&mut conn).await {
                Ok(summary) => {
                    let result = if summary.held_by.is_some() {
                        "held"
                    } else {
                        "ok"
                    };
                    crate::metrics::inc(crate::metrics::IMAP_PASSES, &[("result", result)]);
                    tracing::info!(mailbox = %self.mailbox, "imap pass: {summary}");
                    backoff = first_backoff;
                    if summary.left_for_next_pass > 0 {
                        continue;
                    }
                    None
                }
                Err(err) => Some(err),
            };
            if let Some(err) = failed {
                crate::metrics::inc(crate::metrics::IMAP_PASSES, &[("result", "error")]);
                tracing::error!(mailbox = %self.mailbox, retry_in = ?backoff, "imap pass failed: {err:#}");
                if let Some(c) = conn.take() {
                    c.logout().await;
                }
                let wait = backoff;
                backoff = (backoff * 2).min(interval.max(first_backoff));
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
            let idle = self.config.idle && conn.as_ref().is_some_and(|c| c.has_idle);
            let Some(c) = conn.as_mut().filter(|_| idle) else {
                if let Some(c) = conn.take() {
                    c.logout().await;
                }
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(interval) => continue,
                }
            };
            if c.new_mail_reported() {
                continue;
            }
            match c.idle(interval.min(IDLE_REISSUE), shutdown.as_mut()).await {
                Ok(Wake::NewMail) => {
                    crate::metrics::inc(crate::metrics::IMAP_IDLE_WAKEUPS, &[]);
                    tracing::debug!(mailbox = %self.mailbox, "new mail reported in IDLE");
                }
                Ok(Wake::Timeout) => {}
                Ok(Wake::Shutdown) => {
                    if let Some(c) = conn.take() {
                        c.logout().await;
                    }
                    return;
                }
                Err(err) => {
                    tracing::warn!(mailbox = %self.mailbox, retry_in = ?backoff,
                        "imap connection lost in IDLE: {err:#}");
                    conn = None;
                    let wait = backoff;
                    backoff = (backoff * 2).min(interval.max(first_backoff));
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn config(extra: &str) -> ImapConfig {
        let text = format!(
            "host = \"imap.example.org\"\nport = 993\ntls = \"implicit\"\nusername = \"b\"\n\
             password_env = \"P\"\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn uid_sets_write_runs_as_ranges() {
        assert_eq!(client::uid_set(&[9, 1, 2, 3, 7, 10, 3]), "1:3,7,9:10");
        assert_eq!(client::uid_set(&[5]), "5");
        assert_eq!(client::uid_set(&[u32::MAX, 1]), "1,4294967295");
    }

    #[test]
    fn mailbox_name_names_user_host_and_folder() {
        assert_eq!(mailbox_name(&config("")), "b@imap.example.org/INBOX");
        assert_eq!(
            mailbox_name(&config("folder = \"Bounces\"")),
            "b@imap.example.org/Bounces"
        );
        assert_eq!(mailbox_name(&config("mailbox = \"m\"")), "m");
    }

    #[test]
    fn summary_says_what_was_moved_and_renumbered() {
        let s = ImapSummary {
            listed: 3,
            renumbered: 2,
            moved: 1,
            ..ImapSummary::default()
        };
        let text = s.to_string();
        assert!(text.contains("2 renumbered, 1 moved"), "{text}");
    }
}
