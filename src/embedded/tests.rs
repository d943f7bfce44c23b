//! These tests run a real PostgreSQL server (the binaries must be installed).
//! They wait on conditions with deadlines; no sleep is an assertion.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::binaries::{find_binaries_with, parse_major_version, SearchPaths};
use super::*;

const HOLDER_ENV: &str = "CRONDECK_EMBEDDED_TEST_HOLDER_DIR";
const DEADLINE: Duration = Duration::from_secs(30);

fn opts(dir: &Path, ephemeral: bool) -> EmbeddedOptions {
    EmbeddedOptions {
        data_dir: dir.to_path_buf(),
        ephemeral,
    }
}

fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}

/// First column of the first row of `sql`, as text, over tokio-postgres.
fn query_text(server: &EmbeddedServer, sql: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (client, conn) = server
            .client_config("postgres")
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        let msgs = client.simple_query(sql).await.unwrap();
        msgs.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("").to_string())
                }
                _ => None,
            })
            .unwrap()
    })
}

fn postmaster_pid(cluster: &Path) -> Option<i32> {
    std::fs::read_to_string(cluster.join("data/postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Server gone and its watchdog finished: a watchdog still inside `pg_ctl stop`
/// holds clients.lock exclusively (and a new start would wait for it).
fn stopped(cluster: &Path) -> bool {
    let watchdog_done = std::fs::File::open(cluster.join("clients.lock"))
        .map(|f| nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok())
        .unwrap_or(true);
    !cluster.join("data/postmaster.pid").exists()
        && !cluster.join(SOCKET_NAME).exists()
        && watchdog_done
}

/// A temporary data directory. In user mode the cluster lives inside it, so
/// it must outlive the server: dropping waits for the watchdog to stop it.
struct TestDir(tempfile::TempDir);
impl TestDir {
    fn path(&self) -> &Path {
        self.0.path()
    }
}
impl Drop for TestDir {
    fn drop(&mut self) {
        let pg = self.0.path().join("pg");
        if std::fs::symlink_metadata(&pg).is_ok_and(|m| m.is_dir()) {
            wait_until(|| stopped(&pg));
        }
    }
}
fn test_dir() -> TestDir {
    TestDir(tempfile::tempdir().unwrap())
}

/// Non-ephemeral tests: as root the cluster is under /var/lib/crondeck;
/// wait for the watchdog's stop, then delete it so test runs leave nothing.
struct RemoveCluster(PathBuf);
impl Drop for RemoveCluster {
    fn drop(&mut self) {
        wait_until(|| stopped(&self.0));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn fresh_start_connects_over_socket_only() {
    let dir = test_dir();
    let server = EmbeddedServer::start(&opts(dir.path(), true)).unwrap();
    assert!(server.started_here());
    assert!(server.initialized_here());
    assert_eq!(query_text(&server, "SELECT 1"), "1");
    assert_eq!(query_text(&server, "SHOW listen_addresses"), "");
    assert_eq!(query_text(&server, "SELECT current_user"), SUPERUSER);
    assert!(server.socket_dir().join(SOCKET_NAME).exists());
    let desc = server.describe();
    assert!(desc.starts_with("embedded PostgreSQL "), "{desc}");
    assert!(
        desc.contains(&server.cluster_dir().display().to_string()),
        "{desc}"
    );
    if nix::unistd::Uid::effective().is_root() {
        assert!(server.cluster_dir().starts_with(ROOT_CLUSTERS));
        let link = std::fs::read_link(dir.path().join("pg")).unwrap();
        assert_eq!(link, server.cluster_dir());
    } else {
        assert_eq!(
            server.cluster_dir(),
            dir.path().canonicalize().unwrap().join("pg")
        );
    }
}

#[test]
fn second_start_in_same_process_attaches() {
    let dir = test_dir();
    let first = EmbeddedServer::start(&opts(dir.path(), true)).unwrap();
    let second = EmbeddedServer::start(&opts(dir.path(), true)).unwrap();
    assert!(first.started_here() && first.initialized_here());
    assert!(!second.started_here() && !second.initialized_here());
    assert_eq!(first.cluster_dir(), second.cluster_dir());
    drop(first);
    // The second handle still keeps the server for itself.
    assert_eq!(query_text(&second, "SELECT 1"), "1");
}

#[test]
fn concurrent_starts_run_initdb_once() {
    let dir = test_dir();
    let o = opts(dir.path(), true);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let o = o.clone();
            std::thread::spawn(move || EmbeddedServer::start(&o).unwrap())
        })
        .collect();
    let servers: Vec<EmbeddedServer> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(servers.iter().filter(|s| s.initialized_here()).count(), 1);
    assert_eq!(servers.iter().filter(|s| s.started_here()).count(), 1);
    for s in &servers {
        assert_eq!(query_text(s, "SELECT 1"), "1");
    }
}

/// Entry point of the child process used by `child_holder_keeps_server_after_parent_drops`;
/// a no-op when run as an ordinary test.
#[test]
fn holder_child_entry() {
    let Some(dir) = std::env::var_os(HOLDER_ENV) else {
        return;
    };
    let server = EmbeddedServer::start(&opts(Path::new(&dir), true)).unwrap();
    println!("HOLDER started_here={}", server.started_here());
    for line in std::io::stdin().lock().lines() {
        if line.unwrap().trim() == "query" {
            println!("HOLDER ok {}", query_text(&server, "SELECT 1"));
        }
    }
}

#[test]
fn child_holder_keeps_server_after_parent_drops() {
    let dir = test_dir();
    let parent = EmbeddedServer::start(&opts(dir.path(), true)).unwrap();
    assert!(parent.started_here());
    let cluster = parent.cluster_dir().to_path_buf();
    let pid = postmaster_pid(&cluster).unwrap();

    let module = module_path!().split_once("::").map(|x| x.1).unwrap_or("");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::holder_child_entry"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HOLDER_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // libtest prints "test <name> ... " before the child's own output, so the
    // marker may sit mid-line. A reader thread keeps a dead child from hanging us.
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.find("HOLDER") {
                let _ = tx.send(line[i..].to_string());
            }
        }
    });
    let next_holder_line = || {
        rx.recv_timeout(DEADLINE)
            .expect("no answer from holder child")
    };
    assert_eq!(next_holder_line(), "HOLDER started_here=false");

    drop(parent);
    // Give a (buggy) watchdog time to act; the assertions below are on state.
    std::thread::sleep(Duration::from_millis(1500));
    writeln!(stdin, "query").unwrap();
    assert_eq!(next_holder_line(), "HOLDER ok 1");
    assert_eq!(postmaster_pid(&cluster), Some(pid));

    // kill -9 releases the holder's lock too; the ephemeral watchdog then
    // stops the server and deletes the cluster.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        wait_until(|| !cluster.exists()),
        "cluster {cluster:?} not removed"
    );
}

#[test]
fn server_stops_after_last_handle_is_dropped() {
    let dir = test_dir();
    let a = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    let b = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    let cluster = a.cluster_dir().to_path_buf();
    let _cleanup = RemoveCluster(cluster.clone());
    assert!(postmaster_pid(&cluster).is_some());
    drop(a);
    assert_eq!(query_text(&b, "SELECT 1"), "1");
    drop(b);
    assert!(wait_until(|| stopped(&cluster)), "server still running");
    // Persistent mode keeps the data; the next start reuses it.
    assert!(cluster.join("data/PG_VERSION").exists());
    let again = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    assert!(again.started_here() && !again.initialized_here());
}

#[test]
fn stale_pid_file_is_recovered() {
    let dir = test_dir();
    let first = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    let cluster = first.cluster_dir().to_path_buf();
    let _cleanup = RemoveCluster(cluster.clone());
    drop(first);
    assert!(wait_until(|| stopped(&cluster)));

    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id() as i32;
    dead.wait().unwrap();
    let live_non_postgres = std::process::id() as i32;

    for (what, pid) in [
        ("dead pid", dead_pid),
        ("reused live pid", live_non_postgres),
    ] {
        let pgdata = cluster.join("data");
        // What a crash leaves: postmaster.pid and the socket lock file.
        let fake = format!(
            "{pid}\n{}\n1700000000\n5432\n{}\n\n",
            pgdata.display(),
            cluster.display()
        );
        std::fs::write(pgdata.join("postmaster.pid"), &fake).unwrap();
        std::fs::write(cluster.join(format!("{SOCKET_NAME}.lock")), &fake).unwrap();
        assert!(matches!(
            lifetime::postmaster_state(&pgdata),
            lifetime::Postmaster::Stale { .. }
        ));

        let server = EmbeddedServer::start(&opts(dir.path(), false))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(server.started_here(), "{what}");
        assert!(!server.initialized_here(), "{what}");
        assert_eq!(query_text(&server, "SELECT 1"), "1", "{what}");
        let real = postmaster_pid(&cluster).unwrap();
        assert_ne!(real, pid);
        assert_eq!(
            lifetime::postmaster_state(&pgdata),
            lifetime::Postmaster::Live(real)
        );
        drop(server);
        assert!(wait_until(|| stopped(&cluster)), "{what}: not stopped");
    }
}

#[test]
fn ephemeral_cluster_is_removed_after_last_handle() {
    let dir = test_dir();
    let server = EmbeddedServer::start(&opts(dir.path(), true)).unwrap();
    let cluster = server.cluster_dir().to_path_buf();
    assert!(cluster.join("data/PG_VERSION").exists());
    drop(server);
    assert!(
        wait_until(|| !cluster.exists()),
        "cluster {cluster:?} left behind"
    );
    // A later start on the same data dir gets a fresh cluster.
    let again = EmbeddedServer::start(&opts(dir.path(), true)).unwrap();
    assert!(again.initialized_here() && again.started_here());
}

#[test]
fn socket_path_too_long_is_a_clear_error() {
    let dir = test_dir();
    // Long for both modes: the data dir (user mode) and the clusters root (root mode).
    let data = dir.path().join("d".repeat(100));
    let root = PathBuf::from(format!("/tmp/{}", "r".repeat(100)));
    let err = EmbeddedServer::start_in(&opts(&data, true), &root).unwrap_err();
    assert!(
        matches!(err, EmbeddedError::SocketPathTooLong { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("shorter --data-dir") && msg.contains(".s.PGSQL.5432"),
        "{msg}"
    );
    assert!(!root.exists());
    assert!(
        layout::check_cluster_path(Path::new("/var/lib/crondeck/clusters/0123456789abcdef"))
            .is_ok()
    );
}

#[test]
fn binaries_not_found_says_how_to_fix() {
    let empty = tempfile::tempdir().unwrap();
    let search = SearchPaths {
        path: Some(empty.path().as_os_str().to_owned()),
        versioned: vec![(empty.path().join("lib/postgresql"), "")],
        fixed: vec![empty.path().join("pgsql/bin")],
    };
    let msg = find_binaries_with(&search).unwrap_err().to_string();
    for needle in [
        "apt-get install postgresql",
        "dnf install postgresql-server",
        "brew install postgresql@15",
        "--database-url",
        "DATABASE_URL",
    ] {
        assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
    }
}

#[test]
fn binaries_on_path_resolve_through_symlinks() {
    let real = find_binaries().unwrap();
    let bin = tempfile::tempdir().unwrap();
    // Only initdb is linked (like /usr/local/bin/initdb here): the bindir it
    // resolves to provides the other two.
    std::os::unix::fs::symlink(real.initdb(), bin.path().join("initdb")).unwrap();
    let search = SearchPaths {
        path: Some(bin.path().as_os_str().to_owned()),
        versioned: vec![],
        fixed: vec![],
    };
    let found = find_binaries_with(&search).unwrap();
    assert_eq!(found, real);
    assert_eq!(found.bindir, found.bindir.canonicalize().unwrap());
}

#[test]
fn version_parsing() {
    let v = |s| parse_major_version(s);
    assert_eq!(
        v("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)").as_deref(),
        Some("15")
    );
    assert_eq!(v("postgres (PostgreSQL) 9.6.24").as_deref(), Some("9.6"));
    assert_eq!(v("postgres (PostgreSQL) 17beta1").as_deref(), Some("17"));
    assert_eq!(v("garbage"), None);
}

#[test]
fn default_data_dir_follows_xdg_then_home() {
    let p = |x: Option<&str>, h: Option<&str>| {
        data_dir_from(x.map(PathBuf::from), h.map(PathBuf::from))
    };
    assert_eq!(
        p(Some("/x"), Some("/h")).unwrap(),
        PathBuf::from("/x/crondeck")
    );
    assert_eq!(
        p(Some("rel"), Some("/h")).unwrap(),
        PathBuf::from("/h/.local/share/crondeck")
    );
    assert_eq!(
        p(None, Some("/h")).unwrap(),
        PathBuf::from("/h/.local/share/crondeck")
    );
    assert!(matches!(p(None, None), Err(EmbeddedError::NoHome)));
}
