//! `update` for every key: navigation, filters, sorting, screens, every
//! action dialog, and read-only / stale refusing every mutation.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::fixtures::*;
use crate::schedule::Schedule;
use crate::tui::action::{Action, DataEvent, Effect, Link, Mutation};
use crate::tui::app::{App, Conn, Screen, SortKey};
use crate::tui::keys::{self, Quick, BINDINGS};
use crate::tui::update::update;

fn selected_name(app: &App) -> String {
    app.target_job()
        .map(|j| j.spec.name.clone())
        .unwrap_or_default()
}

fn select(app: &mut App, id: i64) {
    app.selected = Some(id);
    app.rebuild_view();
}

#[test]
fn vim_keys_and_arrows_move_the_selection() {
    let mut app = app();
    assert_eq!(app.cursor, 0);
    assert_eq!(selected_name(&app), "billing-export");
    update(&mut app, ch('j'));
    update(&mut app, key(KeyCode::Down));
    assert_eq!(app.cursor, 2);
    update(&mut app, ch('k'));
    assert_eq!(app.cursor, 1);
    update(&mut app, key(KeyCode::Up));
    update(&mut app, key(KeyCode::Up));
    assert_eq!(app.cursor, 0, "stops at the top");
    update(&mut app, ch('G'));
    assert_eq!(app.cursor, app.view.len() - 1);
    update(&mut app, ch('j'));
    assert_eq!(app.cursor, app.view.len() - 1, "stops at the bottom");
    update(&mut app, ch('g'));
    assert_eq!(app.cursor, 0);
    update(&mut app, key(KeyCode::End));
    update(&mut app, key(KeyCode::Home));
    assert_eq!(app.cursor, 0);
}

#[test]
fn half_pages_move_by_half_the_visible_rows() {
    let mut app = app();
    update(
        &mut app,
        Action::Resize {
            width: 80,
            height: 15,
        },
    );
    let half = app.table_rows() / 2;
    update(&mut app, ctrl('d'));
    assert_eq!(app.cursor, half);
    update(&mut app, key(KeyCode::PageDown));
    assert_eq!(app.cursor, 2 * half);
    update(&mut app, ctrl('d'));
    assert_eq!(app.cursor, app.view.len() - 1, "clamped at the bottom");
    assert!(
        app.offset > 0,
        "the window scrolled to keep the cursor visible"
    );
    for _ in 0..3 {
        update(&mut app, ctrl('u'));
    }
    update(&mut app, key(KeyCode::PageUp));
    assert_eq!(app.cursor, 0);
    assert_eq!(app.offset, 0);
}

#[test]
fn selection_follows_the_job_when_rows_reorder() {
    let mut app = app();
    select(&mut app, 6);
    let before = app.cursor;
    // The heartbeat starts failing: it moves up the state-sorted table.
    let mut jobs = jobs();
    let hb = jobs.iter_mut().find(|j| j.id == 6).unwrap();
    hb.runtime.last_status = Some("failed".into());
    hb.runtime.failure_streak = 1;
    update(&mut app, snapshot(jobs, nodes()));
    assert_ne!(app.cursor, before, "the row moved");
    assert_eq!(selected_name(&app), "heartbeat");
    assert_eq!(app.jobs[app.view[app.cursor]].id, 6);
}

#[test]
fn a_removed_job_moves_the_selection_to_its_neighbour() {
    let mut app = app();
    select(&mut app, 6);
    let cursor = app.cursor;
    let jobs: Vec<_> = jobs().into_iter().filter(|j| j.id != 6).collect();
    update(&mut app, snapshot(jobs, nodes()));
    assert_eq!(app.cursor, cursor);
    assert_ne!(app.selected, Some(6));
    assert!(app.selected.is_some());
}

#[test]
fn slash_filters_live_enter_keeps_esc_clears() {
    let mut app = app();
    update(&mut app, ch('/'));
    assert!(app.filter_input.is_some());
    for a in typed("sync") {
        update(&mut app, a);
    }
    assert_eq!(app.filter, "sync");
    assert_eq!(app.view.len(), 2, "partner-sync and legacy-sync");
    update(&mut app, key(KeyCode::Enter));
    assert!(app.filter_input.is_none());
    assert_eq!(app.view.len(), 2);
    // Tags and commands match too.
    update(&mut app, ch('/'));
    update(&mut app, ctrl('u'));
    for a in typed("fast") {
        update(&mut app, a);
    }
    assert_eq!(app.view.len(), 1, "the heartbeat is tagged fast");
    update(&mut app, key(KeyCode::Esc));
    assert!(app.filter.is_empty());
    assert_eq!(app.view.len(), app.jobs.len());
}

#[test]
fn quick_filters_toggle() {
    let mut app = app();
    let expect = [
        ('1', Quick::Failing, 2),
        ('2', Quick::Overdue, 1),
        ('3', Quick::Late, 2),
        ('4', Quick::Running, 1),
        ('5', Quick::Paused, 1),
    ];
    for (c, quick, n) in expect {
        update(&mut app, ch(c));
        assert_eq!(app.quick, Some(quick));
        assert_eq!(app.view.len(), n, "{quick:?}");
    }
    update(&mut app, ch('5'));
    assert_eq!(app.quick, None, "pressing it again shows all");
    update(&mut app, ch('2'));
    update(&mut app, key(KeyCode::Esc));
    assert_eq!(app.quick, None, "esc clears quick filters too");
}

#[test]
fn s_cycles_the_sort_column_and_capital_s_reverses() {
    let mut app = app();
    select(&mut app, 6);
    let mut seen = vec![app.sort];
    for _ in 0..6 {
        update(&mut app, ch('s'));
        seen.push(app.sort);
        assert_eq!(
            selected_name(&app),
            "heartbeat",
            "selection follows the job"
        );
    }
    assert_eq!(seen.len(), 7);
    update(&mut app, ch('s'));
    assert_eq!(app.sort, SortKey::State);
    update(&mut app, ch('s'));
    let first = app.view[0];
    update(&mut app, ch('S'));
    assert!(app.reverse);
    assert_eq!(*app.view.last().unwrap(), first);
}

#[test]
fn enter_opens_detail_then_run_and_esc_backs_out() {
    let mut app = app();
    select(&mut app, 6);
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        vec![Effect::LoadRuns(6)]
    );
    assert!(matches!(app.stack.last(), Some(Screen::Detail(d)) if d.job_id == 6));
    // No runs loaded yet: Enter does nothing.
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    update(
        &mut app,
        Action::Data(DataEvent::Runs {
            job_id: 6,
            runs: runs(),
            more: false,
        }),
    );
    update(&mut app, ch('j'));
    update(&mut app, ch('j'));
    assert_eq!(
        update(&mut app, key(KeyCode::Enter)),
        vec![Effect::LoadRun(198)]
    );
    assert!(matches!(app.stack.last(), Some(Screen::Run(r)) if r.run_id == 198));
    update(&mut app, ch('j'));
    assert!(matches!(app.stack.last(), Some(Screen::Run(r)) if r.scroll == 1));
    update(&mut app, key(KeyCode::Esc));
    assert!(matches!(app.stack.last(), Some(Screen::Detail(_))));
    update(&mut app, key(KeyCode::Esc));
    assert!(app.stack.is_empty());
}

#[test]
fn a_opens_the_audit_view() {
    let mut app = app();
    assert_eq!(update(&mut app, ch('a')), vec![Effect::LoadAudit]);
    update(&mut app, Action::Data(DataEvent::Audit(audit())));
    update(&mut app, ch('j'));
    assert!(matches!(app.stack.last(), Some(Screen::Audit(a)) if a.cursor == 1));
    update(&mut app, key(KeyCode::Esc));
    assert!(app.stack.is_empty());
}

#[test]
fn help_opens_and_any_key_closes_it() {
    let mut app = app();
    update(&mut app, ch('?'));
    assert!(app.help);
    assert!(
        update(&mut app, ch('q')).is_empty(),
        "q closes help, does not quit"
    );
    assert!(!app.help && !app.quit);
}

#[test]
fn q_and_ctrl_c_quit_when_nothing_runs_here() {
    let idle = |mut app: crate::tui::app::App| {
        // This console's node runs nothing (the running job is another's).
        if let Some(node) = app.own_node.as_mut() {
            node.busy = 0;
            node.node_id = "n-elsewhere".into();
        }
        app
    };
    let mut app = idle(app());
    assert_eq!(update(&mut app, ch('q')), vec![Effect::Quit]);
    assert!(app.quit);
    let mut app = idle(super::fixtures::app());
    assert_eq!(update(&mut app, ctrl('c')), vec![Effect::Quit]);
}

#[test]
fn ctrl_r_refreshes_what_is_on_screen() {
    let mut app = app();
    assert_eq!(update(&mut app, ctrl('r')), vec![Effect::Refresh]);
    select(&mut app, 6);
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        update(&mut app, ctrl('r')),
        vec![Effect::Refresh, Effect::LoadRuns(6)]
    );
}

#[test]
fn key_releases_and_unbound_keys_do_nothing() {
    let mut app = app();
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    assert!(update(&mut app, Action::Key(release)).is_empty());
    assert!(!app.quit);
    assert!(update(&mut app, ch('z')).is_empty());
}

/// Confirm the open dialog: focus Confirm, press Enter.
fn confirm(app: &mut App) -> Vec<Effect> {
    let dialog = app.dialog.as_ref().expect("dialog open");
    assert!(dialog.confirming, "on the confirm step");
    assert!(!dialog.confirm_focused, "Cancel is focused first");
    update(app, key(KeyCode::Tab));
    update(app, key(KeyCode::Enter))
}

#[test]
fn run_now_confirms_with_cancel_focused() {
    let mut app = app();
    select(&mut app, 6);
    update(&mut app, ch('r'));
    // Enter on the focused Cancel cancels.
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(app.dialog.is_none());
    update(&mut app, ch('r'));
    let effects = confirm(&mut app);
    assert_eq!(
        effects,
        vec![Effect::Mutate(Mutation::RunNow {
            job: "heartbeat".into()
        })]
    );
    assert!(app.dialog.is_none());
}

#[test]
fn run_now_on_a_running_job_says_it_will_wait() {
    let mut app = app();
    select(&mut app, 5);
    update(&mut app, ch('r'));
    let note = app.dialog.as_ref().and_then(|d| d.note.clone()).unwrap();
    assert!(note.contains("running now"));
}

#[test]
fn pause_takes_a_reason_and_a_duration() {
    let mut app = app();
    select(&mut app, 6);
    update(&mut app, ch('p'));
    for a in typed("deploy") {
        update(&mut app, a);
    }
    update(&mut app, key(KeyCode::Tab));
    for a in typed("2x") {
        update(&mut app, a);
    }
    assert!(
        app.dialog.as_ref().unwrap().outcome.is_err(),
        "2x is no duration"
    );
    update(&mut app, key(KeyCode::Enter));
    assert!(
        !app.dialog.as_ref().unwrap().confirming,
        "refused while invalid"
    );
    update(&mut app, key(KeyCode::Backspace));
    update(&mut app, ch('h'));
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        confirm(&mut app),
        vec![Effect::Mutate(Mutation::Pause {
            job: "heartbeat".into(),
            reason: Some("deploy".into()),
            duration: Some(Duration::from_secs(7200)),
        })]
    );
}

#[test]
fn resume_only_applies_to_paused_jobs() {
    let mut app = app();
    select(&mut app, 6);
    update(&mut app, ch('u'));
    assert!(app.dialog.is_none());
    assert!(app.message.as_ref().unwrap().text.contains("not paused"));
    select(&mut app, 9);
    update(&mut app, ch('p'));
    assert!(app.dialog.is_none(), "already paused");
    update(&mut app, ch('u'));
    assert_eq!(
        confirm(&mut app),
        vec![Effect::Mutate(Mutation::Resume {
            job: "legacy-sync".into()
        })]
    );
}

#[test]
fn the_schedule_editor_validates_every_keystroke() {
    let mut app = app();
    select(&mut app, 6);
    update(&mut app, ch('e'));
    update(&mut app, ctrl('u'));
    for a in typed("90") {
        update(&mut app, a);
    }
    let d = app.dialog.as_ref().unwrap();
    assert!(d.outcome.as_ref().unwrap_err().contains("no unit"));
    update(&mut app, ch('m'));
    let d = app.dialog.as_ref().unwrap();
    assert!(d.outcome.is_ok());
    // The current tick (in 3 s) stays; then every 90 minutes.
    assert!(
        d.preview
            .iter()
            .any(|p| p.contains("10:00:03, Mon 02 Mar 11:30:03")),
        "{:?}",
        d.preview
    );
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        confirm(&mut app),
        vec![Effect::Mutate(Mutation::Schedule {
            job: "heartbeat".into(),
            schedule: Schedule::parse("90m").unwrap(),
            // What the dialog opened on travels with the change.
            was: Schedule::parse("5s").unwrap(),
        })]
    );
    // Cron with a zone, and manual, are accepted too.
    for text in ["0 9 * * MON Europe/Paris", "manual", "1h 30m", "2 weeks"] {
        update(&mut app, ch('e'));
        update(&mut app, ctrl('u'));
        for a in typed(text) {
            update(&mut app, a);
        }
        assert!(app.dialog.as_ref().unwrap().outcome.is_ok(), "{text}");
        update(&mut app, key(KeyCode::Esc));
        assert!(app.dialog.is_none());
    }
}

#[test]
fn next_run_accepts_relative_now_and_local_times() {
    let mut app = app();
    select(&mut app, 6);
    update(&mut app, ch('n'));
    for a in typed("+15m") {
        update(&mut app, a);
    }
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        confirm(&mut app),
        vec![Effect::Mutate(Mutation::Next {
            job: "heartbeat".into(),
            next: "+15m".into()
        })]
    );
    update(&mut app, ch('n'));
    for a in typed("2026-03-02 09:00") {
        update(&mut app, a);
    }
    assert!(app
        .dialog
        .as_ref()
        .unwrap()
        .outcome
        .as_ref()
        .unwrap_err()
        .contains("past"));
    update(&mut app, ctrl('u'));
    for a in typed("2026-03-02 12:00") {
        update(&mut app, a);
    }
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        confirm(&mut app),
        vec![Effect::Mutate(Mutation::Next {
            job: "heartbeat".into(),
            next: "2026-03-02T12:00:00+00:00".into()
        })]
    );
    // A manual job has no next run to edit.
    select(&mut app, 11);
    update(&mut app, ch('n'));
    assert!(app.dialog.is_none());
}

#[test]
fn priority_must_be_a_non_negative_number() {
    let mut app = app();
    select(&mut app, 6);
    update(&mut app, ch('P'));
    update(&mut app, ctrl('u'));
    for a in typed("-1") {
        update(&mut app, a);
    }
    assert!(app.dialog.as_ref().unwrap().outcome.is_err());
    update(&mut app, ctrl('u'));
    update(&mut app, ch('0'));
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        confirm(&mut app),
        vec![Effect::Mutate(Mutation::Priority {
            job: "heartbeat".into(),
            priority: 0,
            was: 1,
        })]
    );
}

#[test]
fn actions_in_the_detail_view_apply_to_its_job() {
    let mut app = app();
    select(&mut app, 6);
    update(&mut app, key(KeyCode::Enter));
    app.selected = Some(1);
    update(&mut app, ch('r'));
    assert_eq!(app.dialog.as_ref().unwrap().job, "heartbeat");
}

#[test]
fn esc_and_left_right_in_dialogs() {
    let mut app = app();
    update(&mut app, ch('r'));
    update(&mut app, key(KeyCode::Right));
    assert!(app.dialog.as_ref().unwrap().confirm_focused);
    update(&mut app, key(KeyCode::Left));
    assert!(!app.dialog.as_ref().unwrap().confirm_focused);
    update(&mut app, key(KeyCode::Esc));
    assert!(app.dialog.is_none());
}

const MUTATING: [char; 8] = ['r', 'x', 'p', 'u', ' ', 'e', 'n', 'P'];

#[test]
fn read_only_refuses_every_mutation() {
    // Every binding that mutates is refused, on every screen it applies to.
    let mutating: Vec<&keys::Binding> = BINDINGS.iter().filter(|b| b.mutates).collect();
    assert_eq!(mutating.len(), MUTATING.len());
    for binding in mutating {
        for on_detail in [false, true] {
            let mut app = app();
            app.read_only = true;
            select(&mut app, 9); // paused: resume would otherwise open
            if on_detail {
                update(&mut app, key(KeyCode::Enter));
            }
            let event = KeyEvent::new(binding.keys[0].code, KeyModifiers::NONE);
            assert!(update(&mut app, Action::Key(event)).is_empty());
            assert!(app.dialog.is_none(), "{} opened a dialog", binding.help);
            let message = app.message.clone().unwrap();
            assert!(
                message.error && message.text.contains("read-only"),
                "{message:?}"
            );
        }
    }
}

#[test]
fn a_dialog_open_when_the_connection_drops_cannot_confirm() {
    let mut app = app();
    update(&mut app, ch('r'));
    update(
        &mut app,
        Action::Data(DataEvent::Connection(Link::Lost {
            error: "gone".into(),
        })),
    );
    assert!(confirm(&mut app).is_empty());
    assert!(app.message.as_ref().unwrap().text.contains("STALE"));
}

#[test]
fn stale_data_refuses_every_mutation() {
    for c in MUTATING {
        let mut app = app();
        select(&mut app, 9);
        app.conn = Conn::Stale {
            since: now(),
            error: "gone".into(),
        };
        assert!(update(&mut app, ch(c)).is_empty());
        assert!(app.dialog.is_none());
        assert!(app.message.as_ref().unwrap().text.contains("blocked"));
    }
}

#[test]
fn every_binding_is_reachable_on_its_screens() {
    for b in BINDINGS {
        for screen in [keys::JOBS, keys::DETAIL, keys::RUN, keys::AUDIT] {
            if b.screens & screen == 0 {
                continue;
            }
            for k in b.keys {
                let mods = if k.ctrl {
                    KeyModifiers::CONTROL
                } else {
                    KeyModifiers::NONE
                };
                let found = keys::lookup(screen, &KeyEvent::new(k.code, mods)).map(|f| f.command);
                assert_eq!(found, Some(b.command), "{} on screen {screen}", b.label);
            }
        }
    }
}
