//! Drawing: pure functions of `App` onto a ratatui frame. Nothing here reads
//! the clock, the time zone or the database; `App` carries "now" and the zone.

pub mod audit;
pub mod detail;
pub mod dialog;
pub mod header;
pub mod help;
pub mod jobs;
pub mod nodes;
pub mod notifications;
pub mod quit;
pub mod run;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Screen, HEADER_ROWS, MIN_HEIGHT, MIN_WIDTH};

/// Draw the whole screen. Every view escapes what it shows; as a last
/// guard, a cell that still holds a hostile character (see
/// [`crate::text::is_hostile`]) is blanked to `�`, so nothing on the screen
/// can act on the terminal, whatever a view forgot.
pub fn draw(frame: &mut Frame, app: &App) {
    draw_screen(frame, app);
    guard(frame.buffer_mut());
}

/// Blank every cell holding a hostile character to `�`.
pub fn guard(buffer: &mut ratatui::buffer::Buffer) {
    for cell in &mut buffer.content {
        if cell.symbol().chars().any(crate::text::is_hostile) {
            cell.set_symbol("\u{FFFD}");
        }
    }
}

fn draw_screen(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        too_small(frame, area, app);
        return;
    }
    let [top, body, bottom] = Layout::vertical([
        Constraint::Length(HEADER_ROWS),
        Constraint::Min(1),
        Constraint::Length(app.footer_rows()),
    ])
    .areas(area);
    header::draw(frame, top, app);
    match app.stack.last() {
        None => jobs::draw(frame, body, app),
        Some(Screen::Detail(d)) => detail::draw(frame, body, app, d),
        Some(Screen::Run(r)) => run::draw(frame, body, app, r),
        Some(Screen::Audit(a)) => audit::draw(frame, body, app, a),
        Some(Screen::Notifications(n)) => notifications::draw(frame, body, app, n),
        Some(Screen::Nodes(n)) => nodes::draw(frame, body, app, n),
    }
    help::footer(frame, bottom, app);
    if let Some(d) = &app.dialog {
        dialog::draw(frame, area, app, d);
    }
    if app.help {
        help::draw(frame, area, app);
    }
    if let Some(q) = &app.quitting {
        quit::draw(frame, area, app, q);
    }
}

fn too_small(frame: &mut Frame, area: Rect, app: &App) {
    let text = vec![
        Line::styled("crondeck: terminal too small", app.theme.warn()),
        Line::from(format!(
            "{}×{} here; the console needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
            area.width, area.height
        )),
        Line::from("Enlarge the window, or press q to quit."),
    ];
    frame.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }), area);
}

/// A table column: title, width, and how late it is dropped when the
/// terminal is narrow (higher drops first; 0 never drops).
pub struct Column {
    pub title: &'static str,
    pub width: u16,
    pub drop: u8,
}

/// The columns that fit in `width` (one space between columns), in order.
/// A column of width 0 is the flexible one and takes what is left (at least 12).
pub fn fit_columns(columns: &[Column], width: u16) -> Vec<usize> {
    fit_columns_flex(columns, width, 12)
}

/// [`fit_columns`] with the flexible column needing at least `flex_min`.
pub fn fit_columns_flex(columns: &[Column], width: u16, flex_min: u16) -> Vec<usize> {
    let mut keep: Vec<usize> = (0..columns.len()).collect();
    let needed = |keep: &[usize]| -> u16 {
        keep.iter()
            .map(|&i| {
                columns[i]
                    .width
                    .max(if columns[i].width == 0 { flex_min } else { 0 })
            })
            .sum::<u16>()
            + keep.len().saturating_sub(1) as u16
    };
    while needed(&keep) > width {
        let Some(pos) = keep
            .iter()
            .enumerate()
            .filter(|(_, &i)| columns[i].drop > 0)
            .max_by_key(|(_, &i)| columns[i].drop)
            .map(|(pos, _)| pos)
        else {
            break;
        };
        keep.remove(pos);
    }
    keep
}

/// Constraints for the kept columns.
pub fn constraints(columns: &[Column], keep: &[usize]) -> Vec<Constraint> {
    keep.iter()
        .map(|&i| match columns[i].width {
            0 => Constraint::Min(12),
            w => Constraint::Length(w),
        })
        .collect()
}

/// A centred rectangle of at most `width`×`height` inside `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}
