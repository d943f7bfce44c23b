//! Job files: never panic; every error names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else { return };
    if let Err(error) = crondeck::jobfile::parse(input, std::path::Path::new("jobs.toml")) {
        assert!(error.to_string().starts_with("jobs.toml:"));
    }
});
