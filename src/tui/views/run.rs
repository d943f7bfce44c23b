//! One run: its facts, then its captured error, stdout and stderr. All job
//! text is sanitised: escape sequences are shown, never sent.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::db::runs::RunRow;
use crate::tui::app::{App, RunState};
use crate::tui::format::{millis_or_dash, one_line, sanitize};

/// Every line of the run view (the view scrolls over them).
pub fn lines(app: &App, run: &RunRow) -> Vec<Line<'static>> {
    let t = &app.theme;
    let z = app.zone;
    let job = app.job_by_id(run.job_id).map_or_else(
        || format!("job {}", run.job_id),
        |(j, _)| one_line(&j.spec.name),
    );
    let mut out = vec![
        Line::from(vec![
            Span::styled(format!(" run {} of {job} ", run.id), t.title()),
            Span::styled(run.status.clone(), t.run_status(&run.status)),
            Span::raw(format!(
                " · {}{}",
                run.trigger,
                run.requested_by
                    .as_deref()
                    .map(|b| format!(" by {}", one_line(b)))
                    .unwrap_or_default()
            )),
        ]),
        Line::from(format!(
            " scheduled {} · started {} · ended {}",
            z.datetime(run.scheduled_for),
            run.started_at.map_or("-".into(), |s| z.datetime(s)),
            run.ended_at.map_or("-".into(), |s| z.format(s, "%H:%M:%S")),
        )),
    ];
    let mut facts = vec![
        format!("duration {}", millis_or_dash(run.duration_ms)),
        format!("late {}", millis_or_dash(run.lateness_ms)),
        format!("node {}", one_line(run.node_name.as_deref().unwrap_or("-"))),
    ];
    if let Some(c) = run.exit_code {
        facts.push(format!("exit {c}"));
    }
    if let Some(s) = run.signal {
        facts.push(format!("signal {s}"));
    }
    if let Some(s) = &run.sqlstate {
        facts.push(format!("SQLSTATE {}", one_line(s)));
    }
    if let Some(n) = run.rows_affected {
        facts.push(format!("rows {n}"));
    }
    if run.ticks != 1 || run.reason.is_some() {
        facts.push(format!(
            "ticks {}{}",
            run.ticks,
            run.reason
                .as_deref()
                .map(|r| format!(" ({})", one_line(r)))
                .unwrap_or_default()
        ));
    }
    out.push(Line::from(format!(" {}", facts.join(" · "))));
    let mut section = |title: String, text: &Option<String>| {
        if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
            out.push(Line::styled(format!("── {title} ──"), t.column_header()));
            out.extend(sanitize(text).lines().map(|l| Line::from(l.to_string())));
        }
    };
    section("error".into(), &run.error);
    section(dropped("stdout", run.stdout_dropped), &run.stdout);
    section(dropped("stderr", run.stderr_dropped), &run.stderr);
    if run.error.is_none() && run.stdout.is_none() && run.stderr.is_none() {
        out.push(Line::styled(" (no output captured)", t.dim()));
    }
    out
}

fn dropped(name: &str, bytes: i64) -> String {
    if bytes > 0 {
        format!("{name} ({bytes} bytes dropped from the middle)")
    } else {
        name.to_string()
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, r: &RunState) {
    let t = &app.theme;
    let all = match &r.run {
        None => vec![Line::styled(" loading run…", t.dim())],
        Some(None) => vec![Line::styled(
            " this run no longer exists (pruned?); esc goes back",
            t.warn(),
        )],
        Some(Some(run)) => lines(app, run),
    };
    let visible = usize::from(area.height);
    let scroll = r.scroll.min(all.len().saturating_sub(visible));
    let shown: Vec<Line> = all.into_iter().skip(scroll).take(visible).collect();
    frame.render_widget(Paragraph::new(shown), area);
}
