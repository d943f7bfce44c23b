//! Issue 12, the console under an incident: nothing that needs attention
//! is off screen without a sign, readable at 80×24, and the small things
//! operators hit (natural sort, `space`, unknown keys).

use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;

use super::fixtures::*;
use crate::job::{ActionKind, Job};
use crate::tui::action::Action;
use crate::tui::app::{App, SortKey};
use crate::tui::update::update;

fn snap(name: &str, terminal: &Terminal<TestBackend>) {
    insta::assert_snapshot!(name, terminal.backend());
}

fn screen_text(buffer: &Buffer) -> String {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fixtures plus `n` healthy jobs `bulk-1` … `bulk-n`.
fn many_jobs(n: i64) -> Vec<Job> {
    let mut jobs = jobs();
    for i in 1..=n {
        let mut j = job(
            100 + i,
            &format!("bulk-{i}"),
            "every 1h",
            ActionKind::Sql,
            "SELECT 1",
        );
        j.nextcall = Some(now() + secs(600 + i));
        jobs.push(j);
    }
    jobs
}

fn app_with(jobs: Vec<Job>) -> App {
    let mut app = App::new(
        "crondeck@/run/crondeck:5432/crondeck".into(),
        false,
        true,
        now(),
    );
    app.zone = crate::tui::format::Zone::Utc;
    update(
        &mut app,
        Action::Resize {
            width: 80,
            height: 24,
        },
    );
    update(&mut app, snapshot(jobs, nodes()));
    app
}

/// Regression (issue 12): with the cursor far down the table, the failing
/// and overdue rows above the window were invisible while the visible rows
/// all said ok. The status line now counts them and says which rows show.
#[test]
fn problems_above_the_window_are_counted_in_the_status_line() {
    let mut app = app_with(many_jobs(40));
    for _ in 0..30 {
        update(&mut app, ch('j'));
    }
    let hidden = app.hidden_problems();
    assert_eq!(hidden.above, 4, "overdue, late and two failing rows");
    assert_eq!(hidden.below, 0);
    let term = render(&app, 80, 24);
    let text = screen_text(term.backend().buffer());
    assert!(text.contains("↑ 4 problems above"), "{text}");
    assert!(
        text.contains(&format!("–{} of 51", app.offset + app.table_rows())),
        "{text}"
    );
    // The marker is coloured as a warning, cell by cell (bold in NO_COLOR).
    let buffer = term.backend().buffer();
    let (x0, y) = (0..24)
        .flat_map(|y| (0..80).map(move |x| (x, y)))
        .find(|&(x, y)| y > 3 && buffer[(x, y)].symbol() == "↑")
        .expect("the marker");
    for x in x0..x0 + 18 {
        assert_eq!(buffer[(x, y)].fg, ratatui::style::Color::Yellow, "cell {x}");
    }
    snap("problems_above", &term);
}

#[test]
fn problems_below_the_window_are_counted_when_sorted_by_name() {
    let mut app = app_with(many_jobs(40));
    update(&mut app, ch('s'));
    assert_eq!(app.sort, SortKey::Name);
    update(&mut app, ch('g'));
    let hidden = app.hidden_problems();
    assert!(hidden.below > 0, "{hidden:?}");
    let term = render(&app, 80, 24);
    let text = screen_text(term.backend().buffer());
    assert!(
        text.contains(&crate::tui::scroll::marker(hidden.below, false)),
        "{text}"
    );
    snap("problems_below", &term);
}

/// Moving back up brings the rows above the cursor back as soon as they
/// fit, instead of leaving the window where the cursor re-entered it.
#[test]
fn moving_up_shows_the_rows_above_the_cursor_again() {
    let mut app = app_with(many_jobs(40));
    update(&mut app, ch('G'));
    assert!(app.offset > 0);
    for _ in 0..app.view.len() {
        update(&mut app, ch('k'));
        if app.cursor + crate::tui::scroll::MARGIN < app.table_rows() {
            assert_eq!(app.offset, 0, "cursor {}", app.cursor);
        }
    }
}

/// The first snapshot puts the cursor on the most urgent row even when the
/// table is not sorted by state (the operator pressed `s` `S` while
/// connecting).
#[test]
fn the_cursor_starts_on_the_most_urgent_row() {
    let mut app = App::new("t".into(), false, true, now());
    update(
        &mut app,
        Action::Resize {
            width: 80,
            height: 24,
        },
    );
    update(&mut app, ch('s'));
    update(&mut app, ch('S'));
    assert!(app.sort == SortKey::Name && app.reverse);
    update(&mut app, snapshot(many_jobs(40), nodes()));
    let job = app.target_job().expect("a selection");
    assert_eq!(job.spec.name, "billing-export", "the overdue job");
    assert!(app.cursor > 0, "not simply the first row");
    assert!(app.cursor >= app.offset && app.cursor < app.offset + app.table_rows());

    // Without an overdue job, a failing one; later snapshots leave the cursor alone.
    let mut jobs = many_jobs(3);
    jobs.retain(|j| j.id != 1);
    let mut app = App::new("t".into(), false, true, now());
    update(&mut app, snapshot(jobs.clone(), nodes()));
    assert_eq!(app.target_job().unwrap().spec.name, "invoice-rollup");
    update(&mut app, ch('G'));
    let chosen = app.selected;
    update(&mut app, snapshot(jobs, nodes()));
    assert_eq!(app.selected, chosen);
}

/// Regression (issue 12): at 80 columns two names were both cut to
/// `billing-export-`, and DURATION was hidden below ~100 columns.
#[test]
fn long_names_keep_both_ends_and_duration_shows_at_80_columns() {
    let mut jobs = jobs();
    jobs[0].spec.name = "billing-export-eu".into();
    jobs[1].spec.name = "nightly-warehouse-snapshot-export-eu".into();
    jobs[2].spec.name = "billing-export-us".into();
    let app = app_with(jobs);
    let term = render(&app, 80, 24);
    let text = screen_text(term.backend().buffer());
    assert!(text.contains("DURATION"), "{text}");
    assert!(text.contains("25s ~24s"), "{text}");
    // The two names are whole; a name too long is cut in the
    // middle and keeps its distinguishing end.
    assert!(text.contains("‼ overdue billing-export-eu "), "{text}");
    assert!(text.contains("✗ failing billing-export-us "), "{text}");
    let late = text
        .lines()
        .find(|l| l.contains("! late"))
        .expect("the late row");
    assert!(
        late.contains("nightly-wareh") && late.contains('…') && late.contains("-export-eu"),
        "{late}"
    );
    snap("long_names_80x24", &term);
}

/// A status message longer than the screen is wrapped, never cut; the
/// table gives up the rows it takes.
#[test]
fn long_messages_and_filters_are_shown_in_full() {
    let mut app = app_with(many_jobs(40));
    update(
        &mut app,
        Action::Data(crate::tui::action::DataEvent::Connection(
            crate::tui::action::Link::Lost {
                error: "connection refused".into(),
            },
        )),
    );
    update(&mut app, ch('p'));
    let message = app.message.clone().expect("a refusal").text;
    assert!(message.len() > 80, "{message}");
    assert_eq!(app.footer_rows(), 3);
    let term = render(&app, 80, 24);
    let text = screen_text(term.backend().buffer());
    let flat: String = text.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    assert!(flat.contains(&message), "{text}");
    snap("long_message_80x24", &term);

    let mut app = app_with(many_jobs(40));
    update(&mut app, ch('/'));
    let needle = "bulk-1 a filter long enough to need more than one line at eighty";
    for a in typed(needle) {
        update(&mut app, a);
    }
    update(
        &mut app,
        crate::tui::tests::fixtures::key(crossterm::event::KeyCode::Enter),
    );
    let term = render(&app, 80, 24);
    let text = screen_text(term.backend().buffer());
    let flat: String = text.lines().map(str::trim).collect::<Vec<_>>().join("");
    let spaceless: String = needle.split_whitespace().collect();
    assert!(flat.replace(' ', "").contains(&spaceless), "{text}");
    assert!(text.contains("no job matches the filter"), "{text}");
    snap("long_filter_80x24", &term);
}

/// `bulk-2` before `bulk-10` when sorted by name.
#[test]
fn names_sort_naturally() {
    let mut app = app_with(many_jobs(12));
    update(&mut app, ch('s'));
    assert_eq!(app.sort, SortKey::Name);
    let names: Vec<&str> = app
        .view
        .iter()
        .map(|&i| app.jobs[i].spec.name.as_str())
        .filter(|n| n.starts_with("bulk-"))
        .collect();
    let expected: Vec<String> = (1..=12).map(|i| format!("bulk-{i}")).collect();
    assert_eq!(names, expected);
}

/// `space` opens the pause dialog on an active job and the resume dialog
/// on a paused one: one key for "toggle active".
#[test]
fn space_toggles_active_through_the_same_dialogs() {
    let mut app = app_with(jobs());
    app.selected = Some(6);
    app.rebuild_view();
    update(&mut app, ch(' '));
    let dialog = app.dialog.as_ref().expect("the pause dialog");
    assert_eq!(dialog.kind, crate::tui::forms::Kind::Pause);
    snap("space_pauses_an_active_job", &render(&app, 80, 24));

    let mut app = app_with(jobs());
    app.selected = Some(9);
    app.rebuild_view();
    update(&mut app, ch(' '));
    let dialog = app.dialog.as_ref().expect("the resume dialog");
    assert_eq!(dialog.kind, crate::tui::forms::Kind::Resume);

    // Refused like `p` and `u` in read-only mode.
    let mut app = app_with(jobs());
    app.read_only = true;
    update(&mut app, ch(' '));
    assert!(app.dialog.is_none());
    assert!(app.message.as_ref().is_some_and(|m| m.error));
}

#[test]
fn unknown_keys_give_a_hint() {
    let mut app = app_with(jobs());
    update(&mut app, ch('z'));
    let message = app.message.clone().expect("a hint");
    assert_eq!(message.text, "unknown key z: ? for help");
    assert!(!message.error);
    snap("unknown_key_hint", &render(&app, 80, 24));
    update(
        &mut app,
        crate::tui::tests::fixtures::key(crossterm::event::KeyCode::F(5)),
    );
    assert_eq!(
        app.message.clone().unwrap().text,
        "unknown key F5: ? for help"
    );
    // A key bound elsewhere says it does nothing here (`/` on the detail).
    update(
        &mut app,
        crate::tui::tests::fixtures::key(crossterm::event::KeyCode::Enter),
    );
    update(&mut app, ch('/'));
    assert_eq!(
        app.message.clone().unwrap().text,
        "/ does nothing on this screen: ? for help"
    );
    // A known key clears the hint.
    update(&mut app, ch('j'));
    assert!(app.message.is_none());
}

/// A message that wraps takes rows from the table; the window follows so
/// the cursor keeps its rows of context.
#[test]
fn a_wrapping_message_moves_the_window_with_it() {
    let mut app = app_with(many_jobs(40));
    for _ in 0..20 {
        update(&mut app, ch('j'));
    }
    let rows_before = app.table_rows();
    update(
        &mut app,
        Action::Data(crate::tui::action::DataEvent::Connection(
            crate::tui::action::Link::Lost {
                error: "connection refused".into(),
            },
        )),
    );
    update(&mut app, ch('p'));
    assert!(app.table_rows() < rows_before);
    assert_eq!(
        app.offset,
        crate::tui::scroll::window_offset(app.cursor, app.view.len(), app.table_rows())
    );
    assert!(app.cursor < app.offset + app.table_rows());
}
