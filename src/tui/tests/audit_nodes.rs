//! Issue 12 point 8: an audit view that helps (the job's own trail when
//! opened from its detail, `/` search, changes in words old → new, ⏎ for
//! the full entry) and a nodes view (host, version, busy workers, last
//! heartbeat, what each runs).

use crossterm::event::KeyCode;

use super::fixtures::*;
use crate::db::audit::AuditRecord;
use crate::db::nodes::NodeOverview;
use crate::tui::action::{Action, DataEvent, Effect};
use crate::tui::app::{App, Screen};
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

fn other_job_record() -> AuditRecord {
    let mut r = audit().remove(0);
    r.id = 9;
    r.job_name = "partner-sync".into();
    r.job_id = Some(3);
    r.action = "reschedule".into();
    r.old = Some(serde_json::json!({"schedule": "every 10 seconds"}));
    r.new = Some(serde_json::json!({"schedule": "every 1 minute"}));
    r.reason = Some("too chatty".into());
    r
}

fn audit_app() -> App {
    let mut app = app();
    assert_eq!(update(&mut app, ch('a')), vec![Effect::LoadAudit]);
    let mut records = vec![other_job_record()];
    records.extend(audit());
    update(&mut app, Action::Data(DataEvent::Audit(records)));
    app
}

#[test]
fn opened_from_a_job_the_audit_is_that_jobs() {
    let mut app = app();
    app.selected = Some(6);
    app.rebuild_view();
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(
        update(&mut app, ch('a')),
        vec![Effect::LoadJobAudit("heartbeat".into())]
    );
    // The whole trail's answer is not this view's.
    update(
        &mut app,
        Action::Data(DataEvent::Audit(vec![other_job_record()])),
    );
    assert!(matches!(app.stack.last(), Some(Screen::Audit(a)) if a.records.is_none()));
    update(
        &mut app,
        Action::Data(DataEvent::JobAudit {
            job: "heartbeat".into(),
            records: audit(),
        }),
    );
    let text = screen(&app, 80, 24);
    assert!(
        text.contains("audit of heartbeat · 4 of 4 entries"),
        "{text}"
    );
    // Refreshing keeps to the job.
    assert!(update(&mut app, ctrl('r')).contains(&Effect::LoadJobAudit("heartbeat".into())));
    insta::assert_snapshot!("audit_of_a_job_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!("audit_of_a_job_160x40", render(&app, 160, 40).backend());
}

#[test]
fn changes_read_in_words_without_json() {
    let app = audit_app();
    let text = screen(&app, 160, 40);
    assert!(
        text.contains("schedule: every 10 seconds → every 1 minute"),
        "{text}"
    );
    assert!(text.contains("priority: 5 → 1"), "{text}");
    assert!(
        !text.contains('{') && !text.contains("\":"),
        "raw JSON on screen:\n{text}"
    );
}

#[test]
fn slash_searches_the_audit_and_esc_clears_it() {
    let mut app = audit_app();
    update(&mut app, ch('/'));
    for a in typed("chatty") {
        update(&mut app, a);
    }
    update(&mut app, key(KeyCode::Enter));
    let text = screen(&app, 80, 24);
    assert!(text.contains("1 of 5 entries"), "{text}");
    assert!(
        text.contains("partner-sync") && !text.contains("heartbeat "),
        "{text}"
    );
    insta::assert_snapshot!("audit_searched_80x24", render(&app, 80, 24).backend());
    // Esc clears the search first, then leaves the view.
    update(&mut app, key(KeyCode::Esc));
    assert!(screen(&app, 80, 24).contains("5 of 5 entries"));
    update(&mut app, key(KeyCode::Esc));
    assert!(app.stack.is_empty());
}

#[test]
fn enter_shows_the_full_entry() {
    let mut app = audit_app();
    update(&mut app, ch('j'));
    update(&mut app, ch('j')); // the pause
    update(&mut app, key(KeyCode::Enter));
    let text = screen(&app, 80, 24);
    assert!(text.contains("Audit entry"), "{text}");
    assert!(
        text.contains("by   ops@bastion (database role crondeck)"),
        "{text}"
    );
    assert!(text.contains("  paused_reason: - → deploy"), "{text}");
    assert!(
        text.contains("at   2026-03-02 09:58:00 UTC"),
        "times without fractions: {text}"
    );
    insta::assert_snapshot!("audit_entry_80x24", render(&app, 80, 24).backend());
    update(&mut app, key(KeyCode::Esc));
    assert!(!screen(&app, 80, 24).contains("Audit entry"));
    assert!(matches!(app.stack.last(), Some(Screen::Audit(_))));
}

fn overview() -> Vec<NodeOverview> {
    let mut other = nodes().remove(0);
    other.id = "n-b".into();
    other.name = "batch-1".into();
    other.host = "batch-host".into();
    other.busy = 2;
    other.heartbeat_at = now() - secs(4);
    let mut dead = nodes().remove(0);
    dead.id = "n-c".into();
    dead.name = "old-node".into();
    dead.host = "gone-host".into();
    dead.heartbeat_at = now() - secs(300);
    vec![
        NodeOverview {
            node: nodes().remove(0),
            version: "0.9.0".into(),
            alive: true,
            stopped_at: None,
            running: vec!["nightly-report".into()],
        },
        NodeOverview {
            node: other,
            version: "0.9.0".into(),
            alive: true,
            stopped_at: None,
            running: vec!["billing-export".into(), "partner-sync".into()],
        },
        NodeOverview {
            node: dead,
            version: "0.8.2".into(),
            alive: false,
            stopped_at: None,
            running: Vec::new(),
        },
    ]
}

#[test]
fn the_nodes_view_shows_each_node_and_what_it_runs() {
    let mut app = app();
    assert_eq!(update(&mut app, ch('N')), vec![Effect::LoadNodes]);
    update(&mut app, Action::Data(DataEvent::Nodes(overview())));
    assert_eq!(
        update(&mut app, ctrl('r')),
        vec![Effect::Refresh, Effect::LoadNodes]
    );
    let text = screen(&app, 160, 40);
    assert!(
        text.contains("nodes: 2 live, 1 gone within the hour"),
        "{text}"
    );
    let row = |needle: &str| {
        // Below the header, which names the nodes too.
        text.lines()
            .skip(3)
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row {needle}:\n{text}"))
            .to_string()
    };
    let own = row("node-a (this)");
    assert!(
        own.contains("live") && own.contains("host-a") && own.contains("1/2"),
        "{own}"
    );
    assert!(
        own.contains("2s ago") && own.contains("nightly-report"),
        "{own}"
    );
    let batch = row("batch-1");
    assert!(batch.contains("billing-export, partner-sync"), "{batch}");
    assert!(row("old-node").contains("DEAD"));
    insta::assert_snapshot!("nodes_80x24", render(&app, 80, 24).backend());
    insta::assert_snapshot!("nodes_160x40", render(&app, 160, 40).backend());
}
