//! Jobs as code (SPEC §7): make the job database match a jobs file.
//!
//! `apply` reads the file (every error names file, line and field), then, in
//! ONE transaction holding an advisory lock (so two applies cannot interleave):
//!
//! - creates the file's jobs that do not exist, marked as managed by the
//!   file's identity (`jobfile` module doc: the `source`, else the path);
//! - updates the definition of the ones that exist (see [`diff`] for which
//!   fields the file owns and which the operators own);
//! - with `--prune`, removes jobs managed by this identity that left the file.
//!
//! A job that exists under another identity is refused (it belongs to another
//! file); a job created by hand (no identity) is refused too unless the
//! caller asks to adopt it (`--adopt`), so a name clash never silently takes
//! over someone's job. Every change goes
//! through `crate::ops`, so each leaves its audit row in the same transaction.
//! A dry run computes the same plan inside the transaction and rolls it back.

mod diff;
mod plan;

use std::path::Path;

use anyhow::Context as _;
use tokio_postgres::GenericClient;

pub use diff::{diff, FieldChange};
pub use plan::{Plan, PlanItem, PlanKind};

use crate::db::audit::Actor;
use crate::db::jobs::job_list;
use crate::jobfile::{JobFile, JobFileError};
use crate::ops;

/// How to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApplyOptions {
    /// Compute and return the plan; write nothing.
    pub dry_run: bool,
    /// Remove jobs managed by this file's identity that are not in it.
    pub prune: bool,
    /// Restore the file's schedule and priority over operator edits.
    pub reset_schedule: bool,
    /// Take over jobs that exist with no identity (created by hand).
    pub adopt: bool,
}

/// "crondeck.apply" hashed: serialises concurrent applies.
const APPLY_LOCK_KEY: i64 = 0x6372_6f6e_6170_706c;

/// The identity a file manages its jobs under: its `source`, else `file:`
/// and its canonical path (so the same file seen through different relative
/// paths is one identity).
pub fn identity(file: &JobFile, path: &Path) -> String {
    if let Some(source) = &file.source {
        return source.clone();
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    format!("file:{}", canonical.display())
}

/// Apply `file` (read from `path`, named in messages) as `identity`.
pub async fn apply(
    client: &mut impl GenericClient,
    actor: &Actor,
    file: &JobFile,
    path: &Path,
    identity: &str,
    opts: ApplyOptions,
) -> anyhow::Result<Plan> {
    let mut tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&APPLY_LOCK_KEY])
        .await?;
    let existing = job_list(&tx).await?;
    let plan = plan::compute(file, path, identity, &existing, opts)?;
    if opts.dry_run {
        tx.rollback().await?;
        return Ok(plan);
    }
    for item in &plan.items {
        let name = &item.name;
        match &item.kind {
            PlanKind::Create => {
                let job = file
                    .jobs
                    .iter()
                    .find(|j| &j.spec.name == name)
                    .context("plan and file disagree")?;
                let add = ops::AddOptions {
                    next: None,
                    paused: job.paused.then(|| job.pause_reason.clone()),
                    managed_by: Some(identity.to_string()),
                };
                ops::add(&mut tx, actor, &job.spec, &add)
                    .await
                    .map_err(|e| located(path, job.line, name, e))?;
            }
            PlanKind::Update(_) => {
                let job = file
                    .jobs
                    .iter()
                    .find(|j| &j.spec.name == name)
                    .context("plan and file disagree")?;
                ops::update_definition(&mut tx, actor, &job.spec, identity, opts.reset_schedule)
                    .await
                    .map_err(|e| located(path, job.line, name, e))?;
            }
            PlanKind::Unchanged(_) => {}
            PlanKind::Remove => {
                ops::remove(&mut tx, actor, name)
                    .await
                    .with_context(|| format!("removing job \"{name}\" (pruned)"))?;
            }
        }
    }
    tx.commit().await?;
    Ok(plan)
}

/// A database refusal of one job, pointed at the job in the file.
fn located(path: &Path, line: usize, name: &str, error: ops::OpsError) -> anyhow::Error {
    match error {
        ops::OpsError::Invalid(message) => JobFileError {
            path: path.to_path_buf(),
            line,
            message: format!("job \"{name}\": {message}"),
        }
        .into(),
        other => anyhow::Error::new(other).context(format!(
            "{}:{line}: job \"{name}\" was refused by the database",
            path.display()
        )),
    }
}
