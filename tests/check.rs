//! `crondeck check` against fixtures for each Nagios status, through the
//! real binary: the exit code and the one summary line.

mod common;

use common::{text, TestDb};

async fn fixture(db: &TestDb, job_sql: &str) {
    let client = db.client().await;
    let output = db.run(&[
        "add", "nightly", "--every", "1h", "--sql", "SELECT 1", "--tag", "billing",
    ]);
    assert!(output.status.success(), "{:?}", text(&output));
    // A healthy job: succeeded a minute ago, next tick in the future.
    client
        .batch_execute(
            "UPDATE crondeck.jobs SET last_status = 'succeeded',
                 last_success_at = now() - interval '1 minute', nextcall = now() + interval '59 minutes'
             WHERE name = 'nightly'",
        )
        .await
        .unwrap();
    if !job_sql.is_empty() {
        client.batch_execute(job_sql).await.unwrap();
    }
}

async fn live_node(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, lease_ms, heartbeat_ms)
             VALUES ('n1', 'node-1', 'host', 1, 'test', 2, 600000, 5000)",
        )
        .await
        .unwrap();
}

/// Run check; return (exit code, the single stdout line).
fn check(db: &TestDb, args: &[&str]) -> (i32, String) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let output = db.run(&all);
    let (out, err) = text(&output);
    assert_eq!(
        out.lines().count(),
        1,
        "one line expected:\n{out}\nstderr: {err}"
    );
    (
        output.status.code().unwrap_or(-1),
        out.trim_end().to_string(),
    )
}

#[tokio::test]
async fn ok_when_jobs_are_healthy_and_a_node_is_alive() {
    let db = TestDb::new().await;
    fixture(&db, "").await;
    live_node(&db).await;
    let (code, line) = check(&db, &[]);
    assert_eq!(code, 0, "{line}");
    assert_eq!(
        line,
        "CRONDECK OK: 0 overdue, 0 failing, 0 late, 0 auto-paused of 1 job, 1 live node \
         | jobs=1 overdue=0 failing=0 late=0 auto_paused=0 live_nodes=1"
    );
}

#[tokio::test]
async fn a_late_job_is_a_warning_that_names_it() {
    let db = TestDb::new().await;
    fixture(
        &db,
        "UPDATE crondeck.jobs SET nextcall = now() - interval '2 minutes' WHERE name = 'nightly'",
    )
    .await;
    live_node(&db).await;
    let (code, line) = check(&db, &[]);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.starts_with("CRONDECK WARNING: 0 overdue, 0 failing, 1 late"),
        "{line}"
    );
    assert!(
        line.contains("worst: nightly late (due 2m ago and not started)"),
        "{line}"
    );
    // A wider grace for this call makes it OK.
    let (code, line) = check(&db, &["--late-grace", "5m"]);
    assert_eq!(code, 0, "{line}");
}

#[tokio::test]
async fn a_failing_job_is_a_warning_with_its_last_result() {
    let db = TestDb::new().await;
    fixture(
        &db,
        "UPDATE crondeck.jobs SET failure_streak = 2, failure_streak_since = now(),
             last_status = 'failed' WHERE name = 'nightly'",
    )
    .await;
    live_node(&db).await;
    let (code, line) = check(&db, &[]);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("worst: nightly failing (2 failures in a row, last failed)"),
        "{line}"
    );
    assert_eq!(check(&db, &["--failing-streak", "3"]).0, 0);
    assert_eq!(check(&db, &["--tag", "other"]).0, 0, "out of scope");
    assert_eq!(check(&db, &["--job", "nightly"]).0, 1);
}

#[tokio::test]
async fn an_overdue_job_is_critical() {
    let db = TestDb::new().await;
    fixture(
        &db,
        "UPDATE crondeck.jobs SET last_success_at = now() - interval '3 hours' WHERE name = 'nightly'",
    )
    .await;
    live_node(&db).await;
    let (code, line) = check(&db, &[]);
    assert_eq!(code, 2, "{line}");
    assert!(line.starts_with("CRONDECK CRITICAL: 1 overdue"), "{line}");
    assert!(
        line.contains("worst: nightly overdue (no success for 3h"),
        "{line}"
    );
}

#[tokio::test]
async fn no_live_node_is_critical() {
    let db = TestDb::new().await;
    fixture(&db, "").await;
    let (code, line) = check(&db, &[]);
    assert_eq!(code, 2, "{line}");
    assert_eq!(
        line,
        "CRONDECK CRITICAL: 0 overdue, 0 failing, 0 late, 0 auto-paused of 1 job, 0 live nodes; \
         worst: no live scheduler node: nothing is executing \
         | jobs=1 overdue=0 failing=0 late=0 auto_paused=0 live_nodes=0"
    );
}

#[tokio::test]
async fn an_unreachable_database_is_unknown() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
        .args([
            "--database-url",
            &format!("postgres://nobody@127.0.0.1:{port}/none?connect_timeout=2"),
            "check",
        ])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let (out, err) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("CRONDECK UNKNOWN: cannot reach the job database"),
        "{out}"
    );
    let json = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
        .args([
            "--database-url",
            &format!("postgres://nobody@127.0.0.1:{port}/none"),
            "check",
            "--json",
        ])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value["code"], 3);
    assert_eq!(json.status.code(), Some(3));
}
