//! SQL jobs. The statements run in one transaction as `run_as`, under a
//! `statement_timeout` equal to the job's timeout, and the success record is
//! written in the same transaction before it commits: a crash can leave
//! neither the effect without its record nor the record without its effect.
//! If the run was taken away from this node meanwhile, the record is refused
//! (fenced) and the whole transaction rolls back, effect included; and the
//! rescuing node terminates the session if it is still executing, so the
//! statements of a frozen or cut-off node do not run on alongside the next
//! run (the transaction carries `application_name = 'crondeck run <id>'`).
//!
//! A failure rolls back and records the SQLSTATE and message in a new
//! transaction. Statements must not contain transaction control (`COMMIT`,
//! `ROLLBACK`): they would break the atomicity above.

use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;
use tokio_util::sync::CancellationToken;

use super::execute::{log_result, record};
use super::node::Shared;
use crate::db::claim::{finish, ClaimedRun, Completion, FinishResult};
use crate::db::runs::{RunOutcome, RunStatus};

/// Extra time past `statement_timeout` before the node cancels from outside
/// (the server normally enforces the timeout itself).
const CANCEL_MARGIN: Duration = Duration::from_secs(2);

enum Failure {
    /// A database error from the job's statements (or its commit).
    Db(tokio_postgres::Error),
    /// The node could not run the statements at all.
    Node(String),
}

pub async fn execute(shared: &Shared, run: &ClaimedRun, node_id: &str, cancel: &CancellationToken) {
    let mut interrupted = false;
    let mut timed_out = false;
    let failure = match run_in_transaction(
        shared,
        run,
        node_id,
        cancel,
        &mut interrupted,
        &mut timed_out,
    )
    .await
    {
        Ok(()) => return,
        Err(failure) => failure,
    };
    let mut outcome = RunOutcome::default();
    let status = match failure {
        Failure::Db(error) => {
            let code = error.code().cloned();
            outcome.sqlstate = code.as_ref().map(|c| c.code().to_string());
            outcome.error = Some(describe(&error));
            if interrupted {
                RunStatus::Interrupted
            } else if timed_out || code == Some(SqlState::QUERY_CANCELED) {
                RunStatus::TimedOut
            } else {
                RunStatus::Failed
            }
        }
        Failure::Node(message) => {
            outcome.error = Some(message);
            if interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            }
        }
    };
    record(shared, run, node_id, status, outcome).await;
}

fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = db.message().to_string();
            if let Some(detail) = db.detail() {
                text.push_str("\nDETAIL: ");
                text.push_str(detail);
            }
            if let Some(hint) = db.hint() {
                text.push_str("\nHINT: ");
                text.push_str(hint);
            }
            text
        }
        None => error.to_string(),
    }
}

/// Postgres identifier quoting, for `SET LOCAL ROLE`.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn run_in_transaction(
    shared: &Shared,
    run: &ClaimedRun,
    node_id: &str,
    cancel: &CancellationToken,
    interrupted: &mut bool,
    timed_out: &mut bool,
) -> Result<(), Failure> {
    let spec = &run.job.spec;
    let mut client = shared
        .pool
        .get()
        .await
        .map_err(|e| Failure::Node(format!("no database connection for the job: {e}")))?;
    let cancel_token = client.cancel_token();
    let client: &mut tokio_postgres::Client = &mut client;
    let tx = client.transaction().await.map_err(Failure::Db)?;
    let timeout_ms = spec
        .timeout
        .map_or(0, |t| t.as_millis().min(i32::MAX as u128));
    // The name lets a rescuer find and terminate this session if the run is
    // taken away from this node (`db::nodes::node_rescue_dead`).
    let mut setup = format!(
        "SET LOCAL application_name = 'crondeck run {}'; SET LOCAL statement_timeout = {timeout_ms};",
        run.run_id
    );
    if let Some(role) = &spec.run_as {
        setup.push_str(&format!("SET LOCAL ROLE {};", quote_ident(role)));
    }
    tx.batch_execute(&setup).await.map_err(Failure::Db)?;

    let deadline = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t + CANCEL_MARGIN).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut cancelled = false;
    // The statements' future borrows the transaction; end it in this block.
    let result = {
        let work = tx.simple_query(&spec.command);
        tokio::pin!(work);
        loop {
            tokio::select! {
                result = &mut work => break result,
                () = &mut deadline, if !cancelled => {
                    *timed_out = true;
                    cancelled = true;
                    cancel_query(shared, &cancel_token).await;
                }
                _ = cancel.cancelled(), if !cancelled => {
                    *interrupted = true;
                    cancelled = true;
                    cancel_query(shared, &cancel_token).await;
                }
            }
        }
    };
    let messages = match result {
        Ok(messages) => messages,
        Err(error) => {
            let _ = tx.rollback().await;
            return Err(Failure::Db(error));
        }
    };
    let rows_affected: u64 = messages
        .iter()
        .map(|m| match m {
            SimpleQueryMessage::CommandComplete(n) => *n,
            _ => 0,
        })
        .sum();
    // Record as the node's own role, with no timeout left over from the job.
    tx.batch_execute("RESET ROLE; SET LOCAL statement_timeout = 0;")
        .await
        .map_err(Failure::Db)?;
    let completion = Completion {
        run,
        node_id,
        status: RunStatus::Succeeded,
        outcome: RunOutcome {
            rows_affected: Some(i64::try_from(rows_affected).unwrap_or(i64::MAX)),
            ..RunOutcome::default()
        },
    };
    let result = finish(&tx, &completion, &shared.actor)
        .await
        .map_err(|e| Failure::Node(format!("recording the run failed: {e}")))?;
    match result {
        FinishResult::Fenced => {
            // Not ours any more: the effect must not commit either.
            let _ = tx.rollback().await;
        }
        FinishResult::Recorded { .. } => tx.commit().await.map_err(Failure::Db)?,
    }
    log_result(shared, run, RunStatus::Succeeded, &result);
    Ok(())
}

async fn cancel_query(shared: &Shared, token: &tokio_postgres::CancelToken) {
    match shared.spec.make_tls() {
        Ok(tls) => {
            if let Err(error) = token.cancel_query(tls).await {
                tracing::warn!(%error, "could not cancel the job's statement");
            }
        }
        Err(error) => tracing::warn!(%error, "could not cancel the job's statement"),
    }
}
