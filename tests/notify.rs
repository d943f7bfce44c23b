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

/// One request a receiver got.
#[derive(Debug, Clone)]
struct Hit {
    idempotency_key: Option<String>,
    attempt: Option<String>,
    body: Value,
}

/// A webhook receiver on 127.0.0.1 that records every request it gets. The
/// first `hang` requests are recorded and then never answered (the sender
/// waits), as a receiver that got the message while its sender died would.
async fn receiver_hanging(hang: usize) -> (String, Arc<Mutex<Vec<Hit>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/hook/secret-token",
        listener.local_addr().unwrap()
    );
    let hits = Arc::new(Mutex::new(Vec::new()));
    let seen = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
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
                            break (
                                text[..end].to_string(),
                                buf[end + 4..end + 4 + length].to_vec(),
                            );
                        }
                    }
                };
                let header = |name: &str| {
                    head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                };
                let Ok(body) = serde_json::from_slice::<Value>(&body) else {
                    return;
                };
                let hanging = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(Hit {
                        idempotency_key: header("idempotency-key"),
                        attempt: header("x-crondeck-attempt"),
                        body,
                    });
                    seen.len() <= hang
                };
                if hanging {
                    // Hold the connection open, unanswered, for good.
                    std::future::pending::<()>().await;
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (url, hits)
}

async fn receiver() -> (String, Arc<Mutex<Vec<Hit>>>) {
    receiver_hanging(0).await
}

fn events(hits: &Arc<Mutex<Vec<Hit>>>, event: &str) -> Vec<Value> {
    hits.lock()
        .unwrap()
        .iter()
        .filter(|h| h.body["event"] == event)
        .map(|h| h.body.clone())
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
    // It says why: the SQLSTATE and the error's first line, in the text and
    // in the details.
    let text = streaks[0]["text"].as_str().unwrap();
    assert!(
        text.contains("(last: failed (SQLSTATE 22012): division by zero)"),
        "{text}"
    );
    assert_eq!(streaks[0]["details"]["sqlstate"], "22012");
    assert_eq!(streaks[0]["details"]["error_lines"][0], "division by zero");
    assert!(streaks[0]["details"]["node"].is_string(), "{streaks:?}");
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
    // `check` recorded it; its background delivery process sends it.
    let client = db.client().await;
    wait_for(Duration::from_secs(30), "the page delivered", || async {
        let delivered: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.notification_deliveries WHERE status = 'delivered'",
            &[],
        )
        .await;
        (delivered == 1).then_some(())
    })
    .await;
    let output = db.run(&["--config", config.to_str().unwrap(), "check"]);
    assert_eq!(output.status.code(), Some(2), "{:?}", text(&output));
    let pages = std::fs::read_to_string(&out).unwrap();
    assert_eq!(pages.lines().count(), 1, "{pages}");
    let page: Value = serde_json::from_str(pages.lines().next().unwrap()).unwrap();
    assert_eq!(page["event"], "no_live_node");
    assert!(page["text"]
        .as_str()
        .unwrap()
        .contains("no live scheduler node"));
    let rows: i64 = scalar(&client, "SELECT count(*) FROM crondeck.notifications", &[]).await;
    assert_eq!(rows, 1);
}

/// A config file with one webhook channel.
fn webhook_config(dir: &std::path::Path, url: &str, extra: &str) -> std::path::PathBuf {
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!("[[notifications.channel]]\nname = \"hook\"\nwebhook = \"{url}\"\n{extra}"),
    )
    .unwrap();
    config
}

/// A scheduler process that is SIGKILLed when dropped (if still running).
struct Process(std::process::Child);

impl Process {
    fn kill9(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn scheduler(db: &TestDb, config: &std::path::Path, name: &str) -> Process {
    Process(
        db.cli()
            .args(["--config", config.to_str().unwrap(), "scheduler"])
            .args(["--node-name", name, "--heartbeat", "200ms", "--lease", "2s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start a scheduler"),
    )
}

/// The node delivering a notification is killed with SIGKILL while the
/// receiver holds its request: the delivery is claimed again after its lease
/// by another node and delivered, with the same idempotency key, so the
/// receiver (deduplicating by key) sees exactly one delivery.
#[tokio::test]
async fn a_delivery_survives_kill_9_of_its_node_and_the_receiver_sees_it_once() {
    let db = TestDb::new().await;
    let (url, hits) = receiver_hanging(1).await;
    let dir = tempfile::tempdir().unwrap();
    let config = webhook_config(
        dir.path(),
        &url,
        "timeout = \"8s\"\nretries = 3\nevents = [\"failure_streak\"]\n",
    );
    let mut client = db.client().await;
    add_broken_job(&mut client).await;

    let mut first = scheduler(&db, &config, "first");
    wait_for(Duration::from_secs(30), "the first POST", || async {
        (!events(&hits, "failure_streak").is_empty()).then_some(())
    })
    .await;
    // The receiver has the message and has not answered: kill the sender.
    first.kill9();
    let (attempts, status, claimed_by): (i32, String, Option<String>) = {
        let row = client
            .query_one(
                "SELECT attempts, status, claimed_by FROM crondeck.notification_deliveries",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(
        (attempts, status.as_str(), claimed_by.as_deref()),
        (1, "pending", Some("first")),
        "the attempt was in progress when the node died"
    );

    let _second = scheduler(&db, &config, "second");
    wait_for(
        Duration::from_secs(60),
        "the delivery completed",
        || async {
            let status: String = scalar(
                &client,
                "SELECT status FROM crondeck.notification_deliveries",
                &[],
            )
            .await;
            (status == "delivered").then_some(())
        },
    )
    .await;
    let hits = hits.lock().unwrap().clone();
    let streak: Vec<&Hit> = hits
        .iter()
        .filter(|h| h.body["event"] == "failure_streak")
        .collect();
    // At least once: the receiver got it twice (once from each node)...
    assert_eq!(streak.len(), 2, "{streak:?}");
    assert_eq!(streak[0].attempt.as_deref(), Some("1"));
    assert_eq!(streak[1].attempt.as_deref(), Some("2"));
    // ...with one idempotency key, in the header and in the body: one
    // delivery for a receiver that drops repeated keys.
    let keys: std::collections::BTreeSet<Option<String>> =
        streak.iter().map(|h| h.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 1, "{streak:?}");
    let key = streak[0]
        .idempotency_key
        .clone()
        .expect("an Idempotency-Key header");
    assert!(streak
        .iter()
        .all(|h| h.body["idempotency_key"] == key.as_str()));
    let (attempts, claimed): (i32, Option<String>) = {
        let row = client
            .query_one(
                "SELECT attempts, claimed_by FROM crondeck.notification_deliveries",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((attempts, claimed), (2, None));
    let status: String = scalar(
        &client,
        "SELECT status FROM crondeck.notifications WHERE event = 'failure_streak'",
        &[],
    )
    .await;
    assert_eq!(status, "sent");
    // One episode: the streak goes on, and one outbox row (the channel takes
    // only failure_streak; the overdue episode has none).
    let episodes: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.notifications WHERE event = 'failure_streak'",
        &[],
    )
    .await;
    assert_eq!(episodes, 1);
    let outbox: i64 = scalar(
        &client,
        "SELECT count(*) FROM crondeck.notification_deliveries",
        &[],
    )
    .await;
    assert_eq!(outbox, 1);
}

/// `check` only records: against a webhook that never answers it returns
/// at once (the webhook still has the request open), its background process
/// delivers, retries with backoff, and gives up after the channel's attempts
/// with the error kept.
#[tokio::test]
async fn check_never_waits_for_a_dead_webhook_and_the_outbox_gives_up_with_the_error() {
    let db = TestDb::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let held = accepted.clone();
    let acceptor = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            held.lock().unwrap().push(stream); // never answered
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = webhook_config(
        dir.path(),
        &format!("http://{addr}/hook/secret-token"),
        "timeout = \"60s\"\nretries = 1\n",
    );
    let started = std::time::Instant::now();
    let output = db.run(&["--config", config.to_str().unwrap(), "check"]);
    let took = started.elapsed();
    assert_eq!(output.status.code(), Some(2), "{:?}", text(&output));
    assert!(
        took < Duration::from_secs(30),
        "check waited for the webhook ({took:?})"
    );
    let client = db.client().await;
    wait_for(
        Duration::from_secs(30),
        "the background attempt",
        || async { (!accepted.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    let (status, attempts): (String, i32) = {
        let row = client
            .query_one(
                "SELECT status, attempts FROM crondeck.notification_deliveries",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), attempts), ("pending", 1));
    // The webhook dies: open connections drop, new ones are refused.
    acceptor.abort();
    let _ = acceptor.await;
    accepted.lock().unwrap().clear();
    wait_for(Duration::from_secs(60), "the delivery given up", || async {
        let status: String = scalar(
            &client,
            "SELECT status FROM crondeck.notification_deliveries",
            &[],
        )
        .await;
        (status == "failed").then_some(())
    })
    .await;
    let row = client
        .query_one(
            "SELECT attempts, max_attempts, last_error, delivered_at IS NULL
             FROM crondeck.notification_deliveries",
            &[],
        )
        .await
        .unwrap();
    let (attempts, max, error, undelivered): (i32, i32, Option<String>, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((attempts, max, undelivered), (2, 2, true));
    let error = error.expect("the last error is kept");
    assert!(
        !error.is_empty() && !error.contains("secret-token"),
        "{error}"
    );
    let status: String = scalar(&client, "SELECT status FROM crondeck.notifications", &[]).await;
    assert_eq!(status, "failed");
    // What the console's notifications view reads.
    let rows = crondeck::db::notifications::delivery_list(&client, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].event.as_str(),
            rows[0].channel.as_str(),
            rows[0].kind.as_str()
        ),
        ("no_live_node", "hook", "webhook")
    );
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("failed", 2));
    assert_eq!(rows[0].last_error.as_deref(), Some(error.as_str()));
    // And `crondeck notifications`: the episode, then each channel's delivery.
    let output = db.run(&["notifications"]);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{err}");
    assert!(out.contains("no_live_node"), "{out}");
    assert!(
        out.contains("    hook (webhook): failed (attempt 2 of 2): "),
        "{out}"
    );
}

/// What a test SMTP server received in one session.
#[derive(Debug, Clone, Default)]
struct Mail {
    auth: Option<String>,
    from: String,
    to: Vec<String>,
    data: String,
    /// The message came over TLS (after STARTTLS).
    tls: bool,
}

type Shared<T> = Arc<Mutex<Vec<T>>>;

/// One SMTP dialogue on `io` until QUIT, end of input, or STARTTLS (then
/// `true`: the caller upgrades the connection and talks again).
async fn smtp_session<S>(
    io: &mut tokio::io::BufReader<S>,
    offer_tls: bool,
    tls: bool,
    seen: &Shared<Mail>,
    heard: &Shared<String>,
) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncBufReadExt;
    let mut mail = Mail {
        tls,
        ..Mail::default()
    };
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return false;
        }
        let command = line.trim_end().to_string();
        let upper = command.to_ascii_uppercase();
        heard
            .lock()
            .unwrap()
            .push(format!("{}{command}", if tls { "tls: " } else { "" }));
        let reply: &[u8] = if upper.starts_with("EHLO") {
            if offer_tls {
                b"250-test.local\r\n250-STARTTLS\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
            } else {
                b"250-test.local\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
            }
        } else if upper == "STARTTLS" && offer_tls {
            let _ = io.write_all(b"220 2.0.0 ready\r\n").await;
            return true;
        } else if upper.starts_with("AUTH PLAIN") {
            mail.auth = Some(command[10..].trim().to_string());
            b"235 2.7.0 ok\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            mail.from = command[10..].to_string();
            b"250 ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(command[8..].to_string());
            b"250 ok\r\n"
        } else if upper == "DATA" {
            let _ = io.write_all(b"354 go ahead\r\n").await;
            let mut data = String::new();
            loop {
                line.clear();
                if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return false;
                }
                if line == ".\r\n" {
                    break;
                }
                data.push_str(&line);
            }
            mail.data = data;
            seen.lock().unwrap().push(mail.clone());
            b"250 2.0.0 queued\r\n"
        } else if upper == "QUIT" {
            let _ = io.write_all(b"221 bye\r\n").await;
            return false;
        } else {
            b"250 ok\r\n"
        };
        let _ = io.write_all(reply).await;
    }
}

/// A local SMTP server speaking just enough SMTP (EHLO, STARTTLS when given
/// a TLS acceptor, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to accept messages,
/// recording each, and every command it hears.
async fn smtp_server_with(
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (u16, Shared<Mail>, Shared<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mails = Arc::new(Mutex::new(Vec::new()));
    let commands = Arc::new(Mutex::new(Vec::new()));
    let (seen, heard) = (mails.clone(), commands.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (seen, heard, tls) = (seen.clone(), heard.clone(), tls.clone());
            tokio::spawn(async move {
                let mut io = tokio::io::BufReader::new(stream);
                let _ = io.write_all(b"220 test.local ESMTP\r\n").await;
                let upgrade = smtp_session(&mut io, tls.is_some(), false, &seen, &heard).await;
                if let (true, Some(acceptor)) = (upgrade, tls) {
                    let Ok(secure) = acceptor.accept(io.into_inner()).await else {
                        heard.lock().unwrap().push("TLS handshake failed".into());
                        return;
                    };
                    let mut io = tokio::io::BufReader::new(secure);
                    smtp_session(&mut io, false, true, &seen, &heard).await;
                }
            });
        }
    });
    (port, mails, commands)
}

async fn smtp_server() -> (u16, Shared<Mail>, Shared<String>) {
    smtp_server_with(None).await
}

/// The SMTP channel against a real (local) SMTP listener: a subject that
/// names the job and the event, a plain-text body with the exit code, the
/// first lines of the error, the output's tail, the node and the commands
/// to look closer; AUTH with the password from the environment, which
/// appears nowhere else.
#[tokio::test]
async fn smtp_mail_says_what_failed_where_and_how_to_look_closer() {
    let db = TestDb::new().await;
    let (port, mails, _) = smtp_server().await;
    let config: NotificationsFile = toml::from_str(&format!(
        "[[channel]]\nname = \"mail\"\nevents = [\"failure_streak\"]\n\
         [channel.smtp]\nserver = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\n\
         from = \"crondeck <crondeck@example.com>\"\nto = [\"oncall@example.com\", \"dba@example.com\"]\n\
         username = \"crondeck\"\npassword_env = \"TEST_SMTP_PASSWORD\"\n"
    ))
    .unwrap();
    let env = |key: &str| (key == "TEST_SMTP_PASSWORD").then(|| "s3cr3t-pw".to_string());
    let notifier = Arc::new(
        Notifier::from_file_with_env(&config, "mailer", &env)
            .unwrap()
            .unwrap(),
    );
    assert!(!format!("{notifier:?}").contains("s3cr3t"));
    let mut client = db.client().await;
    let mut spec = JobSpec::new(
        "nightly export",
        Schedule::parse("every 1s").unwrap(),
        ActionKind::Shell,
        "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo \"row $i\"; done; \
         echo 'export: disk full' >&2; echo 'hint: free /var' >&2; exit 3",
    );
    spec.failure.threshold = 0;
    spec.failure.notify_after = Some(2);
    ops::add(
        &mut client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await
    .unwrap();
    let node = NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            allow_shell: true,
            ..node_config("mail-node", &notifier)
        },
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(30), "a mail", || async {
        (!mails.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "the delivery recorded", || async {
        let status: String = scalar(
            &client,
            "SELECT status FROM crondeck.notification_deliveries",
            &[],
        )
        .await;
        (status == "delivered").then_some(())
    })
    .await;
    node.shutdown().await.unwrap();

    let mails = mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    // AUTH PLAIN is base64("\0user\0password").
    let auth = mail.auth.clone().expect("the client authenticated");
    let decoded = String::from_utf8(base64_decode(&auth)).unwrap();
    assert_eq!(decoded, "\0crondeck\0s3cr3t-pw");
    assert!(mail.from.contains("crondeck@example.com"), "{mail:?}");
    assert_eq!(mail.to.len(), 2, "{mail:?}");
    // Headers, unfolded.
    let (head, body) = mail.data.split_once("\r\n\r\n").expect("headers and body");
    let head = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no {name} header in:\n{head}"))
    };
    assert_eq!(header("Subject"), "[crondeck] job nightly export failing");
    assert!(header("To").contains("oncall@example.com"));
    assert!(header("Content-Type").starts_with("text/plain"));
    let delivery_id: i64 = scalar(
        &client,
        "SELECT id FROM crondeck.notification_deliveries",
        &[],
    )
    .await;
    assert_eq!(
        header("Message-ID"),
        format!("<crondeck-{delivery_id}@crondeck>")
    );
    assert_eq!(
        header("X-Crondeck-Idempotency-Key"),
        format!("crondeck-{delivery_id}")
    );
    // The body (7bit or quoted-printable for plain ASCII lines: undo soft breaks).
    let body = body.replace("=\r\n", "").replace("\r\n", "\n");
    for expected in [
        "crondeck: job \"nightly export\" failed 2 times in a row (last: failed (exit 3): export: disk full)",
        "Job:      nightly export",
        "Event:    failure_streak",
        "Node:     mail-node",
        "Result:   failed (exit 3)",
        "Last error:\n    export: disk full\n    hint: free /var\n",
        "    row 12\n",
        "crondeck show 'nightly export'",
        "crondeck history 'nightly export'",
    ] {
        assert!(body.contains(expected), "no {expected:?} in:\n{body}");
    }
    // The tail, not the head: 10 lines of 12.
    assert!(!body.contains("    row 2\n"), "{body}");
    assert!(body.contains("    row 3\n"), "{body}");
    // The password is nowhere in the record.
    let recorded: String = scalar(
        &client,
        "SELECT (SELECT string_agg(payload::text || deliveries::text, '') FROM crondeck.notifications)
             || (SELECT string_agg(coalesce(last_error, ''), '') FROM crondeck.notification_deliveries)",
        &[],
    )
    .await;
    assert!(!recorded.contains("s3cr3t"));
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let value = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// Runs of 5 s every 2 s: the job is always either running or just done.
/// Measured from the last success alone it would be overdue 4 s into every
/// run and "recovered" at its end (issue 14.5); a run in progress that
/// started in time holds overdue off.
#[tokio::test]
async fn a_job_slow_by_design_does_not_flap_overdue_and_recovered() {
    let db = TestDb::new().await;
    let (url, hits) = receiver().await;
    let config: NotificationsFile = toml::from_str(&format!(
        "[[channel]]\nname = \"hook\"\nwebhook = \"{url}\"\n"
    ))
    .unwrap();
    let notifier = Arc::new(Notifier::from_file(&config, "test").unwrap().unwrap());
    let mut client = db.client().await;
    let spec = JobSpec::new(
        "slow",
        Schedule::parse("every 2s").unwrap(),
        ActionKind::Sql,
        "SELECT pg_sleep(5)",
    );
    ops::add(
        &mut client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await
    .unwrap();
    let node = NodeHandle::start(db.spec.clone(), node_config("n1", &notifier))
        .await
        .unwrap();
    wait_for(Duration::from_secs(60), "three successful runs", || async {
        let n: i64 = scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
            &[],
        )
        .await;
        // ... and the fourth well under way (past the 4 s threshold).
        let running: bool = scalar(
            &client,
            "SELECT coalesce(now() - running_since > interval '4.5 s', false) FROM crondeck.jobs",
            &[],
        )
        .await;
        (n >= 3 && running).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    let recorded: i64 = scalar(&client, "SELECT count(*) FROM crondeck.notifications", &[]).await;
    assert_eq!(recorded, 0, "{:?}", hits.lock().unwrap());
    assert!(hits.lock().unwrap().is_empty());
}

/// Every node stops, the jobs miss several intervals, the nodes come back:
/// each job gets its intervals to succeed before it counts as overdue, so
/// the restart does not page "overdue" and then "recovered" seconds later.
#[tokio::test]
async fn a_full_cluster_restart_does_not_page_overdue_then_recovered() {
    let db = TestDb::new().await;
    let (url, hits) = receiver().await;
    let config: NotificationsFile = toml::from_str(&format!(
        "[[channel]]\nname = \"hook\"\nwebhook = \"{url}\"\n"
    ))
    .unwrap();
    let notifier = Arc::new(Notifier::from_file(&config, "test").unwrap().unwrap());
    let mut client = db.client().await;
    let spec = JobSpec::new(
        "steady",
        Schedule::parse("every 2s").unwrap(),
        ActionKind::Sql,
        "SELECT pg_sleep(1)",
    );
    ops::add(
        &mut client,
        &Actor::current(),
        &spec,
        &AddOptions::default(),
    )
    .await
    .unwrap();
    let successes = || async {
        scalar::<i64>(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
            &[],
        )
        .await
    };
    let node = NodeHandle::start(db.spec.clone(), node_config("n1", &notifier))
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "a success", || async {
        (successes().await >= 1).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    // The whole cluster is down for more than twice the interval.
    wait_for(
        Duration::from_secs(30),
        "the job to miss its intervals",
        || async {
            let missed: bool = scalar(
                &client,
                "SELECT now() - last_success_at > interval '8 s' FROM crondeck.jobs",
                &[],
            )
            .await;
            missed.then_some(())
        },
    )
    .await;
    let before = successes().await;
    let node = NodeHandle::start(db.spec.clone(), node_config("n2", &notifier))
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(30),
        "two successes after the restart",
        || async { (successes().await >= before + 2).then_some(()) },
    )
    .await;
    node.shutdown().await.unwrap();
    let recorded: Vec<String> = client
        .query("SELECT event FROM crondeck.notifications", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(recorded.is_empty(), "{recorded:?}");
    assert!(hits.lock().unwrap().is_empty());
}

/// `tls = "starttls"` (the default) requires STARTTLS: against a server that
/// does not offer it, nothing is sent in clear (no AUTH, no message) and the
/// attempt fails with a reason, to be retried.
#[tokio::test]
async fn smtp_starttls_is_required_never_downgraded_to_plain_text() {
    let db = TestDb::new().await;
    let (port, mails, commands) = smtp_server().await;
    let config: NotificationsFile = toml::from_str(&format!(
        "[[channel]]\nname = \"mail\"\nretries = 0\nevents = [\"failure_streak\"]\n\
         [channel.smtp]\nserver = \"127.0.0.1\"\nport = {port}\n\
         from = \"crondeck@example.com\"\nto = [\"oncall@example.com\"]\n\
         username = \"crondeck\"\npassword = \"s3cr3t-pw\"\n"
    ))
    .unwrap();
    let notifier = Arc::new(Notifier::from_file(&config, "mailer").unwrap().unwrap());
    let mut client = db.client().await;
    add_broken_job(&mut client).await;
    let node = NodeHandle::start(db.spec.clone(), node_config("n1", &notifier))
        .await
        .unwrap();
    wait_until_given_up(&client).await;
    node.shutdown().await.unwrap();
    let heard = commands.lock().unwrap().clone();
    assert!(
        heard
            .iter()
            .any(|c| c.to_ascii_uppercase().starts_with("EHLO")),
        "the server was reached: {heard:?}"
    );
    assert!(
        !heard.iter().any(|c| {
            let c = c.to_ascii_uppercase();
            c.starts_with("AUTH") || c.starts_with("MAIL") || c == "DATA"
        }),
        "sent in clear: {heard:?}"
    );
    assert!(mails.lock().unwrap().is_empty());
    let error: String = scalar(
        &client,
        "SELECT last_error FROM crondeck.notification_deliveries",
        &[],
    )
    .await;
    assert!(error.starts_with("SMTP 127.0.0.1:"), "{error}");
    assert!(!error.contains("s3cr3t"), "{error}");
}

/// STARTTLS for real: a relay whose certificate is signed by a private CA
/// (`ca_file`); the client upgrades before AUTH, and the message arrives
/// over TLS.
#[tokio::test]
async fn smtp_starttls_with_a_private_ca_sends_auth_and_mail_only_over_tls() {
    let (acceptor, ca_pem) = tls_relay();
    let (port, mails, commands) = smtp_server_with(Some(acceptor)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("relay-ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();

    let db = TestDb::new().await;
    let config: NotificationsFile = toml::from_str(&format!(
        "[[channel]]\nname = \"mail\"\nevents = [\"failure_streak\"]\n\
         [channel.smtp]\nserver = \"localhost\"\nport = {port}\ntls = \"starttls\"\n\
         ca_file = \"{}\"\nfrom = \"crondeck@example.com\"\nto = [\"oncall@example.com\"]\n\
         username = \"crondeck\"\npassword = \"s3cr3t-pw\"\n",
        ca_file.display()
    ))
    .unwrap();
    let notifier = Arc::new(Notifier::from_file(&config, "mailer").unwrap().unwrap());
    let mut client = db.client().await;
    add_broken_job(&mut client).await;
    let node = NodeHandle::start(db.spec.clone(), node_config("n1", &notifier))
        .await
        .unwrap();
    wait_for(Duration::from_secs(30), "a mail", || async {
        (!mails.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    let mail = mails.lock().unwrap()[0].clone();
    assert!(mail.tls, "{mail:?}");
    assert!(
        mail.data.contains("Subject: [crondeck] job broken failing"),
        "{}",
        mail.data
    );
    let heard = commands.lock().unwrap().clone();
    // In clear: the greeting exchange and STARTTLS, nothing else.
    let clear: Vec<&String> = heard.iter().filter(|c| !c.starts_with("tls: ")).collect();
    assert!(
        clear.iter().all(|c| {
            let c = c.to_ascii_uppercase();
            c.starts_with("EHLO") || c == "STARTTLS"
        }),
        "{heard:?}"
    );
    assert!(
        heard.iter().any(|c| c.starts_with("tls: AUTH PLAIN")),
        "{heard:?}"
    );
}

/// A TLS acceptor for "localhost" with a certificate signed by a private CA,
/// and that CA's PEM.
fn tls_relay() -> (tokio_rustls::TlsAcceptor, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "crondeck test relay CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
    .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem())
}

/// Without `ca_file`, a relay whose certificate no trusted root signed is
/// refused at the handshake: no AUTH, no message, the attempt fails.
#[tokio::test]
async fn smtp_refuses_a_relay_certificate_it_cannot_verify() {
    let (acceptor, _) = tls_relay();
    let (port, mails, commands) = smtp_server_with(Some(acceptor)).await;
    let db = TestDb::new().await;
    let config: NotificationsFile = toml::from_str(&format!(
        "[[channel]]\nname = \"mail\"\nretries = 0\nevents = [\"failure_streak\"]\n\
         [channel.smtp]\nserver = \"localhost\"\nport = {port}\n\
         from = \"crondeck@example.com\"\nto = [\"oncall@example.com\"]\n\
         username = \"crondeck\"\npassword = \"s3cr3t-pw\"\n"
    ))
    .unwrap();
    let notifier = Arc::new(Notifier::from_file(&config, "mailer").unwrap().unwrap());
    let mut client = db.client().await;
    add_broken_job(&mut client).await;
    let node = NodeHandle::start(db.spec.clone(), node_config("n1", &notifier))
        .await
        .unwrap();
    wait_until_given_up(&client).await;
    node.shutdown().await.unwrap();
    let heard = commands.lock().unwrap().clone();
    assert!(heard.iter().any(|c| c == "STARTTLS"), "{heard:?}");
    assert!(
        !heard
            .iter()
            .any(|c| c.contains("AUTH") || c.contains("MAIL")),
        "{heard:?}"
    );
    assert!(mails.lock().unwrap().is_empty());
}

/// Two channels of one episode delivered at the same moment by two nodes:
/// the episode ends `sent`, not `pending` for ever. The second report waits
/// for the first to commit (held open here), then sees it.
#[tokio::test]
async fn two_channels_finishing_at_once_leave_the_episode_sent() {
    let db = TestDb::new().await;
    let setup = db.client().await;
    setup
        .batch_execute(
            "INSERT INTO crondeck.notifications (dedup_key, event, message, payload, created_by)
                 VALUES ('race/1', 'overdue', 'm', '{}', 'test');
             INSERT INTO crondeck.notification_deliveries
                 (notification_id, channel, kind, max_attempts)
                 SELECT id, c, 'webhook', 3 FROM crondeck.notifications, unnest(ARRAY['a', 'b']) c;",
        )
        .await
        .unwrap();
    let claimed = setup
        .query(
            "SELECT delivery_id, attempt FROM crondeck.outbox_claim('n', ARRAY['a', 'b'], 60000, 10)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let ids: Vec<(i64, i32)> = claimed.iter().map(|r| (r.get(0), r.get(1))).collect();

    let first = db.client().await;
    first.batch_execute("BEGIN").await.unwrap();
    let done: bool = first
        .query_one(
            "SELECT crondeck.outbox_finish($1, 'n', $2, NULL)",
            &[&ids[0].0, &ids[0].1],
        )
        .await
        .unwrap()
        .get(0);
    assert!(done);
    let second = db.client().await;
    let (b_id, b_attempt) = ids[1];
    let other = tokio::spawn(async move {
        second
            .query_one(
                "SELECT crondeck.outbox_finish($1, 'n', $2, NULL)",
                &[&b_id, &b_attempt],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    });
    // The second report is under way (it waits on the first's lock or has
    // already computed its summary) before the first commits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.batch_execute("COMMIT").await.unwrap();
    assert!(other.await.unwrap());
    let status: String = scalar(
        &setup,
        "SELECT status FROM crondeck.notifications WHERE dedup_key = 'race/1'",
        &[],
    )
    .await;
    assert_eq!(status, "sent");
}

/// "broken": an SQL job that fails every second and notifies after its first
/// failure (never auto-paused).
async fn add_broken_job(client: &mut tokio_postgres::Client) {
    let mut spec = JobSpec::new(
        "broken",
        Schedule::parse("every 1s").unwrap(),
        ActionKind::Sql,
        "SELECT 1 / 0",
    );
    spec.failure.threshold = 0;
    spec.failure.notify_after = Some(1);
    ops::add(client, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap();
}

/// Until the (only) delivery has been given up (`failed`).
async fn wait_until_given_up(client: &tokio_postgres::Client) {
    wait_for(Duration::from_secs(30), "the attempt given up", || async {
        let status: String = scalar(
            client,
            "SELECT coalesce(max(status), '') FROM crondeck.notification_deliveries",
            &[],
        )
        .await;
        (status == "failed").then_some(())
    })
    .await;
}
