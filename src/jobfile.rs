//! Jobs as code: a TOML file of `[[job]]` tables (SPEC §7).
//!
//! This module only reads and checks a file; creating and updating jobs goes
//! through `crate::ops`. Every error names the file, the line and the field.
//!
//! ```toml
//! [[job]]
//! name = "refresh-stats"          # required, unique
//! schedule = "every 15m"          # required: "90s", "1h 30m", "0 9 * * MON Europe/Paris", "manual"
//! sql = "ANALYZE"                 # exactly one of sql / shell
//! description = "keep planner statistics fresh"
//! priority = 5                    # 0 is most urgent
//! timeout = "5m"                  # or "none"
//! numbercall = -1                 # runs left; -1 unlimited
//! tags = ["maintenance"]
//! run_as = "reporting"            # sql jobs: SET LOCAL ROLE
//! catchup = "coalesce"            # or "skip"
//! paused = false
//! pause_reason = "waiting for the migration"
//! failure_threshold = 5           # consecutive failures before auto-pause; 0 never
//! retries = 0
//! retry_backoff = "1m"
//! ```

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::job::{ActionKind, Catchup, JobSpec};
use crate::schedule::Schedule;
use crate::timespec;

/// One job read from a file, with the operator-facing options that are not
/// part of the definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileJob {
    pub spec: JobSpec,
    pub paused: bool,
    pub pause_reason: Option<String>,
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
    retries: Option<Spanned<i32>>,
    retry_backoff: Option<Spanned<String>>,
}

/// Read and check a jobs file.
pub fn load(path: &Path) -> Result<Vec<FileJob>, JobFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| JobFileError {
        path: path.to_path_buf(),
        line: 0,
        message: format!("cannot read the file: {e}"),
    })?;
    parse(&text, path)
}

/// Check a jobs file's text; `path` is only used in messages.
pub fn parse(text: &str, path: &Path) -> Result<Vec<FileJob>, JobFileError> {
    let err = |span: Option<Range<usize>>, message: String| JobFileError {
        path: path.to_path_buf(),
        line: span.map_or(0, |s| line_of(text, s.start)),
        message,
    };
    let raw: RawFile = toml::from_str(text).map_err(|e| err(e.span(), e.message().to_string()))?;
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
        });
    }
    Ok(jobs)
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
}
