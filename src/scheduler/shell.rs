//! Running shell jobs: `sh -c <command>` with bounded output, timeouts,
//! cancellation, and no processes left behind.
//!
//! # Process group
//! Each job starts in a new process group (`process_group(0)`) with stdin
//! closed. Every signal the node sends goes to the whole group (`killpg`), so
//! pipelines and background children of the job are stopped together with
//! `sh`. When `sh` exits by itself the group is SIGKILLed as well: **a job's
//! processes do not outlive its run.** A leftover `cmd &` would otherwise keep
//! running unrecorded and hold the output pipes open. A process that leaves
//! the group on purpose (`setsid`, `setpgid`) escapes this; see "Capture".
//!
//! # Capture
//! stdout and stderr are read concurrently while the job runs, 64 KiB at a
//! time, into a head buffer plus a tail ring of `output_limit` bytes each
//! ([`capture`]), so memory stays flat however much the job prints. Once the
//! group is dead the pipes normally hit EOF at once; if an escaped process
//! still holds one, reading stops after [`DRAIN_TIMEOUT`] and the text says so,
//! so such a process cannot hang the node.
//!
//! # Timeout and cancellation
//! On timeout or cancel the group gets SIGTERM, the node waits up to
//! `kill_grace` for the job's main process, then SIGKILLs the group (always,
//! even if the main process exited in time, because a grandchild may ignore
//! SIGTERM). Outcome: `TimedOut` or `Interrupted`.
//!
//! # Orphans when the node dies
//! If the node is killed with SIGKILL it cannot signal anything, and
//! `PR_SET_PDEATHSIG` reaches only the direct child. So when GNU coreutils
//! `timeout` is installed the job runs as
//! `timeout --signal=KILL <backstop> sh -c <command>` with the death signal of
//! the `timeout` process set to SIGALRM. Verified with coreutils 9.1 (not
//! assumed): `timeout` puts itself in the job's group (it calls
//! `setpgid(0, 0)`, a no-op here) and treats a SIGALRM from outside exactly
//! like its own expiry, sending `--signal` to the command *and* to the whole
//! group, grandchildren included; `timeout 0` disables only the timer, not
//! that handling.
//!
//! Trade-off: the death path SIGKILLs the job with no grace. The gentler
//! choice, death signal SIGTERM plus `--kill-after`, was tested and rejected:
//! `timeout` forwards SIGTERM to the group, but its `--kill-after` escalation
//! only runs while `sh` is still alive, so if `sh` dies of SIGTERM a grandchild
//! that ignores SIGTERM survives for good. The `<backstop>` (job timeout +
//! grace + [`BACKSTOP_SLACK`]; `0` = none when the job has no timeout) also
//! covers a node that is hung rather than dead; the node's own timer fires
//! first and is what records `TimedOut`.
//!
//! Exit statuses pass through `timeout` unchanged: exit code N gives N, and a
//! command killed by signal N makes `timeout` re-raise N on itself (core dumps
//! disabled), so the outcome is the job's own. The codes 125 to 127, which
//! `timeout` uses for its own failures, cannot be told apart from the job's;
//! in practice they come from `sh` (127: command not found).
//!
//! # Lease watchdog: a job never outlives its node's lease
//! A node that is frozen (SIGSTOP, a stalled VM, a hung runtime) or cut off
//! from the database cannot stop its jobs, yet once its lease runs out
//! another node takes its runs over and may start the same job again. The
//! death signal does not help: the node is not dead. So each job carries a
//! watchdog, a small `sh` loop inside the job's process group, and the node
//! feeds it one byte through a pipe (the wrapper's stdin) after every
//! heartbeat that *confirmed* its lease. A watchdog that gets no byte within
//! its window, or sees the pipe close (the node died), SIGKILLs the group.
//!
//! The window is `lease - 1.5 × heartbeat` (see [`LeaseWatch`]), and a
//! renewal is forwarded only if its heartbeat started at most one heartbeat
//! ago. A heartbeat that started at `t0` holds the lease until at least
//! `t0 + lease` by database time (the database stamped it later than `t0`);
//! so the watchdog fires by `t0 + heartbeat + window = t0 + lease -
//! heartbeat/2`: half a heartbeat before any other node can rescue the run,
//! assuming clocks tick at the same rate (skewed offsets do not matter: only
//! durations are compared). A healthy node renews every heartbeat, so a
//! heartbeat may be late by up to `lease - 2.5 × heartbeat` (half a
//! heartbeat at the minimum lease of three heartbeats; 17.5 s with the
//! defaults) before its jobs are stopped. The run then ends `abandoned`,
//! whether the node records it (nobody rescued it yet) or a rescuer does.
//! There is no grace period on this path: the job must be gone before
//! another node may start it.
//!
//! Without GNU `timeout`, `sh` runs directly with a death signal of SIGKILL
//! and a warning is logged: on a node crash the job's other processes may
//! survive, and there is no lease watchdog: a frozen node's job may run on
//! while another node runs the same job.
//!
//! **Caveat:** the death signal fires when the *thread* that spawned the
//! process exits, not the process. `run_shell` spawns from the thread polling
//! it, so it must run in an async task on a runtime worker thread (they live as
//! long as the runtime), never inside `spawn_blocking`, whose threads exit when
//! idle and would kill the job.
//!
//! # Progress channel
//! With `progress_fd` set, the job gets the write end of a pipe as file
//! descriptor [`PROGRESS_FD`] (9; single-digit so that `dash` can name it),
//! and its number in `CRONDECK_PROGRESS_FD`. Lines it writes there
//! (`progress 4000/10000`, `done=4000 remaining=6000`) are parsed by the
//! node (`live::parse_progress`), bounded in length, and recorded on the
//! run; anything else is ignored. The node reads the pipe for as long as the
//! job runs, so a write never blocks the job nor gets it a SIGPIPE, and a job
//! that ignores the descriptor is not affected. The descriptor is opened
//! close-on-exec in the node and made inheritable only in the job's child
//! between fork and exec: no other process the node starts gets it (the
//! lease watchdog's loop closes its copy). The job's own children inherit it
//! like stdout, and may report too.
//!
//! # Environment
//! A job does not inherit the node's environment, which holds the database
//! URL, `PGPASSWORD` and whatever else the node was started with. It gets
//! only the variables named in [`JOB_ENV`] (from the node, when set), a
//! default `PATH` if the node has none, and the `CRONDECK_*` variables of the
//! run.
//!
//! Linux only (`prctl`, `/proc`).

pub(crate) mod capture;
#[cfg(test)]
mod tests;

pub use capture::CapturedOutput;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::live::{JobOutput, ProgressLines, Stream};
use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::sync::{watch, OnceCell};
use tokio_util::sync::CancellationToken;

/// How long to keep reading output after the job's group is dead.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Added to timeout + grace for the `timeout` wrapper's own backstop timer.
pub const BACKSTOP_SLACK: Duration = Duration::from_secs(5);
const READ_BUF: usize = 64 * 1024;
/// The job's file descriptor for progress lines (see "Progress channel").
/// The watchdog script below closes it by this number.
pub const PROGRESS_FD: libc::c_int = 9;
/// The variable that tells the job [`PROGRESS_FD`].
pub const PROGRESS_FD_ENV: &str = "CRONDECK_PROGRESS_FD";
/// The job's wrapper when it has a lease watchdog: `$1` the window, `$2` the
/// first window, the rest the job's argv (`sh -c <command>`, or the program
/// and its arguments). The pipe from the node arrives as stdin and moves to
/// fd 3; the job itself gets stdin closed, as always. `--foreground` keeps
/// the inner `timeout` in the job's group, so every process of the watchdog
/// dies with the job.
const WATCHDOG_SCRIPT: &str = r#"exec 3<&0 </dev/null
window=$1 first=$2
shift 2
{
  t=$first
  while [ -n "$(timeout --foreground "$t" head -c 1 <&3)" ]; do t=$window; done
  echo "crondeck: job stopped: its node did not renew its lease in time" >&2
  kill -s KILL 0
} 9>&- &
exec 3<&- "$@""#;
const CUT_SHORT_NOTE: &str =
    "\n[output cut short: a process that left the job's process group still held the pipe open]";

/// The node's variables a job sees (when the node has them): `LC_*` as
/// well. Nothing else passes: not `DATABASE_URL`, `PG*`,
/// `CRONDECK_DATABASE_URL`, nor any other variable of the node.
pub const JOB_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];
/// `PATH` for a job when the node has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The part of the node's environment `vars` a job gets (see [`JOB_ENV`]).
pub fn job_env(
    vars: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    let mut kept: Vec<_> = vars
        .into_iter()
        .filter(|(name, _)| {
            name.to_str().is_some_and(|name| {
                JOB_ENV.contains(&name) || name.strip_prefix("LC_").is_some_and(|r| !r.is_empty())
            })
        })
        .collect();
    if !kept.iter().any(|(name, _)| name == "PATH") {
        kept.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    kept
}

/// A shell job to run.
#[derive(Debug, Clone)]
pub struct ShellCommand {
    /// Run as `sh -c <command>` (unless `argv` is set).
    pub command: String,
    /// Run this program with these arguments directly, without a shell
    /// (a node with a shell allow-list; see `scheduler::allow`).
    pub argv: Option<Vec<String>>,
    /// Added to the scrubbed environment (see [`JOB_ENV`]): CRONDECK_JOB,
    /// CRONDECK_RUN_ID, ...
    pub env: Vec<(String, String)>,
    /// `None`: no timeout.
    pub timeout: Option<Duration>,
    /// Delay between SIGTERM and SIGKILL when stopping the job.
    pub kill_grace: Duration,
    /// Bytes kept at the head and at the tail of each stream.
    pub output_limit: usize,
    /// Tie the job's life to the node's lease (see "Lease watchdog").
    /// `None`: the job may outlive a frozen node.
    pub lease: Option<LeaseWatch>,
    /// Where the output and progress go while the job runs (shared with
    /// the live writer). `None`: a private one of `output_limit`.
    pub output: Option<Arc<JobOutput>>,
    /// Open the progress channel (see "Progress channel").
    pub progress_fd: bool,
}

/// The node's lease, as a shell job's watchdog needs it.
#[derive(Debug, Clone)]
pub struct LeaseWatch {
    /// Changes after each heartbeat that renewed the lease, to the instant
    /// that heartbeat started.
    pub renewed: watch::Receiver<Instant>,
    pub lease: Duration,
    pub heartbeat: Duration,
    /// Cancelled when the registration the run was claimed under is lost:
    /// the job's group is SIGKILLed at once, with no grace, since another
    /// node may take the run over (a SIGTERM would also kill the watchdog
    /// and leave a job that ignores SIGTERM running beyond the lease).
    pub lost: CancellationToken,
}

impl LeaseWatch {
    /// How long the job lives after a forwarded renewal.
    pub fn window(&self) -> Duration {
        self.lease.saturating_sub(self.heartbeat * 3 / 2)
    }

    /// The latest the job may live on a renewal whose heartbeat started at
    /// `t0`: half a heartbeat before the lease can run out.
    fn deadline(&self, t0: Instant) -> Instant {
        t0 + self.lease.saturating_sub(self.heartbeat / 2)
    }

    /// How long the job could live from now on the latest renewal.
    pub fn left(&self) -> Duration {
        self.deadline(*self.renewed.borrow())
            .saturating_duration_since(Instant::now())
    }
}

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellOutcome {
    /// `sh` exited with this code (0 is success).
    Exited(i32),
    /// `sh` was killed by this signal (not by the node).
    Signaled(i32),
    /// Stopped by the node because the timeout passed.
    TimedOut,
    /// Stopped by the node because of the cancel token.
    Interrupted,
    /// Killed by its lease watchdog: the node did not renew its lease in
    /// time (frozen, or cut off from the database).
    LeaseExpired,
}

#[derive(Debug, Clone)]
pub struct ShellResult {
    pub outcome: ShellOutcome,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    pub elapsed: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error("could not start `sh`: {0}")]
    Spawn(#[source] io::Error),
    /// The job's group has been SIGKILLed when this is returned.
    #[error("could not wait for the job's process: {0}")]
    Wait(#[source] io::Error),
}

/// Runs `cmd` to completion.
///
/// `cancel` means stop now (node shutting down, lease lost): the group gets
/// SIGTERM, then SIGKILL after `kill_grace`, and the outcome is `Interrupted`.
/// Dropping the returned future SIGKILLs the group. Must be polled on a
/// runtime worker thread, not in `spawn_blocking` (see the module docs).
pub async fn run_shell(
    cmd: &ShellCommand,
    cancel: &CancellationToken,
) -> Result<ShellResult, ShellError> {
    let wrapper = timeout_wrapper().await;
    run_with(cmd, cancel, wrapper.as_deref()).await
}

async fn run_with(
    cmd: &ShellCommand,
    cancel: &CancellationToken,
    wrapper: Option<&Path>,
) -> Result<ShellResult, ShellError> {
    let started = Instant::now();
    // A job must be dead before another node may take its run over, so it
    // is never started on a lease that could run out before its watchdog is
    // even in place: a node just woken from a freeze, whose claim slipped in
    // before its heartbeat noticed, starts nothing. A healthy node always
    // has at least `lease - 1.5 × heartbeat` left here.
    if let Some(lease) = &cmd.lease {
        let left = lease.left();
        if left < lease.heartbeat / 2 {
            tracing::warn!(left = ?left, "not starting a shell job: this node's lease may run out before the job could be stopped");
            return Ok(ShellResult {
                outcome: ShellOutcome::LeaseExpired,
                stdout: CapturedOutput::default(),
                stderr: CapturedOutput::default(),
                elapsed: started.elapsed(),
            });
        }
    }
    let output = cmd
        .output
        .clone()
        .unwrap_or_else(|| Arc::new(JobOutput::new(cmd.output_limit)));
    let backstop = cmd.timeout.map(|t| t + cmd.kill_grace + BACKSTOP_SLACK);
    let shell;
    let job_argv: &[String] = match &cmd.argv {
        Some(argv) if !argv.is_empty() => argv,
        Some(_) => return Err(ShellError::Spawn(io::Error::other("empty argv"))),
        None => {
            shell = ["sh".to_owned(), "-c".to_owned(), cmd.command.clone()];
            &shell
        }
    };
    let (mut command, death_signal) = match wrapper {
        Some(path) => {
            let mut c = Command::new(path);
            c.arg("--signal=KILL")
                .arg("--")
                .arg(backstop.map_or_else(|| "0".to_owned(), duration_arg));
            (c, libc::SIGALRM)
        }
        None => (Command::new(&job_argv[0]), libc::SIGKILL),
    };
    // The watchdog needs GNU `timeout` (see the module docs).
    let mut watchdog = match (&cmd.lease, wrapper) {
        (Some(lease), Some(_)) => {
            let (dog, stdin) = Watchdog::new(lease).map_err(ShellError::Spawn)?;
            command
                .arg("sh")
                .arg("-c")
                .arg(WATCHDOG_SCRIPT)
                .arg("crondeck-job")
                .arg(duration_arg(lease.window()))
                .arg(duration_arg(dog.first_window))
                .args(job_argv)
                .stdin(Stdio::from(stdin));
            Some(dog)
        }
        (_, Some(_)) => {
            command.args(job_argv).stdin(Stdio::null());
            None
        }
        (_, None) => {
            command.args(&job_argv[1..]).stdin(Stdio::null());
            None
        }
    };
    command
        .env_clear()
        .envs(job_env(std::env::vars_os()))
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // Close-on-exec in the node: only this job's child inherits it.
    let (progress_read, progress_write) = if cmd.progress_fd {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
            .map_err(|e| ShellError::Spawn(io::Error::from(e)))?;
        command.env(PROGRESS_FD_ENV, PROGRESS_FD.to_string());
        (Some(read), Some(write))
    } else {
        (None, None)
    };
    let progress_raw = progress_write.as_ref().map(AsRawFd::as_raw_fd);
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe syscalls and does not
    // allocate, as required between fork and exec.
    unsafe {
        command.pre_exec(move || {
            set_death_signal(death_signal, parent)?;
            match progress_raw {
                Some(fd) => pass_progress_fd(fd),
                None => Ok(()),
            }
        });
    }
    let mut child = command.spawn().map_err(ShellError::Spawn)?;
    // Our copy of the pipe's read end goes with the Command; the progress
    // pipe's write end must be the job's alone (EOF when it is done).
    drop(command);
    drop(progress_write);
    let pid = child
        .id()
        .ok_or_else(|| ShellError::Spawn(io::Error::other("the spawned process has no pid")))?;
    // process_group(0): the group id is the pid of the process we spawned.
    let mut group = GroupGuard {
        pgid: Pid::from_raw(pid as i32),
        armed: true,
    };
    tracing::debug!(pid, wrapped = wrapper.is_some(), "shell job started");

    let stop_reading = CancellationToken::new();
    let (out_pipe, err_pipe) = (child.stdout.take(), child.stderr.take());
    let readers = async {
        tokio::join!(
            read_stream(out_pipe, &output, Stream::Stdout, &stop_reading),
            read_stream(err_pipe, &output, Stream::Stderr, &stop_reading),
            read_progress(progress_read, &output, &stop_reading),
        )
    };
    let never = CancellationToken::new();
    let lease_lost = cmd.lease.as_ref().map_or(&never, |l| &l.lost);
    let supervise = async {
        let timeout = sleep_opt(cmd.timeout);
        tokio::pin!(timeout);
        let ended = loop {
            tokio::select! {
                biased;
                status = child.wait() => break Ended::Exited(status),
                _ = &mut timeout => break Ended::Stopped(ShellOutcome::TimedOut),
                // Before `cancel`: losing the lease cancels both.
                _ = lease_lost.cancelled() => break Ended::Killed,
                _ = cancel.cancelled() => break Ended::Stopped(ShellOutcome::Interrupted),
                t0 = next_renewal(&mut watchdog) => {
                    if let Some(dog) = watchdog.as_mut() {
                        dog.forward(t0);
                    }
                }
            }
        };
        let outcome = match ended {
            Ended::Exited(status) => {
                // Background children of the job must not outlive it. The
                // leader is already reaped; if the group is empty its id could
                // in theory be reused, but only by a new group leader created
                // within microseconds after a full pid wrap-around.
                group.signal(Signal::SIGKILL);
                let watchdog_fired = watchdog.as_ref().is_some_and(Watchdog::has_fired);
                status.map(|s| match job_outcome(s, started.elapsed(), backstop) {
                    ShellOutcome::Signaled(libc::SIGKILL) if watchdog_fired => {
                        ShellOutcome::LeaseExpired
                    }
                    outcome => outcome,
                })
            }
            Ended::Killed => {
                group.signal(Signal::SIGKILL);
                if let Err(e) = child.wait().await {
                    tracing::warn!(pid, error = %e, "could not reap a killed shell job");
                }
                Ok(ShellOutcome::LeaseExpired)
            }
            Ended::Stopped(outcome) => {
                group.signal(Signal::SIGTERM);
                if tokio::time::timeout(cmd.kill_grace, child.wait())
                    .await
                    .is_err()
                {
                    tracing::info!(pid, "shell job ignored SIGTERM, sending SIGKILL");
                }
                // Even if the main process exited, a grandchild may ignore SIGTERM.
                group.signal(Signal::SIGKILL);
                if let Err(e) = child.wait().await {
                    tracing::warn!(pid, error = %e, "could not reap a stopped shell job");
                }
                Ok(outcome)
            }
        };
        group.armed = false;
        outcome
    };

    tokio::pin!(readers, supervise);
    let mut drained = false;
    let outcome = loop {
        tokio::select! {
            outcome = &mut supervise => break outcome,
            _ = &mut readers, if !drained => drained = true,
        }
    };
    if !drained
        && tokio::time::timeout(DRAIN_TIMEOUT, &mut readers)
            .await
            .is_err()
    {
        tracing::warn!(
            pid,
            "an escaped process holds the output of a finished shell job; no longer reading it"
        );
        stop_reading.cancel();
        readers.await;
    }
    Ok(ShellResult {
        outcome: outcome.map_err(ShellError::Wait)?,
        stdout: output.snapshot(Stream::Stdout),
        stderr: output.snapshot(Stream::Stderr),
        elapsed: started.elapsed(),
    })
}

/// The node's end of a job's lease watchdog.
struct Watchdog {
    /// Write end of the pipe; non-blocking, so a watchdog that stopped
    /// reading can never block the node.
    pipe: OwnedFd,
    lease: LeaseWatch,
    /// The watchdog's first window, from the latest renewal at spawn time.
    first_window: Duration,
    /// When the watchdog stops the job unless it hears from us first.
    fires_at: Instant,
}

impl Watchdog {
    /// The watchdog's state and the read end of its pipe.
    fn new(lease: &LeaseWatch) -> io::Result<(Watchdog, OwnedFd)> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        fcntl(write.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        let mut lease = lease.clone();
        let t0 = *lease.renewed.borrow_and_update();
        let now = Instant::now();
        // Never 0: `timeout 0` would mean no limit at all.
        let first_window = lease
            .window()
            .min(lease.deadline(t0).saturating_duration_since(now))
            .max(Duration::from_millis(10));
        let dog = Watchdog {
            pipe: write,
            first_window,
            fires_at: now + first_window,
            lease,
        };
        Ok((dog, read))
    }

    /// Pass on a renewal whose heartbeat started at `t0`, unless it is too
    /// old to extend the job's life by a full window within the lease.
    fn forward(&mut self, t0: Instant) {
        let now = Instant::now();
        if now + self.lease.window() > self.lease.deadline(t0) {
            return;
        }
        match nix::unistd::write(&self.pipe, b"r") {
            Ok(_) => self.fires_at = now + self.lease.window(),
            // Full (the watchdog is not reading) or closed (it is gone):
            // either way nothing to renew.
            Err(e) => tracing::debug!(error = %e, "could not renew a shell job's watchdog"),
        }
    }

    /// Whether the watchdog's window ran out (so a SIGKILL was its doing).
    fn has_fired(&self) -> bool {
        Instant::now() >= self.fires_at
    }
}

/// The next lease renewal; never, without a watchdog or once the node is gone.
async fn next_renewal(watchdog: &mut Option<Watchdog>) -> Instant {
    if let Some(dog) = watchdog.as_mut() {
        if dog.lease.renewed.changed().await.is_ok() {
            return *dog.lease.renewed.borrow_and_update();
        }
    }
    std::future::pending().await
}

enum Ended {
    Exited(io::Result<ExitStatus>),
    Stopped(ShellOutcome),
    /// The lease was lost: SIGKILL now, no grace.
    Killed,
}

/// The job's outcome from the status of `sh` (or of the `timeout` wrapper,
/// which passes it through).
fn job_outcome(status: ExitStatus, elapsed: Duration, backstop: Option<Duration>) -> ShellOutcome {
    let backstop_fired = backstop.is_some_and(|b| elapsed >= b);
    match (status.code(), status.signal()) {
        (Some(code), _) => ShellOutcome::Exited(code),
        // The wrapper's backstop ends the job with --signal=KILL; only
        // reachable if the node's own timer did not fire.
        (None, Some(libc::SIGKILL)) if backstop_fired => ShellOutcome::TimedOut,
        (None, Some(sig)) => ShellOutcome::Signaled(sig),
        // wait() reports only terminated processes, which have one of the two.
        (None, None) => ShellOutcome::Exited(-1),
    }
}

/// SIGKILLs the job's group when dropped while armed, so that dropping the
/// `run_shell` future does not leave the job running.
struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl GroupGuard {
    fn signal(&self, signal: Signal) {
        match killpg(self.pgid, signal) {
            // The group is already empty.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                tracing::warn!(pgid = %self.pgid, %signal, error = %e, "could not signal shell job")
            }
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.signal(Signal::SIGKILL);
        }
    }
}

/// Runs between fork and exec in the child.
fn set_death_signal(signal: libc::c_int, parent: u32) -> io::Result<()> {
    // SAFETY: prctl and getppid are plain syscalls.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // If the node died before prctl, no death signal will ever come.
    if unsafe { libc::getppid() } as u32 != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Runs between fork and exec in the child: the progress pipe's write end
/// `fd` (close-on-exec) becomes [`PROGRESS_FD`], inheritable. (If the node's
/// `fd` already is that number, only close-on-exec is cleared.) Whatever the
/// child had as fd 9 is replaced; it can only be a close-on-exec descriptor
/// of the node, so the job loses nothing. Known edge: should that be the
/// pipe on which the standard library reports a failed `exec`, such a
/// failure shows as exit status 1 instead of "could not start".
fn pass_progress_fd(fd: libc::c_int) -> io::Result<()> {
    // SAFETY: dup2 and fcntl are plain syscalls on descriptors of this
    // process.
    let done = if fd == PROGRESS_FD {
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }
    } else {
        unsafe { libc::dup2(fd, PROGRESS_FD) }
    };
    if done == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the progress pipe until the job (and whatever inherited the pipe)
/// closed it, or `stop`. Never closes it early: a job writing to a closed
/// pipe would get SIGPIPE.
async fn read_progress(pipe: Option<OwnedFd>, output: &JobOutput, stop: &CancellationToken) {
    let Some(fd) = pipe else { return };
    let mut pipe = match tokio::net::unix::pipe::Receiver::from_owned_fd(fd) {
        Ok(pipe) => pipe,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the progress of a shell job");
            return;
        }
    };
    let mut lines = ProgressLines::default();
    let mut buf = vec![0u8; 4096];
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            read = pipe.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => lines.push(&buf[..n], output),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the progress of a shell job");
                    // Keep the pipe open while the job may still write.
                    stop.cancelled().await;
                    break;
                }
            },
        }
    }
    lines.finish(output);
}

async fn read_stream<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    output: &JobOutput,
    stream: Stream,
    stop: &CancellationToken,
) {
    let Some(mut pipe) = pipe else {
        return;
    };
    let mut buf = vec![0u8; READ_BUF];
    loop {
        tokio::select! {
            // Checked first: a pipe that is always readable must not starve it.
            biased;
            _ = stop.cancelled() => {
                output.set_note(stream, CUT_SHORT_NOTE);
                break;
            }
            read = pipe.read(&mut buf) => match read {
                Ok(0) => break,
                Ok(n) => output.push(stream, &buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not read shell job output");
                    output.set_note(stream, "\n[output cut short: read error]");
                    break;
                }
            },
        }
    }
}

async fn sleep_opt(duration: Option<Duration>) {
    match duration {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// `timeout` duration syntax, millisecond precision.
fn duration_arg(d: Duration) -> String {
    format!("{}.{:03}s", d.as_secs(), d.subsec_millis())
}

/// The GNU coreutils `timeout` binary, looked up once per process.
async fn timeout_wrapper() -> &'static Option<PathBuf> {
    static WRAPPER: OnceCell<Option<PathBuf>> = OnceCell::const_new();
    WRAPPER
        .get_or_init(|| async {
            let found = find_gnu_timeout().await;
            match &found {
                Some(path) => tracing::debug!(path = %path.display(), "shell jobs run under coreutils timeout"),
                None => tracing::warn!(
                    "GNU coreutils `timeout` not found: shell jobs run without it, and if the node \
                     is killed a job's background processes may survive"
                ),
            }
            found
        })
        .await
}

async fn find_gnu_timeout() -> Option<PathBuf> {
    let mut candidates = vec![
        PathBuf::from("/usr/bin/timeout"),
        PathBuf::from("/bin/timeout"),
    ];
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|dir| dir.join("timeout")));
    }
    for candidate in candidates {
        if candidate.is_file() && is_gnu_timeout(&candidate).await {
            return Some(candidate);
        }
    }
    None
}

/// Only GNU's behaviour was verified (see the module docs); busybox and
/// uutils `timeout` may not signal the whole group.
async fn is_gnu_timeout(path: &Path) -> bool {
    let output = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(Duration::from_secs(5), output).await {
        Ok(Ok(out)) => {
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("GNU coreutils")
        }
        _ => false,
    }
}
