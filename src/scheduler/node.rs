//! The node's main loop: register, then claim / execute / sleep until told to
//! stop; then stop claiming, let running jobs finish for the grace period,
//! stop the rest (`interrupted`), and deregister.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{alerts, execute, heartbeat, listen, prune, NodeConfig};
use crate::db::audit::Actor;
use crate::db::claim::{claim, next_wake, Claimer};
use crate::db::connect::ConnectionSpec;
use crate::db::nodes::{node_register, node_stop, NodeInfo};

/// State shared by the node's tasks.
pub struct Shared {
    pub config: NodeConfig,
    pub spec: ConnectionSpec,
    pub pool: Pool,
    /// Connections that run SQL jobs, and only those: the node's bookkeeping
    /// never shares a session with job statements (`sql`, "Sessions").
    pub job_pool: Pool,
    pub actor: Actor,
    node_id: RwLock<String>,
    /// Cancelled when the lease is lost; replaced by a fresh child of
    /// `kill` afterwards. Every run's token is a child of the current one.
    lease_token: Mutex<CancellationToken>,
    /// Cancelled at the end of the shutdown grace period: stops every run.
    kill: CancellationToken,
    pub lease_ok: watch::Sender<bool>,
    /// When the last heartbeat that renewed the lease started; feeds the
    /// shell jobs' lease watchdogs (`shell`, "Lease watchdog").
    pub lease_renewed: watch::Sender<Instant>,
    busy: AtomicUsize,
    pub finished_since_prune: AtomicU64,
    pub runs_finished: AtomicU64,
}

impl Shared {
    pub fn node_id(&self) -> String {
        self.node_id.read().map(|id| id.clone()).unwrap_or_default()
    }

    pub fn set_node_id(&self, id: String) {
        if let Ok(mut current) = self.node_id.write() {
            *current = id;
        }
    }

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Swap in a fresh lease token and return the old one (to cancel).
    pub fn replace_lease_token(&self) -> CancellationToken {
        let fresh = self.kill.child_token();
        match self.lease_token.lock() {
            Ok(mut token) => std::mem::replace(&mut *token, fresh),
            Err(_) => fresh,
        }
    }

    fn run_token(&self) -> CancellationToken {
        match self.lease_token.lock() {
            Ok(token) => token.child_token(),
            Err(_) => self.kill.child_token(),
        }
    }

    pub fn node_info(&self) -> NodeInfo {
        NodeInfo {
            name: self.config.name.clone(),
            host: self.actor.host.clone(),
            pid: i32::try_from(std::process::id()).unwrap_or(0),
            version: env!("CARGO_PKG_VERSION").to_string(),
            workers: i32::try_from(self.config.workers).unwrap_or(i32::MAX),
            allow_shell: self.config.allow_shell,
            shell_allow: self.config.shell_allow.clone(),
            lease: self.config.lease,
            heartbeat: self.config.heartbeat,
        }
    }
}

/// What a running node reports about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: String,
    pub name: String,
    pub workers: usize,
    pub busy: usize,
    pub lease_ok: bool,
    pub runs_finished: u64,
}

/// A running node. Dropping it without `shutdown` stops claiming abruptly;
/// call `shutdown` for the graceful path.
pub struct NodeHandle {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl NodeHandle {
    /// Register a node and start its tasks.
    pub async fn start(spec: ConnectionSpec, config: NodeConfig) -> anyhow::Result<NodeHandle> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid scheduler settings: {e}"))?;
        let tls = spec.make_tls()?;
        let manager = Manager::from_config(
            spec.config().clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.workers + 3)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .context("building the connection pool")?;
        let job_manager = Manager::from_config(
            spec.config().clone(),
            spec.make_tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let job_pool = Pool::builder(job_manager)
            .max_size(config.workers.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .build()
            .context("building the SQL jobs' connection pool")?;
        let actor = Actor::current();
        let kill = CancellationToken::new();
        let (lease_ok, _) = watch::channel(true);
        // Registering stamps the first heartbeat, no earlier than this.
        let (lease_renewed, _) = watch::channel(Instant::now());
        let shared = Arc::new(Shared {
            lease_token: Mutex::new(kill.child_token()),
            kill,
            config,
            spec,
            pool,
            job_pool,
            actor,
            node_id: RwLock::new(String::new()),
            lease_ok,
            lease_renewed,
            busy: AtomicUsize::new(0),
            finished_since_prune: AtomicU64::new(0),
            runs_finished: AtomicU64::new(0),
        });
        let client = shared
            .pool
            .get()
            .await
            .with_context(|| format!("connecting to {}", shared.spec.target()))?;
        let id = node_register(&**client, &shared.node_info()).await?;
        drop(client);
        shared.set_node_id(id.clone());
        tracing::info!(node = %id, name = %shared.config.name, workers = shared.config.workers,
            allow_shell = shared.config.allow_shell, "scheduler node started");

        let stop = CancellationToken::new();
        let task = tokio::spawn(run(shared.clone(), stop.clone()));
        Ok(NodeHandle { shared, stop, task })
    }

    pub fn status(&self) -> NodeStatus {
        NodeStatus {
            node_id: self.shared.node_id(),
            name: self.shared.config.name.clone(),
            workers: self.shared.config.workers,
            busy: self.shared.busy(),
            lease_ok: *self.shared.lease_ok.borrow(),
            runs_finished: self.shared.runs_finished.load(Ordering::Relaxed),
        }
    }

    pub fn node_id(&self) -> String {
        self.shared.node_id()
    }

    /// Stop claiming, let running jobs finish for the grace period, stop the
    /// rest (recorded `interrupted`), and mark the node stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await.context("the scheduler task panicked")?
    }
}

async fn run(shared: Arc<Shared>, stop: CancellationToken) -> anyhow::Result<()> {
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let services = CancellationToken::new();
    tokio::spawn(listen::run(
        shared.spec.clone(),
        wake_tx.clone(),
        services.clone(),
    ));
    tokio::spawn(heartbeat::run(
        shared.clone(),
        wake_tx.clone(),
        services.clone(),
    ));
    tokio::spawn(prune::run(shared.clone(), services.clone()));
    if let Some(notifier) = shared.config.notifier.clone() {
        tokio::spawn(alerts::run(shared.clone(), notifier, services.clone()));
    }

    let mut workers: JoinSet<()> = JoinSet::new();
    let mut lease_rx = shared.lease_ok.subscribe();
    let mut idle_backoff = Duration::from_millis(10);
    let mut error_backoff = Duration::from_millis(100);
    let mut notified = false;
    loop {
        // Reap every finished worker, not only the one that woke us: a
        // finished but unjoined task still counts in `len()`, and under load
        // that held every claim to one job.
        while workers.try_join_next().is_some() {}
        let free = shared.config.workers.saturating_sub(workers.len());
        let lease_ok = *lease_rx.borrow_and_update();
        let sleep_for = if !lease_ok {
            Some(shared.config.heartbeat)
        } else if notified && free == 0 {
            // Every worker is busy, so nothing can start here, and a finishing
            // worker wakes us anyway: a notification can only have moved the
            // next wake-up. Our own claims and finishes notify too; a full
            // claim here cost every run two more claims under load.
            match wake_only(&shared).await {
                Ok(Some(secs)) if secs > 0.0 => Some(Duration::from_secs_f64(secs.min(86_400.0))),
                Ok(_) => None,
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "computing the next wake-up failed; retrying");
                    Some(error_backoff)
                }
            }
        } else {
            match cycle(&shared, free, &mut workers).await {
                Ok((started, wake_in)) => {
                    error_backoff = Duration::from_millis(100);
                    let free_after = free - started;
                    match wake_in {
                        None => None,
                        Some(secs) if secs > 0.0 => {
                            idle_backoff = Duration::from_millis(10);
                            Some(Duration::from_secs_f64(secs.min(86_400.0)))
                        }
                        // Something is due now but we have no free worker:
                        // a finishing worker wakes us.
                        Some(_) if free_after == 0 => None,
                        Some(_) if started > 0 => Some(Duration::ZERO),
                        // Due, but held by another node's claim in flight:
                        // look again shortly rather than spin.
                        Some(_) => {
                            let wait = idle_backoff;
                            idle_backoff = (idle_backoff * 2).min(Duration::from_secs(1));
                            Some(wait)
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "claim failed; retrying");
                    let wait = error_backoff;
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                    Some(wait)
                }
            }
        };
        let sleep = async {
            match sleep_for {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        notified = false;
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(()) = wake_rx.recv() => notified = true,
            Some(_) = workers.join_next(), if !workers.is_empty() => {}
            () = sleep => {}
            _ = lease_rx.changed() => {}
        }
    }
    shut_down(&shared, &mut workers, &services).await
}

/// One claim transaction; start what it claimed. Returns (runs started,
/// seconds until the next wake-up by database time).
async fn cycle(
    shared: &Arc<Shared>,
    free: usize,
    workers: &mut JoinSet<()>,
) -> anyhow::Result<(usize, Option<f64>)> {
    let mut client = shared.pool.get().await?;
    let node_id = shared.node_id();
    let claimer = Claimer {
        node_id: &node_id,
        node_name: &shared.config.name,
        allow_shell: shared.config.allow_shell,
        shell_allow: &shared.config.shell_allow,
        actor: &shared.actor,
    };
    let report = claim(&mut **client, &claimer, free).await?;
    if report.skipped_ticks > 0 {
        tracing::debug!(ticks = report.skipped_ticks, "recorded skipped ticks");
    }
    let started = report.started.len();
    for run in report.started {
        tracing::debug!(job = %run.job.spec.name, run = run.run_id, trigger = run.trigger.as_str(), "starting run");
        if let Some(observer) = &shared.config.observer {
            observer.run_started(&run);
        }
        shared.busy.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let token = shared.run_token();
        let node_id = node_id.clone();
        workers.spawn(async move {
            execute::execute(&shared, &run, &node_id, &token).await;
            shared.busy.fetch_sub(1, Ordering::Relaxed);
            shared.finished_since_prune.fetch_add(1, Ordering::Relaxed);
            shared.runs_finished.fetch_add(1, Ordering::Relaxed);
        });
    }
    let wake_in = next_wake(
        &**client,
        shared.config.allow_shell,
        &shared.config.shell_allow,
    )
    .await?;
    Ok((started, wake_in))
}

/// Seconds until the next wake-up, without claiming.
async fn wake_only(shared: &Shared) -> anyhow::Result<Option<f64>> {
    let client = shared.pool.get().await?;
    Ok(next_wake(
        &**client,
        shared.config.allow_shell,
        &shared.config.shell_allow,
    )
    .await?)
}

async fn shut_down(
    shared: &Arc<Shared>,
    workers: &mut JoinSet<()>,
    services: &CancellationToken,
) -> anyhow::Result<()> {
    if !workers.is_empty() {
        tracing::info!(running = workers.len(), grace = ?shared.config.shutdown_grace,
            "shutting down: waiting for running jobs");
        let drained = tokio::time::timeout(shared.config.shutdown_grace, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                running = workers.len(),
                "grace period over: stopping running jobs"
            );
            shared.kill.cancel();
            while workers.join_next().await.is_some() {}
        }
    }
    services.cancel();
    let client = shared.pool.get().await?;
    node_stop(&**client, &shared.node_id()).await?;
    tracing::info!("scheduler node stopped");
    Ok(())
}
