use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as PgSslMode};

use super::*;

const PW: &str = "s3cr3t-pw";

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}

/// Parses with a fixed environment (USER=me) and no default socket directory.
fn parse(input: &str) -> Result<ConnectionSpec, ConnectError> {
    parse_env(input, &[])
}

fn parse_env(input: &str, extra: &[(&str, &str)]) -> Result<ConnectionSpec, ConnectError> {
    let mut pairs = vec![("USER", "me")];
    pairs.extend_from_slice(extra);
    ConnectionSpec::parse_with(input, &env_of(&pairs), &|_| false)
}

fn tcp(name: &str) -> Host {
    Host::Tcp(name.to_owned())
}

/// Neither target(), Debug nor any error may show the password.
fn assert_no_password(spec: &ConnectionSpec) {
    let target = spec.target();
    let debug = format!("{spec:?}");
    assert!(!target.contains(PW), "{target}");
    assert!(!debug.contains(PW), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

fn parse_err(input: &str) -> String {
    let err = parse(input).expect_err("should fail");
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains(PW), "password leaked: {msg}");
    err.to_string()
}

#[test]
fn url_with_password() {
    let spec = parse(&format!("postgres://alice:{PW}@db.example:6543/app")).unwrap();
    let c = spec.config();
    assert_eq!(c.get_user(), Some("alice"));
    assert_eq!(c.get_password(), Some(PW.as_bytes()));
    assert_eq!(c.get_hosts(), &[tcp("db.example")]);
    assert_eq!(c.get_ports(), &[6543]);
    assert_eq!(c.get_dbname(), Some("app"));
    assert_eq!(c.get_application_name(), Some("crondeck"));
    assert_eq!(spec.ssl_mode(), SslMode::Prefer);
    assert_eq!(c.get_ssl_mode(), PgSslMode::Prefer);
    assert_eq!(spec.target(), "alice@db.example:6543/app");
    assert_no_password(&spec);
}

#[test]
fn url_without_password_and_postgresql_scheme() {
    let spec = parse("postgresql://bob@db/app").unwrap();
    assert_eq!(spec.config().get_password(), None);
    assert_eq!(spec.target(), "bob@db:5432/app");
    assert!(format!("{spec:?}").contains("password: None"));
}

#[test]
fn url_percent_encoding() {
    let spec =
        parse("postgres://us%40er:p%40ss%2Fw%3Fd@db/my%20db?application_name=a%26b").unwrap();
    let c = spec.config();
    assert_eq!(c.get_user(), Some("us@er"));
    assert_eq!(c.get_password(), Some("p@ss/w?d".as_bytes()));
    assert_eq!(c.get_dbname(), Some("my db"));
    assert_eq!(c.get_application_name(), Some("a&b"));
}

#[test]
fn url_ipv6_and_multiple_hosts() {
    let spec = parse("postgres://u@[::1]:5433/db").unwrap();
    assert_eq!(spec.config().get_hosts(), &[tcp("::1")]);
    assert_eq!(spec.target(), "u@[::1]:5433/db");
    let spec = parse("postgres://u@h1:5433,h2:5434/db").unwrap();
    assert_eq!(spec.config().get_hosts(), &[tcp("h1"), tcp("h2")]);
    assert_eq!(spec.config().get_ports(), &[5433, 5434]);
    assert_eq!(spec.target(), "u@h1:5433,h2:5434/db");
    let spec = parse("postgres://u@h1,[::1]/db").unwrap();
    assert_eq!(spec.config().get_hosts(), &[tcp("h1"), tcp("::1")]);
}

#[test]
fn url_socket_hosts() {
    let spec = parse("postgres:///db?host=/tmp&port=5433").unwrap();
    assert_eq!(spec.config().get_hosts(), &[Host::Unix("/tmp".into())]);
    assert_eq!(spec.target(), "me@/tmp:5433/db");
    let spec = parse("postgres://u@%2Fvar%2Frun%2Fpostgresql/db?sslmode=verify-full").unwrap();
    assert_eq!(
        spec.config().get_hosts(),
        &[Host::Unix("/var/run/postgresql".into())]
    );
    // Sockets never use TLS, whatever was asked.
    assert_eq!(spec.ssl_mode(), SslMode::VerifyFull);
    assert_eq!(spec.config().get_ssl_mode(), PgSslMode::Disable);
    assert!(spec.make_tls().is_ok());
}

#[test]
fn key_value_with_quotes_and_escapes() {
    let spec = parse(&format!(
        r"host=db port = 5433 dbname='my db' user=y password='{PW} it\'s' application_name=a\ b sslmode=require"
    ))
    .unwrap();
    let c = spec.config();
    assert_eq!(c.get_hosts(), &[tcp("db")]);
    assert_eq!(c.get_ports(), &[5433]);
    assert_eq!(c.get_dbname(), Some("my db"));
    assert_eq!(c.get_user(), Some("y"));
    assert_eq!(c.get_password(), Some(format!("{PW} it's").as_bytes()));
    assert_eq!(c.get_application_name(), Some("a b"));
    assert_eq!(spec.ssl_mode(), SslMode::Require);
    assert_eq!(c.get_ssl_mode(), PgSslMode::Require);
    assert_eq!(spec.target(), "y@db:5433/my db");
    assert_no_password(&spec);

    let spec = parse(r"host=/var/run/postgresql password='' dbname='a\\b'").unwrap();
    assert_eq!(
        spec.config().get_hosts(),
        &[Host::Unix("/var/run/postgresql".into())]
    );
    assert_eq!(spec.config().get_password(), Some(&b""[..]));
    assert_eq!(spec.config().get_dbname(), Some(r"a\b"));
}

#[test]
fn key_value_multiple_hosts() {
    let spec = parse("host=h1,h2 port=5433,5434 user=u").unwrap();
    assert_eq!(spec.target(), "u@h1:5433,h2:5434/u");
}

#[test]
fn all_ssl_modes_and_invalid() {
    for mode in SslMode::ALL {
        let spec = parse(&format!("host=h sslmode={mode}")).unwrap();
        assert_eq!(spec.ssl_mode(), mode);
        let spec = parse(&format!("postgres://h/db?sslmode={mode}")).unwrap();
        assert_eq!(spec.ssl_mode(), mode);
        assert_eq!(mode.as_str().parse::<SslMode>().unwrap(), mode);
    }
    let expected_pg = [
        PgSslMode::Disable,
        PgSslMode::Prefer,
        PgSslMode::Require,
        PgSslMode::Require,
        PgSslMode::Require,
    ];
    for (mode, pg) in SslMode::ALL.into_iter().zip(expected_pg) {
        let spec = parse(&format!("host=h sslmode={mode}")).unwrap();
        assert_eq!(spec.config().get_ssl_mode(), pg, "{mode}");
    }
    let msg = parse_err(&format!("host=h password={PW} sslmode=allow"));
    assert!(
        msg.contains("invalid value for sslmode (expected one of: disable, prefer, require, verify-ca, verify-full)"),
        "{msg}"
    );
    assert!(msg.contains("expected a URL like postgres://"), "{msg}");
    let msg = parse_err(&format!("postgres://u:{PW}@h/db?sslmode=verify"));
    assert!(msg.contains("invalid value for sslmode"), "{msg}");
    let err = parse_env("host=h", &[("PGSSLMODE", "strict")]).unwrap_err();
    assert!(
        err.to_string().contains("invalid value for PGSSLMODE"),
        "{err}"
    );
}

#[test]
fn sslrootcert_in_both_forms() {
    let spec = parse("host=h sslmode=verify-full sslrootcert='/etc/ca dir/root.crt'").unwrap();
    assert_eq!(
        spec.ssl_root_cert(),
        Some(Path::new("/etc/ca dir/root.crt"))
    );
    let spec =
        parse("postgres://h/db?sslrootcert=%2Fetc%2Fca.pem&sslmode=verify-ca&connect_timeout=3")
            .unwrap();
    assert_eq!(spec.ssl_root_cert(), Some(Path::new("/etc/ca.pem")));
    assert_eq!(spec.ssl_mode(), SslMode::VerifyCa);
    assert_eq!(
        spec.config().get_connect_timeout(),
        Some(&Duration::from_secs(3))
    );
    // A missing root file is a TLS setup error naming the file.
    let Err(err) = spec.make_tls() else {
        panic!("expected a TLS setup error")
    };
    assert!(matches!(err, ConnectError::Tls { .. }));
    assert!(err.to_string().contains("/etc/ca.pem"), "{err}");
}

#[test]
fn env_fills_gaps() {
    let env = [
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGDATABASE", "envdb"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", PW),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", "/env/ca.pem"),
        ("PGAPPNAME", "envapp"),
        ("PGCONNECT_TIMEOUT", "7"),
    ];
    for input in ["", "postgres://", "postgresql:///"] {
        let spec = parse_env(input, &env).unwrap();
        let c = spec.config();
        assert_eq!(c.get_hosts(), &[tcp("envhost")], "{input}");
        assert_eq!(c.get_ports(), &[6000]);
        assert_eq!(c.get_dbname(), Some("envdb"));
        assert_eq!(c.get_user(), Some("envuser"));
        assert_eq!(c.get_password(), Some(PW.as_bytes()));
        assert_eq!(spec.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(spec.ssl_root_cert(), Some(Path::new("/env/ca.pem")));
        assert_eq!(c.get_application_name(), Some("envapp"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(7)));
        assert_no_password(&spec);
    }
    // PGPORT also applies to a URL host given without a port, as in libpq.
    let spec = parse_env("postgres://h/db", &env).unwrap();
    assert_eq!(spec.target(), "envuser@h:6000/db");
}

#[test]
fn explicit_values_beat_env() {
    let env = [
        ("PGHOST", "envhost"),
        ("PGPORT", "6000"),
        ("PGDATABASE", "envdb"),
        ("PGUSER", "envuser"),
        ("PGPASSWORD", "envpw"),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", "/env/ca.pem"),
        ("PGAPPNAME", "envapp"),
        ("PGCONNECT_TIMEOUT", "7"),
    ];
    let url = format!(
        "postgres://u:{PW}@h:1234/db?sslmode=disable&sslrootcert=/mine.pem&application_name=mine&connect_timeout=2"
    );
    let kv = format!(
        "host=h port=1234 user=u password={PW} dbname=db sslmode=disable sslrootcert=/mine.pem application_name=mine connect_timeout=2"
    );
    for input in [url, kv] {
        let spec = parse_env(&input, &env).unwrap();
        let c = spec.config();
        assert_eq!(spec.target(), "u@h:1234/db");
        assert_eq!(c.get_password(), Some(PW.as_bytes()));
        assert_eq!(spec.ssl_mode(), SslMode::Disable);
        assert_eq!(spec.ssl_root_cert(), Some(Path::new("/mine.pem")));
        assert_eq!(c.get_application_name(), Some("mine"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(2)));
    }
}

#[test]
fn defaults() {
    let spec = parse("").unwrap();
    assert_eq!(spec.config().get_hosts(), &[tcp("localhost")]);
    assert_eq!(spec.target(), "me@localhost:5432/me");
    assert_eq!(spec.ssl_mode(), SslMode::Prefer);
    assert_eq!(spec.config().get_application_name(), Some("crondeck"));
    assert_eq!(spec.config().get_connect_timeout(), None);

    let spec = ConnectionSpec::parse_with("dbname=x", &env_of(&[("LOGNAME", "lg")]), &|dir| {
        dir == Path::new("/var/run/postgresql")
    })
    .unwrap();
    assert_eq!(
        spec.config().get_hosts(),
        &[Host::Unix("/var/run/postgresql".into())]
    );
    assert_eq!(spec.target(), "lg@/var/run/postgresql:5432/x");
    assert_eq!(spec.config().get_ssl_mode(), PgSslMode::Disable);

    let err = ConnectionSpec::parse_with("host=h", &env_of(&[]), &|_| false).unwrap_err();
    assert!(err.to_string().contains("no user name"), "{err}");

    // Only hostaddr: it doubles as the TLS name.
    let spec = parse("hostaddr=127.0.0.1 sslmode=require").unwrap();
    assert_eq!(spec.config().get_hosts(), &[tcp("127.0.0.1")]);
}

#[test]
fn syntax_errors_do_not_leak() {
    let msg = parse_err(&format!("host=h password={PW} more"));
    assert!(
        msg.contains("unexpected text after the value of \"password\""),
        "{msg}"
    );
    let msg = parse_err(&format!("password={PW} also-secret=1"));
    assert!(msg.contains("after the value of \"password\""), "{msg}");
    let msg = parse_err(&format!("password='{PW}"));
    assert!(
        msg.contains("unterminated quoted value for \"password\""),
        "{msg}"
    );
    let msg = parse_err("password= ");
    assert!(msg.contains("missing value for \"password\""), "{msg}");
    let msg = parse_err(&format!("mysql://u:{PW}@h/db"));
    assert!(msg.contains("unsupported URL scheme"), "{msg}");
    let msg = parse_err(PW);
    assert!(msg.contains("expected key=value pairs"), "{msg}");
    let msg = parse_err(&format!("host=h password={PW} port=http"));
    assert!(msg.contains("`port`"), "{msg}");
    let msg = parse_err(&format!("host=h password={PW} frobnicate=1"));
    assert!(msg.contains("frobnicate"), "{msg}");
    let msg = parse_err(&format!("postgres://u:{PW}@h:notaport/db"));
    assert!(msg.starts_with("invalid connection string"), "{msg}");
    let msg = parse_err(&format!("postgres://u:{PW}@h/db?nope=1"));
    assert!(msg.contains("nope"), "{msg}");
    let msg = parse_err(&format!("postgres://u:{PW}@h/db?sslmode=%zz"));
    assert!(msg.contains("percent-encoding in sslmode"), "{msg}");
    let err = parse_env("host=h", &[("PGPORT", PW)]).unwrap_err();
    assert!(!err.to_string().contains(PW));
}

#[test]
fn from_config_is_plain_and_named() {
    let mut config = Config::new();
    config
        .host_path("/tmp/sock")
        .port(5999)
        .user("crondeck")
        .dbname("crondeck");
    let mut spec = ConnectionSpec::from_config(config);
    assert_eq!(spec.ssl_mode(), SslMode::Disable);
    assert_eq!(spec.config().get_ssl_mode(), PgSslMode::Disable);
    assert_eq!(spec.config().get_application_name(), Some("crondeck"));
    assert_eq!(spec.target(), "crondeck@/tmp/sock:5999/crondeck");
    spec.config_mut().dbname("other");
    assert_eq!(spec.target(), "crondeck@/tmp/sock:5999/other");
}

#[tokio::test]
async fn connect_errors_name_target_without_password() {
    // Port 1 on loopback: nothing listens there, so this is refused at once.
    let spec = parse(&format!("postgres://u:{PW}@127.0.0.1:1/db?sslmode=disable")).unwrap();
    let err = spec.connect().await.unwrap_err();
    let msg = format!("{err} {err:?}");
    let msg = format!("{msg} {:#}", anyhow::Error::from(err));
    assert!(
        msg.starts_with("could not connect to u@127.0.0.1:1/db: "),
        "{msg}"
    );
    assert!(!msg.contains(PW), "{msg}");
}

/// Regression (issue 11): in `postgres://u:p@ss@host/db` the password's tail
/// became the host name, and showed in `target()` and errors.
#[test]
fn an_unencoded_at_in_a_password_never_leaks_its_tail() {
    let spec = parse("postgres://u:hunter@2secret@db.example/app").unwrap();
    let c = spec.config();
    assert_eq!(c.get_password(), Some("hunter@2secret".as_bytes()));
    assert_eq!(c.get_hosts(), [tcp("db.example")]);
    assert_eq!(c.get_dbname(), Some("app"));
    let spec = parse("postgres://u:hunter@2sec@ret@db.example?application_name=a@b").unwrap();
    assert_eq!(
        spec.config().get_password(),
        Some("hunter@2sec@ret".as_bytes())
    );
    assert_eq!(spec.config().get_application_name(), Some("a@b"));
    assert!(!spec.target().contains("2sec") && !spec.target().contains("hunter"));
    for (url, parts) in [
        (
            "postgres://u:hunter@2secret@db.example:notaport/app",
            &["hunter", "2secret"][..],
        ),
        (
            "postgres://u:hunter@2se/cret@db.example/app",
            &["hunter", "2se", "cret"],
        ),
        (
            "postgres://u:hunter@2secret@db.example/app@x",
            &["hunter", "2secret"],
        ),
        (
            "postgresql://u:hunter@2se%zzcret@db.example/app",
            &["hunter", "2se", "cret"],
        ),
        (
            "postgres://u:hunter@2secret@[db.example/app",
            &["hunter", "2secret"],
        ),
    ] {
        match parse(url) {
            Err(e) => {
                let msg = format!("{e} {e:?}");
                for part in parts {
                    assert!(!msg.contains(part), "{url}: {part} leaked in {msg}");
                }
            }
            Ok(spec) => {
                let shown = format!("{} {spec:?}", spec.target());
                for part in parts {
                    assert!(!shown.contains(part), "{url}: {part} leaked in {shown}");
                }
            }
        }
    }
}
