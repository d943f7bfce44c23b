//! Times and durations typed by operators: never panic.
#![no_main]

use chrono::{TimeZone, Utc};
use crondeck::timespec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    let now = Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap();
    if let Ok(at) = timespec::parse_when(input, now, &chrono_tz::Europe::Paris) {
        let _ = timespec::format_relative(at, now);
    }
    let _ = timespec::parse_duration(input);
    let _ = timespec::parse_timeout(input);
});
