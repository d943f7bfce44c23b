//! The console's state: one owner, changed only by `update::update`, read by
//! the views. Derived data (health, the filtered and sorted view) is kept as
//! index vectors into `jobs`, so 10,000 jobs are never cloned per frame.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use tui_input::Input;

use super::format::{self, Zone};
use super::forms::Dialog;
use super::keys::{self, Quick, Screens};
use super::natural;
use super::scroll;
use super::theme::Theme;
use crate::db::audit::AuditRecord;
use crate::db::nodes::{NodeOverview, NodeRow};
use crate::db::notifications::DeliveryRow;
use crate::db::runs::{RunPageQuery, RunRow, RunningProgress};
use crate::health::{job_health, ClusterHealth, JobHealth, State, Thresholds};
use crate::job::Job;
use crate::scheduler::NodeStatus;

/// Rows of the header and footer (the views lay out the same numbers).
pub const HEADER_ROWS: u16 = 3;
/// A status message wraps to at most this many rows above the key hints.
pub const MESSAGE_ROWS: usize = 3;
/// A filter wraps to at most this many rows under the jobs table.
pub const FILTER_ROWS: usize = 2;
/// Below this the console shows a "too small" notice instead of a layout.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 15;
/// Runs loaded for the detail view (history queries are capped).
pub const HISTORY_LIMIT: i64 = 50;
/// Audit records loaded for the audit view.
pub const AUDIT_LIMIT: i64 = 200;
/// Deliveries loaded for the notifications view.
pub const NOTIFICATIONS_LIMIT: i64 = 200;
/// Seconds between polls; NOTIFY wake-ups refresh sooner.
pub const POLL_SECONDS: i64 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    /// Before the first answer.
    Connecting,
    Live,
    /// The database went away at `since` (database time, estimated); the
    /// data shown is from then. The data task keeps reconnecting.
    Stale {
        since: DateTime<Utc>,
        error: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    State,
    Name,
    Next,
    Last,
    Duration,
    Failures,
    Priority,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::State => SortKey::Name,
            SortKey::Name => SortKey::Next,
            SortKey::Next => SortKey::Last,
            SortKey::Last => SortKey::Duration,
            SortKey::Duration => SortKey::Failures,
            SortKey::Failures => SortKey::Priority,
            SortKey::Priority => SortKey::State,
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            SortKey::State => "state",
            SortKey::Name => "name",
            SortKey::Next => "next",
            SortKey::Last => "last",
            SortKey::Duration => "duration",
            SortKey::Failures => "failures",
            SortKey::Priority => "priority",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DetailState {
    pub job_id: i64,
    pub runs: Option<Vec<RunRow>>,
    pub cursor: usize,
    /// The page of history shown: newest (default), or older pages by
    /// keyset, filtered by status, from a time.
    pub query: RunPageQuery,
    /// The `before` of each newer page, to page back to.
    pub newer: Vec<Option<i64>>,
    /// Older runs exist beyond this page.
    pub more: bool,
    /// `Some` while a time to jump to is typed (`t`).
    pub jump: Option<Input>,
}

impl DetailState {
    pub fn new(job_id: i64) -> DetailState {
        DetailState {
            job_id,
            runs: None,
            cursor: 0,
            query: RunPageQuery::default(),
            newer: Vec::new(),
            more: false,
            jump: None,
        }
    }

    /// The first row's number in the whole (filtered) history, from 1.
    pub fn first_row(&self) -> usize {
        self.newer.len() * usize::try_from(HISTORY_LIMIT).unwrap_or(50) + 1
    }
}

/// Run statuses the history filter (`f`) cycles through, after "all".
pub const HISTORY_STATUSES: [&str; 8] = [
    "failed",
    "timed_out",
    "skipped",
    "succeeded",
    "cancelled",
    "interrupted",
    "abandoned",
    "running",
];

#[derive(Debug, Clone)]
pub struct RunState {
    pub run_id: i64,
    /// `None` while loading; `Some(None)` when the run no longer exists.
    pub run: Option<Option<Box<RunRow>>>,
    pub scroll: usize,
    /// Pinned to the bottom like `tail -f`: new output scrolls into view.
    /// Scrolling up unpins; scrolling back to the bottom pins again. A run
    /// that was already over when the view opened starts at the top.
    pub follow: bool,
}

impl RunState {
    pub fn new(run_id: i64) -> RunState {
        RunState {
            run_id,
            run: None,
            scroll: 0,
            follow: true,
        }
    }

    /// The run is loaded and still running.
    pub fn is_running(&self) -> bool {
        matches!(&self.run, Some(Some(run)) if run.status == "running")
    }
}

#[derive(Debug, Clone, Default)]
pub struct AuditState {
    pub records: Option<Vec<AuditRecord>>,
    /// Index into [`AuditState::visible`].
    pub cursor: usize,
    /// Only this job's records (opened from a job's detail).
    pub job: Option<String>,
    /// `/` search over who, job, action, change and reason.
    pub search: String,
    /// `Some` while the search is typed.
    pub search_input: Option<Input>,
    /// The full entry under the cursor is shown (⏎).
    pub open: bool,
}

impl AuditState {
    pub fn for_job(job: Option<String>) -> AuditState {
        AuditState {
            job,
            ..AuditState::default()
        }
    }

    /// The records the search keeps, newest first.
    pub fn visible(&self) -> Vec<&AuditRecord> {
        let needle = self.search.trim().to_lowercase();
        self.records
            .iter()
            .flatten()
            .filter(|r| needle.is_empty() || audit_haystack(r).contains(&needle))
            .collect()
    }

    pub fn selected(&self) -> Option<&AuditRecord> {
        self.visible().get(self.cursor).copied()
    }
}

/// What `/` searches in an audit record, lower-cased.
fn audit_haystack(r: &AuditRecord) -> String {
    format!(
        "{} {} {} {} {} {} {}",
        r.job_name,
        r.action,
        r.os_user.as_deref().unwrap_or(""),
        r.host.as_deref().unwrap_or(""),
        r.db_role,
        crate::cli::output::audit_change(r.old.as_ref(), r.new.as_ref()),
        r.reason.as_deref().unwrap_or("")
    )
    .to_lowercase()
}

#[derive(Debug, Clone, Default)]
pub struct NodesState {
    pub nodes: Option<Vec<NodeOverview>>,
    pub cursor: usize,
}

/// The quit dialog, shown on `q` while this console's node runs jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuitState {
    /// When the operator chose to wait (the node stopped claiming then);
    /// `None` while the dialog still asks.
    pub waiting_since: Option<DateTime<Utc>>,
    /// The operator asked to stop the runs now.
    pub stopping: bool,
}

/// A run this console's own node executes, for the quit dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnRun {
    pub job: String,
    pub since: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct NotificationsState {
    pub deliveries: Option<Vec<DeliveryRow>>,
    pub cursor: usize,
}

/// Screens above the jobs table; Esc pops one.
#[derive(Debug, Clone)]
pub enum Screen {
    Detail(DetailState),
    Run(RunState),
    Audit(AuditState),
    Notifications(NotificationsState),
    Nodes(NodesState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// Everything the console knows.
#[derive(Debug, Clone)]
pub struct App {
    pub read_only: bool,
    /// Database target, never with a password.
    pub target: String,
    /// This process runs a scheduler node (not `--no-scheduler`).
    pub scheduler: bool,
    pub own_node: Option<NodeStatus>,
    pub zone: Zone,
    pub theme: Theme,
    pub thresholds: Thresholds,
    /// Database time, estimated between refreshes from this host's clock.
    pub now: DateTime<Utc>,
    /// Database clock minus this host's clock, from the last refresh.
    pub clock_offset: chrono::Duration,
    last_poll: Option<DateTime<Utc>>,
    pub conn: Conn,
    /// Database time of the data shown; `None` before the first refresh.
    pub data_at: Option<DateTime<Utc>>,
    pub jobs: Vec<Job>,
    pub health: Vec<JobHealth>,
    /// Per job (parallel to `jobs`), rebuilt only for the jobs a snapshot
    /// changes.
    derived: Vec<Derived>,
    /// The widest name in the view, in terminal cells (the name column asks
    /// for it); kept with the view so a frame never walks every job.
    pub longest_name: usize,
    /// Each job's place in natural name order (parallel to `jobs`): the
    /// sorts' tie-break compares these instead of names, and they are
    /// recomputed only when a job is added or renamed.
    name_rank: Vec<u32>,
    pub typical_ms: HashMap<i64, i64>,
    /// Jobs no live node may run.
    pub unrunnable: HashSet<i64>,
    /// Progress of running runs, by job id (`Effect::LoadProgress`).
    pub progress: HashMap<i64, RunningProgress>,
    pub nodes: Vec<NodeRow>,
    /// Indices into `jobs`: filtered and sorted.
    pub view: Vec<usize>,
    pub cursor: usize,
    /// First visible row of the table.
    pub offset: usize,
    /// The job under the cursor; the cursor follows it when rows reorder.
    pub selected: Option<i64>,
    pub filter: String,
    /// `Some` while the filter line is being edited.
    pub filter_input: Option<Input>,
    pub quick: Option<Quick>,
    pub sort: SortKey,
    pub reverse: bool,
    pub stack: Vec<Screen>,
    pub dialog: Option<Dialog>,
    pub help: bool,
    pub message: Option<Message>,
    pub width: u16,
    pub height: u16,
    pub quit: bool,
    /// `Some` while the quit dialog is open (see [`QuitState`]).
    pub quitting: Option<QuitState>,
    /// How long this console's node lets runs finish when it stops.
    pub shutdown_grace: chrono::Duration,
}

impl App {
    pub fn new(target: String, read_only: bool, scheduler: bool, now: DateTime<Utc>) -> App {
        App {
            read_only,
            target,
            scheduler,
            own_node: None,
            zone: Zone::Local,
            theme: Theme::COLOR,
            thresholds: Thresholds::default(),
            now,
            clock_offset: chrono::Duration::zero(),
            last_poll: None,
            conn: Conn::Connecting,
            data_at: None,
            jobs: Vec::new(),
            health: Vec::new(),
            derived: Vec::new(),
            longest_name: 0,
            name_rank: Vec::new(),
            typical_ms: HashMap::new(),
            unrunnable: HashSet::new(),
            progress: HashMap::new(),
            nodes: Vec::new(),
            view: Vec::new(),
            cursor: 0,
            offset: 0,
            selected: None,
            filter: String::new(),
            filter_input: None,
            quick: None,
            sort: SortKey::State,
            reverse: false,
            stack: Vec::new(),
            dialog: None,
            help: false,
            message: None,
            width: 80,
            height: 24,
            quit: false,
            quitting: None,
            shutdown_grace: chrono::Duration::seconds(30),
        }
    }

    /// Runs this console's own node executes now: from the node's count,
    /// named from the last snapshot (a run claimed since shows as unnamed).
    pub fn own_runs(&self) -> (Vec<OwnRun>, usize) {
        let Some(own) = &self.own_node else {
            return (Vec::new(), 0);
        };
        let mut named: Vec<OwnRun> = self
            .jobs
            .iter()
            .filter(|j| j.runtime.running_node_id.as_deref() == Some(own.node_id.as_str()))
            .map(|j| OwnRun {
                job: j.spec.name.clone(),
                since: j.runtime.running_since,
            })
            .collect();
        named.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.job.cmp(&b.job)));
        let unnamed = own.busy.saturating_sub(named.len());
        (named, unnamed)
    }

    /// The screen on top, as a key-map bit.
    pub fn screen(&self) -> Screens {
        match self.stack.last() {
            None => keys::JOBS,
            Some(Screen::Detail(_)) => keys::DETAIL,
            Some(Screen::Run(_)) => keys::RUN,
            Some(Screen::Audit(_)) => keys::AUDIT,
            Some(Screen::Notifications(_)) => keys::NOTIFICATIONS,
            Some(Screen::Nodes(_)) => keys::NODES,
        }
    }

    pub fn job_by_id(&self, id: i64) -> Option<(&Job, &JobHealth)> {
        let i = self.jobs.iter().position(|j| j.id == id)?;
        Some((&self.jobs[i], self.health.get(i)?))
    }

    /// The job actions apply to: the detail's job, else the selected row.
    pub fn target_job(&self) -> Option<&Job> {
        let id = self
            .stack
            .iter()
            .rev()
            .find_map(|s| match s {
                Screen::Detail(d) => Some(d.job_id),
                _ => None,
            })
            .or(self.selected)?;
        self.job_by_id(id).map(|(j, _)| j)
    }

    /// Rows of the jobs table that fit on screen: the body less the column
    /// titles and the status line (counter, markers, filter).
    pub fn table_rows(&self) -> usize {
        let chrome = HEADER_ROWS + self.footer_rows() + 1 + self.status_rows();
        usize::from(self.height.saturating_sub(chrome)).max(1)
    }

    /// The footer: the status message (wrapped, in full up to
    /// [`MESSAGE_ROWS`]) or the filter being edited, then the key hints.
    pub fn footer_rows(&self) -> u16 {
        1 + self.message_lines().len().clamp(1, MESSAGE_ROWS) as u16
    }

    /// The status message cut into screen lines.
    pub fn message_lines(&self) -> Vec<String> {
        match (&self.filter_input, &self.message) {
            (None, Some(m)) => cap_lines(
                indented(&format::one_line(&m.text), self.width),
                MESSAGE_ROWS,
            ),
            _ => Vec::new(),
        }
    }

    /// The jobs table's status area: the counter and markers, then the
    /// active filter on lines of its own, in full.
    pub fn status_rows(&self) -> u16 {
        1 + self.filter_lines().len() as u16
    }

    /// The active filter, for the status area: empty when none.
    pub fn filter_lines(&self) -> Vec<String> {
        let mut view = Vec::new();
        if let Some(q) = self.quick {
            view.push(format!("only {}", q.word()));
        }
        if !self.filter.is_empty() {
            view.push(format!("/{}", format::one_line(&self.filter)));
        }
        if view.is_empty() {
            return Vec::new();
        }
        let text = format!(
            "filter: {} · showing {} of {} jobs · esc clears",
            view.join(" "),
            self.view.len(),
            self.jobs.len()
        );
        cap_lines(indented(&text, self.width), FILTER_ROWS)
    }

    /// Primary states of the table's rows, in table order.
    pub fn view_states(&self) -> Vec<State> {
        self.view.iter().map(|&i| self.health[i].primary).collect()
    }

    /// Problem rows outside the visible window.
    pub fn hidden_problems(&self) -> scroll::Hidden {
        scroll::hidden_problems(&self.view_states(), self.offset, self.table_rows())
    }

    pub fn too_small(&self) -> bool {
        self.width < MIN_WIDTH || self.height < MIN_HEIGHT
    }

    /// Database time passed: estimate now, and say whether a poll is due.
    pub fn set_wall_clock(&mut self, wall: DateTime<Utc>) -> bool {
        self.now = wall + self.clock_offset;
        self.recompute_health();
        let due = self
            .last_poll
            .map_or(true, |last| (self.now - last).num_seconds() >= POLL_SECONDS);
        if due {
            self.last_poll = Some(self.now);
        }
        due
    }

    pub fn mark_polled(&mut self) {
        self.last_poll = Some(self.now);
    }

    /// Take a new jobs snapshot.
    pub fn set_jobs(
        &mut self,
        jobs: Vec<Job>,
        nodes: Vec<NodeRow>,
        typical_ms: HashMap<i64, i64>,
        unrunnable: HashSet<i64>,
        db_now: DateTime<Utc>,
        wall: DateTime<Utc>,
    ) {
        let first = self.data_at.is_none();
        self.clock_offset = db_now - wall;
        self.now = db_now;
        self.data_at = Some(db_now);
        self.derived = jobs.iter().map(Derived::of).collect();
        self.jobs = jobs;
        self.rank_names();
        self.take_snapshot(nodes, typical_ms, unrunnable, first);
    }

    /// Take an incremental snapshot: `changed` jobs replace (or join) the
    /// ones held, `removed` ones go. Per-job derived state (the filter's
    /// haystack) is rebuilt for the changed jobs only.
    #[allow(clippy::too_many_arguments)]
    pub fn merge_jobs(
        &mut self,
        changed: Vec<Job>,
        removed: &[i64],
        nodes: Vec<NodeRow>,
        typical_ms: HashMap<i64, i64>,
        unrunnable: HashSet<i64>,
        db_now: DateTime<Utc>,
        wall: DateTime<Utc>,
    ) {
        let first = self.data_at.is_none();
        self.clock_offset = db_now - wall;
        self.now = db_now;
        self.data_at = Some(db_now);
        if !removed.is_empty() {
            let gone: HashSet<i64> = removed.iter().copied().collect();
            let keep: Vec<bool> = self.jobs.iter().map(|j| !gone.contains(&j.id)).collect();
            let mut keep_job = keep.iter();
            self.jobs
                .retain(|_| keep_job.next().copied().unwrap_or(true));
            let mut keep_derived = keep.iter();
            self.derived
                .retain(|_| keep_derived.next().copied().unwrap_or(true));
            // What is left keeps its relative order.
            let mut keep_rank = keep.iter();
            self.name_rank
                .retain(|_| keep_rank.next().copied().unwrap_or(true));
        }
        let mut incoming: HashMap<i64, Job> = changed.into_iter().map(|j| (j.id, j)).collect();
        let mut renamed = false;
        if !incoming.is_empty() {
            for (job, derived) in self.jobs.iter_mut().zip(self.derived.iter_mut()) {
                if let Some(new) = incoming.remove(&job.id) {
                    renamed |= new.spec.name != job.spec.name;
                    *derived = Derived::of(&new);
                    *job = new;
                }
            }
            let mut added: Vec<Job> = incoming.into_values().collect();
            added.sort_by_key(|j| j.id);
            renamed |= !added.is_empty();
            for job in added {
                self.derived.push(Derived::of(&job));
                self.jobs.push(job);
            }
        }
        if renamed {
            self.rank_names();
        }
        self.take_snapshot(nodes, typical_ms, unrunnable, first);
    }

    fn take_snapshot(
        &mut self,
        nodes: Vec<NodeRow>,
        typical_ms: HashMap<i64, i64>,
        unrunnable: HashSet<i64>,
        first: bool,
    ) {
        self.nodes = nodes;
        self.typical_ms = typical_ms;
        self.unrunnable = unrunnable;
        self.recompute_health();
        // The first thing an operator sees is the row that needs them most.
        if first {
            if let Some(pos) = scroll::most_urgent(&self.view_states()) {
                self.move_cursor(pos);
            }
        }
    }

    /// The instant the table describes: now while live; while STALE, the
    /// time of the last data, so old data never raises alarms of its own.
    pub fn as_of(&self) -> DateTime<Utc> {
        match (&self.conn, self.data_at) {
            (Conn::Stale { .. }, Some(at)) => at,
            _ => self.now,
        }
    }

    /// Health depends on time: recomputed on every tick and snapshot.
    pub fn recompute_health(&mut self) {
        let now = self.as_of();
        let thresholds = self.thresholds;
        self.health = self
            .jobs
            .iter()
            .map(|j| job_health(j, now, &thresholds))
            .collect();
        self.rebuild_view();
    }

    /// Rank every job by natural name order (`name_rank`).
    fn rank_names(&mut self) {
        let mut order: Vec<usize> = (0..self.jobs.len()).collect();
        order.sort_by(|&a, &b| {
            natural::natural_cmp(&self.jobs[a].spec.name, &self.jobs[b].spec.name)
        });
        self.name_rank = vec![0; self.jobs.len()];
        for (rank, i) in order.into_iter().enumerate() {
            self.name_rank[i] = u32::try_from(rank).unwrap_or(u32::MAX);
        }
    }

    fn matches(&self, i: usize, needle: &str) -> bool {
        let h = &self.health[i];
        let quick = match self.quick {
            None => true,
            Some(Quick::Failing) => h.failing,
            Some(Quick::Overdue) => h.overdue,
            Some(Quick::Late) => h.late,
            Some(Quick::Running) => h.running,
            Some(Quick::Paused) => h.primary == State::Paused,
        };
        quick && (needle.is_empty() || self.derived[i].haystack.contains(needle))
    }

    fn compare(&self, a: usize, b: usize) -> std::cmp::Ordering {
        let (ja, jb) = (&self.jobs[a], &self.jobs[b]);
        let by_name = || self.name_rank[a].cmp(&self.name_rank[b]);
        let nulls_last = |x: Option<DateTime<Utc>>, y: Option<DateTime<Utc>>| match (x, y) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        };
        match self.sort {
            SortKey::State => self.health[a].primary.cmp(&self.health[b].primary),
            SortKey::Name => std::cmp::Ordering::Equal,
            SortKey::Next => nulls_last(ja.nextcall, jb.nextcall),
            // Most recent first.
            SortKey::Last => nulls_last(jb.runtime.last_started_at, ja.runtime.last_started_at),
            SortKey::Duration => jb
                .runtime
                .last_duration_ms
                .cmp(&ja.runtime.last_duration_ms),
            SortKey::Failures => jb.runtime.failure_streak.cmp(&ja.runtime.failure_streak),
            SortKey::Priority => ja.spec.priority.cmp(&jb.spec.priority),
        }
        .then_with(by_name)
    }

    /// Filter and sort, then put the cursor back on the selected job.
    pub fn rebuild_view(&mut self) {
        let needle = self.filter.trim().to_lowercase();
        let mut view: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| self.matches(i, &needle))
            .collect();
        view.sort_by(|&a, &b| self.compare(a, b));
        if self.reverse {
            view.reverse();
        }
        self.longest_name = view
            .iter()
            .map(|&i| self.derived[i].name_cells)
            .max()
            .unwrap_or(0);
        self.view = view;
        let found = self
            .selected
            .and_then(|id| self.view.iter().position(|&i| self.jobs[i].id == id));
        match found {
            Some(pos) => self.cursor = pos,
            None => {
                self.cursor = self.cursor.min(self.view.len().saturating_sub(1));
                self.selected = self.view.get(self.cursor).map(|&i| self.jobs[i].id);
            }
        }
        self.scroll_to_cursor();
    }

    /// Move the cursor to `pos` (clamped) and select that job.
    pub fn move_cursor(&mut self, pos: usize) {
        self.cursor = pos.min(self.view.len().saturating_sub(1));
        self.selected = self.view.get(self.cursor).map(|&i| self.jobs[i].id);
        self.scroll_to_cursor();
    }

    /// Keep the cursor on screen with the rows above it visible when they
    /// fit (see [`scroll::window_offset`]).
    pub fn scroll_to_cursor(&mut self) {
        self.offset = scroll::window_offset(self.cursor, self.view.len(), self.table_rows());
    }

    pub fn cluster(&self) -> ClusterHealth {
        ClusterHealth {
            live_nodes: self.nodes.len(),
            workers: self
                .nodes
                .iter()
                .map(|n| usize::try_from(n.workers).unwrap_or(0))
                .sum(),
            busy: self
                .nodes
                .iter()
                .map(|n| usize::try_from(n.busy).unwrap_or(0))
                .sum(),
        }
    }

    /// (running, failing, late, overdue, paused): jobs running now, and
    /// otherwise by the state their row shows, so the counts match the rows.
    pub fn counts(&self) -> [usize; 5] {
        let by_state = crate::health::count_states(&self.health);
        let of = |state: State| {
            by_state
                .iter()
                .find(|(s, _)| *s == state)
                .map_or(0, |(_, n)| *n)
        };
        let running = self.health.iter().filter(|h| h.running).count();
        [
            running,
            of(State::Failing),
            of(State::Late),
            of(State::Overdue),
            of(State::Paused),
        ]
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: false,
        });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
        });
    }
}

/// What the console derives from one job, once per version of the job.
#[derive(Debug, Clone)]
struct Derived {
    /// Lower-case "name tags command", for `/`.
    haystack: String,
    /// Terminal cells of the name as the table shows it.
    name_cells: usize,
}

impl Derived {
    fn of(j: &Job) -> Derived {
        Derived {
            haystack: format!(
                "{} {} {}",
                j.spec.name,
                j.spec.tags.join(" "),
                j.spec.command
            )
            .to_lowercase(),
            name_cells: format::cells(&format::one_line(&j.spec.name)),
        }
    }
}

/// `text` wrapped to `width` with a one-cell margin on every line.
fn indented(text: &str, width: u16) -> Vec<String> {
    format::wrap_cells(text, usize::from(width.saturating_sub(1)))
        .into_iter()
        .map(|l| format!(" {l}"))
        .collect()
}

/// At most `max` lines; a cut shows as "…" at the end of the last.
fn cap_lines(mut lines: Vec<String>, max: usize) -> Vec<String> {
    if lines.len() > max {
        lines.truncate(max);
        if let Some(last) = lines.last_mut() {
            last.pop();
            last.push('…');
        }
    }
    lines
}
