//! Queries on `crondeck.notifications`: the cluster-wide deduplication of
//! notification events (a unique key per episode) and the record of each send.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::{GenericClient, Row};

use super::jobs::{job_from_row_or_unreadable, JOB_COLUMNS};
use super::DbError;
use crate::job::Job;

/// An event to record (and, for the node whose insert wins, to send).
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub dedup_key: &'a str,
    pub event: &'a str,
    pub job_id: Option<i64>,
    pub job_name: Option<&'a str>,
    pub message: &'a str,
    pub payload: &'a Value,
    pub created_by: &'a str,
}

/// A notification as stored, for the console's job detail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationRow {
    pub id: i64,
    pub event: String,
    pub job_id: Option<i64>,
    pub job_name: Option<String>,
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub resolved_at: Option<DateTime<Utc>>,
    /// pending, sent, failed, partial, no_channel.
    pub status: String,
    /// Per channel: `{"channel", "kind", "ok", "attempts", "error"}`.
    pub deliveries: Value,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Record an event unless its episode was recorded already (by any node).
/// `Some(id)` means this caller won and must send it.
pub async fn notification_insert(
    client: &impl GenericClient,
    n: &NewNotification<'_>,
) -> Result<Option<i64>, DbError> {
    let row = client
        .query_opt(
            "INSERT INTO crondeck.notifications
                 (dedup_key, event, job_id, job_name, message, payload, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
            &[
                &n.dedup_key,
                &n.event,
                &n.job_id,
                &n.job_name,
                &n.message,
                &n.payload,
                &n.created_by,
            ],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

/// Close the open problem events of a job (or, with `None`, of the cluster),
/// returning their ids, lowest first. Row locks make concurrent callers
/// serialise: only the first sees the rows open.
pub async fn notification_resolve_open(
    client: &impl GenericClient,
    job_id: Option<i64>,
) -> Result<Vec<i64>, DbError> {
    let rows = client
        .query(
            "UPDATE crondeck.notifications SET resolved_at = now()
             WHERE resolved_at IS NULL AND event <> 'recovered'
               AND job_id IS NOT DISTINCT FROM $1
             RETURNING id",
            &[&job_id],
        )
        .await?;
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    ids.sort_unstable();
    Ok(ids)
}

/// Whether the cluster (`None`) or a job has open problem events.
pub async fn notification_has_open(
    client: &impl GenericClient,
    job_id: Option<i64>,
) -> Result<bool, DbError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM crondeck.notifications
                            WHERE resolved_at IS NULL AND event <> 'recovered'
                              AND job_id IS NOT DISTINCT FROM $1)",
            &[&job_id],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Record how the send went.
pub async fn notification_record_delivery(
    client: &impl GenericClient,
    id: i64,
    status: &str,
    deliveries: &Value,
) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE crondeck.notifications SET status = $2, deliveries = $3, sent_at = now()
             WHERE id = $1",
            &[&id, &status, &deliveries],
        )
        .await?;
    Ok(())
}

/// Record the no-live-node episode, if there is one (the database decides),
/// and this caller is the first to see it: `Some((id, payload))` to send.
pub async fn notification_record_no_live_node(
    client: &impl GenericClient,
    sender: &str,
) -> Result<Option<(i64, Value)>, DbError> {
    let row = client
        .query_opt(
            "SELECT notification_id, notification_payload
             FROM crondeck.record_no_live_node($1)",
            &[&sender],
        )
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Record how the send of a no-live-node episode went (`crondeck check`).
pub async fn notification_record_no_live_node_delivery(
    client: &impl GenericClient,
    id: i64,
    status: &str,
    deliveries: &Value,
) -> Result<(), DbError> {
    client
        .execute(
            "SELECT crondeck.record_no_live_node_delivery($1, $2, $3)",
            &[&id, &status, &deliveries],
        )
        .await?;
    Ok(())
}

fn notification_from_row(r: &Row) -> Result<NotificationRow, DbError> {
    Ok(NotificationRow {
        id: r.try_get("id")?,
        event: r.try_get("event")?,
        job_id: r.try_get("job_id")?,
        job_name: r.try_get("job_name")?,
        message: r.try_get("message")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        resolved_at: r.try_get("resolved_at")?,
        status: r.try_get("status")?,
        deliveries: r.try_get("deliveries")?,
        sent_at: r.try_get("sent_at")?,
    })
}

const NOTIFICATION_COLUMNS: &str = "id, event, job_id, job_name, message, created_at, created_by, \
    resolved_at, status, deliveries, sent_at";

/// A job's notifications, newest first (the console's job detail).
pub async fn notifications_for_job(
    client: &impl GenericClient,
    job_id: i64,
    limit: i64,
) -> Result<Vec<NotificationRow>, DbError> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM crondeck.notifications
         WHERE job_id = $1 ORDER BY id DESC LIMIT $2"
    );
    let rows = client.query(&sql, &[&job_id, &limit]).await?;
    rows.iter().map(notification_from_row).collect()
}

/// All notifications, newest first (jobs and cluster).
pub async fn notification_list(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<NotificationRow>, DbError> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM crondeck.notifications ORDER BY id DESC LIMIT $1"
    );
    let rows = client.query(&sql, &[&limit]).await?;
    rows.iter().map(notification_from_row).collect()
}

/// Jobs that may have an event to send or to close: failing, auto-paused,
/// past their tick, running, not last succeeded, or with an open event. A
/// healthy job matches none of these, so an idle cluster's scan reads little.
pub async fn notification_scan_jobs(
    client: &impl GenericClient,
    auto_pauser: &str,
) -> Result<Vec<Job>, DbError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM crondeck.jobs
         WHERE failure_streak > 0
            OR (NOT active AND paused_by = $1)
            OR (active AND nextcall <= now())
            OR running_run_id IS NOT NULL
            OR last_status IS DISTINCT FROM 'succeeded'
            OR id IN (SELECT job_id FROM crondeck.notifications
                      WHERE resolved_at IS NULL AND event <> 'recovered' AND job_id IS NOT NULL)"
    );
    let rows = client.query(&sql, &[&auto_pauser]).await?;
    // A row this node cannot read is skipped (the claim pauses it); it must
    // not stop the notifications of every other job.
    let mut jobs = Vec::with_capacity(rows.len());
    for row in &rows {
        let job = job_from_row_or_unreadable(row)?;
        match &job.unreadable {
            Some(reason) => {
                tracing::warn!(job = %job.spec.name, %reason, "skipping a job this node cannot read")
            }
            None => jobs.push(job),
        }
    }
    Ok(jobs)
}
