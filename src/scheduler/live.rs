//! Live runs: what a running job has printed and how far it says it got,
//! written to its run row while it runs (issues 12.2, 14.1, 14.2).
//!
//! ```text
//!   shell job ── stdout/stderr pipes ──┐
//!             ── progress fd ──────────┤
//!   SQL job ──── notices ──────────────┴─▶ JobOutput ──▶ live writer ──▶ crondeck.runs
//!                                         (bounded)     (≤ 1 write/s,     (stdout, stderr,
//!                                                        fenced)           progress_*)
//! ```
//!
//! A [`JobOutput`] holds the same bounded head + tail capture as the final
//! output (`shell::capture`), so memory stays flat and what is shown while
//! the job runs is cut the same way as what is recorded at its end. The
//! writer ([`write_while_running`]) writes a snapshot at most once per
//! [`LIVE_INTERVAL`], only what changed, only while the run is `running` and
//! belongs to this node with a live lease in database time
//! (`db::runs::run_live_update`, the same fence as the finish), and not at
//! all once the node knows its lease is lost. The record written when the
//! run finishes stays authoritative: it overwrites whatever was written live.
//!
//! # Progress lines
//! A job reports progress with lines such as `progress 4000/10000`,
//! `progress 4000` (a count without a total), `done=4000 remaining=6000` or
//! `done=4000 total=10000` ([`parse_progress`]); an SQL job sends the same
//! text after `crondeck:` in a notice (`RAISE NOTICE 'crondeck:progress
//! 4000/10000'`). Anything else, a line longer than [`PROGRESS_LINE_MAX`], a
//! number that does not fit, or a `done` beyond the total is ignored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::node::Shared;
use super::shell::capture::Capture;
use super::shell::CapturedOutput;
use crate::db::runs::{run_live_update, LiveUpdate, Progress};

/// At most one live write per run per interval.
pub const LIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest progress line (bytes, newline excluded) that is parsed; longer
/// lines are dropped whole.
pub const PROGRESS_LINE_MAX: usize = 256;
/// The prefix of an SQL job's progress notice.
pub const NOTICE_PREFIX: &str = "crondeck:";

/// One of a job's two output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a job has produced so far: its two streams, bounded like the final
/// output, and the latest progress it reported. Shared between whatever
/// feeds it (the shell job's pipe readers, the SQL job's notice receiver)
/// and the live writer.
#[derive(Debug)]
pub struct JobOutput {
    stdout: Mutex<Capture>,
    stderr: Mutex<Capture>,
    progress: Mutex<Option<Progress>>,
    output_version: AtomicU64,
    progress_version: AtomicU64,
    changed: Notify,
}

impl JobOutput {
    /// Keeps `limit` bytes at the head and at the tail of each stream.
    pub fn new(limit: usize) -> JobOutput {
        JobOutput {
            stdout: Mutex::new(Capture::new(limit)),
            stderr: Mutex::new(Capture::new(limit)),
            progress: Mutex::new(None),
            output_version: AtomicU64::new(0),
            progress_version: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    fn stream(&self, stream: Stream) -> &Mutex<Capture> {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    pub fn push(&self, stream: Stream, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.stream(stream)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(data);
        self.output_version.fetch_add(1, Ordering::Release);
        self.changed.notify_one();
    }

    /// Records why `stream` was not read to its end.
    pub fn set_note(&self, stream: Stream, note: &'static str) {
        self.stream(stream)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_note(note);
    }

    pub fn set_progress(&self, progress: Progress) {
        let mut current = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        if *current == Some(progress) {
            return;
        }
        *current = Some(progress);
        drop(current);
        self.progress_version.fetch_add(1, Ordering::Release);
        self.changed.notify_one();
    }

    /// The latest progress reported.
    pub fn progress(&self) -> Option<Progress> {
        *self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What was captured of `stream` so far.
    pub fn snapshot(&self, stream: Stream) -> CapturedOutput {
        self.stream(stream)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .snapshot()
    }

    /// Parse one progress line (a shell job's progress fd) and record it.
    pub fn progress_line(&self, line: &[u8]) {
        if let Some(progress) = std::str::from_utf8(line).ok().and_then(parse_progress) {
            self.set_progress(progress);
        }
    }
}

/// Splits a byte stream into progress lines, bounded: a line longer than
/// [`PROGRESS_LINE_MAX`] is skipped up to its newline, never buffered.
#[derive(Debug, Default)]
pub struct ProgressLines {
    line: Vec<u8>,
    overlong: bool,
}

impl ProgressLines {
    /// Feed bytes; every complete line goes to `output`.
    pub fn push(&mut self, mut data: &[u8], output: &JobOutput) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.take(&data[..end]);
                    if !self.overlong {
                        output.progress_line(&self.line);
                    }
                    self.line.clear();
                    self.overlong = false;
                    data = &data[end + 1..];
                }
                None => {
                    self.take(data);
                    data = &[];
                }
            }
        }
    }

    fn take(&mut self, part: &[u8]) {
        if self.overlong {
            return;
        }
        if self.line.len() + part.len() > PROGRESS_LINE_MAX {
            self.overlong = true;
            self.line.clear();
        } else {
            self.line.extend_from_slice(part);
        }
    }

    /// The stream ended: a last line without a newline counts too.
    pub fn finish(&mut self, output: &JobOutput) {
        if !self.overlong && !self.line.is_empty() {
            output.progress_line(&self.line);
        }
        self.line.clear();
        self.overlong = false;
    }
}

/// A progress line: `progress D/T`, `progress D`, `done=D remaining=R`,
/// `done=D total=T` or `done=D` (surrounding blanks allowed). `None` for
/// anything else, a number beyond `i64`, or `D` beyond the total.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let line = line.trim_matches(|c: char| c.is_ascii_whitespace());
    if let Some(rest) = line.strip_prefix("progress") {
        if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
            return None;
        }
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_whitespace());
        return match rest.split_once('/') {
            Some((done, total)) => checked(number(done)?, Some(number(total)?)),
            None => checked(number(rest)?, None),
        };
    }
    let (mut done, mut remaining, mut total) = (None, None, None);
    for word in line.split_ascii_whitespace() {
        let (key, value) = word.split_once('=')?;
        let slot = match key {
            "done" => &mut done,
            "remaining" => &mut remaining,
            "total" => &mut total,
            _ => return None,
        };
        if slot.replace(number(value)?).is_some() {
            return None;
        }
    }
    let done = done?;
    let total = match (remaining, total) {
        (Some(_), Some(_)) => return None,
        (Some(remaining), None) => Some(done.checked_add(remaining)?),
        (None, total) => total,
    };
    checked(done, total)
}

fn checked(done: i64, total: Option<i64>) -> Option<Progress> {
    match total {
        Some(total) if done > total => None,
        _ => Some(Progress { done, total }),
    }
}

/// A non-negative decimal that fits `i64`: ASCII digits only, no sign.
fn number(text: &str) -> Option<i64> {
    if text.is_empty() || text.len() > 18 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Which streams the live writer writes.
#[derive(Debug, Clone, Copy)]
pub enum Streams {
    /// A shell job: stdout and stderr.
    Both,
    /// An SQL job: its notices, kept as stdout.
    StdoutOnly,
}

/// Write `output` to the run's row while it changes, at most once per
/// [`LIVE_INTERVAL`], until `stop` (the run ended) or `lost` (the lease of
/// the registration it runs under is gone). Returns once stopped; a write
/// in flight when `stop` fires is completed first (bounded by the request
/// deadline), so that no live write lands after the caller goes on to
/// record the run's end. Errors are logged and the next change retried: the
/// final record does not depend on any of this.
pub(crate) async fn write_while_running(
    shared: &Shared,
    run_id: i64,
    node_id: &str,
    output: &JobOutput,
    streams: Streams,
    stop: &CancellationToken,
    lost: &CancellationToken,
) {
    let mut written_output = 0;
    let mut written_progress = 0;
    let mut last_write: Option<Instant> = None;
    loop {
        let output_version = output.output_version.load(Ordering::Acquire);
        let progress_version = output.progress_version.load(Ordering::Acquire);
        if output_version == written_output && progress_version == written_progress {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = lost.cancelled() => return,
                _ = output.changed.notified() => continue,
            }
        }
        if let Some(at) = last_write {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = lost.cancelled() => return,
                _ = tokio::time::sleep_until(at + LIVE_INTERVAL) => {}
            }
        }
        if lost.is_cancelled() || stop.is_cancelled() {
            return;
        }
        // Versions first, then the data: a change after this is seen by
        // the next round.
        let output_version = output.output_version.load(Ordering::Acquire);
        let progress_version = output.progress_version.load(Ordering::Acquire);
        let mut update = LiveUpdate::default();
        if output_version != written_output {
            let stdout = output.snapshot(Stream::Stdout);
            update.stdout_dropped = i64::try_from(stdout.dropped_bytes).unwrap_or(i64::MAX);
            update.stdout = Some(stdout.text);
            if matches!(streams, Streams::Both) {
                let stderr = output.snapshot(Stream::Stderr);
                update.stderr_dropped = i64::try_from(stderr.dropped_bytes).unwrap_or(i64::MAX);
                update.stderr = Some(stderr.text);
            }
        }
        if progress_version != written_progress {
            update.progress = output.progress();
        }
        last_write = Some(Instant::now());
        match write_once(shared, run_id, node_id, &update).await {
            Ok(true) => {
                written_output = output_version;
                written_progress = progress_version;
            }
            Ok(false) => {
                tracing::debug!(
                    run = run_id,
                    "the run is no longer running on this node; no more live output"
                );
                return;
            }
            Err(error) => {
                tracing::debug!(run = run_id, error = %format!("{error:#}"),
                    "could not write the run's live output; trying again later");
            }
        }
    }
}

async fn write_once(
    shared: &Shared,
    run_id: i64,
    node_id: &str,
    update: &LiveUpdate,
) -> anyhow::Result<bool> {
    let deadline = shared.request_deadline();
    let object = tokio::time::timeout(deadline, shared.pool.get())
        .await
        .map_err(|_| anyhow::anyhow!("no database connection within {deadline:?}"))??;
    match tokio::time::timeout(
        deadline,
        run_live_update(&**object, run_id, node_id, update),
    )
    .await
    {
        Ok(written) => Ok(written?),
        Err(_) => {
            // Wedged mid-request: never reuse the connection.
            drop(deadpool_postgres::Object::take(object));
            anyhow::bail!("writing the live output got no answer within {deadline:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(done: i64, total: Option<i64>) -> Option<Progress> {
        Some(Progress { done, total })
    }

    #[test]
    fn progress_forms() {
        assert_eq!(parse_progress("progress 4000/10000"), p(4000, Some(10000)));
        assert_eq!(parse_progress("  progress   7 \r"), p(7, None));
        assert_eq!(
            parse_progress("done=4000 remaining=6000"),
            p(4000, Some(10000))
        );
        assert_eq!(parse_progress("done=4 total=10"), p(4, Some(10)));
        assert_eq!(parse_progress("remaining=6 done=4"), p(4, Some(10)));
        assert_eq!(parse_progress("done=0"), p(0, None));
        assert_eq!(parse_progress("progress 10/10"), p(10, Some(10)));
    }

    #[test]
    fn malformed_progress_is_ignored() {
        for line in [
            "",
            "progress",
            "progress -1/10",
            "progress +1/10",
            "progress 11/10",
            "progress 1/",
            "progress /1",
            "progress 1/2/3",
            "progressive 1/2",
            "progress1/2",
            "progress 1.5/2",
            "progress 99999999999999999999/1",
            "done=1 remaining=2 total=3",
            "done=1 done=2",
            "done=5 total=4",
            "remaining=5",
            "done=1 why=2",
            "done=",
            "done=9223372036854775807 remaining=9223372036854775807",
            "PROGRESS 1/2",
            "progress 1/2 extra",
        ] {
            assert_eq!(parse_progress(line), None, "{line:?}");
        }
    }

    #[test]
    fn lines_are_bounded() {
        let output = JobOutput::new(64);
        let mut lines = ProgressLines::default();
        // A long line split over many chunks is dropped whole, even if it
        // ends like a valid line; the next line still counts.
        let mut long = vec![b'x'; PROGRESS_LINE_MAX * 4];
        long.extend_from_slice(b" progress 9/10\n");
        for chunk in long.chunks(100) {
            lines.push(chunk, &output);
        }
        assert_eq!(output.progress(), None);
        lines.push(b"progress 1/", &output);
        lines.push(b"2\ngarbage\xff\n", &output);
        assert_eq!(output.progress(), p(1, Some(2)));
        lines.push(b"done=2 remaining=0", &output);
        assert_eq!(output.progress(), p(1, Some(2)));
        lines.finish(&output);
        assert_eq!(output.progress(), p(2, Some(2)));
    }
}
