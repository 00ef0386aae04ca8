//! `rebound send`: queue a campaign (or find it again) and send it under the configured
//! rate limits, with a progress line; `rebound campaigns`: per-campaign counts.
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use rebound::campaign::{self, CampaignSpec, Renderer};
use rebound::config::{Config, RulesConfig, SmtpConfig, secret_from_env};
use rebound::dkim::Dkim;
use rebound::queue::{ProgressSnapshot, Queue, QueueOptions};
use rebound::ratelimit::{Backoff, RateLimiter, RateSpec};
use rebound::smtp::{Mailer, SmtpMailer};
use rebound::store::Store;
use rebound::store::campaigns::{CampaignCounts, CampaignRecord, CampaignState};
use rebound::verp::Signer;

use super::Format;

/// Arguments of `rebound send`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// The campaign file (name, from, subject, bodies, recipients). Sending a campaign
    /// whose name the store knows resumes it.
    #[arg(long)]
    campaign: PathBuf,
    /// No progress line; only the summary at the end.
    #[arg(long)]
    quiet: bool,
    /// How long this runner's lease on the campaign (and on the rows it claimed) lasts
    /// without a heartbeat; the heartbeat comes every third of it. The rows of a runner
    /// whose lease expired (it died) go back to the queue for the others.
    #[arg(long, default_value = "60s", value_parser = rebound::config::parse_duration)]
    lease: Duration,
}

/// Arguments of `rebound campaigns`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct CampaignsArgs {
    #[command(subcommand)]
    command: Option<CampaignsCommand>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

/// `rebound campaigns …` subcommands.
#[derive(clap::Subcommand)]
pub(crate) enum CampaignsCommand {
    /// Pause a campaign by hand: its sends are not claimed until it is resumed (`rebound
    /// campaigns resume ID`, or `rebound send` on it); a running `rebound send` stops
    /// with exit code 2. Exit code 1 when it was paused already.
    Pause {
        /// The campaign id.
        id: i64,
    },
    /// Resume a campaign paused (by hand or by `[rules] max_complaint_rate`), and its sends to
    /// destination domains paused by `[rules] pause_on_sender_blocks` now, instead of
    /// when those pauses end by themselves. Exit code 1 when nothing was paused.
    Resume {
        /// The campaign id.
        id: i64,
        /// Only this destination domain (default: every paused one).
        #[arg(long)]
        domain: Option<String>,
    },
}

fn progress_line(p: &ProgressSnapshot) -> String {
    let done = p.done_before + p.sent + p.bounced + p.failed + p.skipped + p.maybe_delivered;
    let eta = match p.eta {
        Some(d) if p.remaining > 0 => format_duration(d),
        _ if p.remaining == 0 => "0s".into(),
        _ => "?".into(),
    };
    let bar_width = 24usize;
    let filled = if p.total == 0 {
        bar_width
    } else {
        (done as usize * bar_width) / p.total as usize
    };
    format!(
        "[{}{}] {done}/{} sent {}{} failed {} (bounced {}) skipped {} deferred {} throttled {} {:.1} msg/s ETA {eta}",
        "#".repeat(filled.min(bar_width)),
        "-".repeat(bar_width - filled.min(bar_width)),
        p.total,
        p.sent,
        if p.maybe_delivered > 0 {
            format!(" (maybe delivered {})", p.maybe_delivered)
        } else {
            String::new()
        },
        p.bounced + p.failed,
        p.bounced,
        p.skipped,
        p.deferred,
        p.throttled,
        p.rate,
    )
}

fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// The `[smtp.dkim]` signer, its key read and checked now (none without the section).
pub(crate) fn load_dkim(smtp: &SmtpConfig) -> anyhow::Result<Option<Arc<Dkim>>> {
    smtp.dkim
        .as_ref()
        .map(|c| Dkim::from_config(c).map(Arc::new))
        .transpose()
        .context("loading the DKIM key")
}

/// What every campaign's messages are rendered with, from the config: the bounce
/// domain, the unsubscribe link's base (`[api] public_url`) and the DKIM key, loaded once.
#[derive(Clone)]
pub(crate) struct Rendering {
    bounce_domain: String,
    public_url: Option<String>,
    dkim: Option<Arc<Dkim>>,
}

impl Rendering {
    /// Loads the DKIM key, if any (an unusable key fails here, before any campaign).
    pub(crate) fn from_config(config: &Config, smtp: &SmtpConfig) -> anyhow::Result<Rendering> {
        Ok(Rendering {
            bounce_domain: smtp.bounce_domain.clone(),
            public_url: config.api.public_url.clone(),
            dkim: load_dkim(smtp)?,
        })
    }

    /// The renderer of one campaign.
    pub(crate) fn renderer(&self, campaign: CampaignRecord) -> anyhow::Result<Renderer> {
        Ok(Renderer::new(campaign, self.bounce_domain.clone())?
            .with_public_url(self.public_url.as_deref())
            .with_dkim(self.dkim.clone()))
    }
}

/// A queue sending through the configured relay under the configured limits, and its
/// mailer (to shut its connections down at the end).
pub(crate) fn build_queue(
    smtp: &SmtpConfig,
    rules: &RulesConfig,
    store: &Store,
) -> anyhow::Result<(Queue<SmtpMailer>, Arc<SmtpMailer>)> {
    let secret = secret_from_env(&smtp.verp_secret_env).context("reading the VERP secret")?;
    let signer = Signer::new(secret.as_bytes()).context("the VERP secret")?;
    let specs = smtp
        .rate_limit
        .iter()
        .map(RateSpec::try_from)
        .collect::<Result<Vec<_>, _>>()
        .context("[[smtp.rate_limit]]")?;
    let mailer = Arc::new(SmtpMailer::from_config(smtp).context("setting up the SMTP relay")?);
    // The limits live in the store: every process sending through it shares them, and a
    // throttling pause of the relay.
    let limiter = RateLimiter::new(specs)
        .with_backoff(Backoff {
            base: smtp.throttle_delay,
            max: Duration::from_secs(300).max(smtp.throttle_delay),
        })
        .with_store(store.clone())
        .with_relay(format!("{}:{}", smtp.host, smtp.port));
    let queue = Queue::new(
        store.clone(),
        mailer.clone(),
        Arc::new(limiter),
        Arc::new(signer),
        QueueOptions::from_config(smtp, rules),
    );
    Ok((queue, mailer))
}

pub(crate) async fn run(config_path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let smtp = config
        .smtp
        .as_ref()
        .context("the config has no [smtp] section")?;
    let rendering = Rendering::from_config(&config, smtp)?;
    let spec = CampaignSpec::load(&args.campaign).context("loading the campaign")?;
    let store = super::open_store(&config).await?;
    let (mut queue, mailer) = build_queue(smtp, &config.rules, &store)?;
    queue.set_lease(args.lease);

    let queued = campaign::enqueue(&store, &spec, &smtp.from)
        .await
        .context("queueing the campaign")?;
    let c = &queued.campaign;
    if queued.existing {
        if c.state == CampaignState::Done {
            println!("campaign {} {:?} is already done", c.id, c.name);
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("resuming campaign {} {:?}", c.id, c.name);
        if let Some(reason) = store.resume_campaign_pause(c.id).await? {
            eprintln!(
                "it was paused ({reason}); sending on: the complaint-rate guard counts from now"
            );
        }
    } else {
        eprintln!(
            "queued campaign {} {:?}: {} recipients ({} skipped)",
            c.id, c.name, queued.queued, queued.skipped
        );
    }

    let renderer = rendering.renderer(c.clone())?;
    if config.api.public_url.is_none() {
        eprintln!(
            "note: [api] public_url is not set: the messages carry only a mailto: unsubscribe, \
             not the one-click link Gmail and Yahoo require of bulk senders"
        );
    }

    let stop = queue.stop_flag();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        eprintln!(
            "\nstopping after the messages in flight (the campaign can be resumed; \
             a second Ctrl-C or SIGTERM exits at once)"
        );
        stop.store(true, Ordering::SeqCst);
        // The stop waits for the results to be saved, which waits for the store: a
        // store that cannot be reached would keep it waiting. A second signal exits.
        super::shutdown_signal().await;
        eprintln!(
            "rebound: stopped at once: results not saved yet are sent again when the campaign resumes"
        );
        std::process::exit(1);
    });
    let progress = queue.progress();
    let show = !args.quiet;
    let tty = std::io::stderr().is_terminal();
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(5)
        });
        tick.tick().await;
        loop {
            tick.tick().await;
            if show {
                let line = progress_line(&progress.snapshot());
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r{line}\x1b[K")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
        }
    });
    // Other runners (processes, hosts) may send the same campaign at the same time: the
    // store hands each row to one of them.
    let result = queue.run(renderer).await;
    ticker.abort();
    mailer.shutdown().await;
    let snapshot = queue.progress().snapshot();
    if show {
        eprintln!(
            "{}{}",
            if tty { "\r" } else { "" },
            progress_line(&snapshot)
        );
    }
    match result {
        Ok(summary) => {
            println!(
                "campaign {} {:?}: sent {}, bounced {}, failed {} in {}{}",
                c.id,
                c.name,
                summary.progress.sent,
                summary.progress.bounced,
                summary.progress.failed,
                format_duration(summary.progress.elapsed),
                if summary.finished { " (done)" } else { "" }
            );
            Ok(if summary.finished {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "campaign {} {:?} (run again to resume)",
            c.id, c.name
        ))),
    }
}

pub(crate) async fn campaigns(config_path: &Path, args: CampaignsArgs) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let store = super::open_store(&config).await?;
    if let Some(CampaignsCommand::Pause { id }) = args.command {
        anyhow::ensure!(store.campaign(id).await?.is_some(), "no campaign {id}");
        if !store.pause_campaign(id, "cli").await? {
            eprintln!("rebound: campaign {id}: paused already");
            return Ok(ExitCode::from(1));
        }
        println!("campaign {id}: paused (rebound campaigns resume {id} resumes it)");
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(CampaignsCommand::Resume { id, domain }) = args.command {
        let campaign = match domain {
            None => store.resume_campaign_pause(id).await?,
            Some(_) => None,
        };
        if let Some(reason) = &campaign {
            println!("campaign {id}: resumed (it was paused: {reason})");
        }
        let resumed = store.resume_paused(id, domain.as_deref()).await?;
        if resumed.is_empty() && campaign.is_none() {
            eprintln!(
                "rebound: campaign {id}: not paused, and no paused destination domain{}",
                domain.map(|d| format!(" {d}")).unwrap_or_default()
            );
            return Ok(ExitCode::from(1));
        }
        for d in resumed {
            println!("campaign {id}: sends to {d} resumed");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let list = store.campaign_counts().await?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Table => {
            let header = [
                "ID",
                "NAME",
                "STATE",
                "RECIPIENTS",
                "QUEUED",
                "SENT",
                "MAYBE DELIVERED",
                "FAILED",
                "SKIPPED",
                "HARD",
                "SOFT",
                "COMPLAINTS",
                "SENDER REFUSALS",
                "BY DOMAIN (refused/sends)",
            ];
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        c.name.clone(),
                        if c.pause.is_some() {
                            "paused".to_owned()
                        } else {
                            c.state.as_str().to_owned()
                        },
                        c.recipients.to_string(),
                        c.queued.to_string(),
                        c.sent.to_string(),
                        c.maybe_delivered.to_string(),
                        c.failed.to_string(),
                        c.skipped.to_string(),
                        c.hard_bounces.to_string(),
                        c.soft_bounces.to_string(),
                        complaints_cell(c, &config.rules),
                        c.sender_refusals.to_string(),
                        c.sender_refusals_by_domain
                            .iter()
                            .take(3)
                            .map(|d| {
                                let paused = c.paused_domains.iter().any(|p| p.domain == d.domain);
                                format!(
                                    "{} {}/{}{}",
                                    d.domain,
                                    d.refusals,
                                    d.sends,
                                    if paused { " (paused)" } else { "" }
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", "),
                    ]
                })
                .collect();
            super::print_table(&header, rows);
            for c in &list {
                if let Some(p) = &c.pause {
                    println!(
                        "campaign {} paused since {}: {}; `rebound send` resumes it",
                        c.id, p.paused_at, p.reason
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The complaints column: the count, its rate over the accepted sends, and `!` at or
/// over `[rules] warn_complaint_rate` (with enough sends to say).
fn complaints_cell(c: &CampaignCounts, rules: &RulesConfig) -> String {
    if c.complaints == 0 {
        return "0".into();
    }
    let level =
        rebound::store::state::complaint_level(rules, c.complaints, c.sent + c.maybe_delivered);
    format!(
        "{} ({}){}",
        c.complaints,
        rebound::store::percent(c.complaint_rate),
        if level == rebound::store::state::ComplaintLevel::Ok {
            ""
        } else {
            "!"
        }
    )
}
