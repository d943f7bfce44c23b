//! Scenario 1, tick precision when idle: one every-1s `SELECT 1` job on one
//! node with default settings. Lateness = `started_at − scheduled_for`.
//! Target (issue 15, tightening issue 6's p99 ≤ 10 ms): p50 ≤ 2 ms,
//! p99 ≤ 5 ms. pg_cron starts a lone job 5–7 ms after its minute.

use std::time::Duration;

use crate::report::Figure;
use crate::support::{node_config, wait_for};
use crate::Ctx;

const SCENARIO: &str = "1 tick precision";
/// Ticks not counted: the first ones pay for connecting and warming caches.
const WARM_UP: i64 = 3;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let ticks: i64 = if ctx.quick { 30 } else { 300 };
    let db = ctx.server.database("precision").await?;
    db.insert_every_jobs("tick", 1, 1, 1.0, "SELECT 1").await?;
    let node = db.start_node(node_config("precision", 2)).await?;
    let wanted = ticks + WARM_UP;
    wait_for(
        Duration::from_secs(u64::try_from(wanted).unwrap_or(0) + 60),
        Duration::from_millis(500),
        "the ticks",
        || async {
            let done = db
                .scalar_i64(
                    "SELECT count(*) FROM crondeck.runs WHERE trigger = 'schedule' AND status = 'succeeded'",
                )
                .await?;
            Ok((done >= wanted).then_some(()))
        },
    )
    .await?;
    node.shutdown().await?;
    let lateness = db
        .floats(&format!(
            "SELECT extract(epoch FROM started_at - scheduled_for)::float8 * 1000
             FROM crondeck.runs WHERE trigger = 'schedule' AND started_at IS NOT NULL
             ORDER BY scheduled_for OFFSET {WARM_UP} LIMIT {ticks}"
        ))
        .await?;
    let skipped = db
        .scalar_i64("SELECT count(*) FROM crondeck.runs WHERE status = 'skipped'")
        .await?;
    let fig = Figure::dist(SCENARIO, "lateness, every-1s job", "ms", &lateness);
    let met = fig
        .dist_value()
        .is_some_and(|d| d.p50 <= 2.0 && d.p99 <= 5.0);
    Ok(vec![
        fig.target("p50 ≤ 2, p99 ≤ 5 (pg_cron: 5–7)", met),
        Figure::scalar(SCENARIO, "ticks skipped", "ticks", skipped as f64, 1)
            .target("0", skipped == 0),
    ])
}
