//! Finding events: which jobs (and whether the cluster) need someone, as of
//! the database's "now", and recording each new episode exactly once.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use super::Notifier;
use crate::check::FAILURE_POLICY_PAUSER;
use crate::db::notifications::{
    notification_has_open, notification_insert, notification_record_no_live_node,
    notification_resolve_open, notification_scan_jobs, NewNotification,
};
use crate::db::DbError;
use crate::health::{job_health, Thresholds};
use crate::job::Job;
use crate::timespec::format_duration_short;

/// An event this process recorded first (with its outbox rows).
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub event: String,
    pub payload: Value,
}

/// One event found by a scan, before deduplication.
struct Found {
    key: String,
    event: &'static str,
    message: String,
    details: Value,
}

fn stamp(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "unknown".to_string(), |t| t.to_rfc3339())
}

/// The problem events that hold for `job` now.
fn job_problems(job: &Job, now: DateTime<Utc>, notifier: &Notifier) -> Vec<Found> {
    let rt = &job.runtime;
    let name = &job.spec.name;
    let mut found = Vec::new();
    let threshold = job
        .spec
        .failure
        .notify_after
        .unwrap_or(notifier.failure_streak);
    if rt.failure_streak >= threshold {
        found.push(Found {
            key: format!(
                "failure_streak/{}/{}",
                job.id,
                stamp(rt.failure_streak_since)
            ),
            event: "failure_streak",
            message: format!(
                "crondeck: job \"{name}\" failed {} times in a row (last: {}{})",
                rt.failure_streak,
                rt.last_result(),
                rt.last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
            details: json!({
                "failure_streak": rt.failure_streak,
                "threshold": threshold,
                "since": rt.failure_streak_since,
                "last_status": rt.last_status,
                "last_run_id": rt.last_run_id,
            }),
        });
    }
    if let Some(pause) = job
        .pause
        .as_ref()
        .filter(|p| !job.active && p.by.as_deref() == Some(FAILURE_POLICY_PAUSER))
    {
        found.push(Found {
            key: format!("auto_paused/{}/{}", job.id, pause.at.to_rfc3339()),
            event: "auto_paused",
            message: format!(
                "crondeck: job \"{name}\" was paused by its failure policy: {}",
                pause.reason.as_deref().unwrap_or("too many failures")
            ),
            details: json!({ "paused_at": pause.at, "reason": pause.reason }),
        });
    }
    if job_health(job, now, &Thresholds::default()).overdue {
        let since = rt.last_success_at.or(rt.first_due_at).or(job.nextcall);
        let words = match rt.last_success_at {
            Some(s) => format!("no success for {}", format_duration_short(now - s)),
            None => "it never succeeded".to_string(),
        };
        found.push(Found {
            key: format!("overdue/{}/{}", job.id, stamp(since)),
            event: "overdue",
            message: format!(
                "crondeck: job \"{name}\" is overdue: {words} ({})",
                job.spec.schedule.describe()
            ),
            details: json!({
                "last_success_at": rt.last_success_at,
                "schedule": job.spec.schedule.to_string(),
            }),
        });
    }
    found
}

/// Healthy again: last run succeeded, no streak, active, not overdue.
fn recovered(job: &Job, now: DateTime<Utc>) -> bool {
    job.active
        && job.runtime.failure_streak == 0
        && job.runtime.last_status.as_deref() == Some("succeeded")
        && !job_health(job, now, &Thresholds::default()).overdue
}

fn payload(found: &Found, job: Option<&Job>, now: DateTime<Utc>, sender: &str) -> Value {
    json!({
        "event": found.event,
        "text": found.message,
        "job": job.map(|j| &j.spec.name),
        "job_id": job.map(|j| j.id),
        "tags": job.map(|j| &j.spec.tags),
        "at": now,
        "episode": found.key,
        "sender": sender,
        "details": found.details,
    })
}

async fn record(
    client: &impl GenericClient,
    found: &Found,
    job: Option<&Job>,
    now: DateTime<Utc>,
    notifier: &Notifier,
) -> Result<Option<Pending>, DbError> {
    let sender = notifier.sender.as_str();
    let payload = payload(found, job, now, sender);
    let deliveries = notifier.deliveries_for(found.event);
    let new = NewNotification {
        dedup_key: &found.key,
        event: found.event,
        job_id: job.map(|j| j.id),
        job_name: job.map(|j| j.spec.name.as_str()),
        message: &found.message,
        payload: &payload,
        created_by: sender,
        deliveries: &deliveries,
    };
    Ok(notification_insert(client, &new).await?.map(|id| Pending {
        id,
        event: found.event.to_string(),
        payload,
    }))
}

/// Close the open events of a job (`Some`) or the cluster (`None`) and
/// record one `recovered`, in one transaction: of several nodes doing this at
/// once, only the first finds the events open.
async fn close_with_recovered(
    client: &mut impl GenericClient,
    job: Option<&Job>,
    now: DateTime<Utc>,
    notifier: &Notifier,
) -> Result<Option<Pending>, DbError> {
    let tx = client.transaction().await?;
    let closed = notification_resolve_open(&tx, job.map(|j| j.id)).await?;
    let Some(first) = closed.first() else {
        tx.commit().await?;
        return Ok(None);
    };
    let message = match job {
        Some(j) => format!(
            "crondeck: job \"{}\" recovered: it succeeded again",
            j.spec.name
        ),
        None => "crondeck: scheduler nodes are alive again; jobs are executing".to_string(),
    };
    let found = Found {
        key: format!("recovered/{first}"),
        event: "recovered",
        message,
        details: json!({ "closes": closed }),
    };
    let pending = record(&tx, &found, job, now, notifier).await?;
    tx.commit().await?;
    Ok(pending)
}

/// One scan by a live node: record new job episodes and recoveries (and the
/// cluster's recovery after `no_live_node`); return the ones to send.
pub async fn scan(
    client: &mut impl GenericClient,
    notifier: &Notifier,
) -> Result<Vec<Pending>, DbError> {
    let now: DateTime<Utc> = client.query_one("SELECT now()", &[]).await?.try_get(0)?;
    let mut pending = Vec::new();
    for job in notification_scan_jobs(&*client, FAILURE_POLICY_PAUSER).await? {
        for found in job_problems(&job, now, notifier) {
            pending.extend(record(&*client, &found, Some(&job), now, notifier).await?);
        }
        if recovered(&job, now) {
            pending.extend(close_with_recovered(client, Some(&job), now, notifier).await?);
        }
    }
    // This node is alive, so a "no live node" episode, if open, is over.
    if notification_has_open(&*client, None).await? {
        pending.extend(close_with_recovered(client, None, now, notifier).await?);
    }
    Ok(pending)
}

/// The dead man's switch, for a process that is not itself a node (`check`):
/// with no live node, record the episode (keyed by the last heartbeat any
/// node sent) with its outbox rows, and return it. The database checks that no node is
/// alive and writes the message itself (`crondeck.record_no_live_node`), so
/// anyone who may read (a viewer, an operator) can record it, and nobody can
/// forge it.
pub async fn check_cluster(
    client: &impl GenericClient,
    notifier: &Notifier,
    live_nodes: usize,
) -> Result<Option<Pending>, DbError> {
    if live_nodes > 0 {
        return Ok(None);
    }
    let deliveries = notifier.deliveries_for("no_live_node");
    notification_record_no_live_node(client, &notifier.sender, &deliveries)
        .await
        .map(|recorded| {
            recorded.map(|(id, payload)| Pending {
                id,
                event: "no_live_node".to_string(),
                payload,
            })
        })
}
