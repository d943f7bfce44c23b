//! Heartbeats and rescue. Every interval the node renews its lease and
//! rescues the runs of nodes whose lease ran out (by database time).
//!
//! A node that learns it was declared dead — its heartbeat finds its row
//! stopped — has had its runs abandoned and possibly restarted elsewhere: it
//! stops its running work at once (`lease_lost`) and registers anew. A node
//! that cannot reach the database for longer than its lease does the same
//! from its own monotonic clock, since others will have rescued its runs.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::node::Shared;
use crate::db::nodes::{node_heartbeat, node_register, node_rescue_dead};

/// Renew, rescue, repeat, until `stop`.
pub async fn run(shared: Arc<Shared>, wake: mpsc::Sender<()>, stop: CancellationToken) {
    let heartbeat = shared.config.heartbeat;
    let lease = shared.config.lease;
    let mut last_ok = Instant::now();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        match beat(&shared, &wake).await {
            Ok(true) => {
                last_ok = Instant::now();
                lease_ok(&shared);
            }
            Ok(false) => {
                tracing::error!(
                    node = %shared.node_id(),
                    "this node was declared dead by another node (lease expired); stopping its runs and registering again"
                );
                lease_lost(&shared);
                if let Err(error) = reregister(&shared).await {
                    tracing::warn!(%error, "could not register again; retrying at the next heartbeat");
                } else {
                    last_ok = Instant::now();
                    lease_ok(&shared);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "heartbeat failed");
                // Others rescue our runs once the lease has run out by their
                // clock; stop them here no later than that.
                if last_ok.elapsed() + heartbeat >= lease && *shared.lease_ok.borrow() {
                    tracing::error!("no heartbeat for about the lease; stopping this node's runs");
                    shared.lease_ok.send_replace(false);
                    lease_lost(&shared);
                }
            }
        }
    }
}

async fn beat(shared: &Shared, wake: &mpsc::Sender<()>) -> anyhow::Result<bool> {
    // Before the database stamps the heartbeat: the lease holds at least a
    // lease past this instant (what the shell jobs' watchdogs rely on).
    let started = Instant::now();
    let client = shared.pool.get().await?;
    let busy = i32::try_from(shared.busy()).unwrap_or(i32::MAX);
    let alive = node_heartbeat(&**client, &shared.node_id(), busy).await?;
    if alive {
        shared.lease_renewed.send_replace(started);
        let rescued = node_rescue_dead(&**client).await?;
        if !rescued.is_empty() {
            tracing::warn!(
                runs = rescued.len(),
                "rescued runs of dead nodes (marked abandoned)"
            );
            let _ = wake.try_send(());
        }
    }
    Ok(alive)
}

/// Mark the lease held, waking the claim loop only if it was lost: the loop
/// listens for changes, and waking it on every beat made each heartbeat a
/// claim too, so an idle database saw more than heartbeats.
fn lease_ok(shared: &Shared) {
    shared
        .lease_ok
        .send_if_modified(|held| !std::mem::replace(held, true));
}

fn lease_lost(shared: &Shared) {
    // Cancel every running execution; their finish writes will be fenced.
    let old = shared.replace_lease_token();
    old.cancel();
}

async fn reregister(shared: &Shared) -> anyhow::Result<()> {
    let started = Instant::now();
    let client = shared.pool.get().await?;
    let id = node_register(&**client, &shared.node_info()).await?;
    shared.lease_renewed.send_replace(started);
    tracing::info!(node = %id, "registered again");
    shared.set_node_id(id);
    Ok(())
}
