//! Natural order for job names: runs of digits compare as numbers, so
//! `bulk-2` sorts before `bulk-10` (plain string order puts it after).

use std::cmp::Ordering;

/// A run of digits or of other characters.
fn chunks(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let digit = first.is_ascii_digit();
        let end = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() != digit)
            .map_or(rest.len(), |(i, _)| i);
        let (chunk, tail) = rest.split_at(end);
        rest = tail;
        Some(chunk)
    })
}

/// Two digit runs by value, whatever their length and leading zeros.
fn numeric(a: &str, b: &str) -> Ordering {
    let (ta, tb) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
}

/// Natural order, case-insensitive first; ties fall back to plain order
/// so distinct names never compare equal (`a01` and `a1` keep an order).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let mut ca = chunks(a);
    let mut cb = chunks(b);
    loop {
        match (ca.next(), cb.next()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let both_digits = x.starts_with(|c: char| c.is_ascii_digit())
                    && y.starts_with(|c: char| c.is_ascii_digit());
                let order = if both_digits {
                    numeric(x, y)
                } else {
                    x.to_lowercase().cmp(&y.to_lowercase())
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        v.sort_by(|a, b| natural_cmp(a, b));
        v
    }

    #[test]
    fn numbers_inside_names_sort_by_value() {
        assert_eq!(
            sorted(&["bulk-10", "bulk-2", "bulk-1", "bulk-20", "bulk"]),
            ["bulk", "bulk-1", "bulk-2", "bulk-10", "bulk-20"]
        );
        assert_eq!(
            sorted(&["v1.10.0", "v1.9.2", "v1.9.10"]),
            ["v1.9.2", "v1.9.10", "v1.10.0"]
        );
        // Numbers longer than any integer type still compare.
        assert_eq!(
            natural_cmp("id-99999999999999999999999", "id-100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn case_is_ignored_first_and_distinct_names_never_tie() {
        assert_eq!(
            sorted(&["Beta", "alpha", "gamma"]),
            ["alpha", "Beta", "gamma"]
        );
        assert_ne!(natural_cmp("a01", "a1"), Ordering::Equal);
        assert_ne!(natural_cmp("A", "a"), Ordering::Equal);
        assert_eq!(natural_cmp("same-3", "same-3"), Ordering::Equal);
        // Antisymmetric on a sample.
        let names = ["a1", "a01", "A1", "a-1", "a", "1a", "10", "9", "é2", "é10"];
        for x in names {
            for y in names {
                assert_eq!(natural_cmp(x, y), natural_cmp(y, x).reverse(), "{x} {y}");
            }
        }
    }
}
