//! Who may log in to the embedded cluster: the superuser's password, the
//! cluster's own configuration (`pg_hba.conf`, `postgresql.auto.conf`), and
//! the in-place upgrade of clusters made by older crondeck versions (trust
//! authentication, owned by `postgres` or `nobody`).
//!
//! Every local login needs a password (SCRAM-SHA-256); TCP is refused both
//! by `listen_addresses = ''` and by `pg_hba.conf`. The superuser's password
//! is 256 random bits, kept in `<data-dir>/superuser.password` (mode 0600,
//! owned by the user running crondeck: root when root). The cluster only ever
//! sees its SCRAM verifier, set in single-user mode, so no server ever runs
//! with a configuration that lets a login in without the password.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::unistd::Uid;

use super::binaries::PgBinaries;
use super::layout::{Layout, ServiceUser};
use super::lifetime::pg_command;
use super::{io_err, EmbeddedError, SUPERUSER};

/// `pg_hba.conf` of a cluster crondeck manages. `ephemeral` (test harness)
/// clusters also let roles other than the superuser in without a password, so
/// tests can log in as the login roles they create; their data is thrown away.
pub(super) fn expected_hba(ephemeral: bool) -> String {
    let others = if ephemeral {
        "# Test harness (ephemeral) cluster: other roles log in without a password.\n\
         local   all   all                 trust\n"
    } else {
        "local   all   all                 scram-sha-256\n"
    };
    format!(
        "# Written by crondeck for its embedded server; rewritten if it changes.\n\
         # Unix socket only. The superuser's password is in superuser.password in\n\
         # the data directory, readable only by the user who runs crondeck.\n\
         local   all   {SUPERUSER}            scram-sha-256\n\
         {others}\
         host    all   all   all           reject\n"
    )
}

/// Why the cluster in `pgdata` is not (or no longer) set up the way
/// `secure` leaves it; `None` when it is.
pub(super) fn needs_securing(
    layout: &Layout,
    pgdata: &Path,
    ephemeral: bool,
) -> Result<Option<String>, EmbeddedError> {
    if let Some(svc) = &layout.service {
        let meta = std::fs::metadata(pgdata).map_err(|e| io_err("inspect", pgdata, e))?;
        if meta.uid() != svc.uid.as_raw() {
            return Ok(Some(format!(
                "it is owned by uid {}, not by the service account {}",
                meta.uid(),
                svc.name
            )));
        }
    }
    let hba_path = pgdata.join("pg_hba.conf");
    let hba = std::fs::read_to_string(&hba_path).unwrap_or_default();
    if hba != expected_hba(ephemeral) {
        return Ok(Some(format!(
            "{} is not the one crondeck writes (clusters of older versions trusted every local login)",
            hba_path.display()
        )));
    }
    if let Err(problem) = read_password(&layout.password_file()) {
        return Ok(Some(problem));
    }
    Ok(None)
}

/// The superuser's password, from a file only the caller can read; `Err`
/// says what is wrong with the file.
pub(super) fn read_password(path: &Path) -> Result<String, String> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path);
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Err(format!("the password file {} is missing", path.display()))
        }
        Err(e) => {
            return Err(format!(
                "cannot open the password file {}: {e}",
                path.display()
            ))
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot inspect {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    if meta.uid() != Uid::effective().as_raw() {
        return Err(format!(
            "the password file {} is owned by uid {}, not by you",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "the password file {} has mode {:o}: others could read or change it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let password = text.lines().next().unwrap_or("").trim().to_string();
    if password.is_empty() {
        return Err(format!("the password file {} is empty", path.display()));
    }
    Ok(password)
}

/// Set up the stopped cluster in `pgdata` (a fresh initdb result, or a
/// cluster of an older crondeck): hand it to the service account (root), give
/// the superuser a new random password (its verifier, in single-user mode),
/// pin `listen_addresses = ''` in `postgresql.auto.conf`, and write
/// `pg_hba.conf` last, so an interruption leaves a cluster that is secured
/// again on the next start.
pub(super) fn secure(
    layout: &Layout,
    bins: &PgBinaries,
    pgdata: &Path,
    ephemeral: bool,
) -> Result<(), EmbeddedError> {
    if let Some(svc) = &layout.service {
        // The cluster directory holds `pgdata` (also a fresh initdb's).
        chown_tree(&layout.cluster_dir, svc)?;
    }
    let password = generate_password()?;
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    write_private(&layout.password_file(), &format!("{password}\n"), None)?;

    // One statement per line; exit_on_error turns any error into a non-zero exit.
    let script = format!(
        "ALTER ROLE \"{SUPERUSER}\" PASSWORD '{verifier}'\n\
         ALTER SYSTEM SET listen_addresses = ''\n\
         ALTER SYSTEM SET unix_socket_permissions = '0700'\n\
         ALTER SYSTEM SET password_encryption = 'scram-sha-256'\n"
    );
    let postgres = bins.postgres();
    let mut cmd = pg_command(&postgres, layout);
    cmd.arg("--single")
        .arg("-D")
        .arg(pgdata)
        .args(["-c", "exit_on_error=on", "postgres"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| io_err("run", &postgres, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| io_err("write to", &postgres, e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| io_err("wait for", &postgres, e))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stderr).replace(&verifier, "<verifier>");
        return Err(EmbeddedError::Command {
            what: "setting the superuser password (postgres --single)".into(),
            program: postgres,
            status: out.status.to_string(),
            log: PathBuf::from("its output"),
            tail: super::lifetime::tail_text(&text, 20),
        });
    }
    write_private(
        &pgdata.join("pg_hba.conf"),
        &expected_hba(ephemeral),
        layout.service.as_ref(),
    )?;
    tracing::info!(
        "embedded PostgreSQL in {} secured: password login only, superuser password in {}",
        pgdata.display(),
        layout.password_file().display()
    );
    Ok(())
}

/// 256 random bits as 64 hex digits (no character needs quoting anywhere).
fn generate_password() -> Result<String, EmbeddedError> {
    let path = Path::new("/dev/urandom");
    let mut bytes = [0u8; 32];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| io_err("read", path, e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Replace `path` atomically with `text`, mode 0600, owned by us (or `owner`).
fn write_private(
    path: &Path,
    text: &str,
    owner: Option<&ServiceUser>,
) -> Result<(), EmbeddedError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != ErrorKind::NotFound => return Err(io_err("remove", &tmp, e)),
        _ => {}
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| io_err("create", &tmp, e))?;
    if let Some(svc) = owner {
        std::os::unix::fs::fchown(&file, Some(svc.uid.as_raw()), Some(svc.gid.as_raw()))
            .map_err(|e| io_err(&format!("give to user {}", svc.name), &tmp, e))?;
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io_err("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_err("replace", path, e))
}

/// Give `dir` and everything under it to the service account, without
/// following symbolic links.
fn chown_tree(dir: &Path, svc: &ServiceUser) -> Result<(), EmbeddedError> {
    let (uid, gid) = (svc.uid.as_raw(), svc.gid.as_raw());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_err("inspect", &path, e))?;
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
                .map_err(|e| io_err(&format!("give to user {}", svc.name), &path, e))?;
        }
        if meta.is_dir() {
            let entries = std::fs::read_dir(&path).map_err(|e| io_err("list", &path, e))?;
            for entry in entries {
                stack.push(entry.map_err(|e| io_err("list", &path, e))?.path());
            }
        }
    }
    Ok(())
}
