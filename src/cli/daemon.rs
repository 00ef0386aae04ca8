//! The background workers of `rebound serve`: the mailbox poller, the IMAP source and the
//! campaign runner.
//! Both stop taking work when the stop flag flips and finish what is in flight.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use rebound::api::AppState;
use rebound::config::Config;
use rebound::pop3::poller::Poller;
use rebound::queue::Queue;
use rebound::smtp::{Mailer, SmtpMailer};
use rebound::store::Store;
use rebound::store::campaigns::CampaignState;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// How often the campaign runner looks for work when nothing wakes it.
const CAMPAIGN_SCAN: Duration = Duration::from_secs(30);

/// Starts the poller (with `[pop3]`), the IMAP source (with `[imap]`) and the campaign
/// runner (with `[smtp]`).
pub(crate) async fn spawn_workers(
    tasks: &mut JoinSet<anyhow::Result<()>>,
    config: &Config,
    store: &Store,
    state: &Arc<AppState>,
    campaign_added: Arc<Notify>,
    stop: &watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if let Some(pop3) = &config.pop3 {
        let poller = Poller::from_config(
            pop3,
            store.clone(),
            state.policies.chain(),
            config.rules.clone(),
        )
        .context("setting up the mailbox poller")?
        .with_live_chain(state.policies.live_chain())
        .with_archive(config.store.keep_raw);
        let poller = match super::unsubscribe_signer(config) {
            Some(signer) => poller.with_unsubscribe(signer),
            None => poller,
        };
        tracing::info!(mailbox = poller.mailbox(), every = ?pop3.poll_interval, "mailbox poller started");
        let stop = stop.clone();
        tasks.spawn(async move {
            poller.run(stopped(stop)).await;
            Ok(())
        });
    }
    if let Some(imap) = &config.imap {
        let source = rebound::imap::ImapSource::from_config(
            imap,
            store.clone(),
            super::stages(config, state.policies.live_chain()),
        )
        .context("setting up the IMAP source")?
        .with_prune(config.store.keep_raw);
        tracing::info!(
            mailbox = source.mailbox(),
            idle = imap.idle,
            "IMAP source started"
        );
        let stop = stop.clone();
        tasks.spawn(async move {
            source.run(stopped(stop)).await;
            Ok(())
        });
    }
    if let Some(smtp) = &config.smtp {
        let rendering = super::send::Rendering::from_config(config, smtp)?;
        let (queue, mailer) = super::send::build_queue(smtp, &config.rules, store)?;
        tracing::info!(relay = %smtp.host, workers = smtp.workers, "campaign runner started");
        let (store, stop) = (store.clone(), stop.clone());
        tasks.spawn(async move {
            let result = run_campaigns(queue, store, rendering, campaign_added, stop).await;
            mailer.shutdown().await;
            result
        });
    }
    Ok(())
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sends every unfinished campaign, oldest first; sleeps until a new one is created.
async fn run_campaigns(
    queue: Queue<SmtpMailer>,
    store: Store,
    rendering: super::send::Rendering,
    added: Arc<Notify>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let stop_flag = queue.stop_flag();
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            stopped(stop).await;
            stop_flag.store(true, Ordering::SeqCst);
        });
    }
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let pending: Vec<i64> = store
            .campaign_counts()
            .await?
            .into_iter()
            // A campaign the complaint-rate guard paused waits for a resume.
            .filter(|c| c.state != CampaignState::Done && c.pause.is_none())
            .map(|c| c.id)
            .collect();
        for id in pending {
            let Some(campaign) = store.campaign(id).await? else {
                continue;
            };
            let renderer = rendering.renderer(campaign)?;
            match queue.run(renderer).await {
                Ok(summary) => tracing::info!(
                    campaign = id,
                    finished = summary.finished,
                    sent = summary.progress.sent,
                    "campaign run ended"
                ),
                // Passed over until resumed (`POST /campaigns/{id}/resume`).
                Err(err @ rebound::queue::Error::Paused { .. }) => {
                    tracing::warn!(campaign = id, "{err}");
                }
                Err(err) => tracing::error!(
                    campaign = id,
                    "campaign run failed (it resumes on the next scan): {err:#}"
                ),
            }
            if *stop.borrow() {
                return Ok(());
            }
        }
        tokio::select! {
            () = added.notified() => {}
            () = tokio::time::sleep(CAMPAIGN_SCAN) => {}
            () = stopped(stop.clone()) => return Ok(()),
        }
    }
}
