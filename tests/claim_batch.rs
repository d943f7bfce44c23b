//! The claim's pipelined first read (issue 15): `BEGIN`, the probe and the
//! due jobs in one round trip, then every scheduled start at once. Against
//! real PostgreSQL: a herd is started as far as the free workers go and no
//! further, a request and the same job's due tick never start two runs, what
//! is left stays due for the next claim, and the connection is never left
//! inside the claim's transaction, whatever the claim's outcome.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{scalar, TestDb};
use crondeck::db::audit::Actor;
use crondeck::db::claim::{claim, ClaimReport, Claimer};
use crondeck::db::nodes::{node_register, NodeInfo};
use crondeck::db::runs::Trigger;
use crondeck::db::DbError;
use tokio_postgres::error::SqlState;
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

async fn add_due_jobs(client: &Client, count: i32) {
    client
        .execute(
            "INSERT INTO crondeck.jobs (name, schedule_kind, interval_count, interval_unit,
                 nextcall, action_kind, command)
             SELECT 'herd-' || g, 'every', 1, 'hours', now() - interval '1 second', 'sql',
                    'SELECT 1'
             FROM generate_series(1, $1) g",
            &[&count],
        )
        .await
        .unwrap();
}

async fn claim_as(
    client: &mut Client,
    node_id: &str,
    limit: usize,
) -> Result<ClaimReport, DbError> {
    let actor = Actor::current();
    let claimer = Claimer {
        node_id,
        node_name: "node",
        allow_shell: true,
        shell_allow: &[],
        actor: &actor,
        console: false,
    };
    claim(client, &claimer, limit).await
}

/// The claim's transaction is over: `SAVEPOINT` is refused outside one.
async fn assert_no_transaction_open(client: &Client) {
    let error = client.batch_execute("SAVEPOINT probe").await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_is_started_up_to_the_free_workers_and_the_rest_by_the_next_claims() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_due_jobs(&client, 25).await;
    let node = node_register(&client, &info("n")).await.unwrap();

    let first = claim_as(&mut client, &node, 10).await.unwrap();
    assert_no_transaction_open(&client).await;
    assert_eq!(first.started.len(), 10);
    // Each started job points at its run, which is running, on this node.
    for run in &first.started {
        let (status, owner, pointed): (String, String, i64) = {
            let row = client
                .query_one(
                    "SELECT r.status, r.node_id, j.running_run_id
                     FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                     WHERE r.id = $1",
                    &[&run.run_id],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1), row.get(2))
        };
        assert_eq!(
            (status.as_str(), owner.as_str(), pointed),
            ("running", node.as_str(), run.run_id)
        );
        assert!(run.job.nextcall.is_some());
    }
    let next_moved: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.jobs WHERE running_run_id IS NOT NULL AND nextcall > now()",
        &[],
    )
    .await;
    assert_eq!(next_moved, 10, "every started job moved to its next slot");
    let still_due: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.jobs WHERE running_run_id IS NULL AND nextcall <= now()",
        &[],
    )
    .await;
    assert_eq!(still_due, 15);

    let second = claim_as(&mut client, &node, 10).await.unwrap();
    let third = claim_as(&mut client, &node, 10).await.unwrap();
    assert_eq!((second.started.len(), third.started.len()), (10, 5));
    let jobs: HashSet<i64> = [&first, &second, &third]
        .iter()
        .flat_map(|r| r.started.iter().map(|s| s.job.id))
        .collect();
    assert_eq!(jobs.len(), 25, "a job was started twice");
    // With every job running, nothing is due and nothing else starts.
    let fourth = claim_as(&mut client, &node, 10).await.unwrap();
    assert!(fourth.started.is_empty());
    assert_no_transaction_open(&client).await;
}

/// A job with a pending request that is also due: the request starts it,
/// its tick does not start a second run (the one-running-run index would
/// refuse the whole claim), and the tick is left for the next claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_and_the_same_jobs_due_tick_start_one_run() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_due_jobs(&client, 3).await;
    let node = node_register(&client, &info("n")).await.unwrap();
    client
        .execute("SELECT crondeck.trigger('herd-2')", &[])
        .await
        .unwrap();

    // Two workers: the request takes one, one due job the other.
    let report = claim_as(&mut client, &node, 2).await.unwrap();
    assert_no_transaction_open(&client).await;
    assert_eq!(report.started.len(), 2, "{:?}", report.started);
    let requested = report
        .started
        .iter()
        .find(|r| r.job.spec.name == "herd-2")
        .expect("the request started its job");
    assert_ne!(requested.trigger, Trigger::Schedule);
    let running: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.runs WHERE status = 'running'",
        &[],
    )
    .await;
    assert_eq!(running, 2);
    // herd-2's tick is still due (it was running when the claim looked) and
    // one other job is still due.
    let due: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.jobs WHERE nextcall <= now()",
        &[],
    )
    .await;
    assert_eq!(due, 2);
}

/// A dead registration's claim is refused and leaves the connection usable,
/// outside any transaction, with nothing locked: another session takes the
/// due jobs at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_claim_leaves_no_transaction_and_no_lock() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_due_jobs(&client, 3).await;
    let node = node_register(&client, &info("dead")).await.unwrap();
    client
        .execute(
            "UPDATE crondeck.nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
            &[&node],
        )
        .await
        .unwrap();
    let refused = claim_as(&mut client, &node, 3).await;
    assert!(matches!(refused, Err(DbError::LeaseLost(_))), "{refused:?}");
    assert_no_transaction_open(&client).await;
    let other = db.client().await;
    let locked: i64 = scalar(
        &other,
        "SELECT count(*) FROM (SELECT id FROM crondeck.jobs FOR UPDATE NOWAIT) j",
        &[],
    )
    .await;
    assert_eq!(locked, 3);

    // A statement that fails inside the claim leaves no transaction either.
    let live = node_register(&client, &info("live")).await.unwrap();
    client
        .batch_execute(
            "CREATE FUNCTION pg_temp.boom() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'boom'; END $$;
             CREATE TRIGGER boom BEFORE INSERT ON crondeck.runs
                 FOR EACH ROW EXECUTE FUNCTION pg_temp.boom();",
        )
        .await
        .unwrap();
    let failed = claim_as(&mut client, &live, 3).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_no_transaction_open(&client).await;
    client
        .batch_execute("DROP TRIGGER boom ON crondeck.runs")
        .await
        .unwrap();
    let report = claim_as(&mut client, &live, 3).await.unwrap();
    assert_eq!(report.started.len(), 3);
}
