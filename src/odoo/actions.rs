//! Changing scheduled actions the way Odoo's ORM does, each audited in the
//! same transaction in Odoo's own `ir_logging` table (no schema change: the
//! table exists in every version; see the module doc of [`super`]).
//!
//! - Edits (active, interval, nextcall, priority) first take the row lock
//!   Odoo's `write()` takes, `FOR NO KEY UPDATE NOWAIT`: a worker running
//!   the cron holds a conflicting lock, so the edit is refused (SQLSTATE
//!   55P03) instead of waiting, as in Odoo. `write_date` is the database's
//!   UTC now and `write_uid` the configured Odoo user, as the ORM writes them.
//! - Run now inserts an `ir_cron_trigger` row for now, in whole seconds UTC
//!   (Odoo's `fields.Datetime.now()`), then `SELECT pg_notify('cron_trigger',
//!   dbname)` on the `postgres` database, where the workers listen. It takes
//!   no lock on the cron row beyond the foreign key's `KEY SHARE`, which does
//!   not conflict with a worker's lock, exactly as Odoo's `_trigger()`.

use chrono::{DateTime, NaiveDateTime, Utc};
use tokio_postgres::error::SqlState;

use super::model::{self, describe_interval};
use super::{Odoo, OdooError, OdooVersion};
use crate::db::audit::Actor;

/// What to do to one cron.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SetActive(bool),
    SetInterval { number: i32, unit: String },
    SetNextcall(DateTime<Utc>),
    SetPriority(i32),
    RunNow,
}

impl Action {
    /// The `func` column of the audit row.
    pub fn word(&self) -> &'static str {
        match self {
            Action::SetActive(true) => "resume",
            Action::SetActive(false) => "pause",
            Action::SetInterval { .. } => "set_interval",
            Action::SetNextcall(_) => "set_nextcall",
            Action::SetPriority(_) => "set_priority",
            Action::RunNow => "run_now",
        }
    }
}

/// What happened, for the operator.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub cron_id: i32,
    pub name: String,
    /// `old → new`, as audited.
    pub change: String,
    /// Anything the operator must know (NOTIFY fallback, paused cron, …).
    pub notes: Vec<String>,
}

/// Parse an interval the way Odoo stores it: `2 hours`, `15m`, `1 day`,
/// `never` (19+ only). The number must be > 0.
pub fn parse_interval(text: &str, version: OdooVersion) -> Result<(i32, String), OdooError> {
    let t = text.trim().to_ascii_lowercase();
    let units = version.interval_units();
    if t == "never" {
        if units.contains(&"never") {
            return Ok((1, "never".into()));
        }
        return Err(OdooError::Refused(format!(
            "the interval type never exists only from Odoo 19 (this is {version})"
        )));
    }
    let split = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit = unit.trim();
    let number: i32 = num.parse().map_err(|_| {
        OdooError::Refused(format!(
            "invalid interval {text:?}: expected a number and a unit ({})",
            units.join(", ")
        ))
    })?;
    if number <= 0 {
        return Err(OdooError::Refused(
            "the interval number must be a strictly positive number (Odoo's check)".into(),
        ));
    }
    let unit = match unit {
        "m" | "min" | "mins" | "minute" | "minutes" => "minutes",
        "h" | "hour" | "hours" => "hours",
        "d" | "day" | "days" => "days",
        "w" | "week" | "weeks" => "weeks",
        "mo" | "month" | "months" => "months",
        other => {
            return Err(OdooError::Refused(format!(
                "invalid interval unit {other:?}: Odoo {version} knows {}",
                units.join(", ")
            )))
        }
    };
    Ok((number, unit.into()))
}

/// The Odoo user id that edits are recorded as (`write_uid`): `login`, or
/// the superuser (`__system__`, id 1). Never filtered on `active`.
pub async fn resolve_uid(odoo: &Odoo, login: Option<&str>) -> Result<i32, OdooError> {
    let Some(login) = login else {
        return Ok(1);
    };
    odoo.client
        .query_opt("SELECT id FROM res_users WHERE login = $1", &[&login])
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| OdooError::Refused(format!("no Odoo user with login {login:?}")))
}

fn ts(t: Option<NaiveDateTime>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| format!("{} UTC", t.format("%Y-%m-%d %H:%M:%S")),
    )
}

/// Apply `actions` to cron `key` (id or name) in one transaction, each
/// audited: all of them or none. Run now cannot be combined with edits.
pub async fn apply(
    odoo: &mut Odoo,
    key: &str,
    actions: &[Action],
    actor: &Actor,
    uid: i32,
) -> Result<Outcome, OdooError> {
    let run_now = actions.contains(&Action::RunNow);
    if actions.is_empty() || (run_now && actions.len() > 1) {
        return Err(OdooError::Refused(
            "run now is one action on its own; edits are applied together".to_string(),
        ));
    }
    let crons = model::read_crons(&odoo.client, odoo.version).await?;
    let cron = model::find(&crons, key)?.clone();
    let version = odoo.version;
    let dbname = odoo.dbname.clone();
    let tx = odoo.client.transaction().await?;
    let mut notes = Vec::new();
    let mut changes = Vec::new();
    if run_now {
        if !cron.active && version.has_progress() {
            return Err(OdooError::Refused(format!(
                "#{} {} is paused: Odoo {version} ignores immediate triggers of an inactive \
                 cron (its _trigger() does not even create them); resume it to run it",
                cron.id, cron.name
            )));
        }
        changes.push((&Action::RunNow, trigger(&tx, &cron, uid, &mut notes).await?));
    } else {
        // As `write()`: NO KEY UPDATE, NOWAIT; a worker running it holds the row.
        let lock = tx
            .query_one(
                "SELECT active, interval_number, interval_type::text, nextcall, priority \
                   FROM ir_cron WHERE id = $1 FOR NO KEY UPDATE NOWAIT",
                &[&cron.id],
            )
            .await;
        let row = match lock {
            Ok(row) => row,
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                return Err(OdooError::Refused(format!(
                    "#{} {} is running right now (an Odoo worker holds its row): Odoo refuses \
                     to modify a running cron; try again when it has finished",
                    cron.id, cron.name
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let old = Current {
            active: row.get::<_, Option<bool>>(0).unwrap_or(false),
            number: row.get::<_, Option<i32>>(1).unwrap_or(1),
            unit: row.get::<_, Option<String>>(2).unwrap_or_default(),
            next: row.get(3),
            priority: row.get::<_, Option<i32>>(4).unwrap_or(5),
        };
        for action in actions {
            changes.push((
                action,
                edit(&tx, cron.id, version, uid, &old, action).await?,
            ));
        }
    }
    for (action, change) in &changes {
        let message = format!(
            "crondeck: {}@{} {} scheduled action #{} {:?}: {}",
            actor.os_user,
            actor.host,
            action.word(),
            cron.id,
            cron.name,
            change
        );
        tx.execute(
            "INSERT INTO ir_logging (create_date, create_uid, name, type, dbname, level, message, path, func, line) \
             VALUES (now() AT TIME ZONE 'UTC', $1, 'crondeck.odoo', 'server', $2, 'INFO', $3, 'crondeck', $4, '0')",
            &[&uid, &dbname, &message, &action.word()],
        )
        .await?;
    }
    tx.commit().await?;
    if run_now {
        notes.push(notify(odoo).await);
    }
    Ok(Outcome {
        cron_id: cron.id,
        name: cron.name,
        change: changes
            .into_iter()
            .map(|(_, change)| change)
            .collect::<Vec<_>>()
            .join("; "),
        notes,
    })
}

/// The cron's editable fields as locked, for the audit's old → new.
struct Current {
    active: bool,
    number: i32,
    unit: String,
    next: NaiveDateTime,
    priority: i32,
}

/// Run now as Odoo's `_trigger()`: no lock on the cron row; whole-second UTC now.
async fn trigger(
    tx: &tokio_postgres::Transaction<'_>,
    cron: &model::Cron,
    uid: i32,
    notes: &mut Vec<String>,
) -> Result<String, OdooError> {
    let row = tx
        .query_one(
            "INSERT INTO ir_cron_trigger (cron_id, call_at, create_uid, create_date, write_uid, write_date) \
             VALUES ($1, date_trunc('second', now() AT TIME ZONE 'UTC'), $2, \
                     now() AT TIME ZONE 'UTC', $2, now() AT TIME ZONE 'UTC') \
             RETURNING call_at",
            &[&cron.id, &uid],
        )
        .await?;
    let at: NaiveDateTime = row.get(0);
    if !cron.active {
        notes.push(
            "the cron is paused: Odoo runs only active crons; the trigger waits until it is \
             resumed"
                .to_string(),
        );
    }
    if cron.numbercall == Some(0) {
        notes.push(
            "numbercall is 0: Odoo selects only crons with calls left, so it will not run \
             this one (set numbercall in Odoo first)"
                .to_string(),
        );
    }
    if cron.running.is_some() {
        notes.push(
            "it is running now: the worker deletes only triggers older than its own \
             transaction, so this one makes it run again after this run"
                .to_string(),
        );
    }
    Ok(format!("trigger at {}", ts(Some(at))))
}

/// One edit as `write()` makes it, on the row the caller has locked.
async fn edit(
    tx: &tokio_postgres::Transaction<'_>,
    id: i32,
    version: OdooVersion,
    uid: i32,
    old: &Current,
    action: &Action,
) -> Result<String, OdooError> {
    let set = |sql: &str| {
        format!(
            "UPDATE ir_cron SET {sql}, write_uid = $2, write_date = (now() AT TIME ZONE 'UTC') \
             WHERE id = $1"
        )
    };
    Ok(match action {
        Action::SetActive(on) => {
            tx.execute(&set("active = $3"), &[&id, &uid, on]).await?;
            format!("active {} → {on}", old.active)
        }
        Action::SetInterval { number, unit } => {
            if *number <= 0 || !version.interval_units().contains(&unit.as_str()) {
                return Err(OdooError::Refused(format!(
                    "invalid interval for Odoo {version}: {number} {unit}"
                )));
            }
            tx.execute(
                &set("interval_number = $3, interval_type = $4"),
                &[&id, &uid, number, unit],
            )
            .await?;
            format!(
                "interval {} → {}",
                describe_interval(old.number, &old.unit),
                describe_interval(*number, unit)
            )
        }
        Action::SetNextcall(at) => {
            // Odoo's datetimes have no microseconds.
            let at = at.naive_utc();
            let at = at.with_nanosecond_zero().unwrap_or(at);
            tx.execute(&set("nextcall = $3"), &[&id, &uid, &at]).await?;
            format!("nextcall {} → {}", ts(Some(old.next)), ts(Some(at)))
        }
        Action::SetPriority(p) => {
            tx.execute(&set("priority = $3"), &[&id, &uid, p]).await?;
            format!("priority {} → {p}", old.priority)
        }
        Action::RunNow => {
            return Err(OdooError::Refused(
                "run now is one action on its own; edits are applied together".to_string(),
            ))
        }
    })
}

/// Wake the workers as Odoo's `_notifydb` does: `pg_notify('cron_trigger',
/// dbname)` on the `postgres` database. Says what happened either way.
pub async fn notify(odoo: &Odoo) -> String {
    let mut spec = odoo.spec.clone();
    spec.config_mut().dbname("postgres");
    let result = async {
        let client = spec.connect().await.map_err(|e| e.to_string())?;
        client
            .execute("SELECT pg_notify('cron_trigger', $1)", &[&odoo.dbname])
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    match result {
        Ok(_) => {
            "Odoo's cron workers were notified (NOTIFY cron_trigger on database postgres)".into()
        }
        Err(e) => format!(
            "could not notify Odoo's cron workers through the postgres database ({e}); \
             the run starts at the workers' next poll, within about a minute"
        ),
    }
}

/// Odoo's audit rows written by crondeck, newest first.
pub async fn audit_rows(
    odoo: &Odoo,
    limit: i64,
) -> Result<Vec<(DateTime<Utc>, String)>, OdooError> {
    Ok(odoo
        .client
        .query(
            "SELECT create_date, message FROM ir_logging WHERE name = 'crondeck.odoo' \
              ORDER BY id DESC LIMIT $1",
            &[&limit],
        )
        .await?
        .iter()
        .map(|r| (r.get::<_, NaiveDateTime>(0).and_utc(), r.get(1)))
        .collect())
}

trait NoNanos: Sized {
    fn with_nanosecond_zero(self) -> Option<Self>;
}

impl NoNanos for NaiveDateTime {
    fn with_nanosecond_zero(self) -> Option<Self> {
        chrono::Timelike::with_nanosecond(&self, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(
            parse_interval("2 hours", OdooVersion::V18).unwrap(),
            (2, "hours".into())
        );
        assert_eq!(
            parse_interval("15m", OdooVersion::V16).unwrap(),
            (15, "minutes".into())
        );
        assert!(parse_interval("never", OdooVersion::V18).is_err());
        assert_eq!(
            parse_interval("never", OdooVersion::V19).unwrap(),
            (1, "never".into())
        );
        assert!(parse_interval("0 days", OdooVersion::V18).is_err());
        assert!(parse_interval("3 fortnights", OdooVersion::V18).is_err());
    }
}
