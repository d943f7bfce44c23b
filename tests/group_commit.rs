//! Group commit of run records (issue 15): the ends of shell runs that
//! finish together are written in one transaction, each exactly as it would
//! be alone, and a record held up by a lock holds up no other.
//!
//! The witness is the jobs rows' `change_xid`, stamped by a trigger with the
//! id of the (top-level) transaction that last wrote the row: for these
//! jobs, the one that recorded their run's end.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{scalar, wait_for, TestDb};
use crondeck::db::audit::Actor;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use crondeck::scheduler::{NodeConfig, NodeHandle};
use tokio_postgres::Client;

async fn start_node(db: &TestDb, workers: usize) -> NodeHandle {
    NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            name: "n".into(),
            workers,
            allow_shell: true,
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap()
}

/// A shell job, due now, that waits for `gate` to exist, prints, and exits
/// with `code`.
async fn add_gated_job(client: &mut Client, name: &str, gate: &Path, code: i32) -> i64 {
    let command = format!(
        "while [ ! -e '{}' ]; do sleep 0.01; done; echo {name}; exit {code}",
        gate.display()
    );
    let spec = JobSpec::new(
        name,
        Schedule::parse("every 1h").unwrap(),
        ActionKind::Shell,
        &command,
    );
    ops::add(client, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap()
        .id
}

async fn running(client: &Client) -> i64 {
    scalar(
        client,
        "SELECT count(*) FROM crondeck.runs WHERE status = 'running'",
        &[],
    )
    .await
}

async fn wait_running(client: &Client, count: i64) {
    wait_for(Duration::from_secs(30), "every run to start", || async {
        (running(client).await == count).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_that_end_together_are_recorded_together_each_as_alone() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("go");
    const JOBS: i64 = 16;
    for i in 0..JOBS {
        // A quarter of them fail, so the failure policy runs in the batch too.
        let code = if i % 4 == 0 { 3 } else { 0 };
        add_gated_job(&mut client, &format!("together-{i:02}"), &gate, code).await;
    }
    let node = start_node(&db, 16).await;
    wait_running(&client, JOBS).await;
    std::fs::write(&gate, b"").unwrap();
    wait_for(
        Duration::from_secs(30),
        "every run to be recorded",
        || async { (running(&client).await == 0).then_some(()) },
    )
    .await;

    let rows = client
        .query(
            "SELECT j.name, r.status, r.exit_code, r.stdout, j.running_run_id, j.last_status,
                    j.last_run_id = r.id, j.failure_streak, j.last_duration_ms
             FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
             ORDER BY j.name",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len() as i64, JOBS);
    for (i, row) in rows.iter().enumerate() {
        let name: String = row.get(0);
        let failed = i % 4 == 0;
        let status: String = row.get(1);
        assert_eq!(
            status,
            if failed { "failed" } else { "succeeded" },
            "{name}"
        );
        let exit_code: Option<i32> = row.get(2);
        assert_eq!(exit_code, Some(if failed { 3 } else { 0 }), "{name}");
        let stdout: Option<String> = row.get(3);
        assert_eq!(stdout.as_deref(), Some(format!("{name}\n").as_str()));
        let running_run: Option<i64> = row.get(4);
        assert_eq!(running_run, None, "{name}: the job was freed");
        let last_status: Option<String> = row.get(5);
        assert_eq!(last_status.as_deref(), Some(status.as_str()), "{name}");
        let points_at_run: bool = row.get(6);
        assert!(points_at_run, "{name}");
        let streak: i32 = row.get(7);
        assert_eq!(streak, i32::from(failed), "{name}");
        let duration: Option<i64> = row.get(8);
        assert!(duration.is_some_and(|d| d >= 0), "{name}: {duration:?}");
    }
    let transactions: i64 = scalar(
        &client,
        "SELECT count(DISTINCT change_xid) FROM crondeck.jobs",
        &[],
    )
    .await;
    assert!(
        transactions < JOBS,
        "{JOBS} runs ending together were recorded in {transactions} transactions"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_held_up_by_a_lock_holds_up_no_other() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("go");
    let stuck = add_gated_job(&mut client, "stuck", &gate, 0).await;
    let free = add_gated_job(&mut client, "free", &gate, 0).await;
    let node = start_node(&db, 2).await;
    wait_running(&client, 2).await;

    // Someone's open transaction holds the first job's row.
    let mut holder = db.client().await;
    let lock = holder.transaction().await.unwrap();
    lock.execute(
        "SELECT 1 FROM crondeck.jobs WHERE id = $1 FOR UPDATE",
        &[&stuck],
    )
    .await
    .unwrap();
    std::fs::write(&gate, b"").unwrap();
    let status_of = |job: i64| {
        let client = &client;
        async move {
            scalar::<String>(
                client,
                "SELECT status FROM crondeck.runs WHERE job_id = $1",
                &[&job],
            )
            .await
        }
    };
    wait_for(
        Duration::from_secs(30),
        "the other run's record",
        || async { (status_of(free).await == "succeeded").then_some(()) },
    )
    .await;
    assert_eq!(
        status_of(stuck).await,
        "running",
        "its job row is still held"
    );
    lock.commit().await.unwrap();
    wait_for(
        Duration::from_secs(30),
        "the held-up run's record",
        || async { (status_of(stuck).await == "succeeded").then_some(()) },
    )
    .await;
    node.shutdown().await.unwrap();
}
