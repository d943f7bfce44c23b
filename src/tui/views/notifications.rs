//! The notifications view (`m`): what was sent, when, to which channel, and
//! how its delivery stands: pending, delivered, retrying (attempt n of m,
//! next attempt in …, last error) or failed (with the error kept). One row per
//! episode and channel, newest first; the selected row's message and error
//! are shown in full under the table.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{constraints, fit_columns, Column};
use crate::db::notifications::DeliveryRow;
use crate::tui::app::{App, NotificationsState};
use crate::tui::format::{compact, ellipsize_middle, one_line};
use crate::tui::theme::Theme;

const COLUMNS: [Column; 6] = [
    Column {
        title: "AT",
        width: 11,
        drop: 0,
    },
    Column {
        title: "EVENT",
        width: 12,
        drop: 0,
    },
    Column {
        title: "JOB",
        width: 14,
        drop: 0,
    },
    Column {
        title: "CHANNEL",
        width: 14,
        drop: 0,
    },
    Column {
        title: "DELIVERY",
        width: 20,
        drop: 0,
    },
    Column {
        title: "ERROR",
        width: 0,
        drop: 1,
    },
];

/// The event in a table cell: "failing", "auto-paused", "no live node", ...
pub fn event_word(event: &str) -> &str {
    match event {
        "failure_streak" => "failing",
        "auto_paused" => "auto-paused",
        "no_live_node" => "no live node",
        other => other,
    }
}

/// Rows under the table for the selected notification.
const DETAIL_ROWS: u16 = 5;

/// "delivered", "retrying 2/5 in 8s", "failed 5/5", "pending", "sending 1/5".
pub fn delivery_words(d: &DeliveryRow, app: &App) -> String {
    match d.status.as_str() {
        "delivered" if d.attempts > 1 => format!("delivered ({} tries)", d.attempts),
        "delivered" => "delivered".to_string(),
        "failed" => format!("failed {}/{}", d.attempts, d.max_attempts),
        "retrying" if d.next_attempt_at > app.now => format!(
            "retrying {}/{} in {}",
            d.attempts,
            d.max_attempts,
            compact(d.next_attempt_at - app.now)
        ),
        "retrying" => format!("retrying {}/{} now", d.attempts, d.max_attempts),
        "pending" if d.attempts > 0 => format!("sending {}/{}", d.attempts, d.max_attempts),
        other => other.to_string(),
    }
}

fn status_style(t: &Theme, status: &str) -> Style {
    match status {
        "delivered" => t.good(),
        "failed" => t.alarm(),
        "retrying" => t.warn(),
        _ => t.dim(),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, n: &NotificationsState) {
    let t = &app.theme;
    let Some(rows) = &n.deliveries else {
        frame.render_widget(
            Paragraph::new(Line::styled(" loading the notifications…", t.dim())),
            area,
        );
        return;
    };
    if rows.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(
                " nothing sent yet (channels are configured in [notifications]; see docs/operations.md)",
                t.dim(),
            )),
            area,
        );
        return;
    }
    let [table_area, detail_area] =
        Layout::vertical([Constraint::Min(2), Constraint::Length(DETAIL_ROWS)]).areas(area);
    let keep = fit_columns(&COLUMNS, table_area.width);
    let header =
        Row::new(keep.iter().map(|&i| Cell::from(COLUMNS[i].title))).style(t.column_header());
    let visible = usize::from(table_area.height.saturating_sub(1)).max(1);
    let offset = (n.cursor + 1).saturating_sub(visible);
    let body = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, d)| {
            let cells = [
                Cell::from(app.zone.format(d.created_at, "%m-%d %H:%M")),
                Cell::from(event_word(&d.event).to_string()),
                Cell::from(ellipsize_middle(
                    &one_line(d.job_name.as_deref().unwrap_or("(cluster)")),
                    usize::from(COLUMNS[2].width),
                )),
                Cell::from(ellipsize_middle(
                    &one_line(&d.channel),
                    usize::from(COLUMNS[3].width),
                )),
                Cell::from(delivery_words(d, app)).style(status_style(t, &d.status)),
                Cell::from(one_line(d.last_error.as_deref().unwrap_or(""))),
            ];
            let row = Row::new(keep.iter().map(|&c| cells[c].clone()));
            if i == n.cursor {
                row.style(t.selected())
            } else {
                row
            }
        });
    let table = Table::new(body, constraints(&COLUMNS, &keep))
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, table_area);
    if let Some(d) = rows.get(n.cursor) {
        let mut lines = vec![Line::from(one_line(&d.message))];
        let when = match (d.delivered_at, d.last_attempt_at) {
            (Some(at), _) => format!("delivered {}", app.zone.format(at, "%m-%d %H:%M:%S")),
            (None, Some(at)) => format!("last attempt {}", app.zone.format(at, "%m-%d %H:%M:%S")),
            (None, None) => "not tried yet".to_string(),
        };
        lines.push(Line::from(vec![
            Span::styled(d.status.clone(), status_style(t, &d.status)),
            Span::styled(
                format!(
                    " · {} · channel {} ({}) · {when} · attempt {} of {} · key crondeck-{}",
                    d.event,
                    one_line(&d.channel),
                    d.kind,
                    d.attempts,
                    d.max_attempts,
                    d.id
                ),
                t.dim(),
            ),
        ]));
        if let Some(error) = &d.last_error {
            lines.push(Line::styled(
                format!("error: {}", one_line(error)),
                t.error(),
            ));
        }
        frame.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }),
            detail_area,
        );
    }
}
