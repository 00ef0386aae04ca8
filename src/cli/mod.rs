//! Subcommands. Each file owns its clap arguments and its `run`.

pub(crate) mod classify;
pub(crate) mod daemon;
pub(crate) mod policy;
pub(crate) mod poll;
pub(crate) mod send;
pub(crate) mod serve;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rebound::config::Config;

/// The config file used when `--config` is not given.
pub(crate) const DEFAULT_CONFIG: &str = "rebound.toml";

/// Logging to stderr, filtered by `REBOUND_LOG` (default `info`).
pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REBOUND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Loads the config; a missing *default* file means built-in defaults.
pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
        return Ok(Config::default());
    }
    Config::load(path).context("loading config")
}

/// `rebound check-config`
pub(crate) async fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    println!("{path:?}: ok ({} policy modules)", config.policy.len());
    Ok(ExitCode::SUCCESS)
}
