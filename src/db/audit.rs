//! Queries on `crondeck.audit`, the append-only trail of operator actions.
//!
//! Rows are written by the database only: triggers on `crondeck.jobs` (and
//! `crondeck.op_run_now`) stamp the login role (`session_user`) and the
//! database clock, which no caller can choose; no crondeck role may insert
//! into the table. The OS user, host and reason come from the client (see
//! [`audit_context`]) and say where the action was typed, as claimed.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tokio_postgres::GenericClient;

use super::DbError;

/// Who is acting, as far as the process can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub os_user: String,
    pub host: String,
}

impl Actor {
    /// The user and host of this process.
    pub fn current() -> Actor {
        let os_user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()));
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "unknown".to_string());
        Actor { os_user, host }
    }

    /// "user@host", for `paused_by` and requests.
    pub fn label(&self) -> String {
        format!("{}@{}", self.os_user, self.host)
    }
}

/// A recorded action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub db_role: String,
    pub os_user: Option<String>,
    pub host: Option<String>,
    pub job_id: Option<i64>,
    pub job_name: String,
    pub action: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub reason: Option<String>,
}

/// Say who is acting, and why, for the audit rows the database writes in
/// this transaction (the triggers on `crondeck.jobs`). The database stamps
/// the login role and the time itself; the OS user, host, reason and
/// `action` name given here are the client's claim. `action` may only name a
/// definition change more precisely ("apply", "set-timeout") or an automatic
/// pause ("auto-pause"); the database decides what kind of change it was.
pub async fn audit_context(
    client: &impl GenericClient,
    actor: &Actor,
    reason: Option<&str>,
    action: Option<&str>,
) -> Result<(), DbError> {
    client
        .execute(
            "SELECT crondeck.audit_context($1, $2, $3, $4)",
            &[&actor.os_user, &actor.host, &reason, &action],
        )
        .await?;
    Ok(())
}

/// The newest `limit` records, optionally for one job name, newest first.
pub async fn audit_list(
    client: &impl GenericClient,
    job_name: Option<&str>,
    limit: i64,
) -> Result<Vec<AuditRecord>, DbError> {
    let rows = client
        .query(
            "SELECT id, at, db_role::text, os_user, host, job_id, job_name, action, old_value,
                 new_value, reason
             FROM crondeck.audit
             WHERE $1::text IS NULL OR job_name = $1
             ORDER BY id DESC LIMIT $2",
            &[&job_name, &limit],
        )
        .await?;
    rows.iter()
        .map(|row| {
            Ok(AuditRecord {
                id: row.try_get(0)?,
                at: row.try_get(1)?,
                db_role: row.try_get(2)?,
                os_user: row.try_get(3)?,
                host: row.try_get(4)?,
                job_id: row.try_get(5)?,
                job_name: row.try_get(6)?,
                action: row.try_get(7)?,
                old: row.try_get(8)?,
                new: row.try_get(9)?,
                reason: row.try_get(10)?,
            })
        })
        .collect()
}
