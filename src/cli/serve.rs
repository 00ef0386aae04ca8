//! `rebound serve`
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `rebound serve`.
#[derive(clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_config: &Path, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("serve is not built yet")
}
