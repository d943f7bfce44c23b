//! A minimal, blocking readiness probe speaking the PostgreSQL wire protocol.
//!
//! `EmbeddedServer::start` is synchronous (it may run before the Tokio runtime
//! exists, or inside `spawn_blocking`), so instead of nesting a runtime for
//! tokio-postgres it performs the startup handshake by hand: a server that
//! answers `ReadyForQuery` to a login on database `postgres` accepts connections.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Log in as `user` on `dbname` over the Unix socket at `socket`; `Err` says why not.
pub(super) fn probe(socket: &Path, user: &str, dbname: &str) -> Result<(), String> {
    let mut stream =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let timeout = Some(Duration::from_secs(3));
    stream
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;

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
    stream.write_all(&msg).map_err(|e| format!("send: {e}"))?;

    loop {
        let mut header = [0u8; 5];
        stream
            .read_exact(&mut header)
            .map_err(|e| format!("read: {e}"))?;
        let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if !(4..=1_000_000).contains(&len) {
            return Err(format!("bad message length {len}"));
        }
        let mut payload = vec![0u8; len as usize - 4];
        stream
            .read_exact(&mut payload)
            .map_err(|e| format!("read: {e}"))?;
        match header[0] {
            b'R' => {
                let code = payload
                    .get(..4)
                    .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if code != Some(0) {
                    return Err(format!(
                        "server asks for authentication (code {code:?}); expected trust"
                    ));
                }
            }
            b'E' => return Err(error_message(&payload)),
            b'Z' => {
                // Terminate politely so the server logs no "unexpected EOF".
                let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
                return Ok(());
            }
            _ => {} // ParameterStatus, BackendKeyData, notices: not needed.
        }
    }
}

/// The `M` (message) field of an ErrorResponse, e.g. "the database system is starting up".
fn error_message(payload: &[u8]) -> String {
    payload
        .split(|b| *b == 0)
        .find(|f| f.first() == Some(&b'M'))
        .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
        .unwrap_or_else(|| "server returned an error".to_string())
}
