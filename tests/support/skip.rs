//! One way for a test to say it did not run: `SKIPPED: <test>: <why>`.
//!
//! libtest captures `eprintln!`, so a test that returns early after one shows as `ok` and
//! nobody sees it was skipped. [`skipped`] writes the line to the process's stderr
//! handle (`std::io::stderr()`, which libtest does not capture), appends it to `REBOUND_SKIP_LOG` (`make test`
//! sets it to `target/test-skips.txt`, clears it first and prints it at the end), and
//! panics under `CI=true`: in CI a test that cannot run is a failure.
//!
//! The support helpers (`corpus::labelled`, `dovecot::available`, `smtp::skip`,
//! `postfix::available`, `postgres::available`) call it themselves; a test file that skips for another reason
//! includes it with `#[path = "support/skip.rs"] mod skip;`.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Is this a CI run (`CI=true`, or `CI=1`)?
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The running test's name: libtest runs each test on a thread named after it; a bench or
/// a `harness = false` target runs on `main`, and is named after its executable.
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "?".into()),
    }
}

/// Where skips are recorded: `REBOUND_SKIP_LOG`, else `target/test-skips.txt` in the
/// checkout.
pub fn log_path() -> PathBuf {
    std::env::var_os("REBOUND_SKIP_LOG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-skips.txt"))
}

/// Reports that `test` does not run because of `why` (see the module docs); returns
/// so that the caller can `return`, except under `CI=true`, where it panics.
pub fn skipped(test: &str, why: &str) {
    let line = format!("SKIPPED: {test}: {why}");
    to_stderr(&line);
    let path = log_path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One write of a whole line with O_APPEND: lines from parallel tests do not mix.
    if let Err(e) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
    {
        to_stderr(&format!(
            "(could not record the skip in {}: {e})",
            path.display()
        ));
    }
    if in_ci() {
        panic!("{line} (CI=true: a test that cannot run fails)");
    }
}

/// Writes a line to the process's stderr. libtest's capture takes what the `print!`
/// family writes, not writes through the `std::io::stderr()` handle.
fn to_stderr(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// [`skipped`] for the test running on this thread.
pub fn skip_current(why: &str) {
    skipped(&current_test(), why);
}
