//! Rate limits shared by all sending workers: the stage between the queue and the SMTP
//! sender. A worker calls [`RateLimiter::acquire`] before every message and gets through
//! only when one more message keeps *every* configured limit; a server that answers
//! "slow down" (421, 454, a rate-limit 4xx) calls [`RateLimiter::throttled`], which pauses
//! every worker for a growing back-off.
//!
//! A limit is a [`RateSpec`]: "at most N messages in any window of one period", written
//! `14/s`, `50000/day`, `1_000/hour`, `600/10m` or `100/min,max_burst=10`. Limits of up to
//! a minute (a provider's sending *rate*) are [`Mode::Smooth`]; longer ones (a *quota*,
//! "50 000 per 24 hours") are a rolling [`Mode::Window`]: up to N at the pace the other
//! limits allow, then the next only when the oldest leaves the window (`,smooth` or
//! `,window` after the spec overrides this). A window is seeded from the store's recent
//! sends, so a restart does not reset a daily quota.
//!
//! A smooth limit is a GCRA limiter (the `governor` crate), and the emission interval `T`
//! is chosen so that N + 1 messages can never fit in one period:
//!
//! ```text
//! T = (period × (1 + SAFETY) + τ) / (N − B + 1)
//! ```
//!
//! * B is the burst (`max_burst`, default 1): B messages may go back to back, so the
//!   sustained rate drops to N − B + 1 per period.
//! * τ is a small tolerance (an eighth of `period / N`, at most 2 ms): a worker that
//!   wakes a little late may catch up by τ, so the rate does not drift below the limit
//!   because of timer latency. It is paid for in `T`.
//! * SAFETY (0.5 %) keeps the last of N + 1 messages at least that much beyond one
//!   period, so jitter between the sender and the server's clock does not make the
//!   *server* count N + 1 in a window.
//!
//! Governor counts whole cells, so a message costs [`CELLS_PER_MESSAGE`] cells and τ is
//! a few of them. The gate that matters is when the SMTP transaction starts: the sender
//! waits for the limiter only once it holds a ready connection
//! ([`crate::smtp::Mailer::send_gated`]), so connecting never bunches messages up.
//!
//! ## One limit for every process on a store
//!
//! Governor's state lives in one process, so two `rebound send` (or `send` beside
//! `serve`) would each get the whole limit. A limiter made [`with_store`](RateLimiter::with_store)
//! keeps its limits and its throttling pause in the store instead. The smooth limits'
//! GCRA state: one `rate_limits` row per
//! limit (named by its spec, so processes configured alike share it) holding the
//! theoretical arrival time (TAT, µs of the wall clock). A process reserves a few send
//! times at once in one write transaction ([`crate::store::Store::reserve_rate`]): for
//! each, `t = max(now, TAT − (B − 1)·T)` over every limit, then `TAT = max(TAT, t) + T`,
//! the same GCRA as above, so the SQLite write lock makes the reservations of all
//! processes one sequence. It reserves about 100 ms of sends (1 to 32) per round trip,
//! so the store sees a few transactions a second, not one per message. The interval is
//! [`SHARED_SAFETY`] (2 %) longer than in-process, for the jitter between processes.
//! Reserved times are absolute (the shared wall clock), mapped to the process's clock by
//! a pair read before the round trip, so a slow commit cannot shift one process's
//! schedule against another's (it did: 51 of 50/s in one second), and start 20 ms
//! ahead. A reserved time is used only within `min(τ, 1 ms)` after it comes (the worker that
//! takes it sends then); a time nobody took in that slack is dropped, never sent late,
//! because a late message followed by punctual ones could put N + 1 in a window.
//! Dropped times cost only rate, never the promise. This was chosen over a lock held for the whole run
//! (one sender at a time) and over dividing the limit between processes (a process
//! would have to know how many others there are); its cost is a transaction per
//! reservation and a rate that can fall a little short of the limit when workers are
//! slower than the limit.
//!
//! The rolling windows (quotas) are shared the same way, as a sliding log: the same
//! transaction reads, per window, the newest time it holds and the times that decide
//! when the next few may go (the N-th newest and the few after it, counting the times
//! just taken), and writes every time it reserves as a `rate_window_sends` row. A time
//! goes after every time in the log (so the log stays in order) and only once the N-th
//! newest has left the window; a window with no room within the reservation's 100 ms is
//! waited for (and the wait is known to [`RateLimiter::ready_in`]) instead. A row stays
//! in the window for its span plus the slack in which it may still be taken plus 25 ms
//! for the jitter between processes, and is deleted by the first reservation after
//! that. A reserved time dropped unused is taken out of the log again at the process's
//! next reservation, and those still held when a run ends are given back
//! ([`RateLimiter::release_unused`]); those of a process that dies (one reservation at
//! most) count until they leave the window, never longer. With windows only, a
//! reservation takes 8 times, each usable for 50 ms. The in-process window, seeded
//! from the store's recent sends at start, is kept as well: it covers sends made
//! before the store kept the log.
//!
//! A throttling pause is shared by every process sending through one relay
//! ([`RateLimiter::with_relay`], `host:port`): [`RateLimiter::throttled`] records it in
//! the store (`rate_pauses`: until, streak; a pause still on is only lengthened), and a
//! reservation that finds it on reserves nothing and pauses this process's workers until
//! it ends, taking its streak, so the next pause after it doubles as if heard here. The
//! reserved times a process holds when the pause begins (about 100 ms) may still be
//! used. A limiter with no limits reads the pause at most every 100 ms.

use std::collections::VecDeque;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::config::RateLimitConfig;
use crate::store::Store;
use crate::store::campaigns::{RateRequest, RateWindow};

/// Errors parsing a [`RateSpec`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not `N/period[,max_burst=B]`.
    #[error("invalid rate limit {0:?}: expected N/period, e.g. 14/s or 50000/day")]
    Syntax(String),
    /// The limit is zero.
    #[error("invalid rate limit {0:?}: the limit must be at least 1")]
    Zero(String),
    /// The period is zero or unreadable.
    #[error("invalid rate limit {0:?}: bad period")]
    Period(String),
    /// The burst is zero or larger than the limit.
    #[error("invalid rate limit {0:?}: max_burst must be between 1 and the limit")]
    Burst(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// "At most `limit` messages in any window of `period`".
///
/// # Examples
/// ```
/// use rebound::ratelimit::RateSpec;
/// let r: RateSpec = "50000/day".parse().unwrap();
/// assert_eq!(r.limit.get(), 50000);
/// assert_eq!(r.to_string(), "50000/day");
/// assert!("0/s".parse::<RateSpec>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateSpec {
    /// How many messages.
    pub limit: NonZeroU32,
    /// The window.
    pub period: Duration,
    /// How many may go back to back (default 1: evenly spaced). A larger burst lowers
    /// the sustained rate to (limit − burst + 1) per period, so the window promise holds.
    /// Only for [`Mode::Smooth`].
    pub max_burst: Option<NonZeroU32>,
    /// How the limit is kept.
    pub mode: Mode,
}

/// How a [`RateSpec`] is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// GCRA: messages evenly spaced (or in bursts of `max_burst`). The default for
    /// periods up to a minute, where it is the provider's "N per second".
    Smooth,
    /// A rolling window: up to N back to back, then the next only when the oldest of
    /// the last N leaves the window. The default for periods longer than a minute,
    /// where it is a provider's quota ("50 000 per 24 hours"): GCRA would spread such a
    /// quota evenly over the day. Seeded from the store's recent sends at start.
    Window,
}

impl Mode {
    /// The mode a period gets when the text does not say.
    pub fn default_for(period: Duration) -> Mode {
        if period > Duration::from_secs(60) {
            Mode::Window
        } else {
            Mode::Smooth
        }
    }
}

impl RateSpec {
    /// `limit` per `period`, evenly spaced.
    ///
    /// # Errors
    /// [`Error::Zero`] or [`Error::Period`].
    pub fn new(limit: u32, period: Duration) -> Result<RateSpec> {
        let text = format!("{limit}/{}", humantime::format_duration(period));
        let limit = NonZeroU32::new(limit).ok_or_else(|| Error::Zero(text.clone()))?;
        if period.is_zero() {
            return Err(Error::Period(text));
        }
        Ok(RateSpec {
            limit,
            period,
            max_burst: None,
            mode: Mode::default_for(period),
        })
    }

    /// The burst in effect.
    pub fn burst(&self) -> NonZeroU32 {
        self.max_burst.unwrap_or(NonZeroU32::MIN)
    }

    /// The emission interval `T` (see the module docs) and the tolerance τ it allows.
    pub fn interval(&self) -> (Duration, Duration) {
        let n = self.limit.get();
        let b = self.burst().get().min(n);
        let period = self.period.as_secs_f64();
        let tau = (period / f64::from(n) / 8.0).min(MAX_TOLERANCE.as_secs_f64());
        let t = (period * (1.0 + SAFETY) + tau) / f64::from(n - b + 1);
        // Rounded up to the nanosecond: rounding down could let N + 1 fit in a window.
        (
            Duration::from_secs_f64(t) + Duration::from_nanos(1),
            Duration::from_secs_f64(tau),
        )
    }

    /// The governor quota that keeps this promise, in cells of [`CELLS_PER_MESSAGE`]:
    /// one cell every `T / CELLS_PER_MESSAGE`, a burst of B messages plus τ.
    pub fn quota(&self) -> Quota {
        let (t, tau) = self.interval();
        let b = self.burst().get().min(self.limit.get());
        let cell = (t / CELLS_PER_MESSAGE).max(Duration::from_nanos(1));
        // Whole cells of tolerance, rounded down: a smaller τ only makes it stricter.
        let tolerance = u32::try_from(tau.as_nanos() / cell.as_nanos().max(1)).unwrap_or(0);
        let burst = b
            .saturating_mul(CELLS_PER_MESSAGE)
            .saturating_add(tolerance.min(CELLS_PER_MESSAGE - 1));
        Quota::with_period(cell)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
    }

    /// Messages per second this limit allows in the long run.
    pub fn sustained_per_second(&self) -> f64 {
        match self.mode {
            Mode::Smooth => 1.0 / self.interval().0.as_secs_f64(),
            Mode::Window => f64::from(self.limit.get()) / window_span(self).as_secs_f64(),
        }
    }
}

/// Governor cells one message costs (so that the tolerance τ can be a fraction of one).
pub const CELLS_PER_MESSAGE: u32 = 64;
/// The share of a period kept free as a margin for clock jitter between sender and server.
pub const SAFETY: f64 = 0.005;
/// The extra share of the emission interval kept when the limits live in the store
/// ([`RateLimiter::with_store`]).
pub const SHARED_SAFETY: f64 = 0.02;
/// The most a late worker may catch up.
pub const MAX_TOLERANCE: Duration = Duration::from_millis(2);
const MESSAGE_CELLS: NonZeroU32 = match NonZeroU32::new(CELLS_PER_MESSAGE) {
    Some(n) => n,
    None => NonZeroU32::MIN,
};

impl TryFrom<&RateLimitConfig> for RateSpec {
    type Error = Error;
    fn try_from(c: &RateLimitConfig) -> Result<RateSpec> {
        match c {
            RateLimitConfig::Spec(s) => s.parse(),
            RateLimitConfig::Table(t) => RateSpec::new(t.messages, t.per),
        }
    }
}

fn parse_period(s: &str) -> Option<Duration> {
    let unit = match s {
        "s" | "sec" | "second" => Some(1),
        "m" | "min" | "minute" => Some(60),
        "h" | "hour" => Some(3600),
        "d" | "day" => Some(86_400),
        _ => None,
    };
    if let Some(secs) = unit {
        return Some(Duration::from_secs(secs));
    }
    let d = crate::config::parse_duration(s).ok()?;
    (!d.is_zero()).then_some(d)
}

impl FromStr for RateSpec {
    type Err = Error;
    fn from_str(text: &str) -> Result<RateSpec> {
        let syntax = || Error::Syntax(text.to_owned());
        let mut parts = text.split(',').map(str::trim);
        let head = parts.next().ok_or_else(syntax)?;
        let (n, period) = head.split_once('/').ok_or_else(syntax)?;
        let n: u32 = n.trim().replace('_', "").parse().map_err(|_| syntax())?;
        let limit = NonZeroU32::new(n).ok_or_else(|| Error::Zero(text.to_owned()))?;
        let period = parse_period(period.trim()).ok_or_else(|| Error::Period(text.to_owned()))?;
        let mut max_burst = None;
        let mut mode = None;
        for opt in parts {
            match opt {
                "window" => mode = Some(Mode::Window),
                "smooth" => mode = Some(Mode::Smooth),
                _ => {}
            }
            if opt == "window" || opt == "smooth" {
                continue;
            }
            let (k, v) = opt.split_once('=').ok_or_else(syntax)?;
            if k.trim() != "max_burst" {
                return Err(syntax());
            }
            let b: u32 = v.trim().replace('_', "").parse().map_err(|_| syntax())?;
            let b = NonZeroU32::new(b)
                .filter(|b| *b <= limit)
                .ok_or_else(|| Error::Burst(text.to_owned()))?;
            max_burst = Some(b);
        }
        let mode = match (mode, max_burst) {
            (Some(Mode::Window), Some(_)) => return Err(syntax()),
            (Some(m), _) => m,
            (None, Some(_)) => Mode::Smooth,
            (None, None) => Mode::default_for(period),
        };
        Ok(RateSpec {
            limit,
            period,
            max_burst,
            mode,
        })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = match self.period.as_secs() {
            1 if self.period.subsec_nanos() == 0 => "s".to_owned(),
            60 if self.period.subsec_nanos() == 0 => "min".to_owned(),
            3600 if self.period.subsec_nanos() == 0 => "hour".to_owned(),
            86_400 if self.period.subsec_nanos() == 0 => "day".to_owned(),
            _ => humantime::format_duration(self.period)
                .to_string()
                .replace(' ', ""),
        };
        write!(f, "{}/{period}", self.limit)?;
        if let Some(b) = self.max_burst {
            write!(f, ",max_burst={b}")?;
        }
        let default = if self.max_burst.is_some() {
            Mode::Smooth
        } else {
            Mode::default_for(self.period)
        };
        match self.mode {
            m if m == default => {}
            Mode::Window => f.write_str(",window")?,
            Mode::Smooth => f.write_str(",smooth")?,
        }
        Ok(())
    }
}

/// How long to pause after a throttling answer: `base`, doubled while the throttling
/// goes on, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first pause.
    pub base: Duration,
    /// The longest pause.
    pub max: Duration,
}

impl Default for Backoff {
    /// 1 s, doubling up to 5 minutes.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
struct Pause {
    until: Option<Instant>,
    streak: u32,
}

/// One limiter for all workers: every [`RateSpec`] at once, plus the pause a throttling
/// server imposes.
pub struct RateLimiter {
    limits: Vec<(RateSpec, DefaultDirectRateLimiter)>,
    windows: Vec<(RateSpec, Mutex<VecDeque<Instant>>)>,
    clock: DefaultClock,
    gate: tokio::sync::Mutex<()>,
    first: AtomicUsize,
    seeded: AtomicBool,
    pause: Mutex<Pause>,
    backoff: Backoff,
    shared: Option<SharedLimits>,
    /// The relay (`host:port`) whose throttling pause is shared through the store.
    relay: Option<String>,
}

/// The limits kept in the store (see the module docs).
struct SharedLimits {
    store: Store,
    /// One row name per smooth limit.
    names: Vec<String>,
    /// Per limit: the emission interval T and the burst tolerance (B − 1)·T, in µs.
    gcra: Vec<(i64, i64)>,
    /// The rolling windows.
    windows: Vec<RateWindow>,
    /// Send times reserved per round trip.
    batch: usize,
    /// How late a reserved time may still be used.
    slack: Duration,
    /// Reserved send times not used yet, earliest first (and as µs of the wall clock).
    slots: Mutex<VecDeque<(Instant, i64)>>,
    /// Reserved times nobody used, to take out of the windows at the next reservation.
    released: Mutex<Vec<i64>>,
    /// A window is full: nothing can be reserved before this.
    full_until: Mutex<Option<Instant>>,
    /// When the relay's pause was last read (a limiter with no limits reserves nothing,
    /// so it reads the pause at most every [`PAUSE_READ_EVERY`]).
    pause_read: Mutex<Option<Instant>>,
}

/// What one reservation in the store gave.
enum Reserved {
    /// Send times (µs of the wall clock), earliest first.
    Times(Vec<i64>),
    /// The relay asked (another process) for a pause until then (µs), the streak-th.
    Paused(i64, u32),
    /// A rolling window has no room before then (µs).
    Full(i64),
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let specs: Vec<String> = self.specs().map(|s| s.to_string()).collect();
        f.debug_struct("RateLimiter")
            .field("limits", &specs)
            .field("backoff", &self.backoff)
            .finish()
    }
}

impl RateLimiter {
    /// A limiter enforcing all of `specs` at once (none: unlimited), with the default
    /// [`Backoff`].
    pub fn new(specs: impl IntoIterator<Item = RateSpec>) -> RateLimiter {
        let clock = DefaultClock::default();
        let mut specs: Vec<RateSpec> = specs.into_iter().collect();
        specs.sort_by_key(|s| s.period);
        let windows = specs
            .iter()
            .filter(|s| s.mode == Mode::Window)
            .map(|s| (*s, Mutex::new(VecDeque::new())))
            .collect();
        let limits = specs
            .into_iter()
            .filter(|s| s.mode == Mode::Smooth)
            .map(|s| {
                (
                    s,
                    DefaultDirectRateLimiter::direct_with_clock(s.quota(), clock.clone()),
                )
            })
            .collect();
        RateLimiter {
            limits,
            windows,
            clock,
            gate: tokio::sync::Mutex::new(()),
            first: AtomicUsize::new(0),
            seeded: AtomicBool::new(false),
            pause: Mutex::new(Pause::default()),
            backoff: Backoff::default(),
            shared: None,
            relay: None,
        }
    }

    /// Keeps the limits in `store`, shared with every process that uses it (see the
    /// module docs): the smooth limits' GCRA state, the rolling windows' reserved times
    /// and, once [`with_relay`](RateLimiter::with_relay) names the relay, its throttling
    /// pause.
    pub fn with_store(mut self, store: Store) -> RateLimiter {
        let us = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4) + 1;
        let names = self.limits.iter().map(|(s, _)| s.to_string()).collect();
        // Messages of several processes reach the server with more jitter than one
        // process's: the shared interval keeps a further SHARED_SAFETY of margin.
        let gcra: Vec<(i64, i64)> = self
            .limits
            .iter()
            .map(|(s, _)| {
                let t = us(s.interval().0.mul_f64(1.0 + SHARED_SAFETY));
                (t, t * i64::from(s.burst().get().min(s.limit.get()) - 1))
            })
            .collect();
        let (batch, slack) = if gcra.is_empty() {
            (WINDOW_BATCH, WINDOW_SLACK)
        } else {
            let slowest = gcra.iter().map(|(t, _)| *t).max().unwrap_or(1).max(1);
            let slack = self
                .limits
                .iter()
                .map(|(s, _)| s.interval().1.min(Duration::from_millis(1)))
                .min()
                .unwrap_or_default();
            (
                usize::try_from(100_000 / slowest).unwrap_or(1).clamp(1, 32),
                slack,
            )
        };
        // A reserved time stays in a window for the window's span, plus the slack in which
        // it may still be taken and a margin for the jitter between processes.
        let windows = self
            .windows
            .iter()
            .map(|(s, _)| RateWindow {
                name: s.to_string(),
                limit: s.limit.get(),
                span_us: us(window_span(s) + slack + SHARED_WINDOW_MARGIN),
            })
            .collect();
        self.shared = Some(SharedLimits {
            store,
            names,
            gcra,
            windows,
            batch,
            slack,
            slots: Mutex::new(VecDeque::new()),
            released: Mutex::new(Vec::new()),
            full_until: Mutex::new(None),
            pause_read: Mutex::new(None),
        });
        self
    }

    /// Shares the throttling pause of `relay` (`host:port`) through the store given to
    /// [`with_store`](RateLimiter::with_store): a pause one process hears pauses every
    /// process sending through that relay.
    pub fn with_relay(mut self, relay: impl Into<String>) -> RateLimiter {
        self.relay = Some(relay.into());
        self
    }

    /// Are the limits kept in the store (shared by every process on it)?
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// How long at least until [`RateLimiter::acquire`] could let a message through: a
    /// throttling pause, a full rolling window, or the next reserved shared send time
    /// (zero: perhaps now). Smooth in-process limits are not looked at (governor cannot
    /// look without taking); their waits are one emission interval at most.
    pub fn ready_in(&self) -> Duration {
        let now = Instant::now();
        let mut wait = self.paused_for().unwrap_or_default();
        if let Some(w) = self.window_wait(now) {
            wait = wait.max(w);
        }
        if let Some(shared) = &self.shared {
            if let Some(w) = shared.full_for(now) {
                wait = wait.max(w);
            }
            if let Ok(slots) = shared.slots.lock()
                && let Some((front, _)) = slots.front()
            {
                wait = wait.max(front.saturating_duration_since(now));
            }
        }
        wait
    }

    /// The next shared send time: one reserved earlier that is not too late yet, or the
    /// first of a new reservation; `None` when the reservation found the relay's pause
    /// on (now kept here too) or a window full (the limiter then waits). Store errors
    /// are retried (a message never goes without a reserved time).
    async fn next_shared_slot(&self, shared: &SharedLimits) -> Option<Instant> {
        if shared.names.is_empty() && shared.windows.is_empty() {
            // No limits to reserve under: only the relay's pause is shared.
            self.read_shared_pause(shared).await;
            return self.paused_for().is_none().then(Instant::now);
        }
        let mut delay = Duration::from_millis(10);
        loop {
            let now = Instant::now();
            if let Ok(mut slots) = shared.slots.lock() {
                while let Some((t, at)) = slots.front().copied()
                    && t + shared.slack < now
                {
                    slots.pop_front();
                    // Too late to use: out of the windows again, as it was never sent.
                    if !shared.windows.is_empty()
                        && let Ok(mut r) = shared.released.lock()
                    {
                        r.push(at);
                    }
                }
                if let Some((t, _)) = slots.pop_front() {
                    return Some(t);
                }
            }
            let released = shared
                .released
                .lock()
                .map(|mut r| std::mem::take(&mut *r))
                .unwrap_or_default();
            let (gcra, k) = (&shared.gcra, shared.batch);
            let windows = &shared.windows;
            // Reserved times are absolute (the wall clock every process shares), mapped to
            // this process's clock by one pair read together before the round trip: how
            // long the commit took must not shift them. They start a little ahead, so
            // that the first is not already past when the commit returns.
            let (base, base_us) = (Instant::now(), unix_micros(SystemTime::now()));
            let to_instant = |t: i64| {
                if t >= base_us {
                    base + Duration::from_micros(u64::try_from(t - base_us).unwrap_or(0))
                } else {
                    base.checked_sub(Duration::from_micros(
                        u64::try_from(base_us - t).unwrap_or(0),
                    ))
                    .unwrap_or(base)
                }
            };
            let request = RateRequest {
                smooth: &shared.names,
                windows,
                batch: k,
                relay: self.relay.as_deref(),
                released: &released,
            };
            let reserved = shared
                .store
                .reserve_rate(&request, |view| {
                    if let Some((until, streak)) = view.pause {
                        return (Reserved::Paused(until, streak), Vec::new());
                    }
                    let now_us = unix_micros(SystemTime::now()) + RESERVE_AHEAD_US;
                    let horizon = now_us + RESERVE_HORIZON_US;
                    let mut out: Vec<i64> = Vec::with_capacity(k);
                    for j in 0..k {
                        let smooth = view
                            .tats
                            .iter()
                            .zip(gcra)
                            .map(|(tat, (_, tol))| tat - tol)
                            .fold(now_us, i64::max);
                        // Each window: after every time it holds (times stay in order),
                        // and once the N-th newest, counting the ones just taken, has left.
                        let mut window = out.last().copied().unwrap_or(i64::MIN);
                        for (w, held) in windows.iter().zip(&view.windows) {
                            let n = usize::try_from(w.limit).unwrap_or(usize::MAX);
                            window = window.max(held.newest.unwrap_or(i64::MIN));
                            let nth = match j.checked_sub(n) {
                                None => held.nth_newest(n - 1 - j),
                                Some(i) => out.get(i).copied(),
                            };
                            if let Some(t) = nth {
                                window = window.max(t + w.span_us);
                            }
                        }
                        if window > smooth.max(horizon) {
                            // Not within this reservation: the rest waits for room.
                            if out.is_empty() {
                                return (Reserved::Full(window), Vec::new());
                            }
                            break;
                        }
                        let t = smooth.max(window);
                        for (tat, (interval, _)) in view.tats.iter_mut().zip(gcra) {
                            *tat = (*tat).max(t) + interval;
                        }
                        out.push(t);
                    }
                    (Reserved::Times(out.clone()), out)
                })
                .await;
            match reserved {
                Ok(Reserved::Times(times)) => {
                    if let Ok(mut slots) = shared.slots.lock() {
                        slots.extend(times.into_iter().map(|t| (to_instant(t), t)));
                    }
                    delay = Duration::from_millis(10);
                }
                Ok(Reserved::Paused(until, streak)) => {
                    self.adopt_pause(to_instant(until), streak);
                    return None;
                }
                Ok(Reserved::Full(until)) => {
                    // Back to reserve when the first time could be now + the lead.
                    let at = to_instant(until - RESERVE_AHEAD_US);
                    if let Ok(mut f) = shared.full_until.lock() {
                        *f = Some(at);
                    }
                    return None;
                }
                Err(e) => {
                    if let Ok(mut r) = shared.released.lock() {
                        r.extend(released);
                    }
                    if e.is_busy() {
                        tracing::debug!("store busy reserving send times; retrying: {e}");
                    } else {
                        tracing::error!("reserving send times in the store failed; retrying: {e}");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Gives back the shared send times reserved but not used (a run is over): out of
    /// the rolling windows, so another process can use them. Without this they count
    /// until they leave the window. A store error is logged; the times then count until
    /// they leave the window.
    pub async fn release_unused(&self) {
        let Some(shared) = &self.shared else { return };
        if shared.windows.is_empty() {
            return;
        }
        let mut times = shared
            .released
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        if let Ok(mut slots) = shared.slots.lock() {
            times.extend(slots.drain(..).map(|(_, at)| at));
        }
        if times.is_empty() {
            return;
        }
        if let Err(e) = shared
            .store
            .release_rate_times(&shared.windows, &times)
            .await
        {
            tracing::warn!(
                "giving back {} unused send times failed (they count until they leave the window): {e}",
                times.len()
            );
        }
    }

    /// Reads the relay's pause from the store (at most every [`PAUSE_READ_EVERY`]); a
    /// pause another process heard is kept here too. A failed read is not retried: it
    /// only delays hearing of the pause.
    async fn read_shared_pause(&self, shared: &SharedLimits) {
        let Some(relay) = &self.relay else { return };
        let now = Instant::now();
        if let Ok(mut last) = shared.pause_read.lock() {
            if last.is_some_and(|l| now.saturating_duration_since(l) < PAUSE_READ_EVERY) {
                return;
            }
            *last = Some(now);
        }
        let (base, base_us) = (Instant::now(), unix_micros(SystemTime::now()));
        match shared.store.rate_pause(relay).await {
            Ok(Some((until, streak))) => {
                let left = Duration::from_micros(u64::try_from(until - base_us).unwrap_or(0));
                self.adopt_pause(base + left, streak);
            }
            Ok(None) => {}
            Err(e) => tracing::debug!("reading the relay's pause from the store failed: {e}"),
        }
    }

    /// A pause heard by another process on the store: every worker here pauses until
    /// `until` too, and a throttle heard after it doubles as if heard here.
    fn adopt_pause(&self, until: Instant, streak: u32) {
        let Ok(mut pause) = self.pause.lock() else {
            return;
        };
        pause.streak = pause.streak.max(streak);
        if pause.until.is_none_or(|u| u < until) {
            pause.until = Some(until);
            tracing::info!(
                pause_ms = until.saturating_duration_since(Instant::now()).as_millis() as u64,
                "the relay asked another sender on this store to slow down; pausing all workers"
            );
        }
    }

    /// Replaces the throttling back-off.
    pub fn with_backoff(mut self, backoff: Backoff) -> RateLimiter {
        self.backoff = backoff;
        self
    }

    /// The limits: the smooth ones, then the rolling windows, each shortest period first.
    pub fn specs(&self) -> impl Iterator<Item = &RateSpec> {
        self.limits
            .iter()
            .map(|(s, _)| s)
            .chain(self.windows.iter().map(|(s, _)| s))
    }

    /// The longest rolling window (`None`: there is none): how far back
    /// [`RateLimiter::seed`] wants to hear about.
    pub fn longest_window(&self) -> Option<Duration> {
        self.windows.iter().map(|(s, _)| s.period).max()
    }

    /// Has [`RateLimiter::seed`] been called? (A limiter shared by several runs is seeded
    /// once; later runs' messages went through it anyway.)
    pub fn is_seeded(&self) -> bool {
        self.seeded.load(Ordering::SeqCst)
    }

    /// Tells the rolling windows about messages sent before this limiter existed (by an
    /// earlier run), so a quota holds across restarts. Times outside a window are ignored.
    pub fn seed(&self, sent: impl IntoIterator<Item = SystemTime>) {
        self.seeded.store(true, Ordering::SeqCst);
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut times: Vec<Instant> = sent
            .into_iter()
            .filter_map(|t| now.checked_sub(wall.duration_since(t).unwrap_or_default()))
            .collect();
        times.sort();
        for (spec, deque) in &self.windows {
            if let Ok(mut d) = deque.lock() {
                let span = window_span(spec);
                d.extend(
                    times
                        .iter()
                        .filter(|t| now.saturating_duration_since(**t) < span),
                );
                let mut v: Vec<Instant> = d.drain(..).collect();
                v.sort();
                d.extend(v);
            }
        }
    }

    /// How long until every rolling window has room for one more (`None`: now).
    fn window_wait(&self, now: Instant) -> Option<Duration> {
        let mut wait: Option<Duration> = None;
        for (spec, deque) in &self.windows {
            let Ok(mut d) = deque.lock() else { continue };
            let span = window_span(spec);
            while d
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= span)
            {
                d.pop_front();
            }
            if d.len() >= spec.limit.get() as usize
                && let Some(oldest) = d.get(d.len() - spec.limit.get() as usize)
            {
                let w = (*oldest + span)
                    .saturating_duration_since(now)
                    .max(Duration::from_micros(1));
                wait = Some(wait.map_or(w, |x| x.max(w)));
            }
        }
        wait
    }

    fn window_record(&self, at: Instant) {
        for (_, deque) in &self.windows {
            if let Ok(mut d) = deque.lock() {
                d.push_back(at);
            }
        }
    }

    /// The tightest sustained rate in messages per second (`None`: unlimited).
    pub fn sustained_per_second(&self) -> Option<f64> {
        self.specs()
            .map(RateSpec::sustained_per_second)
            .reduce(f64::min)
    }

    /// The longest emission interval of the limits (`None`: unlimited): the least time
    /// to leave after the last message sent before this limiter existed.
    pub fn max_interval(&self) -> Option<Duration> {
        self.limits.iter().map(|(s, _)| s.interval().0).max()
    }

    /// Waits until one more message keeps every limit and no throttling pause is on,
    /// and takes that message's place. Workers are served in arrival order.
    pub async fn acquire(&self) {
        let _gate = self.gate.lock().await;
        let mut waited = false;
        loop {
            if let Some(wait) = self.paused_for() {
                waited = true;
                tokio::time::sleep(wait).await;
                continue;
            }
            // Rolling windows first: they can be asked without taking anything.
            if let Some(wait) = self.window_wait(Instant::now()) {
                waited = true;
                sleep_precisely(wait).await;
                continue;
            }
            if let Some(shared) = &self.shared {
                if let Some(wait) = shared.full_for(Instant::now()) {
                    waited = true;
                    tokio::time::sleep(wait).await;
                    continue;
                }
                let Some(slot) = self.next_shared_slot(shared).await else {
                    // A pause or a full window: waited out at the top of the loop.
                    waited = true;
                    continue;
                };
                let now = Instant::now();
                if slot > now {
                    sleep_precisely(slot - now).await;
                    waited = true;
                }
                self.window_record(Instant::now());
                if waited {
                    crate::metrics::inc(crate::metrics::RATE_LIMIT_WAITS, &[]);
                }
                return;
            }
            // A limiter that passes takes its cell at once (governor cannot look without
            // taking), so when a later one then says "wait", the earlier cell is wasted.
            // Asking the limiter that last said "wait" first keeps that rare: in steady
            // state it is the binding one, and when it passes the others pass too.
            let first = self.first.load(Ordering::Relaxed);
            let order =
                std::iter::once(first).chain((0..self.limits.len()).filter(|i| *i != first));
            let mut wait = None;
            for i in order {
                let Some((_, limiter)) = self.limits.get(i) else {
                    continue;
                };
                // A message is CELLS_PER_MESSAGE cells; the burst always holds that many,
                // so the capacity error cannot happen.
                if let Ok(Err(not_until)) = limiter.check_n(MESSAGE_CELLS) {
                    wait = Some(not_until.wait_time_from(self.clock.now()));
                    self.first.store(i, Ordering::Relaxed);
                    break;
                }
            }
            match wait {
                None => {
                    self.window_record(Instant::now());
                    if waited {
                        crate::metrics::inc(crate::metrics::RATE_LIMIT_WAITS, &[]);
                    }
                    return;
                }
                Some(d) => {
                    waited = true;
                    sleep_precisely(d).await;
                }
            }
        }
    }

    fn paused_for(&self) -> Option<Duration> {
        let pause = self.pause.lock().ok()?;
        let left = pause.until?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    /// The server asked to slow down: every worker pauses. A throttle that comes while
    /// no pause is on doubles the next pause; one during a pause (other workers hearing
    /// the same answer) does not. Returns the pause.
    pub fn throttled(&self) -> Duration {
        let Ok(mut pause) = self.pause.lock() else {
            return self.backoff.base;
        };
        let now = Instant::now();
        if pause.until.is_some_and(|u| u > now) {
            return pause.until.map(|u| u - now).unwrap_or_default();
        }
        let factor = 2u32.saturating_pow(pause.streak.min(20));
        let wait = self
            .backoff
            .base
            .saturating_mul(factor)
            .min(self.backoff.max);
        pause.streak = pause.streak.saturating_add(1);
        pause.until = Some(now + wait);
        // Every process sending through the relay pauses too (they read it when they
        // next reserve). Recorded in the background: this is called from a worker.
        if let (Some(shared), Some(relay)) = (&self.shared, &self.relay)
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (store, relay, streak) = (shared.store.clone(), relay.clone(), pause.streak);
            let until = unix_micros(SystemTime::now())
                .saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX / 4));
            rt.spawn(async move {
                if let Err(e) = store.record_rate_pause(&relay, until, streak).await {
                    tracing::warn!("recording the relay's pause in the store failed: {e}");
                }
            });
        }
        tracing::warn!(
            pause_ms = wait.as_millis() as u64,
            "server is throttling; pausing all workers"
        );
        wait
    }

    /// A message went through: the throttling streak is over.
    pub fn succeeded(&self) {
        if let Ok(mut pause) = self.pause.lock()
            && pause.streak > 0
            && pause.until.is_none_or(|u| u <= Instant::now())
        {
            pause.streak = 0;
        }
    }
}

/// How far ahead of now a reservation starts (µs).
const RESERVE_AHEAD_US: i64 = 20_000;
/// How far beyond its start a reservation takes times (µs); a window with no room before
/// that is waited for instead.
const RESERVE_HORIZON_US: i64 = 100_000;
/// Times reserved per round trip when only rolling windows are shared.
const WINDOW_BATCH: usize = 8;
/// How late a reserved time may be taken when only rolling windows are shared (the
/// window keeps each time this much longer).
const WINDOW_SLACK: Duration = Duration::from_millis(50);
/// How much longer than its span a shared window keeps a time: the jitter between the
/// processes' messages on their way to the server.
const SHARED_WINDOW_MARGIN: Duration = Duration::from_millis(25);
/// How often a limiter with no limits reads the relay's pause from the store.
const PAUSE_READ_EVERY: Duration = Duration::from_millis(100);

impl SharedLimits {
    /// How long a full window keeps reservations off (`None`: not full).
    fn full_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self.full_until.lock().ok()?)?;
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then_some(left)
    }
}

fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX / 4))
        .unwrap_or(0)
}

/// A rolling window with the safety margin: a message leaves it this long after it went.
fn window_span(spec: &RateSpec) -> Duration {
    spec.period.mul_f64(1.0 + SAFETY)
}

/// Sleeps `d` with sub-millisecond precision: tokio's timer (1 ms granularity) for the
/// bulk, a blocking thread sleep for the last stretch. A limiter that wakes a little late
/// every time would fall behind its rate.
async fn sleep_precisely(d: Duration) {
    let deadline = Instant::now() + d;
    if d > Duration::from_millis(3) {
        tokio::time::sleep(d - Duration::from_millis(2)).await;
    }
    let rest = deadline.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn ratespec_round_trips() {
        for text in [
            "14/s",
            "50000/day",
            "100/min,max_burst=10",
            "600/10m",
            "3/hour",
            "5/500ms",
        ] {
            let r: RateSpec = text.parse().unwrap();
            assert_eq!(r.to_string().parse::<RateSpec>().unwrap(), r, "{text}");
        }
        assert_eq!("1_000/hour".parse::<RateSpec>().unwrap().limit.get(), 1000);
        assert_eq!("14/s".parse::<RateSpec>().unwrap().to_string(), "14/s");
        assert_eq!(
            "600/10m".parse::<RateSpec>().unwrap().period,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn ratespec_mode_follows_the_period_unless_told() {
        let day: RateSpec = "50000/day".parse().unwrap();
        assert_eq!(day.mode, Mode::Window);
        assert_eq!(day.to_string(), "50000/day");
        assert_eq!("14/s".parse::<RateSpec>().unwrap().mode, Mode::Smooth);
        for text in ["5/2s,window", "100/hour,smooth", "100/hour,max_burst=5"] {
            let r: RateSpec = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
            assert_eq!(r.to_string().parse::<RateSpec>().unwrap(), r);
        }
        assert!("100/hour,max_burst=5,window".parse::<RateSpec>().is_err());
    }

    #[test]
    fn ratespec_rejects_zero_limit() {
        assert!(matches!("0/s".parse::<RateSpec>(), Err(Error::Zero(_))));
        assert!(matches!("5/0s".parse::<RateSpec>(), Err(Error::Period(_))));
        assert!(matches!(
            "5/s,max_burst=6".parse::<RateSpec>(),
            Err(Error::Burst(_))
        ));
        assert!("five/s".parse::<RateSpec>().is_err());
        assert!("5/s,burst=2".parse::<RateSpec>().is_err());
    }

    #[test]
    fn ratespec_quota_keeps_the_window() {
        // N + 1 messages at the tightest spacing GCRA allows still span more than a period.
        for text in [
            "10/s,max_burst=4",
            "50/s",
            "14/s",
            "1/s",
            "50000/day",
            "3/500ms,max_burst=3",
        ] {
            let r: RateSpec = text.parse().unwrap();
            let (t, tau) = r.interval();
            let n = r.limit.get();
            let b = r.burst().get();
            let span = t * (n - b + 1) - tau;
            assert!(span >= r.period, "{text}: {span:?}");
            // And the rate is within 1 % of the limit (for the default burst).
            if b == 1 {
                let rate = r.sustained_per_second() * r.period.as_secs_f64();
                assert!(rate >= f64::from(n) * 0.99 || n < 20, "{text}: {rate}");
            }
            assert!(r.quota().burst_size().get() >= CELLS_PER_MESSAGE);
        }
        let fifty: RateSpec = "50/s".parse().unwrap();
        assert!(
            (fifty.sustained_per_second() - 49.65).abs() < 0.05,
            "{}",
            fifty.sustained_per_second()
        );
    }

    fn max_in_window(times: &[Instant], window: Duration) -> usize {
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= window {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    /// `workers` tasks acquire from one limiter for `run_for`; the sorted grant times.
    async fn acquire_times(
        limiter: RateLimiter,
        workers: usize,
        run_for: Duration,
    ) -> Vec<Instant> {
        let limiter = std::sync::Arc::new(limiter);
        let times = std::sync::Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (l, t) = (limiter.clone(), times.clone());
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < run_for {
                    l.acquire().await;
                    t.lock().unwrap().push(Instant::now());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let mut times = times.lock().unwrap().clone();
        times.sort();
        times
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limiter_never_exceeds_any_limit_with_many_workers() {
        let limits = ["20/200ms".parse().unwrap(), "30/s".parse().unwrap()];
        let times = acquire_times(RateLimiter::new(limits), 8, Duration::from_millis(1500)).await;
        assert!(max_in_window(&times, Duration::from_millis(200)) <= 20);
        assert!(max_in_window(&times, Duration::from_secs(1)) <= 30);
        // 30/s over ~1.5 s: about 45, hardly any lost to cells taken and then waited on.
        assert!(times.len() >= 42, "{}", times.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn window_lets_a_quota_go_at_once_and_never_more_per_window() {
        let limits = ["5/300ms,window".parse().unwrap(), "100/s".parse().unwrap()];
        let times = acquire_times(RateLimiter::new(limits), 6, Duration::from_millis(1000)).await;
        assert!(max_in_window(&times, Duration::from_millis(300)) <= 5);
        // The quota is not spread out: the first five go at the 100/s pace.
        assert!(
            times[4] - times[0] < Duration::from_millis(60),
            "{:?}",
            times[4] - times[0]
        );
        assert!(times.len() >= 15, "{}", times.len());
    }

    #[tokio::test]
    async fn window_seeded_with_earlier_sends_waits_for_them() {
        let limiter = RateLimiter::new(["3/400ms,window".parse().unwrap()]);
        let now = SystemTime::now();
        limiter.seed([
            now,
            now - Duration::from_millis(100),
            now - Duration::from_secs(5),
        ]);
        assert_eq!(limiter.longest_window(), Some(Duration::from_millis(400)));
        let t = Instant::now();
        limiter.acquire().await; // two of three in the window: room for one
        assert!(t.elapsed() < Duration::from_millis(50));
        limiter.acquire().await; // full: waits for the one sent 100 ms ago to leave
        assert!(
            t.elapsed() >= Duration::from_millis(290),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn limiter_in_the_store_holds_across_limiters() {
        // Two limiters on one store file: two processes, as far as the limit can tell.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let a = Store::open(&url).await.unwrap();
        let b = Store::open(&url).await.unwrap();
        let spec = || -> RateSpec { "40/s".parse().unwrap() };
        let run = Duration::from_millis(1500);
        let (one, two) = tokio::join!(
            acquire_times(RateLimiter::new([spec()]).with_store(a), 4, run),
            acquire_times(RateLimiter::new([spec()]).with_store(b), 4, run),
        );
        let mut all: Vec<Instant> = one.iter().chain(&two).copied().collect();
        all.sort();
        assert!(max_in_window(&all, Duration::from_secs(1)) <= 40);
        // Both got a share, and together about the limit (40/s over 1.5 s ≈ 60).
        assert!(
            one.len() >= 10 && two.len() >= 10,
            "{} {}",
            one.len(),
            two.len()
        );
        assert!(all.len() >= 50, "{}", all.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quota_in_the_store_holds_across_limiters() {
        // A rolling window, alone and beside a smooth rate, on one store file for two
        // limiters (two processes): N in any window for both together, not N each.
        for limits in [vec!["20/1500ms,window"], vec!["20/1500ms,window", "200/s"]] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("r.db").display());
            let a = Store::open(&url).await.unwrap();
            let b = Store::open(&url).await.unwrap();
            let make = |store| {
                RateLimiter::new(limits.iter().map(|l| l.parse::<RateSpec>().unwrap()))
                    .with_store(store)
            };
            let run = Duration::from_millis(3500);
            let (one, two) = tokio::join!(
                acquire_times(make(a), 4, run),
                acquire_times(make(b), 4, run),
            );
            let mut all: Vec<Instant> = one.iter().chain(&two).copied().collect();
            all.sort();
            let most = max_in_window(&all, Duration::from_millis(1500));
            assert!(most <= 20, "{limits:?}: {most} in one window");
            // Three windows' worth were allowed (at 0, ~1.6 s and ~3.2 s).
            assert!(all.len() >= 40, "{limits:?}: {}", all.len());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn quota_in_the_store_is_given_back_or_leaves_with_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("r.db").display());
        let make = |store| RateLimiter::new(["5/800ms,window".parse().unwrap()]).with_store(store);
        let a = make(Store::open(&url).await.unwrap());
        let b = make(Store::open(&url).await.unwrap());
        // `a` sends one and reserved the other four of the window; at the end of its run
        // it gives them back, so `b` has them at once.
        a.acquire().await;
        a.release_unused().await;
        let t = Instant::now();
        for _ in 0..4 {
            b.acquire().await;
        }
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        drop((a, b));
        // A sender that dies holding reserved times: they count only until they leave
        // the window, then the whole quota is there again.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let c = make(Store::open(&url).await.unwrap());
        c.acquire().await;
        drop(c); // four reserved and never given back
        let d = make(Store::open(&url).await.unwrap());
        let t = Instant::now();
        d.acquire().await;
        let first = t.elapsed();
        assert!(
            first >= Duration::from_millis(700),
            "{first:?}: the dead sender's times"
        );
        assert!(
            first < Duration::from_millis(1200),
            "{first:?}: longer than the window"
        );
        for _ in 0..4 {
            d.acquire().await;
        }
        assert!(
            t.elapsed() < first + Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn throttling_pause_in_the_store_pauses_the_other_limiters() {
        // With a smooth limit (the pause is read where times are reserved) and with none
        // (the pause is read on its own).
        for limits in [vec!["500/s"], vec![]] {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("r.db").display());
            let backoff = Backoff {
                // Long enough that "not paused" and "paused" stay apart on a loaded machine.
                base: Duration::from_millis(1200),
                max: Duration::from_secs(5),
            };
            let make = |store, relay: &str| {
                RateLimiter::new(limits.iter().map(|l| l.parse::<RateSpec>().unwrap()))
                    .with_backoff(backoff)
                    .with_store(store)
                    .with_relay(relay)
            };
            let a = make(Store::open(&url).await.unwrap(), "127.0.0.1:25");
            let b = make(Store::open(&url).await.unwrap(), "127.0.0.1:25");
            let other_relay = make(Store::open(&url).await.unwrap(), "127.0.0.1:26");
            b.acquire().await;
            tokio::time::sleep(Duration::from_millis(150)).await; // b's reserved times expire
            let paused_at = Instant::now();
            assert_eq!(a.throttled(), Duration::from_millis(1200));
            // Recorded in the background: wait until the store has it (a fixed sleep was
            // too short on a loaded machine).
            let reader = Store::open(&url).await.unwrap();
            while reader.rate_pause("127.0.0.1:25").await.unwrap().is_none() {
                assert!(
                    paused_at.elapsed() < Duration::from_secs(5),
                    "never recorded"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let t = Instant::now();
            other_relay.acquire().await;
            assert!(
                t.elapsed() < Duration::from_millis(700),
                "{limits:?}: another relay"
            );
            b.acquire().await;
            let waited = paused_at.elapsed();
            assert!(
                waited >= Duration::from_millis(1000),
                "{limits:?}: b went on after {waited:?}"
            );
            // After it, the next "slow down" doubles the pause in b as it would in a.
            assert_eq!(b.throttled(), Duration::from_millis(2400), "{limits:?}");
        }
    }

    #[tokio::test]
    async fn limiter_pauses_after_throttling_and_doubles() {
        let limiter = RateLimiter::new([]).with_backoff(Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(150),
        });
        assert_eq!(limiter.throttled(), Duration::from_millis(50));
        // Same episode: no doubling.
        assert!(limiter.throttled() <= Duration::from_millis(50));
        let t = Instant::now();
        limiter.acquire().await;
        assert!(t.elapsed() >= Duration::from_millis(45));
        assert_eq!(limiter.throttled(), Duration::from_millis(100));
        tokio::time::sleep(Duration::from_millis(110)).await;
        assert_eq!(limiter.throttled(), Duration::from_millis(150));
        tokio::time::sleep(Duration::from_millis(160)).await;
        limiter.succeeded();
        assert_eq!(limiter.throttled(), Duration::from_millis(50));
    }
}
