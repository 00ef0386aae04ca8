//! Subcommands. Each file owns its clap arguments and its `run`.

pub(crate) mod classify;
pub(crate) mod daemon;
pub(crate) mod notify;
pub(crate) mod policy;
pub(crate) mod policy_new;
pub(crate) mod poll;
pub(crate) mod reprocess;
pub(crate) mod send;
pub(crate) mod serve;

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use rebound::config::Config;

/// The config file used when `--config` is not given.
pub(crate) const DEFAULT_CONFIG: &str = "rebound.toml";

/// Output format of the listing commands.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON array.
    Json,
}

/// Prints rows as aligned columns under a header.
pub(crate) fn print_table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row);
    }
}

/// Logging to stderr, filtered by `REBOUND_LOG` (default `info`); colours only when
/// stderr is a terminal, so logs piped to a file or a journal stay plain text.
pub(crate) fn init_tracing() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("REBOUND_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Loads the config; a missing *default* file means built-in defaults.
pub(crate) fn load_config(path: &Path) -> anyhow::Result<Config> {
    if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
        return Ok(Config::default());
    }
    Config::load(path).context("loading config")
}

/// Opens the store with the config's `[[notify]]` endpoints set, so every state change
/// this command makes is enqueued for them, and returns the endpoints with their secrets
/// (for a deliverer): a secret the environment lacks is an error here, before a
/// deliverer could start without it.
pub(crate) async fn open_store_with_endpoints(
    config: &Config,
) -> anyhow::Result<(rebound::store::Store, Vec<rebound::notify::Endpoint>)> {
    let endpoints = rebound::notify::endpoints(&config.notify).context("[[notify]]")?;
    let store = open_store(config).await?;
    Ok((store, endpoints))
}

/// Opens the store with the config's `[[notify]]` endpoints set (their names and events:
/// a command that only enqueues needs none of their secrets).
pub(crate) async fn open_store(config: &Config) -> anyhow::Result<rebound::store::Store> {
    let subscriptions = rebound::notify::subscriptions(&config.notify).context("[[notify]]")?;
    let mut store = rebound::store::Store::open(&config.store.url)
        .await
        .context("opening the store")?;
    store.set_notify(subscriptions);
    Ok(store)
}

/// The task of `rebound serve` and `rebound poll` that delivers the outbox (none
/// without `[[notify]]`): runs until `stop` resolves, finishing the batch in flight.
pub(crate) fn spawn_deliverer(
    tasks: &mut tokio::task::JoinSet<anyhow::Result<()>>,
    store: &rebound::store::Store,
    endpoints: Vec<rebound::notify::Endpoint>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if endpoints.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = endpoints.iter().map(|e| e.name.clone()).collect();
    let deliverer = rebound::notify::deliver::Deliverer::new(store.clone(), endpoints)
        .context("setting up the webhook deliverer")?;
    tracing::info!(endpoints = ?names, "webhook deliverer started");
    tasks.spawn(async move {
        deliverer.run(stop).await;
        Ok(())
    });
    Ok(())
}

/// The store's policy chain with the config's `[[policy]]` entries (and, for a store
/// without a chain, the one an earlier release kept in `[api] data_dir`).
pub(crate) async fn open_registry(
    config: &Config,
    store: &rebound::store::Store,
) -> anyhow::Result<rebound::api::registry::PolicyRegistry> {
    rebound::api::registry::PolicyRegistry::open(
        store.clone(),
        &config.policy,
        &config.policy_limits,
        Some(&config.api.data_dir),
    )
    .await
    .context("loading the policy chain")
}

/// The signer of the campaigns' unsubscribe tokens, for the poller (mail to the
/// `mailto:` unsubscribe address): with `[smtp]` and its VERP secret set. Without the
/// secret, such mail is recorded as other mail only, with a warning.
pub(crate) fn unsubscribe_signer(config: &Config) -> Option<rebound::verp::Signer> {
    let smtp = config.smtp.as_ref()?;
    let signer = rebound::config::secret_from_env(&smtp.verp_secret_env)
        .ok()
        .and_then(|secret| rebound::verp::Signer::new(secret.as_bytes()).ok());
    if signer.is_none() {
        tracing::warn!(
            "{} is not set: unsubscribe requests that arrive by mail are not applied",
            smtp.verp_secret_env
        );
    }
    signer
}

/// The pipeline stages of a source taking messages one at a time (the IMAP source): the
/// live chain, the rules, the unsubscribe signer and whether the archive is on.
pub(crate) fn stages(
    config: &Config,
    chain: std::sync::Arc<arc_swap::ArcSwap<rebound::policy::PolicyChain>>,
) -> rebound::pipeline::Stages {
    rebound::pipeline::Stages {
        chain,
        rules: config.rules.clone(),
        unsubscribe: unsubscribe_signer(config),
        archive: !config.store.keep_raw.is_zero(),
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// `rebound check-config`: fails fast on what the daemon would fail on later — the
/// config, every policy module (compiled, world checked), the store (migrated, every
/// statement prepared) and the secrets the config names.
pub(crate) async fn check_config(path: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    let chain = rebound::policy::PolicyChain::from_config(&config.policy, &config.policy_limits)
        .context("loading the policy chain")?;
    for module in chain.modules() {
        println!("policy {}: ok ({})", module.name(), &module.digest()[..12]);
    }
    let (store, endpoints) = open_store_with_endpoints(&config).await?;
    for e in &endpoints {
        println!("notify {}: ok ({:?})", e.name, e.format);
    }
    store
        .check_queries()
        .await
        .context("preparing the store's statements")?;
    store.close().await;
    println!("store {}: ok", config.store.url);
    let mut secrets = Vec::new();
    // The mailbox logins: their variables read (and an OAuth client set up) as the
    // sources will.
    if let Some(pop3) = &config.pop3 {
        rebound::oauth::Credentials::from_login("pop3", &pop3.login())
            .context("checking the [pop3] login")?;
    }
    if let Some(imap) = &config.imap {
        rebound::oauth::Credentials::from_login("imap", &imap.login())
            .context("checking the [imap] login")?;
    }
    if let Some(smtp) = &config.smtp {
        for limit in &smtp.rate_limit {
            let spec =
                rebound::ratelimit::RateSpec::try_from(limit).context("[smtp] rate_limit")?;
            println!("rate limit {spec}: ok");
        }
        if let Some(dkim) = send::load_dkim(smtp)? {
            println!(
                "dkim {}: ok ({}, {}-bit key)",
                dkim.record_name(),
                dkim.algorithm(),
                dkim.bits()
            );
        }
        secrets.extend(smtp.password_env.clone());
        secrets.push(smtp.verp_secret_env.clone());
    }
    for var in secrets {
        rebound::config::secret_from_env(&var).context("checking the secrets")?;
    }
    // Each configured webhook as `rebound serve` sets it up: its secret read and parsed.
    {
        use rebound::webhooks::{mailgun, postmark, sendgrid, ses};
        let w = &config.webhooks;
        if let Some(c) = &w.mailgun {
            mailgun::Mailgun::from_config(c)?;
            println!("webhook mailgun: ok");
        }
        if let Some(c) = &w.ses {
            ses::Ses::from_config(c)?;
            println!("webhook ses: ok");
        }
        if let Some(c) = &w.sendgrid {
            sendgrid::Sendgrid::from_config(c)?;
            println!("webhook sendgrid: ok");
        }
        if let Some(c) = &w.postmark {
            postmark::Postmark::from_config(c)?;
            println!("webhook postmark: ok");
        }
    }
    println!("{}: ok", path.display());
    Ok(ExitCode::SUCCESS)
}
