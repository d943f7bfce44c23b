//! Snapshots of every screen and state, and per-cell colour checks where
//! colour carries meaning. Review changes with `cargo insta review`.

use crossterm::event::KeyCode;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;

use super::fixtures::*;
use crate::tui::action::{Action, DataEvent, Link};
use crate::tui::app::{App, Conn, Screen, SortKey};
use crate::tui::keys::Quick;
use crate::tui::theme::Theme;
use crate::tui::update::update;

fn snap(name: &str, terminal: &Terminal<TestBackend>) {
    insta::assert_snapshot!(name, terminal.backend());
}

/// The row (y) whose text contains `needle`.
fn row_of(buffer: &Buffer, needle: &str) -> u16 {
    let area = buffer.area;
    (0..area.height)
        .find(|&y| {
            let line: String = (0..area.width).map(|x| buffer[(x, y)].symbol()).collect();
            line.contains(needle)
        })
        .unwrap_or_else(|| panic!("no row contains {needle:?}"))
}

/// The foreground of every non-blank cell of the row containing `needle`.
fn row_colours(buffer: &Buffer, needle: &str) -> Vec<Color> {
    let y = row_of(buffer, needle);
    (0..buffer.area.width)
        .filter(|&x| buffer[(x, y)].symbol() != " ")
        .map(|x| buffer[(x, y)].fg)
        .collect()
}

#[test]
fn jobs_table_with_every_state_at_80x24() {
    let term = render(&app(), 80, 24);
    snap("jobs_80x24", &term);
}

#[test]
fn jobs_table_wide_shows_every_column() {
    let term = render(&app(), 140, 24);
    snap("jobs_wide", &term);
}

#[test]
fn overdue_rows_are_red_and_late_rows_yellow_per_cell() {
    let term = render(&app(), 100, 24);
    let buffer = term.backend().buffer();
    let overdue = row_colours(buffer, "billing-export");
    assert!(!overdue.is_empty());
    assert!(
        overdue.iter().all(|c| *c == Color::Red),
        "overdue row: {overdue:?}"
    );
    let late = row_colours(buffer, "report-hourly");
    assert!(
        late.iter().all(|c| *c == Color::Yellow),
        "late row: {late:?}"
    );
    let running = row_colours(buffer, "nightly-report");
    assert!(
        running.iter().all(|c| *c == Color::Cyan),
        "running row: {running:?}"
    );
    let paused = row_colours(buffer, "legacy-sync");
    assert!(
        paused.iter().all(|c| *c == Color::DarkGray),
        "paused row: {paused:?}"
    );
    // Running rows are highlighted (bold), and the selection is reversed.
    let y = row_of(buffer, "nightly-report");
    assert!(buffer[(2, y)].modifier.contains(Modifier::BOLD));
    let y = row_of(buffer, "billing-export");
    assert!(buffer[(2, y)].modifier.contains(Modifier::REVERSED));
}

#[test]
fn empty_table() {
    let mut app = app();
    update(&mut app, snapshot(Vec::new(), nodes()));
    snap("jobs_empty", &render(&app, 80, 24));
}

#[test]
fn filtered_table() {
    let mut app = app();
    update(&mut app, ch('/'));
    for a in typed("sync") {
        update(&mut app, a);
    }
    snap("jobs_filter_editing", &render(&app, 80, 24));
    update(&mut app, key(KeyCode::Enter));
    update(&mut app, ch('1'));
    assert_eq!(app.quick, Some(Quick::Failing));
    snap("jobs_filtered_failing_sync", &render(&app, 80, 24));
}

#[test]
fn sorted_table() {
    let mut app = app();
    update(&mut app, ch('s'));
    assert_eq!(app.sort, SortKey::Name);
    update(&mut app, ch('S'));
    snap("jobs_sorted_by_name_reversed", &render(&app, 80, 24));
}

fn detail_app() -> App {
    let mut app = app();
    let id = 6;
    app.selected = Some(id);
    app.rebuild_view();
    update(&mut app, key(KeyCode::Enter));
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: id,
            runs: runs(),
            more: false,
        }),
    );
    app
}

#[test]
fn job_detail() {
    snap("detail", &render(&detail_app(), 80, 24));
    snap("detail_wide", &render(&detail_app(), 120, 30));
}

#[test]
fn run_output_with_escape_sequences_is_shown_escaped() {
    let mut app = detail_app();
    update(&mut app, ch('j'));
    update(&mut app, key(KeyCode::Enter));
    let Some(Screen::Run(state)) = app.stack.last() else {
        panic!("expected the run view");
    };
    let mut run = run_row(state.run_id, 6, "failed", 10, Some(1500));
    run.exit_code = Some(2);
    run.stdout = Some("\x1b[31mred alert\x1b[0m\r\nline two\x07\n\x1b]0;pwned\x07title".into());
    run.stderr = Some("error: \x1b[2Jcleared?\ttabbed".into());
    run.stderr_dropped = 4096;
    run.error = Some("exit status 2".into());
    let run_id = run.id;
    update(
        &mut app,
        Action::Data(DataEvent::Run {
            run_id,
            run: Some(Box::new(run)),
        }),
    );
    let term = render(&app, 80, 24);
    snap("run_output_escaped", &term);
    let buffer = term.backend().buffer();
    for cell in buffer.content() {
        assert!(
            !cell.symbol().chars().any(|c| c.is_control()),
            "a control character reached a cell: {:?}",
            cell.symbol()
        );
    }
    row_of(buffer, "\\e[31mred alert\\e[0m\\r");
}

#[test]
fn audit_view() {
    let mut app = app();
    update(&mut app, ch('a'));
    update(&mut app, Action::Data(DataEvent::Audit(audit())));
    snap("audit", &render(&app, 80, 24));
    snap("audit_wide", &render(&app, 130, 24));
}

fn dialog(keys: Vec<Action>) -> App {
    let mut app = app();
    // The selection is the first row (the overdue job); pick the heartbeat.
    app.selected = Some(6);
    app.rebuild_view();
    for k in keys {
        update(&mut app, k);
    }
    assert!(app.dialog.is_some(), "a dialog is open");
    app
}

#[test]
fn every_dialog() {
    snap("dialog_run_now", &render(&dialog(vec![ch('r')]), 80, 24));
    let mut pause = vec![ch('p')];
    pause.extend(typed("deploy"));
    pause.push(key(KeyCode::Tab));
    pause.extend(typed("2h"));
    snap("dialog_pause", &render(&dialog(pause.clone()), 80, 24));
    pause.push(key(KeyCode::Enter));
    snap("dialog_pause_confirm", &render(&dialog(pause), 80, 24));
    let mut schedule = vec![ch('e'), ctrl('u')];
    schedule.extend(typed("1h 30m"));
    snap(
        "dialog_schedule_preview",
        &render(&dialog(schedule.clone()), 80, 24),
    );
    schedule.push(key(KeyCode::Enter));
    snap(
        "dialog_schedule_confirm",
        &render(&dialog(schedule), 80, 24),
    );
    let mut cron = vec![ch('e'), ctrl('u')];
    cron.extend(typed("0 9 * * MON Europe/Paris"));
    snap("dialog_schedule_cron", &render(&dialog(cron), 80, 24));
    let mut invalid = vec![ch('e'), ctrl('u')];
    invalid.extend(typed("every 1.5h"));
    snap("dialog_schedule_invalid", &render(&dialog(invalid), 80, 24));
    let mut next = vec![ch('n')];
    next.extend(typed("+15m"));
    snap("dialog_next", &render(&dialog(next), 80, 24));
    let mut priority = vec![ch('P'), ctrl('u')];
    priority.extend(typed("1"));
    priority.push(key(KeyCode::Enter));
    priority.push(key(KeyCode::Tab));
    snap(
        "dialog_priority_confirm_focused",
        &render(&dialog(priority), 80, 24),
    );

    let mut app = app();
    app.selected = Some(9);
    app.rebuild_view();
    update(&mut app, ch('u'));
    snap("dialog_resume", &render(&app, 80, 24));
}

/// Cancel names the job, the node and how long it has run; Cancel is
/// focused on the confirm step; a job with nothing running is refused.
#[test]
fn cancel_dialog_names_job_node_and_elapsed() {
    let mut app = app();
    app.selected = Some(5);
    app.rebuild_view();
    update(&mut app, ch('x'));
    assert!(app.dialog.is_some(), "a dialog is open");
    let mut keys = typed("stuck on a lock");
    keys.push(key(KeyCode::Enter));
    for k in keys {
        update(&mut app, k);
    }
    let dialog = app.dialog.as_ref().unwrap();
    assert!(dialog.confirming && !dialog.confirm_focused);
    assert!(
        dialog.old.contains("node-a") && dialog.old.contains("12s"),
        "{}",
        dialog.old
    );
    snap("dialog_cancel_confirm", &render(&app, 80, 24));

    let mut idle = app_with_selection(6);
    update(&mut idle, ch('x'));
    assert!(idle.dialog.is_none());
    let message = idle.message.as_ref().expect("a refusal message");
    assert!(
        message.error && message.text.contains("nothing to cancel"),
        "{}",
        message.text
    );
}

fn app_with_selection(id: i64) -> App {
    let mut app = app();
    app.selected = Some(id);
    app.rebuild_view();
    app
}

#[test]
fn read_only() {
    let mut app = app();
    app.read_only = true;
    update(&mut app, ch('p'));
    snap("read_only_refusal", &render(&app, 80, 24));
    update(&mut app, ch('?'));
    snap("help_read_only", &render(&app, 80, 24));
}

#[test]
fn help() {
    let mut app = app();
    update(&mut app, ch('?'));
    snap("help", &render(&app, 80, 24));
}

#[test]
fn stale_and_reconnecting() {
    let mut app = app();
    update(
        &mut app,
        Action::Data(DataEvent::Connection(Link::Lost {
            error: "connection refused".into(),
        })),
    );
    update(
        &mut app,
        Action::Tick {
            wall: now() + secs(12),
        },
    );
    assert!(matches!(app.conn, Conn::Stale { .. }));
    snap("stale", &render(&app, 80, 24));
}

#[test]
fn connecting_and_unreachable_before_any_data() {
    let mut app = App::new("crondeck@db:5432/crondeck".into(), false, true, now());
    app.zone = crate::tui::format::Zone::Utc;
    snap("connecting", &render(&app, 80, 24));
    update(
        &mut app,
        Action::Data(DataEvent::Connection(Link::Lost {
            error: "could not connect to db:5432: connection refused".into(),
        })),
    );
    snap("unreachable", &render(&app, 80, 24));
}

#[test]
fn no_live_node_is_loud() {
    let mut app = app();
    app.scheduler = false;
    app.own_node = None;
    update(&mut app, snapshot(jobs(), Vec::new()));
    let term = render(&app, 80, 24);
    snap("no_live_node", &term);
    let buffer = term.backend().buffer();
    let y = row_of(buffer, "NO LIVE NODE");
    assert!((0..80).any(|x| buffer[(x, y)].bg == Color::Red));
}

#[test]
fn tiny_terminal_says_so() {
    snap("tiny", &render(&app(), 40, 10));
}

#[test]
fn no_color_uses_no_colour_and_loses_nothing() {
    let mut app = app();
    app.theme = Theme::from_env(Some("1"));
    let term = render(&app, 80, 24);
    snap("no_color", &term);
    for cell in term.backend().buffer().content() {
        assert_eq!(cell.fg, Color::Reset, "a coloured cell: {cell:?}");
        assert_eq!(cell.bg, Color::Reset, "a coloured cell: {cell:?}");
    }
    // The words carry the states.
    let buffer = term.backend().buffer();
    for word in [
        "‼ overdue",
        "! late",
        "✗ failing",
        "▶ running",
        "· ok",
        "‖ paused",
        "✓ done",
    ] {
        row_of(buffer, word);
    }
}

#[test]
fn a_job_no_live_node_can_run_says_so_in_the_table_and_the_detail() {
    let mut app = detail_app();
    app.unrunnable = [6].into_iter().collect();
    let term = render(&app, 120, 30);
    row_of(
        term.backend().buffer(),
        "no node can run this job: no live node",
    );
    update(&mut app, key(KeyCode::Esc));
    let term = render(&app, 140, 24);
    row_of(term.backend().buffer(), "no node!");
}

/// Regression (issue 11): the header printed node names raw (an OSC 52
/// clipboard write went through) and the jobs table printed bidi overrides
/// and zero-width characters raw. Every cell of the screen is checked, and
/// the snapshot shows the names escaped.
#[test]
fn hostile_node_and_job_names_are_shown_escaped_in_the_header_and_table() {
    let mut nodes = nodes();
    nodes[0].name = "evil\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{9b}2J".into();
    let mut jobs = jobs();
    // Short enough for the name column.
    jobs[0].spec.name = "\u{202E}fdp.exe".into();
    jobs[1].spec.name = "a\u{2066}b".into();
    jobs[2].spec.name = "c\u{200B}d".into();
    let mut app = app();
    update(&mut app, snapshot(jobs, nodes));
    let term = render(&app, 100, 24);
    let buffer = term.backend().buffer();
    for (i, cell) in buffer.content().iter().enumerate() {
        assert!(
            !cell.symbol().chars().any(crate::text::is_hostile),
            "cell {i} holds {:?}",
            cell.symbol()
        );
    }
    let header = row_of(buffer, "nodes 1");
    let line: String = (0..buffer.area.width)
        .map(|x| buffer[(x, header)].symbol())
        .collect();
    assert!(line.contains(r"evil\e]52;c;"), "{line}");
    row_of(buffer, r"\u{202e}fdp");
    row_of(buffer, r"a\u{2066}b");
    row_of(buffer, r"c\u{200b}d");
    snap("hostile_names", &term);
}

/// The last guard: whatever a view shows raw never reaches the terminal.
#[test]
fn a_hostile_character_a_view_did_not_escape_is_blanked() {
    let mut terminal = Terminal::new(TestBackend::new(20, 1)).unwrap();
    terminal
        .draw(|f| {
            let raw = ratatui::widgets::Paragraph::new("a\u{1b}]52;c;x\u{7}\u{202e}b\u{9b}");
            f.render_widget(raw, f.area());
            crate::tui::views::guard(f.buffer_mut());
        })
        .unwrap();
    let buffer = terminal.backend().buffer();
    assert!(!buffer
        .content()
        .iter()
        .any(|c| c.symbol().chars().any(crate::text::is_hostile)));
    let line: String = buffer.content().iter().map(|c| c.symbol()).collect();
    assert!(
        line.starts_with('a') && line.contains('\u{FFFD}'),
        "{line:?}"
    );
}
