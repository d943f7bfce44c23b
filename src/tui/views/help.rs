//! The `?` help and the footer, both built from `keys::BINDINGS`.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::centered;
use crate::tui::app::App;
use crate::tui::format::one_line;
use crate::tui::keys::{self, BINDINGS};

pub fn footer(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let [message, hints] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    let line = if let Some(input) = &app.filter_input {
        Line::from(vec![
            Span::styled(" / ", t.key()),
            Span::raw(one_line(input.value())),
            Span::styled("▏  ⏎ keep · esc clear", t.dim()),
        ])
    } else if let Some(m) = &app.message {
        // In full: wrapped by `App::message_lines`, which sized the footer.
        let style = if m.error { t.error() } else { t.good() };
        let lines: Vec<Line> = app
            .message_lines()
            .into_iter()
            .map(|l| Line::styled(l, style))
            .collect();
        frame.render_widget(Paragraph::new(lines), message);
        return hints_line(frame, hints, app);
    } else {
        Line::from("")
    };
    frame.render_widget(Paragraph::new(line), message);
    hints_line(frame, hints, app);
}

fn hints_line(frame: &mut Frame, hints: Rect, app: &App) {
    let t = &app.theme;
    let mut spans = vec![Span::raw(" ")];
    for b in keys::hints(app.screen()) {
        if b.mutates && app.read_only {
            continue;
        }
        spans.push(Span::styled(b.label, t.key()));
        spans.push(Span::raw(format!(" {}  ", b.short)));
    }
    if app.read_only {
        spans.push(Span::styled("(read-only)", t.dim()));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), hints);
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let entry = |b: &keys::Binding| -> Line<'static> {
        let mut spans = vec![
            Span::styled(format!("{:>4} ", b.label), t.key()),
            Span::raw(b.help),
        ];
        if b.mutates && app.read_only {
            spans.push(Span::styled(" (off: read-only)", t.dim()));
        }
        Line::from(spans)
    };
    let half = BINDINGS.len().div_ceil(2);
    let left: Vec<Line> = BINDINGS[..half].iter().map(entry).collect();
    let right: Vec<Line> = BINDINGS[half..].iter().map(entry).collect();
    let height = (half as u16 + 4).min(area.height);
    let popup = centered(area, 78, height);
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(" Keys (any key closes) ", t.title()));
    let inner = block.inner(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(block, popup);
    let [body, legend] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(inner);
    let [l, r] = Layout::horizontal([Constraint::Percentage(50); 2]).areas(body);
    frame.render_widget(Paragraph::new(left), l);
    frame.render_widget(Paragraph::new(right), r);
    let states: Vec<String> = crate::health::State::ALL
        .iter()
        .map(|s| format!("{} {}", s.glyph(), s.word()))
        .collect();
    frame.render_widget(
        Paragraph::new(Line::styled(states.join("  "), t.dim())),
        legend,
    );
}
