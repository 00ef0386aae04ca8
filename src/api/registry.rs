//! The live policy chain of `rebound serve`: modules from the config plus uploaded ones,
//! persisted in the data directory, swapped in atomically.
//!
//! On disk (`[api] data_dir`):
//!
//! ```text
//! registry.json              the chain: order, and per module its versions (oldest first)
//! <name>/<sha256>.wasm       every uploaded version, kept for rollback
//! ```
//!
//! A message in flight holds an `Arc` of the chain it started with, so it sees the old
//! chain or the new one, never half of each.
//!
//! Every write (an uploaded version, `registry.json`) goes to a temporary file of its own
//! (unique per process and write, so concurrent uploads never share one), is fsynced,
//! renamed into place, and the directory fsynced: after a change returned, it survives a
//! crash or power cut, and a crash mid-write leaves the previous file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::config::{PolicyConfig, PolicyLimits};
use crate::policy::{self, ModuleOptions, ModuleStats, PolicyChain, PolicyEngine, PolicyModule};

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
    /// A name that cannot be a file name.
    #[error("invalid policy name {0:?}: use 1-64 characters a-z, 0-9, '-' or '_'")]
    InvalidName(String),
    /// A new order that is not a permutation of the current modules.
    #[error("the order must name every policy exactly once (have: {0})")]
    BadOrder(String),
    /// Reading or writing the data directory.
    #[error("policy data directory {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not also a `source()`, which would print it
        /// twice in an error chain).
        cause: std::io::Error,
    },
    /// A policy's `.wasm` file (a `[[policy]]` entry's `path`, or a kept upload) cannot
    /// be read.
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

/// One version of a module: where its bytes are and their hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Version {
    path: PathBuf,
    digest: String,
}

/// One module of the chain with its history.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    /// Oldest first; the last one runs.
    versions: Vec<Version>,
    /// From `[[policy]]` in the config (its settings apply), or uploaded.
    from_config: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
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

/// The registry: the manifest, the compiled modules and the live chain.
pub struct PolicyRegistry {
    dir: PathBuf,
    limits: PolicyLimits,
    config: Vec<PolicyConfig>,
    /// Serialises changes; readers never take it.
    state: tokio::sync::Mutex<(Manifest, Vec<Arc<PolicyModule>>)>,
    chain: Arc<ArcSwap<PolicyChain>>,
}

impl PolicyRegistry {
    /// Loads the chain: the saved manifest when there is one, else the config's
    /// `[[policy]]` entries; config entries missing from a saved manifest are appended.
    ///
    /// # Errors
    /// A module that does not load, or an unreadable data directory.
    pub fn open(
        dir: &Path,
        config: &[PolicyConfig],
        limits: &PolicyLimits,
    ) -> Result<PolicyRegistry> {
        create_dir_durable(dir)?;
        let manifest_path = dir.join("registry.json");
        let mut manifest = match std::fs::read(&manifest_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Io {
                path: manifest_path.clone(),
                cause: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Manifest::default(),
            Err(cause) => {
                return Err(Error::Io {
                    path: manifest_path,
                    cause,
                });
            }
        };
        for p in config {
            let removed = manifest.removed_from_config.contains(&p.name);
            if !removed && !manifest.entries.iter().any(|e| e.name == p.name) {
                let bytes = read_policy(&p.name, &p.path, true)?;
                manifest.entries.push(Entry {
                    name: p.name.clone(),
                    versions: vec![Version {
                        path: p.path.clone(),
                        digest: policy::cache::digest(&bytes),
                    }],
                    from_config: true,
                });
            }
        }
        let mut modules = Vec::with_capacity(manifest.entries.len());
        for entry in &manifest.entries {
            modules.push(Arc::new(compile_entry(
                entry,
                options_for(config, limits, &entry.name),
            )?));
        }
        let registry = PolicyRegistry {
            dir: dir.to_owned(),
            limits: limits.clone(),
            config: config.to_vec(),
            chain: Arc::new(ArcSwap::from_pointee(PolicyChain::new(modules.clone()))),
            state: tokio::sync::Mutex::new((Manifest::default(), Vec::new())),
        };
        registry.save(&manifest)?;
        Ok(PolicyRegistry {
            state: tokio::sync::Mutex::new((manifest, modules)),
            ..registry
        })
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
        info(&state.0, &state.1)
    }

    /// Checks and compiles an uploaded component and swaps it in: a new module goes to the
    /// end of the chain, an existing one is replaced in place and its previous version kept.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Policy`] for a refused component, [`Error::Io`].
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<PolicyInfo> {
        check_name(name)?;
        let digest = policy::cache::digest(&bytes);
        let version_dir = self.dir.join(name);
        let path = version_dir.join(format!("{digest}.wasm"));
        let entry_options = self.options(name);
        let module_name = name.to_owned();
        // Compiling takes tens of milliseconds of CPU: keep it off the async workers.
        let (module, bytes) = tokio::task::spawn_blocking(move || {
            let engine = PolicyEngine::shared()?;
            PolicyModule::compile(engine, &module_name, &bytes, entry_options).map(|m| (m, bytes))
        })
        .await
        .map_err(|e| policy::Error::Engine(format!("compile task failed: {e}")))??;
        create_dir_durable(&version_dir)?;
        write_atomic(&path, &bytes)?;

        let mut state = self.state.lock().await;
        let (manifest, modules) = &mut *state;
        let version = Version { path, digest };
        match manifest.entries.iter().position(|e| e.name == name) {
            Some(i) => {
                let entry = &mut manifest.entries[i];
                entry.versions.retain(|v| v.digest != version.digest);
                entry.versions.push(version);
                modules[i] = Arc::new(module);
            }
            None => {
                manifest.removed_from_config.retain(|n| n != name);
                manifest.entries.push(Entry {
                    name: name.to_owned(),
                    versions: vec![version],
                    from_config: false,
                });
                modules.push(Arc::new(module));
            }
        }
        self.commit(manifest, modules)?;
        let position = manifest
            .entries
            .iter()
            .position(|e| e.name == name)
            .unwrap_or(0);
        Ok(info(manifest, modules).swap_remove(position))
    }

    /// Removes a module from the chain (its files are kept); a module from the config stays
    /// removed across restarts until one of that name is uploaded again.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::Io`].
    pub async fn remove(&self, name: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        let (manifest, modules) = &mut *state;
        let i = position(manifest, name)?;
        if manifest.entries.remove(i).from_config {
            manifest.removed_from_config.push(name.to_owned());
        }
        modules.remove(i);
        self.commit(manifest, modules)
    }

    /// Puts the previous version of a module back in place of the current one.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NoPrevious`], [`Error::Policy`], [`Error::Io`].
    pub async fn rollback(&self, name: &str) -> Result<PolicyInfo> {
        let mut state = self.state.lock().await;
        let (manifest, modules) = &mut *state;
        let i = position(manifest, name)?;
        if manifest.entries[i].versions.len() < 2 {
            return Err(Error::NoPrevious(name.to_owned()));
        }
        let mut entry = manifest.entries[i].clone();
        entry.versions.pop();
        let module = self.compile_entry(&entry)?;
        manifest.entries[i] = entry;
        modules[i] = Arc::new(module);
        self.commit(manifest, modules)?;
        Ok(info(manifest, modules).swap_remove(i))
    }

    /// Sets the chain order; `order` must name every module once.
    ///
    /// # Errors
    /// [`Error::BadOrder`], [`Error::Io`].
    pub async fn reorder(&self, order: &[String]) -> Result<Vec<PolicyInfo>> {
        let mut state = self.state.lock().await;
        let (manifest, modules) = &mut *state;
        let names: Vec<&str> = manifest.entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted_new: Vec<&str> = order.iter().map(String::as_str).collect();
        let mut sorted_old = names.clone();
        sorted_new.sort_unstable();
        sorted_old.sort_unstable();
        if sorted_new != sorted_old {
            return Err(Error::BadOrder(names.join(", ")));
        }
        let mut entries = Vec::with_capacity(order.len());
        let mut reordered = Vec::with_capacity(order.len());
        for name in order {
            let i = position(manifest, name)?;
            entries.push(manifest.entries[i].clone());
            reordered.push(modules[i].clone());
        }
        manifest.entries = entries;
        *modules = reordered;
        self.commit(manifest, modules)?;
        Ok(info(manifest, modules))
    }

    fn options(&self, name: &str) -> ModuleOptions {
        options_for(&self.config, &self.limits, name)
    }

    fn compile_entry(&self, entry: &Entry) -> Result<PolicyModule> {
        compile_entry(entry, self.options(&entry.name))
    }

    /// Saves the manifest, then swaps the new chain in.
    fn commit(&self, manifest: &Manifest, modules: &[Arc<PolicyModule>]) -> Result<()> {
        self.save(manifest)?;
        self.chain
            .store(Arc::new(PolicyChain::new(modules.to_vec())));
        Ok(())
    }

    fn save(&self, manifest: &Manifest) -> Result<()> {
        let json = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        write_atomic(&self.dir.join("registry.json"), &json)
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

fn compile_entry(entry: &Entry, options: ModuleOptions) -> Result<PolicyModule> {
    let version = entry
        .versions
        .last()
        .ok_or_else(|| Error::NotFound(entry.name.clone()))?;
    let bytes = read_policy(&entry.name, &version.path, entry.from_config)?;
    let engine = PolicyEngine::shared()?;
    Ok(PolicyModule::compile(engine, &entry.name, &bytes, options)?)
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

/// Writes through a temporary file of its own (a name no other writer uses, created
/// exclusively), fsyncs it, renames it over `path` and fsyncs the directory: a crash leaves
/// the old file or the new one, never half of one, and a write that returned survives a
/// power cut. Two writers of one path at once each write their own temporary file; the
/// last rename wins.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_durable(path, bytes).map_err(|cause| Error::Io {
        path: path.to_owned(),
        cause,
    })
}

fn write_durable(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().map_or_else(
        || std::borrow::Cow::Borrowed("registry"),
        |n| n.to_string_lossy(),
    );
    let tmp = dir.join(format!(
        ".{file_name}.{}.{}.{:08x}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// Makes a directory's entries (a rename, a new file or subdirectory) durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// `create_dir_all`, with the new directory's entry made durable in its parent.
fn create_dir_durable(dir: &Path) -> Result<()> {
    let io = |cause| Error::Io {
        path: dir.to_owned(),
        cause,
    };
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(io)?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent).map_err(io),
        _ => sync_dir(Path::new(".")).map_err(io),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn concurrent_writes_of_one_path_each_use_their_own_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.json");
        std::thread::scope(|s| {
            for t in 0..8u8 {
                let path = &path;
                s.spawn(move || {
                    for i in 0..50u8 {
                        let body = vec![t.wrapping_mul(31).wrapping_add(i); 64 * 1024];
                        write_atomic(path, &body).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert_eq!(got.len(), 64 * 1024, "one writer's whole file");
        assert!(
            got.iter().all(|b| *b == got[0]),
            "never a mix of two writers"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            left,
            [std::ffi::OsString::from("registry.json")],
            "no temporary file left"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("invalid-recipient").is_ok());
        assert!(check_name("a_1").is_ok());
        for bad in ["", "../x", "Upper", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
