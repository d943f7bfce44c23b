//! Queries on `crondeck.run_requests`: manual runs, event triggers, retries.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::DbError;

/// Schedule a retry of a failed tick.
pub async fn request_retry(
    client: &impl GenericClient,
    job_id: i64,
    not_before: DateTime<Utc>,
    scheduled_for: DateTime<Utc>,
    attempt: i32,
) -> Result<i64, DbError> {
    let row = client
        .query_one(
            "INSERT INTO crondeck.run_requests (job_id, trigger, requested_by, not_before,
                 scheduled_for, attempt)
             VALUES ($1, 'retry', 'crondeck (retry policy)', $2, $3, $4) RETURNING id",
            &[&job_id, &not_before, &scheduled_for, &attempt],
        )
        .await?;
    Ok(row.try_get(0)?)
}

/// The state of a request and the run it started, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestState {
    pub state: String,
    pub run_id: Option<i64>,
    /// The job is busy with another run, so the request waits.
    pub waiting_for_run: Option<i64>,
}

pub async fn request_get(
    client: &impl GenericClient,
    id: i64,
) -> Result<Option<RequestState>, DbError> {
    let row = client
        .query_opt(
            "SELECT r.state, r.run_id, j.running_run_id
             FROM crondeck.run_requests r JOIN crondeck.jobs j ON j.id = r.job_id
             WHERE r.id = $1",
            &[&id],
        )
        .await?;
    row.map(|r| {
        Ok(RequestState {
            state: r.try_get(0)?,
            run_id: r.try_get(1)?,
            waiting_for_run: r.try_get(2)?,
        })
    })
    .transpose()
}
