//! `rebound notify`: the outbox of event webhooks (`[[notify]]`) — deliver it
//! (`run`, `run --once`), see what waits (`status`), send dead rows again (`retry`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use rebound::notify::deliver::Deliverer;

use super::Format;

/// `rebound notify …` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Deliver the outbox until SIGTERM (or, with --once, until nothing is due now).
    Run {
        /// Send what is due now, then exit (rows failing wait for their retry).
        #[arg(long)]
        once: bool,
    },
    /// Pending, dead and delivered rows per endpoint. Exit code 1 when any row is dead.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Give an endpoint's dead rows a fresh set of attempts.
    Retry {
        /// The endpoint's name (as `rebound notify status` lists it).
        endpoint: String,
    },
}

pub(crate) async fn run(config_path: &Path, command: Command) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let (store, endpoints) = super::open_store_with_endpoints(&config).await?;
    match command {
        Command::Run { once } => {
            if endpoints.is_empty() {
                bail!("the config has no [[notify]] endpoint");
            }
            let deliverer = Deliverer::new(store.clone(), endpoints)?;
            if once {
                let pass = deliverer.drain().await.context("delivering webhooks")?;
                println!(
                    "delivered {}, failed {} (due again later), dead {}",
                    pass.delivered, pass.failed, pass.dead
                );
            } else {
                deliverer.run(super::shutdown_signal()).await;
            }
            store.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { format } => {
            let mut status = store.outbox_status().await?;
            // Configured endpoints with no row yet are listed too.
            for e in &endpoints {
                if !status.iter().any(|s| s.endpoint == e.name) {
                    status.push(rebound::store::outbox::EndpointStatus {
                        endpoint: e.name.clone(),
                        pending: 0,
                        dead: 0,
                        delivered: 0,
                        oldest_pending: None,
                    });
                }
            }
            status.sort_by(|a, b| a.endpoint.cmp(&b.endpoint));
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Format::Table => super::print_table(
                    &[
                        "ENDPOINT",
                        "PENDING",
                        "DEAD",
                        "DELIVERED",
                        "OLDEST PENDING",
                        "CONFIGURED",
                    ],
                    status
                        .iter()
                        .map(|s| {
                            vec![
                                s.endpoint.clone(),
                                s.pending.to_string(),
                                s.dead.to_string(),
                                s.delivered.to_string(),
                                s.oldest_pending
                                    .map_or_else(|| "-".into(), |t| t.to_string()),
                                if endpoints.iter().any(|e| e.name == s.endpoint) {
                                    "yes".into()
                                } else {
                                    "no".into()
                                },
                            ]
                        })
                        .collect(),
                ),
            }
            Ok(if status.iter().any(|s| s.dead > 0) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Retry { endpoint } => {
            let n = store.outbox_retry_dead(&endpoint).await?;
            println!("{endpoint}: {n} dead rows due again");
            Ok(ExitCode::SUCCESS)
        }
    }
}
