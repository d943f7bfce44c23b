//! Everything that can happen to the console becomes an `Action` for
//! `update`; everything `update` wants done outside itself is an `Effect`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;

use crate::db::audit::AuditRecord;
use crate::db::nodes::{NodeOverview, NodeRow};
use crate::db::runs::{RunPageQuery, RunRow, RunningProgress};
use crate::job::Job;
use crate::schedule::Schedule;
use crate::scheduler::NodeStatus;

#[derive(Debug, Clone)]
pub enum Action {
    Key(KeyEvent),
    Resize {
        width: u16,
        height: u16,
    },
    /// Once a second, with this host's clock: relative times move on.
    Tick {
        wall: DateTime<Utc>,
    },
    /// The embedded node's own view of itself (None with --no-scheduler).
    OwnNode(Option<NodeStatus>),
    Data(DataEvent),
    /// SIGTERM or SIGHUP: leave cleanly.
    Terminate,
    /// The embedded node finished shutting down (after a quit that waited).
    NodeStopped,
}

/// What the data task reports.
#[derive(Debug, Clone)]
pub enum DataEvent {
    Connection(Link),
    Jobs(Box<JobsSnapshot>),
    /// The newest page of a job's history.
    Runs {
        job_id: i64,
        runs: Vec<RunRow>,
        /// Older runs exist.
        more: bool,
    },
    Run {
        run_id: i64,
        run: Option<Box<RunRow>>,
    },
    /// A page of history other than the newest unfiltered one.
    History {
        job_id: i64,
        query: RunPageQuery,
        runs: Vec<RunRow>,
        more: bool,
    },
    Audit(Vec<AuditRecord>),
    /// Progress of the running runs that reported some.
    Progress(Vec<RunningProgress>),
    Notifications(Vec<crate::db::notifications::DeliveryRow>),
    /// The audit records of one job.
    JobAudit {
        job: String,
        records: Vec<AuditRecord>,
    },
    Nodes(Vec<NodeOverview>),
    /// A mutation finished: the message to show, or why it failed.
    Done(Result<String, String>),
}

/// The state of the data task's link to the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    Live,
    Lost { error: String },
}

/// One refresh of the jobs table.
#[derive(Debug, Clone)]
pub struct JobsSnapshot {
    /// The database's `now()` when the snapshot was taken.
    pub db_now: DateTime<Utc>,
    /// This host's clock at the same moment, to keep a clock offset.
    pub wall: DateTime<Utc>,
    /// `true`: `jobs` is every job. `false`: only the jobs that changed since
    /// the previous snapshot, and `removed` the ids of those removed since
    /// (see `db::jobs::jobs_changed_since`).
    pub full: bool,
    pub jobs: Vec<Job>,
    pub removed: Vec<i64>,
    pub nodes: Vec<NodeRow>,
    /// Typical (median) duration in ms of recent runs, by job id.
    pub typical_ms: HashMap<i64, i64>,
    /// Jobs no live node may run (no shell-enabled node, or allow-lists).
    pub unrunnable: HashSet<i64>,
}

/// Requests to the data task.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Refresh,
    LoadRuns(i64),
    LoadRun(i64),
    /// The progress of running runs (a small request of its own, after a
    /// refresh that found jobs running).
    LoadProgress,
    LoadNotifications,
    /// A page of a job's history (older, filtered, from a time).
    LoadHistory {
        job_id: i64,
        query: RunPageQuery,
    },
    LoadAudit,
    /// The audit records of one job (the audit opened from its detail).
    LoadJobAudit(String),
    /// Every node live or seen within the hour, with what it runs.
    LoadNodes,
    Mutate(Mutation),
    /// Stop the runs this console's own node executes, now (recorded
    /// `cancelled`, saying the console quit). Handled by the event loop.
    StopOwnRuns,
    /// Shut this console's own node down: it stops claiming, its runs may
    /// finish for the grace period. Handled by the event loop, which answers
    /// `Action::NodeStopped`.
    ShutdownNode,
    Quit,
}

/// A change to one job, named as the operator confirmed it. Carried out by
/// `crate::ops`, audited there.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    RunNow {
        job: String,
    },
    Cancel {
        job: String,
        reason: Option<String>,
    },
    Pause {
        job: String,
        reason: Option<String>,
        duration: Option<Duration>,
    },
    Resume {
        job: String,
    },
    Schedule {
        job: String,
        schedule: Schedule,
        /// The schedule the dialog was opened on: a change made meanwhile
        /// by someone else refuses this one (`ops::Expect`).
        was: Schedule,
    },
    Next {
        job: String,
        /// As typed ("now", "+15m") or an RFC 3339 instant.
        next: String,
    },
    Priority {
        job: String,
        priority: i32,
        /// The priority the dialog was opened on (see `Schedule::was`).
        was: i32,
    },
}

impl Mutation {
    pub fn job(&self) -> &str {
        match self {
            Mutation::RunNow { job }
            | Mutation::Cancel { job, .. }
            | Mutation::Pause { job, .. }
            | Mutation::Resume { job }
            | Mutation::Schedule { job, .. }
            | Mutation::Next { job, .. }
            | Mutation::Priority { job, .. } => job,
        }
    }
}
