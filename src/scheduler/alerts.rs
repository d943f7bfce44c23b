//! The node's notification service: every heartbeat interval, scan for
//! events (`crate::notify::scan`) and send the ones this node recorded first.
//! All nodes scan; the database decides which one sends (see `crate::notify`).
//! Deliveries run on their own tasks, so a slow webhook never delays a scan.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::node::Shared;
use crate::notify::{self, Notifier};

pub async fn run(shared: Arc<Shared>, notifier: Arc<Notifier>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(shared.config.heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(error) = scan_once(&shared, &notifier).await {
            tracing::warn!(error = %format!("{error:#}"), "notification scan failed; retrying at the next interval");
        }
    }
}

async fn scan_once(shared: &Arc<Shared>, notifier: &Arc<Notifier>) -> anyhow::Result<()> {
    let mut client = shared.pool.get().await?;
    let pending = notify::scan(&mut **client, notifier).await?;
    drop(client);
    for event in pending {
        let shared = shared.clone();
        let notifier = notifier.clone();
        tokio::spawn(async move {
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
