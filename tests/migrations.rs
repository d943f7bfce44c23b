//! Migrations against a real PostgreSQL: fresh database, re-runs, concurrent
//! processes, refusal of newer or altered schemas, and the constraints the
//! database itself enforces.

mod common;

use common::{text, TestDb};
use crondeck::db::migrate::{latest_version, migrate, MigrateError};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn fresh_database_gets_every_migration_then_nothing_on_rerun() {
    let db = TestDb::empty().await;
    let mut client = db.client().await;
    let first = migrate(&mut client).await.expect("first migrate");
    assert_eq!(first.applied, (1..=latest_version()).collect::<Vec<_>>());
    assert_eq!(first.current, latest_version());
    let second = migrate(&mut client).await.expect("second migrate");
    assert!(second.applied.is_empty());
    assert_eq!(second.current, latest_version());
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'crondeck'
               AND table_name IN ('jobs', 'runs', 'run_requests', 'nodes', 'audit', 'schema_migrations')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 6);
}

#[tokio::test]
async fn two_processes_migrating_at_once_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let children: Vec<_> = (0..3)
        .map(|_| {
            db.cli()
                .arg("migrate")
                .spawn()
                .expect("spawn crondeck migrate")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(output.status.success(), "{:?}", text(&output));
    }
    let client = db.client().await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM crondeck.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, i64::from(latest_version()));
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .execute(
            "INSERT INTO crondeck.schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')",
            &[],
        )
        .await
        .unwrap();
    let err = migrate(&mut client).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::SchemaTooNew { found: 9999, .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("newer than this crondeck"),
        "{err}"
    );

    let output = db.run(&["list"]);
    assert!(!output.status.success());
    assert!(
        text(&output).1.contains("schema version 9999"),
        "{:?}",
        text(&output)
    );
}

#[tokio::test]
async fn an_altered_migration_is_refused() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .execute(
            "UPDATE crondeck.schema_migrations SET checksum = 'tampered' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let err = migrate(&mut client).await.unwrap_err();
    assert!(
        matches!(err, MigrateError::ChecksumMismatch { version: 1, .. }),
        "{err}"
    );
}

/// A job row; each field can be broken on its own.
struct Row<'a> {
    name: &'a str,
    count: i32,
    unit: &'a str,
    with_nextcall: bool,
    action: &'a str,
    numbercall: i32,
}

const VALID: Row<'static> = Row {
    name: "j",
    count: 5,
    unit: "minutes",
    with_nextcall: true,
    action: "sql",
    numbercall: -1,
};

async fn insert_job(
    client: &tokio_postgres::Client,
    row: &Row<'_>,
) -> Result<u64, tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO crondeck.jobs (name, schedule_kind, interval_count, interval_unit, nextcall,
                 action_kind, command, numbercall)
             VALUES ($1, 'every', $2, $3, CASE WHEN $4 THEN now() END, $5, 'SELECT 1', $6)",
            &[&row.name, &row.count, &row.unit, &row.with_nextcall, &row.action, &row.numbercall],
        )
        .await
}

#[tokio::test]
async fn the_database_enforces_what_must_never_be_wrong() {
    let db = TestDb::new().await;
    let client = db.client().await;
    insert_job(&client, &VALID)
        .await
        .expect("the valid base row is accepted");

    let cases = [
        (
            "zero interval",
            Row {
                name: "k",
                count: 0,
                ..VALID
            },
        ),
        (
            "negative interval",
            Row {
                name: "k",
                count: -5,
                ..VALID
            },
        ),
        (
            "unknown unit",
            Row {
                name: "k",
                unit: "fortnights",
                ..VALID
            },
        ),
        (
            "numbercall below -1",
            Row {
                name: "k",
                numbercall: -2,
                ..VALID
            },
        ),
        ("empty name", Row { name: "", ..VALID }),
        (
            "blank name",
            Row {
                name: "  ",
                ..VALID
            },
        ),
        (
            "unknown action",
            Row {
                name: "k",
                action: "perl",
                ..VALID
            },
        ),
        (
            "interval job without nextcall",
            Row {
                name: "k",
                with_nextcall: false,
                ..VALID
            },
        ),
    ];
    for (what, row) in &cases {
        let err = insert_job(&client, row).await.expect_err(what);
        assert_eq!(
            err.code(),
            Some(&SqlState::CHECK_VIOLATION),
            "{what}: {err}"
        );
    }
    let err = insert_job(&client, &VALID)
        .await
        .expect_err("duplicate name");
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));

    let job_id: i64 = client
        .query_one("SELECT id FROM crondeck.jobs WHERE name = 'j'", &[])
        .await
        .unwrap()
        .get(0);
    let err = client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status) VALUES ($1, 'schedule', now(), 'exploded')",
            &[&job_id],
        )
        .await
        .expect_err("unknown status");
    assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION));

    // One run per tick, and one running run per job, cluster-wide.
    client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, started_at)
             VALUES ($1, 'schedule', '2026-01-01T00:00:00Z', 'running', now())",
            &[&job_id],
        )
        .await
        .unwrap();
    let err = client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, reason)
             VALUES ($1, 'schedule', '2026-01-01T00:00:00Z', 'skipped', 'overlap')",
            &[&job_id],
        )
        .await
        .expect_err("second run for the same tick");
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let err = client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, started_at)
             VALUES ($1, 'manual', now(), 'running', now())",
            &[&job_id],
        )
        .await
        .expect_err("second running run");
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .execute(
            "INSERT INTO crondeck.audit (job_name, action) VALUES ('x', 'create')",
            &[],
        )
        .await
        .unwrap();
    for statement in [
        "UPDATE crondeck.audit SET action = 'forged'",
        "DELETE FROM crondeck.audit",
        "TRUNCATE crondeck.audit",
    ] {
        let err = client.execute(statement, &[]).await.expect_err(statement);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}"
        );
    }
    let count: i64 = client
        .query_one("SELECT count(*) FROM crondeck.audit", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
}

/// A crondeck role that owns crondeck's tables could disable the audit
/// triggers: schema version 4 refuses to go on until they are reassigned.
#[tokio::test]
async fn tables_owned_by_a_crondeck_role_are_refused() {
    let db = TestDb::empty().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE SCHEMA crondeck;
             CREATE TABLE crondeck.schema_migrations (
                 version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now());",
        )
        .await
        .unwrap();
    for m in &crondeck::db::migrate::MIGRATIONS[..3] {
        client.batch_execute(m.sql).await.unwrap();
        client
            .execute(
                "INSERT INTO crondeck.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &crondeck::db::migrate::checksum(m.sql)],
            )
            .await
            .unwrap();
    }
    client
        .batch_execute("ALTER TABLE crondeck.jobs OWNER TO crondeck_admin")
        .await
        .unwrap();
    let err = migrate(&mut client).await.unwrap_err();
    let MigrateError::Failed {
        version: 4, source, ..
    } = &err
    else {
        panic!("{err}");
    };
    let db_error = source.as_db_error().expect("a database error");
    assert_eq!(db_error.code(), &SqlState::INSUFFICIENT_PRIVILEGE);
    assert!(db_error.message().contains("crondeck_admin"), "{db_error}");
    // Reassigned to the database owner, the migration goes through.
    client
        .batch_execute("ALTER TABLE crondeck.jobs OWNER TO CURRENT_USER")
        .await
        .unwrap();
    let report = migrate(&mut client).await.unwrap();
    assert_eq!(report.applied, [4]);
}
