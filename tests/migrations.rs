//! Migrations against a real PostgreSQL: fresh database, re-runs, concurrent
//! processes, refusal of newer or altered schemas, and the constraints the
//! database itself enforces.

mod common;

use common::{text, TestDb};
use crondeck::db::migrate::{latest_version, migrate, MigrateError, MIGRATIONS};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn fresh_database_gets_every_migration_then_nothing_on_rerun() {
    let db = TestDb::empty().await;
    let mut client = db.client().await;
    let first = migrate(&mut client).await.expect("first migrate");
    // Every embedded version (numbers are assigned per branch, so not always contiguous).
    assert_eq!(
        first.applied,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
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
    assert_eq!(rows, i64::try_from(MIGRATIONS.len()).unwrap());
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

/// Regression: every command migrated whatever external database it was
/// pointed at, so `list --read-only` from a newer binary on a laptop upgraded
/// production under older nodes. Only `crondeck migrate` changes the schema
/// of an external database; the others refuse and say so.
#[tokio::test]
async fn commands_other_than_migrate_never_change_an_external_schema() {
    let db = TestDb::empty().await;
    for args in [&["list"][..], &["--read-only", "list"], &["show", "x"]] {
        let output = db.run(args);
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(5), "{args:?}: {stderr}");
        assert!(stderr.contains("run `crondeck migrate`"), "{stderr}");
    }
    let client = db.client().await;
    let schemas: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'crondeck'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        schemas, 0,
        "a command other than migrate created the schema"
    );

    let output = db.run(&["migrate"]);
    assert!(output.status.success(), "{:?}", text(&output));
    let output = db.run(&["list"]);
    assert!(output.status.success(), "{:?}", text(&output));
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
    assert_eq!(report.applied.first(), Some(&4), "{:?}", report.applied);
}

/// Whatever the Rust parser accepts, the database accepts; and what the
/// database accepts, the binary can read (zones and intervals exactly; cron
/// expressions by grammar, the rest is the readers' job).
#[tokio::test]
async fn the_database_and_the_schedule_parser_agree() {
    use crondeck::schedule::{Schedule, Unit};
    let db = TestDb::new().await;
    let client = db.client().await;
    // Intervals: around every unit's bound, both ways.
    let bounds = [
        (Unit::Seconds, 2_147_483_647_i64),
        (Unit::Minutes, 35_791_394),
        (Unit::Hours, 596_523),
        (Unit::Days, 24_855),
        (Unit::Weeks, 3_550),
        (Unit::Months, 1_200),
    ];
    for (unit, max) in bounds {
        for count in [-1, 0, 1, 2, max - 1, max, max + 1, i64::from(i32::MAX)] {
            let Ok(count) = i32::try_from(count) else {
                continue;
            };
            let rust =
                Schedule::from_parts("every", Some(count), Some(unit.as_str()), None, None).is_ok();
            let sql: bool = common::scalar(
                &client,
                "SELECT crondeck.interval_ok($1, $2)",
                &[&count, &unit.as_str()],
            )
            .await;
            assert_eq!(rust, sql, "every {count} {unit}");
        }
    }
    // Zones: every name either side knows.
    let pg_names: Vec<String> = client
        .query("SELECT name FROM pg_timezone_names", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let rust_names = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name().to_string());
    let names: Vec<String> = pg_names
        .into_iter()
        .chain(rust_names)
        .chain(
            [
                "posixrules",
                "localtime",
                "Factory",
                "posix/Europe/Paris",
                "right/UTC",
                "UTC+3",
                "utc",
                "PST",
            ]
            .map(String::from),
        )
        .collect();
    // What Rust would store for each name (or the name itself when refused).
    let parsed: Vec<Option<String>> = names
        .iter()
        .map(|name| {
            Schedule::cron("0 * * * *", name)
                .ok()
                .and_then(|s| s.cron_tz().map(str::to_string))
        })
        .collect();
    let stored: Vec<String> = names
        .iter()
        .zip(&parsed)
        .map(|(name, p)| p.clone().unwrap_or_else(|| name.clone()))
        .collect();
    let verdicts: Vec<bool> = client
        .query(
            "SELECT crondeck.zone_ok(n) FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i",
            &[&stored],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut disagree = Vec::new();
    for ((name, rust), sql) in names.iter().zip(&parsed).zip(verdicts) {
        // Accepted by Rust => stored value accepted by the database;
        // accepted by the database => readable by Rust.
        if rust.is_some() != sql {
            disagree.push(format!("{name} (rust {}, sql {sql})", rust.is_some()));
        }
    }
    assert!(disagree.is_empty(), "zones: {disagree:?}");
    // Cron: every expression croner accepts passes the grammar check.
    let fields = [
        "*", "*/5", "0", "59", "1-5", "0-59/15", "1,2,3", "?", "L", "5L", "15W", "LW", "1#2",
        "MON", "mon-fri", "SUN,SAT", "JAN", "jan-mar", "12", "7", "0/10",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        usize::try_from(seed % 1_000_000).unwrap_or(0)
    };
    let mut candidates: Vec<String> = [
        "@hourly",
        "@daily",
        "@WEEKLY",
        "@monthly",
        "@yearly",
        "@annually",
    ]
    .map(String::from)
    .to_vec();
    for _ in 0..3000 {
        let n = 5 + next() % 2;
        candidates.push(
            (0..n)
                .map(|_| fields[next() % fields.len()])
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let accepted: Vec<String> = candidates
        .iter()
        .filter_map(|expr| Schedule::cron(expr, "UTC").ok())
        .map(|s| s.cron_expr().unwrap_or_default().to_string())
        .collect();
    assert!(
        accepted.len() > 100,
        "only {} expressions exercised",
        accepted.len()
    );
    let refused: Vec<String> = client
        .query(
            "SELECT e FROM unnest($1::text[]) AS e WHERE NOT crondeck.cron_grammar_ok(e)",
            &[&accepted],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        refused.is_empty(),
        "croner accepts these, the database refuses them: {refused:?}"
    );
    for refused in [
        "0 9 * * * * *",
        "0 9 * *",
        "0 9 * * *; DROP TABLE x",
        "@reboot",
        "0 9 * * $(id)",
    ] {
        let sql: bool =
            common::scalar(&client, "SELECT crondeck.cron_grammar_ok($1)", &[&refused]).await;
        assert!(!sql, "{refused}");
    }
}
