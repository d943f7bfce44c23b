//! Reaching the database: connection strings, PG* environment fallbacks, TLS.
//!
//! This module owns turning what a user typed (a libpq URL or a key=value
//! string) into a [`ConnectionSpec`] and turning that into a connected
//! [`tokio_postgres::Client`]. It follows libpq where it can:
//!
//! * Both string forms are handed to tokio-postgres's own parser, except for
//!   `sslmode` and `sslrootcert`, which tokio-postgres does not understand
//!   fully (it only knows `disable`/`prefer`/`require` and has no root-cert
//!   option). Those two are lifted out first, respecting quoting and
//!   percent-encoding.
//! * Anything the string leaves out is filled from PGHOST, PGPORT, PGDATABASE,
//!   PGUSER, PGPASSWORD, PGSSLMODE, PGSSLROOTCERT, PGAPPNAME and
//!   PGCONNECT_TIMEOUT; explicit values always win. `~/.pgpass` and
//!   `pg_service.conf` are not read.
//! * Defaults: host is PGHOST, else the socket directory `/var/run/postgresql`
//!   if it exists, else `localhost`; user is PGUSER, else `$USER`/`$LOGNAME`;
//!   dbname is the user; sslmode is `prefer`; application_name is `crondeck`;
//!   the connect timeout is 10 s per host.
//! * Unix-socket connections never use TLS, whatever the sslmode (libpq
//!   ignores sslmode on sockets too).
//!
//! Passwords never appear in [`ConnectionSpec::target`], its `Debug` output or
//! any [`ConnectError`] message.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::tls::{self, MakeTls, Verification};
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::{Client, Config};

/// Per-host connect timeout when neither the string nor PGCONNECT_TIMEOUT sets one.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// `application_name` reported to the server unless the user picks another.
pub const DEFAULT_APPLICATION_NAME: &str = "crondeck";
/// libpq's socket directory on Debian-family systems.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

const PARSE_HINT: &str = "expected a URL like postgres://user@host:5432/db or key=value pairs like host=localhost dbname=crondeck";

/// libpq `sslmode` values (`allow` is not supported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain connection only.
    Disable,
    /// TLS if the server offers it, else plain; certificate not verified.
    Prefer,
    /// TLS; certificate not verified unless an `sslrootcert` is given.
    Require,
    /// TLS; the chain must lead to a trusted root, the host name is not checked.
    VerifyCa,
    /// TLS; chain and host name are verified.
    VerifyFull,
}

impl SslMode {
    /// All modes, in libpq's order.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// Parses a value; `origin` names where it came from for the error
    /// (`sslmode` or `PGSSLMODE`). The value itself is not echoed.
    fn parse_from(value: &str, origin: &str) -> Result<SslMode, ConnectError> {
        SslMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == value)
            .ok_or_else(|| {
                let valid: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_str()).collect();
                parse_error(format!(
                    "invalid value for {origin} (expected one of: {})",
                    valid.join(", ")
                ))
            })
    }
}

impl FromStr for SslMode {
    type Err = ConnectError;

    fn from_str(s: &str) -> Result<SslMode, ConnectError> {
        SslMode::parse_from(s, "sslmode")
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a connection string could not be used or a connection not be made.
/// No variant's message contains the password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The string (or a PG* variable) is malformed.
    #[error("invalid connection string: {message} ({PARSE_HINT})")]
    Parse { message: String },
    /// The TLS client could not be set up (unreadable or empty sslrootcert, …).
    #[error("TLS setup failed: {message}")]
    Tls { message: String },
    /// The server could not be reached, refused TLS or authentication, or the
    /// TLS handshake failed (certificate problems carry a hint).
    ///
    /// tokio-postgres 0.7's own Display shows only the error kind ("error
    /// performing TLS handshake"), so the message spells out the whole cause
    /// chain; `cause` is therefore not also reported as `source()`, which
    /// would print it twice under `{:#}`. Inspect it (e.g. `as_db_error()`)
    /// through the field.
    #[error("could not connect to {target}: {}{}", error_chain(.cause), hint_suffix(*.hint))]
    Connect {
        target: String,
        cause: tokio_postgres::Error,
        hint: Option<&'static str>,
    },
    /// No answer within the connect timeout.
    #[error("timed out after {}s connecting to {target}", .after.as_secs())]
    Timeout { target: String, after: Duration },
}

/// `kind: cause: cause…`, skipping repeats.
fn error_chain(error: &tokio_postgres::Error) -> String {
    let mut parts: Vec<String> = vec![error.to_string()];
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn hint_suffix(hint: Option<&'static str>) -> String {
    hint.map(|h| format!(" (hint: {h})")).unwrap_or_default()
}

fn parse_error(message: impl Into<String>) -> ConnectError {
    ConnectError::Parse {
        message: message.into(),
    }
}

/// Everything needed to connect: tokio-postgres settings plus the libpq TLS
/// options tokio-postgres does not model.
#[derive(Clone)]
pub struct ConnectionSpec {
    config: Config,
    ssl_mode: SslMode,
    ssl_root_cert: Option<PathBuf>,
}

impl ConnectionSpec {
    /// Parses a libpq URL (`postgres://…`, `postgresql://…`) or key=value
    /// string and fills the gaps from PG* variables read through `env`.
    pub fn parse(
        input: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ConnectionSpec, ConnectError> {
        Self::parse_with(input, env, &|dir| dir.is_dir())
    }

    /// [`ConnectionSpec::parse`] with the default-socket-directory probe injected.
    fn parse_with(
        input: &str,
        env: &dyn Fn(&str) -> Option<String>,
        socket_dir_exists: &dyn Fn(&Path) -> bool,
    ) -> Result<ConnectionSpec, ConnectError> {
        let env = |key: &str| env(key).filter(|v| !v.is_empty());
        let extracted = if is_url(input) {
            extract_url(input)?
        } else {
            extract_key_value(input)?
        };
        let mut config = Config::from_str(&extracted.rest).map_err(|e| {
            // tokio-postgres names keys, not values, but make sure anyway.
            let cause = e.source().map_or_else(|| e.to_string(), |s| s.to_string());
            parse_error(redact(cause, extracted.password.as_deref()))
        })?;

        if config.get_hosts().is_empty() {
            if let Some(hosts) = env("PGHOST") {
                hosts.split(',').for_each(|h| {
                    config.host(h);
                });
            } else if !config.get_hostaddrs().is_empty() {
                // tokio-postgres needs a host name for TLS; with only hostaddr
                // given, the address is the name the certificate must match.
                for addr in config.get_hostaddrs().to_vec() {
                    config.host(addr.to_string());
                }
            } else if socket_dir_exists(Path::new(DEFAULT_SOCKET_DIR)) {
                config.host_path(DEFAULT_SOCKET_DIR);
            } else {
                config.host("localhost");
            }
        }
        if config.get_ports().is_empty() {
            if let Some(ports) = env("PGPORT") {
                for port in ports.split(',') {
                    let port = match port {
                        "" => 5432,
                        p => p
                            .parse()
                            .map_err(|_| parse_error("PGPORT is not a valid port number"))?,
                    };
                    config.port(port);
                }
            }
        }
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .or_else(|| env("LOGNAME"))
                .ok_or_else(|| parse_error("no user name given (set user, PGUSER or USER)"))?;
            config.user(user);
        }
        if config.get_password().is_none() {
            if let Some(password) = env("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_dbname().is_none() {
            let dbname = env("PGDATABASE")
                .or_else(|| config.get_user().map(str::to_owned))
                .unwrap_or_default();
            config.dbname(dbname);
        }
        if config.get_application_name().is_none() {
            let name = env("PGAPPNAME").unwrap_or_else(|| DEFAULT_APPLICATION_NAME.to_owned());
            config.application_name(name);
        }
        if config.get_connect_timeout().is_none() {
            if let Some(value) = env("PGCONNECT_TIMEOUT") {
                let secs: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| parse_error("PGCONNECT_TIMEOUT is not a number of seconds"))?;
                // libpq: zero or negative means wait forever; we keep our default.
                if secs > 0 {
                    config.connect_timeout(Duration::from_secs(secs.unsigned_abs()));
                }
            }
        }

        let ssl_mode = match (&extracted.sslmode, env("PGSSLMODE")) {
            (Some(value), _) => SslMode::parse_from(value, "sslmode")?,
            (None, Some(value)) => SslMode::parse_from(&value, "PGSSLMODE")?,
            (None, None) => SslMode::Prefer,
        };
        let ssl_root_cert = extracted
            .sslrootcert
            .or_else(|| env("PGSSLROOTCERT"))
            .map(PathBuf::from);

        let mut spec = ConnectionSpec {
            config,
            ssl_mode,
            ssl_root_cert,
        };
        let pg_mode = spec.tokio_ssl_mode();
        spec.config.ssl_mode(pg_mode);
        Ok(spec)
    }

    /// Wraps an existing configuration (the embedded server's unix socket):
    /// sslmode disable, and application_name `crondeck` if none is set.
    pub fn from_config(mut config: Config) -> ConnectionSpec {
        config.ssl_mode(PgSslMode::Disable);
        if config.get_application_name().is_none() {
            config.application_name(DEFAULT_APPLICATION_NAME);
        }
        ConnectionSpec {
            config,
            ssl_mode: SslMode::Disable,
            ssl_root_cert: None,
        }
    }

    /// `user@host:port/dbname` for headers and logs; several hosts are joined
    /// with commas, socket directories shown as their path. Never the password.
    pub fn target(&self) -> String {
        let ports = self.config.get_ports();
        let port_of = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let hosts: Vec<String> = self
            .config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{}", port_of(i)),
                Host::Tcp(name) => format!("{name}:{}", port_of(i)),
                Host::Unix(path) => format!("{}:{}", path.display(), port_of(i)),
            })
            .collect();
        let user = self.config.get_user().unwrap_or_default();
        let dbname = self.config.get_dbname().unwrap_or(user);
        format!("{user}@{}/{dbname}", hosts.join(","))
    }

    /// The tokio-postgres settings (its ssl_mode already reflects [`Self::ssl_mode`]).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Mutable settings, e.g. to switch dbname. Changing hosts does not
    /// re-evaluate the socket-means-no-TLS rule.
    pub fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// Make a dead TCP link show up as an error within about `within`,
    /// instead of a hang: keepalive probes on an idle connection, and
    /// `tcp_user_timeout` for data sent but never acknowledged (a link that
    /// drops packets without a reset). Settings given in the connection
    /// string win. Unix sockets are not affected.
    pub fn set_liveness(&mut self, within: Duration) {
        let within = within.max(Duration::from_secs(1));
        if self.config.get_tcp_user_timeout().is_none() {
            self.config.tcp_user_timeout(within * 3);
        }
        if self.config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60) {
            self.config.keepalives_idle(within);
            self.config.keepalives_interval(within);
            self.config.keepalives_retries(3);
        }
    }

    /// Have the server end any transaction of these sessions that sits idle
    /// for longer than `after`, releasing its locks. A node whose link
    /// black-holes in the middle of a transaction (a claim, a finish) would
    /// otherwise hold its row locks until TCP gives up, and every other
    /// node's rescue and finishes touching those rows would wait with it.
    /// A node's own transactions are never idle for long: between their
    /// statements it only does local work.
    pub fn set_idle_transaction_limit(&mut self, after: Duration) {
        let ms = after.as_millis().clamp(100, i32::MAX as u128);
        let setting = format!("-c idle_in_transaction_session_timeout={ms}");
        let options = match self.config.get_options() {
            Some(existing) if !existing.trim().is_empty() => format!("{existing} {setting}"),
            _ => setting,
        };
        self.config.options(&options);
    }

    /// The libpq sslmode asked for.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The `sslrootcert` path, if any (`system` means the platform store).
    pub fn ssl_root_cert(&self) -> Option<&Path> {
        self.ssl_root_cert.as_deref()
    }

    /// Connects, spawning the connection task on the current tokio runtime.
    pub async fn connect(&self) -> Result<Client, ConnectError> {
        let (client, connection) = self.open().await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "database connection ended with an error");
            }
        });
        Ok(client)
    }

    /// Connect, and deliver the connection's NOTIFY messages on a channel
    /// (for LISTEN). The channel closes when the connection ends.
    pub async fn connect_with_notifications(
        &self,
    ) -> Result<
        (
            Client,
            tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::Notification>,
        ),
        ConnectError,
    > {
        let (client, mut connection) = self.open().await?;
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = futures_util::StreamExt::next(&mut messages).await {
                match message {
                    Ok(tokio_postgres::AsyncMessage::Notification(note)) => {
                        if sender.send(note).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(%error, "listening connection ended with an error");
                        break;
                    }
                }
            }
        });
        Ok((client, receiver))
    }

    async fn open(
        &self,
    ) -> Result<
        (
            Client,
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <MakeTls as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream,
            >,
        ),
        ConnectError,
    > {
        let tls = self.make_tls()?;
        let per_host = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut config = self.config.clone();
        config.connect_timeout(per_host);
        // tokio-postgres bounds only the socket connect; the outer bound also
        // covers a server that accepts but never finishes the handshake.
        let hosts = self.config.get_hosts().len().max(1);
        let overall = per_host.saturating_mul(u32::try_from(hosts).unwrap_or(u32::MAX));
        let target = self.target();
        match tokio::time::timeout(overall, config.connect(tls)).await {
            Err(_) => Err(ConnectError::Timeout {
                target,
                after: overall,
            }),
            Ok(Err(error)) if is_timeout(&error) => Err(ConnectError::Timeout {
                target,
                after: per_host,
            }),
            Ok(Err(error)) => Err(ConnectError::Connect {
                target,
                hint: tls_hint(&error),
                cause: error,
            }),
            Ok(Ok(pair)) => Ok(pair),
        }
    }

    /// The TLS connector for this mode, for handing to a pool together with
    /// [`Self::config`]. It is a thin wrapper over tokio-postgres-rustls's
    /// `MakeRustlsConnect`, which by itself cannot connect to unix sockets.
    pub fn make_tls(&self) -> Result<MakeTls, ConnectError> {
        let root = self.ssl_root_cert.as_deref();
        let verification = match (self.tokio_ssl_mode(), self.ssl_mode) {
            // Sockets and plain modes: the connector is never used for a
            // handshake that matters, so do not fail on a missing root file.
            (PgSslMode::Disable, _) | (_, SslMode::Disable | SslMode::Prefer) => Verification::None,
            (_, SslMode::Require) if root.is_none() => Verification::None,
            (_, SslMode::Require | SslMode::VerifyCa) => {
                Verification::Chain(tls::load_roots(root)?)
            }
            (_, SslMode::VerifyFull) => Verification::Full(tls::load_roots(root)?),
        };
        Ok(MakeTls::new(tls::client_config(verification)?))
    }

    /// The mode tokio-postgres should negotiate: none on sockets-only specs,
    /// otherwise `prefer` stays `prefer` and every verifying mode is `require`
    /// (verification is the rustls connector's job).
    fn tokio_ssl_mode(&self) -> PgSslMode {
        let hosts = self.config.get_hosts();
        let sockets_only = !hosts.is_empty()
            && self.config.get_hostaddrs().is_empty()
            && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        match self.ssl_mode {
            _ if sockets_only => PgSslMode::Disable,
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        }
    }
}

impl fmt::Debug for ConnectionSpec {
    // Written out rather than derived so no future field of tokio_postgres's
    // Config Debug can leak anything: only what is listed here is shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionSpec")
            .field("target", &self.target())
            .field(
                "password",
                &self.config.get_password().map(|_| "<redacted>"),
            )
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("application_name", &self.config.get_application_name())
            .field("connect_timeout", &self.config.get_connect_timeout())
            .finish()
    }
}

/// What the string held besides the parts tokio-postgres parses itself.
struct Extracted {
    /// The string without sslmode / sslrootcert, for tokio-postgres.
    rest: String,
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    /// Kept only to scrub it from any parser message.
    password: Option<String>,
}

fn is_url(input: &str) -> bool {
    input.starts_with("postgres://") || input.starts_with("postgresql://")
}

/// Lifts sslmode/sslrootcert out of a URL's query. The parts are located the
/// way tokio-postgres does (credentials up to the first `@`, then host list,
/// path, `?query`) so the rest is parsed exactly as it would have been.
fn extract_url(input: &str) -> Result<Extracted, ConnectError> {
    let body_start = input.find("://").map_or(0, |i| i + 3);
    let (scheme, body) = input.split_at(body_start);
    // The user info ends at the last `@` before the path or query that
    // follows the first `@`: a password with an unencoded `@` (`u:p@ss@host`)
    // stays whole instead of lending its tail to the host name, where
    // messages and `target()` would show it.
    let userinfo_end = body.find('@').and_then(|first| {
        let end = body[first..]
            .find(['/', '?'])
            .map_or(body.len(), |i| first + i);
        body[..end].rfind('@')
    });
    let (creds, after_creds) = match userinfo_end {
        Some(at) => (Some(&body[..at]), &body[at + 1..]),
        None => (None, body),
    };
    let password = match creds.and_then(|c| c.split_once(':')) {
        Some((_, pw)) => Some(percent_decode(pw, "password")?),
        None => None,
    };
    let authority_end = after_creds.find(['/', '?']).unwrap_or(after_creds.len());
    let (authority, tail) = after_creds.split_at(authority_end);
    let (path, query) = match tail.find('?') {
        Some(q) => (&tail[..q], Some(&tail[q + 1..])),
        None => (tail, None),
    };
    // `u:p@ss/w@host/db`: which `@` ends the password cannot be known, and a
    // guess could show part of it as a host or database name. Refuse, and
    // echo nothing.
    if path.contains('@') {
        return Err(parse_error(
            "the URL has an unencoded '@' after its user info; write '@' in a user name, \
             password or database name as %40",
        ));
    }

    let mut params: Vec<String> = Vec::new();
    // tokio-postgres records port 5432 for every authority host without one,
    // which would hide PGPORT. Moving port-less hosts into `host=` query
    // parameters keeps the port list empty, as libpq treats it.
    let move_hosts = !authority.is_empty() && !authority.split(',').any(has_port);
    if move_hosts {
        for host in authority.split(',') {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            params.push(format!("host={host}"));
        }
    }
    let (mut sslmode, mut sslrootcert) = (None, None);
    for piece in query.into_iter().flat_map(|q| q.split('&')) {
        match piece.split_once('=') {
            Some((key, value)) => match percent_decode(key, "a query parameter name")?.as_str() {
                "sslmode" => sslmode = Some(percent_decode(value, "sslmode")?),
                "sslrootcert" => sslrootcert = Some(percent_decode(value, "sslrootcert")?),
                _ => params.push(piece.to_owned()),
            },
            None => params.push(piece.to_owned()),
        }
    }

    let mut rest = String::from(scheme);
    if let Some(creds) = creds {
        // tokio-postgres ends the user info at the first `@`.
        rest.push_str(&creds.replace('@', "%40"));
        rest.push('@');
    }
    if !move_hosts {
        rest.push_str(authority);
    }
    rest.push_str(path);
    if !params.is_empty() {
        rest.push('?');
        rest.push_str(&params.join("&"));
    }
    Ok(Extracted {
        rest,
        sslmode,
        sslrootcert,
        password,
    })
}

/// Whether one authority host chunk (`host`, `host:port`, `[v6]:port`) names a port.
fn has_port(chunk: &str) -> bool {
    match chunk.strip_prefix('[') {
        Some(v6) => v6.split_once(']').is_some_and(|(_, r)| r.starts_with(':')),
        None => chunk.contains(':'),
    }
}

/// Decodes `%XX` escapes. `what` names the part for the error; the text
/// itself is never echoed.
fn percent_decode(s: &str, what: &str) -> Result<String, ConnectError> {
    let bad = || parse_error(format!("invalid percent-encoding in {what}"));
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Lifts sslmode/sslrootcert out of a key=value string and re-quotes the
/// rest for tokio-postgres.
fn extract_key_value(input: &str) -> Result<Extracted, ConnectError> {
    let mut extracted = Extracted {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
        password: None,
    };
    for (key, value) in tokenize(input)? {
        match key.as_str() {
            "sslmode" => extracted.sslmode = Some(value),
            "sslrootcert" => extracted.sslrootcert = Some(value),
            _ => {
                if key == "password" {
                    extracted.password = Some(value.clone());
                }
                let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
                extracted.rest.push_str(&format!("{key}='{quoted}' "));
            }
        }
    }
    Ok(extracted)
}

/// Splits `key = value key='quoted \' value'` into pairs, with the quoting
/// and escaping rules of libpq / tokio-postgres. Error messages name keys
/// only, and only ones that look like keys, so a stray unquoted fragment of
/// a password never ends up in a message.
fn tokenize(input: &str) -> Result<Vec<(String, String)>, ConnectError> {
    let mut chars = input.chars().peekable();
    let mut pairs: Vec<(String, String)> = Vec::new();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut chars);
        if chars.peek().is_none() {
            return Ok(pairs);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        skip_ws(&mut chars);
        let valid_key =
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if chars.next() != Some('=') || !valid_key {
            return Err(parse_error(match pairs.last() {
                _ if key.contains("://") => {
                    "unsupported URL scheme (use postgres:// or postgresql://)".to_owned()
                }
                Some((prev, _)) => format!(
                    "unexpected text after the value of \"{prev}\" (quote values containing spaces, like {prev}='a b')"
                ),
                None => "expected key=value pairs".to_owned(),
            }));
        }
        skip_ws(&mut chars);
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => {
                        return Err(parse_error(format!(
                            "unterminated quoted value for \"{key}\""
                        )))
                    }
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(parse_error(format!(
                    "missing value for \"{key}\" (write {key}='' for an empty value)"
                )));
            }
        }
        pairs.push((key, value));
    }
}

fn redact(message: String, secret: Option<&str>) -> String {
    match secret {
        Some(secret) if !secret.is_empty() => message.replace(secret, "<redacted>"),
        _ => message,
    }
}

/// Whether tokio-postgres gave up because its per-host connect timeout expired.
fn is_timeout(error: &tokio_postgres::Error) -> bool {
    error
        .source()
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
}

/// A hint for the certificate failures users meet most.
fn tls_hint(error: &tokio_postgres::Error) -> Option<&'static str> {
    use rustls::{CertificateError, Error as TlsError};
    // tokio-rustls wraps the rustls error in an io::Error; io::Error::source
    // skips the wrapped error itself, so unwrap it with get_ref.
    let io = error.source()?.downcast_ref::<io::Error>()?;
    match io.get_ref()?.downcast_ref::<TlsError>()? {
        TlsError::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => Some(
            "the server certificate does not name this host; connect using a name it lists, or use sslmode=verify-ca to check only the chain",
        ),
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => Some(
            "the server certificate is not signed by a trusted root; point sslrootcert at the CA certificate",
        ),
        _ => None,
    }
}

#[cfg(test)]
#[path = "connect_tests.rs"]
mod tests;
