//! Job schedules: parsing what operators type, canonical text for storage
//! and round-trips, and the arithmetic that decides a job's next tick.
//!
//! A schedule is `every N unit`, a cron expression in an IANA zone, or
//! `manual` (never fires by itself). All results are UTC instants.
//!
//! # Intervals
//! Fixed units (seconds … weeks) are exact UTC durations: a day is 86 400 s,
//! a week 7 days, whatever the local clock does. Mixed input (`1h 30m`) is
//! normalised to the largest unit that divides the total exactly
//! (5 400 s → 90 minutes, 1 209 600 s → 2 weeks); `Interval::new` does the
//! same, so equal intervals compare equal.
//!
//! Months are calendar months on the UTC date, clamped to the end of the
//! month: 2024-01-31 + 1 month = 2024-02-29, 2023-01-31 → 2023-02-28. Only
//! the next tick is stored, so each step is taken from the previous slot and
//! a clamp is permanent (Jan 31 → Feb 29 → Mar 29 …), as with Odoo's
//! `relativedelta`. Years are accepted as 12 months. Months cannot be
//! mixed with fixed units. Zero, negative, fractional and sub-second values
//! are refused, as are intervals over 24 855 days (`i32::MAX` seconds, so
//! every count fits the database column) or 1 200 months.
//!
//! # Cron and DST
//! Expressions have 5 fields, or 6 with a leading seconds field (croner
//! supports it); `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly` are
//! accepted; a year field is not. They are evaluated on the wall clock of
//! the zone (UTC when none is given) with croner's DST rules:
//! - a *fixed-time* expression (one value each for second, minute and hour,
//!   e.g. `30 2 * * *`) whose time falls in a spring-forward gap fires at the
//!   first instant after the gap (03:00 CEST on 2026-03-29 in Europe/Paris);
//!   in a fall-back overlap it fires once, at the earlier instant. So such an
//!   expression fires at most once per local day, and never skips one.
//! - any other expression (wildcards, steps, lists, ranges in the time
//!   fields, e.g. `*/30 * * * *`) skips wall times in a gap and fires at both
//!   instants of a repeated wall time: it keeps its real-time cadence.
//!
//! # Advancing (SPEC §3.3)
//! After the tick scheduled at `tick` is claimed at database time `now`, the
//! next tick is the first slot strictly after `max(now, tick)`, stepping from
//! `tick` so that no drift accumulates. `missed` counts the slots in
//! `(tick, max(now, tick)]` — passed over and coalesced into this run; the
//! claimed `tick` itself is not counted. Clock skew (`now < tick`) therefore
//! gives `next_after(tick)` and `missed == 0`. Fixed units are O(1); months
//! step with at most a few hundred iterations before jumping arithmetically;
//! cron counts at most [`MAX_COUNTED_MISSES`] and reports that cap.

mod cron;

pub use cron::CronSchedule;

use crate::timespec::{self, SpanError};
use chrono::{DateTime, Datelike, Duration, Months, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// Cron `missed` counts stop here; the next tick is still exact.
pub const MAX_COUNTED_MISSES: u64 = 100_000;
/// The longest accepted interval, in months (100 years) …
const MAX_MONTHS: u64 = 1_200;
/// … and in seconds (about 68 years): any count then fits the `i32`
/// database column, and arithmetic stays inside chrono's range.
const MAX_SECONDS: u64 = i32::MAX as u64;

const EXPECTED: &str =
    r#"expected e.g. "15m", "1h 30m", "every 2 weeks", "0 9 * * MON Europe/Paris" or "manual""#;

/// Why a schedule was refused. Display reads as a sentence for operators.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not a schedule: says what is wrong, then what was expected.
    #[error("invalid schedule \"{input}\": {reason} ({EXPECTED})")]
    Invalid { input: String, reason: String },
    /// A zone name chrono-tz does not know.
    #[error("unknown time zone \"{0}\" (expected an IANA name like \"Europe/Paris\" or \"UTC\")")]
    UnknownTimeZone(String),
    /// croner refused the expression; `message` is croner's text.
    #[error(
        "invalid cron expression \"{expr}\": {message} (expected 5 fields \
         \"minute hour day-of-month month day-of-week\", optionally after a seconds \
         field, then an optional time zone, e.g. \"0 9 * * MON Europe/Paris\")"
    )]
    InvalidCron { expr: String, message: String },
    /// An interval unit word that is not one of the six units.
    #[error(
        "unknown interval unit \"{0}\" (expected seconds, minutes, hours, days, weeks or months)"
    )]
    UnknownUnit(String),
    /// `--cron "… Zone"` and `--tz` name different zones.
    #[error(
        "the cron expression names the time zone {in_expr} but --tz says {tz}; \
         give the zone once (either at the end of --cron or with --tz)"
    )]
    ZoneConflict { in_expr: String, tz: String },
    /// A database row whose columns do not form a schedule.
    #[error("invalid stored schedule: {0}")]
    InvalidStored(String),
}

/// The unit of an `every` interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
}

impl Unit {
    /// The storage and display word: `"seconds"` … `"months"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Minutes => "minutes",
            Unit::Hours => "hours",
            Unit::Days => "days",
            Unit::Weeks => "weeks",
            Unit::Months => "months",
        }
    }

    /// Length in seconds; `None` for calendar months.
    pub fn seconds(self) -> Option<u64> {
        match self {
            Unit::Seconds => Some(1),
            Unit::Minutes => Some(60),
            Unit::Hours => Some(3_600),
            Unit::Days => Some(86_400),
            Unit::Weeks => Some(604_800),
            Unit::Months => None,
        }
    }

    fn singular(self) -> &'static str {
        self.as_str().trim_end_matches('s')
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Unit {
    type Err = ScheduleError;
    /// Accepts the storage words and the abbreviations the parser knows.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let word = s.trim().to_lowercase();
        let unit = match timespec::unit_seconds(&word) {
            Ok(None) => Some(Unit::Months),
            Ok(Some(secs)) => [
                Unit::Seconds,
                Unit::Minutes,
                Unit::Hours,
                Unit::Days,
                Unit::Weeks,
            ]
            .into_iter()
            .find(|u| u.seconds() == Some(secs)),
            Err(_) => None,
        };
        unit.ok_or_else(|| ScheduleError::UnknownUnit(s.to_string()))
    }
}

/// `count` × `unit`, `count > 0`, normalised (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval {
    pub count: u32,
    pub unit: Unit,
}

impl Interval {
    /// Validates and normalises: `Interval::new(120, Minutes)` is 2 hours.
    pub fn new(count: u32, unit: Unit) -> Result<Interval, ScheduleError> {
        let input = format!("every {count} {unit}");
        match unit.seconds() {
            None => Self::from_months(u64::from(count)),
            Some(per) => Self::from_seconds(u64::from(count) * per),
        }
        .map_err(|reason| ScheduleError::Invalid { input, reason })
    }

    /// The largest unit dividing `total` seconds exactly.
    pub(crate) fn from_seconds(total: u64) -> Result<Interval, String> {
        if total == 0 {
            return Err("the interval must be positive".to_string());
        }
        if total > MAX_SECONDS {
            return Err("the interval is too long (at most 24855 days)".to_string());
        }
        let unit = [
            Unit::Weeks,
            Unit::Days,
            Unit::Hours,
            Unit::Minutes,
            Unit::Seconds,
        ]
        .into_iter()
        .find(|u| u.seconds().is_some_and(|s| total % s == 0))
        .unwrap_or(Unit::Seconds);
        let per = unit.seconds().unwrap_or(1);
        let count = u32::try_from(total / per).map_err(|_| "the interval is too long")?;
        Ok(Interval { count, unit })
    }

    pub(crate) fn from_months(months: u64) -> Result<Interval, String> {
        match months {
            0 => Err("the interval must be positive".to_string()),
            m if m > MAX_MONTHS => {
                Err("the interval is too long (at most 1200 months)".to_string())
            }
            m => Ok(Interval {
                count: m as u32, // m <= 1200
                unit: Unit::Months,
            }),
        }
    }

    /// Exact length for fixed units; `None` for months or a zero count.
    pub fn fixed_duration(&self) -> Option<Duration> {
        let secs = u64::from(self.count).checked_mul(self.unit.seconds()?)?;
        Duration::try_seconds(i64::try_from(secs).ok()?).filter(|d| *d > Duration::zero())
    }

    /// `t` plus `k` intervals (months clamp at the end of the month).
    fn add(&self, t: DateTime<Utc>, k: u64) -> Option<DateTime<Utc>> {
        match self.fixed_duration() {
            Some(d) => {
                let secs = d.num_seconds().checked_mul(i64::try_from(k).ok()?)?;
                t.checked_add_signed(Duration::try_seconds(secs)?)
            }
            None => {
                let months = u32::try_from(u64::from(self.count).checked_mul(k)?).ok()?;
                (months > 0).then_some(())?;
                t.checked_add_months(Months::new(months))
            }
        }
    }
}

/// The result of [`Schedule::advance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// The job's next tick: strictly after both `now` and the claimed tick.
    pub next: DateTime<Utc>,
    /// Slots in `(tick, max(now, tick)]` passed over (cron: capped).
    pub missed: u64,
}

/// When a job fires by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Every(Interval),
    Cron(CronSchedule),
    Manual,
}

impl Schedule {
    /// Parses operator text; see the module doc for the accepted forms.
    pub fn parse(input: &str) -> Result<Schedule, ScheduleError> {
        let text = input.trim();
        let invalid = |reason: String| ScheduleError::Invalid {
            input: text.to_string(),
            reason,
        };
        if text.is_empty() {
            return Err(invalid("the schedule is empty".to_string()));
        }
        if text.eq_ignore_ascii_case("manual") {
            return Ok(Schedule::Manual);
        }
        let first = text.split_whitespace().next().unwrap_or_default();
        if first.eq_ignore_ascii_case("cron") {
            return Self::parse_cron(text[first.len()..].trim());
        }
        let (interval_text, forced) = match first.eq_ignore_ascii_case("every") {
            true => (text[first.len()..].trim(), true),
            false => (text, false),
        };
        let interval = match timespec::parse_spans(interval_text) {
            Ok(spans) if spans.months > 0 => Interval::from_months(spans.months),
            Ok(spans) => Interval::from_seconds(spans.seconds),
            Err(SpanError::Empty) => Err("nothing follows \"every\"".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match interval {
            Ok(i) => Ok(Schedule::Every(i)),
            Err(reason) if forced || !looks_like_cron(text) => Err(invalid(reason)),
            Err(_) => Self::parse_cron(text),
        }
    }

    /// `<cron fields> [zone]`: a trailing token that is a zone is the zone.
    fn parse_cron(text: &str) -> Result<Schedule, ScheduleError> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        match tokens.split_last() {
            Some((last, rest)) if !rest.is_empty() && looks_like_zone(last) => {
                Self::cron(&rest.join(" "), last)
            }
            _ => Self::cron(text, "UTC"),
        }
    }

    /// The CLI's `--cron EXPR [--tz ZONE]`: the expression may end with its
    /// zone, as the console and jobs files accept it; a `--tz` naming another
    /// zone is refused, the same zone twice is accepted. No zone at all is UTC.
    pub fn cron_with_zone(expr: &str, tz: Option<&str>) -> Result<Schedule, ScheduleError> {
        let tokens: Vec<&str> = expr.split_whitespace().collect();
        let Some((last, rest)) = tokens
            .split_last()
            .filter(|(last, rest)| !rest.is_empty() && looks_like_zone(last))
        else {
            return Self::cron(expr, tz.unwrap_or("UTC"));
        };
        let schedule = Self::cron(&rest.join(" "), last)?;
        if let (Some(tz), Schedule::Cron(c)) = (tz, &schedule) {
            let given = cron::parse_tz(tz)?;
            if given != c.tz() {
                return Err(ScheduleError::ZoneConflict {
                    in_expr: c.tz().name().to_string(),
                    tz: given.name().to_string(),
                });
            }
        }
        Ok(schedule)
    }

    /// A cron schedule from separate expression and zone (CLI `--cron --tz`).
    pub fn cron(expr: &str, tz: &str) -> Result<Schedule, ScheduleError> {
        CronSchedule::new(expr, tz).map(Schedule::Cron)
    }

    /// An interval schedule, normalised like [`Interval::new`].
    pub fn every(count: u32, unit: Unit) -> Result<Schedule, ScheduleError> {
        Interval::new(count, unit).map(Schedule::Every)
    }

    /// Rebuilds a schedule from its database columns (see [`Schedule::kind`]).
    /// A missing `tz` for a cron row means UTC.
    pub fn from_parts(
        kind: &str,
        count: Option<i32>,
        unit: Option<&str>,
        expr: Option<&str>,
        tz: Option<&str>,
    ) -> Result<Schedule, ScheduleError> {
        let stored = |m: &str| ScheduleError::InvalidStored(m.to_string());
        match kind {
            "every" => {
                let (Some(count), Some(unit)) = (count, unit) else {
                    return Err(stored(
                        "kind \"every\" needs interval_count and interval_unit",
                    ));
                };
                let count =
                    u32::try_from(count).map_err(|_| stored("interval_count must be positive"))?;
                Self::every(count, unit.parse()?)
            }
            "cron" => {
                let expr = expr.ok_or_else(|| stored("kind \"cron\" needs cron_expr"))?;
                Self::cron(expr, tz.unwrap_or("UTC"))
            }
            "manual" => Ok(Schedule::Manual),
            other => Err(ScheduleError::InvalidStored(format!(
                "unknown kind \"{other}\" (expected \"every\", \"cron\" or \"manual\")"
            ))),
        }
    }

    /// `"every"`, `"cron"` or `"manual"`: the storage kind column.
    pub fn kind(&self) -> &'static str {
        match self {
            Schedule::Every(_) => "every",
            Schedule::Cron(_) => "cron",
            Schedule::Manual => "manual",
        }
    }

    pub fn interval(&self) -> Option<Interval> {
        match self {
            Schedule::Every(i) => Some(*i),
            _ => None,
        }
    }

    pub fn cron_schedule(&self) -> Option<&CronSchedule> {
        match self {
            Schedule::Cron(c) => Some(c),
            _ => None,
        }
    }

    /// The `interval_count` column (always fits: counts are bounded).
    pub fn interval_count(&self) -> Option<i32> {
        self.interval().and_then(|i| i32::try_from(i.count).ok())
    }

    /// The `interval_unit` column.
    pub fn interval_unit(&self) -> Option<&'static str> {
        self.interval().map(|i| i.unit.as_str())
    }

    /// The `cron_expr` column.
    pub fn cron_expr(&self) -> Option<&str> {
        self.cron_schedule().map(CronSchedule::expr)
    }

    /// The `cron_tz` column (IANA name).
    pub fn cron_tz(&self) -> Option<&'static str> {
        self.cron_schedule().map(|c| c.tz().name())
    }

    /// Human words for the console: `"every 1h 30m"`, `"every 2 weeks"`,
    /// `"every month"`, `"at 09:00, on Monday (Europe/Paris)"`, `"manual (…)"`.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Manual => "manual (runs only when triggered)".to_string(),
            Schedule::Cron(c) => format!("{} ({})", c.describe(), c.tz().name()),
            Schedule::Every(i) if i.count == 1 => format!("every {}", i.unit.singular()),
            Schedule::Every(i) => match (i.unit, i.fixed_duration()) {
                (Unit::Seconds | Unit::Minutes | Unit::Hours, Some(d)) => {
                    format!("every {}", format_full(d.num_seconds()))
                }
                _ => format!("every {} {}", i.count, i.unit),
            },
        }
    }

    /// The next fire time strictly after `after`; `None` for manual (or if
    /// the result would leave chrono's range).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(i) => i.add(after, 1),
            Schedule::Cron(c) => c.next_after(after),
            Schedule::Manual => None,
        }
    }

    /// `[nextcall, next_after(nextcall), …]`, `n` long; empty for manual.
    pub fn upcoming(&self, nextcall: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        if matches!(self, Schedule::Manual) {
            return Vec::new();
        }
        std::iter::successors(Some(nextcall), |t| self.next_after(*t))
            .take(n)
            .collect()
    }

    /// SPEC §3.3 — see "Advancing" in the module doc.
    pub fn advance(&self, tick: DateTime<Utc>, now: DateTime<Utc>) -> Option<Advance> {
        let now = now.max(tick);
        match self {
            Schedule::Manual => None,
            Schedule::Cron(c) => {
                let next = c.next_after(now)?;
                let mut missed = 0;
                let mut slot = c.next_after(tick);
                while let Some(s) = slot.filter(|s| *s <= now) {
                    missed += 1;
                    if missed >= MAX_COUNTED_MISSES {
                        break;
                    }
                    slot = c.next_after(s);
                }
                Some(Advance { next, missed })
            }
            Schedule::Every(i) => match i.fixed_duration() {
                Some(d) => advance_fixed(tick, now, d),
                None => advance_months(i, tick, now),
            },
        }
    }

    /// A new job's first tick: `now` for intervals (it runs right away, like
    /// Odoo), the next slot after `now` for cron, `None` for manual.
    pub fn first_tick(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(_) => Some(now),
            Schedule::Cron(c) => c.next_after(now),
            Schedule::Manual => None,
        }
    }

    /// The expected gap between runs at instant `at` (health: overdue after
    /// twice this). Fixed units: the duration. Months: the `count` calendar
    /// months ending at `at`, i.e. `at - (at - count months)`. Cron: the gap
    /// between its two most recent slots at or before `at` (the next two
    /// slots if there are none before). Manual: `None`.
    pub fn interval_at(&self, at: DateTime<Utc>) -> Option<Duration> {
        match self {
            Schedule::Manual => None,
            Schedule::Every(i) => i.fixed_duration().or_else(|| {
                let start = at.checked_sub_months(Months::new(i.count))?;
                Some(at - start).filter(|d| *d > Duration::zero())
            }),
            Schedule::Cron(c) => {
                let gap = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| Some(b? - a?);
                let last = c.prev_before(at, true);
                let before = last.and_then(|l| c.prev_before(l, false));
                gap(before, last).or_else(|| {
                    let n1 = c.next_after(at);
                    gap(n1, n1.and_then(|t| c.next_after(t)))
                })
            }
        }
    }
}

/// O(1): `k = floor((now - tick) / d) + 1` steps from `tick`.
fn advance_fixed(tick: DateTime<Utc>, now: DateTime<Utc>, d: Duration) -> Option<Advance> {
    let elapsed = now - tick; // >= 0
    let nanos =
        |x: Duration| i128::from(x.num_seconds()) * 1_000_000_000 + i128::from(x.subsec_nanos());
    let k = nanos(elapsed) / nanos(d) + 1;
    let next = tick.checked_add_signed(Duration::try_seconds(
        d.num_seconds().checked_mul(i64::try_from(k).ok()?)?,
    )?)?;
    Some(Advance {
        next,
        missed: u64::try_from(k - 1).ok()?,
    })
}

/// Steps month by month while a clamp can still happen (the day of month is
/// above the shortest month the cycle visits, February counted as 28 days),
/// then jumps: without clamping, `k` steps equal one addition of
/// `k * count` months.
fn advance_months(i: &Interval, tick: DateTime<Utc>, now: DateTime<Utc>) -> Option<Advance> {
    // A clamp happens within one 12-step cycle, except Feb 29 with a count
    // that is a multiple of 48 months: that clamps at the next non-leap
    // century, within a few dozen steps. The cap only guards the loop.
    const MAX_STEPS: u32 = 1_000;
    let mut base = tick;
    let mut steps: u64 = 0;
    for _ in 0..MAX_STEPS {
        if base.day() <= shortest_month_in_cycle(base.month0(), i.count) {
            break;
        }
        let next = i.add(base, 1)?;
        if next > now {
            return Some(Advance {
                next,
                missed: steps,
            });
        }
        steps += 1;
        base = next;
    }
    // No clamp can happen from `base` on: estimate k, then fix it up.
    let months_between =
        i64::from(now.year() - base.year()) * 12 + i64::from(now.month()) - i64::from(base.month());
    let estimate = months_between / i64::from(i.count.max(1));
    let mut k = u64::try_from(estimate).unwrap_or(0).max(1);
    while k > 1 && i.add(base, k - 1)? > now {
        k -= 1;
    }
    while i.add(base, k)? <= now {
        k += 1;
    }
    Some(Advance {
        next: i.add(base, k)?,
        missed: steps + k - 1,
    })
}

/// The fewest days among the months visited stepping `count` months from
/// month `month0` (0-based), with February taken as 28.
fn shortest_month_in_cycle(month0: u32, count: u32) -> u32 {
    const DAYS: [u32; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1..=12)
        .map(|j| DAYS[((month0 + j * (count % 12)) % 12) as usize])
        .min()
        .unwrap_or(28)
}

/// Every unit, largest first: 5400 → "1h 30m", 129600 → "1d 12h".
fn format_full(secs: i64) -> String {
    let mut rest = secs;
    let mut parts = Vec::new();
    for (size, name) in [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")] {
        if rest >= size {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        }
    }
    parts.join(" ")
}

/// Cron-ish text: special characters or at least five fields.
fn looks_like_cron(text: &str) -> bool {
    text.contains(['*', '?', '/', ',', '@', '#']) || text.split_whitespace().count() >= 5
}

/// A trailing token is a zone if chrono-tz knows it, or if it is shaped like
/// one (`Area/City`, starting with a letter) — then an unknown name gets the
/// "unknown time zone" error rather than a confusing cron error.
fn looks_like_zone(token: &str) -> bool {
    cron::parse_tz(token).is_ok()
        || (token.contains('/') && token.starts_with(|c: char| c.is_ascii_alphabetic()))
}

/// Canonical text: `every 90 minutes`, `0 9 * * MON Europe/Paris`, `manual`.
/// `Schedule::parse(&s.to_string()) == s`.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // "every 1 month", "every 3 months": singular for one.
            Schedule::Every(i) if i.count == 1 => {
                let unit = i.unit.as_str();
                write!(f, "every 1 {}", unit.strip_suffix('s').unwrap_or(unit))
            }
            Schedule::Every(i) => write!(f, "every {} {}", i.count, i.unit),
            Schedule::Cron(c) => write!(f, "{} {}", c.expr(), c.tz().name()),
            Schedule::Manual => f.write_str("manual"),
        }
    }
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Schedule::parse(s)
    }
}

impl Serialize for Schedule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Schedule::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
