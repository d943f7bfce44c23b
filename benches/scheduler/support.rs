//! The benchmark's PostgreSQL: a throwaway server started by the embedded
//! launcher in ephemeral mode (as the tests do), optionally restarted with
//! `shared_preload_libraries` (pg_stat_statements, pg_cron), and a fresh
//! migrated database per scenario. Plus the small helpers every scenario
//! uses: bulk job inserts, node settings, waiting on a condition.

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use crondeck::db::connect::ConnectionSpec;
use crondeck::db::migrate::migrate;
use crondeck::embedded::{find_binaries, EmbeddedOptions, EmbeddedServer, PgBinaries};
use crondeck::scheduler::{NodeConfig, NodeHandle};
use tokio_postgres::Client;

/// One throwaway server. Dropping it lets the launcher's watchdog stop the
/// server and delete its directory.
pub struct Server {
    embedded: EmbeddedServer,
    _dir: tempfile::TempDir,
    bins: PgBinaries,
    /// Libraries actually preloaded (a failed restart leaves none).
    pub preloaded: Vec<String>,
    counter: std::sync::atomic::AtomicUsize,
}

impl Server {
    /// Start a server; when `preload` is not empty, set the libraries and
    /// `settings` with ALTER SYSTEM and restart it so they load.
    pub async fn start(preload: &[&str], settings: &[(&str, String)]) -> anyhow::Result<Server> {
        let dir = tempfile::tempdir().context("temporary directory for the bench server")?;
        let opts = EmbeddedOptions {
            data_dir: dir.path().to_path_buf(),
            ephemeral: true,
        };
        let embedded = tokio::task::spawn_blocking(move || EmbeddedServer::start(&opts))
            .await
            .context("the embedded launcher panicked")?
            .context("the benchmarks need PostgreSQL (e.g. `apt-get install postgresql`)")?;
        let bins = find_binaries()?;
        let mut server = Server {
            embedded,
            _dir: dir,
            bins,
            preloaded: Vec::new(),
            counter: std::sync::atomic::AtomicUsize::new(0),
        };
        if !preload.is_empty() {
            server.preload(preload, settings).await?;
        }
        Ok(server)
    }

    /// Preload `libraries` with `settings`, restarting the server. Appended
    /// to postgresql.conf: ALTER SYSTEM refuses an extension's settings
    /// before the extension is loaded.
    pub async fn preload(
        &mut self,
        libraries: &[&str],
        settings: &[(&str, String)],
    ) -> anyhow::Result<()> {
        let mut conf = format!(
            "\n# crondeck bench\nshared_preload_libraries = '{}'\n",
            libraries.join(",")
        );
        for (name, value) in settings {
            conf.push_str(&format!("{name} = '{}'\n", value.replace('\'', "''")));
        }
        let path = self.embedded.cluster_dir().join("data/postgresql.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        std::io::Write::write_all(&mut file, conf.as_bytes())?;
        self.restart()?;
        self.preloaded = libraries.iter().map(|l| l.to_string()).collect();
        Ok(())
    }

    /// `pg_ctl restart`, as the owner of the cluster (the launcher runs the
    /// server as an unprivileged user when we are root). The launcher's
    /// options are reused from `postmaster.opts`.
    fn restart(&self) -> anyhow::Result<()> {
        let cluster = self.embedded.cluster_dir();
        let owner = std::fs::metadata(cluster)?;
        let mut cmd = Command::new(self.bins.pg_ctl());
        cmd.args(["restart", "-w", "-t", "60", "-m", "fast", "-D"])
            .arg(cluster.join("data"))
            .arg("-l")
            .arg(cluster.join("server.log"))
            .current_dir(cluster)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if nix::unistd::geteuid().is_root() {
            cmd.uid(owner.uid()).gid(owner.gid());
        }
        let out = cmd.output().context("running pg_ctl restart")?;
        if !out.status.success() {
            bail!(
                "pg_ctl restart failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                tail(&cluster.join("server.log"))
            );
        }
        Ok(())
    }

    pub fn socket_dir(&self) -> &Path {
        self.embedded.socket_dir()
    }

    pub fn bindir(&self) -> &Path {
        &self.bins.bindir
    }

    pub fn version(&self) -> &str {
        &self.bins.version
    }

    pub fn spec(&self, dbname: &str) -> ConnectionSpec {
        ConnectionSpec::from_config(self.embedded.client_config(dbname))
    }

    pub async fn connect(&self, dbname: &str) -> anyhow::Result<Client> {
        Ok(self.spec(dbname).connect().await?)
    }

    /// A fresh, migrated database named after `label`.
    pub async fn database(&self, label: &str) -> anyhow::Result<BenchDb> {
        let n = self
            .counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("bench_{label}_{n}");
        self.create_database(&name).await?;
        let spec = self.spec(&name);
        let mut client = spec.connect().await?;
        migrate(&mut client)
            .await
            .with_context(|| format!("migrating {name}"))?;
        Ok(BenchDb {
            name,
            spec,
            socket_dir: self.socket_dir().to_path_buf(),
            client,
        })
    }

    /// An empty database (no crondeck schema).
    pub async fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let admin = self.connect("postgres").await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(())
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

/// A migrated database of one scenario, with a client for the bench itself.
pub struct BenchDb {
    pub name: String,
    pub spec: ConnectionSpec,
    pub socket_dir: PathBuf,
    pub client: Client,
}

impl BenchDb {
    /// A key=value connection string, for `crondeck` processes and pgbench.
    pub fn url(&self) -> String {
        format!(
            "host='{}' port='5432' user='{}' password='{}' dbname='{}'",
            self.socket_dir.display(),
            crondeck::embedded::SUPERUSER,
            self.password(),
            self.name
        )
    }

    /// The embedded server's superuser password (for pgbench's PGPASSWORD).
    pub fn password(&self) -> String {
        self.spec
            .config()
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default()
    }

    pub async fn start_node(&self, config: NodeConfig) -> anyhow::Result<NodeHandle> {
        NodeHandle::start(self.spec.clone(), config).await
    }

    /// Insert `count` every-`every_secs` SQL jobs named `prefix-N`, first due
    /// `first_in_secs` from now (database time). Straight SQL rather than
    /// `ops::add`: 10,000 audited inserts would dominate the set-up time, and
    /// the rows are the same.
    pub async fn insert_every_jobs(
        &self,
        prefix: &str,
        count: i32,
        every_secs: i32,
        first_in_secs: f64,
        command: &str,
    ) -> anyhow::Result<()> {
        self.client
            .execute(
                "INSERT INTO crondeck.jobs (name, schedule_kind, interval_count, interval_unit,
                     nextcall, action_kind, command)
                 SELECT $1 || '-' || g, 'every', $2, 'seconds',
                        now() + make_interval(secs => $3), 'sql', $4
                 FROM generate_series(1, $5) g",
                &[&prefix, &every_secs, &first_in_secs, &command, &count],
            )
            .await
            .context("inserting jobs")?;
        // What autovacuum would do within a minute: without statistics the
        // planner sorts every due job instead of walking the due index.
        self.client.batch_execute("ANALYZE crondeck.jobs").await?;
        Ok(())
    }

    /// The database's clock (`clock_timestamp()`), as seconds since the epoch.
    pub async fn db_clock(&self) -> anyhow::Result<f64> {
        Ok(self
            .client
            .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
            .await?
            .get(0))
    }

    pub async fn scalar_i64(&self, sql: &str) -> anyhow::Result<i64> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }

    /// A column of float8 values.
    pub async fn floats(&self, sql: &str) -> anyhow::Result<Vec<f64>> {
        Ok(self
            .client
            .query(sql, &[])
            .await?
            .iter()
            .map(|r| r.get::<_, f64>(0))
            .collect())
    }
}

/// Node settings for a benchmark: defaults, with a name and worker count.
pub fn node_config(name: &str, workers: usize) -> NodeConfig {
    NodeConfig {
        name: name.to_string(),
        workers,
        shutdown_grace: Duration::from_secs(5),
        ..NodeConfig::default()
    }
}

/// Shut down every node, reporting the first error.
pub async fn shutdown_all(nodes: Vec<NodeHandle>) -> anyhow::Result<()> {
    let mut first = Ok(());
    for node in nodes {
        if let Err(e) = node.shutdown().await {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// Poll `check` every `every` until it returns `Some`, or fail after `limit`.
pub async fn wait_for<T, F, Fut>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(every).await;
    }
}
