//! The LISTEN connection: turns `NOTIFY crondeck_wake` into wake-ups of the
//! claim loop. If the connection drops, it reconnects with backoff and sends a
//! wake-up right away, since notifications sent meanwhile were lost.
//!
//! A LISTEN connection is idle by nature, so a silently dead one (a link that
//! drops packets, a server that froze) would never error: manual runs would
//! wait for the next scheduled wake-up. So it is pinged every `ping`, with a
//! deadline of one `ping`; a ping that fails or gets no answer replaces the
//! connection.

use std::time::Duration;

use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::db::connect::ConnectionSpec;

pub(crate) const WAKE_CHANNEL: &str = "crondeck_wake";
/// `crondeck.op_cancel` notifies here: the heartbeat beats at once to learn
/// which of this node's runs to stop.
pub(crate) const CANCEL_CHANNEL: &str = "crondeck_cancel";

/// Forward wake-ups to `wake` until `stop` is cancelled.
pub(crate) async fn run(
    spec: ConnectionSpec,
    wake: mpsc::Sender<()>,
    cancel: Arc<Notify>,
    stop: CancellationToken,
    ping: Duration,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let attempt = async {
            let (client, notes) = spec.connect_with_notifications().await?;
            client
                .batch_execute(&format!("LISTEN {WAKE_CHANNEL}; LISTEN {CANCEL_CHANNEL}"))
                .await
                .map_err(|e| anyhow::anyhow!("LISTEN failed: {e}"))?;
            anyhow::Ok((client, notes_loop(notes, wake.clone(), cancel.clone())))
        };
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            result = attempt => result,
        };
        match connected {
            Ok((client, forwarding)) => {
                backoff = Duration::from_millis(100);
                // Anything sent while we were away is lost: look now.
                let _ = wake.try_send(());
                tokio::select! {
                    _ = stop.cancelled() => return,
                    () = forwarding => tracing::warn!("the LISTEN connection closed; reconnecting"),
                    error = keep_alive(&client, ping) => {
                        tracing::warn!(%error, "the LISTEN connection stopped answering; reconnecting");
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot listen for wake-ups; retrying"),
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn notes_loop(
    mut notes: mpsc::UnboundedReceiver<tokio_postgres::Notification>,
    wake: mpsc::Sender<()>,
    cancel: Arc<Notify>,
) {
    while let Some(note) = notes.recv().await {
        if note.channel() == CANCEL_CHANNEL {
            cancel.notify_one();
        } else {
            // A full channel already holds a wake-up; one is as good as many.
            let _ = wake.try_send(());
        }
    }
}

/// Ping the LISTEN connection until a ping fails or times out; returns why.
async fn keep_alive(client: &tokio_postgres::Client, every: Duration) -> String {
    loop {
        tokio::time::sleep(every).await;
        match tokio::time::timeout(every, client.simple_query("")).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return error.to_string(),
            Err(_) => return format!("no answer to a ping within {every:?}"),
        }
    }
}
