//! `rebound policy check|test`
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `rebound policy …`
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Validate a component and print its world, imports and exports.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

pub(crate) async fn run(_config: &Path, _cmd: Command) -> anyhow::Result<ExitCode> {
    anyhow::bail!("policy is not built yet")
}
