//! The plan of an apply: what would be created, updated, left alone or
//! removed, computed from the file and the stored jobs. Pure.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::{diff, ApplyOptions, FieldChange};
use crate::job::Job;
use crate::jobfile::{FileJob, JobFile, JobFileError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", content = "fields", rename_all = "lowercase")]
pub enum PlanKind {
    Create,
    /// Definition fields that change (operator-owned ones kept are listed too,
    /// with `applied: false`).
    Update(Vec<FieldChange>),
    /// Nothing to write; operator-owned differences that are kept, if any.
    Unchanged(Vec<FieldChange>),
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    pub name: String,
    #[serde(flatten)]
    pub kind: PlanKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub identity: String,
    pub items: Vec<PlanItem>,
}

/// Work out the plan. Refuses jobs that belong to another file.
pub fn compute(
    file: &JobFile,
    path: &Path,
    identity: &str,
    existing: &[Job],
    opts: ApplyOptions,
) -> Result<Plan, JobFileError> {
    let mut items = Vec::new();
    // Jobs created by hand that share a name with the file's: taken over
    // only when asked to.
    let unmanaged: Vec<&FileJob> = file
        .jobs
        .iter()
        .filter(|job| {
            existing
                .iter()
                .any(|j| j.spec.name == job.spec.name && j.managed_by.is_none())
        })
        .collect();
    if let (Some(first), false) = (unmanaged.first(), opts.adopt) {
        let names: Vec<String> = unmanaged
            .iter()
            .map(|j| format!("\"{}\"", j.spec.name))
            .collect();
        return Err(JobFileError {
            path: path.to_path_buf(),
            line: first.line,
            message: format!(
                "{} already exist{} in the database, created by hand (no file manages {}); \
                 applying would take {} over: pass --adopt to do that, or rename {} in this file",
                names.join(", "),
                if names.len() == 1 { "s" } else { "" },
                if names.len() == 1 { "it" } else { "them" },
                if names.len() == 1 { "it" } else { "them" },
                if names.len() == 1 { "it" } else { "them" },
            ),
        });
    }
    for job in &file.jobs {
        let stored = existing.iter().find(|j| j.spec.name == job.spec.name);
        let kind = match stored {
            None => PlanKind::Create,
            Some(stored) => {
                if let Some(owner) = stored.managed_by.as_deref().filter(|o| *o != identity) {
                    return Err(JobFileError {
                        path: path.to_path_buf(),
                        line: job.line,
                        message: format!(
                            "job \"{}\", field `name`: a job of that name is managed by \"{owner}\", \
                             not by this file (\"{identity}\"); rename it here, or remove it from \
                             its own file first",
                            job.spec.name
                        ),
                    });
                }
                let changes = diff(stored, &job.spec, identity, opts.reset_schedule);
                if changes.iter().any(|c| c.applied) {
                    PlanKind::Update(changes)
                } else {
                    PlanKind::Unchanged(changes)
                }
            }
        };
        items.push(PlanItem {
            name: job.spec.name.clone(),
            kind,
        });
    }
    if opts.prune {
        let in_file: HashSet<&str> = file.jobs.iter().map(|j| j.spec.name.as_str()).collect();
        for job in existing {
            if job.managed_by.as_deref() == Some(identity)
                && !in_file.contains(job.spec.name.as_str())
            {
                items.push(PlanItem {
                    name: job.spec.name.clone(),
                    kind: PlanKind::Remove,
                });
            }
        }
    }
    Ok(Plan {
        identity: identity.to_string(),
        items,
    })
}

impl Plan {
    /// (create, update, unchanged, remove)
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let mut counts = (0, 0, 0, 0);
        for item in &self.items {
            match item.kind {
                PlanKind::Create => counts.0 += 1,
                PlanKind::Update(_) => counts.1 += 1,
                PlanKind::Unchanged(_) => counts.2 += 1,
                PlanKind::Remove => counts.3 += 1,
            }
        }
        counts
    }

    /// True when applying writes nothing.
    pub fn is_noop(&self) -> bool {
        let (create, update, _, remove) = self.counts();
        create + update + remove == 0
    }

    /// The plan for people: one line per job, field diffs indented below.
    pub fn render(&self, dry_run: bool) -> String {
        let mut out = String::new();
        for item in &self.items {
            let (mark, word) = match &item.kind {
                PlanKind::Create => ("+", "create"),
                PlanKind::Update(_) => ("~", "update"),
                PlanKind::Unchanged(_) => ("=", "unchanged"),
                PlanKind::Remove => ("-", "remove"),
            };
            let _ = writeln!(out, "{mark} {word:<9} {}", crate::text::field(&item.name));
            if let PlanKind::Update(changes) | PlanKind::Unchanged(changes) = &item.kind {
                for change in changes {
                    let (old, new) = (one_line(&change.old), one_line(&change.new));
                    let _ = if change.applied {
                        writeln!(out, "      {}: {old} -> {new}", change.field)
                    } else {
                        writeln!(
                            out,
                            "      {}: kept {old} (operator-owned; the file says {new}, \
                             --reset-schedule applies it)",
                            change.field
                        )
                    };
                }
            }
        }
        let (create, update, unchanged, remove) = self.counts();
        let _ = write!(
            out,
            "{create} to create, {update} to update, {unchanged} unchanged, {remove} to remove \
             (managed by \"{}\")",
            crate::text::field(&self.identity)
        );
        out.push_str(if dry_run {
            "; dry run: nothing was written\n"
        } else if self.is_noop() {
            "; nothing to do\n"
        } else {
            "; applied\n"
        });
        out
    }
}

/// Commands and descriptions may span lines; a plan line must not.
fn one_line(text: &str) -> String {
    let flat = crate::text::field(text);
    if flat.chars().count() > 60 {
        let head: String = flat.chars().take(57).collect();
        format!("{head}...")
    } else if flat.is_empty() {
        "\"\"".to_string()
    } else {
        flat
    }
}
