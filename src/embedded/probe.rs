//! A minimal, blocking readiness probe speaking the PostgreSQL wire protocol.
//!
//! `EmbeddedServer::start` is synchronous (it may run before the Tokio runtime
//! exists, or inside `spawn_blocking`), so instead of nesting a runtime for
//! tokio-postgres it performs the startup handshake by hand (SCRAM-SHA-256
//! through `postgres-protocol`): a server that answers `ReadyForQuery` to a
//! login on database `postgres` accepts connections.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256, SCRAM_SHA_256};
use postgres_protocol::message::frontend;

/// Why a probe did not log in.
#[derive(Debug)]
pub(super) enum ProbeError {
    /// Not accepting connections yet (no socket, starting up): try again.
    NotYet(String),
    /// The server refused the login itself (e.g. 28P01, wrong password):
    /// waiting does not help.
    Refused { sqlstate: String, message: String },
}

/// SQLSTATE class 57 (operator intervention: starting up, shutting down,
/// too many connections is 53300) means "not now"; anything else is final.
fn transient(sqlstate: &str) -> bool {
    sqlstate.starts_with("57") || sqlstate == "53300"
}

fn not_yet(e: impl std::fmt::Display) -> ProbeError {
    ProbeError::NotYet(e.to_string())
}

/// Log in as `user` with `password` on `dbname` over the Unix socket at
/// `socket`; `Err` says why not.
pub(super) fn probe(
    socket: &Path,
    user: &str,
    password: &str,
    dbname: &str,
) -> Result<(), ProbeError> {
    let mut stream = UnixStream::connect(socket)
        .map_err(|e| not_yet(format!("connect {}: {e}", socket.display())))?;
    let timeout = Some(Duration::from_secs(3));
    stream.set_read_timeout(timeout).map_err(not_yet)?;
    stream.set_write_timeout(timeout).map_err(not_yet)?;

    let mut body = Vec::new();
    body.extend_from_slice(&196_608i32.to_be_bytes()); // protocol 3.0
    for (k, v) in [("user", user), ("database", dbname)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    msg.extend_from_slice(&body);
    stream
        .write_all(&msg)
        .map_err(|e| not_yet(format!("send: {e}")))?;

    let mut scram: Option<ScramSha256> = None;
    loop {
        let mut header = [0u8; 5];
        stream
            .read_exact(&mut header)
            .map_err(|e| not_yet(format!("read: {e}")))?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if !(4..=1_000_000).contains(&len) {
            return Err(not_yet(format!("bad message length {len}")));
        }
        let mut payload = vec![0u8; len as usize - 4];
        stream
            .read_exact(&mut payload)
            .map_err(|e| not_yet(format!("read: {e}")))?;
        match header[0] {
            b'R' => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                let data = payload.get(4..).unwrap_or_default();
                let mut out = BytesMut::new();
                match code {
                    Some(0) => {} // AuthenticationOk
                    Some(10) => {
                        // AuthenticationSASL: a list of mechanisms.
                        let offered = data
                            .split(|b| *b == 0)
                            .any(|m| m == SCRAM_SHA_256.as_bytes());
                        if !offered {
                            return Err(refused("server offers no SCRAM-SHA-256"));
                        }
                        let s =
                            ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                        frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut out)
                            .map_err(not_yet)?;
                        scram = Some(s);
                    }
                    Some(11) => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| refused("SASL continue before SASL start"))?;
                        s.update(data).map_err(|e| refused(&e.to_string()))?;
                        frontend::sasl_response(s.message(), &mut out).map_err(not_yet)?;
                    }
                    Some(12) => {
                        let s = scram
                            .as_mut()
                            .ok_or_else(|| refused("SASL final before SASL start"))?;
                        s.finish(data).map_err(|e| refused(&e.to_string()))?;
                    }
                    other => {
                        return Err(refused(&format!(
                        "server asks for authentication method {other:?}; expected SCRAM-SHA-256"
                    )))
                    }
                }
                if !out.is_empty() {
                    stream
                        .write_all(&out)
                        .map_err(|e| not_yet(format!("send: {e}")))?;
                }
            }
            b'E' => {
                let (sqlstate, message) = error_fields(&payload);
                return Err(if transient(&sqlstate) {
                    ProbeError::NotYet(message)
                } else {
                    ProbeError::Refused { sqlstate, message }
                });
            }
            b'Z' => {
                // Terminate politely so the server logs no "unexpected EOF".
                let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
                return Ok(());
            }
            _ => {} // ParameterStatus, BackendKeyData, notices: not needed.
        }
    }
}

fn refused(message: &str) -> ProbeError {
    ProbeError::Refused {
        sqlstate: "08P01".into(), // protocol_violation
        message: message.to_string(),
    }
}

/// The `C` (SQLSTATE) and `M` (message) fields of an ErrorResponse, e.g.
/// ("57P03", "the database system is starting up").
fn error_fields(payload: &[u8]) -> (String, String) {
    let field = |tag: u8| {
        payload
            .split(|b| *b == 0)
            .find(|f| f.first() == Some(&tag))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
    };
    (
        field(b'C').unwrap_or_default(),
        field(b'M').unwrap_or_else(|| "server returned an error".to_string()),
    )
}
