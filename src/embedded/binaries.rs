//! Locating the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`).
//!
//! All three must come from one bindir: distributions put symlinks such as
//! `/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb` on PATH, and
//! mixing an `initdb` of one major version with a `postgres` of another makes
//! a cluster the server refuses. So every hit is canonicalized and the
//! directory it resolves to must hold all three programs.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::EmbeddedError;

/// A PostgreSQL installation usable for the embedded server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    /// Directory holding `initdb`, `pg_ctl` and `postgres` (canonical path).
    pub bindir: PathBuf,
    /// Major version reported by `postgres --version`, e.g. `"15"` (or `"9.6"`).
    pub version: String,
}

impl PgBinaries {
    pub fn initdb(&self) -> PathBuf {
        self.bindir.join("initdb")
    }
    pub fn pg_ctl(&self) -> PathBuf {
        self.bindir.join("pg_ctl")
    }
    pub fn postgres(&self) -> PathBuf {
        self.bindir.join("postgres")
    }
}

const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where to look; injectable so tests can simulate a machine without PostgreSQL.
#[derive(Debug, Clone)]
pub(super) struct SearchPaths {
    /// Value of `PATH` (also used to find `pg_config`).
    pub path: Option<OsString>,
    /// `(parent, prefix)`: every `<parent>/<prefix><version>/bin`, highest version first.
    pub versioned: Vec<(PathBuf, &'static str)>,
    /// Fixed directories tried last.
    pub fixed: Vec<PathBuf>,
}

impl SearchPaths {
    pub fn system() -> Self {
        SearchPaths {
            path: std::env::var_os("PATH"),
            versioned: vec![
                (PathBuf::from("/usr/lib/postgresql"), ""),
                (PathBuf::from("/usr"), "pgsql-"),
            ],
            fixed: vec![PathBuf::from("/usr/local/pgsql/bin")],
        }
    }
}

/// Find the PostgreSQL binaries on this machine: PATH, then `pg_config --bindir`,
/// then `/usr/lib/postgresql/*/bin` (highest version), `/usr/pgsql-*/bin`,
/// `/usr/local/pgsql/bin`.
pub fn find_binaries() -> Result<PgBinaries, EmbeddedError> {
    find_binaries_with(&SearchPaths::system())
}

pub(super) fn find_binaries_with(search: &SearchPaths) -> Result<PgBinaries, EmbeddedError> {
    let mut tried: Vec<PathBuf> = Vec::new();
    let path_dirs: Vec<PathBuf> = search
        .path
        .as_deref()
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();

    // 1. PATH: resolve `initdb` through symlinks to its real bindir.
    for dir in &path_dirs {
        let initdb = dir.join("initdb");
        if is_executable(&initdb) {
            if let Ok(real) = initdb.canonicalize() {
                if let Some(bindir) = real.parent() {
                    if let Some(found) = try_bindir(bindir, &mut tried) {
                        return Ok(found);
                    }
                }
            }
        }
    }
    // 2. pg_config --bindir (found on the same PATH).
    if let Some(pg_config) = path_dirs
        .iter()
        .map(|d| d.join("pg_config"))
        .find(|p| is_executable(p))
    {
        if let Ok(out) = Command::new(&pg_config).arg("--bindir").output() {
            if out.status.success() {
                let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
                if !dir.is_empty() {
                    if let Some(found) = try_bindir(Path::new(&dir), &mut tried) {
                        return Ok(found);
                    }
                }
            }
        }
    }
    // 3. Well-known install locations.
    for (parent, prefix) in &search.versioned {
        for dir in versioned_bindirs(parent, prefix) {
            if let Some(found) = try_bindir(&dir, &mut tried) {
                return Ok(found);
            }
        }
        tried.push(parent.join(format!("{prefix}*/bin")));
    }
    for dir in &search.fixed {
        if let Some(found) = try_bindir(dir, &mut tried) {
            return Ok(found);
        }
    }
    let mut searched = String::from("PATH");
    for t in &tried {
        searched.push_str(", ");
        searched.push_str(&t.display().to_string());
    }
    Err(EmbeddedError::NotFound { searched })
}

/// `Some` when `dir` (canonicalized) holds all three programs and `postgres --version` works.
fn try_bindir(dir: &Path, tried: &mut Vec<PathBuf>) -> Option<PgBinaries> {
    let bindir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if !tried.contains(&bindir) {
        tried.push(bindir.clone());
    }
    if !PROGRAMS.iter().all(|p| is_executable(&bindir.join(p))) {
        return None;
    }
    let out = Command::new(bindir.join("postgres"))
        .arg("--version")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let version = parse_major_version(&String::from_utf8_lossy(&out.stdout))?;
    Some(PgBinaries { bindir, version })
}

/// `"postgres (PostgreSQL) 15.18 (Debian …)"` -> `"15"`; `"… 9.6.24"` -> `"9.6"`; `"16beta1"` -> `"16"`.
pub(super) fn parse_major_version(text: &str) -> Option<String> {
    let token = text
        .split_whitespace()
        .find(|t| t.starts_with(|c: char| c.is_ascii_digit()))?;
    let mut parts = token.split('.').map(|p| {
        p.chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
    });
    let major = parts.next().filter(|s| !s.is_empty())?;
    if major.parse::<u32>().ok()? < 10 {
        // Before 10 the major version had two components.
        let minor = parts.next().filter(|s| !s.is_empty())?;
        return Some(format!("{major}.{minor}"));
    }
    Some(major)
}

/// `<parent>/<prefix><version>/bin` for every version directory, highest first.
fn versioned_bindirs(parent: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let rest = name.to_str()?.strip_prefix(prefix)?.to_string();
            let key: Vec<u32> = rest
                .split('.')
                .map(|p| p.parse::<u32>())
                .collect::<Result<_, _>>()
                .ok()?;
            Some((key, e.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// First executable `name` on PATH or in the usual system directories.
pub(super) fn find_program(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/bin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}
