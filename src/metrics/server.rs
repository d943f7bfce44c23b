//! The metrics endpoint: a minimal HTTP/1 server (hyper) answering
//! `GET /metrics`, in OpenMetrics to clients whose `Accept` asks for
//! `application/openmetrics-text` (Prometheus), else in the text format
//! 0.0.4 ([`wants_openmetrics`]). Each scrape refreshes the cluster gauges from the job
//! database over one connection kept between scrapes (and opened again after
//! an error); when the database is unreachable the scrape still answers, with
//! `crondeck_database_up 0` and the node's own counters.
//!
//! The endpoint must not be a way to hurt the node: at most
//! [`MAX_CONNECTIONS`] connections are served at once (more wait in the
//! kernel's backlog), a request's headers must arrive within
//! [`HEADER_TIMEOUT`] and a connection lives at most [`CONNECTION_TIMEOUT`],
//! so idle and half-sent (slowloris) connections are closed; and a failing
//! `accept` (out of file descriptors, say) is retried with a growing pause
//! instead of in a tight loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::db::connect::ConnectionSpec;

/// Where metrics are served when only a port is given, or `[metrics] addr`
/// is a bare port: loopback, so nothing is exposed by accident.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9464";

/// Connections served at once; more wait until one closes.
pub const MAX_CONNECTIONS: usize = 16;
/// A request's headers must be complete this long after the connection
/// opened (or the previous response).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed this long after it was accepted, whatever it does.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest pause between attempts after `accept` failed.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the client asked for OpenMetrics (Prometheus does, in its
/// `Accept`); everyone else (curl, a browser, older agents) gets the
/// Prometheus text format 0.0.4. A media range with `q=0` is a refusal.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        accept.split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
        })
    })
}

/// `HOST:PORT`, `[V6]:PORT`, or a bare port (bound on 127.0.0.1).
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse::<SocketAddr>().map_err(|_| {
        format!("invalid metrics address \"{text}\" (expected HOST:PORT like {DEFAULT_ADDR}, or a port)")
    })
}

struct State {
    metrics: Arc<Metrics>,
    spec: ConnectionSpec,
    client: Mutex<Option<tokio_postgres::Client>>,
}

/// Serve until `stop`. The listener is bound by the caller, so a taken port
/// is reported before the node starts.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    spec: ConnectionSpec,
    stop: CancellationToken,
) {
    let state = Arc::new(State {
        metrics,
        spec,
        client: Mutex::new(None),
    });
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = accept(&listener, &slots) => accepted,
        };
        let (stream, slot) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(error) => {
                // EMFILE and friends persist: retrying at once would spin
                // (and log) millions of times a second.
                backoff = (backoff * 2).clamp(Duration::from_millis(10), MAX_ACCEPT_BACKOFF);
                tracing::warn!(%error, retry_in = ?backoff, "metrics: accepting a connection failed");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => continue,
                }
            }
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let service = service_fn(move |req| handle(state.clone(), req));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::debug!(%error, "metrics: connection ended with an error");
                }
                Err(_) => tracing::debug!("metrics: connection closed after its time limit"),
            }
        });
    }
}

/// The next connection, once a slot is free.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> std::io::Result<(tokio::net::TcpStream, tokio::sync::OwnedSemaphorePermit)> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .map_err(std::io::Error::other)?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, slot))
}

/// Bind the metrics address, with a message that names it.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "metrics are served on a non-loopback address; anyone who can reach it can read job names");
    }
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot serve metrics on {addr}"))
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response
                .headers_mut()
                .insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if req.method() != Method::GET {
        return Ok(reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        ));
    }
    if req.uri().path() != "/metrics" {
        return Ok(reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "crondeck: metrics are at /metrics\n".into(),
        ));
    }
    let openmetrics = wants_openmetrics(
        req.headers()
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    refresh(&state).await;
    let (content_type, encoded) = if openmetrics {
        (OPENMETRICS, state.metrics.encode())
    } else {
        (TEXT_004, state.metrics.encode_text_004())
    };
    match encoded {
        Ok(text) => Ok(reply(StatusCode::OK, content_type, text)),
        Err(_) => Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encoding failed\n".into(),
        )),
    }
}

async fn refresh(state: &State) {
    let mut slot = state.client.lock().await;
    if slot
        .as_ref()
        .map_or(true, tokio_postgres::Client::is_closed)
    {
        match state.spec.connect().await {
            Ok(client) => *slot = Some(client),
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "metrics: cannot reach the job database");
                state.metrics.set_database_up(false);
                return;
            }
        }
    }
    let Some(client) = slot.as_ref() else { return };
    match state.metrics.refresh(client).await {
        Ok(()) => state.metrics.set_database_up(true),
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "metrics: reading the job database failed");
            state.metrics.set_database_up(false);
            *slot = None;
        }
    }
}
