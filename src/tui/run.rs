//! The console's event loop: the one owner of `App`. Terminal input, data
//! events, the clock tick and signals become actions; `update` decides; the
//! effects go to the data task; the screen is redrawn only after a change.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use crossterm::event::{Event, EventStream};
use futures_util::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use super::action::{Action, Effect};
use super::app::App;
use super::format::Zone;
use super::terminal::{Term, TerminalGuard};
use super::theme::Theme;
use super::{data, update, views};
use crate::database::Database;
use crate::scheduler::{NodeConfig, NodeHandle};

/// How the console was asked to run.
#[derive(Debug, Clone)]
pub struct ConsoleOptions {
    pub read_only: bool,
    /// The embedded scheduler node's settings; `None` with `--no-scheduler`.
    pub node: Option<NodeConfig>,
}

/// Where the console writes its log: `$XDG_STATE_HOME/crondeck/crondeck.log`,
/// else `~/.local/state/crondeck/crondeck.log`. Never the screen.
pub fn log_path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(".local/state"))
    })?;
    Some(base.join("crondeck").join("crondeck.log"))
}

/// Run the console until the operator quits (or SIGTERM/SIGHUP/SIGINT).
pub async fn run(db: Database, options: ConsoleOptions) -> anyhow::Result<()> {
    let mut startup_note = None;
    let node = match options.node {
        Some(config) => match NodeHandle::start(db.spec.clone(), config).await {
            Ok(node) => Some(node),
            Err(error) => {
                // The console is still useful without its own node (another
                // node may be running); say so rather than refuse to start.
                tracing::warn!(error = %format!("{error:#}"), "embedded scheduler node did not start");
                startup_note = Some(format!("the embedded scheduler did not start: {error:#}"));
                None
            }
        },
        None => None,
    };
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let requests = data::spawn(db.spec.clone(), options.read_only, events_tx);
    let mut app = App::new(
        db.target.clone(),
        options.read_only,
        node.is_some(),
        Utc::now(),
    );
    app.theme = Theme::from_env(std::env::var("NO_COLOR").ok().as_deref());
    app.zone = Zone::Local;
    if let Some(note) = startup_note {
        app.error(note);
    }

    let result = {
        let mut guard = TerminalGuard::enter().context("setting up the terminal")?;
        event_loop(
            &mut guard.terminal,
            &mut app,
            node.as_ref(),
            &requests,
            events_rx,
        )
        .await
    };
    let _ = requests.send(Effect::Quit);
    if let Some(node) = node {
        let busy = node.status().busy;
        if busy > 0 {
            eprintln!("crondeck: waiting for {busy} running job(s) of this console's scheduler to finish…");
        }
        crate::signals::shutdown_or_stop_now(node)
            .await
            .context("stopping the embedded scheduler node")?;
    }
    drop(db);
    result
}

async fn event_loop(
    terminal: &mut Term,
    app: &mut App,
    node: Option<&NodeHandle>,
    requests: &mpsc::UnboundedSender<Effect>,
    mut events_rx: mpsc::UnboundedReceiver<super::action::DataEvent>,
) -> anyhow::Result<()> {
    let mut input = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut term = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let size = terminal.size()?;
    update::update(
        app,
        Action::Resize {
            width: size.width,
            height: size.height,
        },
    );
    let mut dirty = true;
    loop {
        if dirty {
            terminal.draw(|frame| views::draw(frame, app))?;
            dirty = false;
        }
        let action = tokio::select! {
            event = input.next() => match event {
                Some(Ok(Event::Key(key))) => Action::Key(key),
                Some(Ok(Event::Resize(width, height))) => Action::Resize { width, height },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                // The terminal is gone.
                None => Action::Terminate,
            },
            _ = tick.tick() => {
                let status = node.map(NodeHandle::status);
                if status != app.own_node {
                    update::update(app, Action::OwnNode(status));
                }
                Action::Tick { wall: Utc::now() }
            }
            Some(event) = events_rx.recv() => Action::Data(event),
            _ = term.recv() => Action::Terminate,
            _ = hangup.recv() => Action::Terminate,
            _ = interrupt.recv() => Action::Terminate,
        };
        for effect in update::update(app, action) {
            if effect != Effect::Quit {
                // The data task only ends after Quit, so a send cannot fail
                // before then; if it did, the console shows STALE data.
                let _ = requests.send(effect);
            }
        }
        dirty = true;
        if app.quit {
            return Ok(());
        }
    }
}
