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
}
