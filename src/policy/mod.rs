//! The policy chain: an ordered list of sandboxed WebAssembly components, each of which
//! sees the message and the verdict so far and may keep it, replace it, or say the
//! message is not a bounce.
//!
//! In: the raw message and the detector's [`Detection`]. Out: the final [`Verdict`], whose
//! `decided_by` names the last policy that changed it (`policy:<name>`) or `builtin`.
//!
//! - [`PolicyEngine`] ([`sandbox`]) is the one wasmtime engine of the process, with the
//!   linker that decides what a policy may import and the epoch ticker behind time caps.
//! - [`PolicyModule`] is one compiled, checked component with its caps, its pool of warm
//!   instances and its failure counters; [`PolicyModule::compile`] builds one from bytes
//!   (the admin API's upload), [`PolicyModule::load`] from a `[[policy]]` entry.
//! - [`PolicyChain`] is an ordered list of modules, `Send + Sync`, cheap to clone and meant
//!   to sit behind an `Arc` (or an `ArcSwap`) so a new chain can be swapped in atomically.
//! - [`StateSession`] ([`state`]) is what a run's policies keep between messages (WIT
//!   0.3.0's `state`): the store's entries under the run's own writes, which come back in
//!   [`ChainRun::state_writes`] to be committed with the message.
//!
//! A failing module (trap, panic, timeout, memory or resource cap, `policy-error`, garbage
//! output, no free instance) does not stop the host: its decision is "keep", the failure is
//! logged with its name, and after `max_failures` failures in a row it is disabled
//! ([`ModuleStats::disabled`]) until [`PolicyModule::enable`]. Only a module configured
//! `on_error = "fail"` makes [`PolicyChain::run`] return an error, which leaves the message
//! in the mailbox; such a module keeps doing so while it is disabled
//! ([`Error::Disabled`], counted in [`ModuleStats::held`]): a fail-closed policy is never
//! skipped silently.
//!
//! Each module has at most [`ModuleOptions::max_instances`] live instances; a call that
//! finds them all busy waits up to [`ModuleOptions::instance_wait`] for one, then fails
//! ([`FailureKind::Busy`]).
//!
//! # Examples
//!
//! ```no_run
//! use std::sync::Arc;
//! use rebound::policy::{ModuleOptions, PolicyChain, PolicyEngine, PolicyModule};
//!
//! # fn main() -> Result<(), rebound::policy::Error> {
//! let engine = PolicyEngine::shared()?;
//! let bytes = std::fs::read("policies/invalid_recipient.wasm").unwrap_or_default();
//! let module = PolicyModule::compile(engine, "invalid-recipient", &bytes, ModuleOptions::default())?;
//! let chain = PolicyChain::new(vec![Arc::new(module)]);
//! let raw = b"From: MAILER-DAEMON@example.net\r\n\r\nInvalid recipient: <jane@example.org>\r\n";
//! let detection = rebound::detector::detect(raw);
//! let verdict = chain.run(raw, &detection)?;
//! println!("{} decided {:?}", verdict.decided_by, verdict.kind);
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod cache;
pub mod conversions;
mod host;
pub mod sandbox;
pub mod state;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use wasmtime::Store;
use wasmtime::component::Component;

use crate::config::{OnError, PolicyConfig, PolicyLimits};
use crate::detector::Detection;
use crate::verdict::Verdict;

pub use self::bindings::WorldVersion;
use self::host::GuestState;
pub use self::sandbox::PolicyEngine;
use self::sandbox::{Instance, Pre, StoreTemplate};
pub use self::state::StateSession;

/// Errors of the policy chain: loading a module, or a `fail` module failing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A module whose `on_error` is `fail` failed: the message must stay unprocessed.
    #[error("policy {module} failed: {message}")]
    Failed {
        /// The module's name.
        module: String,
        /// What went wrong.
        message: String,
    },
    /// wasmtime could not be set up.
    #[error("policy engine: {0}")]
    Engine(String),
    /// The module file could not be read.
    #[error("policy {module}: reading {path:?}: {cause}")]
    Read {
        /// The module's name.
        module: String,
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not also a `source()`, which would print it
        /// twice in an error chain).
        cause: std::io::Error,
    },
    /// The bytes are not WebAssembly at all.
    #[error("policy {module}: not a WebAssembly component (no `\\0asm` header)")]
    NotWasm {
        /// The module's name.
        module: String,
    },
    /// A core module, not a component.
    #[error(
        "policy {module}: this is a core WebAssembly module, not a component; build it with \
         `cargo build --target wasm32-wasip2` (or wrap it with `wasm-tools component new`)"
    )]
    CoreModule {
        /// The module's name.
        module: String,
    },
    /// Precompiled machine code: only the host's own cache is ever loaded.
    #[error(
        "policy {module}: precompiled code (a .cwasm) is not accepted; upload the .wasm component"
    )]
    Precompiled {
        /// The module's name.
        module: String,
    },
    /// The component does not validate or compile.
    #[error("policy {module}: invalid component: {message}")]
    Compile {
        /// The module's name.
        module: String,
        /// wasmtime's message.
        message: String,
    },
    /// The component imports something the sandbox does not offer.
    #[error(
        "policy {module}: imports `{import}`, which the sandbox does not offer (allowed: \
         rebound:policy/host and /state of the version it targets, 0.3.0, 0.2.0 or 0.1.0, \
         and WASI 0.2.x, which grants nothing: no file system, network or clock)"
    )]
    ForbiddenImport {
        /// The module's name.
        module: String,
        /// The import, e.g. `wasi:filesystem/types@0.2.6`.
        import: String,
    },
    /// The component is for another world, or a version of this one the host does not run
    /// (it runs `rebound:policy@0.3.0`, `0.2.0` and `0.1.0`).
    #[error(
        "policy {module}: not a `policy` component of rebound:policy@0.3.0 (or 0.2.0, 0.1.0): {detail}"
    )]
    WrongWorld {
        /// The module's name.
        module: String,
        /// What does not match.
        detail: String,
    },
    /// A module whose `on_error` is `fail` is disabled (after `max_failures` failures in a
    /// row): the message must stay unprocessed, as for [`Error::Failed`], until the module
    /// is enabled again (uploaded again, rolled back, or the process restarted).
    #[error(
        "policy {module} is disabled after {failures} failures in a row (last: {last}) and \
         has on_error = \"fail\": the message is held, not judged without it; upload the \
         policy again, roll it back or restart to enable it"
    )]
    Disabled {
        /// The module's name.
        module: String,
        /// Its failures in a row when it was disabled.
        failures: u32,
        /// Its last failure.
        last: String,
    },
    /// Two modules of one chain share a name.
    #[error("policy {0}: two modules with this name in one chain")]
    DuplicateName(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The caps and settings of one module.
#[derive(Debug, Clone)]
pub struct ModuleOptions {
    /// Memory cap of one instance, in bytes (default 64 MiB).
    pub max_memory: u64,
    /// Time cap of one call (default 50 ms; granularity [`sandbox::EPOCH_TICK`]).
    pub timeout: Duration,
    /// What a failure does to the message (default: skip the module).
    pub on_error: OnError,
    /// The `config` table handed to the guest.
    pub config: BTreeMap<String, String>,
    /// Failures in a row after which the module is disabled (default 5; 0 = never).
    pub max_failures: u32,
    /// Calls after which an instance is replaced by a fresh one (default 1000; 1 = a fresh
    /// instance for every call).
    pub recycle_after: u32,
    /// Where compiled code is cached; `None` (the default) compiles every time. The
    /// directory must be the process user's own, not writable by group or others, and
    /// not a symbolic link, else it is not used (see [`cache`]).
    pub cache_dir: Option<PathBuf>,
    /// The file of the secret key that seals cache entries, outside `cache_dir`; `None`
    /// (the default) is the per-user [`cache::key_file`].
    pub cache_key_file: Option<PathBuf>,
    /// Most live instances of the module at once (default: the number of CPUs, 2 to 16).
    pub max_instances: usize,
    /// How long a call waits for a free instance when all `max_instances` are busy
    /// (default 5 s); past it the call fails with [`FailureKind::Busy`].
    pub instance_wait: Duration,
    /// What the module may keep in its `state` (WIT 0.3.0).
    pub state: state::StateLimits,
}

impl Default for ModuleOptions {
    fn default() -> Self {
        ModuleOptions::from_limits(&PolicyLimits::default())
    }
}

impl ModuleOptions {
    /// The defaults of `[policy_limits]`, without a cache.
    pub fn from_limits(limits: &PolicyLimits) -> ModuleOptions {
        ModuleOptions {
            max_memory: limits.memory,
            timeout: limits.time,
            on_error: OnError::Skip,
            config: BTreeMap::new(),
            max_failures: limits.max_failures,
            recycle_after: limits.recycle_after,
            cache_dir: None,
            cache_key_file: None,
            max_instances: default_max_instances(),
            instance_wait: DEFAULT_INSTANCE_WAIT,
            state: state::StateLimits {
                max_keys: limits.state_max_keys,
                max_value: usize::try_from(limits.state_max_value).unwrap_or(usize::MAX),
            },
        }
    }

    /// The options of one `[[policy]]` entry: its own settings over `[policy_limits]`, with
    /// the cache in `limits.cache_dir`.
    pub fn from_config(policy: &PolicyConfig, limits: &PolicyLimits) -> ModuleOptions {
        ModuleOptions {
            max_memory: policy.max_memory.unwrap_or(limits.memory),
            timeout: policy.timeout.unwrap_or(limits.time),
            on_error: policy.on_error,
            config: policy.config.clone(),
            cache_dir: Some(limits.cache_dir.clone()),
            ..ModuleOptions::from_limits(limits)
        }
    }
}

/// How long a call waits for a free instance by default.
pub const DEFAULT_INSTANCE_WAIT: Duration = Duration::from_secs(5);

/// The default of [`ModuleOptions::max_instances`]: the number of CPUs, 2 to 16.
fn default_max_instances() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 16)
}

/// Why one call of a module failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// Ran past its time cap.
    Timeout,
    /// Tried to grow memory past its cap.
    OutOfMemory,
    /// Exhausted the wasm stack (deep recursion).
    StackOverflow,
    /// Panicked (a Rust guest's panic message is in the log).
    Panic,
    /// Any other trap.
    Trap,
    /// Called `exit`.
    Exit,
    /// Returned a `policy-error`.
    PolicyError,
    /// Returned a verdict over the limits.
    Garbage,
    /// Could not be instantiated.
    Instantiate,
    /// Created more resources (handles) than the sandbox allows
    /// ([`sandbox::MAX_RESOURCES`]).
    Resources,
    /// Every instance stayed busy for [`ModuleOptions::instance_wait`] (load, not a fault
    /// of the module: it does not count towards disabling it).
    Busy,
}

/// One failed call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// What kind of failure.
    pub kind: FailureKind,
    /// The details, for the log.
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// What one module did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Kept the verdict (or returned one equal to it).
    Kept,
    /// Replaced the verdict with this one.
    Replaced(Verdict),
    /// Said the message is not a bounce (this is the resulting verdict).
    NotBounce(Verdict),
    /// Failed: the verdict from before it stands.
    Failed(Failure),
    /// Skipped: the module is disabled. (A disabled module with `on_error = "fail"` makes
    /// the chain return [`Error::Disabled`] instead: the message is held.)
    Disabled,
}

/// One step of a chain run.
#[derive(Debug, Clone)]
pub struct Step {
    /// The module's name.
    pub module: String,
    /// What it did.
    pub outcome: Outcome,
}

/// A chain run with every module's outcome.
#[derive(Debug, Clone)]
pub struct ChainRun {
    /// The final verdict.
    pub verdict: Verdict,
    /// One step per module, in chain order.
    pub steps: Vec<Step>,
    /// What the modules wrote to their `state`, in order (the failed calls' writes left
    /// out): committed with the message, or dropped.
    pub state_writes: Vec<crate::store::policy_state::StateWrite>,
}

/// A module's counters, for `GET /policies` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleStats {
    /// The module's name.
    pub name: String,
    /// SHA-256 of the component bytes, hex.
    pub digest: String,
    /// Calls made (not counting skips while disabled).
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Calls whose decision changed the verdict.
    pub changed: u64,
    /// Instances created (the first, plus one after every trap or recycle).
    pub instances: u64,
    /// True once `max_failures` failures in a row disabled the module.
    pub disabled: bool,
    /// `skip` or `fail`: what a failure (and being disabled) does to the message.
    pub on_error: &'static str,
    /// Messages held (left unprocessed) because the module is disabled and its `on_error`
    /// is `fail`.
    pub held: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// A warm instance with its store.
struct Slot {
    store: Store<GuestState>,
    policy: Instance,
    calls: u32,
}

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    failures: AtomicU64,
    consecutive: AtomicU32,
    changed: AtomicU64,
    instances: AtomicU64,
    disabled: AtomicBool,
    /// The streak that disabled the module.
    disabled_after: AtomicU32,
    held: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A counting semaphore over a module's live instances, for the blocking calls of the
/// chain (which run off the async workers).
struct InstanceGate {
    free: Mutex<usize>,
    freed: std::sync::Condvar,
}

impl InstanceGate {
    fn new(permits: usize) -> InstanceGate {
        InstanceGate {
            free: Mutex::new(permits.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// A permit, waiting up to `wait` for one; `None` when none was freed in time.
    fn acquire(&self, wait: Duration) -> Option<Permit<'_>> {
        let free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut free, _) = self
            .freed
            .wait_timeout_while(free, wait, |free| *free == 0)
            .unwrap_or_else(PoisonError::into_inner);
        if *free == 0 {
            return None;
        }
        *free -= 1;
        Some(Permit(self))
    }
}

/// One live instance's right to exist; given back on drop.
struct Permit<'a>(&'a InstanceGate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.0.freed.notify_one();
    }
}

/// One compiled, checked policy component with its caps, warm instances and counters.
pub struct PolicyModule {
    name: Arc<str>,
    decided_by: String,
    digest: String,
    options: ModuleOptions,
    engine: &'static PolicyEngine,
    component: Component,
    pre: Pre,
    template: StoreTemplate,
    pool: Mutex<Vec<Slot>>,
    /// At most `max_instances` instances live (idle in `pool` or in a call).
    gate: InstanceGate,
    counters: Counters,
    /// The component imports the `state` interface.
    uses_state: bool,
}

impl std::fmt::Debug for PolicyModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyModule")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl PolicyModule {
    /// Checks and compiles a component from its bytes (e.g. an upload).
    ///
    /// Refused, each with its own [`Error`]: bytes that are not WebAssembly, a core module,
    /// precompiled code, an invalid component, a component importing more than the sandbox
    /// offers, a component of another world or version. With `options.cache_dir` the
    /// compiled code is cached on disk (keyed by the bytes' hash and the engine settings,
    /// sealed with an HMAC under a key kept outside that directory), so loading the same
    /// bytes again skips compilation.
    ///
    /// # Errors
    /// See above.
    pub fn compile(
        engine: &'static PolicyEngine,
        name: &str,
        bytes: &[u8],
        options: ModuleOptions,
    ) -> Result<PolicyModule> {
        let digest = cache::digest(bytes);
        let (component, pre) = match options.cache_dir.as_deref() {
            Some(dir) => cache::compile_cached(
                engine,
                dir,
                options.cache_key_file.as_deref(),
                name,
                bytes,
                &digest,
            )?,
            None => engine.compile(name, bytes)?,
        };
        let name: Arc<str> = Arc::from(name);
        let template = StoreTemplate {
            module: name.clone(),
            config: Arc::new(options.config.clone()),
            max_memory: options.max_memory,
            timeout: options.timeout,
        };
        let gate = InstanceGate::new(options.max_instances);
        let uses_state = pre.version().state_interface().is_some_and(|state| {
            sandbox::describe(engine.engine(), &component)
                .0
                .contains(&state)
        });
        Ok(PolicyModule {
            uses_state,
            decided_by: conversions::decided_by(&name),
            name,
            digest,
            options,
            engine,
            component,
            pre,
            template,
            pool: Mutex::new(Vec::new()),
            gate,
            counters: Counters::default(),
        })
    }

    /// Loads the module of one `[[policy]]` entry from its file.
    ///
    /// # Errors
    /// [`Error::Read`], and those of [`PolicyModule::compile`].
    pub fn load(
        engine: &'static PolicyEngine,
        policy: &PolicyConfig,
        limits: &PolicyLimits,
    ) -> Result<PolicyModule> {
        let bytes = std::fs::read(&policy.path).map_err(|cause| Error::Read {
            module: policy.name.clone(),
            path: policy.path.clone(),
            cause,
        })?;
        PolicyModule::compile(
            engine,
            &policy.name,
            &bytes,
            ModuleOptions::from_config(policy, limits),
        )
    }

    /// Loads a `.wasm` file with default options and a name from its file stem
    /// (`invalid_recipient.wasm` → `invalid-recipient`).
    ///
    /// # Errors
    /// As [`PolicyModule::load`].
    pub fn from_file(
        engine: &'static PolicyEngine,
        path: &Path,
        options: ModuleOptions,
    ) -> Result<PolicyModule> {
        let name = name_from_path(path);
        let bytes = std::fs::read(path).map_err(|cause| Error::Read {
            module: name.clone(),
            path: path.to_owned(),
            cause,
        })?;
        PolicyModule::compile(engine, &name, &bytes, options)
    }

    /// The module's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SHA-256 of the component bytes, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The module's options.
    pub fn options(&self) -> &ModuleOptions {
        &self.options
    }

    /// The version of the `rebound:policy` world the component targets (read off its
    /// imports at load).
    pub fn world_version(&self) -> WorldVersion {
        self.pre.version()
    }

    /// The world the component targets, `rebound:policy/policy@0.3.0`.
    pub fn world(&self) -> String {
        self.world_version().world()
    }

    /// True if the component imports the `state` interface (its calls may read the
    /// store).
    pub fn uses_state(&self) -> bool {
        self.uses_state
    }

    /// The component's imports and exports (names), for display.
    pub fn describe(&self) -> (Vec<String>, Vec<String>) {
        sandbox::describe(self.engine.engine(), &self.component)
    }

    /// True once the module was disabled by failures in a row.
    pub fn is_disabled(&self) -> bool {
        self.counters.disabled.load(Ordering::Relaxed)
    }

    /// Enables a disabled module again and clears its failure streak.
    pub fn enable(&self) {
        self.counters.consecutive.store(0, Ordering::Relaxed);
        self.counters.disabled_after.store(0, Ordering::Relaxed);
        self.counters.disabled.store(false, Ordering::Relaxed);
    }

    /// The module's counters.
    pub fn stats(&self) -> ModuleStats {
        let c = &self.counters;
        ModuleStats {
            name: self.name.to_string(),
            digest: self.digest.clone(),
            calls: c.calls.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            consecutive_failures: c.consecutive.load(Ordering::Relaxed),
            changed: c.changed.load(Ordering::Relaxed),
            instances: c.instances.load(Ordering::Relaxed),
            disabled: c.disabled.load(Ordering::Relaxed),
            on_error: match self.options.on_error {
                OnError::Skip => "skip",
                OnError::Fail => "fail",
            },
            held: c.held.load(Ordering::Relaxed),
            last_error: c
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }

    /// Runs the module on one message: what it decided, with failures contained. Its
    /// `state` reads and writes go to `state`.
    pub fn evaluate(
        &self,
        message: &Arc<conversions::MessageParts>,
        current: &Verdict,
        state: &Arc<StateSession>,
    ) -> Outcome {
        self.evaluate_wit(message, current, &bindings::Verdict::from(current), state)
    }

    /// [`evaluate`](Self::evaluate) with the WIT form of `current` already built.
    fn evaluate_wit(
        &self,
        message: &Arc<conversions::MessageParts>,
        current: &Verdict,
        wit_current: &bindings::Verdict,
        state: &Arc<StateSession>,
    ) -> Outcome {
        if self.is_disabled() {
            // Counted, so a skipped (or held) message shows in `/metrics`.
            let label = match self.options.on_error {
                OnError::Skip => "disabled",
                OnError::Fail => "held",
            };
            crate::metrics::inc(
                crate::metrics::POLICY_CALLS,
                &[("policy", &self.name), ("outcome", label)],
            );
            return Outcome::Disabled;
        }
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        // A failed call's state writes go with its verdict: nowhere.
        let checkpoint = state.checkpoint();
        let outcome = match self.call(message, current, wit_current, state) {
            Ok(outcome) => outcome,
            Err(failure) => {
                state.rollback(checkpoint);
                Outcome::Failed(failure)
            }
        };
        match &outcome {
            Outcome::Failed(failure) => self.record_failure(failure),
            Outcome::Replaced(_) | Outcome::NotBounce(_) => {
                self.counters.consecutive.store(0, Ordering::Relaxed);
                self.counters.changed.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Kept | Outcome::Disabled => {
                self.counters.consecutive.store(0, Ordering::Relaxed)
            }
        }
        let label = match &outcome {
            Outcome::Kept => "keep",
            Outcome::Replaced(_) => "replace",
            Outcome::NotBounce(_) => "not-bounce",
            Outcome::Failed(f) if f.kind == FailureKind::Timeout => "timeout",
            Outcome::Failed(_) => "error",
            Outcome::Disabled => "disabled",
        };
        crate::metrics::inc(
            crate::metrics::POLICY_CALLS,
            &[("policy", &self.name), ("outcome", label)],
        );
        outcome
    }

    fn call(
        &self,
        message: &Arc<conversions::MessageParts>,
        current: &Verdict,
        wit_current: &bindings::Verdict,
        state: &Arc<StateSession>,
    ) -> std::result::Result<Outcome, Failure> {
        // Held for the whole call: at most `max_instances` instances exist (a new one is
        // made only when none is idle, and every one goes back to the pool or is dropped).
        let Some(_permit) = self.gate.acquire(self.options.instance_wait) else {
            return Err(Failure {
                kind: FailureKind::Busy,
                message: format!(
                    "all {} instances stayed busy for {:?}",
                    self.options.max_instances.max(1),
                    self.options.instance_wait
                ),
            });
        };
        let slot = self
            .pool
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut slot = match slot {
            Some(slot) => slot,
            None => {
                self.counters.instances.fetch_add(1, Ordering::Relaxed);
                let (store, policy) =
                    self.engine
                        .instantiate(&self.pre, &self.template)
                        .map_err(|e| {
                            classify_trap(
                                &e,
                                String::new(),
                                FailureKind::Instantiate,
                                &self.options,
                            )
                        })?;
                Slot {
                    store,
                    policy,
                    calls: 0,
                }
            }
        };
        slot.calls += 1;
        slot.store.data_mut().begin_call(state, self.options.state);
        slot.store
            .set_epoch_deadline(sandbox::deadline_ticks(self.options.timeout));
        let handle = slot
            .store
            .data_mut()
            .push_message(message)
            .map_err(|e| Failure {
                kind: FailureKind::Resources,
                message: format!(
                    "no room for the message handle: its instance holds {} resources ({e:#})",
                    sandbox::MAX_RESOURCES
                ),
            })?;
        let borrowed = wasmtime::component::Resource::new_borrow(handle.rep());
        let result = slot
            .policy
            .call_evaluate(&mut slot.store, borrowed, wit_current);
        slot.store.data_mut().pop_message(handle);
        let tail = if result.is_err() {
            slot.store.data().stdio_tail()
        } else {
            String::new()
        };
        slot.store.data_mut().end_call();
        let decision = match result {
            // A trapped instance is dead: drop it with its store.
            Err(trap) => return Err(classify_trap(&trap, tail, FailureKind::Trap, &self.options)),
            Ok(r) => r,
        };
        let outcome = match decision {
            Err(e) => Err(Failure {
                kind: FailureKind::PolicyError,
                message: host::truncate(&e.message, host::MAX_LOG_LINE).to_owned(),
            }),
            Ok(bindings::Decision::Keep) => Ok(Outcome::Kept),
            Ok(bindings::Decision::NotBounce) => {
                let v = conversions::not_bounce(&self.decided_by);
                if same_verdict(&v, current) {
                    Ok(Outcome::Kept)
                } else {
                    Ok(Outcome::NotBounce(v))
                }
            }
            Ok(bindings::Decision::Replace(v)) => {
                match conversions::verdict_from_guest(v, &self.decided_by) {
                    Ok(v) if same_verdict(&v, current) => Ok(Outcome::Kept),
                    Ok(v) => Ok(Outcome::Replaced(v)),
                    Err(e) => Err(Failure {
                        kind: FailureKind::Garbage,
                        message: e.to_string(),
                    }),
                }
            }
        };
        if slot.calls < self.options.recycle_after.max(1) {
            self.pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(slot);
        }
        outcome
    }

    fn record_failure(&self, failure: &Failure) {
        let c = &self.counters;
        c.failures.fetch_add(1, Ordering::Relaxed);
        // No free instance is load, not a fault of the module: it does not count towards
        // disabling it.
        let streak = if failure.kind == FailureKind::Busy {
            c.consecutive.load(Ordering::Relaxed)
        } else {
            c.consecutive.fetch_add(1, Ordering::Relaxed) + 1
        };
        *c.last_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(failure.to_string());
        tracing::warn!(
            target: "rebound::policy",
            module = &*self.name,
            kind = ?failure.kind,
            streak,
            "policy failed, verdict kept: {}",
            failure.message
        );
        let max = self.options.max_failures;
        if max > 0 && streak >= max && !c.disabled.swap(true, Ordering::Relaxed) {
            c.disabled_after.store(streak, Ordering::Relaxed);
            let then = match self.options.on_error {
                OnError::Skip => "messages pass without it",
                OnError::Fail => "on_error = \"fail\": every message is held until it is enabled",
            };
            tracing::error!(
                target: "rebound::policy",
                module = &*self.name,
                "policy disabled after {streak} failures in a row ({then}); last: {failure}"
            );
        }
    }

    /// The error of a message held by this disabled, fail-closed module.
    fn held(&self) -> Error {
        let c = &self.counters;
        c.held.fetch_add(1, Ordering::Relaxed);
        Error::Disabled {
            module: self.name.to_string(),
            failures: c.disabled_after.load(Ordering::Relaxed),
            last: c
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
                .unwrap_or_default(),
        }
    }
}

/// Equal kind and recipients (who decided does not count).
fn same_verdict(a: &Verdict, b: &Verdict) -> bool {
    a.kind == b.kind && a.recipients == b.recipients
}

/// A trap as a [`Failure`], with the guest's last stderr lines (a panic message).
fn classify_trap(
    err: &wasmtime::Error,
    stderr_tail: String,
    default: FailureKind,
    options: &ModuleOptions,
) -> Failure {
    use wasmtime::Trap;
    let text = format!("{err:#}");
    let (kind, what) = if let Some(trap) = err.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => (
                FailureKind::Timeout,
                format!("ran past its time cap of {:?}", options.timeout),
            ),
            Trap::StackOverflow => (
                FailureKind::StackOverflow,
                "exhausted the wasm stack".to_owned(),
            ),
            Trap::UnreachableCodeReached if stderr_tail.contains("panicked") => {
                (FailureKind::Panic, "panicked".to_owned())
            }
            _ => (default, trap.to_string()),
        }
    } else if sandbox::is_resource_exhaustion(err) {
        (
            FailureKind::Resources,
            format!(
                "created more than {} resources (handles) without dropping them",
                sandbox::MAX_RESOURCES
            ),
        )
    } else if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
        (FailureKind::Exit, format!("called exit({})", exit.0))
    } else if text.contains("growing memory") || text.contains("memory growth failure") {
        (
            FailureKind::OutOfMemory,
            format!(
                "tried to grow memory past its cap of {} bytes",
                options.max_memory
            ),
        )
    } else {
        (default, text.lines().next().unwrap_or_default().to_owned())
    };
    let message = if stderr_tail.is_empty() {
        what
    } else {
        format!("{what} (stderr: {stderr_tail})")
    };
    Failure { kind, message }
}

/// Runs `f` where WASI's blocking stdio may use Tokio: as is outside a runtime or on a
/// blocking thread, in `block_in_place` on a multi-threaded runtime's worker, else on a
/// scoped helper thread.
fn off_runtime<R: Send>(f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|_| Err(Error::Engine("policy thread panicked".into())))
        }),
    }
}

/// `policies/invalid_recipient.wasm` → `invalid-recipient`.
pub fn name_from_path(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "policy".to_owned())
}

/// An ordered chain of policy modules. `Send + Sync`; clone it cheaply (modules are
/// shared) or keep it behind an `Arc` and swap in a new one to change the chain.
#[derive(Debug, Clone, Default)]
pub struct PolicyChain {
    modules: Vec<Arc<PolicyModule>>,
}

impl PolicyChain {
    /// A chain with no modules: the built-in verdict stands.
    pub fn empty() -> PolicyChain {
        PolicyChain {
            modules: Vec::new(),
        }
    }

    /// A chain of these modules, run in this order. Modules may be shared between chains
    /// (a chain swapped in for another keeps the counters of the modules it reuses).
    pub fn new(modules: Vec<Arc<PolicyModule>>) -> PolicyChain {
        PolicyChain { modules }
    }

    /// The chain of the `[[policy]]` entries, in config order, compiled with the shared
    /// engine (and the on-disk cache in `limits.cache_dir`).
    ///
    /// # Errors
    /// The first module that does not load; [`Error::DuplicateName`].
    pub fn from_config(policies: &[PolicyConfig], limits: &PolicyLimits) -> Result<PolicyChain> {
        if policies.is_empty() {
            return Ok(PolicyChain::empty());
        }
        let engine = PolicyEngine::shared()?;
        let mut modules: Vec<Arc<PolicyModule>> = Vec::with_capacity(policies.len());
        for p in policies {
            if modules.iter().any(|m| m.name() == p.name) {
                return Err(Error::DuplicateName(p.name.clone()));
            }
            modules.push(Arc::new(PolicyModule::load(engine, p, limits)?));
        }
        Ok(PolicyChain { modules })
    }

    /// The modules, in order.
    pub fn modules(&self) -> &[Arc<PolicyModule>] {
        &self.modules
    }

    /// True without modules.
    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// Every module's counters, in chain order.
    pub fn stats(&self) -> Vec<ModuleStats> {
        self.modules.iter().map(|m| m.stats()).collect()
    }

    /// True if a module uses `state` (a run may then read the store: see
    /// [`run_with`](Self::run_with)).
    pub fn uses_state(&self) -> bool {
        self.modules.iter().any(|m| m.uses_state())
    }

    /// Runs the chain over one message and returns the final verdict. The modules' state
    /// starts empty and is dropped after the run ([`StateSession::ephemeral`]).
    ///
    /// # Errors
    /// [`Error::Failed`] only when a module configured with `on_error = "fail"` failed,
    /// [`Error::Disabled`] when such a module is disabled.
    pub fn run(&self, raw: &[u8], detection: &Detection) -> Result<Verdict> {
        if self.modules.is_empty() {
            return Ok(detection.verdict.clone());
        }
        let state = StateSession::ephemeral();
        off_runtime(|| self.run_steps(raw, detection, &state, |_, _| {}))
    }

    /// Like [`run`](Self::run), with what each module did.
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_detailed(&self, raw: &[u8], detection: &Detection) -> Result<ChainRun> {
        self.run_with(raw, detection, &StateSession::ephemeral())
    }

    /// Like [`run_detailed`](Self::run_detailed), the modules' state read from and written
    /// to `state`; the run's writes come back in [`ChainRun::state_writes`] (a run that
    /// fails writes nothing).
    ///
    /// Safe to call from async code: WASI's stdio may block on a runtime, so on a Tokio
    /// worker thread the chain runs inside `block_in_place` (multi-threaded runtime) or on
    /// a short-lived helper thread (current-thread runtime). A session over the store
    /// blocks on the runtime for each read: call it on a blocking thread then (as
    /// `pipeline::judge` does).
    ///
    /// # Errors
    /// As [`run`](Self::run).
    pub fn run_with(
        &self,
        raw: &[u8],
        detection: &Detection,
        state: &Arc<StateSession>,
    ) -> Result<ChainRun> {
        if self.modules.is_empty() {
            return Ok(ChainRun {
                verdict: detection.verdict.clone(),
                steps: Vec::new(),
                state_writes: Vec::new(),
            });
        }
        off_runtime(|| {
            let mut steps = Vec::with_capacity(self.modules.len());
            let verdict = self.run_steps(raw, detection, state, |module, outcome| {
                steps.push(Step {
                    module: module.to_owned(),
                    outcome: outcome.clone(),
                })
            })?;
            Ok(ChainRun {
                verdict,
                steps,
                state_writes: state.take_writes(),
            })
        })
    }

    /// The chain proper: every module in order, `on_step` told what each did. A run that
    /// fails leaves nothing in `state`.
    fn run_steps(
        &self,
        raw: &[u8],
        detection: &Detection,
        state: &Arc<StateSession>,
        on_step: impl FnMut(&str, &Outcome),
    ) -> Result<Verdict> {
        let checkpoint = state.checkpoint();
        let run = self.run_modules(raw, detection, state, on_step);
        if run.is_err() {
            state.rollback(checkpoint);
        }
        run
    }

    fn run_modules(
        &self,
        raw: &[u8],
        detection: &Detection,
        state: &Arc<StateSession>,
        mut on_step: impl FnMut(&str, &Outcome),
    ) -> Result<Verdict> {
        let mut verdict = detection.verdict.clone();
        let message = Arc::new(conversions::message(raw, &detection.report));
        // The WIT form of the verdict so far, rebuilt only when a module changed it.
        let mut wit_verdict = bindings::Verdict::from(&verdict);
        for module in &self.modules {
            let outcome = module.evaluate_wit(&message, &verdict, &wit_verdict, state);
            on_step(module.name(), &outcome);
            match outcome {
                Outcome::Replaced(v) | Outcome::NotBounce(v) => {
                    verdict = v;
                    wit_verdict = bindings::Verdict::from(&verdict);
                }
                Outcome::Failed(f) if module.options.on_error == OnError::Fail => {
                    return Err(Error::Failed {
                        module: module.name().to_owned(),
                        message: f.to_string(),
                    });
                }
                // A fail-closed module is never skipped: while disabled it holds messages.
                Outcome::Disabled if module.options.on_error == OnError::Fail => {
                    return Err(module.held());
                }
                Outcome::Failed(_) | Outcome::Kept | Outcome::Disabled => {}
            }
        }
        Ok(verdict)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn chain_is_send_and_sync() {
        assert_send_sync::<PolicyChain>();
        assert_send_sync::<PolicyModule>();
    }

    #[test]
    fn empty_chain_keeps_the_builtin_verdict() {
        let detection = crate::detector::detect(b"Subject: hi\r\n\r\nhello\r\n");
        let verdict = PolicyChain::empty().run(b"", &detection).unwrap();
        assert_eq!(verdict, detection.verdict);
    }

    #[test]
    fn names_come_from_file_stems() {
        assert_eq!(
            name_from_path(Path::new("a/invalid_recipient.wasm")),
            "invalid-recipient"
        );
    }

    #[test]
    fn options_from_config_override_limits() {
        let limits = PolicyLimits::default();
        let p: PolicyConfig = toml::from_str(
            "name = \"x\"\npath = \"x.wasm\"\ntimeout = \"10ms\"\non_error = \"fail\"",
        )
        .unwrap();
        let o = ModuleOptions::from_config(&p, &limits);
        assert_eq!(o.timeout, Duration::from_millis(10));
        assert_eq!(o.max_memory, limits.memory);
        assert_eq!(o.on_error, OnError::Fail);
    }
}
