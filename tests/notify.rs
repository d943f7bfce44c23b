//! Notifications against a real PostgreSQL, real scheduler nodes and a local
//! HTTP receiver: one POST per episode however many nodes run, a command
//! channel with the event on stdin, "recovered" after a fix, and the dead
//! man's switch sent once by `crondeck check`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{scalar, text, wait_for, TestDb};
use crondeck::db::audit::Actor;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::notify::{NotificationsFile, Notifier};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use crondeck::scheduler::{NodeConfig, NodeHandle};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A webhook receiver on 127.0.0.1 that records every JSON body it gets.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hook/secret-token",
        listener.local_addr().unwrap()
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let body = loop {
                    let n = stream.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + length {
                            break buf[end + 4..end + 4 + length].to_vec();
                        }
                    }
                };
                if let Ok(value) = serde_json::from_slice(&body) {
                    seen.lock().unwrap().push(value);
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (url, bodies)
}

fn events(bodies: &Arc<Mutex<Vec<Value>>>, event: &str) -> Vec<Value> {
    bodies
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b["event"] == event)
        .cloned()
        .collect()
}

fn node_config(name: &str, notifier: &Arc<Notifier>) -> NodeConfig {
    NodeConfig {
        name: name.to_string(),
        workers: 2,
        heartbeat: Duration::from_millis(200),
        lease: Duration::from_secs(2),
        notifier: Some(notifier.clone()),
        ..NodeConfig::default()
    }
}

#[tokio::test]
async fn three_nodes_send_one_post_per_episode_and_recovered_follows_a_fix() {
    let db = TestDb::new().await;
    let (url, bodies) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let command_out = dir.path().join("events.jsonl");
    let config: NotificationsFile = toml::from_str(&format!(
        "failure_streak = 5\n\
         [[channel]]\nname = \"hook\"\nwebhook = \"{url}\"\ntimeout = \"2s\"\n\
         [[channel]]\nname = \"mail\"\ncommand = \"cat >> '{}'\"\nevents = [\"failure_streak\", \"recovered\"]\n",
        command_out.display()
    ))
    .unwrap();
    let notifier = Arc::new(Notifier::from_file(&config, "test").unwrap().unwrap());

    let mut client = db.client().await;
    let mut spec = JobSpec::new(
        "flaky",
        Schedule::parse("every 1s").unwrap(),
        ActionKind::Sql,
        "SELECT 1 / 0",
    );
    spec.failure.threshold = 0; // never auto-pause: keep the streak growing
    spec.failure.notify_after = Some(2); // the job's threshold beats the global 5
    ops::add(
        &mut client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await
    .unwrap();

    let mut nodes = Vec::new();
    for name in ["n1", "n2", "n3"] {
        nodes.push(
            NodeHandle::start(db.spec.clone(), node_config(name, &notifier))
                .await
                .unwrap(),
        );
    }
    wait_for(Duration::from_secs(30), "a failure_streak POST", || async {
        (!events(&bodies, "failure_streak").is_empty()).then_some(())
    })
    .await;
    // Let the streak grow well past the threshold while every node scans.
    wait_for(Duration::from_secs(30), "a streak of 5", || async {
        let streak: i32 = scalar(&client, "SELECT failure_streak FROM crondeck.jobs", &[]).await;
        (streak >= 5).then_some(())
    })
    .await;

    // The fix: the file's definition changes, as `apply` would do it.
    spec.command = "SELECT 1".into();
    ops::update_definition(&mut client, &Actor::current(), &spec, "tests", false)
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "a recovered POST", || async {
        (!events(&bodies, "recovered").is_empty()).then_some(())
    })
    .await;
    // A few more successful runs and scans by all nodes: still one of each.
    let runs: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
        &[],
    )
    .await;
    wait_for(Duration::from_secs(30), "three more successes", || async {
        let now: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
            &[],
        )
        .await;
        (now >= runs + 3).then_some(())
    })
    .await;
    for node in nodes {
        node.shutdown().await.unwrap();
    }

    let streaks = events(&bodies, "failure_streak");
    assert_eq!(streaks.len(), 1, "{streaks:?}");
    assert_eq!(streaks[0]["job"], "flaky");
    assert!(
        streaks[0]["text"]
            .as_str()
            .unwrap()
            .contains("\"flaky\" failed"),
        "{streaks:?}"
    );
    // Failing every second for 5 s without a success also made it overdue:
    // a separate episode, sent once too; one "recovered" closes both.
    assert_eq!(events(&bodies, "overdue").len(), 1);
    assert_eq!(events(&bodies, "recovered").len(), 1);
    assert_eq!(bodies.lock().unwrap().len(), 3, "nothing else was sent");

    // The command channel got the same events as JSON lines on stdin.
    let lines: Vec<Value> = std::fs::read_to_string(&command_out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["failure_streak", "recovered"]);

    // Each send is recorded, per channel, and queryable for the job.
    let job_id: i64 = scalar(&client, "SELECT id FROM crondeck.jobs", &[]).await;
    let rows = crondeck::db::notifications::notifications_for_job(&client, job_id, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| r.status == "sent"), "{rows:?}");
    let recorded = serde_json::to_string(&rows).unwrap();
    assert!(
        !recorded.contains("secret-token"),
        "the webhook URL is a secret"
    );
}

#[tokio::test]
async fn check_sends_no_live_node_once_per_episode() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pages.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[notifications.channel]]\nname = \"pager\"\ncommand = \"cat >> '{}'\"\n",
            out.display()
        ),
    )
    .unwrap();
    for _ in 0..3 {
        let output = db.run(&["--config", config.to_str().unwrap(), "check"]);
        assert_eq!(output.status.code(), Some(2), "{:?}", text(&output));
    }
    let pages = std::fs::read_to_string(&out).unwrap();
    assert_eq!(pages.lines().count(), 1, "{pages}");
    let page: Value = serde_json::from_str(pages.lines().next().unwrap()).unwrap();
    assert_eq!(page["event"], "no_live_node");
    assert!(page["text"]
        .as_str()
        .unwrap()
        .contains("no live scheduler node"));
}
