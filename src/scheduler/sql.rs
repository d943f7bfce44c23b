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
//! The statements are not sent to the server as they are: the node calls the
//! job role's wrapper, a `SECURITY DEFINER` PL/pgSQL function owned by that
//! role (`crondeck_exec.job_<role oid>(text)`), with the statements as its
//! argument; the function `EXECUTE`s them. PostgreSQL itself then refuses,
//! with the job's statements parsed by its own parser:
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
//! The wrapper is made once per job role, by the first node that runs a job
//! as it, and kept (`ensure_wrapper`): a function made and dropped in every
//! run cost two catalog writes per run, whose invalidations every session of
//! the database had to process. It lives in a schema the job roles have no
//! right on, so its owner cannot name it to replace, alter or grant it
//! (migration 12); what the owner can do without naming it is refused too:
//! given to another role (`REASSIGN OWNED`), its body refuses to run, and the
//! node refuses to call it; dropped (`DROP OWNED`), the next run makes it
//! again.
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_util::sync::CancellationToken;

use super::execute::{log_result, record};
use super::live::{self, JobOutput, Stream, Streams};
use super::node::Shared;
use crate::db::claim::{finish, ClaimedRun, Completion, FinishResult};
use crate::db::runs::{RunOutcome, RunStatus};
use crate::db::PipelinedTransaction;

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
            "the job's statements run as role \"{role}\", with its privileges only; they may \
             not change role or session authorization"
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
    let client = shared
        .job_pool
        .get()
        .await
        .map_err(|e| Failure::Node(format!("no database connection for the job: {e}")))?;
    let (result, reset) = run_in_transaction(
        shared,
        &client,
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
    // reuse it. Otherwise it was reset (`DISCARD ALL`, sent right behind the
    // transaction's end), or it is closed.
    if *interrupted || *timed_out {
        drop(deadpool_postgres::Object::take(client));
    } else {
        match reset {
            Ok(()) => {
                // The server forgot every prepared statement; so must the client.
                client.clear_type_cache();
                client.statement_cache.clear();
            }
            Err(error) => {
                tracing::warn!(run = run.run_id, %error,
                    "could not reset the SQL job's session; closing the connection");
                drop(deadpool_postgres::Object::take(client));
            }
        }
    }
    result
}

/// `DISCARD ALL`: everything the job may have left in the session. It cannot
/// run inside a transaction, so it goes right behind the transaction's end
/// (pipelined: no round trip of its own).
const RESET_SESSION: &str = "DISCARD ALL";

/// The qualified name of the wrapper of the role with this oid.
fn wrapper_name(role_oid: i64) -> String {
    format!("crondeck_exec.job_{role_oid}")
}

/// The wrapper function of the job's role (see the module documentation and
/// migration 12), made if it does not exist yet; the role's oid.
async fn ensure_wrapper(
    shared: &Shared,
    client: &tokio_postgres::Client,
    role: &str,
) -> Result<i64, Failure> {
    if let Some(oid) = shared.wrappers.known(role) {
        return Ok(oid);
    }
    // Made by another node, or by this one before it restarted?
    let look = || async {
        let row = client
            .query_typed_opt(
                &format!(
                    "SELECT r.oid::int8,
                     EXISTS (SELECT 1 FROM pg_proc p
                             WHERE p.pronamespace = 'crondeck_exec'::regnamespace
                               AND p.proname = 'job_' || r.oid AND p.prosecdef
                               AND p.proowner = r.oid),
                     EXISTS (SELECT 1 FROM pg_proc p
                             WHERE p.pronamespace = 'crondeck_exec'::regnamespace
                               AND p.proname = 'job_' || r.oid),
                     {holds_rights}
                 FROM pg_roles r WHERE r.rolname = $1",
                    holds_rights = holds_rights("r.oid")
                ),
                &[(&role, Type::TEXT)],
            )
            .await
            .map_err(Failure::Db)?;
        let Some(row) = row else {
            return Err(Failure::Node(format!(
                "the job's role \"{role}\" does not exist (create it, or change the job's run_as)"
            )));
        };
        let oid: i64 = row.try_get(0).map_err(Failure::Db)?;
        let sound: bool = row.try_get(1).map_err(Failure::Db)?;
        let present: bool = row.try_get(2).map_err(Failure::Db)?;
        let too_strong: bool = row.try_get(3).map_err(Failure::Db)?;
        if too_strong {
            return Err(Failure::Node(too_strong_message(role)));
        }
        Ok((oid, sound, present))
    };
    let (oid, sound, present) = look().await?;
    if sound {
        shared.wrappers.remember(role, oid);
        return Ok(oid);
    }
    let name = wrapper_name(oid);
    if present {
        // Given away (REASSIGN OWNED by the role) or altered by a superuser:
        // never call it, and never quietly replace what someone changed.
        return Err(Failure::Node(format!(
            "the SQL job wrapper {name}(text) is no longer a SECURITY DEFINER function owned by \
             role \"{role}\"; crondeck will not run jobs through it (a superuser can DROP \
             FUNCTION {name}(text); the next run makes it again)"
        )));
    }
    let role_ident = quote_ident(role);
    // Granted, used and revoked in one transaction: no other session sees
    // the job's role with any right on the schema. The body's first check
    // refuses to run as anyone but the role it was made for.
    let make = format!(
        "BEGIN;
         GRANT USAGE, CREATE ON SCHEMA crondeck_exec TO {role_ident};
         SET LOCAL ROLE {role_ident};
         CREATE FUNCTION {name}(statements text) RETURNS bigint
         LANGUAGE plpgsql SECURITY DEFINER AS $crondeck$
         DECLARE
             affected bigint;
         BEGIN
             IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles
                            WHERE oid = {oid} AND rolname = current_user) THEN
                 RAISE EXCEPTION 'crondeck: this SQL job wrapper was made for role oid {oid}, not for %', current_user
                     USING ERRCODE = 'insufficient_privilege';
             END IF;
             EXECUTE statements;
             GET DIAGNOSTICS affected = ROW_COUNT;
             -- Deferred triggers fire now, as the job's role.
             SET CONSTRAINTS ALL IMMEDIATE;
             RETURN affected;
         END;
         $crondeck$;
         REVOKE ALL ON FUNCTION {name}(text) FROM PUBLIC;
         GRANT EXECUTE ON FUNCTION {name}(text) TO SESSION_USER;
         RESET ROLE;
         REVOKE USAGE, CREATE ON SCHEMA crondeck_exec FROM {role_ident};
         COMMIT;"
    );
    let made = client.batch_execute(&make).await;
    if made.is_err() {
        let _ = client.batch_execute("ROLLBACK").await;
    }
    match made {
        Ok(()) => {}
        // Another node made it at the same moment: use theirs if it is sound.
        Err(error) => {
            let (_, sound, _) = look().await?;
            if !sound {
                return Err(Failure::Db(error));
            }
        }
    }
    shared.wrappers.remember(role, oid);
    Ok(oid)
}

/// SQL: whether the role `oid` (an SQL expression) holds a right on the
/// wrappers' schema, other than as a superuser (who can do anything anyway).
/// Such a role (a member of the scheduler role, the schema's owner) could
/// replace its own wrapper, say with a `SECURITY INVOKER` one that runs the
/// next job's statements as the node: jobs do not run as it.
fn holds_rights(oid: &str) -> String {
    format!(
        "(pg_catalog.has_schema_privilege({oid}, 'crondeck_exec', 'USAGE, CREATE')
          AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = {oid}))"
    )
}

fn too_strong_message(role: &str) -> String {
    format!(
        "SQL jobs do not run as role \"{role}\": it holds privileges on schema crondeck_exec \
         (as a member of the scheduler role, or its owner), so it could change the function its \
         jobs run in; choose a role without them"
    )
}

/// Job roles whose wrapper is known to exist, with the role's oid.
#[derive(Default)]
pub(crate) struct Wrappers {
    known: Mutex<HashMap<String, i64>>,
}

impl Wrappers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, i64>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn known(&self, role: &str) -> Option<i64> {
        self.lock().get(role).copied()
    }

    fn remember(&self, role: &str, oid: i64) {
        self.lock().insert(role.to_string(), oid);
    }

    /// Look again next time (the call found no such function, or a role
    /// was renamed).
    fn forget(&self, role: &str) {
        self.lock().remove(role);
    }
}

/// The job's transaction, in three round trips: (1) `BEGIN`, the set-up and
/// the call of the job's statements; (2) the clean-up and the run's record;
/// (3) `COMMIT` (or `ROLLBACK`) with the session's reset behind it. Each
/// round trip's statements are sent together and executed in order; when
/// one fails, the server refuses the rest of the transaction, and the first
/// error is the one reported. Returns the job's result and the reset's.
#[allow(clippy::too_many_arguments)]
async fn run_in_transaction(
    shared: &Shared,
    client: &deadpool_postgres::ClientWrapper,
    run: &ClaimedRun,
    node_id: &str,
    cancel: &CancellationToken,
    output: &Arc<JobOutput>,
    stop_live: &CancellationToken,
    interrupted: &mut bool,
    timed_out: &mut bool,
) -> (Result<(), Failure>, Result<(), tokio_postgres::Error>) {
    let spec = &run.job.spec;
    let cancel_token = client.cancel_token();
    // Known once per connection. Published so that a rescue can terminate
    // the session even if the job changes its own `application_name`;
    // written from another connection (the job's transaction commits only
    // at its end), in batches; best effort: until it lands, the rescue finds
    // the session by name.
    let backend_pid = shared.session_pids.pid(client).await;
    if let Some(pid) = backend_pid {
        shared.pid_publisher.publish(run.run_id, pid);
    }
    let timeout_ms = spec
        .timeout
        .map_or(0, |t| t.as_millis().min(i32::MAX as u128));
    let role_name = spec.run_as.as_deref().unwrap_or(DEFAULT_JOB_ROLE);
    let role = quote_ident(role_name);
    let role_oid = match ensure_wrapper(shared, client, role_name).await {
        Ok(oid) => oid,
        Err(failure) => return (Err(failure), Ok(())),
    };
    // The name lets a rescuer find and terminate this session if the run is
    // taken away from this node (`db::nodes::node_rescue_dead`).
    let application_name = format!(
        "SET LOCAL application_name = 'crondeck run {}';",
        run.run_id
    );
    let setup = format!(
        "BEGIN;
         {application_name}
         SET LOCAL statement_timeout = {timeout_ms};"
    );
    let tx = PipelinedTransaction::new(client);

    let deadline = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t + CANCEL_MARGIN).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut cancelled = false;
    // Not called at all (no row) if the role has meanwhile been given rights
    // on the wrappers' schema (`holds_rights`): checked on every run, since
    // memberships change.
    let call = format!(
        "SELECT {}($1) WHERE NOT {}",
        wrapper_name(role_oid),
        holds_rights(&format!("{role_oid}::oid"))
    );
    // The job's notices go to its output while its statements run, and no
    // longer (see `notices`).
    let notices = backend_pid.and_then(|pid| shared.notices.attach(pid, output));
    if notices.is_none() {
        tracing::debug!(
            run = run.run_id,
            "the SQL job's connection was not found; its notices are not captured"
        );
    }
    let result = {
        // Unnamed statement: nothing of it outlives the call.
        let params = [(&spec.command as &(dyn ToSql + Sync), Type::TEXT)];
        // Polled in order: the set-up goes out first, the call right behind.
        let work = futures_util::future::join(
            client.batch_execute(&setup),
            client.query_typed(&call, &params),
        );
        tokio::pin!(work);
        let (set_up, called) = loop {
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
        };
        // A failed set-up makes the call fail too ("current transaction is
        // aborted"): the set-up's error is the one that says why.
        let result = set_up.and(called);
        if result
            .as_ref()
            .is_err_and(|e| e.code() == Some(&SqlState::UNDEFINED_FUNCTION))
        {
            // Dropped meanwhile (DROP OWNED by the role): made again next run.
            shared.wrappers.forget(role_name);
        }
        result
    };
    drop(notices);
    // No live write after this: the record below is the run's last word.
    stop_live.cancel();
    let row = match result {
        Ok(rows) => match rows.into_iter().next() {
            Some(row) => row,
            None => {
                let failure = Failure::Node(too_strong_message(role_name));
                return (Err(failure), rollback_and_reset(client, tx).await);
            }
        },
        Err(error) => {
            return (
                Err(Failure::Db(error)),
                rollback_and_reset(client, tx).await,
            )
        }
    };
    let rows_affected: Option<i64> = match row.try_get(0) {
        Ok(rows) => rows,
        Err(error) => {
            return (
                Err(Failure::Db(error)),
                rollback_and_reset(client, tx).await,
            )
        }
    };
    // Record as the node's own role, with nothing the job set still in force
    // (see the module documentation), and no timeout left over from the job.
    let sanitise = format!(
        "CLOSE ALL; DEALLOCATE ALL; RESET ALL;
         SET LOCAL search_path = pg_catalog, pg_temp;
         SET LOCAL statement_timeout = 0;
         {application_name}"
    );
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
    let (sanitised, recorded) = futures_util::future::join(
        client.batch_execute(&sanitise),
        finish(&**client, &completion, &shared.actor),
    )
    .await;
    if let Err(error) = sanitised {
        return (
            Err(Failure::Db(error)),
            rollback_and_reset(client, tx).await,
        );
    }
    let result = match recorded {
        Ok(result) => result,
        Err(e) => {
            let failure = Failure::Node(format!("recording the run failed: {e}"));
            return (Err(failure), rollback_and_reset(client, tx).await);
        }
    };
    let reset = match result {
        // Not ours any more: the effect must not commit either.
        FinishResult::Fenced => rollback_and_reset(client, tx).await,
        FinishResult::Recorded { .. } => {
            // Whatever runs at commit (a trigger the job deferred again) runs
            // as the job's role, not the node's.
            let (committed, reset) = futures_util::future::join(
                tx.end_with(&format!("SET LOCAL ROLE {role}; COMMIT")),
                client.batch_execute(RESET_SESSION),
            )
            .await;
            if let Err(error) = committed {
                return (Err(Failure::Db(error)), reset);
            }
            reset
        }
    };
    log_result(shared, run, RunStatus::Succeeded, &result);
    (Ok(()), reset)
}

/// Roll the job's transaction back and reset the session behind it.
async fn rollback_and_reset(
    client: &tokio_postgres::Client,
    tx: PipelinedTransaction<'_>,
) -> Result<(), tokio_postgres::Error> {
    let (rolled_back, reset) =
        futures_util::future::join(tx.rollback(), client.batch_execute(RESET_SESSION)).await;
    rolled_back.and(reset)
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
