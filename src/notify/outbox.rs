//! Delivering the outbox: claim due deliveries, make one attempt each, report.
//!
//! A claim holds its delivery for [`lease`] (the longest channel timeout plus
//! a margin), so an attempt in progress is never claimed twice; a process
//! that dies (kill -9) mid-attempt leaves the claim to expire, and the next
//! claimer tries again with the same idempotency key. See `crate::notify`.

use std::time::Duration;

use tokio_postgres::GenericClient;

use super::Notifier;
use crate::db::notifications::{
    outbox_claim, outbox_finish, outbox_next_due, ClaimedDelivery, OutboxScope,
};
use crate::db::DbError;

/// Added to the longest channel timeout to make a claim's lease.
pub const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Deliveries one claim takes at most.
pub const BATCH: i32 = 16;

/// How long a claim holds its delivery.
pub fn lease(notifier: &Notifier) -> Duration {
    notifier
        .channels
        .iter()
        .map(|c| c.timeout)
        .max()
        .unwrap_or_default()
        + LEASE_MARGIN
}

fn lease_ms(notifier: &Notifier) -> i32 {
    i32::try_from(lease(notifier).as_millis()).unwrap_or(i32::MAX)
}

/// Claim up to `max` due deliveries of this process's channels.
pub async fn claim(
    client: &impl GenericClient,
    notifier: &Notifier,
    scope: OutboxScope,
    max: i32,
) -> Result<Vec<ClaimedDelivery>, DbError> {
    if max <= 0 || notifier.channels.is_empty() {
        return Ok(Vec::new());
    }
    outbox_claim(
        client,
        scope,
        &notifier.sender,
        &notifier.channel_names(),
        lease_ms(notifier),
        max,
    )
    .await
}

/// Make the attempt; `Some(error)` when it failed. Holds no database
/// connection.
pub async fn attempt(notifier: &Notifier, delivery: &ClaimedDelivery) -> Option<String> {
    let result = match notifier.channel(&delivery.channel) {
        Some(channel) => super::attempt(channel, delivery).await,
        None => Err(format!(
            "no channel named \"{}\" in this process's [notifications]",
            delivery.channel
        )),
    };
    match result {
        Ok(()) => {
            tracing::info!(channel = %delivery.channel, kind = %delivery.kind,
                event = %delivery.event, notification = delivery.notification_id,
                delivery = delivery.id, attempt = delivery.attempt, "notification delivered");
            None
        }
        Err(error) => {
            tracing::warn!(channel = %delivery.channel, kind = %delivery.kind,
                event = %delivery.event, notification = delivery.notification_id,
                delivery = delivery.id, attempt = delivery.attempt,
                max_attempts = delivery.max_attempts, %error,
                "notification not delivered");
            Some(error)
        }
    }
}

/// Report the attempt. A report that comes too late (the lease ran out and
/// another process took the delivery over) is dropped, and logged.
pub async fn finish(
    client: &impl GenericClient,
    notifier: &Notifier,
    scope: OutboxScope,
    delivery: &ClaimedDelivery,
    error: Option<&str>,
) -> Result<(), DbError> {
    let ours = outbox_finish(client, scope, &notifier.sender, delivery, error).await?;
    if !ours {
        tracing::warn!(delivery = delivery.id, attempt = delivery.attempt,
            "a notification attempt was reported after its claim expired; the outbox keeps the newer attempt");
    }
    Ok(())
}

/// Deliver until nothing in `scope` is left to deliver for this process's
/// channels, or until `limit` has passed; returns the attempts made. For a
/// process that is not a node (`crondeck check`'s delivery process).
pub async fn drain(
    client: &impl GenericClient,
    notifier: &Notifier,
    scope: OutboxScope,
    limit: Duration,
) -> Result<usize, DbError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut attempts = 0;
    loop {
        let claimed = claim(client, notifier, scope, BATCH).await?;
        for delivery in &claimed {
            attempts += 1;
            let error = attempt(notifier, delivery).await;
            finish(client, notifier, scope, delivery, error.as_deref()).await?;
        }
        if !claimed.is_empty() {
            continue;
        }
        let Some(wait) = outbox_next_due(client, scope, &notifier.channel_names()).await? else {
            return Ok(attempts);
        };
        let wait = Duration::from_secs_f64(wait.clamp(0.05, 600.0));
        if tokio::time::Instant::now() + wait > deadline {
            return Ok(attempts);
        }
        tokio::time::sleep(wait).await;
    }
}
