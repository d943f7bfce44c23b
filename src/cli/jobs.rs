//! Job commands: list, show, add, set, pause, resume, remove, audit.

use clap::Args;

use super::output;
use crate::database::Database;
use crate::db::audit::{audit_list, Actor};
use crate::db::jobs::{job_get_or_unreadable, job_stream};
use crate::db::runs::run_get;
use crate::job::{ActionKind, Catchup, JobSpec};
use crate::ops::{self, db_now, AddOptions, JobChanges, OpsError};
use crate::schedule::Schedule;
use crate::text::{self, errln, out, outln};
use crate::timespec;

#[derive(Debug, Args, Default)]
pub struct ListArgs {
    /// Print JSON (an array of job objects; see the README for the fields)
    #[arg(long)]
    pub json: bool,
    /// Only jobs with this tag
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub name: String,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NameArg {
    pub name: String,
}

#[derive(Debug, Args)]
#[command(group = super::schedule_group(true))]
#[command(group = clap::ArgGroup::new("action").args(["sql", "shell"]).required(true))]
pub struct AddArgs {
    /// Unique job name
    pub name: String,
    /// Run every interval: 90s, 15m, "1h 30m", "2 weeks", "1 month"
    #[arg(long, value_name = "INTERVAL")]
    pub every: Option<String>,
    /// Run on a cron expression, e.g. "0 9 * * MON", optionally ending with
    /// its zone: "0 9 * * MON Europe/Paris" (or see --tz)
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// IANA time zone of --cron, e.g. Europe/Paris [default: UTC]
    #[arg(long, value_name = "ZONE", requires = "cron")]
    pub tz: Option<String>,
    /// Run only when triggered (run now, or crondeck.trigger('name'))
    #[arg(long)]
    pub manual: bool,
    /// SQL statements to run in the job database
    #[arg(long, value_name = "SQL")]
    pub sql: Option<String>,
    /// Command to run with `sh -c` (only on nodes that allow shell jobs)
    #[arg(long, value_name = "COMMAND")]
    pub shell: Option<String>,
    /// 0 is most urgent
    #[arg(long, default_value_t = crate::job::DEFAULT_PRIORITY, allow_negative_numbers = true)]
    pub priority: i32,
    /// Per-run timeout, e.g. 5m, 1h, or "none"
    #[arg(long, value_name = "DURATION", default_value = "5m")]
    pub timeout: String,
    /// Runs left: -1 unlimited; reaching 0 makes the job done
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub numbercall: i32,
    /// Label for filtering; repeat for several
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    #[arg(long, default_value = "")]
    pub description: String,
    /// Database role the SQL runs as (default crondeck_job); you must be a member of it
    #[arg(long, value_name = "ROLE")]
    pub run_as: Option<String>,
    /// Missed ticks: coalesce into one run, or skip them
    #[arg(long, value_name = "POLICY", default_value = "coalesce")]
    pub catchup: String,
    /// First run: "now", "+15m" or a local time "2026-12-01 08:00"
    #[arg(long, value_name = "WHEN")]
    pub next: Option<String>,
    /// Create the job paused
    #[arg(long)]
    pub paused: bool,
    /// Reason recorded with --paused
    #[arg(long, requires = "paused")]
    pub reason: Option<String>,
    #[command(flatten)]
    pub failure: FailureArgs,
}

#[derive(Debug, Args)]
#[command(group = super::schedule_group(false))]
pub struct SetArgs {
    pub name: String,
    /// New interval: 90s, 15m, "1h 30m", "2 weeks", "1 month"
    #[arg(long, value_name = "INTERVAL")]
    pub every: Option<String>,
    /// New cron expression, optionally ending with its zone (or see --tz)
    #[arg(long, value_name = "EXPR")]
    pub cron: Option<String>,
    /// IANA time zone of --cron [default: UTC]
    #[arg(long, value_name = "ZONE", requires = "cron")]
    pub tz: Option<String>,
    /// Make the job manual (runs only when triggered)
    #[arg(long)]
    pub manual: bool,
    /// Next run: "now", "+15m", or a local time "2026-12-01 08:00"
    #[arg(long, value_name = "WHEN")]
    pub next: Option<String>,
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Per-run timeout, e.g. 5m, or "none"
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    #[command(flatten)]
    pub failure: FailureArgs,
}

/// The failure policy flags `add` and `set` share (also settable in a jobs
/// file: failure_threshold, failure_min_age, retries, retry_backoff).
#[derive(Debug, Args, Default)]
pub struct FailureArgs {
    /// Consecutive failures that auto-pause the job; 0 never auto-pauses [default: 5]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub failure_threshold: Option<i32>,
    /// The failure streak's first failure must be this old before auto-pause,
    /// e.g. 24h, or 0s for at once [default: 24h]
    #[arg(long, value_name = "DURATION")]
    pub failure_min_age: Option<String>,
    /// Retries of a failed tick; 0 disables retries [default: 0]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub retries: Option<i32>,
    /// First retry delay, doubled on each further retry [default: 1m]
    #[arg(long, value_name = "DURATION")]
    pub retry_backoff: Option<String>,
}

impl FailureArgs {
    fn changes(&self) -> anyhow::Result<ops::FailureChanges> {
        let duration = |flag: &str, text: &str| {
            crate::jobfile::parse_duration_or_zero(text)
                .map_err(|e| OpsError::Invalid(format!("--{flag}: {e}")))
        };
        Ok(ops::FailureChanges {
            threshold: self.failure_threshold,
            min_age: self
                .failure_min_age
                .as_deref()
                .map(|t| duration("failure-min-age", t))
                .transpose()?,
            retries: self.retries,
            retry_backoff: self
                .retry_backoff
                .as_deref()
                .map(|t| duration("retry-backoff", t))
                .transpose()?,
        })
    }
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    pub name: String,
    /// Why (shown in the console and the audit trail)
    #[arg(long)]
    pub reason: Option<String>,
    /// Resume automatically after this long, e.g. 2h
    #[arg(long = "for", value_name = "DURATION")]
    pub for_: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only this job's actions
    pub name: Option<String>,
    /// How many records, newest first (1 or more)
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
    pub limit: i64,
    #[arg(long)]
    pub json: bool,
}

/// Build a schedule from --every / --cron --tz / --manual.
fn schedule_from(
    every: Option<&str>,
    cron: Option<&str>,
    tz: Option<&str>,
    manual: bool,
) -> anyhow::Result<Option<Schedule>> {
    if tz.is_some() && cron.is_none() {
        return Err(OpsError::Invalid(
            "--tz applies to --cron only: an interval (--every) is exact UTC time and a manual job has no schedule; \
             to change a cron job's zone, give its expression again with --cron"
                .into(),
        )
        .into());
    }
    Ok(match (every, cron, manual) {
        (Some(every), None, false) => {
            let schedule = Schedule::parse(every)?;
            if !matches!(schedule, Schedule::Every(_)) {
                return Err(OpsError::Invalid(format!(
                    "--every takes an interval like 15m or \"1h 30m\", got \"{every}\" (use --cron for cron expressions, --manual for manual jobs)"
                ))
                .into());
            }
            Some(schedule)
        }
        (None, Some(expr), false) => Some(Schedule::cron_with_zone(expr, tz)?),
        (None, None, true) => Some(Schedule::Manual),
        _ => None,
    })
}

pub async fn list(db: &Database, args: &ListArgs) -> anyhow::Result<()> {
    use futures_util::TryStreamExt as _;
    use std::io::Write as _;

    // Written as the rows arrive (issue 15): at 100,000 jobs, holding them
    // all cost hundreds of megabytes.
    let now = db_now(&db.client).await?;
    let jobs = job_stream(&db.client, args.tag.as_deref()).await?;
    futures_util::pin_mut!(jobs);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let mut first = true;
        while let Some(job) = jobs.try_next().await? {
            let element = serde_json::to_string_pretty(&job.to_json(now))?;
            // As `to_string_pretty` of the whole array would lay it out.
            let indented = element.replace('\n', "\n  ");
            let sep = if first { "[\n  " } else { ",\n  " };
            write!(stdout, "{sep}{}", text::json(&indented))?;
            first = false;
        }
        writeln!(stdout, "{}", if first { "[]" } else { "\n]" })?;
        stdout.flush()?;
    } else {
        let mut table = output::JobTableWriter::new(now);
        while let Some(job) = jobs.try_next().await? {
            let chunk = table.push(&job);
            if !chunk.is_empty() {
                write!(stdout, "{}", text::block(&chunk))?;
            }
        }
        write!(stdout, "{}", text::block(&table.finish()))?;
        stdout.flush()?;
        drop(stdout);
        no_live_node_banner(db).await;
    }
    Ok(())
}

/// The human `list` says so when nothing executes the jobs it shows, as
/// `check` does. A role that may not read the nodes gets no banner (and no
/// error: the list itself was readable).
async fn no_live_node_banner(db: &Database) {
    match crate::db::nodes::node_list_live(&db.client).await {
        Ok(nodes) if nodes.is_empty() => errln!(
            "no live scheduler node: nothing is executing; start one with `crondeck scheduler`"
        ),
        Ok(_) => {}
        Err(e) => tracing::debug!("could not read the live nodes for list: {e}"),
    }
}

pub async fn show(db: &Database, args: &ShowArgs) -> anyhow::Result<()> {
    let job = job_get_or_unreadable(&db.client, &args.name, false).await?;
    let now = db_now(&db.client).await?;
    let upcoming = job
        .nextcall
        .map(|n| job.spec.schedule.upcoming(n, 5))
        .unwrap_or_default();
    let audit = audit_list(&db.client, Some(&job.spec.name), 5).await?;
    // A running run with its output and progress so far.
    let running = match job.runtime.running_run_id {
        Some(id) => run_get(&db.client, id)
            .await?
            .filter(|r| r.status == "running"),
        None => None,
    };
    if args.json {
        let json = serde_json::json!({
            "job": job.to_json(now),
            "upcoming": upcoming,
            "audit": audit,
            "running": running,
        });
        outln!("{}", text::json(&serde_json::to_string_pretty(&json)?));
    } else {
        out!("{}", output::job_detail(&job, &upcoming, &audit, now));
        if let Some(run) = &running {
            outln!("\nrunning now:");
            out!("{}", output::run_detail(run));
        }
    }
    Ok(())
}

pub async fn add(db: &mut Database, args: &AddArgs) -> anyhow::Result<()> {
    let schedule = schedule_from(
        args.every.as_deref(),
        args.cron.as_deref(),
        args.tz.as_deref(),
        args.manual,
    )?
    .ok_or_else(|| OpsError::Invalid("give one of --every, --cron or --manual".into()))?;
    let (action, command) = match (&args.sql, &args.shell) {
        (Some(sql), None) => (ActionKind::Sql, sql.as_str()),
        (None, Some(shell)) => (ActionKind::Shell, shell.as_str()),
        _ => return Err(OpsError::Invalid("give one of --sql or --shell".into()).into()),
    };
    let mut spec = JobSpec::new(&args.name, schedule, action, command);
    spec.description = args.description.clone();
    spec.priority = args.priority;
    spec.numbercall = args.numbercall;
    spec.timeout = timespec::parse_timeout(&args.timeout)?;
    spec.tags = args.tags.clone();
    spec.run_as = args.run_as.clone();
    spec.catchup = args.catchup.parse::<Catchup>().map_err(OpsError::Invalid)?;
    spec.failure = args.failure.changes()?.applied_to(&spec.failure);
    let opts = AddOptions {
        next: args.next.clone(),
        paused: args.paused.then(|| args.reason.clone()),
        managed_by: None,
    };
    let job = ops::add(&mut db.client, &Actor::current(), &spec, &opts).await?;
    outln!(
        "added job \"{}\": {}; next run {}",
        text::field(&job.spec.name),
        job.spec.schedule.describe(),
        output::next_run(&job)
    );
    Ok(())
}

pub async fn set(db: &mut Database, args: &SetArgs) -> anyhow::Result<()> {
    let changes = JobChanges {
        schedule: schedule_from(
            args.every.as_deref(),
            args.cron.as_deref(),
            args.tz.as_deref(),
            args.manual,
        )?,
        next: args.next.clone(),
        priority: args.priority,
        timeout: args
            .timeout
            .as_deref()
            .map(timespec::parse_timeout)
            .transpose()?,
        failure: args.failure.changes()?,
    };
    let job = ops::set(&mut db.client, &Actor::current(), &args.name, &changes).await?;
    outln!(
        "updated job \"{}\": {}; next run {}; priority {}",
        text::field(&job.spec.name),
        job.spec.schedule.describe(),
        output::next_run(&job),
        job.spec.priority
    );
    Ok(())
}

pub async fn pause(db: &mut Database, args: &PauseArgs) -> anyhow::Result<()> {
    let duration = args
        .for_
        .as_deref()
        .map(timespec::parse_duration)
        .transpose()?;
    let job = ops::pause(
        &mut db.client,
        &Actor::current(),
        &args.name,
        args.reason.as_deref(),
        duration,
    )
    .await?;
    let until = job
        .pause
        .as_ref()
        .and_then(|p| p.until)
        .map(|u| format!(" until {}", crate::timefmt::local(u)))
        .unwrap_or_default();
    outln!("paused job \"{}\"{until}", text::field(&job.spec.name));
    Ok(())
}

pub async fn resume(db: &mut Database, args: &NameArg) -> anyhow::Result<()> {
    let (job, changed) = ops::resume(&mut db.client, &Actor::current(), &args.name).await?;
    if changed {
        outln!(
            "resumed job \"{}\"; next run {}",
            text::field(&job.spec.name),
            output::next_run(&job)
        );
    } else {
        outln!(
            "job \"{}\" is not paused; nothing changed",
            text::field(&job.spec.name)
        );
    }
    Ok(())
}

pub async fn remove(db: &mut Database, args: &NameArg) -> anyhow::Result<()> {
    let job = ops::remove(&mut db.client, &Actor::current(), &args.name).await?;
    outln!("removed job \"{}\"", text::field(&job.spec.name));
    Ok(())
}

pub async fn audit(db: &Database, args: &AuditArgs) -> anyhow::Result<()> {
    let records = audit_list(&db.client, args.name.as_deref(), args.limit).await?;
    if args.json {
        outln!("{}", text::json(&serde_json::to_string_pretty(&records)?));
    } else {
        out!("{}", output::audit_table(&records));
    }
    Ok(())
}
