//! Connection strings: never panic, never show the password.
#![no_main]

use crondeck::db::connect::ConnectionSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(garbage) = std::str::from_utf8(data) else { return };
    for input in [
        garbage.to_string(),
        format!("postgres://u:s3cr3t-pw@h/{garbage}"),
        format!("password=s3cr3t-pw {garbage}"),
    ] {
        match ConnectionSpec::parse(&input, &|_| None) {
            Ok(spec) => {
                assert!(!spec.target().contains("s3cr3t-pw"));
                assert!(!format!("{spec:?}").contains("s3cr3t-pw"));
            }
            Err(error) => assert!(!error.to_string().contains("s3cr3t-pw")),
        }
    }
});
