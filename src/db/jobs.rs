//! Queries on `crondeck.jobs`. Every function takes any `GenericClient`, so it
//! runs on a plain connection or inside the caller's transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use crate::job::{ActionKind, Catchup, FailurePolicy, Job, JobRuntime, JobSpec, Pause};
use crate::schedule::Schedule;

use super::DbError;

/// Columns read by `job_from_row`, in order.
pub const JOB_COLUMNS: &str =
    "id, name, description, schedule_kind, interval_count, interval_unit, \
    cron_expr, cron_tz, catchup, nextcall, numbercall, priority, active, paused_at, paused_by, \
    paused_reason, paused_until, action_kind, command, timeout_ms, run_as, tags, \
    failure_threshold, failure_min_age_ms, retry_max, retry_backoff_ms, managed_by, created_at, \
    updated_at, first_due_at, last_run_id, last_started_at, last_ended_at, last_status, \
    last_duration_ms, last_success_at, failure_streak, failure_streak_since, running_run_id, \
    running_node_id, running_since, notify_failures";

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn duration_from_millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// `JOB_COLUMNS` qualified with a table alias, for queries with joins.
pub fn job_columns_of(alias: &str) -> String {
    JOB_COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column only some queries select (see `LAST_RUN_COLUMNS`).
fn optional<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    name: &str,
) -> Result<Option<T>, DbError> {
    if row.columns().iter().any(|c| c.name() == name) {
        Ok(row.try_get::<_, Option<T>>(name)?)
    } else {
        Ok(None)
    }
}

/// Display extras about the last run and the running node, for lists.
const LAST_RUN_COLUMNS: &str = "lr.exit_code AS last_exit_code, lr.signal AS last_signal, \
    lr.sqlstate AS last_sqlstate, split_part(lr.error, E'\\n', 1) AS last_error, \
    rn.name AS running_node_name";

/// Turn a row selected with `JOB_COLUMNS` into a `Job`. A row this binary
/// cannot read (a schedule it refuses, a value it cannot decode) is
/// `DbError::Corrupt`, naming the job.
pub fn job_from_row(row: &Row) -> Result<Job, DbError> {
    let name: String = row.try_get("name")?;
    // The row is already here: any error decoding it is about its contents.
    decode_job(row, &name).map_err(|e| match e {
        DbError::Postgres(e) => DbError::Corrupt(format!("job \"{name}\": {e}")),
        other => other,
    })
}

/// A row as `job_from_row` reads it, or, when this crondeck cannot read it, a
/// placeholder marked `unreadable` with the reason (manual schedule, paused,
/// the fields that could be read), so that a list shows it and goes on.
pub fn job_from_row_or_unreadable(row: &Row) -> Result<Job, DbError> {
    match job_from_row(row) {
        Err(DbError::Corrupt(reason)) => Ok(unreadable_job(row, reason)?),
        other => other,
    }
}

fn unreadable_job(row: &Row, reason: String) -> Result<Job, DbError> {
    let name: String = row.try_get("name")?;
    let action = row
        .try_get::<_, String>("action_kind")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(ActionKind::Sql);
    let command: String = row.try_get("command").unwrap_or_default();
    let created_at = row
        .try_get("created_at")
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    let mut spec = JobSpec::new(&name, Schedule::Manual, action, &command);
    spec.description = row.try_get("description").unwrap_or_default();
    spec.tags = row.try_get("tags").unwrap_or_default();
    Ok(Job {
        id: row.try_get("id")?,
        spec,
        nextcall: None,
        active: false,
        pause: Some(Pause {
            at: created_at,
            by: Some("crondeck".to_string()),
            reason: Some(format!("unreadable: {reason}")),
            until: None,
        }),
        managed_by: row.try_get("managed_by").unwrap_or_default(),
        created_at,
        updated_at: row.try_get("updated_at").unwrap_or(created_at),
        runtime: JobRuntime::default(),
        unreadable: Some(reason),
    })
}

fn decode_job(row: &Row, name: &str) -> Result<Job, DbError> {
    let name = name.to_string();
    let schedule = Schedule::from_parts(
        row.try_get::<_, String>("schedule_kind")?.as_str(),
        row.try_get("interval_count")?,
        row.try_get::<_, Option<String>>("interval_unit")?
            .as_deref(),
        row.try_get::<_, Option<String>>("cron_expr")?.as_deref(),
        row.try_get::<_, Option<String>>("cron_tz")?.as_deref(),
    )
    .map_err(|e| DbError::Corrupt(format!("job \"{name}\": stored schedule is invalid: {e}")))?;
    let corrupt = |e: String| DbError::Corrupt(format!("job \"{name}\": {e}"));
    let catchup: Catchup = row
        .try_get::<_, String>("catchup")?
        .parse()
        .map_err(corrupt)?;
    let action: ActionKind = row
        .try_get::<_, String>("action_kind")?
        .parse()
        .map_err(corrupt)?;
    let pause = row
        .try_get::<_, Option<DateTime<Utc>>>("paused_at")?
        .map(|at| -> Result<Pause, DbError> {
            Ok(Pause {
                at,
                by: row.try_get("paused_by")?,
                reason: row.try_get("paused_reason")?,
                until: row.try_get("paused_until")?,
            })
        })
        .transpose()?;
    Ok(Job {
        id: row.try_get("id")?,
        spec: JobSpec {
            name,
            description: row.try_get("description")?,
            schedule,
            catchup,
            numbercall: row.try_get("numbercall")?,
            priority: row.try_get("priority")?,
            action,
            command: row.try_get("command")?,
            timeout: row
                .try_get::<_, Option<i64>>("timeout_ms")?
                .map(duration_from_millis),
            run_as: row.try_get("run_as")?,
            tags: row.try_get("tags")?,
            failure: FailurePolicy {
                threshold: row.try_get("failure_threshold")?,
                min_age: duration_from_millis(row.try_get("failure_min_age_ms")?),
                retry_max: row.try_get("retry_max")?,
                retry_backoff: duration_from_millis(row.try_get("retry_backoff_ms")?),
                notify_after: row.try_get("notify_failures")?,
            },
        },
        nextcall: row.try_get("nextcall")?,
        active: row.try_get("active")?,
        pause,
        managed_by: row.try_get("managed_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        runtime: JobRuntime {
            first_due_at: row.try_get("first_due_at")?,
            last_run_id: row.try_get("last_run_id")?,
            last_started_at: row.try_get("last_started_at")?,
            last_ended_at: row.try_get("last_ended_at")?,
            last_status: row.try_get("last_status")?,
            last_duration_ms: row.try_get("last_duration_ms")?,
            last_success_at: row.try_get("last_success_at")?,
            failure_streak: row.try_get("failure_streak")?,
            failure_streak_since: row.try_get("failure_streak_since")?,
            running_run_id: row.try_get("running_run_id")?,
            running_node_id: row.try_get("running_node_id")?,
            running_since: row.try_get("running_since")?,
            last_exit_code: optional(row, "last_exit_code")?,
            last_signal: optional(row, "last_signal")?,
            last_sqlstate: optional(row, "last_sqlstate")?,
            last_error: optional(row, "last_error")?,
            running_node_name: optional(row, "running_node_name")?,
        },
        unreadable: None,
    })
}

/// Schedule columns: (kind, interval_count, interval_unit, cron_expr, cron_tz).
pub type ScheduleColumns = (
    &'static str,
    Option<i32>,
    Option<&'static str>,
    Option<String>,
    Option<String>,
);

/// The columns a schedule is stored in.
pub fn schedule_columns(schedule: &Schedule) -> ScheduleColumns {
    match schedule {
        Schedule::Every(interval) => (
            "every",
            i32::try_from(interval.count).ok(),
            Some(interval.unit.as_str()),
            None,
            None,
        ),
        Schedule::Cron(cron) => (
            "cron",
            None,
            None,
            Some(cron.expr().to_string()),
            Some(cron.tz().name().to_string()),
        ),
        Schedule::Manual => ("manual", None, None, None, None),
    }
}

/// Insert a new job. A duplicate name is `DbError::Duplicate`.
pub async fn job_insert(
    client: &impl GenericClient,
    spec: &JobSpec,
    nextcall: Option<DateTime<Utc>>,
    pause: Option<&Pause>,
    managed_by: Option<&str>,
) -> Result<Job, DbError> {
    let (kind, count, unit, expr, tz) = schedule_columns(&spec.schedule);
    let sql = format!(
        "INSERT INTO crondeck.jobs (name, description, schedule_kind, interval_count, interval_unit,
             cron_expr, cron_tz, catchup, nextcall, numbercall, priority, active, paused_at,
             paused_by, paused_reason, paused_until, action_kind, command, timeout_ms, run_as, tags,
             failure_threshold, failure_min_age_ms, retry_max, retry_backoff_ms, managed_by,
             notify_failures)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18,
             $19, $20, $21, $22, $23, $24, $25, $26, $27)
         RETURNING {JOB_COLUMNS}"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &spec.name,
                &spec.description,
                &kind,
                &count,
                &unit,
                &expr,
                &tz,
                &spec.catchup.as_str(),
                &nextcall,
                &spec.numbercall,
                &spec.priority,
                &pause.is_none(),
                &pause.map(|p| p.at),
                &pause.and_then(|p| p.by.clone()),
                &pause.and_then(|p| p.reason.clone()),
                &pause.and_then(|p| p.until),
                &spec.action.as_str(),
                &spec.command,
                &spec.timeout.map(millis),
                &spec.run_as,
                &spec.tags,
                &spec.failure.threshold,
                &millis(spec.failure.min_age),
                &spec.failure.retry_max,
                &millis(spec.failure.retry_backoff),
                &managed_by,
                &spec.failure.notify_after,
            ],
        )
        .await
        .map_err(|e| DbError::from_write(e, &spec.name))?;
    job_from_row(&row)
}

/// One job by name, optionally locking its row until the transaction ends.
pub async fn job_get(
    client: &impl GenericClient,
    name: &str,
    for_update: bool,
) -> Result<Job, DbError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {JOB_COLUMNS} FROM crondeck.jobs WHERE name = $1{lock}");
    match client.query_opt(&sql, &[&name]).await? {
        Some(row) => job_from_row(&row),
        None => Err(DbError::JobNotFound(name.to_string())),
    }
}

/// One job by name, like `job_get`, but a row this crondeck cannot read is a
/// placeholder marked `unreadable` instead of an error (for `show`; `set`,
/// which can repair it; `remove`).
pub async fn job_get_or_unreadable(
    client: &impl GenericClient,
    name: &str,
    for_update: bool,
) -> Result<Job, DbError> {
    let lock = if for_update { " FOR UPDATE" } else { "" };
    let sql = format!("SELECT {JOB_COLUMNS} FROM crondeck.jobs WHERE name = $1{lock}");
    match client.query_opt(&sql, &[&name]).await? {
        Some(row) => job_from_row_or_unreadable(&row),
        None => Err(DbError::JobNotFound(name.to_string())),
    }
}

/// All jobs, in (priority, nextcall, name) order, with their last result. A
/// row this crondeck cannot read is listed as an `unreadable` placeholder,
/// so one bad row never hides the others.
pub async fn job_list(client: &impl GenericClient) -> Result<Vec<Job>, DbError> {
    let columns = job_columns_of("j");
    let sql = format!(
        "SELECT {columns}, {LAST_RUN_COLUMNS}
         FROM crondeck.jobs j
         LEFT JOIN crondeck.runs lr ON lr.id = j.last_run_id
         LEFT JOIN crondeck.nodes rn ON rn.id = j.running_node_id
         ORDER BY j.priority, j.nextcall NULLS LAST, j.name"
    );
    let rows = client.query(&sql, &[]).await?;
    rows.iter().map(job_from_row_or_unreadable).collect()
}

/// The jobs `job_list` returns (only those tagged `tag`, if given), as a
/// stream decoded row by row as they arrive: `crondeck list` at 100,000 jobs
/// writes them as they come instead of holding them all.
pub async fn job_stream(
    client: &impl GenericClient,
    tag: Option<&str>,
) -> Result<impl futures_util::Stream<Item = Result<Job, DbError>>, DbError> {
    use futures_util::StreamExt as _;
    use tokio_postgres::types::ToSql;

    let columns = job_columns_of("j");
    let sql = format!(
        "SELECT {columns}, {LAST_RUN_COLUMNS}
         FROM crondeck.jobs j
         LEFT JOIN crondeck.runs lr ON lr.id = j.last_run_id
         LEFT JOIN crondeck.nodes rn ON rn.id = j.running_node_id
         WHERE $1::text IS NULL OR $1::text = ANY (j.tags)
         ORDER BY j.priority, j.nextcall NULLS LAST, j.name"
    );
    let params: [&(dyn ToSql + Sync); 1] = [&tag];
    let rows = client.query_raw(&sql, params).await?;
    Ok(rows.map(|row| job_from_row_or_unreadable(&row?)))
}

/// Replace a job's schedule and next tick.
pub async fn job_update_schedule(
    client: &impl GenericClient,
    id: i64,
    schedule: &Schedule,
    nextcall: Option<DateTime<Utc>>,
) -> Result<(), DbError> {
    let (kind, count, unit, expr, tz) = schedule_columns(schedule);
    client
        .execute(
            "UPDATE crondeck.jobs SET schedule_kind = $2, interval_count = $3, interval_unit = $4,
                 cron_expr = $5, cron_tz = $6, nextcall = $7, updated_at = now()
             WHERE id = $1",
            &[&id, &kind, &count, &unit, &expr, &tz, &nextcall],
        )
        .await?;
    Ok(())
}

pub async fn job_update_nextcall(
    client: &impl GenericClient,
    id: i64,
    nextcall: DateTime<Utc>,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE crondeck.jobs SET nextcall = $2, updated_at = now() WHERE id = $1",
            &[&id, &nextcall],
        )
        .await?;
    Ok(())
}

pub async fn job_update_priority(
    client: &impl GenericClient,
    id: i64,
    priority: i32,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE crondeck.jobs SET priority = $2, updated_at = now() WHERE id = $1",
            &[&id, &priority],
        )
        .await?;
    Ok(())
}

pub async fn job_update_timeout(
    client: &impl GenericClient,
    id: i64,
    timeout: Option<Duration>,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE crondeck.jobs SET timeout_ms = $2, updated_at = now() WHERE id = $1",
            &[&id, &timeout.map(millis)],
        )
        .await?;
    Ok(())
}

/// Replace a job's failure policy (`set --failure-threshold …`). The
/// per-job notification threshold stays as it is.
pub async fn job_update_failure_policy(
    client: &impl GenericClient,
    id: i64,
    policy: &crate::job::FailurePolicy,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE crondeck.jobs SET failure_threshold = $2, failure_min_age_ms = $3,
                 retry_max = $4, retry_backoff_ms = $5, updated_at = now()
             WHERE id = $1",
            &[
                &id,
                &policy.threshold,
                &millis(policy.min_age),
                &policy.retry_max,
                &millis(policy.retry_backoff),
            ],
        )
        .await?;
    Ok(())
}

pub async fn job_delete(client: &impl GenericClient, id: i64) -> Result<(), DbError> {
    client
        .execute("DELETE FROM crondeck.jobs WHERE id = $1", &[&id])
        .await?;
    Ok(())
}

/// Replace what a job executes and how (everything an admin defines except
/// the name, the schedule, priority and numbercall, which operators own), and
/// who manages it; with `schedule` and `priority`, those too. One statement,
/// so the database audits it as one change. Used by `apply`.
pub async fn job_update_definition(
    client: &impl GenericClient,
    id: i64,
    spec: &JobSpec,
    managed_by: Option<&str>,
    schedule: Option<(&Schedule, Option<DateTime<Utc>>)>,
    priority: Option<i32>,
) -> Result<(), DbError> {
    let (kind, count, unit, expr, tz) =
        schedule.map_or(("", None, None, None, None), |(s, _)| schedule_columns(s));
    let nextcall = schedule.and_then(|(_, next)| next);
    client
        .execute(
            "UPDATE crondeck.jobs SET description = $2, catchup = $3, action_kind = $4,
                 command = $5, timeout_ms = $6, run_as = $7, tags = $8, failure_threshold = $9,
                 failure_min_age_ms = $10, retry_max = $11, retry_backoff_ms = $12,
                 notify_failures = $13, managed_by = $14, updated_at = now(),
                 schedule_kind = CASE WHEN $15 THEN $16 ELSE schedule_kind END,
                 interval_count = CASE WHEN $15 THEN $17 ELSE interval_count END,
                 interval_unit = CASE WHEN $15 THEN $18 ELSE interval_unit END,
                 cron_expr = CASE WHEN $15 THEN $19 ELSE cron_expr END,
                 cron_tz = CASE WHEN $15 THEN $20 ELSE cron_tz END,
                 nextcall = CASE WHEN $15 THEN $21 ELSE nextcall END,
                 priority = coalesce($22, priority)
             WHERE id = $1",
            &[
                &id,
                &spec.description,
                &spec.catchup.as_str(),
                &spec.action.as_str(),
                &spec.command,
                &spec.timeout.map(millis),
                &spec.run_as,
                &spec.tags,
                &spec.failure.threshold,
                &millis(spec.failure.min_age),
                &spec.failure.retry_max,
                &millis(spec.failure.retry_backoff),
                &spec.failure.notify_after,
                &managed_by,
                &schedule.is_some(),
                &kind,
                &count,
                &unit,
                &expr,
                &tz,
                &nextcall,
                &priority,
            ],
        )
        .await
        .map_err(|e| DbError::from_write(e, &spec.name))?;
    Ok(())
}

/// What the console reads on a refresh: the jobs that changed since its
/// previous snapshot (all of them the first time), the jobs removed since,
/// and the live nodes, all from one snapshot (see `jobs_changed_since`).
#[derive(Debug)]
pub struct JobsDelta {
    /// Pass back as `since` on the next call: the snapshot's `xmin`.
    pub horizon: i64,
    /// The database's `now()` at the snapshot.
    pub db_now: DateTime<Utc>,
    /// `since` was `None`: `changed` holds every job.
    pub full: bool,
    /// Each with whether no live node may run it (no shell-enabled node,
    /// allow-lists), as `nodes::jobs_no_node_can_run` decides.
    pub changed: Vec<(Job, bool)>,
    pub removed: Vec<i64>,
    pub nodes: Vec<super::nodes::NodeRow>,
    /// A fingerprint of what decides runnability on the live nodes (ids,
    /// shell permission, allow-lists); when it differs from the caller's,
    /// `all_unrunnable` holds the whole set again.
    pub nodes_key: String,
    pub all_unrunnable: Option<Vec<i64>>,
}

/// Live nodes, by lease in database time (as `nodes::node_list_live`).
const LIVE_NODE: &str =
    "n.stopped_at IS NULL AND n.heartbeat_at >= now() - n.lease_ms * interval '1 millisecond'";

/// The jobs written or removed since the snapshot whose horizon is `since`
/// (every job when `None`), with their last result and running node, in one
/// repeatable-read snapshot.
///
/// Every job row carries the id of the transaction that last wrote it, and a
/// removed job leaves a tombstone with the remover's id (migration 0010). A
/// transaction whose changes the previous snapshot did not see has an id at
/// least that snapshot's `xmin` (it was running then, or began later), so
/// reading `change_xid >= since` misses nothing; it may re-read a few rows
/// seen already, which is harmless. A long transaction holding `xmin` back
/// makes the reads larger, never wrong. Rows are decoded as they arrive, so
/// a full read never holds every raw row at once.
pub async fn jobs_changed_since(
    client: &mut tokio_postgres::Client,
    since: Option<i64>,
    nodes_key: Option<&str>,
) -> Result<JobsDelta, DbError> {
    use futures_util::TryStreamExt as _;
    use tokio_postgres::types::ToSql;

    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let head_sql = format!(
        "SELECT now(), pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
             (SELECT coalesce(md5(string_agg(n.id || ':' || n.allow_shell::text || ':'
                                             || coalesce(n.shell_allow::text, ''),
                                             ',' ORDER BY n.id)), '')
              FROM crondeck.nodes n WHERE {LIVE_NODE})"
    );
    let columns = job_columns_of("j");
    let filter = if since.is_some() {
        "WHERE j.change_xid >= $1"
    } else {
        "WHERE $1::int8 IS NULL"
    };
    let jobs_sql = format!(
        "SELECT {columns}, {LAST_RUN_COLUMNS},
             NOT EXISTS (SELECT 1 FROM crondeck.nodes n
                         WHERE {LIVE_NODE}
                           AND crondeck.can_run(j.action_kind, j.command, n.allow_shell,
                                                n.shell_allow)) AS unrunnable
         FROM crondeck.jobs j
         LEFT JOIN crondeck.runs lr ON lr.id = j.last_run_id
         LEFT JOIN crondeck.nodes rn ON rn.id = j.running_node_id
         {filter}"
    );
    let changed = async {
        let params: [&(dyn ToSql + Sync); 1] = [&since];
        let rows = tx.query_raw(&jobs_sql, params).await?;
        futures_util::pin_mut!(rows);
        let mut changed = Vec::new();
        while let Some(row) = rows.try_next().await? {
            let unrunnable: bool = row.try_get("unrunnable")?;
            changed.push((job_from_row_or_unreadable(&row)?, unrunnable));
        }
        Ok::<_, DbError>(changed)
    };
    let removed = async {
        match since {
            None => Ok(Vec::new()),
            Some(since) => {
                let rows = tx
                    .query(
                        "SELECT DISTINCT job_id FROM crondeck.jobs_removed WHERE change_xid >= $1",
                        &[&since],
                    )
                    .await?;
                rows.iter()
                    .map(|r| Ok(r.try_get(0)?))
                    .collect::<Result<Vec<i64>, DbError>>()
            }
        }
    };
    // Sent together: one snapshot, one round trip's wait.
    let (head, nodes, changed, removed) = tokio::join!(
        tx.query_one(&head_sql, &[]),
        super::nodes::node_list_live(&tx),
        changed,
        removed
    );
    let head = head?;
    let db_now: DateTime<Utc> = head.try_get(0)?;
    let horizon: i64 = head.try_get(1)?;
    let key: String = head.try_get(2)?;
    let all_unrunnable = if since.is_some() && nodes_key != Some(key.as_str()) {
        Some(super::nodes::jobs_no_node_can_run(&tx).await?)
    } else {
        None
    };
    let delta = JobsDelta {
        horizon,
        db_now,
        full: since.is_none(),
        changed: changed?,
        removed: removed?,
        nodes: nodes?,
        nodes_key: key,
        all_unrunnable,
    };
    tx.commit().await?;
    Ok(delta)
}
