//! A fixed world: one job in every health state, nodes, runs and audit rows,
//! at 2026-03-02 10:00:00 UTC. Drawing uses `Zone::Utc`, so snapshots do not
//! depend on the machine's clock or time zone.

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use serde_json::json;

use crate::db::audit::AuditRecord;
use crate::db::nodes::NodeRow;
use crate::db::runs::RunRow;
use crate::job::{ActionKind, Job, JobRuntime, JobSpec, Pause};
use crate::schedule::Schedule;
use crate::scheduler::NodeStatus;
use crate::tui::action::{Action, DataEvent, JobsSnapshot};
use crate::tui::app::App;
use crate::tui::format::Zone;
use crate::tui::theme::Theme;
use crate::tui::update::update;
use crate::tui::views;

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

pub fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

pub fn job(id: i64, name: &str, schedule: &str, action: ActionKind, command: &str) -> Job {
    Job {
        id,
        spec: JobSpec::new(name, Schedule::parse(schedule).unwrap(), action, command),
        nextcall: Some(now() + secs(60)),
        active: true,
        pause: None,
        managed_by: None,
        created_at: now() - Duration::days(1),
        updated_at: now() - Duration::days(1),
        runtime: JobRuntime::default(),
        unreadable: None,
    }
}

fn succeeded(job: &mut Job, ago: i64, ms: i64) {
    let rt = &mut job.runtime;
    rt.last_status = Some("succeeded".into());
    rt.last_started_at = Some(now() - secs(ago));
    rt.last_ended_at = Some(now() - secs(ago) + Duration::milliseconds(ms));
    rt.last_success_at = rt.last_ended_at;
    rt.last_duration_ms = Some(ms);
    rt.last_run_id = Some(100 + job.id);
}

/// One job per health state (and a cron, a monthly and a manual job).
pub fn jobs() -> Vec<Job> {
    let mut overdue = job(
        1,
        "billing-export",
        "every 5m",
        ActionKind::Shell,
        "export.sh",
    );
    succeeded(&mut overdue, 20 * 60, 1200);
    overdue.nextcall = Some(now() - secs(15 * 60));

    let mut late = job(
        2,
        "report-hourly",
        "every 1h",
        ActionKind::Sql,
        "SELECT report()",
    );
    succeeded(&mut late, 62 * 60, 800);
    late.nextcall = Some(now() - secs(120));

    let mut failing = job(3, "partner-sync", "every 10s", ActionKind::Shell, "sync.sh");
    failing.nextcall = Some(now() + secs(5));
    failing.runtime.last_success_at = Some(now() - secs(15));
    failing.runtime.last_status = Some("failed".into());
    failing.runtime.last_exit_code = Some(3);
    failing.runtime.last_started_at = Some(now() - secs(5));
    failing.runtime.last_duration_ms = Some(40);
    failing.runtime.failure_streak = 1;
    failing.runtime.failure_streak_since = Some(now() - secs(5));

    let mut sql_failing = job(
        4,
        "invoice-rollup",
        "every 20s",
        ActionKind::Sql,
        "SELECT 1/0",
    );
    sql_failing.nextcall = Some(now() + secs(12));
    sql_failing.runtime.last_success_at = Some(now() - secs(30));
    sql_failing.runtime.last_status = Some("failed".into());
    sql_failing.runtime.last_sqlstate = Some("22012".into());
    sql_failing.runtime.last_error = Some("division by zero".into());
    sql_failing.runtime.last_started_at = Some(now() - secs(8));
    sql_failing.runtime.last_duration_ms = Some(12);
    sql_failing.runtime.failure_streak = 3;

    let mut running = job(
        5,
        "nightly-report",
        "every 40s",
        ActionKind::Shell,
        "report.sh",
    );
    succeeded(&mut running, 52, 25_000);
    running.nextcall = Some(now() + secs(28));
    running.runtime.running_run_id = Some(77);
    running.runtime.running_since = Some(now() - secs(12));
    running.runtime.running_node_name = Some("node-a".into());
    running.runtime.running_node_id = Some("n-a".into());

    let mut ok = job(6, "heartbeat", "every 5s", ActionKind::Sql, "SELECT 1");
    ok.spec.priority = 1;
    ok.spec.tags = vec!["demo".into(), "fast".into()];
    ok.spec.description = "Every five seconds: proves the scheduler is alive.".into();
    succeeded(&mut ok, 2, 8);
    ok.nextcall = Some(now() + secs(3));

    let mut cron = job(
        7,
        "weekly-digest",
        "0 9 * * MON Europe/Paris",
        ActionKind::Sql,
        "SELECT 1",
    );
    cron.nextcall = Some(Utc.with_ymd_and_hms(2026, 3, 9, 8, 0, 0).unwrap());

    let mut monthly = job(
        8,
        "monthly-invoices",
        "every 1 month",
        ActionKind::Sql,
        "SELECT 1",
    );
    succeeded(&mut monthly, 3600, 30);
    monthly.nextcall = Some(now() + Duration::days(29));

    let mut paused = job(
        9,
        "legacy-sync",
        "every 30m",
        ActionKind::Shell,
        "sync-legacy.sh",
    );
    paused.active = false;
    paused.pause = Some(Pause {
        at: now() - secs(3600),
        by: Some("ops@host".into()),
        reason: Some("CRM decommissioned".into()),
        until: None,
    });

    let mut done = job(
        10,
        "one-time-backfill",
        "every 15s",
        ActionKind::Sql,
        "SELECT 1",
    );
    done.spec.numbercall = 0;
    done.active = false;
    succeeded(&mut done, 600, 14);

    let mut manual = job(11, "cache-flush", "manual", ActionKind::Shell, "flush");
    manual.nextcall = None;

    vec![
        overdue,
        late,
        failing,
        sql_failing,
        running,
        ok,
        cron,
        monthly,
        paused,
        done,
        manual,
    ]
}

pub fn nodes() -> Vec<NodeRow> {
    vec![NodeRow {
        id: "n-a".into(),
        name: "node-a".into(),
        host: "host-a".into(),
        pid: 42,
        workers: 2,
        busy: 1,
        allow_shell: true,
        started_at: now() - secs(3600),
        heartbeat_at: now() - secs(2),
        lease_ms: 30_000,
    }]
}

pub fn snapshot(jobs: Vec<Job>, nodes: Vec<NodeRow>) -> Action {
    let typical: HashMap<i64, i64> = [(5, 24_000), (6, 9)].into_iter().collect();
    Action::Data(DataEvent::Jobs(Box::new(JobsSnapshot {
        db_now: now(),
        wall: now(),
        full: true,
        jobs,
        removed: Vec::new(),
        nodes,
        typical_ms: typical,
        unrunnable: Default::default(),
    })))
}

/// The console at `now()`, 80×24, UTC, colour, with every job loaded.
pub fn app() -> App {
    let mut app = App::new(
        "crondeck@/run/crondeck:5432/crondeck".into(),
        false,
        true,
        now(),
    );
    app.zone = Zone::Utc;
    app.theme = Theme::COLOR;
    app.own_node = Some(NodeStatus {
        node_id: "n-a".into(),
        name: "node-a".into(),
        workers: 2,
        busy: 1,
        lease_ok: true,
        runs_finished: 10,
    });
    update(&mut app, snapshot(jobs(), nodes()));
    app
}

pub fn run_row(id: i64, job_id: i64, status: &str, ago: i64, ms: Option<i64>) -> RunRow {
    RunRow {
        id,
        job_id,
        trigger: "schedule".into(),
        requested_by: None,
        scheduled_for: now() - secs(ago),
        ticks: 1,
        status: status.into(),
        reason: None,
        node_name: Some("node-a".into()),
        attempt: 1,
        started_at: Some(now() - secs(ago) + Duration::milliseconds(40)),
        ended_at: ms.map(|ms| now() - secs(ago) + Duration::milliseconds(40 + ms)),
        duration_ms: ms,
        lateness_ms: Some(40),
        exit_code: None,
        signal: None,
        sqlstate: None,
        rows_affected: None,
        error: None,
        stdout: None,
        stderr: None,
        stdout_dropped: 0,
        stderr_dropped: 0,
        progress_done: None,
        progress_total: None,
        progress_at: None,
        output_at: None,
    }
}

/// Ten runs of the heartbeat job, newest first, one failed, one running.
pub fn runs() -> Vec<RunRow> {
    let mut runs: Vec<RunRow> = (0..10)
        .map(|i| run_row(200 - i, 6, "succeeded", 5 * (i + 1), Some(5 + i * 3)))
        .collect();
    runs[0] = run_row(200, 6, "running", 1, None);
    runs[3].status = "failed".into();
    runs[3].sqlstate = Some("57014".into());
    runs[5].status = "skipped".into();
    runs[5].reason = Some("overlap".into());
    runs[5].ticks = 2;
    runs[5].started_at = None;
    runs[5].duration_ms = None;
    runs[5].lateness_ms = None;
    runs[5].node_name = None;
    runs
}

pub fn audit() -> Vec<AuditRecord> {
    let record = |id: i64, action: &str, old, new, reason: Option<&str>| AuditRecord {
        id,
        at: now() - secs(60 * id),
        db_role: "crondeck".into(),
        os_user: Some("ops".into()),
        host: Some("bastion".into()),
        job_id: Some(6),
        job_name: "heartbeat".into(),
        action: action.into(),
        old,
        new,
        reason: reason.map(str::to_string),
    };
    vec![
        record(
            1,
            "set",
            Some(json!({"priority": 5})),
            Some(json!({"priority": 1})),
            None,
        ),
        record(
            2,
            "pause",
            Some(json!({"active": true, "paused_by": null, "paused_reason": null})),
            Some(json!({"active": false, "paused_by": "ops@bastion", "paused_reason": "deploy"})),
            Some("deploy"),
        ),
        record(3, "run", None, Some(json!({"request_id": 12})), None),
        record(4, "create", None, Some(json!({"name": "heartbeat"})), None),
    ]
}

/// Draw `app` on a `width`×`height` test terminal.
pub fn render(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut app = app.clone();
    update(&mut app, Action::Resize { width, height });
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| views::draw(f, &app)).unwrap();
    terminal
}

pub fn key(code: crossterm::event::KeyCode) -> Action {
    Action::Key(crossterm::event::KeyEvent::new(
        code,
        crossterm::event::KeyModifiers::NONE,
    ))
}

pub fn ch(c: char) -> Action {
    let modifiers = if c.is_ascii_uppercase() {
        crossterm::event::KeyModifiers::SHIFT
    } else {
        crossterm::event::KeyModifiers::NONE
    };
    Action::Key(crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Char(c),
        modifiers,
    ))
}

pub fn ctrl(c: char) -> Action {
    Action::Key(crossterm::event::KeyEvent::new(
        crossterm::event::KeyCode::Char(c),
        crossterm::event::KeyModifiers::CONTROL,
    ))
}

pub fn typed(text: &str) -> Vec<Action> {
    text.chars().map(ch).collect()
}
