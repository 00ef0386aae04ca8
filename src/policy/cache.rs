//! The on-disk cache of compiled policy components, so a restart (or a re-upload of the
//! same bytes) does not recompile.
//!
//! In: component bytes. Out: the compiled, checked component. An entry is keyed by the
//! SHA-256 of the component bytes and a hash of the engine's settings and wasmtime version
//! (`<key>.cwasm` plus its seal `<key>.seal`); it is written by the host after the
//! component passed every check, and loaded only through `rebound_precompiled::load`,
//! which verifies the seal: an HMAC-SHA256 of the entry's name and code under a secret key
//! of the host.
//!
//! Loading cached code maps machine code into the process, so the cache trusts nothing
//! that someone else could have written:
//!
//! - **The key lives outside the cache directory**: in [`key_file`] (per user:
//!   `$XDG_DATA_HOME/rebound/cache-key`, else `~/.local/share/rebound/cache-key`), made on
//!   first use, 32 random bytes, in a directory of mode 0700, the file 0600. Whoever can
//!   write the cache directory but not read that file cannot seal code. A file rather than
//!   a row of the store because every command that compiles policies (`classify`,
//!   `policy test`, `poll`, `serve`) has the per-user directory and not all have a store;
//!   one key serves every cache directory of the user. A key file that is not the
//!   process user's own, is readable or writable by anyone else, or is a symbolic link is
//!   refused; so is a key inside the cache directory.
//! - **The directory must be the process user's own**: not a symbolic link, owned by the
//!   user, not writable by group or others (a missing one is created with mode 0700). A
//!   directory that fails this is not used at all: components are compiled every time,
//!   with one warning per directory naming it and why.
//! - **Entries are opened without following symbolic links** (`O_NOFOLLOW`) and must be
//!   regular files owned by the user and not writable by group or others.
//!
//! A missing, stale, damaged, foreign or badly sealed entry is a cache miss: the component
//! is compiled again and the entry rewritten (through a temporary file of its own and a
//! rename). Cache errors never fail a load; without a usable key (no home directory, a
//! refused key file) the cache is off, with one warning.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use rebound_precompiled::KEY_LEN;
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

/// The default file of the cache's secret key: `$XDG_DATA_HOME/rebound/cache-key`, else
/// `~/.local/share/rebound/cache-key`; `None` without a usable home directory.
pub fn key_file() -> Option<PathBuf> {
    key_file_from(
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn key_file_from(xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> Option<PathBuf> {
    xdg_data_home
        .filter(|d| d.is_absolute())
        .or_else(|| {
            home.filter(|h| h.is_absolute())
                .map(|h| h.join(".local/share"))
        })
        .map(|d| d.join("rebound").join("cache-key"))
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

/// Compiles with the cache in `dir`, sealed with the key in `key_path` (default
/// [`key_file`]): a hit skips compilation, a miss compiles, checks and writes the entry.
///
/// # Errors
/// Those of [`PolicyEngine::compile`]; cache trouble is only logged.
pub(crate) fn compile_cached(
    engine: &PolicyEngine,
    dir: &Path,
    key_path: Option<&Path>,
    name: &str,
    bytes: &[u8],
    digest: &str,
) -> Result<(Component, Pre)> {
    let Some(secret) = usable(dir, key_path) else {
        return engine.compile(name, bytes);
    };
    let key = key(engine, digest);
    let path = entry_path(dir, &key);
    if let Some(component) = read_entry(engine, &secret, &key, &path) {
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
    if let Err(e) = write_entry(&secret, &key, &path, &compiled.0) {
        tracing::warn!(target: "rebound::policy", module = name, "not cached: {e:#}");
    }
    Ok(compiled)
}

/// The key, when the cache in `dir` may be used: the directory is (or is made) the
/// process user's own and the key is readable. Otherwise `None`, with one warning per
/// directory (or key file).
fn usable(dir: &Path, key_path: Option<&Path>) -> Option<Arc<[u8; KEY_LEN]>> {
    let key_path = match key_path.map(Path::to_owned).or_else(key_file) {
        Some(p) => p,
        None => {
            warn_once(
                Path::new(""),
                "policy cache off: no home directory for its key (HOME is not set); \
                 components are compiled every time",
            );
            return None;
        }
    };
    if let Err(why) = check_or_create_dir(dir) {
        warn_once(
            dir,
            &format!(
                "refusing the policy cache directory {}: {why}; components are compiled \
                 every time (make it a directory of this user with mode 0700, or remove it)",
                dir.display()
            ),
        );
        return None;
    }
    if key_path.parent().is_some_and(|p| same_dir(p, dir)) {
        warn_once(
            &key_path,
            &format!(
                "policy cache off: its key {} is inside the cache directory; keep it elsewhere",
                key_path.display()
            ),
        );
        return None;
    }
    match secret(&key_path) {
        Ok(k) => Some(k),
        Err(why) => {
            warn_once(
                &key_path,
                &format!(
                    "policy cache off: its key {}: {why}; components are compiled every time",
                    key_path.display()
                ),
            );
            None
        }
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Logs `message` once per `subject` in this process.
fn warn_once(subject: &Path, message: &str) {
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(PoisonError::into_inner);
    if warned
        .get_or_insert_with(HashSet::new)
        .insert(subject.to_owned())
    {
        tracing::warn!(target: "rebound::policy", "{message}");
    }
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Why `meta` is not something of this user's that only it can change, if it is not.
fn foreign(meta: &std::fs::Metadata, others_may_read: bool) -> Option<String> {
    let me = euid();
    let mode = meta.permissions().mode() & 0o7777;
    let forbidden = if others_may_read { 0o022 } else { 0o077 };
    if meta.uid() != me {
        Some(format!(
            "owned by uid {}, not by this process's user (uid {me})",
            meta.uid()
        ))
    } else if mode & forbidden != 0 {
        Some(format!(
            "{} by group or others (mode {mode:04o})",
            if others_may_read {
                "writable"
            } else {
                "readable or writable"
            }
        ))
    } else {
        None
    }
}

/// Checks a directory the cache (or its key) lives in, creating it with mode 0700 when
/// it does not exist.
fn check_or_create_dir(dir: &Path) -> std::result::Result<(), String> {
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create it: {e}"))?;
            std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?
        }
        Err(e) => return Err(e.to_string()),
    };
    if meta.file_type().is_symlink() {
        return Err("it is a symbolic link (not followed)".into());
    }
    if !meta.is_dir() {
        return Err("it is not a directory".into());
    }
    foreign(&meta, true).map_or(Ok(()), Err)
}

/// Opens a file without following a symbolic link, for reading; `NotFound` passes through.
fn open_nofollow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// Reads a file of this user's (see [`foreign`]), refusing a symbolic link.
fn read_own(path: &Path, others_may_read: bool) -> std::io::Result<Vec<u8>> {
    let mut f = open_nofollow(path).map_err(|e| {
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            std::io::Error::other("it is a symbolic link (not followed)")
        } else {
            e
        }
    })?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    if let Some(why) = foreign(&meta, others_may_read) {
        return Err(std::io::Error::other(why));
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    f.read_to_end(&mut data)?;
    Ok(data)
}

/// The key in `path`, made on first use; read once per process.
fn secret(path: &Path) -> std::result::Result<Arc<[u8; KEY_LEN]>, String> {
    static KEYS: Mutex<Option<HashMap<PathBuf, Arc<[u8; KEY_LEN]>>>> = Mutex::new(None);
    let mut keys = KEYS.lock().unwrap_or_else(PoisonError::into_inner);
    let keys = keys.get_or_insert_with(HashMap::new);
    if let Some(k) = keys.get(path) {
        return Ok(k.clone());
    }
    let k = Arc::new(read_or_create_key(path)?);
    keys.insert(path.to_owned(), k.clone());
    Ok(k)
}

fn read_or_create_key(path: &Path) -> std::result::Result<[u8; KEY_LEN], String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    check_or_create_dir(dir).map_err(|why| format!("its directory {}: {why}", dir.display()))?;
    match read_own(path, false) {
        Ok(text) => return parse_key(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.to_string()),
    }
    // A new key, written whole to a file of its own and linked into place: of two
    // processes making one at once, one link wins and both use its key.
    let mut key = [0u8; KEY_LEN];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut key[..]);
    let tmp = unique_temp(path);
    let made = create_private(&tmp)
        .and_then(|mut f| {
            f.write_all(hex::encode(key).as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match made {
        Ok(()) => {
            let _ = File::open(dir).and_then(|d| d.sync_all());
            tracing::info!(target: "rebound::policy", "made the policy cache key {}", path.display());
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            parse_key(&read_own(path, false).map_err(|e| e.to_string())?)
        }
        Err(e) => Err(format!("cannot create it: {e}")),
    }
}

fn parse_key(text: &[u8]) -> std::result::Result<[u8; KEY_LEN], String> {
    let text = std::str::from_utf8(text).unwrap_or_default().trim();
    let mut key = [0u8; KEY_LEN];
    match hex::decode_to_slice(text, &mut key) {
        Ok(()) => Ok(key),
        Err(_) => Err(format!(
            "not {} hex digits (remove it to make a new key)",
            2 * KEY_LEN
        )),
    }
}

/// A temporary name next to `path` that no other writer (thread or process) uses.
fn unique_temp(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(
        ".{}.{}.{}.{:08x}.tmp",
        name.unwrap_or_default(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    ))
}

/// A new file of mode 0600, created exclusively (never through a symbolic link).
fn create_private(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn seal_path(path: &Path) -> PathBuf {
    path.with_extension("seal")
}

fn read_entry(
    engine: &PolicyEngine,
    secret: &[u8; KEY_LEN],
    key: &str,
    path: &Path,
) -> Option<Component> {
    let read = |p: &Path| match read_own(p, true) {
        Ok(data) => Some(data),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            tracing::warn!(target: "rebound::policy", "cache entry {} ignored: {e}", p.display());
            None
        }
    };
    let code = read(path)?;
    let seal = read(&seal_path(path))?;
    let seal = String::from_utf8_lossy(&seal);
    match rebound_precompiled::load(engine.engine(), secret, key, &code, &seal) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(target: "rebound::policy", "cache entry {} ignored: {e:#}", path.display());
            None
        }
    }
}

fn write_entry(
    secret: &[u8; KEY_LEN],
    key: &str,
    path: &Path,
    component: &Component,
) -> std::io::Result<()> {
    let code = component
        .serialize()
        .map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    let seal = rebound_precompiled::seal(secret, key, &code);
    // Write to temporary files and rename, so a reader never sees half an entry; the seal
    // goes last, so an entry without a (matching) seal is simply a miss.
    write_atomic(path, &code)?;
    write_atomic(&seal_path(path), seal.as_bytes())
}

fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let tmp = unique_temp(path);
    let written = create_private(&tmp)
        .and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
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
    fn key_file_is_in_the_data_dir_not_the_cache_dir() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(key_file_from(p("/d"), p("/h")), p("/d/rebound/cache-key"));
        assert_eq!(
            key_file_from(p("rel"), p("/h")),
            p("/h/.local/share/rebound/cache-key")
        );
        assert_eq!(key_file_from(None, None), None);
    }

    #[test]
    fn digest_is_sha256_hex() {
        assert_eq!(digest(b"").len(), 64);
        assert!(digest(b"").starts_with("e3b0c442"));
    }

    #[test]
    fn a_key_is_made_private_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/cache-key");
        let made = read_or_create_key(&path).unwrap();
        assert_eq!(read_or_create_key(&path).unwrap(), made);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_or_create_key(&path).unwrap_err();
        assert!(
            err.contains("readable or writable by group or others"),
            "{err}"
        );

        std::fs::write(&path, "short").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(
            read_or_create_key(&path)
                .unwrap_err()
                .contains("hex digits")
        );
    }
}
