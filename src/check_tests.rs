use super::*;
use crate::job::{JobRuntime, JobSpec, Pause};
use crate::schedule::Schedule;
use chrono::TimeZone;

fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0).unwrap()
}

fn job(name: &str) -> Job {
    Job {
        id: 1,
        spec: JobSpec::new(
            name,
            Schedule::parse("every 5m").unwrap(),
            ActionKind::Sql,
            "SELECT 1",
        ),
        nextcall: Some(at(10, 5)),
        active: true,
        pause: None,
        managed_by: None,
        created_at: at(9, 0),
        updated_at: at(9, 0),
        runtime: JobRuntime {
            last_success_at: Some(at(10, 0)),
            last_status: Some("succeeded".into()),
            ..JobRuntime::default()
        },
        unreadable: None,
    }
}

fn node() -> NodeRow {
    NodeRow {
        id: "n".into(),
        name: "n".into(),
        host: "h".into(),
        pid: 1,
        workers: 2,
        busy: 0,
        allow_shell: false,
        started_at: at(9, 0),
        heartbeat_at: at(10, 0),
        lease_ms: 30_000,
    }
}

#[test]
fn healthy_jobs_and_a_live_node_are_ok() {
    let r = evaluate(&[job("a")], &[node()], at(10, 1), &CheckOptions::default());
    assert_eq!(r.status, Status::Ok);
    assert_eq!(
        r.summary,
        "CRONDECK OK: 0 overdue, 0 failing, 0 late, 0 auto-paused of 1 job, 1 live node \
         | jobs=1 overdue=0 failing=0 late=0 auto_paused=0 live_nodes=1"
    );
}

#[test]
fn late_and_failing_warn_overdue_and_no_node_are_critical() {
    let mut failing = job("f");
    failing.runtime.failure_streak = 2;
    failing.runtime.last_status = Some("failed".into());
    let r = evaluate(
        &[job("a"), failing],
        &[node()],
        at(10, 6),
        &CheckOptions::default(),
    );
    assert_eq!(r.status, Status::Warning);
    assert!(
        r.summary.contains("worst: a late (due 1m ago"),
        "{}",
        r.summary
    );
    assert!(
        r.summary
            .contains("f failing (2 failures in a row, last failed)"),
        "{}",
        r.summary
    );
    let r = evaluate(&[job("a")], &[node()], at(10, 11), &CheckOptions::default());
    assert_eq!(r.status, Status::Critical);
    assert_eq!(r.problems[0].state, "overdue");
    let r = evaluate(&[job("a")], &[], at(10, 1), &CheckOptions::default());
    assert_eq!(r.status, Status::Critical);
    assert!(
        r.summary.contains("no live scheduler node"),
        "{}",
        r.summary
    );
}

#[test]
fn scope_and_thresholds_narrow_the_verdict() {
    let mut failing = job("f");
    failing.runtime.failure_streak = 1;
    failing.spec.tags = vec!["billing".into()];
    let jobs = [job("a"), failing];
    let opts = CheckOptions {
        failing_streak: 3,
        ..CheckOptions::default()
    };
    assert_eq!(
        evaluate(&jobs, &[node()], at(10, 1), &opts).status,
        Status::Ok
    );
    let opts = CheckOptions {
        tag: Some("billing".into()),
        ..CheckOptions::default()
    };
    let r = evaluate(&jobs, &[node()], at(10, 1), &opts);
    assert_eq!((r.jobs, r.status), (1, Status::Warning));
}

#[test]
fn auto_paused_jobs_warn_but_operator_pauses_do_not() {
    let mut paused = job("p");
    paused.active = false;
    paused.pause = Some(Pause {
        at: at(10, 0),
        by: Some("alice@host".into()),
        reason: None,
        until: None,
    });
    let mut auto = paused.clone();
    auto.spec.name = "q".into();
    auto.pause.as_mut().unwrap().by = Some(FAILURE_POLICY_PAUSER.into());
    let r = evaluate(
        &[paused.clone()],
        &[node()],
        at(11, 0),
        &CheckOptions::default(),
    );
    assert_eq!(r.status, Status::Ok);
    let r = evaluate(
        &[paused, auto],
        &[node()],
        at(11, 0),
        &CheckOptions::default(),
    );
    assert_eq!((r.status, r.auto_paused), (Status::Warning, 1));
}
