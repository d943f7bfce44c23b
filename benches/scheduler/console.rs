//! Scenario 7, the console at scale: 10,000 and 100,000 jobs; the time to
//! build and render one frame of the jobs table (to a `TestBackend` at
//! 200×50), the refresh query time, and the console's resident memory.
//! Targets at 10,000 jobs: frame ≤ 10 ms p99, refresh ≤ 50 ms p99, RSS ≤ 60 MB.
//!
//! STUB: the console is built on another branch. Once it is merged, measure
//! here: insert the jobs with `BenchDb::insert_every_jobs`, run the console's
//! refresh query through its data task, render its jobs view into
//! `ratatui::backend::TestBackend::new(200, 50)` repeatedly (report a
//! `Figure::dist` per figure), and read `VmRSS` of a console process from
//! `/proc/<pid>/status`.

use crate::report::Figure;
use crate::Ctx;

pub async fn run(_ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    Ok(vec![Figure::skipped(
        "7 console at scale",
        "not yet measured: console not merged",
    )])
}
