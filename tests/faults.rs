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
    isolated_node_stops_its_work_before_another_takes_over("cut", Isolation::Cut).await;
}

/// A black-holed link (packets dropped, no reset): nothing errors, so only
/// deadlines on every round trip let the node notice within its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_a_black_holed_link_stops_its_work_before_another_takes_over() {
    isolated_node_stops_its_work_before_another_takes_over("black-hole", Isolation::Stall).await;
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Isolation {
    Cut,
    Stall,
}

async fn isolated_node_stops_its_work_before_another_takes_over(test: &str, how: Isolation) {
    let _serial = serial().await;
    let dir = work_dir(test);
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

    match how {
        Isolation::Cut => proxy.cut(),
        Isolation::Stall => proxy.stall(),
    }
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

/// Regression: a claim whose COMMIT reached the server while the node saw
/// "connection closed" left a phantom `running` run. The node forgot the
/// claim but kept heartbeating, so nobody rescued the run; every tick of the
/// job was then skipped as an overlap, and the run was still `running` after
/// the node's clean stop. Now the node's own heartbeat abandons it, and the
/// job runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_claim_whose_commit_reply_was_lost_left_a_phantom_running_run() {
    let _serial = serial().await;
    let dir = work_dir("lost_claim_reply");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let socket = common::server_socket_dir()
        .expect("the proxy needs the embedded test server")
        .join(".s.PGSQL.5432");
    let proxy = Proxy::start(socket).await;
    // Each execution leaves a marker named after its run: a run with no
    // marker never executed, whatever the history says.
    let body = format!(
        "touch '{}/executed-'\"$CRONDECK_RUN_ID\"; sleep 0.3",
        dir.display()
    );
    add_job(
        &mut client,
        "witnessed",
        "every 1s",
        ActionKind::Shell,
        &exclusive_shell(&dir, &body),
        None,
    )
    .await;
    proxy.drop_next_claim_reply();
    let node = NodeProcess::spawn(
        &db,
        &dir,
        NodeOptions {
            url: Some(proxy.url(&db)),
            ..NodeOptions::new("node")
        },
    );
    wait_for(
        Duration::from_secs(20),
        "a claim's reply to be dropped",
        || async { (proxy.dropped_claim_replies() > 0).then_some(()) },
    )
    .await;
    // The claim committed: its run is in the history, never executed.
    let phantom: i64 = wait_for(Duration::from_secs(10), "the phantom run", || async {
        client
            .query(
                "SELECT id FROM crondeck.runs WHERE status <> 'skipped' ORDER BY id",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .find(|id| !dir.join(format!("executed-{id}")).exists())
    })
    .await;
    // Resolved within about a heartbeat (the node beats at once after a
    // failed claim); the deadline only bounds a hang.
    let status = wait_for(
        Duration::from_secs(10),
        "the phantom run to be resolved",
        || async {
            let status = status_of(&client, phantom).await;
            (status != "running").then_some(status)
        },
    )
    .await;
    assert_eq!(status, "abandoned", "see {}", node.log.display());
    assert!(
        !dir.join(format!("executed-{phantom}")).exists(),
        "the phantom run executed after all"
    );
    // The job is not blocked: later runs execute and succeed.
    wait_for(Duration::from_secs(20), "the job to run again", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE id > $1 AND status = 'succeeded'",
            &[&phantom],
        )
        .await;
        (n >= 2).then_some(())
    })
    .await;
    node.stop().await;
    let running: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.runs WHERE status = 'running'",
        &[],
    )
    .await;
    assert_eq!(running, 0, "a clean stop left a run running");
    oracle::check(&client).await;
    assert_eq!(shell_overlaps(&dir), "", "real overlap");
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

/// Regression: the rescue found an SQL run's session by its
/// `application_name`, which the job itself can change; such a session ran
/// on, holding its locks, beside the next run. The node now publishes the
/// session's pid when the run starts, and the rescue terminates that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_sql_job_that_renames_its_session_is_still_stopped_by_the_rescue() {
    let _serial = serial().await;
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_job(
        &mut client,
        "renamer",
        "every 1h",
        ActionKind::Sql,
        "SET application_name = 'innocent'; SELECT pg_advisory_xact_lock(78); SELECT pg_sleep(60)",
        None,
    )
    .await;
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
        "the renamed lock holder to run, its pid published",
        || async {
            let renamed: bool = scalar(
                &client,
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity s USING (pid)
                  WHERE l.locktype = 'advisory' AND l.objid = 78
                    AND s.application_name = 'innocent')",
                &[],
            )
            .await;
            let published: Option<i64> = client
                .query_opt(
                    "SELECT id FROM crondeck.runs
                     WHERE status = 'running' AND backend_pid IS NOT NULL",
                    &[],
                )
                .await
                .unwrap()
                .map(|r| r.get(0));
            published.filter(|_| renamed)
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
        "the renamed session's lock to be released",
        || async {
            let free: bool = scalar(&client, "SELECT pg_try_advisory_lock(78)", &[]).await;
            free.then_some(())
        },
    )
    .await;
    assert_eq!(status_of(&client, run).await, "abandoned");
    drop(node);
}

/// Scenario 1: `kill -9` a node mid-run, again and again, while two others
/// keep working. `jobs` SQL jobs plus a few shell jobs, every 2 s.
async fn kill_9_mid_run_repeatedly(test: &str, sql_jobs: usize, rounds: usize) {
    let dir = work_dir(test);
    let db = TestDb::new().await;
    let mut client = db.client().await;
    create_overlaps_table(&client).await;
    for i in 0..sql_jobs {
        let key = i64::try_from(i).unwrap();
        add_job(
            &mut client,
            &format!("sql-{i:03}"),
            "every 2s",
            ActionKind::Sql,
            &exclusive_sql(key, "SELECT pg_sleep(0.1)"),
            None,
        )
        .await;
    }
    for i in 0..6 {
        add_job(
            &mut client,
            &format!("shell-{i}"),
            "every 2s",
            ActionKind::Shell,
            &exclusive_shell(&dir, "sleep 1.5"),
            None,
        )
        .await;
    }
    let steady = [
        NodeProcess::spawn(&db, &dir, NodeOptions::new("steady-a")),
        NodeProcess::spawn(&db, &dir, NodeOptions::new("steady-b")),
    ];
    let mut killed_runs = Vec::new();
    for round in 0..rounds {
        let name = format!("victim-{round}");
        let victim = NodeProcess::spawn(&db, &dir, NodeOptions::new(&name));
        // Mid-run: a shell job of the victim is running when it dies.
        let run: i64 = wait_for(
            Duration::from_secs(20),
            &format!("{name} to run a shell job"),
            || async {
                client
                    .query_opt(
                        "SELECT r.id FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                         WHERE r.node_name = $1 AND r.status = 'running' AND j.action_kind = 'shell'
                         LIMIT 1",
                        &[&name],
                    )
                    .await
                    .unwrap()
                    .map(|r| r.get(0))
            },
        )
        .await;
        // Let it work a little longer on whatever else it claimed.
        tokio::time::sleep(Duration::from_millis(700)).await;
        victim.kill_9();
        killed_runs.push(run);
    }
    // The last victim's runs are rescued by the steady nodes.
    for run in &killed_runs {
        wait_for(
            Duration::from_secs(15),
            "the rescue of a killed node's run",
            || async { (status_of(&client, *run).await != "running").then_some(()) },
        )
        .await;
    }
    wait_for(Duration::from_secs(15), "every killed node's runs to be rescued", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'running' AND node_name LIKE 'victim-%'",
            &[],
        )
        .await;
        (n == 0).then_some(())
    })
    .await;
    for node in steady {
        node.stop().await;
    }

    let history = oracle::check(&client).await;
    for run in &killed_runs {
        assert_eq!(status_of(&client, *run).await, "abandoned");
    }
    let (shell, sql) = (shell_overlaps(&dir), sql_overlaps(&client).await);
    assert_eq!((shell.as_str(), sql), ("", 0), "real overlaps (shell, SQL)");
    // The steady nodes kept working through the kills.
    for node in ["steady-a", "steady-b"] {
        let done = history
            .runs
            .iter()
            .filter(|r| r.node_name.as_deref() == Some(node) && r.status == "succeeded")
            .count();
        assert!(done > 0, "{node} did no work");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_mid_run_repeatedly_while_two_others_work() {
    let _serial = serial().await;
    kill_9_mid_run_repeatedly("kill-9", 100, 10).await;
}

/// The soak variant: 150 jobs, 80 kills (about four minutes in a debug build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: several minutes; run with --ignored"]
async fn soak_kill_9_of_a_node_mid_run_repeatedly_while_two_others_work() {
    let _serial = serial().await;
    kill_9_mid_run_repeatedly("kill-9-soak", 150, 80).await;
}

/// libfaketime, installed by the `faketime` package.
fn libfaketime() -> std::path::PathBuf {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/faketime/libfaketime.so.1",
        "/usr/local/lib/faketime/libfaketime.so.1",
    ];
    candidates
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "the clock-skew test needs libfaketime: install it with `apt-get install faketime` \
                 (looked in {candidates:?})"
            )
        })
}

/// The first timestamp a node logged, as its (faked) clock read it.
fn first_log_time(node: &NodeProcess) -> chrono::DateTime<chrono::Utc> {
    node.log_text()
        .split_whitespace()
        .find_map(|word| chrono::DateTime::parse_from_rfc3339(word).ok())
        .unwrap_or_else(|| panic!("no timestamp in {}", node.log.display()))
        .with_timezone(&chrono::Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_clocks_five_minutes_off_neither_double_fire_nor_rescue_early() {
    let _serial = serial().await;
    let dir = work_dir("skew");
    let db = TestDb::new().await;
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
    for i in 0..4 {
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
    let faketime = libfaketime().display().to_string();
    let skewed = |name: &'static str, offset: &str| {
        NodeProcess::spawn(
            &db,
            &dir,
            NodeOptions {
                env: vec![
                    ("LD_PRELOAD".into(), faketime.clone()),
                    ("FAKETIME".into(), offset.into()),
                ],
                ..NodeOptions::new(name)
            },
        )
    };
    let started: chrono::DateTime<chrono::Utc> = scalar(&client, "SELECT now()", &[]).await;
    let nodes = [
        skewed("ahead", "+5m"),
        skewed("behind", "-5m"),
        NodeProcess::spawn(&db, &dir, NodeOptions::new("on-time")),
    ];
    // Every node takes part: the skewed ones do not sit idle waiting for
    // a time their own clock says is minutes away.
    for node in ["ahead", "behind", "on-time"] {
        wait_for(
            Duration::from_secs(20),
            &format!("{node} to finish runs"),
            || async {
                let n: i64 = scalar(
                    &client,
                    "SELECT count(*) FROM crondeck.runs WHERE node_name = $1 AND status = 'succeeded'",
                    &[&node],
                )
                .await;
                (n >= 10).then_some(())
            },
        )
        .await;
    }
    // Several leases' worth of ticks with the clocks apart.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let rescued: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.nodes WHERE stopped_at IS NOT NULL",
        &[],
    )
    .await;
    assert_eq!(rescued, 0, "a live node was declared dead");
    // The offsets took effect.
    let ahead = first_log_time(&nodes[0]) - started;
    let behind = first_log_time(&nodes[1]) - started;
    assert!(ahead > chrono::Duration::minutes(4), "ahead by {ahead}");
    assert!(behind < chrono::Duration::minutes(-4), "behind by {behind}");
    for node in nodes {
        node.stop().await;
    }
    let history = oracle::check(&client).await;
    assert!(
        history.runs.iter().all(|r| r.status != "abandoned"),
        "a run was abandoned"
    );
    let (shell, sql) = (shell_overlaps(&dir), sql_overlaps(&client).await);
    assert_eq!((shell.as_str(), sql), ("", 0), "real overlaps (shell, SQL)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_that_overrun_hang_fork_hundreds_or_flood_output_leave_the_node_responsive() {
    let _serial = serial().await;
    let dir = work_dir("misbehaving");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let children = dir.join("children");
    add_job(
        &mut client,
        "ticker-sql",
        "every 1s",
        ActionKind::Sql,
        "SELECT 1",
        None,
    )
    .await;
    add_job(
        &mut client,
        "ticker-shell",
        "every 1s",
        ActionKind::Shell,
        "true",
        None,
    )
    .await;
    add_job(
        &mut client,
        "overrun",
        "every 1s",
        ActionKind::Shell,
        "sleep 2.5",
        None,
    )
    .await;
    // Ignores SIGTERM too: only the kill after the grace period ends it.
    add_job(
        &mut client,
        "hang",
        "every 1h",
        ActionKind::Shell,
        "trap '' TERM; while :; do sleep 1; done",
        Some(Duration::from_secs(2)),
    )
    .await;
    add_job(
        &mut client,
        "fork-300",
        "every 1h",
        ActionKind::Shell,
        &format!(
            "for i in $(seq 300); do sleep 100 & echo $! >> '{}'; done; wait",
            children.display()
        ),
        Some(Duration::from_secs(3)),
    )
    .await;
    add_job(
        &mut client,
        "gibibyte",
        "every 1h",
        ActionKind::Shell,
        "head -c 1073741824 /dev/zero | tr '\\0' x",
        None,
    )
    .await;
    let node = NodeProcess::spawn(
        &db,
        &dir,
        NodeOptions {
            workers: 8,
            ..NodeOptions::new("n")
        },
    );
    wait_for(
        Duration::from_secs(20),
        "the node to start runs",
        || async {
            let n: i64 = scalar(&client, "SELECT count(*) FROM crondeck.runs", &[]).await;
            (n > 0).then_some(())
        },
    )
    .await;
    let baseline = node.peak_rss_kib();
    let ended = |job: &'static str| {
        let client = &client;
        async move {
            client
                .query_opt(
                    "SELECT r.status FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                     WHERE j.name = $1 AND r.status <> 'running' AND r.status <> 'skipped' LIMIT 1",
                    &[&job],
                )
                .await
                .unwrap()
                .map(|r| r.get::<_, String>(0))
        }
    };
    let mut statuses = Vec::new();
    for job in ["hang", "fork-300", "gibibyte"] {
        statuses.push(
            wait_for(Duration::from_secs(120), &format!("{job} to end"), || {
                ended(job)
            })
            .await,
        );
    }
    assert_eq!(statuses, ["timed_out", "timed_out", "succeeded"]);
    // A few more ticks with everything else still going.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = node.peak_rss_kib();
    node.stop().await;

    let history = oracle::check(&client).await;
    // The node stayed responsive: each tick of the tickers ran on its own,
    // none was coalesced or skipped for want of a worker.
    // (A tick that came while the ticker's own previous run was still going
    // is skipped as an overlap: on a loaded machine even `SELECT 1` can take
    // a second. That is the ticker being slow, not the node starving it.)
    for ticker in ["ticker-sql", "ticker-shell"] {
        let runs = history.runs_of(ticker);
        let succeeded = runs.iter().filter(|r| r.status == "succeeded").count();
        assert!(succeeded >= 5, "{ticker} succeeded {succeeded} times");
        for run in runs {
            let on_its_own = run.ticks == 1 && run.status == "succeeded";
            let overlap = run.status == "skipped" && run.reason.as_deref() == Some("overlap");
            assert!(on_its_own || overlap, "{ticker}: {run:?}");
        }
    }
    // The overrunning job's ticks that came while it ran are skipped, with
    // the reason.
    assert!(history
        .runs_of("overrun")
        .iter()
        .any(|r| r.status == "skipped" && r.reason.as_deref() == Some("overlap")));
    // The 300 children died with their job.
    let pids: Vec<i32> = std::fs::read_to_string(&children)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    assert_eq!(pids.len(), 300);
    assert!(
        pids.iter().all(|p| !common::faults::alive(*p)),
        "children of the fork job survived it"
    );
    // 1 GiB of output and 300 children later, memory grew by a few MiB.
    assert!(
        peak.saturating_sub(baseline) < 32 * 1024,
        "peak RSS grew from {baseline} KiB to {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_jobs_are_paused_at_their_threshold_without_starving_the_others() {
    let _serial = serial().await;
    let dir = work_dir("poison");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_job(
        &mut client,
        "fails",
        "every 1s",
        ActionKind::Shell,
        "echo broken >&2; exit 3",
        None,
    )
    .await;
    add_job(
        &mut client,
        "times-out",
        "every 1s",
        ActionKind::Shell,
        "sleep 30",
        Some(Duration::from_secs(1)),
    )
    .await;
    add_job(
        &mut client,
        "healthy",
        "every 1s",
        ActionKind::Sql,
        "SELECT 1",
        None,
    )
    .await;
    for poison in ["fails", "times-out"] {
        common::faults::set_failure_threshold(&client, poison, 3).await;
    }
    // The poison jobs come first whenever they are due.
    client
        .execute(
            "UPDATE crondeck.jobs SET priority = 0 WHERE name IN ('fails', 'times-out')",
            &[],
        )
        .await
        .unwrap();
    // Two workers: the poison jobs could occupy both.
    let node = NodeProcess::spawn(
        &db,
        &dir,
        NodeOptions {
            workers: 2,
            ..NodeOptions::new("n")
        },
    );
    for poison in ["fails", "times-out"] {
        wait_for(
            Duration::from_secs(30),
            &format!("{poison} to be auto-paused"),
            || async {
                let active: bool = scalar(
                    &client,
                    "SELECT active FROM crondeck.jobs WHERE name = $1",
                    &[&poison],
                )
                .await;
                (!active).then_some(())
            },
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.stop().await;

    let history = oracle::check(&client).await;
    for (poison, status) in [("fails", "failed"), ("times-out", "timed_out")] {
        let job = history.job(poison);
        let reason = job
            .pause
            .as_ref()
            .and_then(|p| p.reason.clone())
            .unwrap_or_default();
        assert!(
            reason.contains("3 consecutive failures"),
            "{poison}: {reason}"
        );
        let failures = history
            .runs_of(poison)
            .iter()
            .filter(|r| r.status == status)
            .count();
        assert_eq!(failures, 3, "{poison} ran past its threshold");
    }
    let healthy = history.runs_of("healthy");
    assert!(healthy.len() >= 4, "healthy ran {} times", healthy.len());
    for run in healthy {
        assert!(
            run.ticks == 1 && run.status == "succeeded",
            "the healthy job was starved: {run:?}"
        );
    }
}
