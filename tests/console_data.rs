//! The console's data requests against a real PostgreSQL (issue 12): the
//! history paged by keyset, the nodes overview, changes refused when the
//! value a dialog showed changed meanwhile (two sessions, operator role),
//! and STALE shown while the database does not answer.

mod common;

use std::time::Duration;

use common::{scalar, TestDb};
use crondeck::db::audit::Actor;
use crondeck::db::jobs::job_get;
use crondeck::db::runs::{run_page, RunPageQuery};
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions, Expect, JobChanges, OpsError};
use crondeck::schedule::Schedule;
use crondeck::tui::action::{DataEvent, Effect, Link};
use tokio::sync::mpsc;

async fn add_job(client: &mut tokio_postgres::Client, name: &str) -> i64 {
    let spec = JobSpec::new(
        name,
        Schedule::parse("5m").unwrap(),
        ActionKind::Sql,
        "SELECT 1",
    );
    ops::add(client, &Actor::current(), &spec, &AddOptions::default())
        .await
        .expect("add the job")
        .id
}

async fn audit_rows(client: &tokio_postgres::Client) -> i64 {
    scalar(
        client,
        "SELECT count(*) FROM crondeck.audit WHERE job_name = 'contested'",
        &[],
    )
    .await
}

async fn next(events: &mut mpsc::UnboundedReceiver<DataEvent>) -> DataEvent {
    tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event from the data task")
        .expect("the data task is running")
}

#[tokio::test]
async fn the_history_pages_through_every_run_by_keyset_with_filters() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let job = add_job(&mut client, "paged").await;
    // 120 runs, one a minute back from now: every 7th skipped (3 ticks).
    client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, reason, ticks)
             SELECT $1, 'schedule', now() - make_interval(mins => 121 - i),
                    CASE WHEN i % 7 = 0 THEN 'skipped' ELSE 'succeeded' END,
                    CASE WHEN i % 7 = 0 THEN 'scheduler_down' END,
                    CASE WHEN i % 7 = 0 THEN 3 ELSE 1 END
             FROM generate_series(1, 120) AS i",
            &[&job],
        )
        .await
        .unwrap();
    // Every page, newest first, until the oldest: 120 distinct runs in order.
    let mut query = RunPageQuery::default();
    let mut seen: Vec<i64> = Vec::new();
    let mut pages = 0;
    loop {
        let (runs, more) = run_page(&client, job, &query, 50).await.unwrap();
        pages += 1;
        assert!(runs.len() <= 50);
        seen.extend(runs.iter().map(|r| r.id));
        if !more {
            break;
        }
        query.before = runs.last().map(|r| r.id);
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats"
    );

    // Only skipped: 17 of them, each with its reason and tick count.
    let skipped = RunPageQuery {
        status: Some("skipped".into()),
        ..RunPageQuery::default()
    };
    let (runs, more) = run_page(&client, job, &skipped, 50).await.unwrap();
    assert!(!more);
    assert_eq!(runs.len(), 17);
    assert!(runs
        .iter()
        .all(|r| r.reason.as_deref() == Some("scheduler_down") && r.ticks == 3));

    // From a time: nothing scheduled after it, newest first from there.
    let at: chrono::DateTime<chrono::Utc> = scalar(
        &client,
        "SELECT now() - interval '60 minutes 30 seconds'",
        &[],
    )
    .await;
    let from = RunPageQuery {
        at: Some(at),
        ..RunPageQuery::default()
    };
    let (runs, more) = run_page(&client, job, &from, 50).await.unwrap();
    assert!(more);
    assert!(runs.iter().all(|r| r.scheduled_for <= at));
    assert!(runs[0].scheduled_for > at - chrono::Duration::minutes(2));
}

#[tokio::test]
async fn a_dialog_decided_on_an_old_value_changes_nothing_and_says_so() {
    let db = TestDb::new().await;
    let mut owner = db.client().await;
    add_job(&mut owner, "contested").await;
    owner
        .batch_execute(&format!(
            "CREATE ROLE {0}_op1 LOGIN; GRANT crondeck_operator TO {0}_op1;
             CREATE ROLE {0}_op2 LOGIN; GRANT crondeck_operator TO {0}_op2;",
            db.name
        ))
        .await
        .unwrap();
    let mut alice = db
        .spec_as(&format!("{}_op1", db.name))
        .connect()
        .await
        .unwrap();
    let mut bob = db
        .spec_as(&format!("{}_op2", db.name))
        .connect()
        .await
        .unwrap();
    let actor = Actor::current();

    // Alice opens the priority dialog on 5; Bob sets 3 meanwhile.
    let seen = job_get(&alice, "contested", false)
        .await
        .unwrap()
        .spec
        .priority;
    assert_eq!(seen, 5);
    let priority = |p| JobChanges {
        priority: Some(p),
        ..JobChanges::default()
    };
    ops::set(&mut bob, &actor, "contested", &priority(3))
        .await
        .unwrap();
    let before = audit_rows(&owner).await;
    let refused = ops::set_expecting(
        &mut alice,
        &actor,
        "contested",
        &priority(1),
        Some(&Expect::Priority(seen)),
    )
    .await;
    match refused {
        Err(OpsError::Invalid(text)) => {
            assert!(text.contains("changed meanwhile"), "{text}");
            assert!(
                text.contains("priority was 5") && text.contains("is 3 now"),
                "{text}"
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(
        job_get(&owner, "contested", false)
            .await
            .unwrap()
            .spec
            .priority,
        3
    );
    assert_eq!(
        audit_rows(&owner).await,
        before,
        "a refused change writes no audit row"
    );
    // Decided on what is there now, it goes through, audited as before.
    ops::set_expecting(
        &mut alice,
        &actor,
        "contested",
        &priority(1),
        Some(&Expect::Priority(3)),
    )
    .await
    .unwrap();
    assert_eq!(audit_rows(&owner).await, before + 1);

    // The schedule: Bob reschedules while Alice's dialog shows every 5 minutes.
    let shown = Schedule::parse("5m").unwrap();
    let to = |text: &str| JobChanges {
        schedule: Some(Schedule::parse(text).unwrap()),
        ..JobChanges::default()
    };
    ops::set(&mut bob, &actor, "contested", &to("10m"))
        .await
        .unwrap();
    let refused = ops::set_expecting(
        &mut alice,
        &actor,
        "contested",
        &to("1h"),
        Some(&Expect::Schedule(shown)),
    )
    .await;
    assert!(
        matches!(&refused, Err(OpsError::Invalid(t)) if t.contains("every 10 minutes now")),
        "{refused:?}"
    );
    assert_eq!(
        job_get(&owner, "contested", false)
            .await
            .unwrap()
            .spec
            .schedule,
        Schedule::parse("10m").unwrap()
    );

    // Pause: Bob pauses first with his reason; Alice's pause of the job she
    // saw active is refused and Bob's reason stays.
    ops::pause(&mut bob, &actor, "contested", Some("bob's deploy"), None)
        .await
        .unwrap();
    let refused = ops::pause_active(&mut alice, &actor, "contested", Some("alice"), None).await;
    assert!(
        matches!(&refused, Err(OpsError::Invalid(t)) if t.contains("was active")),
        "{refused:?}"
    );
    let job = job_get(&owner, "contested", false).await.unwrap();
    assert_eq!(
        job.pause.and_then(|p| p.reason).as_deref(),
        Some("bob's deploy")
    );
}

#[tokio::test]
async fn the_nodes_overview_names_what_each_node_runs() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let job = add_job(&mut client, "long-one").await;
    client
        .batch_execute(
            "INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, busy, lease_ms,
                                         heartbeat_ms)
             VALUES ('n1', 'alpha', 'host-1', 1, '9.9.9', 4, 1, 30000, 5000),
                    ('n2', 'beta', 'host-2', 2, '9.9.8', 2, 0, 30000, 5000);
             INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, lease_ms,
                                         heartbeat_ms, heartbeat_at)
             VALUES ('n3', 'ancient', 'host-3', 3, '1.0.0', 2, 30000, 5000,
                     now() - interval '2 hours');",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, node_id, node_name,
                                        started_at)
             VALUES ($1, 'manual', now(), 'running', 'n1', 'alpha', now())",
            &[&job],
        )
        .await
        .unwrap();
    let nodes = crondeck::db::nodes::node_overview(&client).await.unwrap();
    let names: Vec<&str> = nodes.iter().map(|n| n.node.name.as_str()).collect();
    assert_eq!(
        names,
        ["alpha", "beta"],
        "a node gone for hours is left out"
    );
    assert_eq!(nodes[0].running, ["long-one"]);
    assert_eq!(nodes[0].version, "9.9.9");
    assert!(nodes[0].alive && nodes[1].running.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_stops_answering_shows_stale_before_the_deadline() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_job(&mut client, "anything").await;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let requests = crondeck::tui::data::spawn(db.spec.clone(), false, events_tx);
    // Live first: a snapshot arrives.
    loop {
        if let DataEvent::Jobs(_) = next(&mut events).await {
            break;
        }
    }
    // Freeze the jobs table: the next refresh hangs on its lock.
    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE crondeck.jobs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let asked = tokio::time::Instant::now();
    requests.send(Effect::Refresh).unwrap();
    let stale = loop {
        match next(&mut events).await {
            DataEvent::Connection(Link::Lost { error }) => break error,
            DataEvent::Jobs(_) => panic!("a snapshot arrived through the lock"),
            _ => {}
        }
    };
    assert!(stale.contains("no answer for 3s"), "{stale}");
    // Shown while the request still waits, well before its 15 s deadline
    // (the statement timeout is 10 s, so nothing else can have ended it).
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    // The server answers again: live, then the data.
    tx.rollback().await.unwrap();
    let mut live = false;
    loop {
        match next(&mut events).await {
            DataEvent::Connection(Link::Live) => live = true,
            DataEvent::Jobs(_) => break,
            _ => {}
        }
    }
    assert!(live, "live again before the data");
    let _ = requests.send(Effect::Quit);
}

/// The run a manual request became, once a node started it: (node name,
/// started within `CONSOLE_DEFER` of the request).
async fn started_by(client: &tokio_postgres::Client, request: i64) -> (String, bool) {
    common::wait_for(Duration::from_secs(60), "the requested run", || async {
        let row = client
            .query_opt(
                "SELECT r.node_name, r.started_at - q.requested_at < $2::bigint * interval '1 millisecond'
                 FROM crondeck.run_requests q JOIN crondeck.runs r ON r.id = q.run_id
                 WHERE q.id = $1",
                &[
                    &request,
                    &i64::try_from(crondeck::db::claim::CONSOLE_DEFER.as_millis()).unwrap(),
                ],
            )
            .await
            .unwrap();
        row.map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1)))
    })
    .await
}

fn node_config(name: &str, console: bool) -> crondeck::scheduler::NodeConfig {
    crondeck::scheduler::NodeConfig {
        name: name.into(),
        console,
        ..crondeck::scheduler::NodeConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consoles_node_alone_runs_manual_requests_at_once() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_job(&mut client, "by-hand").await;
    let console =
        crondeck::scheduler::NodeHandle::start(db.spec.clone(), node_config("console", true))
            .await
            .expect("start the console's node");
    let actor = Actor::current();
    for _ in 0..3 {
        let request = ops::run_now(&mut client, &actor, "by-hand").await.unwrap();
        let (node, prompt) = started_by(&client, request).await;
        assert_eq!(node, "console");
        assert!(
            prompt,
            "alone, the console's node must not wait for another"
        );
    }
    console.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn manual_requests_from_a_console_land_on_the_headless_node() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add_job(&mut client, "by-hand").await;
    let console =
        crondeck::scheduler::NodeHandle::start(db.spec.clone(), node_config("console", true))
            .await
            .expect("start the console's node");
    let headless =
        crondeck::scheduler::NodeHandle::start(db.spec.clone(), node_config("headless", false))
            .await
            .expect("start the headless node");
    let actor = Actor::current();
    // Until the headless node listens for requests, the console's node may
    // take one after its wait: warm up until the headless node took one.
    let mut warm = false;
    for _ in 0..20 {
        let request = ops::run_now(&mut client, &actor, "by-hand").await.unwrap();
        if started_by(&client, request).await.0 == "headless" {
            warm = true;
            break;
        }
    }
    assert!(warm, "the headless node never took a manual request");
    for _ in 0..5 {
        let request = ops::run_now(&mut client, &actor, "by-hand").await.unwrap();
        let (node, _) = started_by(&client, request).await;
        assert_eq!(
            node, "headless",
            "a manual request went to the console's node"
        );
    }
    // With the headless node gone, the console's node runs them again.
    headless.shutdown().await.unwrap();
    let request = ops::run_now(&mut client, &actor, "by-hand").await.unwrap();
    let (node, prompt) = started_by(&client, request).await;
    assert_eq!(node, "console");
    assert!(prompt, "the console's node waited for a node that stopped");
    console.shutdown().await.unwrap();
}
