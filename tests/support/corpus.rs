//! The labelled corpus for tests and benches: `REBOUND_CORPUS`, default
//! `../shared/corpus/sisimai` beside the checkout. It is read in place, never copied.
//!
//! Include it from a test file with `#[path = "support/corpus.rs"] mod corpus;`
//! (from a bench: `#[path = "../tests/support/corpus.rs"]`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

#[path = "skip.rs"]
mod skip;

/// Where the corpus is (it may not exist).
pub fn dir() -> PathBuf {
    std::env::var_os("REBOUND_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/sisimai"))
}

/// The corpus, when it is there with its labels (`truth.tsv`). Without it the calling test
/// is reported as skipped ([`skip::skipped`]: visible, and a failure under `CI=true`) and
/// the caller returns.
pub fn labelled() -> Option<PathBuf> {
    let dir = dir();
    if dir.join("truth.tsv").is_file() {
        return Some(dir);
    }
    missing();
    None
}

/// Reports the calling test as skipped because the corpus is not there.
pub fn missing() {
    skip::skip_current(&format!(
        "corpus not found at {} (set REBOUND_CORPUS)",
        dir().display()
    ));
}

/// Every `.eml` file below `dir`, recursively, in sorted order (none when it is missing).
pub fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    collect_eml(dir, &mut out);
    out
}

fn collect_eml(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect_eml(&p, out);
        } else if p.extension().is_some_and(|e| e == "eml") {
            out.push(p);
        }
    }
}

/// The one-message files of `bsd/` (LF line endings), sorted by name; empty without the
/// corpus.
pub fn bsd_messages() -> Vec<Vec<u8>> {
    eml_files(&dir().join("bsd"))
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect()
}
