use super::*;
use chrono::{FixedOffset, TimeZone};
use chrono_tz::Tz;
use proptest::prelude::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn now_fixed() -> DateTime<Utc> {
    utc(2026, 6, 15, 12, 0, 0)
}
const PARIS: Tz = Tz::Europe__Paris;

#[test]
fn when_forms() {
    let now = now_fixed();
    let w = |s: &str| parse_when(s, now, &PARIS).unwrap();
    assert_eq!(w("now"), now);
    assert_eq!(w(" NOW "), now);
    assert_eq!(w("+15m"), utc(2026, 6, 15, 12, 15, 0));
    assert_eq!(w("+1h 30m"), utc(2026, 6, 15, 13, 30, 0));
    // December in Paris is CET (UTC+1).
    assert_eq!(w("2026-12-01 08:00"), utc(2026, 12, 1, 7, 0, 0));
    assert_eq!(w("2026-12-01 08:00:30"), utc(2026, 12, 1, 7, 0, 30));
    assert_eq!(w("2026-12-01T08:00"), utc(2026, 12, 1, 7, 0, 0));
    assert_eq!(w("2026-12-01T08:00:30"), utc(2026, 12, 1, 7, 0, 30));
    assert_eq!(w("2026-12-01"), utc(2026, 11, 30, 23, 0, 0));
    // Today in the zone (CEST, UTC+2), even when already past.
    assert_eq!(w("08:00"), utc(2026, 6, 15, 6, 0, 0));
    assert_eq!(w("18:30:15"), utc(2026, 6, 15, 16, 30, 15));
    assert_eq!(w("2026-12-01T08:00:00Z"), utc(2026, 12, 1, 8, 0, 0));
    assert_eq!(w("2026-12-01T08:00:00+01:00"), utc(2026, 12, 1, 7, 0, 0));
    // The zone is any chrono TimeZone.
    let east = FixedOffset::east_opt(5 * 3600).unwrap();
    assert_eq!(
        parse_when("2026-12-01 08:00", now, &east).unwrap(),
        utc(2026, 12, 1, 3, 0, 0)
    );
    assert_eq!(
        parse_when("2026-12-01 08:00", now, &Utc).unwrap(),
        utc(2026, 12, 1, 8, 0, 0)
    );
}

#[test]
fn when_today_uses_the_zone_date() {
    // 23:30 UTC on the 15th is already the 16th in Paris.
    let now = utc(2026, 6, 15, 23, 30, 0);
    assert_eq!(
        parse_when("08:00", now, &PARIS).unwrap(),
        utc(2026, 6, 16, 6, 0, 0)
    );
}

#[test]
fn when_dst() {
    let now = now_fixed();
    let e = parse_when("2026-03-29 02:30", now, &PARIS).unwrap_err();
    assert_eq!(
        e,
        TimeSpecError::NonexistentLocalTime {
            input: "2026-03-29 02:30".into()
        }
    );
    assert!(e.to_string().contains("does not exist"));
    // Ambiguous: the earlier instant (still CEST, UTC+2).
    assert_eq!(
        parse_when("2026-10-25 02:30", now, &PARIS).unwrap(),
        utc(2026, 10, 25, 0, 30, 0)
    );
}

#[test]
fn when_errors() {
    let now = now_fixed();
    let e = |s: &str| parse_when(s, now, &PARIS).unwrap_err().to_string();
    assert_eq!(
        e("-15m"),
        "invalid time \"-15m\": relative times must be in the future (use \"+15m\") \
         (expected \"now\", \"+15m\" or a local time like \"2026-12-01 08:00\")"
    );
    assert_eq!(
        e("tomorrow"),
        "invalid time \"tomorrow\": unrecognised format \
         (expected \"now\", \"+15m\" or a local time like \"2026-12-01 08:00\")"
    );
    assert!(e("").contains("the text is empty"));
    assert!(e("+0m").contains("the duration must be positive"));
    assert!(e("+soon").contains("expected a number, found \"soon\""));
    assert!(e("2026-13-01 08:00").contains("unrecognised format"));
    assert!(e("25:00").contains("unrecognised format"));
}

#[test]
fn durations() {
    let d = |s: &str| parse_duration(s).unwrap().as_secs();
    assert_eq!(d("2h"), 7200);
    assert_eq!(d("90m"), 5400);
    assert_eq!(d("1h 30m"), 5400);
    assert_eq!(d("2 weeks"), 1_209_600);
    assert_eq!(d("45 seconds"), 45);
    assert_eq!(d("1d2h"), 93_600);
    assert_eq!(
        parse_duration("0m").unwrap_err().to_string(),
        "invalid duration \"0m\": the duration must be positive \
         (expected e.g. \"90s\", \"15m\", \"1h 30m\" or \"2 weeks\")"
    );
    let e = |s: &str| parse_duration(s).unwrap_err().to_string();
    assert!(e("-5m").contains("negative values are not allowed"));
    assert!(e("1.5h").contains("fractional"));
    assert!(e("1 month").contains("months are not a fixed length"));
    assert!(e("abc").contains("expected a number, found \"abc\""));
    assert!(e("10").contains("the number 10 has no unit"));
    assert!(e("").contains("the text is empty"));
    assert!(e("3 parsecs").contains("unknown unit \"parsecs\""));
}

#[test]
fn timeouts() {
    assert_eq!(parse_timeout("none").unwrap(), None);
    assert_eq!(parse_timeout(" None ").unwrap(), None);
    assert_eq!(
        parse_timeout("30m").unwrap(),
        Some(Duration::from_secs(1800))
    );
    assert_eq!(
        parse_timeout("forever").unwrap_err().to_string(),
        "invalid timeout \"forever\": expected a number, found \"forever\" \
         (expected a duration like \"30m\" or \"2h\", or \"none\" for no timeout)"
    );
}

#[test]
fn formatting() {
    let f = |s: i64| format_duration_short(chrono::Duration::seconds(s));
    assert_eq!(f(5400), "1h 30m");
    assert_eq!(f(45), "45s");
    assert_eq!(f(0), "0s");
    assert_eq!(f(2 * 86_400 + 3 * 3600 + 59), "2d 3h");
    assert_eq!(f(86_400 + 300), "1d");
    assert_eq!(f(3599), "59m 59s");
    assert_eq!(f(-90), "-1m 30s");
    assert_eq!(
        format_duration_short(chrono::Duration::milliseconds(999)),
        "0s"
    );
    let now = now_fixed();
    let r = |s: i64| format_relative(now + chrono::Duration::seconds(s), now);
    assert_eq!(r(240), "in 4m");
    assert_eq!(r(-240), "4m ago");
    assert_eq!(r(0), "now");
    assert_eq!(
        format_relative(now + chrono::Duration::milliseconds(-900), now),
        "now"
    );
    assert_eq!(r(-3 * 86_400), "3d ago");
}

proptest! {
    #[test]
    fn duration_text_round_trips(d in 1u64..10_000_000) {
        let mut text = String::new();
        let mut rest = d;
        for (size, name) in [(604_800, "w"), (86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")] {
            if rest >= size {
                text.push_str(&format!("{} {name} ", rest / size));
                rest %= size;
            }
        }
        prop_assert_eq!(parse_duration(&text).unwrap().as_secs(), d);
    }

    #[test]
    fn short_format_is_a_lower_bound(s in 0i64..100_000_000) {
        let text = format_duration_short(chrono::Duration::seconds(s));
        let back = parse_duration(&text).map(|d| d.as_secs() as i64).unwrap_or(0);
        prop_assert!(back <= s);
        prop_assert!(text.split(' ').count() <= 2);
    }

    #[test]
    fn relative_plus_is_later(s in 1u64..10_000_000) {
        let now = now_fixed();
        let t = parse_when(&format!("+{s}s"), now, &PARIS).unwrap();
        prop_assert_eq!((t - now).num_seconds() as u64, s);
    }
}
