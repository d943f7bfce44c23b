//! Job health from times alone (SPEC §4). Pure: the caller passes the
//! database's "now", so the console, `crondeck check` and the metrics agree
//! with each other and with the scheduler.
//!
//! - **running**: a run is in progress.
//! - **late**: `nextcall` passed more than a grace (default 30 s) ago and
//!   nothing is running.
//! - **overdue**: no successful run for more than twice the job's interval,
//!   measured from the last success, or for a job that never succeeded from
//!   when it first became due. For cron schedules the interval is the gap
//!   between the two most recent expected ticks; for monthly intervals the
//!   actual calendar gap. Manual jobs are never overdue. A run in progress
//!   that started before the job was overdue holds it off: the job is
//!   overdue only once that run has gone on for longer than the threshold
//!   and longer than twice the job's last run (its timeout for a first
//!   run), so a job that is slow by
//!   design, whose runs take longer than two intervals, does not turn
//!   overdue in the middle of every run and "recover" at its end).
//! - **failing**: the last run did not succeed.
//! - **paused** / **done** (numbercall exhausted) / **ok**.
//!
//! A job can be several of these at once (late and failing, say); `primary`
//! is the one to show first, in this order: done, paused, overdue, running,
//! late, failing, ok. An overdue job outranks running: a run that keeps a job
//! from succeeding past the limits above is the alarm, not the activity.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::job::Job;
use crate::schedule::Schedule;

/// Default grace before a job whose tick passed counts as late.
pub const DEFAULT_LATE_GRACE: Duration = Duration::from_secs(30);

/// The state shown first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Overdue,
    Late,
    Failing,
    Running,
    Ok,
    Paused,
    Done,
    /// The stored row cannot be read by this crondeck (see `Job::unreadable`).
    /// Not in `ALL`: it is not a state a healthy cluster shows.
    Unreadable,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Overdue,
        State::Late,
        State::Failing,
        State::Running,
        State::Ok,
        State::Paused,
        State::Done,
    ];

    /// The word shown for the state; never colour alone.
    pub fn word(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Late => "late",
            State::Overdue => "overdue",
            State::Failing => "failing",
            State::Paused => "paused",
            State::Done => "done",
            State::Ok => "ok",
            State::Unreadable => "unreadable",
        }
    }

    /// A one-character glyph for narrow columns.
    pub fn glyph(self) -> &'static str {
        match self {
            State::Running => "▶",
            State::Late => "!",
            State::Overdue => "‼",
            State::Failing => "✗",
            State::Paused => "‖",
            State::Done => "✓",
            State::Ok => "·",
            State::Unreadable => "?",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// Everything that holds for a job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct JobHealth {
    pub primary: State,
    pub running: bool,
    pub late: bool,
    pub overdue: bool,
    pub failing: bool,
}

/// Health thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub late_grace: Duration,
    /// Overdue after this many intervals without success (SPEC: 2).
    pub overdue_intervals: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            late_grace: DEFAULT_LATE_GRACE,
            overdue_intervals: 2,
        }
    }
}

/// The health of `job` at database time `now`.
pub fn job_health(job: &Job, now: DateTime<Utc>, thresholds: &Thresholds) -> JobHealth {
    if job.unreadable.is_some() {
        return JobHealth {
            primary: State::Unreadable,
            running: false,
            late: false,
            overdue: false,
            failing: false,
        };
    }
    let rt = &job.runtime;
    let running = rt.running_run_id.is_some();
    let done = job.is_done() && !running;
    let paused = !job.active && !job.is_done();
    let failing = rt.failure_streak > 0
        || matches!(
            rt.last_status.as_deref(),
            Some("failed" | "timed_out" | "abandoned" | "interrupted" | "cancelled")
        );
    let active = job.active && !done;
    let late = active
        && !running
        && job
            .nextcall
            .is_some_and(|next| now - next > chrono_duration(thresholds.late_grace));
    let overdue = active && is_overdue(job, now, thresholds.overdue_intervals);
    let primary = if done {
        State::Done
    } else if paused {
        State::Paused
    } else if overdue {
        State::Overdue
    } else if running {
        State::Running
    } else if late {
        State::Late
    } else if failing {
        State::Failing
    } else {
        State::Ok
    };
    JobHealth {
        primary,
        running,
        late,
        overdue,
        failing,
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

fn is_overdue(job: &Job, now: DateTime<Utc>, intervals: u32) -> bool {
    if matches!(job.spec.schedule, Schedule::Manual) {
        return false;
    }
    let rt = &job.runtime;
    // Never succeeded: measure from when it first became due.
    let since = rt
        .last_success_at
        .or(rt.first_due_at)
        .or(job.nextcall.filter(|next| *next <= now));
    let (Some(since), Some(interval)) = (since, job.spec.schedule.interval_at(now)) else {
        return false;
    };
    // Checked: a threshold of many intervals of a long schedule is past the
    // end of time, which nothing is overdue by.
    let Some(threshold) = i32::try_from(intervals)
        .ok()
        .and_then(|n| interval.checked_mul(n))
    else {
        return false;
    };
    if let Some(started) = rt.running_since.filter(|_| rt.running_run_id.is_some()) {
        if started - since <= threshold {
            // Twice its last run; a first run, its timeout (which stops it).
            let expected = match rt.last_duration_ms {
                Some(ms) => chrono::Duration::milliseconds(ms.max(0))
                    .checked_mul(2)
                    .unwrap_or(chrono::Duration::MAX),
                None => job
                    .spec
                    .timeout
                    .map_or(chrono::Duration::zero(), chrono_duration),
            };
            let allowed = expected.max(threshold);
            return now - started > allowed;
        }
    }
    now - since > threshold
}

/// The cluster as the console and `check` see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClusterHealth {
    pub live_nodes: usize,
    pub workers: usize,
    pub busy: usize,
}

impl ClusterHealth {
    /// Nothing is executing: the dead man's switch of the scheduler itself.
    pub fn no_live_node(&self) -> bool {
        self.live_nodes == 0
    }
}

/// Counts of jobs by primary state, in `State::ALL` order.
pub fn count_states<'a>(healths: impl IntoIterator<Item = &'a JobHealth>) -> [(State, usize); 7] {
    let mut counts = State::ALL.map(|s| (s, 0));
    for health in healths {
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == health.primary) {
            slot.1 += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{ActionKind, JobRuntime, JobSpec};
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, s).unwrap()
    }

    fn job(schedule: &str) -> Job {
        Job {
            id: 1,
            spec: JobSpec::new(
                "j",
                Schedule::parse(schedule).unwrap(),
                ActionKind::Sql,
                "SELECT 1",
            ),
            nextcall: Some(at(10, 0, 0)),
            active: true,
            pause: None,
            managed_by: None,
            created_at: at(9, 0, 0),
            updated_at: at(9, 0, 0),
            runtime: JobRuntime::default(),
            unreadable: None,
        }
    }

    fn health(job: &Job, now: DateTime<Utc>) -> JobHealth {
        job_health(job, now, &Thresholds::default())
    }

    #[test]
    fn a_job_due_in_the_future_is_ok() {
        assert_eq!(health(&job("every 5m"), at(9, 59, 0)).primary, State::Ok);
    }

    #[test]
    fn late_starts_strictly_after_the_grace() {
        let j = job("every 5m");
        assert_eq!(health(&j, at(10, 0, 30)).primary, State::Ok);
        assert_eq!(health(&j, at(10, 0, 31)).primary, State::Late);
    }

    #[test]
    fn running_is_not_late() {
        let mut j = job("every 5m");
        j.runtime.running_run_id = Some(7);
        let h = health(&j, at(10, 1, 0));
        assert_eq!(h.primary, State::Running);
        assert!(!h.late);
    }

    #[test]
    fn overdue_after_twice_the_interval_without_success() {
        let mut j = job("every 5m");
        j.nextcall = Some(at(10, 15, 0));
        j.runtime.last_success_at = Some(at(10, 0, 0));
        assert!(
            !health(&j, at(10, 10, 0)).overdue,
            "exactly two intervals is not overdue"
        );
        let h = health(&j, at(10, 10, 1));
        assert!(h.overdue);
        assert_eq!(h.primary, State::Overdue);
    }

    /// Issue 14.5: a job slow by design (runs of 25 s every 10 s) must not
    /// flap overdue → recovered → overdue in the middle of each run.
    #[test]
    fn a_run_in_progress_that_started_in_time_holds_overdue_off() {
        let mut j = job("every 10s");
        j.runtime.last_success_at = Some(at(10, 0, 25));
        j.runtime.last_duration_ms = Some(25_000);
        j.runtime.running_run_id = Some(8);
        j.runtime.running_since = Some(at(10, 0, 25));
        j.nextcall = Some(at(10, 0, 30));
        // 24 s after the last success: two intervals passed, the run goes on.
        let h = health(&j, at(10, 0, 49));
        assert!(!h.overdue, "{h:?}");
        assert_eq!(h.primary, State::Running);
        // Longer than twice its last run: stuck, overdue.
        assert!(health(&j, at(10, 1, 16)).overdue);
        // Without a run in progress the same gap is overdue, as before.
        j.runtime.running_run_id = None;
        j.runtime.running_since = None;
        assert!(health(&j, at(10, 0, 49)).overdue);
        // A run that started when the job was already overdue does not help.
        j.runtime.running_run_id = Some(9);
        j.runtime.running_since = Some(at(10, 0, 50));
        assert!(health(&j, at(10, 0, 51)).overdue);
    }

    /// Regression: `check --overdue-intervals 4000000000` on a monthly job
    /// panicked multiplying the interval.
    #[test]
    fn a_threshold_past_the_end_of_time_is_never_overdue_and_never_panics() {
        let mut j = job("every 1 month");
        j.runtime.last_success_at = Some(at(10, 0, 0));
        let thresholds = Thresholds {
            overdue_intervals: u32::MAX,
            ..Thresholds::default()
        };
        let far = at(10, 0, 0) + chrono::Duration::days(365 * 100);
        assert!(!job_health(&j, far, &thresholds).overdue);
    }

    #[test]
    fn a_job_that_never_succeeded_is_measured_from_when_it_first_became_due() {
        let mut j = job("every 5m");
        j.runtime.first_due_at = Some(at(10, 0, 0));
        j.runtime.failure_streak = 3;
        j.runtime.last_status = Some("failed".into());
        j.nextcall = Some(at(10, 15, 0));
        assert_eq!(health(&j, at(10, 9, 0)).primary, State::Failing);
        assert_eq!(health(&j, at(10, 10, 1)).primary, State::Overdue);
        // Never claimed at all: from its first tick.
        let mut fresh = job("every 5m");
        fresh.nextcall = Some(at(10, 0, 0));
        assert!(health(&fresh, at(10, 10, 1)).overdue);
    }

    #[test]
    fn cron_jobs_use_the_gap_between_their_two_latest_ticks() {
        // Daily at 09:00: overdue after 48 h without success.
        let mut j = job("0 9 * * * UTC");
        j.runtime.last_success_at = Some(at(9, 0, 0));
        j.nextcall = Some(at(9, 0, 0) + chrono::Duration::days(1));
        let two_days = at(9, 0, 0) + chrono::Duration::days(2);
        assert!(!health(&j, two_days).overdue);
        assert!(health(&j, two_days + chrono::Duration::seconds(1)).overdue);
    }

    #[test]
    fn monthly_jobs_use_the_calendar_gap() {
        let mut j = job("every 1 month");
        let last = Utc.with_ymd_and_hms(2026, 1, 31, 0, 0, 0).unwrap();
        j.runtime.last_success_at = Some(last);
        j.nextcall = Some(Utc.with_ymd_and_hms(2026, 2, 28, 0, 0, 0).unwrap());
        // Two months after Jan 31 is well within twice a ~30-day interval... but
        // 70 days is not.
        assert!(!health(&j, last + chrono::Duration::days(50)).overdue);
        assert!(health(&j, last + chrono::Duration::days(70)).overdue);
    }

    #[test]
    fn paused_and_done_jobs_are_neither_late_nor_overdue() {
        let mut j = job("every 5m");
        j.active = false;
        let h = health(&j, at(12, 0, 0));
        assert_eq!(h.primary, State::Paused);
        assert!(!h.late && !h.overdue);
        j.spec.numbercall = 0;
        assert_eq!(health(&j, at(12, 0, 0)).primary, State::Done);
    }

    #[test]
    fn manual_jobs_are_never_late_or_overdue() {
        let mut j = job("manual");
        j.nextcall = None;
        j.runtime.first_due_at = Some(at(1, 0, 0));
        assert_eq!(health(&j, at(23, 0, 0)).primary, State::Ok);
    }

    #[test]
    fn every_state_has_a_word_and_a_glyph() {
        for state in State::ALL {
            assert!(!state.word().is_empty());
            assert!(!state.glyph().is_empty());
        }
    }

    #[test]
    fn counts_follow_primary_states() {
        let j = job("every 5m");
        let healths = [health(&j, at(9, 0, 0)), health(&j, at(11, 0, 0))];
        let counts = count_states(&healths);
        assert!(counts.contains(&(State::Ok, 1)));
        assert!(counts.contains(&(State::Overdue, 1)));
    }
}
