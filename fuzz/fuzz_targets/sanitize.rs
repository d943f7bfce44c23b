//! Untrusted text shown to people: no control character survives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let shown = crondeck::text::field(&text);
    assert!(!shown.chars().any(char::is_control));
});
