//! Every job-management subcommand, run as the real binary against a real
//! database, and every kind of bad input: refused with a message that says
//! what was wrong, a non-zero exit code, and nothing written.

mod common;

use std::process::Command;

use common::{text, TestDb};
use serde_json::Value;

/// Everything a refused command must leave untouched: the jobs and the audit.
async fn state(db: &TestDb) -> (Value, i64) {
    let client = db.client().await;
    let jobs: Option<Value> = client
        .query_one(
            "SELECT jsonb_agg(to_jsonb(j) ORDER BY id) FROM crondeck.jobs j",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let audit: i64 = client
        .query_one("SELECT count(*) FROM crondeck.audit", &[])
        .await
        .unwrap()
        .get(0);
    (jobs.unwrap_or(Value::Null), audit)
}

fn list_json(db: &TestDb) -> Vec<Value> {
    let output = db.run(&["list", "--json"]);
    assert!(output.status.success(), "{:?}", text(&output));
    serde_json::from_slice::<Vec<Value>>(&output.stdout).expect("list --json is a JSON array")
}

fn job<'a>(jobs: &'a [Value], name: &str) -> &'a Value {
    jobs.iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("job {name} in {jobs:?}"))
}

fn ok(db: &TestDb, args: &[&str]) -> String {
    let output = db.run(args);
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "{args:?} failed: {stdout} {stderr}"
    );
    stdout
}

/// Run a command that must be refused; check the exit code and message, and
/// that nothing changed.
async fn refused(db: &TestDb, args: &[&str], code: i32, message: &str) {
    let before = state(db).await;
    let output = db.run(args);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "{args:?}: {stdout} {stderr}"
    );
    assert!(
        stderr.contains(message),
        "{args:?}: expected {message:?} in stderr, got: {stderr}"
    );
    assert_eq!(state(db).await, before, "{args:?} changed the database");
}

async fn audit_actions(db: &TestDb, name: &str) -> Vec<String> {
    let client = db.client().await;
    client
        .query(
            "SELECT action FROM crondeck.audit WHERE job_name = $1 ORDER BY id",
            &[&name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn add_set_pause_resume_remove_change_list_json_and_leave_audit_rows() {
    let db = TestDb::new().await;
    assert!(list_json(&db).is_empty());

    let out = ok(
        &db,
        &[
            "add",
            "report",
            "--every",
            "15m",
            "--sql",
            "SELECT 1",
            "--priority",
            "3",
            "--tag",
            "billing",
            "--tag",
            "nightly",
            "--description",
            "monthly report",
        ],
    );
    assert!(out.contains("added job \"report\""), "{out}");
    let jobs = list_json(&db);
    let report = job(&jobs, "report");
    assert_eq!(report["schedule"], "every 15 minutes");
    assert_eq!(report["priority"], 3);
    assert_eq!(report["tags"], serde_json::json!(["billing", "nightly"]));
    assert_eq!(report["action"], "sql");
    assert_eq!(report["timeout_seconds"], 300);
    assert_eq!(report["active"], true);
    assert_eq!(report["state"], "ok");

    ok(
        &db,
        &[
            "set",
            "report",
            "--every",
            "1h 30m",
            "--priority",
            "0",
            "--timeout",
            "none",
        ],
    );
    let jobs = list_json(&db);
    let report = job(&jobs, "report");
    assert_eq!(report["schedule"], "every 90 minutes");
    assert_eq!(report["schedule_words"], "every 1h 30m");
    assert_eq!(report["priority"], 0);
    assert_eq!(report["timeout_seconds"], Value::Null);

    ok(
        &db,
        &[
            "set",
            "report",
            "--cron",
            "0 9 * * MON",
            "--tz",
            "Europe/Paris",
        ],
    );
    let jobs = list_json(&db);
    assert!(job(&jobs, "report")["schedule"]
        .as_str()
        .unwrap()
        .contains("Europe/Paris"));

    let before = job(&list_json(&db), "report")["nextcall"].clone();
    ok(&db, &["set", "report", "--next", "+2h"]);
    let after = job(&list_json(&db), "report")["nextcall"].clone();
    assert_ne!(before, after);

    ok(
        &db,
        &[
            "pause",
            "report",
            "--reason",
            "maintenance window",
            "--for",
            "2h",
        ],
    );
    let jobs = list_json(&db);
    let report = job(&jobs, "report");
    assert_eq!(report["active"], false);
    assert_eq!(report["state"], "paused");
    assert_eq!(report["paused"]["reason"], "maintenance window");
    assert!(report["paused"]["until"].is_string());

    ok(&db, &["resume", "report"]);
    let jobs = list_json(&db);
    assert_eq!(job(&jobs, "report")["active"], true);
    assert_eq!(job(&jobs, "report")["paused"], Value::Null);

    ok(&db, &["set", "report", "--manual"]);
    let jobs = list_json(&db);
    assert_eq!(job(&jobs, "report")["schedule"], "manual");
    assert_eq!(job(&jobs, "report")["nextcall"], Value::Null);

    ok(&db, &["remove", "report"]);
    assert!(list_json(&db).is_empty());

    assert_eq!(
        audit_actions(&db, "report").await,
        [
            "create",
            "reschedule",
            "set-priority",
            "set-timeout",
            "reschedule",
            "set-nextcall",
            "pause",
            "resume",
            "reschedule",
            "remove"
        ]
    );
    // Who: database role, OS user and host; what changed: old -> new.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT db_role::text, os_user, host, old_value, new_value, reason
             FROM crondeck.audit WHERE job_name = 'report' AND action = 'pause'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "crondeck");
    assert!(!row.get::<_, String>(1).is_empty());
    assert!(!row.get::<_, String>(2).is_empty());
    assert_eq!(row.get::<_, Value>(3)["active"], true);
    assert_eq!(row.get::<_, Value>(4)["active"], false);
    assert_eq!(
        row.get::<_, Option<String>>(5).as_deref(),
        Some("maintenance window")
    );
}

#[tokio::test]
async fn show_list_and_audit_print_readable_and_json_output() {
    let db = TestDb::new().await;
    ok(
        &db,
        &[
            "add",
            "digest",
            "--cron",
            "0 9 * * MON",
            "--tz",
            "Europe/Paris",
            "--shell",
            "echo hi",
            "--tag",
            "mail",
        ],
    );
    ok(
        &db,
        &[
            "add",
            "on-demand",
            "--manual",
            "--sql",
            "SELECT 1",
            "--paused",
            "--reason",
            "not yet",
        ],
    );

    let table = ok(&db, &["list"]);
    assert!(table.starts_with("STATE"), "{table}");
    assert!(
        table.contains("digest") && table.contains("on-demand"),
        "{table}"
    );
    assert!(table.contains("paused"), "{table}");
    let tagged = ok(&db, &["list", "--tag", "mail"]);
    assert!(
        tagged.contains("digest") && !tagged.contains("on-demand"),
        "{tagged}"
    );

    let detail = ok(&db, &["show", "digest"]);
    assert!(detail.contains("Europe/Paris"), "{detail}");
    assert!(detail.contains("next fire times"), "{detail}");
    let json: Value = serde_json::from_str(&ok(&db, &["show", "digest", "--json"])).unwrap();
    assert_eq!(json["job"]["name"], "digest");
    assert_eq!(json["upcoming"].as_array().map(Vec::len), Some(5));
    assert_eq!(json["audit"][0]["action"], "create");

    let audit = ok(&db, &["audit"]);
    assert!(
        audit.contains("create") && audit.contains("digest"),
        "{audit}"
    );
    let audit: Value = serde_json::from_str(&ok(&db, &["audit", "on-demand", "--json"])).unwrap();
    assert_eq!(audit.as_array().map(Vec::len), Some(1));

    let migrate = ok(&db, &["migrate"]);
    assert!(migrate.contains("up to date"), "{migrate}");

    // Resuming an active job is a no-op, not an error, and writes no audit row.
    let out = ok(&db, &["resume", "digest"]);
    assert!(out.contains("not paused"), "{out}");
    assert_eq!(audit_actions(&db, "digest").await, ["create"]);
}

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_message_and_nothing_written() {
    let db = TestDb::new().await;
    ok(
        &db,
        &["add", "existing", "--every", "5m", "--sql", "SELECT 1"],
    );

    // invalid schedules
    refused(
        &db,
        &["add", "x", "--every", "0m", "--sql", "SELECT 1"],
        3,
        "positive",
    )
    .await;
    refused(
        &db,
        &["add", "x", "--every", "banana", "--sql", "SELECT 1"],
        3,
        "expected",
    )
    .await;
    refused(
        &db,
        &["add", "x", "--cron", "61 * * * *", "--sql", "SELECT 1"],
        3,
        "cron",
    )
    .await;
    refused(&db, &["set", "existing", "--every=-5m"], 3, "expected").await;
    // unknown time zone
    refused(
        &db,
        &[
            "add",
            "x",
            "--cron",
            "0 9 * * *",
            "--tz",
            "Europe/Pari",
            "--sql",
            "SELECT 1",
        ],
        3,
        "Europe/Pari",
    )
    .await;
    // a time in the past where one is not allowed
    refused(
        &db,
        &["set", "existing", "--next", "2001-01-01 00:00"],
        3,
        "in the past",
    )
    .await;
    refused(
        &db,
        &[
            "add",
            "x",
            "--every",
            "5m",
            "--sql",
            "SELECT 1",
            "--next",
            "2001-01-01 00:00",
        ],
        3,
        "in the past",
    )
    .await;
    refused(
        &db,
        &["set", "existing", "--next", "yesterday-ish"],
        3,
        "expected",
    )
    .await;
    // duplicate name
    refused(
        &db,
        &["add", "existing", "--every", "5m", "--sql", "SELECT 1"],
        3,
        "already exists",
    )
    .await;
    // missing job
    for command in [
        vec!["show", "ghost"],
        vec!["set", "ghost", "--priority", "1"],
        vec!["pause", "ghost"],
        vec!["resume", "ghost"],
        vec!["remove", "ghost"],
    ] {
        refused(&db, &command, 4, "no job named \"ghost\"").await;
    }
    // negative priority
    refused(
        &db,
        &[
            "add",
            "x",
            "--every",
            "5m",
            "--sql",
            "SELECT 1",
            "--priority",
            "-1",
        ],
        3,
        "negative",
    )
    .await;
    refused(&db, &["set", "existing", "--priority", "-3"], 3, "negative").await;
    // other bad values
    refused(
        &db,
        &[
            "add",
            "x",
            "--every",
            "5m",
            "--sql",
            "SELECT 1",
            "--timeout",
            "0s",
        ],
        3,
        "timeout",
    )
    .await;
    refused(
        &db,
        &[
            "add",
            "x",
            "--every",
            "5m",
            "--sql",
            "SELECT 1",
            "--numbercall",
            "-7",
        ],
        3,
        "numbercall",
    )
    .await;
    refused(&db, &["pause", "existing", "--for", "soon"], 3, "expected").await;
    refused(&db, &["set", "existing"], 3, "nothing to change").await;
    refused(
        &db,
        &["add", "x", "--every", "0 9 * * *", "--sql", "SELECT 1"],
        3,
        "--cron",
    )
    .await;
    refused(
        &db,
        &["add", " padded", "--every", "5m", "--sql", "SELECT 1"],
        3,
        "spaces",
    )
    .await;
    // read-only mode refuses every change
    refused(&db, &["--read-only", "pause", "existing"], 3, "read-only").await;
    // clap usage errors: both actions, no schedule
    refused(
        &db,
        &[
            "add", "x", "--every", "5m", "--sql", "SELECT 1", "--shell", "true",
        ],
        2,
        "cannot be used with",
    )
    .await;
    refused(&db, &["add", "x", "--sql", "SELECT 1"], 2, "required").await;
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error_with_its_own_exit_code() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
        .args([
            "list",
            "--database-url",
            "postgres://someone:s3cr3t-pw@127.0.0.1:1/nowhere?connect_timeout=2",
        ])
        .output()
        .expect("run crondeck");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("could not connect"), "{stderr}");
    assert!(stderr.contains("127.0.0.1"), "{stderr}");
    assert!(
        !stderr.contains("s3cr3t-pw"),
        "the password leaked: {stderr}"
    );

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
        .args([
            "list",
            "--database-url",
            "postgres://u:s3cr3t-pw@host/db?sslmode=maybe",
        ])
        .output()
        .expect("run crondeck");
    let (_, stderr) = text(&output);
    assert_ne!(output.status.code(), Some(0));
    assert!(stderr.contains("sslmode"), "{stderr}");
    assert!(
        !stderr.contains("s3cr3t-pw"),
        "the password leaked: {stderr}"
    );
}

#[tokio::test]
async fn global_options_are_accepted_before_and_after_the_subcommand() {
    let db = TestDb::new().await;
    let url = db.url();
    for args in [
        vec!["--database-url", url.as_str(), "list", "--json"],
        vec!["list", "--json", "--database-url", url.as_str()],
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
            .args(&args)
            .output()
            .expect("run crondeck");
        assert!(output.status.success(), "{args:?}: {:?}", text(&output));
    }
}

/// One row this crondeck cannot read (stored around the checks, or a cron
/// value croner refuses that the database's grammar lets through) is shown
/// as "unreadable" with its reason by every reader, which keep the others.
#[tokio::test]
async fn every_reader_survives_one_unreadable_row() {
    let db = TestDb::new().await;
    ok(&db, &["add", "good", "--every", "1h", "--sql", "SELECT 1"]);
    let client = db.client().await;
    // Out of croner's range, but within the database's grammar.
    client
        .batch_execute(
            "INSERT INTO crondeck.jobs (name, schedule_kind, cron_expr, cron_tz, nextcall,
                 action_kind, command)
             VALUES ('bad-cron', 'cron', '99 * * * *', 'UTC', now() + interval '1 hour', 'sql', 'SELECT 1');
             ALTER TABLE crondeck.jobs DISABLE TRIGGER jobs_validate;
             INSERT INTO crondeck.jobs (name, schedule_kind, interval_count, interval_unit, nextcall,
                 action_kind, command)
             VALUES ('huge', 'every', 2147483647, 'months', now() + interval '1 hour', 'sql', 'SELECT 1');
             ALTER TABLE crondeck.jobs ENABLE TRIGGER jobs_validate;",
        )
        .await
        .unwrap();
    let list = ok(&db, &["list"]);
    assert!(list.contains("good"), "{list}");
    for name in ["bad-cron", "huge"] {
        let line = list
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} missing: {list}"));
        assert!(line.contains("unreadable"), "{line}");
    }
    let json: Value = serde_json::from_str(&ok(&db, &["list", "--json"])).unwrap();
    let jobs = json.as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    let bad = jobs.iter().find(|j| j["name"] == "bad-cron").unwrap();
    assert_eq!(bad["state"], "unreadable");
    assert!(bad["unreadable"].as_str().unwrap().contains("99"), "{bad}");
    let good = jobs.iter().find(|j| j["name"] == "good").unwrap();
    assert_eq!(good["state"], "ok");
    // show
    let show = ok(&db, &["show", "huge"]);
    assert!(show.contains("unreadable"), "{show}");
    // export: the readable jobs, and says which were left out.
    let out = db.run(&["export"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout} {stderr}");
    assert!(stdout.contains("name = \"good\""), "{stdout}");
    assert!(!stdout.contains("name = \"huge\""), "{stdout}");
    assert!(
        stderr.contains("huge") && stderr.contains("unreadable"),
        "{stderr}"
    );
    // check: one line, critical, naming the job.
    let out = db.run(&["check", "--no-notify"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout} {stderr}");
    assert!(stdout.contains("unreadable"), "{stdout}");
    // The console's data task reads the list the same way.
    let listed = crondeck::db::jobs::job_list(&client).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed.iter().filter(|j| j.unreadable.is_some()).count(), 2);
    // An unreadable job is repaired by giving it a schedule.
    ok(&db, &["set", "huge", "--every", "2h"]);
    let json: Value = serde_json::from_str(&ok(&db, &["list", "--json"])).unwrap();
    let huge = json
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "huge")
        .unwrap()
        .clone();
    assert_eq!(huge["state"], "ok", "{huge}");
}

/// Input that used to reach the database raw, or be silently ignored or
/// left behind, gets a clear refusal and changes nothing.
#[tokio::test]
async fn careless_input_gets_a_clear_error_not_a_raw_one() {
    let db = TestDb::new().await;
    ok(
        &db,
        &["add", "existing", "--every", "5m", "--sql", "SELECT 1"],
    );
    // An 8 kB name: a length limit, not a btree error; in the database too.
    let long = "n".repeat(8192);
    refused(
        &db,
        &["add", &long, "--every", "5m", "--sql", "SELECT 1"],
        3,
        "too long",
    )
    .await;
    let client = db.client().await;
    let err = client
        .execute(
            "INSERT INTO crondeck.jobs (name, schedule_kind, action_kind, command)
             VALUES ($1, 'manual', 'sql', 'SELECT 1')",
            &[&long],
        )
        .await
        .expect_err("an 8 kB name");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    assert!(
        err.as_db_error().unwrap().message().contains("too long"),
        "{err:?}"
    );
    // Negative or zero limits are usage errors.
    for args in [
        vec!["audit", "--limit=-5"],
        vec!["history", "existing", "--limit", "0"],
        vec!["notifications", "--limit=-1"],
    ] {
        refused(&db, &args, 2, "--limit").await;
    }
    // --tz means nothing without --cron: refused, not ignored.
    refused(
        &db,
        &[
            "add",
            "x",
            "--every",
            "5m",
            "--tz",
            "Europe/Paris",
            "--sql",
            "SELECT 1",
        ],
        3,
        "--tz applies to --cron only",
    )
    .await;
    refused(
        &db,
        &["add", "x", "--manual", "--tz", "UTC", "--sql", "SELECT 1"],
        3,
        "--tz applies to --cron only",
    )
    .await;
    refused(
        &db,
        &["set", "existing", "--every", "10m", "--tz", "Europe/Paris"],
        3,
        "--tz applies to --cron only",
    )
    .await;
}

/// A data directory the embedded launcher refuses is not created anyway.
/// (Run as an unprivileged user when the tests run as root: that is the case
/// where the data directory holds the cluster and its socket.)
#[test]
fn a_refused_data_dir_is_not_created() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let root = nix::unistd::geteuid().is_root();
    let nobody = nix::unistd::User::from_name("nobody").unwrap();
    if root {
        let nobody = nobody.as_ref().expect("the nobody user");
        nix::unistd::chown(dir.path(), Some(nobody.uid), Some(nobody.gid)).unwrap();
    }
    let refused = dir.path().join("it's").join("data");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crondeck"));
    cmd.arg("--data-dir")
        .arg(&refused)
        .arg("list")
        .env_remove("DATABASE_URL")
        .env_remove("CRONDECK_DATABASE_URL")
        .env("HOME", dir.path());
    if let (true, Some(nobody)) = (root, nobody) {
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    }
    let out = cmd.output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout} {stderr}");
    assert!(stderr.contains("--data-dir"), "{stderr}");
    assert!(
        !dir.path().join("it's").exists(),
        "the refused data directory was created: {stderr}"
    );
}

/// Whether `text` is one of the strings in `value`.
fn holds(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Array(items) => items.iter().any(|v| holds(v, text)),
        Value::Object(map) => map.values().any(|v| holds(v, text)),
        _ => false,
    }
}

/// No raw escape, C0/C1 control, bidi or zero-width character in `bytes`.
fn assert_shown_inertly(bytes: &[u8], what: &str) {
    let shown = String::from_utf8_lossy(bytes);
    let raw: Vec<String> = shown
        .chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
                    | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{FEFF}')
        })
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    assert!(
        raw.is_empty(),
        "{what}: raw {raw:?} reached the terminal:\n{shown}"
    );
}

/// Regression (issue 11): `add`/`pause`/`resume`/`run` confirmations and
/// the `apply` summary printed names raw, and JSON output carried bidi
/// overrides as they are. Every command, run as the real binary, shows
/// hostile names and reasons escaped, on stdout and stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_and_reasons_never_reach_the_terminal_raw() {
    let db = TestDb::new().await;
    // Names cannot hold control characters (the database refuses them), but
    // bidi overrides, isolates, zero-width and separator characters pass.
    let name = "inv\u{202E}fdp.exe\u{200B}\u{2066}x\u{2069}\u{2028}y\u{FEFF}";
    let hostile = "\u{1b}]52;c;cm0gLXJmIH4K\u{7}\u{9b}2J\u{202E}evil\r";
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("jobs.toml");
    std::fs::write(
        &file,
        format!(
            "source = \"src\u{202E}x\"\n[[job]]\nname = \"app\u{202E}lied\"\nschedule = \"every 1h\"\nsql = \"SELECT 1\"\ndescription = \"{}\"\n",
            hostile.replace('\u{1b}', "\\u001b").replace('\u{7}', "\\u0007").replace('\r', "\\r")
        ),
    )
    .unwrap();
    let mut commands: Vec<Vec<String>> = vec![
        vec![
            "add".into(),
            name.into(),
            "--every".into(),
            "1h".into(),
            "--sql".into(),
            "SELECT 1".into(),
            "--description".into(),
            hostile.into(),
        ],
        vec!["set".into(), name.into(), "--priority".into(), "3".into()],
        vec![
            "pause".into(),
            name.into(),
            "--reason".into(),
            hostile.into(),
        ],
        vec!["list".into()],
        vec!["show".into(), name.into()],
        vec!["resume".into(), name.into()],
        vec!["run".into(), name.into()],
        vec![
            "apply".into(),
            file.display().to_string(),
            "--dry-run".into(),
        ],
        vec!["apply".into(), file.display().to_string()],
        vec!["audit".into()],
        vec!["check".into(), "--no-notify".into()],
    ];
    for json in [
        vec!["list", "--json"],
        vec!["show", name, "--json"],
        vec!["audit", "--json"],
        vec!["check", "--json", "--no-notify"],
        vec!["apply", "--json", "--dry-run"],
    ] {
        let mut json: Vec<String> = json.into_iter().map(String::from).collect();
        if json[0] == "apply" {
            json.insert(1, file.display().to_string());
        }
        commands.push(json);
    }
    commands.push(vec!["remove".into(), name.into()]);
    for args in &commands {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = db.run(&args);
        assert!(
            output.status.success() || args[0] == "check",
            "{args:?}: {:?}",
            text(&output)
        );
        assert_shown_inertly(&output.stdout, &format!("{args:?} stdout"));
        assert_shown_inertly(&output.stderr, &format!("{args:?} stderr"));
        let stdout = String::from_utf8_lossy(&output.stdout);
        if args.contains(&"--json") {
            // Escaped as JSON: the same value for a program reading it.
            let value: Value = serde_json::from_str(&stdout)
                .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"));
            if args[0] == "show" {
                assert!(holds(&value, name), "{stdout}");
            }
        } else if matches!(args[0], "add" | "pause" | "resume" | "run" | "remove") {
            assert!(
                stdout.contains(r"inv\u{202e}fdp.exe\u{200b}"),
                "{args:?}: {stdout}"
            );
        }
    }
}

/// Regression (issue 11): `run` blamed a missing `--allow-shell` while a
/// shell node was live. It now says which: no node allows shell jobs, or
/// the live shell nodes' allow-lists refuse the command, and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_says_why_no_node_can_run_a_shell_job() {
    use crondeck::scheduler::{NodeConfig, NodeHandle};
    let db = TestDb::new().await;
    ok(
        &db,
        &["add", "evil", "--manual", "--shell", "/opt/jobsEVIL/x"],
    );
    let output = db.run(&["run", "evil"]);
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains("no live node allows shell jobs (start one with --allow-shell)"),
        "{stderr}"
    );
    let node = NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            allow_shell: true,
            shell_allow: vec!["/opt/jobs".into()],
            heartbeat: std::time::Duration::from_millis(500),
            lease: std::time::Duration::from_secs(2),
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let output = db.run(&["run", "evil"]);
    node.shutdown().await.unwrap();
    let (_, stderr) = text(&output);
    assert!(
        stderr.contains(
            "the allow-lists of the live shell nodes do not admit this command: \
             program /opt/jobsEVIL/x is not under /opt/jobs/"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("--allow-shell)"), "{stderr}");
}

#[tokio::test]
async fn cron_takes_its_zone_as_the_last_word_like_the_console() {
    let db = TestDb::new().await;
    ok(
        &db,
        &[
            "add",
            "paris",
            "--cron",
            "0 9 * * MON Europe/Paris",
            "--sql",
            "SELECT 1",
        ],
    );
    ok(
        &db,
        &[
            "add",
            "tokyo",
            "--cron",
            "0 9 * * MON",
            "--tz",
            "Asia/Tokyo",
            "--sql",
            "SELECT 1",
        ],
    );
    let jobs = list_json(&db);
    assert_eq!(job(&jobs, "paris")["schedule"], "0 9 * * MON Europe/Paris");
    assert_eq!(job(&jobs, "tokyo")["schedule"], "0 9 * * MON Asia/Tokyo");
    ok(
        &db,
        &["set", "tokyo", "--cron", "30 8 * * * America/New_York"],
    );
    let jobs = list_json(&db);
    assert_eq!(
        job(&jobs, "tokyo")["schedule"],
        "30 8 * * * America/New_York"
    );
    // The same zone both ways is fine; two different zones are refused.
    ok(
        &db,
        &[
            "set",
            "paris",
            "--cron",
            "0 10 * * MON Europe/Paris",
            "--tz",
            "Europe/Paris",
        ],
    );
    refused(
        &db,
        &[
            "set",
            "paris",
            "--cron",
            "0 9 * * MON Europe/Paris",
            "--tz",
            "Asia/Tokyo",
        ],
        3,
        "names the time zone Europe/Paris but --tz says Asia/Tokyo",
    )
    .await;
    refused(
        &db,
        &[
            "add",
            "x",
            "--cron",
            "0 9 * * MON Europe/Pari",
            "--sql",
            "SELECT 1",
        ],
        3,
        "unknown time zone \"Europe/Pari\"",
    )
    .await;
}

#[tokio::test]
async fn list_says_on_stderr_when_no_live_node_executes_anything() {
    let db = TestDb::new().await;
    ok(&db, &["add", "j", "--every", "5m", "--sql", "SELECT 1"]);
    let banner =
        "no live scheduler node: nothing is executing; start one with `crondeck scheduler`";
    let output = db.run(&["list"]);
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout} {stderr}");
    assert!(stderr.contains(banner), "{stderr}");
    assert!(!stdout.contains("no live"), "banner is not data: {stdout}");
    assert!(stdout.contains('j'), "{stdout}");
    // JSON stays a bare array, without a banner anywhere.
    let output = db.run(&["list", "--json"]);
    let (stdout, stderr) = text(&output);
    assert!(!stderr.contains("no live"), "{stderr}");
    assert!(
        serde_json::from_str::<Vec<Value>>(&stdout).is_ok(),
        "{stdout}"
    );
    // A stopped node executes nothing either.
    let client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, lease_ms, heartbeat_ms, stopped_at)
             VALUES ('gone', 'gone', 'host', 1, 'test', 2, 600000, 5000, now())",
        )
        .await
        .unwrap();
    let (_, stderr) = text(&db.run(&["list"]));
    assert!(stderr.contains(banner), "{stderr}");
    // A live node: no banner.
    client
        .batch_execute(
            "INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, lease_ms, heartbeat_ms)
             VALUES ('n1', 'node-1', 'host', 1, 'test', 2, 600000, 5000)",
        )
        .await
        .unwrap();
    let (_, stderr) = text(&db.run(&["list"]));
    assert!(!stderr.contains("no live"), "{stderr}");
}

#[tokio::test]
async fn add_and_set_take_the_failure_policy_bounded_and_audited() {
    let db = TestDb::new().await;
    ok(
        &db,
        &[
            "add",
            "flaky",
            "--every",
            "5m",
            "--sql",
            "SELECT 1",
            "--failure-threshold",
            "3",
            "--failure-min-age",
            "0s",
            "--retries",
            "2",
            "--retry-backoff",
            "30s",
        ],
    );
    let policy = |jobs: &[Value]| job(jobs, "flaky")["failure_policy"].clone();
    let p = policy(&list_json(&db));
    assert_eq!(p["threshold"], 3);
    assert_eq!(p["min_age"], 0);
    assert_eq!(p["retry_max"], 2);
    assert_eq!(p["retry_backoff"], 30);
    // Defaults when no flag is given.
    ok(&db, &["add", "plain", "--every", "5m", "--sql", "SELECT 1"]);
    let jobs = list_json(&db);
    assert_eq!(job(&jobs, "plain")["failure_policy"]["threshold"], 5);
    assert_eq!(job(&jobs, "plain")["failure_policy"]["retry_max"], 0);

    // set changes only what it names, and the database audits it.
    let before = audit_actions(&db, "flaky").await.len();
    ok(
        &db,
        &["set", "flaky", "--retries", "4", "--failure-min-age", "2h"],
    );
    let p = policy(&list_json(&db));
    assert_eq!(p["threshold"], 3, "untouched");
    assert_eq!(p["retry_max"], 4);
    assert_eq!(p["min_age"], 7200);
    assert_eq!(p["retry_backoff"], 30, "untouched");
    let actions = audit_actions(&db, "flaky").await;
    assert_eq!(actions.len(), before + 1, "{actions:?}");
    assert_eq!(actions.last().map(String::as_str), Some("update"));
    let client = db.client().await;
    let (old, new): (Value, Value) = client
        .query_one(
            "SELECT old_value, new_value FROM crondeck.audit WHERE job_name = 'flaky'
             ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(old["retry_max"], 2, "{old}");
    assert_eq!(new["retry_max"], 4, "{new}");

    // Out of bounds: refused with a clear message, nothing written.
    refused(
        &db,
        &["set", "flaky", "--retries=-1"],
        3,
        "retries -1 is out of range",
    )
    .await;
    refused(&db, &["set", "flaky", "--retries", "101"], 3, "up to 100").await;
    refused(
        &db,
        &["set", "flaky", "--failure-threshold=-2"],
        3,
        "failure threshold -2 is out of range",
    )
    .await;
    refused(
        &db,
        &["set", "flaky", "--retry-backoff", "0s"],
        3,
        "retry backoff",
    )
    .await;
    refused(
        &db,
        &["set", "flaky", "--retry-backoff", "400 days"],
        3,
        "retry backoff",
    )
    .await;
    refused(
        &db,
        &["set", "flaky", "--failure-min-age", "banana"],
        3,
        "--failure-min-age",
    )
    .await;
    refused(
        &db,
        &[
            "add",
            "x",
            "--every",
            "5m",
            "--sql",
            "SELECT 1",
            "--failure-threshold",
            "10001",
        ],
        3,
        "failure threshold 10001 is out of range",
    )
    .await;
    // An operator may not change what an admin defines.
    let operator = format!("{}_op", db.name);
    client
        .batch_execute(&format!(
            "CREATE ROLE {operator} LOGIN; GRANT crondeck_operator TO {operator};"
        ))
        .await
        .unwrap();
    let output = db.run_as(&operator, &["set", "flaky", "--retries", "0"]);
    assert_eq!(output.status.code(), Some(3), "{:?}", text(&output));
    assert_eq!(policy(&list_json(&db))["retry_max"], 4);
}

#[tokio::test]
async fn run_wait_timeout_has_its_own_exit_code() {
    let db = TestDb::new().await;
    ok(&db, &["add", "m", "--manual", "--sql", "SELECT 1"]);
    // No node: the request stays pending, so the wait can only expire.
    let output = db.run(&["run", "m", "--wait", "--wait-timeout", "1s"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(7), "{stdout} {stderr}");
    assert!(
        stderr.contains("gave up waiting after 1s (the run request"),
        "{stderr}"
    );
    // Distinct from a run that ended badly (6) and from refused input (3).
    refused(
        &db,
        &["run", "m", "--wait", "--wait-timeout", "banana"],
        3,
        "banana",
    )
    .await;
    let requests: i64 = db
        .client()
        .await
        .query_one("SELECT count(*) FROM crondeck.run_requests", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(requests, 1, "only the first run was requested");
}

#[tokio::test]
async fn audit_and_show_print_old_to_new_readably_and_json_unchanged() {
    let db = TestDb::new().await;
    ok(&db, &["add", "r", "--every", "5m", "--sql", "SELECT 1"]);
    ok(&db, &["set", "r", "--every", "1h"]);
    ok(&db, &["pause", "r", "--reason", "maintenance"]);
    ok(&db, &["set", "r", "--timeout", "none"]);
    let audit = ok(&db, &["audit", "r"]);
    assert!(audit.lines().next().unwrap().contains("CHANGE"), "{audit}");
    assert!(
        audit.contains("schedule: every 5 minutes → every 1 hour"),
        "{audit}"
    );
    assert!(audit.contains("active: true → false"), "{audit}");
    assert!(audit.contains("timeout: 5m → none"), "{audit}");
    assert!(
        audit.contains("created (schedule every 5 minutes)"),
        "{audit}"
    );
    assert!(!audit.contains('{'), "no JSON blob: {audit}");
    assert!(!audit.contains("interval_count"), "{audit}");
    let show = ok(&db, &["show", "r"]);
    assert!(show.contains("active: true → false"), "{show}");
    // JSON keeps the stored values.
    let json: Value = serde_json::from_str(&ok(&db, &["audit", "r", "--json"])).unwrap();
    let reschedule = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "reschedule")
        .expect("a reschedule record");
    assert_eq!(reschedule["old"]["interval_unit"], "minutes");
    assert_eq!(reschedule["new"]["schedule"], "every 1 hour");
}

#[tokio::test]
async fn counts_and_durations_read_as_english() {
    let db = TestDb::new().await;
    ok(
        &db,
        &[
            "add",
            "w",
            "--every",
            "1d",
            "--sql",
            "SELECT 1",
            "--failure-threshold",
            "1",
            "--failure-min-age",
            "1d",
            "--retries",
            "1",
            "--retry-backoff",
            "2 days",
            "--timeout",
            "1h 30m",
        ],
    );
    let show = ok(&db, &["show", "w"]);
    assert!(
        show.contains("auto-pause after 1 failure spanning at least 1 day"),
        "{show}"
    );
    assert!(show.contains("backoff from 2 days"), "{show}");
    assert!(show.contains("1h 30m"), "{show}");
    assert!(
        !show.contains("1day") && !show.contains("1 failures"),
        "{show}"
    );
    let output = db.run(&["check"]);
    let (stdout, _) = text(&output);
    assert!(stdout.contains("of 1 job, 0 live nodes"), "{stdout}");
}

#[tokio::test]
async fn running_a_paused_job_by_hand_needs_force_and_says_why_it_is_paused() {
    let db = TestDb::new().await;
    ok(&db, &["add", "p", "--every", "1h", "--sql", "SELECT 1"]);
    ok(&db, &["pause", "p", "--reason", "disk full on db2"]);
    let requests = || async {
        db.client()
            .await
            .query_one("SELECT count(*) FROM crondeck.run_requests", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let output = db.run(&["run", "p"]);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stdout} {stderr}");
    let paused_by = job(&list_json(&db), "p")["paused"]["by"]
        .as_str()
        .expect("paused by someone")
        .to_string();
    let by = format!("by {paused_by})");
    for part in [
        "job \"p\" is paused (since ",
        by.as_str(),
        "): disk full on db2",
        "crondeck run p --force",
    ] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }
    assert_eq!(requests().await, 0, "a refused run requests nothing");
    refused(&db, &["run", "p", "--wait"], 3, "is paused").await;

    // --force runs it once; the job stays paused.
    let out = ok(&db, &["run", "p", "--force"]);
    assert!(out.contains("requested a run of \"p\""), "{out}");
    assert_eq!(requests().await, 1);
    let jobs = list_json(&db);
    assert_eq!(job(&jobs, "p")["active"], false);
    assert_eq!(job(&jobs, "p")["paused"]["reason"], "disk full on db2");
    // An active job needs no --force.
    ok(&db, &["resume", "p"]);
    ok(&db, &["run", "p"]);
}
