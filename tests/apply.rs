//! Jobs as code (`apply`, `export`) through the real binary against a real
//! PostgreSQL: plans, no-op re-applies, operator-owned state, prune scope,
//! error locations, and all-or-nothing.

mod common;

use std::path::{Path, PathBuf};

use common::{scalar, text, TestDb};

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write jobs file");
    path
}

fn jobs_file(source: &str, jobs: &[(&str, &str)]) -> String {
    let mut body = format!("source = \"{source}\"\n");
    for (name, schedule) in jobs {
        body.push_str(&format!(
            "\n[[job]]\nname = \"{name}\"\nschedule = \"{schedule}\"\nsql = \"SELECT 1\"\ntags = [\"ops\"]\n"
        ));
    }
    body
}

/// Run and require success; return stdout.
fn ok(db: &TestDb, args: &[&str]) -> String {
    let output = db.run(args);
    let (out, err) = text(&output);
    assert!(output.status.success(), "{args:?} failed: {err}\n{out}");
    out
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    scalar(&db.client().await, sql, &[]).await
}

#[tokio::test]
async fn dry_run_prints_the_plan_and_writes_nothing() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "jobs.toml",
        &jobs_file("team", &[("a", "5m"), ("b", "1h")]),
    );
    let out = ok(&db, &["apply", file.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains("+ create    a\n"), "{out}");
    assert!(out.contains("+ create    b\n"), "{out}");
    assert!(
        out.contains("2 to create, 0 to update, 0 unchanged, 0 to remove"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was written"), "{out}");
    assert_eq!(count(&db, "SELECT count(*) FROM crondeck.jobs").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM crondeck.audit").await, 0);
}

#[tokio::test]
async fn a_second_apply_is_a_noop_and_export_then_apply_changes_nothing() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "jobs.toml",
        &jobs_file("team", &[("a", "5m"), ("b", "0 9 * * MON Europe/Paris")]),
    );
    let path = file.to_str().unwrap();
    ok(&db, &["apply", path]);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM crondeck.jobs WHERE managed_by = 'team'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM crondeck.audit WHERE action = 'create'"
        )
        .await,
        2
    );
    let audits = count(&db, "SELECT count(*) FROM crondeck.audit").await;
    let updated_at = count(
        &db,
        "SELECT (extract(epoch FROM max(updated_at)) * 1e6)::bigint FROM crondeck.jobs",
    )
    .await;

    let out = ok(&db, &["apply", path]);
    assert!(
        out.contains("0 to create, 0 to update, 2 unchanged, 0 to remove"),
        "{out}"
    );
    assert!(out.contains("nothing to do"), "{out}");

    let exported = ok(&db, &["export"]);
    assert!(exported.contains("source = \"team\""), "{exported}");
    let round = write(dir.path(), "exported.toml", &exported);
    let out = ok(&db, &["apply", round.to_str().unwrap()]);
    assert!(
        out.contains("0 to create, 0 to update, 2 unchanged, 0 to remove"),
        "{out}"
    );
    let json = ok(&db, &["export", "--json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("export --json is JSON");
    assert_eq!(parsed["job"].as_array().map(Vec::len), Some(2));

    assert_eq!(
        count(&db, "SELECT count(*) FROM crondeck.audit").await,
        audits
    );
    assert_eq!(
        count(
            &db,
            "SELECT (extract(epoch FROM max(updated_at)) * 1e6)::bigint FROM crondeck.jobs"
        )
        .await,
        updated_at
    );
}

#[tokio::test]
async fn a_console_pause_and_an_interval_edit_survive_a_reapply_until_reset_schedule() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "jobs.toml", &jobs_file("team", &[("a", "5m")]));
    let path = file.to_str().unwrap();
    ok(&db, &["apply", path]);
    ok(&db, &["pause", "a", "--reason", "incident 42"]);
    ok(&db, &["set", "a", "--every", "10m"]);
    // The definition changes in the file too: that part is applied.
    let changed = std::fs::read_to_string(&file)
        .unwrap()
        .replace("SELECT 1", "SELECT 2");
    std::fs::write(&file, changed).unwrap();

    let out = ok(&db, &["apply", path]);
    assert!(out.contains("~ update    a\n"), "{out}");
    assert!(out.contains("command: SELECT 1 -> SELECT 2"), "{out}");
    assert!(out.contains("schedule: kept every 10 minutes"), "{out}");
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT active, interval_count, interval_unit, command, paused_reason FROM crondeck.jobs WHERE name = 'a'",
            &[],
        )
        .await
        .unwrap();
    assert!(!row.get::<_, bool>(0), "the pause survives");
    assert_eq!(
        (row.get::<_, i32>(1), row.get::<_, String>(2)),
        (10, "minutes".into())
    );
    assert_eq!(row.get::<_, String>(3), "SELECT 2");
    assert_eq!(
        row.get::<_, Option<String>>(4).as_deref(),
        Some("incident 42")
    );

    let out = ok(&db, &["apply", path, "--reset-schedule"]);
    assert!(
        out.contains("schedule: every 10 minutes -> every 5 minutes"),
        "{out}"
    );
    let row = client
        .query_one(
            "SELECT active, interval_count, interval_unit FROM crondeck.jobs WHERE name = 'a'",
            &[],
        )
        .await
        .unwrap();
    assert!(
        !row.get::<_, bool>(0),
        "--reset-schedule leaves the pause alone"
    );
    assert_eq!(
        (row.get::<_, i32>(1), row.get::<_, String>(2)),
        (5, "minutes".into())
    );
    let actions: Vec<String> = client
        .query(
            "SELECT action FROM crondeck.audit WHERE job_name = 'a' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(actions, ["create", "pause", "reschedule", "apply", "apply"]);
}

#[tokio::test]
async fn prune_removes_only_the_jobs_this_file_manages() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mine = write(
        dir.path(),
        "mine.toml",
        &jobs_file("mine", &[("a", "5m"), ("b", "5m")]),
    );
    let theirs = write(
        dir.path(),
        "theirs.toml",
        &jobs_file("theirs", &[("c", "5m")]),
    );
    ok(&db, &["apply", mine.to_str().unwrap()]);
    ok(&db, &["apply", theirs.to_str().unwrap()]);
    ok(
        &db,
        &["add", "by-hand", "--every", "5m", "--sql", "SELECT 1"],
    );

    std::fs::write(&mine, jobs_file("mine", &[("a", "5m")])).unwrap();
    let out = ok(
        &db,
        &["apply", mine.to_str().unwrap(), "--prune", "--dry-run"],
    );
    assert!(out.contains("- remove    b\n"), "{out}");
    assert_eq!(count(&db, "SELECT count(*) FROM crondeck.jobs").await, 4);
    // Without --prune a job that left the file stays.
    ok(&db, &["apply", mine.to_str().unwrap()]);
    assert_eq!(count(&db, "SELECT count(*) FROM crondeck.jobs").await, 4);
    ok(&db, &["apply", mine.to_str().unwrap(), "--prune"]);
    let client = db.client().await;
    let names: Vec<String> = client
        .query("SELECT name FROM crondeck.jobs ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["a", "by-hand", "c"]);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM crondeck.audit WHERE action = 'remove' AND job_name = 'b'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn an_error_on_line_37_reports_line_37_and_changes_nothing() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    // Line 1 is `source`, lines 2-33 eight valid jobs, 34 blank, and the
    // ninth job's schedule on line 37.
    let mut lines = vec!["source = \"team\"".to_string()];
    for n in 1..=8 {
        lines.push("[[job]]".into());
        lines.push(format!("name = \"job-{n}\""));
        lines.push("schedule = \"5m\"".into());
        lines.push("sql = \"SELECT 1\"".into());
    }
    lines.push(String::new()); // 34
    lines.push("[[job]]".into()); // 35
    lines.push("name = \"broken\"".into()); // 36
    lines.push("schedule = \"every 0 minutes\"".into()); // 37
    lines.push("sql = \"SELECT 1\"".into());
    let body = lines.join("\n") + "\n";
    assert_eq!(body.lines().nth(36), Some("schedule = \"every 0 minutes\""));
    let file = write(dir.path(), "jobs.toml", &body);
    let output = db.run(&["apply", file.to_str().unwrap()]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(
        err.contains("jobs.toml:37: job \"broken\", field `schedule`"),
        "{err}"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM crondeck.jobs").await, 0);

    // Unknown key, wrong type, duplicate name, unknown zone: file, line, field.
    for (body, line, what) in [
        ("[[job]]\nname = \"x\"\nschedule = \"5m\"\nsql = \"SELECT 1\"\ncolour = \"red\"\n", 5, "colour"),
        ("[[job]]\nname = \"x\"\nschedule = \"5m\"\nsql = \"SELECT 1\"\npriority = \"high\"\n", 5, "invalid type"),
        ("[[job]]\nname = \"x\"\nschedule = \"5m\"\nsql = \"1\"\n[[job]]\nname = \"x\"\nschedule = \"5m\"\nsql = \"1\"\n", 6, "duplicate"),
        ("[[job]]\nname = \"x\"\nschedule = \"0 9 * * * Mars/Olympus\"\nsql = \"1\"\n", 3, "unknown time zone"),
    ] {
        let file = write(dir.path(), "bad.toml", body);
        let output = db.run(&["apply", file.to_str().unwrap()]);
        let (_, err) = text(&output);
        assert_eq!(output.status.code(), Some(3), "{err}");
        assert!(err.contains(&format!("bad.toml:{line}:")) && err.contains(what), "{err}");
    }
    assert_eq!(count(&db, "SELECT count(*) FROM crondeck.jobs").await, 0);
}

#[tokio::test]
async fn a_job_owned_by_another_file_refuses_the_whole_apply() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    let theirs = write(
        dir.path(),
        "theirs.toml",
        &jobs_file("theirs", &[("shared-name", "5m")]),
    );
    ok(&db, &["apply", theirs.to_str().unwrap()]);
    let mine = write(
        dir.path(),
        "mine.toml",
        &jobs_file("mine", &[("fresh", "5m"), ("shared-name", "5m")]),
    );
    let output = db.run(&["apply", mine.to_str().unwrap()]);
    let (_, err) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{err}");
    assert!(err.contains("mine.toml:10:"), "{err}");
    assert!(err.contains("managed by \"theirs\""), "{err}");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM crondeck.jobs WHERE name = 'fresh'"
        )
        .await,
        0,
        "nothing of the file was applied"
    );
}

#[tokio::test]
async fn the_example_config_and_jobs_file_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = crondeck::config::load_file(&root.join("assets/crondeck.example.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        config.notifications.channels.is_empty(),
        "channels are commented out"
    );
    // The same file with its channels uncommented is valid too.
    let text = std::fs::read_to_string(root.join("assets/crondeck.example.toml")).unwrap();
    let uncommented: String = text
        .lines()
        .map(|l| {
            l.strip_prefix("# ")
                .filter(|r| !r.starts_with(' ') && r.contains(" = ") || r.starts_with('['))
                .unwrap_or(l)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: crondeck::config::FileConfig =
        toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    // The SMTP channel reads its password from the variable it names.
    let env = |key: &str| (key == "SMTP_PASSWORD").then(|| "x".to_string());
    let notifier = crondeck::notify::Notifier::from_file_with_env(&parsed.notifications, "t", &env)
        .unwrap()
        .expect("three channels");
    let kinds: Vec<Vec<&str>> = notifier.channels.iter().map(|c| c.kinds()).collect();
    assert_eq!(kinds, [vec!["webhook"], vec!["smtp"], vec!["command"]]);

    let db = TestDb::new().await;
    let jobs = root.join("assets/jobs.example.toml");
    let out = ok(&db, &["apply", jobs.to_str().unwrap(), "--dry-run"]);
    assert!(out.contains("3 to create"), "{out}");
}

/// A job created by hand is not silently taken over by a file that names
/// it: apply refuses and says which jobs, until asked to adopt them.
#[tokio::test]
async fn an_unmanaged_job_is_adopted_only_when_asked() {
    let db = TestDb::new().await;
    let out = db.run(&["add", "hand-made", "--every", "1h", "--sql", "SELECT 1"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jobs.toml");
    std::fs::write(
        &path,
        "source = \"ops\"\n\n[[job]]\nname = \"hand-made\"\nschedule = \"every 1h\"\nsql = \"SELECT 2\"\n\n\
         [[job]]\nname = \"fresh\"\nschedule = \"every 1h\"\nsql = \"SELECT 3\"\n",
    )
    .unwrap();
    let path = path.to_str().unwrap();
    let out = db.run(&["apply", path]);
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout} {stderr}");
    assert!(
        stderr.contains("\"hand-made\"") && stderr.contains("--adopt"),
        "{stderr}"
    );
    let client = db.client().await;
    let rows = client
        .query(
            "SELECT name, command, managed_by FROM crondeck.jobs ORDER BY name",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "nothing was applied");
    assert_eq!(rows[0].get::<_, String>(1), "SELECT 1");
    let out = db.run(&["apply", path, "--adopt"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let managed: Vec<(String, String, Option<String>)> = client
        .query(
            "SELECT name, command, managed_by FROM crondeck.jobs ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        managed,
        [
            ("fresh".into(), "SELECT 3".into(), Some("ops".into())),
            ("hand-made".into(), "SELECT 2".into(), Some("ops".into()))
        ]
    );
}
