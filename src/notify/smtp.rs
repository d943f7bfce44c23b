//! The SMTP channel: one plain-text mail per delivery, through `lettre`
//! (rustls, tokio).
//!
//! ```toml
//! [[notifications.channel]]
//! name = "oncall-mail"
//! [notifications.channel.smtp]
//! server = "smtp.example.com"
//! port = 587                       # default: 587 starttls, 465 tls, 25 none
//! tls = "starttls"                 # "starttls" (required, default), "tls", "none"
//! from = "crondeck <crondeck@example.com>"
//! to = ["oncall@example.com"]
//! username = "crondeck"            # optional: no AUTH without it
//! password_env = "SMTP_PASSWORD"   # or password = "..." (file mode 0600)
//! ca_file = "/etc/ssl/relay-ca.pem" # optional: also trust this CA (a private relay)
//! ```
//!
//! The password is a secret: it is read from the file or the environment
//! (`password_env`, else `CRONDECK_SMTP_PASSWORD` when a `username` is set
//! and no `password`), never logged, stored or shown (`Debug` redacts it).
//! The subject names the job and the event (`[crondeck] job "export"
//! failing`); the body gives the job, the event, the last error (exit code
//! or SQLSTATE and its first lines), the output's tail, the node, and the
//! `crondeck show` / `crondeck history` commands to look closer. Every
//! attempt of a delivery has the same `Message-ID` and
//! `X-Crondeck-Idempotency-Key`.

use std::fmt::Write as _;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use serde_json::Value;

use super::deliver::idempotency_key;
use crate::db::notifications::ClaimedDelivery;

/// The environment variable read for the password when a `username` is set
/// and the file names neither `password` nor `password_env`.
pub const DEFAULT_PASSWORD_ENV: &str = "CRONDECK_SMTP_PASSWORD";

/// `[notifications.channel.smtp]`.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpFile {
    pub server: String,
    pub port: Option<u16>,
    pub tls: Option<String>,
    pub from: String,
    pub to: Vec<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_env: Option<String>,
    /// A PEM file of CA certificates trusted besides the built-in roots.
    pub ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for SmtpFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpFile")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("password_env", &self.password_env)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required.
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
    /// No encryption (a local relay only).
    None,
}

/// A validated SMTP channel.
#[derive(Clone)]
pub struct Smtp {
    pub server: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    username: Option<String>,
    password: Option<String>,
    /// Extra trusted CA certificates (PEM), from `ca_file`.
    ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for Smtp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smtp")
            .field("server", &self.server)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

impl Smtp {
    /// Check the section; `env` reads the environment (for the password).
    /// Errors name the key, never the password.
    pub fn from_file(
        file: &SmtpFile,
        at: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Smtp, String> {
        let server = file.server.trim();
        if server.is_empty() {
            return Err(format!("{at}: smtp.server is required"));
        }
        let tls = match file.tls.as_deref().unwrap_or("starttls") {
            "starttls" => SmtpTls::StartTls,
            "tls" => SmtpTls::Tls,
            "none" => SmtpTls::None,
            other => {
                return Err(format!(
                    "{at}: smtp.tls = \"{other}\" (expected \"starttls\", \"tls\" or \"none\")"
                ))
            }
        };
        let port = file.port.unwrap_or(match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        let from: Mailbox = file
            .from
            .parse()
            .map_err(|e| format!("{at}: smtp.from \"{}\": {e}", file.from))?;
        if file.to.is_empty() {
            return Err(format!("{at}: smtp.to needs at least one address"));
        }
        let to = file
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| format!("{at}: smtp.to \"{t}\": {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let password = match (&file.password, &file.password_env) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{at}: give smtp.password or smtp.password_env, not both"
                ))
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(var)) => Some(env(var).ok_or_else(|| {
                format!("{at}: smtp.password_env: the environment variable {var} is not set")
            })?),
            (None, None) if file.username.is_some() => {
                Some(env(DEFAULT_PASSWORD_ENV).ok_or_else(|| {
                    format!(
                        "{at}: smtp.username is set but no password: set smtp.password_env, \
                     smtp.password, or {DEFAULT_PASSWORD_ENV}"
                    )
                })?)
            }
            (None, None) => None,
        };
        if password.is_some() && file.username.is_none() {
            return Err(format!("{at}: a password needs smtp.username"));
        }
        let ca_pem = match &file.ca_file {
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("{at}: smtp.ca_file {}: {e}", path.display()))?;
                lettre::transport::smtp::client::Certificate::from_pem(&pem).map_err(|e| {
                    format!(
                        "{at}: smtp.ca_file {}: not a PEM certificate: {e}",
                        path.display()
                    )
                })?;
                if tls == SmtpTls::None {
                    return Err(format!(
                        "{at}: smtp.ca_file needs tls = \"starttls\" or \"tls\""
                    ));
                }
                Some(pem)
            }
            None => None,
        };
        Ok(Smtp {
            server: server.to_string(),
            port,
            tls,
            from,
            to,
            username: file.username.clone(),
            password,
            ca_pem,
        })
    }
}

/// `[crondeck] job "export" failing`, and so on.
pub fn subject(payload: &Value) -> String {
    let job = payload["job"].as_str().map(crate::text::field);
    let what = match payload["event"].as_str().unwrap_or("") {
        "failure_streak" => "failing",
        "auto_paused" => "auto-paused by its failure policy",
        "overdue" => "overdue",
        "recovered" => "recovered",
        "no_live_node" => return "[crondeck] no live scheduler node: nothing is executing".into(),
        other => other,
    };
    match job {
        Some(job) => format!("[crondeck] job {job} {what}"),
        None if what == "recovered" => "[crondeck] scheduler nodes are alive again".into(),
        None => format!("[crondeck] {what}"),
    }
}

fn indent(out: &mut String, text: &str) {
    for line in crate::text::sanitize(text, true).lines() {
        let _ = writeln!(out, "    {line}");
    }
}

/// The plain-text body (see the module doc).
pub fn body(payload: &Value, delivery: &ClaimedDelivery) -> String {
    let field = |v: &Value| v.as_str().map(crate::text::field);
    let details = &payload["details"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}\n",
        field(&payload["text"]).unwrap_or_else(|| "crondeck notification".into())
    );
    let job = payload["job"].as_str();
    if let Some(job) = job {
        let _ = writeln!(out, "Job:      {}", crate::text::field(job));
    }
    let _ = writeln!(
        out,
        "Event:    {}",
        field(&payload["event"]).unwrap_or_default()
    );
    if let Some(at) = field(&payload["at"]) {
        let _ = writeln!(out, "At:       {at}");
    }
    if let Some(node) = field(&details["node"]) {
        let _ = writeln!(out, "Node:     {node}");
    }
    if let Some(result) = field(&details["last_result"]) {
        let _ = writeln!(out, "Result:   {result}");
    }
    if let Some(lines) = details["error_lines"].as_array().filter(|l| !l.is_empty()) {
        let _ = writeln!(out, "\nLast error:");
        for line in lines.iter().filter_map(Value::as_str) {
            indent(&mut out, line);
        }
    }
    for (key, title) in [
        ("stdout_tail", "Output (last lines)"),
        ("stderr_tail", "Error output (last lines)"),
    ] {
        if let Some(tail) = details[key].as_str().filter(|t| !t.trim().is_empty()) {
            let _ = writeln!(out, "\n{title}:");
            indent(&mut out, tail);
        }
    }
    if let Some(job) = job {
        let quoted = shell_words::quote(job);
        let _ = writeln!(
            out,
            "\nLook closer:\n    crondeck show {quoted}\n    crondeck history {quoted}"
        );
    } else {
        let _ = writeln!(out, "\nLook closer:\n    crondeck check\n    crondeck list");
    }
    let _ = writeln!(
        out,
        "\n-- \nsent by crondeck ({}), episode {}, delivery {} (attempt {})",
        field(&payload["sender"]).unwrap_or_default(),
        field(&payload["episode"]).unwrap_or_default(),
        idempotency_key(delivery),
        delivery.attempt
    );
    out
}

fn message(smtp: &Smtp, delivery: &ClaimedDelivery) -> Result<Message, String> {
    let payload = &delivery.payload;
    let mut builder = Message::builder()
        .from(smtp.from.clone())
        .subject(subject(payload))
        .message_id(Some(format!("<{}@crondeck>", idempotency_key(delivery))))
        .user_agent(concat!("crondeck/", env!("CARGO_PKG_VERSION")).to_string())
        .header(ContentType::TEXT_PLAIN);
    for to in &smtp.to {
        builder = builder.to(to.clone());
    }
    let mut message = builder
        .body(body(payload, delivery))
        .map_err(|e| format!("building the mail: {e}"))?;
    let name = HeaderName::new_from_ascii("X-Crondeck-Idempotency-Key".to_string())
        .map_err(|e| format!("building the mail: {e}"))?;
    message
        .headers_mut()
        .insert_raw(HeaderValue::new(name, idempotency_key(delivery)));
    Ok(message)
}

/// Send one mail; `Err` says why (the server's answer, never the password).
pub async fn send(
    smtp: &Smtp,
    delivery: &ClaimedDelivery,
    timeout: Duration,
) -> Result<(), String> {
    let message = message(smtp, delivery)?;
    let tls_error = |e: lettre::transport::smtp::Error| format!("SMTP server {}: {e}", smtp.server);
    let builder = match (smtp.tls, &smtp.ca_pem) {
        (SmtpTls::None, _) => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.server),
        (SmtpTls::StartTls, None) => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.server).map_err(tls_error)?
        }
        (SmtpTls::Tls, None) => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.server).map_err(tls_error)?
        }
        (mode, Some(pem)) => {
            let ca = Certificate::from_pem(pem).map_err(tls_error)?;
            let parameters = TlsParameters::builder(smtp.server.clone())
                .add_root_certificate(ca)
                .build_rustls()
                .map_err(tls_error)?;
            let tls = if mode == SmtpTls::Tls {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            };
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.server).tls(tls)
        }
    };
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    let transport = builder.build();
    match tokio::time::timeout(timeout, transport.send(message)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("SMTP {}:{}: {e}", smtp.server, smtp.port)),
        Err(_) => Err(format!(
            "SMTP {}:{}: no answer within {}",
            smtp.server,
            smtp.port,
            humantime::format_duration(timeout)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SmtpFile {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn the_password_comes_from_the_environment_and_is_never_shown() {
        let env = |k: &str| (k == "PW").then(|| "hunter2-secret".to_string());
        let smtp = Smtp::from_file(
            &file(
                "server = \"mx\"\nfrom = \"c@example.com\"\nto = [\"o@example.com\"]\n\
                 username = \"u\"\npassword_env = \"PW\"\n",
            ),
            "ch",
            &env,
        )
        .unwrap();
        assert_eq!(smtp.password.as_deref(), Some("hunter2-secret"));
        assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));
        assert!(!format!("{smtp:?}").contains("hunter2"));
        let raw =
            file("server = \"mx\"\nfrom = \"c@x.org\"\nto = [\"o@x.org\"]\npassword = \"p4ss\"\n");
        assert!(!format!("{raw:?}").contains("p4ss"));
        let err = Smtp::from_file(
            &file("server = \"mx\"\nfrom = \"c@x.org\"\nto = [\"o@x.org\"]\nusername = \"u\"\n"),
            "ch",
            &|_| None,
        )
        .unwrap_err();
        assert!(err.contains(DEFAULT_PASSWORD_ENV), "{err}");
        let err = Smtp::from_file(
            &file("server = \"mx\"\nfrom = \"c@x.org\"\nto = [\"o@x.org\"]\ntls = \"maybe\"\n"),
            "ch",
            &|_| None,
        )
        .unwrap_err();
        assert!(err.contains("smtp.tls"), "{err}");
    }
}
