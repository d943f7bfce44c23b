//! Operator actions: every change a person makes to a job (from the command
//! line, the console or a jobs file) goes through here, so each one is checked
//! the same way. The database writes the audit row of each change itself, in
//! the same transaction (triggers on `crondeck.jobs`); this module only tells
//! it who is acting and why (`audit_context`). Validation happens before
//! anything is written; a refused action changes nothing.

use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use tokio_postgres::GenericClient;

use crate::db::audit::{audit_context, Actor};
use crate::db::jobs::{
    job_delete, job_get, job_get_or_unreadable, job_insert, job_update_definition,
    job_update_failure_policy, job_update_timeout, schedule_columns,
};
use crate::db::DbError;
use crate::job::{FailurePolicy, Job, JobSpec, Pause};
use crate::schedule::Schedule;
use crate::timespec;

/// Why an action was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The input is wrong; the message says what was expected.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<tokio_postgres::Error> for OpsError {
    fn from(e: tokio_postgres::Error) -> Self {
        OpsError::Db(DbError::from(e))
    }
}

type Result<T> = std::result::Result<T, OpsError>;

/// The database's clock: due-ness and "in the past" are judged by it, not by
/// this host's clock (SPEC §3.4).
pub async fn db_now(client: &impl GenericClient) -> Result<DateTime<Utc>> {
    Ok(client.query_one("SELECT now()", &[]).await?.try_get(0)?)
}

/// Resolve a "when" typed by an operator ("now", "+15m", a local time) against
/// the database clock. Times in the past are refused: "now" says it better.
pub fn resolve_next(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let at = timespec::parse_when(input, now, &chrono::Local)
        .map_err(|e| OpsError::Invalid(e.to_string()))?;
    // The database stores times up to the end of the year 9999.
    if at.year() > 9999 {
        return Err(OpsError::Invalid(format!(
            "next run {} is too far in the future (at most the year 9999)",
            crate::timefmt::local(at)
        )));
    }
    // One second of slack: "now" typed a moment ago is not "the past".
    if at < now - chrono::Duration::seconds(1) {
        return Err(OpsError::Invalid(format!(
            "next run {} is in the past (database time is {}); use \"now\" to run at the next opportunity",
            crate::timefmt::local(at),
            crate::timefmt::local(now)
        )));
    }
    Ok(at)
}

/// How a new job is created.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    /// First run: "now", "+15m" or a local time; default from the schedule.
    pub next: Option<String>,
    /// Create paused, with this reason.
    pub paused: Option<Option<String>>,
    /// The jobs file that manages this job, if any.
    pub managed_by: Option<String>,
}

/// Create a job.
pub async fn add(
    client: &mut impl GenericClient,
    actor: &Actor,
    spec: &JobSpec,
    opts: &AddOptions,
) -> Result<Job> {
    spec.validate().map_err(OpsError::Invalid)?;
    let tx = client.transaction().await?;
    let now = db_now(&tx).await?;
    let nextcall = first_nextcall(&spec.schedule, opts.next.as_deref(), now)?;
    let pause = opts.paused.as_ref().map(|reason| Pause {
        at: now,
        by: Some(actor.label()),
        reason: reason.clone(),
        until: None,
    });
    audit_context(&tx, actor, None, None).await?;
    let job = job_insert(
        &tx,
        spec,
        nextcall,
        pause.as_ref(),
        opts.managed_by.as_deref(),
    )
    .await?;
    tx.commit().await?;
    Ok(job)
}

fn first_nextcall(
    schedule: &Schedule,
    next: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>> {
    match (schedule, next) {
        (Schedule::Manual, Some(_)) => Err(OpsError::Invalid(
            "a manual job has no next run (it runs only when triggered); drop --next or give a schedule"
                .into(),
        )),
        (_, Some(text)) => resolve_next(text, now).map(Some),
        (schedule, None) => Ok(schedule.first_tick(now)),
    }
}

/// What `set` changes; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct JobChanges {
    pub schedule: Option<Schedule>,
    pub next: Option<String>,
    pub priority: Option<i32>,
    pub timeout: Option<Option<Duration>>,
    pub failure: FailureChanges,
}

/// Failure-policy fields `set` changes; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailureChanges {
    pub threshold: Option<i32>,
    pub min_age: Option<Duration>,
    pub retries: Option<i32>,
    pub retry_backoff: Option<Duration>,
}

impl FailureChanges {
    pub fn is_empty(&self) -> bool {
        *self == FailureChanges::default()
    }

    /// `policy` with these changes made.
    pub fn applied_to(&self, policy: &FailurePolicy) -> FailurePolicy {
        FailurePolicy {
            threshold: self.threshold.unwrap_or(policy.threshold),
            min_age: self.min_age.unwrap_or(policy.min_age),
            retry_max: self.retries.unwrap_or(policy.retry_max),
            retry_backoff: self.retry_backoff.unwrap_or(policy.retry_backoff),
            notify_after: policy.notify_after,
        }
    }
}

impl JobChanges {
    pub fn is_empty(&self) -> bool {
        self.schedule.is_none()
            && self.next.is_none()
            && self.priority.is_none()
            && self.timeout.is_none()
            && self.failure.is_empty()
    }
}

/// Change a job's schedule, next run, priority or timeout. A running job keeps
/// running; the change applies from its next tick (SPEC §3.14).
pub async fn set(
    client: &mut impl GenericClient,
    actor: &Actor,
    name: &str,
    changes: &JobChanges,
) -> Result<Job> {
    set_expecting(client, actor, name, changes, None).await
}

/// What an operator saw when deciding on a change (a console dialog opened
/// on it). A change made "expecting" it is refused, with nothing written
/// and no audit row, when the job no longer had that value at the moment
/// the change locked it: no one's edit is lost silently.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Priority(i32),
    Schedule(Schedule),
    Active(bool),
}

impl Expect {
    /// The audited column (see `crondeck.jobs_audit`) and the value seen.
    fn column(&self) -> (&'static str, serde_json::Value) {
        match self {
            Expect::Priority(p) => ("priority", serde_json::json!(p)),
            Expect::Schedule(s) => ("schedule", serde_json::json!(s.to_string())),
            Expect::Active(a) => ("active", serde_json::json!(a)),
        }
    }

    fn current(&self, job: &Job) -> serde_json::Value {
        match self {
            Expect::Priority(_) => serde_json::json!(job.spec.priority),
            Expect::Schedule(_) => serde_json::json!(job.spec.schedule.to_string()),
            Expect::Active(_) => serde_json::json!(job.active),
        }
    }
}

/// Inside the change's transaction, after its `crondeck.op_*` call locked
/// and changed the row: the value the job had just before is the old value
/// of this transaction's first audit row that changed that column (the
/// audit is written by the database from the locked row, so no other
/// change can come between); when no row changed it, the job had the value
/// it has now. Anything else than `expect` is a conflict.
async fn check_expected(
    tx: &impl GenericClient,
    name: &str,
    job_id: i64,
    expect: &Expect,
) -> Result<()> {
    let (column, seen) = expect.column();
    let row = tx
        .query_opt(
            "SELECT old_value -> $2::text FROM crondeck.audit
             WHERE job_id = $1 AND at = now() AND old_value ? $2::text
             ORDER BY id LIMIT 1",
            &[&job_id, &column],
        )
        .await?;
    let before: serde_json::Value = match row {
        Some(row) => row.try_get(0)?,
        None => expect.current(&job_get(tx, name, false).await?),
    };
    if before == seen {
        return Ok(());
    }
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(true) if column == "active" => "active".to_string(),
        serde_json::Value::Bool(false) if column == "active" => "paused".to_string(),
        other => other.to_string(),
    };
    Err(OpsError::Invalid(format!(
        "\"{name}\" was changed meanwhile: its {column} was {} when you decided, and is {} now; \
         nothing was changed (look again, then retry)",
        show(&seen),
        show(&before)
    )))
}

/// [`set`], refused if the job no longer has what `expect` says (see
/// [`Expect`]).
pub async fn set_expecting(
    client: &mut impl GenericClient,
    actor: &Actor,
    name: &str,
    changes: &JobChanges,
    expect: Option<&Expect>,
) -> Result<Job> {
    if changes.is_empty() {
        return Err(OpsError::Invalid(
            "nothing to change (expected one of --every, --cron, --manual, --next, --priority, --timeout, \
             --failure-threshold, --failure-min-age, --retries, --retry-backoff)"
                .into(),
        ));
    }
    if let Some(priority) = changes.priority {
        if priority < 0 {
            return Err(OpsError::Invalid(format!(
                "priority {priority} is negative (expected 0 = most urgent or a larger number)"
            )));
        }
    }
    if changes.timeout == Some(Some(Duration::ZERO)) {
        return Err(OpsError::Invalid(
            "a timeout of zero is not allowed (use \"none\" for no timeout)".into(),
        ));
    }
    if !changes.failure.is_empty() {
        // Bounds first, with the flag names; the whole policy is checked again below.
        changes
            .failure
            .applied_to(&FailurePolicy::default())
            .validate()
            .map_err(OpsError::Invalid)?;
    }
    let tx = client.transaction().await?;
    // No row lock here: operators may not lock job rows; each crondeck.op_*
    // function locks the row itself and writes its own audit row.
    // A job this crondeck cannot read can be repaired by giving it a schedule.
    let job = job_get_or_unreadable(&tx, name, false).await?;
    if let (Some(reason), None) = (&job.unreadable, &changes.schedule) {
        return Err(OpsError::Invalid(format!(
            "job \"{name}\" is unreadable ({reason}); give it a new schedule (--every, --cron or --manual) to repair it"
        )));
    }
    let now = db_now(&tx).await?;
    let schedule = changes.schedule.as_ref().unwrap_or(&job.spec.schedule);
    let next = match (&changes.schedule, &changes.next) {
        (_, Some(text)) => {
            if matches!(schedule, Schedule::Manual) {
                return Err(OpsError::Invalid(format!(
                    "job \"{name}\" is manual: it has no next run (use `crondeck run {name}` to run it, or give it a schedule)"
                )));
            }
            Some(resolve_next(text, now)?)
        }
        (Some(new_schedule), None) => rescheduled_nextcall(new_schedule, job.nextcall, now),
        (None, None) => job.nextcall,
    };
    if let Some(new_schedule) = &changes.schedule {
        let (kind, count, unit, expr, tz) = schedule_columns(new_schedule);
        tx.execute(
            "SELECT crondeck.op_reschedule($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &name,
                &kind,
                &count,
                &unit,
                &expr,
                &tz,
                &next,
                &actor.os_user,
                &actor.host,
            ],
        )
        .await
        .map_err(|e| op_error(e, name))?;
    } else if let (Some(at), Some(_)) = (next, &changes.next) {
        tx.execute(
            "SELECT crondeck.op_set_nextcall($1, $2, $3, $4)",
            &[&name, &at, &actor.os_user, &actor.host],
        )
        .await
        .map_err(|e| op_error(e, name))?;
    }
    if let Some(priority) = changes.priority {
        tx.execute(
            "SELECT crondeck.op_set_priority($1, $2, $3, $4)",
            &[&name, &priority, &actor.os_user, &actor.host],
        )
        .await
        .map_err(|e| op_error(e, name))?;
    }
    if let Some(timeout) = changes.timeout {
        // What a job executes (and for how long) is a definition: admins only,
        // through a direct write the operator role is not granted.
        audit_context(&tx, actor, None, Some("set-timeout")).await?;
        job_update_timeout(&tx, job.id, timeout).await?;
    }
    if !changes.failure.is_empty() {
        // The failure policy is a definition too (admins only); the database
        // audits it as an `update` with the old and new values.
        let policy = changes.failure.applied_to(&job.spec.failure);
        policy.validate().map_err(OpsError::Invalid)?;
        if policy != job.spec.failure {
            audit_context(&tx, actor, None, None).await?;
            job_update_failure_policy(&tx, job.id, &policy).await?;
        }
    }
    if let Some(expect) = expect {
        check_expected(&tx, name, job.id, expect).await?;
    }
    let updated = job_get(&tx, name, false).await?;
    tx.commit().await?;
    Ok(updated)
}

/// Turn an error from a `crondeck.op_*` function into what the operator
/// should read: SQLSTATE decides, never the message text.
fn op_error(error: tokio_postgres::Error, name: &str) -> OpsError {
    use tokio_postgres::error::SqlState;
    let code = error.code().cloned();
    match code {
        Some(SqlState::NO_DATA_FOUND) => OpsError::Db(DbError::JobNotFound(name.to_string())),
        Some(SqlState::INVALID_PARAMETER_VALUE) | Some(SqlState::CHECK_VIOLATION) => {
            let message = error
                .as_db_error()
                .map_or_else(|| error.to_string(), |db| db.message().to_string());
            OpsError::Invalid(message)
        }
        _ => OpsError::Db(DbError::from(error)),
    }
}

/// The next tick after a schedule change with no explicit `--next`: a cron
/// schedule takes its next slot; an interval keeps the current tick unless the
/// new interval would fire sooner, so shortening an interval takes effect at
/// once and lengthening it does not skip a tick already promised.
fn rescheduled_nextcall(
    schedule: &Schedule,
    current: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    match schedule {
        Schedule::Manual => None,
        Schedule::Cron(_) => schedule.next_after(now),
        Schedule::Every(_) => {
            let soonest = schedule.next_after(now);
            match (current, soonest) {
                (Some(current), Some(soonest)) => Some(current.min(soonest)),
                (current, soonest) => current.or(soonest),
            }
        }
    }
}

/// Pause a job, optionally with a reason and an automatic resume time.
pub async fn pause(
    client: &mut impl GenericClient,
    actor: &Actor,
    name: &str,
    reason: Option<&str>,
    duration: Option<Duration>,
) -> Result<Job> {
    // The database refuses longer pauses too (crondeck.op_pause).
    const MAX_PAUSE: Duration = Duration::from_secs(100 * 365 * 86_400);
    if duration.is_some_and(|d| d > MAX_PAUSE) {
        return Err(OpsError::Invalid(
            "a pause lasts at most 100 years (leave out --for to pause until resumed)".into(),
        ));
    }
    let seconds = duration.map(|d| d.as_secs_f64());
    client
        .execute(
            "SELECT crondeck.op_pause($1, $2, $3, $4, $5)",
            &[&name, &reason, &seconds, &actor.os_user, &actor.host],
        )
        .await
        .map_err(|e| op_error(e, name))?;
    Ok(job_get(client, name, false).await?)
}

/// [`pause`] of a job the operator saw active: refused, with nothing
/// written, if someone paused it meanwhile (see [`Expect`]).
pub async fn pause_active(
    client: &mut impl GenericClient,
    actor: &Actor,
    name: &str,
    reason: Option<&str>,
    duration: Option<Duration>,
) -> Result<Job> {
    let mut tx = client.transaction().await?;
    let job = pause(&mut tx, actor, name, reason, duration).await?;
    check_expected(&tx, name, job.id, &Expect::Active(true)).await?;
    tx.commit().await?;
    Ok(job)
}

/// Resume a paused job. Resuming an active job changes nothing and writes no
/// audit row; the result says whether anything changed. Ticks that passed
/// while paused are not run late: they become one skipped row, and the job
/// waits for its next slot.
pub async fn resume(
    client: &mut impl GenericClient,
    actor: &Actor,
    name: &str,
) -> Result<(Job, bool)> {
    // The job may change between our read and the function's lock (the
    // function then refuses with serialization_failure): read again, once.
    let mut attempts = 0;
    loop {
        let job = job_get(client, name, false).await?;
        if job.is_done() {
            return Err(OpsError::Invalid(format!(
                "job \"{name}\" is done (no runs left); give it runs again before resuming"
            )));
        }
        if job.active {
            return Ok((job, false));
        }
        let now = db_now(client).await?;
        let skipped = job
            .nextcall
            .filter(|tick| *tick <= now)
            .and_then(|tick| job.spec.schedule.advance(tick, now).map(|a| (tick, a)));
        let (from, ticks, next) = match skipped {
            Some((tick, advance)) => (
                Some(tick),
                i32::try_from(advance.missed.saturating_add(1)).unwrap_or(i32::MAX),
                Some(advance.next),
            ),
            None => (None, 0, None),
        };
        let result = client
            .query_one(
                "SELECT crondeck.op_resume($1, $2, $3, $4, $5, $6)",
                &[&name, &from, &ticks, &next, &actor.os_user, &actor.host],
            )
            .await;
        match result {
            Ok(row) => {
                let changed: bool = row.try_get(0)?;
                return Ok((job_get(client, name, false).await?, changed));
            }
            Err(e)
                if attempts == 0
                    && e.code()
                        == Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE) =>
            {
                attempts += 1;
            }
            Err(e) => return Err(op_error(e, name)),
        }
    }
}

/// Remove a job and its history. The audit trail keeps its definition.
pub async fn remove(client: &mut impl GenericClient, actor: &Actor, name: &str) -> Result<Job> {
    let tx = client.transaction().await?;
    let job = job_get_or_unreadable(&tx, name, true).await?;
    audit_context(&tx, actor, None, None).await?;
    job_delete(&tx, job.id).await?;
    tx.commit().await?;
    Ok(job)
}

/// Request a run now ("run now"). It starts on any live node that can run the
/// job, as soon as the job is not running; it does not move `nextcall`.
/// Returns the request id (an already pending request is joined, not doubled).
pub async fn run_now(client: &mut impl GenericClient, actor: &Actor, name: &str) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT crondeck.op_run_now($1, $2, $3)",
            &[&name, &actor.os_user, &actor.host],
        )
        .await
        .map_err(|e| op_error(e, name))?;
    Ok(row.try_get(0)?)
}

/// Ask the node running `name`'s current run to stop it (SPEC §3.17): it
/// does so within one heartbeat, on whatever host, and records the run
/// `cancelled` with who asked. Audited. Refused when nothing is running.
/// Returns the run's id.
pub async fn cancel(
    client: &mut impl GenericClient,
    actor: &Actor,
    name: &str,
    reason: Option<&str>,
) -> Result<i64> {
    let row = client
        .query_one(
            "SELECT crondeck.op_cancel($1, $2, $3, $4)",
            &[&name, &reason, &actor.os_user, &actor.host],
        )
        .await
        .map_err(|e| op_error(e, name))?;
    Ok(row.try_get(0)?)
}

/// Update a job's definition from a jobs file (`apply`): what it runs and
/// how, and who manages it. Schedule and priority are operator-owned and only
/// restored with `reset_schedule`; pause state, `nextcall` (unless the
/// schedule itself changes) and `numbercall` are never touched. Returns the
/// fields that differed (applied or kept); nothing is written or audited when
/// no applied field differs.
pub async fn update_definition(
    client: &mut impl GenericClient,
    actor: &Actor,
    spec: &JobSpec,
    managed_by: &str,
    reset_schedule: bool,
) -> Result<(Job, Vec<crate::apply::FieldChange>)> {
    spec.validate().map_err(OpsError::Invalid)?;
    let tx = client.transaction().await?;
    let job = job_get(&tx, &spec.name, true).await?;
    let changes = crate::apply::diff(&job, spec, managed_by, reset_schedule);
    if !changes.iter().any(|c| c.applied) {
        tx.commit().await?;
        return Ok((job, changes));
    }
    let now = db_now(&tx).await?;
    // One statement, so the database writes one audit row for the whole apply.
    let schedule = (reset_schedule && job.spec.schedule != spec.schedule).then(|| {
        (
            &spec.schedule,
            rescheduled_nextcall(&spec.schedule, job.nextcall, now),
        )
    });
    let priority = (reset_schedule && job.spec.priority != spec.priority).then_some(spec.priority);
    let reason = format!("apply ({managed_by})");
    audit_context(&tx, actor, Some(&reason), Some("apply")).await?;
    job_update_definition(&tx, job.id, spec, Some(managed_by), schedule, priority).await?;
    let updated = job_get(&tx, &spec.name, false).await?;
    tx.commit().await?;
    Ok((updated, changes))
}
