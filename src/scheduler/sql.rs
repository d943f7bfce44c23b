//! SQL jobs. The statements run in one transaction as the job's role
//! (`run_as`, or `crondeck_job` when the job names none), under a
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
//! transaction, on the node's bookkeeping pool.
//!
//! # The job's role is a boundary
//!
//! The statements are not sent to the server as they are: inside the job's
//! transaction the node becomes the job's role, creates a temporary
//! `SECURITY DEFINER` PL/pgSQL function owned by that role, becomes itself
//! again and calls the function with the statements as its argument; the
//! function `EXECUTE`s them. PostgreSQL itself then refuses, with the job's
//! statements parsed by its own parser:
//!
//! - any change of role or session authorization (`SET ROLE`, `RESET ROLE`,
//!   `SET SESSION AUTHORIZATION`, `set_config('role', ...)`): "cannot set
//!   parameter role within security-definer function" (42501);
//! - transaction control (`COMMIT`, `ROLLBACK`, `SAVEPOINT`, `BEGIN`,
//!   `PREPARE TRANSACTION`): "EXECUTE of transaction commands is not
//!   implemented" (0A000), and inside `DO` blocks or procedures "invalid
//!   transaction termination" (2D000);
//!
//! and the statements have exactly the privileges of the job's role. The
//! timeout is armed on the node's call, so `SET statement_timeout = 0` in the
//! job does not lift it.
//!
//! After the function returns, before the node's own statements run in that
//! transaction, the node closes the job's cursors (a `WITH HOLD` cursor would
//! otherwise be computed at commit, with the node's privileges), drops its
//! prepared statements, resets every setting it changed and pins
//! `search_path` to `pg_catalog, pg_temp` (so a temporary type or a schema of
//! the job cannot stand in for what the node's statements name). The
//! function fires the job's deferred triggers before it returns, and the node
//! becomes the job's role again before `COMMIT`, so anything the job left to
//! run at commit runs as the job.
//!
//! # Execution log and progress
//!
//! Notices the statements raise (`RAISE NOTICE`, `INFO`, `WARNING`, as far
//! as the job's `client_min_messages` lets them through) are captured while
//! they run (`notices`) as the run's output, `SEVERITY: message` per line,
//! bounded like a shell job's stdout, written to the running run at most
//! once a second (`live`) and recorded with the run's end, failure
//! included. A notice `crondeck:progress 4000/10000` (any progress line
//! after `crondeck:`) is the job's progress instead, not part of its log.
//!
//! # Sessions
//!
//! SQL jobs run on connections of their own (`Shared::job_pool`), never on
//! the bookkeeping pool that claims, heartbeats and records. After every job,
//! whatever its end, the session is reset with `DISCARD ALL` (settings,
//! temporary objects, prepared statements, cursors, `LISTEN`s, advisory
//! locks); a connection that could not be reset, or whose statement was
//! cancelled, is closed instead of returned to the pool.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_util::sync::CancellationToken;

use super::execute::{log_result, record};
use super::live::{self, JobOutput, Stream, Streams};
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

pub async fn execute(
    shared: &Shared,
    run: &ClaimedRun,
    node_id: &str,
    cancel: &CancellationToken,
    lease_lost: &CancellationToken,
) {
    let mut interrupted = false;
    let mut timed_out = false;
    let output = Arc::new(JobOutput::new(shared.config.output_limit));
    let stop_live = CancellationToken::new();
    let (result, ()) = tokio::join!(
        async {
            let result = run_on_job_connection(
                shared,
                run,
                node_id,
                cancel,
                &output,
                &stop_live,
                &mut interrupted,
                &mut timed_out,
            )
            .await;
            stop_live.cancel();
            result
        },
        live::write_while_running(
            shared,
            run.run_id,
            node_id,
            &output,
            Streams::StdoutOnly,
            &stop_live,
            lease_lost,
        ),
    );
    let failure = match result {
        Ok(()) => return,
        Err(failure) => failure,
    };
    let (stdout, stdout_dropped) = notice_log(&output);
    let mut outcome = RunOutcome {
        stdout,
        stdout_dropped,
        progress: output.progress(),
        ..RunOutcome::default()
    };
    let status = match failure {
        Failure::Db(error) => {
            let code = error.code().cloned();
            outcome.sqlstate = code.as_ref().map(|c| c.code().to_string());
            let mut text = describe(&error);
            if let Some(note) = code.as_ref().and_then(|c| note(c, run)) {
                text.push_str("\nNOTE: ");
                text.push_str(&note);
            }
            outcome.error = Some(text);
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

/// The run's notices as its recorded output: `None` if it raised none.
fn notice_log(output: &JobOutput) -> (Option<String>, i64) {
    let log = output.snapshot(Stream::Stdout);
    let dropped = i64::try_from(log.dropped_bytes).unwrap_or(i64::MAX);
    ((log.total_bytes > 0).then_some(log.text), dropped)
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

/// What a job author needs to know about some refusals, by SQLSTATE.
fn note(code: &SqlState, run: &ClaimedRun) -> Option<String> {
    let role = run.job.spec.run_as.as_deref().unwrap_or(DEFAULT_JOB_ROLE);
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        Some(format!(
            "the job's statements run as role \"{role}\", with its privileges only (and it needs \
             TEMPORARY on the database); they may not change role or session authorization"
        ))
    } else if *code == SqlState::FEATURE_NOT_SUPPORTED
        || *code == SqlState::INVALID_TRANSACTION_TERMINATION
    {
        Some(
            "an SQL job runs in one transaction that crondeck commits with the run's record; \
             its statements may not contain transaction control (COMMIT, ROLLBACK, SAVEPOINT, \
             PREPARE TRANSACTION), also not in DO blocks or procedures"
                .into(),
        )
    } else {
        None
    }
}

/// Postgres identifier quoting, for `SET LOCAL ROLE`.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The role a job without `run_as` runs as (created by migration 5): a member
/// of nothing, so such a job can do only what was granted to it or to PUBLIC.
pub const DEFAULT_JOB_ROLE: &str = "crondeck_job";

/// Run the job on a connection of the job pool, then reset that connection
/// (or discard it).
#[allow(clippy::too_many_arguments)]
async fn run_on_job_connection(
    shared: &Shared,
    run: &ClaimedRun,
    node_id: &str,
    cancel: &CancellationToken,
    output: &Arc<JobOutput>,
    stop_live: &CancellationToken,
    interrupted: &mut bool,
    timed_out: &mut bool,
) -> Result<(), Failure> {
    let mut client = shared
        .job_pool
        .get()
        .await
        .map_err(|e| Failure::Node(format!("no database connection for the job: {e}")))?;
    let result = run_in_transaction(
        shared,
        &mut client,
        run,
        node_id,
        cancel,
        output,
        stop_live,
        interrupted,
        timed_out,
    )
    .await;
    // A cancel request may still be in flight towards this session: never
    // reuse it. Otherwise reset everything the job may have left behind.
    if *interrupted || *timed_out {
        drop(deadpool_postgres::Object::take(client));
    } else {
        reset_session(client, run.run_id).await;
    }
    result
}

/// `DISCARD ALL` after the job's transaction ended; a session that cannot be
/// reset is closed rather than returned to the pool.
async fn reset_session(client: deadpool_postgres::Object, run_id: i64) {
    match client.batch_execute("DISCARD ALL").await {
        Ok(()) => {
            // The server forgot every prepared statement; so must the client.
            client.clear_type_cache();
            client.statement_cache.clear();
        }
        Err(error) => {
            tracing::warn!(run = run_id, %error,
                "could not reset the SQL job's session; closing the connection");
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// The job's temporary wrapper function (see the module documentation).
fn wrapper_name(run_id: i64) -> String {
    format!("pg_temp.crondeck_job_{run_id}")
}

#[allow(clippy::too_many_arguments)]
async fn run_in_transaction(
    shared: &Shared,
    client: &mut tokio_postgres::Client,
    run: &ClaimedRun,
    node_id: &str,
    cancel: &CancellationToken,
    output: &Arc<JobOutput>,
    stop_live: &CancellationToken,
    interrupted: &mut bool,
    timed_out: &mut bool,
) -> Result<(), Failure> {
    let spec = &run.job.spec;
    let cancel_token = client.cancel_token();
    let backend_pid = publish_backend_pid(shared, client, run.run_id).await;
    let tx = client.transaction().await.map_err(Failure::Db)?;
    let timeout_ms = spec
        .timeout
        .map_or(0, |t| t.as_millis().min(i32::MAX as u128));
    let role = quote_ident(spec.run_as.as_deref().unwrap_or(DEFAULT_JOB_ROLE));
    let wrapper = wrapper_name(run.run_id);
    // The name lets a rescuer find and terminate this session if the run is
    // taken away from this node (`db::nodes::node_rescue_dead`).
    let application_name = format!(
        "SET LOCAL application_name = 'crondeck run {}';",
        run.run_id
    );
    // Created as the job's role, so it is owned by it and, being SECURITY
    // DEFINER, runs the statements as that role and no other.
    let setup = format!(
        "{application_name}
         SET LOCAL statement_timeout = {timeout_ms};
         SET LOCAL ROLE {role};
         CREATE FUNCTION {wrapper}(statements text) RETURNS bigint
         LANGUAGE plpgsql SECURITY DEFINER AS $crondeck$
         DECLARE
             affected bigint;
         BEGIN
             EXECUTE statements;
             GET DIAGNOSTICS affected = ROW_COUNT;
             -- Deferred triggers fire now, as the job's role.
             SET CONSTRAINTS ALL IMMEDIATE;
             RETURN affected;
         END;
         $crondeck$;
         RESET ROLE;"
    );
    if let Err(error) = tx.batch_execute(&setup).await {
        let _ = tx.rollback().await;
        return Err(Failure::Db(error));
    }

    let deadline = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t + CANCEL_MARGIN).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut cancelled = false;
    let call = format!("SELECT {wrapper}($1)");
    // The job's notices go to its output while its statements run, and no
    // longer (see `notices`).
    let notices = backend_pid.and_then(|pid| shared.notices.attach(pid, output));
    if notices.is_none() {
        tracing::debug!(
            run = run.run_id,
            "the SQL job's connection was not found; its notices are not captured"
        );
    }
    // The statements' future borrows the transaction; end it in this block.
    let result = {
        // Unnamed statement: nothing of it outlives the call.
        let params = [(&spec.command as &(dyn ToSql + Sync), Type::TEXT)];
        let work = tx.query_typed_one(&call, &params);
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
    drop(notices);
    // No live write after this: the record below is the run's last word.
    stop_live.cancel();
    let row = match result {
        Ok(row) => row,
        Err(error) => {
            let _ = tx.rollback().await;
            return Err(Failure::Db(error));
        }
    };
    let rows_affected: Option<i64> = row.try_get(0).map_err(Failure::Db)?;
    // Record as the node's own role, with nothing the job set still in force
    // (see the module documentation), and no timeout left over from the job.
    let sanitise = format!(
        "CLOSE ALL; DEALLOCATE ALL; RESET ALL;
         SET LOCAL search_path = pg_catalog, pg_temp;
         SET LOCAL statement_timeout = 0;
         {application_name}"
    );
    tx.batch_execute(&sanitise).await.map_err(Failure::Db)?;
    let completion = Completion {
        run,
        node_id,
        status: RunStatus::Succeeded,
        outcome: {
            let (stdout, stdout_dropped) = notice_log(output);
            RunOutcome {
                rows_affected: Some(rows_affected.unwrap_or(0)),
                stdout,
                stdout_dropped,
                progress: output.progress(),
                ..RunOutcome::default()
            }
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
        FinishResult::Recorded { .. } => {
            // Whatever runs at commit (a trigger the job deferred again) runs
            // as the job's role, not the node's.
            tx.batch_execute(&format!(
                "SET LOCAL ROLE {role}; DROP FUNCTION IF EXISTS {wrapper}(text);"
            ))
            .await
            .map_err(Failure::Db)?;
            tx.commit().await.map_err(Failure::Db)?;
        }
    }
    log_result(shared, run, RunStatus::Succeeded, &result);
    Ok(())
}

/// Record which database session executes the run, so that a rescue can
/// terminate it even if the job changes its own `application_name`. Written
/// from another connection (the job's transaction commits only at its end);
/// best effort: until it lands, the rescue finds the session by name.
/// Returns the pid, if it could be read.
async fn publish_backend_pid(
    shared: &Shared,
    client: &tokio_postgres::Client,
    run_id: i64,
) -> Option<i32> {
    let pid: i32 = match client.query_typed_one("SELECT pg_backend_pid()", &[]).await {
        Ok(row) => row.try_get(0).ok()?,
        Err(error) => {
            tracing::debug!(%error, "could not read the job session's pid");
            return None;
        }
    };
    let pool = shared.pool.clone();
    tokio::spawn(async move {
        let Ok(client) = pool.get().await else { return };
        if let Err(error) = client
            .execute(
                "UPDATE crondeck.runs SET backend_pid = $2 WHERE id = $1 AND status = 'running'",
                &[&run_id, &pid],
            )
            .await
        {
            tracing::debug!(%error, run = run_id, "could not publish the job session's pid");
        }
    });
    Some(pid)
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
