//! The sandbox: the one wasmtime [`Engine`] of the process, the [`Linker`] that defines
//! what a policy may import, the epoch ticker that enforces the time cap, and the checks a
//! component must pass before it is accepted.
//!
//! In: `.wasm` bytes. Out: a validated [`Component`] (or an [`Error`] that says exactly why
//! not), and fresh [`Store`]s with the caps of a module.
//!
//! Which world version a component targets is read off its imports (the `message` type of
//! `evaluate` always comes from `rebound:policy/types@<version>`): `0.3.0`, `0.2.0` and
//! `0.1.0` are run, each with its own bindings (`Pre`, `Instance`); any other version is
//! refused.
//!
//! What a policy may import: the world's own `rebound:policy/host` (and its types, and from
//! 0.3.0 on its `state`), of the one version it targets, plus WASI 0.2 (`wasi:cli`, `wasi:io`, `wasi:random`,
//! `wasi:clocks`, `wasi:filesystem`, `wasi:sockets`), because the runtimes of other
//! languages (CPython in a componentize-py component) import all of it to start, even when
//! a policy uses none of it. Every one of them is backed by a context that grants nothing:
//! no environment variables, no arguments, empty stdin, stdout and stderr captured into
//! the host log; no preopened directory (every file system call fails: there is no
//! descriptor to start from); no network (creating a socket or resolving a name is
//! refused); and stopped clocks (the wall clock reads the Unix epoch, the monotonic clock
//! 0, and a wait on either is over at once, so a policy can neither measure time nor
//! sleep past its time cap). Any other import (`wasi:http`, another package) is refused at
//! load.

use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker, types::ComponentItem};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiView;
use wasmtime_wasi::p2::bindings::{cli, clocks, random};

use super::bindings::{self, WorldVersion, v0_1, v0_2, v0_3};
use super::host::GuestState;
use super::{Error, Result};

/// How often the ticker advances the engine's epoch: the granularity of the time cap.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Most core instances, tables and memories one guest component may create.
const MAX_INSTANCES: usize = 64;
const MAX_TABLES: usize = 64;
const MAX_MEMORIES: usize = 8;
/// Most elements in one table.
const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Most resources (handles: the message, WASI streams and pollables, the guest's own
/// resources) one instance may hold at once, in the host's resource table and in the
/// store's component handle tables alike. A call needs a handful; a guest that creates
/// them in a loop traps here instead of growing the host's memory (wasmtime's defaults
/// are 1 000 000 and 100 000).
pub const MAX_RESOURCES: usize = 1024;

/// WASI interfaces a policy may import (name without version; any `0.2.x` version).
const ALLOWED_WASI: &[&str] = &[
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/preopens",
    "wasi:filesystem/types",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
];

/// The process's policy engine: one wasmtime [`Engine`] (shared by every module and every
/// chain) and the [`Linker`] with the allowed imports.
pub struct PolicyEngine {
    engine: Engine,
    linker: Linker<GuestState>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine").finish_non_exhaustive()
    }
}

static SHARED: OnceLock<std::result::Result<PolicyEngine, String>> = OnceLock::new();

impl PolicyEngine {
    /// The engine of this process, built on first use (with its epoch ticker thread).
    ///
    /// Settings: Cranelift, epoch interruption (ticks every [`EPOCH_TICK`]), no fuel,
    /// a 512 KiB wasm stack, parallel compilation.
    ///
    /// # Errors
    /// [`Error::Engine`] if wasmtime cannot be set up on this machine.
    pub fn shared() -> Result<&'static PolicyEngine> {
        SHARED
            .get_or_init(|| PolicyEngine::build().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| Error::Engine(e.clone()))
    }

    fn build() -> wasmtime::Result<PolicyEngine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(512 * 1024)
            .parallel_compilation(true);
        let engine = Engine::new(&config)?;

        let mut linker: Linker<GuestState> = Linker::new(&engine);
        v0_3::Policy::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |s| s)?;
        v0_2::Policy::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |s| s)?;
        v0_1::Policy::add_to_linker::<GuestState, HasSelf<GuestState>>(&mut linker, |s| s)?;
        add_wasi_subset(&mut linker)?;

        let weak = engine.weak();
        std::thread::Builder::new()
            .name("rebound-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| wasmtime::format_err!("starting the epoch ticker: {e}"))?;
        Ok(PolicyEngine { engine, linker })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Checks and compiles a policy component.
    ///
    /// # Errors
    /// [`Error::NotWasm`], [`Error::CoreModule`], [`Error::Precompiled`],
    /// [`Error::Compile`], [`Error::ForbiddenImport`], [`Error::WrongWorld`] (also for a
    /// world version this host does not run).
    pub(crate) fn compile(&self, name: &str, bytes: &[u8]) -> Result<(Component, Pre)> {
        check_header(name, bytes)?;
        let component = Component::new(&self.engine, bytes).map_err(|e| Error::Compile {
            module: name.to_owned(),
            message: format!("{e:#}"),
        })?;
        self.prepare(name, component)
    }

    /// The checks on a compiled component and its pre-instantiation with the bindings of
    /// the world version it targets.
    pub(crate) fn prepare(&self, name: &str, component: Component) -> Result<(Component, Pre)> {
        let version = check_world(&self.engine, name, &component)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| match version {
                WorldVersion::V0_3 => v0_3::PolicyPre::new(pre).map(Pre::V0_3),
                WorldVersion::V0_2 => v0_2::PolicyPre::new(pre).map(Pre::V0_2),
                WorldVersion::V0_1 => v0_1::PolicyPre::new(pre).map(Pre::V0_1),
            })
            .map_err(|e| Error::WrongWorld {
                module: name.to_owned(),
                detail: format!("for {}: {e:#}", version.world()),
            })?;
        Ok((component, pre))
    }

    /// A fresh store for one instance of a module, with its memory cap. The caller sets
    /// the epoch deadline before every call.
    pub(crate) fn store(&self, state_template: &StoreTemplate) -> Store<GuestState> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(state_template.max_memory).unwrap_or(usize::MAX))
            .instances(MAX_INSTANCES)
            .tables(MAX_TABLES)
            .memories(MAX_MEMORIES)
            .table_elements(MAX_TABLE_ELEMENTS)
            .trap_on_grow_failure(true)
            .build();
        let state = GuestState::new(
            state_template.module.clone(),
            state_template.config.clone(),
            limits,
        );
        let mut store = Store::new(&self.engine, state);
        store.set_max_component_handles(MAX_RESOURCES);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        store
    }

    /// Instantiates a module in a fresh store; the time cap covers start-up code too.
    pub(crate) fn instantiate(
        &self,
        pre: &Pre,
        template: &StoreTemplate,
    ) -> wasmtime::Result<(Store<GuestState>, Instance)> {
        let mut store = self.store(template);
        store.set_epoch_deadline(deadline_ticks(template.timeout));
        let instance = match pre {
            Pre::V0_3(pre) => Instance::V0_3(pre.instantiate(&mut store)?),
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate(&mut store)?),
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate(&mut store)?),
        };
        Ok((store, instance))
    }
}

/// A checked component, ready to instantiate, with the bindings of its world version.
#[derive(Clone)]
pub(crate) enum Pre {
    /// `rebound:policy@0.1.0`.
    V0_1(v0_1::PolicyPre<GuestState>),
    /// `rebound:policy@0.2.0`.
    V0_2(v0_2::PolicyPre<GuestState>),
    /// `rebound:policy@0.3.0`.
    V0_3(v0_3::PolicyPre<GuestState>),
}

impl Pre {
    /// The world version the component targets.
    pub(crate) fn version(&self) -> WorldVersion {
        match self {
            Pre::V0_1(_) => WorldVersion::V0_1,
            Pre::V0_2(_) => WorldVersion::V0_2,
            Pre::V0_3(_) => WorldVersion::V0_3,
        }
    }
}

/// A live instance of a policy, of either world version.
pub(crate) enum Instance {
    /// `rebound:policy@0.1.0`.
    V0_1(v0_1::Policy),
    /// `rebound:policy@0.2.0`.
    V0_2(v0_2::Policy),
    /// `rebound:policy@0.3.0`.
    V0_3(v0_3::Policy),
}

impl Instance {
    /// Calls `evaluate` with the current verdict in 0.3.0 form; a 0.2.0 instance is shown
    /// the same converted, a 0.1.0 one without blame, and their decisions come back as
    /// 0.3.0 ones (a 0.1.0 one's without blame).
    ///
    /// # Errors
    /// A trap: the instance is dead.
    pub(crate) fn call_evaluate(
        &self,
        store: &mut Store<GuestState>,
        message: wasmtime::component::Resource<super::conversions::MessageData>,
        current: &bindings::Verdict,
    ) -> wasmtime::Result<std::result::Result<bindings::Decision, bindings::PolicyError>> {
        match self {
            Instance::V0_3(policy) => policy.call_evaluate(store, message, current),
            Instance::V0_2(policy) => {
                let current = v0_2::rebound::policy::types::Verdict::from(current);
                let decision = policy.call_evaluate(store, message, &current)?;
                Ok(decision.map(Into::into).map_err(Into::into))
            }
            Instance::V0_1(policy) => {
                let current = v0_1::rebound::policy::types::Verdict::from(current);
                let decision = policy.call_evaluate(store, message, &current)?;
                Ok(decision.map(Into::into).map_err(Into::into))
            }
        }
    }
}

/// What every store of one module is made from.
#[derive(Clone)]
pub(crate) struct StoreTemplate {
    pub(crate) module: std::sync::Arc<str>,
    pub(crate) config: std::sync::Arc<std::collections::BTreeMap<String, String>>,
    pub(crate) max_memory: u64,
    pub(crate) timeout: Duration,
}

/// True for a trap of a guest that ran out of resource handles ([`MAX_RESOURCES`]): the
/// host's resource table is full, or the store's handle limit is reached.
pub(crate) fn is_resource_exhaustion(err: &wasmtime::Error) -> bool {
    let full = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<wasmtime::component::ResourceTableError>(),
            Some(wasmtime::component::ResourceTableError::Full)
        )
    });
    full || format!("{err:#}").contains("store handle limit exceeded")
}

/// Epoch ticks for a time cap: rounded up, plus one for the tick already under way.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    let ticks = timeout.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}

/// `HasData` for host traits implemented on the resource table (wasi:io).
struct HasTable;

impl wasmtime::component::HasData for HasTable {
    type Data<'a> = &'a mut wasmtime::component::ResourceTable;
}

fn add_wasi_subset(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
    use wasmtime_wasi::p2::bindings::sync::{self, io};
    use wasmtime_wasi::p2::bindings::{filesystem, sockets};
    use wasmtime_wasi::random::WasiRandom;
    use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
    let l = linker;
    cli::exit::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::environment::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::stdin::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::stdout::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::stderr::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_input::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_output::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_stdin::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_stdout::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    cli::terminal_stderr::add_to_linker::<GuestState, WasiCli>(l, GuestState::cli)?;
    random::random::add_to_linker::<GuestState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure::add_to_linker::<GuestState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    random::insecure_seed::add_to_linker::<GuestState, WasiRandom>(l, |t| t.ctx().ctx.random())?;
    io::error::add_to_linker::<GuestState, HasTable>(l, |t| t.ctx().table)?;
    io::poll::add_to_linker::<GuestState, HasTable>(l, |t| t.ctx().table)?;
    io::streams::add_to_linker::<GuestState, HasTable>(l, |t| t.ctx().table)?;
    // Linked so that other languages' runtimes start; the context grants nothing (see
    // the module docs and `GuestState::new`).
    filesystem::preopens::add_to_linker::<GuestState, WasiFilesystem>(l, GuestState::filesystem)?;
    sync::filesystem::types::add_to_linker::<GuestState, WasiFilesystem>(
        l,
        GuestState::filesystem,
    )?;
    sockets::tcp_create_socket::add_to_linker::<GuestState, WasiSockets>(l, GuestState::sockets)?;
    sockets::instance_network::add_to_linker::<GuestState, WasiSockets>(l, GuestState::sockets)?;
    sockets::network::add_to_linker::<GuestState, WasiSockets>(
        l,
        &Default::default(),
        GuestState::sockets,
    )?;
    sockets::ip_name_lookup::add_to_linker::<GuestState, WasiSockets>(l, GuestState::sockets)?;
    sync::sockets::tcp::add_to_linker::<GuestState, WasiSockets>(l, GuestState::sockets)?;
    sync::sockets::udp::add_to_linker::<GuestState, WasiSockets>(l, GuestState::sockets)?;
    sync::sockets::udp_create_socket::add_to_linker::<GuestState, WasiSockets>(
        l,
        GuestState::sockets,
    )?;
    clocks::wall_clock::add_to_linker::<GuestState, Stopped>(l, |t| StoppedClocks(t.ctx().table))?;
    clocks::monotonic_clock::add_to_linker::<GuestState, Stopped>(l, |t| {
        StoppedClocks(t.ctx().table)
    })?;
    Ok(())
}

/// The clocks a policy sees: stopped. A verdict must not depend on when it is made (a
/// reprocessing run judges a message as the poller did), and a policy must not wait: a
/// wait would block the host thread, where the epoch deadline cannot interrupt it. (The
/// table holds the pollables of waits.)
struct StoppedClocks<'a>(&'a mut wasmtime::component::ResourceTable);

/// `HasData` for [`StoppedClocks`].
struct Stopped;

impl wasmtime::component::HasData for Stopped {
    type Data<'a> = StoppedClocks<'a>;
}

impl clocks::wall_clock::Host for StoppedClocks<'_> {
    fn now(&mut self) -> wasmtime::Result<clocks::wall_clock::Datetime> {
        Ok(clocks::wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 0,
        })
    }

    fn resolution(&mut self) -> wasmtime::Result<clocks::wall_clock::Datetime> {
        Ok(clocks::wall_clock::Datetime {
            seconds: 1,
            nanoseconds: 0,
        })
    }
}

impl clocks::monotonic_clock::Host for StoppedClocks<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1_000_000_000)
    }

    fn subscribe_instant(
        &mut self,
        _when: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        ready_at_once(self.0)
    }

    fn subscribe_duration(
        &mut self,
        _duration: u64,
    ) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
        ready_at_once(self.0)
    }
}

/// A wait on a stopped clock: over as soon as it is polled.
struct Elapsed;

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for Elapsed {
    async fn ready(&mut self) {}
}

fn ready_at_once(
    table: &mut wasmtime::component::ResourceTable,
) -> wasmtime::Result<wasmtime::component::Resource<wasmtime_wasi::p2::DynPollable>> {
    let elapsed = table.push(Elapsed)?;
    wasmtime_wasi::p2::subscribe(table, elapsed)
}

/// Refuses what is not a component before compiling anything.
fn check_header(name: &str, bytes: &[u8]) -> Result<()> {
    if Engine::detect_precompiled(bytes).is_some() {
        return Err(Error::Precompiled {
            module: name.to_owned(),
        });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(Error::NotWasm {
            module: name.to_owned(),
        });
    }
    // Version 1 with layer 0 is a core module; components are layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(Error::CoreModule {
            module: name.to_owned(),
        });
    }
    Ok(())
}

/// The world check: what it imports and exports, and which world version it targets,
/// with a message that names the culprit.
fn check_world(engine: &Engine, name: &str, component: &Component) -> Result<WorldVersion> {
    let ty = component.component_type();
    let mut ours: Vec<&str> = Vec::new();
    for (import, item) in ty.imports(engine) {
        if import.starts_with(POLICY_PREFIX) {
            ours.push(import);
            continue;
        }
        // A type (such as the `message` resource a world `use`s) grants nothing by itself.
        let type_only = matches!(item.ty, ComponentItem::Type(_) | ComponentItem::Resource(_));
        if !type_only && !wasi_allowed(import) {
            return Err(Error::ForbiddenImport {
                module: name.to_owned(),
                import: import.to_owned(),
            });
        }
    }
    let exports: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    if !matches!(
        ty.get_export(engine, bindings::EXPORT).map(|e| e.ty),
        Some(ComponentItem::ComponentFunc(_))
    ) {
        return Err(Error::WrongWorld {
            module: name.to_owned(),
            detail: format!(
                "it does not export `{}` (it exports: {}); build it for the `policy` world of {}",
                bindings::EXPORT,
                if exports.is_empty() {
                    "nothing".to_owned()
                } else {
                    exports.join(", ")
                },
                bindings::PACKAGE
            ),
        });
    }
    let version = world_version(&ours).map_err(|detail| Error::WrongWorld {
        module: name.to_owned(),
        detail,
    })?;
    if let Some(import) = ours.iter().find(|i| !policy_import_allowed(i, version)) {
        return Err(Error::ForbiddenImport {
            module: name.to_owned(),
            import: (*import).to_owned(),
        });
    }
    Ok(version)
}

/// How every import of the world's own package starts.
const POLICY_PREFIX: &str = "rebound:policy/";

/// The one world version the `rebound:policy/...@<version>` imports name, or why there is
/// none this host runs.
fn world_version(imports: &[&str]) -> std::result::Result<WorldVersion, String> {
    let mut versions: Vec<&str> = imports
        .iter()
        .map(|i| i.split_once('@').map_or("", |(_, v)| v))
        .collect();
    versions.sort_unstable();
    versions.dedup();
    let supported = WorldVersion::supported();
    match versions.as_slice() {
        [] => Err(format!(
            "it imports nothing of {}; build it for the `policy` world of {} (runs: {supported})",
            bindings::PACKAGE_NAME,
            bindings::PACKAGE
        )),
        [one] => WorldVersion::parse(one).ok_or_else(|| {
            let named = if one.is_empty() {
                format!("{} without a version", bindings::PACKAGE_NAME)
            } else {
                format!("{}@{one}", bindings::PACKAGE_NAME)
            };
            format!(
                "it targets {named} (imports {}); this host runs {} components of version \
                 {supported}",
                imports.join(", "),
                bindings::PACKAGE_NAME
            )
        }),
        _ => Err(format!(
            "it mixes versions of {} (imports {}); build it for one version ({supported})",
            bindings::PACKAGE_NAME,
            imports.join(", ")
        )),
    }
}

/// True for the world's own imports at `version`: its host and types interfaces.
fn policy_import_allowed(import: &str, version: WorldVersion) -> bool {
    import == version.host_interface()
        || import == version.types_interface()
        || version.state_interface().is_some_and(|s| import == s)
}

/// True for the WASI imports listed in the module docs.
fn wasi_allowed(import: &str) -> bool {
    let (base, version) = import.split_once('@').unwrap_or((import, ""));
    version.starts_with("0.2.") && ALLOWED_WASI.contains(&base)
}

/// The imports and exports of a component, for `rebound policy check`.
pub(crate) fn describe(engine: &Engine, component: &Component) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty.imports(engine).map(|(n, _)| n.to_owned()).collect();
    let exports = ty.exports(engine).map(|(n, _)| n.to_owned()).collect();
    (imports, exports)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn imports_outside_the_allowed_set_are_refused() {
        let v1 = WorldVersion::V0_1;
        let v2 = WorldVersion::V0_2;
        let v3 = WorldVersion::V0_3;
        assert!(policy_import_allowed("rebound:policy/state@0.3.0", v3));
        assert!(!policy_import_allowed("rebound:policy/state@0.2.0", v2));
        assert!(!policy_import_allowed("rebound:policy/state@0.3.0", v2));
        assert!(policy_import_allowed("rebound:policy/host@0.1.0", v1));
        assert!(policy_import_allowed("rebound:policy/types@0.1.0", v1));
        assert!(policy_import_allowed("rebound:policy/host@0.2.0", v2));
        assert!(!policy_import_allowed("rebound:policy/host@0.1.0", v2));
        assert!(!policy_import_allowed("rebound:policy/secrets@0.2.0", v2));
        assert!(wasi_allowed("wasi:cli/stderr@0.2.6"));
        assert!(!wasi_allowed("rebound:policy/host@0.2.0"));
        assert!(wasi_allowed("wasi:filesystem/types@0.2.6"));
        assert!(wasi_allowed("wasi:clocks/wall-clock@0.2.6"));
        assert!(wasi_allowed("wasi:sockets/tcp@0.2.6"));
        assert!(!wasi_allowed("wasi:http/outgoing-handler@0.2.6"));
        assert!(!wasi_allowed("wasi:keyvalue/store@0.2.0-draft"));
        assert!(!wasi_allowed("wasi:cli/stderr@0.3.0"));
    }

    #[test]
    fn world_version_is_read_off_the_imports() {
        let v = world_version(&["rebound:policy/types@0.2.0", "rebound:policy/host@0.2.0"]);
        assert_eq!(v, Ok(WorldVersion::V0_2));
        assert_eq!(
            world_version(&["rebound:policy/types@0.1.0"]),
            Ok(WorldVersion::V0_1)
        );
        for future in ["0.4.0", "1.0.0", "0.3.1"] {
            let types = format!("rebound:policy/types@{future}");
            let err = world_version(&[types.as_str()]).unwrap_err();
            assert!(
                err.contains(&format!("targets rebound:policy@{future}"))
                    && err.contains("0.3.0 (current), 0.2.0, 0.1.0"),
                "{err}"
            );
        }
        let err = world_version(&["rebound:policy/types"]).unwrap_err();
        assert!(err.contains("without a version"), "{err}");
        let err = world_version(&["rebound:policy/types@0.1.0", "rebound:policy/host@0.2.0"])
            .unwrap_err();
        assert!(err.contains("mixes versions"), "{err}");
        let err = world_version(&[]).unwrap_err();
        assert!(err.contains("imports nothing of rebound:policy"), "{err}");
    }

    #[test]
    fn deadline_rounds_up_and_adds_a_tick() {
        assert_eq!(deadline_ticks(Duration::from_millis(50)), 11);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }

    #[test]
    fn headers_of_non_components_are_refused() {
        assert!(matches!(
            check_header("x", b"hello world"),
            Err(Error::NotWasm { .. })
        ));
        assert!(matches!(
            check_header("x", b"\0asm\x01\0\0\0"),
            Err(Error::CoreModule { .. })
        ));
        assert!(check_header("x", b"\0asm\x0d\0\x01\0").is_ok());
    }
}
