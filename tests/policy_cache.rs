//! The compile cache trusts only what the host itself wrote: entries sealed with an HMAC
//! under a key outside the cache directory, in a directory of the process user's own,
//! opened without following symbolic links.

#[macro_use]
mod policy_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use policy_support::*;
use rebound::policy::{ModuleOptions, PolicyChain, PolicyModule};
use sha2::{Digest, Sha256};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs `f` with the log captured (debug and up).
fn logged<R>(f: impl FnOnce() -> R) -> (R, String) {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    (r, text)
}

/// Options that append `address` (the scripted guest), cached in `cache`, the key in
/// `keys/cache-key`.
fn options(cache: &Path, keys: &Path, address: &str) -> ModuleOptions {
    ModuleOptions {
        cache_dir: Some(cache.to_owned()),
        cache_key_file: Some(keys.join("cache-key")),
        ..with_config(&[("action", "append"), ("address", address)])
    }
}

/// The appended recipient: which code ran.
fn appended(module: PolicyModule) -> String {
    let v = PolicyChain::new(vec![Arc::new(module)])
        .run(RAW, &detection("x", other()))
        .unwrap();
    v.recipients[0].address.clone()
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect()
}

#[test]
fn a_tampered_entry_with_a_recomputed_digest_is_not_loaded() {
    let scripted = guest_or_skip!("scripted");
    let counter = guest_or_skip!("call-counter");
    let dir = tempfile::tempdir().unwrap();
    let (cache, keys) = (dir.path().join("cache"), dir.path().join("keys"));
    let bytes = std::fs::read(&scripted).unwrap();
    let o = options(&cache, &keys, "scripted@example.org");

    let first = PolicyModule::compile(engine(), "s", &bytes, o.clone()).unwrap();
    assert_eq!(appended(first), "scripted@example.org");
    let key = keys.join("cache-key");
    assert!(key.exists(), "the key is made on first use");
    assert!(!key.starts_with(&cache), "outside the cache directory");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (second, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o.clone()));
    assert!(log.contains("compiled code from cache"), "{log}");
    drop(second);

    // Someone who can write the cache directory puts other code (a valid component of
    // theirs, precompiled by the same wasmtime) in the entry, with the entry's digest
    // recomputed the way the unkeyed seal was made.
    let cwasm = files_with(&cache, "cwasm");
    assert_eq!(cwasm.len(), 1, "{cwasm:?}");
    let foreign = engine()
        .engine()
        .precompile_component(&std::fs::read(&counter).unwrap())
        .unwrap();
    std::fs::write(&cwasm[0], &foreign).unwrap();
    std::fs::write(
        cwasm[0].with_extension("seal"),
        hex::encode(Sha256::digest(&foreign)),
    )
    .unwrap();

    let (third, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o.clone()));
    assert!(
        log.contains("does not match its seal"),
        "the entry is refused: {log}"
    );
    assert!(!log.contains("compiled code from cache"), "{log}");
    assert_eq!(
        appended(third.unwrap()),
        "scripted@example.org",
        "compiled fresh, not the planted code (which appends call-1@…)"
    );

    // The fresh compile rewrote the entry, sealed again: the next load is a hit.
    let (fourth, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o));
    assert!(log.contains("compiled code from cache"), "{log}");
    assert_eq!(appended(fourth.unwrap()), "scripted@example.org");

    // Another key (someone else's, or a new one) does not accept the entry either.
    let other_keys = dir.path().join("other-keys");
    let o = options(&cache, &other_keys, "scripted@example.org");
    let (_, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o));
    assert!(log.contains("does not match its seal"), "{log}");
}

#[test]
fn a_world_writable_cache_directory_is_refused_with_a_clear_warning() {
    let scripted = guest_or_skip!("scripted");
    let dir = tempfile::tempdir().unwrap();
    let (cache, keys) = (dir.path().join("cache"), dir.path().join("keys"));
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let bytes = std::fs::read(&scripted).unwrap();
    let o = options(&cache, &keys, "a@example.org");

    let (modules, log) = logged(|| {
        (0..2)
            .map(|_| PolicyModule::compile(engine(), "s", &bytes, o.clone()).unwrap())
            .collect::<Vec<_>>()
    });
    let warning = format!(
        "refusing the policy cache directory {}: writable by group or others (mode 0777)",
        cache.display()
    );
    assert_eq!(log.matches(&warning).count(), 1, "warned once: {log}");
    assert!(log.contains("compiled every time"), "{log}");
    for m in modules {
        assert_eq!(appended(m), "a@example.org", "compiled, and it runs");
    }
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "nothing written into it"
    );
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o777,
        "left as it is, for its owner to fix"
    );

    // Group-writable is refused too; a private one is used.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o770)).unwrap();
    let (_, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o.clone()));
    assert_eq!(
        std::fs::read_dir(&cache).unwrap().count(),
        0,
        "still refused: {log}"
    );
    let private = dir.path().join("private");
    let o = options(&private, &keys, "a@example.org");
    PolicyModule::compile(engine(), "s", &bytes, o).unwrap();
    assert_eq!(files_with(&private, "cwasm").len(), 1);
    assert_eq!(
        std::fs::metadata(&private).unwrap().permissions().mode() & 0o777,
        0o700,
        "made private"
    );
}

#[test]
fn a_cache_directory_of_another_user_is_refused() {
    let scripted = guest_or_skip!("scripted");
    let dir = tempfile::tempdir().unwrap();
    let (cache, keys) = (dir.path().join("cache"), dir.path().join("keys"));
    std::fs::create_dir(&cache).unwrap();
    // Only root can give a directory away; as another user this part has nothing to show.
    if std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).is_err() {
        policy_support::skip::skip_current("not root: only root can give the cache directory away");
        return;
    }
    let bytes = std::fs::read(&scripted).unwrap();
    let (m, log) = logged(|| {
        PolicyModule::compile(
            engine(),
            "s",
            &bytes,
            options(&cache, &keys, "a@example.org"),
        )
    });
    assert!(
        log.contains("owned by uid 65534, not by this process's user"),
        "{log}"
    );
    assert_eq!(appended(m.unwrap()), "a@example.org");
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0);
}

#[test]
fn symbolic_links_in_the_cache_are_not_followed() {
    let scripted = guest_or_skip!("scripted");
    let dir = tempfile::tempdir().unwrap();
    let (cache, keys) = (dir.path().join("cache"), dir.path().join("keys"));
    let bytes = std::fs::read(&scripted).unwrap();
    let o = options(&cache, &keys, "a@example.org");
    PolicyModule::compile(engine(), "s", &bytes, o.clone()).unwrap();

    // The entry (genuine, sealed with our key) is moved elsewhere and linked back: the
    // links are not followed, so it is a miss.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    for ext in ["cwasm", "seal"] {
        for f in files_with(&cache, ext) {
            let moved = elsewhere.join(f.file_name().unwrap());
            std::fs::rename(&f, &moved).unwrap();
            std::os::unix::fs::symlink(&moved, &f).unwrap();
        }
    }
    let (m, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o.clone()));
    assert!(log.contains("symbolic link (not followed)"), "{log}");
    assert!(!log.contains("compiled code from cache"), "{log}");
    assert_eq!(appended(m.unwrap()), "a@example.org");
    // The fresh entry replaced the links (a rename replaces the link, not its target).
    let cwasm = files_with(&cache, "cwasm");
    assert!(
        !std::fs::symlink_metadata(&cwasm[0])
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // A cache directory that is itself a symbolic link is refused.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&cache, &link).unwrap();
    let o = options(&link, &keys, "a@example.org");
    let (m, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o));
    assert!(
        log.contains(&format!(
            "refusing the policy cache directory {}: it is a symbolic link",
            link.display()
        )),
        "{log}"
    );
    assert!(!log.contains("compiled code from cache"), "{log}");
    assert_eq!(appended(m.unwrap()), "a@example.org");
}

#[test]
fn a_key_others_can_read_turns_the_cache_off() {
    let scripted = guest_or_skip!("scripted");
    let dir = tempfile::tempdir().unwrap();
    let (cache, keys) = (dir.path().join("cache"), dir.path().join("keys"));
    std::fs::create_dir(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(keys.join("cache-key"), "00".repeat(32)).unwrap();
    std::fs::set_permissions(
        keys.join("cache-key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let bytes = std::fs::read(&scripted).unwrap();
    let o = options(&cache, &keys, "a@example.org");
    let (m, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o));
    assert!(log.contains("policy cache off: its key"), "{log}");
    assert!(
        log.contains("readable or writable by group or others"),
        "{log}"
    );
    assert_eq!(appended(m.unwrap()), "a@example.org");
    assert!(files_with(&cache, "cwasm").is_empty());

    // A key inside the cache directory is refused as well.
    let o = ModuleOptions {
        cache_key_file: Some(cache.join("cache-key")),
        ..options(&cache, &keys, "a@example.org")
    };
    let (_, log) = logged(|| PolicyModule::compile(engine(), "s", &bytes, o));
    assert!(log.contains("is inside the cache directory"), "{log}");
    assert!(!cache.join("cache-key").exists());
}
