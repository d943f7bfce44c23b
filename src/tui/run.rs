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
use crate::db::audit::Actor;
use crate::db::connect::ConnectionSpec;
use crate::scheduler::{NodeConfig, NodeHandle, NodeKiller};

/// The database the console shows.
pub enum ConsoleDb {
    /// Opened (and, embedded, started, migrated, seeded); kept open for the
    /// console's lifetime (it owns the embedded server).
    Open(Box<Database>),
    /// An external database that did not answer at start: the console opens
    /// STALE and its data task keeps trying.
    Unreachable {
        spec: Box<ConnectionSpec>,
        error: String,
    },
}

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
pub async fn run(db: ConsoleDb, options: ConsoleOptions) -> anyhow::Result<()> {
    let (spec, target, unreachable) = match &db {
        ConsoleDb::Open(db) => (db.spec.clone(), db.target.clone(), None),
        ConsoleDb::Unreachable { spec, error } => {
            ((**spec).clone(), spec.target(), Some(error.clone()))
        }
    };
    let mut startup_note = None;
    let node = match options.node {
        Some(_) if unreachable.is_some() => {
            startup_note = Some(
                "the database is unreachable: this console's scheduler node did not start \
                 (restart the console to run one)"
                    .to_string(),
            );
            None
        }
        Some(config) => match NodeHandle::start(spec.clone(), config).await {
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
    let requests = data::spawn(spec, options.read_only, events_tx);
    let mut app = App::new(target, options.read_only, node.is_some(), Utc::now());
    app.theme = Theme::from_env(std::env::var("NO_COLOR").ok().as_deref());
    app.zone = Zone::Local;
    if let Some(error) = unreachable {
        update::update(
            &mut app,
            Action::Data(super::action::DataEvent::Connection(
                super::action::Link::Lost { error },
            )),
        );
    }
    if let Some(note) = startup_note {
        app.error(note);
    }

    let killer = node.as_ref().map(NodeHandle::killer);
    if let Some(node) = &node {
        app.shutdown_grace = chrono::Duration::from_std(node.shutdown_grace())
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
    }
    let mut node = NodeSlot {
        handle: node,
        stopping: None,
        killer,
    };
    let result = {
        let mut guard = TerminalGuard::enter().context("setting up the terminal")?;
        event_loop(
            &mut guard.terminal,
            &mut app,
            &mut node,
            &requests,
            events_rx,
        )
        .await
    };
    let _ = requests.send(Effect::Quit);
    if let Some(handle) = node.handle.take() {
        // Quit with nothing running here (or a signal): the graceful path.
        let busy = handle.status().busy;
        if busy > 0 {
            eprintln!("crondeck: waiting for {busy} running job(s) of this console's scheduler to finish (Ctrl-C stops them now)…");
        }
        crate::signals::shutdown_or_stop_now(handle)
            .await
            .context("stopping the embedded scheduler node")?;
    } else if let Some(task) = node.stopping.take() {
        // A signal ended the console while the node was shutting down.
        let killer = node.killer.clone();
        let second = tokio::spawn(async move {
            if crate::signals::wait_for_stop_signal().await.is_ok() {
                if let Some(k) = killer {
                    k.kill();
                }
            }
        });
        let outcome = task.await;
        second.abort();
        outcome
            .context("the scheduler shutdown panicked")?
            .context("stopping the embedded scheduler node")?;
    }
    drop(db);
    result
}

/// This console's scheduler node, as the event loop sees it.
struct NodeSlot {
    /// Until a quit asks it to stop.
    handle: Option<NodeHandle>,
    /// Its graceful shutdown, once begun.
    stopping: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// Status and stop-now, before and during the shutdown.
    killer: Option<NodeKiller>,
}

impl NodeSlot {
    fn status(&self) -> Option<crate::scheduler::NodeStatus> {
        self.killer.as_ref().map(NodeKiller::status)
    }

    /// Carry out an effect meant for the node; false if it is not one.
    fn handle_effect(&mut self, effect: &Effect) -> bool {
        match effect {
            Effect::StopOwnRuns => {
                if let Some(k) = &self.killer {
                    let by = format!("{} (quitting the console)", Actor::current().label());
                    let n = k.cancel_all(&by);
                    tracing::warn!(runs = n, "console quit: stopping this node's runs now");
                }
                true
            }
            Effect::ShutdownNode => {
                if let Some(handle) = self.handle.take() {
                    tracing::info!(
                        "console quit: the scheduler node stops claiming and waits for its runs"
                    );
                    self.stopping = Some(tokio::spawn(handle.shutdown()));
                }
                true
            }
            _ => false,
        }
    }
}

async fn event_loop(
    terminal: &mut Term,
    app: &mut App,
    node: &mut NodeSlot,
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
                Some(Ok(Event::Key(key))) => {
                    // What `q` decides on must be this instant's: a run
                    // claimed since the last tick counts.
                    let status = node.status();
                    if status != app.own_node {
                        update::update(app, Action::OwnNode(status));
                    }
                    Action::Key(key)
                }
                Some(Ok(Event::Resize(width, height))) => Action::Resize { width, height },
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                // The terminal is gone.
                None => Action::Terminate,
            },
            outcome = async {
                match node.stopping.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                node.stopping = None;
                match outcome {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(error = %format!("{error:#}"), "stopping the embedded scheduler node"),
                    Err(error) => tracing::error!(%error, "the scheduler shutdown panicked"),
                }
                Action::NodeStopped
            }
            _ = tick.tick() => {
                let status = node.status();
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
            if node.handle_effect(&effect) {
                continue;
            }
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
