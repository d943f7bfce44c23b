//! What differs between a stored job and a file's definition of it. Pure.
//!
//! Fields split in two: the *definition* (what runs and how: action, command,
//! timeout, description, tags, run_as, catch-up, failure policy) belongs to
//! the file and is updated by every apply; the *operator-owned* fields
//! (schedule and priority, which the console and `crondeck set` edit) are
//! only restored with `--reset-schedule`. Pause state, `nextcall` and
//! `numbercall` are never touched by a re-apply.

use serde::Serialize;

use crate::job::{Job, JobSpec};
use crate::jobfile::format_duration;

/// One field that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: String,
    pub new: String,
    /// False for an operator-owned field kept as it is (no `--reset-schedule`).
    pub applied: bool,
}

fn timeout_text(t: Option<std::time::Duration>) -> String {
    t.map_or_else(|| "none".to_string(), format_duration)
}

fn or_dash(s: Option<&str>) -> String {
    s.unwrap_or("-").to_string()
}

/// The definition fields as (name, text) pairs, compared by their text.
fn definition_fields(spec: &JobSpec) -> [(&'static str, String); 12] {
    let f = &spec.failure;
    [
        ("description", spec.description.clone()),
        ("action", spec.action.as_str().to_string()),
        ("command", spec.command.clone()),
        ("timeout", timeout_text(spec.timeout)),
        ("run_as", or_dash(spec.run_as.as_deref())),
        ("tags", spec.tags.join(",")),
        ("catchup", spec.catchup.as_str().to_string()),
        ("failure_threshold", f.threshold.to_string()),
        ("failure_min_age", format_duration(f.min_age)),
        ("retries", f.retry_max.to_string()),
        ("retry_backoff", format_duration(f.retry_backoff)),
        (
            "notify_failures",
            f.notify_after
                .map_or_else(|| "default".to_string(), |n| n.to_string()),
        ),
    ]
}

/// Every field of `job` that `spec` (managed as `managed_by`) would change.
pub fn diff(job: &Job, spec: &JobSpec, managed_by: &str, reset_schedule: bool) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    let old = definition_fields(&job.spec);
    let new = definition_fields(spec);
    for ((field, old), (_, new)) in old.into_iter().zip(new) {
        if old != new {
            changes.push(FieldChange {
                field,
                old,
                new,
                applied: true,
            });
        }
    }
    if job.managed_by.as_deref() != Some(managed_by) {
        changes.push(FieldChange {
            field: "managed_by",
            old: or_dash(job.managed_by.as_deref()),
            new: managed_by.to_string(),
            applied: true,
        });
    }
    if job.spec.schedule != spec.schedule {
        changes.push(FieldChange {
            field: "schedule",
            old: job.spec.schedule.to_string(),
            new: spec.schedule.to_string(),
            applied: reset_schedule,
        });
    }
    if job.spec.priority != spec.priority {
        changes.push(FieldChange {
            field: "priority",
            old: job.spec.priority.to_string(),
            new: spec.priority.to_string(),
            applied: reset_schedule,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{ActionKind, JobRuntime};
    use crate::schedule::Schedule;
    use chrono::Utc;

    fn stored(spec: JobSpec) -> Job {
        Job {
            id: 1,
            spec,
            nextcall: None,
            active: true,
            pause: None,
            managed_by: Some("src".into()),
            created_at: Utc::now(),
            updated_at: Utc::now(),
            runtime: JobRuntime::default(),
            unreadable: None,
        }
    }

    fn spec(schedule: &str) -> JobSpec {
        JobSpec::new(
            "a",
            Schedule::parse(schedule).unwrap(),
            ActionKind::Sql,
            "SELECT 1",
        )
    }

    #[test]
    fn the_same_definition_differs_in_nothing() {
        assert!(diff(&stored(spec("5m")), &spec("5m"), "src", true).is_empty());
    }

    #[test]
    fn schedule_edits_are_kept_unless_reset() {
        let job = stored(spec("10m"));
        let kept = diff(&job, &spec("5m"), "src", false);
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].field, "schedule");
        assert!(!kept[0].applied);
        assert!(diff(&job, &spec("5m"), "src", true)[0].applied);
    }

    #[test]
    fn definition_changes_and_adoption_are_listed() {
        let job = stored(spec("5m"));
        let mut new = spec("5m");
        new.timeout = None;
        new.tags = vec!["x".into()];
        let changes = diff(&job, &new, "other", false);
        let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
        assert_eq!(fields, ["timeout", "tags", "managed_by"]);
        assert_eq!(changes[0].old, "5m");
        assert_eq!(changes[0].new, "none");
    }
}
