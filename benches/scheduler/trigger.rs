//! Scenario 4, manual trigger latency: `SELECT crondeck.trigger(job)` on an
//! idle node, to the run's start. Latency = `runs.started_at −
//! run_requests.requested_at`, both database time. Requests are spaced by a
//! varying pause after the previous run ended, so each one finds the node
//! asleep. Target: p99 ≤ 20 ms.

use std::time::Duration;

use crondeck::db::audit::Actor;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;

use crate::report::Figure;
use crate::support::{node_config, wait_for};
use crate::Ctx;

const SCENARIO: &str = "4 manual trigger";
const WARM_UP: usize = 3;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let samples = if ctx.quick { 50 } else { 300 };
    let mut db = ctx.server.database("trigger").await?;
    let spec = JobSpec::new("on-demand", Schedule::Manual, ActionKind::Sql, "SELECT 1");
    ops::add(
        &mut db.client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await?;
    let node = db.start_node(node_config("trigger", 2)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut request_ids = Vec::new();
    for i in 0..samples + WARM_UP {
        let id: i64 = db
            .client
            // What crondeck.trigger() does, returning the request's id
            // (the public function only says whether it requested a run).
            .query_one(
                "SELECT crondeck.request_run('on-demand', 'event', session_user::text)",
                &[],
            )
            .await?
            .get(0);
        wait_for(
            Duration::from_secs(10),
            Duration::from_millis(5),
            "the triggered run to end",
            || async {
                let ended = db
                    .client
                    .query_opt(
                        "SELECT 1 FROM crondeck.run_requests q JOIN crondeck.runs r ON r.id = q.run_id
                         WHERE q.id = $1 AND r.ended_at IS NOT NULL",
                        &[&id],
                    )
                    .await?;
                Ok(ended.map(|_| ()))
            },
        )
        .await?;
        if i >= WARM_UP {
            request_ids.push(id);
        }
        // 20–80 ms, varying, so requests do not line up with anything periodic.
        tokio::time::sleep(Duration::from_millis(20 + (i as u64 * 37) % 61)).await;
    }
    node.shutdown().await?;
    let latency: Vec<f64> = db
        .client
        .query(
            "SELECT extract(epoch FROM r.started_at - q.requested_at)::float8 * 1000
             FROM crondeck.run_requests q JOIN crondeck.runs r ON r.id = q.run_id
             WHERE q.id = ANY($1)",
            &[&request_ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let fig = Figure::dist(SCENARIO, "request → run start", "ms", &latency);
    let met = fig.dist_value().is_some_and(|d| d.p99 <= 20.0);
    Ok(vec![fig.target("p99 ≤ 20", met)])
}
