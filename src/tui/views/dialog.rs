//! The action dialogs: inputs with live validation, then the confirm step
//! naming the job with old → new and Cancel focused.

use ratatui::layout::{Position, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::centered;
use crate::tui::app::App;
use crate::tui::format::one_line;
use crate::tui::forms::Dialog;

pub fn draw(frame: &mut Frame, area: Rect, app: &App, d: &Dialog) {
    let t = &app.theme;
    let width = 72.min(area.width.saturating_sub(2));
    let inner_width = usize::from(width.saturating_sub(4));
    let mut lines: Vec<Line> = vec![Line::from(vec![
        Span::raw("job "),
        Span::styled(one_line(&d.job), t.title()),
    ])];
    let mut cursor: Option<(u16, u16)> = None;
    if d.confirming {
        lines.push(Line::from(""));
        lines.push(Line::from(format!("old: {}", one_line(&d.old))));
        let new = match &d.outcome {
            Ok((_, new)) => new.clone(),
            Err(e) => e.clone(),
        };
        lines.push(Line::styled(format!("new: {}", one_line(&new)), t.title()));
        if let Some(note) = &d.note {
            lines.push(Line::styled(note.clone(), t.warn()));
        }
        lines.push(Line::from(""));
        let button = |label: &'static str, focused: bool| {
            if focused {
                Span::styled(format!("[ {label} ]"), t.focused())
            } else {
                Span::raw(format!("  {label}  "))
            }
        };
        lines.push(Line::from(vec![
            button("Cancel", !d.confirm_focused),
            Span::raw("   "),
            button("Confirm", d.confirm_focused),
        ]));
        lines.push(Line::styled("tab switch · ⏎ choose · esc cancel", t.dim()));
    } else {
        lines.push(Line::from(format!("now: {}", one_line(&d.old))));
        for (i, f) in d.fields.iter().enumerate() {
            let focused = i == d.field;
            lines.push(Line::styled(
                f.label,
                if focused { t.title() } else { t.dim() },
            ));
            let scroll = f.input.visual_scroll(inner_width.saturating_sub(2));
            let value: String = f.input.value().chars().skip(scroll).collect();
            if focused {
                let col = f.input.visual_cursor().saturating_sub(scroll);
                cursor = Some((u16::try_from(col + 2).unwrap_or(0), lines.len() as u16));
            }
            lines.push(Line::from(vec![
                Span::styled("> ", t.key()),
                Span::raw(one_line(&value)),
            ]));
        }
        for p in &d.preview {
            lines.push(Line::styled(one_line(p), t.good()));
        }
        match &d.outcome {
            Err(e) if !e.is_empty() => lines.push(Line::styled(format!("✗ {e}"), t.error())),
            Ok((_, new)) => lines.push(Line::from(format!("✓ new: {}", one_line(new)))),
            _ => {}
        }
        let hint = if d.fields.len() > 1 {
            "⏎ review · tab next field · esc cancel"
        } else {
            "⏎ review · esc cancel"
        };
        lines.push(Line::styled(hint, t.dim()));
    }
    // Borders plus every line as it wraps (error messages can be long).
    let wrapped: usize = lines
        .iter()
        .map(|l| l.width().div_ceil(inner_width.max(1)).max(1))
        .sum();
    let height = u16::try_from(wrapped + 2)
        .unwrap_or(u16::MAX)
        .min(area.height);
    let popup = centered(area, width, height);
    let title = format!(" {} ", d.kind.title());
    let block = Block::default()
        .borders(Borders::ALL)
        .title(Span::styled(title, t.title()));
    let inner = block.inner(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        popup,
    );
    if let Some((x, y)) = cursor {
        frame.set_cursor_position(Position::new(inner.x + x, inner.y + y));
    }
}
