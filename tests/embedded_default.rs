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
