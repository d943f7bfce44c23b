//! Showing untrusted text (job names, commands, output, errors) to a person.
//!
//! Anything a job or a job definition contains may be hostile: escape
//! sequences that move the cursor, recolour or retitle the terminal, carriage
//! returns that overwrite what was printed, bidirectional overrides and
//! zero-width characters that make text read differently from what it is.
//! `sanitize` makes all of them visible as escapes, so no byte from a job can
//! act on the terminal, and what is shown is what is there.

use std::fmt::Write as _;

/// Whether a character is shown escaped rather than printed.
fn is_hostile(c: char) -> bool {
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

/// A one-line field: hostile characters escaped, newlines too.
pub fn field(text: &str) -> String {
    sanitize(text, false)
}

/// Multi-line output: hostile characters escaped, newlines and tabs kept.
pub fn block(text: &str) -> String {
    sanitize(text, true)
}

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

    proptest! {
        #[test]
        fn nothing_hostile_survives(text in any::<String>()) {
            let shown = field(&text);
            prop_assert!(!shown.chars().any(is_hostile), "{shown:?}");
            let shown = block(&text);
            prop_assert!(!shown.chars().any(|c| is_hostile(c) && c != '\n' && c != '\t'));
        }
    }
}
