//! `update`: the only place the console's state changes. Pure: it reads the
//! action and the state, changes the state, and returns the effects for the
//! data task. No I/O, no clock.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_input::backend::crossterm::to_input_request;
use tui_input::Input;

use super::action::{Action, DataEvent, Effect, Link};
use super::app::{
    App, AuditState, Conn, DetailState, NodesState, NotificationsState, QuitState, RunState,
    Screen, HISTORY_STATUSES,
};
use super::forms::{Dialog, Kind};
use super::keys::{self, Binding, Command};
use crate::db::runs::RunPageQuery;

pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    let effects = apply(app, action);
    // A message or filter that wraps takes rows from the table: the window
    // follows, whatever changed them.
    app.scroll_to_cursor();
    effects
}

fn apply(app: &mut App, action: Action) -> Vec<Effect> {
    match action {
        Action::Key(key) if key.kind == KeyEventKind::Release => Vec::new(),
        Action::Key(key) => on_key(app, key),
        Action::Resize { width, height } => {
            app.width = width;
            app.height = height;
            app.scroll_to_cursor();
            Vec::new()
        }
        Action::Tick { wall } => {
            if app.set_wall_clock(wall) {
                refresh_effects(app)
            } else {
                follow_running_run(app)
            }
        }
        Action::OwnNode(status) => {
            let idle = status.as_ref().map_or(true, |s| s.busy == 0);
            app.own_node = status;
            // The runs the quit dialog asked about ended while it asked.
            if idle
                && app
                    .quitting
                    .as_ref()
                    .is_some_and(|q| q.waiting_since.is_none())
            {
                app.quitting = None;
                app.quit = true;
                return vec![Effect::Quit];
            }
            Vec::new()
        }
        Action::Data(event) => on_data(app, event),
        Action::Terminate | Action::NodeStopped => {
            app.quit = true;
            vec![Effect::Quit]
        }
    }
}

/// Between refreshes, a running run on screen is reloaded every tick, so
/// its output follows like `tail -f` (a small request of its own).
fn follow_running_run(app: &App) -> Vec<Effect> {
    match app.stack.last() {
        Some(Screen::Run(r)) if r.is_running() => vec![Effect::LoadRun(r.run_id)],
        _ => Vec::new(),
    }
}

/// How far the run view can scroll: its lines beyond the body's height.
/// `None` before the run is loaded.
fn run_max_scroll(app: &App) -> Option<usize> {
    let Some(Screen::Run(r)) = app.stack.last() else {
        return None;
    };
    let Some(Some(run)) = &r.run else { return None };
    let body = app
        .height
        .saturating_sub(super::app::HEADER_ROWS + app.footer_rows());
    let (head, output) = super::views::run::parts(app, run);
    let rows =
        usize::from(body).saturating_sub(head.len().min(usize::from(body).saturating_sub(1)));
    Some(output.len().saturating_sub(rows))
}

/// `q`: straight out, unless this console's own node is executing runs;
/// then the quit dialog names them and asks.
fn quit(app: &mut App) -> Vec<Effect> {
    // The node's count, or the runs the data says it has (whichever is
    // newer news).
    let (named, unnamed) = app.own_runs();
    if named.len() + unnamed == 0 {
        app.quit = true;
        return vec![Effect::Quit];
    }
    app.quitting = Some(QuitState::default());
    Vec::new()
}

/// Keys while the quit dialog is open. Asking: `w` waits (the node stops
/// claiming; the runs may finish for the grace period, then are stopped),
/// `s` or Ctrl-C stops them now, Esc stays. Waiting: `s` or Ctrl-C stops
/// them now.
fn quit_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let now = app.now;
    let Some(state) = app.quitting.as_mut() else {
        return Vec::new();
    };
    let ctrl_c = key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
    let stop = ctrl_c || key.code == KeyCode::Char('s');
    if state.waiting_since.is_none() {
        match key.code {
            _ if stop => {
                state.stopping = true;
                state.waiting_since = Some(now);
                vec![Effect::StopOwnRuns, Effect::ShutdownNode]
            }
            KeyCode::Char('w') => {
                state.waiting_since = Some(now);
                vec![Effect::ShutdownNode]
            }
            KeyCode::Esc | KeyCode::Char('c' | 'n') => {
                app.quitting = None;
                app.info("quit cancelled: this console's scheduler keeps running");
                Vec::new()
            }
            _ => Vec::new(),
        }
    } else if stop && !state.stopping {
        state.stopping = true;
        vec![Effect::StopOwnRuns]
    } else {
        Vec::new()
    }
}

/// A refresh of what is on screen: the table, and the open detail or run.
fn refresh_effects(app: &mut App) -> Vec<Effect> {
    app.mark_polled();
    let mut effects = vec![Effect::Refresh];
    match app.stack.last() {
        Some(Screen::Detail(d)) => effects.push(history_effect(d)),
        Some(Screen::Run(r)) => {
            let running = matches!(&r.run, Some(Some(run)) if run.status == "running");
            if running || r.run.is_none() {
                effects.push(Effect::LoadRun(r.run_id));
            }
        }
        Some(Screen::Audit(a)) => effects.push(audit_effect(a)),
        Some(Screen::Notifications(_)) => effects.push(Effect::LoadNotifications),
        Some(Screen::Nodes(_)) => effects.push(Effect::LoadNodes),
        None => {}
    }
    effects
}

fn on_data(app: &mut App, event: DataEvent) -> Vec<Effect> {
    match event {
        DataEvent::Connection(Link::Live) => {
            if matches!(app.conn, Conn::Stale { .. }) {
                app.info("database connection is back: live");
                app.conn = Conn::Live;
                return refresh_effects(app);
            }
            app.conn = Conn::Live;
        }
        DataEvent::Connection(Link::Lost { error }) => match &mut app.conn {
            Conn::Stale { error: e, .. } => *e = error,
            _ => {
                app.conn = Conn::Stale {
                    since: app.data_at.unwrap_or(app.now),
                    error,
                };
                app.recompute_health();
            }
        },
        DataEvent::Jobs(snapshot) => {
            let s = *snapshot;
            app.conn = Conn::Live;
            if s.full {
                app.set_jobs(
                    s.jobs,
                    s.nodes,
                    s.typical_ms,
                    s.unrunnable,
                    s.db_now,
                    s.wall,
                );
            } else {
                app.merge_jobs(
                    s.jobs,
                    &s.removed,
                    s.nodes,
                    s.typical_ms,
                    s.unrunnable,
                    s.db_now,
                    s.wall,
                );
            }
            // Progress bars: only worth a request when something runs.
            if app.jobs.iter().any(|j| j.runtime.running_run_id.is_some()) {
                return vec![Effect::LoadProgress];
            }
        }
        DataEvent::Progress(progress) => {
            app.progress = progress.into_iter().map(|p| (p.job_id, p)).collect();
        }
        DataEvent::Runs { job_id, runs, more } => {
            if let Some(Screen::Detail(d)) = app.stack.last_mut() {
                // The newest page, unfiltered: not for a detail paging back.
                if d.job_id == job_id && d.newer.is_empty() && d.query == RunPageQuery::default() {
                    d.cursor = d.cursor.min(runs.len().saturating_sub(1));
                    d.more = more;
                    d.runs = Some(runs);
                }
            }
        }
        DataEvent::History {
            job_id,
            query,
            runs,
            more,
        } => {
            if let Some(Screen::Detail(d)) = app.stack.last_mut() {
                if d.job_id == job_id && d.query == query {
                    // The newest page was exactly full: nothing older after all.
                    if runs.is_empty() && !d.newer.is_empty() {
                        d.query.before = d.newer.pop().flatten();
                        d.more = false;
                        let effect = history_effect(d);
                        app.info("this is the oldest page of the history");
                        return vec![effect];
                    }
                    d.cursor = d.cursor.min(runs.len().saturating_sub(1));
                    d.more = more;
                    d.runs = Some(runs);
                }
            }
        }
        DataEvent::Run { run_id, run } => {
            if let Some(Screen::Run(r)) = app.stack.last_mut() {
                if r.run_id == run_id {
                    // A run already over opens at its top; a running one
                    // follows its output.
                    if r.run.is_none() && run.as_ref().is_some_and(|r| r.status != "running") {
                        r.follow = false;
                    }
                    r.run = Some(run);
                }
            }
        }
        DataEvent::Audit(records) => {
            if let Some(Screen::Audit(a)) = app.stack.last_mut() {
                if a.job.is_none() {
                    a.records = Some(records);
                    a.cursor = a.cursor.min(a.visible().len().saturating_sub(1));
                }
            }
        }
        DataEvent::JobAudit { job, records } => {
            if let Some(Screen::Audit(a)) = app.stack.last_mut() {
                if a.job.as_deref() == Some(job.as_str()) {
                    a.records = Some(records);
                    a.cursor = a.cursor.min(a.visible().len().saturating_sub(1));
                }
            }
        }
        DataEvent::Nodes(nodes) => {
            if let Some(Screen::Nodes(n)) = app.stack.last_mut() {
                n.cursor = n.cursor.min(nodes.len().saturating_sub(1));
                n.nodes = Some(nodes);
            }
        }
        DataEvent::Notifications(rows) => {
            if let Some(Screen::Notifications(n)) = app.stack.last_mut() {
                n.cursor = n.cursor.min(rows.len().saturating_sub(1));
                n.deliveries = Some(rows);
            }
        }
        DataEvent::Done(Ok(text)) => {
            app.info(text);
            return refresh_effects(app);
        }
        DataEvent::Done(Err(text)) => app.error(text),
    }
    Vec::new()
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    if app.quitting.is_some() {
        return quit_key(app, key);
    }
    if app.help {
        app.help = false;
        return Vec::new();
    }
    if app.dialog.is_some() {
        return dialog_key(app, key);
    }
    match app.stack.last_mut() {
        Some(Screen::Detail(d)) if d.jump.is_some() => return jump_key(app, key),
        Some(Screen::Audit(a)) if a.search_input.is_some() => {
            audit_search_key(a, key);
            return Vec::new();
        }
        _ => {}
    }
    if let Some(input) = &mut app.filter_input {
        match key.code {
            KeyCode::Enter => app.filter_input = None,
            KeyCode::Esc => {
                app.filter_input = None;
                app.filter.clear();
            }
            _ => {
                if let Some(request) = to_input_request(&Event::Key(key)) {
                    input.handle(request);
                    app.filter = input.value().to_string();
                }
            }
        }
        app.rebuild_view();
        return Vec::new();
    }
    app.message = None;
    match keys::lookup(app.screen(), &key) {
        Some(binding) => command(app, binding),
        None => {
            unknown_key(app, &key);
            Vec::new()
        }
    }
}

/// A key that does nothing says so, instead of nothing happening.
fn unknown_key(app: &mut App, key: &KeyEvent) {
    if matches!(key.code, KeyCode::Modifier(_) | KeyCode::Null) {
        return;
    }
    let name = keys::key_name(key);
    if keys::lookup(keys::ALL, key).is_some() {
        app.info(format!("{name} does nothing on this screen: ? for help"));
    } else {
        app.info(format!("unknown key {name}: ? for help"));
    }
}

/// Read-only mode and a lost connection block every change, here and only
/// here: every mutating key and every confirm goes through this check.
pub fn mutation_refused(app: &App) -> Option<String> {
    if app.read_only {
        return Some(
            "read-only mode: changes are disabled (crondeck was started with --read-only)".into(),
        );
    }
    match &app.conn {
        Conn::Live => None,
        Conn::Connecting => Some("not connected yet: changes wait for the database".into()),
        Conn::Stale { .. } => Some(
            "the database connection is lost (data is STALE): changes are blocked until it is back"
                .into(),
        ),
    }
}

fn command(app: &mut App, binding: &Binding) -> Vec<Effect> {
    if binding.mutates {
        if let Some(why) = mutation_refused(app) {
            app.error(why);
            return Vec::new();
        }
    }
    let page = (app.table_rows() / 2).max(1);
    match binding.command {
        Command::Up => move_by(app, -1),
        Command::Down => move_by(app, 1),
        Command::PageUp => move_by(app, -(page as isize)),
        Command::PageDown => move_by(app, page as isize),
        Command::Top => move_by(app, isize::MIN / 2),
        Command::Bottom => move_by(app, isize::MAX / 2),
        Command::Open => return open(app),
        Command::Back => {
            if let Some(Screen::Audit(a)) = app.stack.last_mut() {
                if a.open {
                    a.open = false;
                    return Vec::new();
                }
                if !a.search.is_empty() {
                    a.search.clear();
                    return Vec::new();
                }
            }
            if app.stack.pop().is_none() && (!app.filter.is_empty() || app.quick.is_some()) {
                app.filter.clear();
                app.quick = None;
                app.rebuild_view();
            }
        }
        Command::Quit => return quit(app),
        Command::Help => app.help = true,
        Command::Filter => match app.stack.last_mut() {
            Some(Screen::Audit(a)) => a.search_input = Some(Input::new(a.search.clone())),
            _ => app.filter_input = Some(Input::new(app.filter.clone())),
        },
        Command::Quick(q) => {
            app.quick = if app.quick == Some(q) { None } else { Some(q) };
            app.rebuild_view();
        }
        Command::Sort => {
            app.sort = app.sort.next();
            app.rebuild_view();
        }
        Command::SortReverse => {
            app.reverse = !app.reverse;
            app.rebuild_view();
        }
        Command::RunNow => open_dialog(app, Kind::RunNow),
        Command::Cancel => open_dialog(app, Kind::Cancel),
        Command::Pause => open_dialog(app, Kind::Pause),
        Command::Resume => open_dialog(app, Kind::Resume),
        // "Toggle active", as Odoo users think of it: the same dialogs.
        Command::ToggleActive => match app.target_job().map(|j| j.active) {
            Some(false) => open_dialog(app, Kind::Resume),
            _ => open_dialog(app, Kind::Pause),
        },
        Command::EditSchedule => open_dialog(app, Kind::Schedule),
        Command::EditNext => open_dialog(app, Kind::Next),
        Command::EditPriority => open_dialog(app, Kind::Priority),
        Command::Audit => {
            // From a job's detail: that job's trail; from the table: all.
            let job = match app.stack.last() {
                Some(Screen::Detail(_)) => app.target_job().map(|j| j.spec.name.clone()),
                _ => None,
            };
            let state = AuditState::for_job(job);
            let effect = audit_effect(&state);
            app.stack.push(Screen::Audit(state));
            return vec![effect];
        }
        Command::Nodes => {
            app.stack.push(Screen::Nodes(NodesState::default()));
            return vec![Effect::LoadNodes];
        }
        Command::Notifications => {
            app.stack.push(Screen::Notifications(NotificationsState {
                deliveries: None,
                cursor: 0,
            }));
            return vec![Effect::LoadNotifications];
        }
        Command::Refresh => return refresh_effects(app),
        Command::OlderPage => return history_page(app, true),
        Command::NewerPage => return history_page(app, false),
        Command::HistoryStatus => return cycle_status(app),
        Command::HistoryTime => {
            if let Some(Screen::Detail(d)) = app.stack.last_mut() {
                d.jump = Some(Input::default());
            }
        }
    }
    Vec::new()
}

/// The request for the detail's page of history: the newest page as
/// before, any other as a history page.
fn history_effect(d: &DetailState) -> Effect {
    if d.newer.is_empty() && d.query == RunPageQuery::default() {
        Effect::LoadRuns(d.job_id)
    } else {
        Effect::LoadHistory {
            job_id: d.job_id,
            query: d.query.clone(),
        }
    }
}

/// `]` (older) and `[` (newer): page by keyset through the whole history.
fn history_page(app: &mut App, older: bool) -> Vec<Effect> {
    let Some(Screen::Detail(d)) = app.stack.last_mut() else {
        return Vec::new();
    };
    if older {
        let last = d.runs.as_ref().and_then(|r| r.last()).map(|r| r.id);
        match last {
            Some(last) if d.more => {
                d.newer.push(d.query.before);
                d.query.before = Some(last);
            }
            _ => {
                app.info("this is the oldest page of the history");
                return Vec::new();
            }
        }
    } else {
        match d.newer.pop() {
            Some(before) => d.query.before = before,
            None => {
                app.info("this is the newest page of the history");
                return Vec::new();
            }
        }
    }
    d.runs = None;
    d.cursor = 0;
    vec![history_effect(d)]
}

/// `f`: all → failed → timed_out → … → all; from the newest page.
fn cycle_status(app: &mut App) -> Vec<Effect> {
    let Some(Screen::Detail(d)) = app.stack.last_mut() else {
        return Vec::new();
    };
    let at = d
        .query
        .status
        .as_deref()
        .and_then(|s| HISTORY_STATUSES.iter().position(|x| *x == s));
    d.query.status = match at {
        None => Some(HISTORY_STATUSES[0].to_string()),
        Some(i) => HISTORY_STATUSES.get(i + 1).map(|s| (*s).to_string()),
    };
    restart_history(d)
}

fn restart_history(d: &mut DetailState) -> Vec<Effect> {
    d.query.before = None;
    d.newer.clear();
    d.runs = None;
    d.cursor = 0;
    vec![history_effect(d)]
}

/// Typing the time to jump to: ⏎ jumps (empty: back to now), esc leaves it.
fn jump_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let (now, zone) = (app.now, app.zone);
    let Some(Screen::Detail(d)) = app.stack.last_mut() else {
        return Vec::new();
    };
    let Some(input) = d.jump.as_mut() else {
        return Vec::new();
    };
    match key.code {
        KeyCode::Esc => {
            d.jump = None;
            Vec::new()
        }
        KeyCode::Enter => {
            let text = input.value().trim().to_string();
            d.jump = None;
            if text.is_empty() {
                d.query.at = None;
                return restart_history(d);
            }
            match parse_jump(&text, now, zone) {
                Ok(at) => {
                    d.query.at = Some(at);
                    let effects = restart_history(d);
                    app.info(format!(
                        "history from {} back ({})",
                        zone.datetime(at),
                        crate::timespec::format_relative(at, now)
                    ));
                    effects
                }
                Err(e) => {
                    app.error(format!("cannot jump to \"{text}\": {e}"));
                    Vec::new()
                }
            }
        }
        _ => {
            if let Some(request) = to_input_request(&Event::Key(key)) {
                input.handle(request);
            }
            Vec::new()
        }
    }
}

/// A time to jump to in the history: "-8h" or "8h ago" (before now), or
/// anything `timespec::parse_when` reads ("02:00", "2026-11-30 22:00"); a
/// clock time still ahead today means yesterday's.
pub fn parse_jump(
    text: &str,
    now: chrono::DateTime<chrono::Utc>,
    zone: super::format::Zone,
) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let text = text.trim();
    let ago = text
        .strip_prefix('-')
        .or_else(|| text.strip_suffix(" ago"))
        .or_else(|| text.strip_suffix("ago"));
    if let Some(span) = ago {
        let d = crate::timespec::parse_duration(span.trim()).map_err(|e| e.to_string())?;
        let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
        return Ok(now - d);
    }
    let at = zone.parse_when(text, now).map_err(|e| e.to_string())?;
    let clock_only = text.len() <= 8 && text.contains(':') && !text.contains('-');
    if at > now && clock_only {
        return Ok(at - chrono::Duration::days(1));
    }
    Ok(at)
}

fn step(pos: usize, delta: isize, len: usize) -> usize {
    let max = len.saturating_sub(1) as isize;
    (pos as isize).saturating_add(delta).clamp(0, max.max(0)) as usize
}

fn move_by(app: &mut App, delta: isize) {
    match app.stack.last_mut() {
        None => {
            let pos = step(app.cursor, delta, app.view.len());
            app.move_cursor(pos);
        }
        Some(Screen::Detail(d)) => {
            let len = d.runs.as_ref().map_or(0, Vec::len);
            d.cursor = step(d.cursor, delta, len);
        }
        Some(Screen::Run(_)) => {
            let max = run_max_scroll(app);
            if let Some(Screen::Run(r)) = app.stack.last_mut() {
                match max {
                    Some(max) => {
                        let from = if r.follow { max } else { r.scroll.min(max) };
                        r.scroll = step(from, delta, max + 1);
                        // Back at the bottom: follow again.
                        r.follow = r.scroll >= max;
                    }
                    // Not loaded yet: the view clamps when drawing.
                    None => r.scroll = step(r.scroll, delta, usize::MAX / 4),
                }
            }
        }
        Some(Screen::Audit(a)) => {
            let len = a.visible().len();
            a.cursor = step(a.cursor, delta, len);
        }
        Some(Screen::Notifications(n)) => {
            let len = n.deliveries.as_ref().map_or(0, Vec::len);
            n.cursor = step(n.cursor, delta, len);
        }
        Some(Screen::Nodes(n)) => {
            let len = n.nodes.as_ref().map_or(0, Vec::len);
            n.cursor = step(n.cursor, delta, len);
        }
    }
}

fn audit_effect(a: &AuditState) -> Effect {
    match &a.job {
        Some(job) => Effect::LoadJobAudit(job.clone()),
        None => Effect::LoadAudit,
    }
}

/// Typing the audit search: it applies as typed; ⏎ keeps it, esc clears it.
fn audit_search_key(a: &mut AuditState, key: KeyEvent) {
    let Some(input) = a.search_input.as_mut() else {
        return;
    };
    match key.code {
        KeyCode::Enter => a.search_input = None,
        KeyCode::Esc => {
            a.search_input = None;
            a.search.clear();
        }
        _ => {
            if let Some(request) = to_input_request(&Event::Key(key)) {
                input.handle(request);
                a.search = input.value().to_string();
            }
        }
    }
    a.cursor = a.cursor.min(a.visible().len().saturating_sub(1));
    a.open = false;
}

fn open(app: &mut App) -> Vec<Effect> {
    match app.stack.last() {
        None => {
            let Some(id) = app.selected else {
                return Vec::new();
            };
            app.stack.push(Screen::Detail(DetailState::new(id)));
            vec![Effect::LoadRuns(id)]
        }
        Some(Screen::Detail(d)) => {
            let Some(run) = d.runs.as_ref().and_then(|r| r.get(d.cursor)) else {
                return Vec::new();
            };
            let run_id = run.id;
            app.stack.push(Screen::Run(RunState::new(run_id)));
            vec![Effect::LoadRun(run_id)]
        }
        Some(Screen::Audit(_)) => {
            if let Some(Screen::Audit(a)) = app.stack.last_mut() {
                a.open = a.selected().is_some() && !a.open;
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

fn open_dialog(app: &mut App, kind: Kind) {
    let Some(job) = app.target_job() else {
        app.error("no job selected");
        return;
    };
    let refusal = match kind {
        Kind::Cancel if job.runtime.running_run_id.is_none() => Some(format!(
            "\"{}\" has no run in progress: there is nothing to cancel",
            job.spec.name
        )),
        Kind::Resume if job.active => Some(format!("\"{}\" is not paused", job.spec.name)),
        Kind::Pause if !job.active => Some(format!(
            "\"{}\" is already paused (u resumes it)",
            job.spec.name
        )),
        Kind::Next if job.nextcall.is_none() => Some(format!(
            "\"{}\" is manual: it has no next run (r runs it now; e gives it a schedule)",
            job.spec.name
        )),
        _ => None,
    };
    if let Some(text) = refusal {
        app.error(text);
        return;
    }
    app.dialog = Some(Dialog::open(kind, job, app.now, app.zone));
}

fn dialog_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let (now, zone) = (app.now, app.zone);
    let Some(dialog) = app.dialog.as_mut() else {
        return Vec::new();
    };
    if key.code == KeyCode::Esc {
        app.dialog = None;
        app.info("cancelled");
        return Vec::new();
    }
    if dialog.confirming {
        match key.code {
            KeyCode::Tab | KeyCode::BackTab | KeyCode::Left | KeyCode::Right => {
                dialog.confirm_focused = !dialog.confirm_focused;
            }
            KeyCode::Char('h' | 'l') => dialog.confirm_focused = !dialog.confirm_focused,
            KeyCode::Enter if !dialog.confirm_focused => {
                app.dialog = None;
                app.info("cancelled");
            }
            KeyCode::Enter => return confirm(app),
            _ => {}
        }
        return Vec::new();
    }
    match key.code {
        KeyCode::Tab | KeyCode::Down => {
            dialog.field = (dialog.field + 1) % dialog.fields.len().max(1);
        }
        KeyCode::BackTab | KeyCode::Up => {
            let n = dialog.fields.len().max(1);
            dialog.field = (dialog.field + n - 1) % n;
        }
        KeyCode::Enter => {
            if dialog.outcome.is_ok() {
                dialog.confirming = true;
                dialog.confirm_focused = false;
            }
        }
        _ => {
            let field = dialog.field;
            if let (Some(f), Some(request)) = (
                dialog.fields.get_mut(field),
                to_input_request(&Event::Key(key)),
            ) {
                f.input.handle(request);
                dialog.validate(now, zone);
            }
        }
    }
    Vec::new()
}

fn confirm(app: &mut App) -> Vec<Effect> {
    let Some(dialog) = app.dialog.take() else {
        return Vec::new();
    };
    if let Some(why) = mutation_refused(app) {
        app.error(why);
        return Vec::new();
    }
    match dialog.outcome {
        Ok((mutation, new)) => {
            app.info(format!(
                "{} \"{}\": {} → {new} …",
                dialog.kind.title(),
                dialog.job,
                dialog.old
            ));
            vec![Effect::Mutate(mutation)]
        }
        Err(e) => {
            app.error(e);
            Vec::new()
        }
    }
}
