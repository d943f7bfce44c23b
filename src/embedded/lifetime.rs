//! Locks, postmaster detection, stale pid recovery and the stop watchdog.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::binaries::{find_program, PgBinaries};
use super::layout::{Layout, ServiceUser};
use super::{io_err, EmbeddedError};

/// Open (creating 0600 if missing) a lock file inside the cluster directory.
/// A file this call created is handed to the service user, whose watchdog must
/// be able to open it. Rust opens with O_CLOEXEC, so the server and other
/// children never inherit the descriptor (and with it the lock).
pub(super) fn open_lock_file(
    path: &Path,
    svc: Option<&ServiceUser>,
) -> Result<File, EmbeddedError> {
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Ok(file) => {
            if let Some(svc) = svc {
                std::os::unix::fs::fchown(&file, Some(svc.uid.as_raw()), Some(svc.gid.as_raw()))
                    .map_err(|e| io_err(&format!("give to user {}", svc.name), path, e))?;
            }
            Ok(file)
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => OpenOptions::new()
            .read(true)
            .open(path)
            .map_err(|e| io_err("open the lock file", path, e)),
        Err(e) => Err(io_err("create the lock file", path, e)),
    }
}

/// Blocking flock, retried on EINTR.
pub(super) fn lock(file: File, arg: FlockArg, path: &Path) -> Result<Flock<File>, EmbeddedError> {
    let mut file = file;
    loop {
        match Flock::lock(file, arg) {
            Ok(locked) => return Ok(locked),
            Err((f, Errno::EINTR)) => file = f,
            Err((_, errno)) => {
                return Err(io_err("lock", path, std::io::Error::from(errno)));
            }
        }
    }
}

/// True when the locked file is still the one at `path` (an ephemeral
/// watchdog may have deleted the cluster directory while we waited).
pub(super) fn still_linked(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Postmaster {
    /// No postmaster.pid.
    Absent,
    /// postmaster.pid names a live postgres process serving this data directory.
    Live(i32),
    /// postmaster.pid is left over from a crash or a reboot.
    Stale { pid: Option<i32>, reason: String },
}

pub(super) fn postmaster_state(pgdata: &Path) -> Postmaster {
    let pidfile = pgdata.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pidfile) else {
        return Postmaster::Absent;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    else {
        return Postmaster::Stale {
            pid: None,
            reason: "postmaster.pid has no valid pid".into(),
        };
    };
    if !pid_alive(pid) {
        return Postmaster::Stale {
            pid: Some(pid),
            reason: format!("process {pid} is not running"),
        };
    }
    match postgres_cmdline(pid) {
        // Without procfs (not Linux) the best evidence left is the socket probe.
        None => Postmaster::Live(pid),
        Some(args) => {
            let is_postgres = args.first().is_some_and(|a0| {
                Path::new(a0)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("postgres"))
            });
            let ours = args.iter().any(|a| Path::new(a) == pgdata);
            if is_postgres && ours {
                Postmaster::Live(pid)
            } else {
                Postmaster::Stale {
                    pid: Some(pid),
                    reason: format!(
                        "process {pid} ({}) is not the postmaster of {}",
                        args.first().map(String::as_str).unwrap_or("zombie"),
                        pgdata.display()
                    ),
                }
            }
        }
    }
}

/// `kill(pid, 0)`: EPERM still means the process exists.
pub(super) fn pid_alive(pid: i32) -> bool {
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// argv of `pid` from /proc (world-readable, unlike /proc/<pid>/exe); `None`
/// when there is no procfs.
fn postgres_cmdline(pid: i32) -> Option<Vec<String>> {
    if !Path::new("/proc/self/cmdline").exists() {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Remove what a dead postmaster left behind, so `pg_ctl start` does not
/// refuse ("lock file already exists") when the pid got reused.
pub(super) fn remove_stale(layout: &Layout) -> Result<(), EmbeddedError> {
    for path in [
        layout.pgdata().join("postmaster.pid"),
        layout.socket_lock(),
        layout.socket(),
    ] {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(io_err("remove stale", &path, e));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Run a PostgreSQL program as the service user (when root), from the cluster
/// directory (the service user may not be able to traverse our cwd, and
/// initdb/pg_ctl fail when they cannot getcwd), without PG* variables that
/// would redirect it elsewhere.
pub(super) fn pg_command(program: &Path, layout: &Layout) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(&layout.cluster_dir)
        .stdin(Stdio::null())
        .env("LC_ALL", "C");
    for var in [
        "PGDATA",
        "PGPORT",
        "PGHOST",
        "PGOPTIONS",
        "PGUSER",
        "PGDATABASE",
    ] {
        cmd.env_remove(var);
    }
    if let Some(svc) = &layout.service {
        // std calls setgroups(0) before setuid when root, dropping root's groups.
        cmd.uid(svc.uid.as_raw()).gid(svc.gid.as_raw());
    }
    cmd
}

/// Spawn the detached process that stops the server once the last client has
/// released its shared lock on clients.lock. Returns false (after a warning)
/// when `flock(1)` is not installed: the server is then left running.
pub(super) fn spawn_watchdog(layout: &Layout, bins: &PgBinaries, ephemeral: bool) -> bool {
    let Some(flock) = find_program("flock", std::env::var_os("PATH").as_deref()) else {
        tracing::warn!(
            "flock(1) (util-linux) not found: the embedded PostgreSQL server at {} will keep running after crondeck exits; stop it with `pg_ctl stop -D {}`",
            layout.cluster_dir.display(),
            layout.pgdata().display()
        );
        return false;
    };
    let mut cmd = pg_command(&flock, layout);
    // -o: pg_ctl does not inherit the lock descriptor; flock itself keeps it.
    cmd.arg("-x").arg("-o").arg(layout.clients_lock());
    if ephemeral {
        let script = r#""$1" stop -D "$2" -m immediate; rm -rf "$3""#;
        cmd.args(["sh", "-c", script, "sh"])
            .arg(bins.pg_ctl())
            .arg(layout.pgdata())
            .arg(&layout.cluster_dir);
    } else {
        cmd.arg(bins.pg_ctl())
            .args(["stop", "-D"])
            .arg(layout.pgdata())
            .args(["-m", "fast"]);
    }
    let log = OpenOptions::new().append(true).open(layout.server_log());
    let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
        Err(_) => (Stdio::null(), Stdio::null()),
    };
    cmd.stdout(out).stderr(err);
    // SAFETY: setsid is async-signal-safe; its own session keeps the watchdog
    // out of crondeck's process group (a Ctrl-C must not kill it).
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    match cmd.spawn() {
        Ok(mut child) => {
            // Reap it if it finishes while we live; if we exit first, init adopts it.
            let _ = std::thread::Builder::new()
                .name("pg-watchdog-reaper".into())
                .spawn(move || child.wait());
            true
        }
        Err(e) => {
            tracing::warn!(
                "could not start the stop watchdog ({}): the embedded PostgreSQL server at {} will keep running",
                e,
                layout.cluster_dir.display()
            );
            false
        }
    }
}

/// The last `n` lines of a file, for error messages.
pub(super) fn tail_file(path: &Path, n: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => tail_text(&String::from_utf8_lossy(&bytes), n),
        Err(_) => String::new(),
    }
}

pub(super) fn tail_text(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub(super) fn remove_dir_if_exists(path: &PathBuf) -> Result<(), EmbeddedError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("remove", path, e)),
        _ => Ok(()),
    }
}
