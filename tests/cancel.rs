//! Cancel (SPEC §3.17), across processes: an operator asks from the CLI (one
//! process), the node that owns the run (another process, a headless
//! `crondeck scheduler`) stops it within a heartbeat and records it
//! `cancelled` with who asked. Checked on the real process too: the shell
//! job's process group is gone, not only the runs table updated.

mod common;

use std::time::Duration;

use common::faults::{add_job, running_on, work_dir, NodeOptions, NodeProcess};
use common::{scalar, text, wait_for, TestDb};
use crondeck::job::ActionKind;

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_cancels_a_shell_and_an_sql_run_on_another_node_from_the_cli() {
    let dir = work_dir("cancel");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let pid_file = dir.join("pid");
    // The shell job ignores nothing: SIGTERM to its group ends it.
    add_job(
        &mut client,
        "long-shell",
        "every 1h",
        ActionKind::Shell,
        &format!("echo $$ > '{}'; sleep 120", pid_file.display()),
        None,
    )
    .await;
    add_job(
        &mut client,
        "long-sql",
        "every 1h",
        ActionKind::Sql,
        "SELECT pg_sleep(120)",
        None,
    )
    .await;
    let node = NodeProcess::spawn(&db, &dir, NodeOptions::new("worker"));
    let shell_run = wait_for(Duration::from_secs(20), "the shell run", || async {
        running_on(&client, "long-shell", "worker").await
    })
    .await;
    let sql_run = wait_for(Duration::from_secs(20), "the SQL run", || async {
        running_on(&client, "long-sql", "worker").await
    })
    .await;
    let pid: i32 = wait_for(Duration::from_secs(10), "the job's pid", || async {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
    })
    .await;
    assert!(alive(pid));

    // An operator login, not the owner: cancel is an operator action.
    let operator = format!("{}_op", db.name);
    client
        .batch_execute(&format!(
            "CREATE ROLE {operator} LOGIN; GRANT crondeck_operator TO {operator};"
        ))
        .await
        .unwrap();
    for (job, run) in [("long-shell", shell_run), ("long-sql", sql_run)] {
        let output = db.run_as(
            &operator,
            &[
                "cancel",
                job,
                "--reason",
                "stuck",
                "--wait",
                "--wait-timeout",
                "60s",
            ],
        );
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{job}: {stdout}\n{stderr}");
        let (status, error): (String, Option<String>) = {
            let row = client
                .query_one(
                    "SELECT status, error FROM crondeck.runs WHERE id = $1",
                    &[&run],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        };
        assert_eq!(status, "cancelled", "{job}");
        let error = error.unwrap_or_default();
        assert!(
            error.contains("cancelled by") && error.contains(&operator),
            "{error}"
        );
        let running: Option<i64> = scalar(
            &client,
            "SELECT running_run_id FROM crondeck.jobs WHERE name = $1",
            &[&job],
        )
        .await;
        assert_eq!(running, None, "{job} stays blocked");
        let audited: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.audit WHERE job_name = $1 AND action = 'cancel'
               AND reason = 'stuck'",
            &[&job],
        )
        .await;
        assert_eq!(audited, 1, "{job}");
    }
    // The process really is gone, not only the record.
    wait_for(
        Duration::from_secs(10),
        "the job's process to be gone",
        || async { (!alive(pid)).then_some(()) },
    )
    .await;
    let backends: i64 = scalar(
        &client,
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(120)%'
           AND state = 'active'",
        &[],
    )
    .await;
    assert_eq!(backends, 0, "the SQL job's statement still runs");

    // Nothing running: a clear refusal, exit 3, nothing audited.
    let output = db.run_as(&operator, &["cancel", "long-shell"]);
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("no run in progress"), "{stderr}");
    // A viewer may not cancel.
    let viewer = format!("{}_viewer", db.name);
    client
        .batch_execute(&format!(
            "CREATE ROLE {viewer} LOGIN; GRANT crondeck_viewer TO {viewer};"
        ))
        .await
        .unwrap();
    let output = db.run_as(&viewer, &["cancel", "long-sql"]);
    assert_eq!(output.status.code(), Some(3), "{:?}", text(&output));
    node.stop().await;
}
