//! Run commands: run (now), history, and the headless scheduler.

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::output;
use crate::config::{DatabaseTarget, Settings};
use crate::database::Database;
use crate::db::audit::Actor;
use crate::db::jobs::job_get;
use crate::db::nodes::jobs_no_node_can_run;
use crate::db::requests::request_get;
use crate::db::runs::{run_get, run_list, RunRow};
use crate::job::ActionKind;
use crate::ops;
use crate::scheduler::{NodeConfig, NodeHandle};
use crate::text::{errln, out, outln};
use crate::{text, timespec};

#[derive(Debug, Args)]
pub struct RunArgs {
    pub name: String,
    /// Wait for the run to end, print its result and output, and exit 0 on
    /// success or 6 when it did not succeed
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this long and exit 7 (the run continues)
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub wait_timeout: Option<String>,
    /// Run a paused job anyway (it stays paused)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    pub name: String,
    /// Why (kept in the audit trail)
    #[arg(long)]
    pub reason: Option<String>,
    /// Wait until the run has stopped, print it, and exit 0 once it is
    /// recorded `cancelled` (6 if it ended otherwise first)
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up waiting after this long and exit 7
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub wait_timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub name: String,
    /// How many runs, newest first (1 or more)
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    /// Print JSON (with the captured output)
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Args)]
pub struct SchedulerArgs {
    /// Jobs run at once [default: 2, or [scheduler] workers]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Run shell jobs on this node (the embedded default always does)
    #[arg(long)]
    pub allow_shell: bool,
    /// Only shell jobs whose program lies inside this directory, run
    /// without a shell (repeatable; implies --allow-shell; `/opt/jobs`
    /// admits /opt/jobs/x, never /opt/jobsEVIL/x)
    #[arg(long = "allow-shell-prefix", value_name = "DIR")]
    pub allow_shell_prefix: Vec<String>,
    /// Name shown in the console and history [default: host-pid]
    #[arg(long, value_name = "NAME")]
    pub node_name: Option<String>,
    /// Heartbeat interval [default: 5s]
    #[arg(long, value_name = "DURATION")]
    pub heartbeat: Option<String>,
    /// A node silent this long is declared dead and its runs rescued [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub lease: Option<String>,
    /// On SIGTERM/SIGINT, how long running jobs may finish [default: 30s]
    #[arg(long, value_name = "DURATION")]
    pub shutdown_grace: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics; ADDR is HOST:PORT or
    /// a port on 127.0.0.1 [default: off, or [metrics] addr; usual: 127.0.0.1:9464]
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<String>,
}

/// Exit code of `run --wait` when the run did not succeed.
pub const RUN_FAILED: u8 = 6;

/// Exit code of `run --wait` / `cancel --wait` when `--wait-timeout` expired
/// before the run ended (the run itself goes on).
pub const WAIT_TIMED_OUT: u8 = 7;

/// `--wait-timeout` expired: not a failure of the run, which continues.
#[derive(Debug, thiserror::Error)]
#[error("gave up waiting after {waited} ({what})")]
pub struct WaitTimedOut {
    pub waited: String,
    pub what: String,
}

impl WaitTimedOut {
    fn new(limit: Option<Duration>, what: String) -> WaitTimedOut {
        WaitTimedOut {
            waited: limit.map_or_else(String::new, crate::timefmt::duration),
            what,
        }
    }
}

/// A run that ended without succeeding (for `run --wait`'s exit code).
#[derive(Debug, thiserror::Error)]
#[error("run {run_id} of \"{job}\" ended {status}")]
pub struct RunDidNotSucceed {
    pub job: String,
    pub run_id: i64,
    pub status: String,
}

pub async fn run(db: &mut Database, args: &RunArgs) -> anyhow::Result<()> {
    let actor = Actor::current();
    // Bad input is refused before a run is requested.
    let limit = args
        .wait_timeout
        .as_deref()
        .map(timespec::parse_duration)
        .transpose()?;
    let job = job_get(&db.client, &args.name, false).await?;
    if let (Some(pause), false) = (&job.pause, args.force) {
        return Err(ops::OpsError::Invalid(paused_refusal(&job.spec.name, pause)).into());
    }
    let request_id = ops::run_now(&mut db.client, &actor, &args.name).await?;
    let orphans = jobs_no_node_can_run(&db.client).await?;
    if orphans.contains(&job.id) {
        let why = if job.spec.action == ActionKind::Shell {
            let rows = db
                .client
                .query(
                    "SELECT shell_allow FROM crondeck.nodes
                     WHERE allow_shell AND stopped_at IS NULL
                       AND heartbeat_at >= now() - lease_ms * interval '1 millisecond'",
                    &[],
                )
                .await
                .context("reading the live shell nodes")?;
            let lists = rows
                .iter()
                .map(|r| r.try_get::<_, Option<Vec<String>>>(0))
                .collect::<Result<Vec<_>, _>>()
                .context("reading the live shell nodes")?;
            crate::scheduler::allow::why_refused(&job.spec.command, &lists)
                .map(|why| format!(" ({why})"))
                .unwrap_or_default()
        } else {
            String::new()
        };
        errln!(
            "warning: no live scheduler node can run \"{}\" now{}; it will start when one does",
            text::field(&job.spec.name),
            text::field(&why),
        );
    }
    if !args.wait {
        outln!(
            "requested a run of \"{}\" (request {request_id})",
            text::field(&job.spec.name)
        );
        return Ok(());
    }
    let run = wait_for_run(db, request_id, limit).await?;
    out!("{}", output::run_detail(&run));
    if run.status == "succeeded" {
        Ok(())
    } else {
        Err(RunDidNotSucceed {
            job: job.spec.name,
            run_id: run.id,
            status: run.status,
        }
        .into())
    }
}

/// Why `run` refuses a paused job: who paused it, when, why, and how to run
/// it anyway.
fn paused_refusal(name: &str, pause: &crate::job::Pause) -> String {
    let mut text = format!(
        "job \"{}\" is paused (since {}",
        text::field(name),
        crate::timefmt::local(pause.at)
    );
    if let Some(by) = &pause.by {
        text.push_str(&format!(" by {}", text::field(by)));
    }
    text.push(')');
    if let Some(reason) = &pause.reason {
        text.push_str(&format!(": {}", text::field(reason)));
    }
    if let Some(until) = pause.until {
        text.push_str(&format!("; it resumes at {}", crate::timefmt::local(until)));
    }
    text.push_str(&format!(
        "; run it anyway with `crondeck run {} --force` (it stays paused), or resume it first",
        text::field(name)
    ));
    text
}

/// Wakes a waiting command whenever something may have changed: on every
/// start and end of a run (they notify `crondeck_wake`), and at least every
/// second in case a notification is missed. Gives up once `limit` expires.
struct Follow {
    _listener: tokio_postgres::Client,
    notes: tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    limit: Option<Duration>,
    deadline: Option<tokio::time::Instant>,
}

impl Follow {
    async fn start(db: &Database, limit: Option<Duration>) -> anyhow::Result<Follow> {
        let (listener, notes) = db.spec.connect_with_notifications().await?;
        listener.batch_execute("LISTEN crondeck_wake").await?;
        Ok(Follow {
            _listener: listener,
            notes,
            limit,
            deadline: limit.map(|l| tokio::time::Instant::now() + l),
        })
    }

    /// Waits for the next reason to look again; `WaitTimedOut` (saying
    /// `still`) once the limit has expired.
    async fn next(&mut self, still: impl FnOnce() -> String) -> Result<(), WaitTimedOut> {
        let expired = async {
            match self.deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.notes.recv() => Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => Ok(()),
            () = expired => Err(WaitTimedOut::new(self.limit, still())),
        }
    }
}

/// Follow a request until its run ends.
async fn wait_for_run(
    db: &Database,
    request_id: i64,
    limit: Option<Duration>,
) -> anyhow::Result<RunRow> {
    let mut follow = Follow::start(db, limit).await?;
    let mut said_waiting = false;
    loop {
        let request = request_get(&db.client, request_id)
            .await?
            .context("the run request disappeared (was the job removed?)")?;
        if let Some(run_id) = request.run_id {
            if let Some(run) = run_get(&db.client, run_id).await? {
                if run.status != "running" {
                    return Ok(run);
                }
            }
        } else if request.state == "cancelled" {
            anyhow::bail!("the run request was cancelled");
        } else if let (Some(busy), false) = (request.waiting_for_run, said_waiting) {
            errln!("waiting: the job is running (run {busy}); this run starts when that one ends");
            said_waiting = true;
        }
        follow
            .next(|| format!("the run request {request_id} stays pending or running"))
            .await?;
    }
}

pub async fn cancel(db: &mut Database, args: &CancelArgs) -> anyhow::Result<()> {
    let actor = Actor::current();
    let limit = args
        .wait_timeout
        .as_deref()
        .map(timespec::parse_duration)
        .transpose()?;
    let run_id = ops::cancel(&mut db.client, &actor, &args.name, args.reason.as_deref()).await?;
    let run = run_get(&db.client, run_id)
        .await?
        .context("the run disappeared")?;
    let node = run.node_name.as_deref().unwrap_or("?");
    if !args.wait {
        outln!(
            "asked node {} to cancel run {run_id} of \"{}\"; it stops within a heartbeat",
            crate::text::field(node),
            crate::text::field(&args.name)
        );
        return Ok(());
    }
    let mut follow = Follow::start(db, limit).await?;
    loop {
        let run = run_get(&db.client, run_id)
            .await?
            .context("the run disappeared (was the job removed?)")?;
        if run.status != "running" {
            out!("{}", output::run_detail(&run));
            if run.status == "cancelled" {
                return Ok(());
            }
            return Err(RunDidNotSucceed {
                job: args.name.clone(),
                run_id: run.id,
                status: run.status,
            }
            .into());
        }
        follow
            .next(|| format!("run {run_id} is still running; the cancel request stands"))
            .await?;
    }
}

pub async fn history(db: &Database, args: &HistoryArgs) -> anyhow::Result<()> {
    let job = job_get(&db.client, &args.name, false).await?;
    let runs = run_list(&db.client, job.id, args.limit).await?;
    if args.json {
        outln!("{}", text::json(&serde_json::to_string_pretty(&runs)?));
    } else {
        out!("{}", output::run_table(&runs));
    }
    Ok(())
}

/// Build the node's settings: flags > config file > defaults. The embedded
/// default runs shell jobs (it is private to this machine); a node on a shared
/// database runs them only when asked.
pub fn node_config(settings: &Settings, args: &SchedulerArgs) -> anyhow::Result<NodeConfig> {
    let file = &settings.file.scheduler;
    let mut config = NodeConfig::default();
    if let Some(workers) = args.workers.or(file.workers.map(|w| w as usize)) {
        config.workers = workers;
    }
    config.shell_allow = if args.allow_shell_prefix.is_empty() {
        file.shell_allow.clone().unwrap_or_default()
    } else {
        args.allow_shell_prefix.clone()
    };
    config.allow_shell = args.allow_shell
        || !config.shell_allow.is_empty()
        || file.allow_shell.unwrap_or(false)
        || matches!(settings.database, DatabaseTarget::Embedded { .. });
    if let Some(name) = &args.node_name {
        config.name = name.clone();
    }
    let duration = |flag: &Option<String>,
                    key: &Option<String>,
                    what: &str|
     -> anyhow::Result<Option<Duration>> {
        flag.as_ref()
            .or(key.as_ref())
            // Tuning knobs may be sub-second ("500ms"), unlike job timeouts.
            .map(|text| {
                humantime::parse_duration(text).map_err(|e| {
                    ops::OpsError::Invalid(format!(
                        "scheduler {what} \"{text}\": {e} (expected e.g. \"500ms\", \"5s\", \"1m\")"
                    ))
                })
            })
            .transpose()
            .map_err(anyhow::Error::from)
    };
    if let Some(d) = duration(&args.heartbeat, &file.heartbeat, "heartbeat")? {
        config.heartbeat = d;
    }
    if let Some(d) = duration(&args.lease, &file.lease, "lease")? {
        config.lease = d;
    }
    if let Some(d) = duration(&args.shutdown_grace, &None, "shutdown grace")? {
        config.shutdown_grace = d;
    }
    if let Some(keep) = settings.file.retention.keep_runs {
        config.retention.keep_runs = i64::try_from(keep).unwrap_or(i64::MAX);
    }
    if let Some(days) = settings.file.retention.keep_days {
        config.retention.keep_days = i32::try_from(days).unwrap_or(i32::MAX);
    }
    config.notifier =
        crate::notify::Notifier::from_file(&settings.file.notifications, &config.name)
            .map_err(ops::OpsError::Invalid)?
            .map(std::sync::Arc::new);
    config
        .validate()
        .map_err(|e| ops::OpsError::Invalid(format!("scheduler settings: {e}")))?;
    Ok(config)
}

/// The headless node: runs until SIGTERM, SIGINT or SIGHUP, then shuts down gracefully.
pub async fn scheduler(
    db: Database,
    settings: &Settings,
    args: &SchedulerArgs,
) -> anyhow::Result<()> {
    let mut config = node_config(settings, args)?;
    let metrics_addr = args
        .metrics_addr
        .as_ref()
        .or(settings.file.metrics.addr.as_ref())
        .map(|text| crate::metrics::parse_addr(text).map_err(ops::OpsError::Invalid))
        .transpose()?;
    let stop_metrics = tokio_util::sync::CancellationToken::new();
    if let Some(addr) = metrics_addr {
        // Bound before the node starts, so a taken port fails the start.
        let listener = crate::metrics::bind(addr).await?;
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
        config.observer = Some(metrics.clone());
        tokio::spawn(crate::metrics::serve(
            listener,
            metrics,
            db.spec.clone(),
            stop_metrics.clone(),
        ));
        errln!("crondeck scheduler: metrics at http://{addr}/metrics");
    }
    let node = NodeHandle::start(db.spec.clone(), config).await?;
    errln!(
        "crondeck scheduler: node {} ({}) on {}; stop with Ctrl-C or SIGTERM",
        node.status().name,
        node.node_id(),
        db.target
    );
    crate::signals::wait_for_stop_signal().await?;
    tracing::info!("stopping: finishing running jobs");
    eprintln!(
        "crondeck scheduler: stopping; running jobs may finish for the grace period \
         (signal again to stop them now)"
    );
    crate::signals::shutdown_or_stop_now(node).await?;
    stop_metrics.cancel();
    drop(db);
    Ok(())
}
