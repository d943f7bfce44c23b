//! Queries on `crondeck.notifications`: the cluster-wide deduplication of
//! notification events (a unique key per episode), and on its outbox
//! `crondeck.notification_deliveries` (one row per episode and channel,
//! claimed for each attempt; see migration 0009).

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
    /// Its outbox rows: a JSON array of `{"channel", "kind", "max_attempts"}`.
    pub deliveries: &'a Value,
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
    /// Per channel: `{"channel", "kind", "ok", "status", "attempts",
    /// "max_attempts", "error"}`.
    pub deliveries: Value,
    pub sent_at: Option<DateTime<Utc>>,
}

/// Record an event unless its episode was recorded already (by any node),
/// with its outbox rows, in one statement (so one transaction): an episode is
/// never recorded without its deliveries. `Some(id)` means this caller
/// recorded it.
pub async fn notification_insert(
    client: &impl GenericClient,
    n: &NewNotification<'_>,
) -> Result<Option<i64>, DbError> {
    let row = client
        .query_opt(
            "WITH episode AS (
                 INSERT INTO crondeck.notifications
                     (dedup_key, event, job_id, job_name, message, payload, created_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (dedup_key) DO NOTHING
                 RETURNING id),
             outbox AS (
                 INSERT INTO crondeck.notification_deliveries
                     (notification_id, channel, kind, max_attempts)
                 SELECT episode.id, c.channel, c.kind, c.max_attempts
                 FROM episode,
                      jsonb_to_recordset($8::jsonb) AS c(channel text, kind text, max_attempts integer))
             SELECT id FROM episode",
            &[
                &n.dedup_key,
                &n.event,
                &n.job_id,
                &n.job_name,
                &n.message,
                &n.payload,
                &n.created_by,
                &n.deliveries,
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

/// Record the no-live-node episode with its outbox rows, if there is one
/// (the database decides), and this caller is the first to see it:
/// `Some((id, payload))`.
pub async fn notification_record_no_live_node(
    client: &impl GenericClient,
    sender: &str,
    deliveries: &Value,
) -> Result<Option<(i64, Value)>, DbError> {
    let row = client
        .query_opt(
            "SELECT notification_id, notification_payload
             FROM crondeck.record_no_live_node($1, $2)",
            &[&sender, deliveries],
        )
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// What a notification says about a job's last run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunDetail {
    pub status: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub sqlstate: Option<String>,
    pub error: Option<String>,
    /// The last 4 KiB of each stream (lines cut later).
    pub stdout_tail: Option<String>,
    pub stderr_tail: Option<String>,
    pub stderr_head: Option<String>,
    pub node_name: Option<String>,
}

/// The details of run `run_id` for a notification, if it exists.
pub async fn run_detail(
    client: &impl GenericClient,
    run_id: i64,
) -> Result<Option<RunDetail>, DbError> {
    let row = client
        .query_opt(
            "SELECT status, exit_code, signal, sqlstate, left(error, 4000) AS error,
                    right(stdout, 4000) AS stdout_tail, right(stderr, 4000) AS stderr_tail,
                    left(stderr, 4000) AS stderr_head, node_name
             FROM crondeck.runs WHERE id = $1",
            &[&run_id],
        )
        .await?;
    row.map(|r| {
        Ok(RunDetail {
            status: r.try_get("status")?,
            exit_code: r.try_get("exit_code")?,
            signal: r.try_get("signal")?,
            sqlstate: r.try_get("sqlstate")?,
            error: r.try_get("error")?,
            stdout_tail: r.try_get("stdout_tail")?,
            stderr_tail: r.try_get("stderr_tail")?,
            stderr_head: r.try_get("stderr_head")?,
            node_name: r.try_get("node_name")?,
        })
    })
    .transpose()
}

/// Since when some scheduler node has been alive without a break (node
/// lifetimes that overlap, by the database clock), or `None` when no node is
/// alive. After a full cluster stop this is when the first node came back;
/// through a rolling restart, it stays put.
pub async fn cluster_live_since(
    client: &impl GenericClient,
) -> Result<Option<DateTime<Utc>>, DbError> {
    let row = client
        .query_one(
            "WITH spans AS (
                 SELECT started_at AS s,
                        least(coalesce(stopped_at, 'infinity'),
                              heartbeat_at + lease_ms * interval '1 millisecond') AS e
                 FROM crondeck.nodes),
             islands AS (
                 SELECT s, e, max(e) OVER (ORDER BY s ROWS BETWEEN UNBOUNDED PRECEDING
                                                     AND 1 PRECEDING) AS before
                 FROM spans)
             SELECT CASE WHEN (SELECT max(e) FROM spans) >= now()
                         THEN (SELECT max(s) FROM islands WHERE before IS NULL OR before < s)
                    END",
            &[],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Whether an episode is recorded already.
pub async fn notification_exists(client: &impl GenericClient, key: &str) -> Result<bool, DbError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM crondeck.notifications WHERE dedup_key = $1)",
            &[&key],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// One attempt at one delivery, claimed from the outbox.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    pub notification_id: i64,
    pub event: String,
    pub channel: String,
    pub kind: String,
    /// This attempt's number, from 1.
    pub attempt: i32,
    pub max_attempts: i32,
    pub payload: Value,
}

/// Which deliveries a claimer may take: a node takes any; `crondeck check`'s
/// delivery process (maybe a viewer) only the no-live-node episode's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxScope {
    Node,
    NoLiveNode,
}

/// Claim up to `max` due deliveries of `channels` for one attempt each,
/// under a lease of `lease_ms` (SKIP LOCKED: concurrent claimers never get
/// the same row).
pub async fn outbox_claim(
    client: &impl GenericClient,
    scope: OutboxScope,
    claimer: &str,
    channels: &[String],
    lease_ms: i32,
    max: i32,
) -> Result<Vec<ClaimedDelivery>, DbError> {
    let sql = match scope {
        OutboxScope::Node => "SELECT * FROM crondeck.outbox_claim($1, $2, $3, $4)",
        OutboxScope::NoLiveNode => {
            "SELECT * FROM crondeck.outbox_claim_no_live_node($1, $2, $3, $4)"
        }
    };
    let rows = client
        .query(sql, &[&claimer, &channels, &lease_ms, &max])
        .await?;
    rows.iter()
        .map(|r| {
            Ok(ClaimedDelivery {
                id: r.try_get("delivery_id")?,
                notification_id: r.try_get("notification_id")?,
                event: r.try_get("event")?,
                channel: r.try_get("channel")?,
                kind: r.try_get("kind")?,
                attempt: r.try_get("attempt")?,
                max_attempts: r.try_get("max_attempts")?,
                payload: r.try_get("payload")?,
            })
        })
        .collect()
}

/// Report an attempt (`error: None` = delivered). `false`: the claim was no
/// longer ours (its lease ran out and someone else took it over).
pub async fn outbox_finish(
    client: &impl GenericClient,
    scope: OutboxScope,
    claimer: &str,
    delivery: &ClaimedDelivery,
    error: Option<&str>,
) -> Result<bool, DbError> {
    let sql = match scope {
        OutboxScope::Node => "SELECT crondeck.outbox_finish($1, $2, $3, $4)",
        OutboxScope::NoLiveNode => "SELECT crondeck.outbox_finish_no_live_node($1, $2, $3, $4)",
    };
    let row = client
        .query_one(sql, &[&delivery.id, &claimer, &delivery.attempt, &error])
        .await?;
    Ok(row.try_get(0)?)
}

/// Seconds until the next delivery of `channels` in `scope` is due (0 when
/// one is due now), or `None` when nothing is left to deliver.
pub async fn outbox_next_due(
    client: &impl GenericClient,
    scope: OutboxScope,
    channels: &[String],
) -> Result<Option<f64>, DbError> {
    let row = client
        .query_one(
            "SELECT extract(epoch FROM min(greatest(d.next_attempt_at,
                        coalesce(d.lease_until, d.next_attempt_at))) - now())::float8
             FROM crondeck.notification_deliveries d
             JOIN crondeck.notifications n ON n.id = d.notification_id
             WHERE d.status IN ('pending', 'retrying') AND d.channel = ANY ($1)
               AND ($2 = false OR n.event = 'no_live_node')",
            &[&channels, &(scope == OutboxScope::NoLiveNode)],
        )
        .await?;
    let secs: Option<f64> = row.try_get(0)?;
    Ok(secs.map(|s| s.max(0.0)))
}

/// One delivery as the console's notifications view shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    pub id: i64,
    pub notification_id: i64,
    pub event: String,
    pub job_name: Option<String>,
    pub message: String,
    pub created_at: DateTime<Utc>,
    pub channel: String,
    pub kind: String,
    /// pending, retrying, delivered, failed.
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The newest deliveries (one row per episode and channel), newest first.
pub async fn delivery_list(
    client: &impl GenericClient,
    limit: i64,
) -> Result<Vec<DeliveryRow>, DbError> {
    let rows = client
        .query(
            "SELECT d.id, d.notification_id, n.event, n.job_name, n.message, n.created_at,
                    d.channel, d.kind, d.status, d.attempts, d.max_attempts, d.next_attempt_at,
                    d.last_attempt_at, d.delivered_at, d.last_error
             FROM crondeck.notification_deliveries d
             JOIN crondeck.notifications n ON n.id = d.notification_id
             ORDER BY d.notification_id DESC, d.id LIMIT $1",
            &[&limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryRow {
                id: r.try_get("id")?,
                notification_id: r.try_get("notification_id")?,
                event: r.try_get("event")?,
                job_name: r.try_get("job_name")?,
                message: r.try_get("message")?,
                created_at: r.try_get("created_at")?,
                channel: r.try_get("channel")?,
                kind: r.try_get("kind")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                max_attempts: r.try_get("max_attempts")?,
                next_attempt_at: r.try_get("next_attempt_at")?,
                last_attempt_at: r.try_get("last_attempt_at")?,
                delivered_at: r.try_get("delivered_at")?,
                last_error: r.try_get("last_error")?,
            })
        })
        .collect()
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

/// `deliveries` is read live from the outbox (each channel's status so far),
/// falling back to the stored summary for episodes from before it.
const NOTIFICATION_COLUMNS: &str = "id, event, job_id, job_name, message, created_at, created_by, \
    resolved_at, status, \
    coalesce((SELECT jsonb_agg(jsonb_build_object('channel', d.channel, 'kind', d.kind, \
                  'ok', d.status = 'delivered', 'status', d.status, 'attempts', d.attempts, \
                  'max_attempts', d.max_attempts, 'error', d.last_error) ORDER BY d.id) \
              FROM crondeck.notification_deliveries d WHERE d.notification_id = notifications.id), \
             deliveries) AS deliveries, \
    sent_at";

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
