//! Prometheus metrics of the headless scheduler (SPEC §10): the OpenMetrics
//! text format for clients that ask for it (`Accept:
//! application/openmetrics-text`, as Prometheus does), else the Prometheus
//! text format 0.0.4 (see `server`).
//!
//! The job label is `cron`, not `job`: Prometheus attaches `job` (the scrape
//! job) to every series, and a series' own `job` would be renamed
//! `exported_job`.
//!
//! | series | type | from |
//! |--------|------|------|
//! | `crondeck_runs_total{cron,status}` | counter | runs this node finished |
//! | `crondeck_run_duration_seconds{cron}` | histogram | runs this node finished (wall time on this node); only jobs this node ran, so the label set is bounded by them |
//! | `crondeck_last_success_timestamp_seconds{cron}` | gauge | each job's last success (Unix time), at scrape; jobs that never succeeded are absent |
//! | `crondeck_running_runs{cron}` | gauge | runs in progress per job (0 or 1), cluster-wide, at scrape |
//! | `crondeck_run_lateness_seconds{trigger}` | histogram | start minus scheduled time, at claim (database clock) |
//! | `crondeck_jobs{state}` | gauge | every job's health state (SPEC §4), at scrape |
//! | `crondeck_live_nodes` | gauge | nodes alive by their lease, at scrape |
//! | `crondeck_workers`, `crondeck_busy_workers` | gauge | summed over live nodes, at scrape |
//! | `crondeck_node_busy_workers{node}` | gauge | per live node, at scrape |
//! | `crondeck_database_up` | gauge | 1 if the scrape could read the job database |
//!
//! Counters and histograms are per node (sum them across nodes in queries);
//! the gauges read at scrape time describe the whole cluster, so every node
//! reports the same values for them (use `max` rather than `sum`).

mod server;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use tokio_postgres::GenericClient;

pub use server::{
    bind, parse_addr, serve, wants_openmetrics, CONNECTION_TIMEOUT, DEFAULT_ADDR, HEADER_TIMEOUT,
    MAX_CONNECTIONS,
};

use crate::db::claim::ClaimedRun;
use crate::db::jobs::job_list;
use crate::db::nodes::node_list_live;
use crate::db::runs::RunStatus;
use crate::health::{count_states, job_health, Thresholds};
use crate::scheduler::RunObserver;

/// `[metrics]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsFile {
    /// Serve metrics on this address (`HOST:PORT`, or a port on 127.0.0.1).
    pub addr: Option<String>,
}

/// A label value from a person (a job or node name), escaped as the text
/// format requires (`\\`, `\"`, `\n`), so that no name can end its label,
/// add labels or samples, or break the scrape. prometheus-client writes
/// values as they are.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct Escaped(String);

impl EncodeLabelValue for Escaped {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\\' => encoder.write_str("\\\\")?,
                '"' => encoder.write_str("\\\"")?,
                '\n' => encoder.write_str("\\n")?,
                c => encoder.write_char(c)?,
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    cron: Escaped,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CronLabels {
    cron: Escaped,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TriggerLabels {
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: Escaped,
}

/// The metrics of one node process.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    duration: Family<CronLabels, Histogram>,
    last_success: Family<CronLabels, Gauge<f64, AtomicU64>>,
    running: Family<CronLabels, Gauge>,
    lateness: Family<TriggerLabels, Histogram>,
    jobs: Family<StateLabels, Gauge>,
    live_nodes: Gauge,
    workers: Gauge,
    busy: Gauge,
    node_busy: Family<NodeLabels, Gauge>,
    database_up: Gauge,
    /// When each run in progress started on this node (monotonic clock).
    started: Mutex<HashMap<i64, Instant>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("crondeck");
        let runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "runs",
            "Runs finished by this node, by job and status",
            runs.clone(),
        );
        // 10 ms up to about 3 days, in factors of 4.
        let duration = Family::<CronLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 4.0, 14))
        });
        registry.register(
            "run_duration_seconds",
            "Duration of runs finished by this node, by job",
            duration.clone(),
        );
        let last_success = Family::<CronLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of each job's last successful run, cluster-wide",
            last_success.clone(),
        );
        let running = Family::<CronLabels, Gauge>::default();
        registry.register(
            "running_runs",
            "Runs in progress per job, cluster-wide",
            running.clone(),
        );
        let lateness = Family::<TriggerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 4.0, 14))
        });
        registry.register(
            "run_lateness_seconds",
            "Start of runs claimed by this node minus their scheduled time",
            lateness.clone(),
        );
        let jobs = Family::<StateLabels, Gauge>::default();
        registry.register(
            "jobs",
            "Jobs by health state (SPEC 4), cluster-wide",
            jobs.clone(),
        );
        let live_nodes = Gauge::default();
        registry.register(
            "live_nodes",
            "Scheduler nodes alive by their lease",
            live_nodes.clone(),
        );
        let workers = Gauge::default();
        registry.register("workers", "Worker slots of live nodes", workers.clone());
        let busy = Gauge::default();
        registry.register("busy_workers", "Busy workers of live nodes", busy.clone());
        let node_busy = Family::<NodeLabels, Gauge>::default();
        registry.register(
            "node_busy_workers",
            "Busy workers per live node (as of its last heartbeat)",
            node_busy.clone(),
        );
        let database_up = Gauge::default();
        registry.register(
            "database_up",
            "1 if the last scrape could read the job database",
            database_up.clone(),
        );
        Metrics {
            registry,
            runs,
            duration,
            last_success,
            running,
            lateness,
            jobs,
            live_nodes,
            workers,
            busy,
            node_busy,
            database_up,
            started: Mutex::new(HashMap::new()),
        }
    }

    /// Read the cluster-wide gauges from the job database.
    pub async fn refresh(&self, client: &impl GenericClient) -> anyhow::Result<()> {
        let now = crate::ops::db_now(client).await?;
        let jobs = job_list(client).await?;
        let nodes = node_list_live(client).await?;
        let healths: Vec<_> = jobs
            .iter()
            .map(|j| job_health(j, now, &Thresholds::default()))
            .collect();
        for (state, count) in count_states(&healths) {
            self.jobs
                .get_or_create(&StateLabels {
                    state: state.word().to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        // Jobs come and go: rebuild the per-job gauges from the table.
        self.last_success.clear();
        self.running.clear();
        for job in &jobs {
            let cron = CronLabels {
                cron: Escaped(job.spec.name.clone()),
            };
            if let Some(at) = job.runtime.last_success_at {
                #[allow(clippy::cast_precision_loss)] // milliseconds fit an f64 exactly
                self.last_success
                    .get_or_create(&cron)
                    .set(at.timestamp_millis() as f64 / 1000.0);
            }
            self.running
                .get_or_create(&cron)
                .set(i64::from(job.runtime.running_run_id.is_some()));
        }
        self.live_nodes
            .set(i64::try_from(nodes.len()).unwrap_or(i64::MAX));
        self.workers
            .set(nodes.iter().map(|n| i64::from(n.workers)).sum());
        self.busy.set(nodes.iter().map(|n| i64::from(n.busy)).sum());
        // Nodes come and go: drop the series of the ones that went.
        self.node_busy.clear();
        for node in &nodes {
            self.node_busy
                .get_or_create(&NodeLabels {
                    node: Escaped(node.name.clone()),
                })
                .set(i64::from(node.busy));
        }
        Ok(())
    }

    /// Mark whether the last refresh could read the database.
    pub fn set_database_up(&self, up: bool) {
        self.database_up.set(i64::from(up));
    }

    /// The exposition text, OpenMetrics.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The exposition text in the Prometheus text format 0.0.4.
    pub fn encode_text_004(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_text_004(&self.encode()?))
    }
}

/// Rewrite prometheus-client's OpenMetrics output as the Prometheus text
/// format 0.0.4: a counter family's `# HELP`/`# TYPE` name its `_total`
/// samples, `# UNIT` lines and the final `# EOF` go. Samples (names, escaped
/// label values, values) are the same in both formats.
pub fn openmetrics_to_text_004(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(line) => out.push_str(line.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

impl RunObserver for Metrics {
    fn run_started(&self, run: &ClaimedRun) {
        let late = (run.started_at - run.scheduled_for)
            .num_milliseconds()
            .max(0);
        #[allow(clippy::cast_precision_loss)] // milliseconds fit an f64 exactly for ~285k years
        self.lateness
            .get_or_create(&TriggerLabels {
                trigger: run.trigger.as_str().to_string(),
            })
            .observe(late as f64 / 1000.0);
        if let Ok(mut started) = self.started.lock() {
            started.insert(run.run_id, Instant::now());
        }
    }

    fn run_finished(&self, run: &ClaimedRun, status: RunStatus) {
        self.runs
            .get_or_create(&RunLabels {
                cron: Escaped(run.job.spec.name.clone()),
                status: status.as_str().to_string(),
            })
            .inc();
        let started = self
            .started
            .lock()
            .ok()
            .and_then(|mut s| s.remove(&run.run_id));
        if let Some(at) = started {
            self.duration
                .get_or_create(&CronLabels {
                    cron: Escaped(run.job.spec.name.clone()),
                })
                .observe(at.elapsed().as_secs_f64());
        }
    }

    fn run_lost(&self, run: &ClaimedRun) {
        if let Ok(mut started) = self.started.lock() {
            started.remove(&run.run_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_004_names_counters_by_their_samples_and_has_no_eof() {
        let open = "# HELP crondeck_runs Runs.\n# TYPE crondeck_runs counter\n\
                    crondeck_runs_total{cron=\"a\\\"b\",status=\"ok\"} 1\n\
                    # HELP crondeck_up Up.\n# TYPE crondeck_up gauge\ncrondeck_up 1\n# EOF\n";
        let text = openmetrics_to_text_004(open);
        assert_eq!(
            text,
            "# HELP crondeck_runs_total Runs.\n# TYPE crondeck_runs_total counter\n\
             crondeck_runs_total{cron=\"a\\\"b\",status=\"ok\"} 1\n\
             # HELP crondeck_up Up.\n# TYPE crondeck_up gauge\ncrondeck_up 1\n"
        );
    }

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        )));
        assert!(!wants_openmetrics(None));
        assert!(!wants_openmetrics(Some("*/*")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(Some("application/openmetrics-text;q=0")));
    }

    #[test]
    fn both_formats_escape_the_cron_label() {
        let metrics = Metrics::new();
        metrics
            .runs
            .get_or_create(&RunLabels {
                cron: Escaped("x\",status=\"y\"} 9\n#".into()),
                status: "succeeded".into(),
            })
            .inc();
        for text in [
            metrics.encode().unwrap(),
            metrics.encode_text_004().unwrap(),
        ] {
            assert!(
                text.contains(
                    r#"crondeck_runs_total{cron="x\",status=\"y\"} 9\n#",status="succeeded"} 1"#
                ),
                "{text}"
            );
        }
    }
}
