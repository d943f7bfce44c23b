//! Scenario 8, side by side with pg_cron: the same 50, then 200, every-minute
//! `SELECT 1` jobs on both for 3 minutes. pg_cron runs in a second throwaway
//! server with `shared_preload_libraries = 'pg_cron'` and its defaults (32
//! concurrent runs, one libpq connection per run over the Unix socket);
//! crondeck runs one node with default settings and 32 workers.
//!
//! Both lateness distributions are measured the same way: pg_cron's
//! `cron.job_run_details.start_time` against its scheduled minute, crondeck's
//! `started_at` against `scheduled_for`. The two run at the same time, half a
//! minute apart (pg_cron on the minute, crondeck on the half minute), so
//! neither burst competes with the other for the two cores.
//! Target: crondeck's p95 at most one third of pg_cron's.

use std::time::Duration;

use crate::report::Figure;
use crate::support::{node_config, Server};
use crate::Ctx;

const SCENARIO: &str = "8 vs pg_cron";
const CRON_DB: &str = "cronbench";
const MINUTES: i32 = 3;
/// pg_cron's default `cron.max_running_jobs`.
const WORKERS: usize = 32;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let library = ctx
        .server
        .bindir()
        .parent()
        .map(|dir| dir.join("lib/pg_cron.so"));
    if !library.as_ref().is_some_and(|l| l.exists()) {
        return Ok(vec![Figure::skipped(
            SCENARIO,
            "pg_cron is not installed (apt-get install postgresql-15-cron)",
        )]);
    }
    let mut cron_server = Server::start(&[], &[]).await?;
    cron_server.create_database(CRON_DB).await?;
    let socket = cron_server.socket_dir().display().to_string();
    cron_server
        .preload(
            &["pg_cron"],
            &[
                ("cron.database_name", CRON_DB.to_string()),
                // Runs in background workers, not over a libpq connection: the
                // launcher's server asks for a SCRAM password on its socket,
                // which pg_cron's own connections do not have (every run
                // failed to connect, and no figure came out). Enough worker
                // processes for pg_cron's default 32 concurrent runs.
                ("cron.use_background_workers", "on".to_string()),
                ("max_worker_processes", "48".to_string()),
                ("cron.host", socket),
            ],
        )
        .await?;
    let cron = cron_server.connect(CRON_DB).await?;
    cron.batch_execute("CREATE EXTENSION pg_cron").await?;

    let mut figures = Vec::new();
    for jobs in [50, 200] {
        figures.extend(side_by_side(ctx, &cron, jobs).await?);
    }
    Ok(figures)
}

async fn side_by_side(
    ctx: &Ctx,
    cron: &tokio_postgres::Client,
    jobs: i32,
) -> anyhow::Result<Vec<Figure>> {
    cron.execute(
        "SELECT cron.schedule('j' || g, '* * * * *', 'SELECT 1') FROM generate_series(1, $1) g",
        &[&jobs],
    )
    .await?;
    let db = ctx.server.database("vs_pgcron").await?;
    // Every minute on the half minute, starting with the next one.
    db.client
        .execute(
            "INSERT INTO crondeck.jobs (name, schedule_kind, interval_count, interval_unit,
                 nextcall, action_kind, command)
             SELECT 'j' || g, 'every', 1, 'minutes',
                    date_trunc('minute', now()) + interval '30 s'
                      + CASE WHEN extract(second FROM now()) < 25 THEN interval '0' ELSE interval '1 min' END,
                    'sql', 'SELECT 1'
             FROM generate_series(1, $1) g",
            &[&jobs],
        )
        .await?;
    let node = db.start_node(node_config("vs-pgcron", WORKERS)).await?;
    // Until MINUTES ticks of each have passed, plus time for the last runs.
    let wait: f64 = db
        .client
        .query_one(
            "SELECT extract(epoch FROM date_trunc('minute', now()) + make_interval(mins => $1::int + 1)
                    + interval '15 s' - now())::float8",
            &[&MINUTES],
        )
        .await?
        .get(0);
    eprintln!("   {jobs} jobs: measuring for {wait:.0} s");
    tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    node.shutdown().await?;
    let mine = db
        .floats(
            "SELECT extract(epoch FROM started_at - scheduled_for)::float8 * 1000
             FROM crondeck.runs WHERE started_at IS NOT NULL",
        )
        .await?;
    let theirs: Vec<f64> = cron
        .query(
            "SELECT extract(epoch FROM start_time - date_trunc('minute', start_time))::float8 * 1000
             FROM cron.job_run_details WHERE start_time IS NOT NULL",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if theirs.is_empty() {
        // Say why instead of printing an empty row.
        for row in cron
            .query(
                "SELECT status, left(return_message, 200), count(*) FROM cron.job_run_details
                 GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5",
                &[],
            )
            .await?
        {
            let (status, message, n): (Option<String>, Option<String>, i64) =
                (row.get(0), row.get(1), row.get(2));
            eprintln!("   pg_cron recorded {n} run(s) {status:?}: {message:?}");
        }
    }
    cron.batch_execute(
        "SELECT cron.unschedule(jobid) FROM cron.job; DELETE FROM cron.job_run_details",
    )
    .await?;

    let ours = Figure::dist(
        SCENARIO,
        &format!("crondeck lateness, {jobs} jobs"),
        "ms",
        &mine,
    );
    let pg_cron = Figure::dist(
        SCENARIO,
        &format!("pg_cron lateness, {jobs} jobs"),
        "ms",
        &theirs,
    )
    .reference("cron.job_run_details.start_time − minute");
    let mut figures = vec![];
    if let (Some(a), Some(b)) = (ours.dist_value(), pg_cron.dist_value()) {
        let ratio = a.p95 / b.p95.max(1e-9);
        figures.push(ours);
        figures.push(pg_cron);
        figures.push(
            Figure::scalar(
                SCENARIO,
                &format!("p95 ratio crondeck/pg_cron, {jobs} jobs"),
                "×",
                ratio,
                2,
            )
            .target(
                &format!("≤ 0.33 (p95 {:.1} vs {:.1} ms)", a.p95, b.p95),
                ratio <= 1.0 / 3.0,
            ),
        );
    } else {
        figures.push(ours);
        figures.push(pg_cron.target("runs recorded by both", false));
    }
    Ok(figures)
}
