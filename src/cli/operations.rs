//! Operations commands: apply and export (jobs as code), check (monitoring),
//! notifications (what was sent).

use std::fmt::Write as _;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgGroup, Args};

use crate::apply::{self, ApplyOptions};
use crate::check::{self, CheckOptions, Status};
use crate::config::Settings;
use crate::database::{self, Database};
use crate::db::audit::Actor;
use crate::db::jobs::job_list;
use crate::db::nodes::node_list_live;
use crate::db::notifications::{
    notification_list, notifications_for_job, outbox_next_due, NotificationRow, OutboxScope,
};
use crate::health::Thresholds;
use crate::job::Job;
use crate::notify::{self, Notifier};
use crate::ops::{db_now, OpsError};
use crate::text::{self, errln, out, outln};
use crate::{jobfile, timespec};

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Jobs file (TOML, `[[job]]` tables; see the README)
    pub file: PathBuf,
    /// Print the plan and write nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Remove jobs managed by this file that are no longer in it
    #[arg(long)]
    pub prune: bool,
    /// Restore the file's schedule and priority over edits made by operators
    #[arg(long)]
    pub reset_schedule: bool,
    /// Take over jobs of the same name that no file manages (created by hand)
    #[arg(long)]
    pub adopt: bool,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group = ArgGroup::new("format").args(["json", "toml"]).multiple(false))]
pub struct ExportArgs {
    /// Write JSON (the same structure; for scripts)
    #[arg(long)]
    pub json: bool,
    /// Write a TOML jobs file that `crondeck apply` reads (the default)
    #[arg(long)]
    pub toml: bool,
    /// Only jobs managed by this source (see `source` in jobs files)
    #[arg(long, value_name = "SOURCE")]
    pub source: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print JSON: the status, the counts and every problem
    #[arg(long)]
    pub json: bool,
    /// Only jobs with this tag
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// Only this job
    #[arg(long, value_name = "NAME")]
    pub job: Option<String>,
    /// A job whose tick passed longer ago than this is late [default: 30s, or [check]]
    #[arg(long, value_name = "DURATION")]
    pub late_grace: Option<String>,
    /// Intervals without success that make a job overdue [default: 2, or [check]]
    #[arg(long, value_name = "N")]
    pub overdue_intervals: Option<u32>,
    /// Failures in a row before a job counts as failing [default: 1, or [check]]
    #[arg(long, value_name = "N")]
    pub failing_streak: Option<u32>,
    /// Fewer live scheduler nodes than this is CRITICAL [default: 1, or [check]]
    #[arg(long, value_name = "N")]
    pub min_nodes: Option<u32>,
    /// Give up reaching the database after this long (then UNKNOWN) [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Do not record the "no live node" notification (the dead man's switch)
    #[arg(long)]
    pub no_notify: bool,
    /// Internal: deliver the recorded "no live node" notifications, then exit
    /// (started in the background by `check`, which never waits for delivery)
    #[arg(long, hide = true)]
    pub deliver_notifications: bool,
}

#[derive(Debug, Args)]
pub struct NotificationsArgs {
    /// Only this job's notifications
    pub name: Option<String>,
    /// How many notifications, newest first (1 or more)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

/// `check` ends with its Nagios status as the exit code.
#[derive(Debug, thiserror::Error)]
#[error("check: {}", .0.word())]
pub struct CheckExit(pub Status);

pub async fn apply(db: &mut Database, args: &ApplyArgs) -> anyhow::Result<()> {
    let file = jobfile::load(&args.file)?;
    let identity = apply::identity(&file, &args.file);
    let opts = ApplyOptions {
        dry_run: args.dry_run,
        prune: args.prune,
        reset_schedule: args.reset_schedule,
        adopt: args.adopt,
    };
    let plan = apply::apply(
        &mut db.client,
        &Actor::current(),
        &file,
        &args.file,
        &identity,
        opts,
    )
    .await?;
    if args.json {
        let json =
            serde_json::json!({ "dry_run": args.dry_run, "plan": plan, "noop": plan.is_noop() });
        outln!("{}", text::json(&serde_json::to_string_pretty(&json)?));
    } else {
        out!("{}", plan.render(args.dry_run));
    }
    Ok(())
}

pub async fn export(db: &Database, args: &ExportArgs) -> anyhow::Result<()> {
    let mut jobs = job_list(&db.client).await?;
    if let Some(source) = &args.source {
        jobs.retain(|j| j.managed_by.as_deref() == Some(source.as_str()));
    }
    jobs.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
    // A row this crondeck cannot read cannot be written back faithfully: it
    // is left out, said so on stderr and in the file, and the rest exported.
    let (unreadable, jobs): (Vec<Job>, Vec<Job>) =
        jobs.into_iter().partition(|j| j.unreadable.is_some());
    let mut notes = String::new();
    for job in &unreadable {
        let reason = job.unreadable.as_deref().unwrap_or_default().escape_debug();
        let name = job.spec.name.escape_debug();
        eprintln!("crondeck: job \"{name}\" is unreadable and was not exported: {reason}");
        let _ = writeln!(
            notes,
            "# NOT EXPORTED (unreadable): job \"{name}\": {reason}"
        );
    }
    // The file's identity: the one asked for, or the one all jobs share, so
    // that applying the export back manages them as they are managed now.
    let common = jobs
        .first()
        .and_then(|j| j.managed_by.clone())
        .filter(|first| jobs.iter().all(|j| j.managed_by.as_deref() == Some(first)));
    let source = args.source.clone().or(common);
    if source.is_none() && !jobs.is_empty() {
        errln!(
            "note: these jobs are not all managed by one source; add `source = \"NAME\"` to the file \
             before applying it, or applying it will manage them under the file's path"
        );
    }
    let text = if args.json {
        jobfile::export_json(source.as_deref(), &jobs)?
    } else {
        format!("{notes}{}", jobfile::export_toml(source.as_deref(), &jobs)?)
    };
    // An export is data: written exactly to a file or pipe; on a terminal,
    // hostile characters are shown escaped like everything else.
    if std::io::stdout().is_terminal() {
        out!("{text}");
    } else {
        print!("{text}");
    }
    if !text.ends_with('\n') {
        outln!();
    }
    Ok(())
}

fn check_options(settings: &Settings, args: &CheckArgs) -> anyhow::Result<CheckOptions> {
    let file = &settings.file.check;
    let mut thresholds = Thresholds::default();
    if let Some(text) = args.late_grace.as_ref().or(file.late_grace.as_ref()) {
        thresholds.late_grace = timespec::parse_duration(text).context("late grace")?;
    }
    if let Some(n) = args.overdue_intervals.or(file.overdue_intervals) {
        if !(1..=1000).contains(&n) {
            return Err(OpsError::Invalid(format!(
                "overdue intervals {n} is out of range (expected 1 to 1000; default 2)"
            ))
            .into());
        }
        thresholds.overdue_intervals = n;
    }
    Ok(CheckOptions {
        thresholds,
        failing_streak: args.failing_streak.or(file.failing_streak).unwrap_or(1),
        min_nodes: args.min_nodes.or(file.min_nodes).unwrap_or(1) as usize,
        tag: args.tag.clone(),
        job: args.job.clone(),
    })
}

/// `crondeck check`. Opens the database itself, so that not reaching it is
/// UNKNOWN (3), not the usual "unavailable" exit code.
pub async fn check(
    settings: &Settings,
    args: &CheckArgs,
    global: &crate::config::GlobalArgs,
) -> anyhow::Result<()> {
    if args.deliver_notifications {
        return deliver_no_live_node(settings).await;
    }
    let opts = check_options(settings, args)?;
    let limit = match &args.timeout {
        Some(text) => timespec::parse_duration(text).context("--timeout")?,
        None => Duration::from_secs(10),
    };
    let unknown = |error: anyhow::Error| -> anyhow::Result<()> {
        let line = check::unknown_line(&error);
        if args.json {
            let json = serde_json::json!({ "status": Status::Unknown, "code": 3, "summary": line });
            outln!("{}", text::json(&json.to_string()));
        } else {
            outln!("{line}");
        }
        Err(CheckExit(Status::Unknown).into())
    };
    let db = match tokio::time::timeout(limit, database::open(settings)).await {
        Ok(Ok(db)) => db,
        Ok(Err(error)) => return unknown(error),
        Err(_) => {
            return unknown(anyhow::anyhow!(
                "no answer within {}",
                crate::timefmt::duration(limit)
            ))
        }
    };
    let gathered = async {
        let now = db_now(&db.client).await?;
        let jobs = job_list(&db.client).await?;
        let nodes = node_list_live(&db.client).await?;
        anyhow::Ok((now, jobs, nodes))
    };
    let (now, jobs, nodes) = match tokio::time::timeout(limit, gathered).await {
        Ok(Ok(data)) => data,
        Ok(Err(error)) => return unknown(error),
        Err(_) => {
            return unknown(anyhow::anyhow!(
                "no answer within {}",
                crate::timefmt::duration(limit)
            ))
        }
    };
    if let Some(name) = &opts.job {
        if !jobs.iter().any(|j| &j.spec.name == name) {
            return unknown(anyhow::anyhow!("no job named \"{name}\""));
        }
    }
    let report = check::evaluate(&jobs, &nodes, now, &opts);
    if !args.no_notify && !settings.read_only {
        dead_mans_switch(settings, &db, nodes.len(), global).await;
    }
    if args.json {
        outln!("{}", text::json(&serde_json::to_string_pretty(&report)?));
    } else {
        outln!("{}", report.summary);
    }
    match report.status {
        Status::Ok => Ok(()),
        status => Err(CheckExit(status).into()),
    }
}

/// With no live node, nobody else is left to say so: `check` records it
/// (once per episode, however often it runs) with its outbox rows, and leaves
/// the delivery to a process of its own in the background
/// ([`spawn_delivery`]): `check` never waits on a channel.
async fn dead_mans_switch(
    settings: &Settings,
    db: &Database,
    live_nodes: usize,
    global: &crate::config::GlobalArgs,
) {
    let Some(notifier) = check_notifier(settings) else {
        return;
    };
    if let Err(error) = notify::check_cluster(&db.client, &notifier, live_nodes).await {
        errln!("crondeck: could not record the no-live-node event: {error}");
        return;
    }
    if live_nodes > 0 {
        return; // live nodes deliver what is in the outbox
    }
    match outbox_next_due(
        &db.client,
        OutboxScope::NoLiveNode,
        &notifier.channel_names(),
    )
    .await
    {
        Ok(Some(_)) => {
            if let Err(error) = spawn_delivery(global) {
                errln!(
                    "crondeck: could not start delivering the no-live-node notification: {error:#}"
                );
            }
        }
        Ok(None) => {}
        Err(error) => errln!("crondeck: could not read the notification outbox: {error}"),
    }
}

fn check_notifier(settings: &Settings) -> Option<Notifier> {
    let sender = format!("check@{}", Actor::current().host);
    match Notifier::from_file(&settings.file.notifications, &sender) {
        Ok(notifier) => notifier,
        Err(error) => {
            errln!("crondeck: notifications not recorded: {error}");
            None
        }
    }
}

/// How long `check`'s delivery process keeps at it (retries included).
const DELIVERY_PROCESS_LIMIT: Duration = Duration::from_secs(30 * 60);

/// Start `crondeck [global options] check --deliver-notifications` detached
/// (its own process group, no terminal, no output), and do not wait for it.
/// It inherits the environment (so `DATABASE_URL`, `PGPASSWORD`, ...).
fn spawn_delivery(global: &crate::config::GlobalArgs) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let exe = std::env::current_exe().context("locating the crondeck binary")?;
    let mut command = std::process::Command::new(exe);
    if let Some(url) = &global.database_url {
        command.arg("--database-url").arg(url);
    }
    if let Some(dir) = &global.data_dir {
        command.arg("--data-dir").arg(dir);
    }
    if let Some(config) = &global.config {
        command.arg("--config").arg(config);
    }
    command
        .args(["check", "--deliver-notifications"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    let child = command.spawn().context("starting the delivery process")?;
    // Not waited for: it outlives this process (and is reaped by init).
    drop(child);
    Ok(())
}

/// `check --deliver-notifications`: deliver the no-live-node episode's
/// outbox rows (retries included), then exit.
async fn deliver_no_live_node(settings: &Settings) -> anyhow::Result<()> {
    let Some(notifier) = check_notifier(settings) else {
        return Ok(());
    };
    let db = database::open(settings).await?;
    let attempts = notify::outbox::drain(
        &db.client,
        &notifier,
        OutboxScope::NoLiveNode,
        DELIVERY_PROCESS_LIMIT,
    )
    .await?;
    tracing::info!(attempts, "no-live-node notifications delivered");
    Ok(())
}

pub async fn notifications(db: &Database, args: &NotificationsArgs) -> anyhow::Result<()> {
    let rows = match &args.name {
        Some(name) => {
            let job = crate::db::jobs::job_get(&db.client, name, false).await?;
            notifications_for_job(&db.client, job.id, args.limit).await?
        }
        None => notification_list(&db.client, args.limit).await?,
    };
    if args.json {
        outln!("{}", text::json(&serde_json::to_string_pretty(&rows)?));
    } else {
        out!("{}", notification_table(&rows));
    }
    Ok(())
}

fn notification_table(rows: &[NotificationRow]) -> String {
    if rows.is_empty() {
        return "no notifications (configure channels in [notifications]; see the README)\n".into();
    }
    let mut out = String::new();
    for row in rows {
        out.push_str(&format!(
            "{}  {:<14}  {:<10}  {}\n",
            crate::timefmt::local(row.created_at),
            row.event,
            row.status,
            text::field(&row.message)
        ));
        for d in row.deliveries.as_array().into_iter().flatten() {
            let word = |key: &str| d[key].as_str().map(text::field).unwrap_or_default();
            let status = d["status"]
                .as_str()
                .unwrap_or(if d["ok"] == serde_json::json!(true) {
                    "delivered"
                } else {
                    "failed"
                });
            let attempts = match (d["attempts"].as_i64(), d["max_attempts"].as_i64()) {
                (Some(n), Some(max)) => format!(" (attempt {n} of {max})"),
                (Some(n), None) => format!(" ({})", text::count(n, "attempt", "attempts")),
                _ => String::new(),
            };
            let error = d["error"]
                .as_str()
                .map(|e| format!(": {}", text::field(e)))
                .unwrap_or_default();
            out.push_str(&format!(
                "    {} ({}): {status}{attempts}{error}\n",
                word("channel"),
                word("kind")
            ));
        }
    }
    out
}
