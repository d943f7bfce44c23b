//! Writing jobs back out in the jobs-file format (`crondeck export`).
//!
//! The writer is the parser's inverse: `parse(export(jobs))` yields the same
//! definitions, so `export` followed by `apply` changes nothing. Fields equal
//! to their default are left out, so an exported file reads like a
//! hand-written one.

use std::time::Duration;

use serde::Serialize;

use crate::job::{
    ActionKind, DEFAULT_FAILURE_MIN_AGE, DEFAULT_FAILURE_THRESHOLD, DEFAULT_RETRY_BACKOFF,
};
use crate::job::{Catchup, Job, DEFAULT_PRIORITY, DEFAULT_TIMEOUT};

#[derive(Serialize)]
struct ExportFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    job: Vec<ExportJob<'a>>,
}

/// Field order here is the order in the file.
#[derive(Serialize)]
struct ExportJob<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    schedule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sql: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shell: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    numbercall: Option<i32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    tags: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    run_as: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    catchup: Option<&'static str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pause_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_threshold: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_min_age: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retries: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_backoff: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notify_failures: Option<i32>,
}

fn unless_default<T: PartialEq>(value: T, default: T) -> Option<T> {
    (value != default).then_some(value)
}

fn export_job(job: &Job) -> ExportJob<'_> {
    let spec = &job.spec;
    let paused = !job.active && !job.is_done();
    ExportJob {
        name: &spec.name,
        description: &spec.description,
        schedule: spec.schedule.to_string(),
        sql: (spec.action == ActionKind::Sql).then_some(spec.command.as_str()),
        shell: (spec.action == ActionKind::Shell).then_some(spec.command.as_str()),
        priority: unless_default(spec.priority, DEFAULT_PRIORITY),
        timeout: match spec.timeout {
            None => Some("none".to_string()),
            Some(t) if t == DEFAULT_TIMEOUT => None,
            Some(t) => Some(format_duration(t)),
        },
        numbercall: unless_default(spec.numbercall, -1),
        tags: &spec.tags,
        run_as: spec.run_as.as_deref(),
        catchup: unless_default(spec.catchup, Catchup::Coalesce).map(Catchup::as_str),
        paused,
        pause_reason: job
            .pause
            .as_ref()
            .filter(|_| paused)
            .and_then(|p| p.reason.as_deref()),
        failure_threshold: unless_default(spec.failure.threshold, DEFAULT_FAILURE_THRESHOLD),
        failure_min_age: unless_default(spec.failure.min_age, DEFAULT_FAILURE_MIN_AGE)
            .map(format_duration),
        retries: unless_default(spec.failure.retry_max, 0),
        retry_backoff: unless_default(spec.failure.retry_backoff, DEFAULT_RETRY_BACKOFF)
            .map(format_duration),
        notify_failures: spec.failure.notify_after,
    }
}

/// A duration in the largest unit that divides it exactly: "2m", "36h",
/// "90s", "0s". The parser reads all of these back.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

/// The jobs as a TOML jobs file, with `source` when given.
pub fn export_toml(source: Option<&str>, jobs: &[Job]) -> Result<String, toml::ser::Error> {
    let file = ExportFile {
        source,
        job: jobs.iter().map(export_job).collect(),
    };
    let body = toml::to_string(&file)?;
    Ok(format!(
        "# Jobs exported by crondeck {}; apply with `crondeck apply FILE`.\n\n{body}",
        env!("CARGO_PKG_VERSION")
    ))
}

/// The same structure as JSON, for scripts (`apply` reads TOML).
pub fn export_json(source: Option<&str>, jobs: &[Job]) -> Result<String, serde_json::Error> {
    let file = ExportFile {
        source,
        job: jobs.iter().map(export_job).collect(),
    };
    serde_json::to_string_pretty(&file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{JobRuntime, JobSpec, Pause};
    use crate::schedule::Schedule;
    use chrono::{TimeZone, Utc};
    use std::path::Path;

    fn job(spec: JobSpec) -> Job {
        let at = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        Job {
            id: 1,
            spec,
            nextcall: Some(at),
            active: true,
            pause: None,
            managed_by: None,
            created_at: at,
            updated_at: at,
            runtime: JobRuntime::default(),
            unreadable: None,
        }
    }

    #[test]
    fn durations_use_the_largest_exact_unit() {
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(86_400 * 14)), "2w");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }

    #[test]
    fn export_then_parse_gives_the_same_definitions() {
        let plain = JobSpec::new(
            "plain",
            Schedule::parse("every 15m").unwrap(),
            ActionKind::Sql,
            "SELECT 1",
        );
        let mut rich = JobSpec::new(
            "rich \"quoted\"",
            Schedule::parse("0 9 * * MON Europe/Paris").unwrap(),
            ActionKind::Shell,
            "echo 'multi'\nline",
        );
        rich.description = "has\ttabs".into();
        rich.priority = 0;
        rich.timeout = None;
        rich.numbercall = 4;
        rich.tags = vec!["a".into(), "b".into()];
        rich.catchup = Catchup::Skip;
        rich.failure.threshold = 0;
        rich.failure.min_age = Duration::ZERO;
        rich.failure.retry_max = 2;
        rich.failure.retry_backoff = Duration::from_secs(90);
        rich.failure.notify_after = Some(3);
        let mut paused = job(rich.clone());
        paused.active = false;
        paused.pause = Some(Pause {
            at: paused.created_at,
            by: None,
            reason: Some("why".into()),
            until: None,
        });
        let manual = JobSpec::new("m", Schedule::Manual, ActionKind::Sql, "SELECT 2");
        let jobs = vec![job(plain.clone()), paused, job(manual.clone())];
        let text = export_toml(Some("src"), &jobs).expect("serialises");
        let file = crate::jobfile::parse_file(&text, Path::new("export.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(file.source.as_deref(), Some("src"));
        let specs: Vec<&JobSpec> = file.jobs.iter().map(|j| &j.spec).collect();
        assert_eq!(specs, vec![&plain, &rich, &manual]);
        assert!(file.jobs[1].paused);
        assert_eq!(file.jobs[1].pause_reason.as_deref(), Some("why"));
    }
}
