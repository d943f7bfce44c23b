//! Settings from flags, environment and the config file.
//!
//! This module owns where settings come from and which source wins:
//! flags > environment > config file > defaults. The file is TOML at
//! `$XDG_CONFIG_HOME/crondeck/config.toml` (else `~/.config/crondeck/config.toml`);
//! `--config PATH` replaces that path, and then the file must exist.
//!
//! Choosing the database: `--database-url`, else `DATABASE_URL`, else the
//! file's `database_url` selects an external server. PG* variables alone do
//! **not** select one — they only fill gaps in a given URL — so the embedded
//! server stays the default on machines that happen to export PGUSER or
//! PGHOST. Without a URL the embedded server is used, with its data directory
//! from `--data-dir`, else `CRONDECK_DATA_DIR`, else the file's `data_dir`,
//! else the default the caller supplies.
//!
//! `read_only` is on if `--read-only` is given, else per `CRONDECK_READ_ONLY`
//! (`1/true/yes/on` or `0/false/no/off`), else the file, else off.
//!
//! Every error names its source: the flag, the variable, or `PATH:LINE`.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize;

use crate::db::connect::ConnectionSpec;

/// What clap collected from flags (environment is read by [`resolve`]).
#[derive(Debug, Clone, Default)]
pub struct GlobalArgs {
    pub database_url: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub read_only: bool,
}

/// The config file. Every field is optional; unknown keys are errors.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// libpq URL or key=value string.
    pub database_url: Option<String>,
    /// Embedded server data directory. `~/` is expanded; a relative path is
    /// taken relative to the config file's directory.
    pub data_dir: Option<PathBuf>,
    pub read_only: Option<bool>,
    /// Odoo mode (`--odoo`): an Odoo database's URL.
    pub odoo_url: Option<String>,
    /// Odoo mode: the Odoo login recorded as `write_uid` (`--odoo-login`).
    pub odoo_login: Option<String>,
    pub scheduler: SchedulerFile,
    pub retention: RetentionFile,
    /// `[notifications]`: channels and thresholds (see `crate::notify`).
    pub notifications: crate::notify::NotificationsFile,
    /// `[check]`: default thresholds of `crondeck check`.
    pub check: crate::check::CheckFile,
    /// `[metrics]`: the headless scheduler's metrics endpoint.
    pub metrics: crate::metrics::MetricsFile,
    /// Line of `database_url`, so errors in its value can point at it.
    #[serde(skip)]
    database_url_line: Option<usize>,
}

// By hand: database_url may hold a password.
impl fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileConfig")
            .field("database_url", &self.database_url.as_ref().map(|_| "<set>"))
            .field("data_dir", &self.data_dir)
            .field("read_only", &self.read_only)
            .field("odoo_url", &self.odoo_url.as_ref().map(|_| "<set>"))
            .field("odoo_login", &self.odoo_login)
            .field("scheduler", &self.scheduler)
            .field("retention", &self.retention)
            .field("notifications", &self.notifications)
            .field("check", &self.check)
            .field("metrics", &self.metrics)
            .finish()
    }
}

/// `[scheduler]`. Durations stay strings here; the scheduler validates them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerFile {
    pub workers: Option<u32>,
    pub allow_shell: Option<bool>,
    /// Directories whose programs this node may run as shell jobs, without
    /// a shell (empty: any command, by `sh -c`).
    pub shell_allow: Option<Vec<String>>,
    pub lease: Option<String>,
    pub heartbeat: Option<String>,
}

/// `[retention]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionFile {
    pub keep_runs: Option<u64>,
    pub keep_days: Option<u32>,
}

/// Which database to use.
// Built once at start-up; boxing the spec would only make matching clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum DatabaseTarget {
    External(ConnectionSpec),
    Embedded { data_dir: PathBuf },
}

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseTarget,
    pub read_only: bool,
    /// The file's contents (defaults if there was no file), for the settings
    /// resolved later (scheduler, retention).
    pub file: FileConfig,
    /// The config file that was read, if one was.
    pub config_path: Option<PathBuf>,
}

/// Config file and setting errors; each names the file (and line) or source.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: config file not found", .path.display())]
    Missing { path: PathBuf },
    #[error("{}: could not read config file: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", .path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A value from a flag, variable or file key that cannot be used;
    /// `origin` is e.g. `--database-url`, `DATABASE_URL` or `PATH:LINE`.
    #[error("{origin}: {message}")]
    Setting { origin: String, message: String },
}

/// The default config file path, if a home or XDG directory is known.
pub fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    // The XDG spec says relative values are to be ignored.
    let base = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            env("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| Path::new(&h).join(".config"))
        })?;
    Some(base.join("crondeck").join("config.toml"))
}

/// Reads and checks one config file.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ConfigError::Missing {
            path: path.to_owned(),
        },
        _ => ConfigError::Read {
            path: path.to_owned(),
            source,
        },
    })?;
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_owned(),
        line: e.span().map_or(1, |s| line_of(&text, s.start)),
        message: describe_toml_error(&text, &e),
    })?;
    file.database_url_line = top_level_key_line(&text, "database_url");
    Ok(file)
}

/// Combines flags, environment (read through `env`), the config file and
/// defaults. `default_data_dir` is only called when the embedded server is
/// chosen and nothing names its directory.
pub fn resolve(
    args: &GlobalArgs,
    env: &dyn Fn(&str) -> Option<String>,
    default_data_dir: impl FnOnce() -> anyhow::Result<PathBuf>,
) -> anyhow::Result<Settings> {
    // An empty variable counts as unset, as shells make that easy to produce.
    let var = |key: &str| env(key).filter(|v| !v.is_empty());

    let (file, config_path) = match &args.config {
        Some(path) => (load_file(path)?, Some(path.clone())),
        None => match default_config_path(env) {
            Some(path) => match load_file(&path) {
                Ok(file) => (file, Some(path)),
                Err(ConfigError::Missing { .. }) => (FileConfig::default(), None),
                Err(e) => return Err(e.into()),
            },
            None => (FileConfig::default(), None),
        },
    };
    let file_origin = |line: Option<usize>| match (&config_path, line) {
        (Some(path), Some(line)) => format!("{}:{line}", path.display()),
        (Some(path), None) => path.display().to_string(),
        (None, _) => "config file".to_owned(),
    };

    let url = if let Some(url) = &args.database_url {
        Some(("--database-url".to_owned(), url.clone()))
    } else if let Some(url) = var("DATABASE_URL") {
        Some(("DATABASE_URL".to_owned(), url))
    } else {
        file.database_url
            .clone()
            .map(|url| (file_origin(file.database_url_line), url))
    };

    let database = match url {
        Some((origin, url)) => {
            let spec = ConnectionSpec::parse(&url, env).map_err(|e| ConfigError::Setting {
                origin,
                message: e.to_string(),
            })?;
            DatabaseTarget::External(spec)
        }
        None => {
            let data_dir = if let Some(dir) = &args.data_dir {
                dir.clone()
            } else if let Some(dir) = var("CRONDECK_DATA_DIR") {
                PathBuf::from(dir)
            } else if let Some(dir) = &file.data_dir {
                file_relative(dir, config_path.as_deref(), env)
            } else {
                default_data_dir().context("could not determine the default data directory")?
            };
            DatabaseTarget::Embedded { data_dir }
        }
    };

    let read_only = if args.read_only {
        true
    } else if let Some(value) = var("CRONDECK_READ_ONLY") {
        parse_bool(&value).ok_or_else(|| ConfigError::Setting {
            origin: "CRONDECK_READ_ONLY".to_owned(),
            message: "expected true/false, yes/no, on/off or 1/0".to_owned(),
        })?
    } else {
        file.read_only.unwrap_or(false)
    };

    Ok(Settings {
        database,
        read_only,
        file,
        config_path,
    })
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Expands `~/` and anchors relative paths at the config file's directory,
/// so a file means the same thing whatever the working directory is.
fn file_relative(
    dir: &Path,
    config_path: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> PathBuf {
    if let (Ok(rest), Some(home)) = (dir.strip_prefix("~"), env("HOME")) {
        return Path::new(&home).join(rest);
    }
    match config_path.and_then(Path::parent) {
        Some(base) if dir.is_relative() => base.join(dir),
        _ => dir.to_owned(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The line of `key = …` before the first table header, if present.
fn top_level_key_line(text: &str, key: &str) -> Option<usize> {
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.starts_with('[') {
            return None;
        }
        if let Some(rest) = line.strip_prefix(key) {
            if rest.trim_start().starts_with('=') {
                return Some(i + 1);
            }
        }
    }
    None
}

/// Turns toml/serde messages into `unknown key "x" in [table] (expected one
/// of: …)` and `invalid value for "x": …`; the line is added by the caller.
fn describe_toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim();
    let span = error.span().unwrap_or(0..0);
    let table = enclosing_table(text, span.start);
    let table = table.map(|t| format!(" in [{t}]")).unwrap_or_default();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (key, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let expected = expected
            .trim_start_matches(',')
            .trim()
            .trim_start_matches("expected one of ")
            .trim_start_matches("expected ")
            .replace('`', "");
        return format!("unknown key \"{key}\"{table} (expected one of: {expected})");
    }
    match key_at(text, span.start) {
        Some(key)
            if message.starts_with("invalid type") || message.starts_with("invalid value") =>
        {
            format!("invalid value for \"{key}\"{table}: {message}")
        }
        _ => message.to_owned(),
    }
}

/// `text` up to byte `offset` (all of it if the offset is not a boundary).
fn before(text: &str, offset: usize) -> &str {
    text.get(..offset).unwrap_or(text)
}

/// The key on the line holding `offset` (`key = value`).
fn key_at(text: &str, offset: usize) -> Option<String> {
    let start = before(text, offset).rfind('\n').map_or(0, |i| i + 1);
    let line = text[start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty()).then(|| key.to_owned())
}

/// The `[table]` header above `offset`, if any.
fn enclosing_table(text: &str, offset: usize) -> Option<String> {
    before(text, offset)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .and_then(|l| l.strip_prefix('['))
        .and_then(|l| l.split(']').next())
        .map(|t| t.trim().to_owned())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
