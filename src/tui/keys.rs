//! The one key map. The footer hints and the `?` help are both built from
//! `BINDINGS`, and `lookup` dispatches from it, so the three cannot drift.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What a key asks for; `update` decides what it means in the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Up,
    Down,
    Top,
    Bottom,
    PageDown,
    PageUp,
    Open,
    Back,
    Quit,
    Help,
    Filter,
    Quick(Quick),
    Sort,
    SortReverse,
    RunNow,
    Cancel,
    Pause,
    Resume,
    ToggleActive,
    EditSchedule,
    EditNext,
    EditPriority,
    Audit,
    Notifications,
    Refresh,
    OlderPage,
    NewerPage,
    HistoryStatus,
    HistoryTime,
    Nodes,
}

/// Quick filters on health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quick {
    Failing,
    Overdue,
    Late,
    Running,
    Paused,
}

impl Quick {
    pub fn word(self) -> &'static str {
        match self {
            Quick::Failing => "failing",
            Quick::Overdue => "overdue",
            Quick::Late => "late",
            Quick::Running => "running",
            Quick::Paused => "paused",
        }
    }
}

/// Which screens a binding applies to (a bit set).
pub type Screens = u8;
pub const JOBS: Screens = 1;
pub const DETAIL: Screens = 2;
pub const RUN: Screens = 4;
pub const AUDIT: Screens = 8;
pub const NOTIFICATIONS: Screens = 16;
pub const NODES: Screens = 32;
pub const ALL: Screens = JOBS | DETAIL | RUN | AUDIT | NOTIFICATIONS | NODES;

/// A key and whether Ctrl is held. Shift is folded into the character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
}

const fn ch(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: false,
    }
}
const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        ctrl: true,
    }
}
const fn code(code: KeyCode) -> Key {
    Key { code, ctrl: false }
}

pub struct Binding {
    pub keys: &'static [Key],
    /// How the keys are written in the footer and help.
    pub label: &'static str,
    /// One or two words for the footer.
    pub short: &'static str,
    pub help: &'static str,
    pub command: Command,
    pub screens: Screens,
    /// Shown in the footer (the help shows every binding).
    pub hint: bool,
    /// Changes a job: refused in read-only mode and while the data is stale.
    pub mutates: bool,
}

const fn bind(
    keys: &'static [Key],
    (label, short): (&'static str, &'static str),
    help: &'static str,
    command: Command,
    screens: Screens,
    hint: bool,
) -> Binding {
    Binding {
        keys,
        label,
        short,
        help,
        command,
        screens,
        hint,
        mutates: false,
    }
}

const fn mutation(
    keys: &'static [Key],
    (label, short): (&'static str, &'static str),
    help: &'static str,
    command: Command,
    hint: bool,
) -> Binding {
    Binding {
        keys,
        label,
        short,
        help,
        command,
        screens: JOBS | DETAIL,
        hint,
        mutates: true,
    }
}

pub static BINDINGS: &[Binding] = &[
    bind(
        &[ch('k'), code(KeyCode::Up)],
        ("↑/k", "move"),
        "move up",
        Command::Up,
        ALL,
        true,
    ),
    bind(
        &[ch('j'), code(KeyCode::Down)],
        ("↓/j", "down"),
        "move down",
        Command::Down,
        ALL,
        false,
    ),
    bind(
        &[ch('g'), code(KeyCode::Home)],
        ("g", "top"),
        "go to the top",
        Command::Top,
        ALL,
        false,
    ),
    bind(
        &[ch('G'), code(KeyCode::End)],
        ("G", "bottom"),
        "go to the bottom",
        Command::Bottom,
        ALL,
        false,
    ),
    bind(
        &[ctrl('d'), code(KeyCode::PageDown)],
        ("^d", "page"),
        "half a page down",
        Command::PageDown,
        ALL,
        false,
    ),
    bind(
        &[ctrl('u'), code(KeyCode::PageUp)],
        ("^u", "page"),
        "half a page up",
        Command::PageUp,
        ALL,
        false,
    ),
    bind(
        &[code(KeyCode::Enter)],
        ("⏎", "open"),
        "open the job / run / entry",
        Command::Open,
        JOBS | DETAIL | AUDIT,
        true,
    ),
    bind(
        &[code(KeyCode::Esc)],
        ("esc", "back"),
        "back / clear the filter",
        Command::Back,
        ALL,
        true,
    ),
    bind(
        &[ch('/')],
        ("/", "filter"),
        "filter jobs / search the audit",
        Command::Filter,
        JOBS | AUDIT,
        true,
    ),
    bind(
        &[ch('1')],
        ("1", "filter"),
        "only failing jobs (again: all)",
        Command::Quick(Quick::Failing),
        JOBS,
        false,
    ),
    bind(
        &[ch('2')],
        ("2", "filter"),
        "only overdue jobs",
        Command::Quick(Quick::Overdue),
        JOBS,
        false,
    ),
    bind(
        &[ch('3')],
        ("3", "filter"),
        "only late jobs",
        Command::Quick(Quick::Late),
        JOBS,
        false,
    ),
    bind(
        &[ch('4')],
        ("4", "filter"),
        "only running jobs",
        Command::Quick(Quick::Running),
        JOBS,
        false,
    ),
    bind(
        &[ch('5')],
        ("5", "filter"),
        "only paused jobs",
        Command::Quick(Quick::Paused),
        JOBS,
        false,
    ),
    bind(
        &[ch('s')],
        ("s", "sort"),
        "sort by the next column",
        Command::Sort,
        JOBS,
        false,
    ),
    bind(
        &[ch('S')],
        ("S", "reverse"),
        "reverse the sort",
        Command::SortReverse,
        JOBS,
        false,
    ),
    mutation(&[ch('r')], ("r", "run"), "run now", Command::RunNow, true),
    mutation(
        &[ch('x')],
        ("x", "cancel run"),
        "cancel the run",
        Command::Cancel,
        false,
    ),
    mutation(
        &[ch('p')],
        ("p", "pause"),
        "pause (reason, duration)",
        Command::Pause,
        true,
    ),
    mutation(
        &[ch('u')],
        ("u", "resume"),
        "resume",
        Command::Resume,
        false,
    ),
    mutation(
        &[ch(' ')],
        ("spc", "pause/resume"),
        "pause or resume (toggle)",
        Command::ToggleActive,
        false,
    ),
    mutation(
        &[ch('e')],
        ("e", "edit"),
        "edit the schedule",
        Command::EditSchedule,
        true,
    ),
    mutation(
        &[ch('n')],
        ("n", "next"),
        "edit the next run",
        Command::EditNext,
        false,
    ),
    mutation(
        &[ch('P')],
        ("P", "priority"),
        "change the priority",
        Command::EditPriority,
        false,
    ),
    bind(
        &[ch('a')],
        ("a", "audit"),
        "audit (of the job, in its detail)",
        Command::Audit,
        JOBS | DETAIL,
        false,
    ),
    bind(
        &[ch('m')],
        ("m", "notifications"),
        "notifications sent",
        Command::Notifications,
        JOBS | DETAIL,
        false,
    ),
    bind(
        &[ch('N')],
        ("N", "nodes"),
        "nodes and what they run",
        Command::Nodes,
        JOBS | DETAIL,
        false,
    ),
    bind(
        &[ch(']')],
        ("]", "older"),
        "older runs (history page)",
        Command::OlderPage,
        DETAIL,
        true,
    ),
    bind(
        &[ch('[')],
        ("[", "newer"),
        "newer runs (history page)",
        Command::NewerPage,
        DETAIL,
        false,
    ),
    bind(
        &[ch('f')],
        ("f", "status"),
        "history: one status at a time",
        Command::HistoryStatus,
        DETAIL,
        false,
    ),
    bind(
        &[ch('t')],
        ("t", "time"),
        "history: jump to a time",
        Command::HistoryTime,
        DETAIL,
        false,
    ),
    bind(
        &[ctrl('r')],
        ("^r", "refresh"),
        "refresh now",
        Command::Refresh,
        ALL,
        false,
    ),
    bind(&[ch('?')], ("?", "help"), "help", Command::Help, ALL, true),
    bind(
        &[ch('q'), ctrl('c')],
        ("q", "quit"),
        "quit",
        Command::Quit,
        ALL,
        true,
    ),
];

/// Normalise a terminal key: Shift is part of the character already.
pub fn key_of(event: &KeyEvent) -> Key {
    Key {
        code: event.code,
        ctrl: event.modifiers.contains(KeyModifiers::CONTROL),
    }
}

/// The binding of `event` on `screen`, if any.
pub fn lookup(screen: Screens, event: &KeyEvent) -> Option<&'static Binding> {
    let key = key_of(event);
    BINDINGS
        .iter()
        .find(|b| b.screens & screen != 0 && b.keys.contains(&key))
}

/// How a key is written in a hint: "X", "^x", "F5", "tab".
pub fn key_name(event: &KeyEvent) -> String {
    let ctrl = if event.modifiers.contains(KeyModifiers::CONTROL) {
        "^"
    } else {
        ""
    };
    let name = match event.code {
        KeyCode::Char(' ') => "space".to_string(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::F(n) => format!("F{n}"),
        KeyCode::Left => "←".to_string(),
        KeyCode::Right => "→".to_string(),
        KeyCode::BackTab => "shift-tab".to_string(),
        other => format!("{other:?}").to_lowercase(),
    };
    format!("{ctrl}{name}")
}

/// The footer hints for `screen`: (keys, short help).
pub fn hints(screen: Screens) -> impl Iterator<Item = &'static Binding> {
    BINDINGS
        .iter()
        .filter(move |b| b.hint && b.screens & screen != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_key_is_bound_twice_on_one_screen() {
        for screen in [JOBS, DETAIL, RUN, AUDIT, NOTIFICATIONS, NODES] {
            let mut seen: Vec<Key> = Vec::new();
            for b in BINDINGS.iter().filter(|b| b.screens & screen != 0) {
                for k in b.keys {
                    assert!(!seen.contains(k), "{k:?} bound twice on screen {screen}");
                    seen.push(*k);
                }
            }
        }
    }

    #[test]
    fn shift_letters_and_ctrl_are_told_apart() {
        let upper = KeyEvent::new(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(
            lookup(JOBS, &upper).map(|b| b.command),
            Some(Command::Bottom)
        );
        let ctrl_d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::CONTROL);
        assert_eq!(
            lookup(JOBS, &ctrl_d).map(|b| b.command),
            Some(Command::PageDown)
        );
        let plain_d = KeyEvent::new(KeyCode::Char('d'), KeyModifiers::NONE);
        assert!(lookup(JOBS, &plain_d).is_none());
    }
}
