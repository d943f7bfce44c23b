//! The header: where we are connected, whether we may change anything,
//! whether the data is live, who executes jobs, and the counts.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use crate::timespec::format_duration_short;
use crate::tui::app::{App, Conn};
use crate::tui::format::{one_line, Zone};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let t = &app.theme;
    let clock = match app.zone {
        Zone::Utc => format!("  {} UTC ", Zone::Utc.format(app.now, "%H:%M:%S")),
        Zone::Local => format!(
            "  {} UTC · {} local ",
            Zone::Utc.format(app.now, "%H:%M:%S"),
            Zone::Local.format(app.now, "%H:%M:%S")
        ),
    };
    let [row1, row2, row3] = Layout::vertical([Constraint::Length(1); 3]).areas(area);
    let clock_width = u16::try_from(clock.chars().count()).unwrap_or(30);
    let [left, right] =
        Layout::horizontal([Constraint::Min(10), Constraint::Length(clock_width)]).areas(row1);

    let mut first = vec![Span::styled(" crondeck ", t.title())];
    first.push(if app.read_only {
        Span::styled(" READ-ONLY ", t.alarm())
    } else {
        Span::styled("read-write", t.good())
    });
    first.push(Span::raw("  "));
    first.push(match &app.conn {
        Conn::Live => Span::styled("● live", t.good()),
        Conn::Connecting => Span::styled("◌ connecting…", t.warn()),
        Conn::Stale { since, .. } => Span::styled(
            format!(
                " STALE {} (since {}) · reconnecting ",
                format_duration_short(app.now - *since),
                app.zone.format(*since, "%H:%M:%S")
            ),
            t.alarm(),
        ),
    });
    first.push(Span::raw("  "));
    first.push(Span::styled(one_line(&app.target), t.dim()));
    frame.render_widget(Paragraph::new(Line::from(first)), left);
    frame.render_widget(
        Paragraph::new(Line::styled(clock, t.dim())).right_aligned(),
        right,
    );

    frame.render_widget(Paragraph::new(nodes_line(app)), row2);
    frame.render_widget(Paragraph::new(counts_line(app)), row3);
}

fn nodes_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let cluster = app.cluster();
    let mut spans = vec![Span::raw(" ")];
    // First, so a narrow screen never cuts it: whether jobs run in here.
    if !app.scheduler {
        spans.push(Span::styled("this console runs no node · ", t.dim()));
    }
    if app.data_at.is_some() && cluster.no_live_node() {
        spans.push(Span::styled(
            " ‼ NO LIVE NODE: nothing is executing jobs ",
            t.alarm(),
        ));
    } else {
        spans.push(Span::raw(format!(
            "nodes {} · busy {}/{} workers: ",
            cluster.live_nodes, cluster.busy, cluster.workers
        )));
        let own = app.own_node.as_ref().map(|s| s.node_id.as_str());
        let names: Vec<String> = app
            .nodes
            .iter()
            .map(|n| {
                let this = if Some(n.id.as_str()) == own {
                    " (this)"
                } else {
                    ""
                };
                format!("{}{this} {}/{}", one_line(&n.name), n.busy, n.workers)
            })
            .collect();
        spans.push(Span::raw(names.join(", ")));
    }
    if app.scheduler && app.own_node.as_ref().is_some_and(|s| !s.lease_ok) {
        spans.push(Span::styled(" · this node lost its lease", t.warn()));
    }
    Line::from(spans)
}

fn counts_line(app: &App) -> Line<'static> {
    let t = &app.theme;
    let [running, failing, late, overdue, paused] = app.counts();
    let count = |n: usize, word: &str, style| {
        let text = format!("{word} {n}");
        if n > 0 {
            Span::styled(text, style)
        } else {
            Span::raw(text)
        }
    };
    let sep = || Span::raw(" · ");
    let spans = vec![
        Span::raw(format!(" jobs {}", app.jobs.len())),
        sep(),
        count(running, "running", t.state(crate::health::State::Running)),
        sep(),
        count(failing, "failing", t.state(crate::health::State::Failing)),
        sep(),
        count(late, "late", t.state(crate::health::State::Late)),
        sep(),
        count(overdue, "overdue", t.state(crate::health::State::Overdue)),
        sep(),
        count(paused, "paused", t.state(crate::health::State::Paused)),
    ];
    Line::from(spans)
}
