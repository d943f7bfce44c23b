//! SQL jobs' notices: `RAISE NOTICE`/`INFO`/`WARNING` reach the node while
//! the job's transaction runs, and become the run's output (its execution
//! log) and its progress (`crondeck:progress 4000/10000`).
//!
//! The job pool's connections are driven by [`JobConnect`]: instead of
//! deadpool's default task, which logs notices and drops them, each
//! connection's task reads its messages itself (`Connection::poll_message`)
//! and hands notices to whatever run is attached to the connection at that
//! moment. A run finds its connection by the server's process id (it asks
//! for `pg_backend_pid()` anyway, see `sessions::SessionPids`), and is
//! attached only while its statements execute ([`NoticeRouter::attach`]):
//! notices of the node's own statements around them are not the job's.
//!
//! Notices arrive in order with the query's results, so by the time the
//! job's statements return, every notice they raised has been handed over.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::task::JoinHandle;
use tokio_postgres::error::DbError;
use tokio_postgres::{AsyncMessage, Client, Config};

use super::live::{parse_progress, JobOutput, Stream, NOTICE_PREFIX};
use crate::db::tls::MakeTls;

/// The run attached to one connection, if any.
type Slot = Mutex<Option<Arc<JobOutput>>>;

/// Which connection (by backend process id) feeds which run.
#[derive(Debug, Clone, Default)]
pub(crate) struct NoticeRouter {
    connections: Arc<Mutex<HashMap<i32, Vec<Weak<Slot>>>>>,
}

impl NoticeRouter {
    fn register(&self, pid: i32, slot: &Arc<Slot>) {
        let mut connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Forget connections that are gone.
        connections.retain(|_, slots| {
            slots.retain(|s| s.strong_count() > 0);
            !slots.is_empty()
        });
        connections
            .entry(pid)
            .or_default()
            .push(Arc::downgrade(slot));
    }

    /// Send the notices of the connection with backend `pid` to `output`
    /// until the guard is dropped. `None` if no live connection of the job
    /// pool has that pid, or more than one does (two servers of a
    /// multi-host target): then the run gets no notices rather than
    /// another's.
    pub(crate) fn attach(&self, pid: i32, output: &Arc<JobOutput>) -> Option<NoticeGuard> {
        let connections = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut alive = connections
            .get(&pid)?
            .iter()
            .filter_map(Weak::upgrade)
            .collect::<Vec<_>>();
        if alive.len() != 1 {
            return None;
        }
        let slot = alive.pop()?;
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(output.clone());
        Some(NoticeGuard { slot })
    }
}

/// Detaches the run from its connection when dropped.
pub(crate) struct NoticeGuard {
    slot: Arc<Slot>,
}

impl Drop for NoticeGuard {
    fn drop(&mut self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Opens the job pool's connections (see the module documentation).
pub(crate) struct JobConnect {
    pub(crate) tls: MakeTls,
    pub(crate) router: NoticeRouter,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl deadpool_postgres::Connect for JobConnect {
    fn connect(
        &self,
        pg_config: &Config,
    ) -> BoxFuture<'_, Result<(Client, JoinHandle<()>), tokio_postgres::Error>> {
        let tls = self.tls.clone();
        let pg_config = pg_config.clone();
        let router = self.router.clone();
        Box::pin(async move {
            let (client, mut connection) = pg_config.connect(tls).await?;
            let slot: Arc<Slot> = Arc::default();
            let own = slot.clone();
            let task = tokio::spawn(async move {
                loop {
                    let message = std::future::poll_fn(|cx| connection.poll_message(cx)).await;
                    match message {
                        Some(Ok(AsyncMessage::Notice(notice))) => {
                            let output = own.lock().unwrap_or_else(PoisonError::into_inner).clone();
                            match output {
                                Some(output) => deliver(&output, &notice),
                                None => tracing::debug!(
                                    severity = notice.severity(),
                                    message = notice.message(),
                                    "notice outside an SQL job"
                                ),
                            }
                        }
                        Some(Ok(_)) => {}
                        Some(Err(error)) => {
                            tracing::warn!(%error, "SQL job connection ended with an error");
                            break;
                        }
                        None => break,
                    }
                }
            });
            // On failure the client is dropped, which ends the task.
            let row = client
                .query_typed_one("SELECT pg_backend_pid()", &[])
                .await?;
            let pid: i32 = row.try_get(0)?;
            router.register(pid, &slot);
            Ok((client, task))
        })
    }
}

/// One notice into the run: a progress report, or a line of its log
/// (`SEVERITY: message`, with `DETAIL:` and `HINT:` lines if any).
fn deliver(output: &JobOutput, notice: &DbError) {
    if let Some(rest) = notice.message().strip_prefix(NOTICE_PREFIX) {
        // Malformed progress is ignored like a malformed progress line.
        if let Some(progress) = parse_progress(rest) {
            output.set_progress(progress);
        }
        return;
    }
    let mut line = format!("{}: {}\n", notice.severity(), notice.message());
    if let Some(detail) = notice.detail() {
        line.push_str(&format!("DETAIL: {detail}\n"));
    }
    if let Some(hint) = notice.hint() {
        line.push_str(&format!("HINT: {hint}\n"));
    }
    output.push(Stream::Stdout, line.as_bytes());
}
