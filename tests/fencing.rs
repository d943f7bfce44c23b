//! Fencing and reconciliation, statement by statement, against a real
//! PostgreSQL: every claim, finish and heartbeat of a node is judged on its
//! registration being alive by lease in database time, never on what the
//! node believes; and a node's heartbeat resolves runs the database says it
//! executes but it does not (a lost answer to a claim).
//!
//! Each test stands for a node whose view and the database's differ: a node
//! woken from a freeze whose lease ran out although nobody rescued it yet, a
//! node whose claim committed while it saw the connection fail.

mod common;

use std::time::Duration;

use common::{scalar, TestDb};
use crondeck::db::audit::Actor;
use crondeck::db::claim::{claim, finish, ClaimReport, Claimer, Completion, FinishResult};
use crondeck::db::nodes::{node_heartbeat, node_register, node_stop, NodeInfo};
use crondeck::db::runs::{RunOutcome, RunStatus};
use crondeck::db::DbError;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use tokio_postgres::Client;

fn info(name: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        host: "test".to_string(),
        pid: 1,
        version: "test".to_string(),
        workers: 4,
        allow_shell: true,
        shell_allow: Vec::new(),
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(5),
    }
}

async fn add_due_job(client: &mut Client, name: &str) -> i64 {
    let spec = JobSpec::new(
        name,
        Schedule::parse("every 1h").unwrap(),
        ActionKind::Sql,
        "SELECT 1",
    );
    let id = ops::add(client, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap()
        .id;
    client
        .execute(
            "UPDATE crondeck.jobs SET nextcall = now() - interval '1 second' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    id
}

async fn claim_as(client: &mut Client, node_id: &str) -> Result<ClaimReport, DbError> {
    let actor = Actor::current();
    let claimer = Claimer {
        node_id,
        node_name: "node",
        allow_shell: true,
        shell_allow: &[],
        actor: &actor,
        console: false,
    };
    claim(client, &claimer, 4).await
}

/// Another node's view of time: this registration's last heartbeat was an
/// hour ago, so its lease ran out, but nobody has rescued it yet.
async fn let_lease_run_out(client: &Client, node_id: &str) {
    client
        .execute(
            "UPDATE crondeck.nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
            &[&node_id],
        )
        .await
        .unwrap();
}

async fn run_status(client: &Client, run_id: i64) -> String {
    scalar(
        client,
        "SELECT status FROM crondeck.runs WHERE id = $1",
        &[&run_id],
    )
    .await
}

/// Regression: a node woken from a freeze claimed under its dead
/// registration before its heartbeat noticed, and its run started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_registration_whose_lease_ran_out_claims_nothing_even_before_a_rescue() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let job = add_due_job(&mut client, "due").await;
    let node = node_register(&client, &info("frozen")).await.unwrap();
    let_lease_run_out(&client, &node).await;

    let refused = claim_as(&mut client, &node).await;
    assert!(
        matches!(refused, Err(DbError::LeaseLost(ref id)) if *id == node),
        "{refused:?}"
    );
    let runs: i64 = scalar(&client, "SELECT count(*) FROM crondeck.runs", &[]).await;
    assert_eq!(runs, 0, "a dead registration started a run");

    // The same claim by a live registration starts the job.
    let live = node_register(&client, &info("live")).await.unwrap();
    let report = claim_as(&mut client, &live).await.unwrap();
    assert_eq!(report.started.len(), 1);
    assert_eq!(report.started[0].job.id, job);
}

/// Regression: results recorded by a dead registration were accepted (an SQL
/// run `succeeded` after its node was declared dead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_registration_whose_lease_ran_out_cannot_record_a_result() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_due_job(&mut client, "due").await;
    let node = node_register(&client, &info("frozen")).await.unwrap();
    let report = claim_as(&mut client, &node).await.unwrap();
    let run = &report.started[0];
    let_lease_run_out(&client, &node).await;

    let actor = Actor::current();
    let completion = Completion {
        run,
        node_id: &node,
        status: RunStatus::Succeeded,
        outcome: RunOutcome::default(),
    };
    let tx = client.transaction().await.unwrap();
    let result = finish(&tx, &completion, &actor).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(result, FinishResult::Fenced);
    assert_eq!(run_status(&client, run.run_id).await, "running");

    // Its heartbeat is refused too: the node must register anew.
    let beat = node_heartbeat(&client, &node, 0, Some(&[run.run_id]))
        .await
        .unwrap();
    assert!(!beat.alive);
    assert!(beat.reconciled.is_empty());
}

/// Regression: a claim whose COMMIT reached the server while the node saw
/// "connection closed" left a phantom `running` run: the node kept
/// heartbeating, so nobody rescued it, and the job was blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_run_the_node_does_not_execute_is_abandoned_by_its_own_heartbeat() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let lost_job = add_due_job(&mut client, "lost-answer").await;
    let kept_job = add_due_job(&mut client, "executing").await;
    let node = node_register(&client, &info("node")).await.unwrap();
    let report = claim_as(&mut client, &node).await.unwrap();
    assert_eq!(report.started.len(), 2);
    let run_of = |job: i64| {
        report
            .started
            .iter()
            .find(|r| r.job.id == job)
            .unwrap()
            .run_id
    };
    let (lost, kept) = (run_of(lost_job), run_of(kept_job));

    // Without a snapshot (a claim was in flight) nothing is reconciled.
    let beat = node_heartbeat(&client, &node, 1, None).await.unwrap();
    assert!(beat.alive);
    assert!(beat.reconciled.is_empty());
    assert_eq!(run_status(&client, lost).await, "running");

    // The node executes only `kept`: `lost` is what the database believes.
    let beat = node_heartbeat(&client, &node, 1, Some(&[kept]))
        .await
        .unwrap();
    assert!(beat.alive);
    assert_eq!(beat.reconciled, vec![lost]);
    assert_eq!(run_status(&client, lost).await, "abandoned");
    assert_eq!(run_status(&client, kept).await, "running");
    let error: String = scalar(
        &client,
        "SELECT error FROM crondeck.runs WHERE id = $1",
        &[&lost],
    )
    .await;
    assert!(error.contains("not executing"), "{error}");
    let freed: Option<i64> = scalar(
        &client,
        "SELECT running_run_id FROM crondeck.jobs WHERE id = $1",
        &[&lost_job],
    )
    .await;
    assert_eq!(freed, None, "the job stays blocked");

    // The kept run records normally.
    let run = report.started.iter().find(|r| r.run_id == kept).unwrap();
    let actor = Actor::current();
    let completion = Completion {
        run,
        node_id: &node,
        status: RunStatus::Succeeded,
        outcome: RunOutcome::default(),
    };
    let tx = client.transaction().await.unwrap();
    let result = finish(&tx, &completion, &actor).await.unwrap();
    tx.commit().await.unwrap();
    assert!(matches!(result, FinishResult::Recorded { .. }));
    assert_eq!(run_status(&client, kept).await, "succeeded");
}

/// A clean stop leaves no run of its own `running`, under any registration
/// the process had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_nothing_of_its_own_running() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_due_job(&mut client, "one").await;
    let first = node_register(&client, &info("node")).await.unwrap();
    claim_as(&mut client, &first).await.unwrap();
    // The process registered again later (its first lease ran out).
    add_due_job(&mut client, "two").await;
    let second = node_register(&client, &info("node")).await.unwrap();
    claim_as(&mut client, &second).await.unwrap();
    let other = node_register(&client, &info("other")).await.unwrap();
    add_due_job(&mut client, "three").await;
    claim_as(&mut client, &other).await.unwrap();

    let lost = node_stop(&client, &[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(lost, 2);
    let running: Vec<String> = client
        .query(
            "SELECT node_id FROM crondeck.runs WHERE status = 'running'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(running, vec![other], "another node's run was touched");
    let blocked: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.jobs WHERE running_node_id = ANY($1)",
        &[&vec![first, second]],
    )
    .await;
    assert_eq!(blocked, 0);
}

/// Regression: a retry backoff near the end of time (`retry_backoff =
/// "100000000w"`, doubled per attempt) overflowed chrono in the finish and
/// panicked the worker. The retry simply never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_retry_backoff_past_the_end_of_time_does_not_panic_the_finish() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let job = add_due_job(&mut client, "far-retry").await;
    client
        .execute(
            "UPDATE crondeck.jobs SET retry_max = 5, retry_backoff_ms = $2,
                 failure_threshold = 0 WHERE id = $1",
            &[&job, &(100_000_000_i64 * 7 * 24 * 3600 * 1000)],
        )
        .await
        .unwrap();
    let node = node_register(&client, &info("node")).await.unwrap();
    let report = claim_as(&mut client, &node).await.unwrap();
    let actor = Actor::current();
    let completion = Completion {
        run: &report.started[0],
        node_id: &node,
        status: RunStatus::Failed,
        outcome: RunOutcome::default(),
    };
    let tx = client.transaction().await.unwrap();
    let result = finish(&tx, &completion, &actor).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        result,
        FinishResult::Recorded {
            auto_paused: false,
            retry_at: None
        }
    );
}
