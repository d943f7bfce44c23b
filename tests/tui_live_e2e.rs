//! The console following a running run, end to end (issue 12.2): the real
//! binary in a real terminal (tmux), a real scheduler node running a real
//! shell job, the screen read while the job is blocked on a marker file.
//!
//! A binary of its own (not tests/tui_e2e.rs): that one restarts the
//! PostgreSQL server under its console, and names its tmux socket after the
//! process.

mod common;
mod tmux;
use tmux::Tmux;

use common::TestDb;
use crondeck::db::audit::Actor;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use crondeck::scheduler::{NodeConfig, NodeHandle};

/// The "running for …" fact of the run view.
fn elapsed(screen: &str) -> Option<String> {
    let at = screen.find("running for ")?;
    Some(
        screen[at..]
            .split(" ·")
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_view_follows_a_running_shell_job_like_tail_f() {
    let db = TestDb::new().await;
    let mut client = db.client().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let (go, finish) = (dir.path().join("go"), dir.path().join("finish"));
    // Five lines and 5/80, then (after `go`) 75 more lines: more than the
    // screen holds, so only a view pinned to the end shows the last.
    let command = format!(
        "for i in 1 2 3 4 5; do echo \"line $i\"; echo \"progress $i/80\" >&$CRONDECK_PROGRESS_FD; done; \
         while [ ! -e '{go}' ]; do sleep 0.05; done; \
         i=6; while [ $i -le 80 ]; do echo \"line $i\"; i=$((i+1)); done; \
         echo 'progress 80/80' >&9; \
         while [ ! -e '{finish}' ]; do sleep 0.05; done",
        go = go.display(),
        finish = finish.display()
    );
    let actor = Actor::current();
    let spec = JobSpec::new("live-e2e", Schedule::Manual, ActionKind::Shell, &command);
    ops::add(&mut client, &actor, &spec, &AddOptions::default())
        .await
        .expect("add the job");
    let node = NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            name: "e2e-node".into(),
            allow_shell: true,
            ..NodeConfig::default()
        },
    )
    .await
    .expect("start a node");

    let script = dir.path().join("console.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\"$CRONDECK\" --no-scheduler\nsleep 600\n",
    )
    .expect("write the script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the script");
    let env = [
        ("CRONDECK", env!("CARGO_BIN_EXE_crondeck").to_string()),
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
    let tmux = Tmux::start_sized(&script, &env, 100, 30);
    tmux.wait("the console, live", |s| {
        s.contains("● live") && s.contains("live-e2e")
    })
    .await;

    ops::run_now(&mut client, &actor, "live-e2e")
        .await
        .expect("request a run");
    // The job's row: a progress bar once the first progress is in.
    tmux.wait("the progress bar in the jobs table", |s| {
        s.lines()
            .any(|l| l.contains("live-e2e") && l.contains("6%"))
    })
    .await;
    // Open the job, then its running run.
    tmux.keys(&["Enter"]);
    tmux.wait("the job's history with the running run", |s| {
        s.lines()
            .any(|l| l.starts_with("running ") && l.contains("manual"))
    })
    .await;
    tmux.keys(&["Enter"]);
    let first = tmux
        .wait("the run view with the output so far", |s| {
            s.contains("running for") && s.contains("line 5") && s.contains("5/80 (6%)")
        })
        .await;
    // Causality: the job is still waiting for `go`.
    assert!(!go.exists());
    // The elapsed time ticks.
    let then = elapsed(&first).expect("the elapsed time");
    tmux.wait("the elapsed time to move on", |s| {
        elapsed(s).is_some_and(|now| now != then)
    })
    .await;

    std::fs::write(&go, "").expect("create the go marker");
    let pinned = tmux
        .wait("the end of the output", |s| {
            s.contains("line 80") && s.contains("80/80 (100%)")
        })
        .await;
    // Pinned to the end (the start scrolled away), facts still on top.
    assert!(!pinned.contains("line 6\n"), "{pinned}");
    assert!(pinned.contains("running for"), "{pinned}");
    assert!(!finish.exists());

    // Scrolling up unpins the view and says so.
    tmux.keys(&["k", "k", "k"]);
    tmux.wait("the unpinned view", |s| s.contains("G or End follows"))
        .await;
    tmux.keys(&["G"]);
    tmux.wait("the view pinned again", |s| {
        !s.contains("G or End follows") && s.contains("line 80")
    })
    .await;

    std::fs::write(&finish, "").expect("create the finish marker");
    tmux.wait("the run ended", |s| {
        s.contains("succeeded") && s.contains("line 80")
    })
    .await;
    tmux.keys(&["q"]);
    node.shutdown().await.expect("stop the node");
}
