//! Queries on `crondeck.runs`: the run history. A run row is written when a
//! run starts (status `running`) and finished once; the finish is fenced: it
//! only applies while the run still belongs to the node that started it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, Row};

use super::DbError;

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Manual,
    Retry,
    Event,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::Event => "event",
        }
    }

    pub fn parse(s: &str) -> Option<Trigger> {
        Some(match s {
            "schedule" => Trigger::Schedule,
            "manual" => Trigger::Manual,
            "retry" => Trigger::Retry,
            "event" => Trigger::Event,
            _ => return None,
        })
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Abandoned,
    Interrupted,
    /// Stopped at an operator's request (`crondeck.op_cancel`).
    Cancelled,
    Skipped,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::TimedOut => "timed_out",
            RunStatus::Abandoned => "abandoned",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// Why ticks were skipped or coalesced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TickReason {
    /// The job was still running when the tick came.
    Overlap,
    /// No node started the job on time (down, or all workers busy).
    SchedulerDown,
    /// The job was paused.
    Paused,
    /// The catch-up policy is `skip` and the tick was older than one interval.
    CatchupSkip,
}

impl TickReason {
    pub fn as_str(self) -> &'static str {
        match self {
            TickReason::Overlap => "overlap",
            TickReason::SchedulerDown => "scheduler_down",
            TickReason::Paused => "paused",
            TickReason::CatchupSkip => "catchup_skip",
        }
    }
}

/// A run about to start.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub job_id: i64,
    pub trigger: Trigger,
    pub requested_by: Option<&'a str>,
    pub request_id: Option<i64>,
    pub scheduled_for: DateTime<Utc>,
    pub ticks: i32,
    pub reason: Option<TickReason>,
    pub node_id: &'a str,
    pub node_name: &'a str,
    pub attempt: i32,
}

/// Insert a `running` run; returns (id, started_at). Fails with a unique
/// violation if the tick already has a run, or the job already runs.
pub async fn run_insert_started(
    client: &impl GenericClient,
    run: &NewRun<'_>,
) -> Result<(i64, DateTime<Utc>), DbError> {
    // Typed: one round trip, on the path from a tick to its run's start.
    let row = client
        .query_typed_one(
            "INSERT INTO crondeck.runs (job_id, trigger, requested_by, request_id, scheduled_for,
                 ticks, reason, status, node_id, node_name, attempt, started_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $9, $10, clock_timestamp())
             RETURNING id, started_at",
            &[
                (&run.job_id, Type::INT8),
                (&run.trigger.as_str(), Type::TEXT),
                (&run.requested_by, Type::TEXT),
                (&run.request_id, Type::INT8),
                (&run.scheduled_for, Type::TIMESTAMPTZ),
                (&run.ticks, Type::INT4),
                (&run.reason.map(TickReason::as_str), Type::TEXT),
                (&run.node_id, Type::TEXT),
                (&run.node_name, Type::TEXT),
                (&run.attempt, Type::INT4),
            ],
        )
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// A scheduled tick to start (see `run_insert_scheduled`).
#[derive(Debug, Clone)]
pub struct ScheduledStart {
    pub job_id: i64,
    pub scheduled_for: DateTime<Utc>,
    pub ticks: i32,
    pub reason: Option<TickReason>,
}

/// Insert `running` runs for many scheduled ticks in one statement. Returns
/// (job id, run id, started_at) per run, in no particular order. Fails like
/// `run_insert_started` (a unique violation) if any tick already has a run.
pub async fn run_insert_scheduled(
    client: &impl GenericClient,
    starts: &[ScheduledStart],
    node_id: &str,
    node_name: &str,
) -> Result<Vec<(i64, i64, DateTime<Utc>)>, DbError> {
    let job_ids: Vec<i64> = starts.iter().map(|s| s.job_id).collect();
    let ticks_at: Vec<DateTime<Utc>> = starts.iter().map(|s| s.scheduled_for).collect();
    let ticks: Vec<i32> = starts.iter().map(|s| s.ticks).collect();
    let reasons: Vec<Option<&str>> = starts
        .iter()
        .map(|s| s.reason.map(TickReason::as_str))
        .collect();
    let rows = client
        .query_typed(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, ticks, reason, status,
                 node_id, node_name, attempt, started_at)
             SELECT t.job_id, 'schedule', t.scheduled_for, t.ticks, t.reason, 'running',
                    $5, $6, 0, clock_timestamp()
             FROM unnest($1::int8[], $2::timestamptz[], $3::int4[], $4::text[])
                  AS t(job_id, scheduled_for, ticks, reason)
             RETURNING job_id, id, started_at",
            &[
                (&job_ids, Type::INT8_ARRAY),
                (&ticks_at, Type::TIMESTAMPTZ_ARRAY),
                (&ticks, Type::INT4_ARRAY),
                (&reasons, Type::TEXT_ARRAY),
                (&node_id, Type::TEXT),
                (&node_name, Type::TEXT),
            ],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// Record ticks that did not run, as one row standing for `ticks` ticks.
pub async fn run_insert_skipped(
    client: &impl GenericClient,
    job_id: i64,
    scheduled_for: DateTime<Utc>,
    ticks: i32,
    reason: TickReason,
) -> Result<(), DbError> {
    client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, ticks, status, reason, ended_at)
             VALUES ($1, 'schedule', $2, $3, 'skipped', $4, now())
             ON CONFLICT DO NOTHING",
            &[&job_id, &scheduled_for, &ticks, &reason.as_str()],
        )
        .await?;
    Ok(())
}

/// The outcome of an execution, as recorded.
#[derive(Debug, Clone, Default)]
pub struct RunOutcome {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub sqlstate: Option<String>,
    pub rows_affected: Option<i64>,
    pub error: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub stdout_dropped: i64,
    pub stderr_dropped: i64,
    /// The latest progress the job reported, if any (kept as it was in the
    /// row when `None`).
    pub progress: Option<Progress>,
}

/// Progress a running job reported: `done` of `total` (no total: a count).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub done: i64,
    pub total: Option<i64>,
}

/// What a running run produced so far, written while it runs
/// ([`run_live_update`]). `None` fields are left as they are.
#[derive(Debug, Clone, Default)]
pub struct LiveUpdate {
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub stdout_dropped: i64,
    pub stderr_dropped: i64,
    pub progress: Option<Progress>,
}

/// Write the output so far and/or the progress of a run that is still
/// running, fenced exactly like [`run_finish`]: only while the run is
/// `running` and belongs to `node_id`, whose registration is alive by lease
/// in database time. Returns whether the row was written (false: the run
/// ended or was taken away; the caller stops writing).
pub async fn run_live_update(
    client: &impl GenericClient,
    run_id: i64,
    node_id: &str,
    update: &LiveUpdate,
) -> Result<bool, DbError> {
    let has_output = update.stdout.is_some() || update.stderr.is_some();
    let (done, total) = match update.progress {
        Some(p) => (Some(p.done), p.total),
        None => (None, None),
    };
    let has_progress = update.progress.is_some();
    let written = client
        .execute_typed(
            &format!(
                "UPDATE crondeck.runs SET
                     stdout = CASE WHEN $3 THEN coalesce($4, stdout) ELSE stdout END,
                     stderr = CASE WHEN $3 THEN coalesce($5, stderr) ELSE stderr END,
                     stdout_dropped = CASE WHEN $3 THEN $6 ELSE stdout_dropped END,
                     stderr_dropped = CASE WHEN $3 THEN $7 ELSE stderr_dropped END,
                     output_at = CASE WHEN $3 THEN statement_timestamp() ELSE output_at END,
                     progress_done = CASE WHEN $8 THEN $9 ELSE progress_done END,
                     progress_total = CASE WHEN $8 THEN $10 ELSE progress_total END,
                     progress_at = CASE WHEN $8 THEN statement_timestamp() ELSE progress_at END
                 WHERE id = $1 AND status = 'running'
                   AND node_id = (SELECT id FROM crondeck.nodes WHERE id = $2 AND {alive})",
                alive = super::nodes::alive_at("statement_timestamp()")
            ),
            &[
                (&run_id, Type::INT8),
                (&node_id, Type::TEXT),
                (&has_output, Type::BOOL),
                (&update.stdout, Type::TEXT),
                (&update.stderr, Type::TEXT),
                (&update.stdout_dropped, Type::INT8),
                (&update.stderr_dropped, Type::INT8),
                (&has_progress, Type::BOOL),
                (&done, Type::INT8),
                (&total, Type::INT8),
            ],
        )
        .await?;
    Ok(written > 0)
}

/// What a fenced finish wrote.
#[derive(Debug, Clone, Copy)]
pub struct Finished {
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
}

/// Finish a run, only if it is still `running` and still belongs to `node_id`
/// (fencing: a node whose run was rescued cannot overwrite the rescue).
/// `None` means the run was taken away.
pub async fn run_finish(
    client: &impl GenericClient,
    run_id: i64,
    node_id: &str,
    status: RunStatus,
    outcome: &RunOutcome,
) -> Result<Option<Finished>, DbError> {
    // Typed: one round trip, on the path from a run's end to its record.
    let row = client
        .query_typed_opt(
            &format!(
                "UPDATE crondeck.runs SET status = $3,
                     ended_at = greatest(clock_timestamp(), started_at),
                     exit_code = $4, signal = $5, sqlstate = $6, rows_affected = $7, error = $8,
                     stdout = $9, stderr = $10, stdout_dropped = $11, stderr_dropped = $12,
                     progress_done = CASE WHEN $13 THEN $14 ELSE progress_done END,
                     progress_total = CASE WHEN $13 THEN $15 ELSE progress_total END,
                     progress_at = CASE WHEN $13 THEN clock_timestamp() ELSE progress_at END
                 WHERE id = $1 AND status = 'running'
                   AND node_id = (SELECT id FROM crondeck.nodes WHERE id = $2 AND {alive})
                 RETURNING started_at, ended_at",
                // Not now(): an SQL job's finish comes at the end of a
                // transaction that may have started long ago.
                alive = super::nodes::alive_at("statement_timestamp()")
            ),
            &[
                (&run_id, Type::INT8),
                (&node_id, Type::TEXT),
                (&status.as_str(), Type::TEXT),
                (&outcome.exit_code, Type::INT4),
                (&outcome.signal, Type::INT4),
                (&outcome.sqlstate, Type::TEXT),
                (&outcome.rows_affected, Type::INT8),
                (&outcome.error, Type::TEXT),
                (&outcome.stdout, Type::TEXT),
                (&outcome.stderr, Type::TEXT),
                (&outcome.stdout_dropped, Type::INT8),
                (&outcome.stderr_dropped, Type::INT8),
                (&outcome.progress.is_some(), Type::BOOL),
                (&outcome.progress.map(|p| p.done), Type::INT8),
                (&outcome.progress.and_then(|p| p.total), Type::INT8),
            ],
        )
        .await?;
    row.map(|r| {
        Ok(Finished {
            started_at: r.try_get(0)?,
            ended_at: r.try_get(1)?,
        })
    })
    .transpose()
}

/// A run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    pub id: i64,
    pub job_id: i64,
    pub trigger: String,
    pub requested_by: Option<String>,
    pub scheduled_for: DateTime<Utc>,
    pub ticks: i32,
    pub status: String,
    pub reason: Option<String>,
    pub node_name: Option<String>,
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub lateness_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub sqlstate: Option<String>,
    pub rows_affected: Option<i64>,
    pub error: Option<String>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    pub stdout_dropped: i64,
    pub stderr_dropped: i64,
    /// Progress the job reported (see [`Progress`]): done, total (absent if
    /// the job gave none), and when the node recorded it.
    pub progress_done: Option<i64>,
    pub progress_total: Option<i64>,
    pub progress_at: Option<DateTime<Utc>>,
    /// When the node last wrote the output of this run while it was
    /// running; `None` if it never did.
    pub output_at: Option<DateTime<Utc>>,
}

impl Progress {
    /// Share done, 0.0 to 1.0, when there is a total (an empty total is done).
    pub fn fraction(self) -> Option<f64> {
        self.total.map(|total| {
            if total == 0 {
                1.0
            } else {
                (self.done as f64 / total as f64).clamp(0.0, 1.0)
            }
        })
    }

    /// `4000/10000 (40%)`, or `4000` without a total.
    pub fn describe(self) -> String {
        match (self.total, self.fraction()) {
            (Some(total), Some(f)) => {
                format!("{}/{total} ({:.0}%)", self.done, (f * 100.0).floor())
            }
            _ => self.done.to_string(),
        }
    }
}

impl RunRow {
    /// The progress the job reported, if any.
    pub fn progress(&self) -> Option<Progress> {
        self.progress_done.map(|done| Progress {
            done,
            total: self.progress_total,
        })
    }

    /// When a running run should end at the pace it reported so far:
    /// `done` took `progress_at - started_at`, so the rest takes
    /// proportionally long. `None` without a total, before any work was
    /// done, or once the run ended.
    pub fn estimated_end(&self) -> Option<DateTime<Utc>> {
        if self.status != "running" {
            return None;
        }
        let progress = self.progress()?;
        let (started, at) = (self.started_at?, self.progress_at?);
        estimate_end(started, at, progress)
    }
}

/// When work reported as `progress` at `at`, begun at `started`, should be
/// done at the same pace: `done` took `at - started`, the rest takes
/// proportionally long. `None` without a total or before any work was done.
pub fn estimate_end(
    started: DateTime<Utc>,
    at: DateTime<Utc>,
    progress: Progress,
) -> Option<DateTime<Utc>> {
    let total = progress.total?;
    if progress.done <= 0 || at <= started {
        return None;
    }
    let spent_ms = (at - started).num_milliseconds() as f64;
    let left_ms = spent_ms * (total - progress.done) as f64 / progress.done as f64;
    if !left_ms.is_finite() || left_ms > 1e13 {
        return None;
    }
    at.checked_add_signed(chrono::Duration::milliseconds(left_ms as i64))
}

/// The progress of a running run, for the console's jobs table.
#[derive(Debug, Clone, PartialEq)]
pub struct RunningProgress {
    pub job_id: i64,
    pub run_id: i64,
    pub started_at: DateTime<Utc>,
    pub progress: Progress,
    pub progress_at: DateTime<Utc>,
}

impl RunningProgress {
    pub fn estimated_end(&self) -> Option<DateTime<Utc>> {
        estimate_end(self.started_at, self.progress_at, self.progress)
    }
}

/// Every running run that reported progress (a partial-index scan: only
/// running runs are looked at).
pub async fn run_progress_running(
    client: &impl GenericClient,
) -> Result<Vec<RunningProgress>, DbError> {
    let rows = client
        .query(
            "SELECT job_id, id, started_at, progress_done, progress_total, progress_at
             FROM crondeck.runs
             WHERE status = 'running' AND progress_done IS NOT NULL
               AND started_at IS NOT NULL AND progress_at IS NOT NULL",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RunningProgress {
                job_id: r.try_get(0)?,
                run_id: r.try_get(1)?,
                started_at: r.try_get(2)?,
                progress: Progress {
                    done: r.try_get(3)?,
                    total: r.try_get(4)?,
                },
                progress_at: r.try_get(5)?,
            })
        })
        .collect()
}

const RUN_COLUMNS: &str = "id, job_id, trigger, requested_by, scheduled_for, ticks, status, reason,
    node_name, attempt, started_at, ended_at,
    (extract(epoch FROM ended_at - started_at) * 1000)::bigint AS duration_ms,
    (extract(epoch FROM started_at - scheduled_for) * 1000)::bigint AS lateness_ms,
    exit_code, signal, sqlstate, rows_affected, error, stdout, stderr, stdout_dropped, stderr_dropped,
    progress_done, progress_total, progress_at, output_at";

fn run_from_row(r: &Row) -> Result<RunRow, DbError> {
    Ok(RunRow {
        id: r.try_get("id")?,
        job_id: r.try_get("job_id")?,
        trigger: r.try_get("trigger")?,
        requested_by: r.try_get("requested_by")?,
        scheduled_for: r.try_get("scheduled_for")?,
        ticks: r.try_get("ticks")?,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        node_name: r.try_get("node_name")?,
        attempt: r.try_get("attempt")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        duration_ms: r.try_get("duration_ms")?,
        lateness_ms: r.try_get("lateness_ms")?,
        exit_code: r.try_get("exit_code")?,
        signal: r.try_get("signal")?,
        sqlstate: r.try_get("sqlstate")?,
        rows_affected: r.try_get("rows_affected")?,
        error: r.try_get("error")?,
        stdout: r.try_get("stdout")?,
        stderr: r.try_get("stderr")?,
        stdout_dropped: r.try_get("stdout_dropped")?,
        stderr_dropped: r.try_get("stderr_dropped")?,
        progress_done: r.try_get("progress_done")?,
        progress_total: r.try_get("progress_total")?,
        progress_at: r.try_get("progress_at")?,
        output_at: r.try_get("output_at")?,
    })
}

/// The newest `limit` runs of a job, newest first.
pub async fn run_list(
    client: &impl GenericClient,
    job_id: i64,
    limit: i64,
) -> Result<Vec<RunRow>, DbError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM crondeck.runs WHERE job_id = $1 ORDER BY id DESC LIMIT $2"
    );
    let rows = client.query(&sql, &[&job_id, &limit]).await?;
    rows.iter().map(run_from_row).collect()
}

/// One page of a job's history, newest first, for paging through all of it
/// by keyset (never OFFSET): the runs with an id below `before` (all when
/// `None`), of `status` only when given, scheduled at or before `at` when
/// given. Up to `limit` rows, and whether older ones exist.
pub async fn run_page(
    client: &impl GenericClient,
    job_id: i64,
    query: &RunPageQuery,
    limit: i64,
) -> Result<(Vec<RunRow>, bool), DbError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM crondeck.runs
         WHERE job_id = $1 AND ($2::bigint IS NULL OR id < $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::timestamptz IS NULL OR scheduled_for <= $4)
         ORDER BY id DESC LIMIT $5"
    );
    let rows = client
        .query(
            &sql,
            &[
                &job_id,
                &query.before,
                &query.status,
                &query.at,
                &limit.saturating_add(1),
            ],
        )
        .await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let runs = rows
        .iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(run_from_row)
        .collect::<Result<_, _>>()?;
    Ok((runs, more))
}

/// Which page of a job's history: see [`run_page`]. The default is the
/// newest page, unfiltered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunPageQuery {
    /// Runs with an id below this (the last id of the page before).
    pub before: Option<i64>,
    pub status: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

pub async fn run_get(client: &impl GenericClient, run_id: i64) -> Result<Option<RunRow>, DbError> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM crondeck.runs WHERE id = $1");
    let row = client.query_opt(&sql, &[&run_id]).await?;
    row.as_ref().map(run_from_row).transpose()
}

/// Delete up to `batch` finished runs that are both beyond the newest
/// `keep_runs` of their job and older than `keep_days`. Returns how many.
pub async fn run_prune(
    client: &impl GenericClient,
    keep_runs: i64,
    keep_days: i32,
    batch: i64,
) -> Result<u64, DbError> {
    let deleted = client
        .execute(
            "DELETE FROM crondeck.runs WHERE id IN (
                 SELECT id FROM (
                     SELECT id, coalesce(ended_at, scheduled_for) AS at,
                            row_number() OVER (PARTITION BY job_id ORDER BY id DESC) AS newer
                     FROM crondeck.runs WHERE status <> 'running'
                 ) ranked
                 WHERE newer > $1 AND at < now() - make_interval(days => $2::int)
                 LIMIT $3)",
            &[&keep_runs, &keep_days, &batch],
        )
        .await?;
    Ok(deleted)
}

/// Typical (median) duration in ms of each job's newest `per_job` finished
/// runs, by job id, for the console's jobs table. Skipped and running rows
/// are left out; jobs with no finished run are absent.
pub async fn run_typical_durations(
    client: &impl GenericClient,
    per_job: i64,
) -> Result<std::collections::HashMap<i64, i64>, DbError> {
    let rows = client
        .query(
            "SELECT job_id, (percentile_cont(0.5) WITHIN GROUP (ORDER BY ms))::bigint
             FROM (SELECT job_id, extract(epoch FROM ended_at - started_at) * 1000 AS ms,
                          row_number() OVER (PARTITION BY job_id ORDER BY id DESC) AS newer
                   FROM crondeck.runs
                   WHERE status NOT IN ('running', 'skipped')
                     AND started_at IS NOT NULL AND ended_at IS NOT NULL) recent
             WHERE newer <= $1
             GROUP BY job_id",
            &[&per_job],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
