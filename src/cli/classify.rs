//! `rebound classify`
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Arguments of `rebound classify`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Files, directories (recursive) and mbox files.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub(crate) async fn run(_config: &Path, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("classify is not built yet")
}
