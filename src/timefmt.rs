//! How instants are shown to people: stored in UTC, printed in the local zone.

use chrono::{DateTime, Local, Utc};

/// "2026-12-01 08:00:00 +01:00" in the local time zone.
pub fn local(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

/// Like `local`, for optional values: "-" when absent.
pub fn local_or_dash(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_string(), local)
}

/// A length of time for people, exact and spaced: "1 day", "2 days 3h",
/// "1h 30m", "45s", "0s", "250ms" (not humantime's "1day 3h").
pub fn duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d.is_zero() {
        return "0s".to_string();
    }
    if secs == 0 {
        return format!("{}ms", d.subsec_millis());
    }
    let days = secs / 86_400;
    let mut parts = Vec::new();
    match days {
        0 => {}
        1 => parts.push("1 day".to_string()),
        n => parts.push(format!("{n} days")),
    }
    for (value, unit) in [
        ((secs % 86_400) / 3_600, "h"),
        ((secs % 3_600) / 60, "m"),
        (secs % 60, "s"),
    ] {
        if value > 0 {
            parts.push(format!("{value}{unit}"));
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn durations_read_as_words_with_spaces() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (90, "1m 30s"),
            (3_600, "1h"),
            (5_400, "1h 30m"),
            (86_400, "1 day"),
            (2 * 86_400 + 3 * 3_600, "2 days 3h"),
            (366 * 86_400, "366 days"),
        ];
        for (secs, want) in cases {
            assert_eq!(super::duration(Duration::from_secs(secs)), want, "{secs}");
        }
        assert_eq!(super::duration(Duration::from_millis(250)), "250ms");
    }
}
