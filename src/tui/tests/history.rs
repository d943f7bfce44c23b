//! Issue 12 point 7: the history answers "what didn't run last night":
//! keyset pages through all of it, a status filter, a jump to a time, and
//! skipped or coalesced rows with their reason and tick count.

use crossterm::event::KeyCode;

use super::fixtures::*;
use crate::db::runs::{RunPageQuery, RunRow};
use crate::tui::action::{Action, DataEvent, Effect};
use crate::tui::app::{App, Screen, HISTORY_LIMIT};
use crate::tui::format::Zone;
use crate::tui::update::{parse_jump, update};

/// `n` runs of the heartbeat job, ids `top` down, newest first.
fn page_of(top: i64, n: i64) -> Vec<RunRow> {
    (0..n)
        .map(|i| run_row(top - i, 6, "succeeded", 5 * (i + 1), Some(7)))
        .collect()
}

fn detail(first_page: Vec<RunRow>) -> App {
    let mut app = app();
    app.selected = Some(6);
    app.rebuild_view();
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        vec![Effect::LoadRuns(6)]
    );
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: 6,
            more: first_page.len() == usize::try_from(HISTORY_LIMIT).unwrap(),
            runs: first_page,
        }),
    );
    app
}

fn query(app: &App) -> RunPageQuery {
    match app.stack.last() {
        Some(Screen::Detail(d)) => d.query.clone(),
        other => panic!("not on the detail: {other:?}"),
    }
}

#[test]
fn pages_go_back_by_keyset_and_forward_again() {
    let mut app = detail(page_of(500, HISTORY_LIMIT));
    // Older: the runs below the last id shown, never an offset.
    let older = update(&mut app, ch(']'));
    let before_451 = RunPageQuery {
        before: Some(451),
        ..RunPageQuery::default()
    };
    assert_eq!(
        older,
        vec![Effect::LoadHistory {
            job_id: 6,
            query: before_451.clone()
        }]
    );
    // A refresh reloads the page shown, not the newest.
    let refresh = update(&mut app, ctrl('r'));
    assert!(
        refresh.contains(&Effect::LoadHistory {
            job_id: 6,
            query: before_451.clone()
        }),
        "{refresh:?}"
    );
    // A late answer for the newest page does not replace the page shown.
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: 6,
            runs: page_of(500, 3),
            more: false,
        }),
    );
    assert!(matches!(app.stack.last(), Some(Screen::Detail(d)) if d.runs.is_none()));
    update(
        &mut app,
        Action::Data(DataEvent::History {
            job_id: 6,
            query: before_451,
            runs: page_of(450, 20),
            more: false,
        }),
    );
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("runs 51–70 · page 2 · oldest reached"),
        "{text}"
    );
    // The oldest page says so instead of loading nothing.
    assert!(update(&mut app, ch(']')).is_empty());
    assert!(app
        .message
        .as_ref()
        .is_some_and(|m| m.text.contains("oldest")));
    // Newer: back to the newest page.
    assert_eq!(update(&mut app, ch('[')), vec![Effect::LoadRuns(6)]);
    assert!(update(&mut app, ch('[')).is_empty());
}

#[test]
fn status_filter_cycles_and_starts_from_the_newest() {
    let mut app = detail(page_of(500, HISTORY_LIMIT));
    update(&mut app, ch(']'));
    let effects = update(&mut app, ch('f'));
    let failed = RunPageQuery {
        status: Some("failed".into()),
        ..RunPageQuery::default()
    };
    assert_eq!(
        effects,
        vec![Effect::LoadHistory {
            job_id: 6,
            query: failed
        }]
    );
    for _ in 0..8 {
        update(&mut app, ch('f'));
    }
    assert_eq!(
        query(&app),
        RunPageQuery::default(),
        "all again after the last status"
    );
}

#[test]
fn jump_to_a_time_reads_times_ago_and_clock_times() {
    let now = now(); // 10:00 UTC
    assert_eq!(
        parse_jump("-8h", now, Zone::Utc).unwrap(),
        now - secs(8 * 3600)
    );
    assert_eq!(
        parse_jump("8h ago", now, Zone::Utc).unwrap(),
        now - secs(8 * 3600)
    );
    // 02:00 is earlier today; 23:00 is still ahead, so last night's.
    assert_eq!(
        parse_jump("02:00", now, Zone::Utc).unwrap(),
        now - secs(8 * 3600)
    );
    assert_eq!(
        parse_jump("23:00", now, Zone::Utc).unwrap(),
        now - secs(11 * 3600)
    );
    assert!(parse_jump("yesterdayish", now, Zone::Utc).is_err());

    let mut app = detail(page_of(500, 10));
    update(&mut app, ch('t'));
    for a in typed("-8h") {
        update(&mut app, a);
    }
    insta::assert_snapshot!("history_jump_typing", render(&app, 80, 24).backend());
    let effects = update(&mut app, key(KeyCode::Enter));
    let at = RunPageQuery {
        at: Some(now - secs(8 * 3600)),
        ..RunPageQuery::default()
    };
    assert_eq!(
        effects,
        vec![Effect::LoadHistory {
            job_id: 6,
            query: at
        }]
    );
    // A bad time says why and changes nothing.
    update(&mut app, ch('t'));
    for a in typed("soon") {
        update(&mut app, a);
    }
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(app.message.as_ref().is_some_and(|m| m.error));
}

#[test]
fn an_older_filtered_page_with_skipped_and_coalesced_rows() {
    let mut app = detail(page_of(500, HISTORY_LIMIT));
    update(&mut app, ch(']'));
    update(&mut app, ch('f'));
    update(&mut app, ch('f')); // timed_out
    update(&mut app, ch('f')); // skipped
    let q = query(&app);
    assert_eq!(q.status.as_deref(), Some("skipped"));
    let mut rows = page_of(300, 4);
    for (r, (reason, ticks)) in rows.iter_mut().zip([
        ("overlap", 1),
        ("scheduler_down", 7),
        ("paused", 12),
        ("catchup_skip", 3),
    ]) {
        r.status = "skipped".into();
        r.reason = Some(reason.into());
        r.ticks = ticks;
        r.started_at = None;
        r.duration_ms = None;
        r.lateness_ms = None;
    }
    update(
        &mut app,
        Action::Data(DataEvent::History {
            job_id: 6,
            query: q,
            runs: rows,
            more: true,
        }),
    );
    let text = screen(&app, 80, 24);
    assert!(text.contains("no node on time, 7 ticks"), "{text}");
    assert!(text.contains("only skipped"), "{text}");
    insta::assert_snapshot!("history_skipped_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!("history_skipped_160x40", render(&app, 160, 40).backend());
}

fn screen(app: &App, width: u16, height: u16) -> String {
    let term = render(app, width, height);
    let buffer = term.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue 12 point 9: a paused job says why and until when, in the table
/// and in the detail.
#[test]
fn pause_reason_and_end_show_in_the_table_and_the_detail() {
    let mut jobs = jobs();
    let legacy = jobs
        .iter_mut()
        .find(|j| j.spec.name == "legacy-sync")
        .expect("the paused fixture");
    if let Some(p) = legacy.pause.as_mut() {
        p.until = Some(now() + secs(2 * 3600));
    }
    let mut app = app();
    update(&mut app, snapshot(jobs, nodes()));
    let text = screen(&app, 80, 24);
    let row = text
        .lines()
        .find(|l| l.contains("legacy-sync"))
        .unwrap_or_default();
    assert!(row.contains("til 2h"), "{row}");
    assert!(row.contains("‖ CRM decommiss"), "{row}");
    insta::assert_snapshot!("paused_until_80x24", render(&app, 80, 24).backend());
    let id = app
        .jobs
        .iter()
        .find(|j| j.spec.name == "legacy-sync")
        .map(|j| j.id);
    app.selected = id;
    app.rebuild_view();
    update(&mut app, key(KeyCode::Enter));
    let text = screen(&app, 160, 40);
    assert!(
        text.contains("by ops@host: CRM decommissioned (until 2026-03-02 12:00:00"),
        "{text}"
    );
}

#[test]
fn an_older_page_that_turns_out_empty_goes_back_and_says_so() {
    let mut app = detail(page_of(500, HISTORY_LIMIT));
    let older = update(&mut app, ch(']'));
    let Effect::LoadHistory { query, .. } = older[0].clone() else {
        panic!("{older:?}");
    };
    // The runs below were pruned meanwhile: nothing older after all.
    let back = update(
        &mut app,
        Action::Data(DataEvent::History {
            job_id: 6,
            query,
            runs: Vec::new(),
            more: false,
        }),
    );
    assert_eq!(back, vec![Effect::LoadRuns(6)]);
    assert!(app
        .message
        .as_ref()
        .is_some_and(|m| m.text.contains("oldest page")));
}
