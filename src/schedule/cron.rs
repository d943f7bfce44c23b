//! Cron expressions evaluated in an IANA time zone (see the parent module
//! doc for the DST rules croner applies).

use super::ScheduleError;
use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use std::fmt;
use std::sync::Arc;

/// A parsed cron expression plus the zone its wall-clock fields are read in.
#[derive(Clone)]
pub struct CronSchedule {
    /// The operator's expression, whitespace collapsed (kept as typed so the
    /// console shows `MON`, not croner's normalised `1`).
    expr: String,
    tz: Tz,
    /// Shared: a parsed `Cron` is ~340 bytes and schedules are cloned freely.
    cron: Arc<Cron>,
}

/// The parser every cron expression goes through: 5 fields, or 6 with a
/// leading seconds field; no year field (a schedule that ends is not a
/// schedule this crate models).
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
}

/// Parses a zone name: any IANA name chrono-tz knows, plus `utc` in any case.
pub(crate) fn parse_tz(name: &str) -> Result<Tz, ScheduleError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("utc") {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))
}

impl CronSchedule {
    /// Parses `expr` (5 or 6 fields, or `@daily`-style nicknames) in zone `tz`.
    ///
    /// Also refuses expressions that can never fire (`0 0 30 2 *`), so a
    /// stored cron schedule always has a next slot.
    pub fn new(expr: &str, tz: &str) -> Result<Self, ScheduleError> {
        let tz = parse_tz(tz)?;
        let expr = expr.split_whitespace().collect::<Vec<_>>().join(" ");
        let invalid = |message: String| ScheduleError::InvalidCron {
            expr: expr.clone(),
            message,
        };
        // croner's own field-count message talks about its parser options;
        // say it in the operator's terms instead. Nicknames are one token.
        // The database refuses longer text (crondeck.cron_grammar_ok).
        if expr.len() > 1000 {
            return Err(invalid(format!(
                "it is {} characters long (at most 1000)",
                expr.len()
            )));
        }
        let fields = expr.split(' ').count();
        if !expr.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(invalid(format!("it has {fields} fields")));
        }
        let cron = parser()
            .parse(&expr)
            .map_err(|e| invalid(e.to_string().trim_end_matches('.').to_string()))?;
        // An impossible date only shows up when searching; search once from a
        // fixed reference so the result does not depend on the clock.
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if let Some(reference) = reference {
            if cron
                .find_next_occurrence(&reference.with_timezone(&tz), false)
                .is_err()
            {
                return Err(invalid("it never matches a real date".to_string()));
            }
        }
        Ok(CronSchedule {
            expr,
            tz,
            cron: Arc::new(cron),
        })
    }

    /// The expression as typed, whitespace collapsed.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The zone the expression is evaluated in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// croner's English description, e.g. `"at 09:00, on Monday"`.
    pub(crate) fn describe(&self) -> String {
        let text = self.cron.describe();
        let text = text.trim().trim_end_matches('.');
        let mut chars = text.chars();
        match chars.next() {
            Some(first) => first.to_lowercase().chain(chars).collect(),
            None => self.expr.clone(),
        }
    }

    /// First slot strictly after `after`; `None` only past croner's year limit.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Last slot at or before `at` (`inclusive`) or strictly before it.
    pub(crate) fn prev_before(&self, at: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&at.with_timezone(&self.tz), inclusive)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

impl Eq for CronSchedule {}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CronSchedule")
            .field("expr", &self.expr)
            .field("tz", &self.tz.name())
            .finish()
    }
}
