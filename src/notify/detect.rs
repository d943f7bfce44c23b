//! Finding events: which jobs (and whether the cluster) need someone, as of
//! the database's "now", and recording each new episode exactly once.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio_postgres::GenericClient;

use super::Notifier;
use crate::check::FAILURE_POLICY_PAUSER;
use crate::db::notifications::{
    cluster_live_since, notification_exists, notification_has_open, notification_insert,
    notification_record_no_live_node, notification_resolve_open, notification_scan_jobs,
    run_detail, NewNotification, RunDetail,
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

/// Whether `job` is overdue for a notification: as `health` says, but
/// measured from no earlier than when the cluster last came back
/// (`live_since`). While no node was alive nothing could run, which the
/// no-live-node event tells; after a full restart each job gets its usual
/// two intervals to succeed before it pages "overdue" (and then "recovered"
/// seconds later).
fn overdue(job: &Job, now: DateTime<Utc>, live_since: Option<DateTime<Utc>>) -> bool {
    let rt = &job.runtime;
    let since = rt
        .last_success_at
        .or(rt.first_due_at)
        .or(job.nextcall.filter(|n| *n <= now));
    match (live_since, since) {
        (Some(live), Some(since)) if since < live => {
            let mut seen = job.clone();
            seen.runtime.last_success_at = Some(live);
            job_health(&seen, now, &Thresholds::default()).overdue
        }
        _ => job_health(job, now, &Thresholds::default()).overdue,
    }
}

/// The problem events that hold for `job` now.
fn job_problems(
    job: &Job,
    now: DateTime<Utc>,
    live_since: Option<DateTime<Utc>>,
    notifier: &Notifier,
) -> Vec<Found> {
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
            details: json!({
                "paused_at": pause.at,
                "reason": pause.reason,
                "last_run_id": rt.last_run_id,
            }),
        });
    }
    if overdue(job, now, live_since) {
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

/// Lines of error text a notification carries at most.
pub const ERROR_LINES: usize = 5;
/// Lines of output tail a notification carries at most.
pub const TAIL_LINES: usize = 10;
/// Characters one such line keeps at most.
const LINE_CHARS: usize = 300;

fn cut(line: &str) -> String {
    if line.chars().count() > LINE_CHARS {
        let mut s: String = line.chars().take(LINE_CHARS).collect();
        s.push('…');
        s
    } else {
        line.to_string()
    }
}

fn head_lines(text: Option<&str>, n: usize) -> Vec<String> {
    text.unwrap_or("")
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .take(n)
        .map(cut)
        .collect()
}

fn tail_lines(text: Option<&str>, n: usize) -> Option<String> {
    let lines: Vec<String> = text
        .unwrap_or("")
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .map(cut)
        .collect();
    let start = lines.len().saturating_sub(n);
    (!lines.is_empty()).then(|| lines[start..].join("\n"))
}

/// "failed (exit 3)", "failed (SQLSTATE 22012)", "timed_out", ...
fn result_words(run: &RunDetail) -> String {
    if let Some(code) = run.exit_code.filter(|c| *c != 0) {
        format!("{} (exit {code})", run.status)
    } else if let Some(signal) = run.signal {
        format!("{} (signal {signal})", run.status)
    } else if let Some(state) = &run.sqlstate {
        format!("{} (SQLSTATE {state})", run.status)
    } else {
        run.status.clone()
    }
}

/// The first lines of what went wrong: an SQL job's error (its message, then
/// DETAIL/HINT lines), a shell job's standard error (its `error` only says
/// "exited with status N", which the exit code already tells).
fn error_lines(run: &RunDetail) -> Vec<String> {
    if run.sqlstate.is_none() {
        let stderr = head_lines(run.stderr_head.as_deref(), ERROR_LINES);
        if !stderr.is_empty() {
            return stderr;
        }
    }
    head_lines(run.error.as_deref(), ERROR_LINES)
}

/// Add what the last run says to a failure event: its result (exit code,
/// signal or SQLSTATE), the first lines of its error, the tail of its output
/// and the node that ran it.
fn with_last_run(found: &mut Found, job: &Job, run: &RunDetail) {
    let result = result_words(run);
    let lines = error_lines(run);
    let first = lines.first().map(|l| format!(": {l}")).unwrap_or_default();
    let name = &job.spec.name;
    match found.event {
        "failure_streak" => {
            found.message = format!(
                "crondeck: job \"{name}\" failed {} in a row (last: {result}{first})",
                crate::text::count(job.runtime.failure_streak, "time", "times")
            );
        }
        "auto_paused" => {
            let reason = job
                .pause
                .as_ref()
                .and_then(|p| p.reason.as_deref())
                .unwrap_or("too many failures");
            found.message = format!(
                "crondeck: job \"{name}\" was paused by its failure policy: {reason} (last: {result}{first})"
            );
        }
        _ => return,
    }
    if let Value::Object(details) = &mut found.details {
        details.insert("last_result".into(), result.into());
        details.insert("exit_code".into(), json!(run.exit_code));
        details.insert("signal".into(), json!(run.signal));
        details.insert("sqlstate".into(), json!(run.sqlstate));
        details.insert("error_lines".into(), json!(lines));
        details.insert(
            "stdout_tail".into(),
            json!(tail_lines(run.stdout_tail.as_deref(), TAIL_LINES)),
        );
        details.insert(
            "stderr_tail".into(),
            json!(tail_lines(run.stderr_tail.as_deref(), TAIL_LINES)),
        );
        details.insert("node".into(), json!(run.node_name));
    }
}

/// Healthy again: last run succeeded, no streak, active, not overdue.
fn recovered(job: &Job, now: DateTime<Utc>, live_since: Option<DateTime<Utc>>) -> bool {
    job.active
        && job.runtime.failure_streak == 0
        && job.runtime.last_status.as_deref() == Some("succeeded")
        && !overdue(job, now, live_since)
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
    let live_since = cluster_live_since(&*client).await?;
    let mut pending = Vec::new();
    for job in notification_scan_jobs(&*client, FAILURE_POLICY_PAUSER).await? {
        for mut found in job_problems(&job, now, live_since, notifier) {
            // Most scans see episodes recorded already: skip them before
            // reading the last run.
            if notification_exists(&*client, &found.key).await? {
                continue;
            }
            if matches!(found.event, "failure_streak" | "auto_paused") {
                if let Some(run_id) = job.runtime.last_run_id {
                    if let Some(run) = run_detail(&*client, run_id).await? {
                        with_last_run(&mut found, &job, &run);
                    }
                }
            }
            pending.extend(record(&*client, &found, Some(&job), now, notifier).await?);
        }
        if recovered(&job, now, live_since) {
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
