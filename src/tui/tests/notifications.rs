//! The notifications view (`m`): each delivery's episode, channel and
//! status, with the selected one's message and error in full.

use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::fixtures::*;
use crate::db::notifications::DeliveryRow;
use crate::tui::action::{Action, DataEvent};
use crate::tui::app::Screen;
use crate::tui::update::update;

fn snap(name: &str, terminal: &Terminal<TestBackend>) {
    insta::assert_snapshot!(name, terminal.backend());
}

fn delivery(
    id: i64,
    event: &str,
    job: Option<&str>,
    channel: (&str, &str),
    status: &str,
    attempts: (i32, i32),
    ago: i64,
) -> DeliveryRow {
    let created = now() - secs(ago);
    DeliveryRow {
        id,
        notification_id: id,
        event: event.into(),
        job_name: job.map(Into::into),
        message: match job {
            Some(job) => format!("crondeck: job \"{job}\" {event}"),
            None => "crondeck: no live scheduler node; nothing is executing".into(),
        },
        created_at: created,
        channel: channel.0.into(),
        kind: channel.1.into(),
        status: status.into(),
        attempts: attempts.0,
        max_attempts: attempts.1,
        next_attempt_at: now() + secs(8),
        last_attempt_at: (attempts.0 > 0).then_some(created + secs(1)),
        delivered_at: (status == "delivered").then_some(created + secs(1)),
        last_error: match status {
            "failed" => Some("the webhook answered HTTP 500 Internal Server Error".into()),
            "retrying" => Some("error sending request: connection refused".into()),
            _ => None,
        },
    }
}

pub fn deliveries() -> Vec<DeliveryRow> {
    let mut failing = delivery(
        6,
        "failure_streak",
        Some("billing-export"),
        ("ops-slack", "webhook"),
        "retrying",
        (2, 5),
        30,
    );
    failing.message = "crondeck: job \"billing-export\" failed 3 times in a row \
                       (last: failed (exit 3): export: disk full)"
        .into();
    vec![
        failing,
        delivery(
            5,
            "failure_streak",
            Some("billing-export"),
            ("oncall-mail", "smtp"),
            "delivered",
            (1, 5),
            30,
        ),
        delivery(
            4,
            "overdue",
            Some("nightly-vacuum"),
            ("ops-slack", "webhook"),
            "failed",
            (5, 5),
            3_600,
        ),
        delivery(
            3,
            "no_live_node",
            None,
            ("pager", "command"),
            "pending",
            (0, 5),
            7_200,
        ),
        delivery(
            2,
            "recovered",
            Some("ldap\u{1b}[2Jsync"),
            ("ops-slack", "webhook"),
            "delivered",
            (3, 5),
            86_400,
        ),
    ]
}

#[test]
fn m_opens_the_notifications_view_with_each_delivery_status() {
    let mut app = app();
    update(&mut app, ch('m'));
    assert!(matches!(app.stack.last(), Some(Screen::Notifications(_))));
    snap("notifications_loading", &render(&app, 80, 24));
    update(
        &mut app,
        Action::Data(DataEvent::Notifications(deliveries())),
    );
    snap("notifications_80x24", &render(&app, 80, 24));
    snap("notifications_wide", &render(&app, 140, 30));
    // The cursor moves to the failed delivery: its error shows in full.
    update(&mut app, ch('j'));
    update(&mut app, ch('j'));
    snap("notifications_failed_selected", &render(&app, 100, 24));
    // Esc goes back to the jobs table.
    update(&mut app, key(crossterm::event::KeyCode::Esc));
    assert!(app.stack.is_empty());
}

#[test]
fn nothing_sent_yet_says_where_channels_are_configured() {
    let mut app = app();
    update(&mut app, ch('m'));
    update(&mut app, Action::Data(DataEvent::Notifications(Vec::new())));
    snap("notifications_empty", &render(&app, 100, 24));
}
