//! Where the jobs table's window sits, and what it leaves off screen.
//!
//! Issue 12: failing and overdue rows could sit above the visible window
//! while every visible row said ok. So the window is a function of the
//! cursor alone: it shows as many rows above the cursor as fit, keeping
//! [`MARGIN`] rows of context below it, and whatever problem rows are still
//! outside the window are counted for the "↑ 3 problems above" markers.

use crate::health::State;

/// Rows kept visible below the cursor (when the table is that long).
pub const MARGIN: usize = 2;

/// The first visible row for `cursor` in a table of `len` rows of which
/// `rows` fit: rows above the cursor stay visible whenever they fit.
pub fn window_offset(cursor: usize, len: usize, rows: usize) -> usize {
    let rows = rows.max(1);
    let margin = MARGIN.min(rows.saturating_sub(1) / 2);
    let wanted = (cursor + margin + 1).saturating_sub(rows);
    wanted.min(len.saturating_sub(rows))
}

/// A row needs attention: overdue, failing, late (or unreadable).
pub fn is_problem(state: State) -> bool {
    matches!(
        state,
        State::Overdue | State::Failing | State::Late | State::Unreadable
    )
}

/// Problem rows hidden above and below the window `[offset, offset + rows)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hidden {
    pub above: usize,
    pub below: usize,
}

/// Count the problem rows outside the window; `states` is the table in order.
pub fn hidden_problems(states: &[State], offset: usize, rows: usize) -> Hidden {
    let end = offset.saturating_add(rows).min(states.len());
    let count = |s: &[State]| s.iter().filter(|s| is_problem(**s)).count();
    Hidden {
        above: count(&states[..offset.min(end)]),
        below: count(&states[end..]),
    }
}

/// How urgent a row is for the first cursor position: overdue, then
/// failing, then late; `None` for a row that needs no attention.
fn urgency(state: State) -> Option<u8> {
    match state {
        State::Overdue | State::Unreadable => Some(0),
        State::Failing => Some(1),
        State::Late => Some(2),
        _ => None,
    }
}

/// The row the cursor starts on: the first most urgent one, in table order.
pub fn most_urgent(states: &[State]) -> Option<usize> {
    states
        .iter()
        .enumerate()
        .filter_map(|(i, s)| urgency(*s).map(|u| (u, i)))
        .min()
        .map(|(_, i)| i)
}

/// "12–31 of 324" (1-based, inclusive); "0 of 0" for an empty table.
pub fn counter(offset: usize, rows: usize, len: usize) -> String {
    if len == 0 {
        return "0 of 0".to_string();
    }
    let end = offset.saturating_add(rows).min(len);
    format!("{}–{} of {len}", offset + 1, end)
}

/// "↑ 3 problems above" / "↓ 1 problem below".
pub fn marker(n: usize, up: bool) -> String {
    let (arrow, word) = if up {
        ("↑", "above")
    } else {
        ("↓", "below")
    };
    let noun = if n == 1 { "problem" } else { "problems" };
    format!("{arrow} {n} {noun} {word}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_at_the_top_while_the_cursor_fits_there() {
        for cursor in 0..8 {
            assert_eq!(window_offset(cursor, 100, 10), 0, "cursor {cursor}");
        }
        // Cursor 8 with 2 rows of margin needs row 10: one row down.
        assert_eq!(window_offset(8, 100, 10), 1);
        assert_eq!(window_offset(50, 100, 10), 43);
    }

    #[test]
    fn rows_above_the_cursor_come_back_when_moving_up() {
        // Down to 50, then back to 5: the window is at the top again, not
        // left at 5 as a minimal-move window would be.
        assert_eq!(window_offset(50, 100, 10), 43);
        assert_eq!(window_offset(5, 100, 10), 0);
    }

    #[test]
    fn the_window_never_runs_past_the_end_and_the_cursor_stays_in_it() {
        for len in 0..30 {
            for rows in 1..12 {
                for cursor in 0..len.max(1) {
                    let off = window_offset(cursor, len, rows);
                    assert!(off + rows >= len.min(off + rows), "{len} {rows} {cursor}");
                    assert!(off <= len.saturating_sub(rows), "{len} {rows} {cursor}");
                    if len > 0 {
                        assert!(
                            off <= cursor && cursor < off + rows,
                            "{len} {rows} {cursor}"
                        );
                    }
                }
            }
        }
        assert_eq!(window_offset(99, 100, 10), 90);
    }

    #[test]
    fn hidden_problems_count_only_problem_rows_outside_the_window() {
        use State::*;
        let states = [Overdue, Failing, Ok, Ok, Late, Ok, Running, Failing, Paused];
        assert_eq!(hidden_problems(&states, 0, 9), Hidden::default());
        assert_eq!(
            hidden_problems(&states, 2, 3),
            Hidden { above: 2, below: 1 }
        );
        assert_eq!(
            hidden_problems(&states, 5, 4),
            Hidden { above: 3, below: 0 }
        );
        assert_eq!(hidden_problems(&[], 0, 5), Hidden::default());
    }

    #[test]
    fn the_most_urgent_row_is_overdue_then_failing_then_late() {
        use State::*;
        assert_eq!(most_urgent(&[Ok, Late, Failing, Ok, Overdue]), Some(4));
        assert_eq!(most_urgent(&[Ok, Late, Failing, Failing]), Some(2));
        assert_eq!(most_urgent(&[Ok, Running, Late]), Some(2));
        assert_eq!(most_urgent(&[Ok, Running, Paused]), None);
    }

    #[test]
    fn counter_and_markers_read_naturally() {
        assert_eq!(counter(11, 20, 324), "12–31 of 324");
        assert_eq!(counter(0, 20, 11), "1–11 of 11");
        assert_eq!(counter(0, 20, 0), "0 of 0");
        assert_eq!(marker(3, true), "↑ 3 problems above");
        assert_eq!(marker(1, false), "↓ 1 problem below");
    }
}
