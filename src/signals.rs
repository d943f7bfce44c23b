//! Stop signals for the long-running commands (the headless scheduler and
//! the console): the first asks for a graceful stop, a second one during the
//! shutdown grace period stops the running jobs at once.

use crate::scheduler::NodeHandle;

/// Wait for SIGTERM, SIGINT or SIGHUP. SIGHUP too: a closed terminal or SSH
/// session should stop the node the graceful way, not kill it mid-run.
pub async fn wait_for_stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
    Ok(())
}

/// Shut a node down gracefully; a second SIGINT/SIGTERM/SIGHUP during the
/// grace period stops its running jobs at once (recorded `interrupted`).
pub async fn shutdown_or_stop_now(node: NodeHandle) -> anyhow::Result<()> {
    let killer = node.killer();
    let second = tokio::spawn(async move {
        if wait_for_stop_signal().await.is_ok() {
            tracing::warn!("second signal: stopping running jobs now");
            eprintln!("crondeck: stopping running jobs now");
            killer.kill();
        }
    });
    let result = node.shutdown().await;
    second.abort();
    result
}
