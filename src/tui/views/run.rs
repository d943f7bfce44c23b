//! One run: its facts, then its captured error, stdout and stderr. All job
//! text is sanitised: escape sequences are shown, never sent.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::db::runs::RunRow;
use crate::tui::app::{App, RunState};
use crate::tui::format::{bar, compact, millis_or_dash, one_line, sanitize};

/// Every line of the run view: its facts, then its output.
pub fn lines(app: &App, run: &RunRow) -> Vec<Line<'static>> {
    let (mut head, body) = parts(app, run);
    head.extend(body);
    head
}

/// The run view's facts (kept on screen: elapsed time, progress) and its
/// error and output (which scroll, following the end while it runs).
pub fn parts(app: &App, run: &RunRow) -> (Vec<Line<'static>>, Vec<Line<'static>>) {
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
    let running = run.status == "running";
    let duration = match run.started_at {
        // Ticks with the console's clock (database time).
        Some(started) if running => format!("running for {}", compact(app.now - started)),
        _ => format!("duration {}", millis_or_dash(run.duration_ms)),
    };
    let mut facts = vec![
        duration,
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
    if let Some(progress) = run.progress() {
        let mut spans = vec![Span::raw(" progress ")];
        if let Some(f) = progress.fraction() {
            spans.push(Span::styled(bar(f, 20), t.good()));
            spans.push(Span::raw(" "));
        }
        spans.push(Span::raw(progress.describe()));
        if let Some(end) = run.estimated_end() {
            spans.push(Span::raw(format!(
                " · estimated end {} (in {})",
                z.format(end, "%H:%M:%S"),
                compact((end - app.now).max(chrono::Duration::zero()))
            )));
        }
        out.push(Line::from(spans));
    }
    if running {
        let as_of = run
            .output_at
            .map_or_else(|| "none yet".to_string(), |at| z.format(at, "%H:%M:%S"));
        out.push(Line::styled(
            format!(" live output (as of {as_of}); the record at the end is complete"),
            t.dim(),
        ));
    }
    let head = std::mem::take(&mut out);
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
        let none = if running {
            " (no output yet)"
        } else {
            " (no output captured)"
        };
        out.push(Line::styled(none, t.dim()));
    }
    (head, out)
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
    let (head, all) = match &r.run {
        None => (Vec::new(), vec![Line::styled(" loading run…", t.dim())]),
        Some(None) => (
            Vec::new(),
            vec![Line::styled(
                " this run no longer exists (pruned?); esc goes back",
                t.warn(),
            )],
        ),
        Some(Some(run)) => parts(app, run),
    };
    // The facts stay put (leaving at least one row for the output).
    let head_rows = head.len().min(usize::from(area.height).saturating_sub(1));
    let [head_area, area] =
        Layout::vertical([Constraint::Length(head_rows as u16), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(head), head_area);
    let visible = usize::from(area.height);
    let max = all.len().saturating_sub(visible);
    let scroll = if r.follow { max } else { r.scroll.min(max) };
    // Scrolled up on a running run: say that output goes on below.
    let hint = !r.follow && r.is_running() && scroll < max && visible > 1;
    let rows = if hint { visible - 1 } else { visible };
    let mut shown: Vec<Line> = all.into_iter().skip(scroll).take(rows).collect();
    if hint {
        shown.push(Line::styled(
            " ↓ more below · G or End follows the output",
            t.warn(),
        ));
    }
    frame.render_widget(Paragraph::new(shown), area);
}
