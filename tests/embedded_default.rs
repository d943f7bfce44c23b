//! The embedded default through the real binary: a fresh data directory is
//! started, migrated, seeded and listed; concurrent invocations share one
//! server (and one seeding); and it works as root and as a normal user.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

fn crondeck(data_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crondeck"));
    cmd.arg("--data-dir").arg(data_dir).args(args);
    cmd.env_remove("DATABASE_URL").env("NO_COLOR", "1");
    cmd
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Remove what a root-run embedded server keeps outside the data directory
/// (its cluster under /var/lib/crondeck), once its watchdog has stopped it.
fn clean_up(data_dir: &Path) {
    if let Ok(cluster) = std::fs::read_link(data_dir.join("pg")) {
        let pid_file = cluster.join("data/postmaster.pid");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pid_file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(cluster);
    }
}

#[test]
fn list_on_a_fresh_data_dir_starts_migrates_seeds_and_concurrent_runs_share_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Two invocations at once on a fresh directory: one initialises and
    // seeds, the other attaches; neither fails, nothing is seeded twice.
    let children: Vec<_> = (0..2)
        .map(|_| crondeck(&data, &["list", "--json"]).output_child())
        .collect();
    let mut seeded = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout} {stderr}");
        let jobs: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        let names: Vec<&str> = jobs
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|j| j["name"].as_str())
            .collect();
        assert!(
            names.contains(&"heartbeat") && names.contains(&"weekly-digest"),
            "{names:?}"
        );
        if stderr.contains("seeded the demo jobs") {
            seeded += 1;
        }
    }
    assert_eq!(seeded, 1, "exactly one invocation seeds");
    let out = crondeck(&data, &["list", "--json"]).output().unwrap();
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        jobs.as_array().map(Vec::len),
        Some(11),
        "the demo set, once"
    );
    clean_up(&data);
}

#[test]
fn a_normal_user_gets_the_embedded_default_too() {
    if !nix::unistd::geteuid().is_root() {
        // Already a normal user: the test above is this case.
        let dir = tempfile::tempdir().unwrap();
        let out = crondeck(dir.path(), &["list"]).output().unwrap();
        assert!(out.status.success(), "{:?}", text(&out));
        return;
    }
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("user nobody");
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("nobody-data");
    std::fs::create_dir(&data).unwrap();
    nix::unistd::chown(&data, Some(nobody.uid), Some(nobody.gid)).unwrap();
    // Run a copy of the binary that `nobody` can reach, wherever the checkout is.
    let binary = dir.path().join("crondeck");
    std::fs::copy(env!("CARGO_BIN_EXE_crondeck"), &binary).unwrap();
    let out = Command::new(&binary)
        .arg("--data-dir")
        .arg(&data)
        .arg("list")
        .env_remove("DATABASE_URL")
        .uid(nobody.uid.as_raw())
        .gid(nobody.gid.as_raw())
        .env("HOME", &data)
        .env("USER", "nobody")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "as nobody: {stdout} {stderr}");
    assert!(stdout.contains("heartbeat"), "{stdout}");
    // As a normal user the cluster lives inside the data directory itself.
    assert!(data.join("pg").is_dir() && !data.join("pg").is_symlink());
}

/// The attack of issue 11 against the real binary: root runs a node on the
/// embedded default; a process of the cluster's own OS account, and one of
/// the shared `postgres` account, try to insert a shell job and trigger it.
/// Neither gets a session; the password file is root's alone.
#[test]
fn as_root_the_cluster_account_and_postgres_cannot_reach_the_node() {
    use std::os::unix::fs::MetadataExt;
    if !nix::unistd::geteuid().is_root() {
        // Not root: no root node to reach; the lib tests cover the
        // password login of a user's own cluster.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = dir.path().join("data");
    let mut node = crondeck(&data, &["scheduler"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pg = data.join("pg");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let up = loop {
        let ok = crondeck(&data, &["list"])
            .output()
            .unwrap()
            .status
            .success();
        if ok || std::time::Instant::now() > deadline {
            break ok;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(up, "the node's embedded server did not come up");
    let cluster = std::fs::read_link(&pg).unwrap();
    let owner = std::fs::metadata(cluster.join("data")).unwrap();
    let account = nix::unistd::User::from_name("crondeck-pg")
        .unwrap()
        .expect("the service account");
    assert_eq!(owner.uid(), account.uid.as_raw());
    let password_file = data.join("superuser.password");
    let meta = std::fs::metadata(&password_file).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));

    let attack = "INSERT INTO crondeck.jobs (name, kind, command) VALUES ('pwn', 'shell', 'id > /tmp/pwned'); \
                  SELECT crondeck.trigger('heartbeat'); SELECT 'in'";
    let mut attackers = vec![("crondeck-pg", account.uid, account.gid)];
    if let Ok(Some(pg)) = nix::unistd::User::from_name("postgres") {
        attackers.push(("postgres", pg.uid, pg.gid));
    }
    for (name, uid, gid) in attackers {
        let psql = Command::new("psql")
            .args(["-X", "-w", "-At", "-h"])
            .arg(&cluster)
            .args([
                "-p", "5432", "-U", "crondeck", "-d", "crondeck", "-c", attack,
            ])
            .env_remove("PGPASSWORD")
            .env("HOME", "/nonexistent")
            .current_dir("/")
            .uid(uid.as_raw())
            .gid(gid.as_raw())
            .output()
            .unwrap();
        let (stdout, stderr) = text(&psql);
        assert!(!psql.status.success(), "{name} got in: {stdout} {stderr}");
        assert!(!stdout.contains("in"), "{name}: {stdout}");
        let cat = Command::new("cat")
            .arg(&password_file)
            .uid(uid.as_raw())
            .gid(gid.as_raw())
            .output()
            .unwrap();
        assert!(
            !cat.status.success() && cat.stdout.is_empty(),
            "{name} read the password"
        );
    }
    // Root's own tools still work, and no job was added.
    let out = crondeck(&data, &["list", "--json"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.contains("\"pwn\""), "{stdout}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(node.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    node.wait().unwrap();
    clean_up(&data);
}

trait OutputChild {
    fn output_child(&mut self) -> std::process::Child;
}

impl OutputChild for Command {
    fn output_child(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}
