//! Live runs in the console (issues 12.2, 14.1): the progress bar and
//! estimated finish of running jobs, and the run view following a running
//! run like `tail -f` with its elapsed time ticking.

use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::fixtures::*;
use crate::db::runs::{Progress, RunRow, RunningProgress};
use crate::tui::action::{Action, DataEvent, Effect};
use crate::tui::app::{App, Screen};
use crate::tui::update::update;

fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
                + "\n"
        })
        .collect()
}

fn progress_of_nightly_report() -> DataEvent {
    // Job 5 ("nightly-report") runs run 77 since 12 s: 4000 of 10000 done
    // 2 s ago, so 15 s are left from then, 13 s from now.
    DataEvent::Progress(vec![RunningProgress {
        job_id: 5,
        run_id: 77,
        started_at: now() - secs(12),
        progress: Progress {
            done: 4000,
            total: Some(10000),
        },
        progress_at: now() - secs(2),
    }])
}

#[test]
fn a_refresh_with_running_jobs_asks_for_their_progress() {
    let mut app = App::new("test".into(), false, true, now());
    let effects = update(&mut app, snapshot(jobs(), nodes()));
    assert_eq!(effects, vec![Effect::LoadProgress]);
    let idle: Vec<_> = jobs()
        .into_iter()
        .map(|mut j| {
            j.runtime.running_run_id = None;
            j.runtime.running_since = None;
            j
        })
        .collect();
    assert_eq!(update(&mut app, snapshot(idle, nodes())), vec![]);
}

#[test]
fn jobs_table_shows_a_progress_bar_and_time_left() {
    let mut app = app();
    update(&mut app, Action::Data(progress_of_nightly_report()));
    let term = render(&app, 80, 24);
    let text = screen_text(&term);
    let row = text
        .lines()
        .find(|l| l.contains("nightly-report"))
        .expect("the running job's row");
    assert!(row.contains("40% 13s"), "{row}");
    insta::assert_snapshot!("jobs_progress_80x24", term.backend());

    // Progress of an older run of the job is not shown for the new one.
    let mut stale = app.clone();
    if let Some(p) = stale.progress.get_mut(&5) {
        p.run_id = 76;
    }
    let text = screen_text(&render(&stale, 80, 24));
    let row = text.lines().find(|l| l.contains("nightly-report")).unwrap();
    assert!(row.contains("running 12s"), "{row}");
}

/// The run view of the heartbeat job's running run 200, loaded with
/// `lines` lines of output and 3 of 4 steps done.
fn run_view(lines: usize) -> App {
    let mut app = app();
    app.selected = Some(6);
    app.rebuild_view();
    update(&mut app, key(KeyCode::Enter));
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: 6,
            runs: runs(),
            more: false,
        }),
    );
    update(&mut app, key(KeyCode::Enter));
    let Some(Screen::Run(state)) = app.stack.last() else {
        panic!("expected the run view");
    };
    assert_eq!(state.run_id, 200);
    update(&mut app, Action::Data(live_run(lines)));
    app
}

fn live_run(lines: usize) -> DataEvent {
    let mut run: RunRow = run_row(200, 6, "running", 30, None);
    run.stdout = Some((1..=lines).map(|i| format!("line {i}\n")).collect());
    run.stderr = Some("warning: slow disk\n".into());
    run.progress_done = Some(3);
    run.progress_total = Some(4);
    run.progress_at = Some(now() - secs(6));
    run.output_at = Some(now() - secs(1));
    DataEvent::Run {
        run_id: 200,
        run: Some(Box::new(run)),
    }
}

#[test]
fn the_run_view_follows_a_running_run_like_tail_f() {
    let mut app = run_view(40);
    let term = render(&app, 80, 24);
    let text = screen_text(&term);
    // Pinned to the bottom: the newest output is on screen, the oldest not.
    assert!(text.contains("warning: slow disk"), "{text}");
    assert!(text.contains("line 40"), "{text}");
    assert!(!text.contains("line 1\n"), "{text}");
    insta::assert_snapshot!("run_live_following", term.backend());

    // More output arrives: still at the bottom.
    update(&mut app, Action::Data(live_run(45)));
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("line 45"), "{text}");

    // Scrolling up stops following, and says that output goes on below.
    update(&mut app, key(KeyCode::Up));
    update(&mut app, key(KeyCode::Up));
    let Some(Screen::Run(state)) = app.stack.last() else {
        panic!()
    };
    assert!(!state.follow);
    update(&mut app, Action::Data(live_run(60)));
    let term = render(&app, 80, 24);
    let text = screen_text(&term);
    assert!(!text.contains("line 60"), "{text}");
    assert!(text.contains("G or End follows"), "{text}");
    insta::assert_snapshot!("run_live_scrolled_up", term.backend());

    // G follows again.
    update(&mut app, ch('G'));
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("line 60"), "{text}");
    assert!(!text.contains("G or End follows"), "{text}");
}

#[test]
fn the_run_view_header_shows_progress_elapsed_time_and_estimated_end() {
    let mut app = run_view(3);
    let text = screen_text(&render(&app, 80, 24));
    // Started 30 s ago (less 40 ms); 3 of 4 done 6 s ago, after 23.96 s:
    // 7.99 s more, so 1.99 s from now.
    assert!(text.contains("running for 29s"), "{text}");
    assert!(text.contains("3/4 (75%)"), "{text}");
    assert!(text.contains("(in 1s)"), "{text}");
    assert!(text.contains("live output (as of"), "{text}");
    insta::assert_snapshot!("run_live_header", render(&app, 80, 24).backend());

    // The clock ticks: the elapsed time moves, and the run is reloaded
    // every second, not only at the two-second refresh.
    let first = update(
        &mut app,
        Action::Tick {
            wall: now() + secs(2),
        },
    );
    assert!(first.contains(&Effect::LoadRun(200)), "{first:?}");
    let second = update(
        &mut app,
        Action::Tick {
            wall: now() + secs(3),
        },
    );
    assert_eq!(second, vec![Effect::LoadRun(200)]);
    let text = screen_text(&render(&app, 80, 24));
    assert!(text.contains("running for 32s"), "{text}");

    // Once it has ended, no more reloads between refreshes.
    let mut done = run_row(200, 6, "succeeded", 30, Some(29_000));
    done.progress_done = Some(4);
    done.progress_total = Some(4);
    update(
        &mut app,
        Action::Data(DataEvent::Run {
            run_id: 200,
            run: Some(Box::new(done)),
        }),
    );
    let after = update(
        &mut app,
        Action::Tick {
            wall: now() + secs(4),
        },
    );
    assert!(!after.contains(&Effect::LoadRun(200)), "{after:?}");
}
