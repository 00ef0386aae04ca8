//! `rebound poll`, `rebound recipients`, `rebound events`: read the bounce mailbox into
//! the store, and show what the store knows.
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use rebound::config::Config;
use rebound::policy::PolicyChain;
use rebound::poller::Poller;
use rebound::store::{EventFilter, EventKind, RecipientState, Store};

use super::Format;

/// Arguments of `rebound poll`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// One pass, then print a summary and exit.
    #[arg(long)]
    once: bool,
    /// Summary format of `--once`.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// Arguments of `rebound recipients`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct RecipientsArgs {
    #[command(subcommand)]
    command: Option<RecipientsCommand>,
    /// Only recipients in this state (active, bounced, complained, unsubscribed).
    #[arg(long)]
    state: Option<RecipientState>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// `rebound recipients …` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum RecipientsCommand {
    /// Make a suppressed recipient (bounced, complained, unsubscribed) active again;
    /// recorded as a `reactivation` event (source `cli`). Exit code 1 when the recipient
    /// is unknown or already active.
    Reactivate {
        /// The address.
        address: String,
    },
}

/// Arguments of `rebound events`.
#[derive(clap::Args)]
pub(crate) struct EventsArgs {
    /// Only events of this recipient.
    #[arg(long)]
    recipient: Option<String>,
    /// Only events of this kind (bounce, complaint, auto-reply, delivery-notice, other,
    /// reactivation).
    #[arg(long)]
    kind: Option<String>,
    /// Only events of this campaign.
    #[arg(long)]
    campaign: Option<i64>,
    /// At most this many.
    #[arg(long)]
    limit: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store.url)
        .await
        .context("opening the store")
}

pub(crate) async fn run(config_path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let pop3 = config
        .pop3
        .as_ref()
        .context("the config has no [pop3] section")?;
    let store = open_store(&config).await?;
    store
        .check_queries()
        .await
        .context("preparing the store's statements")?;
    let chain = load_chain(&config)?;
    let poller = Poller::from_config(pop3, store, Arc::new(chain), config.rules.clone())?;
    if args.once {
        let summary = poller
            .poll_once()
            .await
            .context("polling the bounce mailbox")?;
        match args.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
            Format::Table => {
                println!("{summary}");
                for change in &summary.state_changes {
                    println!("  {}: {} -> {}", change.address, change.from, change.to);
                }
                for big in &summary.too_large {
                    println!(
                        "  left on the server, too large: {} ({} bytes)",
                        big.uid, big.size
                    );
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    tracing::info!(mailbox = poller.mailbox(), interval = ?pop3.poll_interval, "polling");
    poller.run(super::shutdown_signal()).await;
    Ok(ExitCode::SUCCESS)
}

/// The policy chain of the config.
fn load_chain(config: &Config) -> anyhow::Result<PolicyChain> {
    PolicyChain::from_config(&config.policy, &config.policy_limits)
        .context("loading the policy chain")
}

pub(crate) async fn recipients(
    config_path: &Path,
    args: RecipientsArgs,
) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = open_store(&config).await?;
    if let Some(RecipientsCommand::Reactivate { address }) = args.command {
        return match store.reactivate(&address, "cli").await? {
            Ok(change) => {
                println!("{}: {} -> {}", change.address, change.from, change.to);
                Ok(ExitCode::SUCCESS)
            }
            Err(refusal) => {
                eprintln!("rebound: {address}: {refusal}; nothing changed");
                Ok(ExitCode::from(1))
            }
        };
    }
    let list = store.recipients(args.state).await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Table => {
            let rows = list
                .iter()
                .map(|r| {
                    vec![
                        r.address.clone(),
                        r.state.to_string(),
                        r.hard_count.to_string(),
                        r.soft_count.to_string(),
                        r.complaint_count.to_string(),
                        r.last_bounce_at.map(|t| t.to_string()).unwrap_or_default(),
                        r.last_status.clone().unwrap_or_default(),
                        r.last_reason.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            super::print_table(
                &[
                    "ADDRESS",
                    "STATE",
                    "HARD",
                    "SOFT",
                    "COMPLAINTS",
                    "LAST BOUNCE",
                    "STATUS",
                    "REASON",
                ],
                rows,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn events(config_path: &Path, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = open_store(&config).await?;
    let kind = args
        .kind
        .as_deref()
        .map(str::parse::<EventKind>)
        .transpose()
        .context("--kind")?;
    let filter = EventFilter {
        recipient: args.recipient,
        kind,
        campaign_id: args.campaign,
        limit: args.limit,
        ..EventFilter::default()
    };
    let list = store.events(&filter).await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Table => {
            let rows = list
                .iter()
                .map(|e| {
                    vec![
                        e.at.to_string(),
                        e.recipient.clone().unwrap_or_else(|| "-".into()),
                        e.kind.as_str().to_owned(),
                        e.class.map(|c| c.as_str().to_owned()).unwrap_or_default(),
                        e.blame.map(|b| b.as_str().to_owned()).unwrap_or_default(),
                        e.status.clone().unwrap_or_default(),
                        e.reason
                            .clone()
                            .or_else(|| e.error.as_ref().map(|x| format!("error: {x}")))
                            .or_else(|| e.previous_state.map(|s| format!("was {s}")))
                            .unwrap_or_default(),
                        e.aliases.join(","),
                        e.decided_by.clone(),
                        e.source.clone(),
                    ]
                })
                .collect();
            super::print_table(
                &[
                    "AT",
                    "RECIPIENT",
                    "KIND",
                    "CLASS",
                    "BLAME",
                    "STATUS",
                    "REASON",
                    "ALIASES",
                    "DECIDED BY",
                    "SOURCE",
                ],
                rows,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
