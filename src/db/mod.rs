//! The job database: connecting, migrating, and one module of queries per table.
//!
//! Nothing here knows about the console or the command line; both reach the
//! database through these functions (and `crate::ops` for audited actions).

pub mod audit;
pub mod claim;
pub mod connect;
pub mod jobs;
pub mod migrate;
pub mod nodes;
pub mod notifications;
pub mod requests;
pub mod runs;
pub mod tls;

use tokio_postgres::error::SqlState;

/// Errors from the job database, classified by SQLSTATE, never by message text.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no job named \"{0}\" (see `crondeck list`)")]
    JobNotFound(String),
    #[error("a job named \"{0}\" already exists (choose another name, or use `crondeck set`)")]
    Duplicate(String),
    #[error("refused by the database: {0}")]
    Refused(String),
    #[error("the job database holds something this crondeck cannot read: {0}")]
    Corrupt(String),
    #[error(
        "permission denied: {0} (your database role lacks the crondeck role this needs: \
         crondeck_viewer reads, crondeck_operator pauses, resumes, runs and reschedules, \
         crondeck_admin defines jobs; or PREFIX_viewer … for a database given its own roles)"
    )]
    PermissionDenied(String),
    /// The node's registration is dead by lease (database time): it may
    /// claim and record nothing more under it, and must register anew.
    #[error(
        "node registration {0} is no longer alive (its lease ran out); it must register again"
    )]
    LeaseLost(String),
    #[error(transparent)]
    Postgres(tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for DbError {
    fn from(error: tokio_postgres::Error) -> Self {
        if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            let message = error
                .as_db_error()
                .map_or_else(|| error.to_string(), |db| db.message().to_string());
            DbError::PermissionDenied(message)
        } else {
            DbError::Postgres(error)
        }
    }
}

impl DbError {
    /// Classify an error from an insert or update of the job named `name`.
    pub fn from_write(error: tokio_postgres::Error, name: &str) -> DbError {
        let Some(db) = error.as_db_error() else {
            return DbError::from(error);
        };
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION && db.constraint() == Some("jobs_name_key") {
            DbError::Duplicate(name.to_string())
        } else if *code == SqlState::CHECK_VIOLATION
            || *code == SqlState::UNIQUE_VIOLATION
            || *code == SqlState::NOT_NULL_VIOLATION
        {
            let constraint = db.constraint().unwrap_or("a constraint");
            DbError::Refused(format!("{} (constraint {constraint})", db.message()))
        } else {
            DbError::from(error)
        }
    }
}

/// A transaction begun by sending `BEGIN` without waiting for its answer
/// (`tokio_postgres::Client::transaction` waits for it). Like
/// `tokio_postgres::Transaction`, it rolls back when dropped unfinished (a
/// failed statement, a cancelled future), so the connection never goes back
/// to the pool inside it.
pub(crate) struct PipelinedTransaction<'a> {
    pub(crate) client: &'a tokio_postgres::Client,
    done: bool,
}

impl<'a> PipelinedTransaction<'a> {
    /// The caller sends `BEGIN` (alone or first in a batch) on `client`.
    pub(crate) fn new(client: &'a tokio_postgres::Client) -> PipelinedTransaction<'a> {
        PipelinedTransaction {
            client,
            done: false,
        }
    }

    pub(crate) async fn commit(mut self) -> Result<(), tokio_postgres::Error> {
        self.done = true;
        self.client.batch_execute("COMMIT").await
    }

    /// End the transaction with `statements`, a batch whose last statement
    /// is `COMMIT` or `ROLLBACK`. If the batch fails, whatever is left of the
    /// transaction is rolled back.
    pub(crate) async fn end_with(mut self, statements: &str) -> Result<(), tokio_postgres::Error> {
        self.done = true;
        let ended = self.client.batch_execute(statements).await;
        if ended.is_err() {
            // After a failed COMMIT there is no transaction left, and this
            // only draws a warning.
            self.client.__private_api_rollback(None);
        }
        ended
    }

    pub(crate) async fn rollback(mut self) -> Result<(), tokio_postgres::Error> {
        self.done = true;
        self.client.batch_execute("ROLLBACK").await
    }
}

impl Drop for PipelinedTransaction<'_> {
    fn drop(&mut self) {
        if !self.done {
            // What `tokio_postgres::Transaction`'s own drop does: queue a
            // ROLLBACK on the connection without waiting for its answer.
            self.client.__private_api_rollback(None);
        }
    }
}
