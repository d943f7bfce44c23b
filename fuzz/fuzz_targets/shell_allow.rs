//! The shell allow-list: whatever is admitted is a plain absolute program
//! strictly inside the allowed directory, and the shell-words parser agrees
//! on what the program is.
#![no_main]

use crondeck::scheduler::allow::{admits, GLOB, METACHARACTERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let command = String::from_utf8_lossy(data);
    let allow = vec!["/opt/jobs/".to_owned()];
    if let Ok(program) = admits(&command, &allow) {
        assert!(program.starts_with("/opt/jobs/") && program.len() > "/opt/jobs/".len());
        assert!(!program.split('/').any(|s| s == "." || s == ".."));
        assert!(!program.contains(GLOB) && !command.contains(METACHARACTERS));
        let words = shell_words::split(&command).expect("admitted commands parse");
        assert_eq!(words.first().map(String::as_str), Some(program));
    }
});
