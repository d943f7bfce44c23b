//! Where the cluster lives, and who owns it (see the module doc of `embedded`).

use std::fs::DirBuilder;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User};
use sha2::{Digest, Sha256};

use super::binaries::find_program;
use super::{io_err, EmbeddedError, SOCKET_NAME};

/// PostgreSQL's limit: `sizeof(sockaddr_un.sun_path)` (108) minus the NUL.
pub(super) const MAX_SOCKET_PATH: usize = 107;

/// Name of the superuser's password file in the data directory.
pub const PASSWORD_FILE: &str = "superuser.password";

/// The system account that owns and runs the cluster when crondeck runs as
/// root. It exists for this and nothing else: a shared account (`postgres`,
/// `nobody`) would let every process of that account reach a server whose
/// jobs run as root.
pub const SERVICE_ACCOUNT: &str = "crondeck-pg";

/// The unprivileged account the server runs as when crondeck runs as root.
#[derive(Debug, Clone)]
pub(super) struct ServiceUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

impl ServiceUser {
    /// The dedicated account, created (`useradd --system`) if missing. Never
    /// falls back to another account.
    /// `lock_dir` (root's, e.g. `/var/lib/crondeck`) holds the lock that
    /// serialises creation: concurrent useradd runs can clobber each other.
    fn ensure(lock_dir: &Path) -> Result<Self, EmbeddedError> {
        ensure_root_dir(lock_dir, 0, 0o755)?;
        let path = lock_dir.join(".account.lock");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_err("open the lock file", &path, e))?;
        let _locked = super::lifetime::lock(file, nix::fcntl::FlockArg::LockExclusive, &path)?;
        let useradd = find_program("useradd", std::env::var_os("PATH").as_deref());
        ensure_account(SERVICE_ACCOUNT, useradd.as_deref())
    }
}

/// Look `name` up; if missing, create it with `useradd` (a system account
/// with its own group, no home, no login shell). Concurrent crondeck
/// processes may race here: a failed useradd is followed by a second lookup.
pub(super) fn ensure_account(
    name: &str,
    useradd: Option<&Path>,
) -> Result<ServiceUser, EmbeddedError> {
    let lookup = || -> Result<Option<ServiceUser>, EmbeddedError> {
        match User::from_name(name) {
            Ok(Some(u)) if u.uid.is_root() => Err(EmbeddedError::NoServiceAccount {
                name: name.to_string(),
                reason: "it has uid 0; it must be an unprivileged account".into(),
            }),
            Ok(Some(u)) => Ok(Some(ServiceUser {
                name: u.name,
                uid: u.uid,
                gid: u.gid,
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(EmbeddedError::NoServiceAccount {
                name: name.to_string(),
                reason: format!("looking it up failed: {e}"),
            }),
        }
    };
    if let Some(found) = lookup()? {
        return Ok(found);
    }
    let Some(useradd) = useradd else {
        return Err(EmbeddedError::NoServiceAccount {
            name: name.to_string(),
            reason: "it does not exist and useradd(8) was not found to create it".into(),
        });
    };
    let shell = ["/usr/sbin/nologin", "/sbin/nologin", "/bin/false"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("/bin/false");
    let mut last = String::new();
    for _ in 0..3 {
        tracing::info!("creating the system account {name} for the embedded PostgreSQL server");
        match Command::new(useradd)
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", "/nonexistent", "--shell", shell])
            .args(["--comment", "crondeck embedded PostgreSQL"])
            .arg(name)
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                last = format!(
                    "{} exited with {}: {}",
                    useradd.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            Err(e) => last = format!("could not run {}: {e}", useradd.display()),
        }
        // Success, or another crondeck created it meanwhile.
        if let Some(found) = lookup()? {
            return Ok(found);
        }
    }
    Err(EmbeddedError::NoServiceAccount {
        name: name.to_string(),
        reason: last,
    })
}

#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// The caller's data directory, canonical.
    pub data_dir: PathBuf,
    /// Holds `data/`, the socket, `server.log`, the lock files.
    pub cluster_dir: PathBuf,
    /// `Some` when running as root: the server runs as this user.
    pub service: Option<ServiceUser>,
    /// Root only: parents of `cluster_dir` we may have to create (outermost first).
    parents: Vec<PathBuf>,
}

impl Layout {
    pub fn pgdata(&self) -> PathBuf {
        self.cluster_dir.join("data")
    }
    pub fn initdb_tmp(&self) -> PathBuf {
        self.cluster_dir.join("data.initdb-tmp")
    }
    pub fn socket(&self) -> PathBuf {
        self.cluster_dir.join(SOCKET_NAME)
    }
    pub fn socket_lock(&self) -> PathBuf {
        self.cluster_dir.join(format!("{SOCKET_NAME}.lock"))
    }
    pub fn server_log(&self) -> PathBuf {
        self.cluster_dir.join("server.log")
    }
    pub fn clients_lock(&self) -> PathBuf {
        self.cluster_dir.join("clients.lock")
    }
    pub fn start_lock(&self) -> PathBuf {
        self.cluster_dir.join("start.lock")
    }
    /// The superuser's password: in the caller's data directory, outside the
    /// cluster, owned by the caller (root when root) and mode 0600, so the
    /// server's own account cannot read it.
    pub fn password_file(&self) -> PathBuf {
        self.data_dir.join(PASSWORD_FILE)
    }

    /// Decide the layout for `data_dir` (creating `data_dir` 0700 if missing).
    /// `clusters_root` is `/var/lib/crondeck/clusters` outside tests.
    pub fn resolve(data_dir: &Path, clusters_root: &Path) -> Result<Self, EmbeddedError> {
        // Refuse before creating anything: a refused data directory must not
        // be left behind. (Checked again below on the canonical path.)
        if !Uid::effective().is_root() && !data_dir.exists() {
            let absolute = std::path::absolute(data_dir)
                .map_err(|e| io_err("resolve the data directory", data_dir, e))?;
            check_cluster_path(&absolute.join("pg"))?;
        }
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| io_err("create the data directory", data_dir, e))?;
        let data_dir = data_dir
            .canonicalize()
            .map_err(|e| io_err("resolve the data directory", data_dir, e))?;

        if Uid::effective().is_root() {
            let digest = Sha256::digest(data_dir.as_os_str().as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let cluster_dir = clusters_root.join(&hex[..16]);
            check_cluster_path(&cluster_dir)?;
            let mut parents = Vec::new();
            if let Some(p) = clusters_root.parent() {
                parents.push(p.to_path_buf());
            }
            parents.push(clusters_root.to_path_buf());
            let service = ServiceUser::ensure(&parents[0])?;
            Ok(Layout {
                data_dir,
                cluster_dir,
                service: Some(service),
                parents,
            })
        } else {
            let cluster_dir = data_dir.join("pg");
            check_cluster_path(&cluster_dir)?;
            Ok(Layout {
                cluster_dir,
                data_dir,
                service: None,
                parents: Vec::new(),
            })
        }
    }

    /// Create the cluster directory (and, as root, its parents and the `pg`
    /// symlink). Called again after waiting for a lock, because an ephemeral
    /// watchdog may have removed the cluster directory meanwhile.
    pub fn ensure_dirs(&self) -> Result<(), EmbeddedError> {
        let link = self.data_dir.join("pg");
        match &self.service {
            Some(svc) => {
                for (i, dir) in self.parents.iter().enumerate() {
                    if i + 1 == self.parents.len() {
                        // Clusters: the account may add and remove its own.
                        ensure_root_dir(dir, svc.gid.as_raw(), 0o1771)?;
                    } else {
                        ensure_root_dir(dir, 0, 0o755)?;
                    }
                }
                ensure_dir(&self.cluster_dir, 0o700, Some(svc))?;
                self.ensure_symlink(&link)
            }
            None => {
                if let Ok(meta) = std::fs::symlink_metadata(&link) {
                    if meta.file_type().is_symlink() {
                        return Err(EmbeddedError::Layout {
                            path: link,
                            message: "is a symlink made by a root crondeck (the cluster is under /var/lib/crondeck/clusters); run crondeck as root for this data directory, or use another --data-dir".into(),
                        });
                    }
                }
                ensure_dir(&self.cluster_dir, 0o700, None)
            }
        }
    }

    /// Root mode: `<data-dir>/pg -> <cluster_dir>`, so an operator looking in the
    /// data directory finds the cluster.
    fn ensure_symlink(&self, link: &Path) -> Result<(), EmbeddedError> {
        match std::fs::symlink_metadata(link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if std::fs::read_link(link).ok().as_deref() == Some(self.cluster_dir.as_path()) {
                    return Ok(());
                }
                // Stale link (e.g. the data directory was moved): repoint it.
                std::fs::remove_file(link).map_err(|e| io_err("replace the symlink", link, e))?;
            }
            Ok(_) => {
                return Err(EmbeddedError::Layout {
                    path: link.to_path_buf(),
                    message: "holds a cluster created by a non-root crondeck; as root the cluster must live under /var/lib/crondeck/clusters. Run crondeck as the user who owns it, or use another --data-dir".into(),
                })
            }
            Err(_) => {}
        }
        match std::os::unix::fs::symlink(&self.cluster_dir, link) {
            Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                Err(io_err("create the symlink", link, e))
            }
            _ => Ok(()),
        }
    }
}

/// A directory above the clusters (`/var/lib/crondeck`, root:root 0755, and
/// `/var/lib/crondeck/clusters`, root:<service group> 01771): owned by root,
/// so the service account cannot rename or replace what is in it. In the
/// clusters directory the account may add and remove its own cluster
/// directories (the sticky bit keeps it from anyone else's); everyone else may
/// only traverse, and every cluster directory is 0700. A directory an older
/// crondeck handed to `postgres` or `nobody` is taken back here.
fn ensure_root_dir(dir: &Path, gid: u32, mode: u32) -> Result<(), EmbeddedError> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create", dir, e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| io_err("inspect", dir, e))?;
    if !meta.is_dir() {
        return Err(EmbeddedError::Layout {
            path: dir.to_path_buf(),
            message: "exists but is not a directory; remove it".into(),
        });
    }
    if meta.uid() != 0 || meta.gid() != gid {
        std::os::unix::fs::lchown(dir, Some(0), Some(gid))
            .map_err(|e| io_err(&format!("give to root (group {gid})"), dir, e))?;
    }
    if meta.mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io_err("set the mode of", dir, e))?;
    }
    Ok(())
}

/// Create `dir` with `mode`; when running as root, hand it to the service user.
/// Only a directory this call created is chowned: an existing one is left as
/// the administrator (or a concurrent crondeck) made it.
fn ensure_dir(dir: &Path, mode: u32, owner: Option<&ServiceUser>) -> Result<(), EmbeddedError> {
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            if let Some(svc) = owner {
                std::os::unix::fs::lchown(dir, Some(svc.uid.as_raw()), Some(svc.gid.as_raw()))
                    .map_err(|e| io_err(&format!("give to user {}", svc.name), dir, e))?;
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            let meta = std::fs::symlink_metadata(dir).map_err(|e| io_err("inspect", dir, e))?;
            if !meta.is_dir() {
                return Err(EmbeddedError::Layout {
                    path: dir.to_path_buf(),
                    message: "exists but is not a directory; remove it".into(),
                });
            }
            if owner.is_none() && meta.uid() != Uid::effective().as_raw() {
                return Err(EmbeddedError::Layout {
                    path: dir.to_path_buf(),
                    message: format!(
                        "is owned by uid {}, not by you; run crondeck as that user or use another --data-dir",
                        meta.uid()
                    ),
                });
            }
            Ok(())
        }
        Err(e) => Err(io_err("create", dir, e)),
    }
}

/// The socket path must fit `sun_path`, and the cluster path ends up inside
/// shell command lines built by `pg_ctl`, so shell metacharacters are refused.
pub(super) fn check_cluster_path(cluster_dir: &Path) -> Result<(), EmbeddedError> {
    let socket = cluster_dir.join(SOCKET_NAME);
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(EmbeddedError::SocketPathTooLong {
            path: socket,
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    let bytes = cluster_dir.as_os_str().as_bytes();
    if let Some(bad) = bytes
        .iter()
        .find(|b| matches!(b, b'\'' | b'"' | b'\\' | b'$' | b'`' | b'\n'))
    {
        return Err(EmbeddedError::Layout {
            path: cluster_dir.to_path_buf(),
            message: format!(
                "contains the character {:?}, which pg_ctl cannot quote; use a --data-dir without it",
                *bad as char
            ),
        });
    }
    Ok(())
}
