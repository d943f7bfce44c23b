//! The audit trail: who did what to which job, old → new, and why; of one
//! job when opened from its detail; `/` searches it; ⏎ shows one entry in
//! full.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use super::{centered, constraints, fit_columns_flex, Column};
use crate::cli::output::audit_change;
use crate::db::audit::AuditRecord;
use crate::tui::app::{App, AuditState};
use crate::tui::format::one_line;

const COLUMNS: [Column; 6] = [
    Column {
        title: "AT",
        width: 14,
        drop: 0,
    },
    Column {
        title: "WHO",
        width: 18,
        drop: 5,
    },
    Column {
        title: "JOB",
        width: 16,
        drop: 3,
    },
    Column {
        title: "ACTION",
        width: 12,
        drop: 0,
    },
    Column {
        title: "CHANGE (OLD → NEW)",
        width: 0,
        drop: 0,
    },
    Column {
        title: "REASON",
        width: 16,
        drop: 4,
    },
];

/// "field: old → new; …" in words (the same as `crondeck audit`).
pub fn change(r: &AuditRecord) -> String {
    match (&r.old, &r.new) {
        (None, Some(serde_json::Value::Object(n))) if n.contains_key("request_id") => {
            format!("run requested (request {})", n["request_id"])
        }
        _ => audit_change(r.old.as_ref(), r.new.as_ref()),
    }
}

fn who(r: &AuditRecord) -> String {
    match (&r.os_user, &r.host) {
        (Some(u), Some(h)) => format!("{u}@{h}"),
        (Some(u), None) => u.clone(),
        _ => r.db_role.clone(),
    }
}

fn heading(app: &App, a: &AuditState) -> Line<'static> {
    let t = &app.theme;
    if let Some(input) = &a.search_input {
        return Line::from(vec![
            Span::styled(" / ", t.key()),
            Span::raw(one_line(input.value())),
            Span::styled("▏  ⏎ keep · esc clear", t.dim()),
        ]);
    }
    let mut parts = vec![match &a.job {
        Some(job) => format!("audit of {}", one_line(job)),
        None => "audit of every job".to_string(),
    }];
    if let Some(records) = &a.records {
        parts.push(format!(
            "{} of {} entries",
            a.visible().len(),
            records.len()
        ));
    }
    if !a.search.is_empty() {
        parts.push(format!("search \"{}\"", one_line(&a.search)));
    }
    parts.push("newest first".to_string());
    Line::from(vec![
        Span::styled(format!(" {}", parts.join(" · ")), t.title()),
        Span::styled("  / search · ⏎ entry", t.dim()),
    ])
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, a: &AuditState) {
    let t = &app.theme;
    let [top, area] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    frame.render_widget(Paragraph::new(heading(app, a)), top);
    let Some(all) = &a.records else {
        frame.render_widget(
            Paragraph::new(Line::styled(" loading the audit trail…", t.dim())),
            area,
        );
        return;
    };
    let records = a.visible();
    if records.is_empty() {
        let text = if all.is_empty() {
            " no operator actions yet"
        } else {
            " nothing matches the search (esc clears it)"
        };
        frame.render_widget(Paragraph::new(Line::styled(text, t.dim())), area);
        return;
    }
    // The change is what is read: it keeps room before the reason does.
    let keep = fit_columns_flex(&COLUMNS, area.width, 30);
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
                one_line(&change(r)),
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
    if a.open {
        if let Some(r) = a.selected() {
            entry(frame, frame.area(), app, r);
        }
    }
}

/// One entry in full: every change on a line of its own, old → new.
fn entry(frame: &mut Frame, area: Rect, app: &App, r: &AuditRecord) {
    let t = &app.theme;
    let mut lines = vec![
        Line::from(vec![
            Span::styled(format!("{} ", r.action), t.title()),
            Span::raw(format!("of {}", one_line(&r.job_name))),
        ]),
        Line::from(format!(
            "at   {}",
            app.zone.format(r.at, "%Y-%m-%d %H:%M:%S %Z")
        )),
        Line::from(format!(
            "by   {} (database role {})",
            one_line(&who(r)),
            one_line(&r.db_role)
        )),
    ];
    if let Some(reason) = &r.reason {
        lines.push(Line::from(format!("why  {}", one_line(reason))));
    }
    lines.push(Line::from(""));
    for part in change(r).split("; ") {
        lines.push(Line::from(format!("  {}", one_line(part))));
    }
    lines.push(Line::from(""));
    lines.push(Line::styled(
        format!("entry {} · esc or ⏎ closes", r.id),
        t.dim(),
    ));
    let width = 76.min(area.width.saturating_sub(2));
    let inner = usize::from(width.saturating_sub(2)).max(1);
    let wrapped: usize = lines.iter().map(|l| l.width().div_ceil(inner).max(1)).sum();
    let height = u16::try_from(wrapped + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(Span::styled(" Audit entry ", t.title())),
            )
            .wrap(Wrap { trim: false }),
        popup,
    );
}
