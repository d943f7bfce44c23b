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

/// What Prometheus sends.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,\
    text/plain;version=0.0.4;q=0.4,*/*;q=0.1";

/// A scrape as Prometheus does it (asking for OpenMetrics).
async fn scrape(url: &str) -> Option<(String, String)> {
    scrape_with(url, Some(PROMETHEUS_ACCEPT)).await
}

async fn scrape_with(url: &str, accept: Option<&str>) -> Option<(String, String)> {
    let mut request = reqwest::Client::new().get(url);
    if let Some(accept) = accept {
        request = request.header(reqwest::header::ACCEPT, accept);
    }
    let response = request.send().await.ok()?;
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
    assert!(get(r#"crondeck_runs_total{cron="tick",status="succeeded"}"#) >= 1.0);
    assert!(
        !body.contains("job=\""),
        "the label `job` is Prometheus' own: {body}"
    );
    assert!(get(r#"crondeck_run_duration_seconds_count{cron="tick"}"#) >= 1.0);
    assert!(get(r#"crondeck_run_lateness_seconds_count{trigger="schedule"}"#) >= 1.0);
    assert!(samples.keys().any(|k| {
        k.starts_with("crondeck_run_duration_seconds_bucket{")
            && k.contains(r#"cron="tick""#)
            && k.contains("le=")
    }));
    // The last success, as the database has it (to the millisecond).
    let last_success: f64 = scalar(
        &client,
        "SELECT (extract(epoch FROM date_trunc('milliseconds', last_success_at)))::float8
         FROM crondeck.jobs WHERE name = 'tick'",
        &[],
    )
    .await;
    // Read before this scrape: the scrape cannot be older.
    let (_, later) = scrape(&url).await.expect("a second scrape");
    let scraped = *parse(&later)
        .get(r#"crondeck_last_success_timestamp_seconds{cron="tick"}"#)
        .unwrap_or_else(|| panic!("no last success in:\n{later}"));
    assert!(
        scraped >= last_success - 0.001,
        "{scraped} is older than {last_success}"
    );
    assert!(scraped > 1.7e9, "{scraped}");
    let running = get(r#"crondeck_running_runs{cron="tick"}"#);
    assert!(running == 0.0 || running == 1.0, "{running}");
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

    // A client that does not ask for OpenMetrics (curl, a browser) gets the
    // Prometheus text format 0.0.4: counters typed by their `_total` name,
    // no `# EOF`, the same samples.
    let (content_type, plain) = scrape_with(&url, None).await.expect("a plain scrape");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert!(!plain.contains("# EOF"), "{plain}");
    assert!(
        plain.contains("# TYPE crondeck_runs_total counter\n"),
        "{plain}"
    );
    let plain_samples = parse(&plain);
    assert!(plain_samples.contains_key(r#"crondeck_runs_total{cron="tick",status="succeeded"}"#));
    assert!(plain_samples.contains_key(r#"crondeck_last_success_timestamp_seconds{cron="tick"}"#));
    // Anything but /metrics is a 404.
    let other = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A scheduler serving metrics on `port`; its stderr is piped when `logs`.
fn spawn_scheduler(db: &TestDb, port: u16, node_name: &str, logs: bool) -> Scheduler {
    Scheduler(
        db.cli()
            .args([
                "scheduler",
                "--metrics-addr",
                &port.to_string(),
                "--node-name",
                node_name,
                "--heartbeat",
                "1s",
                "--lease",
                "3s",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(if logs { Stdio::piped() } else { Stdio::null() })
            .spawn()
            .expect("start the scheduler"),
    )
}

/// One sample of the text format, parsed strictly: labels unescaped.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
}

fn malformed<T>(line: &str) -> T {
    panic!("malformed line: {line:?}")
}

/// Every line is a comment or a well-formed sample; panics otherwise.
fn parse_strict(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| malformed(line));
        let name = &line[..name_end];
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(mut inner) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = inner.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let eq = inner.find("=\"").unwrap_or_else(|| malformed(line));
                let key = &inner[..eq];
                assert!(
                    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "bad label name in {line:?}"
                );
                let mut value = String::new();
                let mut chars = inner[eq + 2..].char_indices();
                let end = loop {
                    match chars.next().unwrap_or_else(|| malformed(line)) {
                        (i, '"') => break eq + 2 + i + 1,
                        (_, '\\') => match chars.next().unwrap_or_else(|| malformed(line)).1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            _ => malformed(line),
                        },
                        (_, c) => value.push(c),
                    }
                };
                labels.push((key.to_owned(), value));
                inner = &inner[end..];
                inner = inner.strip_prefix(',').unwrap_or(inner);
            }
        }
        let value = rest.strip_prefix(' ').unwrap_or_else(|| malformed(line));
        let value = value.split(' ').next().unwrap_or_else(|| malformed(line));
        value
            .parse::<f64>()
            .unwrap_or_else(|_| malformed::<f64>(line));
        samples.push(Sample {
            name: name.to_owned(),
            labels,
        });
    }
    samples
}

/// Regression (issue 11): label values were written raw, so a job named
/// `x",status="y"} 9 #` forged a sample and `q"uote\` broke the scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_job_and_node_names_are_escaped_in_the_exposition() {
    let db = TestDb::new().await;
    let hostile = [r#"q"uote\"#, r#"x",status="y"} 9 #"#, r"back\n\slash"];
    for name in hostile {
        let output = db.run(&["add", name, "--every", "1s", "--sql", "SELECT 1"]);
        assert!(output.status.success(), "{:?}", common::text(&output));
    }
    let node_name = "node\"} 1\ncrondeck_forged 1\n#";
    let port = free_port();
    let _node = spawn_scheduler(&db, port, node_name, false);
    let url = format!("http://127.0.0.1:{port}/metrics");
    let samples = wait_for(
        Duration::from_secs(30),
        "every job's run counted",
        || async {
            let (_, body) = scrape(&url).await?;
            assert!(body.trim_end().ends_with("# EOF"), "{body}");
            let samples = parse_strict(&body);
            let counted = |job: &str| {
                samples.iter().any(|s| {
                    s.name == "crondeck_runs_total"
                        && s.labels
                            == [
                                ("cron".to_owned(), job.to_owned()),
                                ("status".to_owned(), "succeeded".to_owned()),
                            ]
                })
            };
            hostile.iter().all(|j| counted(j)).then_some(samples)
        },
    )
    .await;
    assert!(
        samples
            .iter()
            .any(|s| s.name == "crondeck_node_busy_workers"
                && s.labels == [("node".to_owned(), node_name.to_owned())]),
        "{samples:?}"
    );
    assert!(
        !samples.iter().any(|s| s.name == "crondeck_forged"),
        "{samples:?}"
    );
    for s in &samples {
        if s.name == "crondeck_runs_total" {
            assert_eq!(
                s.labels[1],
                ("status".to_owned(), "succeeded".to_owned()),
                "{s:?}"
            );
            assert!(hostile.contains(&s.labels[0].1.as_str()), "forged: {s:?}");
        }
    }
}

async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            // A 408 or similar before the close is fine.
            Ok(_) => continue,
        }
    }
}

/// Regression (issue 11): idle and half-sent connections were kept forever.
/// A slowloris connection does not hold a normal scrape up, and it and an
/// idle one are closed by the server once the header timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_closed_and_do_not_block_scrapes() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::new().await;
    let port = free_port();
    let _node = spawn_scheduler(&db, port, "n", false);
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for(Duration::from_secs(30), "the endpoint", || scrape(&url)).await;
    let addr = format!("127.0.0.1:{port}");
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let opened = std::time::Instant::now();
    let (_, body) = scrape(&url).await.expect("a scrape beside a slowloris");
    assert!(body.contains("crondeck_database_up"));
    // Keep trickling: each byte arrives well inside any read timeout.
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if slow.write_all(b"a").await.is_err() {
                break;
            }
        }
    };
    let limit = crondeck::metrics::HEADER_TIMEOUT * 6;
    tokio::time::timeout(limit, trickle)
        .await
        .expect("the slowloris connection was never closed");
    assert!(tokio::time::timeout(limit, closed_by_server(&mut idle))
        .await
        .expect("the idle connection was never closed"));
    assert!(opened.elapsed() >= crondeck::metrics::HEADER_TIMEOUT / 2);
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Regression (issue 11): every connection was accepted and kept, however
/// many. The node holds at most MAX_CONNECTIONS of them at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connections_are_capped() {
    let db = TestDb::new().await;
    let port = free_port();
    let node = spawn_scheduler(&db, port, "n", false);
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for(Duration::from_secs(30), "the endpoint", || scrape(&url)).await;
    let pid = node.0.id();
    let before = open_fds(pid);
    let max = crondeck::metrics::MAX_CONNECTIONS;
    let mut held = Vec::new();
    for _ in 0..max + 24 {
        held.push(
            tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap(),
        );
    }
    wait_for(
        Duration::from_secs(10),
        "the node to accept up to the cap",
        || async { (open_fds(pid) + 2 >= before + max).then_some(()) },
    )
    .await;
    // Give a node without a cap every chance to take the rest.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let open = open_fds(pid);
    assert!(
        open <= before + max + 2,
        "{} connections held open by the node (cap {max})",
        open.saturating_sub(before)
    );
    drop(held);
    wait_for(Duration::from_secs(30), "a scrape after the flood", || {
        scrape(&url)
    })
    .await;
}

/// Regression (issue 11): once the node ran out of file descriptors, the
/// accept loop retried at once and logged 2 million lines in 15 s. It backs
/// off instead, and serves again when descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_error_backs_off_instead_of_spinning() {
    use std::io::BufRead;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let db = TestDb::new().await;
    let port = free_port();
    let mut node = spawn_scheduler(&db, port, "n", true);
    let failures = Arc::new(AtomicUsize::new(0));
    let stderr = node.0.stderr.take().unwrap();
    let counter = failures.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("accepting a connection failed") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for(Duration::from_secs(30), "the endpoint", || scrape(&url)).await;
    let pid = node.0.id();
    // Leave the node one spare descriptor.
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on valid pointers.
    let got = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            std::ptr::null(),
            &mut old,
        )
    };
    assert_eq!(got, 0, "prlimit: {}", std::io::Error::last_os_error());
    let tight = libc::rlimit {
        rlim_cur: (open_fds(pid) + 1) as libc::rlim_t,
        rlim_max: old.rlim_max,
    };
    let set = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &tight,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(set, 0, "prlimit: {}", std::io::Error::last_os_error());
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(
            tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap(),
        );
    }
    wait_for(Duration::from_secs(10), "an accept to fail", || async {
        (failures.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    let first = failures.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let logged = failures.load(Ordering::SeqCst) - first;
    assert!(
        logged < 50,
        "{logged} accept failures logged in 3 s: the loop spins"
    );
    // SAFETY: as above.
    let restored = unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_NOFILE,
            &old,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(restored, 0);
    drop(held);
    wait_for(
        Duration::from_secs(30),
        "a scrape once descriptors are free",
        || scrape(&url),
    )
    .await;
}
