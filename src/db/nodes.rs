//! Queries on `crondeck.nodes`: registration, heartbeats, and the rescue of
//! runs whose node stopped heartbeating.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::types::Type;
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

/// A registration is alive while it is not stopped and its last heartbeat is
/// within its own lease, by database time. Every claim, every finish and every
/// heartbeat of a node is fenced on this, in the database, never on what the
/// node believes: a node that was frozen or cut off past its lease can neither
/// renew, claim nor record under that registration, even before any other
/// node has noticed and rescued it. `$at` is the instant to judge at.
pub(crate) fn alive_at(at: &str) -> String {
    format!("stopped_at IS NULL AND heartbeat_at >= {at} - lease_ms * interval '1 millisecond'")
}

/// What a heartbeat found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// False when the registration is dead (stopped by a rescue, or its lease
    /// ran out before this renewal): the node must stop its work, record
    /// nothing more under it, and register anew.
    pub alive: bool,
    /// Runs the database said this registration was executing, but the node
    /// was not (a claim whose commit reply was lost, a finish that gave up):
    /// now `abandoned`, their jobs free.
    pub reconciled: Vec<i64>,
    /// Runs of this registration an operator asked to cancel
    /// (`crondeck.op_cancel`), with who asked: the node stops them.
    pub cancel: Vec<(i64, String)>,
}

/// The CTE that frees the jobs of the runs a statement just marked
/// `abandoned` (CTE `runs`, returning id, job_id, started_at, ended_at):
/// shared by the reconciling heartbeat, the clean stop and the rescue.
/// Ends with the comma-less `freed AS (…)`.
fn free_jobs_of(runs: &str) -> String {
    format!(
        "freed AS (
             UPDATE crondeck.jobs j
             SET running_run_id = NULL, running_node_id = NULL, running_since = NULL,
                 last_status = 'abandoned', last_ended_at = l.ended_at,
                 last_duration_ms = (extract(epoch FROM l.ended_at - l.started_at) * 1000)::bigint
             FROM {runs} l
             WHERE j.id = l.job_id AND j.running_run_id = l.id
             RETURNING j.id
         )"
    )
}

/// Renew the lease, fenced: a registration whose lease already ran out by
/// database time cannot renew it, even if nobody has rescued it yet.
///
/// With `executing` (the runs this node is executing right now, under this
/// registration), the same statement reconciles the database with the node:
/// every other run the database has `running` on this registration is marked
/// `abandoned` and its job freed. That resolves every ambiguous outcome (a
/// claim or request start whose COMMIT reached the server while the node saw
/// the connection fail) within one heartbeat, instead of leaving a phantom
/// `running` run that blocks its job while the node keeps its lease. The
/// caller must make sure no claim commits between taking the `executing`
/// snapshot and this statement (see `scheduler::lease::Ledger`).
pub async fn node_heartbeat(
    client: &impl GenericClient,
    id: &str,
    busy: i32,
    executing: Option<&[i64]>,
) -> Result<Heartbeat, DbError> {
    let sql = format!(
        "WITH me AS (
             UPDATE crondeck.nodes SET heartbeat_at = now(), busy = $2
             WHERE id = $1 AND {alive}
             RETURNING id
         ), lost AS (
             UPDATE crondeck.runs r
             SET status = 'abandoned', ended_at = greatest(now(), r.started_at),
                 error = 'abandoned: this node was not executing the run although the database \
                          said it was (the answer to its claim or its finish was lost on the \
                          way); found by the node''s own heartbeat'
             WHERE $3::int8[] IS NOT NULL AND r.status = 'running'
               AND r.node_id IN (SELECT id FROM me) AND r.id <> ALL($3::int8[])
             RETURNING r.id, r.job_id, r.started_at, r.ended_at
         ), {freed}
         SELECT EXISTS (SELECT 1 FROM me), ARRAY(SELECT id FROM lost ORDER BY id),
                c.ids, c.asked_by
         FROM (SELECT coalesce(array_agg(r.id ORDER BY r.id), '{{}}') AS ids,
                      coalesce(array_agg(coalesce(r.cancel_requested_by, 'an operator')
                                         ORDER BY r.id), '{{}}') AS asked_by
               FROM crondeck.runs r
               WHERE r.node_id IN (SELECT id FROM me) AND r.status = 'running'
                 AND r.cancel_requested_at IS NOT NULL) c",
        alive = alive_at("now()"),
        freed = free_jobs_of("lost")
    );
    let executing: Option<Vec<i64>> = executing.map(<[i64]>::to_vec);
    let row = client
        .query_typed_one(
            &sql,
            &[
                (&id, Type::TEXT),
                (&busy, Type::INT4),
                (&executing, Type::INT8_ARRAY),
            ],
        )
        .await?;
    let cancel_ids: Vec<i64> = row.try_get(2)?;
    let cancel_by: Vec<String> = row.try_get(3)?;
    Ok(Heartbeat {
        alive: row.try_get(0)?,
        reconciled: row.try_get(1)?,
        cancel: cancel_ids.into_iter().zip(cancel_by).collect(),
    })
}

/// Mark this process's registrations stopped (graceful shutdown). Called once
/// every worker has ended, so any run still `running` under them is not being
/// executed by anyone (its start was never confirmed to the node): it is
/// marked `abandoned` with that reason, and its job freed. A clean stop
/// leaves nothing of its own `running`. Returns how many runs that was.
pub async fn node_stop(client: &impl GenericClient, ids: &[String]) -> Result<u64, DbError> {
    let sql = format!(
        "WITH me AS (
             UPDATE crondeck.nodes SET stopped_at = coalesce(stopped_at, now()), busy = 0
             WHERE id = ANY($1)
             RETURNING id
         ), lost AS (
             UPDATE crondeck.runs r
             SET status = 'abandoned', ended_at = greatest(now(), r.started_at),
                 error = 'abandoned: the node stopped cleanly but was not executing this \
                          run (the answer to its claim was lost on the way)'
             WHERE r.status = 'running' AND r.node_id = ANY($1)
             RETURNING r.id, r.job_id, r.started_at, r.ended_at
         ), {freed}
         SELECT count(*) FROM lost",
        freed = free_jobs_of("lost")
    );
    let row = client.query_one(&sql, &[&ids]).await?;
    let lost: i64 = row.try_get(0)?;
    Ok(u64::try_from(lost).unwrap_or(0))
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
    rows.iter().map(node_row).collect()
}

/// A node row from its first ten columns, in `NodeRow`'s field order.
fn node_row(r: &tokio_postgres::Row) -> Result<NodeRow, DbError> {
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
/// abandoned SQL job (found by the backend pid its node published when the
/// run started, which the job cannot change, or by the `application_name`
/// each SQL job sets for its transaction; see `scheduler::sql`). A frozen or cut-off node's
/// statements run on in the server and keep their locks; once the job is
/// free another node would run it alongside them. Terminated, they roll back
/// (they could never have committed: the finish is fenced). Sessions this
/// role may not signal are left alone, and the server needs a moment to act
/// on the signal after the rescue commits.
pub async fn node_rescue_dead(client: &impl GenericClient) -> Result<Vec<RescuedRun>, DbError> {
    let rows = client
        .query(
            &format!("WITH dead AS (
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
                 RETURNING r.id, r.job_id, r.ended_at, r.started_at, r.backend_pid
             ), {freed}, stopped AS (
                 SELECT pg_terminate_backend(s.pid) AS done
                 FROM pg_stat_activity s
                 JOIN abandoned a ON s.application_name = 'crondeck run ' || a.id
                      OR (s.pid = a.backend_pid AND s.backend_start <= a.started_at)
                 WHERE s.pid <> pg_backend_pid()
                   AND (EXISTS (SELECT 1 FROM pg_roles WHERE rolname = current_user AND rolsuper)
                        OR (NOT EXISTS (SELECT 1 FROM pg_roles r
                                        WHERE r.oid = s.usesysid AND r.rolsuper)
                            AND (pg_has_role(s.usesysid, 'MEMBER')
                                 OR pg_has_role('pg_signal_backend', 'MEMBER'))))
             )
             SELECT id, job_id, (SELECT count(*) FROM stopped) FROM abandoned",
                freed = free_jobs_of("abandoned")
            ),
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

/// One node for the console's nodes view: its registration, whether it is
/// alive by lease now, and the jobs it runs (names, oldest run first).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeOverview {
    pub node: NodeRow,
    pub version: String,
    pub alive: bool,
    pub stopped_at: Option<DateTime<Utc>>,
    pub running: Vec<String>,
}

/// Live nodes, and nodes that stopped or went silent within the last hour
/// (so an operator sees the node that just died), live ones first.
pub async fn node_overview(client: &impl GenericClient) -> Result<Vec<NodeOverview>, DbError> {
    let rows = client
        .query(
            "SELECT n.id, n.name, n.host, n.pid, n.workers, n.busy, n.allow_shell, n.started_at,
                    n.heartbeat_at, n.lease_ms, n.version, n.stopped_at,
                    (n.stopped_at IS NULL
                     AND n.heartbeat_at >= now() - n.lease_ms * interval '1 millisecond') AS alive,
                    coalesce((SELECT array_agg(j.name ORDER BY r.started_at, r.id)
                              FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                              WHERE r.status = 'running' AND r.node_id = n.id),
                             '{}'::text[]) AS running
             FROM crondeck.nodes n
             WHERE coalesce(n.stopped_at, n.heartbeat_at) >= now() - interval '1 hour'
             ORDER BY alive DESC, n.started_at, n.id",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(NodeOverview {
                node: node_row(r)?,
                version: r.try_get(10)?,
                stopped_at: r.try_get(11)?,
                alive: r.try_get(12)?,
                running: r.try_get(13)?,
            })
        })
        .collect()
}
