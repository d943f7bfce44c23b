//! The Odoo console end to end (issue 13): the real binary in tmux on the
//! Odoo 18 fixture, with the simulated Odoo cron worker running Odoo's loop.
//! Every wait polls the screen or the worker's events until a deadline.

mod common;
mod tmux;
use tmux::Tmux;
#[path = "common/odoo_worker.rs"]
mod odoo_worker;

use std::time::Duration;

use common::scalar;
use odoo_worker::{Behavior, Event, OdooDb, Version};

const LIMIT: Duration = Duration::from_secs(40);
/// The worker's poll: shorter than Odoo's 60 s so the test is quick, longer
/// than the NOTIFY path needs.
const POLL: Duration = Duration::from_secs(4);

fn row<'a>(screen: &'a str, needle: &str) -> &'a str {
    screen
        .lines()
        // Table rows, not the header, sub-header or detail pane: they show the interval.
        .find(|l| l.contains(needle) && l.contains("every "))
        .unwrap_or("")
}

/// Move the cursor to the row of cron `name` (the detail pane names it).
async fn focus(tmux: &Tmux, id: i32, name: &str) {
    tmux.keys(&["g"]);
    for _ in 0..6 {
        if tmux.screen().contains(&format!("#{id} {name}")) {
            return;
        }
        tmux.keys(&["j"]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    tmux.wait_text(&format!("#{id} {name}")).await;
}

async fn wait_event(worker: &odoo_worker::Worker, what: &str, check: impl Fn(&[Event]) -> bool) {
    common::wait_for(LIMIT, what, || async {
        check(&worker.control.events()).then_some(())
    })
    .await;
}

/// SGR parameters that mean this foreground colour, however tmux writes it.
fn has_fg(line: &str, codes: &[&str]) -> bool {
    codes.iter().any(|c| {
        line.contains(&format!("\x1b[{c}m"))
            || line.contains(&format!(";{c}m"))
            || line.contains(&format!("\x1b[{c};"))
    })
}

#[tokio::test]
async fn odoo_console_end_to_end() {
    let db = OdooDb::new(Version::V18).await;
    let client = db.client().await;
    // Cron 1 (daily) overdue: last run 3 days ago. Cron 3 is failing (fixture).
    client
        .batch_execute(
            "UPDATE ir_cron SET lastcall = (now() AT TIME ZONE 'UTC') - interval '3 days', \
             nextcall = (now() AT TIME ZONE 'UTC') - interval '2 days' WHERE id = 1",
        )
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("console.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\"$CRONDECK\" --odoo \"$ODOO_URL\"\necho \"EXITED-$?\"\nsleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let env = [
        ("CRONDECK", env!("CARGO_BIN_EXE_crondeck").to_string()),
        ("ODOO_URL", db.db.url()),
        (
            "XDG_STATE_HOME",
            dir.path().join("state").display().to_string(),
        ),
        (
            "XDG_CONFIG_HOME",
            dir.path().join("config").display().to_string(),
        ),
        ("TERM", "xterm-256color".to_string()),
    ];
    let tmux = Tmux::start_sized(&script, &env, 120, 30);
    let screen = tmux
        .wait("the Odoo crons", |s| {
            s.contains("Odoo 18.0")
                && s.contains("Mail: Email Queue Manager")
                && s.contains("overdue")
        })
        .await;
    // No worker yet and a cron due for two days: the header says so.
    assert!(screen.contains("NONE ALIVE"), "{screen}");
    // Overdue red, failing magenta, as for crondeck jobs.
    let coloured = tmux.screen_with_colours();
    let overdue = row(&coloured, "Auto-vacuum");
    assert!(
        has_fg(overdue, &["31", "91", "38;5;1", "38;5;9"]),
        "overdue row: {overdue:?}"
    );
    let failing = row(&coloured, "quotation reminders");
    assert!(
        has_fg(failing, &["35", "95", "38;5;5", "38;5;13"]),
        "failing row: {failing:?}"
    );

    // The worker starts (and runs the overdue cron on its first pass).
    let worker = db.worker(POLL).await;
    worker.control.set(
        2,
        Behavior::Progress {
            total: 60,
            per_batch: 30,
            step: 2,
            pause: Duration::from_millis(250),
        },
    );
    wait_event(&worker, "cron 1 to run", |ev| {
        ev.contains(&Event::Finished(1, "fully done"))
    })
    .await;
    tmux.wait("the worker alive", |s| {
        s.contains("● alive") || s.contains("unknown")
    })
    .await;

    // Run now from the console: through NOTIFY, not the poll.
    focus(&tmux, 2, "Mail: Email Queue Manager").await;
    tmux.keys(&["r"]);
    tmux.wait_text("Run now: #2").await;
    let before = worker.control.events().len();
    let asked = tokio::time::Instant::now();
    tmux.keys(&["y"]);
    wait_event(&worker, "cron 2 acquired", |ev| {
        ev[before..].contains(&Event::Acquired(2))
    })
    .await;
    let took = asked.elapsed();
    let ev = worker.control.events();
    let acquired = before
        + ev[before..]
            .iter()
            .position(|e| *e == Event::Acquired(2))
            .unwrap();
    let last_wake = ev[before..acquired]
        .iter()
        .rev()
        .find(|e| matches!(e, Event::Woke(_)));
    assert_eq!(
        last_wake,
        Some(&Event::Woke(true)),
        "woken by NOTIFY: {:?}",
        &ev[before..]
    );
    assert!(took < POLL, "run now took {took:?}, as long as a poll");

    // Running, with a moving progress bar.
    let first = tmux
        .wait("cron 2 running with progress", |s| {
            let r = row(s, "Email Queue Manager");
            r.contains("running") && r.contains("/60") && !r.contains(" 0/60")
        })
        .await;
    let done = |s: &str| -> i64 {
        let r = row(s, "Email Queue Manager");
        let t = r
            .split_whitespace()
            .find(|w| w.ends_with("/60"))
            .unwrap_or("0/60");
        t.trim_end_matches("/60").parse().unwrap_or(0)
    };
    let d0 = done(&first);
    let moved = tmux.wait("the progress to move", |s| done(s) > d0).await;
    // For docs/console.md: ODOO_E2E_CAPTURE=path writes this screen there.
    if let Ok(path) = std::env::var("ODOO_E2E_CAPTURE") {
        std::fs::write(path, &moved).expect("write the capture");
    }

    // An edit while it runs is refused, with Odoo's reason.
    tmux.keys(&["P"]);
    tmux.wait_text("priority (0 = first)").await;
    tmux.keys(&["C-u"]);
    tmux.type_text("7");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Set the priority to 7").await;
    tmux.keys(&["y"]);
    tmux.wait_text("is running right now").await;
    let prio: i32 = scalar(&client, "SELECT priority FROM ir_cron WHERE id = 2", &[]).await;
    assert_eq!(prio, 3, "a running cron was modified");
    wait_event(&worker, "cron 2 to finish", |ev| {
        ev.contains(&Event::Finished(2, "fully done"))
    })
    .await;

    // Toggle active: paused crons are not picked up on the next pass, even when due.
    focus(&tmux, 3, "Sales: Send quotation reminders").await;
    tmux.keys(&["Space"]);
    tmux.wait_text("Pause (active off): #3").await;
    tmux.keys(&["y"]);
    tmux.wait_text("active true → false").await;
    tmux.keys(&["n"]);
    tmux.wait_text("next call (UTC").await;
    tmux.keys(&["C-u"]);
    tmux.type_text("now");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Set the next call to").await;
    tmux.keys(&["y"]);
    tmux.wait_text("nextcall").await;
    let mark = worker.control.events().len();
    wait_event(&worker, "a pass after the pause", |ev| {
        ev[mark..].iter().any(|e| matches!(e, Event::Ready(_)))
    })
    .await;
    assert!(
        !worker.control.events()[mark..]
            .iter()
            .any(|e| matches!(e, Event::Ready(ids) if ids.contains(&3))),
        "a paused cron was ready"
    );
    // Edit the interval, then resume: the next pass runs it, and reschedules
    // it by the new interval.
    tmux.keys(&["e"]);
    tmux.wait_text("interval (minutes, hours, days, weeks, months)")
        .await;
    tmux.keys(&["C-u"]);
    tmux.type_text("2 days");
    tmux.keys(&["Enter"]);
    tmux.wait_text("Set the interval to every 2 days").await;
    tmux.keys(&["y"]);
    tmux.wait_text("every 1 day → every 2 days").await;
    tmux.keys(&["Space"]);
    tmux.wait_text("Resume (active on): #3").await;
    tmux.keys(&["y"]);
    tmux.wait_text("active false → true").await;
    wait_event(&worker, "cron 3 to run after resume", |ev| {
        ev.contains(&Event::Finished(3, "fully done"))
    })
    .await;
    let gap: f64 = scalar(
        &client,
        "SELECT extract(epoch FROM nextcall - lastcall)::float8 FROM ir_cron WHERE id = 3",
        &[],
    )
    .await;
    assert!(
        (gap - 2.0 * 86400.0).abs() < 120.0,
        "nextcall - lastcall = {gap}s, not two days"
    );
    // Every action is audited in ir_logging.
    let audited: i64 = scalar(
        &client,
        "SELECT count(*) FROM ir_logging WHERE name = 'crondeck.odoo'",
        &[],
    )
    .await;
    assert_eq!(audited, 5, "run, pause, next, interval, resume");
    assert!(worker
        .control
        .events()
        .iter()
        .all(|e| !matches!(e, Event::Skipped(_))));

    tmux.keys(&["q"]);
    tmux.wait_text("EXITED-0").await;
}
