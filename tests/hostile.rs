//! Hostile input: every parser of operator input survives arbitrary text with
//! a clear error and no panic; SQL injection through every field is inert; and
//! escape sequences, bidi overrides, zero-width characters and huge lines in
//! job definitions and output are shown, never acted on.

mod common;

use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{text, wait_for, TestDb};
use crondeck::db::connect::ConnectionSpec;
use crondeck::schedule::Schedule;
use crondeck::scheduler::{NodeConfig, NodeHandle};
use crondeck::{jobfile, timespec};
use proptest::prelude::*;

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        // Near-misses of valid input reach deeper into the parsers.
        "[0-9 */,A-Za-z@#L?-]{0,40}",
        "(every )?[0-9]{1,12} ?(s|m|h|d|w|months?|weeks?|x)( [0-9]{1,5}[smhd])?",
        "[+-]?[0-9]{0,5}[smhd]? ?|now|[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2})?",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_schedule_parser_never_panics_and_explains_refusals(input in any_text()) {
        match Schedule::parse(&input) {
            Ok(schedule) => {
                // Whatever it accepts, it can describe, step and write back.
                let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 30, 0).unwrap();
                let _ = schedule.describe();
                if let Some(next) = schedule.next_after(now) {
                    prop_assert!(next > now);
                }
                prop_assert_eq!(Schedule::parse(&schedule.to_string()).ok(), Some(schedule));
            }
            Err(error) => prop_assert!(!error.to_string().trim().is_empty()),
        }
    }

    #[test]
    fn time_and_duration_parsers_never_panic(input in any_text()) {
        let now = Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap();
        if let Err(e) = timespec::parse_when(&input, now, &chrono_tz::Europe::Paris) {
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = timespec::parse_duration(&input) {
            prop_assert!(!e.to_string().is_empty());
        }
        let _ = timespec::parse_timeout(&input);
    }

    #[test]
    fn the_job_file_loader_never_panics_and_names_the_file(
        input in prop_oneof![
            any::<String>(),
            "\\[\\[job\\]\\]\nname = \"[a-z]{1,8}\"\nschedule = \"[0-9a-z */]{0,12}\"\n(sql|shell|colour) = \"[ -~]{0,10}\"\n",
        ]
    ) {
        if let Err(e) = jobfile::parse(&input, Path::new("jobs.toml")) {
            prop_assert!(e.to_string().starts_with("jobs.toml:"), "{}", e);
        }
    }

    #[test]
    fn connection_strings_never_panic_or_leak_the_password(
        garbage in any_text(),
        form in 0..3usize,
    ) {
        let input = match form {
            0 => format!("postgres://user:s3cr3t-pw@host/{garbage}"),
            1 => format!("host=x password=s3cr3t-pw {garbage}"),
            _ => garbage.clone(),
        };
        match ConnectionSpec::parse(&input, &|_| None) {
            Ok(spec) => {
                prop_assert!(!spec.target().contains("s3cr3t-pw"));
                let debug = format!("{:?}", spec);
                prop_assert!(!debug.contains("s3cr3t-pw"));
            }
            Err(e) => prop_assert!(!e.to_string().contains("s3cr3t-pw"), "{}", e),
        }
    }
}

#[tokio::test]
async fn sql_injection_through_every_field_is_inert() {
    let db = TestDb::new().await;
    let name = "x'); DROP TABLE crondeck.jobs; --";
    let description = "'; DELETE FROM crondeck.audit; --";
    // run_as must name an existing role (migration 5): create the hostile one.
    let role = format!("r\"; DROP ROLE x; --{}", db.name);
    db.client()
        .await
        .batch_execute(&format!(
            "CREATE ROLE \"{}\" NOLOGIN",
            role.replace('"', "\"\"")
        ))
        .await
        .unwrap();
    let out = db.run(&[
        "add",
        name,
        "--every",
        "5m",
        "--sql",
        "SELECT 1",
        "--description",
        description,
        "--tag",
        "a'b\"c",
        "--run-as",
        &role,
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    for args in [
        vec!["pause", name, "--reason", "'); TRUNCATE crondeck.runs; --"],
        vec!["resume", name],
        vec!["set", name, "--priority", "3"],
        vec!["run", name],
    ] {
        let out = db.run(&args);
        assert!(out.status.success(), "{args:?}: {:?}", text(&out));
    }
    for args in [
        vec![
            "add",
            "y",
            "--cron",
            "0 9 * * *",
            "--tz",
            "UTC'; DROP TABLE crondeck.jobs; --",
            "--sql",
            "SELECT 1",
        ],
        vec![
            "set",
            name,
            "--cron",
            "0 9 * * *; DROP TABLE crondeck.jobs",
            "--tz",
            "UTC",
        ],
        vec!["show", "' OR '1'='1"],
        vec!["history", "' OR 1=1 --"],
    ] {
        let out = db.run(&args);
        assert!(
            !out.status.success(),
            "{args:?} was accepted: {:?}",
            text(&out)
        );
    }
    let out = db.run(&["list", "--json"]);
    let jobs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jobs.as_array().map(Vec::len), Some(1));
    assert_eq!(jobs[0]["name"], name);
    assert_eq!(jobs[0]["description"], description);
    assert_eq!(jobs[0]["tags"][0], "a'b\"c");
    let client = db.client().await;
    let audit: i64 = common::scalar(&client, "SELECT count(*) FROM crondeck.audit", &[]).await;
    assert_eq!(
        audit, 5,
        "create, pause, resume, set-priority, run, and nothing deleted"
    );
    let reason: String = common::scalar(
        &client,
        "SELECT reason FROM crondeck.audit WHERE action = 'pause'",
        &[],
    )
    .await;
    assert_eq!(reason, "'); TRUNCATE crondeck.runs; --");
}

const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}evil\u{202E}gnp.exe\u{200B}\r";

fn assert_inert(output: &[u8], what: &str) {
    let shown = String::from_utf8_lossy(output);
    assert!(
        !shown.contains('\u{1b}'),
        "{what}: an escape sequence reached the terminal: {shown:?}"
    );
    assert!(
        !shown.contains('\u{202E}'),
        "{what}: a bidi override reached the terminal"
    );
    assert!(
        !shown.contains('\u{200B}'),
        "{what}: a zero-width space reached the terminal"
    );
    assert!(
        !shown.contains('\r'),
        "{what}: a carriage return reached the terminal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_and_bidi_tricks_in_jobs_and_output_render_inertly() {
    let db = TestDb::new().await;
    // A 200,000-character line, made by the job (too long for an argument).
    let long_line = "head -c 200000 /dev/zero | tr '\\0' y; echo";
    let command = format!("printf '{}'; printf '\\033[31mred\\342\\200\\256x\\r'; {long_line}; printf 'err\\033]0;t\\007' >&2; exit 2",
        HOSTILE.replace('\u{1b}', "\\033").replace('\u{7}', "\\007").replace('\u{202E}', "\\342\\200\\256").replace('\u{200B}', "\\342\\200\\213").replace('\r', "\\r"));
    let out = db.run(&[
        "add",
        "tricky",
        "--manual",
        "--shell",
        &command,
        "--description",
        HOSTILE,
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    let node = NodeHandle::start(
        db.spec.clone(),
        NodeConfig {
            allow_shell: true,
            ..NodeConfig::default()
        },
    )
    .await
    .unwrap();
    let out = db.run(&["run", "tricky", "--wait", "--wait-timeout", "30s"]);
    assert_eq!(out.status.code(), Some(6), "{:?}", text(&out));
    assert_inert(&out.stdout, "run --wait stdout");
    assert_inert(&out.stderr, "run --wait stderr");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("\\e[31mred"),
        "escapes are shown, not hidden: {}",
        &shown[..shown.len().min(500)]
    );
    let client = db.client().await;
    wait_for(Duration::from_secs(5), "the run to be recorded", || async {
        let n: i64 = common::scalar(
            &client,
            "SELECT count(*) FROM crondeck.runs WHERE status <> 'running'",
            &[],
        )
        .await;
        (n > 0).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    for args in [
        vec!["list"],
        vec!["show", "tricky"],
        vec!["history", "tricky"],
        vec!["audit"],
    ] {
        let out = db.run(&args);
        assert!(out.status.success(), "{args:?}");
        assert_inert(&out.stdout, &format!("{args:?}"));
    }
    // A name cannot carry control characters at all.
    let out = db.run(&["add", "bad\u{1b}[31mname", "--manual", "--sql", "SELECT 1"]);
    assert_eq!(out.status.code(), Some(3));
    assert_inert(&out.stderr, "the refusal");
}
