//! Queries on `crondeck.nodes`: registration, heartbeats, and the rescue of
//! runs whose node stopped heartbeating.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::DbError;

/// What a node says about itself when it registers.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub version: String,
    pub workers: i32,
    pub allow_shell: bool,
    pub shell_allow: Vec<String>,
    pub lease: Duration,
    pub heartbeat: Duration,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeRow {
    pub id: String,
    pub name: String,
    pub host: String,
    pub pid: i32,
    pub workers: i32,
    pub busy: i32,
    pub allow_shell: bool,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub lease_ms: i64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Register a node; returns its id (a fresh UUID from the database).
pub async fn node_register(
    client: &impl GenericClient,
    info: &NodeInfo,
) -> Result<String, DbError> {
    let row = client
        .query_one(
            "INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, allow_shell,
                 lease_ms, heartbeat_ms, shell_allow)
             VALUES (gen_random_uuid()::text, $1, $2, $3, $4, $5, $6, $7, $8, $9)
             RETURNING id",
            &[
                &info.name,
                &info.host,
                &info.pid,
                &info.version,
                &info.workers,
                &info.allow_shell,
                &millis(info.lease),
                &millis(info.heartbeat),
                &info.shell_allow,
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// Renew the lease. False when the node was declared dead (its runs were
/// rescued by another node): it must stop its work and not record results.
pub async fn node_heartbeat(
    client: &impl GenericClient,
    id: &str,
    busy: i32,
) -> Result<bool, DbError> {
    let updated = client
        .execute(
            "UPDATE crondeck.nodes SET heartbeat_at = now(), busy = $2
             WHERE id = $1 AND stopped_at IS NULL",
            &[&id, &busy],
        )
        .await?;
    Ok(updated == 1)
}

/// Mark a node stopped (graceful shutdown).
pub async fn node_stop(client: &impl GenericClient, id: &str) -> Result<(), DbError> {
    client
        .execute(
            "UPDATE crondeck.nodes SET stopped_at = now(), busy = 0 WHERE id = $1 AND stopped_at IS NULL",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Nodes that are alive by database time (heartbeat within their lease).
pub async fn node_list_live(client: &impl GenericClient) -> Result<Vec<NodeRow>, DbError> {
    let rows = client
        .query(
            "SELECT id, name, host, pid, workers, busy, allow_shell, started_at, heartbeat_at, lease_ms
             FROM crondeck.nodes
             WHERE stopped_at IS NULL AND heartbeat_at >= now() - lease_ms * interval '1 millisecond'
             ORDER BY started_at",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(NodeRow {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                host: r.try_get(2)?,
                pid: r.try_get(3)?,
                workers: r.try_get(4)?,
                busy: r.try_get(5)?,
                allow_shell: r.try_get(6)?,
                started_at: r.try_get(7)?,
                heartbeat_at: r.try_get(8)?,
                lease_ms: r.try_get(9)?,
            })
        })
        .collect()
}

/// A run taken away from a dead node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RescuedRun {
    pub run_id: i64,
    pub job_id: i64,
}

/// Declare dead every node whose heartbeat is older than its own lease (by
/// database time), mark its running runs `abandoned` and free their jobs. One
/// statement, so two nodes rescuing at once cannot both act on the same run.
/// A node that still heartbeats is never touched.
///
/// The same statement terminates the database sessions still executing an
/// abandoned SQL job (found by the `application_name` each SQL job sets for
/// its transaction; see `scheduler::sql`). A frozen or cut-off node's
/// statements run on in the server and keep their locks; once the job is
/// free another node would run it alongside them. Terminated, they roll back
/// (they could never have committed: the finish is fenced). Sessions this
/// role may not signal are left alone, and the server needs a moment to act
/// on the signal after the rescue commits.
pub async fn node_rescue_dead(client: &impl GenericClient) -> Result<Vec<RescuedRun>, DbError> {
    let rows = client
        .query(
            "WITH dead AS (
                 UPDATE crondeck.nodes SET stopped_at = now(), busy = 0
                 WHERE stopped_at IS NULL
                   AND heartbeat_at < now() - lease_ms * interval '1 millisecond'
                 RETURNING id, name, lease_ms
             ), abandoned AS (
                 UPDATE crondeck.runs r
                 SET status = 'abandoned', ended_at = now(),
                     error = coalesce(
                         (SELECT format('node %s stopped heartbeating for longer than its lease (%s ms); the run was abandoned',
                                        d.name, d.lease_ms) FROM dead d WHERE d.id = r.node_id),
                         format('node %s is gone; the run was abandoned', r.node_name))
                 WHERE r.status = 'running'
                   AND (r.node_id IN (SELECT id FROM dead)
                        OR NOT EXISTS (SELECT 1 FROM crondeck.nodes n
                                       WHERE n.id = r.node_id AND n.stopped_at IS NULL))
                 RETURNING r.id, r.job_id, r.ended_at, r.started_at
             ), freed AS (
                 UPDATE crondeck.jobs j
                 SET running_run_id = NULL, running_node_id = NULL, running_since = NULL,
                     last_status = 'abandoned', last_ended_at = a.ended_at,
                     last_duration_ms = (extract(epoch FROM a.ended_at - a.started_at) * 1000)::bigint
                 FROM abandoned a
                 WHERE j.id = a.job_id AND j.running_run_id = a.id
                 RETURNING j.id
             ), stopped AS (
                 SELECT pg_terminate_backend(s.pid) AS done
                 FROM pg_stat_activity s
                 JOIN abandoned a ON s.application_name = 'crondeck run ' || a.id
                 WHERE s.pid <> pg_backend_pid()
                   AND (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper)
                        OR (NOT EXISTS (SELECT 1 FROM pg_roles r
                                        WHERE r.oid = s.usesysid AND r.rolsuper)
                            AND (pg_has_role(s.usesysid, 'MEMBER')
                                 OR pg_has_role('pg_signal_backend', 'MEMBER'))))
             )
             SELECT id, job_id, (SELECT count(*) FROM stopped) FROM abandoned",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(RescuedRun {
                run_id: r.try_get(0)?,
                job_id: r.try_get(1)?,
            })
        })
        .collect()
}

/// Jobs that no live node may run (a shell job with no shell-enabled node, or
/// none whose allow-list admits its command). The console and `run` say so.
pub async fn jobs_no_node_can_run(client: &impl GenericClient) -> Result<Vec<i64>, DbError> {
    let rows = client
        .query(
            "SELECT j.id FROM crondeck.jobs j
             WHERE NOT EXISTS (
                 SELECT 1 FROM crondeck.nodes n
                 WHERE n.stopped_at IS NULL
                   AND n.heartbeat_at >= now() - n.lease_ms * interval '1 millisecond'
                   AND crondeck.can_run(j.action_kind, j.command, n.allow_shell, n.shell_allow))
             ORDER BY j.id",
            &[],
        )
        .await?;
    rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
}
