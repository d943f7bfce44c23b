//! The data task: the console's only door to the database. It owns one
//! connection (which also LISTENs on `crondeck_wake`), carries out the
//! requests `update` makes, and reports results as `DataEvent`s.
//!
//! - Requests are handled one at a time, so only one refresh is ever in
//!   flight; requests that arrive meanwhile are merged, newest wins (a burst
//!   of wake-ups or key presses becomes one refresh). Mutations are never
//!   merged or dropped: they run in order, before any pending refresh.
//! - Every statement runs under `statement_timeout`, and every round trip
//!   under a client-side deadline too, so a dead network cannot hang it.
//! - A lost connection is reported (`Link::Lost`), then re-established with
//!   exponential backoff; the UI keeps its last data, marked STALE.
//!
//! The UI never waits for this task: it sends requests and goes on drawing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;
use tokio_postgres::{Client, Notification};

use super::action::{DataEvent, Effect, JobsSnapshot, Link, Mutation};
use super::app::{AUDIT_LIMIT, HISTORY_LIMIT};
use crate::db::audit::{audit_list, Actor};
use crate::db::connect::ConnectionSpec;
use crate::db::jobs::jobs_changed_since;
use crate::db::nodes::node_overview;
use crate::db::runs::{
    run_get, run_page, run_progress_running, run_typical_durations, RunPageQuery,
};
use crate::db::DbError;
use crate::ops::{self, JobChanges, OpsError};

/// Server-side limit on any statement of the console.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);
/// Client-side limit on one request (covers a network that went silent).
const REQUEST_DEADLINE: Duration = Duration::from_secs(15);
/// An answer this late marks the data STALE while the request still waits
/// (issue 12: `● live` for 16 s with the server frozen).
pub const OVERDUE_AFTER: Duration = Duration::from_secs(3);
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Typical durations are costlier; they are refreshed at most this often.
const TYPICAL_EVERY: Duration = Duration::from_secs(30);
/// Runs per job the typical duration is taken over.
const TYPICAL_RUNS: i64 = 20;

/// What is waiting to be done; newer requests replace older ones.
#[derive(Default)]
struct Pending {
    mutations: VecDeque<Mutation>,
    refresh: bool,
    runs: Option<i64>,
    run: Option<i64>,
    history: Option<(i64, RunPageQuery)>,
    audit: bool,
    progress: bool,
    notifications: bool,
    job_audit: Option<String>,
    nodes: bool,
}

enum Work {
    Mutate(Mutation),
    Refresh,
    Runs(i64),
    Run(i64),
    History(i64, RunPageQuery),
    Audit,
    Progress,
    Notifications,
    JobAudit(String),
    Nodes,
}

impl Pending {
    /// Add a request; false on `Quit`.
    fn add(&mut self, effect: Effect) -> bool {
        match effect {
            Effect::Quit => return false,
            Effect::Refresh => self.refresh = true,
            Effect::LoadRuns(id) => self.runs = Some(id),
            Effect::LoadRun(id) => self.run = Some(id),
            Effect::LoadHistory { job_id, query } => self.history = Some((job_id, query)),
            Effect::LoadAudit => self.audit = true,
            Effect::LoadProgress => self.progress = true,
            Effect::LoadNotifications => self.notifications = true,
            Effect::LoadJobAudit(job) => self.job_audit = Some(job),
            Effect::LoadNodes => self.nodes = true,
            Effect::Mutate(m) => self.mutations.push_back(m),
            // The event loop's, never sent here.
            Effect::StopOwnRuns | Effect::ShutdownNode => {}
        }
        true
    }

    fn next(&mut self) -> Option<Work> {
        if let Some(m) = self.mutations.pop_front() {
            return Some(Work::Mutate(m));
        }
        if std::mem::take(&mut self.refresh) {
            return Some(Work::Refresh);
        }
        if let Some(id) = self.runs.take() {
            return Some(Work::Runs(id));
        }
        if let Some(id) = self.run.take() {
            return Some(Work::Run(id));
        }
        if std::mem::take(&mut self.progress) {
            return Some(Work::Progress);
        }
        if let Some((id, query)) = self.history.take() {
            return Some(Work::History(id, query));
        }
        if let Some(job) = self.job_audit.take() {
            return Some(Work::JobAudit(job));
        }
        if std::mem::take(&mut self.nodes) {
            return Some(Work::Nodes);
        }
        if std::mem::take(&mut self.audit) {
            return Some(Work::Audit);
        }
        std::mem::take(&mut self.notifications).then_some(Work::Notifications)
    }
}

/// Start the task. Send it `Effect`s; it stops on `Effect::Quit` or when
/// the sender is dropped.
pub fn spawn(
    spec: ConnectionSpec,
    read_only: bool,
    events: UnboundedSender<DataEvent>,
) -> UnboundedSender<Effect> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(spec, read_only, rx, events));
    tx
}

struct Connection {
    client: Client,
    notes: UnboundedReceiver<Notification>,
}

async fn connect(spec: &ConnectionSpec) -> anyhow::Result<Connection> {
    let (client, notes) = spec.connect_with_notifications().await?;
    let setup = format!(
        "SET statement_timeout = {}; SET application_name = 'crondeck console'; LISTEN crondeck_wake",
        STATEMENT_TIMEOUT.as_millis()
    );
    tokio::time::timeout(REQUEST_DEADLINE, client.batch_execute(&setup))
        .await
        .map_err(|_| anyhow::anyhow!("the server did not answer in time"))??;
    Ok(Connection { client, notes })
}

async fn run(
    spec: ConnectionSpec,
    read_only: bool,
    mut requests: UnboundedReceiver<Effect>,
    events: UnboundedSender<DataEvent>,
) {
    let actor = Actor::current();
    let mut pending = Pending {
        refresh: true,
        ..Pending::default()
    };
    let mut refresher = Refresher::default();
    let mut link: Option<Connection> = None;
    let mut backoff = BACKOFF_START;
    loop {
        while let Ok(effect) = requests.try_recv() {
            if !pending.add(effect) {
                return;
            }
        }
        let Some(current) = link.as_mut() else {
            match connect(&spec).await {
                Ok(l) => {
                    link = Some(l);
                    backoff = BACKOFF_START;
                    pending.refresh = true;
                    let _ = events.send(DataEvent::Connection(Link::Live));
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "console: cannot reach the database");
                    let _ = events.send(DataEvent::Connection(Link::Lost {
                        error: format!("{error:#}"),
                    }));
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        request = requests.recv() => {
                            if !request.is_some_and(|e| pending.add(e)) {
                                return;
                            }
                        }
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
            continue;
        };
        if let Some(work) = pending.next() {
            // A hung server shows as STALE once an answer is overdue, not
            // only when the deadline gives up on it.
            let mut overdue = false;
            let outcome = {
                let request = tokio::time::timeout(
                    REQUEST_DEADLINE,
                    perform(&mut current.client, &actor, read_only, work, &mut refresher),
                );
                tokio::pin!(request);
                loop {
                    tokio::select! {
                        outcome = &mut request => break outcome,
                        () = tokio::time::sleep(OVERDUE_AFTER), if !overdue => {
                            overdue = true;
                            tracing::warn!(after = ?OVERDUE_AFTER, "console: the database is not answering");
                            let _ = events.send(DataEvent::Connection(Link::Lost {
                                error: format!(
                                    "no answer for {}s (the database may be hung); giving up after {}s",
                                    OVERDUE_AFTER.as_secs(),
                                    REQUEST_DEADLINE.as_secs()
                                ),
                            }));
                        }
                    }
                }
            };
            if overdue && matches!(outcome, Ok(Ok(_) | Err(Failure::Refused(_)))) {
                // It answered after all.
                let _ = events.send(DataEvent::Connection(Link::Live));
            }
            let lost = match outcome {
                Ok(Ok(event)) => {
                    let _ = events.send(event);
                    None
                }
                Ok(Err(Failure::Refused(text))) => {
                    let _ = events.send(DataEvent::Done(Err(text)));
                    None
                }
                Ok(Err(Failure::Lost(text, during_change))) => {
                    if during_change {
                        let _ = events.send(DataEvent::Done(Err(format!(
                            "the connection was lost during the change; check the audit trail (a) before retrying: {text}"
                        ))));
                    }
                    Some(text)
                }
                Err(_) => Some(format!("no answer within {}s", REQUEST_DEADLINE.as_secs())),
            };
            if let Some(error) = lost {
                tracing::warn!(%error, "console: database connection lost");
                link = None;
                refresher.reset();
                pending.refresh = true;
                let _ = events.send(DataEvent::Connection(Link::Lost { error }));
            }
            continue;
        }
        tokio::select! {
            request = requests.recv() => {
                if !request.is_some_and(|e| pending.add(e)) {
                    return;
                }
            }
            note = current.notes.recv() => match note {
                Some(_) => pending.refresh = true,
                // The connection task ended: the server is gone.
                None => {
                    link = None;
                    refresher.reset();
                    let _ = events.send(DataEvent::Connection(Link::Lost {
                        error: "the connection to the database closed".into(),
                    }));
                }
            },
        }
    }
}

/// The data task's memory between refreshes: where the last snapshot
/// stood, and what it derived per job, so that a refresh reads only the jobs
/// changed since (`db::jobs::jobs_changed_since`). The jobs themselves live
/// in the console's `App`, which merges each incremental snapshot.
#[derive(Default)]
pub struct Refresher {
    /// The previous snapshot's horizon; `None`: the next refresh reads all.
    since: Option<i64>,
    /// When the previous snapshot was taken.
    at: Option<Instant>,
    nodes_key: Option<String>,
    /// Jobs no live node may run, kept per job.
    unrunnable: HashSet<i64>,
    typical: HashMap<i64, i64>,
    typical_at: Option<Instant>,
}

/// Tombstones of removed jobs are kept a day (migration 0010); a refresh
/// after a longer pause than this reads everything again.
const FULL_AFTER: Duration = Duration::from_secs(3600);

impl Refresher {
    /// Forget the previous snapshot: the next refresh reads every job (after
    /// a lost connection, whose snapshot may be far behind).
    pub fn reset(&mut self) {
        self.since = None;
        self.nodes_key = None;
    }

    /// One refresh: the jobs changed since the previous one (all of them the
    /// first time), the live nodes, the jobs no node may run, the database
    /// clock, and the typical durations every `TYPICAL_EVERY`.
    pub async fn refresh(&mut self, client: &mut Client) -> Result<JobsSnapshot, DbError> {
        let wall: DateTime<Utc> = Utc::now();
        if self.at.map_or(true, |at| at.elapsed() >= FULL_AFTER) {
            self.reset();
        }
        let delta = jobs_changed_since(client, self.since, self.nodes_key.as_deref()).await?;
        if delta.full {
            self.unrunnable.clear();
        }
        if let Some(all) = delta.all_unrunnable {
            self.unrunnable = all.into_iter().collect();
        } else {
            for (job, unrunnable) in &delta.changed {
                if *unrunnable {
                    self.unrunnable.insert(job.id);
                } else {
                    self.unrunnable.remove(&job.id);
                }
            }
        }
        for id in &delta.removed {
            self.unrunnable.remove(id);
        }
        if self
            .typical_at
            .map_or(true, |at| at.elapsed() >= TYPICAL_EVERY)
        {
            self.typical = run_typical_durations(&*client, TYPICAL_RUNS).await?;
            self.typical_at = Some(Instant::now());
        }
        self.since = Some(delta.horizon);
        self.nodes_key = Some(delta.nodes_key);
        self.at = Some(Instant::now());
        Ok(JobsSnapshot {
            db_now: delta.db_now,
            wall,
            full: delta.full,
            jobs: delta.changed.into_iter().map(|(job, _)| job).collect(),
            removed: delta.removed,
            nodes: delta.nodes,
            typical_ms: self.typical.clone(),
            unrunnable: self.unrunnable.clone(),
        })
    }
}

enum Failure {
    /// The database refused (bad input, no such job): show it, stay connected.
    Refused(String),
    /// The connection is unusable; `true` when a change was in flight.
    Lost(String, bool),
}

fn classify(error: DbError, during_change: bool) -> Failure {
    match error {
        DbError::Postgres(e) if e.as_db_error().is_none() || e.is_closed() => {
            Failure::Lost(e.to_string(), during_change)
        }
        // A statement timeout or any other server error during a refresh
        // leaves the data unknown: treat it as lost and reconnect.
        DbError::Postgres(e) if !during_change => Failure::Lost(
            e.as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_string()),
            false,
        ),
        other => Failure::Refused(other.to_string()),
    }
}

async fn perform(
    client: &mut Client,
    actor: &Actor,
    read_only: bool,
    work: Work,
    refresher: &mut Refresher,
) -> Result<DataEvent, Failure> {
    let lost = |e: DbError| classify(e, false);
    match work {
        Work::Refresh => Ok(DataEvent::Jobs(Box::new(
            refresher.refresh(client).await.map_err(lost)?,
        ))),
        Work::Runs(job_id) => {
            let (runs, more) = run_page(&*client, job_id, &RunPageQuery::default(), HISTORY_LIMIT)
                .await
                .map_err(lost)?;
            Ok(DataEvent::Runs { job_id, runs, more })
        }
        Work::Run(run_id) => Ok(DataEvent::Run {
            run_id,
            run: run_get(&*client, run_id).await.map_err(lost)?.map(Box::new),
        }),
        Work::Progress => Ok(DataEvent::Progress(
            run_progress_running(&*client).await.map_err(lost)?,
        )),
        Work::History(job_id, query) => {
            let (runs, more) = run_page(&*client, job_id, &query, HISTORY_LIMIT)
                .await
                .map_err(lost)?;
            Ok(DataEvent::History {
                job_id,
                query,
                runs,
                more,
            })
        }
        Work::Audit => Ok(DataEvent::Audit(
            audit_list(&*client, None, AUDIT_LIMIT)
                .await
                .map_err(lost)?,
        )),
        Work::Notifications => Ok(DataEvent::Notifications(
            crate::db::notifications::delivery_list(&*client, crate::tui::app::NOTIFICATIONS_LIMIT)
                .await
                .map_err(lost)?,
        )),
        Work::JobAudit(job) => {
            let records = audit_list(&*client, Some(&job), AUDIT_LIMIT)
                .await
                .map_err(lost)?;
            Ok(DataEvent::JobAudit { job, records })
        }
        Work::Nodes => Ok(DataEvent::Nodes(
            node_overview(&*client).await.map_err(lost)?,
        )),
        Work::Mutate(m) => {
            // The UI refuses first (update::mutation_refused); this is the fence.
            if read_only {
                return Err(Failure::Refused(
                    "read-only mode: changes are disabled".into(),
                ));
            }
            mutate(client, actor, m)
                .await
                .map(|text| DataEvent::Done(Ok(text)))
        }
    }
}

async fn mutate(client: &mut Client, actor: &Actor, m: Mutation) -> Result<String, Failure> {
    let fail = |e: OpsError| match e {
        OpsError::Invalid(text) => Failure::Refused(text),
        OpsError::Db(e) => classify(e, true),
    };
    match m {
        Mutation::RunNow { job } => {
            let request = ops::run_now(client, actor, &job).await.map_err(fail)?;
            Ok(format!("run of \"{job}\" requested (request {request})"))
        }
        Mutation::Cancel { job, reason } => {
            let run = ops::cancel(client, actor, &job, reason.as_deref())
                .await
                .map_err(fail)?;
            Ok(format!(
                "asked the node to cancel run {run} of \"{job}\" (within a heartbeat)"
            ))
        }
        Mutation::Pause {
            job,
            reason,
            duration,
        } => {
            // The dialog opened on an active job: a pause made meanwhile wins.
            ops::pause_active(client, actor, &job, reason.as_deref(), duration)
                .await
                .map_err(fail)?;
            Ok(format!("paused \"{job}\""))
        }
        Mutation::Resume { job } => {
            let (_, changed) = ops::resume(client, actor, &job).await.map_err(fail)?;
            Ok(if changed {
                format!("resumed \"{job}\"")
            } else {
                format!("\"{job}\" was not paused")
            })
        }
        Mutation::Schedule { job, schedule, was } => {
            let changes = JobChanges {
                schedule: Some(schedule),
                ..JobChanges::default()
            };
            let expect = ops::Expect::Schedule(was);
            let updated = ops::set_expecting(client, actor, &job, &changes, Some(&expect))
                .await
                .map_err(fail)?;
            Ok(format!(
                "\"{job}\" now runs {}",
                updated.spec.schedule.describe()
            ))
        }
        Mutation::Next { job, next } => {
            let changes = JobChanges {
                next: Some(next),
                ..JobChanges::default()
            };
            ops::set(client, actor, &job, &changes)
                .await
                .map_err(fail)?;
            Ok(format!("moved the next run of \"{job}\""))
        }
        Mutation::Priority { job, priority, was } => {
            let changes = JobChanges {
                priority: Some(priority),
                ..JobChanges::default()
            };
            let expect = ops::Expect::Priority(was);
            ops::set_expecting(client, actor, &job, &changes, Some(&expect))
                .await
                .map_err(fail)?;
            Ok(format!("priority of \"{job}\" is now {priority}"))
        }
    }
}
