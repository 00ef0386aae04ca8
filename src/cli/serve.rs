//! `rebound serve`: one process running the admin HTTP API, the mailbox poller (when
//! `[pop3]` is configured), the IMAP source (when `[imap]` is) and the campaign runner
//! (when `[smtp]` is).
//! SIGTERM or SIGINT: stop taking work, finish the batch in flight, commit, exit 0.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use rebound::api::{self, AppState};
use tokio::sync::{Notify, watch};

/// Arguments of `rebound serve`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Listen address (overrides `[api] listen`).
    #[arg(long)]
    listen: Option<String>,
}

pub(crate) async fn run(config_path: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(config_path)?;
    let listen: SocketAddr = args
        .listen
        .as_deref()
        .unwrap_or(&config.api.listen)
        .parse()
        .context("parsing the listen address")?;
    let token = std::env::var(&config.api.token_env)
        .ok()
        .filter(|t| !t.is_empty());
    if token.is_none() {
        if !listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {listen} without a token: set {}",
                config.api.token_env
            );
        }
        tracing::warn!(
            "{} is not set: the admin API on {listen} accepts requests without a token",
            config.api.token_env
        );
    }

    let (store, endpoints) = super::open_store_with_endpoints(&config).await?;
    let registry = super::open_registry(&config, &store).await?;
    tracing::info!(
        policies = registry.chain().modules().len(),
        "policy chain loaded"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let campaign_added = Arc::new(Notify::new());
    let mut state = AppState::new(
        store.clone(),
        registry,
        token.as_deref(),
        campaign_added.clone(),
    )
    .with_rules(config.rules.clone())
    .with_stop(stop_rx.clone())
    .with_secure_cookies(
        (config.api.public_url.as_deref()).is_some_and(|u| u.starts_with("https://")),
    );
    if let Some(smtp) = &config.smtp {
        let secret = rebound::config::secret_from_env(&smtp.verp_secret_env)
            .context("reading the VERP secret")?;
        state = state.with_unsubscribe(
            rebound::verp::Signer::new(secret.as_bytes()).context("the VERP secret")?,
        );
    }
    let state = Arc::new(state);
    let max_upload = usize::try_from(config.api.max_upload).unwrap_or(usize::MAX);
    // The public URL's host is one the API answers to: the unsubscribe links use it.
    let mut allowed = config.api.allowed_hosts.clone();
    allowed.extend(
        (config.api.public_url.as_deref())
            .and_then(rebound::config::public_url_host)
            .map(str::to_owned),
    );
    let hosts = api::HostPolicy::new(listen.ip(), &allowed).map_err(anyhow::Error::msg)?;
    let mut app = api::router(state.clone(), max_upload, hosts);
    // Provider webhooks: their own authentication, outside the API's token and Host check.
    let hooks = rebound::webhooks::Webhooks::from_config(
        &config.webhooks,
        store.clone(),
        rebound::pipeline::Stages {
            chain: state.policies.live_chain(),
            rules: config.rules.clone(),
            unsubscribe: super::unsubscribe_signer(&config),
            archive: !config.store.keep_raw.is_zero(),
        },
    )
    .context("setting up the webhooks")?;
    if config.webhooks.any() {
        tracing::info!(providers = ?hooks.providers(), "provider webhooks at /webhooks/{{provider}}");
    }
    app = app.merge(rebound::webhooks::router(Arc::new(hooks)));

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    tracing::info!("admin API listening on http://{}", listener.local_addr()?);

    let mut tasks = tokio::task::JoinSet::new();
    {
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
                .context("serving the admin API")
        });
    }
    {
        // Chain changes made through another host's API.
        let (state, mut stop) = (state.clone(), stop_rx.clone());
        tasks.spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            state.policies.follow(stopped).await;
            Ok(())
        });
    }
    {
        let mut stop = stop_rx.clone();
        super::spawn_deliverer(&mut tasks, &store, endpoints, async move {
            let _ = stop.wait_for(|s| *s).await;
        })?;
    }
    super::daemon::spawn_workers(
        &mut tasks,
        &config,
        &store,
        &state,
        campaign_added,
        &stop_rx,
    )
    .await?;

    super::shutdown_signal().await;
    tracing::info!("shutting down: finishing the work in flight");
    let _ = stop_tx.send(true);
    let mut failed = false;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::error!("{err:#}");
                failed = true;
            }
            Err(err) => {
                tracing::error!("task ended abnormally: {err}");
                failed = true;
            }
        }
    }
    store.close().await;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
