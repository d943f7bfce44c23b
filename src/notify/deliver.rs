//! Sending an event to its channels and recording how that went.
//!
//! Webhook URLs are secrets: errors are logged and stored without them
//! (`reqwest::Error::without_url`), and channels are named by their `name`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt as _;
use tokio_postgres::GenericClient;

use super::{Channel, Notifier, Pending};
use crate::db::notifications::{
    notification_record_delivery, notification_record_no_live_node_delivery,
};

/// How one channel's delivery went.
#[derive(Debug, Clone)]
struct Outcome {
    ok: bool,
    attempts: u32,
    error: Option<String>,
}

/// How the delivery of one event went, to record on its row.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// sent, failed, partial, or no_channel (no channel takes this event).
    pub status: &'static str,
    pub deliveries: Value,
}

/// Send `pending` to every channel that takes its event. Never fails: a
/// delivery problem is logged and returned, to be recorded with [`record`].
/// Holds no database connection while it waits on channels.
pub async fn send(notifier: &Notifier, pending: &Pending) -> Delivered {
    let mut deliveries = Vec::new();
    let body = pending.payload.to_string();
    for channel in notifier
        .channels
        .iter()
        .filter(|c| c.events.iter().any(|e| e == &pending.event))
    {
        if let Some(url) = &channel.webhook {
            let outcome = retried(channel, || post(url, &body, channel.timeout)).await;
            log(channel, "webhook", pending, &outcome);
            deliveries.push(entry(channel, "webhook", &outcome));
        }
        if let Some(command) = &channel.command {
            let outcome = retried(channel, || {
                run_command(command, &body, pending, channel.timeout)
            })
            .await;
            log(channel, "command", pending, &outcome);
            deliveries.push(entry(channel, "command", &outcome));
        }
    }
    let ok = deliveries.iter().filter(|d| d["ok"] == json!(true)).count();
    let status = match (deliveries.len(), ok) {
        (0, _) => "no_channel",
        (n, ok) if ok == n => "sent",
        (_, 0) => "failed",
        _ => "partial",
    };
    Delivered {
        status,
        deliveries: Value::Array(deliveries),
    }
}

/// Record how the send went on the event's row; a failure is logged.
pub async fn record(client: &impl GenericClient, pending: &Pending, delivered: &Delivered) {
    if let Err(error) =
        notification_record_delivery(client, pending.id, delivered.status, &delivered.deliveries)
            .await
    {
        tracing::warn!(notification = pending.id, %error, "could not record a notification's delivery");
    }
}

/// [`record`] for the no-live-node episode `crondeck check` sent: through the
/// database function that lets readers record only that.
pub async fn record_no_live_node(
    client: &impl GenericClient,
    pending: &Pending,
    delivered: &Delivered,
) {
    if let Err(error) = notification_record_no_live_node_delivery(
        client,
        pending.id,
        delivered.status,
        &delivered.deliveries,
    )
    .await
    {
        tracing::warn!(notification = pending.id, %error, "could not record a notification's delivery");
        eprintln!("crondeck: could not record how the no-live-node notification was sent: {error}");
    }
}

fn entry(channel: &Channel, kind: &str, outcome: &Outcome) -> Value {
    json!({
        "channel": channel.name,
        "kind": kind,
        "ok": outcome.ok,
        "attempts": outcome.attempts,
        "error": outcome.error,
    })
}

fn log(channel: &Channel, kind: &str, pending: &Pending, outcome: &Outcome) {
    if outcome.ok {
        tracing::info!(channel = %channel.name, kind, event = %pending.event,
            notification = pending.id, "notification sent");
    } else {
        tracing::warn!(channel = %channel.name, kind, event = %pending.event,
            notification = pending.id, attempts = outcome.attempts,
            error = outcome.error.as_deref().unwrap_or(""), "notification not delivered");
    }
}

/// Try once, then up to `retries` more times with a doubling pause (1 s, 2 s, …).
async fn retried<F, Fut>(channel: &Channel, mut attempt: F) -> Outcome
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut pause = Duration::from_secs(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match attempt().await {
            Ok(()) => {
                return Outcome {
                    ok: true,
                    attempts,
                    error: None,
                }
            }
            Err(error) if attempts > channel.retries => {
                return Outcome {
                    ok: false,
                    attempts,
                    error: Some(error),
                }
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn post(url: &str, body: &str, timeout: Duration) -> Result<(), String> {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(concat!("crondeck/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.without_url().to_string())?;
    let response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
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
    pending: &Pending,
    timeout: Duration,
) -> Result<(), String> {
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .env("CRONDECK_EVENT", &pending.event)
        .env("CRONDECK_NOTIFICATION_ID", pending.id.to_string())
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
