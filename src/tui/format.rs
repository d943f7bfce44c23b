//! Text helpers shared by the views: the display zone, short times and
//! durations, and sanitising text that came from jobs (their output, errors,
//! descriptions) so no control or escape sequence ever reaches the terminal.

use chrono::{DateTime, Utc};

use crate::timespec::{self, TimeSpecError};

/// The zone times are shown in. Drawing takes it as an input, so snapshots
/// do not depend on where the tests run (they use `Utc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Utc,
    Local,
}

impl Zone {
    /// `at` formatted with a chrono format string in this zone.
    pub fn format(self, at: DateTime<Utc>, fmt: &str) -> String {
        match self {
            Zone::Utc => at.format(fmt).to_string(),
            Zone::Local => at.with_timezone(&chrono::Local).format(fmt).to_string(),
        }
    }

    /// "2026-03-02 10:00:00".
    pub fn datetime(self, at: DateTime<Utc>) -> String {
        self.format(at, "%Y-%m-%d %H:%M:%S")
    }

    /// What an operator typed for "when" ("now", "+15m", a time in this zone).
    pub fn parse_when(
        self,
        input: &str,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, TimeSpecError> {
        match self {
            Zone::Utc => timespec::parse_when(input, now, &Utc),
            Zone::Local => timespec::parse_when(input, now, &chrono::Local),
        }
    }
}

/// "in 4m" / "4m ago" / "-".
pub fn relative(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    at.map_or_else(|| "-".to_string(), |t| timespec::format_relative(t, now))
}

/// "late 2m" for a tick in the past, "in 4m" for one ahead (SPEC §5).
pub fn next_run(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "-".to_string(),
        Some(t) if t < now - chrono::Duration::seconds(1) => {
            format!("late {}", timespec::format_duration_short(now - t))
        }
        Some(t) => timespec::format_relative(t, now),
    }
}

/// A schedule in a table cell: "every 1h 30m", "every 1 month",
/// "0 9 * * MON Europe/Paris", "manual".
pub fn short_schedule(schedule: &crate::schedule::Schedule) -> String {
    use crate::schedule::Schedule;
    match schedule {
        Schedule::Every(i) => match i.fixed_duration() {
            Some(d) => format!("every {}", timespec::format_duration_short(d)),
            None => schedule.describe(),
        },
        other => other.to_string(),
    }
}

/// The last result in a few characters: "succeeded", "failed exit 3",
/// "failed SQL 22012", "timed_out sig 9".
pub fn short_result(rt: &crate::job::JobRuntime) -> String {
    let Some(status) = &rt.last_status else {
        return "-".to_string();
    };
    if let Some(code) = rt.last_exit_code.filter(|c| *c != 0) {
        format!("{status} exit {code}")
    } else if let Some(signal) = rt.last_signal {
        format!("{status} sig {signal}")
    } else if let Some(state) = &rt.last_sqlstate {
        format!("{status} SQL {}", one_line(state))
    } else {
        status.clone()
    }
}

/// Milliseconds as "850ms", "12s", "1m 5s".
pub fn millis(ms: i64) -> String {
    if ms.abs() < 1000 {
        format!("{ms}ms")
    } else {
        timespec::format_duration_short(chrono::Duration::milliseconds(ms))
    }
}

pub fn millis_or_dash(ms: Option<i64>) -> String {
    ms.map_or_else(|| "-".to_string(), millis)
}

/// A span of time in its largest unit, for narrow table cells: "18s",
/// "2m", "3h", "6d" (rounded down; the detail view has the exact time).
pub fn compact(d: chrono::Duration) -> String {
    let secs = d.num_seconds().unsigned_abs();
    let sign = if d < chrono::Duration::zero() {
        "-"
    } else {
        ""
    };
    const UNITS: [(u64, &str); 3] = [(86_400, "d"), (3_600, "h"), (60, "m")];
    for (size, name) in UNITS {
        if secs >= size {
            return format!("{sign}{}{name}", secs / size);
        }
    }
    format!("{sign}{secs}s")
}

/// Milliseconds compactly: "850ms", "1.2s", "25s", "2m", "3h".
pub fn compact_millis(ms: i64) -> String {
    match ms.abs() {
        0..=999 => format!("{ms}ms"),
        1000..=9999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => compact(chrono::Duration::milliseconds(ms)),
    }
}

/// How long ago, compactly: "20m", "now" within a second, "-" for never.
pub fn compact_ago(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "-".to_string(),
        Some(t) if (now - t).abs() < chrono::Duration::seconds(1) => "now".to_string(),
        Some(t) => compact(now - t),
    }
}

/// The next tick compactly: "in 5s", "late 15m", "in 6d", "-".
pub fn compact_next(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match at {
        None => "-".to_string(),
        Some(t) if t < now - chrono::Duration::seconds(1) => format!("late {}", compact(now - t)),
        Some(t) if t - now < chrono::Duration::seconds(1) => "now".to_string(),
        Some(t) => format!("in {}", compact(t - now)),
    }
}

/// The width of `text` in terminal cells.
pub fn cells(text: &str) -> usize {
    ratatui::text::Span::raw(text).width()
}

fn char_cells(c: char) -> usize {
    let mut buf = [0u8; 4];
    cells(c.encode_utf8(&mut buf))
}

/// `text` cut into lines of at most `width` cells, at spaces where it can
/// (the space is dropped), inside a word longer than a line where it must:
/// messages and filters are shown in full, never cut off.
pub fn wrap_cells(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut used = 0;
    for (k, word) in text.split(' ').enumerate() {
        if k > 0 {
            let w = cells(word);
            if used + 1 + w <= width {
                line.push(' ');
                line.push_str(word);
                used += 1 + w;
                continue;
            }
            lines.push(std::mem::take(&mut line));
            used = 0;
        }
        for c in word.chars() {
            let cw = char_cells(c);
            if used + cw > width {
                lines.push(std::mem::take(&mut line));
                used = 0;
            }
            used += cw;
            line.push(c);
        }
    }
    lines.push(line);
    lines
}

/// `text` in at most `width` cells, cut in the middle with "…" so both
/// ends stay readable: `billing-export-eu` and `billing-export-us` in 12
/// cells are `billin…rt-eu` and `billin…rt-us`, not two `billing-expor`.
pub fn ellipsize_middle(text: &str, width: usize) -> String {
    if cells(text) <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let room = width - 1;
    let tail_room = room / 2;
    let head_room = room - tail_room;
    let mut head = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = char_cells(c);
        if used + w > head_room {
            break;
        }
        used += w;
        head.push(c);
    }
    let mut tail: Vec<char> = Vec::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = char_cells(c);
        if used + w > tail_room {
            break;
        }
        used += w;
        tail.push(c);
    }
    tail.reverse();
    format!("{head}…{}", tail.into_iter().collect::<String>())
}

/// Text from a job (output, error, description) made safe for the screen,
/// by the one sanitiser ([`crate::text`]): escape sequences, control
/// characters, bidi overrides and zero-width characters are shown escaped
/// (`\e[31m`, `\u{202e}`), tabs become spaces, line breaks are kept. Nothing
/// a job prints can move the cursor, change colours or retitle the terminal.
pub fn sanitize(text: &str) -> String {
    crate::text::block(text).replace('\t', "    ")
}

/// One line of job text for a table cell: sanitised, line breaks shown as ⏎.
pub fn one_line(text: &str) -> String {
    sanitize(text).replace('\n', " ⏎ ")
}

/// A JSON value compactly, for audit old → new: strings without quotes.
pub fn json_short(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// A progress bar `width` cells wide, in eighths of a cell: `███▌░░░░`.
pub fn bar(fraction: f64, width: usize) -> String {
    const PARTS: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (fraction.clamp(0.0, 1.0) * (width * 8) as f64).floor() as usize;
    let (full, part) = (eighths / 8, eighths % 8);
    let mut out = "█".repeat(full);
    if full < width {
        if part > 0 {
            out.push(PARTS[part]);
        } else {
            out.push('░');
        }
        out.push_str(&"░".repeat(width - full - 1));
    }
    out
}

/// A running job's progress in `width` columns (at least 12): a bar, the
/// percentage and the time left at its pace so far (`██▌░░ 40% 3m`), or
/// the count when the job gives no total (`#4000 2m`).
pub fn progress_cell(
    progress: crate::db::runs::Progress,
    estimated_end: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    width: usize,
) -> String {
    let left = estimated_end.map(|end| compact((end - now).max(chrono::Duration::zero())));
    match progress.fraction() {
        Some(f) => {
            let pct = format!("{:.0}%", (f * 100.0).floor());
            let tail = match &left {
                Some(left) => format!(" {pct} {left}"),
                None => format!(" {pct}"),
            };
            let bar_width = width.saturating_sub(tail.chars().count()).clamp(3, 10);
            format!("{}{tail}", bar(f, bar_width))
        }
        None => format!("#{}", progress.done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        let text = "\x1b[31mred\x1b[0m\r\n\x07bell\u{9b}2J\tend\u{202e}rtl";
        let safe = sanitize(text);
        assert_eq!(
            safe,
            "\\e[31mred\\e[0m\\r\n\\x07bell\\x9b2J    end\\u{202e}rtl"
        );
        assert!(!safe
            .chars()
            .any(|c| crate::text::is_hostile(c) && c != '\n'));
        assert_eq!(one_line("a\u{2067}b\nc"), "a\\u{2067}b ⏎ c");
    }

    #[test]
    fn next_run_says_late_for_past_ticks() {
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        assert_eq!(
            next_run(Some(now - chrono::Duration::seconds(120)), now),
            "late 2m"
        );
        assert_eq!(
            next_run(Some(now + chrono::Duration::seconds(240)), now),
            "in 4m"
        );
        assert_eq!(next_run(None, now), "-");
        assert_eq!(millis(850), "850ms");
        assert_eq!(millis(65_000), "1m 5s");
    }

    #[test]
    fn compact_times_keep_their_largest_unit() {
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        let s = chrono::Duration::seconds;
        assert_eq!(compact(s(18)), "18s");
        assert_eq!(compact(s(150)), "2m");
        assert_eq!(compact(s(3 * 3600 + 59 * 60)), "3h");
        assert_eq!(compact(s(6 * 86_400 + 22 * 3600)), "6d");
        assert_eq!(compact_ago(Some(now - s(62 * 60)), now), "1h");
        assert_eq!(compact_ago(None, now), "-");
        assert_eq!(compact_next(Some(now - s(15 * 60)), now), "late 15m");
        assert_eq!(compact_next(Some(now + s(5)), now), "in 5s");
        assert_eq!(compact_next(Some(now), now), "now");
        assert_eq!(compact_millis(850), "850ms");
        assert_eq!(compact_millis(1200), "1.2s");
        assert_eq!(compact_millis(25_000), "25s");
        assert_eq!(compact_millis(65_000), "1m");
    }

    #[test]
    fn wrapping_keeps_every_character() {
        let text = "the database connection is lost (data is STALE): changes are blocked";
        let lines = wrap_cells(text, 20);
        assert_eq!(lines.join(" "), text);
        assert!(lines.iter().all(|l| cells(l) <= 20), "{lines:?}");
        assert_eq!(lines[0], "the database");
        assert_eq!(wrap_cells("", 10), vec![String::new()]);
        assert_eq!(wrap_cells(" ab cd", 4), vec![" ab", "cd"]);
        // A word longer than a line is split inside.
        assert_eq!(wrap_cells("abcdefgh ij", 3), vec!["abc", "def", "gh", "ij"]);
    }

    #[test]
    fn middle_ellipsis_keeps_both_ends_and_the_width() {
        assert_eq!(ellipsize_middle("billing-export-eu", 12), "billin…rt-eu");
        assert_eq!(ellipsize_middle("billing-export-us", 12), "billin…rt-us");
        assert_eq!(ellipsize_middle("short", 12), "short");
        assert_eq!(ellipsize_middle("exactly-twelve", 14), "exactly-twelve");
        assert_eq!(ellipsize_middle("abcdef", 1), "…");
        assert_eq!(ellipsize_middle("abcdef", 0), "");
        // Wide characters count two cells; the result never overflows.
        let wide = ellipsize_middle("請求書エクスポート", 9);
        assert!(cells(&wide) <= 9, "{wide}");
        assert!(wide.contains('…'));
        for w in 1..20 {
            assert!(cells(&ellipsize_middle("nightly-report-archive", w)) <= w);
        }
    }
}
