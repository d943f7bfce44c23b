//! Everything that can happen to the console becomes an `Action` for
//! `update`; everything `update` wants done outside itself is an `Effect`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::KeyEvent;

use crate::db::audit::AuditRecord;
use crate::db::nodes::NodeRow;
use crate::db::runs::RunRow;
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
}

/// What the data task reports.
#[derive(Debug, Clone)]
pub enum DataEvent {
    Connection(Link),
    Jobs(Box<JobsSnapshot>),
    Runs {
        job_id: i64,
        runs: Vec<RunRow>,
    },
    Run {
        run_id: i64,
        run: Option<Box<RunRow>>,
    },
    Audit(Vec<AuditRecord>),
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
    LoadAudit,
    Mutate(Mutation),
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
    },
    Next {
        job: String,
        /// As typed ("now", "+15m") or an RFC 3339 instant.
        next: String,
    },
    Priority {
        job: String,
        priority: i32,
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
