//! Showing untrusted text (job names, commands, output, errors) to a person.
//!
//! Anything a job or a job definition contains may be hostile: escape
//! sequences that move the cursor, recolour or retitle the terminal, carriage
//! returns that overwrite what was printed, bidirectional overrides and
//! zero-width characters that make text read differently from what it is.
//! `sanitize` makes all of them visible as escapes, so no byte from a job can
//! act on the terminal, and what is shown is what is there.
//!
//! This is the one sanitiser of every output path: the console escapes each
//! field with it and, as a last guard, blanks any cell that still holds a
//! hostile character ([`is_hostile`]); the CLI writes everything through
//! [`outln!`](crate::text::outln), [`out!`](crate::text::out) and
//! [`errln!`](crate::text::errln) (which apply [`block`] to the whole text),
//! escapes one-line fields with [`field`], and JSON output with [`json`].

use std::fmt::Write as _;

/// Whether a character is shown escaped rather than printed: C0 and C1
/// controls (ESC, CSI, BEL, CR, ...), DEL, bidi embeddings, overrides and
/// isolates, zero-width characters, line and paragraph separators.
pub fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}'   // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{2028}' | '\u{2029}' // line/paragraph separators
            | '\u{061C}'              // Arabic letter mark
            | '\u{FEFF}'              // zero-width no-break space
        )
}

/// Escape hostile characters; with `keep_newlines`, `\n` and `\t` stay as
/// they are (multi-line output), otherwise they are escaped too (one-line
/// fields such as names in a table).
pub fn sanitize(text: &str, keep_newlines: bool) -> String {
    if !text.chars().any(is_hostile) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' | '\t' if keep_newlines => out.push(c),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if is_hostile(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_hostile(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A count with its noun: "1 row", "2 rows", "0 rows".
pub fn count(n: impl Into<i64>, singular: &str, plural: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// A one-line field: hostile characters escaped, newlines too.
pub fn field(text: &str) -> String {
    sanitize(text, false)
}

/// Multi-line output: hostile characters escaped, newlines and tabs kept.
pub fn block(text: &str) -> String {
    sanitize(text, true)
}

/// JSON text (as serde_json writes it) with every hostile character written
/// as a `\uXXXX` escape: the same JSON value, safe on a terminal. Outside
/// strings JSON text is plain ASCII, so only string contents change form.
pub fn json(text: &str) -> String {
    if !text.chars().any(is_hostile) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        // serde_json already escapes C0 controls; `\n` between tokens of
        // pretty output is layout and stays.
        if is_hostile(c) && c != '\n' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `println!` for the CLI: the whole text goes through [`block`].
macro_rules! outln {
    () => { println!() };
    ($($arg:tt)*) => { println!("{}", $crate::text::block(&format!($($arg)*))) };
}
/// `print!` for the CLI: the whole text goes through [`block`].
macro_rules! out {
    ($($arg:tt)*) => { print!("{}", $crate::text::block(&format!($($arg)*))) };
}
/// `eprintln!` for the CLI: the whole text goes through [`block`].
macro_rules! errln {
    ($($arg:tt)*) => { eprintln!("{}", $crate::text::block(&format!($($arg)*))) };
}
pub(crate) use {errln, out, outln};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_sequences_are_shown_not_sent() {
        assert_eq!(field("\u{1b}[31mred\u{1b}[0m"), "\\e[31mred\\e[0m");
        assert_eq!(field("a\rb"), "a\\rb");
        assert_eq!(field("bell\u{7}"), "bell\\x07");
        assert_eq!(field("osc\u{1b}]0;title\u{7}"), "osc\\e]0;title\\x07");
        assert_eq!(field("c1\u{9b}31m"), "c1\\x9b31m");
    }

    #[test]
    fn bidi_and_zero_width_characters_are_made_visible() {
        assert_eq!(field("admin\u{202E}txt.exe"), "admin\\u{202e}txt.exe");
        assert_eq!(field("pay\u{200B}roll"), "pay\\u{200b}roll");
        assert_eq!(field("\u{FEFF}x"), "\\u{feff}x");
    }

    #[test]
    fn newlines_are_kept_only_in_blocks() {
        assert_eq!(block("a\nb\tc"), "a\nb\tc");
        assert_eq!(field("a\nb\tc"), "a\\nb\\tc");
        assert_eq!(field("plain text, ünïcode ✓"), "plain text, ünïcode ✓");
    }

    #[test]
    fn json_escapes_keep_the_value() {
        let value = serde_json::json!({"name": "a\u{202E}b\u{9b}c\u{1b}[2J\nd"});
        let text = serde_json::to_string_pretty(&value).unwrap();
        let safe = json(&text);
        assert!(!safe.chars().any(|c| is_hostile(c) && c != '\n'), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    proptest! {
        #[test]
        fn json_is_safe_and_faithful(text in any::<String>()) {
            let encoded = serde_json::to_string(&text).unwrap();
            let safe = json(&encoded);
            prop_assert!(!safe.chars().any(is_hostile), "{safe:?}");
            let back: String = serde_json::from_str(&safe).unwrap();
            prop_assert_eq!(back, text);
        }

        #[test]
        fn nothing_hostile_survives(text in any::<String>()) {
            let shown = field(&text);
            prop_assert!(!shown.chars().any(is_hostile), "{shown:?}");
            let shown = block(&text);
            prop_assert!(!shown.chars().any(|c| is_hostile(c) && c != '\n' && c != '\t'));
        }
    }
}

#[cfg(test)]
mod count_tests {
    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(super::count(1, "row", "rows"), "1 row");
        assert_eq!(super::count(0, "row", "rows"), "0 rows");
        assert_eq!(super::count(2, "row", "rows"), "2 rows");
        assert_eq!(super::count(-1, "row", "rows"), "-1 rows");
    }
}
