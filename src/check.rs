//! `crondeck check`: the cluster's health in one line, for Nagios, Icinga,
//! Sensu, a systemd timer or a Kubernetes probe (SPEC §6).
//!
//! | status   | exit | when |
//! |----------|------|------|
//! | OK       | 0    | nothing below |
//! | WARNING  | 1    | a job is late, failing, or auto-paused by its failure policy |
//! | CRITICAL | 2    | a job is overdue or unreadable (its stored row cannot be read by this crondeck), or fewer live scheduler nodes than `min_nodes` (default 1), or shell jobs in scope and no live node runs them |
//! | UNKNOWN  | 3    | the job database cannot be reached (decided by the caller) |
//!
//! Operator-paused and done jobs are fine by definition. [`evaluate`] is pure:
//! the caller passes the jobs, the live nodes and the database's "now".

use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::db::nodes::NodeRow;
use crate::health::{job_health, Thresholds};
use crate::job::{ActionKind, Job};
use crate::timespec::format_duration_short;

/// Who paused a job that its failure policy paused (see `db::claim`).
pub const FAILURE_POLICY_PAUSER: &str = "crondeck (failure policy)";

/// Nagios plugin states, ordered by severity for OK < WARNING < CRITICAL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub fn code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }
}

/// `[check]` in the config file; flags override each key.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckFile {
    /// A job whose tick passed longer ago than this is late. Default 30s.
    pub late_grace: Option<String>,
    /// Intervals without success that make a job overdue. Default 2.
    pub overdue_intervals: Option<u32>,
    /// Failures in a row before a job counts as failing. Default 1.
    pub failing_streak: Option<u32>,
    /// Fewer live nodes than this is CRITICAL. Default 1.
    pub min_nodes: Option<u32>,
}

/// What to judge and how strictly.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub thresholds: Thresholds,
    pub failing_streak: u32,
    pub min_nodes: usize,
    pub tag: Option<String>,
    pub job: Option<String>,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            thresholds: Thresholds::default(),
            failing_streak: 1,
            min_nodes: 1,
            tag: None,
            job: None,
        }
    }
}

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub status: Status,
    /// The job, or `None` for the cluster itself.
    pub job: Option<String>,
    /// "overdue", "late", "failing", "auto-paused", "no live node", ...
    pub state: String,
    pub why: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub status: Status,
    pub code: u8,
    pub summary: String,
    pub jobs: usize,
    pub overdue: usize,
    pub late: usize,
    pub failing: usize,
    pub auto_paused: usize,
    pub live_nodes: usize,
    /// Worst first.
    pub problems: Vec<Problem>,
}

/// Judge `jobs` (all of them; the options narrow the scope) and the cluster.
pub fn evaluate(
    jobs: &[Job],
    nodes: &[NodeRow],
    now: DateTime<Utc>,
    opts: &CheckOptions,
) -> Report {
    let in_scope: Vec<&Job> = jobs
        .iter()
        .filter(|j| opts.job.as_ref().map_or(true, |name| &j.spec.name == name))
        .filter(|j| {
            opts.tag
                .as_ref()
                .map_or(true, |tag| j.spec.tags.iter().any(|t| t == tag))
        })
        .collect();
    let mut problems = Vec::new();
    let (mut overdue, mut late, mut failing, mut auto_paused) = (0, 0, 0, 0);
    for job in &in_scope {
        if let Some(reason) = &job.unreadable {
            // The scheduler cannot run it: as bad as overdue.
            overdue += 1;
            problems.push(Problem {
                status: Status::Critical,
                job: Some(job.spec.name.clone()),
                state: "unreadable".into(),
                why: format!("this crondeck cannot read its stored definition: {reason}"),
            });
            continue;
        }
        let health = job_health(job, now, &opts.thresholds);
        let name = Some(job.spec.name.clone());
        let rt = &job.runtime;
        let streak = u32::try_from(rt.failure_streak).unwrap_or(0);
        if let Some(pause) = job
            .pause
            .as_ref()
            .filter(|p| !job.active && p.by.as_deref() == Some(FAILURE_POLICY_PAUSER))
        {
            auto_paused += 1;
            problems.push(Problem {
                status: Status::Warning,
                job: name.clone(),
                state: "auto-paused".into(),
                why: pause
                    .reason
                    .clone()
                    .unwrap_or_else(|| "by its failure policy".into()),
            });
            continue;
        }
        if health.overdue {
            overdue += 1;
            let since = rt.last_success_at.or(rt.first_due_at).or(job.nextcall);
            let why = match (rt.last_success_at, since) {
                (Some(s), _) => format!("no success for {}", format_duration_short(now - s)),
                (None, Some(s)) => format!(
                    "never succeeded, due since {}",
                    format_duration_short(now - s)
                ),
                (None, None) => "never succeeded".into(),
            };
            problems.push(Problem {
                status: Status::Critical,
                job: name.clone(),
                state: "overdue".into(),
                why: format!("{why} ({})", job.spec.schedule.describe()),
            });
        } else if health.late {
            late += 1;
            let due = job.nextcall.map_or(chrono::Duration::zero(), |n| now - n);
            problems.push(Problem {
                status: Status::Warning,
                job: name.clone(),
                state: "late".into(),
                why: format!("due {} ago and not started", format_duration_short(due)),
            });
        }
        let failing_now = health.failing && streak.max(1) >= opts.failing_streak.max(1);
        if failing_now && job.active {
            failing += 1;
            problems.push(Problem {
                status: Status::Warning,
                job: name,
                state: "failing".into(),
                why: format!(
                    "{} failure{} in a row, last {}",
                    streak,
                    if streak == 1 { "" } else { "s" },
                    rt.last_result()
                ),
            });
        }
    }
    if nodes.len() < opts.min_nodes {
        let why = if nodes.is_empty() {
            "no live scheduler node: nothing is executing".to_string()
        } else {
            format!(
                "{} live scheduler nodes, expected at least {}",
                nodes.len(),
                opts.min_nodes
            )
        };
        problems.push(Problem {
            status: Status::Critical,
            job: None,
            state: "no live node".into(),
            why,
        });
    } else if in_scope
        .iter()
        .any(|j| j.active && j.spec.action == ActionKind::Shell)
        && !nodes.iter().any(|n| n.allow_shell)
    {
        problems.push(Problem {
            status: Status::Critical,
            job: None,
            state: "no shell node".into(),
            why: "shell jobs are active but no live node runs shell jobs (--allow-shell)".into(),
        });
    }
    // Worst first; the cluster before jobs at the same level; stable by name.
    problems.sort_by(|a, b| {
        b.status
            .cmp(&a.status)
            .then(a.job.is_some().cmp(&b.job.is_some()))
            .then(a.job.cmp(&b.job))
    });
    let status = problems.first().map_or(Status::Ok, |p| p.status);
    let mut report = Report {
        status,
        code: status.code(),
        summary: String::new(),
        jobs: in_scope.len(),
        overdue,
        late,
        failing,
        auto_paused,
        live_nodes: nodes.len(),
        problems,
    };
    report.summary = summary_line(&report);
    report
}

/// How many problems the summary line names before "and N more".
const NAMED: usize = 3;

/// `CRONDECK CRITICAL: 1 overdue, 2 failing, 0 late, 0 auto-paused of 11 jobs,
/// 2 live nodes; worst: a overdue (no success for 3h), ... | jobs=11 ...`
fn summary_line(r: &Report) -> String {
    let mut line = format!(
        "CRONDECK {}: {} overdue, {} failing, {} late, {} auto-paused of {}, {}",
        r.status.word(),
        r.overdue,
        r.failing,
        r.late,
        r.auto_paused,
        crate::text::count(i64::try_from(r.jobs).unwrap_or(i64::MAX), "job", "jobs"),
        crate::text::count(
            i64::try_from(r.live_nodes).unwrap_or(i64::MAX),
            "live node",
            "live nodes"
        )
    );
    if !r.problems.is_empty() {
        let named: Vec<String> = r
            .problems
            .iter()
            .take(NAMED)
            .map(|p| match &p.job {
                Some(job) => format!(
                    "{} {} ({})",
                    crate::text::field(job),
                    p.state,
                    crate::text::field(&p.why)
                ),
                None => crate::text::field(&p.why),
            })
            .collect();
        let _ = write!(line, "; worst: {}", named.join(", "));
        if r.problems.len() > NAMED {
            let _ = write!(line, " and {} more", r.problems.len() - NAMED);
        }
    }
    let _ = write!(
        line,
        " | jobs={} overdue={} failing={} late={} auto_paused={} live_nodes={}",
        r.jobs, r.overdue, r.failing, r.late, r.auto_paused, r.live_nodes
    );
    // One line whatever a job's name or error contains.
    line.replace(['\n', '\r'], " ")
}

/// The line printed when the database cannot be reached.
pub fn unknown_line(error: &anyhow::Error) -> String {
    format!("CRONDECK UNKNOWN: cannot reach the job database: {error:#}").replace(['\n', '\r'], " ")
}

/// Default grace as text, for help output.
pub fn default_late_grace() -> Duration {
    crate::health::DEFAULT_LATE_GRACE
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
