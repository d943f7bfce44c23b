//! Test harness: one throwaway PostgreSQL server per test binary (the embedded
//! launcher in ephemeral mode, in a temporary directory), and a fresh database
//! per test, cloned from a migrated template so that it is fast.
//!
//! `CRONDECK_TEST_DATABASE_URL` runs the suite against an external server
//! instead. No test is skipped when PostgreSQL is missing: they fail, with the
//! launcher's instructions.
#![allow(dead_code)]

pub mod faults;
pub mod oracle;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crondeck::db::connect::ConnectionSpec;
use crondeck::db::migrate::migrate;
use crondeck::embedded::{EmbeddedOptions, EmbeddedServer};
use tokio_postgres::Client;

const TEMPLATE: &str = "crondeck_test_template";

struct Server {
    /// Connection settings for the maintenance database.
    admin: ConnectionSpec,
    _embedded: Option<(EmbeddedServer, tempfile::TempDir)>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        // A thread of its own: the template is built on a runtime that outlives
        // no test and is not nested inside one.
        std::thread::spawn(start_server)
            .join()
            .unwrap_or_else(|_| panic!("starting the test PostgreSQL server panicked"))
    })
}

fn start_server() -> Server {
    let server = match std::env::var("CRONDECK_TEST_DATABASE_URL") {
        Ok(url) => {
            let env = |k: &str| std::env::var(k).ok();
            let admin = ConnectionSpec::parse(&url, &env)
                .unwrap_or_else(|e| panic!("CRONDECK_TEST_DATABASE_URL: {e}"));
            Server {
                admin,
                _embedded: None,
            }
        }
        Err(_) => {
            let dir = tempfile::tempdir().expect("temporary directory for the test server");
            let opts = EmbeddedOptions {
                data_dir: dir.path().to_path_buf(),
                ephemeral: true,
            };
            let embedded = EmbeddedServer::start(&opts).unwrap_or_else(|e| {
                panic!(
                    "the tests need PostgreSQL and could not start it: {e}\n\
                     Install PostgreSQL (e.g. `apt-get install postgresql`), or set \
                     CRONDECK_TEST_DATABASE_URL to a server where the tests may create databases."
                )
            });
            let admin = ConnectionSpec::from_config(embedded.client_config("postgres"));
            Server {
                admin,
                _embedded: Some((embedded, dir)),
            }
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(build_template(&server.admin));
    server
}

async fn build_template(admin: &ConnectionSpec) {
    let client = admin.connect().await.expect("connect to the test server");
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
        .await
        .expect("drop old template");
    client
        .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
        .await
        .expect("create template");
    let mut template = spec_for(admin, TEMPLATE)
        .connect()
        .await
        .expect("connect to template");
    migrate(&mut template).await.expect("migrate template");
}

fn spec_for(admin: &ConnectionSpec, dbname: &str) -> ConnectionSpec {
    let mut spec = admin.clone();
    spec.config_mut().dbname(dbname);
    spec
}

/// The embedded test server's socket directory, or `None` when the suite runs
/// against an external server (`CRONDECK_TEST_DATABASE_URL`).
pub fn server_socket_dir() -> Option<std::path::PathBuf> {
    server()
        ._embedded
        .as_ref()
        .map(|(embedded, _)| embedded.socket_dir().to_path_buf())
}

/// Restart the embedded test server with an immediate shutdown (a crash, as
/// far as clients can tell: every connection drops, crash recovery runs).
/// Affects every test of this binary, so call it only from a test binary that
/// has no other test running meanwhile. Blocks until the server accepts
/// connections again.
pub fn restart_server_immediately() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let (embedded, _) = server()
        ._embedded
        .as_ref()
        .expect("restarting PostgreSQL needs the embedded test server");
    let bins = crondeck::embedded::find_binaries().expect("PostgreSQL binaries");
    let cluster = embedded.cluster_dir();
    let pgdata = cluster.join("data");
    let mut cmd = Command::new(bins.pg_ctl());
    cmd.args(["restart", "-m", "immediate", "-w", "-t", "60", "-D"])
        .arg(&pgdata)
        // Without -l the new postmaster would inherit our stdout and
        // `output()` would wait for it to exit.
        .arg("-l")
        .arg(cluster.join("server.log"))
        .current_dir(cluster)
        .env("LC_ALL", "C");
    // pg_ctl refuses to run as root; run it as the owner of the cluster,
    // as the launcher does.
    let meta = std::fs::metadata(&pgdata).expect("the cluster's data directory");
    if nix::unistd::Uid::effective().is_root() {
        cmd.uid(meta.uid()).gid(meta.gid());
    }
    let out = cmd.output().expect("run pg_ctl restart");
    assert!(
        out.status.success(),
        "pg_ctl restart failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh, migrated database for one test, dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub spec: ConnectionSpec,
}

impl TestDb {
    pub async fn new() -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let server = server();
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = server
            .admin
            .connect()
            .await
            .expect("connect to the test server");
        // Cloning a template fails while another clone is starting from it;
        // that is a transient condition, so retry briefly.
        let mut attempts = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
                .await
            {
                Ok(()) => break,
                Err(e)
                    if attempts < 50
                        && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
                {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("create test database {name}: {e}"),
            }
        }
        TestDb {
            spec: spec_for(&server.admin, &name),
            name,
        }
    }

    /// An empty database (no schema at all), for migration tests.
    pub async fn empty() -> TestDb {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let server = server();
        let name = format!(
            "e_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let admin = server
            .admin
            .connect()
            .await
            .expect("connect to the test server");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create empty database");
        TestDb {
            spec: spec_for(&server.admin, &name),
            name,
        }
    }

    pub async fn client(&self) -> Client {
        self.spec
            .connect()
            .await
            .expect("connect to the test database")
    }

    /// A key=value connection string for the CLI.
    pub fn url(&self) -> String {
        self.url_for(&self.spec)
    }

    /// Connection settings for a login role on this database (trust auth on
    /// the test server's socket, so no password).
    pub fn spec_as(&self, user: &str) -> ConnectionSpec {
        let mut spec = self.spec.clone();
        spec.config_mut().user(user);
        spec
    }

    /// The CLI connected as `user`.
    pub fn run_as(&self, user: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_crondeck"))
            .arg("--database-url")
            .arg(self.url_for(&self.spec_as(user)))
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .expect("run crondeck")
    }

    fn url_for(&self, spec: &ConnectionSpec) -> String {
        let config = spec.config();
        let mut parts = Vec::new();
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        parts.push(format!("host='{}'", hosts.join(",")));
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        if !ports.is_empty() {
            parts.push(format!("port='{}'", ports.join(",")));
        }
        if let Some(user) = config.get_user() {
            parts.push(format!("user='{user}'"));
        }
        if let Some(password) = config.get_password() {
            parts.push(format!("password='{}'", String::from_utf8_lossy(password)));
        }
        parts.push(format!("dbname='{}'", self.name));
        parts.join(" ")
    }

    /// The crondeck binary, pointed at this database.
    pub fn cli(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_crondeck"));
        cmd.arg("--database-url").arg(self.url());
        cmd.env_remove("DATABASE_URL").env("NO_COLOR", "1");
        cmd
    }

    /// Run the CLI with `args` and return its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cli().args(args).output().expect("run crondeck")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = server().admin.clone();
        let name = self.name.clone();
        // Drop runs inside a test's runtime; use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                if let Ok(client) = admin.connect().await {
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
            Ok::<(), std::io::Error>(())
        })
        .join();
    }
}

/// stdout and stderr of a finished command, as text.
pub fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Wait until `check` returns `Some`, polling, or panic after `limit` with `what`.
pub async fn wait_for<T, F, Fut>(limit: std::time::Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Stop the test server at once (`pg_ctl stop -m immediate`), as a crash
/// or an outage would: every connection drops. Only for test binaries that
/// hold no other test using the server meanwhile (e.g. tests/tui_e2e.rs).
pub fn stop_server() {
    pg_ctl(&["stop", "-w", "-m", "immediate"]);
}

/// Start the test server again after `stop_server`, on the same socket.
pub fn start_server_again() {
    let cluster = cluster_dir();
    // The embedded launcher passes these on its command line, not in
    // postgresql.conf, so they are repeated here.
    let options = format!(
        "-c listen_addresses='' -c unix_socket_directories='{}' -c port=5432 \
         -c unix_socket_permissions=0700 -c fsync=off",
        cluster.display()
    );
    let log = cluster.join("server.log");
    pg_ctl(&[
        "start",
        "-w",
        "-t",
        "60",
        "-l",
        &log.display().to_string(),
        "-o",
        &options,
    ]);
}

fn cluster_dir() -> std::path::PathBuf {
    match &server()._embedded {
        Some((embedded, _)) => embedded.cluster_dir().to_path_buf(),
        None => panic!("restarting the server needs the embedded test server (unset CRONDECK_TEST_DATABASE_URL)"),
    }
}

/// Run pg_ctl on the test cluster, as the cluster's owner (the launcher runs
/// the server as an unprivileged user when the tests run as root).
fn pg_ctl(args: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let cluster = cluster_dir();
    let data = cluster.join("data");
    let bins = crondeck::embedded::find_binaries().expect("PostgreSQL binaries");
    let mut cmd = Command::new(bins.pg_ctl());
    cmd.args(args).arg("-D").arg(&data).current_dir(&cluster);
    if nix::unistd::geteuid().is_root() {
        let owner = std::fs::metadata(&data).expect("cluster data directory");
        cmd.uid(owner.uid()).gid(owner.gid());
    }
    let out = cmd.output().expect("run pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Run a query returning one scalar.
pub async fn scalar<T>(
    client: &Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client
        .query_one(sql, params)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}
