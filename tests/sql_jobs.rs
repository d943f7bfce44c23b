//! SQL jobs as a security boundary (issue 11, points 4 and 5), attacked the
//! way a hostile job author would: against a real PostgreSQL server, with a
//! node connected as a real non-superuser scheduler login, and jobs defined
//! by a real admin login.
//!
//! - the statements cannot leave the job's role (RESET ROLE, SET ROLE,
//!   set_config, SET SESSION AUTHORIZATION) to rewrite run history;
//! - they cannot control the transaction (COMMIT mid-job, COMMIT in a DO
//!   block), so a failing job leaves no effect;
//! - nothing they leave at commit (a WITH HOLD cursor, a deferred trigger)
//!   runs with the node's privileges;
//! - a job without run_as runs as crondeck_job, not as the node;
//! - session state (search_path, default_transaction_read_only, advisory
//!   locks) does not leak into the next job or the node's own claims;
//! - run_as must be a role the defining login holds.

mod common;

use std::time::Duration;

use common::{scalar, text, wait_for, TestDb};
use crondeck::db::audit::Actor;
use crondeck::job::{ActionKind, JobSpec};
use crondeck::ops::{self, AddOptions};
use crondeck::schedule::Schedule;
use crondeck::scheduler::{NodeConfig, NodeHandle};
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

/// A database with: a scheduler login (`node`), a role jobs run as (`job`,
/// which the node may become), an admin login holding `job`, a table the
/// job role may write, and a "victim" run whose history a job must not be
/// able to rewrite.
struct Setup {
    db: TestDb,
    client: Client,
    node: String,
    admin: String,
    job_role: String,
    victim_run: i64,
}

impl Setup {
    async fn new() -> Setup {
        let db = TestDb::new().await;
        let client = db.client().await;
        let node = format!("{}_node", db.name);
        let admin = format!("{}_admin", db.name);
        let job_role = format!("{}_job", db.name);
        client
            .batch_execute(&format!(
                "CREATE ROLE {node} LOGIN; GRANT crondeck_scheduler TO {node};
                 CREATE ROLE {job_role} NOLOGIN; GRANT {job_role} TO {node};
                 CREATE ROLE {admin} LOGIN; GRANT crondeck_admin TO {admin};
                 GRANT {job_role} TO {admin};
                 CREATE TABLE public.app (n int);
                 GRANT SELECT, INSERT ON public.app TO {job_role};
                 INSERT INTO crondeck.jobs (name, schedule_kind, action_kind, command)
                 VALUES ('victim', 'manual', 'sql', 'SELECT 1');"
            ))
            .await
            .unwrap();
        let victim_run: i64 = scalar(
            &client,
            "INSERT INTO crondeck.runs (job_id, trigger, scheduled_for, status, started_at,
                 ended_at, error)
             SELECT id, 'manual', now(), 'failed', now(), now(), 'original'
             FROM crondeck.jobs WHERE name = 'victim' RETURNING id",
            &[],
        )
        .await;
        Setup {
            db,
            client,
            node,
            admin,
            job_role,
            victim_run,
        }
    }

    async fn start_node(&self, workers: usize) -> NodeHandle {
        NodeHandle::start(
            self.db.spec_as(&self.node),
            NodeConfig {
                name: "n".into(),
                workers,
                heartbeat: Duration::from_millis(500),
                lease: Duration::from_secs(3),
                shutdown_grace: Duration::from_secs(5),
                ..NodeConfig::default()
            },
        )
        .await
        .expect("a scheduler login starts a node")
    }

    /// Define an SQL job as the admin login.
    async fn add(&self, name: &str, schedule: &str, command: &str, run_as: Option<&str>) -> i64 {
        let mut admin = self.db.spec_as(&self.admin).connect().await.unwrap();
        let mut spec = JobSpec::new(
            name,
            Schedule::parse(schedule).unwrap(),
            ActionKind::Sql,
            command,
        );
        spec.run_as = run_as.map(str::to_string);
        spec.timeout = Some(Duration::from_secs(20));
        ops::add(&mut admin, &Actor::current(), &spec, &AddOptions::default())
            .await
            .unwrap_or_else(|e| panic!("add {name}: {e}"))
            .id
    }

    /// Wait for the first run of `job` to end: (status, sqlstate, error).
    async fn outcome(&self, job: i64) -> (String, Option<String>, Option<String>) {
        wait_for(Duration::from_secs(30), "the job's run to end", || async {
            let row = self
                .client
                .query_opt(
                    "SELECT status, sqlstate, error FROM crondeck.runs
                     WHERE job_id = $1 AND status <> 'running' ORDER BY id LIMIT 1",
                    &[&job],
                )
                .await
                .unwrap()?;
            Some((row.get(0), row.get(1), row.get(2)))
        })
        .await
    }

    /// The victim's history is as it was, and no audit row was forged.
    async fn history_intact(&self, attack: &str) {
        let error: Option<String> = scalar(
            &self.client,
            "SELECT error FROM crondeck.runs WHERE id = $1",
            &[&self.victim_run],
        )
        .await;
        assert_eq!(
            error.as_deref(),
            Some("original"),
            "{attack}: the job rewrote run history"
        );
        let forged: i64 = scalar(
            &self.client,
            "SELECT count(*) FROM crondeck.audit WHERE action = 'forged'",
            &[],
        )
        .await;
        assert_eq!(forged, 0, "{attack}: the job forged an audit row");
    }

    async fn app_rows(&self) -> Vec<i32> {
        self.client
            .query("SELECT n FROM public.app ORDER BY n", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }
}

/// Statements that rewrite the victim's run and forge an audit row; the node's
/// scheduler role may do both, the job's role neither.
fn forge(victim: i64) -> String {
    format!(
        "UPDATE crondeck.runs SET error = 'forged' WHERE id = {victim};
         INSERT INTO crondeck.audit (db_role, job_name, action) VALUES ('ceo', 'victim', 'forged')"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_statements_cannot_leave_the_job_role() {
    let s = Setup::new().await;
    let node = s.start_node(2).await;
    let forge = forge(s.victim_run);
    let attacks = [
        format!("RESET ROLE; {forge}"),
        format!("SET ROLE {}; {forge}", s.node),
        format!("SET ROLE NONE; {forge}"),
        format!("SELECT set_config('role', '{}', true); {forge}", s.node),
        format!("SET SESSION AUTHORIZATION DEFAULT; {forge}"),
        format!("DO $$ BEGIN RESET ROLE; {forge}; END $$"),
        // A function of the job's own that switches role on entry.
        format!(
            "CREATE FUNCTION pg_temp.f() RETURNS int LANGUAGE sql SET role = '{}'
                 AS $f$ {forge}; SELECT 1 $f$;
             SELECT pg_temp.f()",
            s.node
        ),
        // Without any trick: the job role's own privileges are not enough.
        forge.clone(),
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let job = s
            .add(
                &format!("escape-{i}"),
                "every 1h",
                attack,
                Some(&s.job_role),
            )
            .await;
        let (status, sqlstate, error) = s.outcome(job).await;
        s.history_intact(attack).await;
        assert_eq!(status, "failed", "{attack}: {error:?}");
        assert_eq!(
            sqlstate.as_deref(),
            Some(SqlState::INSUFFICIENT_PRIVILEGE.code()),
            "{attack}: {error:?}"
        );
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_a_job_leaves_for_commit_runs_with_the_node_privileges() {
    let s = Setup::new().await;
    let node = s.start_node(2).await;
    let forge = forge(s.victim_run);
    // A WITH HOLD cursor is computed at commit, by whoever is then the
    // current role; so is a deferred trigger (this one defers itself again
    // when fired early).
    let cursor = format!(
        "CREATE FUNCTION pg_temp.forge() RETURNS int LANGUAGE sql AS $f$ {forge}; SELECT 1 $f$;
         DECLARE c CURSOR WITH HOLD FOR SELECT pg_temp.forge()"
    );
    let trigger = format!(
        "CREATE TEMP TABLE t (n int);
         CREATE FUNCTION pg_temp.forge() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             IF NEW.n < 3 THEN
                 SET CONSTRAINTS ALL DEFERRED;
                 INSERT INTO t VALUES (NEW.n + 1);
             ELSE
                 {forge};
             END IF;
             RETURN NULL;
         END $f$;
         CREATE CONSTRAINT TRIGGER forge AFTER INSERT ON t DEFERRABLE INITIALLY DEFERRED
             FOR EACH ROW EXECUTE FUNCTION pg_temp.forge();
         INSERT INTO t VALUES (1)"
    );
    for (name, attack) in [("cursor", cursor), ("deferred", trigger)] {
        let job = s.add(name, "every 1h", &attack, Some(&s.job_role)).await;
        let (status, sqlstate, error) = s.outcome(job).await;
        s.history_intact(&attack).await;
        // The cursor is closed unread: the job succeeds having done nothing.
        // The trigger fires as the job's role and is refused.
        if name == "deferred" {
            assert_eq!(status, "failed", "{error:?}");
            assert_eq!(
                sqlstate.as_deref(),
                Some(SqlState::INSUFFICIENT_PRIVILEGE.code())
            );
        }
    }
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_statements_cannot_control_the_transaction() {
    let s = Setup::new().await;
    let node = s.start_node(2).await;
    let attacks = [
        "INSERT INTO public.app VALUES (1); COMMIT; SELECT 1/0",
        "INSERT INTO public.app VALUES (2); COMMIT; INSERT INTO public.app VALUES (2); ROLLBACK",
        "DO $$ BEGIN INSERT INTO public.app VALUES (3); COMMIT; PERFORM 1/0; END $$",
        "INSERT INTO public.app VALUES (4); SAVEPOINT s; SELECT 1/0",
        "INSERT INTO public.app VALUES (5); PREPARE TRANSACTION 'crondeck-escape'",
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let job = s
            .add(&format!("txn-{i}"), "every 1h", attack, Some(&s.job_role))
            .await;
        let (status, sqlstate, error) = s.outcome(job).await;
        assert_eq!(status, "failed", "{attack}: {error:?}");
        assert!(
            s.app_rows().await.is_empty(),
            "{attack}: part of a failed job committed ({sqlstate:?} {error:?})"
        );
    }
    // A job without transaction control commits as one unit, with its record.
    let job = s
        .add(
            "atomic",
            "every 1h",
            "INSERT INTO public.app VALUES (10); INSERT INTO public.app VALUES (11), (12)",
            Some(&s.job_role),
        )
        .await;
    let (status, _, error) = s.outcome(job).await;
    assert_eq!(status, "succeeded", "{error:?}");
    assert_eq!(s.app_rows().await, [10, 11, 12]);
    let rows: Option<i64> = scalar(
        &s.client,
        "SELECT rows_affected FROM crondeck.runs WHERE job_id = $1",
        &[&job],
    )
    .await;
    assert_eq!(rows, Some(2), "rows affected by the last statement");
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_cannot_lift_its_own_timeout() {
    let s = Setup::new().await;
    let mut admin = s.db.spec_as(&s.admin).connect().await.unwrap();
    let mut spec = JobSpec::new(
        "sleepy",
        Schedule::parse("every 1h").unwrap(),
        ActionKind::Sql,
        "INSERT INTO public.app VALUES (1); SET LOCAL statement_timeout = 0; \
         SET statement_timeout = 0; SELECT pg_sleep(60)",
    );
    spec.run_as = Some(s.job_role.clone());
    spec.timeout = Some(Duration::from_secs(1));
    let job = ops::add(&mut admin, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap()
        .id;
    let node = s.start_node(2).await;
    let (status, sqlstate, error) = s.outcome(job).await;
    assert_eq!(status, "timed_out", "{error:?}");
    assert_eq!(sqlstate.as_deref(), Some(SqlState::QUERY_CANCELED.code()));
    assert!(s.app_rows().await.is_empty());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_without_run_as_runs_as_crondeck_job_not_as_the_node() {
    let s = Setup::new().await;
    let node = s.start_node(2).await;
    let forging = s
        .add("forging", "every 1h", &forge(s.victim_run), None)
        .await;
    let (status, sqlstate, error) = s.outcome(forging).await;
    s.history_intact("a job without run_as").await;
    assert_eq!(status, "failed", "{error:?}");
    assert_eq!(
        sqlstate.as_deref(),
        Some(SqlState::INSUFFICIENT_PRIVILEGE.code())
    );
    assert!(
        error.as_deref().is_some_and(|e| e.contains("crondeck_job")),
        "the error names the role the job ran as: {error:?}"
    );
    s.client
        .batch_execute("GRANT INSERT ON public.app TO crondeck_job")
        .await
        .unwrap();
    let who = s
        .add(
            "who",
            "every 1h",
            "INSERT INTO public.app SELECT 1 WHERE current_user = 'crondeck_job'",
            None,
        )
        .await;
    let (status, _, error) = s.outcome(who).await;
    assert_eq!(status, "succeeded", "{error:?}");
    assert_eq!(s.app_rows().await, [1]);
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_set_by_a_job_does_not_outlive_it() {
    let s = Setup::new().await;
    // One worker: every SQL job of this node runs on the same session.
    let node = s.start_node(1).await;
    let poison = "SET search_path = nowhere; SET default_transaction_read_only = on; \
                  SET lock_timeout = 1; SELECT pg_advisory_lock(4242)";
    let mut admin = s.db.spec_as(&s.admin).connect().await.unwrap();
    let mut spec = JobSpec::new(
        "poison",
        Schedule::parse("every 1s").unwrap(),
        ActionKind::Sql,
        poison,
    );
    spec.run_as = Some(s.job_role.clone());
    spec.numbercall = 3;
    let poison_id = ops::add(&mut admin, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap()
        .id;
    wait_for(
        Duration::from_secs(30),
        "three runs of the poisoning job",
        || async {
            let ended: i64 = scalar(
                &s.client,
                "SELECT count(*) FROM crondeck.runs WHERE job_id = $1 AND status <> 'running'",
                &[&poison_id],
            )
            .await;
            (ended >= 3).then_some(())
        },
    )
    .await;
    let statuses: Vec<String> = s
        .client
        .query(
            "SELECT status FROM crondeck.runs WHERE job_id = $1 ORDER BY id",
            &[&poison_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["succeeded"; 3]);
    // The session-level lock went with the session's reset.
    let free: bool = scalar(&s.client, "SELECT pg_try_advisory_lock(4242)", &[]).await;
    assert!(free, "a job's session-level advisory lock outlived the job");
    // The next job on the same session: default search_path, writable, and
    // claimed by a node whose own bookkeeping still works.
    let heartbeat_before: chrono::DateTime<chrono::Utc> = scalar(
        &s.client,
        "SELECT max(heartbeat_at) FROM crondeck.nodes",
        &[],
    )
    .await;
    let next = s
        .add(
            "next",
            "every 1h",
            "INSERT INTO app SELECT 1 WHERE current_setting('lock_timeout') = '0'",
            Some(&s.job_role),
        )
        .await;
    let (status, _, error) = s.outcome(next).await;
    assert_eq!(status, "succeeded", "{error:?}");
    assert_eq!(s.app_rows().await, [1]);
    wait_for(Duration::from_secs(10), "a later heartbeat", || async {
        let now: chrono::DateTime<chrono::Utc> = scalar(
            &s.client,
            "SELECT max(heartbeat_at) FROM crondeck.nodes",
            &[],
        )
        .await;
        (now > heartbeat_before).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_as_must_be_a_role_the_defining_login_holds() {
    let s = Setup::new().await;
    let secret = format!("{}_secret", s.db.name);
    s.client
        .batch_execute(&format!(
            "CREATE ROLE {secret} NOLOGIN; GRANT {secret} TO {};",
            s.node
        ))
        .await
        .unwrap();
    // Through ops (add, as the CLI and apply do).
    let mut admin = s.db.spec_as(&s.admin).connect().await.unwrap();
    let mut spec = JobSpec::new(
        "borrowed",
        Schedule::parse("every 1h").unwrap(),
        ActionKind::Sql,
        "SELECT 1",
    );
    spec.run_as = Some(secret.clone());
    let err = ops::add(&mut admin, &Actor::current(), &spec, &AddOptions::default())
        .await
        .expect_err("an admin cannot name a role they do not hold");
    let message = err.to_string();
    assert!(
        message.contains("not a member") && message.contains(&secret),
        "{message}"
    );
    // Through the CLI: a clear message, nothing written.
    let out = s.db.run_as(
        &s.admin,
        &[
            "add", "borrowed", "--every", "1h", "--sql", "SELECT 1", "--run-as", &secret,
        ],
    );
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("not a member"), "{stderr}");
    // A role that does not exist.
    spec.run_as = Some(format!("{}_nobody", s.db.name));
    let err = ops::add(&mut admin, &Actor::current(), &spec, &AddOptions::default())
        .await
        .expect_err("a missing role");
    assert!(err.to_string().contains("does not exist"), "{err}");
    // Directly in SQL: insert, and update of a job someone else defined.
    let direct = format!(
        "INSERT INTO crondeck.jobs (name, schedule_kind, action_kind, command, run_as)
         VALUES ('direct', 'manual', 'sql', 'SELECT 1', '{secret}')"
    );
    let err = admin.batch_execute(&direct).await.expect_err(&direct);
    assert_eq!(err.code(), Some(&SqlState::CHECK_VIOLATION), "{err}");
    s.client
        .batch_execute(&format!(
            "INSERT INTO crondeck.jobs (name, schedule_kind, action_kind, command, run_as)
             VALUES ('owned', 'manual', 'sql', 'SELECT 1', '{secret}')"
        ))
        .await
        .unwrap();
    for change in [
        "UPDATE crondeck.jobs SET command = 'DELETE FROM secrets' WHERE name = 'owned'".to_string(),
        format!("UPDATE crondeck.jobs SET run_as = '{secret}' WHERE name = 'victim'"),
    ] {
        let err = admin.batch_execute(&change).await.expect_err(&change);
        assert_eq!(
            err.code(),
            Some(&SqlState::CHECK_VIOLATION),
            "{change}: {err}"
        );
    }
    // What the admin may do: other fields of that job, and roles they hold.
    admin
        .batch_execute("UPDATE crondeck.jobs SET description = 'x' WHERE name = 'owned'")
        .await
        .unwrap();
    spec.name = "allowed".into();
    spec.run_as = Some(s.job_role.clone());
    ops::add(&mut admin, &Actor::current(), &spec, &AddOptions::default())
        .await
        .unwrap();
    let stored: Vec<String> = s
        .client
        .query("SELECT name FROM crondeck.jobs ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, ["allowed", "owned", "victim"]);
}

/// The wrapper `f`: (SECURITY DEFINER, owner, runs the statements).
async fn wrapper_state(client: &Client, f: &str) -> Option<(bool, String, bool)> {
    let row = client
        .query_opt(
            "SELECT p.prosecdef, pg_get_userbyid(p.proowner)::text,
                    p.prosrc LIKE '%EXECUTE statements%'
             FROM pg_proc p WHERE p.oid = to_regprocedure($1)",
            &[&format!("{f}(text)")],
        )
        .await
        .unwrap();
    row.map(|r| (r.get(0), r.get(1), r.get(2)))
}

/// The wrapper a role's jobs run in is made once and kept (issue 15): no
/// catalog write per run, and so no `TEMPORARY` needed by the job's role;
/// the role holds no right on the wrappers' schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_role_needs_no_temporary_and_its_wrapper_is_made_once() {
    let s = Setup::new().await;
    // A hardened database: TEMPORARY is not granted to PUBLIC.
    s.client
        .batch_execute(&format!(
            "REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC",
            s.db.name
        ))
        .await
        .unwrap();
    let node = s.start_node(2).await;
    for n in 1..=3 {
        let job = s
            .add(
                &format!("insert-{n}"),
                "every 1h",
                &format!("INSERT INTO public.app VALUES ({n})"),
                Some(&s.job_role),
            )
            .await;
        let (status, _, error) = s.outcome(job).await;
        assert_eq!(status, "succeeded", "{error:?}");
    }
    let plain = s.add("plain", "every 1h", "SELECT 1", None).await;
    let (status, _, error) = s.outcome(plain).await;
    assert_eq!(status, "succeeded", "{error:?}");
    // A role whose name needs quoting (capitals, a space, a quote).
    let odd = format!("{} Odd \"Role\"", s.db.name.to_uppercase());
    let quoted = format!("\"{}\"", odd.replace('"', "\"\""));
    s.client
        .batch_execute(&format!(
            "CREATE ROLE {quoted} NOLOGIN; GRANT {quoted} TO {node}, {admin};
             GRANT INSERT ON public.app TO {quoted};",
            node = s.node,
            admin = s.admin
        ))
        .await
        .unwrap();
    let odd_job = s
        .add(
            "odd",
            "every 1h",
            "INSERT INTO public.app VALUES (4)",
            Some(&odd),
        )
        .await;
    let (status, _, error) = s.outcome(odd_job).await;
    assert_eq!(status, "succeeded", "{error:?}");
    assert_eq!(s.app_rows().await, vec![1, 2, 3, 4]);
    let wrappers: i64 = scalar(
        &s.client,
        "SELECT count(*) FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
         WHERE p.pronamespace = 'crondeck_exec'::regnamespace AND p.prosecdef
           AND r.rolname = ANY ($1)",
        &[&vec![
            s.job_role.clone(),
            "crondeck_job".to_string(),
            odd.clone(),
        ]],
    )
    .await;
    assert_eq!(wrappers, 3, "one wrapper per role, not one per run");
    for privilege in ["USAGE", "CREATE"] {
        let held: bool = scalar(
            &s.client,
            "SELECT has_schema_privilege($1, 'crondeck_exec', $2)",
            &[&s.job_role, &privilege],
        )
        .await;
        assert!(
            !held,
            "the job's role holds {privilege} on the wrappers' schema"
        );
    }
    node.shutdown().await.unwrap();
}

/// A job cannot change the function its role's jobs run in: not its body,
/// not SECURITY INVOKER (which would run the next job's statements as the
/// node), not its grants. Dropped with DROP OWNED, it is made again; given
/// to another role with REASSIGN OWNED, it runs nothing, as that role or
/// any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cannot_tamper_with_its_wrapper() {
    let s = Setup::new().await;
    let node = s.start_node(2).await;
    let first = s
        .add(
            "first",
            "every 1h",
            "INSERT INTO public.app VALUES (1)",
            Some(&s.job_role),
        )
        .await;
    assert_eq!(s.outcome(first).await.0, "succeeded");
    let oid: i64 = scalar(
        &s.client,
        "SELECT oid::int8 FROM pg_roles WHERE rolname = $1",
        &[&s.job_role],
    )
    .await;
    let f = format!("crondeck_exec.job_{oid}");
    let attacks = [
        format!(
            "CREATE OR REPLACE FUNCTION {f}(statements text) RETURNS bigint \
             LANGUAGE sql SECURITY INVOKER AS 'SELECT 0::bigint'"
        ),
        format!("ALTER FUNCTION {f}(text) SECURITY INVOKER"),
        format!("GRANT EXECUTE ON FUNCTION {f}(text) TO PUBLIC"),
        format!("COMMENT ON FUNCTION {f}(text) IS 'mine'"),
        format!("DROP FUNCTION {f}(text)"),
    ];
    for (i, attack) in attacks.iter().enumerate() {
        let job = s
            .add(
                &format!("attack-{i}"),
                "every 1h",
                attack,
                Some(&s.job_role),
            )
            .await;
        let (status, sqlstate, error) = s.outcome(job).await;
        assert_eq!(status, "failed", "{attack}");
        assert_eq!(
            sqlstate.as_deref(),
            Some(SqlState::INSUFFICIENT_PRIVILEGE.code()),
            "{attack}: {error:?}"
        );
    }
    assert_eq!(
        wrapper_state(&s.client, &f).await,
        Some((true, s.job_role.clone(), true)),
        "the wrapper is as it was made"
    );

    // DROP OWNED needs no name: the wrapper goes, and is made again.
    let dropper = s
        .add(
            "drop-owned",
            "every 1h",
            "DROP OWNED BY CURRENT_USER",
            Some(&s.job_role),
        )
        .await;
    s.outcome(dropper).await;
    let mut made_again = false;
    for n in 10..13 {
        let job = s
            .add(
                &format!("after-drop-{n}"),
                "every 1h",
                &format!("INSERT INTO public.app VALUES ({n})"),
                Some(&s.job_role),
            )
            .await;
        if s.outcome(job).await.0 == "succeeded" {
            made_again = true;
            break;
        }
    }
    assert!(made_again, "no run succeeded after the wrapper was dropped");
    assert_eq!(
        wrapper_state(&s.client, &f).await,
        Some((true, s.job_role.clone(), true))
    );

    // REASSIGN OWNED to a role the job's role is a member of, so that the
    // wrapper would run as that role: PostgreSQL refuses it (the new owner
    // has no CREATE on the schema either).
    let other = format!("{}_other", s.db.name);
    s.client
        .batch_execute(&format!(
            "CREATE ROLE {other} NOLOGIN; GRANT {other} TO {job_role};",
            job_role = s.job_role
        ))
        .await
        .unwrap();
    let giver = s
        .add(
            "reassign",
            "every 1h",
            &format!("REASSIGN OWNED BY CURRENT_USER TO {other}"),
            Some(&s.job_role),
        )
        .await;
    let (status, sqlstate, error) = s.outcome(giver).await;
    assert_eq!(status, "failed", "{error:?}");
    assert_eq!(
        sqlstate.as_deref(),
        Some(SqlState::INSUFFICIENT_PRIVILEGE.code()),
        "{error:?}"
    );
    assert_eq!(
        wrapper_state(&s.client, &f).await,
        Some((true, s.job_role.clone(), true))
    );
    // Given away all the same (by a superuser): it runs nothing, as that
    // role or any other; the node's runs through it fail.
    s.client
        .batch_execute(&format!("ALTER FUNCTION {f}(text) OWNER TO {other}"))
        .await
        .unwrap();
    let before = s.app_rows().await;
    let mut refused = 0;
    for n in 20..23 {
        let job = s
            .add(
                &format!("after-reassign-{n}"),
                "every 1h",
                &format!("INSERT INTO public.app VALUES ({n})"),
                Some(&s.job_role),
            )
            .await;
        let (status, _, error) = s.outcome(job).await;
        if status == "failed" {
            refused += 1;
        }
        assert_ne!(
            status, "succeeded",
            "a job ran through a wrapper owned by another role"
        );
        let _ = error;
    }
    assert_eq!(refused, 3);
    let direct = s
        .client
        .batch_execute(&format!("SELECT {f}('INSERT INTO public.app VALUES (99)')"))
        .await
        .expect_err("the wrapper runs only as the role it was made for");
    assert_eq!(
        direct.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{direct}"
    );
    assert_eq!(s.app_rows().await, before, "nothing ran as the other role");
    node.shutdown().await.unwrap();
}

/// A role with rights on the wrappers' schema could replace its own wrapper
/// (with a SECURITY INVOKER one, say, which would run its next job as the
/// node): no job runs as such a role, from the start or once it is given
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_job_runs_as_a_role_that_could_change_its_wrapper() {
    let s = Setup::new().await;
    let node = s.start_node(2).await;
    let strong = format!("{}_strong", s.db.name);
    s.client
        .batch_execute(&format!(
            "CREATE ROLE {strong} NOLOGIN; GRANT crondeck_scheduler TO {strong};
             GRANT {strong} TO {node}, {admin}; GRANT INSERT ON public.app TO {strong};",
            node = s.node,
            admin = s.admin
        ))
        .await
        .unwrap();
    let job = s
        .add(
            "strong",
            "every 1h",
            "INSERT INTO public.app VALUES (1)",
            Some(&strong),
        )
        .await;
    let (status, _, error) = s.outcome(job).await;
    assert_eq!(status, "failed");
    let error = error.unwrap_or_default();
    assert!(
        error.contains("crondeck_exec") && error.contains(&strong),
        "{error}"
    );

    // A role whose wrapper exists, given the rights afterwards.
    let first = s
        .add(
            "before",
            "every 1h",
            "INSERT INTO public.app VALUES (2)",
            Some(&s.job_role),
        )
        .await;
    assert_eq!(s.outcome(first).await.0, "succeeded");
    s.client
        .batch_execute(&format!("GRANT crondeck_scheduler TO {}", s.job_role))
        .await
        .unwrap();
    let after = s
        .add(
            "after",
            "every 1h",
            "INSERT INTO public.app VALUES (3)",
            Some(&s.job_role),
        )
        .await;
    let (status, _, error) = s.outcome(after).await;
    assert_eq!(status, "failed");
    assert!(error.unwrap_or_default().contains("crondeck_exec"));
    assert_eq!(
        s.app_rows().await,
        vec![2],
        "nothing ran as a role with those rights"
    );
    node.shutdown().await.unwrap();
}
