//! `update`: the only place the console's state changes. Pure: it reads the
//! action and the state, changes the state, and returns the effects for the
//! data task. No I/O, no clock.

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind};
use tui_input::backend::crossterm::to_input_request;
use tui_input::Input;

use super::action::{Action, DataEvent, Effect, Link};
use super::app::{App, AuditState, Conn, DetailState, RunState, Screen};
use super::forms::{Dialog, Kind};
use super::keys::{self, Binding, Command};

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
                Vec::new()
            }
        }
        Action::OwnNode(status) => {
            app.own_node = status;
            Vec::new()
        }
        Action::Data(event) => on_data(app, event),
        Action::Terminate => {
            app.quit = true;
            vec![Effect::Quit]
        }
    }
}

/// A refresh of what is on screen: the table, and the open detail or run.
fn refresh_effects(app: &mut App) -> Vec<Effect> {
    app.mark_polled();
    let mut effects = vec![Effect::Refresh];
    match app.stack.last() {
        Some(Screen::Detail(d)) => effects.push(Effect::LoadRuns(d.job_id)),
        Some(Screen::Run(r)) => {
            let running = matches!(&r.run, Some(Some(run)) if run.status == "running");
            if running || r.run.is_none() {
                effects.push(Effect::LoadRun(r.run_id));
            }
        }
        Some(Screen::Audit(_)) => effects.push(Effect::LoadAudit),
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
        }
        DataEvent::Runs { job_id, runs } => {
            if let Some(Screen::Detail(d)) = app.stack.last_mut() {
                if d.job_id == job_id {
                    d.cursor = d.cursor.min(runs.len().saturating_sub(1));
                    d.runs = Some(runs);
                }
            }
        }
        DataEvent::Run { run_id, run } => {
            if let Some(Screen::Run(r)) = app.stack.last_mut() {
                if r.run_id == run_id {
                    r.run = Some(run);
                }
            }
        }
        DataEvent::Audit(records) => {
            if let Some(Screen::Audit(a)) = app.stack.last_mut() {
                a.cursor = a.cursor.min(records.len().saturating_sub(1));
                a.records = Some(records);
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
    if app.help {
        app.help = false;
        return Vec::new();
    }
    if app.dialog.is_some() {
        return dialog_key(app, key);
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
            if app.stack.pop().is_none() && (!app.filter.is_empty() || app.quick.is_some()) {
                app.filter.clear();
                app.quick = None;
                app.rebuild_view();
            }
        }
        Command::Quit => {
            app.quit = true;
            return vec![Effect::Quit];
        }
        Command::Help => app.help = true,
        Command::Filter => app.filter_input = Some(Input::new(app.filter.clone())),
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
            app.stack.push(Screen::Audit(AuditState {
                records: None,
                cursor: 0,
            }));
            return vec![Effect::LoadAudit];
        }
        Command::Refresh => return refresh_effects(app),
    }
    Vec::new()
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
        // The run view clamps when drawing: it alone knows the wrapped length.
        Some(Screen::Run(r)) => r.scroll = step(r.scroll, delta, usize::MAX / 4),
        Some(Screen::Audit(a)) => {
            let len = a.records.as_ref().map_or(0, Vec::len);
            a.cursor = step(a.cursor, delta, len);
        }
    }
}

fn open(app: &mut App) -> Vec<Effect> {
    match app.stack.last() {
        None => {
            let Some(id) = app.selected else {
                return Vec::new();
            };
            app.stack.push(Screen::Detail(DetailState {
                job_id: id,
                runs: None,
                cursor: 0,
            }));
            vec![Effect::LoadRuns(id)]
        }
        Some(Screen::Detail(d)) => {
            let Some(run) = d.runs.as_ref().and_then(|r| r.get(d.cursor)) else {
                return Vec::new();
            };
            let run_id = run.id;
            app.stack.push(Screen::Run(RunState {
                run_id,
                run: None,
                scroll: 0,
            }));
            vec![Effect::LoadRun(run_id)]
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
