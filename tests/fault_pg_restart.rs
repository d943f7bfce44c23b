//! Fault suite, scenario 2: PostgreSQL restarts (immediate shutdown, i.e. a
//! crash as clients see it) while runs are in progress. A binary of its own:
//! the restart drops the connections of every test sharing the server.

mod common;

use std::time::Duration;

use common::faults::{
    add_job, create_overlaps_table, exclusive_shell, exclusive_sql, running_on, shell_overlaps,
    work_dir, NodeOptions, NodeProcess,
};
use common::{oracle, scalar, wait_for, TestDb};
use crondeck::job::ActionKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_ends_the_run_explained_and_scheduling_resumes() {
    let dir = work_dir("pg-restart");
    let db = TestDb::new().await;
    let client = db.client().await;
    // The test server trades durability for speed (synchronous_commit off):
    // a crash would lose the last commits, claims included, which no
    // scheduler can survive. Production servers commit synchronously.
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET synchronous_commit = on",
            db.name
        ))
        .await
        .unwrap();
    drop(client);
    let mut client = db.client().await;
    create_overlaps_table(&client).await;
    for i in 0..20 {
        add_job(
            &mut client,
            &format!("sql-{i:02}"),
            "every 1s",
            ActionKind::Sql,
            &exclusive_sql(i, "SELECT pg_sleep(0.2)"),
            None,
        )
        .await;
    }
    for i in 0..3 {
        add_job(
            &mut client,
            &format!("shell-{i}"),
            "every 1s",
            ActionKind::Shell,
            &exclusive_shell(&dir, "sleep 0.5"),
            None,
        )
        .await;
    }
    add_job(
        &mut client,
        "long-sql",
        "every 1h",
        ActionKind::Sql,
        "SELECT pg_sleep(8)",
        None,
    )
    .await;
    add_job(
        &mut client,
        "long-shell",
        "every 1h",
        ActionKind::Shell,
        &exclusive_shell(&dir, "sleep 8"),
        None,
    )
    .await;
    let nodes = [
        NodeProcess::spawn(&db, &dir, NodeOptions::new("a")),
        NodeProcess::spawn(&db, &dir, NodeOptions::new("b")),
    ];
    let mut interrupted = Vec::new();
    for job in ["long-sql", "long-shell"] {
        let run = wait_for(
            Duration::from_secs(20),
            &format!("{job} to run"),
            || async {
                let a = running_on(&client, job, "a").await;
                a.or(running_on(&client, job, "b").await)
            },
        )
        .await;
        interrupted.push(run);
    }
    drop(client);

    tokio::task::spawn_blocking(common::restart_server_immediately)
        .await
        .unwrap();
    let client = db.client().await;
    let restarted: chrono::DateTime<chrono::Utc> = scalar(&client, "SELECT now()", &[]).await;

    // Both nodes reconnect and schedule again: every frequent job completes
    // a run that started after the restart.
    wait_for(
        Duration::from_secs(30),
        "every frequent job to run again",
        || async {
            let waiting: i64 = scalar(
                &client,
                "SELECT count(*) FROM crondeck.jobs j WHERE j.name NOT LIKE 'long-%'
                 AND NOT EXISTS (SELECT 1 FROM crondeck.runs r WHERE r.job_id = j.id
                                 AND r.status = 'succeeded' AND r.started_at > $1)",
                &[&restarted],
            )
            .await;
            (waiting == 0).then_some(())
        },
    )
    .await;
    for node in ["a", "b"] {
        wait_for(
            Duration::from_secs(15),
            &format!("{node} to work again"),
            || async {
                let n: i64 = scalar(
                    &client,
                    "SELECT count(*) FROM crondeck.runs WHERE node_name = $1 AND started_at > $2
                     AND status = 'succeeded'",
                    &[&node, &restarted],
                )
                .await;
                (n > 0).then_some(())
            },
        )
        .await;
    }
    // The runs cut by the crash end, each with its explanation (the oracle
    // checks that a run that did not succeed says why).
    for run in &interrupted {
        wait_for(
            Duration::from_secs(30),
            "the interrupted run to end",
            || async {
                let status: String = scalar(
                    &client,
                    "SELECT status FROM crondeck.runs WHERE id = $1",
                    &[run],
                )
                .await;
                (status != "running").then_some(status)
            },
        )
        .await;
    }
    for node in nodes {
        node.stop().await;
    }
    let history = oracle::check(&client).await;
    let long_sql = history.runs_of("long-sql");
    let first = long_sql.iter().find(|r| r.id == interrupted[0]).unwrap();
    assert_ne!(
        first.status, "succeeded",
        "a statement cut by the crash was recorded as a success: {first:?}"
    );
    let overlaps: i64 = scalar(&client, "SELECT count(*) FROM public.overlaps", &[]).await;
    assert_eq!(
        (shell_overlaps(&dir).as_str(), overlaps),
        ("", 0),
        "real overlaps (shell, SQL)"
    );
}
