//! Subcommands. Each file owns its clap arguments and its `run`.

pub(crate) mod classify;
pub(crate) mod daemon;
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
    let store = rebound::store::Store::open(&config.store.url)
        .await
        .context("opening the store")?;
    store
        .check_queries()
        .await
        .context("preparing the store's statements")?;
    store.close().await;
    println!("store {}: ok", config.store.url);
    let mut secrets = Vec::new();
    if let Some(pop3) = &config.pop3 {
        secrets.push(pop3.password_env.clone());
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
