//! `rebound send`, `rebound campaigns`
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `rebound send`.
#[derive(clap::Args)]
pub(crate) struct Args {}

/// Arguments of `rebound campaigns`.
#[derive(clap::Args)]
pub(crate) struct CampaignsArgs {}

pub(crate) async fn run(_config: &Path, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("send is not built yet")
}

pub(crate) async fn campaigns(_config: &Path, _args: CampaignsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("campaigns is not built yet")
}
