//! One attempt at one delivery: a webhook POST or a command, carrying the
//! outbox row's idempotency key.
//!
//! Webhook URLs are secrets: errors are returned without them
//! (`reqwest::Error::without_url`), and channels are named by their `name`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use super::Channel;
use crate::db::notifications::ClaimedDelivery;

/// The key a receiver dedupes on: the same for every attempt of a delivery
/// (one episode, one channel, one kind), different for anything else.
pub fn idempotency_key(delivery: &ClaimedDelivery) -> String {
    format!("crondeck-{}", delivery.id)
}

/// The JSON sent: the event as recorded, plus which delivery and attempt
/// this is.
pub fn body(delivery: &ClaimedDelivery) -> Value {
    let mut body = delivery.payload.clone();
    if let Value::Object(map) = &mut body {
        map.insert("notification_id".into(), delivery.notification_id.into());
        map.insert("delivery_id".into(), delivery.id.into());
        map.insert("idempotency_key".into(), idempotency_key(delivery).into());
        map.insert("attempt".into(), delivery.attempt.into());
        map.insert("channel".into(), delivery.channel.clone().into());
    }
    body
}

/// Make one attempt; `Err` says why it failed (without secrets).
pub async fn attempt(channel: &Channel, delivery: &ClaimedDelivery) -> Result<(), String> {
    let body = body(delivery).to_string();
    match delivery.kind.as_str() {
        "webhook" => match &channel.webhook {
            Some(url) => post(url, &body, delivery, channel.timeout).await,
            None => Err("this channel has no webhook here".into()),
        },
        "command" => match &channel.command {
            Some(command) => run_command(command, &body, delivery, channel.timeout).await,
            None => Err("this channel has no command here".into()),
        },
        "smtp" => match &channel.smtp {
            Some(smtp) => super::smtp::send(smtp, delivery, channel.timeout).await,
            None => Err("this channel has no SMTP server here".into()),
        },
        other => Err(format!("unknown delivery kind \"{other}\"")),
    }
}

async fn post(
    url: &str,
    body: &str,
    delivery: &ClaimedDelivery,
    timeout: Duration,
) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("crondeck/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.without_url().to_string())?;
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", idempotency_key(delivery))
        .header("X-Crondeck-Delivery", delivery.id.to_string())
        .header("X-Crondeck-Attempt", delivery.attempt.to_string())
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered HTTP {status}"))
    }
}

async fn run_command(
    command: &str,
    body: &str,
    delivery: &ClaimedDelivery,
    timeout: Duration,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("CRONDECK_EVENT", &delivery.event)
        .env(
            "CRONDECK_NOTIFICATION_ID",
            delivery.notification_id.to_string(),
        )
        .env("CRONDECK_IDEMPOTENCY_KEY", idempotency_key(delivery))
        .env("CRONDECK_ATTEMPT", delivery.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start the command: {e}"))?;
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input is fine: ignore EPIPE.
            let _ = stdin.write_all(body.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| {
            format!(
                "the command did not finish within {}",
                humantime::format_duration(timeout)
            )
        })?
        .map_err(|e| format!("waiting for the command: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let first = stderr
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(200)
            .collect::<String>();
        Err(format!(
            "the command exited with {}{}",
            output.status,
            if first.is_empty() {
                String::new()
            } else {
                format!(": {first}")
            }
        ))
    }
}
