//! Scenario 6, crash recovery: a real `crondeck scheduler` process runs a
//! long shell job and is killed with SIGKILL. A second node (in this process,
//! same heartbeat and lease) rescues the run. Measured by database time from
//! just before the kill: until the run is `abandoned` (which frees the job in
//! the same statement), and until the job runs again (a request made while
//! it was busy, started by the survivor). Expected: lease − heartbeat ≤
//! abandoned ≤ lease + heartbeat (the victim's last beat was up to one
//! heartbeat before the kill; the survivor looks once per heartbeat).

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crondeck::scheduler::NodeConfig;

use crate::report::Figure;
use crate::support::{wait_for, BenchDb};
use crate::Ctx;

const SCENARIO: &str = "6 crash recovery";

#[derive(Clone, Copy)]
struct Lease {
    heartbeat: Duration,
    lease: Duration,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Vec<Figure>> {
    let plans: Vec<(Lease, usize)> = if ctx.quick {
        vec![(lease(500, 2000), 2)]
    } else {
        vec![
            (lease(1000, 5000), 3),
            (
                Lease {
                    heartbeat: crondeck::scheduler::DEFAULT_HEARTBEAT,
                    lease: crondeck::scheduler::DEFAULT_LEASE,
                },
                1,
            ),
        ]
    };
    let mut figures = Vec::new();
    for (settings, samples) in plans {
        let mut abandoned = Vec::new();
        let mut rerun = Vec::new();
        for _ in 0..samples {
            let (a, r) = sample(ctx, settings).await?;
            abandoned.push(a);
            rerun.push(r);
        }
        let l = settings.lease.as_secs_f64();
        let h = settings.heartbeat.as_secs_f64();
        let label = format!("lease {l}s, heartbeat {h}s");
        let fig = Figure::dist(
            SCENARIO,
            &format!("kill → abandoned, {label}"),
            "s",
            &abandoned,
        );
        let within = abandoned.iter().all(|&a| a <= l + h + 0.5);
        figures.push(fig.target(&format!("≤ lease + heartbeat = {:.1}", l + h), within));
        figures.push(
            Figure::dist(
                SCENARIO,
                &format!("kill → job runs again, {label}"),
                "s",
                &rerun,
            )
            .reference("a request made while the job was busy"),
        );
    }
    Ok(figures)
}

fn lease(heartbeat_ms: u64, lease_ms: u64) -> Lease {
    Lease {
        heartbeat: Duration::from_millis(heartbeat_ms),
        lease: Duration::from_millis(lease_ms),
    }
}

/// One crash; returns (seconds to abandoned, seconds to the job's next start).
async fn sample(ctx: &Ctx, settings: Lease) -> anyhow::Result<(f64, f64)> {
    let db = ctx.server.database("recovery").await?;
    db.client
        .execute(
            "INSERT INTO crondeck.jobs (name, schedule_kind, interval_count, interval_unit,
                 nextcall, action_kind, command, timeout_ms)
             VALUES ('long', 'every', 1, 'hours', now(), 'shell', 'sleep 600', 3600000)",
            &[],
        )
        .await?;
    let mut victim = VictimGuard(spawn_victim(&db, settings)?);
    let run_id: i64 = wait_for(
        Duration::from_secs(20),
        Duration::from_millis(50),
        "the long job to start on the victim",
        || async {
            Ok(db
                .client
                .query_opt(
                    "SELECT id FROM crondeck.runs WHERE status = 'running' AND node_name = 'victim'",
                    &[],
                )
                .await?
                .map(|r| r.get(0)))
        },
    )
    .await?;
    let survivor = db
        .start_node(NodeConfig {
            name: "survivor".into(),
            allow_shell: true,
            heartbeat: settings.heartbeat,
            lease: settings.lease,
            shutdown_grace: Duration::from_millis(200),
            kill_grace: Duration::from_millis(200),
            ..NodeConfig::default()
        })
        .await?;
    // Waits: the job is busy.
    db.client
        .batch_execute("SELECT crondeck.trigger('long')")
        .await?;
    // A different phase against the heartbeats in each sample.
    static SAMPLE: AtomicU64 = AtomicU64::new(0);
    let phase = SAMPLE.fetch_add(1, Ordering::Relaxed) * 337 % 1000;
    tokio::time::sleep(Duration::from_millis(100) + settings.heartbeat * phase as u32 / 1000).await;
    let killed_at = db.db_clock().await?;
    victim.kill();
    let abandoned_at: f64 = wait_for(
        settings.lease * 3 + Duration::from_secs(10),
        Duration::from_millis(20),
        "the run to be abandoned",
        || async {
            Ok(db
                .client
                .query_opt(
                    "SELECT extract(epoch FROM ended_at)::float8 FROM crondeck.runs
                     WHERE id = $1 AND status = 'abandoned'",
                    &[&run_id],
                )
                .await?
                .map(|r| r.get(0)))
        },
    )
    .await?;
    let rerun_at: f64 = wait_for(
        Duration::from_secs(10),
        Duration::from_millis(20),
        "the job to run again",
        || async {
            Ok(db
                .client
                .query_opt(
                    "SELECT extract(epoch FROM started_at)::float8 FROM crondeck.runs
                     WHERE id > $1 AND started_at IS NOT NULL",
                    &[&run_id],
                )
                .await?
                .map(|r| r.get(0)))
        },
    )
    .await?;
    survivor.shutdown().await?;
    Ok((abandoned_at - killed_at, rerun_at - killed_at))
}

/// The victim: a headless node process of the crondeck binary built with
/// this bench.
fn spawn_victim(db: &BenchDb, settings: Lease) -> anyhow::Result<Child> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
        .arg("--database-url")
        .arg(db.url())
        .args(["scheduler", "--allow-shell", "--node-name", "victim"])
        .args(["--heartbeat", &ms(settings.heartbeat)])
        .args(["--lease", &ms(settings.lease)])
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(child)
}

/// Kills the victim (SIGKILL) when dropped, so a failed sample leaks nothing.
struct VictimGuard(Child);

impl VictimGuard {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for VictimGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
