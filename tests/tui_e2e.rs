//! The console end to end: the real binary in a real terminal (tmux),
//! against a test database, driven by keys and read from the screen.
//!
//! Every wait polls the screen (or the database) until a deadline; nothing
//! sleeps a fixed time and hopes. The tmux server has a socket of its own
//! and is killed when the test ends, pass or fail. This binary holds only
//! this test, because it restarts the PostgreSQL server under the console.

mod common;
mod tmux;

use common::{scalar, wait_for, TestDb};
use crondeck::database::seed_demo;
use crondeck::db::audit::Actor;
use crondeck::db::jobs::job_get;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use tmux::{Tmux, LIMIT};

/// The table row of `job` (not the header line echoing the filter).
fn row<'a>(screen: &'a str, job: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.contains(job) && !l.contains("showing"))
        .unwrap_or("")
}

/// Filter the table down to one job (clearing any earlier filter first).
async fn focus_job(tmux: &Tmux, name: &str) {
    tmux.keys(&["Escape"]);
    tmux.wait("the filter cleared", |s| !s.contains("showing"))
        .await;
    tmux.keys(&["/"]);
    tmux.type_text(name);
    tmux.keys(&["Enter"]);
    tmux.wait_text("showing 1 of 12").await;
}

/// On a dialog's confirm step: move from Cancel to Confirm and press it.
async fn confirm(tmux: &Tmux) {
    tmux.wait_text("[ Cancel ]").await;
    tmux.keys(&["Tab"]);
    tmux.wait_text("[ Confirm ]").await;
    tmux.keys(&["Enter"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_runs_pauses_edits_survives_a_restart_and_restores_the_terminal() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let actor = Actor::current();
    seed_demo(&mut client, &actor)
        .await
        .expect("seed the demo jobs");
    // Slow enough that a 2 s poll sees it running.
    let slow = JobSpec::new(
        "e2e-slow",
        Schedule::Manual,
        ActionKind::Sql,
        "SELECT pg_sleep(4)",
    );
    ops::add(&mut client, &actor, &slow, &AddOptions::default())
        .await
        .expect("add e2e-slow");

    let dir = tempfile::tempdir().expect("temporary directory");
    let script = dir.path().join("console.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\"$CRONDECK\" $CRONDECK_ARGS\necho \"EXITED-$?\"\n\
         stty -a | tr ' ;' '\\n\\n' | grep -x -e icanon -e -icanon -e echo -e -echo | tr '\\n' ' '\n\
         echo '<stty'\nsleep 600\n",
    )
    .expect("write the script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the script");
    let env = [
        ("CRONDECK", env!("CARGO_BIN_EXE_crondeck").to_string()),
        // An external database: the console runs a node only when asked.
        ("CRONDECK_ARGS", "--scheduler".to_string()),
        ("DATABASE_URL", db.url()),
        (
            "XDG_STATE_HOME",
            dir.path().join("state").display().to_string(),
        ),
        (
            "XDG_CONFIG_HOME",
            dir.path().join("config").display().to_string(),
        ),
    ];
    let tmux = Tmux::start(&script, &env);

    // It opens on the demo jobs, live, with its own scheduler node.
    tmux.wait("the demo jobs, live", |s| {
        s.contains("● live")
            && s.contains("heartbeat")
            && s.contains("jobs 12")
            && s.contains("(this)")
    })
    .await;

    // Run now: running, then succeeded.
    focus_job(&tmux, "e2e-slow").await;
    tmux.keys(&["r"]);
    tmux.wait_text("Run now").await;
    confirm(&tmux).await;
    tmux.wait("e2e-slow running", |s| {
        row(s, "e2e-slow").contains("running")
    })
    .await;
    tmux.wait("e2e-slow succeeded", |s| {
        row(s, "e2e-slow").contains("succeeded")
    })
    .await;

    // Pause one job, with a reason.
    focus_job(&tmux, "session-count").await;
    tmux.keys(&["p"]);
    tmux.wait_text("reason (optional)").await;
    tmux.type_text("e2e maintenance");
    tmux.keys(&["Enter"]);
    confirm(&tmux).await;
    tmux.wait("session-count paused", |s| {
        row(s, "session-count").contains("paused")
    })
    .await;

    // Edit another job's interval.
    focus_job(&tmux, "vacuum-analyze").await;
    tmux.keys(&["e"]);
    tmux.wait_text("Edit schedule").await;
    tmux.keys(&["C-u"]);
    tmux.type_text("90m");
    tmux.wait_text("✓ new: every 90 minutes").await;
    tmux.keys(&["Enter"]);
    confirm(&tmux).await;
    tmux.wait("the new interval", |s| {
        row(s, "vacuum-analyze").contains("every 1h 30m")
    })
    .await;

    // The database has both changes, each with its audit row.
    let paused = job_get(&client, "session-count", false).await.unwrap();
    assert!(!paused.active);
    assert_eq!(
        paused.pause.and_then(|p| p.reason).as_deref(),
        Some("e2e maintenance")
    );
    let vacuum = job_get(&client, "vacuum-analyze", false).await.unwrap();
    assert_eq!(vacuum.spec.schedule, Schedule::parse("90m").unwrap());
    let audited: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.audit WHERE job_name = 'session-count' AND action = 'pause'
           AND reason = 'e2e maintenance'",
        &[],
    )
    .await;
    assert_eq!(audited, 1);
    let audited: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.audit WHERE job_name = 'vacuum-analyze'
           AND action = 'reschedule' AND new_value->>'schedule' = 'every 90 minutes'",
        &[],
    )
    .await;
    assert_eq!(audited, 1);
    let runs: i64 = wait_for(LIMIT, "the manual run recorded", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs r JOIN crondeck.jobs j ON j.id = r.job_id
             WHERE j.name = 'e2e-slow' AND r.trigger = 'manual' AND r.status = 'succeeded'",
            &[],
        )
        .await;
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(runs, 1);
    drop(client);

    // PostgreSQL goes away under the console: STALE, then live again.
    tokio::task::spawn_blocking(common::stop_server)
        .await
        .unwrap();
    tmux.wait_text("STALE").await;
    tokio::task::spawn_blocking(common::start_server_again)
        .await
        .unwrap();
    tmux.wait("live again", |s| {
        s.contains("● live") && !s.contains("STALE")
    })
    .await;

    // Quit: the shell gets its terminal back (no alternate screen, cooked mode).
    tmux.keys(&["q"]);
    let screen = tmux.wait_text("<stty").await;
    assert!(screen.contains("EXITED-0"), "exit status: {screen}");
    let modes = screen
        .lines()
        .find(|l| l.contains("<stty"))
        .unwrap_or_default();
    assert!(
        modes.split_whitespace().any(|w| w == "icanon")
            && modes.split_whitespace().any(|w| w == "echo"),
        "the terminal is still in raw mode: {modes}"
    );
    assert_eq!(
        tmux.tmux(&["display", "-p", "-t", "e2e", "#{alternate_on}"])
            .trim(),
        "0"
    );
    assert!(
        std::fs::metadata(dir.path().join("state/crondeck/crondeck.log")).is_ok(),
        "the console logged to its file"
    );
}
