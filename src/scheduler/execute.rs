//! Running a claimed run and recording its end. SQL jobs record inside their
//! own transaction (`sql`); everything else is recorded here: together with
//! the records of runs that end at the same time (`recorder`), else in a
//! short transaction of its own, retried while the lease could still be ours.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::live::{self, JobOutput, Streams};
use super::node::Shared;
use super::recorder::Batched;
use super::shell::{run_shell, LeaseWatch, ShellCommand, ShellOutcome, ShellResult};
use super::sql;
use crate::db::claim::{finish, ClaimedRun, Completion, FinishResult};
use crate::db::runs::{Progress, RunOutcome, RunStatus};
use crate::job::ActionKind;

/// Execute `run` and record the result. Never panics, never returns early
/// without recording (unless the run was taken away from this node).
pub(crate) async fn execute(
    shared: &Shared,
    run: &ClaimedRun,
    node_id: &str,
    cancel: &CancellationToken,
    lease_lost: &CancellationToken,
) {
    match run.job.spec.action {
        ActionKind::Sql => sql::execute(shared, run, node_id, cancel, lease_lost).await,
        ActionKind::Shell => {
            let output = Arc::new(JobOutput::new(shared.config.output_limit));
            let stop_live = CancellationToken::new();
            let (result, ()) = tokio::join!(
                async {
                    let result = execute_shell(shared, run, &output, cancel, lease_lost).await;
                    stop_live.cancel();
                    result
                },
                live::write_while_running(
                    shared,
                    run.run_id,
                    node_id,
                    &output,
                    Streams::Both,
                    &stop_live,
                    lease_lost,
                ),
            );
            let (status, outcome) = match result {
                Ok(result) => shell_result(result, output.progress()),
                Err(error) => (
                    RunStatus::Failed,
                    RunOutcome {
                        error: Some(error),
                        ..RunOutcome::default()
                    },
                ),
            };
            record(shared, run, node_id, status, outcome).await;
        }
    }
}

async fn execute_shell(
    shared: &Shared,
    run: &ClaimedRun,
    output: &Arc<JobOutput>,
    cancel: &CancellationToken,
    lease_lost: &CancellationToken,
) -> Result<ShellResult, String> {
    // Checked here, right before the spawn, whatever the claim's SQL let
    // through: with an allow-list the program runs directly, never `sh -c`.
    let allow = &shared.config.shell_allow;
    let argv = if allow.is_empty() {
        None
    } else {
        Some(
            super::allow::argv_for(&run.job.spec.command, allow)
                .map_err(|refusal| format!("refused by this node's shell allow-list: {refusal}"))?,
        )
    };
    let command = ShellCommand {
        command: run.job.spec.command.clone(),
        argv,
        env: vec![
            ("CRONDECK_JOB".into(), run.job.spec.name.clone()),
            ("CRONDECK_RUN_ID".into(), run.run_id.to_string()),
            (
                "CRONDECK_SCHEDULED_FOR".into(),
                run.scheduled_for.to_rfc3339(),
            ),
            ("CRONDECK_TRIGGER".into(), run.trigger.as_str().into()),
        ],
        timeout: run.job.spec.timeout,
        kill_grace: shared.config.kill_grace,
        output_limit: shared.config.output_limit,
        lease: Some(LeaseWatch {
            renewed: shared.lease.watch_renewed(),
            lease: shared.config.lease,
            heartbeat: shared.config.heartbeat,
            lost: lease_lost.clone(),
        }),
        output: Some(output.clone()),
        progress_fd: true,
    };
    run_shell(&command, cancel).await.map_err(|e| e.to_string())
}

fn shell_result(result: ShellResult, progress: Option<Progress>) -> (RunStatus, RunOutcome) {
    let mut outcome = RunOutcome {
        progress,
        stdout: Some(result.stdout.text),
        stderr: Some(result.stderr.text),
        stdout_dropped: i64::try_from(result.stdout.dropped_bytes).unwrap_or(i64::MAX),
        stderr_dropped: i64::try_from(result.stderr.dropped_bytes).unwrap_or(i64::MAX),
        ..RunOutcome::default()
    };
    let status = match result.outcome {
        ShellOutcome::Exited(0) => {
            outcome.exit_code = Some(0);
            RunStatus::Succeeded
        }
        ShellOutcome::Exited(code) => {
            outcome.exit_code = Some(code);
            outcome.error = Some(format!("exited with status {code}"));
            RunStatus::Failed
        }
        ShellOutcome::Signaled(signal) => {
            outcome.signal = Some(signal);
            outcome.error = Some(format!("killed by signal {signal}"));
            RunStatus::Failed
        }
        ShellOutcome::TimedOut => {
            outcome.error = Some(format!(
                "timed out after {}; the process group was stopped",
                humantime::format_duration(round_secs(result.elapsed))
            ));
            RunStatus::TimedOut
        }
        ShellOutcome::Interrupted => {
            outcome.error = Some("interrupted: the node stopped before the job finished".into());
            RunStatus::Interrupted
        }
        // Not a failure of the job: its node lost contact, as when it dies.
        ShellOutcome::LeaseExpired => {
            outcome.signal = Some(libc::SIGKILL);
            outcome.error = Some(
                "abandoned: the node could not renew its lease in time (it stalled, or lost the \
                 database), so the job's process group was killed before another node could \
                 take the run over"
                    .into(),
            );
            RunStatus::Abandoned
        }
    };
    (status, outcome)
}

fn round_secs(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// Record a finished run in its own transaction. Retries on database errors
/// for as long as the lease could still hold; after that the run has been (or
/// will be) rescued as `abandoned`, and a late write would be fenced anyway.
pub(crate) async fn record(
    shared: &Shared,
    run: &ClaimedRun,
    node_id: &str,
    status: RunStatus,
    outcome: RunOutcome,
) {
    // Stopped because an operator asked, not because the node stopped.
    let (status, outcome) = match shared.ledger.cancelled_by(run.run_id) {
        Some(by) if status == RunStatus::Interrupted => (
            RunStatus::Cancelled,
            RunOutcome {
                error: Some(format!("cancelled by {by}")),
                ..outcome
            },
        ),
        _ => (status, outcome),
    };
    let completion = Completion {
        run,
        node_id,
        status,
        outcome,
    };
    let give_up = Instant::now() + shared.config.lease;
    let mut backoff = Duration::from_millis(100);
    // First with the records of other runs ending now (group commit); alone
    // if that did not write it, and on every retry.
    let mut batched = true;
    loop {
        let attempt = if std::mem::take(&mut batched) {
            match shared.recorder.record(&completion).await {
                Batched::Done(result) => Ok(result),
                Batched::Alone(why) => {
                    tracing::debug!(run = run.run_id, %why, "recording the run alone");
                    record_once(shared, &completion).await
                }
            }
        } else {
            record_once(shared, &completion).await
        };
        match attempt {
            Ok(result) => {
                log_result(shared, run, status, &result);
                return;
            }
            Err(error) if Instant::now() < give_up => {
                tracing::warn!(run = run.run_id, error = %format!("{error:#}"), "recording the run failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) => {
                tracing::error!(run = run.run_id, error = %format!("{error:#}"),
                    "could not record the run within the lease; it will be marked abandoned");
                if let Some(observer) = &shared.config.observer {
                    observer.run_lost(run);
                }
                return;
            }
        }
    }
}

async fn record_once(shared: &Shared, completion: &Completion<'_>) -> anyhow::Result<FinishResult> {
    let mut object = shared.pool.get().await?;
    let attempt = tokio::time::timeout(shared.request_deadline(), async {
        let client: &mut tokio_postgres::Client = &mut object;
        let tx = client.transaction().await?;
        let result = finish(&tx, completion, &shared.actor).await?;
        match result {
            FinishResult::Fenced => tx.rollback().await?,
            FinishResult::Recorded { .. } => tx.commit().await?,
        }
        anyhow::Ok(result)
    })
    .await;
    match attempt {
        Ok(result) => result,
        Err(_) => {
            // Wedged mid-request, maybe mid-COMMIT: never reuse the
            // connection. A retry is fenced if the first attempt committed;
            // if none succeeds, the heartbeat reconciles the run.
            drop(deadpool_postgres::Object::take(object));
            anyhow::bail!(
                "recording the run got no answer within {:?}",
                shared.request_deadline()
            )
        }
    }
}

pub(crate) fn log_result(
    shared: &Shared,
    run: &ClaimedRun,
    status: RunStatus,
    result: &FinishResult,
) {
    if let Some(observer) = &shared.config.observer {
        match result {
            FinishResult::Fenced => observer.run_lost(run),
            FinishResult::Recorded { .. } => observer.run_finished(run, status),
        }
    }
    let job = &run.job.spec.name;
    match result {
        FinishResult::Fenced => tracing::warn!(
            job = %job, run = run.run_id,
            "the run was taken away from this node (lease lost); its result was not recorded"
        ),
        FinishResult::Recorded {
            auto_paused,
            retry_at,
        } => {
            tracing::info!(job = %job, run = run.run_id, status = status.as_str(), "run finished");
            if *auto_paused {
                tracing::warn!(job = %job, "job auto-paused by its failure policy");
            }
            if let Some(at) = retry_at {
                tracing::info!(job = %job, retry_at = %at, "retry scheduled");
            }
        }
    }
}
