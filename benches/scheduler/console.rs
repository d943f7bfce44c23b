//! Scenario 7, the console at scale: 10,000 and 100,000 jobs; the
//! console's refresh when nothing changed and when 100 jobs changed since
//! the previous one, taking the snapshot into the UI state, one frame of the
//! jobs table (to a `TestBackend` at 200×50), and the console's resident
//! memory while 100 jobs change every second.
//! Targets (issue 15): at 10,000 jobs refresh p99 ≤ 20 ms unchanged and
//! ≤ 50 ms with 100 changed, frame p99 ≤ 10 ms, RSS ≤ 60 MB; at 100,000
//! refresh p99 ≤ 100 ms with 100 changed, frame p99 ≤ 10 ms, RSS ≤ 150 MB.
//!
//! The refresh is the console data task's own (`tui::data::Refresher`: the
//! jobs changed since the previous snapshot, removals, live nodes, the jobs
//! no node can run, the clock); the frame is `tui::views::draw` of the
//! console's own `App`; the memory is `VmRSS` of the real binary showing the
//! table in tmux.

use std::process::Command;
use std::time::{Duration, Instant};

use crondeck::tui::action::{Action, DataEvent};
use crondeck::tui::app::App;
use crondeck::tui::data::Refresher;
use crondeck::tui::update::update;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tokio_util::sync::CancellationToken;

use crate::report::Figure;
use crate::Ctx;

const SCENARIO: &str = "7 console at scale";
/// Jobs changed between two refreshes (and per second, for the memory).
const CHANGED: i64 = 100;

/// What a finish writes to a job row, for `CHANGED` jobs picked at random.
const CHANGE_SQL: &str = "UPDATE crondeck.jobs SET last_status = 'succeeded',
         last_started_at = now(), last_ended_at = now(), last_duration_ms = 3,
         failure_streak = 0
     WHERE id IN (SELECT 1 + floor(random() * $1::int8)::bigint FROM generate_series(1, $2::int8))";

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let sizes: &[i32] = &[10_000, 100_000];
    let mut figures = Vec::new();
    for &count in sizes {
        let db = ctx.server.database(&format!("console_{count}")).await?;
        db.insert_every_jobs("job", count, 3600, 3600.0, "SELECT 1")
            .await?;
        let label = format!("{}k jobs", count / 1000);
        let small = count == 10_000;
        let mut console = db.spec.connect().await?;
        let mut refresher = Refresher::default();
        let mut app = App::new(db.url(), false, false, chrono::Utc::now());

        // The first refresh reads every job, as a console starting does.
        let started = Instant::now();
        let snapshot = refresher.refresh(&mut console).await?;
        let full_ms = ms(started);
        let started = Instant::now();
        update(&mut app, Action::Data(DataEvent::Jobs(Box::new(snapshot))));
        let full_ingest_ms = ms(started);
        figures.push(
            Figure::scalar(
                SCENARIO,
                &format!("first refresh (all), {label}"),
                "ms",
                full_ms,
                1,
            )
            .reference("once, at start and after a reconnect"),
        );
        figures.push(
            Figure::scalar(
                SCENARIO,
                &format!("first snapshot into UI state, {label}"),
                "ms",
                full_ingest_ms,
                1,
            )
            .reference("once"),
        );

        let samples = if ctx.quick { 15 } else { 30 };
        for changed in [0, CHANGED] {
            let mut refresh_ms = Vec::with_capacity(samples);
            let mut ingest_ms = Vec::with_capacity(samples);
            for _ in 0..samples {
                if changed > 0 {
                    db.client
                        .execute(CHANGE_SQL, &[&i64::from(count), &changed])
                        .await?;
                }
                let started = Instant::now();
                let snapshot = refresher.refresh(&mut console).await?;
                refresh_ms.push(ms(started));
                anyhow::ensure!(!snapshot.full, "a refresh after the first read everything");
                let started = Instant::now();
                update(&mut app, Action::Data(DataEvent::Jobs(Box::new(snapshot))));
                ingest_ms.push(ms(started));
            }
            anyhow::ensure!(
                app.jobs.len() == usize::try_from(count)?,
                "the console holds {} jobs, not {count}",
                app.jobs.len()
            );
            let what = if changed == 0 {
                "nothing changed".to_string()
            } else {
                format!("{changed} changed")
            };
            let refresh = Figure::dist(
                SCENARIO,
                &format!("refresh, {what}, {label}"),
                "ms",
                &refresh_ms,
            );
            let limit = match (small, changed) {
                (true, 0) => Some(20.0),
                (true, _) => Some(50.0),
                (false, 0) => None,
                (false, _) => Some(100.0),
            };
            figures.push(match limit {
                Some(limit) => {
                    let met = refresh.dist_value().is_some_and(|d| d.p99 <= limit);
                    refresh.target(&format!("p99 ≤ {limit} ms"), met)
                }
                None => refresh.reference("no target"),
            });
            figures.push(
                Figure::dist(
                    SCENARIO,
                    &format!("snapshot into UI state, {what}, {label}"),
                    "ms",
                    &ingest_ms,
                )
                .reference("per refresh, in the UI task"),
            );
        }

        // One frame of the jobs table at 200×50, scrolling between frames.
        let mut terminal = Terminal::new(TestBackend::new(200, 50))?;
        let frames = if ctx.quick { 100 } else { 500 };
        let mut frame_ms = Vec::with_capacity(frames);
        for i in 0..frames {
            app.cursor = (i * 37) % app.view.len().max(1);
            let started = Instant::now();
            terminal.draw(|frame| crondeck::tui::views::draw(frame, &app))?;
            frame_ms.push(ms(started));
        }
        let frame = Figure::dist(SCENARIO, &format!("frame 200×50, {label}"), "ms", &frame_ms);
        let met = frame.dist_value().is_some_and(|d| d.p99 <= 10.0);
        figures.push(frame.target("p99 ≤ 10 ms", met));
        drop(app);

        // The real console's memory, showing this table while 100 jobs
        // change every second.
        let stop = CancellationToken::new();
        let churn = {
            let client = db.spec.connect().await?;
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(1));
                while !stop.is_cancelled() {
                    every.tick().await;
                    if let Err(e) = client
                        .execute(CHANGE_SQL, &[&i64::from(count), &CHANGED])
                        .await
                    {
                        eprintln!("   churn: {e}");
                        return;
                    }
                }
            })
        };
        let rss = console_rss_kib(&db.url(), count).await;
        stop.cancel();
        let _ = churn.await;
        match rss {
            Ok(kib) => {
                let mb = kib as f64 / 1024.0;
                let figure = Figure::scalar(
                    SCENARIO,
                    &format!("console RSS, {label}, {CHANGED} changing/s"),
                    "MB",
                    mb,
                    1,
                );
                let limit = if small { 60.0 } else { 150.0 };
                figures.push(figure.target(&format!("≤ {limit} MB"), mb <= limit));
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
