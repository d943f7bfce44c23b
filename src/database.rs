//! Opening the job database the settings point at: an external server, or the
//! embedded default (started or attached on demand, with its `crondeck`
//! database created, migrated and seeded with the demo jobs on first use).

use anyhow::Context as _;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::config::{DatabaseTarget, Settings};
use crate::db::audit::Actor;
use crate::db::connect::ConnectionSpec;
use crate::db::migrate::{migrate, require_current, MigrateReport};
use crate::embedded::{EmbeddedOptions, EmbeddedServer};
use crate::{apply, jobfile};

/// Name of the database the embedded server keeps the jobs in.
pub const EMBEDDED_DATABASE: &str = "crondeck";

/// The demo jobs seeded into a fresh embedded database.
pub const DEMO_JOBS: &str = include_str!("../assets/demo.toml");

/// An open connection to the job database. Holding it keeps an embedded
/// server alive for this process.
pub struct Database {
    pub client: Client,
    pub spec: ConnectionSpec,
    /// What to show people: never a password.
    pub target: String,
    pub embedded: Option<EmbeddedServer>,
    pub migrations: MigrateReport,
    pub seeded: bool,
}

/// Connect, and (embedded only) create, migrate and seed on first use. An
/// external database is never changed here: its schema must already be the
/// one this binary knows (`crondeck migrate` upgrades it; see `open_to_migrate`).
pub async fn open(settings: &Settings) -> anyhow::Result<Database> {
    open_with(settings, false).await
}

/// Like `open`, but an external database is migrated: `crondeck migrate`.
pub async fn open_to_migrate(settings: &Settings) -> anyhow::Result<Database> {
    open_with(settings, true).await
}

async fn open_with(settings: &Settings, migrate_external: bool) -> anyhow::Result<Database> {
    match &settings.database {
        DatabaseTarget::External(spec) => {
            let mut client = spec.connect().await?;
            // An Odoo database must never get crondeck's schema by accident.
            if crate::odoo::is_odoo_database(&client)
                .await
                .with_context(|| format!("inspecting {}", spec.target()))?
            {
                return Err(crate::ops::OpsError::Invalid(format!(
                    "{} is an Odoo database (it has ir_cron): crondeck does not create its \
                     schema there nor run its jobs commands on it; to see and control Odoo's \
                     scheduled actions use `crondeck --odoo URL …` (or odoo_url in the config file)",
                    spec.target()
                ))
                .into());
            }
            let migrations = if migrate_external {
                migrate(&mut client)
                    .await
                    .with_context(|| format!("migrating {}", spec.target()))?
            } else {
                let current = require_current(&client)
                    .await
                    .with_context(|| format!("checking the schema of {}", spec.target()))?;
                MigrateReport {
                    applied: Vec::new(),
                    current,
                }
            };
            Ok(Database {
                client,
                target: spec.target(),
                spec: spec.clone(),
                embedded: None,
                migrations,
                seeded: false,
            })
        }
        DatabaseTarget::Embedded { data_dir } => {
            let opts = EmbeddedOptions {
                data_dir: data_dir.clone(),
                ephemeral: false,
            };
            let server = tokio::task::spawn_blocking(move || EmbeddedServer::start(&opts))
                .await
                .context("the embedded server launcher panicked")??;
            open_embedded(server).await
        }
    }
}

async fn open_embedded(server: EmbeddedServer) -> anyhow::Result<Database> {
    // First use of a data directory: create, migrate and seed as one step
    // under a lock, so a second process starting at the same moment waits
    // and then finds the database complete, never half-seeded or created twice.
    let admin = ConnectionSpec::from_config(server.client_config("postgres"))
        .connect()
        .await?;
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&FIRST_USE_LOCK_KEY])
        .await
        .context("waiting for another process setting up the embedded database")?;
    let created = create_database_if_missing(&admin, EMBEDDED_DATABASE).await?;
    let spec = ConnectionSpec::from_config(server.client_config(EMBEDDED_DATABASE));
    let mut client = spec.connect().await?;
    let migrations = migrate(&mut client)
        .await
        .context("migrating the embedded database")?;
    let seeded = if created {
        seed_demo(&mut client, &Actor::current()).await?;
        true
    } else {
        false
    };
    // Ending the session would release the lock too; release it explicitly.
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&FIRST_USE_LOCK_KEY])
        .await?;
    Ok(Database {
        client,
        target: server.describe(),
        spec,
        embedded: Some(server),
        migrations,
        seeded,
    })
}

/// Advisory lock (in the maintenance database) around the first-use setup.
const FIRST_USE_LOCK_KEY: i64 = 0x6372_6f6e_7365_6564; // "cronseed"

/// Create `dbname`; true when this call created it. The caller holds the
/// first-use lock, so no other crondeck process races us here.
async fn create_database_if_missing(
    admin: &tokio_postgres::Client,
    dbname: &str,
) -> anyhow::Result<bool> {
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&dbname])
        .await?
        .is_some();
    if exists {
        return Ok(false);
    }
    // CREATE DATABASE takes no parameters; the name is a fixed identifier.
    match admin
        .batch_execute(&format!("CREATE DATABASE \"{dbname}\""))
        .await
    {
        Ok(()) => Ok(true),
        // Someone outside crondeck created it meanwhile: it exists.
        Err(e)
            if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
        {
            Ok(false)
        }
        Err(e) => Err(e).context("creating the embedded job database"),
    }
}

/// Seed the demo jobs through the same path as any other jobs file (`apply`,
/// managed by "demo", the file's `source`). All or nothing: a half-seeded
/// database would never be seeded again.
pub async fn seed_demo(client: &mut Client, actor: &Actor) -> anyhow::Result<usize> {
    let path = std::path::Path::new("assets/demo.toml");
    let file = jobfile::parse_file(DEMO_JOBS, path)?;
    let identity = apply::identity(&file, path);
    apply::apply(
        client,
        actor,
        &file,
        path,
        &identity,
        apply::ApplyOptions::default(),
    )
    .await
    .context("seeding the demo jobs")?;
    Ok(file.jobs.len())
}
