//! Group commit of run records (issue 15): the ends of runs that finish
//! together (shell runs, and SQL runs that failed, whose record follows
//! their rollback) are written in one transaction, one savepoint each, with
//! one `COMMIT` (and so one `NOTIFY`, one WAL flush) for all of them.
//!
//! Each record in a batch is what it would be alone (`db::claim::finish`,
//! fenced the same way). A record that fails in the batch is rolled back to
//! its savepoint and handed back to be written alone; so is every record
//! of a batch whose `COMMIT` fails. In the batch a record waits at most
//! `LOCK_WAIT` for a lock (a job row held by someone's open transaction):
//! one stuck job must not hold up the records of every other run.
//!
//! Batches are written one after another on one connection: records that
//! arrive while a batch is being written make up the next one.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::db::audit::Actor;
use crate::db::claim::{finish, ClaimedRun, Completion, FinishResult};
use crate::db::runs::{RunOutcome, RunStatus};
use crate::db::{DbError, PipelinedTransaction};

/// At most this many records per transaction.
const MAX_BATCH: usize = 32;
/// How long a record in a batch may wait for a lock before it is handed
/// back to be written alone.
const LOCK_WAIT: &str = "100ms";

/// What became of a record sent to the recorder.
#[derive(Debug)]
pub(crate) enum Batched {
    /// Committed with its batch.
    Done(FinishResult),
    /// Not written: the caller writes it alone (why, for the log).
    Alone(String),
}

struct Pending {
    run: ClaimedRun,
    node_id: String,
    status: RunStatus,
    outcome: RunOutcome,
    reply: oneshot::Sender<Batched>,
}

#[derive(Clone)]
pub(crate) struct Recorder {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Recorder {
    /// Start the writer; it ends when every `Recorder` is dropped.
    pub(crate) fn start(pool: Pool, actor: Actor, deadline: Duration) -> Recorder {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(pool, actor, deadline, pending));
        Recorder { queue }
    }

    pub(crate) async fn record(&self, completion: &Completion<'_>) -> Batched {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            run: completion.run.clone(),
            node_id: completion.node_id.to_string(),
            status: completion.status,
            outcome: completion.outcome.clone(),
            reply,
        };
        if self.queue.send(pending).is_err() {
            return Batched::Alone("the recorder has stopped".into());
        }
        answer
            .await
            .unwrap_or_else(|_| Batched::Alone("the recorder has stopped".into()))
    }
}

async fn write_batches(
    pool: Pool,
    actor: Actor,
    deadline: Duration,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Waits for one record, then takes whatever else is queued.
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let results = write_batch(&pool, &actor, deadline, &batch).await;
        for (pending, result) in batch.drain(..).zip(results) {
            // The worker may have given up waiting (node shutting down).
            let _ = pending.reply.send(result);
        }
    }
}

/// One result per record, in order.
async fn write_batch(
    pool: &Pool,
    actor: &Actor,
    deadline: Duration,
    batch: &[Pending],
) -> Vec<Batched> {
    let all_alone = |why: String| batch.iter().map(|_| Batched::Alone(why.clone())).collect();
    let object = match pool.get().await {
        Ok(object) => object,
        Err(error) => return all_alone(format!("no connection: {error}")),
    };
    match tokio::time::timeout(deadline, write_in_transaction(&object, actor, batch)).await {
        Ok(Ok(results)) => results,
        Ok(Err(error)) => all_alone(format!("the batch failed: {error}")),
        Err(_) => {
            // Wedged mid-request, maybe mid-COMMIT: never reuse the
            // connection. Written alone, a record that did commit here is
            // fenced (its run is no longer running).
            drop(deadpool_postgres::Object::take(object));
            all_alone(format!("the batch got no answer within {deadline:?}"))
        }
    }
}

async fn write_in_transaction(
    client: &tokio_postgres::Client,
    actor: &Actor,
    batch: &[Pending],
) -> Result<Vec<Batched>, DbError> {
    let tx = PipelinedTransaction::new(client);
    client
        .batch_execute(&format!("BEGIN; SET LOCAL lock_timeout = '{LOCK_WAIT}'"))
        .await?;
    // Each `Done` holds only if the COMMIT below succeeds; if it fails,
    // the caller writes every record alone.
    let mut results = Vec::with_capacity(batch.len());
    for (i, pending) in batch.iter().enumerate() {
        let completion = Completion {
            run: &pending.run,
            node_id: &pending.node_id,
            status: pending.status,
            outcome: pending.outcome.clone(),
        };
        let savepoint = if i == 0 {
            "SAVEPOINT record"
        } else {
            "RELEASE SAVEPOINT record; SAVEPOINT record"
        };
        let (saved, finished) = futures_util::future::join(
            client.batch_execute(savepoint),
            finish(client, &completion, actor),
        )
        .await;
        let written = saved.map_err(DbError::from).and(finished);
        if !matches!(written, Ok(FinishResult::Recorded { .. })) {
            // A failed record leaves nothing behind; nor does a fenced one,
            // which may have updated the run before it found the job freed
            // by someone else: undone here, as its rollback would.
            client.batch_execute("ROLLBACK TO SAVEPOINT record").await?;
        }
        results.push(match written {
            Ok(result) => Batched::Done(result),
            Err(error) => Batched::Alone(error.to_string()),
        });
    }
    tx.commit().await?;
    Ok(results)
}
