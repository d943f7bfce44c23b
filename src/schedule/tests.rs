use super::*;
use chrono::TimeZone;
use chrono_tz::Tz;
use proptest::prelude::*;

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn every(count: u32, unit: Unit) -> Schedule {
    Schedule::Every(Interval { count, unit })
}

fn err(input: &str) -> String {
    Schedule::parse(input).unwrap_err().to_string()
}

#[test]
fn parses_interval_forms() {
    let cases = [
        ("90s", every(90, Unit::Seconds)),
        ("15m", every(15, Unit::Minutes)),
        ("1h 30m", every(90, Unit::Minutes)),
        ("1h30m", every(90, Unit::Minutes)),
        ("2 weeks", every(2, Unit::Weeks)),
        ("every 1 day", every(1, Unit::Days)),
        ("every 15m", every(15, Unit::Minutes)),
        ("EVERY 24 Hours", every(1, Unit::Days)),
        ("1 month", every(1, Unit::Months)),
        ("every 3 months", every(3, Unit::Months)),
        ("1 year", every(12, Unit::Months)),
        ("1y 6mo", every(18, Unit::Months)),
        ("86400s", every(1, Unit::Days)),
        ("1209600 seconds", every(2, Unit::Weeks)),
        ("5400s", every(90, Unit::Minutes)),
        ("7d", every(1, Unit::Weeks)),
        ("0h 5m", every(5, Unit::Minutes)),
        ("  manual ", Schedule::Manual),
        ("Manual", Schedule::Manual),
    ];
    for (input, want) in cases {
        assert_eq!(Schedule::parse(input).unwrap(), want, "{input}");
    }
}

#[test]
fn parses_cron_forms() {
    let s = Schedule::parse("0 9 * * MON Europe/Paris").unwrap();
    assert_eq!(s.cron_expr(), Some("0 9 * * MON"));
    assert_eq!(s.cron_tz(), Some("Europe/Paris"));
    let s = Schedule::parse("*/15  *  * * *").unwrap();
    assert_eq!(s.cron_expr(), Some("*/15 * * * *"));
    assert_eq!(s.cron_tz(), Some("UTC"));
    let s = Schedule::parse("cron 0 9 * * * utc").unwrap();
    assert_eq!(
        (s.cron_expr(), s.cron_tz()),
        (Some("0 9 * * *"), Some("UTC"))
    );
    // Six fields: leading seconds.
    let s = Schedule::parse("*/5 * * * * *").unwrap();
    let t = utc(2026, 1, 1, 0, 0, 1);
    assert_eq!(s.next_after(t), Some(utc(2026, 1, 1, 0, 0, 5)));
    // Nicknames, with and without a zone.
    let s = Schedule::parse("@daily").unwrap();
    assert_eq!(s.next_after(t), Some(utc(2026, 1, 2, 0, 0, 0)));
    let s = Schedule::parse("@hourly Asia/Tokyo").unwrap();
    assert_eq!(s.next_after(t), Some(utc(2026, 1, 1, 1, 0, 0)));
    // All-digit five fields are cron, not a broken interval.
    assert_eq!(Schedule::parse("1 2 3 4 5").unwrap().kind(), "cron");
}

#[test]
fn interval_errors() {
    const EXP: &str = r#"(expected e.g. "15m", "1h 30m", "every 2 weeks", "0 9 * * MON Europe/Paris" or "manual")"#;
    assert_eq!(
        err("every 0m"),
        format!("invalid schedule \"every 0m\": the interval must be positive {EXP}")
    );
    assert_eq!(
        err("1 month 2d"),
        format!("invalid schedule \"1 month 2d\": calendar months cannot be combined with other units {EXP}")
    );
    assert_eq!(
        err(""),
        format!("invalid schedule \"\": the schedule is empty {EXP}")
    );
    let contains = [
        ("-5m", "negative values are not allowed"),
        ("every -5m", "negative values are not allowed"),
        ("1.5h", "fractional values are not supported"),
        ("500ms", "sub-second units like \"ms\" are not supported"),
        ("every 90", "the number 90 has no unit"),
        ("5 fortnights", "unknown unit \"fortnights\""),
        ("every", "nothing follows \"every\""),
        ("every soon", "expected a number, found \"soon\""),
        ("99999999999999999999s", "the value is too large"),
        ("every 101 years", "the interval is too long"),
        (
            "every 24856 days",
            "the interval is too long (at most 24855 days)",
        ),
        ("0 months", "the interval must be positive"),
        ("every 0 9 * * *", "the number 0 has no unit"),
    ];
    for (input, want) in contains {
        let e = err(input);
        assert!(e.contains(want), "{input}: {e}");
        assert!(e.ends_with(EXP), "{input}: {e}");
    }
}

#[test]
fn cron_errors() {
    assert_eq!(
        err("0 9 * * MON Europe/Pari"),
        "unknown time zone \"Europe/Pari\" (expected an IANA name like \"Europe/Paris\" or \"UTC\")"
    );
    assert_eq!(
        Schedule::cron("0 9 * * *", "Mars/Base").unwrap_err(),
        ScheduleError::UnknownTimeZone("Mars/Base".into())
    );
    let e = err("0 9 * *");
    assert!(
        e.starts_with("invalid cron expression \"0 9 * *\": it has 4 fields (expected 5 fields"),
        "{e}"
    );
    assert!(
        err("0 0 1 1 * 2030").contains("Number out of bounds"),
        "six fields: the last is a weekday"
    );
    assert!(
        err("0 0 0 1 1 * 2030").contains("it has 7 fields"),
        "years are refused"
    );
    let e = err("0 9 * * XYZ");
    assert!(
        e.starts_with(
            "invalid cron expression \"0 9 * * XYZ\": Pattern contains illegal characters"
        ),
        "{e}"
    );
    assert!(e.contains("e.g. \"0 9 * * MON Europe/Paris\")"), "{e}");
    assert!(err("60 * * * *").contains("Number out of bounds"));
    assert!(err("0 0 30 2 *").contains("it never matches a real date"));
    assert!(err("@reboot").starts_with("invalid cron expression \"@reboot\""));
}

#[test]
fn display_is_canonical_and_round_trips() {
    let cases = [
        ("1h 30m", "every 90 minutes"),
        ("every 1 month", "every 1 month"),
        ("0 9 * * MON Europe/Paris", "0 9 * * MON Europe/Paris"),
        ("@daily", "@daily UTC"),
        ("manual", "manual"),
    ];
    for (input, want) in cases {
        let s = Schedule::parse(input).unwrap();
        assert_eq!(s.to_string(), want);
        assert_eq!(Schedule::parse(&s.to_string()).unwrap(), s);
    }
}

#[test]
fn serde_uses_canonical_text() {
    let s = Schedule::parse("0 9 * * MON Europe/Paris").unwrap();
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(json, "\"0 9 * * MON Europe/Paris\"");
    assert_eq!(serde_json::from_str::<Schedule>(&json).unwrap(), s);
    assert_eq!(
        serde_json::to_string(&Schedule::Manual).unwrap(),
        "\"manual\""
    );
}

#[test]
fn describes_for_humans() {
    let d = |s: &str| Schedule::parse(s).unwrap().describe();
    assert_eq!(d("1h 30m"), "every 1h 30m");
    assert_eq!(d("36h"), "every 1d 12h");
    assert_eq!(d("45s"), "every 45s");
    assert_eq!(d("2 weeks"), "every 2 weeks");
    assert_eq!(d("3 days"), "every 3 days");
    assert_eq!(d("1 month"), "every month");
    assert_eq!(d("every 1h"), "every hour");
    assert_eq!(
        d("0 9 * * MON Europe/Paris"),
        "at 09:00, on Monday (Europe/Paris)"
    );
    assert_eq!(d("manual"), "manual (runs only when triggered)");
}

#[test]
fn units_and_parts() {
    for u in [
        Unit::Seconds,
        Unit::Minutes,
        Unit::Hours,
        Unit::Days,
        Unit::Weeks,
        Unit::Months,
    ] {
        assert_eq!(u.as_str().parse::<Unit>().unwrap(), u);
    }
    assert_eq!(
        "fortnights".parse::<Unit>().unwrap_err().to_string(),
        "unknown interval unit \"fortnights\" (expected seconds, minutes, hours, days, weeks or months)"
    );
    assert_eq!("min".parse::<Unit>().unwrap(), Unit::Minutes);
    assert!(Interval::new(2_147_483_648, Unit::Seconds)
        .unwrap_err()
        .to_string()
        .contains("too long"));
    assert_eq!(
        Interval::new(120, Unit::Minutes).unwrap(),
        Interval {
            count: 2,
            unit: Unit::Hours
        }
    );
    assert!(Interval::new(0, Unit::Days).is_err());
    let cases = [
        Schedule::parse("90m").unwrap(),
        Schedule::parse("3 months").unwrap(),
        Schedule::parse("0 9 * * MON Europe/Paris").unwrap(),
        Schedule::Manual,
    ];
    for s in cases {
        let back = Schedule::from_parts(
            s.kind(),
            s.interval_count(),
            s.interval_unit(),
            s.cron_expr(),
            s.cron_tz(),
        )
        .unwrap();
        assert_eq!(back, s);
    }
    let stored = |r: Result<Schedule, ScheduleError>| r.unwrap_err().to_string();
    assert_eq!(
        stored(Schedule::from_parts(
            "every",
            None,
            Some("days"),
            None,
            None
        )),
        "invalid stored schedule: kind \"every\" needs interval_count and interval_unit"
    );
    assert!(stored(Schedule::from_parts(
        "every",
        Some(-1),
        Some("days"),
        None,
        None
    ))
    .contains("positive"));
    assert!(
        stored(Schedule::from_parts("weekly", None, None, None, None)).contains("unknown kind")
    );
    assert_eq!(
        Schedule::from_parts("cron", None, None, Some("0 9 * * *"), None)
            .unwrap()
            .cron_tz(),
        Some("UTC")
    );
}

#[test]
fn month_clamping() {
    let m = every(1, Unit::Months);
    assert_eq!(
        m.next_after(utc(2024, 1, 31, 8, 0, 0)),
        Some(utc(2024, 2, 29, 8, 0, 0))
    );
    assert_eq!(
        m.next_after(utc(2023, 1, 31, 8, 0, 0)),
        Some(utc(2023, 2, 28, 8, 0, 0))
    );
    assert_eq!(
        m.upcoming(utc(2024, 1, 31, 0, 0, 0), 4),
        vec![
            utc(2024, 1, 31, 0, 0, 0),
            utc(2024, 2, 29, 0, 0, 0),
            utc(2024, 3, 29, 0, 0, 0),
            utc(2024, 4, 29, 0, 0, 0)
        ]
    );
    // advance across months agrees with stepping, including the clamp.
    let a = m
        .advance(utc(2024, 1, 31, 0, 0, 0), utc(2024, 5, 1, 0, 0, 0))
        .unwrap();
    assert_eq!(
        a,
        Advance {
            next: utc(2024, 5, 29, 0, 0, 0),
            missed: 3
        }
    );
    let y = every(12, Unit::Months);
    let a = y
        .advance(utc(2024, 2, 29, 0, 0, 0), utc(2030, 6, 1, 0, 0, 0))
        .unwrap();
    assert_eq!(
        a,
        Advance {
            next: utc(2031, 2, 28, 0, 0, 0),
            missed: 6
        }
    );
    let two = every(2, Unit::Months);
    let a = two
        .advance(utc(2024, 1, 31, 0, 0, 0), utc(2124, 1, 1, 0, 0, 0))
        .unwrap();
    assert_eq!(a.next, utc(2124, 1, 30, 0, 0, 0));
    assert_eq!(a.missed, 599);
}

#[test]
fn advance_does_not_drift() {
    let h = every(1, Unit::Hours);
    let tick = utc(2026, 1, 1, 10, 0, 0);
    assert_eq!(
        h.advance(tick, utc(2026, 1, 1, 12, 30, 0)),
        Some(Advance {
            next: utc(2026, 1, 1, 13, 0, 0),
            missed: 2
        })
    );
    // On time (claimed a little late): nothing missed.
    assert_eq!(
        h.advance(tick, utc(2026, 1, 1, 10, 0, 3)),
        Some(Advance {
            next: utc(2026, 1, 1, 11, 0, 0),
            missed: 0
        })
    );
    // Exactly on a slot: that slot was passed over, next is the one after.
    assert_eq!(
        h.advance(tick, utc(2026, 1, 1, 12, 0, 0)),
        Some(Advance {
            next: utc(2026, 1, 1, 13, 0, 0),
            missed: 2
        })
    );
    // Clock skew: now before tick.
    assert_eq!(
        h.advance(tick, utc(2026, 1, 1, 9, 0, 0)),
        Some(Advance {
            next: utc(2026, 1, 1, 11, 0, 0),
            missed: 0
        })
    );
    // A 1s job down for a year: O(1).
    let s = every(1, Unit::Seconds);
    let a = s
        .advance(utc(2025, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 0))
        .unwrap();
    assert_eq!(
        a,
        Advance {
            next: utc(2026, 1, 1, 0, 0, 1),
            missed: 365 * 86_400
        }
    );
    assert_eq!(Schedule::Manual.advance(tick, tick), None);
}

#[test]
fn cron_advance_counts_and_caps() {
    let c = Schedule::parse("*/15 * * * *").unwrap();
    let a = c
        .advance(utc(2026, 1, 1, 10, 0, 0), utc(2026, 1, 1, 11, 0, 0))
        .unwrap();
    assert_eq!(
        a,
        Advance {
            next: utc(2026, 1, 1, 11, 15, 0),
            missed: 4
        }
    );
    let a = c
        .advance(utc(2026, 1, 1, 10, 0, 0), utc(2026, 1, 1, 9, 0, 0))
        .unwrap();
    assert_eq!(
        a,
        Advance {
            next: utc(2026, 1, 1, 10, 15, 0),
            missed: 0
        }
    );
    let s = Schedule::parse("* * * * * *").unwrap();
    let a = s
        .advance(utc(2025, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 0))
        .unwrap();
    assert_eq!(
        a,
        Advance {
            next: utc(2026, 1, 1, 0, 0, 1),
            missed: MAX_COUNTED_MISSES
        }
    );
}

#[test]
fn first_tick_and_upcoming() {
    let now = utc(2026, 1, 1, 10, 7, 12);
    assert_eq!(every(1, Unit::Hours).first_tick(now), Some(now));
    assert_eq!(
        Schedule::parse("0 * * * *").unwrap().first_tick(now),
        Some(utc(2026, 1, 1, 11, 0, 0))
    );
    assert_eq!(Schedule::Manual.first_tick(now), None);
    assert_eq!(Schedule::Manual.next_after(now), None);
    assert!(Schedule::Manual.upcoming(now, 5).is_empty());
    let up = every(90, Unit::Minutes).upcoming(now, 3);
    assert_eq!(
        up,
        vec![now, utc(2026, 1, 1, 11, 37, 12), utc(2026, 1, 1, 13, 7, 12)]
    );
}

#[test]
fn interval_at() {
    let at = utc(2026, 3, 1, 0, 0, 0);
    assert_eq!(
        every(90, Unit::Minutes).interval_at(at),
        Some(Duration::minutes(90))
    );
    assert_eq!(
        every(1, Unit::Months).interval_at(at),
        Some(Duration::days(28))
    );
    assert_eq!(
        every(1, Unit::Months).interval_at(utc(2024, 3, 1, 0, 0, 0)),
        Some(Duration::days(29))
    );
    assert_eq!(Schedule::Manual.interval_at(at), None);
    // Weekday cron: Monday 09:00 looks back over the weekend.
    let c = Schedule::parse("0 9 * * MON-FRI").unwrap();
    assert_eq!(
        c.interval_at(utc(2026, 3, 2, 12, 0, 0)),
        Some(Duration::days(3))
    );
    assert_eq!(
        c.interval_at(utc(2026, 3, 3, 9, 0, 0)),
        Some(Duration::days(1))
    );
}

fn paris(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
    Tz::Europe__Paris
        .with_ymd_and_hms(y, mo, d, h, mi, 0)
        .earliest()
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn cron_dst_spring_forward_moves_to_first_valid_instant() {
    let s = Schedule::cron("30 2 * * *", "Europe/Paris").unwrap();
    let up = s.upcoming(paris(2026, 3, 28, 2, 30), 3);
    // 2026-03-29 02:30 does not exist: it runs at 03:00 CEST (01:00 UTC).
    assert_eq!(
        up,
        vec![
            utc(2026, 3, 28, 1, 30, 0),
            utc(2026, 3, 29, 1, 0, 0),
            utc(2026, 3, 30, 0, 30, 0)
        ]
    );
    // Interval-style expressions skip the missing wall times.
    let s = Schedule::cron("*/30 * * * *", "Europe/Paris").unwrap();
    let up = s.upcoming(utc(2026, 3, 29, 0, 30, 0), 3);
    assert_eq!(
        up,
        vec![
            utc(2026, 3, 29, 0, 30, 0),
            utc(2026, 3, 29, 1, 0, 0),
            utc(2026, 3, 29, 1, 30, 0)
        ]
    );
}

#[test]
fn cron_dst_fall_back_fires_once_for_fixed_time() {
    let s = Schedule::cron("30 2 * * *", "Europe/Paris").unwrap();
    // 02:30 happens at 00:30 UTC (CEST) and 01:30 UTC (CET); only the first.
    let up = s.upcoming(paris(2026, 10, 24, 2, 30), 3);
    assert_eq!(
        up,
        vec![
            utc(2026, 10, 24, 0, 30, 0),
            utc(2026, 10, 25, 0, 30, 0),
            utc(2026, 10, 26, 1, 30, 0)
        ]
    );
    // Claimed between the two 02:30s: the repeat is not a slot.
    let a = s
        .advance(utc(2026, 10, 25, 0, 30, 0), utc(2026, 10, 25, 1, 45, 0))
        .unwrap();
    assert_eq!(
        a,
        Advance {
            next: utc(2026, 10, 26, 1, 30, 0),
            missed: 0
        }
    );
    // Interval-style expressions run at both instants of the repeated hour.
    let s = Schedule::cron("*/30 * * * *", "Europe/Paris").unwrap();
    let up = s.upcoming(utc(2026, 10, 25, 0, 0, 0), 4);
    assert_eq!(
        up,
        vec![
            utc(2026, 10, 25, 0, 0, 0),
            utc(2026, 10, 25, 0, 30, 0),
            utc(2026, 10, 25, 1, 0, 0),
            utc(2026, 10, 25, 1, 30, 0)
        ]
    );
}

fn arb_unit() -> impl Strategy<Value = Unit> {
    prop_oneof![
        Just(Unit::Seconds),
        Just(Unit::Minutes),
        Just(Unit::Hours),
        Just(Unit::Days),
        Just(Unit::Weeks),
        Just(Unit::Months)
    ]
}

const CRONS: [&str; 7] = [
    "0 9 * * MON",
    "30 2 * * *",
    "*/15 * * * *",
    "0 0 L * *",
    "15 */3 * * SAT,SUN",
    "*/20 * * * * *",
    "0 0 29 2 *",
];
const ZONES: [&str; 5] = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
];

fn arb_schedule() -> impl Strategy<Value = Schedule> {
    prop_oneof![
        (1u32..2_000, arb_unit()).prop_filter_map("valid", |(c, u)| Schedule::every(c, u).ok()),
        (0..CRONS.len(), 0..ZONES.len())
            .prop_map(|(c, z)| Schedule::cron(CRONS[c], ZONES[z]).unwrap()),
    ]
}

/// Instants between 1990 and 2100, with sub-second parts.
fn arb_instant() -> impl Strategy<Value = DateTime<Utc>> {
    (631_152_000i64..4_102_444_800, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn next_after_is_strictly_later(s in arb_schedule(), t in arb_instant()) {
        let n = s.next_after(t).unwrap();
        prop_assert!(n > t);
    }

    #[test]
    fn advance_is_after_now_and_tick(s in arb_schedule(), tick in arb_instant(), gap in -86_400i64..40_000_000) {
        let now = tick + Duration::seconds(gap);
        let a = s.advance(tick, now).unwrap();
        prop_assert!(a.next > now && a.next > tick);
        // The slot before `next` (stepping from tick) is not after now.
        if a.missed > 0 && a.missed < 50 {
            let up = s.upcoming(tick, a.missed as usize + 2);
            prop_assert_eq!(up[a.missed as usize + 1], a.next);
            prop_assert!(up[a.missed as usize] <= now);
        }
    }

    #[test]
    fn upcoming_strictly_increases(s in arb_schedule(), t in arb_instant(), n in 1usize..20) {
        let up = s.upcoming(t, n);
        prop_assert_eq!(up.len(), n);
        prop_assert!(up.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn display_round_trips(s in arb_schedule()) {
        prop_assert_eq!(Schedule::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn normalisation_round_trips(total in 1u64..MAX_SECONDS) {
        let i = Interval::from_seconds(total).unwrap();
        let per = i.unit.seconds().unwrap();
        prop_assert_eq!(u64::from(i.count) * per, total);
        // Largest unit: the next larger unit does not divide the total.
        let larger = [Unit::Minutes, Unit::Hours, Unit::Days, Unit::Weeks]
            .into_iter()
            .find(|u| u.seconds().unwrap() > per);
        if let Some(l) = larger {
            prop_assert!(total % l.seconds().unwrap() != 0);
        }
        prop_assert_eq!(Interval::new(i.count, i.unit).unwrap(), i);
        let text = format!("{total}s");
        prop_assert_eq!(Schedule::parse(&text).unwrap(), Schedule::Every(i));
    }

    #[test]
    fn mixed_text_normalises(h in 0u64..500, m in 0u64..500, s in 0u64..500) {
        prop_assume!(h + m + s > 0);
        let parsed = Schedule::parse(&format!("{h}h {m}m {s}s")).unwrap();
        let want = Interval::from_seconds(h * 3600 + m * 60 + s).unwrap();
        prop_assert_eq!(parsed, Schedule::Every(want));
    }

    #[test]
    fn months_advance_matches_stepping(count in 1u32..30, tick in arb_instant(), steps in 0u64..40, extra in 0i64..86_400) {
        let s = Schedule::every(count, Unit::Months).unwrap();
        let up = s.upcoming(tick, steps as usize + 2);
        let now = up[steps as usize] + Duration::seconds(extra);
        let a = s.advance(tick, now).unwrap();
        let k = up.iter().skip(1).take_while(|t| **t <= now).count();
        prop_assert_eq!(a.missed, k as u64);
        prop_assert_eq!(a.next, up[k + 1]);
    }
}

#[test]
fn cli_cron_takes_its_zone_in_the_expression_or_from_tz() {
    let paris = Schedule::parse("0 9 * * MON Europe/Paris").unwrap();
    assert_eq!(
        Schedule::cron_with_zone("0 9 * * MON Europe/Paris", None).unwrap(),
        paris
    );
    assert_eq!(
        Schedule::cron_with_zone("0 9 * * MON", Some("Europe/Paris")).unwrap(),
        paris
    );
    // The same zone twice is no conflict.
    assert_eq!(
        Schedule::cron_with_zone("0 9 * * MON Europe/Paris", Some("Europe/Paris")).unwrap(),
        paris
    );
    assert_eq!(
        Schedule::cron_with_zone("0 9 * * MON", None)
            .unwrap()
            .cron_tz(),
        Some("UTC")
    );
    assert_eq!(
        Schedule::cron_with_zone("0 9 * * MON Europe/Paris", Some("Asia/Tokyo")).unwrap_err(),
        ScheduleError::ZoneConflict {
            in_expr: "Europe/Paris".into(),
            tz: "Asia/Tokyo".into()
        }
    );
    assert_eq!(
        Schedule::cron_with_zone("0 9 * * MON Europe/Pari", None).unwrap_err(),
        ScheduleError::UnknownTimeZone("Europe/Pari".into())
    );
    assert_eq!(
        Schedule::cron_with_zone("0 9 * * MON", Some("Mars/Base")).unwrap_err(),
        ScheduleError::UnknownTimeZone("Mars/Base".into())
    );
}
