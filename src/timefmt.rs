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
