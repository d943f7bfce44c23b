//! Fault injection for the fault suite: real `crondeck scheduler` processes
//! (with their logs kept for the post-mortem), signals, a TCP proxy that can
//! cut a node off from the database, and jobs that detect real overlap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::task::AbortHandle;

use super::TestDb;

/// Heartbeat and lease of the nodes in the fault suite: short, so that a
/// rescue takes seconds.
pub const HEARTBEAT: &str = "500ms";
pub const LEASE: &str = "2s";
pub const LEASE_DURATION: Duration = Duration::from_secs(2);

/// Where a fault test keeps its node logs and marker files. Kept under the
/// target directory (not a temporary directory) so a failure can be read.
pub fn work_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("faults")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the test's work directory");
    dir
}

/// A `crondeck scheduler` process.
pub struct NodeProcess {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

/// How to start a node process.
pub struct NodeOptions<'a> {
    pub name: &'a str,
    /// `--database-url`; the test database's own by default.
    pub url: Option<String>,
    pub workers: usize,
    pub env: Vec<(String, String)>,
}

impl<'a> NodeOptions<'a> {
    pub fn new(name: &'a str) -> Self {
        NodeOptions {
            name,
            url: None,
            workers: 4,
            env: Vec::new(),
        }
    }
}

impl NodeProcess {
    pub fn spawn(db: &TestDb, dir: &Path, opts: NodeOptions<'_>) -> NodeProcess {
        let log = dir.join(format!("{}.log", opts.name));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the node log");
        let url = opts.url.unwrap_or_else(|| db.url());
        let child = Command::new(env!("CARGO_BIN_EXE_crondeck"))
            .args(["--database-url", &url])
            .args(["scheduler", "--allow-shell", "--node-name", opts.name])
            .args(["--heartbeat", HEARTBEAT, "--lease", LEASE])
            .args(["--workers", &opts.workers.to_string()])
            .args(["--shutdown-grace", "2s"])
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn crondeck scheduler");
        NodeProcess {
            name: opts.name.to_string(),
            child,
            log,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.name));
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the graceful exit.
    pub async fn stop(mut self) {
        // A stopped process cannot act on SIGTERM.
        let _ = kill(self.pid(), Signal::SIGCONT);
        self.signal(Signal::SIGTERM);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "node {} exited with {status}; see {}",
                        self.name,
                        self.log.display()
                    );
                    return;
                }
                Ok(None) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                _ => {
                    let _ = self.child.kill();
                    panic!(
                        "node {} did not stop within 30 s of SIGTERM; see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory right now, in KiB (0 if unknown).
    pub fn rss_kib(&self) -> u64 {
        status_field(self.child.id(), "VmRSS:")
    }

    /// Peak resident memory, in KiB (0 if unknown).
    pub fn peak_rss_kib(&self) -> u64 {
        status_field(self.child.id(), "VmHWM:")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A failing test must not leave nodes running against the next one.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// A shell command that detects a real overlap of two executions of the same
/// job, whatever the run history says: it holds an exclusive `flock` on a
/// per-job file for as long as it runs (its children inherit the lock), and
/// appends to `overlaps` when the lock is already held. The lock dies with the
/// last process of the run, so a run killed with its process group releases
/// it. `body` runs while the lock is held.
pub fn exclusive_shell(dir: &Path, body: &str) -> String {
    format!(
        "exec 9>>'{dir}/lock-'\"$CRONDECK_JOB\"; \
         flock -n 9 || echo \"$CRONDECK_JOB run $CRONDECK_RUN_ID overlapped\" >> '{dir}/overlaps'; \
         {body}",
        dir = dir.display()
    )
}

/// Overlaps seen by `exclusive_shell` jobs.
pub fn shell_overlaps(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("overlaps")).unwrap_or_default()
}

/// The SQL counterpart of `exclusive_shell`: holds a transaction-level
/// advisory lock keyed by `key` and records an overlap in `public.overlaps`
/// (see `create_overlaps_table`) when another execution holds it.
pub fn exclusive_sql(key: i64, body: &str) -> String {
    format!(
        "INSERT INTO public.overlaps (job_key) SELECT {key} WHERE NOT pg_try_advisory_xact_lock({key}); {body}"
    )
}

pub async fn create_overlaps_table(client: &tokio_postgres::Client) {
    client
        .batch_execute(
            "CREATE TABLE public.overlaps (job_key bigint, at timestamptz DEFAULT now());
             GRANT INSERT ON public.overlaps TO crondeck_job",
        )
        .await
        .expect("create public.overlaps");
}

/// A TCP proxy on 127.0.0.1 in front of the test server's Unix socket, which
/// can inject the network faults a node must survive:
///
/// - `cut`: drop every connection and refuse new ones (a firewall reset),
///   until `heal`;
/// - `stall`: keep every socket open but forward nothing, either way (a
///   black-holed link: no reset, no error), until `heal`;
/// - `drop_next_claim_reply`: let the next claim's `COMMIT` (a transaction
///   that inserted runs) reach the server, wait for the server to answer it,
///   then drop that answer and close the connection: the claim committed,
///   the node sees "connection closed" (an ambiguous outcome).
///
/// It speaks just enough of the PostgreSQL wire protocol (message framing,
/// with TLS disabled) to find that `COMMIT` and the server's answer to it.
pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

#[derive(Default)]
struct ProxyState {
    cut: AtomicBool,
    stall: AtomicBool,
    drop_claim_reply: AtomicBool,
    /// Claim replies dropped so far.
    dropped: AtomicU64,
}

impl ProxyState {
    /// Wait while stalled; false if the link was cut meanwhile.
    async fn pass(&self) -> bool {
        while self.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        !self.cut.load(Ordering::SeqCst)
    }
}

/// One framed message: type byte (none for the startup message), then the
/// length (including itself) and the body.
async fn read_message<R: AsyncRead + Unpin>(from: &mut R, typed: bool) -> std::io::Result<Vec<u8>> {
    let mut head = vec![0u8; if typed { 5 } else { 4 }];
    from.read_exact(&mut head).await?;
    let len_at = head.len() - 4;
    let len = u32::from_be_bytes(head[len_at..].try_into().unwrap()) as usize;
    if len < 4 {
        return Err(std::io::Error::other("bad message length"));
    }
    let mut message = head;
    message.resize(message.len() + len - 4, 0);
    from.read_exact(&mut message[len_at + 4..]).await?;
    Ok(message)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn proxy_connection(inbound: TcpStream, socket: PathBuf, state: Arc<ProxyState>) {
    let Ok(outbound) = UnixStream::connect(&socket).await else {
        return;
    };
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let drop_reply = Arc::new(AtomicBool::new(false));
    let to_server = {
        let (state, drop_reply) = (state.clone(), drop_reply.clone());
        async move {
            let mut typed = false;
            let mut inserted_runs = false;
            loop {
                let message = read_message(&mut client_read, typed).await?;
                if typed {
                    match message[0] {
                        b'P' | b'Q' if contains(&message, b"INSERT INTO crondeck.runs") => {
                            inserted_runs = true;
                        }
                        _ => {}
                    }
                    if message[0] == b'Q' && message[5..].starts_with(b"COMMIT") {
                        if inserted_runs
                            && state
                                .drop_claim_reply
                                .compare_exchange(true, false, Ordering::SeqCst, Ordering::SeqCst)
                                .is_ok()
                        {
                            drop_reply.store(true, Ordering::SeqCst);
                        }
                        inserted_runs = false;
                    }
                }
                // The startup message is the only untyped one (no TLS here).
                typed = true;
                if !state.pass().await {
                    return Ok(());
                }
                server_write.write_all(&message).await?;
            }
            #[allow(unreachable_code)]
            std::io::Result::Ok(())
        }
    };
    let to_client = async move {
        loop {
            let message = read_message(&mut server_read, true).await?;
            if drop_reply.load(Ordering::SeqCst) {
                // The server is answering the claim's COMMIT: it committed
                // once it says ReadyForQuery. Drop all of it, then hang up.
                if message[0] == b'Z' {
                    state.dropped.fetch_add(1, Ordering::SeqCst);
                    return std::io::Result::Ok(());
                }
                continue;
            }
            if !state.pass().await {
                return Ok(());
            }
            client_write.write_all(&message).await?;
        }
    };
    // Either direction ending closes both (the halves drop here).
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
    }
}

impl Proxy {
    pub async fn start(socket: PathBuf) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let state = Arc::new(ProxyState::default());
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = {
            let state = state.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if state.cut.load(Ordering::SeqCst) {
                        // Refused: closed at once, as by a firewall reset.
                        drop(inbound);
                        continue;
                    }
                    let task =
                        tokio::spawn(proxy_connection(inbound, socket.clone(), state.clone()));
                    let mut list = connections.lock().unwrap();
                    list.retain(|h| !h.is_finished());
                    list.push(task.abort_handle());
                }
            })
            .abort_handle()
        };
        Proxy {
            port,
            state,
            connections,
            accept,
        }
    }

    /// Drop every proxied connection and refuse new ones until `heal`.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Forward nothing, either way, on every connection (open or new), but
    /// close none: a black-holed link. Until `heal`.
    pub fn stall(&self) {
        self.state.stall.store(true, Ordering::SeqCst);
    }

    pub fn heal(&self) {
        self.state.stall.store(false, Ordering::SeqCst);
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Drop the server's answer to the next claim's COMMIT (see the type).
    pub fn drop_next_claim_reply(&self) {
        self.state.drop_claim_reply.store(true, Ordering::SeqCst);
    }

    /// How many claim replies were dropped.
    pub fn dropped_claim_replies(&self) -> u64 {
        self.state.dropped.load(Ordering::SeqCst)
    }

    /// A connection string for `db` through this proxy.
    pub fn url(&self, db: &TestDb) -> String {
        let config = db.spec.config();
        let user = config.get_user().unwrap_or("crondeck");
        // The embedded server's superuser logs in with a password.
        let password = config
            .get_password()
            .map(|p| format!(" password='{}'", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!(
            "host=127.0.0.1 port={} user={user}{password} dbname={} sslmode=disable",
            self.port, db.name
        )
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Node names by node id, from the database (for messages).
pub async fn node_names(client: &tokio_postgres::Client) -> HashMap<String, String> {
    client
        .query("SELECT id, name FROM crondeck.nodes", &[])
        .await
        .expect("list nodes")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Make a job's failure policy pause it after `threshold` consecutive
/// failures, at once (no minimum age).
pub async fn set_failure_threshold(client: &tokio_postgres::Client, job: &str, threshold: i32) {
    client
        .execute(
            "UPDATE crondeck.jobs SET failure_threshold = $2, failure_min_age_ms = 0 WHERE name = $1",
            &[&job, &threshold],
        )
        .await
        .expect("set the failure policy");
}

/// Fault tests run one at a time: each starts several nodes with a 2 s
/// lease, and on two cores a neighbour's CPU load would eat into it.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Add a job through the library, as `crondeck add` does.
pub async fn add_job(
    client: &mut tokio_postgres::Client,
    name: &str,
    schedule: &str,
    action: crondeck::job::ActionKind,
    command: &str,
    timeout: Option<Duration>,
) -> i64 {
    use crondeck::db::audit::Actor;
    use crondeck::job::JobSpec;
    use crondeck::ops::{self, AddOptions};
    use crondeck::schedule::Schedule;
    let mut spec = JobSpec::new(name, Schedule::parse(schedule).unwrap(), action, command);
    spec.timeout = timeout;
    ops::add(client, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap_or_else(|e| panic!("add {name}: {e}"))
        .id
}

/// Runs of `job` that a node whose name is `node` started, by status.
pub async fn count_runs(
    client: &tokio_postgres::Client,
    job: &str,
    node: &str,
    status: &str,
) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
             WHERE j.name = $1 AND r.node_name = $2 AND r.status = $3",
            &[&job, &node, &status],
        )
        .await
        .expect("count runs")
        .get(0)
}

/// The id of the run of `job` now running on node `node`, if any.
pub async fn running_on(client: &tokio_postgres::Client, job: &str, node: &str) -> Option<i64> {
    client
        .query_opt(
            "SELECT r.id FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
             WHERE j.name = $1 AND r.node_name = $2 AND r.status = 'running'",
            &[&job, &node],
        )
        .await
        .expect("find a running run")
        .map(|r| r.get(0))
}

/// Whether a live node called `name` has registered.
pub async fn registered(client: &tokio_postgres::Client, name: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM crondeck.nodes WHERE name = $1",
            &[&name],
        )
        .await
        .expect("count nodes")
        .get(0)
}
