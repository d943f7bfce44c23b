//! Schedules typed by operators: never panic; whatever parses can be
//! described, stepped strictly forward, and written back identically.
#![no_main]

use chrono::{TimeZone, Utc};
use crondeck::schedule::Schedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let Ok(schedule) = Schedule::parse(input) else { return };
    let _ = schedule.describe();
    let now = Utc.with_ymd_and_hms(2026, 3, 29, 0, 59, 59).unwrap();
    if let Some(next) = schedule.next_after(now) {
        assert!(next > now);
    }
    if let Some(advance) = schedule.advance(now, now + chrono::Duration::days(3)) {
        assert!(advance.next > now);
    }
    assert_eq!(Schedule::parse(&schedule.to_string()).ok(), Some(schedule));
});
