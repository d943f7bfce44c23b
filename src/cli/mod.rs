//! The command line: argument definitions (clap) and one file per command
//! group. Arguments become validated domain values here, at the edge.

mod jobs;
pub mod odoo;
mod operations;
pub(crate) mod output;
mod runs;

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::config::{self, GlobalArgs};
use crate::database;
use crate::text::{errln, outln};

/// PostgreSQL-backed cron scheduler with a terminal operations console.
///
/// With no subcommand, opens the operations console (press ? for its keys).
/// With no database configured, uses a private embedded PostgreSQL server
/// seeded with demo jobs.
#[derive(Debug, Parser)]
#[command(
    name = "crondeck",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    /// Console only: do not run a scheduler node inside the console (jobs
    /// then run only on other nodes)
    #[arg(long, conflicts_with = "scheduler")]
    pub no_scheduler: bool,
    /// Console only: run a scheduler node inside the console even on an
    /// external database or with --read-only (by default only the embedded
    /// database's console runs one)
    #[arg(long)]
    pub scheduler: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options every command accepts, before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalOpts {
    /// Job database: a libpq URL (postgres://user@host/db?sslmode=verify-full)
    /// or key=value string. Overrides DATABASE_URL and the config file.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Data directory of the embedded server [env: CRONDECK_DATA_DIR]
    /// [default: $XDG_DATA_HOME/crondeck]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file [default: $XDG_CONFIG_HOME/crondeck/config.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Refuse every change (console and commands)
    #[arg(long, global = true)]
    pub read_only: bool,
    /// Odoo mode: an Odoo database (libpq URL) whose scheduled actions
    /// (ir_cron) the console and list/show/run/pause/resume/set/check/history
    /// work on [config: odoo_url]
    #[arg(long, global = true, value_name = "URL")]
    pub odoo: Option<String>,
    /// Odoo mode: the Odoo login recorded as write_uid of edits
    /// [config: odoo_login] [default: the superuser, id 1]
    #[arg(long, global = true, value_name = "LOGIN")]
    pub odoo_login: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List jobs
    List(jobs::ListArgs),
    /// Show one job: definition, state, next fire times, recent audit
    Show(jobs::ShowArgs),
    /// Define a new job
    Add(jobs::AddArgs),
    /// Change a job's schedule, next run, priority or timeout
    Set(jobs::SetArgs),
    /// Pause a job (it keeps its schedule; a running run finishes)
    Pause(jobs::PauseArgs),
    /// Resume a paused job
    Resume(jobs::NameArg),
    /// Remove a job and its run history (the audit trail keeps it)
    Remove(jobs::NameArg),
    /// Request a run now (any live node starts it within milliseconds)
    Run(runs::RunArgs),
    /// Stop a job's run in progress, on whatever node runs it (audited)
    Cancel(runs::CancelArgs),
    /// Show a job's run history
    History(runs::HistoryArgs),
    /// Run a headless scheduler node (for systemd); stops gracefully on SIGTERM/SIGINT/SIGHUP
    Scheduler(runs::SchedulerArgs),
    /// Show the audit trail of operator actions
    Audit(jobs::AuditArgs),
    /// Apply schema migrations to the job database (the embedded one is migrated at every start)
    Migrate(MigrateArgs),
    /// Make the jobs match a TOML jobs file (create, update, --prune); one transaction
    Apply(operations::ApplyArgs),
    /// Write the jobs out as a jobs file (TOML, or --json); `apply` of it changes nothing
    Export(operations::ExportArgs),
    /// One-line health for monitoring: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
    Check(operations::CheckArgs),
    /// Show the notifications sent (all, or one job's)
    Notifications(operations::NotificationsArgs),
}

/// Exit codes, documented in the README.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// An unexpected failure.
    pub const FAILURE: u8 = 1;
    /// The command line itself is wrong (clap).
    pub const USAGE: u8 = 2;
    /// Input refused: bad schedule, time, priority, duplicate name, read-only mode.
    pub const REFUSED: u8 = 3;
    /// No such job.
    pub const NOT_FOUND: u8 = 4;
    /// The job database cannot be reached or started.
    pub const UNAVAILABLE: u8 = 5;
    /// `run --wait`: the run ended without succeeding.
    pub const RUN_FAILED: u8 = super::runs::RUN_FAILED;
    /// `run --wait` / `cancel --wait`: `--wait-timeout` expired first (the
    /// run goes on; this says nothing about how it ends).
    pub const WAIT_TIMED_OUT: u8 = super::runs::WAIT_TIMED_OUT;
}

/// Keep argument groups in one place so `add` and `set` agree.
fn schedule_group(required: bool) -> ArgGroup {
    ArgGroup::new("schedule")
        .args(["every", "cron", "manual"])
        .required(required)
        .multiple(false)
}

/// `crondeck migrate`.
#[derive(Debug, Default, clap::Args)]
pub struct MigrateArgs {
    /// Give this database its own roles, PREFIX_viewer … PREFIX_trigger,
    /// instead of the cluster-wide crondeck_* ones (moves every grant)
    #[arg(long, value_name = "PREFIX")]
    pub role_prefix: Option<String>,
}

/// Run a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let args = GlobalArgs {
        database_url: cli.global.database_url.clone(),
        data_dir: cli.global.data_dir.clone(),
        config: cli.global.config.clone(),
        read_only: cli.global.read_only,
    };
    let env = |key: &str| std::env::var(key).ok();
    let settings = config::resolve(&args, &env, || Ok(crate::embedded::default_data_dir()?))?;
    // Odoo mode (issue 13): its own commands, never crondeck's schema.
    if let Some(target) = odoo::target(
        cli.global.odoo.as_deref(),
        cli.global.odoo_login.as_deref(),
        &settings,
    )? {
        return odoo::run(cli.command, &settings, target).await;
    }
    let Some(command) = cli.command else {
        let choice = NodeChoice::from_flags(cli.scheduler, cli.no_scheduler);
        return console(&settings, choice).await;
    };
    if command.mutates() && settings.read_only {
        return Err(crate::ops::OpsError::Invalid(
            "read-only mode: this command would change the job database".into(),
        )
        .into());
    }
    // `check` opens the database itself: not reaching it is UNKNOWN (3).
    if let Command::Check(a) = &command {
        return operations::check(&settings, a, &args).await;
    }
    let mut db = if matches!(command, Command::Migrate(_)) {
        database::open_to_migrate(&settings).await?
    } else {
        database::open(&settings).await?
    };
    if db.seeded {
        errln!(
            "crondeck: new embedded database at {}; seeded the demo jobs",
            db.target
        );
    }
    match command {
        Command::List(a) => jobs::list(&db, &a).await,
        Command::Show(a) => jobs::show(&db, &a).await,
        Command::Add(a) => jobs::add(&mut db, &a).await,
        Command::Set(a) => jobs::set(&mut db, &a).await,
        Command::Pause(a) => jobs::pause(&mut db, &a).await,
        Command::Resume(a) => jobs::resume(&mut db, &a).await,
        Command::Remove(a) => jobs::remove(&mut db, &a).await,
        Command::Audit(a) => jobs::audit(&db, &a).await,
        Command::Run(a) => runs::run(&mut db, &a).await,
        Command::Cancel(a) => runs::cancel(&mut db, &a).await,
        Command::History(a) => runs::history(&db, &a).await,
        Command::Scheduler(a) => runs::scheduler(db, &settings, &a).await,
        Command::Apply(a) => operations::apply(&mut db, &a).await,
        Command::Export(a) => operations::export(&db, &a).await,
        Command::Notifications(a) => operations::notifications(&db, &a).await,
        Command::Check(_) => Ok(()), // handled above
        Command::Migrate(a) => {
            let report = &db.migrations;
            if report.applied.is_empty() {
                outln!("schema is up to date (version {})", report.current);
            } else {
                let applied: Vec<String> = report.applied.iter().map(i32::to_string).collect();
                outln!(
                    "applied migrations {}; schema version {}",
                    applied.join(", "),
                    report.current
                );
            }
            if let Some(prefix) = &a.role_prefix {
                crate::db::migrate::use_role_prefix(&db.client, prefix)
                    .await
                    .map_err(|e| match e.code() {
                        Some(&tokio_postgres::error::SqlState::INVALID_PARAMETER_VALUE) => {
                            anyhow::Error::new(crate::ops::OpsError::Invalid(
                                e.as_db_error()
                                    .map_or_else(|| e.to_string(), |d| d.message().to_string()),
                            ))
                        }
                        _ => anyhow::Error::new(crate::db::DbError::from(e))
                            .context("could not switch this database to its own roles"),
                    })?;
                println!(
                    "this database's roles: {prefix}_viewer, {prefix}_operator, {prefix}_admin, \
                     {prefix}_scheduler, {prefix}_trigger"
                );
            }
            Ok(())
        }
    }
}

/// Whether the console runs a scheduler node, as the flags asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeChoice {
    /// `--scheduler`: always.
    Always,
    /// `--no-scheduler`: never.
    Never,
    /// Neither flag: see [`NodeChoice::runs_node`].
    Default,
}

impl NodeChoice {
    pub fn from_flags(scheduler: bool, no_scheduler: bool) -> NodeChoice {
        match (scheduler, no_scheduler) {
            (true, _) => NodeChoice::Always,
            (false, true) => NodeChoice::Never,
            (false, false) => NodeChoice::Default,
        }
    }

    /// A console looking at a shared (external) database, or one that may
    /// change nothing, is a look, not a scheduler: it joins as a node only
    /// with `--scheduler`. The embedded default database keeps its node (it
    /// is the only one there is).
    pub fn runs_node(self, embedded: bool, read_only: bool) -> bool {
        match self {
            NodeChoice::Always => true,
            NodeChoice::Never => false,
            NodeChoice::Default => embedded && !read_only,
        }
    }
}

/// The console: the same database and node settings as the commands, then
/// the terminal UI. The embedded node is configured like `crondeck scheduler`
/// with no flags (shell jobs only on the embedded default database).
///
/// An external database that cannot be reached does not stop the console:
/// it opens STALE and connects when the server answers (a refused login or
/// an outdated schema still stop it, with their message).
async fn console(settings: &config::Settings, choice: NodeChoice) -> anyhow::Result<()> {
    let embedded = matches!(settings.database, config::DatabaseTarget::Embedded { .. });
    let node = if choice.runs_node(embedded, settings.read_only) {
        let mut config = runs::node_config(settings, &runs::SchedulerArgs::default())?;
        // Manual runs prefer a headless node when one is live (quitting
        // the console would cut them short here).
        config.console = true;
        Some(config)
    } else {
        None
    };
    let target = match database::open(settings).await {
        Ok(db) => {
            if db.seeded {
                errln!(
                    "crondeck: new embedded database at {}; seeded the demo jobs",
                    db.target
                );
            }
            crate::tui::ConsoleDb::Open(Box::new(db))
        }
        Err(error) => match (&settings.database, unreachable(&error)) {
            (config::DatabaseTarget::External(spec), true) => {
                tracing::warn!(error = %format!("{error:#}"), "console: the database is unreachable; starting STALE");
                crate::tui::ConsoleDb::Unreachable {
                    spec: Box::new(spec.clone()),
                    error: format!("{error:#}"),
                }
            }
            _ => return Err(error),
        },
    };
    let options = crate::tui::ConsoleOptions {
        read_only: settings.read_only,
        node,
    };
    crate::tui::run(target, options).await
}

/// The server did not answer at all (no route, refused, timed out), as
/// opposed to answering "no" (authentication, schema, configuration).
fn unreachable(error: &anyhow::Error) -> bool {
    use crate::db::connect::ConnectError;
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<ConnectError>() {
            Some(ConnectError::Timeout { .. }) => true,
            // A certificate problem (it carries a hint) will not heal by waiting.
            Some(ConnectError::Connect { cause, hint, .. }) => {
                cause.as_db_error().is_none() && hint.is_none()
            }
            _ => false,
        })
}

impl Cli {
    /// Commands print their results; a headless node and the console (whose
    /// log goes to a file) log what they do.
    pub fn default_log_filter(&self) -> &'static str {
        match self.command {
            Some(Command::Scheduler(_)) | None => "info",
            _ => "warn",
        }
    }

    /// The console draws on the terminal: its log must go to a file.
    pub fn is_console(&self) -> bool {
        self.command.is_none()
    }
}

impl Command {
    fn mutates(&self) -> bool {
        matches!(
            self,
            Command::Add(_)
                | Command::Set(_)
                | Command::Pause(_)
                | Command::Resume(_)
                | Command::Remove(_)
                | Command::Run(_)
                | Command::Cancel(_)
        ) || matches!(self, Command::Apply(a) if !a.dry_run)
            || matches!(self, Command::Migrate(a) if a.role_prefix.is_some())
    }
}

/// The exit code for an error: the first cause in the chain that says.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    use crate::db::connect::ConnectError;
    use crate::db::DbError;
    use crate::embedded::EmbeddedError;
    use crate::ops::OpsError;
    for cause in error.chain() {
        if let Some(operations::CheckExit(status)) = cause.downcast_ref() {
            return status.code();
        }
        if cause.downcast_ref::<runs::RunDidNotSucceed>().is_some() {
            return exit::RUN_FAILED;
        }
        if cause.downcast_ref::<runs::WaitTimedOut>().is_some() {
            return exit::WAIT_TIMED_OUT;
        }
        if cause.downcast_ref::<crate::config::ConfigError>().is_some() {
            return exit::REFUSED;
        }
        match cause.downcast_ref::<crate::odoo::OdooError>() {
            Some(crate::odoo::OdooError::NotFound(_)) => return exit::NOT_FOUND,
            Some(
                crate::odoo::OdooError::NotOdoo { .. }
                | crate::odoo::OdooError::UnknownVersion { .. }
                | crate::odoo::OdooError::Refused(_),
            ) => return exit::REFUSED,
            _ => {}
        }
        if let Some(e) = cause.downcast_ref::<ConnectError>() {
            if matches!(e, ConnectError::Parse { .. }) {
                return exit::REFUSED;
            }
        }
        // `OpsError::Db` is transparent: the inner error is not its own link
        // in the chain, so look inside.
        let db_error = match cause.downcast_ref::<OpsError>() {
            Some(OpsError::Invalid(_)) => return exit::REFUSED,
            Some(OpsError::Db(inner)) => Some(inner),
            None => cause.downcast_ref::<DbError>(),
        };
        match db_error {
            Some(DbError::JobNotFound(_)) => return exit::NOT_FOUND,
            Some(DbError::Duplicate(_) | DbError::Refused(_) | DbError::PermissionDenied(_)) => {
                return exit::REFUSED
            }
            _ => {}
        }
        if cause.downcast_ref::<ConnectError>().is_some()
            || cause.downcast_ref::<EmbeddedError>().is_some()
            || matches!(
                cause.downcast_ref::<crate::db::migrate::MigrateError>(),
                Some(
                    crate::db::migrate::MigrateError::SchemaBehind { .. }
                        | crate::db::migrate::MigrateError::SchemaTooNew { .. }
                )
            )
        {
            return exit::UNAVAILABLE;
        }
        if cause
            .downcast_ref::<crate::schedule::ScheduleError>()
            .is_some()
            || cause
                .downcast_ref::<crate::timespec::TimeSpecError>()
                .is_some()
            || cause
                .downcast_ref::<crate::jobfile::JobFileError>()
                .is_some()
        {
            return exit::REFUSED;
        }
        if let Some(e) = cause.downcast_ref::<tokio_postgres::Error>() {
            if e.is_closed() || e.as_db_error().is_none() {
                return exit::UNAVAILABLE;
            }
        }
    }
    exit::FAILURE
}

#[cfg(test)]
mod tests {
    use super::NodeChoice;

    #[test]
    fn only_the_embedded_read_write_console_joins_by_default() {
        let default = NodeChoice::from_flags(false, false);
        assert!(
            default.runs_node(true, false),
            "embedded default keeps its node"
        );
        assert!(
            !default.runs_node(false, false),
            "external database: a look, not a node"
        );
        assert!(!default.runs_node(true, true), "read-only: no node");
        assert!(!default.runs_node(false, true));
        let asked = NodeChoice::from_flags(true, false);
        assert!(asked.runs_node(false, true) && asked.runs_node(false, false));
        let refused = NodeChoice::from_flags(false, true);
        assert!(!refused.runs_node(true, false));
    }
}
