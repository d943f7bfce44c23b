//! Errors of the embedded server: each says what failed, where, and how to fix it.

use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found (searched {searched}). \
         Install them: `apt-get install postgresql` (Debian/Ubuntu), \
         `dnf install postgresql-server` (Fedora/RHEL), `brew install postgresql@15` (macOS); \
         or point crondeck at an existing database with --database-url / DATABASE_URL"
    )]
    NotFound { searched: String },
    #[error(
        "cannot choose a data directory: neither XDG_DATA_HOME nor HOME is set; pass --data-dir"
    )]
    NoHome,
    #[error("could not {what} {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "socket path {} is {len} bytes, over the Unix limit of {max}; use a shorter --data-dir",
        path.display()
    )]
    SocketPathTooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
    #[error("{}: {message}", path.display())]
    Layout { path: PathBuf, message: String },
    #[error(
        "running as root, the embedded PostgreSQL server needs its own system account `{name}` \
         (PostgreSQL refuses to run as root, and a shared account such as postgres or nobody \
         would let that account's processes run jobs as root), and it cannot be used: {reason}. \
         Create it by hand: `useradd --system --user-group --no-create-home --home-dir /nonexistent \
         --shell /usr/sbin/nologin {name}`; or run crondeck as a normal user, or point it at \
         an existing database with --database-url"
    )]
    NoServiceAccount { name: String, reason: String },
    #[error(
        "the embedded PostgreSQL cluster {} must be secured before use ({reason}), but its \
         server (pid {pid}) is running (started by an older crondeck, or it lost its password \
         file). Quit every crondeck using it, or stop it with `{stop}`; the next start secures \
         it in place (password login, a new password, owned by the service account when root) \
         and keeps the data",
        pgdata.display()
    )]
    NeedsUpgrade {
        pgdata: PathBuf,
        reason: String,
        pid: i32,
        stop: String,
    },
    #[error(
        "the embedded PostgreSQL at {} refused the superuser's login ({sqlstate}: {message}); \
         the password in {} does not match the cluster. Stop the server and remove that file: \
         the next start sets a new password",
        socket.display(), password_file.display()
    )]
    LoginRefused {
        socket: PathBuf,
        sqlstate: String,
        message: String,
        password_file: PathBuf,
    },
    #[error(
        "cluster {} was created by PostgreSQL {cluster}, but the binaries in {} are version {binaries}; \
         install PostgreSQL {cluster} (or upgrade the cluster with pg_upgrade), or use another --data-dir",
        pgdata.display(), bindir.display()
    )]
    VersionMismatch {
        pgdata: PathBuf,
        cluster: String,
        binaries: String,
        bindir: PathBuf,
    },
    #[error("{what} failed ({status}): {}\n--- last lines of {} ---\n{tail}", program.display(), log.display())]
    Command {
        what: String,
        program: PathBuf,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "embedded PostgreSQL at {} did not accept connections within {}s: {last_error}\n--- last lines of {} ---\n{tail}",
        socket.display(), waited.as_secs(), log.display()
    )]
    NotReady {
        socket: PathBuf,
        waited: Duration,
        last_error: String,
        log: PathBuf,
        tail: String,
    },
}

pub(super) fn io_err(what: &str, path: &Path, source: std::io::Error) -> EmbeddedError {
    EmbeddedError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}
