//! The headless scheduler's metrics endpoint, scraped over HTTP from the real
//! binary: the text parses as Prometheus exposition and has the named series.

mod common;

use std::collections::HashMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{scalar, wait_for, TestDb};

struct Scheduler(Child);

impl Drop for Scheduler {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.0.wait();
    }
}

/// `name{labels}` -> value, for every sample line; panics on a line that is
/// neither a comment nor a sample.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample line: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in: {line}");
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

async fn scrape(url: &str) -> Option<(String, String)> {
    let response = reqwest::get(url).await.ok()?;
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .to_string();
    Some((content_type, response.text().await.ok()?))
}

#[tokio::test]
async fn the_metrics_endpoint_is_prometheus_text_with_the_named_series() {
    let db = TestDb::new().await;
    let output = db.run(&["add", "tick", "--every", "1s", "--sql", "SELECT 1"]);
    assert!(output.status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let _node = Scheduler(
        db.cli()
            .args([
                "scheduler",
                "--metrics-addr",
                &port.to_string(),
                "--heartbeat",
                "1s",
                "--lease",
                "3s",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the scheduler"),
    );
    let client = db.client().await;
    wait_for(Duration::from_secs(30), "two successful runs", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
            &[],
        )
        .await;
        (n >= 2).then_some(())
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (content_type, body) = wait_for(Duration::from_secs(10), "a scrape", || scrape(&url)).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    let samples = parse(&body);
    let get = |series: &str| {
        *samples
            .get(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
    };
    assert!(get(r#"crondeck_runs_total{job="tick",status="succeeded"}"#) >= 1.0);
    assert!(get("crondeck_run_duration_seconds_count") >= 1.0);
    assert!(get(r#"crondeck_run_lateness_seconds_count{trigger="schedule"}"#) >= 1.0);
    assert!(samples
        .keys()
        .any(|k| k.starts_with("crondeck_run_duration_seconds_bucket{le=")));
    assert_eq!(get("crondeck_live_nodes"), 1.0);
    assert_eq!(get("crondeck_workers"), 2.0);
    assert!(get("crondeck_busy_workers") >= 0.0);
    assert_eq!(get("crondeck_database_up"), 1.0);
    for state in [
        "ok", "running", "late", "overdue", "failing", "paused", "done",
    ] {
        get(&format!(r#"crondeck_jobs{{state="{state}"}}"#));
    }
    let total: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("crondeck_jobs{"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(total, 1.0, "one job, in exactly one state");
    // Anything but /metrics is a 404.
    let other = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}
