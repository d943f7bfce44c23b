//! Odoo mode (issue 13) against schema fixtures of Odoo 16-19 and a
//! simulated Odoo cron worker that follows Odoo's loop literally
//! (tests/common/odoo_worker.rs). Real PostgreSQL, the real binary.

mod common;
#[path = "common/odoo_worker.rs"]
mod odoo_worker;

use std::time::Duration;

use common::{scalar, text, wait_for};
use crondeck::health::State;
use crondeck::odoo::{self, model, OdooVersion};
use odoo_worker::{cron, Behavior, Event, OdooDb, Version};

const LIMIT: Duration = Duration::from_secs(30);
/// A poll far longer than any wait below: only NOTIFY can wake the worker in time.
const SLOW_POLL: Duration = Duration::from_secs(120);

#[tokio::test]
async fn versions_are_detected_from_schema_and_base_version() {
    for (v, expect) in [
        (Version::V16, OdooVersion::V16),
        (Version::V17, OdooVersion::V17),
        (Version::V18, OdooVersion::V18),
        (Version::V19, OdooVersion::V19),
    ] {
        let db = OdooDb::new(v).await;
        let o = odoo::connect(&db.db.spec).await.expect("connect");
        assert_eq!(o.version, expect);
        let list = db.list();
        assert_eq!(list["odoo_version"], format!("{}.0", expect.major()));
        // Names: jsonb in 16 (en_US), text later; the same either way.
        assert_eq!(cron(&list, 3)["name"], "Sales: Send quotation reminders");
        // Core crons run as the inactive __system__: never dropped by the join.
        assert_eq!(cron(&list, 1)["user"], "__system__");
        assert_eq!(list["crons"].as_array().unwrap().len(), 4);
        if expect.has_numbercall() {
            assert_eq!(cron(&list, 1)["numbercall"], -1);
            assert!(cron(&list, 3)["failure_count"].is_null());
        } else {
            assert!(cron(&list, 1)["numbercall"].is_null());
            assert_eq!(cron(&list, 3)["failure_count"], 3);
            assert_eq!(cron(&list, 3)["state"], "failing");
        }
        assert_eq!(cron(&list, 4)["state"], "paused");
    }
}

#[tokio::test]
async fn eighteen_and_nineteen_differ_only_by_base_version() {
    let db = OdooDb::new(Version::V18).await;
    db.client()
        .await
        .batch_execute(
            "UPDATE ir_module_module SET latest_version = '19.0.1.3' WHERE name = 'base'",
        )
        .await
        .unwrap();
    let o = odoo::connect(&db.db.spec).await.unwrap();
    assert_eq!(o.version, OdooVersion::V19);
}

#[tokio::test]
async fn an_odoo_database_never_gets_crondecks_schema() {
    let db = OdooDb::new(Version::V17).await;
    for args in [
        vec!["migrate"],
        vec!["list"],
        vec!["add", "x", "--every", "1h", "--sql", "select 1"],
    ] {
        let out = db.db.run(&args);
        let (_, err) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {err}");
        assert!(
            err.contains("Odoo database") && err.contains("--odoo"),
            "{err}"
        );
    }
    // And --odoo on a database that is not Odoo's says so (exit 3).
    let plain = common::TestDb::new().await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
        .arg("--odoo")
        .arg(plain.url())
        .arg("list")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    assert!(
        text(&out).1.contains("not an Odoo database"),
        "{}",
        text(&out).1
    );
    let client = db.client().await;
    let schema: bool = scalar(
        &client,
        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'crondeck')",
        &[],
    )
    .await;
    assert!(!schema, "crondeck's schema was created in an Odoo database");
}

#[tokio::test]
async fn edits_are_written_like_the_orm_and_audited_in_ir_logging() {
    let db = OdooDb::new(Version::V18).await;
    let out = db.run(&["set", "2", "--every", "2 hours", "--priority", "1"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = db.run(&[
        "--odoo-login",
        "admin",
        "pause",
        "Mail: Email Queue Manager",
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT interval_number, interval_type, priority, active, write_uid FROM ir_cron WHERE id = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 2);
    assert_eq!(row.get::<_, String>(1), "hours");
    assert_eq!(row.get::<_, i32>(2), 1);
    assert!(!row.get::<_, bool>(3));
    assert_eq!(
        row.get::<_, i32>(4),
        2,
        "write_uid is the --odoo-login user"
    );
    let audit: Vec<String> = client
        .query(
            "SELECT message FROM ir_logging WHERE name = 'crondeck.odoo' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(
        audit[0].contains("interval every 1 hour → every 2 hours"),
        "{audit:?}"
    );
    assert!(audit[1].contains("priority 3 → 1"), "{audit:?}");
    assert!(
        audit[2].contains("active true → false") && audit[2].contains('@'),
        "{audit:?}"
    );
    // Odoo's check: the number must be > 0; and no 'never' before 19.
    for every in ["0 hours", "never", "3 fortnights"] {
        let out = db.run(&["set", "2", "--every", every]);
        assert_eq!(out.status.code(), Some(3), "{every}: {}", text(&out).1);
    }
    // 18+: a run-now of a paused cron would be ignored by Odoo: say so.
    let out = db.run(&["run", "2"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains("paused"), "{}", text(&out).1);
    let triggers: i64 = scalar(&client, "SELECT count(*) FROM ir_cron_trigger", &[]).await;
    assert_eq!(triggers, 0);
    // Run now: one trigger, call_at in whole seconds UTC (as the ORM writes),
    // even when the sessions' TimeZone is far from UTC.
    client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET timezone = 'Pacific/Kiritimati'",
            db.db.name
        ))
        .await
        .unwrap();
    let out = db.run(&["run", "3"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let whole: i64 = scalar(
        &client,
        "SELECT count(*) FROM ir_cron_trigger WHERE cron_id = 3 \
           AND call_at = date_trunc('second', call_at) \
           AND call_at BETWEEN (now() AT TIME ZONE 'UTC') - interval '1 minute' \
                           AND (now() AT TIME ZONE 'UTC') + interval '1 second'",
        &[],
    )
    .await;
    assert_eq!(whole, 1);
    // Not found is its own exit code.
    assert_eq!(db.run(&["show", "nope"]).status.code(), Some(4));
}

/// `set` with several options is one transaction: when the database refuses
/// the second change, the first is not left applied, and nothing is audited.
#[tokio::test]
async fn a_set_refused_halfway_changes_nothing() {
    let db = OdooDb::new(Version::V18).await;
    let client = db.client().await;
    // Stands for any refusal the database may make of the later change.
    client
        .batch_execute(
            "CREATE FUNCTION refuse_priority() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN RAISE EXCEPTION 'priority is frozen here'; END $$;
             CREATE TRIGGER refuse_priority BEFORE UPDATE OF priority ON ir_cron
                 FOR EACH ROW EXECUTE FUNCTION refuse_priority();",
        )
        .await
        .unwrap();
    let out = db.run(&["set", "2", "--every", "3 days", "--priority", "7"]);
    assert!(!out.status.success(), "{:?}", text(&out));
    assert!(
        text(&out).1.contains("priority is frozen"),
        "{:?}",
        text(&out)
    );
    let row = client
        .query_one(
            "SELECT interval_number, interval_type, priority FROM ir_cron WHERE id = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, String>(1),
            row.get::<_, i32>(2)
        ),
        (1, "hours".to_string(), 3),
        "the interval was changed although the set failed"
    );
    let audited: i64 = scalar(
        &client,
        "SELECT count(*) FROM ir_logging WHERE name = 'crondeck.odoo'",
        &[],
    )
    .await;
    assert_eq!(audited, 0);
}

#[tokio::test]
async fn run_now_through_notify_starts_the_cron_on_the_workers_next_wakeup() {
    let db = OdooDb::new(Version::V18).await;
    let worker = db.worker(SLOW_POLL).await;
    // The worker's first pass (nothing due) is done before we trigger.
    wait_for(LIMIT, "the first pass", || async {
        worker
            .control
            .events()
            .iter()
            .any(|e| matches!(e, Event::Ready(_)))
            .then_some(())
    })
    .await;
    let out = db.run(&["run", "2"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("notified"), "{stdout}");
    let client = db.client().await;
    wait_for(LIMIT, "cron 2 to run", || async {
        let ev = worker.control.events();
        let woke = ev.iter().position(|e| *e == Event::Woke(true));
        let ran = ev
            .iter()
            .position(|e| *e == Event::Finished(2, "fully done"));
        match (woke, ran) {
            (Some(w), Some(r)) if w < r => Some(()),
            _ => None,
        }
    })
    .await;
    // The consumed trigger is deleted; lastcall and nextcall moved.
    let after = db.list();
    let c = cron(&after, 2);
    assert!(!c["queued"].as_bool().unwrap());
    let left: i64 = scalar(&client, "SELECT count(*) FROM ir_cron_trigger", &[]).await;
    assert_eq!(left, 0, "the worker deletes consumed triggers");
}

#[tokio::test]
async fn running_state_and_progress_are_read_without_disturbing_the_worker() {
    let db = OdooDb::new(Version::V18).await;
    let worker = db.worker(Duration::from_millis(200)).await;
    worker.control.set(
        2,
        Behavior::Progress {
            total: 40,
            per_batch: 20,
            step: 2,
            pause: Duration::from_millis(150),
        },
    );
    assert!(db.run(&["run", "2"]).status.success());
    // Running, with a progress that moves (summed over the batches).
    let first: i64 = wait_for(LIMIT, "cron 2 running with progress", || async {
        let c = cron(&db.list(), 2);
        let done = c["running"]["done"].as_i64()?;
        (c["state"] == "running" && done > 0).then_some(done)
    })
    .await;
    let later: i64 = wait_for(LIMIT, "progress to move", || async {
        let c = cron(&db.list(), 2);
        let done = c["running"]["done"].as_i64()?;
        (done > first).then_some(done)
    })
    .await;
    assert!(later > first);
    // An edit while it runs is refused, as Odoo's write() does.
    let out = db.run(&["set", "2", "--priority", "9"]);
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("running"), "{err}");
    until_event(&worker, Event::Finished(2, "fully done"), "the run to end").await;
    let c = cron(&db.list(), 2);
    assert!(c["running"].is_null());
    // Now the edit goes through.
    assert!(db.run(&["set", "2", "--priority", "9"]).status.success());
    // history (18+): one progress row per batch; their done add up to the run.
    let out = db.run(&["history", "2", "--json"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let done: i64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["done"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(done, 40, "{rows}");
    assert!(
        rows.as_array().unwrap().len() >= 2,
        "one row per batch: {rows}"
    );
    assert!(!worker
        .control
        .events()
        .iter()
        .any(|e| matches!(e, Event::Skipped(_))));
}

/// Make cron 2 due again and again (triggers), while `reader` reads; return
/// (acquired, skipped) counts of the worker.
async fn hammer(db: &OdooDb, reader: impl Fn() -> tokio::task::JoinHandle<()>) -> (usize, usize) {
    let worker = db.worker(Duration::from_millis(20)).await;
    worker
        .control
        .set(2, Behavior::Sleep(Duration::from_millis(5)));
    let client = db.client().await;
    let readers: Vec<_> = (0..3).map(|_| reader()).collect();
    for _ in 0..40 {
        client
            .execute(
                "INSERT INTO ir_cron_trigger (cron_id, call_at) \
                 VALUES (2, date_trunc('second', now() AT TIME ZONE 'UTC'))",
                &[],
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for r in readers {
        r.abort();
    }
    let ev = worker.control.events();
    let acquired = ev.iter().filter(|e| **e == Event::Acquired(2)).count();
    let skipped = ev.iter().filter(|e| **e == Event::Skipped(2)).count();
    (acquired, skipped)
}

#[tokio::test]
async fn the_consoles_reads_never_make_the_worker_skip_a_due_cron() {
    let db = OdooDb::new(Version::V18).await;
    let spec = db.db.spec.clone();
    let (acquired, skipped) = hammer(&db, || {
        let spec = spec.clone();
        tokio::spawn(async move {
            let o = odoo::connect(&spec).await.unwrap();
            loop {
                let _ = model::overview(&o).await.unwrap();
            }
        })
    })
    .await;
    assert!(
        acquired >= 5,
        "the worker ran the cron only {acquired} times"
    );
    assert_eq!(
        skipped, 0,
        "the console's reads made the worker skip the cron"
    );

    // The harness can see a skip: a reader that takes a row lock (FOR SHARE,
    // as a naive "is it running?" probe would) does make the worker skip.
    let db = OdooDb::new(Version::V18).await;
    let spec = db.db.spec.clone();
    let (_, skipped) = hammer(&db, || {
        let spec = spec.clone();
        tokio::spawn(async move {
            let mut c = spec.connect().await.unwrap();
            loop {
                let tx = c.transaction().await.unwrap();
                let _ = tx.query("SELECT id FROM ir_cron FOR SHARE", &[]).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
                let _ = tx.commit().await;
            }
        })
    })
    .await;
    assert!(
        skipped > 0,
        "a row-locking reader should make the worker skip"
    );
}

#[tokio::test]
async fn sixteen_numbercall_runs_out_and_deactivates() {
    let db = OdooDb::new(Version::V16).await;
    let client = db.client().await;
    client
        .batch_execute("UPDATE ir_cron SET numbercall = 1 WHERE id = 2")
        .await
        .unwrap();
    let worker = db.worker(Duration::from_millis(200)).await;
    let out = db.run(&["run", "#2"]);
    assert!(out.status.success(), "{}", text(&out).1);
    until_event(&worker, Event::Finished(2, "done"), "cron 2 to run").await;
    let c = cron(&db.list(), 2);
    assert_eq!(c["numbercall"], 0);
    assert_eq!(c["active"], false);
    // 16/17 keep no history.
    let out = db.run(&["history", "2"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains("not available"), "{}", text(&out).1);
}

#[tokio::test]
async fn seventeen_has_no_progress_table_and_still_reads_running() {
    let db = OdooDb::new(Version::V17).await;
    let worker = db.worker(Duration::from_millis(200)).await;
    worker
        .control
        .set(1, Behavior::Sleep(Duration::from_secs(3)));
    assert!(db.run(&["run", "1"]).status.success());
    wait_for(LIMIT, "cron 1 running", || async {
        let c = cron(&db.list(), 1);
        (c["state"] == "running").then_some(())
    })
    .await;
    let c = cron(&db.list(), 1);
    assert!(c["running"]["done"].is_null(), "no progress before 18");
    let o = odoo::connect(&db.db.spec).await.unwrap();
    let ov = model::overview(&o).await.unwrap();
    assert!(matches!(ov.worker, model::WorkerSign::Alive(_)));
}

#[tokio::test]
async fn nineteen_accepts_never_and_the_worker_schedules_it_in_2099() {
    let db = OdooDb::new(Version::V19).await;
    let worker = db.worker(Duration::from_millis(200)).await;
    let out = db.run(&["set", "3", "--every", "never", "--next", "now"]);
    assert!(out.status.success(), "{}", text(&out).1);
    until_event(&worker, Event::Finished(3, "fully done"), "cron 3 to run").await;
    let c = cron(&db.list(), 3);
    assert_eq!(c["interval"], "never");
    assert!(c["nextcall"].as_str().unwrap().starts_with("2099"), "{c}");
    assert_eq!(c["failure_count"], 0, "a success resets the failures");
}

#[tokio::test]
async fn check_reports_failing_overdue_and_a_dead_worker() {
    let db = OdooDb::new(Version::V18).await;
    // Fixture: cron 3 is failing (WARNING).
    let out = db.run(&["check"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).0);
    assert!(text(&out).0.contains("failing"));
    // Cron 2 (hourly) last ran 3 hours ago and is due for 2 hours, no worker.
    db.client()
        .await
        .batch_execute(
            "UPDATE ir_cron SET lastcall = (now() AT TIME ZONE 'UTC') - interval '3 hours', \
             nextcall = (now() AT TIME ZONE 'UTC') - interval '2 hours' WHERE id = 2",
        )
        .await
        .unwrap();
    let out = db.run(&["check"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("overdue: #2") && stdout.contains("no Odoo cron worker"),
        "{stdout}"
    );
    let o = odoo::connect(&db.db.spec).await.unwrap();
    let ov = model::overview(&o).await.unwrap();
    let c = ov.crons.iter().find(|c| c.id == 2).unwrap();
    assert_eq!(model::state(c, ov.now), State::Overdue);
    // A module waiting for upgrade: Odoo skips the database; the check says so.
    db.client()
        .await
        .batch_execute("UPDATE ir_module_module SET state = 'to upgrade' WHERE name = 'sale'")
        .await
        .unwrap();
    let out = db.run(&["check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["worker"]["state"], "skipped", "{v}");
}

#[tokio::test]
async fn odoo_url_in_the_config_file_selects_odoo_mode() {
    let db = OdooDb::new(Version::V19).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    // key=value with single quotes: a TOML basic string holds it as is.
    let url = db.db.url();
    std::fs::write(
        &config,
        format!("odoo_url = \"{url}\"\nodoo_login = \"admin\"\n"),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
        .arg("--config")
        .arg(&config)
        .args(["list", "--json"])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["odoo_version"], "19.0");
}

#[tokio::test]
async fn an_idle_worker_is_seen_by_its_listening_session() {
    let db = OdooDb::new(Version::V18).await;
    // (Other tests' workers share the server's `postgres` database, as
    // Odoo's workers serve every database: only "after" is deterministic.
    // Its listener's last statement is the COMMIT after LISTEN, as in Odoo.)
    let o = odoo::connect(&db.db.spec).await.unwrap();
    let _worker = db.worker(SLOW_POLL).await;
    let after = model::overview(&o).await.unwrap();
    assert!(
        matches!(after.worker, model::WorkerSign::Alive(_)),
        "{:?}",
        after.worker
    );
}

/// The README's privileges are enough, and without CONNECT on `postgres`
/// run now says the workers will pick it up at their poll (and they do).
#[tokio::test]
async fn a_role_with_the_documented_privileges_works_and_notify_falls_back_to_the_poll() {
    let db = OdooDb::new(Version::V18).await;
    let admin = db.client().await;
    let role = format!("odoo_op_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             GRANT SELECT ON ir_cron, ir_cron_trigger, ir_cron_progress, ir_act_server, ir_model, \
                             res_users, ir_module_module TO {role}; \
             GRANT UPDATE ON ir_cron TO {role}; \
             GRANT INSERT ON ir_cron_trigger, ir_logging TO {role}; \
             GRANT USAGE ON SEQUENCE ir_cron_trigger_id_seq, ir_logging_id_seq TO {role}; \
             REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;"
        ))
        .await
        .unwrap();
    let me = db.db.spec.config().get_user().unwrap().to_owned();
    let url = db
        .db
        .url()
        .replace(&format!("user='{me}'"), &format!("user='{role}'"));
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_crondeck"))
            .arg("--odoo")
            .arg(&url)
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let worker = db.worker(Duration::from_secs(1)).await;
    worker
        .control
        .set(3, Behavior::Sleep(Duration::from_secs(3)));
    let out = run(&["run", "3"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("next poll"), "{stdout}");
    // The poll picks it up; the restricted role still sees it running.
    wait_for(LIMIT, "cron 3 running, seen by the role", || async {
        let out = run(&["list", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (cron(&v, 3)["state"] == "running").then_some(())
    })
    .await;
    let out = run(&["pause", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    assert!(text(&out).1.contains("running"));
    let out = run(&["resume", "4"]);
    assert!(out.status.success(), "{}", text(&out).1);
    admin
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE postgres TO PUBLIC; \
             REASSIGN OWNED BY {role} TO CURRENT_USER; DROP OWNED BY {role}"
        ))
        .await
        .unwrap();
    let audited: i64 = scalar(
        &admin,
        "SELECT count(*) FROM ir_logging WHERE name = 'crondeck.odoo'",
        &[],
    )
    .await;
    assert_eq!(audited, 2, "run now and resume");
}

#[tokio::test]
async fn failures_count_up_and_lastcall_means_last_attempted() {
    // 18: a failed run counts (failure_count, first_failure_date), writes
    // lastcall anyway, and a success resets the count.
    let db = OdooDb::new(Version::V18).await;
    let worker = db.worker(Duration::from_millis(200)).await;
    worker.control.set(2, Behavior::Fail);
    let before = cron(&db.list(), 2);
    assert!(db.run(&["run", "2"]).status.success());
    until_event(&worker, Event::Finished(2, "failed"), "cron 2 to fail").await;
    let after = cron(&db.list(), 2);
    assert_eq!(after["failure_count"], 1);
    assert_eq!(after["state"], "failing");
    assert!(!after["first_failure_date"].is_null());
    assert_ne!(
        after["lastcall"], before["lastcall"],
        "lastcall is written on failure too"
    );
    worker.control.set(2, Behavior::Succeed);
    assert!(db.run(&["run", "2"]).status.success());
    until_event(
        &worker,
        Event::Finished(2, "fully done"),
        "cron 2 to succeed",
    )
    .await;
    let healed = cron(&db.list(), 2);
    assert_eq!(healed["failure_count"], 0);
    assert_eq!(healed["state"], "ok");

    // 16: no failure count at all; the failed run still moves lastcall.
    let db = OdooDb::new(Version::V16).await;
    let worker = db.worker(Duration::from_millis(200)).await;
    worker.control.set(2, Behavior::Fail);
    let before = cron(&db.list(), 2);
    assert!(db.run(&["run", "2"]).status.success());
    until_event(
        &worker,
        Event::Finished(2, "failed"),
        "cron 2 to fail on 16",
    )
    .await;
    let after = cron(&db.list(), 2);
    assert!(after["failure_count"].is_null());
    assert_ne!(after["lastcall"], before["lastcall"]);
}

/// Until the simulated worker reports `event`.
async fn until_event(worker: &odoo_worker::Worker, event: Event, what: &str) {
    wait_for(LIMIT, what, || async {
        worker.control.events().contains(&event).then_some(())
    })
    .await;
}
