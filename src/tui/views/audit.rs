//! The audit trail: who did what to which job, old → new, and why.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;

use super::{constraints, fit_columns, Column};
use crate::db::audit::AuditRecord;
use crate::tui::app::{App, AuditState};
use crate::tui::format::{json_short, one_line};

const COLUMNS: [Column; 6] = [
    Column {
        title: "AT",
        width: 14,
        drop: 0,
    },
    Column {
        title: "WHO",
        width: 18,
        drop: 3,
    },
    Column {
        title: "JOB",
        width: 16,
        drop: 0,
    },
    Column {
        title: "ACTION",
        width: 6,
        drop: 0,
    },
    Column {
        title: "OLD → NEW",
        width: 0,
        drop: 0,
    },
    Column {
        title: "REASON",
        width: 16,
        drop: 2,
    },
];

/// "priority: 5 → 1; nextcall: … → …" for changed keys; compact otherwise.
pub fn change(old: &Option<Value>, new: &Option<Value>) -> String {
    match (old, new) {
        (Some(Value::Object(o)), Some(Value::Object(n))) => {
            let mut keys: Vec<&String> = n.keys().chain(o.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| o.get(*k) != n.get(*k))
                .map(|k| {
                    let show = |v: Option<&Value>| v.map_or("-".to_string(), json_short);
                    format!("{k}: {} → {}", show(o.get(k)), show(n.get(k)))
                })
                .collect::<Vec<_>>()
                .join("; ")
        }
        (None, Some(Value::Object(n))) if n.contains_key("request_id") => {
            format!("run requested ({})", json_short(&n["request_id"]))
        }
        (None, Some(_)) => "created".to_string(),
        (Some(_), None) => "removed".to_string(),
        _ => String::new(),
    }
}

fn who(r: &AuditRecord) -> String {
    match (&r.os_user, &r.host) {
        (Some(u), Some(h)) => format!("{u}@{h}"),
        (Some(u), None) => u.clone(),
        _ => r.db_role.clone(),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, a: &AuditState) {
    let t = &app.theme;
    let Some(records) = &a.records else {
        frame.render_widget(
            Paragraph::new(Line::styled(" loading the audit trail…", t.dim())),
            area,
        );
        return;
    };
    if records.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(" no operator actions yet", t.dim())),
            area,
        );
        return;
    }
    let keep = fit_columns(&COLUMNS, area.width);
    let header =
        Row::new(keep.iter().map(|&i| Cell::from(COLUMNS[i].title))).style(t.column_header());
    let visible = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = (a.cursor + 1).saturating_sub(visible);
    let rows = records
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(n, r)| {
            let cells = [
                app.zone.format(r.at, "%m-%d %H:%M:%S"),
                one_line(&who(r)),
                one_line(&r.job_name),
                r.action.clone(),
                one_line(&change(&r.old, &r.new)),
                one_line(r.reason.as_deref().unwrap_or("")),
            ];
            let row = Row::new(keep.iter().map(|&c| Cell::from(cells[c].clone())));
            if n == a.cursor {
                row.style(t.selected())
            } else {
                row
            }
        });
    let table = Table::new(rows, constraints(&COLUMNS, &keep))
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, area);
}
