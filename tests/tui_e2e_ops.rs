//! The console end to end, issue 12: the real binary in a real terminal
//! (tmux) against a test database. Cancelling a running run, paging the
//! history, the quit dialog (stay, wait with a countdown, a second Ctrl-C
//! stops the runs), and the console that does not join as a node (read-only,
//! external database) or cannot reach its database (STALE, not an exit).

mod common;
mod tmux;

use std::path::Path;

use common::{scalar, wait_for, TestDb};
use crondeck::db::audit::Actor;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use tmux::{Tmux, LIMIT};

/// A script that runs the console with `$CRONDECK_ARGS`, then says how it
/// ended and keeps the pane open.
fn console_script(dir: &Path) -> std::path::PathBuf {
    let script = dir.join("console.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\"$CRONDECK\" $CRONDECK_ARGS\necho \"EXITED-$?\"\nsleep 600\n",
    )
    .expect("write the script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the script");
    script
}

fn env(dir: &Path, url: String, args: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CRONDECK", env!("CARGO_BIN_EXE_crondeck").to_string()),
        ("CRONDECK_ARGS", args.to_string()),
        ("DATABASE_URL", url),
        ("XDG_STATE_HOME", dir.join("state").display().to_string()),
        ("XDG_CONFIG_HOME", dir.join("config").display().to_string()),
    ]
}

async fn add(client: &mut tokio_postgres::Client, name: &str, sql: &str) -> i64 {
    let spec = JobSpec::new(name, Schedule::Manual, ActionKind::Sql, sql);
    ops::add(client, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap_or_else(|e| panic!("add {name}: {e}"))
        .id
}

/// The table row of `job` (not the header or the filter line).
fn row<'a>(screen: &'a str, job: &str) -> &'a str {
    screen
        .lines()
        .skip(3)
        .find(|l| l.contains(job) && !l.contains("showing"))
        .unwrap_or("")
}

async fn focus_job(tmux: &Tmux, name: &str, jobs: usize) {
    tmux.keys(&["Escape"]);
    tmux.wait("the filter cleared", |s| !s.contains("showing"))
        .await;
    tmux.keys(&["/"]);
    tmux.type_text(name);
    tmux.keys(&["Enter"]);
    tmux.wait_text(&format!("showing 1 of {jobs}")).await;
}

async fn confirm(tmux: &Tmux) {
    tmux.wait_text("[ Cancel ]").await;
    tmux.keys(&["Tab"]);
    tmux.wait_text("[ Confirm ]").await;
    tmux.keys(&["Enter"]);
}

/// Run `job` now from the console and wait until its row says running.
async fn run_now(tmux: &Tmux, job: &str, jobs: usize) {
    focus_job(tmux, job, jobs).await;
    tmux.keys(&["r"]);
    tmux.wait_text("Run now").await;
    confirm(tmux).await;
    tmux.wait(&format!("{job} running"), |s| {
        row(s, job).contains("running")
    })
    .await;
}

async fn last_run(client: &tokio_postgres::Client, job: &str) -> (String, String) {
    let status: String = scalar(
        client,
        "SELECT r.status FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
         WHERE j.name = $1 ORDER BY r.id DESC LIMIT 1",
        &[&job],
    )
    .await;
    let error: Option<String> = scalar(
        client,
        "SELECT r.error FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
         WHERE j.name = $1 ORDER BY r.id DESC LIMIT 1",
        &[&job],
    )
    .await;
    (status, error.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_history_paging_and_the_quit_dialog_in_the_real_console() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add(&mut client, "e2e-cancel-me", "SELECT pg_sleep(120)").await;
    add(&mut client, "e2e-quit-stop", "SELECT pg_sleep(120)").await;
    let history = add(&mut client, "e2e-history", "SELECT 1").await;
    // 120 past runs, every tenth failed.
    client
        .execute(
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, started_at,
                                        ended_at)
             SELECT $1, 'manual', now() - make_interval(mins => 121 - i),
                    CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
                    now() - make_interval(mins => 121 - i),
                    now() - make_interval(mins => 121 - i)
             FROM generate_series(1, 120) AS i",
            &[&history],
        )
        .await
        .expect("insert the history");
    const JOBS: usize = 3;

    let dir = tempfile::tempdir().expect("temporary directory");
    let script = console_script(dir.path());
    let tmux = Tmux::start(&script, &env(dir.path(), db.url(), "--scheduler"));
    tmux.wait("live, with this console's node", |s| {
        s.contains("● live") && s.contains("(this)") && s.contains("jobs 3")
    })
    .await;

    // Cancel a running run: x names the run, confirm, the run ends cancelled.
    run_now(&tmux, "e2e-cancel-me", JOBS).await;
    tmux.keys(&["x"]);
    tmux.wait_text("Cancel the run in progress").await;
    tmux.type_text("e2e stop");
    tmux.keys(&["Enter"]);
    let dialog = tmux.wait_text("old: running on").await;
    assert!(dialog.contains("e2e-cancel-me"), "{dialog}");
    confirm(&tmux).await;
    tmux.wait("the run cancelled", |s| {
        row(s, "e2e-cancel-me").contains("cancelled")
    })
    .await;
    let (status, error) = wait_for(LIMIT, "the cancel recorded", || async {
        let (status, error) = last_run(&client, "e2e-cancel-me").await;
        (status != "running").then_some((status, error))
    })
    .await;
    assert_eq!(status, "cancelled", "{error}");
    assert!(error.contains("cancelled by"), "{error}");

    // The history: pages of 50 through all 120 runs, then a status filter.
    focus_job(&tmux, "e2e-history", JOBS).await;
    tmux.keys(&["Enter"]);
    tmux.wait_text("runs 1–50 · newest · more older").await;
    tmux.keys(&["]"]);
    tmux.wait_text("runs 51–100 · page 2 · more older").await;
    tmux.keys(&["]"]);
    tmux.wait_text("runs 101–120 · page 3 · oldest reached")
        .await;
    tmux.keys(&["]"]);
    tmux.wait_text("this is the oldest page").await;
    tmux.keys(&["["]);
    tmux.wait_text("runs 51–100 · page 2").await;
    tmux.keys(&["f"]);
    let failed = tmux
        .wait_text("runs 1–12 · newest · only failed · oldest reached")
        .await;
    let shown = failed.lines().filter(|l| l.starts_with("failed ")).count();
    assert_eq!(shown, 12, "{failed}");
    // Jump back 100 minutes: only the 21 oldest runs are that old, 2 failed.
    tmux.keys(&["t"]);
    tmux.wait_text("jump to").await;
    tmux.type_text("100m ago");
    tmux.keys(&["Enter"]);
    let jumped = tmux
        .wait("the failed runs from 100 minutes back", |s| {
            s.contains("runs 1–2 · newest · only failed · from ")
                && s.contains("back · oldest reached")
        })
        .await;
    assert_eq!(
        jumped.lines().filter(|l| l.starts_with("failed ")).count(),
        2,
        "{jumped}"
    );
    tmux.keys(&["Escape"]);
    tmux.wait("back on the table", |s| s.contains("showing 1 of 3"))
        .await;

    // Quit with a run going here: the dialog names it; esc stays.
    run_now(&tmux, "e2e-quit-stop", JOBS).await;
    tmux.keys(&["q"]);
    let dialog = tmux.wait_text("Quit: jobs are running here").await;
    assert!(dialog.contains("e2e-quit-stop  running for"), "{dialog}");
    tmux.keys(&["Escape"]);
    tmux.wait_text("quit cancelled").await;
    assert_eq!(last_run(&client, "e2e-quit-stop").await.0, "running");
    // Again, and wait: a countdown; then a second Ctrl-C stops it at once.
    tmux.keys(&["C-c"]);
    tmux.wait_text("Quit: jobs are running here").await;
    tmux.keys(&["w"]);
    tmux.wait_text("waiting for them:").await;
    tmux.wait("the countdown moves", |s| {
        s.contains("left, then they are stopped") && !s.contains("waiting for them: 30s left")
    })
    .await;
    tmux.keys(&["C-c"]);
    let end = tmux.wait_text("EXITED-").await;
    assert!(end.contains("EXITED-0"), "{end}");
    let (status, error) = last_run(&client, "e2e-quit-stop").await;
    assert_eq!(status, "cancelled", "{error}");
    assert!(error.contains("quitting the console"), "{error}");
    // The node left cleanly.
    let live: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.nodes WHERE stopped_at IS NULL",
        &[],
    )
    .await;
    assert_eq!(live, 0);
    // Its log lines say which process and node wrote them.
    let log = std::fs::read_to_string(dir.path().join("state/crondeck/crondeck.log"))
        .expect("the console's log");
    let pid_and_node = log
        .lines()
        .filter(|l| l.contains("scheduler node stopped"))
        .any(|l| l.starts_with("pid=") && l.contains(" node="));
    assert!(pid_and_node, "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_or_external_console_is_not_a_node_and_an_unreachable_one_opens_stale() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    add(&mut client, "e2e-anything", "SELECT 1").await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let script = console_script(dir.path());
    for args in ["--read-only", ""] {
        let tmux = Tmux::start(&script, &env(dir.path(), db.url(), args));
        tmux.wait("live, without a node", |s| {
            s.contains("● live") && s.contains("this console runs no node")
        })
        .await;
        let nodes: i64 = scalar(&client, "SELECT count(*) FROM crondeck.nodes", &[]).await;
        assert_eq!(nodes, 0, "{args:?} registered a scheduler node");
        tmux.keys(&["q"]);
        tmux.wait_text("EXITED-0").await;
    }

    // Nothing listens on that port: the console opens STALE and stays.
    let nowhere = "host=127.0.0.1 port=9 dbname=nothing user=nobody connect_timeout=2".to_string();
    let tmux = Tmux::start(&script, &env(dir.path(), nowhere, ""));
    let screen = tmux
        .wait("STALE with the reason", |s| {
            s.contains("STALE") && s.contains("cannot reach the job database")
        })
        .await;
    assert!(!screen.contains("EXITED-"), "{screen}");
    tmux.keys(&["q"]);
    tmux.wait_text("EXITED-0").await;
}

/// Not a check: captures the screens of docs/console.md from the real
/// binary (`cargo test --test tui_e2e_ops -- --ignored capture`), into
/// `target/console-captures/`. Demo jobs, a headless shell node beside the
/// console's own, NO_COLOR.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn capture_docs_screens() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    crondeck::database::seed_demo(&mut client, &Actor::current())
        .await
        .expect("seed the demo jobs");
    let headless = crondeck::scheduler::NodeHandle::start(
        db.spec.clone(),
        crondeck::scheduler::NodeConfig {
            name: "batch-1".into(),
            allow_shell: true,
            ..crondeck::scheduler::NodeConfig::default()
        },
    )
    .await
    .expect("start a headless node");
    // Some operator actions for the audit.
    let actor = Actor::current();
    let changes = ops::JobChanges {
        priority: Some(2),
        ..ops::JobChanges::default()
    };
    ops::set(&mut client, &actor, "vacuum-analyze", &changes)
        .await
        .unwrap();
    ops::pause(
        &mut client,
        &actor,
        "session-count",
        Some("db maintenance"),
        Some(std::time::Duration::from_secs(7200)),
    )
    .await
    .unwrap();
    let out = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-captures");
    std::fs::create_dir_all(&out).unwrap();
    let dir = tempfile::tempdir().expect("temporary directory");
    let script = console_script(dir.path());
    // Let the demo jobs build some history first.
    tokio::time::sleep(std::time::Duration::from_secs(25)).await;
    for (width, height) in [(80u16, 24u16), (160, 40)] {
        let mut vars = env(dir.path(), db.url(), "--scheduler");
        vars.push(("NO_COLOR", "1".to_string()));
        let tmux = Tmux::start_sized(&script, &vars, width, height);
        let save = |name: &str, screen: &str| {
            std::fs::write(out.join(format!("{name}_{width}x{height}.txt")), screen).unwrap();
        };
        let jobs = tmux
            .wait("live", |s| s.contains("● live") && s.contains("(this)"))
            .await;
        let _ = jobs;
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        save("jobs", &tmux.screen());
        // A job's detail with its history heading, then an older page.
        tmux.keys(&["/"]);
        tmux.type_text("partner-export");
        tmux.keys(&["Enter"]);
        tmux.wait_text("showing 1 of").await;
        tmux.keys(&["Enter"]);
        tmux.wait_text("runs 1–").await;
        save("detail", &tmux.screen());
        tmux.keys(&["f"]);
        tmux.wait_text("only failed").await;
        save("history_failed", &tmux.screen());
        tmux.keys(&["a"]);
        tmux.wait_text("audit of partner-export").await;
        tmux.keys(&["Escape"]);
        tmux.wait_text("runs 1–").await;
        tmux.keys(&["Escape"]);
        tmux.wait_text("showing 1 of").await;
        tmux.keys(&["Escape"]);
        tmux.wait("the table", |s| !s.contains("showing")).await;
        tmux.keys(&["a"]);
        tmux.wait_text("audit of every job").await;
        save("audit", &tmux.screen());
        tmux.keys(&["Enter"]);
        tmux.wait_text("Audit entry").await;
        save("audit_entry", &tmux.screen());
        tmux.keys(&["Escape"]);
        tmux.wait("the entry closed", |s| !s.contains("Audit entry"))
            .await;
        tmux.keys(&["Escape"]);
        tmux.wait("the table", |s| s.contains("STATE")).await;
        tmux.keys(&["N"]);
        // nightly-report runs 25 s of every 40: wait for the view to show it.
        let nodes = tmux
            .wait("a node running nightly-report", |s| {
                s.contains("nodes: ") && s.lines().skip(4).any(|l| l.contains("nightly-report"))
            })
            .await;
        save("nodes", &nodes);
        tmux.keys(&["Escape"]);
        tmux.keys(&["q"]);
        tmux.wait_text("EXITED-").await;
    }
    // The quit dialog: with the headless node gone, a run asked for here
    // runs in the console's own node.
    headless.shutdown().await.unwrap();
    add(&mut client, "slow-sql", "SELECT pg_sleep(90)").await;
    for (width, height) in [(80u16, 24u16), (160, 40)] {
        let mut vars = env(dir.path(), db.url(), "--scheduler");
        vars.push(("NO_COLOR", "1".to_string()));
        let tmux = Tmux::start_sized(&script, &vars, width, height);
        let save = |name: &str, screen: &str| {
            std::fs::write(out.join(format!("{name}_{width}x{height}.txt")), screen).unwrap();
        };
        tmux.wait("live", |s| s.contains("● live") && s.contains("(this)"))
            .await;
        run_now(&tmux, "slow-sql", 12).await;
        tmux.keys(&["Escape"]);
        tmux.wait("the table", |s| !s.contains("showing")).await;
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        tmux.keys(&["q"]);
        save("quit", &tmux.wait_text("Quit: jobs are running here").await);
        tmux.keys(&["w"]);
        tmux.wait_text("waiting for them:").await;
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        save("quit_waiting", &tmux.screen());
        tmux.keys(&["C-c"]);
        tmux.wait_text("EXITED-").await;
    }
}
