//! The heartbeat service: the only owner of the node's lease
//! (`lease::Lease`). Every interval it renews the lease, reconciles the runs
//! the database believes this node executes with the ones it does
//! (`lease::Ledger`), and rescues the runs of nodes whose lease ran out (by
//! database time).
//!
//! A node that learns its registration is dead — its renewal is refused
//! because a rescue stopped it or its lease already ran out in database time
//! — has had (or will have) its runs abandoned and possibly restarted
//! elsewhere: it stops its running work at once and registers anew. A node
//! that cannot reach the database does the same from its own monotonic
//! clock, a heartbeat before others could rescue its runs.
//!
//! The heartbeat has a connection of its own, not one from the pool: a pool
//! busy with slow jobs or holding a connection wedged by a dead link must not
//! delay the lease. Every beat has a deadline of one heartbeat interval; a
//! beat that fails or times out drops the connection and the next beat opens
//! a fresh one, so a black-holed link (packets dropped, no reset) fails beats
//! instead of hanging them, and the node notices within its lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::node::Shared;
use crate::db::nodes::{node_heartbeat, node_register, node_rescue_dead};

/// What one beat found.
#[derive(Debug)]
pub(crate) enum Beat {
    Renewed,
    /// The registration was dead; a new one is in force.
    Reregistered,
}

/// Renew, reconcile, rescue, repeat, until `stop`. Also beats at once when
/// the claim loop asks (`Shared::nudge_heartbeat`): after an ambiguous claim,
/// or a claim refused because the registration is dead.
pub(crate) async fn run(shared: Arc<Shared>, wake: mpsc::Sender<()>, stop: CancellationToken) {
    let heartbeat = shared.config.heartbeat;
    let lease = shared.config.lease;
    let mut last_ok = Instant::now();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<tokio_postgres::Client> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
            () = shared.heartbeat_nudge.notified() => {}
        }
        let beat = tokio::time::timeout(heartbeat, async {
            let client = match connection.take() {
                Some(client) if !client.is_closed() => client,
                _ => shared.spec.connect().await?,
            };
            let beat = run_once(&shared, &client, &wake).await?;
            anyhow::Ok((client, beat))
        })
        .await;
        match beat {
            Ok(Ok((client, _))) => {
                connection = Some(client);
                last_ok = Instant::now();
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %format!("{error:#}"), "heartbeat failed");
                lose_if_overdue(&shared, last_ok, heartbeat, lease);
            }
            Err(_) => {
                tracing::warn!(deadline = ?heartbeat, "heartbeat timed out (the database or the link to it is not answering)");
                lose_if_overdue(&shared, last_ok, heartbeat, lease);
            }
        }
    }
}

/// Others rescue our runs once the lease has run out by their clock; stop
/// them here no later than a heartbeat before that.
fn lose_if_overdue(shared: &Shared, last_ok: Instant, heartbeat: Duration, lease: Duration) {
    if last_ok.elapsed() + heartbeat >= lease && shared.lease.is_ok() {
        tracing::error!("no heartbeat for about the lease; stopping this node's runs");
        shared.lease.lost();
    }
}

/// One beat: renew (fenced) and reconcile in one statement, then rescue.
pub(crate) async fn run_once(
    shared: &Shared,
    client: &tokio_postgres::Client,
    wake: &mpsc::Sender<()>,
) -> anyhow::Result<Beat> {
    // Before the database stamps the heartbeat: the lease holds at least a
    // lease past this instant (what the shell jobs' watchdogs rely on).
    let started = Instant::now();
    let busy = i32::try_from(shared.busy()).unwrap_or(i32::MAX);
    let node_id = shared.lease.node_id();
    // Reconcile only with a snapshot no claim can race (see `Ledger`); a
    // claim in flight for long is waited for a quarter of a heartbeat, then
    // this beat renews without reconciling and the next one tries again.
    let gate = tokio::time::timeout(shared.config.heartbeat / 4, shared.ledger.gate.lock())
        .await
        .ok();
    let executing = gate.as_ref().map(|_| shared.ledger.snapshot());
    let beat = node_heartbeat(client, &node_id, busy, executing.as_deref()).await?;
    drop(gate);
    if !beat.alive {
        tracing::error!(
            node = %node_id,
            "this node's registration is dead (its lease ran out, or another node declared it \
             dead); stopping its runs and registering again"
        );
        shared.lease.lost();
        let started = Instant::now();
        let id = node_register(client, &shared.node_info()).await?;
        tracing::info!(node = %id, "registered again");
        shared.lease.registered(id, started);
        shared.lease.renewed(started);
        let _ = wake.try_send(());
        return Ok(Beat::Reregistered);
    }
    shared.lease.renewed(started);
    for (run_id, by) in &beat.cancel {
        if shared.ledger.cancel(*run_id, by) {
            tracing::info!(run = run_id, by = %by, "stopping a run: an operator cancelled it");
        }
    }
    if !beat.reconciled.is_empty() {
        tracing::warn!(
            runs = ?beat.reconciled,
            "runs the database had running on this node, which was not executing them (a lost \
             answer to a claim or finish), were marked abandoned"
        );
        let _ = wake.try_send(());
    }
    let rescued = node_rescue_dead(client).await?;
    if !rescued.is_empty() {
        tracing::warn!(
            runs = rescued.len(),
            "rescued runs of dead nodes (marked abandoned)"
        );
        let _ = wake.try_send(());
    }
    Ok(Beat::Renewed)
}
