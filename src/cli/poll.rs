//! `rebound poll`, `rebound recipients`, `rebound events`
use std::path::Path;
use std::process::ExitCode;

/// Arguments of `rebound poll`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// One pass, then print a summary and exit.
    #[arg(long)]
    once: bool,
}

/// Arguments of `rebound recipients`.
#[derive(clap::Args)]
pub(crate) struct RecipientsArgs {}

/// Arguments of `rebound events`.
#[derive(clap::Args)]
pub(crate) struct EventsArgs {}

pub(crate) async fn run(_config: &Path, _args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("poll is not built yet")
}

pub(crate) async fn recipients(_config: &Path, _args: RecipientsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("recipients is not built yet")
}

pub(crate) async fn events(_config: &Path, _args: EventsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("events is not built yet")
}
