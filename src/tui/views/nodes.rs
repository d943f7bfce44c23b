//! The nodes: each scheduler node live or seen within the hour, its host,
//! version, busy workers, last heartbeat, and the jobs it runs now.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};
use ratatui::Frame;

use super::{constraints, fit_columns_flex, Column};
use crate::timespec::format_duration_short;
use crate::tui::app::{App, NodesState};
use crate::tui::format::one_line;

const COLUMNS: [Column; 8] = [
    Column {
        title: "NODE",
        width: 18,
        drop: 0,
    },
    Column {
        title: "STATE",
        width: 8,
        drop: 0,
    },
    Column {
        title: "HOST",
        width: 14,
        drop: 3,
    },
    Column {
        title: "VERSION",
        width: 8,
        drop: 4,
    },
    Column {
        title: "BUSY",
        width: 5,
        drop: 0,
    },
    Column {
        title: "HEARTBEAT",
        width: 9,
        drop: 0,
    },
    Column {
        title: "UP",
        width: 6,
        drop: 5,
    },
    Column {
        title: "RUNNING",
        width: 0,
        drop: 0,
    },
];

pub fn draw(frame: &mut Frame, area: Rect, app: &App, n: &NodesState) {
    let t = &app.theme;
    let [top, area] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(area);
    let Some(nodes) = &n.nodes else {
        frame.render_widget(
            Paragraph::new(Line::styled(" loading the nodes…", t.dim())),
            top,
        );
        return;
    };
    let live = nodes.iter().filter(|o| o.alive).count();
    frame.render_widget(
        Paragraph::new(Line::from(vec![Span::styled(
            format!(
                " nodes: {live} live, {} gone within the hour",
                nodes.len() - live
            ),
            t.title(),
        )])),
        top,
    );
    if nodes.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled(" no node has run within the hour", t.alarm())),
            area,
        );
        return;
    }
    let own = app.own_node.as_ref().map(|s| s.node_id.as_str());
    let now = app.as_of();
    // What a node runs keeps room before its host and version do.
    let keep = fit_columns_flex(&COLUMNS, area.width, 24);
    let header =
        Row::new(keep.iter().map(|&i| Cell::from(COLUMNS[i].title))).style(t.column_header());
    let visible = usize::from(area.height.saturating_sub(1)).max(1);
    let offset = (n.cursor + 1).saturating_sub(visible);
    let rows = nodes
        .iter()
        .enumerate()
        .skip(offset)
        .take(visible)
        .map(|(i, o)| {
            let node = &o.node;
            let this = if Some(node.id.as_str()) == own {
                " (this)"
            } else {
                ""
            };
            let state = match (o.alive, o.stopped_at) {
                (true, _) => "live",
                (false, Some(_)) => "stopped",
                (false, None) => "DEAD",
            };
            let running = if o.running.is_empty() {
                "-".to_string()
            } else {
                o.running.join(", ")
            };
            let cells = [
                format!("{}{this}", one_line(&node.name)),
                state.to_string(),
                one_line(&node.host),
                one_line(&o.version),
                format!("{}/{}", node.busy, node.workers),
                format!("{} ago", format_duration_short(now - node.heartbeat_at)),
                format_duration_short(now - node.started_at),
                one_line(&running),
            ];
            let mut style = match state {
                "live" => t.good(),
                "DEAD" => t.alarm(),
                _ => t.dim(),
            };
            if i == n.cursor {
                style = style.patch(t.selected());
            }
            Row::new(keep.iter().map(|&c| Cell::from(cells[c].clone()))).style(style)
        });
    let table = Table::new(rows, constraints(&COLUMNS, &keep))
        .header(header)
        .column_spacing(1);
    frame.render_widget(table, area);
}
