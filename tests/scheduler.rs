//! The scheduler engine against a real PostgreSQL and real processes: the
//! SPEC §3 guarantees, each checked from the run history after the fact.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{scalar, wait_for, TestDb};
use crondeck::db::audit::Actor;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use crondeck::scheduler::{NodeConfig, NodeHandle};
use tokio_postgres::Client;

fn fast_config(name: &str) -> NodeConfig {
    NodeConfig {
        name: name.to_string(),
        workers: 4,
        allow_shell: true,
        heartbeat: Duration::from_millis(500),
        // Tests here run in parallel on a loaded machine and none of them is
        // about the lease: a lease of four heartbeats would let a scheduling
        // hiccup declare a live node dead (and, since renewals are fenced,
        // make it register anew mid-test). Rescue is tested in tests/faults.rs.
        lease: Duration::from_secs(6),
        shutdown_grace: Duration::from_secs(5),
        kill_grace: Duration::from_millis(500),
        ..NodeConfig::default()
    }
}

async fn start_node(db: &TestDb, config: NodeConfig) -> NodeHandle {
    NodeHandle::start(db.spec.clone(), config)
        .await
        .expect("start node")
}

async fn add(
    client: &mut Client,
    name: &str,
    schedule: &str,
    action: ActionKind,
    command: &str,
) -> i64 {
    let spec = JobSpec::new(name, Schedule::parse(schedule).unwrap(), action, command);
    ops::add(client, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap_or_else(|e| panic!("add {name}: {e}"))
        .id
}

#[derive(Debug, Clone)]
struct Run {
    id: i64,
    job_id: i64,
    status: String,
    trigger: String,
    scheduled_for: DateTime<Utc>,
    ticks: i32,
    reason: Option<String>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    node_name: Option<String>,
}

async fn runs(client: &Client) -> Vec<Run> {
    client
        .query(
            "SELECT id, job_id, status, trigger, scheduled_for, ticks, reason, started_at, ended_at, node_name
             FROM crondeck.runs ORDER BY job_id, scheduled_for, id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Run {
            id: r.get(0),
            job_id: r.get(1),
            status: r.get(2),
            trigger: r.get(3),
            scheduled_for: r.get(4),
            ticks: r.get(5),
            reason: r.get(6),
            started_at: r.get(7),
            ended_at: r.get(8),
            node_name: r.get(9),
        })
        .collect()
}

/// The oracle: per job, no two runs overlap in time; every scheduled tick
/// has at most one row; and the rows tile the timeline with no gap — each
/// row's tick plus `ticks` intervals is the next row's tick.
fn check_history(all: &[Run], interval: chrono::Duration) {
    let mut by_job: HashMap<i64, Vec<&Run>> = HashMap::new();
    for run in all {
        by_job.entry(run.job_id).or_default().push(run);
    }
    for (job, runs) in by_job {
        let mut executed: Vec<&&Run> = runs.iter().filter(|r| r.started_at.is_some()).collect();
        executed.sort_by_key(|r| r.started_at);
        for pair in executed.windows(2) {
            let end = pair[0]
                .ended_at
                .unwrap_or_else(|| panic!("job {job}: run {} never ended", pair[0].id));
            assert!(
                end <= pair[1].started_at.unwrap(),
                "job {job}: runs {} and {} overlap",
                pair[0].id,
                pair[1].id
            );
        }
        let scheduled: Vec<&&Run> = runs.iter().filter(|r| r.trigger == "schedule").collect();
        for pair in scheduled.windows(2) {
            assert_ne!(
                pair[0].scheduled_for, pair[1].scheduled_for,
                "job {job}: a tick has two rows"
            );
            let expected = pair[0].scheduled_for + interval * pair[0].ticks;
            assert_eq!(
                pair[1].scheduled_for, expected,
                "job {job}: ticks missing between run {} ({} ticks) and run {}",
                pair[0].id, pair[0].ticks, pair[1].id
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_the_work_with_no_overlap_no_duplicate_and_no_missing_tick() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    for i in 0..50 {
        add(
            &mut client,
            &format!("job-{i:02}"),
            "every 1s",
            ActionKind::Sql,
            "SELECT 1",
        )
        .await;
    }
    let nodes = [
        start_node(&db, fast_config("a")).await,
        start_node(&db, fast_config("b")).await,
        start_node(&db, fast_config("c")).await,
    ];
    let finished: i64 = wait_for(Duration::from_secs(60), "600 finished runs", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
            &[],
        )
        .await;
        (n >= 600).then_some(n)
    })
    .await;
    for node in nodes {
        node.shutdown().await.expect("graceful shutdown");
    }
    let all = runs(&client).await;
    assert!(finished >= 600);
    assert!(
        all.iter().all(|r| r.status != "running"),
        "a run was left running"
    );
    check_history(&all, chrono::Duration::seconds(1));
    let nodes_used: std::collections::HashSet<_> =
        all.iter().filter_map(|r| r.node_name.clone()).collect();
    assert!(
        nodes_used.len() >= 2,
        "the work was not shared: {nodes_used:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_down_for_ten_intervals_runs_once_with_ten_coalesced_ticks() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let id = add(
        &mut client,
        "catch-up",
        "every 1s",
        ActionKind::Sql,
        "SELECT 1",
    )
    .await;
    let skip = add(
        &mut client,
        "no-catch-up",
        "every 1s",
        ActionKind::Sql,
        "SELECT 1",
    )
    .await;
    client
        .execute(
            "UPDATE crondeck.jobs SET nextcall = date_trunc('second', now()) - interval '9 seconds' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE crondeck.jobs SET catchup = 'skip', nextcall = date_trunc('second', now()) - interval '9 seconds' WHERE id = $1",
            &[&skip],
        )
        .await
        .unwrap();
    let tick: DateTime<Utc> = scalar(
        &client,
        "SELECT nextcall FROM crondeck.jobs WHERE id = $1",
        &[&id],
    )
    .await;
    let node = start_node(&db, fast_config("n")).await;
    let first = wait_for(Duration::from_secs(10), "the catch-up run", || async {
        runs(&client)
            .await
            .into_iter()
            .find(|r| r.job_id == id && r.status == "succeeded")
    })
    .await;
    let skipped = wait_for(Duration::from_secs(10), "the skipped ticks", || async {
        runs(&client)
            .await
            .into_iter()
            .find(|r| r.job_id == skip && r.status == "skipped")
    })
    .await;
    node.shutdown().await.unwrap();
    assert_eq!(first.scheduled_for, tick);
    assert!(first.ticks >= 10, "ticks = {}", first.ticks);
    assert_eq!(first.reason.as_deref(), Some("scheduler_down"));
    let nextcall: DateTime<Utc> = scalar(
        &client,
        "SELECT nextcall FROM crondeck.jobs WHERE id = $1",
        &[&id],
    )
    .await;
    // On the grid, and at least past the coalesced ticks (on a loaded
    // machine a later tick may have run before the node stopped).
    let slots = (nextcall - tick).num_milliseconds();
    assert!(
        slots % 1000 == 0 && slots / 1000 >= i64::from(first.ticks),
        "next slot {nextcall} is not on the grid after {} ticks from {tick}",
        first.ticks
    );
    // `skip`: nothing ran late; the late ticks are one skipped row.
    assert_eq!(skipped.reason.as_deref(), Some("catchup_skip"));
    assert_eq!(skipped.scheduled_for, tick);
    let late_runs = runs(&client)
        .await
        .into_iter()
        .filter(|r| {
            r.job_id == skip
                && r.started_at.is_some()
                && r.scheduled_for <= tick + chrono::Duration::seconds(9)
        })
        .count();
    assert_eq!(late_runs, 0, "the skip policy ran a late tick");
    check_history(&runs(&client).await, chrono::Duration::seconds(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_longer_than_its_interval_records_overlapping_ticks_as_skipped() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let id = add(
        &mut client,
        "slow",
        "every 1s",
        ActionKind::Sql,
        "SELECT pg_sleep(2.5)",
    )
    .await;
    let node = start_node(&db, fast_config("n")).await;
    wait_for(
        Duration::from_secs(20),
        "an overlap skip and two finished runs",
        || async {
            let all = runs(&client).await;
            let overlap = all
                .iter()
                .any(|r| r.job_id == id && r.reason.as_deref() == Some("overlap"));
            let done = all
                .iter()
                .filter(|r| r.job_id == id && r.status == "succeeded")
                .count();
            (overlap && done >= 2).then_some(())
        },
    )
    .await;
    node.shutdown().await.unwrap();
    check_history(&runs(&client).await, chrono::Duration::seconds(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbercall_three_runs_exactly_three_times_then_the_job_is_done() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let mut spec = JobSpec::new(
        "thrice",
        Schedule::parse("every 1s").unwrap(),
        ActionKind::Sql,
        "SELECT 1",
    );
    spec.numbercall = 3;
    let id = ops::add(
        &mut client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await
    .unwrap()
    .id;
    let node = start_node(&db, fast_config("n")).await;
    wait_for(Duration::from_secs(15), "the job to be done", || async {
        let done: bool = scalar(&client, "SELECT numbercall = 0 AND NOT active AND running_run_id IS NULL FROM crondeck.jobs WHERE id = $1", &[&id]).await;
        done.then_some(())
    })
    .await;
    // Give it the chance to run a fourth time; it must not.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    node.shutdown().await.unwrap();
    let count = runs(&client)
        .await
        .iter()
        .filter(|r| r.job_id == id && r.started_at.is_some())
        .count();
    assert_eq!(count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_and_event_triggers_start_within_a_second_and_never_overlap_a_scheduled_run() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let busy = add(
        &mut client,
        "busy",
        "every 1s",
        ActionKind::Sql,
        "SELECT pg_sleep(0.3)",
    )
    .await;
    let on_demand = add(
        &mut client,
        "on-demand",
        "manual",
        ActionKind::Sql,
        "SELECT 1",
    )
    .await;
    let node = start_node(&db, fast_config("n")).await;
    // crondeck.trigger() from SQL, e.g. from a table trigger.
    client
        .batch_execute(
            "CREATE TABLE public.orders (id int);
             CREATE FUNCTION public.orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN PERFORM crondeck.trigger('on-demand'); RETURN NULL; END $$;
             CREATE TRIGGER orders_changed AFTER INSERT ON public.orders
                 FOR EACH STATEMENT EXECUTE FUNCTION public.orders_changed();",
        )
        .await
        .unwrap();
    for round in 0..5 {
        let before: DateTime<Utc> = scalar(&client, "SELECT clock_timestamp()", &[]).await;
        client
            .execute("INSERT INTO public.orders VALUES ($1)", &[&round])
            .await
            .unwrap();
        let run = wait_for(Duration::from_secs(5), "the event run", || async {
            runs(&client).await.into_iter().find(|r| {
                r.job_id == on_demand
                    && r.trigger == "event"
                    && r.started_at.is_some_and(|s| s >= before)
            })
        })
        .await;
        let latency = run.started_at.unwrap() - before;
        assert!(
            latency < chrono::Duration::seconds(1),
            "event run started after {latency}"
        );

        // A manual request for the busy job: starts quickly, never overlaps.
        let before: DateTime<Utc> = scalar(&client, "SELECT clock_timestamp()", &[]).await;
        ops::run_now(&mut client, &Actor::current(), "busy")
            .await
            .unwrap();
        let run = wait_for(Duration::from_secs(5), "the manual run", || async {
            runs(&client).await.into_iter().find(|r| {
                r.job_id == busy
                    && r.trigger == "manual"
                    && r.started_at.is_some_and(|s| s >= before)
            })
        })
        .await;
        // It may wait for a scheduled run (0.3 s) to end, never longer.
        let latency = run.started_at.unwrap() - before;
        assert!(
            latency < chrono::Duration::seconds(1),
            "manual run started after {latency}"
        );
    }
    node.shutdown().await.unwrap();
    let all = runs(&client).await;
    check_history(&all, chrono::Duration::seconds(1));
    // Manual runs do not move the schedule: scheduled ticks stay on the grid.
    assert!(all
        .iter()
        .any(|r| r.job_id == busy && r.trigger == "schedule"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_is_auto_paused_at_the_threshold_with_its_reason() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let id = add(
        &mut client,
        "poison",
        "every 1s",
        ActionKind::Sql,
        "SELECT 1/0",
    )
    .await;
    client
        .execute(
            "UPDATE crondeck.jobs SET failure_threshold = 3, failure_min_age_ms = 0 WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let node = start_node(&db, fast_config("n")).await;
    let reason: String = wait_for(Duration::from_secs(15), "the auto-pause", || async {
        let row = client
            .query_one(
                "SELECT active, paused_reason, failure_streak FROM crondeck.jobs WHERE id = $1",
                &[&id],
            )
            .await
            .unwrap();
        (!row.get::<_, bool>(0)).then(|| row.get::<_, Option<String>>(1).unwrap_or_default())
    })
    .await;
    node.shutdown().await.unwrap();
    assert!(reason.contains("3 consecutive failures"), "{reason}");
    assert!(reason.contains("division by zero"), "{reason}");
    let failed = runs(&client)
        .await
        .iter()
        .filter(|r| r.job_id == id && r.status == "failed")
        .count();
    assert_eq!(failed, 3);
    let sqlstate: String = scalar(
        &client,
        "SELECT sqlstate FROM crondeck.runs WHERE job_id = $1 LIMIT 1",
        &[&id],
    )
    .await;
    assert_eq!(sqlstate, "22012");
    let audited: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.audit WHERE job_id = $1 AND action = 'auto-pause'",
        &[&id],
    )
    .await;
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_ticks_are_retried_with_backoff_before_the_next_tick() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let id = add(
        &mut client,
        "flaky",
        "every 1h",
        ActionKind::Sql,
        "SELECT 1/0",
    )
    .await;
    client
        .execute(
            "UPDATE crondeck.jobs SET retry_max = 2, retry_backoff_ms = 200 WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let node = start_node(&db, fast_config("n")).await;
    wait_for(Duration::from_secs(10), "two retries", || async {
        let n = runs(&client)
            .await
            .iter()
            .filter(|r| r.job_id == id && r.trigger == "retry" && r.ended_at.is_some())
            .count();
        (n == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    node.shutdown().await.unwrap();
    let attempts: Vec<i32> = client
        .query(
            "SELECT attempt FROM crondeck.runs WHERE job_id = $1 ORDER BY id",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        attempts,
        [0, 1, 2],
        "one scheduled run and exactly two retries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_ticks_last_attempt_counts_toward_the_failure_streak() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let id = add(
        &mut client,
        "flaky-once",
        "every 1h",
        ActionKind::Sql,
        "SELECT 1/0",
    )
    .await;
    // Threshold 2: if retries counted, the first retry would auto-pause it.
    client
        .execute(
            "UPDATE crondeck.jobs SET retry_max = 2, retry_backoff_ms = 100,
                 failure_threshold = 2, failure_min_age_ms = 0 WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let node = start_node(&db, fast_config("n")).await;
    wait_for(Duration::from_secs(15), "the last retry", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE job_id = $1 AND attempt = 2
                 AND ended_at IS NOT NULL",
            &[&id],
        )
        .await;
        (n == 1).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    let row = client
        .query_one(
            "SELECT active, failure_streak, paused_reason FROM crondeck.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let (active, streak, reason): (bool, i32, Option<String>) =
        (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (active, streak),
        (true, 1),
        "three failed attempts of one tick are one failure (paused: {reason:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_an_auto_paused_job_starts_a_fresh_streak() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let id = add(
        &mut client,
        "poison-2",
        "every 1s",
        ActionKind::Sql,
        "SELECT 1/0",
    )
    .await;
    client
        .execute(
            "UPDATE crondeck.jobs SET failure_threshold = 2, failure_min_age_ms = 0 WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let node = start_node(&db, fast_config("n")).await;
    wait_for(Duration::from_secs(15), "the auto-pause", || async {
        let active: bool = scalar(
            &client,
            "SELECT active FROM crondeck.jobs WHERE id = $1",
            &[&id],
        )
        .await;
        (!active).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    let before: i32 = scalar(
        &client,
        "SELECT failure_streak FROM crondeck.jobs WHERE id = $1",
        &[&id],
    )
    .await;
    assert_eq!(before, 2);
    let (_, resumed) = ops::resume(&mut client, &Actor::current(), "poison-2")
        .await
        .unwrap();
    assert!(resumed);
    let row = client
        .query_one(
            "SELECT failure_streak, failure_streak_since IS NULL FROM crondeck.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i32>(0), row.get::<_, bool>(1)), (0, true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_stop_sql_and_shell_jobs() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let shell = format!(
        "trap '' TERM; (trap '' TERM; sleep 300) & echo $! >> {p}; echo $$ >> {p}; sleep 300; wait",
        p = pids.display()
    );
    let mut spec = JobSpec::new(
        "stubborn",
        Schedule::parse("every 1h").unwrap(),
        ActionKind::Shell,
        &shell,
    );
    spec.timeout = Some(Duration::from_secs(1));
    let shell_id = ops::add(
        &mut client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await
    .unwrap()
    .id;
    let mut spec = JobSpec::new(
        "slow-sql",
        Schedule::parse("every 1h").unwrap(),
        ActionKind::Sql,
        "SELECT pg_sleep(30)",
    );
    spec.timeout = Some(Duration::from_secs(1));
    let sql_id = ops::add(
        &mut client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await
    .unwrap()
    .id;
    let node = start_node(&db, fast_config("n")).await;
    let (shell_status, sql_status, sqlstate) =
        wait_for(Duration::from_secs(20), "both runs to end", || async {
            let row = client
                .query_one(
                    "SELECT (SELECT status FROM crondeck.runs WHERE job_id = $1),
                        (SELECT status FROM crondeck.runs WHERE job_id = $2),
                        (SELECT sqlstate FROM crondeck.runs WHERE job_id = $2)",
                    &[&shell_id, &sql_id],
                )
                .await
                .unwrap();
            let shell: Option<String> = row.get(0);
            let sql: Option<String> = row.get(1);
            match (shell, sql) {
                (Some(a), Some(b)) if a != "running" && b != "running" => {
                    Some((a, b, row.get::<_, Option<String>>(2)))
                }
                _ => None,
            }
        })
        .await;
    node.shutdown().await.unwrap();
    assert_eq!(shell_status, "timed_out");
    assert_eq!(sql_status, "timed_out");
    assert_eq!(sqlstate.as_deref(), Some("57014"));
    let text = std::fs::read_to_string(&pids).unwrap();
    for pid in text.split_whitespace() {
        let pid: i32 = pid.parse().unwrap();
        let alive = unsafe_kill_zero(pid);
        assert!(!alive, "process {pid} of the timed-out job is still alive");
    }
}

/// Whether a process exists (and is not a zombie).
fn unsafe_kill_zero(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split_whitespace().nth(2).is_some_and(|s| s == "Z"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_leaves_no_run_running() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add(
        &mut client,
        "long-shell",
        "every 1h",
        ActionKind::Shell,
        "sleep 60",
    )
    .await;
    add(
        &mut client,
        "long-sql",
        "every 1h",
        ActionKind::Sql,
        "SELECT pg_sleep(60)",
    )
    .await;
    let node = start_node(
        &db,
        NodeConfig {
            shutdown_grace: Duration::from_millis(500),
            ..fast_config("n")
        },
    )
    .await;
    wait_for(Duration::from_secs(10), "both jobs running", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'running'",
            &[],
        )
        .await;
        (n == 2).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    let statuses: Vec<String> = client
        .query("SELECT status FROM crondeck.runs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["interrupted", "interrupted"]);
    let running: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.jobs WHERE running_run_id IS NOT NULL",
        &[],
    )
    .await;
    assert_eq!(running, 0);
    let stopped: bool = scalar(
        &client,
        "SELECT bool_and(stopped_at IS NOT NULL) FROM crondeck.nodes",
        &[],
    )
    .await;
    assert!(stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_cannot_overwrite_the_rescue() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE public.effects (n int); GRANT INSERT ON public.effects TO crondeck_job",
        )
        .await
        .unwrap();
    let sql_job = add(
        &mut client,
        "effect",
        "every 1h",
        ActionKind::Sql,
        "INSERT INTO public.effects VALUES (1); SELECT pg_sleep(1.5)",
    )
    .await;
    let shell_job = add(
        &mut client,
        "shell",
        "every 1h",
        ActionKind::Shell,
        "sleep 1.5",
    )
    .await;
    // A long heartbeat so the node does not notice before its runs end.
    let config = NodeConfig {
        heartbeat: Duration::from_secs(10),
        lease: Duration::from_secs(30),
        ..fast_config("victim")
    };
    let node = start_node(&db, config).await;
    wait_for(Duration::from_secs(10), "both running", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'running'",
            &[],
        )
        .await;
        (n == 2).then_some(())
    })
    .await;
    // Another node's view: the victim's heartbeat is older than its lease.
    let tx = client.transaction().await.unwrap();
    tx.execute(
        "UPDATE crondeck.nodes SET heartbeat_at = now() - interval '1 hour'",
        &[],
    )
    .await
    .unwrap();
    let rescued = crondeck::db::nodes::node_rescue_dead(&tx).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(rescued.len(), 2);
    // Let the victim's runs finish and try to record.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let all = runs(&client).await;
    for job in [sql_job, shell_job] {
        let run = all.iter().find(|r| r.job_id == job).unwrap();
        assert_eq!(
            run.status, "abandoned",
            "the late result overwrote the rescue"
        );
    }
    let effects: i64 = scalar(&client, "SELECT count(*) FROM public.effects", &[]).await;
    assert_eq!(effects, 0, "the fenced SQL job's effect was committed");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_records_the_ticks_missed_while_paused_as_one_row() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let id = add(
        &mut client,
        "paused",
        "every 1s",
        ActionKind::Sql,
        "SELECT 1",
    )
    .await;
    ops::pause(&mut client, &Actor::current(), "paused", Some("test"), None)
        .await
        .unwrap();
    client
        .execute(
            "UPDATE crondeck.jobs SET nextcall = now() - interval '30 seconds' WHERE id = $1",
            &[&id],
        )
        .await
        .unwrap();
    ops::resume(&mut client, &Actor::current(), "paused")
        .await
        .unwrap();
    let all = runs(&client).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].status, "skipped");
    assert_eq!(all[0].reason.as_deref(), Some("paused"));
    assert!(all[0].ticks >= 30);
    let future: bool = scalar(
        &client,
        "SELECT nextcall > now() FROM crondeck.jobs WHERE id = $1",
        &[&id],
    )
    .await;
    assert!(future);
}

fn script(path: &std::path::Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

async fn error_of(client: &Client, job: i64) -> Option<String> {
    scalar(
        client,
        "SELECT error FROM crondeck.runs WHERE job_id = $1 AND status = 'failed' LIMIT 1",
        &[&job],
    )
    .await
}

/// Regression (issue 11): `--allow-shell-prefix /opt/jobs/` admitted
/// `/opt/jobs/../../bin/sh -c id` (run as root), globs, `/opt/jobsEVIL`, and
/// ran everything through `sh -c`. Each attack would create a witness file;
/// none may exist, while the admitted program runs with its argv as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_shell_allow_list_runs_only_programs_inside_its_directories() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let (jobs, evil, out) = (root.join("jobs"), root.join("jobsEVIL"), root.join("out"));
    for dir in [&jobs, &evil, &out] {
        std::fs::create_dir(dir).unwrap();
    }
    let witness = |name: &str| out.join(name);
    // The allowed program records its arguments, one per line.
    script(
        &jobs.join("ok"),
        &format!(
            "for a in \"$@\"; do echo \"$a\"; done > {}",
            out.join("argv").display()
        ),
    );
    script(
        &jobs.join("star"),
        &format!("touch {}", witness("glob").display()),
    );
    script(
        &evil.join("x"),
        &format!("touch {}", witness("evil").display()),
    );
    std::os::unix::fs::symlink("/bin/sh", jobs.join("sh")).unwrap();
    let (j, w) = (jobs.display(), |n: &str| witness(n).display().to_string());
    let allowed = add(
        &mut client,
        "allowed",
        "every 1h",
        ActionKind::Shell,
        &format!("{j}/ok 'two words' \"*\" ~ '#x'"),
    )
    .await;
    let attacks = [
        (
            "dotdot",
            format!("{j}/../../../bin/sh -c 'touch {}'", w("dotdot")),
        ),
        ("evil", format!("{}/x", evil.display())),
        ("glob", format!("{j}/st*")),
        ("semicolon", format!("{j}/ok; touch {}", w("semicolon"))),
        ("subst", format!("{j}/ok $(touch {})", w("subst"))),
        ("backtick", format!("{j}/ok `touch {}`", w("backtick"))),
        ("and", format!("{j}/ok && touch {}", w("and"))),
        ("newline", format!("{j}/ok\ntouch {}", w("newline"))),
        ("outside", format!("touch {}", w("outside"))),
    ];
    let mut attack_ids = Vec::new();
    for (name, command) in &attacks {
        attack_ids.push(add(&mut client, name, "every 1h", ActionKind::Shell, command).await);
    }
    // Textually inside, really /bin/sh: only the node's own check sees it.
    let symlink = add(
        &mut client,
        "symlink",
        "every 1h",
        ActionKind::Shell,
        &format!("{j}/sh -c 'touch {}'", w("symlink")),
    )
    .await;
    let sql = add(&mut client, "sql", "every 1h", ActionKind::Sql, "SELECT 1").await;
    let node = start_node(
        &db,
        NodeConfig {
            shell_allow: vec![format!("{}/", jobs.display())],
            ..fast_config("restricted")
        },
    )
    .await;
    for name in ["allowed", "symlink", "sql"]
        .into_iter()
        .chain(attacks.iter().map(|(n, _)| *n))
    {
        client
            .execute(
                "SELECT crondeck.request_run($1, 'manual', 'test')",
                &[&name],
            )
            .await
            .unwrap_or_else(|e| panic!("request {name}: {e}"));
    }
    wait_for(
        Duration::from_secs(20),
        "the admitted jobs to end",
        || async {
            let all = runs(&client).await;
            // A skipped row (the job's own tick, met while the requested run
            // was going, on a loaded machine) is not the run we wait for.
            let ended = |id| {
                all.iter()
                    .any(|r| r.job_id == id && r.ended_at.is_some() && r.status != "skipped")
            };
            (ended(allowed) && ended(sql) && ended(symlink)).then_some(())
        },
    )
    .await;
    let unclaimable = crondeck::db::nodes::jobs_no_node_can_run(&client)
        .await
        .unwrap();
    node.shutdown().await.unwrap();
    let all = runs(&client).await;
    let status = |id| {
        all.iter()
            .find(|r| r.job_id == id && r.status != "skipped")
            .map(|r| r.status.clone())
    };
    assert_eq!(status(allowed).as_deref(), Some("succeeded"));
    let argv = std::fs::read_to_string(out.join("argv")).unwrap();
    assert_eq!(argv, "two words\n*\n~\n#x\n", "no shell expanded anything");
    assert_eq!(status(symlink).as_deref(), Some("failed"));
    let error = error_of(&client, symlink).await.unwrap_or_default();
    assert!(
        error.contains("refused by this node's shell allow-list") && error.contains("resolves to"),
        "{error}"
    );
    for id in &attack_ids {
        assert_eq!(
            status(*id),
            None,
            "job {id} was claimed by a node that may not run it"
        );
    }
    let mut expected = attack_ids.clone();
    expected.sort_unstable();
    assert_eq!(
        unclaimable, expected,
        "the console's \"no node can run this job\""
    );
    let witnesses: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "argv")
        .collect();
    assert!(witnesses.is_empty(), "attacks that ran: {witnesses:?}");
}

/// The claim's SQL pre-filter and the node's Rust check are one rule: same
/// answer on the shared cases and on a pseudo-random corpus of hostile
/// commands.
#[tokio::test]
async fn the_sql_allow_list_agrees_with_the_nodes_rule() {
    use crondeck::scheduler::allow::{admits, CASES};
    let db = TestDb::new().await;
    let client = db.client().await;
    let mut cases: Vec<(String, Vec<String>)> = CASES
        .iter()
        .map(|(c, a, _)| ((*c).to_owned(), a.iter().map(|e| (*e).to_owned()).collect()))
        .collect();
    let pieces = [
        "/",
        "/opt/jobs",
        "/opt/jobsEVIL",
        "..",
        ".",
        " ",
        "\t",
        "'",
        "\"",
        "*",
        "?",
        "[",
        ";",
        "\\",
        "x",
        "#",
        "\n",
        "$",
        "é",
        "//",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..3000 {
        let mut command = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = seed % 9;
        for k in 0..len {
            command.push_str(pieces[((seed >> (k * 5 + 8)) % pieces.len() as u64) as usize]);
        }
        let allow = if seed % 2 == 0 {
            "/opt/jobs"
        } else {
            "/opt/jobs/"
        };
        cases.push((command, vec![allow.to_owned(), "/srv/x".to_owned()]));
    }
    for (command, allow) in &cases {
        let sql: bool = scalar(
            &client,
            "SELECT crondeck.can_run('shell', $1, true, $2)",
            &[command, allow],
        )
        .await;
        assert_eq!(
            sql,
            admits(command, allow).is_ok(),
            "{command:?} with {allow:?}"
        );
    }
    for (command, allow, admitted) in CASES {
        let allow: Vec<String> = allow.iter().map(|e| (*e).to_owned()).collect();
        assert_eq!(admits(command, &allow).is_ok(), *admitted, "{command:?}");
    }
}
