//! The console in Odoo mode (`crondeck --odoo URL`): one screen, the
//! scheduled actions of an Odoo database with the same glyphs, words and
//! colours as crondeck's jobs (`tui::theme`, `tui::format`), a detail pane
//! for the selected cron, and the same keys: `r` run now, space (or `p`/`u`)
//! pause/resume, `e` interval, `n` next call, `P` priority. Every action is
//! confirmed first and audited in Odoo's `ir_logging` (see [`super::actions`]).
//!
//! [`OdooApp`], [`on_key`] and [`draw`] are pure; [`run`] is the loop that
//! reads the database once a second (plain `SELECT`s, no row lock) and
//! applies the confirmed actions.

use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use futures_util::StreamExt;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;
use tokio::signal::unix::{signal, SignalKind};

use super::actions::{self, Action};
use super::model::{self, Cron, Overview, WorkerSign};
use super::{Odoo, OdooVersion};
use crate::db::audit::Actor;
use crate::health::State;
use crate::tui::format::{cells, compact, compact_ago, compact_next, ellipsize_middle, sanitize};
use crate::tui::terminal::TerminalGuard;
use crate::tui::theme::Theme;

/// What the operator is typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EditKind {
    Interval,
    Next,
    Priority,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Normal,
    Edit {
        kind: EditKind,
        cron_id: i32,
        input: String,
    },
    Confirm {
        cron_id: i32,
        action: Action,
        question: String,
    },
}

/// The console's whole state.
#[derive(Debug, Clone)]
pub struct OdooApp {
    pub overview: Option<Overview>,
    /// The last refresh's error, if it failed (the table is then stale).
    pub error: Option<String>,
    pub cursor: usize,
    pub mode: Mode,
    /// The outcome of the last action (text, is an error).
    pub message: Option<(String, bool)>,
    pub read_only: bool,
    pub theme: Theme,
    pub quit: bool,
}

/// What the loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Refresh,
    Apply(i32, Action),
}

impl OdooApp {
    pub fn new(read_only: bool, theme: Theme) -> OdooApp {
        OdooApp {
            overview: None,
            error: None,
            cursor: 0,
            mode: Mode::Normal,
            message: None,
            read_only,
            theme,
            quit: false,
        }
    }

    pub fn set_overview(&mut self, o: Overview) {
        // Keep the cursor on the same cron across refreshes.
        let id = self.selected().map(|c| c.id);
        self.cursor = id
            .and_then(|id| o.crons.iter().position(|c| c.id == id))
            .unwrap_or(self.cursor)
            .min(o.crons.len().saturating_sub(1));
        self.overview = Some(o);
        self.error = None;
    }

    pub fn selected(&self) -> Option<&Cron> {
        self.overview.as_ref()?.crons.get(self.cursor)
    }

    fn version(&self) -> Option<OdooVersion> {
        self.overview.as_ref().map(|o| o.version)
    }
}

/// Handle one key (pure).
pub fn on_key(app: &mut OdooApp, key: KeyEvent) -> Effect {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match app.mode.clone() {
        Mode::Confirm {
            cron_id, action, ..
        } => {
            app.mode = Mode::Normal;
            return match key.code {
                KeyCode::Char('y') | KeyCode::Char('Y') | KeyCode::Enter => {
                    Effect::Apply(cron_id, action)
                }
                _ => {
                    app.message = Some(("cancelled".into(), false));
                    Effect::None
                }
            };
        }
        Mode::Edit {
            kind,
            cron_id,
            mut input,
        } => {
            match key.code {
                KeyCode::Esc => {
                    app.mode = Mode::Normal;
                    app.message = Some(("cancelled".into(), false));
                }
                KeyCode::Enter => {
                    app.mode = Mode::Normal;
                    match parse_edit(app, kind, &input) {
                        Ok(action) => confirm(app, cron_id, action),
                        Err(e) => app.message = Some((e, true)),
                    }
                }
                KeyCode::Backspace => {
                    input.pop();
                    app.mode = Mode::Edit {
                        kind,
                        cron_id,
                        input,
                    };
                }
                KeyCode::Char('u') if ctrl => {
                    app.mode = Mode::Edit {
                        kind,
                        cron_id,
                        input: String::new(),
                    };
                }
                KeyCode::Char(c) if !ctrl && input.chars().count() < 64 => {
                    input.push(c);
                    app.mode = Mode::Edit {
                        kind,
                        cron_id,
                        input,
                    };
                }
                _ => {}
            }
            return Effect::None;
        }
        Mode::Normal => {}
    }
    let len = app.overview.as_ref().map_or(0, |o| o.crons.len());
    match key.code {
        KeyCode::Char('q') => app.quit = true,
        KeyCode::Char('c') if ctrl => app.quit = true,
        KeyCode::Char('r') if ctrl => return Effect::Refresh,
        KeyCode::Down | KeyCode::Char('j') => {
            app.cursor = (app.cursor + 1).min(len.saturating_sub(1))
        }
        KeyCode::Up | KeyCode::Char('k') => app.cursor = app.cursor.saturating_sub(1),
        KeyCode::Home | KeyCode::Char('g') => app.cursor = 0,
        KeyCode::End | KeyCode::Char('G') => app.cursor = len.saturating_sub(1),
        KeyCode::Char(c @ ('r' | ' ' | 'p' | 'u' | 'e' | 'n' | 'P')) => {
            let Some(cron) = app.selected().cloned() else {
                return Effect::None;
            };
            if app.read_only {
                app.message = Some(("read-only mode: no changes".into(), true));
                return Effect::None;
            }
            let edit = |kind, input: String| Mode::Edit {
                kind,
                cron_id: cron.id,
                input,
            };
            match c {
                'r' => confirm(app, cron.id, Action::RunNow),
                ' ' => confirm(app, cron.id, Action::SetActive(!cron.active)),
                'p' => confirm(app, cron.id, Action::SetActive(false)),
                'u' => confirm(app, cron.id, Action::SetActive(true)),
                'e' => {
                    app.mode = edit(
                        EditKind::Interval,
                        format!("{} {}", cron.interval_number, cron.interval_type),
                    )
                }
                'n' => {
                    app.mode = edit(
                        EditKind::Next,
                        cron.nextcall.format("%Y-%m-%d %H:%M:%S").to_string(),
                    )
                }
                _ => app.mode = edit(EditKind::Priority, cron.priority.to_string()),
            }
        }
        _ => {}
    }
    Effect::None
}

fn parse_edit(app: &OdooApp, kind: EditKind, input: &str) -> Result<Action, String> {
    let version = app.version().ok_or("not connected")?;
    match kind {
        EditKind::Interval => actions::parse_interval(input, version)
            .map(|(number, unit)| Action::SetInterval { number, unit })
            .map_err(|e| e.to_string()),
        EditKind::Next => {
            let now = app.overview.as_ref().map_or_else(Utc::now, |o| o.now);
            crate::timespec::parse_when(input, now, &Utc)
                .map(Action::SetNextcall)
                .map_err(|e| e.to_string())
        }
        EditKind::Priority => input
            .trim()
            .parse::<i32>()
            .map(Action::SetPriority)
            .map_err(|_| format!("priority: not a whole number: {input:?}")),
    }
}

fn confirm(app: &mut OdooApp, cron_id: i32, action: Action) {
    let name = app
        .overview
        .as_ref()
        .and_then(|o| o.crons.iter().find(|c| c.id == cron_id))
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let what = match &action {
        Action::RunNow => "Run now".to_string(),
        Action::SetActive(true) => "Resume (active on)".to_string(),
        Action::SetActive(false) => "Pause (active off)".to_string(),
        Action::SetInterval { number, unit } => {
            format!(
                "Set the interval to {}",
                model::describe_interval(*number, unit)
            )
        }
        Action::SetNextcall(at) => format!(
            "Set the next call to {} UTC",
            at.format("%Y-%m-%d %H:%M:%S")
        ),
        Action::SetPriority(p) => format!("Set the priority to {p}"),
    };
    app.mode = Mode::Confirm {
        cron_id,
        question: format!("{what}: #{cron_id} {}? (y/n)", sanitize(&name)),
        action,
    };
}

/// The primary state word, `queued` appended when a trigger waits.
fn state_cell(c: &Cron, now: DateTime<Utc>) -> (State, String) {
    let s = model::state(c, now);
    let mut word = format!("{} {}", s.glyph(), s.word());
    if c.queued && s != State::Running {
        word.push_str(" queued");
    }
    (s, word)
}

fn pad(text: &str, width: usize) -> String {
    let t = ellipsize_middle(text, width);
    let n = cells(&t);
    format!("{t}{}", " ".repeat(width.saturating_sub(n)))
}

fn rpad(text: &str, width: usize) -> String {
    let n = cells(text);
    format!("{}{text}", " ".repeat(width.saturating_sub(n)))
}

/// `▕███░░░░░░░▏ 12/40`
pub fn bar(done: i64, total: i64, width: usize) -> String {
    let filled = if total > 0 {
        ((done.clamp(0, total) as f64 / total as f64) * width as f64).round() as usize
    } else {
        0
    };
    format!(
        "{}{} {done}/{total}",
        "█".repeat(filled),
        "░".repeat(width.saturating_sub(filled))
    )
}

/// Draw the whole screen (pure: time comes from the overview).
pub fn draw(frame: &mut Frame, app: &OdooApp) {
    let area = frame.area();
    let t = app.theme;
    let mut lines: Vec<Line> = Vec::new();
    let width = area.width as usize;
    // Header: what, where, worker sign.
    let mut head = vec![Span::styled("crondeck · Odoo", t.title())];
    match &app.overview {
        Some(o) => {
            head.push(Span::raw(format!(
                " {} (base {}) · database {} · worker ",
                o.version,
                o.base_version.as_deref().unwrap_or("?"),
                sanitize(&o.database)
            )));
            let (style, sign) = match &o.worker {
                WorkerSign::Alive(_) => (t.good(), "● alive"),
                WorkerSign::Dead(_) => (t.alarm(), "✗ NONE ALIVE"),
                WorkerSign::Skipped(_) => (t.warn(), "‖ DATABASE SKIPPED"),
                WorkerSign::Unknown(_) => (t.dim(), "? unknown"),
            };
            head.push(Span::styled(sign, style));
        }
        None => head.push(Span::raw(" · connecting…")),
    }
    if app.read_only {
        head.push(Span::raw(" "));
        head.push(Span::styled("READ-ONLY", t.alarm()));
    }
    lines.push(Line::from(head));
    let sub = match (&app.error, &app.overview) {
        (Some(e), _) => Line::styled(format!("STALE: {}", sanitize(e)), t.alarm()),
        (None, Some(o)) => {
            let running = o.crons.iter().filter(|c| c.running.is_some()).count();
            Line::styled(
                format!(
                    "{} scheduled actions · {} running · {} UTC · {}",
                    o.crons.len(),
                    running,
                    o.now.format("%H:%M:%S"),
                    sanitize(o.worker.reason())
                ),
                t.dim(),
            )
        }
        (None, None) => Line::raw(""),
    };
    lines.push(sub);
    // Columns: state 13, id 5, name (flex), interval 17, next 9, last 6,
    // priority 4, failures 9, then the run (since + bar) when it fits.
    let fixed = 13 + 5 + 1 + 17 + 9 + 6 + 4 + 9;
    let run_w = if width >= fixed + 16 + 22 { 22 } else { 0 };
    let name_w = width.saturating_sub(fixed + run_w).max(8);
    let header = format!(
        "{}{}{} {}{}{}{}{}{}",
        pad("STATE", 13),
        rpad("ID", 4) + " ",
        pad("NAME", name_w),
        pad("INTERVAL", 17),
        pad("NEXT", 9),
        pad("LAST", 6),
        rpad("PRI", 3) + " ",
        pad("FAILURES", 9),
        if run_w > 0 { "RUNNING" } else { "" }
    );
    lines.push(Line::styled(header, t.column_header()));
    let footer_rows = 2u16;
    let detail_rows = 5u16;
    let table_rows =
        area.height
            .saturating_sub(lines.len() as u16 + footer_rows + detail_rows) as usize;
    if let Some(o) = &app.overview {
        let first = app.cursor.saturating_sub(table_rows.saturating_sub(1));
        for (i, c) in o.crons.iter().enumerate().skip(first).take(table_rows) {
            let (state, word) = state_cell(c, o.now);
            let fail = match (c.failure_count, c.first_failure_date) {
                (Some(n), Some(since)) if n > 0 => format!("{n} {}", compact(o.now - since)),
                (Some(n), _) => n.to_string(),
                (None, _) => "-".into(),
            };
            let mut run = String::new();
            if let (Some(r), true) = (&c.running, run_w > 0) {
                run = r.since.map_or("?".into(), |s| compact(o.now - s));
                if let Some((d, total)) = r.progress {
                    run = format!("{run} {}", bar(d, total, 8));
                }
            }
            let text = format!(
                "{}{}{}{}{}{}{}{}{}",
                pad(&word, 13),
                rpad(&c.id.to_string(), 4) + " ",
                pad(&sanitize(&c.name), name_w) + " ",
                pad(
                    &model::describe_interval(c.interval_number, &c.interval_type),
                    17
                ),
                pad(&compact_next(Some(c.nextcall), o.now), 9),
                pad(&compact_ago(c.lastcall, o.now), 6),
                rpad(&c.priority.to_string(), 3) + " ",
                pad(&fail, 9),
                pad(&run, run_w),
            );
            let mut style = t.state(state);
            if i == app.cursor {
                style = style.patch(t.selected());
            }
            lines.push(Line::styled(text, style));
        }
    }
    let table_end = 3 + table_rows as u16;
    frame.render_widget(
        Paragraph::new(lines),
        Rect::new(area.x, area.y, area.width, table_end.min(area.height)),
    );
    // Detail of the selected cron.
    let mut detail: Vec<Line> = Vec::new();
    if let (Some(c), Some(o)) = (app.selected(), &app.overview) {
        detail.push(Line::styled(
            format!(
                "#{} {} · model {} · runs as {} · next {} UTC · last {} UTC",
                c.id,
                sanitize(&c.name),
                sanitize(c.model.as_deref().unwrap_or("-")),
                sanitize(c.user_login.as_deref().unwrap_or("?")),
                c.nextcall.format("%Y-%m-%d %H:%M:%S"),
                c.lastcall
                    .map_or("-".into(), |l| l.format("%Y-%m-%d %H:%M:%S").to_string()),
            ),
            t.title(),
        ));
        let mut facts = Vec::new();
        if let Some(n) = c.numbercall {
            facts.push(if n < 0 {
                "numbercall: no limit".to_string()
            } else {
                format!("numbercall: {n} left")
            });
        }
        if let Some(r) = &c.running {
            facts.push(format!(
                "running since {} (pid {})",
                r.since
                    .map_or("?".into(), |s| s.format("%H:%M:%S").to_string()),
                r.pid
            ));
        }
        if c.queued && c.running.is_none() {
            facts.push("a run-now trigger waits".into());
        }
        if model::overdue(c, o.now) {
            facts.push("overdue: not run for over twice its interval".into());
        }
        detail.push(Line::styled(facts.join(" · "), t.dim()));
        for code in c.code.as_deref().unwrap_or("").lines().take(3) {
            detail.push(Line::raw(format!("  {}", sanitize(code))));
        }
    }
    let detail_y = table_end.min(area.height);
    frame.render_widget(
        Paragraph::new(detail),
        Rect::new(
            area.x,
            detail_y,
            area.width,
            detail_rows.min(area.height.saturating_sub(detail_y)),
        ),
    );
    // Footer: the message or prompt, then the keys.
    let prompt = match &app.mode {
        Mode::Confirm { question, .. } => Line::styled(question.clone(), t.warn()),
        Mode::Edit { kind, input, .. } => {
            let label = match (kind, app.version()) {
                (EditKind::Interval, Some(v)) => {
                    format!("interval ({}): ", v.interval_units().join(", "))
                }
                (EditKind::Interval, None) => "interval: ".into(),
                (EditKind::Next, _) => "next call (UTC; now, +15m, 2025-01-31 08:00): ".into(),
                (EditKind::Priority, _) => "priority (0 = first): ".into(),
            };
            Line::from(vec![
                Span::styled(label, t.key()),
                Span::raw(format!("{}▏", sanitize(input))),
                Span::styled("  Enter ok · Esc cancel", t.dim()),
            ])
        }
        Mode::Normal => match &app.message {
            Some((m, true)) => Line::styled(sanitize(m), t.error()),
            Some((m, false)) => Line::raw(sanitize(m)),
            None => Line::raw(""),
        },
    };
    let keys: Vec<Span> = [
        ("r", "run"),
        ("spc", "pause/resume"),
        ("e", "interval"),
        ("n", "next"),
        ("P", "priority"),
        ("^r", "refresh"),
        ("q", "quit"),
    ]
    .iter()
    .flat_map(|(k, w)| {
        [
            Span::styled(k.to_string(), t.key()),
            Span::raw(format!(" {w}  ")),
        ]
    })
    .collect();
    let y = area.height.saturating_sub(footer_rows);
    frame.render_widget(
        Paragraph::new(vec![prompt, Line::from(keys)]),
        Rect::new(area.x, area.y + y, area.width, footer_rows.min(area.height)),
    );
    let _ = Style::default();
}

/// Run the console until `q` (or SIGTERM/SIGHUP/SIGINT).
pub async fn run(mut odoo: Odoo, login: Option<String>, read_only: bool) -> anyhow::Result<()> {
    let theme = Theme::from_env(std::env::var("NO_COLOR").ok().as_deref());
    let mut app = OdooApp::new(read_only, theme);
    let uid = actions::resolve_uid(&odoo, login.as_deref()).await?;
    let actor = Actor::current();
    let mut guard = TerminalGuard::enter().context("setting up the terminal")?;
    let terminal = &mut guard.terminal;
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    loop {
        let mut effect = Effect::None;
        tokio::select! {
            _ = tick.tick() => effect = Effect::Refresh,
            event = input.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => {
                    effect = on_key(&mut app, key);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => break,
            },
            _ = term.recv() => break,
            _ = hangup.recv() => break,
            _ = interrupt.recv() => break,
        }
        if app.quit {
            break;
        }
        if let Effect::Apply(cron_id, action) = &effect {
            let key = cron_id.to_string();
            app.message = Some(
                match actions::apply(&mut odoo, &key, std::slice::from_ref(action), &actor, uid)
                    .await
                {
                    Ok(o) => {
                        let mut m = format!("#{} {}: {}", o.cron_id, o.name, o.change);
                        for n in &o.notes {
                            m.push_str(" · ");
                            m.push_str(n);
                        }
                        (m, false)
                    }
                    Err(e) => (e.to_string(), true),
                },
            );
            effect = Effect::Refresh;
        }
        if effect == Effect::Refresh {
            match model::overview(&odoo).await {
                Ok(o) => app.set_overview(o),
                Err(e) => {
                    app.error = Some(e.to_string());
                    if odoo.client.is_closed() {
                        if let Ok(fresh) = super::connect(&odoo.spec).await {
                            odoo = fresh;
                        }
                    }
                }
            }
        }
        terminal.draw(|f| draw(f, &app))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::odoo::model::Running;
    use chrono::TimeZone;
    use ratatui::backend::TestBackend;
    use ratatui::style::Color;
    use ratatui::Terminal;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
    }

    fn cron(id: i32, name: &str) -> Cron {
        let now = now();
        Cron {
            id,
            name: name.into(),
            active: true,
            interval_number: 1,
            interval_type: "hours".into(),
            nextcall: now + chrono::Duration::minutes(20),
            lastcall: Some(now - chrono::Duration::minutes(40)),
            priority: 5,
            numbercall: None,
            doall: None,
            failure_count: Some(0),
            first_failure_date: None,
            model: Some("mail.mail".into()),
            user_id: 1,
            user_login: Some("__system__".into()),
            server_action_id: id,
            code: Some("model.process_email_queue()".into()),
            queued: false,
            next_trigger: None,
            write_date: None,
            running: None,
        }
    }

    fn overview() -> Overview {
        let now = now();
        let mut running = cron(1, "Mail: Email Queue Manager");
        running.running = Some(Running {
            pid: 4242,
            since: Some(now - chrono::Duration::seconds(75)),
            progress: Some((30, 80)),
        });
        let mut failing = cron(2, "Sales: Send quotation reminders");
        failing.failure_count = Some(3);
        failing.first_failure_date = Some(now - chrono::Duration::days(2));
        failing.interval_type = "days".into();
        let mut overdue = cron(3, "Base: Auto-vacuum internal data");
        overdue.lastcall = Some(now - chrono::Duration::hours(5));
        overdue.nextcall = now - chrono::Duration::hours(4);
        let mut paused = cron(4, "Contacts: Merge duplicates");
        paused.active = false;
        paused.interval_type = "weeks".into();
        let mut queued = cron(5, "Stock: Reorder rules");
        queued.queued = true;
        queued.next_trigger = Some(now - chrono::Duration::seconds(5));
        let crons = vec![running, failing, overdue, paused, queued];
        Overview {
            version: OdooVersion::V18,
            base_version: Some("18.0.1.3".into()),
            database: "prod".into(),
            now,
            modules_pending: vec![],
            listeners: 1,
            worker: WorkerSign::Alive("running #1 Mail: Email Queue Manager".into()),
            crons,
        }
    }

    fn render(app: &OdooApp, w: u16, h: u16) -> Terminal<TestBackend> {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        terminal
    }

    fn row_fg(terminal: &Terminal<TestBackend>, needle: &str) -> Color {
        let buf = terminal.backend().buffer();
        let y = (0..buf.area.height)
            .find(|&y| {
                let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
                line.contains(needle)
            })
            .unwrap_or_else(|| panic!("no row {needle}"));
        buf[(0, y)].fg
    }

    #[test]
    fn odoo_table_snapshot() {
        let mut app = OdooApp::new(false, Theme::COLOR);
        app.set_overview(overview());
        let terminal = render(&app, 120, 16);
        insta::assert_snapshot!("odoo_table_120", terminal.backend());
        // Colours as for crondeck's jobs: overdue red, running cyan, failing magenta.
        assert_eq!(row_fg(&terminal, "Auto-vacuum"), Color::Red);
        assert_eq!(row_fg(&terminal, "Merge duplicates"), Color::DarkGray);
        assert_eq!(row_fg(&terminal, "quotation reminders"), Color::Magenta);
    }

    #[test]
    fn odoo_table_80_columns_and_prompts() {
        let mut app = OdooApp::new(false, Theme::MONO);
        app.set_overview(overview());
        on_key(&mut app, KeyEvent::from(KeyCode::Down));
        on_key(&mut app, KeyEvent::from(KeyCode::Char('e')));
        let terminal = render(&app, 80, 14);
        insta::assert_snapshot!("odoo_table_80_edit", terminal.backend());
    }

    #[test]
    fn odoo_header_warnings_snapshot() {
        let mut app = OdooApp::new(true, Theme::MONO);
        let mut o = overview();
        o.worker = WorkerSign::Skipped(
            "Odoo skips this database while modules wait: sale (to upgrade)".into(),
        );
        app.set_overview(o);
        app.error = Some("connection lost".into());
        let terminal = render(&app, 100, 12);
        insta::assert_snapshot!("odoo_header_skipped_stale_read_only", terminal.backend());
        let mut o = overview();
        o.worker = WorkerSign::Dead("#3 Base: Auto-vacuum internal data due for 4h".into());
        app.set_overview(o);
        let screen = format!("{:?}", render(&app, 100, 12).backend());
        assert!(screen.contains("NONE ALIVE"), "{screen}");
    }

    #[test]
    fn actions_are_confirmed_first() {
        let mut app = OdooApp::new(false, Theme::MONO);
        app.set_overview(overview());
        assert_eq!(
            on_key(&mut app, KeyEvent::from(KeyCode::Char('r'))),
            Effect::None
        );
        assert!(matches!(app.mode, Mode::Confirm { .. }));
        assert_eq!(
            on_key(&mut app, KeyEvent::from(KeyCode::Char('y'))),
            Effect::Apply(1, Action::RunNow)
        );
        // n cancels
        on_key(&mut app, KeyEvent::from(KeyCode::Char(' ')));
        assert_eq!(
            on_key(&mut app, KeyEvent::from(KeyCode::Char('n'))),
            Effect::None
        );
        // an interval the version does not know is refused before asking
        on_key(&mut app, KeyEvent::from(KeyCode::Char('e')));
        for _ in 0..10 {
            on_key(&mut app, KeyEvent::from(KeyCode::Backspace));
        }
        for c in "never".chars() {
            on_key(&mut app, KeyEvent::from(KeyCode::Char(c)));
        }
        assert_eq!(
            on_key(&mut app, KeyEvent::from(KeyCode::Enter)),
            Effect::None
        );
        assert!(matches!(app.message, Some((_, true))), "{:?}", app.message);
        // read-only refuses
        let mut ro = OdooApp::new(true, Theme::MONO);
        ro.set_overview(overview());
        on_key(&mut ro, KeyEvent::from(KeyCode::Char('r')));
        assert_eq!(ro.mode, Mode::Normal);
    }

    #[test]
    fn bars() {
        assert_eq!(bar(30, 80, 8), "███░░░░░ 30/80");
        assert_eq!(bar(0, 0, 4), "░░░░ 0/0");
    }
}
