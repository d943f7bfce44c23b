//! Scenario 3, throughput against the physical limit: many trivial jobs,
//! always due, on 1 node and on 3 nodes (8 workers each), counting completed
//! runs per second. The limit is what `pgbench` gets on the same server and
//! the same tables with a script doing one claim-plus-record per run
//! (`claim_and_record.sql`). Target: crondeck ≥ 0.6 of the limit.

use std::time::Duration;

use anyhow::{bail, Context as _};

use crate::report::Figure;
use crate::support::{node_config, shutdown_all, BenchDb};
use crate::Ctx;

const SCENARIO: &str = "3 throughput";
/// Far more jobs than runs per second, so there is always a backlog.
const JOBS: i32 = 10_000;
const WORKERS: usize = 8;
const WARM_UP: Duration = Duration::from_secs(3);
const SCRIPT: &str = include_str!("claim_and_record.sql");

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let window = Duration::from_secs(if ctx.quick { 8 } else { 30 });
    let one = crondeck_rate(ctx, 1, window).await?;
    let three = crondeck_rate(ctx, 3, window).await?;
    let client_counts: &[usize] = if ctx.quick { &[8] } else { &[8, 24] };
    let mut limit = 0.0_f64;
    let mut best_clients = 0;
    for &clients in client_counts {
        let tps = pgbench_rate(ctx, clients, window).await?;
        eprintln!("   pgbench -c {clients}: {tps:.0} runs/s");
        if tps > limit {
            limit = tps;
            best_clients = clients;
        }
    }
    let secs = window.as_secs() as usize;
    let mut figures = vec![
        Figure::scalar(SCENARIO, "crondeck, 1 node × 8", "runs/s", one, secs),
        Figure::scalar(SCENARIO, "crondeck, 3 nodes × 8", "runs/s", three, secs),
        Figure::scalar(
            SCENARIO,
            &format!("pgbench claim+record, {best_clients} clients"),
            "runs/s",
            limit,
            secs,
        )
        .reference("the physical limit"),
    ];
    for (label, rate) in [("1 node", one), ("3 nodes", three)] {
        let ratio = rate / limit.max(1e-9);
        figures.push(
            Figure::scalar(SCENARIO, &format!("ratio to limit, {label}"), "×", ratio, 1)
                .target("≥ 0.6", ratio >= 0.6),
        );
    }
    Ok(figures)
}

/// Completed runs per second over `window`, after a warm-up, by database time.
async fn crondeck_rate(ctx: &Ctx, nodes: usize, window: Duration) -> anyhow::Result<f64> {
    let db = ctx.server.database("throughput").await?;
    db.insert_every_jobs("busy", JOBS, 1, 0.0, "SELECT 1")
        .await?;
    let mut handles = Vec::new();
    for i in 0..nodes {
        handles.push(
            db.start_node(node_config(&format!("busy-{i}"), WORKERS))
                .await?,
        );
    }
    tokio::time::sleep(WARM_UP).await;
    db.client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_stat_statements; SELECT pg_stat_statements_reset()",
        )
        .await?;
    let from = db.db_clock().await?;
    tokio::time::sleep(window).await;
    let to = db.db_clock().await?;
    shutdown_all(handles).await?;
    print_top_statements(&db).await?;
    let done: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'
               AND ended_at > to_timestamp($1) AND ended_at <= to_timestamp($2)",
            &[&from, &to],
        )
        .await?
        .get(0);
    Ok(done as f64 / (to - from))
}

/// pgbench's transactions (runs) per second with `clients` connections.
async fn pgbench_rate(ctx: &Ctx, clients: usize, window: Duration) -> anyhow::Result<f64> {
    let db: BenchDb = ctx.server.database("pgbench").await?;
    db.insert_every_jobs("busy", JOBS, 1, 0.0, "SELECT 1")
        .await?;
    let script = tempfile::NamedTempFile::new()?;
    std::fs::write(script.path(), SCRIPT)?;
    let out = tokio::process::Command::new(ctx.server.bindir().join("pgbench"))
        .args(["-n", "-j", "2", "-c", &clients.to_string()])
        .args(["-T", &window.as_secs().to_string()])
        .arg("-f")
        .arg(script.path())
        .arg("-h")
        .arg(ctx.server.socket_dir())
        .args(["-p", "5432", "-U", crondeck::embedded::SUPERUSER, &db.name])
        .env("PGPASSWORD", db.password())
        .output()
        .await
        .context("running pgbench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "tps = 1234.567890 (without initial connection time)"
    stdout
        .lines()
        .find_map(|line| {
            let rest = line.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .with_context(|| format!("no tps in pgbench's output:\n{stdout}"))
}

/// Where the database's time went (stderr): a clue, not a figure.
async fn print_top_statements(db: &BenchDb) -> anyhow::Result<()> {
    let rows = db
        .client
        .query(
            "SELECT calls, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY total_exec_time DESC LIMIT 8",
            &[],
        )
        .await?;
    for row in rows {
        let calls: i64 = row.get(0);
        let total: f64 = row.get(1);
        let query: String = row.get(2);
        eprintln!("   {calls:>7} calls {total:>8.0} ms  {query}");
    }
    Ok(())
}
