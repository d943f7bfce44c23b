//! The scheduler as real `crondeck scheduler` processes: crash rescue after
//! `kill -9`, atomic SQL jobs under a crash, flat memory under huge output,
//! and the `run --wait` / `history` commands.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::{scalar, text, wait_for, TestDb};
use crondeck::scheduler::{NodeConfig, NodeHandle};

/// A headless node process with a short lease, so rescue is quick.
fn spawn_node(db: &TestDb, name: &str) -> Child {
    db.cli()
        .args([
            "scheduler",
            "--allow-shell",
            "--node-name",
            name,
            "--heartbeat",
            "500ms",
            "--lease",
            "2s",
        ])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crondeck scheduler")
}

fn kill_9(child: &mut Child) {
    // SIGKILL: no shutdown path runs.
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether a process exists (zombies count as gone: nothing reaps them in
/// some containers).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.split_whitespace().nth(2).is_some_and(|s| s != "Z"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_mid_run_is_rescued_and_its_job_processes_die() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let command = format!(
        "echo $$ >> {p}; (trap '' TERM; sleep 300) & echo $! >> {p}; sleep 300",
        p = pids.display()
    );
    let out = db.run(&[
        "add",
        "long",
        "--every",
        "3s",
        "--shell",
        &command,
        "--timeout",
        "1m",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));

    let mut victim = spawn_node(&db, "victim");
    let run_id: i64 = wait_for(Duration::from_secs(20), "the long job to start on the victim", || async {
        client
            .query_opt("SELECT id FROM crondeck.runs WHERE status = 'running' AND node_name = 'victim'", &[])
            .await
            .unwrap()
            .map(|r| r.get(0))
    })
    .await;
    let job_pids: Vec<i32> = wait_for(Duration::from_secs(5), "the job's pids", || async {
        let text = std::fs::read_to_string(&pids).unwrap_or_default();
        let pids: Vec<i32> = text
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        (pids.len() >= 2).then_some(pids)
    })
    .await;
    kill_9(&mut victim);

    // The job's processes (including one that ignores SIGTERM) do not outlive
    // their node, let alone their timeout.
    wait_for(
        Duration::from_secs(10),
        "the orphaned job processes to die",
        || async { job_pids.iter().all(|p| !alive(*p)).then_some(()) },
    )
    .await;

    // A surviving node rescues the run within the lease plus a few seconds,
    // and runs the job's next tick.
    let rescuer = NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            name: "rescuer".into(),
            allow_shell: true,
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(2),
            shutdown_grace: Duration::from_millis(200),
            kill_grace: Duration::from_millis(200),
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let status: String = wait_for(Duration::from_secs(10), "the rescue", || async {
        let status: String = scalar(
            &client,
            "SELECT status FROM crondeck.runs WHERE id = $1",
            &[&run_id],
        )
        .await;
        (status != "running").then_some(status)
    })
    .await;
    assert_eq!(status, "abandoned");
    let error: String = scalar(
        &client,
        "SELECT error FROM crondeck.runs WHERE id = $1",
        &[&run_id],
    )
    .await;
    assert!(error.contains("victim"), "{error}");
    wait_for(
        Duration::from_secs(15),
        "the next tick on the rescuer",
        || async {
            let n: i64 = scalar(
                &client,
                "SELECT count(*) FROM crondeck.runs WHERE node_name = 'rescuer' AND id > $1",
                &[&run_id],
            )
            .await;
            (n > 0).then_some(())
        },
    )
    .await;
    rescuer.shutdown().await.unwrap();
    let running: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.runs WHERE status = 'running'",
        &[],
    )
    .await;
    assert_eq!(running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sql_job_killed_with_its_node_leaves_neither_effect_nor_success() {
    let db = TestDb::new().await;
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE public.ledger (n int); GRANT INSERT ON public.ledger TO crondeck_job",
        )
        .await
        .unwrap();
    let out = db.run(&[
        "add",
        "ledger",
        "--every",
        "1h",
        "--sql",
        "INSERT INTO public.ledger VALUES (1); SELECT pg_sleep(2)",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut node = spawn_node(&db, "doomed");
    let run_id: i64 = wait_for(Duration::from_secs(20), "the SQL job to start", || async {
        client
            .query_opt("SELECT id FROM crondeck.runs WHERE status = 'running'", &[])
            .await
            .unwrap()
            .map(|r| r.get(0))
    })
    .await;
    kill_9(&mut node);
    // Once the orphaned backend notices and the lease runs out, the run is
    // abandoned: no success record, and no effect.
    let rescuer = NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            name: "rescuer".into(),
            heartbeat: Duration::from_millis(500),
            lease: Duration::from_secs(2),
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let status: String = wait_for(Duration::from_secs(15), "the rescue", || async {
        let status: String = scalar(
            &client,
            "SELECT status FROM crondeck.runs WHERE id = $1",
            &[&run_id],
        )
        .await;
        (status != "running").then_some(status)
    })
    .await;
    // Give the orphaned backend time to finish its sleep and roll back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    rescuer.shutdown().await.unwrap();
    assert_eq!(status, "abandoned");
    let effects: i64 = scalar(&client, "SELECT count(*) FROM public.ledger", &[]).await;
    assert_eq!(
        effects, 0,
        "the effect committed without its success record"
    );

    // And the other half of the promise: a run that completes has both.
    let mut node = spawn_node(&db, "healthy");
    let out = db.run(&["run", "ledger"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let done: i64 = wait_for(Duration::from_secs(20), "a successful run", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
            &[],
        )
        .await;
        (n > 0).then_some(n)
    })
    .await;
    kill_9(&mut node);
    let effects: i64 = scalar(&client, "SELECT count(*) FROM public.ledger", &[]).await;
    assert_eq!(effects, done, "every success record has its effect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_printing_a_gibibyte_keeps_the_node_flat_and_is_stored_capped() {
    let db = TestDb::new().await;
    let client = db.client().await;
    let out = db.run(&[
        "add",
        "noisy",
        "--every",
        "1h",
        "--shell",
        "head -c 1073741824 /dev/zero | tr '\\0' x; echo done >&2",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut node = spawn_node(&db, "noisy-node");
    let pid = i32::try_from(node.id()).unwrap();
    let baseline = wait_for(Duration::from_secs(20), "the job to start", || async {
        let n: i64 = scalar(&client, "SELECT count(*) FROM crondeck.runs", &[]).await;
        (n > 0).then(|| peak_rss_kib(pid))
    })
    .await;
    let (stdout, dropped): (String, i64) =
        wait_for(Duration::from_secs(120), "the run to end", || async {
            let row = client
                .query_one(
                    "SELECT status, stdout, stdout_dropped FROM crondeck.runs LIMIT 1",
                    &[],
                )
                .await
                .unwrap();
            let status: String = row.get(0);
            (status != "running").then(|| {
                (
                    row.get::<_, Option<String>>(1).unwrap_or_default(),
                    row.get(2),
                )
            })
        })
        .await;
    let peak = peak_rss_kib(pid);
    kill_9(&mut node);
    assert!(
        stdout.len() < 64 * 1024,
        "stored output is {} bytes",
        stdout.len()
    );
    assert!(dropped > 1_000_000_000, "dropped {dropped}");
    // 1 GiB went through the node; its peak memory grew by a few MiB at most.
    assert!(
        peak.saturating_sub(baseline) < 16 * 1024,
        "peak RSS grew from {baseline} KiB to {peak} KiB"
    );
}

fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_wait_prints_the_result_and_exits_with_its_status_and_history_lists_runs() {
    let db = TestDb::new().await;
    for args in [
        vec![
            "add",
            "greet",
            "--manual",
            "--shell",
            "echo hello from the job; echo oops >&2",
        ],
        vec!["add", "broken", "--manual", "--sql", "SELECT 1/0"],
    ] {
        let out = db.run(&args);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let mut node = spawn_node(&db, "n");
    let out = db.run(&["run", "greet", "--wait", "--wait-timeout", "30s"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout} {stderr}");
    assert!(
        stdout.contains("succeeded") && stdout.contains("hello from the job"),
        "{stdout}"
    );
    assert!(stdout.contains("oops"), "{stdout}");

    let out = db.run(&["run", "broken", "--wait", "--wait-timeout", "30s"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(6), "{stdout} {stderr}");
    assert!(
        stdout.contains("22012") && stdout.contains("division by zero"),
        "{stdout}"
    );

    let out = db.run(&["history", "greet"]);
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert!(
        stdout.contains("succeeded") && stdout.contains("manual"),
        "{stdout}"
    );
    let out = db.run(&["history", "broken", "--json"]);
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs[0]["sqlstate"], "22012");
    kill_9(&mut node);

    let out = db.run(&["history", "ghost"]);
    assert_eq!(out.status.code(), Some(4));
    // The list gains the last result and duration.
    let out = db.run(&["list"]);
    let (stdout, _) = text(&out);
    assert!(stdout.contains("failed (SQLSTATE 22012)"), "{stdout}");
}

/// Regression (issue 11): shell jobs inherited the node's whole environment,
/// `DATABASE_URL` and `PGPASSWORD` included, and what a job prints is run
/// output any viewer reads. A real node started with secrets in its
/// environment runs a job that dumps its own: only the documented variables
/// and the run's `CRONDECK_*` ones are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_job_gets_a_scrubbed_environment_without_the_nodes_secrets() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("env");
    let command = format!("env > {}.tmp && mv {0}.tmp {0}", dump.display());
    let added = db.run(&["add", "envdump", "--every", "1h", "--shell", &command]);
    assert!(added.status.success(), "{:?}", text(&added));
    let ran = db.run(&["run", "envdump"]);
    assert!(ran.status.success(), "{:?}", text(&ran));
    let mut node = db
        .cli()
        .args([
            "scheduler",
            "--allow-shell",
            "--heartbeat",
            "500ms",
            "--lease",
            "2s",
        ])
        .env("DATABASE_URL", db.url())
        .env("PGPASSWORD", "s3cret-pw")
        .env("PGUSER", "someone")
        .env("CRONDECK_DATABASE_URL", "postgres://u:s3cret-pw@h/db")
        .env("API_TOKEN", "s3cret-token")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn crondeck scheduler");
    let env = wait_for(Duration::from_secs(30), "the job's environment", || async {
        std::fs::read_to_string(&dump).ok()
    })
    .await;
    kill_9(&mut node);
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, _)| n)
        .collect();
    assert!(!env.contains("s3cret"), "a secret reached the job:\n{env}");
    for gone in [
        "DATABASE_URL",
        "PGPASSWORD",
        "PGUSER",
        "CRONDECK_DATABASE_URL",
        "API_TOKEN",
    ] {
        assert!(!names.contains(&gone), "{gone} reached the job:\n{env}");
    }
    for kept in ["PATH", "LC_ALL", "TZ", "CRONDECK_JOB", "CRONDECK_RUN_ID"] {
        assert!(names.contains(&kept), "{kept} is missing:\n{env}");
    }
    let allowed = |n: &str| {
        crondeck::scheduler::JOB_ENV.contains(&n)
            || n.starts_with("LC_")
            || n.starts_with("CRONDECK_")
            // Set by sh itself.
            || matches!(n, "PWD" | "SHLVL" | "_" | "OLDPWD")
    };
    let extra: Vec<_> = names.iter().filter(|n| !allowed(n)).collect();
    assert!(
        extra.is_empty(),
        "not on the documented list: {extra:?}\n{env}"
    );
}

/// Logs redirected to a file (a journal, `2> node.log`) are plain text: no
/// colour escape codes, whatever the log level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_log_redirected_to_a_file_has_no_escape_codes() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut node = db
        .cli()
        .args(["scheduler", "--heartbeat", "500ms", "--lease", "2s"])
        .env("RUST_LOG", "debug")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("spawn crondeck scheduler");
    let logged = wait_for(Duration::from_secs(30), "log lines", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.lines().count() >= 3).then_some(text)
    })
    .await;
    kill_9(&mut node);
    assert!(
        !logged.contains('\u{1b}'),
        "escape codes in the log file:\n{}",
        logged.escape_debug()
    );
}
