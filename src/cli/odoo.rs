//! `--odoo URL`: the commands that make sense on an Odoo database's
//! scheduled actions (`ir_cron`). Crons are named by id (`12`, `#12`) or
//! exact name. See the README's "Odoo" section and `crate::odoo`.

use anyhow::Context as _;
use chrono::{DateTime, Utc};

use super::operations::CheckExit;
use super::Command;
use crate::check::Status;
use crate::config::Settings;
use crate::db::audit::Actor;
use crate::db::connect::ConnectionSpec;
use crate::health::State;
use crate::odoo::actions::{self, Action};
use crate::odoo::model::{self, Cron, Overview, WorkerSign};
use crate::odoo::{self, Odoo, OdooError};
use crate::ops::OpsError;
use crate::text::{self, outln};

/// Where `--odoo` points, and as whom edits are recorded.
#[derive(Debug, Clone)]
pub struct OdooTarget {
    pub spec: ConnectionSpec,
    /// Odoo login recorded as `write_uid`; `None` = the superuser (id 1).
    pub login: Option<String>,
}

/// `--odoo` (else the config file's `odoo_url`), parsed; `None` if neither.
pub fn target(
    flag: Option<&str>,
    login: Option<&str>,
    settings: &Settings,
) -> anyhow::Result<Option<OdooTarget>> {
    let env = |key: &str| std::env::var(key).ok();
    let (origin, url) = match (flag, settings.file.odoo_url.as_deref()) {
        (Some(url), _) => ("--odoo", url),
        (None, Some(url)) => ("odoo_url (config file)", url),
        (None, None) => return Ok(None),
    };
    let spec =
        ConnectionSpec::parse(url, &env).map_err(|e| crate::config::ConfigError::Setting {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
    let login = login
        .map(str::to_owned)
        .or_else(|| settings.file.odoo_login.clone());
    Ok(Some(OdooTarget { spec, login }))
}

fn refused(message: impl Into<String>) -> anyhow::Error {
    OpsError::Invalid(message.into()).into()
}

/// Map Odoo errors onto the CLI's exit codes.
fn classify(e: OdooError) -> anyhow::Error {
    match e {
        OdooError::NotFound(what) => {
            anyhow::Error::new(crate::db::DbError::JobNotFound(what)).context("--odoo")
        }
        OdooError::Refused(m) => refused(m),
        other => other.into(),
    }
}

/// Run one command (or the console) against an Odoo database.
pub async fn run(
    command: Option<Command>,
    settings: &Settings,
    target: OdooTarget,
) -> anyhow::Result<()> {
    let Some(command) = command else {
        let odoo = odoo::connect(&target.spec).await?;
        return crate::odoo::console::run(odoo, target.login, settings.read_only).await;
    };
    if let Command::Check(a) = &command {
        if a.tag.is_some()
            || a.job.is_some()
            || a.late_grace.is_some()
            || a.overdue_intervals.is_some()
            || a.failing_streak.is_some()
            || a.min_nodes.is_some()
            || a.no_notify
        {
            return Err(refused(
                "with --odoo, check takes only --json and --timeout (Odoo's thresholds are fixed: \
                 late = due for more than the 60 s poll + 60 s, overdue = not run for twice the \
                 interval)",
            ));
        }
        return check(&target, a).await;
    }
    let mutates = matches!(
        command,
        Command::Run(_) | Command::Pause(_) | Command::Resume(_) | Command::Set(_)
    );
    if mutates && settings.read_only {
        return Err(refused(
            "read-only mode: this command would change the Odoo database",
        ));
    }
    let mut odoo = odoo::connect(&target.spec).await?;
    match command {
        Command::List(a) => {
            if a.tag.is_some() {
                return Err(refused("--tag: Odoo scheduled actions have no tags"));
            }
            list(&odoo, a.json).await
        }
        Command::Show(a) => show(&odoo, &a.name, a.json).await,
        Command::History(a) => history(&odoo, &a.name, a.limit, a.json).await,
        Command::Audit(a) => audit(&odoo, a.limit).await,
        Command::Run(a) => {
            if a.wait || a.wait_timeout.is_some() || a.force {
                return Err(refused(
                    "--wait/--force are not available with --odoo (Odoo runs the action itself)",
                ));
            }
            act(&mut odoo, &target, &a.name, &[Action::RunNow]).await
        }
        Command::Pause(a) => {
            if a.reason.is_some() || a.for_.is_some() {
                return Err(refused(
                    "--reason/--for are not available with --odoo (pause = active off)",
                ));
            }
            act(&mut odoo, &target, &a.name, &[Action::SetActive(false)]).await
        }
        Command::Resume(a) => act(&mut odoo, &target, &a.name, &[Action::SetActive(true)]).await,
        Command::Set(a) => {
            if a.cron.is_some()
                || a.tz.is_some()
                || a.manual
                || a.timeout.is_some()
                || a.failure.failure_threshold.is_some()
                || a.failure.failure_min_age.is_some()
                || a.failure.retries.is_some()
                || a.failure.retry_backoff.is_some()
            {
                return Err(refused(
                    "with --odoo, set takes only --every (Odoo's interval), --next and --priority",
                ));
            }
            let mut todo = Vec::new();
            if let Some(every) = &a.every {
                let (number, unit) =
                    actions::parse_interval(every, odoo.version).map_err(classify)?;
                todo.push(Action::SetInterval { number, unit });
            }
            if let Some(next) = &a.next {
                let now = Utc::now();
                let at = crate::timespec::parse_when(next, now, &Utc).context("--next")?;
                todo.push(Action::SetNextcall(at));
            }
            if let Some(p) = a.priority {
                todo.push(Action::SetPriority(p));
            }
            if todo.is_empty() {
                return Err(refused(
                    "nothing to change (expected one of --every, --next, --priority)",
                ));
            }
            // One transaction: every change or none.
            act(&mut odoo, &target, &a.name, &todo).await
        }
        Command::Migrate(_) => Err(refused(
            "--odoo: crondeck never creates its schema in an Odoo database",
        )),
        _ => Err(refused(
            "this command is not available with --odoo (available: list, show, run, pause, \
             resume, set, check, history, audit, and the console)",
        )),
    }
}

async fn act(
    odoo: &mut Odoo,
    target: &OdooTarget,
    key: &str,
    actions: &[Action],
) -> anyhow::Result<()> {
    let uid = actions::resolve_uid(odoo, target.login.as_deref())
        .await
        .map_err(classify)?;
    let outcome = actions::apply(odoo, key, actions, &Actor::current(), uid)
        .await
        .map_err(classify)?;
    outln!(
        "#{} {}: {}",
        outcome.cron_id,
        text::field(&outcome.name),
        outcome.change
    );
    for note in &outcome.notes {
        outln!("  {note}");
    }
    Ok(())
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The state word, with `queued` added when a trigger waits.
pub fn state_words(c: &Cron, now: DateTime<Utc>) -> (State, String) {
    let s = model::state(c, now);
    let mut word = s.word().to_string();
    if c.queued && s != State::Running {
        word.push_str(" queued");
    }
    (s, word)
}

/// One JSON object per cron (the `list --odoo --json` shape, documented in
/// the README).
pub fn cron_json(c: &Cron, now: DateTime<Utc>) -> serde_json::Value {
    let (state, _) = state_words(c, now);
    serde_json::json!({
        "id": c.id,
        "name": c.name,
        "state": state.word(),
        "queued": c.queued,
        "active": c.active,
        "interval": model::describe_interval(c.interval_number, &c.interval_type),
        "interval_number": c.interval_number,
        "interval_type": c.interval_type,
        "nextcall": c.nextcall,
        "lastcall": c.lastcall,
        "priority": c.priority,
        "numbercall": c.numbercall,
        "failure_count": c.failure_count,
        "first_failure_date": c.first_failure_date,
        "model": c.model,
        "user": c.user_login,
        "running": c.running.as_ref().map(|r| serde_json::json!({
            "pid": r.pid,
            "since": r.since,
            "done": r.progress.map(|p| p.0),
            "total": r.progress.map(|p| p.1),
        })),
    })
}

fn header(o: &Overview) -> String {
    format!(
        "Odoo {} (base {}) database {}; worker: {} ({})",
        o.version,
        o.base_version.as_deref().unwrap_or("?"),
        o.database,
        o.worker.word(),
        o.worker.reason()
    )
}

async fn list(odoo: &Odoo, json: bool) -> anyhow::Result<()> {
    let o = model::overview(odoo).await.map_err(classify)?;
    if json {
        let crons: Vec<_> = o.crons.iter().map(|c| cron_json(c, o.now)).collect();
        let value = serde_json::json!({
            "odoo_version": o.version.to_string(),
            "base_version": o.base_version,
            "database": o.database,
            "now": o.now,
            "worker": o.worker,
            "modules_pending": o.modules_pending,
            "crons": crons,
        });
        outln!("{}", text::json(&serde_json::to_string_pretty(&value)?));
        return Ok(());
    }
    outln!("{}", header(&o));
    outln!(
        "{:>4}  {:<16} {:<32} {:<16} {:<19} {:<19} {:>4} {:>5}",
        "ID",
        "STATE",
        "NAME",
        "INTERVAL",
        "NEXT CALL (UTC)",
        "LAST CALL (UTC)",
        "PRIO",
        "FAIL"
    );
    for c in &o.crons {
        let (state, word) = state_words(c, o.now);
        let fail = c.failure_count.map_or("-".into(), |n| n.to_string());
        let mut line = format!(
            "{:>4}  {} {:<14} {:<32} {:<16} {:<19} {:<19} {:>4} {:>5}",
            c.id,
            state.glyph(),
            word,
            text::field(&crate::tui::format::ellipsize_middle(&c.name, 32)),
            model::describe_interval(c.interval_number, &c.interval_type),
            when(Some(c.nextcall)),
            when(c.lastcall),
            c.priority,
            fail
        );
        if let Some(r) = &c.running {
            line.push_str(&format!("  running since {}", when(r.since)));
            if let Some((done, total)) = r.progress {
                line.push_str(&format!(" {done}/{total}"));
            }
        }
        outln!("{line}");
    }
    if !o.modules_pending.is_empty() {
        outln!(
            "modules waiting (Odoo skips this database): {}",
            o.modules_pending.join(", ")
        );
    }
    Ok(())
}

async fn show(odoo: &Odoo, key: &str, json: bool) -> anyhow::Result<()> {
    let o = model::overview(odoo).await.map_err(classify)?;
    let c = model::find(&o.crons, key).map_err(classify)?;
    if json {
        let mut v = cron_json(c, o.now);
        v["code"] = serde_json::json!(c.code);
        outln!("{}", text::json(&serde_json::to_string_pretty(&v)?));
        return Ok(());
    }
    let (state, word) = state_words(c, o.now);
    outln!("#{} {}", c.id, text::field(&c.name));
    outln!("  state:       {} {}", state.glyph(), word);
    outln!(
        "  interval:    {}",
        model::describe_interval(c.interval_number, &c.interval_type)
    );
    outln!("  next call:   {} UTC", when(Some(c.nextcall)));
    outln!(
        "  last call:   {} UTC (last attempted, {})",
        when(c.lastcall),
        match odoo.version {
            odoo::OdooVersion::V16 | odoo::OdooVersion::V17 => "start of the run",
            odoo::OdooVersion::V18 => "end of the run",
            odoo::OdooVersion::V19 => "pick-up of the run",
        }
    );
    outln!("  priority:    {}", c.priority);
    if let Some(n) = c.numbercall {
        outln!(
            "  numbercall:  {} ({})",
            n,
            if n < 0 {
                "no limit".to_string()
            } else {
                format!("{n} calls left")
            }
        );
    }
    if let Some(n) = c.failure_count {
        outln!("  failures:    {n} since {}", when(c.first_failure_date));
    }
    if let Some(t) = c.next_trigger {
        outln!(
            "  trigger:     {} UTC{}",
            when(Some(t)),
            if c.queued { " (waiting)" } else { "" }
        );
    }
    outln!(
        "  model:       {}",
        text::field(c.model.as_deref().unwrap_or("-"))
    );
    outln!(
        "  user:        {} (id {})",
        text::field(c.user_login.as_deref().unwrap_or("?")),
        c.user_id
    );
    if let Some(r) = &c.running {
        outln!("  running:     since {} (pid {})", when(r.since), r.pid);
        if let Some((d, t)) = r.progress {
            outln!("  progress:    {d} / {t}");
        }
    }
    outln!("  code (server action #{}):", c.server_action_id);
    for line in c.code.as_deref().unwrap_or("").lines().take(12) {
        outln!("    {}", text::field(line));
    }
    Ok(())
}

async fn history(odoo: &Odoo, key: &str, limit: i64, json: bool) -> anyhow::Result<()> {
    let crons = model::read_crons(&odoo.client, odoo.version)
        .await
        .map_err(classify)?;
    let c = model::find(&crons, key).map_err(classify)?;
    if !odoo.version.has_progress() {
        return Err(refused(format!(
            "history is not available on Odoo {}: it keeps no run history (only lastcall, \
             here {} UTC); Odoo 18+ keeps a week of progress rows",
            odoo.version,
            when(c.lastcall)
        )));
    }
    let rows = odoo
        .client
        .query(
            "SELECT id, create_date, write_date, done, remaining, timed_out_counter \
               FROM ir_cron_progress WHERE cron_id = $1 ORDER BY id DESC LIMIT $2",
            &[&c.id, &limit],
        )
        .await?;
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let at = |i: usize| {
                r.get::<_, Option<chrono::NaiveDateTime>>(i)
                    .map(|t| t.and_utc())
            };
            serde_json::json!({
                "progress_id": r.get::<_, i32>(0),
                "created": at(1),
                "updated": at(2),
                "done": r.get::<_, Option<i32>>(3),
                "remaining": r.get::<_, Option<i32>>(4),
                "timed_out_counter": r.get::<_, Option<i32>>(5),
            })
        })
        .collect();
    if json {
        outln!("{}", text::json(&serde_json::to_string_pretty(&items)?));
        return Ok(());
    }
    outln!(
        "#{} {}: batches (ir_cron_progress, one row per batch; Odoo keeps a week)",
        c.id,
        text::field(&c.name)
    );
    for (r, item) in rows.iter().zip(&items) {
        let created = r
            .get::<_, Option<chrono::NaiveDateTime>>(1)
            .map(|t| t.and_utc());
        outln!(
            "  {}  done {:>6}  remaining {:>6}",
            when(created),
            item["done"],
            item["remaining"]
        );
    }
    Ok(())
}

async fn audit(odoo: &Odoo, limit: i64) -> anyhow::Result<()> {
    let rows = actions::audit_rows(odoo, limit).await.map_err(classify)?;
    for (at, message) in rows {
        outln!("{}  {}", when(Some(at)), text::field(&message));
    }
    Ok(())
}

/// `check --odoo`: OK / WARNING (late, failing, modules waiting) /
/// CRITICAL (overdue, no worker alive) / UNKNOWN (cannot read).
async fn check(target: &OdooTarget, args: &super::operations::CheckArgs) -> anyhow::Result<()> {
    let result = async {
        let odoo = odoo::connect(&target.spec).await?;
        Ok::<_, anyhow::Error>(model::overview(&odoo).await?)
    };
    let limit = match &args.timeout {
        Some(t) => crate::timespec::parse_duration(t).context("--timeout")?,
        None => std::time::Duration::from_secs(10),
    };
    let o = match tokio::time::timeout(limit, result).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            outln!("ODOO UNKNOWN: {}", crate::check::unknown_line(&e));
            return Err(CheckExit(Status::Unknown).into());
        }
        Err(_) => {
            outln!(
                "ODOO UNKNOWN: no answer within {}",
                crate::timefmt::duration(limit)
            );
            return Err(CheckExit(Status::Unknown).into());
        }
    };
    let (status, summary, problems) = judge(&o);
    if args.json {
        let v = serde_json::json!({
            "status": status, "code": status.code(), "summary": summary,
            "problems": problems, "worker": o.worker,
        });
        outln!("{}", text::json(&v.to_string()));
    } else {
        outln!("ODOO {}: {}", status.word(), summary);
        for p in &problems {
            outln!("  {p}");
        }
    }
    if status == Status::Ok {
        Ok(())
    } else {
        Err(CheckExit(status).into())
    }
}

/// The check's verdict, pure.
pub fn judge(o: &Overview) -> (Status, String, Vec<String>) {
    let mut status = Status::Ok;
    let mut problems = Vec::new();
    let mut raise = |s: Status, p: String| {
        status = status.max(s);
        problems.push(p);
    };
    match &o.worker {
        WorkerSign::Dead(r) => raise(Status::Critical, format!("no Odoo cron worker alive: {r}")),
        WorkerSign::Skipped(r) => raise(Status::Warning, r.clone()),
        _ => {}
    }
    let mut counts = [0usize; 3];
    for c in &o.crons {
        match model::state(c, o.now) {
            State::Overdue => {
                counts[0] += 1;
                raise(Status::Critical, format!("overdue: #{} {}", c.id, c.name));
            }
            State::Failing => {
                counts[1] += 1;
                raise(
                    Status::Warning,
                    format!(
                        "failing: #{} {} ({} failures)",
                        c.id,
                        c.name,
                        c.failure_count.unwrap_or(0)
                    ),
                );
            }
            State::Late => {
                counts[2] += 1;
                raise(Status::Warning, format!("late: #{} {}", c.id, c.name));
            }
            _ => {}
        }
    }
    let summary = format!(
        "{} scheduled actions on {} (Odoo {}); {} overdue, {} failing, {} late; worker {}",
        o.crons.len(),
        o.database,
        o.version,
        counts[0],
        counts[1],
        counts[2],
        o.worker.word()
    );
    (status, summary, problems)
}
