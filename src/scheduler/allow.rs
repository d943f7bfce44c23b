//! The shell allow-list of a node (`--allow-shell-prefix`, `[scheduler]
//! shell_allow`): which shell commands the node may run, and how it runs them.
//!
//! An entry names a **directory**: `/opt/jobs` and `/opt/jobs/` both admit
//! programs inside `/opt/jobs/` (at any depth), never `/opt/jobsEVIL`. With a
//! list set, a command is admitted only if
//!
//! 1. it has none of the shell metacharacters ``; | & $ ` ( ) < > \`` and no
//!    newline, and its quotes (`'…'`, `"…"`) are balanced;
//! 2. its program (the first word, written without quotes) is an absolute
//!    path with no `.` or `..` segment and no glob character (`* ? [`);
//! 3. the program lies under an allowed directory, by its text and again
//!    after symlinks are resolved (checked on the node right before it
//!    starts the job).
//!
//! An admitted command is split into words like a POSIX shell would
//! (`shell-words`: quotes group words, nothing is expanded) and the program
//! is executed directly with those arguments: no shell runs, so nothing in
//! the arguments can start another program.
//!
//! Rules 1 and 2 and the textual part of 3 are also enforced by the SQL
//! function `crondeck.can_run` (migration 0007), which keeps a node from
//! claiming a run it would refuse; [`admits`] is the same rule in Rust, and
//! the tests check both on the same cases.

use std::fmt;
use std::path::PathBuf;

/// Characters that refuse a command outright under an allow-list.
pub const METACHARACTERS: &[char] = &[';', '|', '&', '$', '`', '(', ')', '<', '>', '\\', '\n'];
/// Glob characters refused in the program.
pub const GLOB: &[char] = &['*', '?', '['];

/// Why a command is refused by an allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Metacharacter(char),
    UnbalancedQuotes,
    /// No program at all.
    Empty,
    /// The program is written with quotes.
    QuotedProgram(String),
    NotAbsolute(String),
    DotSegment(String),
    Glob(String),
    /// The program is not under any allowed directory.
    NotUnder {
        program: String,
        dirs: Vec<String>,
    },
    /// The program cannot be resolved (missing, or unreadable).
    Unresolvable {
        program: String,
        error: String,
    },
    /// The program is a symlink (or under one) that leads out.
    ResolvesOutside {
        program: String,
        resolved: PathBuf,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Metacharacter('\n') => {
                f.write_str("the command has a newline (one command per job)")
            }
            Refusal::Metacharacter(c) => write!(
                f,
                "the command has the shell metacharacter `{c}` (no shell runs it)"
            ),
            Refusal::UnbalancedQuotes => f.write_str("the command has an unbalanced quote"),
            Refusal::Empty => f.write_str("the command is empty"),
            Refusal::QuotedProgram(p) => {
                write!(f, "the program {p} is quoted (write it without quotes)")
            }
            Refusal::NotAbsolute(p) => write!(f, "the program {p} is not an absolute path"),
            Refusal::DotSegment(p) => {
                write!(f, "the program {p} has a `.` or `..` path segment")
            }
            Refusal::Glob(p) => write!(f, "the program {p} has a glob character (`*?[`)"),
            Refusal::NotUnder { program, dirs } => {
                write!(f, "program {program} is not under ")?;
                let dirs: Vec<String> = dirs.iter().map(|d| format!("{d}/")).collect();
                f.write_str(&dirs.join(" or "))
            }
            Refusal::Unresolvable { program, error } => {
                write!(f, "the program {program} cannot be resolved: {error}")
            }
            Refusal::ResolvesOutside { program, resolved } => write!(
                f,
                "the program {program} resolves to {}, outside the allowed directories",
                resolved.display()
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// An allow-list entry as a directory without its trailing slashes (`/` is
/// the empty string: everything absolute).
fn dir_of(entry: &str) -> &str {
    entry.trim_end_matches('/')
}

/// Refuse entries that cannot name a directory: relative, `.`/`..`
/// segments, glob or metacharacters, empty.
pub fn validate_entry(entry: &str) -> Result<(), String> {
    let problem = if entry.trim().is_empty() {
        Some("is empty (it would allow every command)")
    } else if !entry.starts_with('/') {
        Some("is not an absolute directory")
    } else if entry.split('/').any(|s| s == "." || s == "..") {
        Some("has a `.` or `..` segment")
    } else if entry.contains(GLOB) || entry.contains(METACHARACTERS) {
        Some("has a glob or shell metacharacter")
    } else if entry.contains(['\'', '"', ' ', '\t']) {
        Some("has a quote or a space")
    } else {
        None
    };
    match problem {
        Some(p) => Err(format!("shell allow-list entry \"{entry}\" {p}")),
        None => Ok(()),
    }
}

/// Whether `'` and `"` pair up (no backslash escapes: they are refused).
fn quotes_balanced(command: &str) -> bool {
    let mut open: Option<char> = None;
    for c in command.chars() {
        match (open, c) {
            (None, '\'' | '"') => open = Some(c),
            (Some(q), c) if c == q => open = None,
            _ => {}
        }
    }
    open.is_none()
}

/// The first word as written: after leading blanks, up to the next blank.
fn program_word(command: &str) -> &str {
    let rest = command.trim_start_matches([' ', '\t']);
    rest.split([' ', '\t']).next().unwrap_or("")
}

/// The textual rule (the one `crondeck.can_run` applies too): the program of
/// an admitted command, or why it is refused. `allow` must be non-empty.
pub fn admits<'c>(command: &'c str, allow: &[String]) -> Result<&'c str, Refusal> {
    if let Some(c) = command.chars().find(|c| METACHARACTERS.contains(c)) {
        return Err(Refusal::Metacharacter(c));
    }
    if !quotes_balanced(command) {
        return Err(Refusal::UnbalancedQuotes);
    }
    let program = program_word(command);
    if program.is_empty() {
        return Err(Refusal::Empty);
    }
    if program.contains(['\'', '"']) {
        return Err(Refusal::QuotedProgram(program.into()));
    }
    if !program.starts_with('/') {
        return Err(Refusal::NotAbsolute(program.into()));
    }
    if program.split('/').any(|s| s == "." || s == "..") {
        return Err(Refusal::DotSegment(program.into()));
    }
    if program.contains(GLOB) {
        return Err(Refusal::Glob(program.into()));
    }
    let under = |dir: &str| {
        program
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty())
    };
    if allow.iter().any(|entry| under(dir_of(entry))) {
        Ok(program)
    } else {
        Err(Refusal::NotUnder {
            program: program.into(),
            dirs: allow.iter().map(|e| dir_of(e).to_owned()).collect(),
        })
    }
}

/// The full check a node makes right before it starts a job: [`admits`],
/// then the words of the command, then the program's real path (symlinks
/// resolved) must still lie under an allowed directory its text is under.
/// Returns the argv to execute directly.
pub fn argv_for(command: &str, allow: &[String]) -> Result<Vec<String>, Refusal> {
    let program = admits(command, allow)?;
    let words = shell_words::split(command).map_err(|_| Refusal::UnbalancedQuotes)?;
    // With no quote or backslash in the program, the parser's first word is
    // the program as written; anything else is a disagreement: refuse.
    if words.first().map(String::as_str) != Some(program) {
        return Err(Refusal::QuotedProgram(program.into()));
    }
    let resolved = std::fs::canonicalize(program).map_err(|e| Refusal::Unresolvable {
        program: program.into(),
        error: e.to_string(),
    })?;
    let inside = allow.iter().any(|entry| {
        let dir = dir_of(entry);
        let textually = program
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'));
        textually
            && std::fs::canonicalize(if dir.is_empty() { "/" } else { dir })
                .is_ok_and(|real| resolved.starts_with(real))
    });
    if inside {
        Ok(words)
    } else {
        Err(Refusal::ResolvesOutside {
            program: program.into(),
            resolved,
        })
    }
}

/// Why no live node would run a shell job with `command`, given the
/// allow-lists of the live shell-enabled nodes (`None` = no list: any
/// command). `None` if one of them admits it by the textual rule.
pub fn why_refused(command: &str, shell_nodes: &[Option<Vec<String>>]) -> Option<String> {
    if shell_nodes.is_empty() {
        return Some("no live node allows shell jobs (start one with --allow-shell)".into());
    }
    let mut reasons = Vec::new();
    for allow in shell_nodes {
        match allow.as_deref() {
            None | Some([]) => return None,
            Some(list) => match admits(command, list) {
                Ok(_) => return None,
                Err(refusal) => {
                    let reason = refusal.to_string();
                    if !reasons.contains(&reason) {
                        reasons.push(reason);
                    }
                }
            },
        }
    }
    Some(format!(
        "the allow-lists of the live shell nodes do not admit this command: {}",
        reasons.join("; ")
    ))
}

/// Cases both rules are tested on (this module's tests, and the SQL
/// function's in `tests/scheduler.rs`): command, allow-list, admitted.
#[doc(hidden)]
pub const CASES: &[(&str, &[&str], bool)] = &[
    ("/opt/jobs/backup", &["/opt/jobs/"], true),
    ("/opt/jobs/backup", &["/opt/jobs"], true),
    ("/opt/jobs/backup", &["/opt/jobs//"], true),
    (
        "  /opt/jobs/backup --all 'two words' \"x y\"",
        &["/opt/jobs"],
        true,
    ),
    ("/opt/jobs/sub/deeper/run", &["/opt/jobs"], true),
    ("/opt/jobs/backup", &["/srv", "/opt/jobs"], true),
    ("/usr/bin/env", &["/"], true),
    ("/opt/jobs/x; rm -rf /", &["/opt/jobs"], false),
    ("/opt/jobs/x && id", &["/opt/jobs"], false),
    ("/opt/jobs/x | sh", &["/opt/jobs"], false),
    ("/opt/jobs/x $(id)", &["/opt/jobs"], false),
    ("/opt/jobs/x `id`", &["/opt/jobs"], false),
    ("/opt/jobs/x > /etc/passwd", &["/opt/jobs"], false),
    ("/opt/jobs/x\nid", &["/opt/jobs"], false),
    ("/opt/jobs/x\\ y", &["/opt/jobs"], false),
    ("/opt/jobs/../../bin/sh -c id", &["/opt/jobs/"], false),
    ("/opt/jobs/./x", &["/opt/jobs/"], false),
    ("/opt/jobs/..", &["/opt/jobs/"], false),
    ("/opt/jobsEVIL/x", &["/opt/jobs"], false),
    ("/opt/jobsEVIL/x", &["/opt/jobs/"], false),
    ("/opt/jobs", &["/opt/jobs"], false),
    ("/opt/jobs/", &["/opt/jobs"], false),
    ("/opt/jobs/*", &["/opt/jobs"], false),
    ("/opt/jobs/b?ckup", &["/opt/jobs"], false),
    ("/opt/jobs/[a]", &["/opt/jobs"], false),
    ("/opt/job*/x", &["/opt/jobs"], false),
    ("opt/jobs/x", &["/opt/jobs"], false),
    ("sh -c /opt/jobs/x", &["/opt/jobs"], false),
    ("FOO=1 /opt/jobs/x", &["/opt/jobs"], false),
    ("'/opt/jobs/x'", &["/opt/jobs"], false),
    ("/opt/jobs/'x y'", &["/opt/jobs"], false),
    ("\"/opt/jobs/x", &["/opt/jobs"], false),
    ("/opt/jobs/x 'unbalanced", &["/opt/jobs"], false),
    ("", &["/opt/jobs"], false),
    ("   ", &["/opt/jobs"], false),
    ("~/x", &["/opt/jobs"], false),
    ("\t/opt/jobs/x\targ", &["/opt/jobs"], true),
];

#[cfg(test)]
mod tests;
