//! Scenario 7, the console at scale: 10,000 and 100,000 jobs; the time to
//! build and render one frame of the jobs table (to a `TestBackend` at
//! 200×50), the refresh query time, and the console's resident memory.
//! Targets at 10,000 jobs: frame ≤ 10 ms p99, refresh ≤ 50 ms p99, RSS ≤ 60 MB.
//!
//! The refresh is what the console's data task runs on every refresh (jobs
//! with their last result, live nodes, the database clock, the jobs no node
//! can run); the frame is `tui::views::draw` of the console's own `App`; the
//! memory is `VmRSS` of the real binary showing the table in tmux.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crondeck::db::jobs::job_list;
use crondeck::db::nodes::{jobs_no_node_can_run, node_list_live};
use crondeck::tui::app::App;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use crate::report::Figure;
use crate::Ctx;

const SCENARIO: &str = "7 console at scale";

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let sizes: &[i32] = if ctx.quick {
        &[10_000]
    } else {
        &[10_000, 100_000]
    };
    let mut figures = Vec::new();
    for &count in sizes {
        let db = ctx.server.database(&format!("console_{count}")).await?;
        db.insert_every_jobs("job", count, 3600, 3600.0, "SELECT 1")
            .await?;
        let label = format!("{}k jobs", count / 1000);
        let at_target = count == 10_000;

        // The refresh queries, as the data task runs them (concurrently).
        let samples = if ctx.quick { 10 } else { 30 };
        let mut refresh_ms = Vec::with_capacity(samples);
        let mut snapshot = None;
        for _ in 0..samples {
            let started = Instant::now();
            let (jobs, nodes, now, unrunnable) = tokio::join!(
                job_list(&db.client),
                node_list_live(&db.client),
                crondeck::ops::db_now(&db.client),
                jobs_no_node_can_run(&db.client)
            );
            refresh_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            snapshot = Some((jobs?, nodes?, now?, unrunnable?));
        }
        let Some((jobs, nodes, now, unrunnable)) = snapshot else {
            continue;
        };
        let refresh = Figure::dist(
            SCENARIO,
            &format!("refresh query, {label}"),
            "ms",
            &refresh_ms,
        );
        figures.push(if at_target {
            let met = refresh.dist_value().is_some_and(|d| d.p99 <= 50.0);
            refresh.target("p99 ≤ 50 ms", met)
        } else {
            refresh.reference("no target at 100k")
        });

        // Taking a snapshot into the UI state (health, sort, filter index).
        let mut app = App::new(db.url(), false, false, now);
        let started = Instant::now();
        app.set_jobs(
            jobs,
            nodes,
            HashMap::new(),
            unrunnable.into_iter().collect(),
            now,
            now,
        );
        let ingest_ms = started.elapsed().as_secs_f64() * 1000.0;
        figures.push(
            Figure::scalar(
                SCENARIO,
                &format!("snapshot into UI state, {label}"),
                "ms",
                ingest_ms,
                1,
            )
            .reference("once per refresh, not per frame"),
        );

        // One frame of the jobs table at 200×50, scrolling between frames.
        let mut terminal = Terminal::new(TestBackend::new(200, 50))?;
        let frames = if ctx.quick { 100 } else { 500 };
        let mut frame_ms = Vec::with_capacity(frames);
        for i in 0..frames {
            app.cursor = (i * 37) % app.view.len().max(1);
            let started = Instant::now();
            terminal.draw(|frame| crondeck::tui::views::draw(frame, &app))?;
            frame_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let frame = Figure::dist(SCENARIO, &format!("frame 200×50, {label}"), "ms", &frame_ms);
        figures.push(if at_target {
            let met = frame.dist_value().is_some_and(|d| d.p99 <= 10.0);
            frame.target("p99 ≤ 10 ms", met)
        } else {
            frame.reference("no target at 100k")
        });

        // The real console's memory, showing this table.
        match console_rss_kib(&db.url(), count).await {
            Ok(kib) => {
                let mb = kib as f64 / 1024.0;
                let figure =
                    Figure::scalar(SCENARIO, &format!("console RSS, {label}"), "MB", mb, 1);
                figures.push(if at_target {
                    figure.target("≤ 60 MB", mb <= 60.0)
                } else {
                    figure.reference("no target at 100k")
                });
            }
            Err(error) => figures.push(Figure::skipped(
                SCENARIO,
                &format!("console RSS not measured: {error:#}"),
            )),
        }
    }
    Ok(figures)
}

/// Start the release binary's console in tmux (no embedded node), wait until
/// its header counts every job, let it refresh a few times, read its VmRSS.
async fn console_rss_kib(url: &str, count: i32) -> anyhow::Result<u64> {
    let socket = format!("crondeck-bench-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&socket)
            .args(args)
            .output()
    };
    let command = format!(
        "exec {} --database-url \"{}\" --no-scheduler",
        env!("CARGO_BIN_EXE_crondeck"),
        url.replace('"', "\\\"")
    );
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "c",
        "-x",
        "200",
        "-y",
        "50",
        &command,
    ])?;
    anyhow::ensure!(started.status.success(), "tmux could not start the console");
    let result = async {
        let header = format!("jobs {count}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = tmux(&["capture-pane", "-p", "-t", "c"])?;
            if String::from_utf8_lossy(&screen.stdout).contains(&header) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the console never showed {header}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // A few refresh cycles (every 2 s), so the steady state is measured.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let pid = tmux(&["list-panes", "-t", "c", "-F", "#{pane_pid}"])?;
        let pid = String::from_utf8_lossy(&pid.stdout).trim().to_string();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no VmRSS for pid {pid}"))
    }
    .await;
    let _ = tmux(&["kill-server"]);
    result
}
