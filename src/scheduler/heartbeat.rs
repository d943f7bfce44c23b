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
//! delay the lease. Every beat has a deadline (half the lease); a beat that
//! fails or times out drops the connection and the next beat opens a fresh
//! one, so a black-holed link (packets dropped, no reset) fails beats instead
//! of hanging them. Independently of any beat, the node stops its runs a
//! heartbeat before its lease could run out by the clock, so it notices a
//! dead link within its lease even while a beat hangs.

use std::sync::Arc;
use std::time::Instant;

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
    // A beat may take up to half the lease before it is given up (a loaded
    // machine or a busy server is slow, not dead); whether the lease is
    // still ours is judged meanwhile from the clock, not from the beat.
    let beat_deadline = lease / 2;
    // When the last beat that renewed the lease *started*: the database
    // stamped it no earlier, so the lease holds until at least this + lease.
    let mut renewed_at = Instant::now();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut connection: Option<tokio_postgres::Client> = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticker.tick() => {}
            () = shared.heartbeat_nudge.notified() => {}
        }
        let started = Instant::now();
        let previous = connection.take();
        let beat = tokio::time::timeout(beat_deadline, async {
            let client = match previous {
                Some(client) if !client.is_closed() => client,
                _ => {
                    let client = shared.spec.connect().await?;
                    // Never wait long on a row lock: a stalled node's open
                    // transaction must not hold this node's lease hostage.
                    let wait = (heartbeat / 2).as_millis().max(50);
                    client
                        .batch_execute(&format!("SET lock_timeout = {wait}"))
                        .await?;
                    client
                }
            };
            let beat = run_once(&shared, &client, &wake).await?;
            anyhow::Ok((client, beat))
        });
        tokio::pin!(beat);
        // Others rescue our runs once the lease has run out by their clock:
        // stop them here a heartbeat before that, even while a beat hangs.
        let overdue = tokio::time::sleep_until((renewed_at + lease - heartbeat).into());
        tokio::pin!(overdue);
        let result = loop {
            tokio::select! {
                result = &mut beat => break result,
                () = &mut overdue, if shared.lease.is_ok() => {
                    tracing::error!("no heartbeat for about the lease; stopping this node's runs");
                    shared.lease.lost();
                }
            }
        };
        match result {
            Ok(Ok((client, _))) => {
                connection = Some(client);
                renewed_at = started;
            }
            Ok(Err(error)) => {
                tracing::warn!(error = %format!("{error:#}"), "heartbeat failed");
            }
            Err(_) => {
                tracing::warn!(deadline = ?beat_deadline, "heartbeat timed out (the database or the link to it is not answering)");
            }
        }
        if renewed_at.elapsed() + heartbeat >= lease && shared.lease.is_ok() {
            tracing::error!("no heartbeat for about the lease; stopping this node's runs");
            shared.lease.lost();
        }
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
    // The lease is renewed (committed) whatever happens next: a rescue that
    // fails, or waits on rows a stalled node still locks, is tried again at
    // the next beat (the connection's lock_timeout bounds the wait; the
    // server ends the stalled node's idle transaction).
    match node_rescue_dead(client).await {
        Ok(rescued) if !rescued.is_empty() => {
            tracing::warn!(
                runs = rescued.len(),
                "rescued runs of dead nodes (marked abandoned)"
            );
            let _ = wake.try_send(());
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "rescue failed; trying again at the next heartbeat"),
    }
    Ok(Beat::Renewed)
}
