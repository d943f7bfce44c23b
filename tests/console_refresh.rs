//! The console's incremental refresh (issue 15) against real PostgreSQL:
//! after arbitrary inserts, updates and removals from other sessions,
//! including transactions that stay open across refreshes and commit out of
//! order, the console's merged state equals a full reload.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use common::TestDb;
use crondeck::db::jobs::{job_insert, job_list};
use crondeck::db::nodes::{jobs_no_node_can_run, node_register, NodeInfo};
use crondeck::job::{ActionKind, Job, JobSpec};
use crondeck::schedule::Schedule;
use crondeck::tui::action::{Action, DataEvent};
use crondeck::tui::app::App;
use crondeck::tui::data::Refresher;
use crondeck::tui::update::update;
use tokio_postgres::Client;

/// xorshift64*: reproducible without a dependency; the seed is in every
/// failure message.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n).unwrap()).unwrap()
    }
}

/// A writing session; `open` while it holds a transaction, with the jobs it
/// wrote in it (locked until it ends, so other sessions leave them alone).
struct Writer {
    client: Client,
    open: bool,
    touched: HashSet<i64>,
}

async fn committed_ids(client: &Client) -> Vec<i64> {
    client
        .query("SELECT id FROM crondeck.jobs ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The console's state, by job id, against a full read made now.
async fn assert_matches_full_reload(app: &App, check: &Client, seed: u64, step: usize) {
    let merged: BTreeMap<i64, &Job> = app.jobs.iter().map(|j| (j.id, j)).collect();
    assert_eq!(
        merged.len(),
        app.jobs.len(),
        "seed {seed} step {step}: a job is held twice"
    );
    let full = job_list(check).await.unwrap();
    let full: BTreeMap<i64, &Job> = full.iter().map(|j| (j.id, j)).collect();
    assert_eq!(
        merged.keys().collect::<Vec<_>>(),
        full.keys().collect::<Vec<_>>(),
        "seed {seed} step {step}: the incremental snapshot holds other jobs than a full reload"
    );
    for (id, job) in &full {
        assert_eq!(
            merged[id], *job,
            "seed {seed} step {step}: job {id} differs from a full reload"
        );
    }
    let unrunnable: HashSet<i64> = jobs_no_node_can_run(check)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(
        app.unrunnable, unrunnable,
        "seed {seed} step {step}: the jobs no node may run differ from a full reload"
    );
    // Derived state (health, name order, the widest name) equals the state
    // of a console given the full reload at the same instant.
    let mut fresh = App::new(app.target.clone(), true, false, app.now);
    fresh.set_jobs(
        job_list(check).await.unwrap(),
        app.nodes.clone(),
        app.typical_ms.clone(),
        unrunnable,
        app.now,
        app.now,
    );
    let order = |a: &App| a.view.iter().map(|&i| a.jobs[i].id).collect::<Vec<_>>();
    assert_eq!(
        order(app),
        order(&fresh),
        "seed {seed} step {step}: the table's order differs from a full reload's"
    );
    assert_eq!(app.longest_name, fresh.longest_name);
    assert_eq!(app.view.len(), app.jobs.len());
}

async fn refresh_into(app: &mut App, refresher: &mut Refresher, client: &mut Client) -> bool {
    let snapshot = refresher.refresh(client).await.expect("refresh");
    let full = snapshot.full;
    update(app, Action::Data(DataEvent::Jobs(Box::new(snapshot))));
    full
}

async fn random_sequence(seed: u64, steps: usize) {
    let db = TestDb::new().await;
    let admin = db.client().await;
    // The console connects as a viewer, as an operator's console would.
    let viewer = format!("{}_viewer", db.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {viewer} LOGIN; GRANT crondeck_viewer TO {viewer};"
        ))
        .await
        .unwrap();
    let mut console = db.spec_as(&viewer).connect().await.unwrap();
    let check = db.client().await;
    let mut writers = Vec::new();
    for _ in 0..3 {
        writers.push(Writer {
            client: db.client().await,
            open: false,
            touched: HashSet::new(),
        });
    }
    let mut rng = Rng(seed);
    let mut names = 0_u32;
    for _ in 0..20 {
        names += 1;
        let spec = spec(&mut rng, names);
        job_insert(&admin, &spec, Some(Utc::now()), None, None)
            .await
            .unwrap();
    }
    let mut app = App::new(db.url(), true, false, Utc::now());
    let mut refresher = Refresher::default();
    assert!(refresh_into(&mut app, &mut refresher, &mut console).await);
    assert_matches_full_reload(&app, &check, seed, 0).await;
    let mut incremental = 0;
    let mut nodes: Vec<String> = Vec::new();
    for step in 1..=steps {
        match rng.below(100) {
            0..=44 => {
                let w = rng.below(writers.len());
                if !writers[w].open && rng.below(2) == 0 {
                    writers[w].client.batch_execute("BEGIN").await.unwrap();
                    writers[w].open = true;
                }
                let locked_by_others: HashSet<i64> = writers
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != w)
                    .flat_map(|(_, o)| o.touched.iter().copied())
                    .collect();
                let free: Vec<i64> = committed_ids(&check)
                    .await
                    .into_iter()
                    .filter(|id| !locked_by_others.contains(id))
                    .collect();
                let writer = &mut writers[w];
                let op = rng.below(11);
                if op < 3 || free.is_empty() {
                    names += 1;
                    let spec = spec(&mut rng, names);
                    let job = job_insert(&writer.client, &spec, Some(Utc::now()), None, None)
                        .await
                        .unwrap();
                    writer.touched.insert(job.id);
                } else {
                    let id = free[rng.below(free.len())];
                    let sql = match op {
                        3 => "DELETE FROM crondeck.jobs WHERE id = $1",
                        4 => "UPDATE crondeck.jobs SET priority = priority + 1 WHERE id = $1",
                        5 => {
                            "UPDATE crondeck.jobs SET description = description || 'x' WHERE id = $1"
                        }
                        6 => {
                            "UPDATE crondeck.jobs SET nextcall = nextcall + interval '1 minute'
                             WHERE id = $1"
                        }
                        7 => {
                            "UPDATE crondeck.jobs SET active = NOT active,
                                 paused_at = CASE WHEN active THEN now() END
                             WHERE id = $1"
                        }
                        8 => "UPDATE crondeck.jobs SET name = 'r' || name WHERE id = $1",
                        // What a finish writes.
                        _ => {
                            "UPDATE crondeck.jobs SET last_status = 'succeeded',
                                 last_ended_at = now(), last_duration_ms = 5,
                                 failure_streak = 0
                             WHERE id = $1"
                        }
                    };
                    writer.client.execute(sql, &[&id]).await.unwrap();
                    if writer.open {
                        writer.touched.insert(id);
                    }
                }
                if !writer.open {
                    writer.touched.clear();
                }
            }
            45..=59 => {
                let open: Vec<usize> = (0..writers.len()).filter(|&i| writers[i].open).collect();
                if let Some(&w) = open.get(rng.below(open.len().max(1))) {
                    let end = if rng.below(4) == 0 {
                        "ROLLBACK"
                    } else {
                        "COMMIT"
                    };
                    writers[w].client.batch_execute(end).await.unwrap();
                    writers[w].open = false;
                    writers[w].touched.clear();
                }
            }
            60..=64 => {
                // The live nodes decide which jobs can run at all.
                if nodes.is_empty() || rng.below(2) == 0 {
                    let info = NodeInfo {
                        name: format!("node{step}"),
                        host: "test".into(),
                        pid: 1,
                        version: "test".into(),
                        workers: 1,
                        allow_shell: rng.below(2) == 0,
                        shell_allow: Vec::new(),
                        lease: Duration::from_secs(3600),
                        heartbeat: Duration::from_secs(60),
                    };
                    nodes.push(node_register(&admin, &info).await.unwrap());
                } else {
                    let id = nodes.remove(rng.below(nodes.len()));
                    admin
                        .execute(
                            "UPDATE crondeck.nodes SET stopped_at = now() WHERE id = $1",
                            &[&id],
                        )
                        .await
                        .unwrap();
                }
            }
            _ => {
                if !refresh_into(&mut app, &mut refresher, &mut console).await {
                    incremental += 1;
                }
                assert_matches_full_reload(&app, &check, seed, step).await;
            }
        }
    }
    for writer in &mut writers {
        if writer.open {
            writer.client.batch_execute("COMMIT").await.unwrap();
        }
    }
    assert!(!refresh_into(&mut app, &mut refresher, &mut console).await);
    assert_matches_full_reload(&app, &check, seed, steps + 1).await;
    assert!(
        incremental > 10,
        "seed {seed}: only {incremental} incremental refreshes were compared"
    );
}

fn spec(rng: &mut Rng, n: u32) -> JobSpec {
    let (kind, command) = if rng.below(3) == 0 {
        (ActionKind::Shell, "echo hello")
    } else {
        (ActionKind::Sql, "SELECT 1")
    };
    let mut spec = JobSpec::new(
        &format!("job{n}"),
        Schedule::parse("1h").unwrap(),
        kind,
        command,
    );
    spec.tags = vec![format!("t{}", n % 3)];
    spec
}

#[tokio::test]
async fn incremental_refresh_equals_a_full_reload_under_random_changes() {
    let seeds: Vec<u64> = match std::env::var("CRONDECK_REFRESH_SEED") {
        Ok(seed) => vec![seed.parse().expect("CRONDECK_REFRESH_SEED is a number")],
        Err(_) => vec![0x9e37_79b9_7f4a_7c15, 42, 7_777_777],
    };
    for seed in seeds {
        random_sequence(seed, 250).await;
    }
}

/// A transaction that wrote before a refresh and commits after it (out of
/// order with one that committed in between) is still seen by the next
/// refresh: what a sequence-number watermark would miss.
#[tokio::test]
async fn a_change_committed_after_a_later_one_is_not_missed() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let mut rng = Rng(1);
    let a = job_insert(&admin, &spec(&mut rng, 1), Some(Utc::now()), None, None)
        .await
        .unwrap();
    let b = job_insert(&admin, &spec(&mut rng, 2), Some(Utc::now()), None, None)
        .await
        .unwrap();
    let mut console = db.client().await;
    let mut app = App::new(db.url(), true, false, Utc::now());
    let mut refresher = Refresher::default();
    refresh_into(&mut app, &mut refresher, &mut console).await;

    let slow = db.client().await;
    slow.batch_execute("BEGIN").await.unwrap();
    slow.execute(
        "UPDATE crondeck.jobs SET priority = 77 WHERE id = $1",
        &[&a.id],
    )
    .await
    .unwrap();
    admin
        .execute(
            "UPDATE crondeck.jobs SET priority = 88 WHERE id = $1",
            &[&b.id],
        )
        .await
        .unwrap();
    assert!(!refresh_into(&mut app, &mut refresher, &mut console).await);
    let priority = |app: &App, id: i64| {
        app.jobs
            .iter()
            .find(|j| j.id == id)
            .map(|j| j.spec.priority)
    };
    assert_eq!(priority(&app, b.id), Some(88));
    assert_eq!(
        priority(&app, a.id),
        Some(a.spec.priority),
        "not committed yet"
    );
    slow.batch_execute("COMMIT").await.unwrap();
    assert!(!refresh_into(&mut app, &mut refresher, &mut console).await);
    assert_eq!(priority(&app, a.id), Some(77));

    // A removal reaches the console as one.
    admin
        .execute("DELETE FROM crondeck.jobs WHERE id = $1", &[&b.id])
        .await
        .unwrap();
    assert!(!refresh_into(&mut app, &mut refresher, &mut console).await);
    assert_eq!(priority(&app, b.id), None);
    let ids: HashMap<i64, ()> = app.jobs.iter().map(|j| (j.id, ())).collect();
    assert_eq!(ids.len(), 1);
}

/// Nobody but the trigger writes tombstones: a hostile admin cannot forge or
/// erase one (which would make consoles show a removed job, or drop a live one).
#[tokio::test]
async fn tombstones_are_written_only_by_the_trigger() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    let login = format!("{}_admin", db.name);
    admin
        .batch_execute(&format!(
            "CREATE ROLE {login} LOGIN; GRANT crondeck_admin TO {login};"
        ))
        .await
        .unwrap();
    let hostile = db.spec_as(&login).connect().await.unwrap();
    for sql in [
        "INSERT INTO crondeck.jobs_removed (job_id, change_xid) VALUES (1, 999999999)",
        "DELETE FROM crondeck.jobs_removed",
        "UPDATE crondeck.jobs_removed SET change_xid = 0",
    ] {
        let error = hostile.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}"
        );
    }
    // Yet removing a job, which the admin may, leaves its tombstone.
    let mut rng = Rng(3);
    let job = job_insert(&admin, &spec(&mut rng, 1), Some(Utc::now()), None, None)
        .await
        .unwrap();
    hostile
        .execute("DELETE FROM crondeck.jobs WHERE id = $1", &[&job.id])
        .await
        .unwrap();
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM crondeck.jobs_removed WHERE job_id = $1",
            &[&job.id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

/// `crondeck list` writes its rows as they arrive; past the first 1,000
/// (which set the column widths) every job is still listed exactly once, in
/// order, and the JSON form is one valid array.
#[tokio::test]
async fn list_streams_every_job_once() {
    let db = TestDb::new().await;
    let admin = db.client().await;
    admin
        .execute(
            "INSERT INTO crondeck.jobs (name, schedule_kind, interval_count, interval_unit,
                 nextcall, action_kind, command, tags)
             SELECT 'bulk-' || lpad(g::text, 4, '0'), 'every', 1, 'hours',
                    now() + interval '1 hour', 'sql', 'SELECT 1',
                    CASE WHEN g % 2 = 0 THEN ARRAY['even'] ELSE ARRAY['odd'] END
             FROM generate_series(1, 1500) g",
            &[],
        )
        .await
        .unwrap();
    let output = db.run(&["list"]);
    assert!(output.status.success(), "{:?}", common::text(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("STATE"), "{}", lines[0]);
    assert_eq!(lines.iter().filter(|l| l.starts_with("STATE")).count(), 1);
    let names: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    let expected: Vec<String> = (1..=1500).map(|g| format!("bulk-{g:04}")).collect();
    assert_eq!(names, expected);
    // Every row is aligned on the header's columns (no cell is wider later).
    let name_at = lines[0].find("NAME").unwrap();
    assert!(lines[1..].iter().all(|l| l[name_at..].starts_with("bulk-")));

    let output = db.run(&["list", "--json", "--tag", "even"]);
    assert!(output.status.success(), "{:?}", common::text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed = json.as_array().unwrap();
    assert_eq!(listed.len(), 750);
    assert!(listed
        .iter()
        .all(|j| j["tags"] == serde_json::json!(["even"])));

    let output = db.run(&["list", "--json", "--tag", "none-such"]);
    assert_eq!(String::from_utf8(output.stdout).unwrap().trim(), "[]");
}
