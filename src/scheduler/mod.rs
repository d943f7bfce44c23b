//! The scheduler node: claims due jobs from the job database, runs them on its
//! workers, and records every run. Any number of nodes, on any hosts, share one
//! database and coordinate only through it.
//!
//! ## How a node spends its time
//!
//! ```text
//!            ┌──────────── NOTIFY crondeck_wake (jobs changed, run requested)
//!            │   ┌──────── a worker finished
//!            ▼   ▼
//!   sleep until the earliest tick / lifted pause / request ──▶ claim (one tx)
//!            ▲                                                   │
//!            └──────── next_wake() (database time) ◀─────────────┘ start runs
//! ```
//!
//! There is no polling: a node sleeps until the earliest moment something
//! could become due (computed by the database, in database time) and is woken
//! early by `LISTEN/NOTIFY`. When nothing is due, the database sees only the
//! heartbeats.
//!
//! ## Leases, rescue and fencing
//!
//! Every node heartbeats (default every 5 s). A node whose heartbeat is older
//! than its lease (default 30 s, by database time) is declared dead by the next
//! live node that heartbeats: its running runs become `abandoned` and their
//! jobs are free again. A node that finds it was declared dead (a stall, a
//! network cut) stops its running work at once and registers anew; whatever it
//! tries to record for the old runs is refused, because every finish is
//! conditional on the run still belonging to the node (`db::claim::finish`).
//! The lease must be well above the heartbeat interval, so a live node is
//! never rescued: `NodeConfig::validate` insists on at least three heartbeats
//! per lease.
//!
//! ## What a crash means for a run
//!
//! - SQL jobs: the job's statements and its success record commit together.
//!   A crash before the commit leaves neither; the run is later `abandoned`.
//! - Shell jobs: at most one execution per run; a crash of the node kills the
//!   job's process group, and the run is `abandoned` once the lease runs out.
//!   The command may have done part of its work.
//! - A tick whose run was abandoned is not retried automatically; the next
//!   tick runs as usual.
//!
//! ## A node that is frozen or cut off, not dead
//!
//! SIGSTOP, a paused VM, or a network cut leave the node's work running while
//! its lease runs out and another node takes the job over. Two mechanisms
//! keep the old execution from overlapping the new one:
//!
//! - Shell jobs carry a lease watchdog inside their process group (see
//!   `shell`, "Lease watchdog"): the node feeds it after each heartbeat that
//!   renewed the lease, and when fed nothing for `lease - 1.5 × heartbeat`
//!   it SIGKILLs the group — half a heartbeat before any other node may
//!   rescue the run. Such a run ends `abandoned`: recorded by the node if
//!   nobody rescued it yet, else by the rescuer (the node's write is fenced).
//!   A heartbeat more than `lease - 2.5 × heartbeat` late therefore stops the
//!   node's shell jobs even if nobody rescues them: the price of never
//!   running a job twice at once.
//! - SQL jobs: the rescue terminates the sessions still executing abandoned
//!   runs (they could never commit, being fenced, but they hold locks and
//!   burn resources). The signal is sent before the job is freed; the server
//!   applies it a moment later.
//!
//! A frozen node that wakes up finds its heartbeat refused, stops whatever it
//! still runs, and registers anew; nothing it records for the old runs is
//! accepted.

mod alerts;
pub mod allow;
mod execute;
mod heartbeat;
mod lease;
mod listen;
pub(crate) mod live;
mod node;
mod notices;
mod prune;
mod recorder;
mod sessions;
pub(crate) mod shell;
mod sql;

use std::sync::Arc;
use std::time::Duration;

pub use node::{NodeHandle, NodeKiller, NodeStatus};
/// The node variables a shell job inherits (everything else is dropped).
pub use shell::JOB_ENV;

use crate::db::claim::ClaimedRun;
use crate::db::runs::RunStatus;

/// Told when this node starts and finishes runs (the metrics implement it).
/// Called on the scheduler's tasks: keep it quick and never block.
pub trait RunObserver: Send + Sync + std::fmt::Debug {
    /// A run was claimed and is about to execute.
    fn run_started(&self, run: &ClaimedRun);
    /// A run's end was recorded with `status`.
    fn run_finished(&self, run: &ClaimedRun, status: RunStatus);
    /// A run was taken away from this node (lease lost); nothing recorded.
    fn run_lost(&self, run: &ClaimedRun);
}

/// Settings of one node, with documented defaults.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Shown in the console and the run history. Default: host name and pid.
    pub name: String,
    /// Jobs run at once (like Odoo's `max_cron_threads`). Default 2.
    pub workers: usize,
    /// Whether this node runs shell jobs. Default false: a node sharing a
    /// database must opt in, since job definitions become commands on its host.
    pub allow_shell: bool,
    /// With shell enabled: directories whose programs this node may run.
    /// Empty (the default) means any command, run by `sh -c`. A non-empty
    /// list admits only commands whose program lies inside one of the
    /// directories and runs them without a shell (see [`allow`]).
    pub shell_allow: Vec<String>,
    /// Heartbeat interval. Default 5 s.
    pub heartbeat: Duration,
    /// A node silent for longer than this is dead. Default 30 s.
    pub lease: Duration,
    /// On shutdown, how long running jobs may finish before being stopped.
    /// Default 30 s.
    pub shutdown_grace: Duration,
    /// Between SIGTERM and SIGKILL when a shell job is stopped. Default 5 s.
    pub kill_grace: Duration,
    /// Bytes kept at the head and at the tail of each output stream. Default 16 KiB.
    pub output_limit: usize,
    pub retention: Retention,
    /// Notification channels and thresholds; `None` (the default) detects
    /// and sends nothing. See `crate::notify`.
    pub notifier: Option<Arc<crate::notify::Notifier>>,
    /// Told about runs (metrics); `None` by default.
    pub observer: Option<Arc<dyn RunObserver>>,
    /// The node runs inside an interactive console (default false): its
    /// claims leave a manual request younger than
    /// [`crate::db::claim::CONSOLE_DEFER`] to another live node with a free
    /// worker that can run the job, so a run asked for from a console
    /// outlives the console. Alone, it claims at once.
    pub console: bool,
}

/// Run-history retention (SPEC §3.15): per job, keep the newest `keep_runs`
/// runs and everything younger than `keep_days`; delete the rest in batches.
#[derive(Debug, Clone)]
pub struct Retention {
    pub keep_runs: i64,
    pub keep_days: i32,
    /// Rows deleted per statement, so pruning never holds locks for long.
    pub batch: i64,
    /// How often a node that has recorded runs looks for something to prune.
    pub interval: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_runs: 1000,
            keep_days: 30,
            batch: 500,
            interval: Duration::from_secs(600),
        }
    }
}

pub const DEFAULT_WORKERS: usize = 2;
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: default_node_name(),
            workers: DEFAULT_WORKERS,
            allow_shell: false,
            shell_allow: Vec::new(),
            heartbeat: DEFAULT_HEARTBEAT,
            lease: DEFAULT_LEASE,
            shutdown_grace: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            output_limit: 16 * 1024,
            retention: Retention::default(),
            notifier: None,
            observer: None,
            console: false,
        }
    }
}

/// "host-pid", the default node name.
pub fn default_node_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "node".to_string());
    format!("{host}-{}", std::process::id())
}

impl NodeConfig {
    /// Refuse settings that could rescue live work or never run anything.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == 0 || self.workers > 1024 {
            return Err(format!(
                "workers = {} is out of range (expected 1 to 1024; default {DEFAULT_WORKERS})",
                self.workers
            ));
        }
        if !self.shell_allow.is_empty() && !self.allow_shell {
            return Err("a shell allow-list needs shell jobs enabled (--allow-shell)".into());
        }
        for entry in &self.shell_allow {
            allow::validate_entry(entry)?;
        }
        if self.name.trim().is_empty() {
            return Err("the node name is empty".into());
        }
        if self.heartbeat < Duration::from_millis(100) {
            return Err(format!(
                "heartbeat {:?} is too short (expected at least 100ms; default 5s)",
                self.heartbeat
            ));
        }
        if self.lease < self.heartbeat * 3 {
            return Err(format!(
                "lease {:?} must be at least three heartbeats ({:?}), or a live but slow node \
                 could be declared dead and its runs taken over (default lease 30s, heartbeat 5s)",
                self.lease,
                self.heartbeat * 3
            ));
        }
        if self.retention.keep_runs < 0 || self.retention.keep_days < 0 || self.retention.batch < 1
        {
            return Err(
                "retention: keep_runs and keep_days must be 0 or more, batch at least 1".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_spec() {
        let config = NodeConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.workers, 2);
        assert_eq!(config.lease, Duration::from_secs(30));
        assert!(!config.allow_shell);
    }

    #[test]
    fn a_lease_too_close_to_the_heartbeat_is_refused() {
        let config = NodeConfig {
            heartbeat: Duration::from_secs(10),
            lease: Duration::from_secs(20),
            ..NodeConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("three heartbeats"));
        let config = NodeConfig {
            workers: 0,
            ..NodeConfig::default()
        };
        assert!(config.validate().unwrap_err().contains("workers"));
    }
}
