//! Plain-text output of the commands: aligned tables, local times.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::db::audit::AuditRecord;
use crate::job::Job;
use crate::timefmt::{local, local_or_dash};
use crate::timespec::{format_duration_short, format_relative};

/// Left-aligned columns separated by two spaces; the last column is not padded.
/// Every cell is sanitised: names, commands and errors come from users and jobs.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| crate::text::field(cell)).collect())
        .collect();
    let widths = column_widths(header, &rows);
    let mut out = table_line(&widths, &mut header.iter().copied());
    for row in &rows {
        out.push_str(&table_line(&widths, &mut row.iter().map(String::as_str)));
    }
    out
}

/// The widest of each column (header included), of escaped cells.
fn column_widths(header: &[&str], rows: &[Vec<String>]) -> Vec<usize> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    widths
}

/// One line of a table: cells padded to `widths`, the last one not.
fn table_line(widths: &[usize], cells: &mut dyn Iterator<Item = &str>) -> String {
    let mut text = String::new();
    for (i, cell) in cells.enumerate() {
        if i + 1 == widths.len() {
            text.push_str(cell);
        } else {
            let _ = write!(text, "{cell:<width$}  ", width = widths[i]);
        }
    }
    let mut line = text.trim_end().to_string();
    line.push('\n');
    line
}

/// "in 4m (2026-11-21 10:04:00 +01:00)", or why there is no next run.
pub fn next_run(job: &Job) -> String {
    match job.nextcall {
        None => "never (manual)".to_string(),
        Some(_) if job.is_done() => "never (done)".to_string(),
        Some(at) => local(at),
    }
}

fn next_run_relative(job: &Job, now: DateTime<Utc>) -> String {
    match job.nextcall {
        None => "manual".to_string(),
        Some(_) if job.is_done() => "-".to_string(),
        Some(_) if !job.active => "paused".to_string(),
        Some(at) if at <= now && now - at < chrono::Duration::seconds(1) => "due now".to_string(),
        Some(at) if at < now => format!("late {}", format_duration_short(now - at)),
        Some(at) => format_relative(at, now),
    }
}

fn state_word(job: &Job, now: DateTime<Utc>) -> String {
    let health = crate::health::job_health(job, now, &crate::health::Thresholds::default());
    health.primary.word().to_string()
}

pub const NO_JOBS: &str = "no jobs (add one with `crondeck add`, see `crondeck add --help`)\n";

const JOB_HEADER: [&str; 10] = [
    "STATE", "NAME", "SCHEDULE", "NEXT RUN", "LAST RUN", "RESULT", "DURATION", "PRI", "NODE",
    "TAGS",
];

/// One row of the jobs table, unescaped.
fn job_row(job: &Job, now: DateTime<Utc>) -> Vec<String> {
    let rt = &job.runtime;
    vec![
        state_word(job, now),
        job.spec.name.clone(),
        job.spec.schedule.describe(),
        next_run_relative(job, now),
        rt.last_started_at
            .map_or_else(|| "-".to_string(), |t| format_relative(t, now)),
        rt.last_result(),
        millis_short(rt.last_duration_ms),
        job.spec.priority.to_string(),
        rt.running_node_name.clone().unwrap_or_else(|| "-".into()),
        job.spec.tags.join(","),
    ]
}

/// The jobs table written as the jobs arrive (`crondeck list` at 100,000
/// jobs): the column widths are those of the first `STREAM_WIDTH_ROWS`
/// rows, so up to that many jobs the output is exactly `job_table`'s; past
/// it, a wider cell pushes the rest of its line right instead of the whole
/// table being held in memory.
pub struct JobTableWriter {
    now: DateTime<Utc>,
    head: Vec<Vec<String>>,
    widths: Option<Vec<usize>>,
    rows: usize,
}

const STREAM_WIDTH_ROWS: usize = 1000;

impl JobTableWriter {
    pub fn new(now: DateTime<Utc>) -> JobTableWriter {
        JobTableWriter {
            now,
            head: Vec::new(),
            widths: None,
            rows: 0,
        }
    }

    /// Add a job; returns text ready to write (empty while the widths are
    /// still being measured).
    pub fn push(&mut self, job: &Job) -> String {
        self.rows += 1;
        let row: Vec<String> = job_row(job, self.now)
            .iter()
            .map(|cell| crate::text::field(cell))
            .collect();
        match &self.widths {
            Some(widths) => table_line(widths, &mut row.iter().map(String::as_str)),
            None => {
                self.head.push(row);
                if self.head.len() < STREAM_WIDTH_ROWS {
                    return String::new();
                }
                self.flush_head()
            }
        }
    }

    /// The rest, once every job was pushed.
    pub fn finish(mut self) -> String {
        if self.rows == 0 {
            return NO_JOBS.to_string();
        }
        if self.widths.is_none() {
            return self.flush_head();
        }
        String::new()
    }

    fn flush_head(&mut self) -> String {
        let head = std::mem::take(&mut self.head);
        let widths = column_widths(&JOB_HEADER, &head);
        let mut out = table_line(&widths, &mut JOB_HEADER.iter().copied());
        for row in &head {
            out.push_str(&table_line(&widths, &mut row.iter().map(String::as_str)));
        }
        self.widths = Some(widths);
        out
    }
}

pub fn job_detail(
    job: &Job,
    upcoming: &[DateTime<Utc>],
    audit: &[AuditRecord],
    now: DateTime<Utc>,
) -> String {
    let spec = &job.spec;
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<16}{}", crate::text::field(&value));
    };
    field("name", spec.name.clone());
    field("state", state_word(job, now));
    if !spec.description.is_empty() {
        field("description", spec.description.clone());
    }
    field(
        "schedule",
        format!("{}  [{}]", spec.schedule.describe(), spec.schedule),
    );
    field(
        "next run",
        format!("{} ({})", next_run(job), next_run_relative(job, now)),
    );
    field("catch-up", spec.catchup.as_str().to_string());
    let runs_left = if spec.numbercall < 0 {
        "unlimited".to_string()
    } else {
        spec.numbercall.to_string()
    };
    field("runs left", runs_left);
    field("priority", spec.priority.to_string());
    field("action", format!("{}: {}", spec.action, spec.command));
    if let Some(role) = &spec.run_as {
        field("run as", role.clone());
    }
    field(
        "timeout",
        spec.timeout
            .map_or_else(|| "none".to_string(), crate::timefmt::duration),
    );
    field("tags", spec.tags.join(", "));
    let policy = &spec.failure;
    let auto_pause = if policy.threshold == 0 {
        "never auto-paused".to_string()
    } else {
        format!(
            "auto-pause after {} spanning at least {}",
            crate::text::count(policy.threshold, "failure", "consecutive failures"),
            crate::timefmt::duration(policy.min_age)
        )
    };
    field("failures", auto_pause);
    if policy.retry_max > 0 {
        field(
            "retries",
            format!(
                "{} (backoff from {})",
                policy.retry_max,
                crate::timefmt::duration(policy.retry_backoff)
            ),
        );
    }
    if let Some(pause) = &job.pause {
        let mut text = format!("since {}", local(pause.at));
        if let Some(by) = &pause.by {
            let _ = write!(text, " by {by}");
        }
        if let Some(reason) = &pause.reason {
            let _ = write!(text, ": {reason}");
        }
        if let Some(until) = pause.until {
            let _ = write!(text, " (until {})", local(until));
        }
        field("paused", text);
    }
    if let Some(file) = &job.managed_by {
        field("managed by", file.clone());
    }
    let rt = &job.runtime;
    field("last run", local_or_dash(rt.last_started_at));
    field(
        "last result",
        rt.last_status.clone().unwrap_or_else(|| "-".into()),
    );
    field("last success", local_or_dash(rt.last_success_at));
    field("failure streak", rt.failure_streak.to_string());
    out.push_str("\nnext fire times\n");
    if upcoming.is_empty() {
        out.push_str("  none\n");
    }
    for at in upcoming {
        let _ = writeln!(out, "  {}  ({})", local(*at), format_relative(*at, now));
    }
    if !audit.is_empty() {
        out.push_str("\nrecent changes\n");
        out.push_str(&audit_table(audit));
    }
    out
}

pub fn audit_table(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "no recorded actions\n".to_string();
    }
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                local(r.at),
                format!(
                    "{} ({}@{})",
                    r.db_role,
                    r.os_user.as_deref().unwrap_or("?"),
                    r.host.as_deref().unwrap_or("?")
                ),
                r.action.clone(),
                r.job_name.clone(),
                audit_change(r.old.as_ref(), r.new.as_ref()),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["WHEN", "WHO", "ACTION", "JOB", "CHANGE", "REASON"], &rows)
}

/// The columns a schedule is stored in; the audit also carries the schedule
/// as text ("schedule"), which reads better.
const SCHEDULE_COLUMNS: [&str; 5] = [
    "schedule_kind",
    "interval_count",
    "interval_unit",
    "cron_expr",
    "cron_tz",
];

/// One audit record's change for people: `schedule: every 5 minutes → every
/// 1 hour; active: true → false`; a creation or removal names the schedule.
/// `--json` keeps the stored values.
pub fn audit_change(old: Option<&serde_json::Value>, new: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    let schedule = |v: &Value| {
        v.get("schedule")
            .map(|s| format!(" (schedule {})", audit_value("schedule", s)))
            .unwrap_or_default()
    };
    let (old, new) = match (old, new) {
        (None, None) => return "-".to_string(),
        (None, Some(new)) => return format!("created{}", schedule(new)),
        (Some(old), None) => return format!("removed{}", schedule(old)),
        (Some(old), Some(new)) => (old, new),
    };
    let (Some(old_map), Some(new_map)) = (old.as_object(), new.as_object()) else {
        return format!("{} → {}", audit_value("", old), audit_value("", new));
    };
    let has_schedule = new_map.contains_key("schedule") || old_map.contains_key("schedule");
    let mut keys: Vec<&String> = Vec::new();
    for key in new_map.keys().chain(old_map.keys()) {
        let hidden = has_schedule && SCHEDULE_COLUMNS.contains(&key.as_str());
        if !hidden && !keys.contains(&key) {
            keys.push(key);
        }
    }
    // The schedule first: it is what a reader looks for.
    keys.sort_by_key(|k| k.as_str() != "schedule");
    let changes: Vec<String> = keys
        .iter()
        .filter_map(|key| {
            let before = old_map.get(*key).unwrap_or(&Value::Null);
            let after = new_map.get(*key).unwrap_or(&Value::Null);
            (before != after).then(|| {
                format!(
                    "{}: {} → {}",
                    key.strip_suffix("_ms").unwrap_or(key),
                    audit_value(key, before),
                    audit_value(key, after)
                )
            })
        })
        .collect();
    if changes.is_empty() {
        "-".to_string()
    } else {
        changes.join("; ")
    }
}

/// One stored value, readable: durations in words, times local, lists
/// comma-separated, long texts shortened (the full value is in `--json`).
fn audit_value(key: &str, value: &serde_json::Value) -> String {
    use serde_json::Value;
    const MAX_CHARS: usize = 60;
    let text = match value {
        Value::Null if key == "timeout_ms" => "none".to_string(),
        Value::Null => "-".to_string(),
        Value::Number(n) if key.ends_with("_ms") => n.as_u64().map_or_else(
            || n.to_string(),
            |ms| crate::timefmt::duration(std::time::Duration::from_millis(ms)),
        ),
        Value::String(s) if s.is_empty() => "\"\"".to_string(),
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map_or_else(|_| s.clone(), |at| local(at.with_timezone(&Utc))),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| audit_value("", i)).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    };
    if text.chars().count() > MAX_CHARS {
        let short: String = text.chars().take(MAX_CHARS - 1).collect();
        format!("{short}…")
    } else {
        text
    }
}

fn millis_short(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "-".to_string(),
        |ms| {
            if ms < 1000 {
                format!("{ms}ms")
            } else {
                format_duration_short(chrono::Duration::milliseconds(ms))
            }
        },
    )
}

fn run_result(run: &crate::db::runs::RunRow) -> String {
    if run.status == "running" {
        return run
            .progress()
            .map(|p| format!("progress {}", p.describe()))
            .unwrap_or_default();
    }
    if let Some(code) = run.exit_code.filter(|c| *c != 0) {
        format!("exit {code}")
    } else if let Some(signal) = run.signal {
        format!("signal {signal}")
    } else if let Some(state) = &run.sqlstate {
        format!("SQLSTATE {state}")
    } else if let Some(rows) = run.rows_affected {
        crate::text::count(rows, "row", "rows")
    } else if let Some(code) = run.exit_code {
        format!("exit {code}")
    } else {
        String::new()
    }
}

pub fn run_table(runs: &[crate::db::runs::RunRow]) -> String {
    if runs.is_empty() {
        return "no runs yet\n".to_string();
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.status.clone(),
                r.trigger.clone(),
                local(r.scheduled_for),
                local_or_dash(r.started_at),
                millis_short(r.lateness_ms),
                millis_short(r.duration_ms),
                r.node_name.clone().unwrap_or_else(|| "-".into()),
                run_result(r),
                r.ticks.to_string(),
                r.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "RUN",
            "STATUS",
            "TRIGGER",
            "SCHEDULED FOR",
            "STARTED",
            "LATE",
            "DURATION",
            "NODE",
            "RESULT",
            "TICKS",
            "REASON",
        ],
        &rows,
    )
}

/// One run in full: status, times, and the captured output and error.
pub fn run_detail(run: &crate::db::runs::RunRow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run {}: {} ({})", run.id, run.status, run.trigger);
    let _ = writeln!(out, "scheduled for  {}", local(run.scheduled_for));
    let _ = writeln!(out, "started        {}", local_or_dash(run.started_at));
    let _ = writeln!(out, "ended          {}", local_or_dash(run.ended_at));
    let _ = writeln!(out, "duration       {}", millis_short(run.duration_ms));
    let _ = writeln!(
        out,
        "node           {}",
        run.node_name.as_deref().unwrap_or("-")
    );
    let result = run_result(run);
    if !result.is_empty() && run.status != "running" {
        let _ = writeln!(out, "result         {result}");
    }
    if let Some(progress) = run.progress() {
        let _ = write!(out, "progress       {}", progress.describe());
        if let Some(end) = run.estimated_end() {
            let _ = write!(out, ", estimated end {}", local(end));
        }
        out.push('\n');
    }
    if run.status == "running" && (run.stdout.is_some() || run.stderr.is_some()) {
        let _ = writeln!(
            out,
            "output so far  (as of {}; the record at the end is complete)",
            local_or_dash(run.output_at)
        );
    }
    if let Some(error) = &run.error {
        let _ = writeln!(out, "error          {}", crate::text::block(error));
    }
    for (name, text, dropped) in [
        ("stdout", &run.stdout, run.stdout_dropped),
        ("stderr", &run.stderr, run.stderr_dropped),
    ] {
        if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
            let _ = writeln!(
                out,
                "--- {name}{}",
                if dropped > 0 {
                    format!(" ({dropped} bytes dropped)")
                } else {
                    String::new()
                }
            );
            out.push_str(&crate::text::block(text));
            if !text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::audit_change;

    #[test]
    fn audit_changes_read_as_old_to_new() {
        let old = json!({"schedule": "every 5 minutes", "interval_count": 5,
                         "interval_unit": "minutes", "active": true});
        let new = json!({"schedule": "every 1 hour", "interval_count": 1,
                         "interval_unit": "hours", "active": false});
        assert_eq!(
            audit_change(Some(&old), Some(&new)),
            "schedule: every 5 minutes → every 1 hour; active: true → false"
        );
        let old = json!({"timeout_ms": 300000, "retry_max": 0, "tags": ["a"]});
        let new = json!({"timeout_ms": null, "retry_max": 2, "tags": ["a", "b"]});
        assert_eq!(
            audit_change(Some(&old), Some(&new)),
            "retry_max: 0 → 2; tags: [a] → [a, b]; timeout: 5m → none"
        );
        let old = json!({"failure_min_age_ms": 86400000});
        let new = json!({"failure_min_age_ms": 0});
        assert_eq!(
            audit_change(Some(&old), Some(&new)),
            "failure_min_age: 1 day → 0s"
        );
        assert_eq!(
            audit_change(None, Some(&json!({"schedule": "manual", "name": "x"}))),
            "created (schedule manual)"
        );
        assert_eq!(
            audit_change(Some(&json!({"schedule": "manual"})), None),
            "removed (schedule manual)"
        );
        let long = "x".repeat(100);
        let change = audit_change(
            Some(&json!({"command": "a"})),
            Some(&json!({"command": long})),
        );
        assert!(
            change.ends_with('…') && change.chars().count() < 80,
            "{change}"
        );
    }
}
