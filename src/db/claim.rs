//! The claim and the finish: the two transactions that make the scheduling
//! guarantees hold in the database rather than in any node's memory.
//!
//! A claim, in one transaction at one database instant (`now()` is the
//! transaction's start time):
//!
//! 1. resumes jobs whose timed pause has run out (their missed ticks become
//!    one `skipped`/`paused` row);
//! 2. records ticks of jobs that are still running as `skipped`/`overlap`
//!    and moves them to their next slot;
//! 3. starts pending requests (manual, event, retry) of jobs that are free;
//! 4. starts due jobs in (priority, nextcall) order, advancing `nextcall` from
//!    the tick (not from now) to the first slot after now, coalescing or
//!    skipping missed ticks by the job's catch-up policy.
//!
//! Rows are taken with `FOR UPDATE SKIP LOCKED`, so concurrent nodes never
//! wait for each other and never take the same job; the unique indexes on
//! runs (one per tick, one running per job) are the last line of defence.
//!
//! The statements on the path from a tick to its run's start and end are
//! sent typed (`query_typed`: parse, bind and execute in one round trip)
//! rather than prepared first (two round trips): a tick's lateness is mostly
//! round trips. The claim's `BEGIN`, its probe (what else the claim must do)
//! and its read of the due jobs are pipelined (`first_read`): the run's
//! insert is the second round trip.
//!
//! Both are fenced on the node's *registration* being alive by lease in
//! database time (`db::nodes::alive_at`), not on anything the node believes:
//! a claim by a registration whose lease ran out starts nothing
//! (`DbError::LeaseLost`), and a finish updates the run only while it is
//! still `running`, still owned by that registration, and the registration
//! still alive at the moment of the finish; it frees the job only while the
//! job still points at that run.
//!
//! The registration's row is only read, not locked: a lock held by every
//! claim and every finish made the node's own heartbeat wait behind them
//! under load (the renewal needs the row exclusively), and it is not needed.
//! If a rescue declares the registration dead just after a claim read it
//! alive, the claim's runs are orphans of a stopped node, which the next
//! rescue abandons; the node itself never starts them, since its own lease
//! deadline, which comes earlier than the database's, has passed (see
//! `scheduler::shell`, "Lease watchdog"). A finish that read the
//! registration alive updated the run first, so the rescue, waiting on that
//! row, then finds it no longer `running` and leaves it: the run was
//! recorded while the lease held.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::GenericClient;

use super::audit::{audit_context, Actor};
use super::jobs::{job_columns_of, job_from_row, JOB_COLUMNS};
use super::nodes::alive_at;
use super::requests::request_retry;
use super::runs::{
    run_finish, run_insert_scheduled, run_insert_skipped, run_insert_started, Finished, NewRun,
    RunOutcome, RunStatus, ScheduledStart, TickReason, Trigger,
};
use super::{DbError, PipelinedTransaction};
use crate::job::{Catchup, Job};
use crate::schedule::Schedule;

/// Who is claiming.
#[derive(Debug, Clone)]
pub struct Claimer<'a> {
    pub node_id: &'a str,
    pub node_name: &'a str,
    pub allow_shell: bool,
    /// Shell command prefixes this node may run; empty means any.
    pub shell_allow: &'a [String],
    pub actor: &'a Actor,
    /// The node runs inside a console: see [`CONSOLE_DEFER`].
    pub console: bool,
}

/// How long a console's node leaves a new manual request to another live
/// node with a free worker that can run the job. Such a node takes it within
/// milliseconds (the request wakes it); the console's node takes it after
/// this only if none did, and at once when there is no such node. Other
/// nodes are taken to be headless: a console on a shared database runs a
/// node only when asked (`--scheduler`), so two consoles' nodes deferring
/// to each other (a run starting this much later) is the rare case, and no
/// schema change is needed to tell them apart.
pub const CONSOLE_DEFER: std::time::Duration = std::time::Duration::from_secs(2);

/// A run this node now owns and must execute.
#[derive(Debug, Clone)]
pub struct ClaimedRun {
    pub job: Job,
    pub run_id: i64,
    pub trigger: Trigger,
    pub scheduled_for: DateTime<Utc>,
    pub started_at: DateTime<Utc>,
    pub attempt: i32,
}

/// What one claim transaction did.
#[derive(Debug, Default)]
pub struct ClaimReport {
    pub started: Vec<ClaimedRun>,
    pub skipped_ticks: u64,
    pub resumed: Vec<String>,
}

fn clamp_ticks(missed: u64) -> i32 {
    i32::try_from(missed.saturating_add(1)).unwrap_or(i32::MAX)
}

/// Record the ticks from `tick` up to `now` as one skipped row and return the
/// job's next slot after `now`. Used for overlaps, catch-up skips and pauses.
pub async fn skip_ticks(
    client: &impl GenericClient,
    job: &Job,
    tick: DateTime<Utc>,
    now: DateTime<Utc>,
    reason: TickReason,
) -> Result<(Option<DateTime<Utc>>, u64), DbError> {
    let Some(advance) = job.spec.schedule.advance(tick, now) else {
        return Ok((None, 0));
    };
    let ticks = clamp_ticks(advance.missed);
    run_insert_skipped(client, job.id, tick, ticks, reason).await?;
    Ok((Some(advance.next), u64::try_from(ticks).unwrap_or(0)))
}

/// Read a job row; a row this binary cannot read (a schedule croner rejects,
/// say) is paused with the reason instead of failing the whole claim, so one
/// bad definition cannot stop every other job.
async fn readable_job(
    tx: &impl GenericClient,
    row: &tokio_postgres::Row,
) -> Result<Option<Job>, DbError> {
    match job_from_row(row) {
        Ok(job) => Ok(Some(job)),
        Err(DbError::Corrupt(reason)) => {
            let id: i64 = row.try_get("id")?;
            tracing::error!(job = id, %reason, "pausing a job this node cannot read");
            let why = format!("paused: the scheduler cannot read this job ({reason})");
            audit_context(tx, &Actor::current(), Some(&why), None).await?;
            tx.execute(
                "UPDATE crondeck.jobs SET active = false, paused_at = now(),
                     paused_by = 'crondeck (scheduler)', paused_reason = $2, paused_until = NULL
                 WHERE id = $1",
                &[&id, &why],
            )
            .await?;
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// Run one claim transaction, starting at most `limit` runs.
///
/// The transaction's `BEGIN`, the probe and the due jobs' read
/// (`first_read`) are sent together, so a tick's run is inserted after two
/// round trips (that one and the insert) instead of four. The client must
/// be a plain connection, not already inside a transaction.
pub async fn claim(
    client: &mut tokio_postgres::Client,
    claimer: &Claimer<'_>,
    limit: usize,
) -> Result<ClaimReport, DbError> {
    let tx = PipelinedTransaction::new(client);
    let (work, due) = first_read(&tx, claimer, limit).await?;
    if !work.registration_alive {
        // Fenced: a registration whose lease ran out claims nothing, even if
        // no other node has declared it dead yet (a node just woken from a
        // freeze, whose heartbeat has not noticed).
        tx.rollback().await?;
        return Err(DbError::LeaseLost(claimer.node_id.to_string()));
    }
    let now = work.now;
    let mut report = ClaimReport::default();
    if work.pauses_to_lift {
        resume_expired_pauses(tx.client, claimer, now, &mut report).await?;
    }
    if work.overlapping_ticks {
        skip_overlapping_ticks(tx.client, claimer, now, &mut report).await?;
    }
    if limit > 0 && work.pending_requests {
        start_requests(tx.client, claimer, limit, &mut report).await?;
    }
    let left = limit.saturating_sub(report.started.len());
    if left > 0 && !due.is_empty() {
        start_due_jobs(tx.client, claimer, now, left, due, &mut report).await?;
    }
    tx.commit().await?;
    Ok(report)
}

/// What a claim has to look at, from one cheap read at the start of the
/// claim transaction. Most claims start due jobs and have nothing to
/// resume, skip or serve; each query skipped here is a round trip off the
/// start of every run. Something committed by another session just after
/// this read wakes the node again (NOTIFY), or is due by time and caught by
/// `next_wake`, so nothing is missed, only seen one claim later.
struct Probe {
    now: DateTime<Utc>,
    /// The claimer's registration is alive by lease at the claim's instant.
    registration_alive: bool,
    pauses_to_lift: bool,
    overlapping_ticks: bool,
    pending_requests: bool,
}

/// `BEGIN`, the probe, and the due jobs this claim may start (locked `FOR
/// UPDATE SKIP LOCKED`, in (priority, nextcall) order, at most `limit`),
/// sent together without waiting for each other's answers: one round trip.
/// The caller starts nothing unless the probe, in the same transaction at
/// the same instant, found the registration alive; a dead registration's
/// claim only held its due rows locked until its rollback. The due jobs are
/// read before the claim's other steps, which cannot take them: paused jobs
/// are not active, overlapping ticks belong to running jobs, and a job that
/// a request starts first is left for the next claim (see
/// `start_due_jobs`), as when the due jobs were read after the requests.
///
/// Three statements pipelined, not one: the probe and the due read as one
/// statement (CTEs) cost the server more to plan than the round trip saved
/// (0.84 against 0.55 ms per claim with pgbench, issue 15).
async fn first_read(
    tx: &PipelinedTransaction<'_>,
    claimer: &Claimer<'_>,
    limit: usize,
) -> Result<(Probe, Vec<tokio_postgres::Row>), DbError> {
    // Each test walks a small index: paused jobs, running runs (one per
    // running job: `runs_one_running`), pending requests. The registration
    // is looked at first: the rest is useless if it is dead.
    let probe_sql = format!(
        "SELECT now(),
             EXISTS (SELECT 1 FROM crondeck.nodes WHERE id = $3 AND {alive}),
             EXISTS (SELECT 1 FROM crondeck.jobs
                     WHERE NOT active AND numbercall <> 0 AND paused_until <= now()),
             EXISTS (SELECT 1 FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                     WHERE r.status = 'running' AND j.active AND j.numbercall <> 0
                       AND j.nextcall <= now()
                       AND crondeck.can_run(j.action_kind, j.command, $1, $2)),
             EXISTS (SELECT 1 FROM crondeck.run_requests
                     WHERE state = 'pending' AND not_before <= now()),
             -- This transaction's tick updates are the scheduler's own
             -- (not audited; see crondeck.jobs_audit).
             set_config('crondeck.context', 'scheduler', true)",
        alive = alive_at("now()")
    );
    let due_sql = format!(
        "SELECT {JOB_COLUMNS} FROM crondeck.jobs
         WHERE active AND numbercall <> 0 AND nextcall <= now() AND running_run_id IS NULL
           AND crondeck.can_run(action_kind, command, $1, $3)
         ORDER BY priority, nextcall
         LIMIT $2
         FOR UPDATE SKIP LOCKED"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let probe_params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&claimer.allow_shell, Type::BOOL),
        (&claimer.shell_allow, Type::TEXT_ARRAY),
        (&claimer.node_id, Type::TEXT),
    ];
    let due_params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&claimer.allow_shell, Type::BOOL),
        (&limit, Type::INT8),
        (&claimer.shell_allow, Type::TEXT_ARRAY),
    ];
    // Polled in order: the three go out one behind the other.
    let (begun, probe, due) = futures_util::future::join3(
        tx.client.batch_execute("BEGIN"),
        tx.client.query_typed_one(&probe_sql, &probe_params),
        tx.client.query_typed(&due_sql, &due_params),
    )
    .await;
    begun?;
    let row = probe?;
    let probe = Probe {
        now: row.try_get(0)?,
        registration_alive: row.try_get(1)?,
        pauses_to_lift: row.try_get(2)?,
        overlapping_ticks: row.try_get(3)?,
        pending_requests: row.try_get(4)?,
    };
    Ok((probe, due?))
}

async fn resume_expired_pauses(
    tx: &impl GenericClient,
    claimer: &Claimer<'_>,
    now: DateTime<Utc>,
    report: &mut ClaimReport,
) -> Result<(), DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM crondeck.jobs
         WHERE NOT active AND numbercall <> 0 AND paused_until <= now()
         FOR UPDATE SKIP LOCKED"
    );
    for row in tx.query(&sql, &[]).await? {
        let Some(job) = readable_job(tx, &row).await? else {
            continue;
        };
        let nextcall = match job.nextcall {
            Some(tick) if tick <= now => {
                skip_ticks(tx, &job, tick, now, TickReason::Paused).await?.0
            }
            other => other,
        };
        audit_context(
            tx,
            claimer.actor,
            Some("the pause ran out (automatic resume)"),
            None,
        )
        .await?;
        tx.execute(
            "UPDATE crondeck.jobs SET active = true, paused_at = NULL, paused_by = NULL,
                 paused_reason = NULL, paused_until = NULL, nextcall = $2, updated_at = now()
             WHERE id = $1",
            &[&job.id, &nextcall],
        )
        .await?;
        report.resumed.push(job.spec.name);
    }
    Ok(())
}

async fn skip_overlapping_ticks(
    tx: &impl GenericClient,
    claimer: &Claimer<'_>,
    now: DateTime<Utc>,
    report: &mut ClaimReport,
) -> Result<(), DbError> {
    // Through the running runs (one per running job, a small index): with a
    // backlog, "due and running" read from the due index walks every due job.
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM crondeck.jobs
         WHERE id IN (SELECT job_id FROM crondeck.runs WHERE status = 'running')
           AND active AND numbercall <> 0 AND nextcall <= now() AND running_run_id IS NOT NULL
           AND crondeck.can_run(action_kind, command, $1, $2)
         FOR UPDATE SKIP LOCKED"
    );
    for row in tx
        .query(&sql, &[&claimer.allow_shell, &claimer.shell_allow])
        .await?
    {
        let Some(job) = readable_job(tx, &row).await? else {
            continue;
        };
        let Some(tick) = job.nextcall else { continue };
        let (next, ticks) = skip_ticks(tx, &job, tick, now, TickReason::Overlap).await?;
        tx.execute(
            "UPDATE crondeck.jobs SET nextcall = $2 WHERE id = $1",
            &[&job.id, &next.unwrap_or(tick)],
        )
        .await?;
        report.skipped_ticks += ticks;
    }
    Ok(())
}

async fn start_requests(
    tx: &impl GenericClient,
    claimer: &Claimer<'_>,
    limit: usize,
    report: &mut ClaimReport,
) -> Result<(), DbError> {
    let sql = format!(
        "SELECT r.id AS request_id, r.trigger AS request_trigger, r.requested_by, r.requested_at,
                r.scheduled_for AS request_tick, r.attempt AS request_attempt,
                {}
         FROM crondeck.run_requests r JOIN crondeck.jobs j ON j.id = r.job_id
         WHERE r.state = 'pending' AND r.not_before <= now() AND j.running_run_id IS NULL
           AND crondeck.can_run(j.action_kind, j.command, $1, $3)
           -- A console's node leaves a young manual request to a headless one.
           AND NOT ($4::boolean AND r.trigger = 'manual'
                    AND r.requested_at > now() - $5::bigint * interval '1 millisecond'
                    AND EXISTS (SELECT 1 FROM crondeck.nodes n
                                WHERE n.id <> $6 AND n.busy < n.workers
                                  AND {alive}
                                  AND crondeck.can_run(j.action_kind, j.command, n.allow_shell,
                                                       n.shell_allow)))
         ORDER BY j.priority, r.not_before, r.id
         LIMIT $2
         FOR UPDATE OF r, j SKIP LOCKED",
        job_columns_of("j"),
        // Its columns are the nodes' only: unqualified, they are n's.
        alive = alive_at("now()")
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let defer_ms = i64::try_from(CONSOLE_DEFER.as_millis()).unwrap_or(i64::MAX);
    let rows = tx
        .query(
            &sql,
            &[
                &claimer.allow_shell,
                &limit,
                &claimer.shell_allow,
                &claimer.console,
                &defer_ms,
                &claimer.node_id,
            ],
        )
        .await?;
    let mut started_jobs = Vec::new();
    for row in rows {
        let Some(job) = readable_job(tx, &row).await? else {
            continue;
        };
        let request_id: i64 = row.try_get("request_id")?;
        // One run per job at a time: a second request for the same job waits.
        if started_jobs.contains(&job.id) {
            continue;
        }
        let trigger = Trigger::parse(row.try_get("request_trigger")?).unwrap_or(Trigger::Manual);
        // A retry of a job that was paused or finished since is dropped.
        if trigger == Trigger::Retry && (!job.active || job.is_done()) {
            tx.execute(
                "UPDATE crondeck.run_requests SET state = 'cancelled' WHERE id = $1",
                &[&request_id],
            )
            .await?;
            continue;
        }
        let requested_by: String = row.try_get("requested_by")?;
        let requested_at: DateTime<Utc> = row.try_get("requested_at")?;
        let tick: Option<DateTime<Utc>> = row.try_get("request_tick")?;
        let attempt: i32 = row.try_get("request_attempt")?;
        let scheduled_for = tick.unwrap_or(requested_at);
        let new_run = NewRun {
            job_id: job.id,
            trigger,
            requested_by: Some(&requested_by),
            request_id: Some(request_id),
            scheduled_for,
            ticks: 1,
            reason: None,
            node_id: claimer.node_id,
            node_name: claimer.node_name,
            attempt,
        };
        let (run_id, started_at) = run_insert_started(tx, &new_run).await?;
        tx.execute(
            "UPDATE crondeck.run_requests SET state = 'started', run_id = $2 WHERE id = $1",
            &[&request_id, &run_id],
        )
        .await?;
        mark_running_requested(tx, job.id, run_id, claimer.node_id, started_at).await?;
        started_jobs.push(job.id);
        report.started.push(ClaimedRun {
            job,
            run_id,
            trigger,
            scheduled_for,
            started_at,
            attempt,
        });
    }
    Ok(())
}

async fn start_due_jobs(
    tx: &impl GenericClient,
    claimer: &Claimer<'_>,
    now: DateTime<Utc>,
    limit: usize,
    due: Vec<tokio_postgres::Row>,
    report: &mut ClaimReport,
) -> Result<(), DbError> {
    // Jobs a request of this claim started are running now: their tick is
    // left due, and the next claim records it as an overlap.
    let started_by_requests: Vec<i64> = report.started.iter().map(|r| r.job.id).collect();
    let mut starts = Vec::new();
    for row in due {
        let id: i64 = row.try_get("id")?;
        if started_by_requests.contains(&id) {
            continue;
        }
        let Some(job) = readable_job(tx, &row).await? else {
            continue;
        };
        let Some(tick) = job.nextcall else { continue };
        let Some(advance) = job.spec.schedule.advance(tick, now) else {
            continue;
        };
        let late_beyond_interval = job
            .spec
            .schedule
            .interval_at(tick)
            .is_some_and(|interval| now - tick > interval);
        if job.spec.catchup == Catchup::Skip && late_beyond_interval {
            let (next, ticks) = skip_ticks(tx, &job, tick, now, TickReason::CatchupSkip).await?;
            tx.execute(
                "UPDATE crondeck.jobs SET nextcall = $2 WHERE id = $1",
                &[&job.id, &next.unwrap_or(advance.next)],
            )
            .await?;
            report.skipped_ticks += ticks;
            continue;
        }
        if starts.len() >= limit {
            // Read (and locked) but not started: requests of this claim took
            // the workers. Still due; the next claim takes it.
            continue;
        }
        let numbercall = if job.spec.numbercall > 0 {
            job.spec.numbercall - 1
        } else {
            job.spec.numbercall
        };
        starts.push(DueStart {
            tick: ScheduledStart {
                job_id: job.id,
                scheduled_for: tick,
                ticks: clamp_ticks(advance.missed),
                reason: (advance.missed > 0).then_some(TickReason::SchedulerDown),
            },
            next: advance.next,
            numbercall,
            job,
        });
    }
    if starts.is_empty() {
        return Ok(());
    }
    // Every start in two statements, whatever their number: a herd of due
    // jobs used to cost two statements per job, one after the other, and
    // the last job's start waited for all of them. Not one statement (the
    // insert and the update in one CTE): planning the update before the
    // insert ran delayed every run's start by more than the round trip it
    // saved (issue 15, measured).
    let ticks: Vec<ScheduledStart> = starts.iter().map(|s| s.tick.clone()).collect();
    let inserted = run_insert_scheduled(tx, &ticks, claimer.node_id, claimer.node_name).await?;
    let runs: HashMap<i64, (i64, DateTime<Utc>)> = inserted
        .into_iter()
        .map(|(job_id, run_id, started_at)| (job_id, (run_id, started_at)))
        .collect();
    let mut marks = Vec::with_capacity(starts.len());
    for start in &starts {
        let &(run_id, started_at) = runs.get(&start.job.id).ok_or_else(|| {
            DbError::Corrupt(format!("no run was inserted for job {}", start.job.id))
        })?;
        marks.push(RunningMark {
            job_id: start.job.id,
            run_id,
            started_at,
            nextcall: start.next,
            numbercall: start.numbercall,
        });
    }
    mark_running_scheduled(tx, claimer.node_id, &marks).await?;
    for (start, mark) in starts.into_iter().zip(marks) {
        report.started.push(ClaimedRun {
            scheduled_for: start.tick.scheduled_for,
            job: start.job,
            run_id: mark.run_id,
            trigger: Trigger::Schedule,
            started_at: mark.started_at,
            attempt: 0,
        });
    }
    Ok(())
}

/// A due job this claim starts, worked out before the batched writes.
struct DueStart {
    job: Job,
    tick: ScheduledStart,
    next: DateTime<Utc>,
    numbercall: i32,
}

/// A scheduled run started: what its job row must now say.
struct RunningMark {
    job_id: i64,
    run_id: i64,
    started_at: DateTime<Utc>,
    nextcall: DateTime<Utc>,
    numbercall: i32,
}

/// For scheduled runs: point each job at its new run, move `nextcall` and
/// count down `numbercall` (reaching 0 makes the job done and inactive), in
/// one statement.
async fn mark_running_scheduled(
    tx: &impl GenericClient,
    node_id: &str,
    marks: &[RunningMark],
) -> Result<(), DbError> {
    let job_ids: Vec<i64> = marks.iter().map(|m| m.job_id).collect();
    let run_ids: Vec<i64> = marks.iter().map(|m| m.run_id).collect();
    let started: Vec<DateTime<Utc>> = marks.iter().map(|m| m.started_at).collect();
    let next: Vec<DateTime<Utc>> = marks.iter().map(|m| m.nextcall).collect();
    let numbercalls: Vec<i32> = marks.iter().map(|m| m.numbercall).collect();
    tx.execute_typed(
        "UPDATE crondeck.jobs j SET running_run_id = t.run_id, running_node_id = $6,
             running_since = t.started_at, last_run_id = t.run_id,
             last_started_at = t.started_at, last_status = 'running',
             nextcall = t.nextcall, numbercall = t.numbercall,
             active = j.active AND t.numbercall <> 0,
             first_due_at = coalesce(j.first_due_at, j.nextcall)
         FROM unnest($1::int8[], $2::int8[], $3::timestamptz[], $4::timestamptz[], $5::int4[])
              AS t(job_id, run_id, started_at, nextcall, numbercall)
         WHERE j.id = t.job_id",
        &[
            (&job_ids, Type::INT8_ARRAY),
            (&run_ids, Type::INT8_ARRAY),
            (&started, Type::TIMESTAMPTZ_ARRAY),
            (&next, Type::TIMESTAMPTZ_ARRAY),
            (&numbercalls, Type::INT4_ARRAY),
            (&node_id, Type::TEXT),
        ],
    )
    .await?;
    Ok(())
}

/// For requested runs (manual, event, retry): point the job at its new run.
/// Unlike a scheduled start, `nextcall` and `numbercall` stay as they are.
async fn mark_running_requested(
    tx: &impl GenericClient,
    job_id: i64,
    run_id: i64,
    node_id: &str,
    started_at: DateTime<Utc>,
) -> Result<(), DbError> {
    tx.execute_typed(
        "UPDATE crondeck.jobs SET running_run_id = $2, running_node_id = $3, running_since = $4,
             last_run_id = $2, last_started_at = $4, last_status = 'running'
         WHERE id = $1",
        &[
            (&job_id, Type::INT8),
            (&run_id, Type::INT8),
            (&node_id, Type::TEXT),
            (&started_at, Type::TIMESTAMPTZ),
        ],
    )
    .await?;
    Ok(())
}

/// What happened to the job when its run was finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishResult {
    /// Recorded.
    Recorded {
        auto_paused: bool,
        retry_at: Option<DateTime<Utc>>,
    },
    /// The run was no longer this node's (rescued): nothing was written.
    Fenced,
}

/// A finished execution to record.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub run: &'a ClaimedRun,
    pub node_id: &'a str,
    pub status: RunStatus,
    pub outcome: RunOutcome,
}

/// Record the end of a run and apply the failure policy, inside the caller's
/// transaction (for SQL jobs, the one that ran the job's statements). The
/// caller must roll back when the result is `Fenced`.
pub async fn finish(
    tx: &impl GenericClient,
    completion: &Completion<'_>,
    actor: &Actor,
) -> Result<FinishResult, DbError> {
    let run = completion.run;
    let success = completion.status == RunStatus::Succeeded;
    let failed = matches!(completion.status, RunStatus::Failed | RunStatus::TimedOut);
    // The run's update and the job's are sent together (one round trip):
    // the job's reads the run's end from the run row the first one just
    // wrote, and matches nothing if that one was fenced (the run is then
    // not ours with this status), so either both apply or the caller rolls
    // back.
    let (recorded, freed) = futures_util::future::join(
        run_finish(
            tx,
            run.run_id,
            completion.node_id,
            completion.status,
            &completion.outcome,
        ),
        tx.query_typed_opt(
            "UPDATE crondeck.jobs j SET running_run_id = NULL, running_node_id = NULL,
                 running_since = NULL, last_ended_at = r.ended_at, last_status = r.status,
                 last_duration_ms = trunc(extract(epoch FROM r.ended_at - r.started_at) * 1000)::int8,
                 last_success_at = CASE WHEN $4 THEN r.ended_at ELSE j.last_success_at END,
                 failure_streak = CASE WHEN $4 THEN 0 ELSE j.failure_streak END,
                 failure_streak_since = CASE WHEN $4 THEN NULL ELSE j.failure_streak_since END
             FROM crondeck.runs r
             WHERE j.id = $1 AND j.running_run_id = $2
               AND r.id = $2 AND r.status = $3 AND r.ended_at IS NOT NULL
             RETURNING j.retry_max, j.retry_backoff_ms, j.active, j.numbercall, j.nextcall",
            &[
                (&run.job.id, Type::INT8),
                (&run.run_id, Type::INT8),
                (&completion.status.as_str(), Type::TEXT),
                (&success, Type::BOOL),
            ],
        ),
    )
    .await;
    let Some(Finished {
        started_at,
        ended_at,
    }) = recorded?
    else {
        return Ok(FinishResult::Fenced);
    };
    let Some(row) = freed? else {
        // The job was freed by someone else (rescue) after all: same as fenced.
        return Ok(FinishResult::Fenced);
    };
    if !failed {
        return Ok(FinishResult::Recorded {
            auto_paused: false,
            retry_at: None,
        });
    }
    let retry_max: i32 = row.try_get(0)?;
    let retry_backoff_ms: i64 = row.try_get(1)?;
    let active: bool = row.try_get(2)?;
    let numbercall: i32 = row.try_get(3)?;
    let nextcall: Option<DateTime<Utc>> = row.try_get(4)?;

    // A failure that will be retried is not the tick's last word: only the
    // tick's last attempt counts toward the failure streak (and so toward
    // auto-pause and the failure notification).
    let retry_at =
        if run.trigger.is_retriable() && active && numbercall != 0 && run.attempt < retry_max {
            let factor = 1_i64 << run.attempt.clamp(0, 20);
            // Checked: a backoff of "100000000w" doubled a few times is past
            // the end of time; such a retry never comes, it does not panic.
            let at = chrono::Duration::try_milliseconds(retry_backoff_ms.saturating_mul(factor))
                .and_then(|backoff| ended_at.checked_add_signed(backoff));
            // Bounded by the next regular tick: that tick is the retry then.
            let before_next_tick = |at: DateTime<Utc>| match (&run.job.spec.schedule, nextcall) {
                (Schedule::Manual, _) | (_, None) => true,
                (_, Some(next)) => at < next,
            };
            at.filter(|&at| before_next_tick(at))
        } else {
            None
        };
    if let Some(at) = retry_at {
        request_retry(tx, run.job.id, at, run.scheduled_for, run.attempt + 1).await?;
        return Ok(FinishResult::Recorded {
            auto_paused: false,
            retry_at,
        });
    }

    let row = tx
        .query_typed_one(
            "UPDATE crondeck.jobs SET failure_streak = failure_streak + 1,
                 failure_streak_since = coalesce(failure_streak_since, $2)
             WHERE id = $1
             RETURNING failure_streak, failure_streak_since, failure_threshold,
                       failure_min_age_ms, now()",
            &[
                (&run.job.id, Type::INT8),
                (&run.scheduled_for, Type::TIMESTAMPTZ),
            ],
        )
        .await?;
    let streak: i32 = row.try_get(0)?;
    let since: Option<DateTime<Utc>> = row.try_get(1)?;
    let threshold: i32 = row.try_get(2)?;
    let min_age_ms: i64 = row.try_get(3)?;
    let now: DateTime<Utc> = row.try_get(4)?;

    let old_enough = since.is_some_and(|s| (now - s).num_milliseconds() >= min_age_ms);
    let auto_paused = active && threshold > 0 && streak >= threshold && old_enough;
    if auto_paused {
        auto_pause(tx, completion, actor, streak, since.unwrap_or(started_at)).await?;
    }
    Ok(FinishResult::Recorded {
        auto_paused,
        retry_at: None,
    })
}

impl Trigger {
    /// Failed scheduled ticks (and their retries) may be retried; manual and
    /// event runs are someone's explicit request and are not repeated.
    fn is_retriable(self) -> bool {
        matches!(self, Trigger::Schedule | Trigger::Retry)
    }
}

async fn auto_pause(
    tx: &impl GenericClient,
    completion: &Completion<'_>,
    actor: &Actor,
    streak: i32,
    since: DateTime<Utc>,
) -> Result<(), DbError> {
    let job = &completion.run.job;
    let last = completion
        .outcome
        .error
        .as_deref()
        .map(|e| {
            e.lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect::<String>()
        })
        .unwrap_or_else(|| completion.status.as_str().to_string());
    let reason = format!(
        "auto-paused after {streak} consecutive failures since {} (last: {last})",
        since.format("%Y-%m-%d %H:%M:%S UTC")
    );
    audit_context(tx, actor, Some(&reason), Some("auto-pause")).await?;
    tx.execute(
        "UPDATE crondeck.jobs SET active = false, paused_at = now(),
             paused_by = 'crondeck (failure policy)', paused_reason = $2, paused_until = NULL,
             updated_at = now()
         WHERE id = $1",
        &[&job.id, &reason],
    )
    .await?;
    Ok(())
}

/// When the node should next look, in seconds from now (database time):
/// the earliest tick it could claim, pause to lift, or request to start.
/// `None` means nothing is scheduled; only a notification can wake it.
pub async fn next_wake(
    client: &impl GenericClient,
    allow_shell: bool,
    shell_allow: &[String],
) -> Result<Option<f64>, DbError> {
    let row = client
        .query_typed_one(
            "SELECT extract(epoch FROM least(
                 (SELECT min(nextcall) FROM crondeck.jobs
                  WHERE active AND numbercall <> 0
                    AND crondeck.can_run(action_kind, command, $1, $2)),
                 (SELECT min(paused_until) FROM crondeck.jobs
                  WHERE NOT active AND numbercall <> 0),
                 (SELECT min(r.not_before) FROM crondeck.run_requests r
                  JOIN crondeck.jobs j ON j.id = r.job_id
                  WHERE r.state = 'pending' AND j.running_run_id IS NULL
                    AND crondeck.can_run(j.action_kind, j.command, $1, $2))
             ) - now())::float8",
            &[(&allow_shell, Type::BOOL), (&shell_allow, Type::TEXT_ARRAY)],
        )
        .await?;
    Ok(row.try_get(0)?)
}
