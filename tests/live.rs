//! Live runs (issues 12.2, 14.1, 14.2), against a real PostgreSQL server and
//! real processes: a running run's output and progress reach its row while
//! it runs (shown by causality: the job is blocked on a marker the test
//! creates only after it saw the line in the database), a hostile job cannot
//! hurt the node through its progress descriptor, SQL jobs' notices become
//! their log, and a node whose lease ran out writes nothing.

mod common;

use std::path::Path;
use std::time::Duration;

use common::faults::{add_job, running_on, work_dir};
use common::{scalar, text, wait_for, TestDb};
use crondeck::db::nodes::{node_register, NodeInfo};
use crondeck::db::runs::{run_live_update, LiveUpdate, Progress};
use crondeck::job::ActionKind;
use crondeck::scheduler::{NodeConfig, NodeHandle};
use tokio_postgres::Client;

const WAIT: Duration = Duration::from_secs(30);

async fn start_node(db: &TestDb, name: &str) -> NodeHandle {
    NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            name: name.into(),
            workers: 3,
            allow_shell: true,
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(3),
            shutdown_grace: Duration::from_secs(5),
            ..NodeConfig::default()
        },
    )
    .await
    .expect("start a node")
}

/// A shell loop waiting for `marker` to exist.
fn wait_marker(marker: &Path) -> String {
    format!("while [ ! -e '{}' ]; do sleep 0.05; done", marker.display())
}

#[derive(Debug, Clone, PartialEq)]
struct Live {
    status: String,
    stdout: Option<String>,
    stderr: Option<String>,
    done: Option<i64>,
    total: Option<i64>,
    progress_at: bool,
    output_at: bool,
}

async fn live(client: &Client, run: i64) -> Live {
    let row = client
        .query_one(
            "SELECT status, stdout, stderr, progress_done, progress_total,
                    progress_at IS NOT NULL, output_at IS NOT NULL
             FROM crondeck.runs WHERE id = $1",
            &[&run],
        )
        .await
        .unwrap();
    Live {
        status: row.get(0),
        stdout: row.get(1),
        stderr: row.get(2),
        done: row.get(3),
        total: row.get(4),
        progress_at: row.get(5),
        output_at: row.get(6),
    }
}

/// Wait until the run's row satisfies `check`, asserting it is still
/// running when it does (the job is blocked on a marker: the row can only
/// have been written live).
async fn wait_live(client: &Client, run: i64, what: &str, check: impl Fn(&Live) -> bool) -> Live {
    let seen = wait_for(WAIT, what, || async {
        let row = live(client, run).await;
        check(&row).then_some(row)
    })
    .await;
    assert_eq!(seen.status, "running", "{what}: {seen:?}");
    seen
}

async fn wait_end(client: &Client, run: i64) -> Live {
    wait_for(WAIT, "the run to end", || async {
        let row = live(client, run).await;
        (row.status != "running").then_some(row)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_jobs_output_and_progress_reach_its_run_while_it_runs() {
    let dir = work_dir("live-shell");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let (go, finish) = (dir.join("go"), dir.join("finish"));
    let command = format!(
        "echo first line; echo oops >&2; echo 'progress 1/4' >&$CRONDECK_PROGRESS_FD; {}; \
         echo second line; echo 'done=3 remaining=1' >&$CRONDECK_PROGRESS_FD; {}; \
         echo last line; echo 'progress 4/4' >&9",
        wait_marker(&go),
        wait_marker(&finish)
    );
    add_job(
        &mut client,
        "printer",
        "every 1h",
        ActionKind::Shell,
        &command,
        None,
    )
    .await;
    let node = start_node(&db, "live-a").await;
    let run = wait_for(WAIT, "the run to start", || async {
        running_on(&client, "printer", "live-a").await
    })
    .await;

    // Printed before `go` exists, seen while the job waits for `go`.
    let first = wait_live(&client, run, "the first line and progress", |r| {
        r.stdout.as_deref() == Some("first line\n")
            && r.stderr.as_deref() == Some("oops\n")
            && r.done == Some(1)
    })
    .await;
    assert_eq!(first.stderr.as_deref(), Some("oops\n"));
    assert_eq!(first.total, Some(4));
    assert!(first.progress_at && first.output_at, "{first:?}");
    assert!(!go.exists());

    // `crondeck show` and `history --json` of the running run.
    let shown = db.run(&["show", "printer"]);
    let (out, err) = text(&shown);
    assert!(shown.status.success(), "{err}");
    assert!(out.contains("running now:"), "{out}");
    assert!(out.contains("progress       1/4 (25%)"), "{out}");
    assert!(out.contains("first line"), "{out}");
    let history = db.run(&["history", "printer", "--json"]);
    let (out, err) = text(&history);
    assert!(history.status.success(), "{err}");
    let runs: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(runs[0]["status"], "running");
    assert_eq!(runs[0]["stdout"], "first line\n");
    assert_eq!(runs[0]["progress_done"], 1);
    assert_eq!(runs[0]["progress_total"], 4);
    assert!(runs[0]["progress_at"].is_string(), "{out}");

    std::fs::write(&go, "").unwrap();
    let second = wait_live(&client, run, "the second line", |r| {
        r.stdout.as_deref() == Some("first line\nsecond line\n") && r.done == Some(3)
    })
    .await;
    assert_eq!(second.total, Some(4));
    assert!(!finish.exists());

    std::fs::write(&finish, "").unwrap();
    let end = wait_end(&client, run).await;
    assert_eq!(end.status, "succeeded");
    // The record at the end is complete and authoritative.
    assert_eq!(
        end.stdout.as_deref(),
        Some("first line\nsecond line\nlast line\n")
    );
    assert_eq!((end.done, end.total), (Some(4), Some(4)));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_progress_writer_is_ignored_and_the_descriptor_leaks_nowhere() {
    let dir = work_dir("live-hostile");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let marker = dir.join("go");
    // 8 MiB without a newline, ending like a valid line; binary garbage;
    // numbers out of range; done beyond total; then one valid line.
    let command = format!(
        "fd=$CRONDECK_PROGRESS_FD; \
         ls -l /proc/$$/fd; \
         head -c 8388608 /dev/zero | tr '\\0' 'x' >&$fd; echo ' progress 9/10' >&$fd; \
         head -c 65536 /dev/urandom >&$fd; echo >&$fd; \
         printf 'progress -1/5\\nprogress 6/5\\nprogress 99999999999999999999/1\\n' >&$fd; \
         printf 'done=1 remaining=x\\nprogress 1/2 extra\\n\\0progress 1/1\\n' >&$fd; \
         echo 'progress 2/5' >&$fd; \
         printf 'progress 3/' >&$fd; {}; echo survived",
        wait_marker(&marker)
    );
    add_job(
        &mut client,
        "hostile",
        "every 1h",
        ActionKind::Shell,
        &command,
        None,
    )
    .await;
    // A second job running alongside: it must see no descriptor of the
    // first (and the first none of it).
    let quiet = format!("ls -l /proc/$$/fd; {}", wait_marker(&marker));
    add_job(
        &mut client,
        "quiet",
        "every 1h",
        ActionKind::Shell,
        &quiet,
        None,
    )
    .await;
    let node = start_node(&db, "live-b").await;
    let run = wait_for(WAIT, "the hostile run", || async {
        running_on(&client, "hostile", "live-b").await
    })
    .await;
    let quiet_run = wait_for(WAIT, "the quiet run", || async {
        running_on(&client, "quiet", "live-b").await
    })
    .await;
    let seen = wait_live(&client, run, "the valid progress line", |r| {
        r.done.is_some() && r.stdout.is_some()
    })
    .await;
    // Only the one valid line counts; the unterminated `progress 3/` is
    // not a line (yet).
    assert_eq!((seen.done, seen.total), (Some(2), Some(5)), "{seen:?}");
    // Both jobs get exactly stdin, stdout, stderr and the progress fd.
    let hostile_fds = fds(seen.stdout.as_deref().unwrap_or(""));
    let quiet_seen = wait_live(&client, quiet_run, "the quiet job's fds", |r| {
        r.stdout.is_some()
    })
    .await;
    let quiet_fds = fds(quiet_seen.stdout.as_deref().unwrap_or(""));
    // Each job has its own progress pipe as fd 9 ...
    let (hostile_pipe, quiet_pipe) = (&hostile_fds[&9], &quiet_fds[&9]);
    assert!(hostile_pipe.starts_with("pipe:"), "{hostile_fds:?}");
    assert!(quiet_pipe.starts_with("pipe:"), "{quiet_fds:?}");
    assert_ne!(hostile_pipe, quiet_pipe);
    // ... and nothing else of the node: beyond stdin, stdout, stderr and
    // fd 9 only what the test process itself passes to every child (fds it
    // inherited without close-on-exec, such as cargo's jobserver).
    let inherited = inheritable_fds_of_this_process();
    for (name, table) in [("hostile", &hostile_fds), ("quiet", &quiet_fds)] {
        for (fd, target) in table.iter() {
            assert!(
                [0, 1, 2, 9].contains(fd) || inherited.contains(fd),
                "{name} job got fd {fd} -> {target}: {table:?}"
            );
        }
        assert!(!table.values().any(|t| t
            == if name == "quiet" {
                hostile_pipe
            } else {
                quiet_pipe
            }));
    }

    std::fs::write(&marker, "").unwrap();
    let end = wait_end(&client, run).await;
    assert_eq!(end.status, "succeeded", "{end:?}");
    assert!(end.stdout.unwrap().ends_with("survived\n"));
    // `progress 3/` never became a valid line.
    assert_eq!((end.done, end.total), (Some(2), Some(5)));
    node.shutdown().await.unwrap();
}

/// fd -> target from `ls -l /proc/PID/fd` output.
fn fds(listing: &str) -> std::collections::BTreeMap<i32, String> {
    listing
        .lines()
        .filter_map(|line| {
            let (left, target) = line.split_once(" -> ")?;
            let fd = left.split_whitespace().last()?.parse().ok()?;
            Some((fd, target.to_string()))
        })
        .collect()
}

/// This process's descriptors without close-on-exec: every child of it
/// gets them, whatever crondeck does.
fn inheritable_fds_of_this_process() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| {
            // SAFETY: F_GETFD only reads the descriptor's flags.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags >= 0 && flags & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// The job role may read the marker table (an SQL job waits on it).
async fn marker_table(client: &Client) {
    client
        .batch_execute(
            "CREATE TABLE public.marker (step int);
             GRANT SELECT ON public.marker TO PUBLIC;",
        )
        .await
        .unwrap();
}

fn sql_wait_step(step: i32) -> String {
    format!(
        "WHILE NOT EXISTS (SELECT 1 FROM public.marker WHERE step = {step}) LOOP
             PERFORM pg_sleep(0.05);
         END LOOP;"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sql_jobs_notices_and_progress_reach_its_run_while_it_runs() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    marker_table(&client).await;
    let command = format!(
        "DO $$ BEGIN
             RAISE NOTICE 'starting batch';
             RAISE NOTICE 'crondeck:progress 1/3';
             {}
             RAISE WARNING 'half way' USING DETAIL = 'rows 1-2', HINT = 'none';
             RAISE INFO 'crondeck:done=2 remaining=1';
             {}
             RAISE NOTICE 'crondeck:progress 3/3';
             RAISE NOTICE 'crondeck:garbage';
             RAISE NOTICE 'finished';
         END $$",
        sql_wait_step(1),
        sql_wait_step(2)
    );
    add_job(
        &mut client,
        "batch",
        "every 1h",
        ActionKind::Sql,
        &command,
        Some(Duration::from_secs(60)),
    )
    .await;
    let node = start_node(&db, "live-c").await;
    let run = wait_for(WAIT, "the run to start", || async {
        running_on(&client, "batch", "live-c").await
    })
    .await;

    let first = wait_live(&client, run, "the first notice", |r| r.done == Some(1)).await;
    assert_eq!(first.stdout.as_deref(), Some("NOTICE: starting batch\n"));
    assert_eq!(first.total, Some(3));

    client
        .execute("INSERT INTO public.marker VALUES (1)", &[])
        .await
        .unwrap();
    let second = wait_live(&client, run, "the warning", |r| r.done == Some(2)).await;
    assert_eq!(
        second.stdout.as_deref(),
        Some("NOTICE: starting batch\nWARNING: half way\nDETAIL: rows 1-2\nHINT: none\n")
    );
    assert_eq!(second.total, Some(3));

    client
        .execute("INSERT INTO public.marker VALUES (2)", &[])
        .await
        .unwrap();
    let end = wait_end(&client, run).await;
    assert_eq!(end.status, "succeeded", "{end:?}");
    assert_eq!(
        end.stdout.as_deref(),
        Some(
            "NOTICE: starting batch\nWARNING: half way\nDETAIL: rows 1-2\nHINT: none\n\
             NOTICE: finished\n"
        )
    );
    assert_eq!((end.done, end.total), (Some(3), Some(3)));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sql_jobs_notices_are_recorded_when_it_fails() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let command = "DO $$ BEGIN
             RAISE NOTICE 'step 1 done';
             RAISE INFO 'crondeck:progress 1/2';
             RAISE WARNING 'step 2 is about to fail';
             PERFORM 1 / 0;
         END $$";
    add_job(
        &mut client,
        "fails",
        "every 1h",
        ActionKind::Sql,
        command,
        None,
    )
    .await;
    // A job that raises nothing keeps no output at all.
    add_job(
        &mut client,
        "silent",
        "every 1h",
        ActionKind::Sql,
        "SELECT 1",
        None,
    )
    .await;
    let node = start_node(&db, "live-d").await;
    let (status, stdout, sqlstate, done): (String, Option<String>, Option<String>, Option<i64>) =
        wait_for(WAIT, "the failed run", || async {
            client
                .query_opt(
                    "SELECT r.status, r.stdout, r.sqlstate, r.progress_done
                     FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                     WHERE j.name = 'fails' AND r.status <> 'running'",
                    &[],
                )
                .await
                .unwrap()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        })
        .await;
    assert_eq!(status, "failed");
    assert_eq!(sqlstate.as_deref(), Some("22012"));
    assert_eq!(
        stdout.as_deref(),
        Some("NOTICE: step 1 done\nWARNING: step 2 is about to fail\n")
    );
    assert_eq!(done, Some(1));
    let silent: Option<String> = wait_for(WAIT, "the silent run", || async {
        client
            .query_opt(
                "SELECT r.stdout FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
                 WHERE j.name = 'silent' AND r.status = 'succeeded'",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get::<_, Option<String>>(0))
    })
    .await;
    assert_eq!(silent, None);
    node.shutdown().await.unwrap();
}

/// The fence, attacked the way a node that lost its lease would: it writes
/// output and progress for a run it still believes it owns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_lease_ran_out_writes_no_live_output() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let job = add_job(
        &mut client,
        "j",
        "every 1h",
        ActionKind::Shell,
        "true",
        None,
    )
    .await;
    let info = NodeInfo {
        name: "frozen".into(),
        host: "test".into(),
        pid: 1,
        version: "test".into(),
        workers: 1,
        allow_shell: true,
        shell_allow: Vec::new(),
        lease: Duration::from_secs(30),
        heartbeat: Duration::from_secs(5),
    };
    let node = node_register(&client, &info).await.unwrap();
    let other = node_register(
        &client,
        &NodeInfo {
            name: "other".into(),
            ..info.clone()
        },
    )
    .await
    .unwrap();
    let run: i64 = scalar(
        &client,
        "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, node_id, node_name,
             started_at)
         VALUES ($1, 'manual', now(), 'running', $2, 'frozen', now()) RETURNING id",
        &[&job, &node],
    )
    .await;
    let update = |text: &str, done: i64| LiveUpdate {
        stdout: Some(text.into()),
        stderr: Some(String::new()),
        progress: Some(Progress {
            done,
            total: Some(10),
        }),
        ..LiveUpdate::default()
    };
    // Alive: written.
    assert!(run_live_update(&client, run, &node, &update("alive\n", 1))
        .await
        .unwrap());
    // Another live node cannot write the run.
    assert!(
        !run_live_update(&client, run, &other, &update("not mine\n", 2))
            .await
            .unwrap()
    );
    // The lease runs out (nobody rescued the run yet): nothing more lands.
    client
        .execute(
            "UPDATE crondeck.nodes SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
            &[&node],
        )
        .await
        .unwrap();
    assert!(!run_live_update(&client, run, &node, &update("late\n", 3))
        .await
        .unwrap());
    let row = live(&client, run).await;
    assert_eq!(row.stdout.as_deref(), Some("alive\n"));
    assert_eq!((row.done, row.total), (Some(1), Some(10)));
    // Nor once the run has ended.
    client
        .execute(
            "UPDATE crondeck.nodes SET heartbeat_at = now() WHERE id = $1",
            &[&node],
        )
        .await
        .unwrap();
    client
        .execute(
            "UPDATE crondeck.runs SET status = 'succeeded', ended_at = now() WHERE id = $1",
            &[&run],
        )
        .await
        .unwrap();
    assert!(!run_live_update(&client, run, &node, &update("after\n", 4))
        .await
        .unwrap());
    assert_eq!(live(&client, run).await.stdout.as_deref(), Some("alive\n"));
}

/// End to end: a node that finds its lease lost stops writing, and what it
/// wrote before stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_stops_writing_its_runs_output() {
    let dir = work_dir("live-lost");
    let db = TestDb::new().await;
    let mut client = db.client().await;
    // Prints a numbered line every 50 ms, progress with it, forever.
    let command = "i=0; while :; do i=$((i+1)); echo line $i; \
                   echo \"progress $i\" >&$CRONDECK_PROGRESS_FD; sleep 0.05; done";
    add_job(
        &mut client,
        "chatty",
        "every 1h",
        ActionKind::Shell,
        command,
        None,
    )
    .await;
    let _ = dir;
    let node = start_node(&db, "live-e").await;
    let run = wait_for(WAIT, "the run to start", || async {
        running_on(&client, "chatty", "live-e").await
    })
    .await;
    wait_live(&client, run, "a few live writes", |r| {
        r.done.is_some_and(|d| d >= 10)
    })
    .await;
    // The lease runs out, as another node sees it: no rescue, so the row
    // stays `running` and only the fence stands between it and the node.
    client
        .execute(
            "UPDATE crondeck.nodes SET heartbeat_at = now() - interval '1 hour' WHERE name = 'live-e'",
            &[],
        )
        .await
        .unwrap();
    // The node notices at its next heartbeat and registers anew.
    wait_for(WAIT, "the node to register anew", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.nodes WHERE name = 'live-e'",
            &[],
        )
        .await;
        (n >= 2).then_some(())
    })
    .await;
    // (A rescue may mark the run abandoned meanwhile; the output and
    // progress are the node's alone to write, and it no longer does.)
    let frozen = live(&client, run).await;
    // Several live intervals later nothing changed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = live(&client, run).await;
    assert_eq!(
        (&frozen.stdout, &frozen.stderr, frozen.done, frozen.total),
        (&later.stdout, &later.stderr, later.done, later.total)
    );
    node.shutdown().await.unwrap();
}

/// However fast a job prints and reports, its run is written at most about
/// once a second while it runs (counted by a trigger on the runs table).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_writes_are_at_most_about_one_a_second() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE public.live_writes (run_id bigint, at timestamptz);
             CREATE FUNCTION public.count_live_write() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO public.live_writes VALUES (NEW.id, clock_timestamp());
                 RETURN NEW;
             END $$;
             CREATE TRIGGER count_live_writes AFTER UPDATE ON crondeck.runs FOR EACH ROW
             WHEN (OLD.status = 'running' AND NEW.status = 'running')
             EXECUTE FUNCTION public.count_live_write();",
        )
        .await
        .unwrap();
    // About 300 lines and progress reports over 3 s or more.
    let command = "i=0; while [ $i -lt 300 ]; do echo line $i; \
                   echo \"progress $i/300\" >&$CRONDECK_PROGRESS_FD; i=$((i+1)); sleep 0.01; done";
    add_job(
        &mut client,
        "fast",
        "every 1h",
        ActionKind::Shell,
        command,
        None,
    )
    .await;
    let node = start_node(&db, "live-f").await;
    let run = wait_for(WAIT, "the run to start", || async {
        running_on(&client, "fast", "live-f").await
    })
    .await;
    let end = wait_end(&client, run).await;
    assert_eq!(end.status, "succeeded");
    let (writes, span_ms): (i64, Option<f64>) = {
        let row = client
            .query_one(
                "SELECT count(*),
                        (extract(epoch FROM max(r.ended_at) - min(r.started_at)) * 1000)::float8
                 FROM public.live_writes w JOIN crondeck.runs r ON r.id = w.run_id
                 WHERE w.run_id = $1",
                &[&run],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let span_s = (span_ms.unwrap_or(0.0) / 1000.0).floor() as i64;
    assert!(
        writes >= 2,
        "the output was not streamed: {writes} live writes"
    );
    assert!(
        writes <= span_s + 2,
        "{writes} live writes during a run of {span_s} s"
    );
    node.shutdown().await.unwrap();
}
