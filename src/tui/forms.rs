//! Action dialogs: what the operator typed, validated on every keystroke,
//! and the confirm step that names the job and shows old → new with Cancel
//! focused. Pure: `now` and the display zone are passed in.

use chrono::{DateTime, Utc};
use tui_input::Input;

use super::action::Mutation;
use super::format::Zone;
use crate::job::Job;
use crate::schedule::Schedule;
use crate::timespec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RunNow,
    Cancel,
    Pause,
    Resume,
    Schedule,
    Next,
    Priority,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::RunNow => "Run now",
            Kind::Cancel => "Cancel the run in progress",
            Kind::Pause => "Pause",
            Kind::Resume => "Resume",
            Kind::Schedule => "Edit schedule",
            Kind::Next => "Edit next run",
            Kind::Priority => "Change priority",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Field {
    pub label: &'static str,
    pub input: Input,
}

#[derive(Debug, Clone)]
pub struct Dialog {
    pub job_id: i64,
    pub job: String,
    pub kind: Kind,
    pub fields: Vec<Field>,
    /// The field being edited.
    pub field: usize,
    /// Second step: old → new shown, buttons active.
    pub confirming: bool,
    /// Cancel is focused unless the operator moved to Confirm.
    pub confirm_focused: bool,
    pub old: String,
    /// What the current input would become, or why it is refused.
    pub outcome: Result<(Mutation, String), String>,
    /// Under the input: e.g. the next fire times of a new schedule.
    pub preview: Vec<String>,
    /// Extra warning on the confirm step (e.g. "it is running now").
    pub note: Option<String>,
    /// The job's next tick now, for previewing a new schedule.
    pub nextcall: Option<DateTime<Utc>>,
    /// What the job had when the dialog opened: the change is refused if
    /// someone changed it meanwhile (`ops::Expect`).
    pub was_schedule: Schedule,
    pub was_priority: i32,
}

fn field(label: &'static str, value: &str) -> Field {
    Field {
        label,
        input: Input::new(value.to_string()),
    }
}

impl Dialog {
    /// The dialog for `kind` on `job`, validated once.
    pub fn open(kind: Kind, job: &Job, now: DateTime<Utc>, zone: Zone) -> Dialog {
        let (fields, old, note) = match kind {
            Kind::RunNow => (
                vec![],
                "not requested".to_string(),
                job.runtime.running_run_id.map(|_| {
                    "it is running now: the new run starts when this one ends".to_string()
                }),
            ),
            Kind::Cancel => (
                vec![field("reason (optional)", "")],
                running_words(job, now),
                Some(
                    "the node running it stops it within a heartbeat (shell: SIGTERM, then \
                     SIGKILL; SQL: the statement is cancelled)"
                        .to_string(),
                ),
            ),
            Kind::Pause => (
                vec![
                    field("reason (optional)", ""),
                    field("for (optional, e.g. 2h)", ""),
                ],
                if job.active { "active" } else { "paused" }.to_string(),
                None,
            ),
            Kind::Resume => (vec![], paused_words(job), None),
            Kind::Schedule => (
                vec![field("schedule", &job.spec.schedule.to_string())],
                job.spec.schedule.to_string(),
                None,
            ),
            Kind::Next => (
                vec![field("next run (now, +15m, 2026-12-01 08:00)", "")],
                job.nextcall
                    .map_or_else(|| "-".to_string(), |t| zone.datetime(t)),
                None,
            ),
            Kind::Priority => (
                vec![field(
                    "priority (0 = most urgent)",
                    &job.spec.priority.to_string(),
                )],
                job.spec.priority.to_string(),
                None,
            ),
        };
        let confirming = fields.is_empty();
        let mut dialog = Dialog {
            job_id: job.id,
            job: job.spec.name.clone(),
            kind,
            fields,
            field: 0,
            confirming,
            confirm_focused: false,
            old,
            outcome: Err(String::new()),
            preview: Vec::new(),
            note,
            nextcall: job.nextcall,
            was_schedule: job.spec.schedule.clone(),
            was_priority: job.spec.priority,
        };
        dialog.validate(now, zone);
        dialog
    }

    pub fn value(&self, i: usize) -> &str {
        self.fields.get(i).map_or("", |f| f.input.value())
    }

    /// Re-check the input; sets `outcome` and `preview`.
    pub fn validate(&mut self, now: DateTime<Utc>, zone: Zone) {
        self.preview.clear();
        let job = self.job.clone();
        self.outcome = match self.kind {
            Kind::RunNow => Ok((Mutation::RunNow { job }, "run requested".into())),
            Kind::Cancel => {
                let reason = Some(self.value(0).trim().to_string()).filter(|r| !r.is_empty());
                Ok((Mutation::Cancel { job, reason }, "cancelled".into()))
            }
            Kind::Resume => Ok((Mutation::Resume { job }, "active".into())),
            Kind::Pause => self.validate_pause(job),
            Kind::Schedule => self.validate_schedule(job, now, zone),
            Kind::Next => self.validate_next(job, now, zone),
            Kind::Priority => match self.value(0).trim().parse::<i32>() {
                Ok(p) if p >= 0 => Ok((
                    Mutation::Priority {
                        job,
                        priority: p,
                        was: self.was_priority,
                    },
                    p.to_string(),
                )),
                _ => Err(format!(
                    "\"{}\" is not a priority (expected 0 = most urgent, or a larger whole number)",
                    self.value(0).trim()
                )),
            },
        };
    }

    fn validate_pause(&self, job: String) -> Result<(Mutation, String), String> {
        let reason = Some(self.value(0).trim().to_string()).filter(|r| !r.is_empty());
        let text = self.value(1).trim();
        let duration = if text.is_empty() {
            None
        } else {
            Some(timespec::parse_duration(text).map_err(|e| e.to_string())?)
        };
        let mut new = "paused".to_string();
        if let Some(r) = &reason {
            new.push_str(&format!(" ({r})"));
        }
        if duration.is_some() {
            new.push_str(&format!(" for {text}"));
        } else {
            new.push_str(" until resumed");
        }
        Ok((
            Mutation::Pause {
                job,
                reason,
                duration,
            },
            new,
        ))
    }

    fn validate_schedule(
        &mut self,
        job: String,
        now: DateTime<Utc>,
        zone: Zone,
    ) -> Result<(Mutation, String), String> {
        let schedule = Schedule::parse(self.value(0)).map_err(|e| e.to_string())?;
        self.preview.push(schedule.describe());
        // As `ops::set` will apply it: a cron schedule takes its next slot; an
        // interval keeps the current tick unless the new one comes sooner.
        let soonest = schedule.next_after(now);
        let first = match (&schedule, self.nextcall, soonest) {
            (Schedule::Every(_), Some(current), Some(soonest)) => Some(current.min(soonest)),
            (_, _, soonest) => soonest,
        };
        if let Some(first) = first {
            let times: Vec<String> = schedule
                .upcoming(first, 3)
                .into_iter()
                .map(|t| zone.format(t, "%a %d %b %H:%M:%S"))
                .collect();
            self.preview.push(format!("next: {}", times.join(", ")));
        }
        let new = schedule.to_string();
        let was = self.was_schedule.clone();
        Ok((Mutation::Schedule { job, schedule, was }, new))
    }

    fn validate_next(
        &mut self,
        job: String,
        now: DateTime<Utc>,
        zone: Zone,
    ) -> Result<(Mutation, String), String> {
        let text = self.value(0).trim().to_string();
        let at = zone.parse_when(&text, now).map_err(|e| e.to_string())?;
        if at < now - chrono::Duration::seconds(1) {
            return Err(format!(
                "{} is in the past; use \"now\" to run at the next opportunity",
                zone.datetime(at)
            ));
        }
        self.preview.push(format!(
            "{} ({})",
            zone.datetime(at),
            timespec::format_relative(at, now)
        ));
        // Relative input is resolved against the database clock when applied;
        // an absolute time is sent as the instant the operator saw.
        let next = if text.eq_ignore_ascii_case("now") || text.starts_with('+') {
            text
        } else {
            at.to_rfc3339()
        };
        Ok((Mutation::Next { job, next }, zone.datetime(at)))
    }
}

fn paused_words(job: &Job) -> String {
    match &job.pause {
        Some(p) => match &p.reason {
            Some(r) => format!("paused ({r})"),
            None => "paused".to_string(),
        },
        None if job.active => "active".to_string(),
        None => "paused".to_string(),
    }
}

/// "running on node-1 for 4m 10s (run 42)", for the cancel dialog.
fn running_words(job: &Job, now: DateTime<Utc>) -> String {
    let rt = &job.runtime;
    let node = rt
        .running_node_name
        .as_deref()
        .or(rt.running_node_id.as_deref())
        .unwrap_or("?");
    let elapsed = rt.running_since.map_or_else(
        || "?".to_string(),
        |since| {
            let secs = (now - since).num_seconds().max(0).unsigned_abs();
            humantime::format_duration(std::time::Duration::from_secs(secs)).to_string()
        },
    );
    let run = rt
        .running_run_id
        .map_or_else(String::new, |id| format!(" (run {id})"));
    format!("running on {} for {elapsed}{run}", crate::text::field(node))
}
