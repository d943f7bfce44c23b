//! Job detail: definition, schedule in words, next fire times, success rate
//! and p50/p95 durations over recent runs, a duration chart, run history.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::{constraints, fit_columns, Column};
use crate::db::runs::RunRow;
use crate::job::Job;
use crate::timespec::format_duration_short;
use crate::tui::app::{App, DetailState};
use crate::tui::format::{millis, millis_or_dash, next_run, one_line, progress_cell, relative};

const RUN_COLUMNS: [Column; 9] = [
    Column {
        title: "STATUS",
        width: 11,
        drop: 0,
    },
    Column {
        title: "TRIGGER",
        width: 8,
        drop: 4,
    },
    Column {
        title: "SCHEDULED",
        width: 14,
        drop: 0,
    },
    Column {
        title: "STARTED",
        width: 8,
        drop: 3,
    },
    Column {
        title: "LATE",
        width: 7,
        drop: 5,
    },
    Column {
        title: "DURATION",
        width: 8,
        drop: 0,
    },
    Column {
        title: "NODE",
        width: 0,
        drop: 6,
    },
    Column {
        title: "RESULT",
        width: 24,
        drop: 2,
    },
    Column {
        title: "TICKS",
        width: 5,
        drop: 7,
    },
];

/// Success rate and duration percentiles over finished runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    pub finished: usize,
    pub succeeded: usize,
    pub p50_ms: Option<i64>,
    pub p95_ms: Option<i64>,
}

pub fn stats(runs: &[RunRow]) -> RunStats {
    let finished: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.status != "running" && r.status != "skipped")
        .collect();
    let mut durations: Vec<i64> = finished.iter().filter_map(|r| r.duration_ms).collect();
    durations.sort_unstable();
    // Nearest-rank percentile: the smallest value with at least p% at or below it.
    let pct = |p: usize| -> Option<i64> {
        let n = durations.len();
        (n > 0).then(|| durations[((p * n).div_ceil(100)).clamp(1, n) - 1])
    };
    RunStats {
        finished: finished.len(),
        succeeded: finished.iter().filter(|r| r.status == "succeeded").count(),
        p50_ms: pct(50),
        p95_ms: pct(95),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, d: &DetailState) {
    let t = &app.theme;
    let Some((job, health)) = app.job_by_id(d.job_id) else {
        let text = " this job no longer exists (removed?); esc goes back";
        frame.render_widget(Paragraph::new(Line::styled(text, t.warn())), area);
        return;
    };
    let [top, bottom] = Layout::vertical([Constraint::Length(9), Constraint::Min(2)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);

    let state = health.primary;
    let mut lines = vec![Line::from(vec![
        Span::styled(format!(" {} ", one_line(&job.spec.name)), t.title()),
        Span::styled(
            format!("{} {}", state.glyph(), state.word()),
            t.state(state),
        ),
    ])];
    lines.extend(definition(app, job).into_iter().map(Line::from));
    frame.render_widget(Paragraph::new(lines), left);

    let [times, chart] =
        Layout::vertical([Constraint::Length(7), Constraint::Length(2)]).areas(right);
    frame.render_widget(Paragraph::new(upcoming(app, job, d)), times);
    if let Some(runs) = &d.runs {
        // Oldest first, left to right.
        let data: Vec<u64> = runs
            .iter()
            .rev()
            .filter_map(|r| r.duration_ms)
            .map(|ms| u64::try_from(ms).unwrap_or(0))
            .collect();
        frame.render_widget(Sparkline::default().data(&data).style(t.key()), chart);
    }
    history(frame, bottom, app, d);
}

fn definition(app: &App, job: &Job) -> Vec<String> {
    let spec = &job.spec;
    let mut out = Vec::new();
    if !spec.description.is_empty() {
        out.push(format!(" {}", one_line(&spec.description)));
    }
    out.push(format!(" {}: {}", spec.action, one_line(&spec.command)));
    out.push(format!(
        " schedule {} — {}",
        spec.schedule,
        spec.schedule.describe()
    ));
    let timeout = spec.timeout.map_or("none".to_string(), |d| {
        format_duration_short(chrono::Duration::seconds(d.as_secs() as i64))
    });
    let runs_left = if spec.numbercall < 0 {
        "unlimited".to_string()
    } else {
        spec.numbercall.to_string()
    };
    out.push(format!(
        " priority {} · timeout {timeout} · runs left {runs_left}",
        spec.priority
    ));
    if !spec.tags.is_empty() {
        out.push(format!(" tags {}", one_line(&spec.tags.join(", "))));
    }
    if app.unrunnable.contains(&job.id) {
        let why = if spec.action != crate::job::ActionKind::Shell || app.nodes.is_empty() {
            "no live node"
        } else if !app.nodes.iter().any(|n| n.allow_shell) {
            "no live node allows shell jobs (--allow-shell)"
        } else {
            "the allow-lists of the live shell nodes do not admit this command (`crondeck run` says why)"
        };
        out.push(format!(" ‼ no node can run this job: {why}"));
    }
    let rt = &job.runtime;
    if let Some(p) = &job.pause {
        let mut text = format!(" paused {}", relative(Some(p.at), app.as_of()));
        if let Some(by) = &p.by {
            text.push_str(&format!(" by {}", one_line(by)));
        }
        if let Some(r) = &p.reason {
            text.push_str(&format!(": {}", one_line(r)));
        }
        if let Some(u) = p.until {
            text.push_str(&format!(" (until {})", app.zone.datetime(u)));
        }
        out.push(text);
    } else if rt.failure_streak > 0 {
        out.push(format!(
            " failing {} in a row since {}",
            crate::text::count(rt.failure_streak, "time", "times"),
            relative(rt.failure_streak_since, app.as_of())
        ));
    }
    if let Some(err) = &rt.last_error {
        out.push(format!(" last error: {}", one_line(err)));
    }
    out
}

fn upcoming(app: &App, job: &Job, d: &DetailState) -> Vec<Line<'static>> {
    let t = &app.theme;
    let mut lines = vec![Line::styled(
        format!("next {}", next_run(job.nextcall, app.as_of())),
        t.title(),
    )];
    match job.nextcall {
        Some(next) if job.active => {
            for at in job.spec.schedule.upcoming(next, 5) {
                lines.push(Line::from(format!(
                    "  {}",
                    app.zone.format(at, "%a %Y-%m-%d %H:%M:%S")
                )));
            }
        }
        _ if !job.active => lines.push(Line::from("  (paused: no fire times)")),
        _ => lines.push(Line::from("  (manual: runs only when triggered)")),
    }
    while lines.len() < 6 {
        lines.push(Line::from(""));
    }
    lines.truncate(6);
    let summary = match &d.runs {
        None => "loading runs…".to_string(),
        Some(runs) => {
            let s = stats(runs);
            match (s.succeeded * 100).checked_div(s.finished) {
                None => "no finished runs yet".to_string(),
                Some(rate) => format!(
                    "ok {rate}% of {} · p50 {} · p95 {}",
                    s.finished,
                    millis_or_dash(s.p50_ms),
                    millis_or_dash(s.p95_ms)
                ),
            }
        }
    };
    lines.push(Line::from(summary));
    lines
}

/// The history's heading: which page, which filter, the paging keys; or
/// the time being typed.
fn history_line(app: &App, d: &DetailState) -> Line<'static> {
    let t = &app.theme;
    if let Some(input) = &d.jump {
        return Line::from(vec![
            Span::styled(" jump to ", t.key()),
            Span::raw(one_line(input.value())),
            Span::styled(
                "▏ -8h · 02:00 · 2026-11-30 22:00 · ⏎ jump (empty: now) · esc",
                t.dim(),
            ),
        ]);
    }
    let count = d.runs.as_ref().map_or(0, Vec::len);
    let first = d.first_row();
    let mut parts = vec![if count == 0 {
        "history".to_string()
    } else {
        format!("runs {first}–{}", first + count - 1)
    }];
    parts.push(if d.newer.is_empty() {
        "newest".to_string()
    } else {
        format!("page {}", d.newer.len() + 1)
    });
    if let Some(status) = &d.query.status {
        parts.push(format!("only {status}"));
    }
    if let Some(at) = d.query.at {
        parts.push(format!("from {} back", app.zone.format(at, "%m-%d %H:%M")));
    }
    if d.more {
        parts.push("more older".to_string());
    } else if count > 0 {
        parts.push("oldest reached".to_string());
    }
    Line::from(vec![
        Span::styled(format!(" {}", parts.join(" · ")), t.title()),
        Span::styled("  ] [ page · f status · t time", t.dim()),
    ])
}

fn history(frame: &mut Frame, area: Rect, app: &App, d: &DetailState) {
    let t = &app.theme;
    let [heading, area] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    frame.render_widget(Paragraph::new(history_line(app, d)), heading);
    let Some(runs) = &d.runs else {
        frame.render_widget(
            Paragraph::new(Line::styled(" loading runs…", t.dim())),
            area,
        );
        return;
    };
    if runs.is_empty() {
        let text = if d.query == crate::db::runs::RunPageQuery::default() {
            " no runs yet"
        } else {
            " no runs match"
        };
        frame.render_widget(Paragraph::new(Line::styled(text, t.dim())), area);
        return;
    }
    let keep = fit_columns(&RUN_COLUMNS, area.width);
    let header =
        Row::new(keep.iter().map(|&i| Cell::from(RUN_COLUMNS[i].title))).style(t.column_header());
    let visible = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = (d.cursor + 1).saturating_sub(visible);
    let rows = runs
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(n, r)| {
            let cells = run_cells(app, r);
            let mut style = t.run_status(&r.status);
            if n == d.cursor {
                style = style.patch(t.selected());
            }
            Row::new(keep.iter().map(|&c| Cell::from(cells[c].clone()))).style(style)
        });
    let table = Table::new(rows, constraints(&RUN_COLUMNS, &keep))
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, area);
}

fn run_cells(app: &App, r: &RunRow) -> [String; 9] {
    let progress = r.progress().filter(|_| r.status == "running");
    let result = if let Some(p) = progress {
        progress_cell(p, r.estimated_end(), app.as_of(), 16)
    } else if let Some(code) = r.exit_code {
        format!("exit {code}")
    } else if let Some(sig) = r.signal {
        format!("signal {sig}")
    } else if let Some(state) = &r.sqlstate {
        format!("SQLSTATE {state}")
    } else if let Some(reason) = &r.reason {
        reason_words(reason)
    } else {
        String::new()
    };
    // Skipped and coalesced rows stand for several ticks: say how many,
    // also where the TICKS column does not fit.
    let result = match (r.ticks, result.is_empty()) {
        (n, _) if n <= 1 => result,
        (n, true) => format!("{n} ticks"),
        (n, false) => format!("{result}, {n} ticks"),
    };
    let duration = match (r.duration_ms, r.started_at) {
        (Some(ms), _) => millis(ms),
        (None, Some(start)) if r.status == "running" => format_duration_short(app.as_of() - start),
        _ => "-".to_string(),
    };
    [
        r.status.clone(),
        r.trigger.clone(),
        app.zone.format(r.scheduled_for, "%m-%d %H:%M:%S"),
        r.started_at
            .map_or("-".to_string(), |s| app.zone.format(s, "%H:%M:%S")),
        millis_or_dash(r.lateness_ms),
        duration,
        one_line(r.node_name.as_deref().unwrap_or("-")),
        result,
        r.ticks.to_string(),
    ]
}

/// A skipped tick's reason as the operator reads it.
fn reason_words(reason: &str) -> String {
    match reason {
        "scheduler_down" => "no node on time".to_string(),
        "catchup_skip" => "catch-up skip".to_string(),
        other => one_line(other),
    }
}
