//! History retention. A node that has recorded runs since its last pass
//! prunes, at most every `Retention::interval`, in batches of
//! `Retention::batch` rows; a transaction-level advisory lock lets only one
//! node prune at a time. An idle cluster does not prune (nothing to prune),
//! so the database sees heartbeats only.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::node::Shared;
use crate::db::runs::run_prune;

const PRUNE_LOCK_KEY: i64 = 0x6372_6f6e_7072_756e; // "cronprun"

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let retention = shared.config.retention.clone();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(retention.interval) => {}
        }
        if shared.finished_since_prune.swap(0, Ordering::Relaxed) == 0 {
            continue;
        }
        match prune_once(&shared).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned old runs"),
            Err(error) => tracing::warn!(%error, "pruning failed; will try again later"),
        }
    }
}

/// Delete batches until nothing is left to prune, or another node holds the lock.
pub(crate) async fn prune_once(shared: &Shared) -> anyhow::Result<u64> {
    let retention = &shared.config.retention;
    let mut total = 0;
    loop {
        let mut client = shared.pool.get().await?;
        let client: &mut tokio_postgres::Client = &mut client;
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&PRUNE_LOCK_KEY])
            .await?
            .try_get(0)?;
        if !locked {
            return Ok(total);
        }
        let deleted = run_prune(
            &tx,
            retention.keep_runs,
            retention.keep_days,
            retention.batch,
        )
        .await?;
        tx.execute(
            "DELETE FROM crondeck.run_requests WHERE state <> 'pending'
               AND requested_at < now() - make_interval(days => $1::int)",
            &[&retention.keep_days],
        )
        .await?;
        tx.commit().await?;
        total += deleted;
        if deleted < u64::try_from(retention.batch).unwrap_or(u64::MAX) {
            return Ok(total);
        }
    }
}
