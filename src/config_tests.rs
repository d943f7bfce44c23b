use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

fn default_dir() -> anyhow::Result<PathBuf> {
    Ok(PathBuf::from("/default/data"))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn data_dir(settings: &Settings) -> &Path {
    match &settings.database {
        DatabaseTarget::Embedded { data_dir } => data_dir,
        DatabaseTarget::External(spec) => panic!("expected embedded, got {spec:?}"),
    }
}

fn external_db(settings: &Settings) -> String {
    match &settings.database {
        DatabaseTarget::External(spec) => spec.config().get_dbname().unwrap().to_owned(),
        other => panic!("expected external, got {other:?}"),
    }
}

#[test]
fn default_config_path_prefers_xdg_then_home() {
    let env = env_of(&[("XDG_CONFIG_HOME", "/xdg"), ("HOME", "/home/u")]);
    assert_eq!(
        default_config_path(&env),
        Some(PathBuf::from("/xdg/crondeck/config.toml"))
    );
    let env = env_of(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/home/u")]);
    assert_eq!(
        default_config_path(&env),
        Some(PathBuf::from("/home/u/.config/crondeck/config.toml"))
    );
    assert_eq!(default_config_path(&env_of(&[])), None);
}

#[test]
fn full_file_parses() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.toml",
        r#"
database_url = "postgres://u@h/db"
data_dir = "/srv/crondeck"
read_only = true
[scheduler]
workers = 4
allow_shell = true
lease = "30s"
heartbeat = "5s"
[retention]
keep_runs = 1000
keep_days = 30
"#,
    );
    let file = load_file(&path).unwrap();
    assert_eq!(file.database_url.as_deref(), Some("postgres://u@h/db"));
    assert_eq!(file.database_url_line, Some(2));
    assert_eq!(file.read_only, Some(true));
    assert_eq!(file.scheduler.workers, Some(4));
    assert_eq!(file.scheduler.lease.as_deref(), Some("30s"));
    assert_eq!(file.retention.keep_days, Some(30));
    assert!(!format!("{file:?}").contains("postgres://"));
}

#[test]
fn unknown_key_names_key_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "read_only = false\nfoo = 1\n");
    let msg = load_file(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:2: unknown key \"foo\"", path.display())),
        "{msg}"
    );
    assert!(
        msg.contains("expected one of: database_url, data_dir"),
        "{msg}"
    );

    let path = write(
        dir.path(),
        "d.toml",
        "[scheduler]\nworkers = 2\nworkerz = 3\n",
    );
    let msg = load_file(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:3: unknown key \"workerz\" in [scheduler]",
            path.display()
        )),
        "{msg}"
    );
}

#[test]
fn wrong_type_names_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.toml",
        "[retention]\n\nkeep_days = \"many\"\n",
    );
    let msg = load_file(&path).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:3: invalid value for \"keep_days\"",
            path.display()
        )),
        "{msg}"
    );
    let path = write(dir.path(), "d.toml", "read_only = 1\n");
    let msg = load_file(&path).unwrap_err().to_string();
    assert!(msg.contains(":1: invalid value for \"read_only\""), "{msg}");
}

#[test]
fn syntax_error_has_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "read_only = false\n[scheduler\n");
    let msg = load_file(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}:2: ", path.display())), "{msg}");
}

#[test]
fn missing_explicit_config_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let args = GlobalArgs {
        config: Some(dir.path().join("nope.toml")),
        ..Default::default()
    };
    let err = resolve(&args, &env_of(&[]), default_dir).unwrap_err();
    assert!(
        err.to_string().contains("nope.toml: config file not found"),
        "{err}"
    );
}

#[test]
fn missing_default_config_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = dir.path().to_str().unwrap();
    let settings = resolve(
        &GlobalArgs::default(),
        &env_of(&[("XDG_CONFIG_HOME", xdg)]),
        default_dir,
    )
    .unwrap();
    assert_eq!(data_dir(&settings), Path::new("/default/data"));
    assert_eq!(settings.config_path, None);
    assert!(!settings.read_only);
}

#[test]
fn default_config_file_is_read() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("crondeck")).unwrap();
    let path = write(
        &dir.path().join("crondeck"),
        "config.toml",
        "data_dir = \"data\"\nread_only = true\n",
    );
    let xdg = dir.path().to_str().unwrap();
    let settings = resolve(
        &GlobalArgs::default(),
        &env_of(&[("XDG_CONFIG_HOME", xdg)]),
        default_dir,
    )
    .unwrap();
    assert_eq!(settings.config_path.as_deref(), Some(path.as_path()));
    // Relative data_dir is relative to the config file.
    assert_eq!(data_dir(&settings), dir.path().join("crondeck/data"));
    assert!(settings.read_only);
}

#[test]
fn data_dir_precedence_flag_env_file_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "data_dir = \"/from/file\"\n");
    let with_file = GlobalArgs {
        config: Some(path),
        ..Default::default()
    };
    let env = env_of(&[("CRONDECK_DATA_DIR", "/from/env")]);

    let flag = GlobalArgs {
        data_dir: Some("/from/flag".into()),
        ..with_file.clone()
    };
    let s = resolve(&flag, &env, default_dir).unwrap();
    assert_eq!(data_dir(&s), Path::new("/from/flag"));
    let s = resolve(&with_file, &env, default_dir).unwrap();
    assert_eq!(data_dir(&s), Path::new("/from/env"));
    let s = resolve(&with_file, &env_of(&[]), default_dir).unwrap();
    assert_eq!(data_dir(&s), Path::new("/from/file"));
    let s = resolve(&GlobalArgs::default(), &env_of(&[]), default_dir).unwrap();
    assert_eq!(data_dir(&s), Path::new("/default/data"));
}

#[test]
fn database_url_precedence_flag_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.toml",
        "database_url = \"postgres://u@h/filedb\"\ndata_dir = \"/x\"\n",
    );
    let with_file = GlobalArgs {
        config: Some(path),
        ..Default::default()
    };
    let env = env_of(&[("DATABASE_URL", "host=h user=u dbname=envdb")]);
    let flag = GlobalArgs {
        database_url: Some("postgres://u@h/flagdb".into()),
        ..with_file.clone()
    };
    assert_eq!(
        external_db(&resolve(&flag, &env, default_dir).unwrap()),
        "flagdb"
    );
    assert_eq!(
        external_db(&resolve(&with_file, &env, default_dir).unwrap()),
        "envdb"
    );
    let empty_env = env_of(&[("DATABASE_URL", "")]);
    assert_eq!(
        external_db(&resolve(&with_file, &empty_env, default_dir).unwrap()),
        "filedb"
    );
}

#[test]
fn pg_variables_alone_keep_embedded() {
    let env = env_of(&[("PGHOST", "db"), ("PGUSER", "u"), ("PGDATABASE", "x")]);
    let s = resolve(&GlobalArgs::default(), &env, default_dir).unwrap();
    assert_eq!(data_dir(&s), Path::new("/default/data"));
}

#[test]
fn external_database_does_not_ask_for_default_data_dir() {
    let args = GlobalArgs {
        database_url: Some("postgres://u@h/db".into()),
        ..Default::default()
    };
    let s = resolve(&args, &env_of(&[]), || anyhow::bail!("must not be called")).unwrap();
    assert_eq!(external_db(&s), "db");
}

#[test]
fn bad_urls_name_their_source_without_password() {
    let args = GlobalArgs {
        database_url: Some("postgres://u:s3cr3t-pw@h/db?sslmode=bogus".into()),
        ..Default::default()
    };
    let err = resolve(&args, &env_of(&[]), default_dir).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("--database-url: invalid connection string"),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t-pw"), "{msg}");

    let env = env_of(&[("DATABASE_URL", "host=h password=s3cr3t-pw bogus")]);
    let msg = format!(
        "{:#}",
        resolve(&GlobalArgs::default(), &env, default_dir).unwrap_err()
    );
    assert!(
        msg.starts_with("DATABASE_URL: invalid connection string"),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t-pw"), "{msg}");

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "c.toml",
        "# comment\n\ndatabase_url = \"host=h password=s3cr3t-pw sslmode=nope\"\n",
    );
    let args = GlobalArgs {
        config: Some(path.clone()),
        ..Default::default()
    };
    let msg = format!(
        "{:#}",
        resolve(&args, &env_of(&[]), default_dir).unwrap_err()
    );
    assert!(
        msg.starts_with(&format!("{}:3: invalid connection string", path.display())),
        "{msg}"
    );
    assert!(!msg.contains("s3cr3t-pw"), "{msg}");
}

#[test]
fn read_only_precedence() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "c.toml", "read_only = true\n");
    let args = GlobalArgs {
        config: Some(path),
        ..Default::default()
    };
    assert!(resolve(&args, &env_of(&[]), default_dir).unwrap().read_only);
    let env = env_of(&[("CRONDECK_READ_ONLY", "no")]);
    assert!(!resolve(&args, &env, default_dir).unwrap().read_only);
    let flag = GlobalArgs {
        read_only: true,
        ..args.clone()
    };
    assert!(resolve(&flag, &env, default_dir).unwrap().read_only);
    let bad = env_of(&[("CRONDECK_READ_ONLY", "maybe")]);
    let msg = resolve(&args, &bad, default_dir).unwrap_err().to_string();
    assert!(msg.starts_with("CRONDECK_READ_ONLY: "), "{msg}");
}
