//! `update` for everything that is not a key: ticks, resizes, data events,
//! connection changes, mutation results and signals.

use crossterm::event::KeyCode;

use super::fixtures::*;
use crate::health::State;
use crate::tui::action::{Action, DataEvent, Effect, Link};
use crate::tui::app::{Conn, Screen};
use crate::tui::update::update;

#[test]
fn ticks_advance_the_clock_and_poll_every_two_seconds() {
    let mut app = app();
    assert_eq!(
        update(
            &mut app,
            Action::Tick {
                wall: now() + secs(1)
            }
        ),
        vec![Effect::Refresh],
        "the first tick polls"
    );
    assert!(update(
        &mut app,
        Action::Tick {
            wall: now() + secs(2)
        }
    )
    .is_empty());
    assert_eq!(app.now, now() + secs(2));
    assert_eq!(
        update(
            &mut app,
            Action::Tick {
                wall: now() + secs(3)
            }
        ),
        vec![Effect::Refresh]
    );
}

#[test]
fn health_moves_with_the_clock() {
    let mut app = app();
    let hb = app.jobs.iter().position(|j| j.id == 6).unwrap();
    assert_eq!(app.health[hb].primary, State::Ok);
    update(
        &mut app,
        Action::Tick {
            wall: now() + secs(60),
        },
    );
    assert_eq!(app.health[hb].primary, State::Overdue);
}

#[test]
fn the_database_clock_offset_is_kept() {
    let mut app = app();
    // The database is 5 s ahead of this host.
    let mut snap = snapshot(jobs(), nodes());
    if let Action::Data(DataEvent::Jobs(s)) = &mut snap {
        s.db_now = now() + secs(5);
    }
    update(&mut app, snap);
    update(
        &mut app,
        Action::Tick {
            wall: now() + secs(1),
        },
    );
    assert_eq!(app.now, now() + secs(6));
}

#[test]
fn polls_on_the_detail_and_run_screens_reload_them() {
    let mut app = app();
    app.selected = Some(6);
    app.rebuild_view();
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        update(
            &mut app,
            Action::Tick {
                wall: now() + secs(5)
            }
        ),
        vec![Effect::Refresh, Effect::LoadRuns(6)]
    );
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: 6,
            runs: runs(),
            more: false,
        }),
    );
    update(&mut app, key(KeyCode::Enter)); // the running run
    let effects = update(
        &mut app,
        Action::Tick {
            wall: now() + secs(10),
        },
    );
    assert_eq!(effects, vec![Effect::Refresh, Effect::LoadRun(200)]);
    // A finished run is not reloaded.
    let mut done = run_row(200, 6, "succeeded", 1, Some(5));
    done.stdout = Some("ok".into());
    update(
        &mut app,
        Action::Data(DataEvent::Run {
            run_id: 200,
            run: Some(Box::new(done)),
        }),
    );
    let effects = update(
        &mut app,
        Action::Tick {
            wall: now() + secs(15),
        },
    );
    assert_eq!(effects, vec![Effect::Refresh]);
}

#[test]
fn results_for_another_screen_are_ignored() {
    let mut app = app();
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: 6,
            runs: runs(),
            more: false,
        }),
    );
    update(&mut app, Action::Data(DataEvent::Audit(audit())));
    update(
        &mut app,
        Action::Data(DataEvent::Run {
            run_id: 1,
            run: None,
        }),
    );
    assert!(app.stack.is_empty());
    app.selected = Some(6);
    app.rebuild_view();
    update(&mut app, key(KeyCode::Enter));
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: 5,
            runs: runs(),
            more: false,
        }),
    );
    assert!(matches!(app.stack.last(), Some(Screen::Detail(d)) if d.runs.is_none()));
}

#[test]
fn losing_the_database_marks_the_data_stale_and_freezes_health() {
    let mut app = app();
    update(
        &mut app,
        Action::Data(DataEvent::Connection(Link::Lost {
            error: "refused".into(),
        })),
    );
    assert!(matches!(&app.conn, Conn::Stale { since, .. } if *since == now()));
    let hb = app.jobs.iter().position(|j| j.id == 6).unwrap();
    // A minute later the old data would look overdue; it is shown as of its time.
    update(
        &mut app,
        Action::Tick {
            wall: now() + secs(60),
        },
    );
    assert_eq!(app.health[hb].primary, State::Ok);
    assert_eq!(app.now, now() + secs(60), "the clock goes on");
    // A second failure keeps the original "since".
    update(
        &mut app,
        Action::Data(DataEvent::Connection(Link::Lost {
            error: "again".into(),
        })),
    );
    assert!(
        matches!(&app.conn, Conn::Stale { since, error } if *since == now() && error == "again")
    );
    // Back: live, and everything on screen is refreshed.
    let effects = update(&mut app, Action::Data(DataEvent::Connection(Link::Live)));
    assert_eq!(app.conn, Conn::Live);
    assert_eq!(effects, vec![Effect::Refresh]);
    assert!(app.message.as_ref().unwrap().text.contains("live"));
}

#[test]
fn mutation_results_are_shown_and_refresh_at_once() {
    let mut app = app();
    let effects = update(
        &mut app,
        Action::Data(DataEvent::Done(Ok("paused \"x\"".into()))),
    );
    assert_eq!(effects, vec![Effect::Refresh]);
    assert!(!app.message.as_ref().unwrap().error);
    update(
        &mut app,
        Action::Data(DataEvent::Done(Err("no job named \"x\"".into()))),
    );
    assert!(app.message.as_ref().unwrap().error);
}

#[test]
fn resize_keeps_the_cursor_visible() {
    let mut app = app();
    update(&mut app, ch('G'));
    update(
        &mut app,
        Action::Resize {
            width: 80,
            height: 15,
        },
    );
    assert!(app.cursor >= app.offset && app.cursor < app.offset + app.table_rows());
    assert_eq!((app.width, app.height), (80, 15));
    assert!(!app.too_small());
    update(
        &mut app,
        Action::Resize {
            width: 40,
            height: 10,
        },
    );
    assert!(app.too_small());
}

#[test]
fn own_node_status_and_signals() {
    let mut app = app();
    update(&mut app, Action::OwnNode(None));
    assert!(app.own_node.is_none());
    assert_eq!(update(&mut app, Action::Terminate), vec![Effect::Quit]);
    assert!(app.quit);
}

#[test]
fn ten_thousand_jobs_keep_index_views() {
    let mut many = Vec::new();
    for i in 0..10_000 {
        let mut j = job(
            i,
            &format!("job-{i:05}"),
            "every 1m",
            crate::job::ActionKind::Sql,
            "SELECT 1",
        );
        j.nextcall = Some(now() + secs(i % 120));
        many.push(j);
    }
    let mut app = app();
    app.selected = Some(1234);
    update(&mut app, snapshot(many, nodes()));
    assert_eq!(app.view.len(), 10_000);
    assert_eq!(app.jobs[app.view[app.cursor]].id, 1234);
    // Only the visible rows are drawn; this must not build 10,000 rows.
    let term = render(&app, 80, 24);
    let text = format!("{:?}", term.backend().buffer());
    assert!(text.contains("job-01234"));
}
