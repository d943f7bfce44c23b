//! The node's notification service: every heartbeat interval, scan for
//! events (`crate::notify::scan`) and send the ones this node recorded first.
//! All nodes scan; the database decides which one sends (see `crate::notify`).
//! Deliveries run on their own tasks, so a slow webhook never delays a scan;
//! on shutdown the service waits for the deliveries in flight (up to
//! [`DRAIN_DELIVERIES`]) rather than dropping a notification it recorded.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use tokio_util::sync::CancellationToken;

use super::node::Shared;
use crate::notify::{self, Notifier};

/// How long a stopping node waits for notifications it is delivering.
pub(crate) const DRAIN_DELIVERIES: Duration = Duration::from_secs(10);

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
        if let Err(error) = scan_once(&shared, &notifier, &mut deliveries).await {
            tracing::warn!(error = %format!("{error:#}"), "notification scan failed; retrying at the next interval");
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
                "notifications still being delivered at exit were dropped"
            );
        }
    }
}

async fn scan_once(
    shared: &Arc<Shared>,
    notifier: &Arc<Notifier>,
    deliveries: &mut JoinSet<()>,
) -> anyhow::Result<()> {
    let mut client = shared.pool.get().await?;
    let pending = notify::scan(&mut **client, notifier).await?;
    drop(client);
    for event in pending {
        let shared = shared.clone();
        let notifier = notifier.clone();
        deliveries.spawn(async move {
            let delivered = notify::send(&notifier, &event).await;
            match shared.pool.get().await {
                Ok(client) => notify::record(&**client, &event, &delivered).await,
                Err(error) => tracing::warn!(%error, notification = event.id,
                    "no database connection to send a notification"),
            }
        });
    }
    Ok(())
}
