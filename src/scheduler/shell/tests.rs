//! Tests with real processes. Waits poll a condition until a deadline; no
//! fixed sleep is used as an assertion.

use super::*;
use nix::sys::signal::kill;

const HELPER_ENV: &str = "CRONDECK_SHELL_TEST_HELPER";
const DIR_ENV: &str = "CRONDECK_SHELL_TEST_DIR";
const GIB: u64 = 1 << 30;

fn job(command: &str) -> ShellCommand {
    ShellCommand {
        command: command.to_owned(),
        argv: None,
        env: Vec::new(),
        timeout: Some(Duration::from_secs(20)),
        kill_grace: Duration::from_millis(500),
        output_limit: 16 * 1024,
        lease: None,
        output: None,
        progress_fd: false,
    }
}

async fn run(cmd: &ShellCommand) -> ShellResult {
    run_shell(cmd, &CancellationToken::new()).await.unwrap()
}

/// Alive = exists and is not a zombie (PID 1 of a container may never reap
/// the reparented grandchildren).
fn alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH) {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next());
            !matches!(state, Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

fn pgid_of(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    // Fields after the command: state, ppid, pgrp.
    rest.split_whitespace().nth(2).unwrap().parse().unwrap()
}

fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

async fn wait_until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn assert_all_gone(pids: &[i32], within: Duration) {
    wait_until(&format!("processes {pids:?} to be gone"), within, || {
        pids.iter().all(|&p| !alive(p))
    })
    .await;
}

/// `sh` and a grandchild that both ignore SIGTERM, plus a plain sleeper;
/// each writes its pid to `pids`.
fn stubborn_job(pids: &Path) -> String {
    let p = pids.display();
    format!(
        "trap '' TERM; echo $$ >> {p}; \
         sh -c 'trap \"\" TERM; echo $$ >> {p}; exec sleep 300' & \
         sleep 300 & echo $! >> {p}; wait"
    )
}

#[tokio::test]
async fn exit_codes() {
    assert_eq!(run(&job("exit 0")).await.outcome, ShellOutcome::Exited(0));
    assert_eq!(run(&job("exit 3")).await.outcome, ShellOutcome::Exited(3));
    let missing = run(&job("no_such_command_crondeck")).await;
    assert_eq!(missing.outcome, ShellOutcome::Exited(127));
    assert!(
        missing.stderr.text.contains("not found"),
        "{:?}",
        missing.stderr
    );
}

#[tokio::test]
async fn killed_by_signal() {
    let r = run(&job("kill -9 $$")).await;
    assert_eq!(r.outcome, ShellOutcome::Signaled(libc::SIGKILL));
    let r = run(&job("kill -SEGV $$")).await;
    assert_eq!(r.outcome, ShellOutcome::Signaled(libc::SIGSEGV));
}

#[tokio::test]
async fn env_vars_are_visible() {
    let mut cmd =
        job("echo \"$CRONDECK_JOB|$CRONDECK_RUN_ID|$CRONDECK_SCHEDULED_FOR|${HOME:+home}\"");
    cmd.env = vec![
        ("CRONDECK_JOB".into(), "backup".into()),
        ("CRONDECK_RUN_ID".into(), "42".into()),
        (
            "CRONDECK_SCHEDULED_FOR".into(),
            "2024-01-01T00:00:00Z".into(),
        ),
    ];
    // HOME is on the list of the node's variables a job gets (JOB_ENV).
    assert_eq!(
        run(&cmd).await.stdout.text,
        "backup|42|2024-01-01T00:00:00Z|home\n"
    );
}

#[test]
fn the_job_environment_keeps_only_the_documented_variables() {
    let node: Vec<(std::ffi::OsString, std::ffi::OsString)> = [
        ("HOME", "/root"),
        ("LC_TIME", "C"),
        ("LC_", "x"),
        ("LANG", "C.UTF-8"),
        ("DATABASE_URL", "postgres://u:pw@h/db"),
        ("PGPASSWORD", "pw"),
        ("CRONDECK_DATABASE_URL", "postgres://u:pw@h/db"),
        ("CRONDECK_JOB", "forged"),
        ("AWS_SECRET_ACCESS_KEY", "pw"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let mut names: Vec<String> = job_env(node)
        .into_iter()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["HOME", "LANG", "LC_TIME", "PATH"]);
}

#[tokio::test]
async fn stdin_is_closed() {
    let r = run(&job("cat; echo done")).await;
    assert_eq!(r.outcome, ShellOutcome::Exited(0));
    assert_eq!(r.stdout.text, "done\n");
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
}

#[tokio::test]
async fn stdout_and_stderr_are_separate() {
    let r = run(&job("echo out; echo err >&2; echo out2")).await;
    assert_eq!(r.stdout.text, "out\nout2\n");
    assert_eq!(r.stderr.text, "err\n");
    assert_eq!((r.stdout.total_bytes, r.stderr.total_bytes), (9, 4));
}

#[tokio::test]
async fn nul_bytes_and_invalid_utf8() {
    let r = run(&job("printf 'a\\000b\\377c'; printf '\\000\\000' >&2")).await;
    assert_eq!(r.outcome, ShellOutcome::Exited(0));
    assert_eq!(r.stdout.text, "ab\u{fffd}c");
    assert_eq!(r.stderr.text, "");
    assert_eq!(r.stderr.total_bytes, 2);
}

#[tokio::test]
async fn output_is_capped() {
    let mut cmd = job("echo start; yes | head -c 10000000; echo; echo end");
    cmd.output_limit = 1024;
    let r = run(&cmd).await;
    assert_eq!(r.stdout.total_bytes, 6 + 10_000_000 + 1 + 4);
    assert_eq!(r.stdout.dropped_bytes, r.stdout.total_bytes - 2048);
    assert!(r.stdout.text.starts_with("start\ny\ny\n"));
    assert!(r.stdout.text.ends_with("y\ny\n\nend\n"));
    let note = format!("\n[… {} bytes dropped …]\n", r.stdout.dropped_bytes);
    assert!(r.stdout.text.contains(&note));
    assert_eq!(r.stdout.text.len(), 2048 + note.len());
}

async fn timeout_stops_whole_group(wrapper: Option<&Path>) {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let mut cmd = job(&stubborn_job(&pids_file));
    cmd.timeout = Some(Duration::from_secs(1));
    let r = run_with(&cmd, &CancellationToken::new(), wrapper)
        .await
        .unwrap();
    assert_eq!(r.outcome, ShellOutcome::TimedOut);
    assert!(r.elapsed >= Duration::from_secs(1));
    // timeout + grace + slack for a loaded machine.
    assert!(
        r.elapsed < Duration::from_millis(1500 + 2500),
        "{:?}",
        r.elapsed
    );
    let pids = read_pids(&pids_file);
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert_all_gone(&pids, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn timeout_stops_whole_group_under_wrapper() {
    assert!(
        timeout_wrapper().await.is_some(),
        "tests expect GNU coreutils `timeout`"
    );
    timeout_stops_whole_group(timeout_wrapper().await.as_deref()).await;
}

#[tokio::test]
async fn timeout_stops_whole_group_without_wrapper() {
    timeout_stops_whole_group(None).await;
}

#[tokio::test]
async fn sigterm_comes_first() {
    let mut cmd = job("trap 'echo got-term; exit 0' TERM; sleep 300");
    // Long enough for `sh` to install its trap on a loaded machine (with
    // 300 ms it sometimes had not, and died of the SIGTERM silently).
    cmd.timeout = Some(Duration::from_secs(2));
    cmd.kill_grace = Duration::from_secs(60);
    let r = run(&cmd).await;
    assert_eq!(r.outcome, ShellOutcome::TimedOut);
    assert_eq!(r.stdout.text, "got-term\n");
    // The job exited on SIGTERM; the node did not wait out the grace.
    assert!(r.elapsed < Duration::from_secs(60), "{:?}", r.elapsed);
}

#[tokio::test]
async fn background_child_is_killed_when_sh_exits() {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let r = run(&job(&format!(
        "sleep 300 & echo $! > {}; echo bye",
        pids_file.display()
    )))
    .await;
    assert_eq!(r.outcome, ShellOutcome::Exited(0));
    assert_eq!(r.stdout.text, "bye\n");
    // The output is whole, with no "cut short" note: the pipes closed because
    // the sleeper died, not because reading gave up after DRAIN_TIMEOUT.
    assert_all_gone(&read_pids(&pids_file), Duration::from_secs(2)).await;
}

#[tokio::test]
async fn cancel_interrupts_and_stops_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let mut cmd = job(&stubborn_job(&pids_file));
    cmd.timeout = None;
    cmd.kill_grace = Duration::from_millis(300);
    let cancel = CancellationToken::new();
    let canceller = {
        let (cancel, pids_file) = (cancel.clone(), pids_file.clone());
        tokio::spawn(async move {
            wait_until("job to start", Duration::from_secs(10), || {
                read_pids(&pids_file).len() == 3
            })
            .await;
            cancel.cancel();
        })
    };
    let r = run_shell(&cmd, &cancel).await.unwrap();
    canceller.await.unwrap();
    assert_eq!(r.outcome, ShellOutcome::Interrupted);
    assert_all_gone(&read_pids(&pids_file), Duration::from_secs(2)).await;
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let cmd = job(&stubborn_job(&pids_file));
    let cancel = CancellationToken::new();
    tokio::select! {
        r = run_shell(&cmd, &cancel) => panic!("job ended: {r:?}"),
        _ = wait_until("job to start", Duration::from_secs(10), || read_pids(&pids_file).len() == 3) => {}
    }
    assert_all_gone(&read_pids(&pids_file), Duration::from_secs(2)).await;
}

#[tokio::test]
async fn escaped_process_cannot_hang_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    // Wait for the escape: killing the group before `setsid` ran would stop it.
    let p = pids_file.display();
    let script = format!(
        "setsid sh -c 'echo $$ > {p}; exec sleep 300' & \
         while [ ! -s {p} ]; do sleep 0.01; done; echo hi"
    );
    let r = run(&job(&script)).await;
    let escaped = read_pids(&pids_file);
    for &pid in &escaped {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert_eq!(r.outcome, ShellOutcome::Exited(0));
    assert!(
        r.elapsed >= DRAIN_TIMEOUT && r.elapsed < DRAIN_TIMEOUT + Duration::from_secs(3),
        "{:?}",
        r.elapsed
    );
    assert_eq!(r.stdout.text, format!("hi\n{CUT_SHORT_NOTE}"));
    assert_eq!(escaped.len(), 1);
}

#[test]
fn duration_arg_format() {
    assert_eq!(duration_arg(Duration::from_millis(5_250)), "5.250s");
    assert_eq!(duration_arg(Duration::from_secs(7)), "7.000s");
}

#[test]
fn backstop_sigkill_maps_to_timed_out() {
    let killed = ExitStatus::from_raw(libc::SIGKILL);
    let b = Some(Duration::from_secs(10));
    assert_eq!(
        job_outcome(killed, Duration::from_secs(11), b),
        ShellOutcome::TimedOut
    );
    assert_eq!(
        job_outcome(killed, Duration::from_secs(1), b),
        ShellOutcome::Signaled(9)
    );
    assert_eq!(
        job_outcome(ExitStatus::from_raw(3 << 8), Duration::ZERO, b),
        ShellOutcome::Exited(3)
    );
}

// ---- tests that need a process of their own ----

/// Runs the test binary again, executing only `helper_process` in `mode`.
fn helper_command(mode: &str, dir: &Path) -> tokio::process::Command {
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        &format!("{module}::helper_process"),
        "--exact",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(HELPER_ENV, mode)
    .env(DIR_ENV, dir)
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd
}

/// Not a test by itself: does nothing unless started by `helper_command`.
#[test]
fn helper_process() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    match mode.as_str() {
        "gib" => rt.block_on(helper_gib()),
        "orphan-no-timeout" => rt.block_on(helper_orphan(&dir, None)),
        "orphan-timeout" => rt.block_on(helper_orphan(&dir, Some(Duration::from_secs(300)))),
        other => panic!("unknown helper mode {other}"),
    }
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

async fn helper_gib() {
    let _ = timeout_wrapper().await;
    let before = vm_kib("VmHWM:");
    let mut cmd = job(&format!("head -c {GIB} /dev/zero | tr '\\0' x"));
    cmd.timeout = Some(Duration::from_secs(300));
    let r = run(&cmd).await;
    let after = vm_kib("VmHWM:");
    println!(
        "GIB_RESULT outcome={:?} total={} dropped={} text_len={} elapsed_ms={} hwm_before_kib={before} hwm_after_kib={after}",
        r.outcome,
        r.stdout.total_bytes,
        r.stdout.dropped_bytes,
        r.stdout.text.len(),
        r.elapsed.as_millis()
    );
}

async fn helper_orphan(dir: &Path, timeout: Option<Duration>) {
    let mut cmd = job(&stubborn_job(&dir.join("pids")));
    cmd.timeout = timeout;
    let r = run(&cmd).await;
    panic!("the job should have been killed with its node, got {r:?}");
}

#[tokio::test]
async fn gib_of_output_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let run = helper_command("gib", dir.path())
        .stdout(Stdio::piped())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("GIB_RESULT").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no result line in: {stdout}"));
    let field = |name: &str| -> String {
        let prefix = format!("{name}=");
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&prefix))
            .unwrap()
            .to_owned()
    };
    let num = |name: &str| -> u64 { field(name).parse().unwrap() };
    println!("{line}");
    assert_eq!(field("outcome"), "Exited(0)");
    assert_eq!(num("total"), GIB);
    assert_eq!(num("dropped"), GIB - 2 * 16 * 1024);
    let note_len = format!("\n[… {} bytes dropped …]\n", GIB - 2 * 16 * 1024).len() as u64;
    assert_eq!(num("text_len"), 2 * 16 * 1024 + note_len);
    let growth = num("hwm_after_kib") - num("hwm_before_kib");
    assert!(growth < 4 * 1024, "peak RSS grew by {growth} KiB");
}

async fn orphan_protection(mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let pids_file = dir.path().join("pids");
    let mut helper = helper_command(mode, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until("helper's job to start", Duration::from_secs(15), || {
        read_pids(&pids_file).len() == 3
    })
    .await;
    let mut pids = read_pids(&pids_file);
    // The group leader is the `timeout` wrapper; it must die too.
    let pgid = pgid_of(pids[0]);
    assert_ne!(
        pgid, pids[0],
        "the job should run under the timeout wrapper"
    );
    pids.push(pgid);
    // If the test fails, do not leave its processes behind.
    let _cleanup = GroupGuard {
        pgid: Pid::from_raw(pgid),
        armed: true,
    };
    helper.start_kill().unwrap(); // SIGKILL: the node dies without cleanup.
    helper.wait().await.unwrap();
    assert_all_gone(&pids, Duration::from_secs(5)).await;
}

#[tokio::test]
async fn orphans_die_with_the_node_without_timeout() {
    orphan_protection("orphan-no-timeout").await;
}

#[tokio::test]
async fn orphans_die_with_the_node_with_timeout() {
    orphan_protection("orphan-timeout").await;
}

/// A lease fed by the test: `renew` stands for a heartbeat that confirmed it.
fn leased_job(command: &str) -> (ShellCommand, watch::Sender<Instant>) {
    let (renew, renewed) = watch::channel(Instant::now());
    let cmd = ShellCommand {
        lease: Some(LeaseWatch {
            renewed,
            lease: Duration::from_secs(2),
            heartbeat: Duration::from_millis(500),
            lost: CancellationToken::new(),
        }),
        ..job(command)
    };
    (cmd, renew)
}

/// Regression: a frozen node's shell job ran on alongside the run of the node
/// that took its lease over (SIGSTOP stops the node, not its job's group).
/// Here the node is alive but stops renewing; the job must be gone before
/// the lease could run out, group and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_frozen_nodes_shell_job_outlived_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let (cmd, renew) = leased_job(&stubborn_job(&pids));
    let started = Instant::now();
    let result = run(&cmd).await;
    let pids = read_pids(&pids);
    assert_eq!(result.outcome, ShellOutcome::LeaseExpired);
    // lease 2 s - 1.5 heartbeats = 1.25 s; the lease itself runs out at 2 s.
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1200) && elapsed < Duration::from_secs(2),
        "stopped after {elapsed:?}"
    );
    assert!(result.stderr.text.contains("did not renew its lease"));
    assert_all_gone(&pids, Duration::from_secs(2)).await;
    drop(renew);
}

/// The other half: renewed on time, a job lives as long as it needs, and
/// stale renewals (a heartbeat that took too long) do not count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_lease_is_renewed_runs_to_its_end_and_stale_renewals_do_not_count() {
    let (cmd, renew) = leased_job("sleep 3; echo done");
    let feeder = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if renew.send(Instant::now()).is_err() {
                return renew;
            }
        }
    });
    let result = run(&cmd).await;
    assert_eq!(result.outcome, ShellOutcome::Exited(0), "{result:?}");
    assert_eq!(result.stdout.text, "done\n");
    feeder.abort();

    let (cmd, renew) = leased_job("sleep 5");
    let stale = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            // A heartbeat that started a second ago confirms a lease that
            // may end too soon for a full window.
            if renew.send(Instant::now() - Duration::from_secs(1)).is_err() {
                return renew;
            }
        }
    });
    let result = run(&cmd).await;
    assert_eq!(result.outcome, ShellOutcome::LeaseExpired);
    stale.abort();
}

/// Regression: a node declared dead claimed a job before its heartbeat
/// noticed, and the job's process started anyway (its watchdog got a window
/// of 10 ms, too short to stop it), running beside the rescuer's run. A job
/// whose node's lease may already have run out is never started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_job_claimed_on_a_lease_that_ran_out_never_starts() {
    let dir = tempfile::tempdir().unwrap();
    let witness = dir.path().join("started");
    let (cmd, renew) = leased_job(&format!("touch '{}'", witness.display()));
    // The last renewal was three seconds ago; the lease is two.
    renew.send(Instant::now() - Duration::from_secs(3)).unwrap();
    let result = run(&cmd).await;
    assert_eq!(result.outcome, ShellOutcome::LeaseExpired);
    // `run` waits for the job's process, so had it started, it has run.
    assert!(!witness.exists(), "the job ran on an expired lease");

    // Renewed, the same job runs.
    renew.send(Instant::now()).unwrap();
    let result = run(&cmd).await;
    assert_eq!(result.outcome, ShellOutcome::Exited(0), "{result:?}");
    assert!(witness.exists());
}

/// Regression: when a node lost its lease, its runs were stopped like at
/// shutdown: SIGTERM to the group, then SIGKILL after the kill grace. The
/// SIGTERM also killed the lease watchdog, so a job that ignores SIGTERM ran
/// on past the lease, beside the rescuer's run (seen as a real overlap by the
/// fault suite). A lost lease SIGKILLs the group at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_lost_lease_kills_a_job_that_ignores_sigterm_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let (mut cmd, renew) = leased_job(&stubborn_job(&pids));
    // A grace far longer than the test may take: only the kill path ends it.
    cmd.kill_grace = Duration::from_secs(600);
    let lost = cmd.lease.as_ref().unwrap().lost.clone();
    let cancel = CancellationToken::new();
    let feeder = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if renew.send(Instant::now()).is_err() {
                return;
            }
        }
    });
    let run = tokio::spawn({
        let cancel = cancel.clone();
        async move { run_shell(&cmd, &cancel).await }
    });
    wait_until("the job to start", Duration::from_secs(10), || {
        !read_pids(&pids).is_empty()
    })
    .await;
    // As `Lease::lost` does: the lost token first, then the run's token.
    lost.cancel();
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("a lost lease must not wait for the kill grace")
        .unwrap()
        .unwrap();
    assert_eq!(result.outcome, ShellOutcome::LeaseExpired);
    assert_all_gone(&read_pids(&pids), Duration::from_secs(5)).await;
    feeder.abort();
}
