//! Opening the job database the settings point at: an external server, or the
//! embedded default (started or attached on demand, with its `crondeck`
//! database created, migrated and seeded with the demo jobs on first use).

use anyhow::Context as _;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::config::{DatabaseTarget, Settings};
use crate::db::audit::Actor;
use crate::db::connect::ConnectionSpec;
use crate::db::migrate::{migrate, MigrateReport};
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

/// Connect, migrate, and (embedded only) create and seed on first use.
pub async fn open(settings: &Settings) -> anyhow::Result<Database> {
    match &settings.database {
        DatabaseTarget::External(spec) => {
            let mut client = spec.connect().await?;
            let migrations = migrate(&mut client)
                .await
                .with_context(|| format!("migrating {}", spec.target()))?;
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
    let created = create_database_if_missing(&server, EMBEDDED_DATABASE).await?;
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
    Ok(Database {
        client,
        target: server.describe(),
        spec,
        embedded: Some(server),
        migrations,
        seeded,
    })
}

/// Create `dbname` on the embedded server; true when this call created it.
/// Two processes racing here both succeed: the loser sees "duplicate database".
async fn create_database_if_missing(server: &EmbeddedServer, dbname: &str) -> anyhow::Result<bool> {
    let admin = ConnectionSpec::from_config(server.client_config("postgres"))
        .connect()
        .await?;
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
        Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => Ok(false),
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
