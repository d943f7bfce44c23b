//! Odoo databases: see and control a live Odoo's scheduled actions
//! (`ir_cron`) without an Odoo server, as Odoo's own ORM and cron workers
//! would (issue 13). `crondeck --odoo URL` selects this mode.
//!
//! Nothing here changes Odoo's table structure, and crondeck's own schema is
//! never created in an Odoo database (see [`is_odoo_database`]).
//!
//! # What this module relies on, and where each fact comes from
//!
//! Read from Odoo's public source (`odoo/odoo`), per version:
//!
//! - `odoo/addons/base/models/ir_cron.py`, 16.0 (`load_information_from_description_file`
//!   era): `cron_name = fields.Char(related='ir_actions_server_id.name', store=True)`;
//!   the server action's `name` is translatable, and since 16.0 translated
//!   columns are `jsonb` (`{"en_US": …}`), so `cron_name` is jsonb in 16.
//!   `numbercall` (default 1, negative = no limit) and `doall` exist; the ready
//!   query is `active = true AND numbercall != 0 AND (nextcall <= (now() at
//!   time zone 'UTC') OR id in (SELECT cron_id FROM ir_cron_trigger WHERE
//!   call_at <= (now() at time zone 'UTC'))) ORDER BY priority`; a job is
//!   acquired with `… AND id in %s ORDER BY priority LIMIT 1 FOR NO KEY UPDATE
//!   SKIP LOCKED` on the worker's `cron_cr`, which keeps the lock while the
//!   server action runs on a second cursor; afterwards `UPDATE ir_cron SET
//!   nextcall, numbercall, lastcall = now (the start, computed before the
//!   action), active = active AND numbercall != 0` — also after a failure,
//!   since `_callback` swallows the exception — then `DELETE FROM
//!   ir_cron_trigger WHERE cron_id = %s AND call_at < (now() at time zone 'UTC')`.
//! - 17.0: same loop and columns as 16; `cron_name` becomes a plain `varchar`
//!   computed in `en_US` (the 18.0 `_compute_cron_name` below already exists).
//! - 18.0 (`MAX_BATCH_PER_CRON_JOB = 10`): `numbercall`/`doall` are gone;
//!   `failure_count` (default 0) and `first_failure_date` are added, with
//!   `CHECK(interval_number > 0)`; the ready query orders by `failure_count,
//!   priority, id`; acquiring joins the latest `ir_cron_progress` row; every
//!   batch creates an `ir_cron_progress` row (`done = remaining = 0`) and the
//!   action reports `done`/`remaining` *for that batch*; after the run,
//!   `_update_failure_count` then `_reschedule_later` writes `nextcall` and
//!   `lastcall = now` (the end of the run), and deletes triggers with
//!   `call_at < now()`. `_trigger_list` drops immediate triggers of an
//!   inactive cron ("skip triggers that would be ignored"), and `_notifydb`
//!   runs `SELECT pg_notify('cron_trigger', dbname)` on the `postgres` database.
//!   `write()` first runs `_try_lock`: `SELECT id FROM ir_cron WHERE id IN %s
//!   FOR NO KEY UPDATE NOWAIT`, and a lock error becomes "This cron task is
//!   currently being executed and may not be modified".
//! - 19.0 / master: the same columns as 18 plus the `never` interval type
//!   (`relativedelta(year=2099)`); `_clear_schedule` deletes triggers with
//!   `call_at <= cr.now().replace(microsecond=0)` *before* running (so a
//!   trigger written with microseconds survives the run and runs it twice),
//!   and `lastcall` is `cr.now()` of the worker's transaction: the pick-up.
//! - `ir.cron.trigger`: `cron_id` many2one (index), `call_at` datetime (index).
//!   `ir.cron.progress` (18+): `cron_id` (required, cascade), `remaining`,
//!   `done`, `deactivate`, `timed_out_counter`, plus the ORM's log columns.
//! - `ir_module_module`: `_check_version` reads `latest_version` of `base`;
//!   `_check_modules_state` skips the whole database while any module's
//!   `state LIKE 'to %'` (for up to `MAX_FAIL_TIME` = 5 h).
//! - `odoo/service/server.py`: each cron thread opens the `postgres`
//!   database, runs `LISTEN cron_trigger`, and waits on it with a 60 s poll
//!   (`SLEEP_INTERVAL`); a notification's payload is the database name.
//! - `odoo/addons/base/models/ir_logging.py`: `ir_logging(create_date,
//!   create_uid integer, name, type 'client'|'server', dbname, level, message,
//!   path, func, line)`, all of `name, type, message, path, func, line`
//!   required. Odoo's own `--log-db` handler inserts rows there with plain SQL;
//!   crondeck audits its actions the same way (see [`actions`]).
//! - Odoo stores datetimes as UTC `timestamp without time zone`; the
//!   superuser is `__system__`, id 1, an *inactive* user.
//!
//! How sure each fact is: the master copy of `ir_cron.py` (after 19.0) and an
//! 18.0 copy (with `MAX_BATCH_PER_CRON_JOB`) were read in full, as was a
//! pre-17 copy with `numbercall` and the related `cron_name` (taken as 16.0:
//! the jsonb storage of translated names is 16's); `server.py`'s cron thread
//! and `ir_logging.py` were read in master. Not read from a tagged file and
//! taken from the issue instead: that 17.0 has `numbercall` with a plain-text
//! `cron_name`, and that `never` and the `_clear_schedule`-first order arrived
//! exactly in 19.0 (they are in master).

pub mod actions;
pub mod console;
pub mod model;

use std::fmt;

use tokio_postgres::Client;

use crate::db::connect::ConnectionSpec;

/// Odoo's cron worker poll interval (`SLEEP_INTERVAL` in server.py), seconds.
pub const POLL_SECONDS: i64 = 60;

/// The Odoo versions this module knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum OdooVersion {
    V16,
    V17,
    V18,
    V19,
}

impl OdooVersion {
    pub fn major(self) -> u32 {
        match self {
            OdooVersion::V16 => 16,
            OdooVersion::V17 => 17,
            OdooVersion::V18 => 18,
            OdooVersion::V19 => 19,
        }
    }

    /// `numbercall` and `doall` (up to 17).
    pub fn has_numbercall(self) -> bool {
        self <= OdooVersion::V17
    }

    /// `failure_count`, `first_failure_date` and `ir_cron_progress` (18 on).
    pub fn has_progress(self) -> bool {
        self >= OdooVersion::V18
    }

    /// The interval units Odoo's selection field accepts.
    pub fn interval_units(self) -> &'static [&'static str] {
        if self >= OdooVersion::V19 {
            &["minutes", "hours", "days", "weeks", "months", "never"]
        } else {
            &["minutes", "hours", "days", "weeks", "months"]
        }
    }
}

impl fmt::Display for OdooVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.0", self.major())
    }
}

/// Errors specific to Odoo databases.
#[derive(Debug, thiserror::Error)]
pub enum OdooError {
    #[error("{target} is not an Odoo database (it has no ir_cron table)")]
    NotOdoo { target: String },
    #[error(
        "cannot tell the Odoo version of {target}: {reason} (crondeck knows Odoo 16, 17, 18 and 19)"
    )]
    UnknownVersion { target: String, reason: String },
    #[error("no scheduled action {0} (give its id or its exact name)")]
    NotFound(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Db(#[from] tokio_postgres::Error),
}

/// An open Odoo database.
pub struct Odoo {
    pub client: Client,
    pub spec: ConnectionSpec,
    /// `current_database()`: the payload of `NOTIFY cron_trigger`.
    pub dbname: String,
    pub version: OdooVersion,
    /// `ir_module_module.latest_version` of `base`, as stored.
    pub base_version: Option<String>,
    /// What to show people: never a password.
    pub target: String,
}

/// Does this database hold Odoo's scheduled actions?
pub async fn is_odoo_database(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_one("SELECT to_regclass('public.ir_cron') IS NOT NULL", &[])
        .await?;
    Ok(row.get(0))
}

/// Connect and detect the version.
pub async fn connect(spec: &ConnectionSpec) -> anyhow::Result<Odoo> {
    let client = spec.connect().await?;
    let target = spec.target();
    // Never hang the console or a command on a stuck statement. (Edits take
    // their row lock with NOWAIT; this bounds everything else.)
    client
        .batch_execute("SET statement_timeout = '10s'")
        .await?;
    if !is_odoo_database(&client).await? {
        return Err(OdooError::NotOdoo { target }.into());
    }
    let (version, base_version) = detect_version(&client, &target).await?;
    let dbname: String = client
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    Ok(Odoo {
        client,
        spec: spec.clone(),
        dbname,
        version,
        base_version,
        target,
    })
}

/// The version, from the schema (16/17 vs 18/19) and the base module's
/// `latest_version` (which alone tells 18 from 19).
pub async fn detect_version(
    client: &Client,
    target: &str,
) -> Result<(OdooVersion, Option<String>), OdooError> {
    let columns: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'ir_cron'",
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let column = |name: &str| columns.iter().find(|(c, _)| c == name).map(|(_, t)| t);
    let base_version: Option<String> = client
        .query_opt(
            "SELECT latest_version::text FROM ir_module_module WHERE name = 'base'",
            &[],
        )
        .await?
        .and_then(|r| r.get(0));
    let major = base_version.as_deref().and_then(major_of);
    let unknown = |reason: String| OdooError::UnknownVersion {
        target: target.to_owned(),
        reason,
    };
    let version = if column("numbercall").is_some() {
        match (column("cron_name").map(String::as_str), major) {
            (Some("jsonb"), _) => OdooVersion::V16,
            (Some(_), _) => OdooVersion::V17,
            (None, _) => return Err(unknown("ir_cron has no cron_name column".into())),
        }
    } else if column("failure_count").is_some() {
        match major {
            Some(18) => OdooVersion::V18,
            Some(m) if m >= 19 => OdooVersion::V19,
            Some(m) => {
                return Err(unknown(format!(
                    "ir_cron has failure_count (18+) but base says {m}"
                )))
            }
            None => {
                return Err(unknown(
                    "ir_cron has the 18+ columns but base has no latest_version (module not installed?)"
                        .into(),
                ))
            }
        }
    } else {
        return Err(unknown(
            "ir_cron has neither numbercall (≤17) nor failure_count (18+)".into(),
        ));
    };
    Ok((version, base_version))
}

/// `"18.0.1.3"` → 18; `"saas~17.4.1.3"` → 17.
pub fn major_of(version: &str) -> Option<u32> {
    let v = version.trim().trim_start_matches("saas~");
    v.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors() {
        assert_eq!(major_of("16.0.1.3"), Some(16));
        assert_eq!(major_of("saas~17.4.1.3"), Some(17));
        assert_eq!(major_of("x"), None);
    }

    #[test]
    fn units_per_version() {
        assert!(!OdooVersion::V18.interval_units().contains(&"never"));
        assert!(OdooVersion::V19.interval_units().contains(&"never"));
        assert!(OdooVersion::V17.has_numbercall() && !OdooVersion::V18.has_numbercall());
    }
}
