//! Times and durations as operators type them, and compact formatting back.
//!
//! This module owns the text forms of *when* (`parse_when`), *how long*
//! (`parse_duration`, `parse_timeout`) and their short display
//! (`format_duration_short`, `format_relative`). It is pure: the current
//! instant and the time zone are always parameters, never read from the clock.
//!
//! It also owns the span grammar shared with [`crate::schedule`] intervals:
//! one or more `<integer><unit>` parts, optionally separated by spaces
//! (`90s`, `1h 30m`, `1h30m`, `2 weeks`). Only whole, non-negative integers
//! are accepted; fractions (`1.5h`), signs inside the text and sub-second
//! units (`ms`) are rejected with a message that says so.
//!
//! Local times: an absolute time without an offset is read in the zone the
//! caller passes. A local time inside a DST gap (the clock skips it) is an
//! error; an ambiguous local time inside a DST overlap (the clock shows it
//! twice) resolves to the *earlier* instant, the first time the wall clock
//! reads it.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use std::time::Duration;

const WHEN_EXPECTED: &str = r#"expected "now", "+15m" or a local time like "2026-12-01 08:00""#;
const DURATION_EXPECTED: &str = r#"expected e.g. "90s", "15m", "1h 30m" or "2 weeks""#;

/// Why an operator-typed time or duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeSpecError {
    /// The text is not a time this module understands.
    #[error("invalid time \"{input}\": {reason} ({WHEN_EXPECTED})")]
    InvalidWhen { input: String, reason: String },
    /// The local time falls in a DST gap: the wall clock never shows it.
    #[error(
        "invalid time \"{input}\": that local time does not exist in the time zone \
         (the clock skips it at a daylight-saving change); pick a time outside the gap"
    )]
    NonexistentLocalTime { input: String },
    /// The text is not a positive duration.
    #[error("invalid duration \"{input}\": {reason} ({DURATION_EXPECTED})")]
    InvalidDuration { input: String, reason: String },
    /// The text is not a timeout (a duration or "none").
    #[error(
        "invalid timeout \"{input}\": {reason} (expected a duration like \"30m\" or \"2h\", \
         or \"none\" for no timeout)"
    )]
    InvalidTimeout { input: String, reason: String },
}

/// The total of a span text such as `1h 30m`: fixed seconds and calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Spans {
    pub seconds: u64,
    pub months: u64,
}

/// What is wrong with a span text; the callers wrap it with their own context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SpanError {
    #[error("the text is empty")]
    Empty,
    #[error("negative values are not allowed")]
    Negative,
    #[error("fractional values are not supported (use a smaller unit, e.g. \"90m\" rather than \"1.5h\")")]
    Fraction,
    #[error("expected a number, found \"{0}\"")]
    ExpectedNumber(String),
    #[error("the number {0} has no unit")]
    MissingUnit(String),
    #[error("unknown unit \"{0}\"")]
    UnknownUnit(String),
    #[error("sub-second units like \"{0}\" are not supported; the smallest unit is seconds")]
    SubSecond(String),
    #[error("the value is too large")]
    Overflow,
    #[error("calendar months cannot be combined with other units")]
    MixedMonths,
}

/// Seconds per unit word, or `None` for calendar months; errors for the rest.
pub(crate) fn unit_seconds(word: &str) -> Result<Option<u64>, SpanError> {
    Ok(Some(match word {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "wk" | "wks" | "week" | "weeks" => 604_800,
        "mo" | "mon" | "mos" | "month" | "months" => return Ok(None),
        "ms" | "us" | "µs" | "ns" | "msec" | "millisecond" | "milliseconds" | "microsecond"
        | "microseconds" | "nanosecond" | "nanoseconds" => {
            return Err(SpanError::SubSecond(word.to_string()))
        }
        _ => return Err(SpanError::UnknownUnit(word.to_string())),
    }))
}

/// Parses `<int><unit>` parts (spaces optional) into a total. Years count as
/// 12 calendar months. Months may not mix with fixed units.
pub(crate) fn parse_spans(input: &str) -> Result<Spans, SpanError> {
    let text = input.trim().to_lowercase();
    if text.is_empty() {
        return Err(SpanError::Empty);
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut total = Spans::default();
    let (mut used_months, mut used_fixed) = (false, false);
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        if chars[i] == '-' {
            return Err(SpanError::Negative);
        }
        let start = i;
        while i < chars.len() && chars[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            let found: String = chars[i..]
                .iter()
                .take_while(|c| !c.is_whitespace())
                .collect();
            return Err(SpanError::ExpectedNumber(found));
        }
        let digits: String = chars[start..i].iter().collect();
        if i < chars.len() && (chars[i] == '.' || chars[i] == ',') {
            return Err(SpanError::Fraction);
        }
        let value: u64 = digits.parse().map_err(|_| SpanError::Overflow)?;
        skip_ws(&mut i);
        let ustart = i;
        while i < chars.len() && (chars[i].is_alphabetic()) {
            i += 1;
        }
        if ustart == i {
            return Err(SpanError::MissingUnit(digits));
        }
        let word: String = chars[ustart..i].iter().collect();
        let (seconds, months) = match word.as_str() {
            "y" | "yr" | "yrs" | "year" | "years" => {
                (0, value.checked_mul(12).ok_or(SpanError::Overflow)?)
            }
            w => match unit_seconds(w)? {
                Some(per) => (value.checked_mul(per).ok_or(SpanError::Overflow)?, 0),
                None => (0, value),
            },
        };
        if uses_fixed(&word) {
            used_fixed = true;
        } else {
            used_months = true;
        }
        total.seconds = total
            .seconds
            .checked_add(seconds)
            .ok_or(SpanError::Overflow)?;
        total.months = total
            .months
            .checked_add(months)
            .ok_or(SpanError::Overflow)?;
        // Mixing is about units, not values: "0 months 2d" is refused too.
        if used_months && used_fixed {
            return Err(SpanError::MixedMonths);
        }
    }
    Ok(total)
}

fn uses_fixed(word: &str) -> bool {
    matches!(unit_seconds(word), Ok(Some(_)))
}

/// Parses a positive fixed duration: `"2h"`, `"90m"`, `"1h 30m"`, `"2 weeks"`.
pub fn parse_duration(input: &str) -> Result<Duration, TimeSpecError> {
    let fail = |reason: String| TimeSpecError::InvalidDuration {
        input: input.trim().to_string(),
        reason,
    };
    let spans = parse_spans(input).map_err(|e| fail(e.to_string()))?;
    if spans.months > 0 {
        return Err(fail(
            "months are not a fixed length; use days or weeks".to_string(),
        ));
    }
    if spans.seconds == 0 {
        return Err(fail("the duration must be positive".to_string()));
    }
    Ok(Duration::from_secs(spans.seconds))
}

/// Parses a timeout: a duration, or `"none"` for an explicit "no timeout".
pub fn parse_timeout(input: &str) -> Result<Option<Duration>, TimeSpecError> {
    if input.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_duration(input).map(Some).map_err(|e| match e {
        TimeSpecError::InvalidDuration { input, reason } => {
            TimeSpecError::InvalidTimeout { input, reason }
        }
        other => other,
    })
}

/// Parses when a job should run next. See the module doc for DST handling.
///
/// Accepted: `now`; `+<duration>` (relative to `now`); `YYYY-MM-DD HH:MM[:SS]`
/// (also with `T`); `YYYY-MM-DD` (local midnight); `HH:MM[:SS]` (today in
/// `tz`, even if already past); RFC 3339 with an offset. Past times are not
/// refused here — the caller decides — but `-15m` is.
pub fn parse_when<Z: TimeZone>(
    input: &str,
    now: DateTime<Utc>,
    tz: &Z,
) -> Result<DateTime<Utc>, TimeSpecError> {
    let text = input.trim();
    let fail = |reason: &str| TimeSpecError::InvalidWhen {
        input: text.to_string(),
        reason: reason.to_string(),
    };
    if text.is_empty() {
        return Err(fail("the text is empty"));
    }
    if text.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(rest) = text.strip_prefix('+') {
        let d = parse_duration(rest).map_err(|e| match e {
            TimeSpecError::InvalidDuration { reason, .. } => fail(&reason),
            other => other,
        })?;
        return chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(|| fail("the time is too far in the future"));
    }
    if text.starts_with('-') {
        return Err(fail("relative times must be in the future (use \"+15m\")"));
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(text) {
        return Ok(dt.with_timezone(&Utc));
    }
    let naive = parse_local(text, now, tz).ok_or_else(|| fail("unrecognised format"))?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok(dt.with_timezone(&Utc)),
        // DST overlap: the first time the wall clock shows it.
        LocalResult::Ambiguous(earlier, _) => Ok(earlier.with_timezone(&Utc)),
        LocalResult::None => Err(TimeSpecError::NonexistentLocalTime {
            input: text.to_string(),
        }),
    }
}

/// The wall-clock forms, as a naive local date-time.
fn parse_local<Z: TimeZone>(text: &str, now: DateTime<Utc>, tz: &Z) -> Option<NaiveDateTime> {
    const DATETIME: [&str; 4] = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ];
    if let Some(dt) = DATETIME
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    {
        return Some(dt);
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Some(date.and_time(NaiveTime::MIN));
    }
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S")
        .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
        .ok()?;
    Some(now.with_timezone(tz).date_naive().and_time(time))
}

/// Compact duration: at most two adjacent units, rounded down (`"1h 30m"`,
/// `"45s"`, `"2d 3h"`, `"0s"`). Negative durations get a leading `-`.
pub fn format_duration_short(d: chrono::Duration) -> String {
    let sign = if d < chrono::Duration::zero() {
        "-"
    } else {
        ""
    };
    let secs = d.num_seconds().unsigned_abs();
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    for (i, &(size, name)) in UNITS.iter().enumerate() {
        if secs >= size {
            let mut out = format!("{sign}{}{name}", secs / size);
            if let Some(&(next, next_name)) = UNITS.get(i + 1) {
                let rest = (secs % size) / next;
                if rest > 0 {
                    out.push_str(&format!(" {rest}{next_name}"));
                }
            }
            return out;
        }
    }
    "0s".to_string()
}

/// Relative time for tables: `"in 4m"`, `"4m ago"`, or `"now"` within a second.
pub fn format_relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = t.signed_duration_since(now);
    if d.abs() < chrono::Duration::seconds(1) {
        "now".to_string()
    } else if d > chrono::Duration::zero() {
        format!("in {}", format_duration_short(d))
    } else {
        format!("{} ago", format_duration_short(-d))
    }
}

#[cfg(test)]
mod tests;
