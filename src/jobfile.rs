//! Jobs as code: a TOML file of `[[job]]` tables (SPEC §7).
//!
//! This module only reads and checks a file; creating and updating jobs goes
//! through `crate::ops`. Every error names the file, the line and the field.
//!
//! ```toml
//! source = "billing"              # optional: who manages these jobs (see below)
//!
//! [[job]]
//! name = "refresh-stats"          # required, unique
//! schedule = "every 15m"          # required: "90s", "1h 30m", "0 9 * * MON Europe/Paris", "manual"
//! sql = "ANALYZE"                 # exactly one of sql / shell
//! description = "keep planner statistics fresh"
//! priority = 5                    # 0 is most urgent
//! timeout = "5m"                  # or "none"
//! numbercall = -1                 # runs left; -1 unlimited
//! tags = ["maintenance"]
//! run_as = "reporting"            # sql jobs: role they run as (default crondeck_job)
//! catchup = "coalesce"            # or "skip"
//! paused = false
//! pause_reason = "waiting for the migration"
//! failure_threshold = 5           # consecutive failures before auto-pause; 0 never
//! failure_min_age = "24h"         # the streak's first failure must be this old ("0s": at once)
//! retries = 0
//! retry_backoff = "1m"
//! notify_failures = 3             # failures in a row that notify; default [notifications]
//! ```
//!
//! ## Identity (`source`)
//!
//! `crondeck apply` marks the jobs it creates as managed by the file's
//! identity, stored in the job's `managed_by`: the top-level `source` if the
//! file has one, else `file:` and the file's canonical path. `--prune` removes
//! only jobs with that identity. Set `source` when the same file is applied
//! from several checkouts (a laptop and CI), so that they agree.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::job::{ActionKind, Catchup, JobSpec};
use crate::schedule::Schedule;
use crate::timespec;

mod export;
pub use export::{export_json, export_toml, format_duration};

/// A whole jobs file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// The top-level `source`, if given (see the module doc).
    pub source: Option<String>,
    pub jobs: Vec<FileJob>,
}

/// One job read from a file, with the operator-facing options that are not
/// part of the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileJob {
    pub spec: JobSpec,
    pub paused: bool,
    pub pause_reason: Option<String>,
    /// Line of the job's `name`, for messages about the job as a whole.
    pub line: usize,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}: {message}")]
pub struct JobFileError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    source: Option<Spanned<String>>,
    #[serde(default)]
    job: Vec<RawJob>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJob {
    name: Spanned<String>,
    schedule: Spanned<String>,
    sql: Option<Spanned<String>>,
    shell: Option<Spanned<String>>,
    #[serde(default)]
    description: String,
    priority: Option<Spanned<i32>>,
    timeout: Option<Spanned<String>>,
    numbercall: Option<Spanned<i32>>,
    #[serde(default)]
    tags: Vec<String>,
    run_as: Option<Spanned<String>>,
    catchup: Option<Spanned<String>>,
    #[serde(default)]
    paused: bool,
    pause_reason: Option<String>,
    failure_threshold: Option<Spanned<i32>>,
    failure_min_age: Option<Spanned<String>>,
    retries: Option<Spanned<i32>>,
    retry_backoff: Option<Spanned<String>>,
    notify_failures: Option<Spanned<i32>>,
}

/// Read and check a jobs file.
pub fn load(path: &Path) -> Result<JobFile, JobFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobFileError {
        path: path.to_path_buf(),
        line: 0,
        message: format!("cannot read the file: {e}"),
    })?;
    parse_file(&text, path)
}

/// Check a jobs file's text and return its jobs; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Vec<FileJob>, JobFileError> {
    parse_file(text, path).map(|file| file.jobs)
}

/// Check a jobs file's text; `path` is only used in messages.
pub fn parse_file(text: &str, path: &Path) -> Result<JobFile, JobFileError> {
    let err = |span: Option<Range<usize>>, message: String| JobFileError {
        path: path.to_path_buf(),
        line: span.map_or(0, |s| line_of(text, s.start)),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
    let source = match raw.source {
        Some(source) if source.get_ref().trim().is_empty() => {
            return Err(err(
                Some(source.span()),
                "field `source`: must not be empty (or leave it out to use the file's path)".into(),
            ))
        }
        Some(source) => Some(source.into_inner()),
        None => None,
    };
    let mut seen = HashSet::new();
    let mut jobs = Vec::with_capacity(raw.job.len());
    for job in raw.job {
        let name = job.name.get_ref().clone();
        let field_err = |span: Range<usize>, field: &str, message: String| {
            err(
                Some(span),
                format!("job \"{name}\", field `{field}`: {message}"),
            )
        };
        if !seen.insert(name.clone()) {
            return Err(field_err(
                job.name.span(),
                "name",
                "duplicate job name in this file".into(),
            ));
        }
        let schedule = Schedule::parse(job.schedule.get_ref())
            .map_err(|e| field_err(job.schedule.span(), "schedule", e.to_string()))?;
        let (action, command) = match (&job.sql, &job.shell) {
            (Some(sql), None) => (ActionKind::Sql, sql.get_ref().clone()),
            (None, Some(shell)) => (ActionKind::Shell, shell.get_ref().clone()),
            _ => {
                return Err(field_err(
                    job.name.span(),
                    "sql/shell",
                    "give exactly one of `sql` or `shell`".into(),
                ))
            }
        };
        let mut spec = JobSpec::new(&name, schedule, action, &command);
        spec.description = job.description;
        spec.tags = job.tags;
        if let Some(priority) = job.priority {
            spec.priority = *priority.get_ref();
        }
        if let Some(numbercall) = job.numbercall {
            spec.numbercall = *numbercall.get_ref();
        }
        if let Some(timeout) = &job.timeout {
            spec.timeout = timespec::parse_timeout(timeout.get_ref())
                .map_err(|e| field_err(timeout.span(), "timeout", e.to_string()))?;
        }
        if let Some(run_as) = job.run_as {
            spec.run_as = Some(run_as.into_inner());
        }
        if let Some(catchup) = &job.catchup {
            spec.catchup = catchup
                .get_ref()
                .parse::<Catchup>()
                .map_err(|e| field_err(catchup.span(), "catchup", e))?;
        }
        if let Some(threshold) = &job.failure_threshold {
            spec.failure.threshold = *threshold.get_ref();
            if spec.failure.threshold < 0 {
                return Err(field_err(
                    threshold.span(),
                    "failure_threshold",
                    "must be 0 (never auto-pause) or more".into(),
                ));
            }
        }
        if let Some(age) = &job.failure_min_age {
            spec.failure.min_age = parse_duration_or_zero(age.get_ref())
                .map_err(|e| field_err(age.span(), "failure_min_age", e.to_string()))?;
        }
        if let Some(notify) = &job.notify_failures {
            if *notify.get_ref() < 1 {
                return Err(field_err(
                    notify.span(),
                    "notify_failures",
                    "must be 1 or more (leave it out to use the [notifications] default)".into(),
                ));
            }
            spec.failure.notify_after = Some(*notify.get_ref());
        }
        if let Some(retries) = &job.retries {
            spec.failure.retry_max = *retries.get_ref();
            if spec.failure.retry_max < 0 {
                return Err(field_err(
                    retries.span(),
                    "retries",
                    "must be 0 or more".into(),
                ));
            }
        }
        if let Some(backoff) = &job.retry_backoff {
            spec.failure.retry_backoff = timespec::parse_duration(backoff.get_ref())
                .map_err(|e| field_err(backoff.span(), "retry_backoff", e.to_string()))?;
        }
        spec.validate()
            .map_err(|message| err(Some(job.name.span()), format!("job \"{name}\": {message}")))?;
        jobs.push(FileJob {
            spec,
            paused: job.paused,
            pause_reason: job.pause_reason,
            line: line_of(text, job.name.span().start),
        });
    }
    Ok(JobFile { source, jobs })
}

/// A duration, where zero (`"0"`, `"0s"`) is meaningful ("at once").
pub(crate) fn parse_duration_or_zero(
    text: &str,
) -> Result<std::time::Duration, timespec::TimeSpecError> {
    let trimmed = text.trim();
    if trimmed == "0" || trimmed.trim_end_matches(char::is_alphabetic) == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    timespec::parse_duration(text)
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Vec<FileJob>, JobFileError> {
        parse(text, Path::new("jobs.toml"))
    }

    #[test]
    fn reads_a_job_with_defaults() {
        let jobs = parse_str("[[job]]\nname = \"a\"\nschedule = \"15m\"\nsql = \"SELECT 1\"\n")
            .expect("valid file");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].spec.name, "a");
        assert_eq!(jobs[0].spec.action, ActionKind::Sql);
        assert_eq!(jobs[0].spec.priority, 5);
        assert!(!jobs[0].paused);
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = parse_str(
            "[[job]]\nname = \"a\"\nschedule = \"15m\"\nsql = \"SELECT 1\"\ncolour = \"red\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("jobs.toml:5:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn bad_schedule_names_the_field_and_line() {
        let err = parse_str("[[job]]\nname = \"a\"\nschedule = \"every 0m\"\nsql = \"SELECT 1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("jobs.toml:3:"), "{err}");
        assert!(err.contains("field `schedule`"), "{err}");
    }

    #[test]
    fn duplicate_name_and_missing_action_are_refused() {
        let dup = "[[job]]\nname = \"a\"\nschedule = \"1m\"\nsql = \"x\"\n[[job]]\nname = \"a\"\nschedule = \"1m\"\nsql = \"x\"\n";
        let err = parse_str(dup).unwrap_err().to_string();
        assert!(
            err.starts_with("jobs.toml:6:") && err.contains("duplicate"),
            "{err}"
        );
        let none = "[[job]]\nname = \"a\"\nschedule = \"1m\"\n";
        let err = parse_str(none).unwrap_err().to_string();
        assert!(err.contains("exactly one of `sql` or `shell`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_line() {
        let err = parse_str(
            "[[job]]\nname = \"a\"\nschedule = \"1m\"\nsql = \"x\"\npriority = \"high\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("jobs.toml:5:"), "{err}");
    }

    #[test]
    fn the_demo_file_is_valid() {
        let jobs = parse(
            include_str!("../assets/demo.toml"),
            Path::new("assets/demo.toml"),
        )
        .expect("demo jobs parse");
        assert!(jobs.len() >= 7);
    }

    #[test]
    fn source_and_new_fields_are_read() {
        let file = parse_file(
            "source = \"billing\"\n[[job]]\nname = \"a\"\nschedule = \"1m\"\nsql = \"x\"\nfailure_min_age = \"0s\"\nnotify_failures = 2\n",
            Path::new("jobs.toml"),
        )
        .expect("valid file");
        assert_eq!(file.source.as_deref(), Some("billing"));
        assert_eq!(file.jobs[0].spec.failure.min_age, std::time::Duration::ZERO);
        assert_eq!(file.jobs[0].spec.failure.notify_after, Some(2));
        assert_eq!(file.jobs[0].line, 3);
    }

    #[test]
    fn unknown_time_zone_names_the_schedule_line() {
        let err = parse_str(
            "[[job]]\nname = \"a\"\nschedule = \"0 9 * * MON Mars/Olympus\"\nsql = \"x\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("jobs.toml:3:"), "{err}");
        assert!(err.contains("field `schedule`"), "{err}");
    }
}
