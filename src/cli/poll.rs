//! `rebound poll`, `rebound recipients`, `rebound events`: read the bounce mailbox into
//! the store, and show what the store knows.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rebound::config::Config;
use rebound::imap::ImapSource;
use rebound::pop3::poller::Poller;
use rebound::store::{Event, EventFilter, EventKind, Page, Recipient, RecipientState, Store};

use super::Format;

/// Arguments of `rebound poll`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Option<PollCommand>,
    /// One pass, then print a summary and exit.
    #[arg(long)]
    once: bool,
    /// Summary format of `--once`.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// `rebound poll …` subcommands: the quarantine of the `[pop3]` mailbox.
#[derive(clap::Subcommand)]
pub(crate) enum PollCommand {
    /// List the quarantined messages (their fetch failed `max_fetch_failures` times;
    /// they stay on the server and are not fetched): UID, failures, first and last
    /// failure, last error.
    Quarantine {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Release quarantined messages: their failures are forgotten and the next pass
    /// fetches them again. Exit code 1 when a UID named is not quarantined.
    Release {
        /// The UIDs (as `poll quarantine` lists them).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        uids: Vec<String>,
        /// Every quarantined message of the mailbox.
        #[arg(long)]
        all: bool,
    },
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
    /// Add the subscribers of a CSV file (a header row naming `address` or `email`, and
    /// `name`; other columns are kept as fields; without a header: address, name). A
    /// suppressed address stays suppressed. Rows without an address are reported and
    /// left out (exit code 1 when there were any).
    Import {
        /// The CSV file.
        file: std::path::PathBuf,
    },
    /// Write the recipients (with `--suppressed`: the bounced, complained and
    /// unsubscribed ones) to standard output, for the tool that owns the list.
    Export {
        /// Only the suppressed recipients.
        #[arg(long)]
        suppressed: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
    },
}

/// Formats of `rebound recipients export`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// CSV with a header row.
    Csv,
    /// A JSON array.
    Json,
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
    /// Print the archived message event ID was recorded from, as it was fetched
    /// (`[store] keep_raw`), instead of a listing. Exit code 1 when none is archived.
    #[arg(long, value_name = "ID", conflicts_with_all = ["recipient", "kind", "campaign", "limit"])]
    raw: Option<i64>,
    /// Print the archived message of this UID of the `[pop3]` mailbox (mail that booked no
    /// event, such as ordinary mail, has no event ID). Exit code 1 when none is archived.
    #[arg(long, value_name = "UID", conflicts_with_all = ["raw", "recipient", "kind", "campaign", "limit"])]
    raw_uid: Option<String>,
}

async fn open_store(config: &Config) -> anyhow::Result<Store> {
    super::open_store(config).await
}

pub(crate) async fn run(config_path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    if config.pop3.is_none() && config.imap.is_none() {
        anyhow::bail!("the config has no [pop3] or [imap] section");
    }
    let (store, endpoints) = super::open_store_with_endpoints(&config).await?;
    if let Some(command) = args.command {
        let mailbox = match (&config.pop3, &config.imap) {
            (Some(pop3), _) => rebound::pop3::poller::mailbox_name(pop3),
            (None, Some(imap)) => rebound::imap::mailbox_name(imap),
            (None, None) => unreachable!("checked above"),
        };
        return quarantine(&store, &mailbox, command).await;
    }
    store
        .check_queries()
        .await
        .context("preparing the store's statements")?;
    let registry = super::open_registry(&config, &store).await?;
    let poller = match &config.pop3 {
        Some(pop3) => {
            let poller =
                Poller::from_config(pop3, store.clone(), registry.chain(), config.rules.clone())?
                    .with_live_chain(registry.live_chain())
                    .with_archive(config.store.keep_raw);
            Some(match super::unsubscribe_signer(&config) {
                Some(signer) => poller.with_unsubscribe(signer),
                None => poller,
            })
        }
        None => None,
    };
    let imap = match &config.imap {
        Some(imap) => Some(
            ImapSource::from_config(
                imap,
                store.clone(),
                super::stages(&config, registry.live_chain()),
            )
            .context("setting up the IMAP source")?
            .with_prune(config.store.keep_raw),
        ),
        None => None,
    };
    if args.once {
        let pop3_summary = match &poller {
            Some(p) => Some(p.poll_once().await.context("polling the bounce mailbox")?),
            None => None,
        };
        let imap_summary = match &imap {
            Some(i) => Some(i.poll_once().await.context("reading the IMAP folder")?),
            None => None,
        };
        match args.format {
            Format::Json => {
                let json = match (&pop3_summary, &imap_summary) {
                    (Some(p), None) => serde_json::to_value(p)?,
                    (None, Some(i)) => serde_json::to_value(i)?,
                    (p, i) => serde_json::json!({ "pop3": p, "imap": i }),
                };
                println!("{}", serde_json::to_string_pretty(&json)?);
            }
            Format::Table => {
                if let Some(summary) = &pop3_summary {
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
                if let Some(summary) = &imap_summary {
                    println!("imap: {summary}");
                    for change in &summary.state_changes {
                        println!("  {}: {} -> {}", change.address, change.from, change.to);
                    }
                    for big in &summary.too_large {
                        println!(
                            "  left in the folder, too large: {} ({} bytes)",
                            big.uid, big.size
                        );
                    }
                }
            }
        }
        if !endpoints.is_empty() {
            // What this pass enqueued goes out now; a row that fails waits for its
            // retry in `rebound serve`, `rebound poll` or `rebound notify run`.
            let pass = rebound::notify::deliver::Deliverer::new(store.clone(), endpoints)?
                .drain()
                .await
                .context("delivering webhooks")?;
            tracing::info!(
                delivered = pass.delivered,
                failed = pass.failed,
                dead = pass.dead,
                "webhooks sent"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let pop3_loop = async {
        match &poller {
            Some(p) => {
                tracing::info!(mailbox = p.mailbox(), interval = ?config.pop3.as_ref().map(|c| c.poll_interval), "polling");
                p.run(super::shutdown_signal()).await;
            }
            None => super::shutdown_signal().await,
        }
    };
    let imap_loop = async {
        match &imap {
            Some(i) => {
                tracing::info!(mailbox = i.mailbox(), "reading the IMAP folder");
                i.run(super::shutdown_signal()).await;
            }
            None => super::shutdown_signal().await,
        }
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    super::spawn_deliverer(&mut tasks, &store, endpoints, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    })?;
    // The chain follows changes made through any host's API while this polls.
    tokio::select! {
        ((), ()) = async { tokio::join!(pop3_loop, imap_loop) } => {}
        () = registry.follow(std::future::pending()) => {}
    }
    // The deliverer finishes the batch in flight; the rest stays due.
    let _ = stop_tx.send(true);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::error!("{e:#}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rebound poll quarantine` and `rebound poll release`.
async fn quarantine(
    store: &Store,
    mailbox: &str,
    command: PollCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        PollCommand::Quarantine { format } => {
            let list = store.quarantined(Some(mailbox)).await?;
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                Format::Table => {
                    let rows = list
                        .iter()
                        .map(|f| {
                            vec![
                                f.uid.clone(),
                                f.failures.to_string(),
                                f.first_failure_at.to_string(),
                                f.last_failure_at.to_string(),
                                f.last_error.clone(),
                            ]
                        })
                        .collect();
                    super::print_table(
                        &[
                            "UID",
                            "FAILURES",
                            "FIRST FAILURE",
                            "LAST FAILURE",
                            "LAST ERROR",
                        ],
                        rows,
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PollCommand::Release { uids, all } => {
            let wanted: Vec<&str> = uids.iter().map(String::as_str).collect();
            let released = store
                .release_quarantined(Some(mailbox), (!all).then_some(wanted.as_slice()))
                .await?;
            for (_, uid) in &released {
                println!("{uid}: released, fetched again by the next pass");
            }
            let mut code = ExitCode::SUCCESS;
            for uid in &wanted {
                if !released.iter().any(|(_, r)| r == uid) {
                    eprintln!(
                        "rebound: {uid}: not quarantined in mailbox {mailbox}; nothing changed"
                    );
                    code = ExitCode::from(1);
                }
            }
            if all && released.is_empty() {
                println!("nothing quarantined in mailbox {mailbox}");
            }
            Ok(code)
        }
    }
}

/// The policy chain of the config.
pub(crate) async fn recipients(
    config_path: &Path,
    args: RecipientsArgs,
) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = open_store(&config).await?;
    if let Some(RecipientsCommand::Import { file }) = &args.command {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let (subscribers, bad) = rebound::subscribers::parse_csv(&bytes);
        for b in &bad {
            eprintln!(
                "rebound: {}:{}: {}; left out",
                file.display(),
                b.line,
                b.reason
            );
        }
        let done = store.import_subscribers(&subscribers).await?;
        println!(
            "{} subscribers: {} added, {} known ({} suppressed, kept so), {} named twice, {} rows left out",
            subscribers.len(),
            done.added,
            done.known,
            done.kept_suppressed,
            done.repeated,
            bad.len()
        );
        return Ok(if bad.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if let Some(RecipientsCommand::Export { suppressed, format }) = &args.command {
        let list = rebound::subscribers::export(&store, *suppressed).await?;
        let out = match format {
            ExportFormat::Csv => rebound::subscribers::to_csv(&list),
            ExportFormat::Json => serde_json::to_vec_pretty(&list)?,
        };
        std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
        return Ok(ExitCode::SUCCESS);
    }
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
    let state = args.state;
    print_pages(
        args.format,
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
        |r: &Recipient| {
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
        },
        None,
        async |after: Option<String>, limit| {
            Ok(store
                .recipients_page(state, after.as_deref(), limit)
                .await?)
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// Rows a listing reads from the store at a time.
const PAGE: u32 = 1000;

/// Prints a listing read page by page (keyset: each read is short and served by an
/// index, whatever the size of the table), at most `max` rows. JSON is one array,
/// written as the pages come; a table is printed once every row is read, so that its
/// columns are as wide as their widest cell.
async fn print_pages<T: serde::Serialize, C>(
    format: Format,
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
    max: Option<u32>,
    mut page: impl AsyncFnMut(Option<C>, u32) -> anyhow::Result<Page<T, C>>,
) -> anyhow::Result<()> {
    use serde::ser::{SerializeSeq, Serializer};
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut json =
        serde_json::Serializer::with_formatter(&mut out, serde_json::ser::PrettyFormatter::new());
    let mut seq = match format {
        Format::Json => Some(json.serialize_seq(None)?),
        Format::Table => None,
    };
    let mut rows = Vec::new();
    let mut left = max;
    let mut after = None;
    while left != Some(0) {
        let limit = left.map_or(PAGE, |n| n.min(PAGE));
        let Page { items, next } = page(after.take(), limit).await?;
        left = left.map(|n| n - u32::try_from(items.len()).unwrap_or(n).min(n));
        for item in &items {
            match &mut seq {
                Some(seq) => seq.serialize_element(item)?,
                None => rows.push(row(item)),
            }
        }
        match next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if let Some(seq) = seq {
        seq.end()?;
        writeln!(out)?;
    } else {
        super::print_table(header, rows);
    }
    out.flush()?;
    Ok(())
}

pub(crate) async fn events(config_path: &Path, args: EventsArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = open_store(&config).await?;
    let raw = match (args.raw, &args.raw_uid) {
        (Some(id), _) => Some((store.raw_of_event(id).await?, format!("event {id}"))),
        (None, Some(uid)) => {
            let pop3 = config
                .pop3
                .as_ref()
                .context("--raw-uid: the config has no [pop3] section")?;
            let mailbox = rebound::pop3::poller::mailbox_name(pop3);
            Some((
                store.raw_of_message(&mailbox, uid).await?,
                format!("message {uid} of mailbox {mailbox}"),
            ))
        }
        (None, None) => None,
    };
    if let Some((raw, what)) = raw {
        let Some(raw) = raw else {
            eprintln!(
                "rebound: {what} has no archived message (unknown, not from the mailbox, \
                 older than [store] keep_raw, or recorded with the archive off)"
            );
            return Ok(ExitCode::from(1));
        };
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        out.write_all(&raw).context("writing the message")?;
        out.flush().context("writing the message")?;
        return Ok(ExitCode::SUCCESS);
    }
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
        ..EventFilter::default()
    };
    print_pages(
        args.format,
        &[
            "ID",
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
        |e: &Event| {
            vec![
                e.id.to_string(),
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
        },
        args.limit,
        async |after: Option<i64>, limit| {
            let filter = EventFilter {
                after,
                ..filter.clone()
            };
            Ok(store.events_page(&filter, limit).await?)
        },
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}
