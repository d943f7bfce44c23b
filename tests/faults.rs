//! The fault-injection suite (issue 7, section 1): real `crondeck scheduler`
//! processes against a real PostgreSQL, with faults injected from outside —
//! `kill -9`, a connection cut by a proxy, SIGSTOP, a skewed clock, jobs that
//! misbehave. After each fault the oracle of `common::oracle` is checked from
//! the run history; jobs also detect real overlap themselves (a `flock` for
//! shell jobs, an advisory lock for SQL jobs), since two executions could
//! overlap while the history says otherwise.
//!
//! The tests run one at a time (`common::faults::serial`). A PostgreSQL
//! restart has its own binary (tests/fault_pg_restart.rs), since it disturbs
//! every test sharing the server. Node logs stay in
//! `target/tmp/faults/<test>/` for the post-mortem.
//!
//! The soak variants are ignored by default; run them with
//! `cargo test --release --test faults -- --ignored --nocapture`.

mod common;

use std::time::Duration;

use common::faults::{
    add_job, count_runs, create_overlaps_table, exclusive_shell, exclusive_sql, registered,
    running_on, serial, shell_overlaps, work_dir, NodeOptions, NodeProcess, Proxy,
};
use common::{oracle, scalar, wait_for, TestDb};
use crondeck::job::ActionKind;
use nix::sys::signal::Signal;

/// Overlaps the SQL jobs recorded themselves.
async fn sql_overlaps(client: &tokio_postgres::Client) -> i64 {
    scalar(client, "SELECT count(*) FROM public.overlaps", &[]).await
}

/// The status of one run.
async fn status_of(client: &tokio_postgres::Client, run: i64) -> String {
    scalar(
        client,
        "SELECT status FROM crondeck.runs WHERE id = $1",
        &[&run],
    )
    .await
}

/// Wait until each job has a run on `node` and return their ids.
async fn runs_started_on(client: &tokio_postgres::Client, jobs: &[&str], node: &str) -> Vec<i64> {
    let mut ids = Vec::new();
    for job in jobs {
        let id = wait_for(
            Duration::from_secs(20),
            &format!("{job} to run on {node}"),
            || async { running_on(client, job, node).await },
        )
        .await;
        ids.push(id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_node_neither_records_over_the_rescue_nor_runs_alongside_the_rescuer() {
    let _serial = serial().await;
    let dir = work_dir("stall");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    create_overlaps_table(&client).await;
    let jobs = ["stall-shell", "stall-sql"];
    add_job(
        &mut client,
        jobs[0],
        "every 1s",
        ActionKind::Shell,
        &exclusive_shell(&dir, "sleep 6"),
        None,
    )
    .await;
    add_job(
        &mut client,
        jobs[1],
        "every 1s",
        ActionKind::Sql,
        &exclusive_sql(1, "SELECT pg_sleep(6)"),
        None,
    )
    .await;

    let victim = NodeProcess::spawn(&db, &dir, NodeOptions::new("victim"));
    let stalled_runs = runs_started_on(&client, &jobs, "victim").await;
    let rescuer = NodeProcess::spawn(&db, &dir, NodeOptions::new("rescuer"));
    wait_for(
        Duration::from_secs(10),
        "the rescuer to register",
        || async { (registered(&client, "rescuer").await > 0).then_some(()) },
    )
    .await;

    // Past the lease: the rescuer abandons the victim's runs and runs the
    // jobs itself, to the end, while the victim (and whatever it left
    // running) is frozen.
    victim.signal(Signal::SIGSTOP);
    for job in jobs {
        wait_for(
            Duration::from_secs(30),
            &format!("{job} to complete on the rescuer"),
            || async { (count_runs(&client, job, "rescuer", "succeeded").await > 0).then_some(()) },
        )
        .await;
    }
    victim.signal(Signal::SIGCONT);
    // The victim finds it was declared dead, and registers anew.
    wait_for(
        Duration::from_secs(10),
        "the victim to register again",
        || async { (registered(&client, "victim").await >= 2).then_some(()) },
    )
    .await;
    // Its stalled runs end on the victim now; any record of them is refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for run in &stalled_runs {
        assert_eq!(
            status_of(&client, *run).await,
            "abandoned",
            "the stalled node recorded over the rescue; see {}",
            victim.log.display()
        );
    }
    victim.stop().await;
    rescuer.stop().await;

    oracle::check(&client).await;
    let (shell, sql) = (shell_overlaps(&dir), sql_overlaps(&client).await);
    assert_eq!(
        (shell.as_str(), sql),
        ("", 0),
        "the stalled node's jobs ran alongside the rescuer's (shell, SQL)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_its_work_before_another_takes_over() {
    let _serial = serial().await;
    let dir = work_dir("cut");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    create_overlaps_table(&client).await;
    let socket = common::server_socket_dir()
        .expect("the proxy needs the embedded test server")
        .join(".s.PGSQL.5432");
    let proxy = Proxy::start(socket).await;
    let jobs = ["cut-shell", "cut-sql"];
    // The shell job ignores SIGTERM, as a careless script may: stopping it
    // takes the node's whole kill grace.
    add_job(
        &mut client,
        jobs[0],
        "every 1s",
        ActionKind::Shell,
        &exclusive_shell(&dir, "trap '' TERM; sleep 6"),
        None,
    )
    .await;
    add_job(
        &mut client,
        jobs[1],
        "every 1s",
        ActionKind::Sql,
        &exclusive_sql(2, "SELECT pg_sleep(6)"),
        None,
    )
    .await;

    let victim = NodeProcess::spawn(
        &db,
        &dir,
        NodeOptions {
            url: Some(proxy.url(&db)),
            ..NodeOptions::new("victim")
        },
    );
    let cut_runs = runs_started_on(&client, &jobs, "victim").await;
    let victim_id: String = scalar(
        &client,
        "SELECT node_id FROM crondeck.runs WHERE id = $1",
        &[&cut_runs[0]],
    )
    .await;
    let rescuer = NodeProcess::spawn(&db, &dir, NodeOptions::new("rescuer"));
    wait_for(
        Duration::from_secs(10),
        "the rescuer to register",
        || async { (registered(&client, "rescuer").await > 0).then_some(()) },
    )
    .await;

    proxy.cut();
    let cut_at: chrono::DateTime<chrono::Utc> = scalar(&client, "SELECT now()", &[]).await;
    for run in &cut_runs {
        wait_for(Duration::from_secs(15), "the rescue", || async {
            (status_of(&client, *run).await == "abandoned").then_some(())
        })
        .await;
    }
    // Stay cut a little past the rescue, then heal: the victim's pending
    // records reach the database late and must be refused.
    tokio::time::sleep(Duration::from_secs(1)).await;
    proxy.heal();
    wait_for(
        Duration::from_secs(15),
        "the victim to register again",
        || async { (registered(&client, "victim").await >= 2).then_some(()) },
    )
    .await;
    for job in jobs {
        wait_for(
            Duration::from_secs(30),
            &format!("{job} to complete after the heal"),
            || async {
                let n: i64 = scalar(
                    &client,
                    "SELECT count(*) FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                     WHERE j.name = $1 AND r.status = 'succeeded' AND r.started_at > $2",
                    &[&job, &cut_at],
                )
                .await;
                (n > 0).then_some(())
            },
        )
        .await;
    }
    for run in &cut_runs {
        assert_eq!(
            status_of(&client, *run).await,
            "abandoned",
            "the cut node's late result overwrote the rescue; see {}",
            victim.log.display()
        );
    }
    // The cut node claimed nothing under its lost identity after the cut.
    let late_claims: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.runs WHERE node_id = $1 AND started_at > $2",
        &[&victim_id, &cut_at],
    )
    .await;
    assert_eq!(late_claims, 0, "the cut node claimed under its lost lease");
    victim.stop().await;
    rescuer.stop().await;

    oracle::check(&client).await;
    let (shell, sql) = (shell_overlaps(&dir), sql_overlaps(&client).await);
    assert_eq!(
        (shell.as_str(), sql),
        ("", 0),
        "the cut node's jobs ran alongside the rescuer's (shell, SQL)"
    );
}

/// Regression: when a frozen or cut-off node's SQL run was rescued, its
/// statement ran on in the server, holding its locks, while the next run
/// started elsewhere. The rescue now terminates that session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_rescued_sql_runs_session_kept_running_alongside_the_next_run() {
    let _serial = serial().await;
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_job(
        &mut client,
        "locker",
        "every 1h",
        ActionKind::Sql,
        "SELECT pg_advisory_xact_lock(77); SELECT pg_sleep(60)",
        None,
    )
    .await;
    // A heartbeat too slow to notice anything during the test: the node
    // behaves like a frozen one as far as the database can tell.
    let node = crondeck::scheduler::NodeHandle::start(
        db.spec.clone(),
        crondeck::scheduler::NodeConfig {
            name: "frozen".into(),
            heartbeat: Duration::from_secs(20),
            lease: Duration::from_secs(60),
            ..crondeck::scheduler::NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let run = wait_for(
        Duration::from_secs(10),
        "the lock holder to run",
        || async {
            let held: bool = scalar(
                &client,
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = 77)",
                &[],
            )
            .await;
            if held {
                running_on(&client, "locker", "frozen").await
            } else {
                None
            }
        },
    )
    .await;
    client
        .execute(
            "UPDATE crondeck.nodes SET heartbeat_at = now() - interval '1 hour'",
            &[],
        )
        .await
        .unwrap();
    let rescued = crondeck::db::nodes::node_rescue_dead(&client)
        .await
        .unwrap();
    assert_eq!(rescued.len(), 1);
    wait_for(
        Duration::from_secs(5),
        "the rescued run's lock to be released",
        || async {
            let free: bool = scalar(&client, "SELECT pg_try_advisory_lock(77)", &[]).await;
            free.then_some(())
        },
    )
    .await;
    assert_eq!(status_of(&client, run).await, "abandoned");
    drop(node);
}
