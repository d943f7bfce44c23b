//! Issue 12 point 5: quitting never surprises. `q` while this console's
//! own node executes runs opens a dialog that names them and asks: wait
//! (with a countdown), stop them now, or stay; a second Ctrl-C stops them.

use crossterm::event::KeyCode;

use super::fixtures::*;
use crate::tui::action::{Action, Effect};
use crate::tui::app::App;
use crate::tui::update::update;

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

#[test]
fn q_with_runs_here_asks_and_names_them() {
    let mut app = app();
    assert!(update(&mut app, ch('q')).is_empty(), "no quit yet");
    assert!(!app.quit && app.quitting.is_some());
    let text = screen(&app, 80, 24);
    assert!(text.contains("nightly-report  running for 12s"), "{text}");
    assert!(text.contains("wait for them (at most 30s"), "{text}");
    insta::assert_snapshot!("quit_dialog_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!("quit_dialog_160x40", render(&app, 160, 40).backend());
}

#[test]
fn esc_stays_and_the_node_keeps_running() {
    let mut app = app();
    update(&mut app, ch('q'));
    assert!(update(&mut app, key(KeyCode::Esc)).is_empty());
    assert!(app.quitting.is_none() && !app.quit);
    assert!(app
        .message
        .as_ref()
        .is_some_and(|m| m.text.contains("quit cancelled")));
}

#[test]
fn wait_shuts_the_node_down_with_a_countdown_and_quits_when_it_stopped() {
    let mut app = app();
    update(&mut app, ch('q'));
    assert_eq!(update(&mut app, ch('w')), vec![Effect::ShutdownNode]);
    // Ten seconds into the grace period: the countdown shows 20 s left.
    update(
        &mut app,
        Action::Tick {
            wall: now() + secs(10),
        },
    );
    let text = screen(&app, 80, 24);
    assert!(text.contains("waiting for them: 20s left"), "{text}");
    insta::assert_snapshot!("quit_waiting_80x24", render(&app, 80, 24).backend());
    assert!(!app.quit);
    assert_eq!(update(&mut app, Action::NodeStopped), vec![Effect::Quit]);
    assert!(app.quit);
}

#[test]
fn ctrl_c_while_waiting_stops_the_runs_at_once_and_only_once() {
    let mut app = app();
    update(&mut app, ctrl('c'));
    update(&mut app, ch('w'));
    assert_eq!(update(&mut app, ctrl('c')), vec![Effect::StopOwnRuns]);
    assert!(update(&mut app, ctrl('c')).is_empty());
    assert!(screen(&app, 80, 24).contains("stopping them now"));
}

#[test]
fn a_second_ctrl_c_or_s_stops_them_now() {
    for second in [ctrl('c'), ch('s')] {
        let mut app = app();
        update(&mut app, ctrl('c'));
        assert!(app.quitting.is_some());
        assert_eq!(
            update(&mut app, second),
            vec![Effect::StopOwnRuns, Effect::ShutdownNode]
        );
    }
}

#[test]
fn the_dialog_gives_way_when_the_runs_end_while_it_asks() {
    let mut app = app();
    update(&mut app, ch('q'));
    let mut status = app.own_node.clone();
    if let Some(s) = status.as_mut() {
        s.busy = 0;
    }
    assert_eq!(
        update(&mut app, Action::OwnNode(status)),
        vec![Effect::Quit]
    );
    assert!(app.quit);
}

#[test]
fn a_run_the_data_shows_here_counts_before_the_nodes_own_count_does() {
    // Claimed since the last tick: the node's count still says 0.
    let mut app = app();
    if let Some(node) = app.own_node.as_mut() {
        node.busy = 0;
    }
    assert!(update(&mut app, ch('q')).is_empty());
    assert!(app.quitting.is_some() && !app.quit);
}
