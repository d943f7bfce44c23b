//! Scenario 5, idle cost: with many jobs none of which is due for the next
//! hour, count what the database executes per minute, from
//! `pg_stat_statements` (the bench server preloads it). Target: independent
//! of the number of jobs, heartbeats only. Measured with 10 jobs, then with
//! 10,000, on one node with default settings (a heartbeat every 5 s).

use std::time::Duration;

use anyhow::Context as _;

use crate::report::Figure;
use crate::support::node_config;
use crate::Ctx;

const SCENARIO: &str = "5 idle cost";

/// What one window saw.
struct Window {
    statements_per_min: f64,
    /// Statements that are neither heartbeat, rescue, nor transaction control.
    other: Vec<(String, i64)>,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let (small_window, big_window) = if ctx.quick {
        (Duration::from_secs(20), Duration::from_secs(30))
    } else {
        (Duration::from_secs(60), Duration::from_secs(300))
    };
    let small = measure(ctx, 10, small_window).await?;
    let big = measure(ctx, 10_000, big_window).await?;
    // Default heartbeat: every 5 s, an UPDATE of the node row and a rescue
    // statement, each its own transaction.
    let expected = 2.0 * 60.0 / crondeck::scheduler::DEFAULT_HEARTBEAT.as_secs_f64();
    let mut figures = Vec::new();
    for (jobs, window, seen) in [(10, small_window, &small), (10_000, big_window, &big)] {
        let heartbeat_only = seen.other.is_empty();
        figures.push(
            Figure::scalar(
                SCENARIO,
                &format!("statements/min, {jobs} jobs"),
                "stmt/min",
                seen.statements_per_min,
                window.as_secs() as usize,
            )
            .target(
                &format!("heartbeats only (≈{expected:.0}/min)"),
                heartbeat_only,
            ),
        );
        for (query, calls) in &seen.other {
            eprintln!("   not a heartbeat ({calls} calls): {query}");
        }
    }
    let ratio = big.statements_per_min / small.statements_per_min.max(1e-9);
    figures.push(
        Figure::scalar(SCENARIO, "10,000 jobs vs 10 jobs", "×", ratio, 2).target(
            "≈ 1 (independent of job count)",
            (0.8..=1.25).contains(&ratio),
        ),
    );
    Ok(figures)
}

async fn measure(ctx: &Ctx, jobs: i32, window: Duration) -> anyhow::Result<Window> {
    let db = ctx.server.database("idle").await?;
    db.client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .await
        .context("pg_stat_statements (is it preloaded?)")?;
    // Every 2 h, first due in 1 h: nothing is due during the window.
    db.insert_every_jobs("idle", jobs, 7200, 3600.0, "SELECT 1")
        .await?;
    let node = db.start_node(node_config("idle", 2)).await?;
    // Let the start-up claim and its wake-up computation pass.
    tokio::time::sleep(Duration::from_secs(1)).await;
    db.client
        .batch_execute("SELECT pg_stat_statements_reset()")
        .await?;
    let from = db.db_clock().await?;
    tokio::time::sleep(window).await;
    let to = db.db_clock().await?;
    // This bench's own statements mention pg_stat_statements or the clock.
    let rows = db
        .client
        .query(
            "SELECT query, calls FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT ILIKE '%pg_stat_statements%'
               AND query NOT ILIKE '%clock_timestamp()%'
             ORDER BY calls DESC",
            &[],
        )
        .await?;
    node.shutdown().await?;
    let mut total = 0;
    let mut other = Vec::new();
    for row in rows {
        let query: String = row.get(0);
        let calls: i64 = row.get(1);
        total += calls;
        let heartbeat = query.contains("UPDATE crondeck.nodes SET heartbeat_at")
            || query.contains("WITH dead AS");
        if !heartbeat {
            other.push((
                query.split_whitespace().collect::<Vec<_>>().join(" "),
                calls,
            ));
        }
    }
    Ok(Window {
        statements_per_min: total as f64 * 60.0 / (to - from),
        other,
    })
}
