//! Schema migrations: numbered SQL files embedded in the binary.
//!
//! Every migration runs in its own transaction, under a session-level advisory
//! lock, so two processes starting at once apply each migration exactly once:
//! the second waits for the lock, then finds nothing left to do. Applied
//! versions are recorded in `crondeck.schema_migrations` with a SHA-256 of their
//! text; an applied migration whose text changed, or a database that has
//! migrations this binary does not know, is refused instead of guessed at.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// All migrations, in order. Append only: never edit or renumber a released one.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("migrations/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "operations",
        sql: include_str!("migrations/0002_operations.sql"),
    },
    Migration {
        version: 3,
        name: "roles",
        sql: include_str!("migrations/0003_roles.sql"),
    },
    Migration {
        version: 4,
        name: "hardening",
        sql: include_str!("migrations/0004_hardening.sql"),
    },
    Migration {
        version: 5,
        name: "sql_job_roles",
        sql: include_str!("migrations/0005_sql_job_roles.sql"),
    },
    Migration {
        version: 6,
        name: "cancel",
        sql: include_str!("migrations/0006_cancel.sql"),
    },
    Migration {
        version: 7,
        name: "shell_allow_dirs",
        sql: include_str!("migrations/0007_shell_allow_dirs.sql"),
    },
    Migration {
        version: 8,
        name: "live_runs",
        sql: include_str!("migrations/0008_live_runs.sql"),
    },
    Migration {
        version: 9,
        name: "outbox",
        sql: include_str!("migrations/0009_outbox.sql"),
    },
    Migration {
        version: 10,
        name: "change_tracking",
        sql: include_str!("migrations/0010_change_tracking.sql"),
    },
    Migration {
        version: 11,
        name: "fresh_streak",
        sql: include_str!("migrations/0011_fresh_streak.sql"),
    },
    Migration {
        version: 12,
        name: "job_wrappers",
        sql: include_str!("migrations/0012_job_wrappers.sql"),
    },
];

/// Arbitrary but fixed key for `pg_advisory_lock`; "crondeck" in ASCII.
const MIGRATION_LOCK_KEY: i64 = 0x6372_6f6e_6465_636b;

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the job database has schema version {found}, newer than this crondeck understands \
         (up to {known}); upgrade crondeck, or point it at another database"
    )]
    SchemaTooNew { found: i32, known: i32 },
    #[error(
        "migration {version} ({name}) was applied with different contents (checksum {applied} \
         in the database, {embedded} in this binary); refusing to continue"
    )]
    ChecksumMismatch {
        version: i32,
        name: String,
        applied: String,
        embedded: String,
    },
    #[error(
        "the job database has schema version {found}, older than this crondeck's {known}: \
         run `crondeck migrate` (as a role that may change the schema) to upgrade it; \
         nodes of the older version keep running meanwhile (see the README, \"Upgrades\")"
    )]
    SchemaBehind { found: i32, known: i32 },
    #[error("migration {version} ({name}) failed: {source}")]
    Failed {
        version: i32,
        name: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("could not prepare the migrations table: {0}")]
    Bookkeeping(#[from] tokio_postgres::Error),
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub applied: Vec<i32>,
    pub current: i32,
}

pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Apply every pending migration. Safe to call from many processes at once.
/// When the schema is already current, it only reads: a role that may not
/// create anything (a viewer) can still start.
pub async fn migrate(client: &mut Client) -> Result<MigrateReport, MigrateError> {
    if let Some(current) = current_if_up_to_date(client).await? {
        return Ok(MigrateReport {
            applied: Vec::new(),
            current,
        });
    }
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await?;
    let result = migrate_locked(client).await;
    // Unlock even when a migration failed; if the connection itself broke, the
    // server releases the session lock when the session ends.
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let report = result?;
    unlock?;
    Ok(report)
}

/// Check that the schema is exactly what this binary knows, changing
/// nothing: what every command does with an external database, so that a
/// newer binary run against production (`list --read-only` from a laptop)
/// never upgrades it under older nodes. Upgrading is `crondeck migrate`.
pub async fn require_current(client: &Client) -> Result<i32, MigrateError> {
    if let Some(current) = current_if_up_to_date(client).await? {
        return Ok(current);
    }
    let found = if schema_table_exists(client).await? {
        let rows = client
            .query(
                "SELECT version, name, checksum FROM crondeck.schema_migrations ORDER BY version",
                &[],
            )
            .await?;
        check_applied(&rows)?
    } else {
        0
    };
    Err(MigrateError::SchemaBehind {
        found,
        known: latest_version(),
    })
}

async fn schema_table_exists(client: &Client) -> Result<bool, MigrateError> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_tables
             WHERE schemaname = 'crondeck' AND tablename = 'schema_migrations'",
            &[],
        )
        .await?
        .is_some())
}

/// `Some(version)` when every embedded migration is applied, unaltered.
async fn current_if_up_to_date(client: &Client) -> Result<Option<i32>, MigrateError> {
    if !schema_table_exists(client).await? {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT version, name, checksum FROM crondeck.schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let current = check_applied(&rows)?;
    Ok((current == latest_version()).then_some(current))
}

/// Check the applied migrations against the embedded ones; the newest version.
fn check_applied(rows: &[tokio_postgres::Row]) -> Result<i32, MigrateError> {
    let known = latest_version();
    let mut current = 0;
    for row in rows {
        let version: i32 = row.get(0);
        let name: String = row.get(1);
        let applied: String = row.get(2);
        let Some(migration) = MIGRATIONS.iter().find(|m| m.version == version) else {
            return Err(MigrateError::SchemaTooNew {
                found: version,
                known,
            });
        };
        let embedded = checksum(migration.sql);
        if embedded != applied {
            return Err(MigrateError::ChecksumMismatch {
                version,
                name,
                applied,
                embedded,
            });
        }
        current = current.max(version);
    }
    Ok(current)
}

async fn migrate_locked(client: &mut Client) -> Result<MigrateReport, MigrateError> {
    client
        .batch_execute(
            "SET client_min_messages = warning;
             CREATE SCHEMA IF NOT EXISTS crondeck;
             CREATE TABLE IF NOT EXISTS crondeck.schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 checksum   text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await?;
    let rows = client
        .query(
            "SELECT version, name, checksum FROM crondeck.schema_migrations ORDER BY version",
            &[],
        )
        .await?;
    let mut current = check_applied(&rows)?;

    let mut applied = Vec::new();
    let pending: Vec<&Migration> = MIGRATIONS.iter().filter(|m| m.version > current).collect();
    for migration in pending {
        let failed = |source| MigrateError::Failed {
            version: migration.version,
            name: migration.name,
            source,
        };
        let tx = client.transaction().await.map_err(failed)?;
        tx.batch_execute(migration.sql).await.map_err(failed)?;
        tx.execute(
            "INSERT INTO crondeck.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[
                &migration.version,
                &migration.name,
                &checksum(migration.sql),
            ],
        )
        .await
        .map_err(failed)?;
        tx.commit().await.map_err(failed)?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        applied.push(migration.version);
        current = migration.version;
    }
    // A database with its own roles: later migrations grant to the
    // crondeck_* roles; move those grants to this database's roles.
    if !applied.is_empty() {
        let prefix = client
            .query_opt(
                "SELECT value FROM crondeck.settings
                 WHERE key = 'role_prefix' AND value <> 'crondeck'",
                &[],
            )
            .await?
            .map(|row| row.try_get::<_, String>(0))
            .transpose()?;
        if let Some(prefix) = prefix {
            use_role_prefix(client, &prefix).await?;
        }
    }
    client.batch_execute("RESET client_min_messages").await?;
    Ok(MigrateReport { applied, current })
}

/// Give this database its own roles (`PREFIX_viewer` … `PREFIX_trigger`) and
/// move every privilege it grants the shared `crondeck_*` roles (or the
/// previous prefix's) to them. Needs the schema owner, with CREATEROLE.
pub async fn use_role_prefix(client: &Client, prefix: &str) -> Result<(), tokio_postgres::Error> {
    client
        .execute("SELECT crondeck.use_role_prefix($1)", &[&prefix])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, index + 1, "{}", migration.name);
        }
    }

    #[test]
    fn checksum_is_stable_hex_sha256() {
        assert_eq!(
            checksum(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
