//! crondeck's benchmarks (issue 6): precision, throughput and scale, measured
//! against PostgreSQL's own limit and against pg_cron. See BENCHMARKS.md.
//!
//! ```text
//! cargo bench --bench scheduler                 # full run, about 30 minutes
//! cargo bench --bench scheduler -- --quick      # shorter windows, no pg_cron, about 3 minutes
//! cargo bench --bench scheduler -- --only 1,4   # some scenarios
//! ```
//!
//! The harness starts its own throwaway PostgreSQL (the embedded launcher in
//! ephemeral mode, like the tests: fsync off), restarted once with
//! pg_stat_statements preloaded, and gives every scenario a fresh migrated
//! database. Scheduler nodes run in this process (except the crash victim of
//! scenario 6, a real `crondeck scheduler` process). Every lateness is taken
//! from the run history by database time: `started_at − scheduled_for`.
//!
//! It prints one table and appends the figures as JSON lines to
//! `$CARGO_TARGET_TMPDIR/crondeck-bench.jsonl`. It asserts nothing: a missed
//! target is a row marked MISSED, not a failure.

mod console;
mod herd;
mod idle;
mod pgcron;
mod precision;
mod recovery;
mod report;
mod support;
mod throughput;
mod trigger;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};
use report::Figure;
use support::Server;

/// How long and how much to measure.
pub struct Ctx {
    pub quick: bool,
    pub server: Server,
}

struct Options {
    quick: bool,
    only: Option<Vec<u32>>,
    pgcron: Option<bool>,
}

impl Options {
    fn parse(args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
        let mut opts = Options {
            quick: false,
            only: None,
            pgcron: None,
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => opts.quick = true,
                "--pgcron" => opts.pgcron = Some(true),
                "--no-pgcron" => opts.pgcron = Some(false),
                "--only" => {
                    let list = args.next().context("--only needs a list, e.g. 1,4")?;
                    let ids = list
                        .split(',')
                        .map(|s| s.trim().parse::<u32>())
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("--only {list}: expected numbers 1 to 8"))?;
                    opts.only = Some(ids);
                }
                // cargo bench passes --bench; libtest-style filters are ignored.
                "--bench" => {}
                "-h" | "--help" => {
                    println!(
                        "crondeck benchmarks\n\n  --quick        shorter windows, fewer samples, no pg_cron\n  \
                         --only 1,4     run only these scenarios (1-8)\n  \
                         --pgcron       run scenario 8 (pg_cron) even with --quick\n  \
                         --no-pgcron    skip scenario 8"
                    );
                    std::process::exit(0);
                }
                other if other.starts_with('-') => bail!("unknown option {other} (see --help)"),
                _ => {}
            }
        }
        Ok(opts)
    }

    fn wants(&self, id: u32) -> bool {
        self.only.as_ref().map_or(true, |ids| ids.contains(&id))
    }
}

fn main() -> ExitCode {
    let opts = match Options::parse(std::env::args().skip(1)) {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

type Scenario = (u32, &'static str, fn(&Ctx) -> ScenarioFuture<'_>);
type ScenarioFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Vec<Figure>>> + 'a>>;

const SCENARIOS: [Scenario; 7] = [
    (1, "1 tick precision", |c| Box::pin(precision::run(c))),
    (2, "2 thundering herd", |c| Box::pin(herd::run(c))),
    (3, "3 throughput", |c| Box::pin(throughput::run(c))),
    (4, "4 manual trigger", |c| Box::pin(trigger::run(c))),
    (5, "5 idle cost", |c| Box::pin(idle::run(c))),
    (6, "6 crash recovery", |c| Box::pin(recovery::run(c))),
    (7, "7 console at scale", |c| Box::pin(console::run(c))),
];

async fn run(opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let server = Server::start(&["pg_stat_statements"], &[]).await?;
    let ctx = Ctx {
        quick: opts.quick,
        server,
    };
    println!(
        "crondeck benchmarks ({}): PostgreSQL {}, {} cores, load average {}",
        if opts.quick { "quick" } else { "full" },
        ctx.server.version(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let mut figures = Vec::new();
    for (id, name, scenario) in SCENARIOS {
        if !opts.wants(id) {
            continue;
        }
        let t = Instant::now();
        eprintln!("== scenario {name}");
        match scenario(&ctx).await {
            Ok(mut rows) => {
                for row in &rows {
                    eprintln!("   {}: {:?}", row.figure, row.value);
                }
                figures.append(&mut rows);
            }
            Err(e) => {
                eprintln!("   failed: {e:#}");
                figures.push(Figure::skipped(name, &format!("failed: {e:#}")));
            }
        }
        eprintln!("   ({:.0} s)", t.elapsed().as_secs_f64());
    }
    if opts.wants(8) {
        let run_pgcron = opts.pgcron.unwrap_or(!opts.quick);
        let t = Instant::now();
        eprintln!("== scenario 8 side by side with pg_cron");
        if run_pgcron {
            match pgcron::run(&ctx).await {
                Ok(mut rows) => figures.append(&mut rows),
                Err(e) => {
                    eprintln!("   failed: {e:#}");
                    figures.push(Figure::skipped("8 vs pg_cron", &format!("failed: {e:#}")));
                }
            }
        } else {
            figures.push(Figure::skipped("8 vs pg_cron", "not run with --quick"));
        }
        eprintln!("   ({:.0} s)", t.elapsed().as_secs_f64());
    }
    println!();
    print!("{}", report::table(&figures));
    println!(
        "\n{} figures in {:.0} s; load average now {}",
        figures.len(),
        started.elapsed().as_secs_f64(),
        load_average()
    );
    write_json(&figures, opts.quick)?;
    Ok(())
}

/// `/proc/loadavg`'s first three fields: the figures are only as quiet as the machine.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn write_json(figures: &[Figure], quick: bool) -> anyhow::Result<()> {
    let path = concat!(env!("CARGO_TARGET_TMPDIR"), "/crondeck-bench.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {path}"))?;
    let at = chrono::Utc::now().to_rfc3339();
    for figure in figures {
        let line = serde_json::json!({ "at": at, "quick": quick, "figure": figure });
        writeln!(file, "{line}")?;
    }
    println!("JSON lines appended to {path}");
    Ok(())
}
