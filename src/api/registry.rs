//! The live policy chain: modules from the config plus uploaded ones, kept in the store
//! (so every host on one store runs the same chain), swapped in atomically.
//!
//! In the store ([`crate::store::policies`]): every version's bytes under its SHA-256, and
//! one manifest: the chain's order and, per module, its versions (digests, oldest first),
//! whether the config names it, and the config modules removed through the API. The
//! compiled code stays per host (the compile cache, `[policy_limits] cache_dir`).
//!
//! A change (an upload, a removal, a rollback, a new order) is made on the newest manifest
//! and written over its version; when another host changed the chain in between, the change
//! is made again on the newer one, so concurrent changes on several hosts all take effect.
//! Every host follows the chain ([`PolicyRegistry::follow`], the version polled every
//! [`FOLLOW_INTERVAL`]): a change through one host's API is used by every host within that
//! interval. A chain that does not load on this host (a component that no longer compiles)
//! leaves the previous one running, with an error in the log.
//!
//! A message in flight holds an `Arc` of the chain it started with, so it sees the old
//! chain or the new one, never half of each.
//!
//! Stores from before the chain was kept in the store take it, once, from the directory
//! where `rebound serve` used to keep it (`[api] data_dir`: `registry.json` and the
//! uploaded `.wasm` files).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::config::{PolicyConfig, PolicyLimits};
use crate::policy::{self, ModuleOptions, ModuleStats, PolicyChain, PolicyEngine, PolicyModule};
use crate::store::{self, Store};

/// How often a host looks for a chain changed by another (one single-row read).
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(1);

/// Errors of the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component was refused or failed to compile.
    #[error(transparent)]
    Policy(#[from] policy::Error),
    /// No module of that name.
    #[error("no policy named {0:?}")]
    NotFound(String),
    /// Rollback without an earlier version.
    #[error("policy {0:?} has no earlier version to roll back to")]
    NoPrevious(String),
    /// A name outside the rules.
    #[error("invalid policy name {0:?}: use 1-64 characters a-z, 0-9, '-' or '_'")]
    InvalidName(String),
    /// A new order that is not a permutation of the current modules.
    #[error("the order must name every policy exactly once (have: {0})")]
    BadOrder(String),
    /// Reading or writing the chain in the store.
    #[error("policy chain in the store: {0}")]
    Store(#[from] store::Error),
    /// The store's manifest cannot be read, or names a version the store does not hold.
    #[error("policy chain in the store (version {version}): {reason}")]
    Manifest {
        /// The chain's version.
        version: i64,
        /// What is wrong.
        reason: String,
    },
    /// The old on-disk chain (imported once) cannot be read.
    #[error("policy data directory {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not also a `source()`, which would print it
        /// twice in an error chain).
        cause: std::io::Error,
    },
    /// A policy's `.wasm` file (a `[[policy]]` entry's `path`, or an upload kept on disk
    /// before the store kept them) cannot be read.
    #[error("policy {name:?}{}: cannot read {path}: {cause}", origin(.from_config))]
    PolicyFile {
        /// The policy's name.
        name: String,
        /// Its file.
        path: PathBuf,
        /// Whether the config names it (else it was uploaded).
        from_config: bool,
        /// The I/O error, in the message.
        cause: std::io::Error,
    },
}

/// Where a policy comes from, for [`Error::PolicyFile`]'s message.
fn origin(from_config: &bool) -> &'static str {
    if *from_config {
        " (a [[policy]] entry of the config)"
    } else {
        ""
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// One module of the chain with its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    name: String,
    /// Digests of its versions, oldest first; the last one runs.
    versions: Vec<String>,
    /// From `[[policy]]` in the config (its settings apply), or uploaded.
    from_config: bool,
}

/// The chain as the store keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    entries: Vec<Entry>,
    /// Config modules removed through the API: not added back at the next start.
    #[serde(default)]
    removed_from_config: Vec<String>,
}

/// What `GET /policies` shows of one module.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyInfo {
    /// Position in the chain, from 1.
    pub position: usize,
    /// Version number, from 1 (the number of versions kept).
    pub version: usize,
    /// True when the module comes from the config file.
    pub from_config: bool,
    /// Counters and digest.
    #[serde(flatten)]
    pub stats: ModuleStats,
}

/// The chain this host runs: the store's version it was loaded from.
#[derive(Default)]
struct Loaded {
    version: i64,
    manifest: Manifest,
    modules: Vec<Arc<PolicyModule>>,
    /// A newer version that did not load here (not tried again until the next change).
    failed: Option<i64>,
}

/// The registry: the chain's manifest, the compiled modules and the live chain.
pub struct PolicyRegistry {
    store: Store,
    limits: PolicyLimits,
    config: Vec<PolicyConfig>,
    /// Serialises this host's changes and loads; readers never take it.
    state: tokio::sync::Mutex<Loaded>,
    chain: Arc<ArcSwap<PolicyChain>>,
}

impl PolicyRegistry {
    /// Loads the store's chain; the config's `[[policy]]` entries it does not hold yet
    /// are added to it (and an entry whose file changed gets that file as its new
    /// version). A store without a chain first takes the one kept on disk in `import_dir`
    /// (the `[api] data_dir` of earlier releases), when there is one.
    ///
    /// # Errors
    /// A module that does not load, an unreadable file, or the store.
    pub async fn open(
        store: Store,
        config: &[PolicyConfig],
        limits: &PolicyLimits,
        import_dir: Option<&Path>,
    ) -> Result<PolicyRegistry> {
        let registry = PolicyRegistry {
            store,
            limits: limits.clone(),
            config: config.to_vec(),
            state: tokio::sync::Mutex::new(Loaded::default()),
            chain: Arc::new(ArcSwap::from_pointee(PolicyChain::empty())),
        };
        let imported = match import_dir {
            Some(dir) if registry.store.policy_chain_version().await? == 0 => {
                registry.import(dir).await?
            }
            _ => None,
        };
        // The config's files, in the store before the manifest names them.
        let mut files = Vec::with_capacity(config.len());
        for p in config {
            let bytes = read_policy(&p.name, &p.path, true)?;
            let digest = policy::cache::digest(&bytes);
            registry.store.put_policy_module(&digest, &bytes).await?;
            files.push((p.name.clone(), digest));
        }
        registry
            .change(Vec::new(), |manifest, version| {
                if version == 0
                    && let Some(old) = &imported
                {
                    *manifest = old.clone();
                }
                for (name, digest) in &files {
                    if manifest.removed_from_config.contains(name) {
                        continue;
                    }
                    match manifest.entries.iter_mut().find(|e| &e.name == name) {
                        Some(e) if e.from_config => {
                            if e.versions.last() != Some(digest) {
                                e.versions.retain(|v| v != digest);
                                e.versions.push(digest.clone());
                            }
                        }
                        Some(_) => {}
                        None => manifest.entries.push(Entry {
                            name: name.clone(),
                            versions: vec![digest.clone()],
                            from_config: true,
                        }),
                    }
                }
                Ok(())
            })
            .await?;
        Ok(registry)
    }

    /// The live chain. Hold the returned `Arc` for the whole message.
    pub fn chain(&self) -> Arc<PolicyChain> {
        self.chain.load_full()
    }

    /// The swappable chain itself, for long-running stages (the poller) that load it
    /// afresh for every message.
    pub fn live_chain(&self) -> Arc<ArcSwap<PolicyChain>> {
        self.chain.clone()
    }

    /// Every module, in chain order.
    pub async fn list(&self) -> Vec<PolicyInfo> {
        let state = self.state.lock().await;
        info(&state.manifest, &state.modules)
    }

    /// Follows the store's chain until `stop` completes: every [`FOLLOW_INTERVAL`], a
    /// chain changed by another host is loaded and swapped in.
    pub async fn follow(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(FOLLOW_INTERVAL) => {}
            }
            if let Err(e) = self.reload().await {
                tracing::warn!("following the policy chain in the store: {e}");
            }
        }
    }

    /// Loads the store's chain when it changed since this host loaded it; returns its
    /// version.
    ///
    /// # Errors
    /// The store, or a chain that does not load here (the previous one stays).
    pub async fn reload(&self) -> Result<i64> {
        let version = self.store.policy_chain_version().await?;
        let mut state = self.state.lock().await;
        if version != state.version && state.failed != Some(version) {
            self.refresh(&mut state).await?;
        }
        Ok(state.version)
    }

    /// Checks and compiles an uploaded component and swaps it in: a new module goes to the
    /// end of the chain, an existing one is replaced in place and its previous version kept.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Policy`] for a refused component, [`Error::Store`].
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<PolicyInfo> {
        check_name(name)?;
        let options = self.options(name);
        let module_name = name.to_owned();
        // Compiling takes tens of milliseconds of CPU: keep it off the async workers.
        let (module, bytes) = tokio::task::spawn_blocking(move || {
            let engine = PolicyEngine::shared()?;
            PolicyModule::compile(engine, &module_name, &bytes, options).map(|m| (m, bytes))
        })
        .await
        .map_err(|e| policy::Error::Engine(format!("compile task failed: {e}")))??;
        let digest = module.digest().to_owned();
        self.store.put_policy_module(&digest, &bytes).await?;
        drop(bytes);
        self.change(vec![Arc::new(module)], |manifest, _| {
            match manifest.entries.iter_mut().find(|e| e.name == name) {
                Some(entry) => {
                    entry.versions.retain(|v| *v != digest);
                    entry.versions.push(digest.clone());
                }
                None => {
                    manifest.removed_from_config.retain(|n| n != name);
                    manifest.entries.push(Entry {
                        name: name.to_owned(),
                        versions: vec![digest.clone()],
                        from_config: false,
                    });
                }
            }
            Ok(())
        })
        .await?;
        self.info_of(name).await
    }

    /// Removes a module from the chain (its versions stay in the store); a module from the
    /// config stays removed across restarts until one of that name is uploaded again.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Store`].
    pub async fn remove(&self, name: &str) -> Result<()> {
        self.change(Vec::new(), |manifest, _| {
            let i = position(manifest, name)?;
            if manifest.entries.remove(i).from_config {
                manifest.removed_from_config.push(name.to_owned());
            }
            Ok(())
        })
        .await
    }

    /// Puts the previous version of a module back in place of the current one.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NoPrevious`], [`Error::Policy`], [`Error::Store`].
    pub async fn rollback(&self, name: &str) -> Result<PolicyInfo> {
        self.change(Vec::new(), |manifest, _| {
            let i = position(manifest, name)?;
            let versions = &mut manifest.entries[i].versions;
            if versions.len() < 2 {
                return Err(Error::NoPrevious(name.to_owned()));
            }
            versions.pop();
            Ok(())
        })
        .await?;
        self.info_of(name).await
    }

    /// Sets the chain order; `order` must name every module once.
    ///
    /// # Errors
    /// [`Error::BadOrder`], [`Error::Store`].
    pub async fn reorder(&self, order: &[String]) -> Result<Vec<PolicyInfo>> {
        self.change(Vec::new(), |manifest, _| {
            let names: Vec<&str> = manifest.entries.iter().map(|e| e.name.as_str()).collect();
            let mut sorted_new: Vec<&str> = order.iter().map(String::as_str).collect();
            let mut sorted_old = names.clone();
            sorted_new.sort_unstable();
            sorted_old.sort_unstable();
            if sorted_new != sorted_old {
                return Err(Error::BadOrder(names.join(", ")));
            }
            let mut entries = Vec::with_capacity(order.len());
            for name in order {
                entries.push(manifest.entries[position(manifest, name)?].clone());
            }
            manifest.entries = entries;
            Ok(())
        })
        .await?;
        Ok(self.list().await)
    }

    async fn info_of(&self, name: &str) -> Result<PolicyInfo> {
        self.list()
            .await
            .into_iter()
            .find(|p| p.stats.name == name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    fn options(&self, name: &str) -> ModuleOptions {
        options_for(&self.config, &self.limits, name)
    }

    /// Makes a change on the newest chain and writes it over that chain's version, again
    /// on a newer one as long as another host's change comes first; then swaps the new
    /// chain in. `apply` gets the manifest and its version (0: the store has none yet).
    /// `fresh` are modules compiled for the change (an upload), used instead of compiling
    /// their digest again. A change that changes nothing writes nothing.
    async fn change(
        &self,
        fresh: Vec<Arc<PolicyModule>>,
        mut apply: impl FnMut(&mut Manifest, i64) -> Result<()>,
    ) -> Result<()> {
        let mut state = self.state.lock().await;
        loop {
            self.refresh(&mut state).await?;
            let mut manifest = state.manifest.clone();
            apply(&mut manifest, state.version)?;
            if manifest == state.manifest && state.version != 0 {
                return Ok(());
            }
            let mut known = state.modules.clone();
            known.extend(fresh.iter().cloned());
            let modules = self.compile(&manifest, state.version, &known).await?;
            let json = serde_json::to_string(&manifest).unwrap_or_default();
            match self.store.save_policy_chain(state.version, &json).await? {
                Some(version) => {
                    self.install(&mut state, version, manifest, modules);
                    return Ok(());
                }
                None => tracing::info!(
                    "the policy chain was changed by another host meanwhile: making the change again on it"
                ),
            }
        }
    }

    /// Loads the store's chain into `state` when its version moved. A chain that does not
    /// load is remembered as failed and the previous one keeps running.
    async fn refresh(&self, state: &mut Loaded) -> Result<()> {
        let Some(row) = self.store.policy_chain().await? else {
            return Ok(());
        };
        if row.version == state.version {
            return Ok(());
        }
        let loaded = async {
            let manifest: Manifest =
                serde_json::from_str(&row.manifest).map_err(|e| Error::Manifest {
                    version: row.version,
                    reason: e.to_string(),
                })?;
            let modules = self.compile(&manifest, row.version, &state.modules).await?;
            Ok::<_, Error>((manifest, modules))
        }
        .await;
        match loaded {
            Ok((manifest, modules)) => {
                if state.version != 0 {
                    tracing::info!(
                        version = row.version,
                        policies = modules.len(),
                        "policy chain changed in the store: loaded"
                    );
                }
                self.install(state, row.version, manifest, modules);
                Ok(())
            }
            Err(e) => {
                state.failed = Some(row.version);
                Err(e)
            }
        }
    }

    fn install(
        &self,
        state: &mut Loaded,
        version: i64,
        manifest: Manifest,
        modules: Vec<Arc<PolicyModule>>,
    ) {
        self.chain
            .store(Arc::new(PolicyChain::new(modules.clone())));
        *state = Loaded {
            version,
            manifest,
            modules,
            failed: None,
        };
    }

    /// The modules of `manifest`: those of `known` with the same name and digest as they
    /// are (their counters go on), the others read from the store and compiled.
    async fn compile(
        &self,
        manifest: &Manifest,
        version: i64,
        known: &[Arc<PolicyModule>],
    ) -> Result<Vec<Arc<PolicyModule>>> {
        let mut modules = Vec::with_capacity(manifest.entries.len());
        for entry in &manifest.entries {
            let digest = entry.versions.last().ok_or_else(|| Error::Manifest {
                version,
                reason: format!("policy {:?} has no version", entry.name),
            })?;
            if let Some(m) = known
                .iter()
                .find(|m| m.name() == entry.name && m.digest() == digest)
            {
                modules.push(Arc::clone(m));
                continue;
            }
            let bytes = self
                .store
                .policy_module(digest)
                .await?
                .ok_or_else(|| Error::Manifest {
                    version,
                    reason: format!(
                        "policy {:?}: no component {digest} in the store",
                        entry.name
                    ),
                })?;
            let (name, options) = (entry.name.clone(), self.options(&entry.name));
            let module = tokio::task::spawn_blocking(move || {
                PolicyModule::compile(PolicyEngine::shared()?, &name, &bytes, options)
            })
            .await
            .map_err(|e| policy::Error::Engine(format!("compile task failed: {e}")))??;
            modules.push(Arc::new(module));
        }
        Ok(modules)
    }

    /// The chain `rebound serve` kept on disk before the store kept it: every version's
    /// bytes go to the store; the manifest is returned for the first chain. `None` when
    /// the directory holds no chain.
    async fn import(&self, dir: &Path) -> Result<Option<Manifest>> {
        #[derive(Deserialize)]
        struct OnDisk {
            entries: Vec<OnDiskEntry>,
            #[serde(default)]
            removed_from_config: Vec<String>,
        }
        #[derive(Deserialize)]
        struct OnDiskEntry {
            name: String,
            versions: Vec<OnDiskVersion>,
            from_config: bool,
        }
        #[derive(Deserialize)]
        struct OnDiskVersion {
            path: PathBuf,
        }
        let path = dir.join("registry.json");
        let old: OnDisk = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
                path: path.clone(),
                cause: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(cause) => return Err(Error::Io { path, cause }),
        };
        let mut manifest = Manifest {
            entries: Vec::with_capacity(old.entries.len()),
            removed_from_config: old.removed_from_config,
        };
        for entry in old.entries {
            let mut versions = Vec::with_capacity(entry.versions.len());
            for v in &entry.versions {
                let bytes = read_policy(&entry.name, &v.path, entry.from_config)?;
                let digest = policy::cache::digest(&bytes);
                self.store.put_policy_module(&digest, &bytes).await?;
                versions.push(digest);
            }
            manifest.entries.push(Entry {
                name: entry.name,
                versions,
                from_config: entry.from_config,
            });
        }
        tracing::info!(dir = %dir.display(), policies = manifest.entries.len(),
            "policy chain imported into the store from the data directory");
        Ok(Some(manifest))
    }
}

/// A config entry's own settings, or the `[policy_limits]` defaults for an upload; always
/// with the compile cache.
fn options_for(config: &[PolicyConfig], limits: &PolicyLimits, name: &str) -> ModuleOptions {
    let mut options = match config.iter().find(|p| p.name == name) {
        Some(p) => ModuleOptions::from_config(p, limits),
        None => ModuleOptions::from_limits(limits),
    };
    options.cache_dir = Some(limits.cache_dir.clone());
    options
}

fn info(manifest: &Manifest, modules: &[Arc<PolicyModule>]) -> Vec<PolicyInfo> {
    manifest
        .entries
        .iter()
        .zip(modules)
        .enumerate()
        .map(|(i, (entry, module))| PolicyInfo {
            position: i + 1,
            version: entry.versions.len(),
            from_config: entry.from_config,
            stats: module.stats(),
        })
        .collect()
}

fn position(manifest: &Manifest, name: &str) -> Result<usize> {
    manifest
        .entries
        .iter()
        .position(|e| e.name == name)
        .ok_or_else(|| Error::NotFound(name.to_owned()))
}

fn check_name(name: &str) -> Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_owned()))
    }
}

fn read_policy(name: &str, path: &Path, from_config: bool) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|cause| Error::PolicyFile {
        name: name.to_owned(),
        path: path.to_owned(),
        from_config,
        cause,
    })
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("invalid-recipient").is_ok());
        assert!(check_name("a_1").is_ok());
        for bad in ["", "../x", "Upper", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
