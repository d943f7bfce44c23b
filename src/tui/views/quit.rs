//! The quit dialog: the runs this console's own node executes, by name and
//! how long they have run, and the choice: wait, stop them now, or stay.
//! While waiting, a countdown to the end of the grace period.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::centered;
use crate::timespec::format_duration_short;
use crate::tui::app::{App, QuitState};
use crate::tui::format::one_line;

/// Runs listed by name; more are counted.
const LISTED: usize = 6;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, q: &QuitState) {
    let t = &app.theme;
    let (runs, unnamed) = app.own_runs();
    let total = runs.len() + unnamed;
    let mut lines: Vec<Line> = Vec::new();
    let noun = if total == 1 { "run" } else { "runs" };
    lines.push(Line::from(format!(
        "This console's scheduler node is executing {total} {noun}:"
    )));
    for r in runs.iter().take(LISTED) {
        let elapsed = r.since.map_or_else(
            || "?".to_string(),
            |since| format_duration_short(app.now - since),
        );
        lines.push(Line::from(vec![
            Span::raw("  "),
            Span::styled(one_line(&r.job), t.title()),
            Span::raw(format!("  running for {elapsed}")),
        ]));
    }
    let more = runs.len().saturating_sub(LISTED) + unnamed;
    if more > 0 {
        lines.push(Line::from(format!("  and {more} more")));
    }
    lines.push(Line::from(""));
    let grace = format_duration_short(app.shutdown_grace);
    match q.waiting_since {
        None => {
            lines.push(Line::from(vec![
                Span::styled(" w ", t.key()),
                Span::raw(format!(
                    " wait for them (at most {grace}, then they are stopped)"
                )),
            ]));
            lines.push(Line::from(vec![
                Span::styled(" s ", t.key()),
                Span::raw(" stop them now (recorded cancelled) · ^c too"),
            ]));
            lines.push(Line::from(vec![
                Span::styled("esc", t.key()),
                Span::raw(" do not quit"),
            ]));
        }
        Some(since) if q.stopping => {
            let waited = format_duration_short(app.now - since);
            lines.push(Line::styled(
                format!("stopping them now… ({waited})"),
                t.warn(),
            ));
        }
        Some(since) => {
            let left = (app.shutdown_grace - (app.now - since)).max(chrono::Duration::zero());
            let total_ms = app.shutdown_grace.num_milliseconds().max(1);
            let done =
                ((app.now - since).num_milliseconds().clamp(0, total_ms) * 20 / total_ms) as usize;
            lines.push(Line::from(format!(
                "waiting for them: {} left, then they are stopped",
                format_duration_short(left)
            )));
            lines.push(Line::from(format!(
                "[{}{}]",
                "#".repeat(done),
                "·".repeat(20 - done)
            )));
            lines.push(Line::from(vec![
                Span::styled(" s ", t.key()),
                Span::raw("or "),
                Span::styled("^c", t.key()),
                Span::raw(" stops them now"),
            ]));
        }
    }
    let width = 72.min(area.width.saturating_sub(2));
    let inner_width = usize::from(width.saturating_sub(2)).max(1);
    let wrapped: usize = lines
        .iter()
        .map(|l| l.width().div_ceil(inner_width).max(1))
        .sum();
    let height = u16::try_from(wrapped + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let popup = centered(area, width, height);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(" Quit: jobs are running here ", t.warn()));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
}
