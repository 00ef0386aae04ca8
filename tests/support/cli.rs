//! Runs this build's `rebound` on a test's directory: `--config DIR/rebound.toml`, the
//! policy cache in `DIR/cache`, warnings only, and the test's own environment (secrets,
//! the mailbox password). Include it with `#[path = "support/cli.rs"] mod cli;`.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `rebound --config DIR/rebound.toml ARGS…` with `env` set; waits for it.
pub fn rebound(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rebound"));
    cmd.arg("--config")
        .arg(dir.join("rebound.toml"))
        .args(args)
        .env("REBOUND_CACHE_DIR", dir.join("cache"))
        .env("REBOUND_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running rebound")
}
