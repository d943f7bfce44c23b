//! Operator actions: every change a person makes to a job (from the command
//! line, the console or a jobs file) goes through here, so each one is checked
//! the same way and leaves exactly one audit row in the same transaction as the
//! change. Validation happens before anything is written; a refused action
//! changes nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use crate::db::audit::{audit_insert, Actor, AuditEntry};
use crate::db::claim::skip_ticks;
use crate::db::jobs::{
    job_delete, job_get, job_insert, job_update_nextcall, job_update_pause, job_update_priority,
    job_update_schedule, job_update_timeout,
};
use crate::db::runs::TickReason;
use crate::db::DbError;
use crate::job::{Job, JobSpec, Pause};
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
        OpsError::Db(DbError::Postgres(e))
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
    let job = job_insert(
        &tx,
        spec,
        nextcall,
        pause.as_ref(),
        opts.managed_by.as_deref(),
    )
    .await?;
    let entry = AuditEntry {
        job_id: Some(job.id),
        job_name: &job.spec.name,
        action: "create",
        old: None,
        new: Some(json!(job.to_json(now))),
        reason: None,
    };
    audit_insert(&tx, actor, &entry).await?;
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
}

impl JobChanges {
    pub fn is_empty(&self) -> bool {
        self.schedule.is_none()
            && self.next.is_none()
            && self.priority.is_none()
            && self.timeout.is_none()
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
    if changes.is_empty() {
        return Err(OpsError::Invalid(
            "nothing to change (expected one of --every, --cron, --manual, --next, --priority, --timeout)"
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
    let tx = client.transaction().await?;
    let job = job_get(&tx, name, true).await?;
    let now = db_now(&tx).await?;
    let mut old = serde_json::Map::new();
    let mut new = serde_json::Map::new();

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
        old.insert("schedule".into(), json!(job.spec.schedule.to_string()));
        new.insert("schedule".into(), json!(new_schedule.to_string()));
    }
    if next != job.nextcall {
        old.insert("nextcall".into(), json!(job.nextcall));
        new.insert("nextcall".into(), json!(next));
    }
    if changes.schedule.is_some() {
        job_update_schedule(&tx, job.id, schedule, next).await?;
    } else if let Some(at) = next.filter(|_| changes.next.is_some()) {
        job_update_nextcall(&tx, job.id, at).await?;
    }
    if let Some(priority) = changes.priority {
        old.insert("priority".into(), json!(job.spec.priority));
        new.insert("priority".into(), json!(priority));
        job_update_priority(&tx, job.id, priority).await?;
    }
    if let Some(timeout) = changes.timeout {
        old.insert(
            "timeout_seconds".into(),
            json!(job.spec.timeout.map(|t| t.as_secs())),
        );
        new.insert(
            "timeout_seconds".into(),
            json!(timeout.map(|t| t.as_secs())),
        );
        job_update_timeout(&tx, job.id, timeout).await?;
    }
    audit(
        &tx,
        actor,
        &job,
        "set",
        Value::Object(old),
        Value::Object(new),
        None,
    )
    .await?;
    let updated = job_get(&tx, name, false).await?;
    tx.commit().await?;
    Ok(updated)
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
    let tx = client.transaction().await?;
    let job = job_get(&tx, name, true).await?;
    if job.is_done() {
        return Err(OpsError::Invalid(format!(
            "job \"{name}\" is done (no runs left); there is nothing to pause"
        )));
    }
    let now = db_now(&tx).await?;
    let until = match duration {
        Some(d) => Some(
            now + chrono::Duration::from_std(d)
                .map_err(|_| OpsError::Invalid("pause duration is too long".into()))?,
        ),
        None => None,
    };
    let pause = Pause {
        at: now,
        by: Some(actor.label()),
        reason: reason.map(str::to_string),
        until,
    };
    job_update_pause(&tx, job.id, Some(&pause)).await?;
    let old = json!({ "active": job.active, "paused": job.pause });
    let new = json!({ "active": false, "paused": pause });
    audit(&tx, actor, &job, "pause", old, new, reason).await?;
    let updated = job_get(&tx, name, false).await?;
    tx.commit().await?;
    Ok(updated)
}

/// Resume a paused job. Resuming an active job changes nothing and writes no
/// audit row; the result says whether anything changed.
pub async fn resume(
    client: &mut impl GenericClient,
    actor: &Actor,
    name: &str,
) -> Result<(Job, bool)> {
    let tx = client.transaction().await?;
    let job = job_get(&tx, name, true).await?;
    if job.is_done() {
        return Err(OpsError::Invalid(format!(
            "job \"{name}\" is done (no runs left); give it runs again before resuming"
        )));
    }
    if job.active {
        return Ok((job, false));
    }
    job_update_pause(&tx, job.id, None).await?;
    // Ticks that passed while paused are not run late: they are recorded as
    // one skipped row, and the job waits for its next slot.
    let now = db_now(&tx).await?;
    if let Some(tick) = job.nextcall.filter(|tick| *tick <= now) {
        let (next, _) = skip_ticks(&tx, &job, tick, now, TickReason::Paused).await?;
        if let Some(next) = next {
            job_update_nextcall(&tx, job.id, next).await?;
        }
    }
    let old = json!({ "active": false, "paused": job.pause });
    let new = json!({ "active": true });
    audit(&tx, actor, &job, "resume", old, new, None).await?;
    let updated = job_get(&tx, name, false).await?;
    tx.commit().await?;
    Ok((updated, true))
}

/// Remove a job and its history. The audit trail keeps its definition.
pub async fn remove(client: &mut impl GenericClient, actor: &Actor, name: &str) -> Result<Job> {
    let tx = client.transaction().await?;
    let job = job_get(&tx, name, true).await?;
    let now = db_now(&tx).await?;
    job_delete(&tx, job.id).await?;
    audit(
        &tx,
        actor,
        &job,
        "remove",
        json!(job.to_json(now)),
        Value::Null,
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(job)
}

async fn audit(
    client: &impl GenericClient,
    actor: &Actor,
    job: &Job,
    action: &str,
    old: Value,
    new: Value,
    reason: Option<&str>,
) -> Result<()> {
    let entry = AuditEntry {
        job_id: Some(job.id),
        job_name: &job.spec.name,
        action,
        old: Some(old).filter(|v| !v.is_null()),
        new: Some(new).filter(|v| !v.is_null()),
        reason,
    };
    audit_insert(client, actor, &entry).await?;
    Ok(())
}

/// Request a run now ("run now"). It starts on any live node that can run the
/// job, as soon as the job is not running; it does not move `nextcall`.
/// Returns the request id (an already pending request is joined, not doubled).
pub async fn run_now(client: &mut impl GenericClient, actor: &Actor, name: &str) -> Result<i64> {
    let tx = client.transaction().await?;
    let job = job_get(&tx, name, false).await?;
    let request_id = crate::db::requests::request_manual(&tx, name, &actor.label()).await?;
    audit(
        &tx,
        actor,
        &job,
        "run",
        Value::Null,
        json!({ "request_id": request_id }),
        None,
    )
    .await?;
    tx.commit().await?;
    Ok(request_id)
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
    let applied: Vec<_> = changes.iter().filter(|c| c.applied).collect();
    if applied.is_empty() {
        tx.commit().await?;
        return Ok((job, changes));
    }
    crate::db::jobs::job_update_definition(&tx, job.id, spec, Some(managed_by)).await?;
    if reset_schedule {
        if job.spec.schedule != spec.schedule {
            let now = db_now(&tx).await?;
            let next = rescheduled_nextcall(&spec.schedule, job.nextcall, now);
            job_update_schedule(&tx, job.id, &spec.schedule, next).await?;
        }
        if job.spec.priority != spec.priority {
            job_update_priority(&tx, job.id, spec.priority).await?;
        }
    }
    let old: serde_json::Map<String, Value> = applied
        .iter()
        .map(|c| (c.field.to_string(), json!(c.old)))
        .collect();
    let new: serde_json::Map<String, Value> = applied
        .iter()
        .map(|c| (c.field.to_string(), json!(c.new)))
        .collect();
    let reason = format!("apply ({managed_by})");
    audit(
        &tx,
        actor,
        &job,
        "apply",
        Value::Object(old),
        Value::Object(new),
        Some(&reason),
    )
    .await?;
    let updated = job_get(&tx, &spec.name, false).await?;
    tx.commit().await?;
    Ok((updated, changes))
}
