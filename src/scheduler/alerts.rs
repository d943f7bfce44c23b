//! The node's notification service. Every heartbeat interval it scans for
//! events (`crate::notify::scan`), which records new episodes with their
//! outbox rows, then claims the due deliveries of its channels from the
//! outbox (`crate::notify::outbox`), whoever recorded them, and delivers
//! them. Deliveries run on their own tasks, so a slow webhook never delays a
//! scan; on shutdown the service waits for the attempts in flight (up to
//! [`DRAIN_DELIVERIES`]); an attempt still running then is dropped, and its
//! claim expires so that another node makes it again.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use tokio_util::sync::CancellationToken;

use super::node::Shared;
use crate::db::notifications::OutboxScope;
use crate::notify::{self, outbox, Notifier};

/// How long a stopping node waits for notifications it is delivering.
pub(crate) const DRAIN_DELIVERIES: Duration = Duration::from_secs(10);

/// Attempts one node makes at once.
const MAX_IN_FLIGHT: usize = 16;

pub(crate) async fn run(shared: Arc<Shared>, notifier: Arc<Notifier>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.config.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut deliveries = JoinSet::new();
    loop {
        while deliveries.try_join_next().is_some() {}
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        if let Err(error) = scan_once(&shared, &notifier).await {
            tracing::warn!(error = %format!("{error:#}"), "notification scan failed; retrying at the next interval");
        }
        if let Err(error) = deliver_due(&shared, &notifier, &mut deliveries).await {
            tracing::warn!(error = %format!("{error:#}"), "claiming notifications to deliver failed; retrying at the next interval");
        }
    }
    if !deliveries.is_empty() {
        tracing::info!(
            in_flight = deliveries.len(),
            "waiting for notifications being delivered"
        );
        let drained = tokio::time::timeout(DRAIN_DELIVERIES, async {
            while deliveries.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = deliveries.len(),
                "notifications still being delivered at exit were left to another node (their claims expire)"
            );
        }
    }
}

async fn scan_once(shared: &Arc<Shared>, notifier: &Arc<Notifier>) -> anyhow::Result<()> {
    let mut client = shared.pool.get().await?;
    let recorded = notify::scan(&mut **client, notifier).await?;
    for event in &recorded {
        tracing::info!(notification = event.id, event = %event.event, "notification recorded");
    }
    Ok(())
}

async fn deliver_due(
    shared: &Arc<Shared>,
    notifier: &Arc<Notifier>,
    deliveries: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let free = MAX_IN_FLIGHT.saturating_sub(deliveries.len());
    if free == 0 {
        return Ok(());
    }
    let client = shared.pool.get().await?;
    let claimed = outbox::claim(
        &**client,
        notifier,
        OutboxScope::Node,
        i32::try_from(free).unwrap_or(outbox::BATCH),
    )
    .await?;
    drop(client);
    for delivery in claimed {
        let shared = shared.clone();
        let notifier = notifier.clone();
        deliveries.spawn(async move {
            let error = outbox::attempt(&notifier, &delivery).await;
            let reported = match shared.pool.get().await {
                Ok(client) => {
                    outbox::finish(
                        &**client,
                        &notifier,
                        OutboxScope::Node,
                        &delivery,
                        error.as_deref(),
                    )
                    .await
                    .map_err(anyhow::Error::from)
                }
                Err(error) => Err(anyhow::Error::from(error)),
            };
            if let Err(report_error) = reported {
                tracing::warn!(error = %format!("{report_error:#}"), delivery = delivery.id,
                    "could not report a notification attempt; its claim expires and it is tried again");
            }
        });
    }
    Ok(())
}
