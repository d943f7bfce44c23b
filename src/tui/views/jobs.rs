//! The jobs table (SPEC §5). Only the rows on screen are built.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{fit_columns_flex, Column};
use crate::health::State;
use crate::job::Job;
use crate::tui::app::{App, Conn, SortKey};
use crate::tui::format::{
    compact, compact_ago, compact_millis, compact_next, ellipsize_middle, one_line, progress_cell,
    short_result, short_schedule,
};
use crate::tui::scroll;

/// Widths for 80 columns (issue 12): state, a name with room, next, last,
/// result and duration always; failures and priority when the names leave
/// room; schedule and node on wider terminals. Times are compact ("2m").
const COLUMNS: [Column; 10] = [
    Column {
        title: "STATE",
        width: 9,
        drop: 0,
    },
    Column {
        title: "NAME",
        width: 0,
        drop: 0,
    },
    Column {
        title: "SCHEDULE",
        width: 12,
        drop: 9,
    },
    Column {
        title: "NEXT",
        width: 8,
        drop: 0,
    },
    Column {
        title: "LAST",
        width: 4,
        drop: 5,
    },
    Column {
        title: "RESULT",
        width: 16,
        drop: 4,
    },
    Column {
        title: "DURATION",
        width: 10,
        drop: 3,
    },
    Column {
        title: "FAIL",
        width: 4,
        drop: 7,
    },
    Column {
        title: "PRI",
        width: 3,
        drop: 8,
    },
    Column {
        title: "NODE",
        width: 14,
        drop: 10,
    },
];

const NAME: usize = 1;
const RESULT: usize = 5;
/// The name column asks for its longest name, between these widths; it
/// takes whatever the kept columns leave.
const NAME_MIN: usize = 8;
const NAME_WANT_MAX: usize = 24;

/// The cells of the longest name in the view (kept with the view: walking
/// 100,000 names cost a frame 15 ms).
fn longest_name(app: &App) -> usize {
    app.longest_name
}

/// The kept columns and their widths: the name takes what the other
/// columns leave, up to its longest name (a wide terminal does not push the
/// other columns to the far right).
fn layout(app: &App, width: u16) -> (Vec<usize>, Vec<u16>) {
    let longest = longest_name(app).max(NAME_MIN);
    let need = u16::try_from(longest.min(NAME_WANT_MAX)).unwrap_or(u16::MAX);
    let keep = fit_columns_flex(&COLUMNS, width, need);
    let fixed: u16 =
        keep.iter().map(|&i| COLUMNS[i].width).sum::<u16>() + keep.len().saturating_sub(1) as u16;
    let name = width
        .saturating_sub(fixed)
        .min(u16::try_from(longest).unwrap_or(u16::MAX))
        .max(4);
    let widths = keep
        .iter()
        .map(|&i| if i == NAME { name } else { COLUMNS[i].width })
        .collect();
    (keep, widths)
}

fn sort_column(key: SortKey) -> usize {
    match key {
        SortKey::State => 0,
        SortKey::Name => 1,
        SortKey::Next => 3,
        SortKey::Last => 4,
        SortKey::Duration => 6,
        SortKey::Failures => 7,
        SortKey::Priority => 8,
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let [area, status_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(app.status_rows())]).areas(area);
    if app.data_at.is_some() {
        status(frame, status_area, app);
    }
    if app.view.is_empty() {
        let text = if app.data_at.is_none() {
            match &app.conn {
                Conn::Stale { error, .. } => format!(
                    "cannot reach the job database: {}; retrying…",
                    one_line(error)
                ),
                _ => "loading jobs…".to_string(),
            }
        } else if app.jobs.is_empty() {
            "no jobs yet: add one with `crondeck add` or `crondeck apply FILE`".to_string()
        } else {
            "no job matches the filter (esc clears it)".to_string()
        };
        frame.render_widget(
            Paragraph::new(Line::styled(format!(" {text}"), t.dim())),
            area,
        );
        return;
    }
    let (keep, widths) = layout(app, area.width);
    let name_width = keep
        .iter()
        .position(|&i| i == NAME)
        .map_or(0, |p| usize::from(widths[p]));
    let sorted = sort_column(app.sort);
    let header = Row::new(keep.iter().map(|&i| {
        let mut title = COLUMNS[i].title.to_string();
        if i == sorted {
            title.push(if app.reverse { '▼' } else { '▲' });
        }
        Cell::from(title)
    }))
    .style(t.column_header());
    let rows_on_screen = usize::from(area.height.saturating_sub(1));
    let end = (app.offset + rows_on_screen).min(app.view.len());
    let rows = app.view[app.offset..end].iter().enumerate().map(|(n, &i)| {
        let job = &app.jobs[i];
        let state = app.health[i].primary;
        let mut cells = cells(app, job, state);
        cells[NAME] = ellipsize_middle(&cells[NAME], name_width);
        let mut style = t.state(state);
        if app.offset + n == app.cursor {
            style = style.patch(t.selected());
        }
        Row::new(keep.iter().map(|&c| Cell::from(cells[c].clone()))).style(style)
    });
    let table = Table::new(rows, widths.into_iter().map(Constraint::Length))
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, area);
}

/// The line under the rows: which rows are shown ("12–31 of 324") and
/// the problem rows the window leaves out ("↑ 3 problems above").
fn status(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let hidden = app.hidden_problems();
    let mut spans = vec![Span::styled(
        format!(
            " {}",
            scroll::counter(app.offset, app.table_rows(), app.view.len())
        ),
        t.dim(),
    )];
    for (n, up) in [(hidden.above, true), (hidden.below, false)] {
        if n > 0 {
            spans.push(Span::raw("  "));
            spans.push(Span::styled(scroll::marker(n, up), t.warn()));
        }
    }
    let mut lines = vec![Line::from(spans)];
    lines.extend(
        app.filter_lines()
            .into_iter()
            .map(|l| Line::styled(l, t.warn())),
    );
    frame.render_widget(Paragraph::new(lines), area);
}

fn cells(app: &App, job: &Job, state: State) -> [String; 10] {
    let rt = &job.runtime;
    let now = app.as_of();
    let progress = app
        .progress
        .get(&job.id)
        .filter(|p| rt.running_run_id == Some(p.run_id));
    let result = match (rt.running_since, progress) {
        (Some(_), Some(p)) if rt.running_run_id.is_some() => progress_cell(
            p.progress,
            p.estimated_end(),
            now,
            usize::from(COLUMNS[RESULT].width),
        ),
        (Some(since), None) if rt.running_run_id.is_some() => {
            format!("running {}", compact(now - since))
        }
        // Why it is paused says more than its last result (in the detail).
        _ => match job.pause.as_ref().and_then(|p| p.reason.as_deref()) {
            Some(reason) if state == State::Paused => format!("‖ {}", one_line(reason)),
            _ => short_result(rt),
        },
    };
    let duration = match (rt.last_duration_ms, app.typical_ms.get(&job.id)) {
        (None, _) => "-".to_string(),
        (Some(last), Some(typical)) => {
            format!("{} ~{}", compact_millis(last), compact_millis(*typical))
        }
        (Some(last), None) => compact_millis(last),
    };
    let next = match state {
        // A timed pause says when it ends.
        State::Paused => match job.pause.as_ref().and_then(|p| p.until) {
            Some(until) if until > now => format!("til {}", compact(until - now)),
            _ => "paused".to_string(),
        },
        State::Done => "done".to_string(),
        _ => compact_next(job.nextcall, now),
    };
    [
        format!("{} {}", state.glyph(), state.word()),
        one_line(&job.spec.name),
        short_schedule(&job.spec.schedule),
        next,
        compact_ago(rt.last_started_at, now),
        result,
        duration,
        if rt.failure_streak > 0 {
            rt.failure_streak.to_string()
        } else {
            String::new()
        },
        job.spec.priority.to_string(),
        match &rt.running_node_name {
            Some(node) => node.clone(),
            None if job.active && app.unrunnable.contains(&job.id) => "no node!".to_string(),
            None => String::new(),
        },
    ]
}
