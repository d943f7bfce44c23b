//! Reading an Odoo database's scheduled actions, and judging them.
//!
//! Every read here is a plain `SELECT` (no `FOR …` clause): a row lock, even
//! one held for a single round trip, makes an Odoo worker's `FOR NO KEY
//! UPDATE SKIP LOCKED` skip that cron for a whole pass, and `FOR KEY SHARE`
//! would not even conflict with the worker's lock, so it detects nothing.
//!
//! **Running** is read from the row's `xmax` instead: a worker that acquired
//! a cron holds `FOR NO KEY UPDATE` on its row for the whole run, so the
//! row's `xmax` is the worker's transaction id (or, once the run's own
//! progress inserts took `KEY SHARE` on the row, a multixact whose members
//! include it). The lockers are the sessions holding `RowShareLock` on
//! `ir_cron` in `pg_locks`; their transaction ids come from their
//! `transactionid` locks (also `pg_locks`, readable by any role), and
//! "running since" from `pg_stat_activity.xact_start` (visible for sessions
//! of the same role, or with `pg_read_all_stats`).

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde::Serialize;
use tokio_postgres::Client;

use super::{OdooError, OdooVersion, POLL_SECONDS};
use crate::health::State;

/// Beyond Odoo's 60 s poll, how long a due cron may wait before it is late.
pub const LATE_GRACE_SECONDS: i64 = 60;
/// A cron due for this long while nothing runs says no worker is alive.
pub const STALLED_AFTER_SECONDS: i64 = 5 * 60;

/// One scheduled action.
#[derive(Debug, Clone, Serialize)]
pub struct Cron {
    pub id: i32,
    pub name: String,
    pub active: bool,
    pub interval_number: i32,
    pub interval_type: String,
    pub nextcall: DateTime<Utc>,
    pub lastcall: Option<DateTime<Utc>>,
    pub priority: i32,
    /// ≤17 only.
    pub numbercall: Option<i32>,
    /// ≤17 only.
    pub doall: Option<bool>,
    /// 18+ only.
    pub failure_count: Option<i32>,
    /// 18+ only.
    pub first_failure_date: Option<DateTime<Utc>>,
    /// `ir_model.model` of the server action.
    pub model: Option<String>,
    pub user_id: i32,
    /// The scheduler user's login (never filtered on `active`: core crons
    /// run as the inactive `__system__`).
    pub user_login: Option<String>,
    pub server_action_id: i32,
    /// The server action's Python code (shown escaped).
    pub code: Option<String>,
    /// A trigger with `call_at <= now` is waiting.
    pub queued: bool,
    /// The earliest pending trigger, if any.
    pub next_trigger: Option<DateTime<Utc>>,
    pub write_date: Option<DateTime<Utc>>,
    /// Set when a worker holds the row.
    pub running: Option<Running>,
}

/// A run in progress.
#[derive(Debug, Clone, Serialize)]
pub struct Running {
    /// The worker's backend pid.
    pub pid: i32,
    /// The worker transaction's start (needs stats privileges to see).
    pub since: Option<DateTime<Utc>>,
    /// 18+: `(done, done + remaining)` summed over the run's progress rows.
    pub progress: Option<(i64, i64)>,
}

/// What the Odoo workers seem to be doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum WorkerSign {
    /// Something shows a worker at work or listening.
    Alive(String),
    /// A module waits to be installed/upgraded/removed: Odoo skips this database.
    Skipped(String),
    /// Crons are due for minutes and nothing runs them.
    Dead(String),
    /// Nothing is due and nothing shows a worker either way.
    Unknown(String),
}

impl WorkerSign {
    pub fn word(&self) -> &'static str {
        match self {
            WorkerSign::Alive(_) => "alive",
            WorkerSign::Skipped(_) => "skipped",
            WorkerSign::Dead(_) => "no worker",
            WorkerSign::Unknown(_) => "unknown",
        }
    }
    pub fn reason(&self) -> &str {
        match self {
            WorkerSign::Alive(r)
            | WorkerSign::Skipped(r)
            | WorkerSign::Dead(r)
            | WorkerSign::Unknown(r) => r,
        }
    }
}

/// Everything the list, the check and the console show.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub version: OdooVersion,
    pub base_version: Option<String>,
    pub database: String,
    /// The database server's clock, UTC.
    pub now: DateTime<Utc>,
    /// Modules in a `to install/upgrade/remove` state.
    pub modules_pending: Vec<String>,
    /// Sessions on the `postgres` database that look like Odoo's cron
    /// listeners: their last statement was `LISTEN cron_trigger`, or their
    /// `application_name` is Odoo's `odoo-<pid>` (the listener's last
    /// statement is usually the `COMMIT` after the `LISTEN`).
    pub listeners: i64,
    pub worker: WorkerSign,
    pub crons: Vec<Cron>,
}

fn utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}

/// The name expression: `cron_name` is jsonb in 16, text from 17.
fn name_sql(version: OdooVersion) -> &'static str {
    match version {
        OdooVersion::V16 => {
            "COALESCE(c.cron_name->>'en_US', (SELECT v FROM jsonb_each_text(c.cron_name) AS j(k, v) LIMIT 1), '')"
        }
        _ => "COALESCE(c.cron_name, '')",
    }
}

/// Read every cron (no row lock), with running state and progress.
pub async fn read_crons(client: &Client, version: OdooVersion) -> Result<Vec<Cron>, OdooError> {
    let v17 = version.has_numbercall();
    let sql = format!(
        "SELECT c.id, {name}, c.active, c.interval_number, c.interval_type::text, \
                c.nextcall, c.lastcall, c.priority, \
                {numbercall}, {doall}, {failure_count}, {first_failure}, \
                m.model::text, c.user_id, u.login::text, c.ir_actions_server_id, s.code, \
                EXISTS (SELECT 1 FROM ir_cron_trigger t WHERE t.cron_id = c.id \
                        AND t.call_at <= (now() AT TIME ZONE 'UTC')) AS queued, \
                (SELECT min(t.call_at) FROM ir_cron_trigger t WHERE t.cron_id = c.id) AS next_trigger, \
                c.write_date \
           FROM ir_cron c \
           JOIN ir_act_server s ON s.id = c.ir_actions_server_id \
           LEFT JOIN ir_model m ON m.id = s.model_id \
           LEFT JOIN res_users u ON u.id = c.user_id \
          ORDER BY 2, c.id",
        name = name_sql(version),
        numbercall = if v17 { "c.numbercall" } else { "NULL::int4" },
        doall = if v17 { "c.doall" } else { "NULL::bool" },
        failure_count = if v17 { "NULL::int4" } else { "c.failure_count" },
        first_failure = if v17 {
            "NULL::timestamp"
        } else {
            "c.first_failure_date"
        },
    );
    let rows = client.query(&sql, &[]).await?;
    let mut crons: Vec<Cron> = rows
        .iter()
        .map(|r| Cron {
            id: r.get(0),
            name: r.get(1),
            active: r.get::<_, Option<bool>>(2).unwrap_or(false),
            interval_number: r.get::<_, Option<i32>>(3).unwrap_or(1),
            interval_type: r
                .get::<_, Option<String>>(4)
                .unwrap_or_else(|| "months".into()),
            nextcall: utc(r.get(5)),
            lastcall: r.get::<_, Option<NaiveDateTime>>(6).map(utc),
            priority: r.get::<_, Option<i32>>(7).unwrap_or(5),
            numbercall: r.get(8),
            doall: r.get(9),
            failure_count: r.get(10),
            first_failure_date: r.get::<_, Option<NaiveDateTime>>(11).map(utc),
            model: r.get(12),
            user_id: r.get(13),
            user_login: r.get(14),
            server_action_id: r.get(15),
            code: r.get(16),
            queued: r.get(17),
            next_trigger: r.get::<_, Option<NaiveDateTime>>(18).map(utc),
            write_date: r.get::<_, Option<NaiveDateTime>>(19).map(utc),
            running: None,
        })
        .collect();
    let running = read_running(client).await?;
    for (id, run) in running {
        if let Some(cron) = crons.iter_mut().find(|c| c.id == id) {
            cron.running = Some(run);
        }
    }
    if version.has_progress() {
        for cron in crons.iter_mut() {
            let since = cron.running.as_ref().map(|r| r.since);
            if let Some(since) = since {
                let progress = read_progress(client, cron.id, since.or(cron.lastcall)).await?;
                if let Some(run) = cron.running.as_mut() {
                    run.progress = progress;
                }
            }
        }
    }
    Ok(crons)
}

/// Lockers of `ir_cron` rows, by cron id. Never takes a row lock.
async fn read_running(client: &Client) -> Result<Vec<(i32, Running)>, OdooError> {
    // Sessions (other than ours) holding RowShareLock on ir_cron, with their xid.
    let lockers = client
        .query(
            "SELECT l.pid, x.transactionid::text, \
                    (a.xact_start AT TIME ZONE 'UTC') AS since \
               FROM pg_locks l \
               JOIN pg_locks x ON x.pid = l.pid AND x.locktype = 'transactionid' \
                              AND x.mode = 'ExclusiveLock' AND x.granted \
               LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
              WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'RowShareLock' \
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                AND l.relation = 'public.ir_cron'::regclass \
                AND l.pid <> pg_backend_pid()",
            &[],
        )
        .await?;
    if lockers.is_empty() {
        return Ok(Vec::new());
    }
    let lockers: Vec<(i32, String, Option<DateTime<Utc>>)> = lockers
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get::<_, Option<NaiveDateTime>>(2).map(utc),
            )
        })
        .collect();
    let rows = client
        .query(
            "SELECT id, xmax::text FROM ir_cron WHERE xmax::text <> '0'",
            &[],
        )
        .await?;
    let mut found: Vec<(i32, Running)> = Vec::new();
    let mut unmatched: Vec<(i32, String)> = Vec::new();
    for r in &rows {
        let id: i32 = r.get(0);
        let xmax: String = r.get(1);
        match lockers.iter().find(|(_, xid, _)| *xid == xmax) {
            Some((pid, _, since)) => found.push((
                id,
                Running {
                    pid: *pid,
                    since: *since,
                    progress: None,
                },
            )),
            None => unmatched.push((id, xmax)),
        }
    }
    // A multixact: its members name the locker and the lock mode. xmax may
    // also be a stale plain xid (whose number means nothing as a multixact):
    // each look-up is its own statement, and an error only means "not one".
    // Only a member holding an update-grade lock counts (KEY SHARE is what
    // foreign keys take; it is no run).
    let budget = 64;
    for (id, xmax) in unmatched.into_iter().take(budget) {
        if found.len() >= lockers.len() {
            break;
        }
        let members = match client
            .query(
                "SELECT xid::text, mode FROM pg_get_multixact_members($1::text::xid)",
                &[&xmax],
            )
            .await
        {
            Ok(rows) => rows,
            Err(e) if e.as_db_error().is_some() => continue,
            Err(e) => return Err(e.into()),
        };
        for m in &members {
            let xid: String = m.get(0);
            let mode: String = m.get(1);
            if !matches!(mode.as_str(), "nokeyupd" | "fornokeyupd" | "upd" | "forupd") {
                continue;
            }
            if let Some((pid, _, since)) = lockers.iter().find(|(_, x, _)| *x == xid) {
                found.push((
                    id,
                    Running {
                        pid: *pid,
                        since: *since,
                        progress: None,
                    },
                ));
                break;
            }
        }
    }
    Ok(found)
}

/// 18+: the run's progress, summed over its rows (one per batch; the latest
/// is the batch in progress, 0/0 until it reports). `since` bounds the run.
async fn read_progress(
    client: &Client,
    cron_id: i32,
    since: Option<DateTime<Utc>>,
) -> Result<Option<(i64, i64)>, OdooError> {
    let since = since.map(|t| t.naive_utc());
    let row = client
        .query_one(
            "SELECT COALESCE(sum(done), 0)::int8, count(*)::int8, \
                    (SELECT remaining FROM ir_cron_progress p2 \
                      WHERE p2.cron_id = $1 AND ($2::timestamp IS NULL OR p2.create_date >= $2) \
                        AND (p2.done > 0 OR p2.remaining > 0) \
                      ORDER BY p2.id DESC LIMIT 1)::int8 \
               FROM ir_cron_progress p \
              WHERE p.cron_id = $1 AND ($2::timestamp IS NULL OR p.create_date >= $2)",
            &[&cron_id, &since],
        )
        .await?;
    let done: i64 = row.get(0);
    let rows: i64 = row.get(1);
    let remaining: Option<i64> = row.get(2);
    if rows == 0 || (done == 0 && remaining.unwrap_or(0) == 0) {
        return Ok(None);
    }
    Ok(Some((done, done + remaining.unwrap_or(0))))
}

/// Read everything for one screen or command.
pub async fn overview(odoo: &super::Odoo) -> Result<Overview, OdooError> {
    let client = &odoo.client;
    let now: NaiveDateTime = client
        .query_one(
            "SELECT (clock_timestamp() AT TIME ZONE 'UTC')::timestamp",
            &[],
        )
        .await?
        .get(0);
    let now = utc(now);
    let modules_pending: Vec<String> = client
        .query(
            "SELECT name::text || ' (' || state::text || ')' FROM ir_module_module \
              WHERE state LIKE 'to %' ORDER BY name",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let listeners: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
              WHERE datname = 'postgres' AND pid <> pg_backend_pid() \
                AND (lower(btrim(query)) LIKE 'listen cron_trigger%' \
                     OR application_name LIKE 'odoo-%')",
            &[],
        )
        .await?
        .get(0);
    let crons = read_crons(client, odoo.version).await?;
    let worker = worker_sign(&crons, &modules_pending, listeners, now);
    Ok(Overview {
        version: odoo.version,
        base_version: odoo.base_version.clone(),
        database: odoo.dbname.clone(),
        now,
        modules_pending,
        listeners,
        worker,
        crons,
    })
}

/// Judge whether an Odoo cron worker is alive (see [`WorkerSign`]).
pub fn worker_sign(
    crons: &[Cron],
    modules_pending: &[String],
    listeners: i64,
    now: DateTime<Utc>,
) -> WorkerSign {
    if !modules_pending.is_empty() {
        return WorkerSign::Skipped(format!(
            "Odoo skips this database while modules wait: {}",
            modules_pending.join(", ")
        ));
    }
    if let Some(c) = crons.iter().find(|c| c.running.is_some()) {
        return WorkerSign::Alive(format!("running #{} {}", c.id, c.name));
    }
    let stalled = crons
        .iter()
        .filter(|c| c.active && c.numbercall != Some(0))
        .filter_map(|c| due_since(c, now).map(|d| (c, d)))
        .filter(|(_, d)| *d > Duration::seconds(STALLED_AFTER_SECONDS))
        .max_by_key(|(_, d)| *d);
    match (stalled, listeners) {
        (Some((c, d)), _) => WorkerSign::Dead(format!(
            "#{} {} due for {} and not picked up",
            c.id,
            c.name,
            crate::tui::format::compact(d)
        )),
        (None, n) if n > 0 => WorkerSign::Alive(format!("{n} session(s) listen on cron_trigger")),
        (None, _) => WorkerSign::Unknown("nothing due; no listener visible".into()),
    }
}

/// How long a cron has been due: its `nextcall` or its earliest waiting trigger.
pub fn due_since(c: &Cron, now: DateTime<Utc>) -> Option<Duration> {
    let mut due = (c.nextcall <= now).then_some(c.nextcall);
    if let Some(t) = c.next_trigger.filter(|t| *t <= now) {
        due = Some(due.map_or(t, |d| d.min(t)));
    }
    due.map(|d| now - d)
}

/// The interval as a duration (months as 30 days); `None` for `never`.
pub fn interval(c: &Cron) -> Option<Duration> {
    let n = i64::from(c.interval_number.max(1));
    match c.interval_type.as_str() {
        "minutes" => Some(Duration::minutes(n)),
        "hours" => Some(Duration::hours(n)),
        "days" => Some(Duration::days(n)),
        "weeks" => Some(Duration::weeks(n)),
        "months" => Some(Duration::days(30 * n)),
        _ => None,
    }
}

/// `every 1 hour`, `every 2 days`, `never`.
pub fn describe_interval(number: i32, unit: &str) -> String {
    if unit == "never" {
        return "never".into();
    }
    let unit = if number == 1 {
        unit.trim_end_matches('s')
    } else {
        unit
    };
    format!("every {number} {unit}")
}

/// The primary state, with the same words and glyphs as crondeck jobs.
pub fn state(c: &Cron, now: DateTime<Utc>) -> State {
    if c.running.is_some() {
        return State::Running;
    }
    if !c.active {
        return State::Paused;
    }
    if c.numbercall == Some(0) {
        // ≤17: no calls left; Odoo will never run it again.
        return State::Done;
    }
    if overdue(c, now) {
        return State::Overdue;
    }
    if c.failure_count.unwrap_or(0) > 0 {
        return State::Failing;
    }
    if late(c, now) {
        return State::Late;
    }
    State::Ok
}

/// Not run for more than twice its interval (as for crondeck jobs); a cron
/// never run counts from its first due time.
pub fn overdue(c: &Cron, now: DateTime<Utc>) -> bool {
    let Some(every) = interval(c) else {
        return false;
    };
    let since = match c.lastcall {
        Some(last) => now - last,
        None => now - c.nextcall,
    };
    since > every * 2 && c.nextcall <= now
}

/// `nextcall` (or a waiting trigger) past by more than the poll plus a grace.
pub fn late(c: &Cron, now: DateTime<Utc>) -> bool {
    due_since(c, now).is_some_and(|d| d > Duration::seconds(POLL_SECONDS + LATE_GRACE_SECONDS))
}

/// Find a cron by id (`12` or `#12`) or exact name.
pub fn find<'a>(crons: &'a [Cron], key: &str) -> Result<&'a Cron, OdooError> {
    let k = key.trim();
    if let Ok(id) = k.trim_start_matches('#').parse::<i32>() {
        if let Some(c) = crons.iter().find(|c| c.id == id) {
            return Ok(c);
        }
    }
    let named: Vec<&Cron> = crons.iter().filter(|c| c.name == k).collect();
    match named.as_slice() {
        [one] => Ok(one),
        [] => Err(OdooError::NotFound(format!("\"{k}\""))),
        many => Err(OdooError::Refused(format!(
            "{} scheduled actions are named \"{k}\": give the id ({})",
            many.len(),
            many.iter()
                .map(|c| format!("#{}", c.id))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cron(now: DateTime<Utc>) -> Cron {
        Cron {
            id: 1,
            name: "x".into(),
            active: true,
            interval_number: 1,
            interval_type: "hours".into(),
            nextcall: now + Duration::minutes(10),
            lastcall: Some(now - Duration::minutes(50)),
            priority: 5,
            numbercall: None,
            doall: None,
            failure_count: Some(0),
            first_failure_date: None,
            model: None,
            user_id: 1,
            user_login: None,
            server_action_id: 1,
            code: None,
            queued: false,
            next_trigger: None,
            write_date: None,
            running: None,
        }
    }

    #[test]
    fn states() {
        let now = Utc::now();
        let mut c = cron(now);
        assert_eq!(state(&c, now), State::Ok);
        c.nextcall = now - Duration::minutes(3);
        assert_eq!(state(&c, now), State::Late);
        c.lastcall = Some(now - Duration::hours(3));
        assert_eq!(state(&c, now), State::Overdue);
        c.lastcall = Some(now - Duration::minutes(30));
        c.failure_count = Some(2);
        assert_eq!(state(&c, now), State::Failing);
        c.active = false;
        assert_eq!(state(&c, now), State::Paused);
        c.interval_type = "never".into();
        c.active = true;
        c.failure_count = None;
        c.numbercall = Some(0);
        assert_eq!(state(&c, now), State::Done);
    }

    #[test]
    fn intervals_read_like_odoo() {
        assert_eq!(describe_interval(1, "hours"), "every 1 hour");
        assert_eq!(describe_interval(3, "days"), "every 3 days");
        assert_eq!(describe_interval(1, "never"), "never");
    }

    #[test]
    fn worker_dead_when_due_long() {
        let now = Utc::now();
        let mut c = cron(now);
        c.nextcall = now - Duration::minutes(10);
        assert!(matches!(
            worker_sign(&[c.clone()], &[], 0, now),
            WorkerSign::Dead(_)
        ));
        assert!(matches!(
            worker_sign(&[c], &["sale (to upgrade)".into()], 1, now),
            WorkerSign::Skipped(_)
        ));
    }
}
