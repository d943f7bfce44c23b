//! Scenario 2, thundering herd: 1,000 `SELECT 1` jobs all due at the same
//! instant, on one node with 8 workers, then on 3 nodes with 8 workers each,
//! then on one node with 32 workers (issue 15's target: all started within
//! 500 ms). Reports the time until the last one started, per-job lateness,
//! and jobs started per second.

use std::time::Duration;

use crate::report::Figure;
use crate::support::{node_config, shutdown_all, wait_for};
use crate::Ctx;

const JOBS: i32 = 1000;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let mut figures = herd(ctx, 1, 8).await?;
    figures.extend(herd(ctx, 3, 8).await?);
    figures.extend(herd(ctx, 1, 32).await?);
    Ok(figures)
}

async fn herd(ctx: &Ctx, nodes: usize, workers: usize) -> anyhow::Result<Vec<Figure>> {
    let scenario = format!("2 herd, {nodes}×{workers}");
    let db = ctx.server.database("herd").await?;
    // Far in the future first, so the nodes start idle.
    db.insert_every_jobs("herd", JOBS, 3600, 86_400.0, "SELECT 1")
        .await?;
    let mut handles = Vec::new();
    for i in 0..nodes {
        handles.push(
            db.start_node(node_config(&format!("herd-{i}"), workers))
                .await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // One instant, on a whole second 2 s ahead: every node is told by NOTIFY
    // and sleeps until it.
    let instant: f64 = db
        .client
        .query_one(
            "WITH moved AS (
                 UPDATE crondeck.jobs SET nextcall = date_trunc('second', now()) + interval '2 s'
                 RETURNING nextcall)
             SELECT extract(epoch FROM max(nextcall))::float8 FROM moved",
            &[],
        )
        .await?
        .get(0);
    wait_for(
        Duration::from_secs(120),
        Duration::from_millis(100),
        "every herd job to start",
        || async {
            let started = db
                .scalar_i64("SELECT count(*) FROM crondeck.runs WHERE started_at IS NOT NULL")
                .await?;
            Ok((started >= i64::from(JOBS)).then_some(()))
        },
    )
    .await?;
    shutdown_all(handles).await?;
    let lateness = db
        .floats(
            "SELECT extract(epoch FROM started_at - scheduled_for)::float8 * 1000
             FROM crondeck.runs WHERE started_at IS NOT NULL",
        )
        .await?;
    let last_started: f64 = db
        .client
        .query_one(
            "SELECT extract(epoch FROM max(started_at))::float8 FROM crondeck.runs",
            &[],
        )
        .await?
        .get(0);
    let spread = last_started - instant;
    let last = Figure::scalar(
        &scenario,
        "last job started after",
        "ms",
        spread * 1000.0,
        1,
    );
    Ok(vec![
        if workers == 32 && nodes == 1 {
            last.target("≤ 500 ms", spread * 1000.0 <= 500.0)
        } else {
            last
        },
        Figure::dist(&scenario, "lateness per job", "ms", &lateness),
        Figure::scalar(
            &scenario,
            "jobs started per second",
            "jobs/s",
            f64::from(JOBS) / spread.max(1e-9),
            lateness.len(),
        ),
    ])
}
