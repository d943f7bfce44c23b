use super::*;
use proptest::prelude::*;
use std::os::unix::fs::{symlink, PermissionsExt};

fn list(entries: &[&str]) -> Vec<String> {
    entries.iter().map(|e| (*e).to_owned()).collect()
}

#[test]
fn the_shared_cases_hold() {
    for (command, allow, admitted) in CASES {
        let result = admits(command, &list(allow));
        assert_eq!(
            result.is_ok(),
            *admitted,
            "{command:?} with {allow:?}: {result:?}"
        );
    }
}

#[test]
fn refusals_name_the_reason() {
    let allow = list(&["/opt/jobs/"]);
    let refused = |c: &str| admits(c, &allow).unwrap_err();
    assert_eq!(
        refused("/opt/jobs/../../bin/sh -c id"),
        Refusal::DotSegment("/opt/jobs/../../bin/sh".into())
    );
    assert_eq!(
        refused("/opt/jobsEVIL/x").to_string(),
        "program /opt/jobsEVIL/x is not under /opt/jobs/"
    );
    assert_eq!(refused("/opt/jobs/*"), Refusal::Glob("/opt/jobs/*".into()));
    assert_eq!(refused("/opt/jobs/x; id"), Refusal::Metacharacter(';'));
}

#[test]
fn entries_must_be_plain_absolute_directories() {
    for good in ["/opt/jobs", "/opt/jobs/", "/", "/srv/cron-jobs.d"] {
        assert_eq!(validate_entry(good), Ok(()), "{good}");
    }
    for bad in [
        "",
        " ",
        "opt/jobs",
        "echo allowed",
        "/opt/../bin",
        "/opt/./x",
        "/opt/j*",
        "/opt/a;b",
        "/opt/a b",
    ] {
        assert!(validate_entry(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn argv_is_split_like_a_shell_without_expanding_anything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let program = root.join("job");
    std::fs::write(&program, "#!/bin/sh\n").unwrap();
    let allow = vec![root.display().to_string()];
    let command = format!("{} 'a b' \"*\" '#x' ~ c", program.display());
    assert_eq!(
        argv_for(&command, &allow).unwrap(),
        [&program.display().to_string(), "a b", "*", "#x", "~", "c"]
    );
}

#[test]
fn a_symlink_out_of_the_allowed_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let jobs = root.join("jobs");
    std::fs::create_dir(&jobs).unwrap();
    symlink("/bin/sh", jobs.join("sh")).unwrap();
    symlink(&root, jobs.join("up")).unwrap();
    std::fs::write(root.join("outside"), "#!/bin/sh\n").unwrap();
    let inside = jobs.join("ok");
    std::fs::write(&inside, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o755)).unwrap();
    symlink(&inside, jobs.join("alias")).unwrap();
    let allow = vec![jobs.display().to_string()];
    for escape in ["sh -c id", "up/outside"] {
        let command = format!("{}/{escape}", jobs.display());
        assert!(
            matches!(
                argv_for(&command, &allow),
                Err(Refusal::ResolvesOutside { .. })
            ),
            "{command}"
        );
    }
    let missing = format!("{}/missing", jobs.display());
    assert!(matches!(
        argv_for(&missing, &allow),
        Err(Refusal::Unresolvable { .. })
    ));
    // A symlink that stays inside is fine.
    let alias = format!("{}/alias x", jobs.display());
    assert!(argv_for(&alias, &allow).is_ok());
}

#[test]
fn the_cli_explanation_distinguishes_no_shell_node_from_a_refusing_list() {
    assert_eq!(
        why_refused("/opt/jobs/x", &[]).unwrap(),
        "no live node allows shell jobs (start one with --allow-shell)"
    );
    assert_eq!(why_refused("/opt/jobs/x", &[None]), None);
    assert_eq!(
        why_refused(
            "/opt/jobs/x",
            &[Some(list(&["/srv"])), Some(list(&["/opt/jobs"]))]
        ),
        None
    );
    assert_eq!(
        why_refused("/opt/jobsEVIL/x", &[Some(list(&["/opt/jobs/"]))]).unwrap(),
        "the allow-lists of the live shell nodes do not admit this command: \
         program /opt/jobsEVIL/x is not under /opt/jobs/"
    );
}

/// Words a hostile command is made of.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("/".to_owned()),
        Just("/opt/jobs".to_owned()),
        Just("/opt/jobsEVIL".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        Just("'".to_owned()),
        Just("\"".to_owned()),
        Just("*".to_owned()),
        Just("[".to_owned()),
        Just(";".to_owned()),
        Just("\\".to_owned()),
        Just("x".to_owned()),
        Just("#".to_owned()),
        "\\PC{0,3}",
    ]
}

proptest! {
    /// Whatever is admitted is a plain absolute program strictly inside
    /// the directory, and the parser agrees on what the program is.
    #[test]
    fn whatever_is_admitted_is_a_plain_program_inside(
        parts in proptest::collection::vec(word(), 0..12),
        slash in any::<bool>(),
    ) {
        let command: String = parts.concat();
        let allow = vec![if slash { "/opt/jobs/" } else { "/opt/jobs" }.to_owned()];
        if let Ok(program) = admits(&command, &allow) {
            prop_assert!(program.starts_with("/opt/jobs/"), "{command:?}");
            prop_assert!(program.len() > "/opt/jobs/".len());
            prop_assert!(!program.split('/').any(|s| s == "." || s == ".."));
            prop_assert!(!program.contains(GLOB));
            prop_assert!(!command.contains(METACHARACTERS));
            let words = shell_words::split(&command);
            prop_assert!(words.is_ok(), "{command:?}");
            let words = words.unwrap_or_default();
            prop_assert_eq!(words.first().map(String::as_str), Some(program));
        }
    }
}
