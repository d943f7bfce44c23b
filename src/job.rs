//! The job model: what a job is (its definition) and what the scheduler has
//! recorded about it (its runtime state). Pure data; queries live in `db::jobs`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::schedule::Schedule;

/// A job's timeout when none is given (SPEC §2: "a sane default (5 min)").
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Priority when none is given; 0 is the most urgent.
pub const DEFAULT_PRIORITY: i32 = 5;
/// Consecutive failures before a job is auto-paused (0 disables auto-pause).
pub const DEFAULT_FAILURE_THRESHOLD: i32 = 5;
/// The first failure of the streak must be at least this old before auto-pause.
pub const DEFAULT_FAILURE_MIN_AGE: Duration = Duration::from_secs(24 * 3600);
/// Base delay of the exponential retry backoff.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(60);

/// What a job executes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Statements run in the job database, as `run_as` (default `crondeck_job`).
    Sql,
    /// A command run by `sh -c` on a node that allows shell jobs.
    Shell,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Sql => "sql",
            ActionKind::Shell => "shell",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sql" => Ok(ActionKind::Sql),
            "shell" => Ok(ActionKind::Shell),
            other => Err(format!(
                "unknown action kind \"{other}\" (expected \"sql\" or \"shell\")"
            )),
        }
    }
}

/// What happens to ticks missed while no node could run the job (SPEC §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Catchup {
    /// Run once for all missed ticks (Odoo's behaviour).
    #[default]
    Coalesce,
    /// Do not run ticks older than one interval; wait for the next slot.
    Skip,
}

impl Catchup {
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::Coalesce => "coalesce",
            Catchup::Skip => "skip",
        }
    }
}

impl FromStr for Catchup {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "coalesce" => Ok(Catchup::Coalesce),
            "skip" => Ok(Catchup::Skip),
            other => Err(format!(
                "unknown catch-up policy \"{other}\" (expected \"coalesce\" or \"skip\")"
            )),
        }
    }
}

/// When to auto-pause a failing job and whether to retry failed ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailurePolicy {
    /// Consecutive failures that auto-pause the job; 0 never auto-pauses.
    pub threshold: i32,
    /// The streak's first failure must be at least this old.
    #[serde(with = "duration_secs")]
    pub min_age: Duration,
    /// Retries of a failed tick; 0 disables retries.
    pub retry_max: i32,
    /// First retry delay; doubled on each further retry.
    #[serde(with = "duration_secs")]
    pub retry_backoff: Duration,
    /// Failures in a row that send a "failure streak" notification; `None`
    /// uses the global `[notifications] failure_streak`.
    pub notify_after: Option<i32>,
}

/// Upper bounds of the failure policy: beyond them a value is a typo, not a
/// policy (and huge counts or delays only postpone what the job needs).
pub const MAX_FAILURE_THRESHOLD: i32 = 10_000;
pub const MAX_RETRIES: i32 = 100;
/// Longest `failure_min_age` and `retry_backoff`: one year.
pub const MAX_POLICY_DURATION: Duration = Duration::from_secs(366 * 86_400);

impl FailurePolicy {
    /// Bounds a person can read; the database refuses negative values too.
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=MAX_FAILURE_THRESHOLD).contains(&self.threshold) {
            return Err(format!(
                "failure threshold {} is out of range (expected 0 = never auto-pause, up to {MAX_FAILURE_THRESHOLD})",
                self.threshold
            ));
        }
        if !(0..=MAX_RETRIES).contains(&self.retry_max) {
            return Err(format!(
                "retries {} is out of range (expected 0 = no retries, up to {MAX_RETRIES})",
                self.retry_max
            ));
        }
        if self.min_age > MAX_POLICY_DURATION {
            return Err("failure min age is too long (expected 0s up to 366 days)".to_string());
        }
        if self.retry_backoff < Duration::from_secs(1) || self.retry_backoff > MAX_POLICY_DURATION {
            return Err("retry backoff is out of range (expected 1s up to 366 days)".to_string());
        }
        if self.notify_after.is_some_and(|n| n < 1) {
            return Err("notify_failures must be 1 or more".into());
        }
        Ok(())
    }
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            threshold: DEFAULT_FAILURE_THRESHOLD,
            min_age: DEFAULT_FAILURE_MIN_AGE,
            retry_max: 0,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            notify_after: None,
        }
    }
}

/// Everything an admin defines about a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    pub description: String,
    pub schedule: Schedule,
    pub catchup: Catchup,
    pub numbercall: i32,
    pub priority: i32,
    pub action: ActionKind,
    pub command: String,
    /// `None` means no timeout, which must be asked for explicitly.
    pub timeout: Option<Duration>,
    pub run_as: Option<String>,
    pub tags: Vec<String>,
    pub failure: FailurePolicy,
}

impl JobSpec {
    /// A spec with the documented defaults for everything but the essentials.
    pub fn new(name: &str, schedule: Schedule, action: ActionKind, command: &str) -> JobSpec {
        JobSpec {
            name: name.to_string(),
            description: String::new(),
            schedule,
            catchup: Catchup::default(),
            numbercall: -1,
            priority: DEFAULT_PRIORITY,
            action,
            command: command.to_string(),
            timeout: Some(DEFAULT_TIMEOUT),
            run_as: None,
            tags: Vec::new(),
            failure: FailurePolicy::default(),
        }
    }

    /// Checks the database would also refuse, made here first so the message
    /// says what was expected instead of naming a constraint.
    pub fn validate(&self) -> Result<(), String> {
        validate_name(&self.name)?;
        if self.command.trim().is_empty() {
            return Err(format!("job \"{}\": the command is empty", self.name));
        }
        if self.priority < 0 {
            return Err(format!(
                "priority {} is negative (expected 0 = most urgent up to any positive number; default {DEFAULT_PRIORITY})",
                self.priority
            ));
        }
        if self.numbercall < -1 {
            return Err(format!(
                "numbercall {} is invalid (expected -1 for unlimited, or the number of runs left)",
                self.numbercall
            ));
        }
        if self.run_as.is_some() && self.action != ActionKind::Sql {
            return Err("run_as applies to sql jobs only".to_string());
        }
        self.failure.validate()?;
        if self.timeout == Some(Duration::ZERO) {
            return Err("a timeout of zero is not allowed (use \"none\" for no timeout)".into());
        }
        for tag in &self.tags {
            if tag.trim().is_empty() || tag.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!(
                    "tag \"{tag}\" is invalid (expected a word without spaces, like \"billing\")"
                ));
            }
        }
        Ok(())
    }
}

/// The longest job name, in characters (the database refuses longer ones too).
pub const MAX_NAME_CHARS: usize = 200;

/// Job names are the handle used everywhere (CLI, console, SQL).
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the job name is empty".to_string());
    }
    let length = name.chars().count();
    if length > MAX_NAME_CHARS {
        return Err(format!(
            "the job name is too long ({length} characters; at most {MAX_NAME_CHARS})"
        ));
    }
    if name.trim() != name {
        return Err(format!(
            "job name \"{name}\" has leading or trailing spaces"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("the job name contains control characters".to_string());
    }
    Ok(())
}

/// Why and until when a job is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pause {
    pub at: DateTime<Utc>,
    pub by: Option<String>,
    pub reason: Option<String>,
    pub until: Option<DateTime<Utc>>,
}

/// What the scheduler has recorded about a job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobRuntime {
    pub first_due_at: Option<DateTime<Utc>>,
    pub last_run_id: Option<i64>,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_ended_at: Option<DateTime<Utc>>,
    pub last_status: Option<String>,
    pub last_duration_ms: Option<i64>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub failure_streak: i32,
    pub failure_streak_since: Option<DateTime<Utc>>,
    pub running_run_id: Option<i64>,
    pub running_node_id: Option<String>,
    pub running_since: Option<DateTime<Utc>>,
    /// Display extras, filled by `db::jobs::job_list` (not by every query).
    pub last_exit_code: Option<i32>,
    pub last_signal: Option<i32>,
    pub last_sqlstate: Option<String>,
    pub last_error: Option<String>,
    pub running_node_name: Option<String>,
}

impl JobRuntime {
    /// "failed (exit 3)", "failed (SQLSTATE 22012)", "succeeded", "-".
    pub fn last_result(&self) -> String {
        let Some(status) = &self.last_status else {
            return "-".to_string();
        };
        if let Some(code) = self.last_exit_code.filter(|c| *c != 0) {
            format!("{status} (exit {code})")
        } else if let Some(signal) = self.last_signal {
            format!("{status} (signal {signal})")
        } else if let Some(state) = &self.last_sqlstate {
            format!("{status} (SQLSTATE {state})")
        } else {
            status.clone()
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub spec: JobSpec,
    pub nextcall: Option<DateTime<Utc>>,
    pub active: bool,
    pub pause: Option<Pause>,
    pub managed_by: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub runtime: JobRuntime,
    /// Set when this crondeck cannot read the stored row (a schedule croner
    /// refuses, say): the reason. Lists show such a job as "unreadable"
    /// (its other fields are placeholders) instead of failing; the scheduler
    /// never runs it.
    pub unreadable: Option<String>,
}

impl Job {
    /// numbercall reached 0: the job has used up its runs.
    pub fn is_done(&self) -> bool {
        self.spec.numbercall == 0
    }
}

/// (De)serialise a `Duration` as whole seconds, for stable JSON.
pub mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::new("a", Schedule::Manual, ActionKind::Sql, "SELECT 1")
    }

    #[test]
    fn defaults_follow_the_spec() {
        let s = spec();
        assert_eq!(s.timeout, Some(Duration::from_secs(300)));
        assert_eq!(s.priority, 5);
        assert_eq!(s.numbercall, -1);
        assert_eq!(s.failure.threshold, 5);
        assert_eq!(s.failure.retry_max, 0);
    }

    #[test]
    fn validation_refuses_what_the_database_would() {
        let mut s = spec();
        s.priority = -1;
        assert!(s.validate().unwrap_err().contains("negative"));
        let mut s = spec();
        s.numbercall = -2;
        assert!(s.validate().unwrap_err().contains("numbercall"));
        let mut s = spec();
        s.name = " padded".into();
        assert!(s.validate().unwrap_err().contains("spaces"));
        let mut s = spec();
        s.command = "  ".into();
        assert!(s.validate().unwrap_err().contains("empty"));
        let mut s = spec();
        s.action = ActionKind::Shell;
        s.run_as = Some("reporting".into());
        assert!(s.validate().unwrap_err().contains("run_as"));
        assert!(spec().validate().is_ok());
    }
}

/// The stable JSON shape of a job (`list --json`, `show --json`, audit rows).
/// Field names are part of the documented interface: add fields, never rename.
#[derive(Debug, Clone, Serialize)]
pub struct JobJson<'a> {
    pub id: i64,
    pub name: &'a str,
    pub description: &'a str,
    pub state: &'a str,
    pub schedule: String,
    pub schedule_words: String,
    pub catchup: Catchup,
    pub nextcall: Option<DateTime<Utc>>,
    pub numbercall: i32,
    pub priority: i32,
    pub active: bool,
    pub paused: Option<&'a Pause>,
    pub action: ActionKind,
    pub command: &'a str,
    /// Seconds; `null` means no timeout.
    pub timeout_seconds: Option<u64>,
    pub run_as: Option<&'a str>,
    pub tags: &'a [String],
    pub failure_policy: &'a FailurePolicy,
    pub managed_by: Option<&'a str>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub runtime: &'a JobRuntime,
    /// Why the stored row cannot be read (state "unreadable"); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<&'a str>,
}

impl Job {
    /// The JSON shape, with the health `state` at database time `now`.
    pub fn to_json(&self, now: DateTime<Utc>) -> JobJson<'_> {
        let health = crate::health::job_health(self, now, &crate::health::Thresholds::default());
        JobJson {
            id: self.id,
            name: &self.spec.name,
            description: &self.spec.description,
            state: health.primary.word(),
            schedule: self.spec.schedule.to_string(),
            schedule_words: self.spec.schedule.describe(),
            catchup: self.spec.catchup,
            nextcall: self.nextcall,
            numbercall: self.spec.numbercall,
            priority: self.spec.priority,
            active: self.active,
            paused: self.pause.as_ref(),
            action: self.spec.action,
            command: &self.spec.command,
            timeout_seconds: self.spec.timeout.map(|t| t.as_secs()),
            run_as: self.spec.run_as.as_deref(),
            tags: &self.spec.tags,
            failure_policy: &self.spec.failure,
            managed_by: self.managed_by.as_deref(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            runtime: &self.runtime,
            unreadable: self.unreadable.as_deref(),
        }
    }
}
