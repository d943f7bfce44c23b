//! The fault suite's oracle, checked from the run history after the fact (the
//! generalisation of `check_history` in tests/scheduler.rs to any schedule and
//! to the final state):
//!
//! - every scheduled tick has at most one row;
//! - no two executions of a job overlap in time;
//! - the rows of a job tile its timeline: each row's tick advanced by its
//!   `ticks` slots is the next row's tick, and the last one reaches the job's
//!   `nextcall` — so no expected tick is missing; ticks that did not run each
//!   sit in a row that says why (`skipped` with a reason, or a coalesced run
//!   with a reason);
//! - every run that did not succeed says why (an error);
//! - nothing is left `running`, and no job still points at a run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use crondeck::db::jobs::job_list;
use crondeck::job::Job;
use tokio_postgres::Client;

#[derive(Debug, Clone)]
pub struct Run {
    pub id: i64,
    pub job_id: i64,
    pub status: String,
    pub trigger: String,
    pub scheduled_for: DateTime<Utc>,
    pub ticks: i32,
    pub reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub node_id: Option<String>,
    pub node_name: Option<String>,
    pub error: Option<String>,
    pub signal: Option<i32>,
}

pub async fn runs(client: &Client) -> Vec<Run> {
    client
        .query(
            "SELECT id, job_id, status, trigger, scheduled_for, ticks, reason, started_at,
                    ended_at, node_id, node_name, error, signal
             FROM crondeck.runs ORDER BY job_id, scheduled_for, id",
            &[],
        )
        .await
        .expect("read the run history")
        .iter()
        .map(|r| Run {
            id: r.get(0),
            job_id: r.get(1),
            status: r.get(2),
            trigger: r.get(3),
            scheduled_for: r.get(4),
            ticks: r.get(5),
            reason: r.get(6),
            started_at: r.get(7),
            ended_at: r.get(8),
            node_id: r.get(9),
            node_name: r.get(10),
            error: r.get(11),
            signal: r.get(12),
        })
        .collect()
}

/// The history the oracle passed on, for a test's own further checks.
pub struct History {
    pub runs: Vec<Run>,
    pub jobs: Vec<Job>,
}

impl History {
    pub fn job(&self, name: &str) -> &Job {
        self.jobs
            .iter()
            .find(|j| j.spec.name == name)
            .unwrap_or_else(|| panic!("no job {name}"))
    }

    pub fn runs_of(&self, name: &str) -> Vec<&Run> {
        let id = self.job(name).id;
        self.runs.iter().filter(|r| r.job_id == id).collect()
    }
}

/// Check the oracle over the whole database; panics with the offending rows.
/// Call after every node has stopped (or been rescued).
pub async fn check(client: &Client) -> History {
    let all = runs(client).await;
    let jobs = job_list(client).await.expect("list jobs");
    let mut by_job: HashMap<i64, Vec<&Run>> = HashMap::new();
    for run in &all {
        by_job.entry(run.job_id).or_default().push(run);
    }
    for job in &jobs {
        let name = &job.spec.name;
        assert!(
            job.runtime.running_run_id.is_none(),
            "job {name} still points at run {:?}",
            job.runtime.running_run_id
        );
        let runs = by_job.remove(&job.id).unwrap_or_default();
        for run in &runs {
            check_row(name, run);
        }
        check_no_overlap(name, &runs);
        check_ticks(job, &runs);
    }
    History { runs: all, jobs }
}

fn check_row(job: &str, run: &Run) {
    let what = format!("job {job}, run {}: {run:?}", run.id);
    match run.status.as_str() {
        "running" => panic!("left running: {what}"),
        "succeeded" => {}
        "skipped" => assert!(run.reason.is_some(), "skipped without a reason: {what}"),
        _ => assert!(
            run.error.as_deref().is_some_and(|e| !e.trim().is_empty()),
            "ended {} without saying why: {what}",
            run.status
        ),
    }
    if run.ticks > 1 {
        assert!(
            run.reason.is_some(),
            "stands for {} ticks without a reason: {what}",
            run.ticks
        );
    }
    if run.status != "skipped" {
        assert!(
            run.started_at.is_some() && run.ended_at.is_some(),
            "executed without start and end: {what}"
        );
    }
}

fn check_no_overlap(job: &str, runs: &[&Run]) {
    let mut executed: Vec<&&Run> = runs.iter().filter(|r| r.started_at.is_some()).collect();
    executed.sort_by_key(|r| (r.started_at, r.id));
    for pair in executed.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            a.ended_at <= b.started_at,
            "job {job}: runs {} ({:?}..{:?} on {:?}) and {} ({:?}.. on {:?}) overlap",
            a.id,
            a.started_at,
            a.ended_at,
            a.node_name,
            b.id,
            b.started_at,
            b.node_name
        );
    }
}

fn check_ticks(job: &Job, runs: &[&Run]) {
    let name = &job.spec.name;
    let mut scheduled: Vec<&&Run> = runs.iter().filter(|r| r.trigger == "schedule").collect();
    scheduled.sort_by_key(|r| (r.scheduled_for, r.id));
    for pair in scheduled.windows(2) {
        assert_ne!(
            pair[0].scheduled_for, pair[1].scheduled_for,
            "job {name}: tick {} has two rows ({} and {})",
            pair[0].scheduled_for, pair[0].id, pair[1].id
        );
    }
    let after = |run: &Run| -> Option<DateTime<Utc>> {
        let mut tick = run.scheduled_for;
        for _ in 0..run.ticks {
            tick = job.spec.schedule.next_after(tick)?;
        }
        Some(tick)
    };
    for pair in scheduled.windows(2) {
        assert_eq!(
            after(pair[0]),
            Some(pair[1].scheduled_for),
            "job {name}: ticks missing between run {} ({}, {} ticks) and run {} ({})",
            pair[0].id,
            pair[0].scheduled_for,
            pair[0].ticks,
            pair[1].id,
            pair[1].scheduled_for
        );
    }
    // The last row reaches the next tick, unless the job is paused (its
    // missed ticks are recorded when it resumes) or used up.
    if let (Some(last), true) = (scheduled.last(), job.active) {
        assert_eq!(
            after(last),
            job.nextcall,
            "job {name}: ticks missing between the last run {} ({}, {} ticks) and nextcall",
            last.id,
            last.scheduled_for,
            last.ticks
        );
    }
}
