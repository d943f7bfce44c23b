//! Embedded PostgreSQL: with no database configured, crondeck runs a private
//! PostgreSQL server from the binaries installed on the machine.
//!
//! # Where the data is
//!
//! The caller picks a data directory (`--data-dir`, default
//! `$XDG_DATA_HOME/crondeck` or `~/.local/share/crondeck`, created 0700).
//! The *cluster directory* holds `data/` (PGDATA), the socket
//! `.s.PGSQL.5432`, `server.log`, and the lock files `clients.lock` and
//! `start.lock`.
//!
//! * As a normal user the cluster directory is `<data-dir>/pg`, owned by
//!   that user.
//! * As root it is `/var/lib/crondeck/clusters/<h>`, where `<h>` is the first
//!   16 hex digits of sha256(canonical data-dir path), and `<data-dir>/pg` is a
//!   symlink to it. PostgreSQL refuses to run as root, so the server runs as
//!   the dedicated system account `crondeck-pg`, created with `useradd
//!   --system` when missing (never a fallback to a shared account such as
//!   `postgres` or `nobody`: any process of that account could otherwise log
//!   in and have root's node run a shell job). The cluster directory is the
//!   account's (0700); `/var/lib/crondeck` is root's (0755) and
//!   `/var/lib/crondeck/clusters` is root:crondeck-pg 01771 (the account adds
//!   and removes its own clusters, nobody else lists it).
//!
//! # Who can log in
//!
//! Every local login needs a password (SCRAM-SHA-256); `pg_hba.conf` rejects
//! TCP and `listen_addresses = ''` is set in the cluster's own
//! `postgresql.auto.conf` (and on the command line). The superuser
//! `crondeck` has a random 256-bit password kept in
//! `<data-dir>/superuser.password`, mode 0600, owned by the user running
//! crondeck (root when root): the server's account cannot read it. The
//! cluster only ever receives the SCRAM verifier, set in single-user mode
//! before the first start, so no server runs with a login open. The 0700
//! cluster directory (the socket's) keeps other users away from the socket
//! altogether. Ephemeral (test harness) clusters additionally let roles
//! other than the superuser log in without a password. See `security`.
//!
//! A cluster made by an older crondeck (trust logins, owned by `postgres` or
//! `nobody`), or one whose password file is missing, is upgraded in place on
//! the next start once its server is stopped: handed to the account, given a
//! new password, its `pg_hba.conf` rewritten. While its old server runs, the
//! start is refused with the command that stops it.
//!
//! Whoever runs code as the cluster's account controls the cluster (it owns
//! the files: PostgreSQL's own model), so nothing but the server may run as
//! it; that is why it is dedicated, has no shell and no password.
//!
//! # Starting, attaching, stale pid files
//!
//! `EmbeddedServer::start` takes an exclusive flock on `start.lock` so
//! concurrent starts never both run initdb or pg_ctl. initdb runs into
//! `data.initdb-tmp` and is renamed to `data` only when complete, so an
//! interrupted initdb never leaves a half cluster. If `data/postmaster.pid`
//! names a live postgres process whose command line carries this PGDATA, the
//! server is already running and this process *attaches*. If the pid is dead,
//! or was reused (after `kill -9` or a reboot) by another process,
//! `postmaster.pid` and the socket lock file are removed and a fresh server
//! is started.
//!
//! # Lifetime
//!
//! Every process using the server holds a *shared* flock on `clients.lock`
//! (taken before looking at the server, held by the returned handle). The
//! process that started the server also spawns a detached watchdog, in its
//! own session and as the service account when root:
//! `flock -x clients.lock pg_ctl stop -D data -m fast`. It blocks until the
//! last client releases its shared lock (exit, even `kill -9`, releases it),
//! then stops the server while holding the exclusive lock, so a newcomer
//! waits and then starts a fresh server. Quitting one crondeck therefore never
//! breaks another, and the server is not leaked. Without `flock(1)`
//! (util-linux) the server is left running and a warning is logged.
//! In *ephemeral* mode (test harnesses) the watchdog stops the server with
//! `-m immediate` and then deletes the cluster directory.
//!
//! To stop the server by hand: `pg_ctl stop -D <cluster>/data` (as root:
//! `runuser -u crondeck-pg -- pg_ctl stop -D <cluster>/data`). Do not delete
//! a data directory whose server is running; if it happens anyway, the postmaster notices its lock file is gone
//! within a minute and shuts itself down.

mod binaries;
mod error;
mod layout;
mod lifetime;
mod probe;
mod security;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

pub use binaries::{find_binaries, PgBinaries};
use error::io_err;
pub use error::EmbeddedError;
use layout::Layout;
pub use layout::{PASSWORD_FILE, SERVICE_ACCOUNT};
use lifetime::Postmaster;

/// Superuser created by initdb; clients log in as this user.
pub const SUPERUSER: &str = "crondeck";
const PORT: u16 = 5432;
const SOCKET_NAME: &str = ".s.PGSQL.5432";
const ROOT_CLUSTERS: &str = "/var/lib/crondeck/clusters";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const TAIL_LINES: usize = 20;

/// What to run: the data directory, and whether the server is throwaway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddedOptions {
    pub data_dir: PathBuf,
    /// Test harness mode: when the last client goes, stop immediately and
    /// delete the cluster; also skip fsync (the data is thrown away), and let
    /// roles other than the superuser log in without a password (tests log in
    /// as the roles they create). Never for data that matters.
    pub ephemeral: bool,
}

/// A running embedded server this process uses. Dropping it releases the
/// shared lock on `clients.lock`; the server stops once no process holds it.
pub struct EmbeddedServer {
    _clients_lock: Flock<File>,
    data_dir: PathBuf,
    cluster_dir: PathBuf,
    password_file: PathBuf,
    /// The superuser's password; never printed (see the Debug impl).
    password: String,
    bins: PgBinaries,
    started_here: bool,
    initialized_here: bool,
    secured_here: bool,
}

impl std::fmt::Debug for EmbeddedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedServer")
            .field("data_dir", &self.data_dir)
            .field("cluster_dir", &self.cluster_dir)
            .field("password_file", &self.password_file)
            .field("bins", &self.bins)
            .field("started_here", &self.started_here)
            .field("initialized_here", &self.initialized_here)
            .field("secured_here", &self.secured_here)
            .finish_non_exhaustive()
    }
}

/// `$XDG_DATA_HOME/crondeck`, else `$HOME/.local/share/crondeck`.
pub fn default_data_dir() -> Result<PathBuf, EmbeddedError> {
    data_dir_from(
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn data_dir_from(xdg: Option<PathBuf>, home: Option<PathBuf>) -> Result<PathBuf, EmbeddedError> {
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(x) = xdg.filter(|p| p.is_absolute()) {
        return Ok(x.join("crondeck"));
    }
    match home.filter(|p| !p.as_os_str().is_empty()) {
        Some(h) => Ok(h.join(".local/share/crondeck")),
        None => Err(EmbeddedError::NoHome),
    }
}

impl EmbeddedServer {
    /// Blocking (call via `tokio::task::spawn_blocking` or before the runtime):
    /// find binaries, init if needed, start or attach, wait until ready.
    pub fn start(opts: &EmbeddedOptions) -> Result<EmbeddedServer, EmbeddedError> {
        Self::start_in(opts, Path::new(ROOT_CLUSTERS))
    }

    fn start_in(opts: &EmbeddedOptions, clusters_root: &Path) -> Result<Self, EmbeddedError> {
        let bins = find_binaries()?;
        let layout = Layout::resolve(&opts.data_dir, clusters_root)?;
        let svc = layout.service.as_ref();

        // Shared client lock first: if a watchdog is stopping the server we
        // wait here, then start a fresh one.
        let clients_lock = loop {
            layout.ensure_dirs()?;
            let path = layout.clients_lock();
            let file = lifetime::open_lock_file(&path, svc)?;
            let locked = lifetime::lock(file, FlockArg::LockShared, &path)?;
            if lifetime::still_linked(&locked, &path) {
                break locked;
            }
            // An ephemeral watchdog deleted the cluster while we waited.
        };
        let start_path = layout.start_lock();
        let start_file = lifetime::open_lock_file(&start_path, svc)?;
        let start_lock = lifetime::lock(start_file, FlockArg::LockExclusive, &start_path)?;

        let initialized_here = init_if_needed(&layout, &bins, opts.ephemeral)?;
        let state = lifetime::postmaster_state(&layout.pgdata());
        // A cluster of an older crondeck (trust logins, owned by a shared
        // account), or one whose password file went missing: upgrade it in
        // place, which needs the server stopped.
        let mut secured_here = initialized_here;
        if let Some(reason) = security::needs_securing(&layout, &layout.pgdata(), opts.ephemeral)? {
            if let Postmaster::Live(pid) = state {
                return Err(EmbeddedError::NeedsUpgrade {
                    pgdata: layout.pgdata(),
                    reason,
                    pid,
                    stop: stop_command(&layout),
                });
            }
            tracing::warn!(
                "securing the embedded PostgreSQL cluster in {}: {reason}",
                layout.pgdata().display()
            );
            lifetime::remove_stale(&layout)?;
            security::secure(&layout, &bins, &layout.pgdata(), opts.ephemeral)?;
            secured_here = true;
        }
        let password_file = layout.password_file();
        let password =
            security::read_password(&password_file).map_err(|message| EmbeddedError::Layout {
                path: password_file.clone(),
                message,
            })?;
        let started_here = match state {
            Postmaster::Live(pid) => {
                tracing::debug!(pid, "attaching to running embedded PostgreSQL");
                false
            }
            state => {
                if let Postmaster::Stale { reason, .. } = &state {
                    tracing::warn!(
                        "removing stale postmaster.pid in {}: {reason}",
                        layout.pgdata().display()
                    );
                }
                lifetime::remove_stale(&layout)?;
                start_server(&layout, &bins, opts.ephemeral)?;
                true
            }
        };
        wait_ready(&layout, &password)?;
        drop(start_lock);

        Ok(EmbeddedServer {
            _clients_lock: clients_lock,
            data_dir: layout.data_dir,
            cluster_dir: layout.cluster_dir,
            password_file,
            password,
            bins,
            started_here,
            initialized_here,
            secured_here,
        })
    }

    /// Directory of the Unix socket (pass as `host`).
    pub fn socket_dir(&self) -> &Path {
        &self.cluster_dir
    }

    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
    }

    /// This process started the server (rather than attaching to a running one).
    pub fn started_here(&self) -> bool {
        self.started_here
    }

    /// This process ran initdb (the data directory was fresh).
    pub fn initialized_here(&self) -> bool {
        self.initialized_here
    }

    /// This process set the superuser's password and wrote `pg_hba.conf`
    /// (a fresh cluster, or one of an older crondeck upgraded in place).
    pub fn secured_here(&self) -> bool {
        self.secured_here
    }

    /// The file holding the superuser's password (mode 0600, in the data
    /// directory, readable by the user running crondeck only).
    pub fn password_file(&self) -> &Path {
        &self.password_file
    }

    /// Connection settings for database `dbname` over the socket, user
    /// `crondeck`, with its password.
    pub fn client_config(&self, dbname: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.cluster_dir)
            .port(PORT)
            .user(SUPERUSER)
            .password(self.password.as_bytes())
            .dbname(dbname)
            .application_name("crondeck");
        config
    }

    /// E.g. "embedded PostgreSQL 15 at /root/.local/share/crondeck (socket /var/lib/crondeck/clusters/ab12…)".
    pub fn describe(&self) -> String {
        format!(
            "embedded PostgreSQL {} at {} (socket {})",
            self.bins.version,
            self.data_dir.display(),
            self.cluster_dir.display()
        )
    }
}

/// Run initdb unless `data/PG_VERSION` exists. Returns true when it ran.
fn init_if_needed(
    layout: &Layout,
    bins: &PgBinaries,
    ephemeral: bool,
) -> Result<bool, EmbeddedError> {
    let pgdata = layout.pgdata();
    let version_file = pgdata.join("PG_VERSION");
    if let Ok(v) = std::fs::read_to_string(&version_file) {
        let cluster = v.trim().to_string();
        if cluster != bins.version {
            return Err(EmbeddedError::VersionMismatch {
                pgdata,
                cluster,
                binaries: bins.version.clone(),
                bindir: bins.bindir.clone(),
            });
        }
        return Ok(false);
    }
    if pgdata.exists() {
        // We only ever create data/ by renaming a complete initdb result, so
        // this is something else: remove it only if empty.
        std::fs::remove_dir(&pgdata).map_err(|_| EmbeddedError::Layout {
            path: pgdata.clone(),
            message: "exists but is not a PostgreSQL cluster (no PG_VERSION); move it away".into(),
        })?;
    }
    let tmp = layout.initdb_tmp();
    lifetime::remove_dir_if_exists(&tmp)?; // an interrupted earlier initdb
    let mut cmd = lifetime::pg_command(&bins.initdb(), layout);
    cmd.arg("-D")
        .arg(&tmp)
        // No login works until `security::secure` has set the password and
        // written pg_hba.conf, before the cluster is moved into place.
        .args(["-U", SUPERUSER, "-A", "reject", "-E", "UTF8", "--locale=C"]);
    if ephemeral {
        cmd.arg("--no-sync");
    }
    tracing::info!(
        "initializing embedded PostgreSQL cluster in {}",
        pgdata.display()
    );
    let out = cmd.output().map_err(|e| io_err("run", &bins.initdb(), e))?;
    if !out.status.success() {
        return Err(command_failed("initdb", &bins.initdb(), &out, None));
    }
    security::secure(layout, bins, &tmp, ephemeral)?;
    std::fs::rename(&tmp, &pgdata).map_err(|e| io_err("move the new cluster into", &pgdata, e))?;
    Ok(true)
}

fn start_server(layout: &Layout, bins: &PgBinaries, ephemeral: bool) -> Result<(), EmbeddedError> {
    // pg_ctl passes -o through a shell; layout::check_cluster_path refused
    // paths with shell metacharacters, and the double quotes keep spaces or
    // commas inside the unix_socket_directories list element.
    let mut opts = format!(
        "-c listen_addresses='' -c 'unix_socket_directories=\"{}\"' -c port={PORT} \
         -c unix_socket_permissions=0700 -c shared_buffers=32MB -c max_connections=100",
        layout.cluster_dir.display()
    );
    if ephemeral {
        opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
    }
    let mut cmd = lifetime::pg_command(&bins.pg_ctl(), layout);
    cmd.args(["start", "-w", "-t", "60", "-D"])
        .arg(layout.pgdata())
        .arg("-l")
        .arg(layout.server_log())
        .arg("-o")
        .arg(opts);
    tracing::info!(
        "starting embedded PostgreSQL in {}",
        layout.cluster_dir.display()
    );
    let out = cmd.output().map_err(|e| io_err("run", &bins.pg_ctl(), e))?;
    let running = out.status.success() || layout.pgdata().join("postmaster.pid").exists();
    if running {
        // Even after a failed -w wait a postmaster may exist: let the watchdog own it.
        lifetime::spawn_watchdog(layout, bins, ephemeral);
    }
    if !out.status.success() {
        return Err(command_failed(
            "pg_ctl start",
            &bins.pg_ctl(),
            &out,
            Some(&layout.server_log()),
        ));
    }
    Ok(())
}

fn command_failed(what: &str, program: &Path, out: &Output, log: Option<&Path>) -> EmbeddedError {
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (log, tail) = match log {
        Some(log) => (
            log.to_path_buf(),
            format!(
                "{}\n{}",
                lifetime::tail_text(&output, 5),
                lifetime::tail_file(log, TAIL_LINES)
            ),
        ),
        None => (
            PathBuf::from("its output"),
            lifetime::tail_text(&output, TAIL_LINES),
        ),
    };
    EmbeddedError::Command {
        what: what.to_string(),
        program: program.to_path_buf(),
        status: out.status.to_string(),
        log,
        tail,
    }
}

/// How to stop the server by hand (as its owner).
fn stop_command(layout: &Layout) -> String {
    use std::os::unix::fs::MetadataExt;
    let pgdata = layout.pgdata();
    let pg_ctl = format!("pg_ctl stop -D {}", pgdata.display());
    if !nix::unistd::Uid::effective().is_root() {
        return pg_ctl;
    }
    let owner = std::fs::metadata(&pgdata)
        .ok()
        .and_then(|m| nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(m.uid())).ok())
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "postgres".into());
    format!("runuser -u {owner} -- {pg_ctl}")
}

/// Wait until a login (with the password) on database `postgres` succeeds.
fn wait_ready(layout: &Layout, password: &str) -> Result<(), EmbeddedError> {
    let started = Instant::now();
    let socket = layout.socket();
    loop {
        let last_error = match probe::probe(&socket, SUPERUSER, password, "postgres") {
            Ok(()) => return Ok(()),
            Err(probe::ProbeError::Refused { sqlstate, message }) => {
                return Err(EmbeddedError::LoginRefused {
                    socket,
                    sqlstate,
                    message,
                    password_file: layout.password_file(),
                })
            }
            Err(probe::ProbeError::NotYet(e)) => e,
        };
        if started.elapsed() >= READY_TIMEOUT {
            return Err(EmbeddedError::NotReady {
                socket,
                waited: started.elapsed(),
                last_error,
                log: layout.server_log(),
                tail: lifetime::tail_file(&layout.server_log(), TAIL_LINES),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
