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

// ---------------------------------------------------------------------------
// Who can log in: the attack of issue 11 (a process of the server's own OS
// account, or of the shared `postgres` account, logging in to root's cluster
// to insert and trigger a shell job that root's node would run).

const ACCOUNT_CHILD_ENV: &str = "CRONDECK_EMBEDDED_TEST_ACCOUNT_CHILD";

/// Entry point of the child run as the cluster's OS account by
/// `the_cluster_account_cannot_log_in_nor_read_the_password`; a no-op as an
/// ordinary test. Prints what each attempt got.
#[test]
fn account_child_entry() {
    let Some(socket) = std::env::var_os(ACCOUNT_CHILD_ENV) else {
        return;
    };
    let socket = PathBuf::from(socket);
    let password_file = PathBuf::from(std::env::var_os("PASSWORD_FILE").unwrap());
    println!(
        "ACCOUNT uid={} euid={}",
        nix::unistd::getuid(),
        nix::unistd::geteuid()
    );
    for (what, password) in [("empty", ""), ("guess", "crondeck")] {
        let got = match probe::probe(&socket, SUPERUSER, password, "postgres") {
            Ok(()) => "logged-in".to_string(),
            Err(probe::ProbeError::Refused { sqlstate, .. }) => format!("refused {sqlstate}"),
            Err(probe::ProbeError::NotYet(e)) => format!("unreachable {e}"),
        };
        println!("ACCOUNT login-{what} {got}");
    }
    let read = match std::fs::read(&password_file) {
        Ok(_) => "read".to_string(),
        Err(e) => format!("{:?}", e.kind()),
    };
    println!("ACCOUNT password-file {read}");
}

/// Run `account_child_entry` in a child process as `uid:gid`; its report lines.
fn run_as_account(uid: u32, gid: u32, socket: &Path, password_file: &Path) -> Vec<String> {
    use std::os::unix::process::CommandExt;
    let module = module_path!().split_once("::").map(|x| x.1).unwrap_or("");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            &format!("{module}::account_child_entry"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ACCOUNT_CHILD_ENV, socket)
        .env("PASSWORD_FILE", password_file)
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "account child failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.find("ACCOUNT ").map(|i| l[i + 8..].to_string()))
        .collect()
}

/// `psql` run as `uid:gid` with no password: its exit status and output.
fn psql_as(uid: u32, gid: u32, socket_dir: &Path, sql: &str) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let psql = binaries::find_program("psql", std::env::var_os("PATH").as_deref())
        .or_else(|| {
            let p = find_binaries().ok()?.bindir.join("psql");
            p.exists().then_some(p)
        })
        .expect("psql");
    Command::new(psql)
        .args(["-X", "-w", "-At", "-h"])
        .arg(socket_dir)
        .args(["-p", "5432", "-U", SUPERUSER, "-d", "postgres", "-c", sql])
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

/// Non-comment, non-empty lines of a configuration file.
fn config_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// The cluster's own files say: password for every local login, no TCP.
fn assert_locked_down(cluster: &Path) {
    let hba = config_lines(&cluster.join("data/pg_hba.conf"));
    assert!(!hba.is_empty());
    for line in &hba {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.first() {
            Some(&"local") => assert_eq!(words.last(), Some(&"scram-sha-256"), "{line}"),
            _ => assert_eq!(words.last(), Some(&"reject"), "{line}"),
        }
        assert!(!line.contains("trust"), "{line}");
    }
    let auto = config_lines(&cluster.join("data/postgresql.auto.conf"));
    assert!(
        auto.iter().any(|l| l == "listen_addresses = ''"),
        "{auto:?}"
    );
}

fn owner_of(path: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap();
    (meta.uid(), meta.gid())
}

/// Real uid of a running process, from /proc.
fn process_uid(pid: i32) -> u32 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

#[test]
fn the_cluster_account_cannot_log_in_nor_read_the_password() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = test_dir();
    // World-traversable data directory: the password file's own mode is the
    // only thing keeping other accounts out of it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    let cluster = server.cluster_dir().to_path_buf();
    let _cleanup = RemoveCluster(cluster.clone());
    assert!(server.secured_here());
    assert_eq!(query_text(&server, "SHOW listen_addresses"), "");
    assert_eq!(
        query_text(&server, "SHOW password_encryption"),
        "scram-sha-256"
    );
    assert_locked_down(&cluster);

    let pwfile = server.password_file().to_path_buf();
    assert_eq!(
        pwfile,
        dir.path().canonicalize().unwrap().join(PASSWORD_FILE)
    );
    let meta = std::fs::symlink_metadata(&pwfile).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), nix::unistd::geteuid().as_raw());
    assert!(!pwfile.starts_with(cluster.join("data")));

    // The server runs as the cluster's account: the dedicated one when root.
    let (uid, gid) = owner_of(&cluster.join("data"));
    let pid = postmaster_pid(&cluster).unwrap();
    assert_eq!(process_uid(pid), uid);
    if nix::unistd::geteuid().is_root() {
        let account = nix::unistd::User::from_name(SERVICE_ACCOUNT)
            .unwrap()
            .expect("the service account exists");
        assert_eq!(uid, account.uid.as_raw());
        assert_ne!(uid, 0);
        for shared in ["postgres", "nobody"] {
            if let Ok(Some(u)) = nix::unistd::User::from_name(shared) {
                assert_ne!(u.uid.as_raw(), uid, "cluster owned by shared {shared}");
            }
        }
    }

    // The attack: a process of that account tries to log in and to read
    // the password.
    let report = run_as_account(uid, gid, &server.socket_dir().join(SOCKET_NAME), &pwfile);
    assert_eq!(
        report.first().map(String::as_str),
        Some(format!("uid={uid} euid={uid}").as_str()),
        "{report:?}"
    );
    assert!(
        report.contains(&"login-empty refused 28P01".to_string()),
        "{report:?}"
    );
    assert!(
        report.contains(&"login-guess refused 28P01".to_string()),
        "{report:?}"
    );
    if nix::unistd::geteuid().is_root() {
        assert!(
            report.contains(&"password-file PermissionDenied".to_string()),
            "{report:?}"
        );
    }
    let out = psql_as(uid, gid, server.socket_dir(), "SELECT 'in'");
    assert!(!out.status.success(), "psql as the account logged in");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("in"));

    // The account of a system PostgreSQL cannot even reach the socket.
    if let Ok(Some(pg)) = nix::unistd::User::from_name("postgres") {
        if nix::unistd::geteuid().is_root() {
            let out = psql_as(
                pg.uid.as_raw(),
                pg.gid.as_raw(),
                server.socket_dir(),
                "SELECT 'in'",
            );
            assert!(!out.status.success(), "psql as postgres logged in");
        }
    }
    // With the password, the superuser logs in (what crondeck does).
    assert_eq!(query_text(&server, "SELECT current_user"), SUPERUSER);
    drop(server); // before `_cleanup`, which waits for the server to stop
}

/// What crondeck before this change left: a cluster initdb'ed with
/// `-A trust`, owned by `postgres` when root (by the caller otherwise),
/// running with the old command line. Returns its cluster directory and owner.
fn make_old_style_cluster(data_dir: &Path) -> (PathBuf, u32, u32) {
    use std::os::unix::fs::DirBuilderExt;
    let layout = Layout::resolve(data_dir, Path::new(ROOT_CLUSTERS)).unwrap();
    let (uid, gid) = if nix::unistd::geteuid().is_root() {
        let pg = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("user postgres (the old code's service account)");
        (pg.uid.as_raw(), pg.gid.as_raw())
    } else {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    };
    let cluster = layout.cluster_dir.clone();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&cluster)
        .unwrap();
    std::os::unix::fs::lchown(&cluster, Some(uid), Some(gid)).unwrap();
    if layout.service.is_some() {
        std::os::unix::fs::symlink(&cluster, layout.data_dir.join("pg")).unwrap();
    }
    let bins = find_binaries().unwrap();
    let as_owner = |program: PathBuf| {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(program);
        cmd.current_dir(&cluster).env("LC_ALL", "C");
        if nix::unistd::geteuid().is_root() {
            cmd.uid(uid).gid(gid);
        }
        cmd
    };
    let out = as_owner(bins.initdb())
        .arg("-D")
        .arg(cluster.join("data"))
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = as_owner(bins.pg_ctl())
        .args(["start", "-w", "-t", "60", "-D"])
        .arg(cluster.join("data"))
        .arg("-l")
        .arg(cluster.join("server.log"))
        .arg("-o")
        .arg(format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -c port=5432 -c unix_socket_permissions=0700",
            cluster.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(out.success());
    (cluster, uid, gid)
}

#[test]
fn a_cluster_of_the_old_trust_setup_is_upgraded_in_place() {
    use std::os::unix::process::CommandExt;
    let dir = test_dir();
    let (cluster, old_uid, old_gid) = make_old_style_cluster(dir.path());
    let _cleanup = RemoveCluster(cluster.clone());
    // Data made under the old setup, as its owner, with no password at all.
    let out = psql_as(
        old_uid,
        old_gid,
        &cluster,
        "CREATE TABLE keep_me(v text); INSERT INTO keep_me VALUES ('kept'); SELECT 'in'",
    );
    assert!(out.status.success(), "the old setup trusts: {out:?}");

    // Its server is still running: refuse, and say how to stop it.
    let err = EmbeddedServer::start(&opts(dir.path(), false)).unwrap_err();
    assert!(matches!(err, EmbeddedError::NeedsUpgrade { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("pg_ctl stop -D"), "{msg}");
    let out = psql_as(old_uid, old_gid, &cluster, "SELECT 'in'");
    assert!(
        out.status.success(),
        "a refused start must not change anything"
    );

    // Stopped, the next start upgrades it and keeps the data.
    let bins = find_binaries().unwrap();
    let mut stop = Command::new(bins.pg_ctl());
    stop.args(["stop", "-w", "-D"])
        .arg(cluster.join("data"))
        .current_dir(&cluster);
    if nix::unistd::geteuid().is_root() {
        stop.uid(old_uid).gid(old_gid);
    }
    assert!(stop.output().unwrap().status.success());
    let server = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    assert!(server.started_here() && !server.initialized_here() && server.secured_here());
    assert_eq!(query_text(&server, "SELECT v FROM keep_me"), "kept");
    assert_locked_down(&cluster);
    let (uid, gid) = owner_of(&cluster.join("data"));
    if nix::unistd::geteuid().is_root() {
        assert_ne!(uid, old_uid, "still owned by postgres");
        assert_eq!(owner_of(&cluster.join("data/pg_hba.conf")), (uid, gid));
        assert_eq!(owner_of(&cluster.join("server.log")), (uid, gid));
        // The old account has lost the cluster entirely.
        let out = psql_as(old_uid, old_gid, &cluster, "SELECT 'in'");
        assert!(!out.status.success(), "postgres still logs in: {out:?}");
    }
    // And the new owner needs the password like everyone else.
    let report = run_as_account(uid, gid, &cluster.join(SOCKET_NAME), server.password_file());
    assert!(
        report.contains(&"login-empty refused 28P01".to_string()),
        "{report:?}"
    );

    // A second start attaches without touching the setup again.
    let again = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    assert!(!again.started_here() && !again.secured_here());
}

#[test]
fn a_missing_password_file_gets_a_new_password_once_the_server_is_down() {
    let dir = test_dir();
    let first = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    let cluster = first.cluster_dir().to_path_buf();
    let _cleanup = RemoveCluster(cluster.clone());
    let pwfile = first.password_file().to_path_buf();
    let old = std::fs::read_to_string(&pwfile).unwrap();
    std::fs::remove_file(&pwfile).unwrap();
    // While the server runs, a second process cannot log in: refused clearly.
    let err = EmbeddedServer::start(&opts(dir.path(), false)).unwrap_err();
    assert!(matches!(err, EmbeddedError::NeedsUpgrade { .. }), "{err:?}");
    assert!(err.to_string().contains("is missing"), "{err}");
    drop(first);
    assert!(wait_until(|| stopped(&cluster)));
    let server = EmbeddedServer::start(&opts(dir.path(), false)).unwrap();
    assert!(server.secured_here());
    let new = std::fs::read_to_string(&pwfile).unwrap();
    assert_ne!(old, new);
    assert_eq!(query_text(&server, "SELECT 1"), "1");
    // The old password no longer works.
    let old_pw = old.trim();
    let got = probe::probe(&cluster.join(SOCKET_NAME), SUPERUSER, old_pw, "postgres");
    assert!(
        matches!(&got, Err(probe::ProbeError::Refused { sqlstate, .. }) if sqlstate == "28P01"),
        "{got:?}"
    );
}

#[test]
fn without_useradd_a_missing_account_is_a_clear_error_not_a_fallback() {
    let err = layout::ensure_account("crondeck-test-absent", None).unwrap_err();
    assert!(
        matches!(&err, EmbeddedError::NoServiceAccount { name, .. } if name == "crondeck-test-absent"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("useradd --system"), "{msg}");
    assert!(nix::unistd::User::from_name("crondeck-test-absent")
        .unwrap()
        .is_none());
}
