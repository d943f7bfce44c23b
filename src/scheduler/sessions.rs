//! The SQL job pool's sessions: which backend each connection is, read once
//! per connection instead of once per run, and the runs' backend pids
//! published in batches instead of one transaction per run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use deadpool_postgres::{ClientWrapper, Pool, StatementCache};
use tokio::sync::mpsc;
use tokio_postgres::types::Type;

/// Backend pids of the job pool's connections. A connection is known by its
/// statement cache, which lives exactly as long as it; the entry holds a
/// weak reference, so the address cannot be reused by another connection
/// while the entry exists, and a closed connection's entry is recognised
/// as stale.
#[derive(Default)]
pub(crate) struct SessionPids {
    known: Mutex<HashMap<usize, (Weak<StatementCache>, i32)>>,
}

impl SessionPids {
    /// The connection's backend pid, asked of the server on its first run.
    pub(crate) async fn pid(&self, client: &ClientWrapper) -> Option<i32> {
        let key = Arc::as_ptr(&client.statement_cache) as usize;
        {
            let known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((cache, pid)) = known.get(&key) {
                if cache
                    .upgrade()
                    .is_some_and(|c| Arc::ptr_eq(&c, &client.statement_cache))
                {
                    return Some(*pid);
                }
            }
        }
        let pid: i32 = match client.query_typed_one("SELECT pg_backend_pid()", &[]).await {
            Ok(row) => row.try_get(0).ok()?,
            Err(error) => {
                tracing::debug!(%error, "could not read the job session's pid");
                return None;
            }
        };
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.retain(|_, (cache, _)| cache.strong_count() > 0);
        known.insert(key, (Arc::downgrade(&client.statement_cache), pid));
        Some(pid)
    }
}

/// Writes `runs.backend_pid` for the runs that started since its last
/// write, in one statement (a herd of runs costs one transaction, not one
/// each). Best effort, as before: until it lands, a rescue finds the
/// session by its `application_name`.
#[derive(Clone)]
pub(crate) struct PidPublisher {
    queue: mpsc::UnboundedSender<(i64, i32)>,
}

impl PidPublisher {
    /// Start the writer on `pool`; it ends when every publisher is dropped.
    pub(crate) fn start(pool: Pool) -> PidPublisher {
        let (queue, mut pending) = mpsc::unbounded_channel::<(i64, i32)>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            // Waits for one run, then takes whatever else is queued.
            while pending.recv_many(&mut batch, usize::MAX).await > 0 {
                write(&pool, &batch).await;
                batch.clear();
            }
        });
        PidPublisher { queue }
    }

    pub(crate) fn publish(&self, run_id: i64, pid: i32) {
        // The writer only stops with the node.
        let _ = self.queue.send((run_id, pid));
    }
}

async fn write(pool: &Pool, batch: &[(i64, i32)]) {
    let client = match pool.get().await {
        Ok(client) => client,
        Err(error) => {
            tracing::debug!(%error, runs = batch.len(), "could not publish the job sessions' pids");
            return;
        }
    };
    let runs: Vec<i64> = batch.iter().map(|(run, _)| *run).collect();
    let pids: Vec<i32> = batch.iter().map(|(_, pid)| *pid).collect();
    if let Err(error) = client
        .execute_typed(
            "UPDATE crondeck.runs r SET backend_pid = t.pid
             FROM unnest($1::int8[], $2::int4[]) AS t(run_id, pid)
             WHERE r.id = t.run_id AND r.status = 'running'",
            &[(&runs, Type::INT8_ARRAY), (&pids, Type::INT4_ARRAY)],
        )
        .await
    {
        tracing::debug!(%error, runs = batch.len(), "could not publish the job sessions' pids");
    }
}
