//! `rebound reprocess`: the detector and a policy chain over the raw message archive,
//! showing what changes (verdicts and recipient states) against what was recorded, and
//! writing it unless `--dry-run`.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use rebound::reprocess;
use rebound::store::{Booking, Timestamp};

use super::Format;

/// Arguments of `rebound reprocess`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The messages archived within this long (default 30d).
    #[arg(long, default_value = "30d", value_parser = rebound::config::parse_duration)]
    since: Duration,
    /// A policy component to run instead of the store's chain (repeatable, in order):
    /// what would this policy have changed?
    #[arg(long = "policy", value_name = "FILE.wasm")]
    policies: Vec<PathBuf>,
    /// Show what would change, write nothing. Without it the changes are booked as new
    /// events (the old ones kept as superseded) and the recipients' states recomputed.
    #[arg(long)]
    dry_run: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

fn booking(b: Option<&Booking>) -> String {
    match b {
        None => "-".into(),
        Some(b) => {
            let mut s = b.kind.as_str().to_owned();
            if let Some(c) = b.class {
                s.push(' ');
                s.push_str(c.as_str());
            }
            s.push(' ');
            s.push_str(b.reason.as_str());
            if let Some(blame) = b.blame {
                s.push_str(&format!(" ({})", blame.as_str()));
            }
            s
        }
    }
}

pub(crate) async fn run(config_path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = super::open_store(&config).await?;
    let chain = if args.policies.is_empty() {
        super::open_registry(&config, &store).await?.chain()
    } else {
        std::sync::Arc::new(super::policy::chain_from_files(
            config_path,
            &args.policies,
            rebound::policy::cache::user_dir(),
        )?)
    };
    let since = Timestamp(
        Timestamp::now().0 - i64::try_from(args.since.as_millis()).unwrap_or(i64::MAX / 2),
    );
    let report = if args.dry_run {
        reprocess::dry_run(&store, &chain, &config.rules, since).await
    } else {
        reprocess::apply(&store, &chain, &config.rules, since).await
    }
    .context("reprocessing the archive")?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table => {
            let rows = report
                .changes
                .iter()
                .map(|c| {
                    vec![
                        c.at.to_string(),
                        c.uid.clone(),
                        if c.recipient.is_empty() {
                            "-".into()
                        } else {
                            c.recipient.clone()
                        },
                        booking(c.before.as_ref()),
                        booking(c.after.as_ref()),
                        match c.would_be {
                            Some(to) => format!("{} → {to}", c.state),
                            None => c.state.to_string(),
                        },
                    ]
                })
                .collect();
            super::print_table(
                &[
                    "RECORDED",
                    "UID",
                    "RECIPIENT",
                    "WAS",
                    if report.applied { "NOW" } else { "WOULD BE" },
                    "STATE",
                ],
                rows,
            );
        }
    }
    let unchanged = report.messages - report.changed - report.failed;
    if report.applied {
        for c in &report.state_changes {
            eprintln!("{}: {} → {}", c.address, c.from, c.to);
        }
        eprintln!(
            "reprocessed {} archived messages: {} booked again, {} unchanged, {} the chain failed on; {} recipients changed state",
            report.messages,
            report.changed,
            unchanged,
            report.failed,
            report.state_changes.len()
        );
    } else {
        eprintln!(
            "reprocessed {} archived messages: {} would change, {} unchanged, {} the chain failed on (dry run: nothing written)",
            report.messages, report.changed, unchanged, report.failed
        );
    }
    Ok(ExitCode::SUCCESS)
}
