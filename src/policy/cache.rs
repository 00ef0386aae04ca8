//! The on-disk cache of compiled policy components, so a restart (or a re-upload of the
//! same bytes) does not recompile.
//!
//! In: component bytes. Out: the compiled, checked component. An entry is keyed by the
//! SHA-256 of the component bytes and a hash of the engine's settings and wasmtime version
//! (`<key>.cwasm` plus its seal `<key>.seal`); it is written by the host after the
//! component passed every check, and loaded only through `rebound_precompiled::load`,
//! which verifies the seal. A missing, stale or damaged entry is a cache miss: the
//! component is compiled again and the entry rewritten. Cache errors never fail a load.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::Result;
use super::sandbox::{PolicyEngine, Pre};

/// The per-user cache directory of the command line tools: `$XDG_CACHE_HOME/rebound`,
/// else `~/.cache/rebound`; `None` without a usable home directory (a relative
/// `XDG_CACHE_HOME` is ignored, as the XDG spec says).
pub fn user_dir() -> Option<PathBuf> {
    user_dir_from(
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn user_dir_from(xdg_cache_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    xdg_cache_home
        .filter(|d| d.is_absolute())
        .or_else(|| home.filter(|h| h.is_absolute()).map(|h| h.join(".cache")))
        .map(|d| d.join("rebound"))
}

/// SHA-256 of component bytes, hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The cache key of component bytes for this engine: the bytes' digest and a hash of the
/// engine's settings (wasmtime version, target, compiler flags).
pub fn key(engine: &PolicyEngine, digest: &str) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine
        .engine()
        .precompile_compatibility_hash()
        .hash(&mut hasher);
    format!("{digest}-{:016x}", hasher.finish())
}

/// Where the entry of `key` lives.
pub fn entry_path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.cwasm"))
}

/// Compiles with the cache in `dir`: a hit skips compilation, a miss compiles, checks and
/// writes the entry.
///
/// # Errors
/// Those of [`PolicyEngine::compile`]; cache trouble is only logged.
pub(crate) fn compile_cached(
    engine: &PolicyEngine,
    dir: &Path,
    name: &str,
    bytes: &[u8],
    digest: &str,
) -> Result<(Component, Pre)> {
    let key = key(engine, digest);
    let path = entry_path(dir, &key);
    if let Some(component) = read_entry(engine, &path) {
        match engine.prepare(name, component) {
            Ok(found) => {
                tracing::debug!(target: "rebound::policy", module = name, "compiled code from cache");
                return Ok(found);
            }
            Err(e) => {
                tracing::warn!(target: "rebound::policy", module = name, "cached entry refused: {e}")
            }
        }
    }
    let compiled = engine.compile(name, bytes)?;
    if let Err(e) = write_entry(engine, dir, &path, &compiled.0) {
        tracing::warn!(target: "rebound::policy", module = name, "not cached: {e:#}");
    }
    Ok(compiled)
}

fn seal_path(path: &Path) -> PathBuf {
    path.with_extension("seal")
}

fn read_entry(engine: &PolicyEngine, path: &Path) -> Option<Component> {
    let code = std::fs::read(path).ok()?;
    let seal = std::fs::read_to_string(seal_path(path)).ok()?;
    match rebound_precompiled::load(engine.engine(), &code, &seal) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(target: "rebound::policy", "cache entry {path:?} ignored: {e:#}");
            None
        }
    }
}

fn write_entry(
    engine: &PolicyEngine,
    dir: &Path,
    path: &Path,
    component: &Component,
) -> std::io::Result<()> {
    create_private_dir(dir)?;
    let code = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let _ = engine;
    let seal = rebound_precompiled::seal(&code);
    // Write to temporary files and rename, so a reader never sees half an entry; the seal
    // goes last, so an entry without a seal is simply a miss.
    write_atomic(path, &code)?;
    write_atomic(&seal_path(path), seal.as_bytes())
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn user_dir_prefers_an_absolute_xdg_cache_home() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(user_dir_from(p("/c"), p("/h")), p("/c/rebound"));
        assert_eq!(user_dir_from(p("rel"), p("/h")), p("/h/.cache/rebound"));
        assert_eq!(user_dir_from(None, p("/h")), p("/h/.cache/rebound"));
        assert_eq!(user_dir_from(None, None), None);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(digest(b"").len(), 64);
        assert!(digest(b"").starts_with("e3b0c442"));
    }
}
