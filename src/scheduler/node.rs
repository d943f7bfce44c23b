//! The node's main loop: register, then claim / execute / sleep until told to
//! stop; then stop claiming, let running jobs finish for the grace period,
//! stop the rest (`interrupted`), and deregister.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Timeouts};
use futures_util::FutureExt as _;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::lease::{Lease, Ledger};
use super::notices::{JobConnect, NoticeRouter};
use super::sessions::{PidPublisher, SessionPids};
use super::{alerts, execute, heartbeat, listen, prune, NodeConfig};
use crate::db::audit::Actor;
use crate::db::claim::{claim, next_wake, ClaimedRun, Claimer};
use crate::db::connect::ConnectionSpec;
use crate::db::nodes::{node_register, node_stop, NodeInfo};
use crate::db::runs::{RunOutcome, RunStatus};
use crate::db::DbError;

/// See `Shared::request_deadline`.
fn request_deadline(config: &NodeConfig) -> Duration {
    config.lease.max(Duration::from_secs(10))
}

/// State shared by the node's tasks.
pub(crate) struct Shared {
    pub(crate) config: NodeConfig,
    pub(crate) spec: ConnectionSpec,
    pub(crate) pool: Pool,
    /// Connections that run SQL jobs, and only those: the node's bookkeeping
    /// never shares a session with job statements (`sql`, "Sessions").
    pub(crate) job_pool: Pool,
    /// Routes the job pool's notices to the SQL run using the connection.
    pub(crate) notices: NoticeRouter,
    /// The job pool's connections' backend pids, read once per connection.
    pub(crate) session_pids: SessionPids,
    /// The SQL jobs' wrapper functions known to exist, by job role.
    pub(crate) wrappers: super::sql::Wrappers,
    /// Writes the records of runs that end together in one transaction.
    pub(crate) recorder: super::recorder::Recorder,
    /// Publishes which session runs which SQL run, in batches.
    pub(crate) pid_publisher: PidPublisher,
    pub(crate) actor: Actor,
    /// Owned by the heartbeat service; read by everyone else.
    pub(crate) lease: Lease,
    pub(crate) ledger: Arc<Ledger>,
    /// Asks the heartbeat service to beat now (after an ambiguous claim).
    pub(crate) heartbeat_nudge: Arc<Notify>,
    busy: AtomicUsize,
    pub(crate) finished_since_prune: AtomicU64,
    pub(crate) runs_finished: AtomicU64,
}

impl Shared {
    pub(crate) fn node_id(&self) -> String {
        self.lease.node_id()
    }

    pub(crate) fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// The deadline of one claim or finish round trip: past it, the outcome
    /// is treated as unknown and the heartbeat reconciles.
    pub(crate) fn request_deadline(&self) -> Duration {
        request_deadline(&self.config)
    }

    pub(crate) fn node_info(&self) -> NodeInfo {
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

/// A running node. Dropping it stops it at once (claiming stops, running
/// jobs are stopped and recorded `interrupted`, in the background); call
/// `shutdown` for the graceful path.
pub struct NodeHandle {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// Stops a node's running jobs now, from anywhere (a second Ctrl-C during
/// the shutdown grace period).
#[derive(Clone)]
pub struct NodeKiller {
    shared: Arc<Shared>,
}

impl NodeKiller {
    /// End the grace period now: running jobs are stopped and recorded
    /// `interrupted`.
    pub fn kill(&self) {
        self.shared.lease.kill_all();
    }

    /// Stop every run executing here now, as an operator's cancel: each is
    /// recorded `cancelled` with "cancelled by {by}". Returns how many were
    /// asked to stop. Runs claimed after this call are not affected.
    pub fn cancel_all(&self, by: &str) -> usize {
        self.shared
            .ledger
            .snapshot()
            .into_iter()
            .filter(|&run_id| self.shared.ledger.cancel(run_id, by))
            .count()
    }

    /// The node's view of itself, also while it shuts down.
    pub fn status(&self) -> NodeStatus {
        status_of(&self.shared)
    }
}

fn status_of(shared: &Shared) -> NodeStatus {
    NodeStatus {
        node_id: shared.node_id(),
        name: shared.config.name.clone(),
        workers: shared.config.workers,
        busy: shared.busy(),
        lease_ok: shared.lease.is_ok(),
        runs_finished: shared.runs_finished.load(Ordering::Relaxed),
    }
}

impl NodeHandle {
    /// Register a node and start its tasks.
    pub async fn start(spec: ConnectionSpec, config: NodeConfig) -> anyhow::Result<NodeHandle> {
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("invalid scheduler settings: {e}"))?;
        let mut spec = spec;
        spec.set_liveness(config.heartbeat);
        spec.set_idle_transaction_limit(config.lease / 2);
        let tls = spec.make_tls()?;
        let manager = Manager::from_config(
            spec.config().clone(),
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        // Every wait has a deadline: for a free connection, for a new one,
        // and for the check of a recycled one.
        let pool = Pool::builder(manager)
            .max_size(config.workers + 3)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(config.lease),
                create: Some(Duration::from_secs(10)),
                recycle: Some(config.heartbeat),
            })
            .build()
            .context("building the connection pool")?;
        // Its own connect: the job's notices go to its run (`notices`).
        let notices = NoticeRouter::default();
        let job_manager = Manager::from_connect(
            spec.config().clone(),
            JobConnect {
                tls: spec.make_tls()?,
                router: notices.clone(),
            },
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let job_pool = Pool::builder(job_manager)
            .max_size(config.workers.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(config.lease),
                create: Some(Duration::from_secs(10)),
                recycle: Some(config.heartbeat),
            })
            .build()
            .context("building the SQL jobs' connection pool")?;
        let recorder = super::recorder::Recorder::start(
            pool.clone(),
            Actor::current(),
            request_deadline(&config),
        );
        let shared = Arc::new(Shared {
            lease: Lease::new(CancellationToken::new()),
            ledger: Arc::new(Ledger::default()),
            heartbeat_nudge: Arc::new(Notify::new()),
            config,
            spec,
            pid_publisher: PidPublisher::start(pool.clone()),
            recorder,
            pool,
            job_pool,
            notices,
            session_pids: SessionPids::default(),
            wrappers: super::sql::Wrappers::default(),
            actor: Actor::current(),
            busy: AtomicUsize::new(0),
            finished_since_prune: AtomicU64::new(0),
            runs_finished: AtomicU64::new(0),
        });
        let client = shared
            .pool
            .get()
            .await
            .with_context(|| format!("connecting to {}", shared.spec.target()))?;
        let started = std::time::Instant::now();
        let id = node_register(&**client, &shared.node_info()).await?;
        drop(client);
        shared.lease.registered(id.clone(), started);
        crate::logfmt::set_node_name(&shared.config.name);
        tracing::info!(node = %id, name = %shared.config.name, workers = shared.config.workers,
            allow_shell = shared.config.allow_shell, "scheduler node started");

        let stop = CancellationToken::new();
        tokio::spawn(warm_job_pool(shared.clone()));
        let task = tokio::spawn(run(shared.clone(), stop.clone()));
        Ok(NodeHandle {
            shared,
            stop,
            task: Some(task),
        })
    }

    pub fn status(&self) -> NodeStatus {
        status_of(&self.shared)
    }

    /// How long running jobs may finish when the node shuts down.
    pub fn shutdown_grace(&self) -> Duration {
        self.shared.config.shutdown_grace
    }

    pub fn node_id(&self) -> String {
        self.shared.node_id()
    }

    /// A handle that can cut the shutdown grace period short.
    pub fn killer(&self) -> NodeKiller {
        NodeKiller {
            shared: self.shared.clone(),
        }
    }

    /// Stop claiming, let running jobs finish for the grace period, stop the
    /// rest (recorded `interrupted`), and mark the node stopped.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.task.take() {
            Some(task) => task.await.context("the scheduler task panicked")?,
            None => Ok(()),
        }
    }
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        if self.task.is_some() {
            // Not shut down gracefully: stop claiming and stop the runs now;
            // the node's task records them and deregisters if the runtime
            // lives long enough, else other nodes rescue them by lease.
            self.stop.cancel();
            self.shared.lease.kill_all();
        }
    }
}

async fn run(shared: Arc<Shared>, stop: CancellationToken) -> anyhow::Result<()> {
    let (wake_tx, mut wake_rx) = mpsc::channel::<()>(1);
    let services_stop = CancellationToken::new();
    let mut services = JoinSet::new();
    {
        let (spec, wake, stop) = (shared.spec.clone(), wake_tx.clone(), services_stop.clone());
        let ping = shared.config.heartbeat;
        let cancel = shared.heartbeat_nudge.clone();
        supervise(&mut services, "listen", services_stop.clone(), move || {
            listen::run(
                spec.clone(),
                wake.clone(),
                cancel.clone(),
                stop.clone(),
                ping,
            )
        });
    }
    {
        let (shared, wake, stop) = (shared.clone(), wake_tx.clone(), services_stop.clone());
        supervise(
            &mut services,
            "heartbeat",
            services_stop.clone(),
            move || heartbeat::run(shared.clone(), wake.clone(), stop.clone()),
        );
    }
    {
        let (shared, stop) = (shared.clone(), services_stop.clone());
        supervise(&mut services, "prune", services_stop.clone(), move || {
            prune::run(shared.clone(), stop.clone())
        });
    }
    if let Some(notifier) = shared.config.notifier.clone() {
        let (shared, stop) = (shared.clone(), services_stop.clone());
        supervise(&mut services, "alerts", services_stop.clone(), move || {
            alerts::run(shared.clone(), notifier.clone(), stop.clone())
        });
    }

    let mut workers: JoinSet<()> = JoinSet::new();
    let mut lease_rx = shared.lease.watch_ok();
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
                    if matches!(error.downcast_ref::<DbError>(), Some(DbError::LeaseLost(_))) {
                        tracing::warn!("claim refused: this node's registration is dead; waiting for the heartbeat to register again");
                    } else {
                        tracing::warn!(error = %format!("{error:#}"), "claim failed; retrying");
                    }
                    // The claim may have committed although we saw an error
                    // (a lost COMMIT reply), or the registration may be dead:
                    // either way the heartbeat settles it, now.
                    shared.heartbeat_nudge.notify_one();
                    let wait = error_backoff;
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                    Some(wait)
                }
            }
        };
        let sleep = async {
            match sleep_for {
                Some(d) => precise_sleep(d).await,
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
    shut_down(&shared, &mut workers, &services_stop, &mut services).await
}

/// Open the SQL job pool's connections before any job needs them. Opening
/// one (a new server process, authentication, its first catalog reads)
/// costs as much as dozens of runs; without this, the first herd of due SQL
/// jobs after a node starts waits for all of them to open at once.
async fn warm_job_pool(shared: Arc<Shared>) {
    let mut opened = Vec::with_capacity(shared.config.workers);
    for _ in 0..shared.config.workers {
        match shared.job_pool.get().await {
            Ok(client) => opened.push(client),
            Err(error) => {
                tracing::debug!(%error, "could not open an SQL job connection ahead of time");
                break;
            }
        }
    }
}

/// Run a node service, restarting it with backoff if it ends or panics
/// before `stop`: a bug in pruning must not silently stop the heartbeats.
fn supervise<F, Fut>(set: &mut JoinSet<()>, name: &'static str, stop: CancellationToken, make: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    set.spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::spawn(make()).await;
            if stop.is_cancelled() {
                return;
            }
            match outcome {
                Err(error) if error.is_panic() => {
                    tracing::error!(service = name, backoff = ?backoff, "node service panicked; restarting it");
                }
                _ => {
                    tracing::error!(service = name, backoff = ?backoff, "node service ended unexpectedly; restarting it");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    });
}

/// One claim transaction; start what it claimed. Returns (runs started,
/// seconds until the next wake-up by database time).
async fn cycle(
    shared: &Arc<Shared>,
    free: usize,
    workers: &mut JoinSet<()>,
) -> anyhow::Result<(usize, Option<f64>)> {
    let mut client = shared.pool.get().await?;
    // From before the claim until its runs are in the ledger, so the
    // heartbeat never reconciles against a snapshot that misses them.
    let gate = shared.ledger.gate.lock().await;
    // Read together: every run is bound to the registration it is claimed
    // under (fenced in the database) and to that registration's token.
    let (node_id, lease_token, lease_lost) = shared.lease.claim_context();
    let claimer = Claimer {
        node_id: &node_id,
        node_name: &shared.config.name,
        allow_shell: shared.config.allow_shell,
        shell_allow: &shared.config.shell_allow,
        actor: &shared.actor,
        console: shared.config.console,
    };
    let Ok(report) = tokio::time::timeout(
        shared.request_deadline(),
        claim(&mut client, &claimer, free),
    )
    .await
    else {
        // The connection may be wedged mid-request: never hand it out again.
        drop(deadpool_postgres::Object::take(client));
        anyhow::bail!(
            "the claim got no answer within {:?}",
            shared.request_deadline()
        );
    };
    let report = report?;
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
        let token = lease_token.child_token();
        let entry = shared.ledger.enter(run.run_id, token.clone());
        let shared = shared.clone();
        let node_id = node_id.clone();
        let lost = lease_lost.clone();
        workers.spawn(async move {
            let _entry = entry;
            run_worker(&shared, &run, &node_id, &token, &lost).await;
            shared.busy.fetch_sub(1, Ordering::Relaxed);
            shared.finished_since_prune.fetch_add(1, Ordering::Relaxed);
            shared.runs_finished.fetch_add(1, Ordering::Relaxed);
        });
    }
    drop(gate);
    if started > 0 && started == free {
        // Every worker is busy now, so the next look comes when one is free
        // (or a wake-up arrives): when that would be is not needed. In a
        // herd this saves a statement per claim.
        return Ok((started, Some(0.0)));
    }
    let wake_in = next_wake_within(shared, client).await?;
    Ok((started, wake_in))
}

/// The last stretch of a sleep that `precise_sleep` sleeps on a blocking
/// thread: tokio's timer has millisecond ticks and wakes up to one tick
/// late, half of a tick's lateness budget.
const PRECISE_STRETCH: Duration = Duration::from_millis(2);

/// How much later than the database's answer says the node wakes for a
/// tick: the answer is measured from the moment the query was sent, which
/// is a little before the moment the server read its clock. Waking before
/// the tick would find nothing due and cost a whole claim.
const WAKE_MARGIN: Duration = Duration::from_micros(200);

/// Sleep for `d` (plus `WAKE_MARGIN`), to within tens of microseconds.
async fn precise_sleep(d: Duration) {
    let deadline = std::time::Instant::now() + d + WAKE_MARGIN;
    if let Some(coarse) = d.checked_sub(PRECISE_STRETCH) {
        tokio::time::sleep(coarse).await;
    }
    let rest = deadline.saturating_duration_since(std::time::Instant::now());
    if !rest.is_zero() {
        // Only this stretch: the thread sleeps in the kernel, not spinning.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}

/// `next_wake` under the request deadline, in seconds from the moment it
/// returns; a connection that timed out is dropped from the pool.
async fn next_wake_within(
    shared: &Shared,
    client: deadpool_postgres::Object,
) -> anyhow::Result<Option<f64>> {
    // The database answers in seconds from its clock reading, made after
    // this moment: what the round trip took after it is no longer ahead.
    let sent = std::time::Instant::now();
    let wake = tokio::time::timeout(
        shared.request_deadline(),
        next_wake(
            &**client,
            shared.config.allow_shell,
            &shared.config.shell_allow,
        ),
    )
    .await;
    match wake {
        // Still ahead stays ahead (a wake-up that is due now is a claim).
        Ok(wake) => Ok(wake?.map(|secs| {
            if secs > 0.0 {
                (secs - sent.elapsed().as_secs_f64()).max(1e-6)
            } else {
                secs
            }
        })),
        Err(_) => {
            drop(deadpool_postgres::Object::take(client));
            anyhow::bail!("computing the next wake-up got no answer in time")
        }
    }
}

/// Execute a run; a panic in the executor does not leak the worker slot or
/// leave the run `running`: it is recorded `failed` with the reason.
async fn run_worker(
    shared: &Shared,
    run: &ClaimedRun,
    node_id: &str,
    token: &CancellationToken,
    lost: &CancellationToken,
) {
    let work = std::panic::AssertUnwindSafe(execute::execute(shared, run, node_id, token, lost));
    if let Err(panic) = work.catch_unwind().await {
        let reason = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        tracing::error!(job = %run.job.spec.name, run = run.run_id, %reason, "the worker panicked; recording the run as failed");
        let outcome = RunOutcome {
            error: Some(format!("failed: the node's worker panicked ({reason})")),
            ..RunOutcome::default()
        };
        execute::record(shared, run, node_id, RunStatus::Failed, outcome).await;
    }
}

/// Seconds until the next wake-up, without claiming.
async fn wake_only(shared: &Shared) -> anyhow::Result<Option<f64>> {
    let client = shared.pool.get().await?;
    next_wake_within(shared, client).await
}

async fn shut_down(
    shared: &Arc<Shared>,
    workers: &mut JoinSet<()>,
    services_stop: &CancellationToken,
    services: &mut JoinSet<()>,
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
            shared.lease.kill_all();
            while workers.join_next().await.is_some() {}
        }
    }
    services_stop.cancel();
    while services.join_next().await.is_some() {}
    let client = shared.pool.get().await?;
    let lost = node_stop(&**client, &shared.lease.registrations()).await?;
    if lost > 0 {
        tracing::warn!(
            runs = lost,
            "runs the database had running on this node, which was not executing them, were \
             marked abandoned at stop"
        );
    }
    tracing::info!("scheduler node stopped");
    Ok(())
}
