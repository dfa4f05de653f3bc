//! Opening a realtime session's transport, one timed phase at a time: name resolution, TCP,
//! TLS (for `wss://`), then the HTTP/1.1 upgrade. Each phase's end goes into `Phases`, and each
//! failure maps to its own `ErrorType` (`dns`, `connect`, `tls`, `http_*`). Deadlines are the
//! caller's: these futures are cancel-safe by drop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Error as WsError};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::ProbeSpec;
use crate::probe::error::{ErrorType, ProbeError};
use crate::probe::timeline::Phases;
use crate::probe::tls;

pub type Stream = MaybeTlsStream<TcpStream>;
pub type Ws = WebSocketStream<Stream>;

/// Inbound frame/message cap: a realtime event is at most a few KiB; anything near this is a
/// misbehaving peer, ended as `limit` rather than buffered.
pub const MAX_INBOUND_MESSAGE: usize = 4 << 20;

fn host_for_connect(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// DNS → TCP → (TLS). `tls_config` is `Some` for secure targets.
pub async fn open_stream(
    spec: &ProbeSpec,
    tls_config: Option<Arc<ClientConfig>>,
    t0: Instant,
    phases: &mut Phases,
) -> Result<Stream, ProbeError> {
    let host = host_for_connect(&spec.target.host);
    let port = spec.target.port;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            let resolved = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| ProbeError::new(ErrorType::Dns, format!("resolving {host}: {e}")))?
                .collect::<Vec<_>>();
            if resolved.is_empty() {
                return Err(ProbeError::new(
                    ErrorType::Dns,
                    format!("resolving {host}: no addresses"),
                ));
            }
            phases.dns_done = Some(t0.elapsed());
            resolved
        }
    };
    let mut last_err = None;
    let mut tcp = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = Some(format!("{addr}: {e}")),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        ProbeError::new(
            ErrorType::Connect,
            format!(
                "connecting to {host}:{port}: {}",
                last_err.unwrap_or_default()
            ),
        )
    })?;
    // Small frames must leave at once: Nagle would add up to 40 ms to a send timestamp's meaning.
    let _ = tcp.set_nodelay(true);
    phases.tcp_connected = Some(t0.elapsed());

    let Some(cfg) = tls_config else {
        return Ok(MaybeTlsStream::Plain(tcp));
    };
    let name = tls::server_name(&spec.tls, host)
        .map_err(|e| ProbeError::new(ErrorType::Tls, e.to_string()))?;
    let tls_stream = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| {
            ProbeError::new(
                ErrorType::Tls,
                format!("TLS handshake with {host}:{port}: {e}"),
            )
        })?;
    phases.tls_done = Some(t0.elapsed());
    Ok(MaybeTlsStream::Rustls(tls_stream))
}

/// The upgrade request: the URL, the bearer token (the one place a secret is exposed) and the
/// configured extra headers.
fn request(spec: &ProbeSpec) -> Result<tungstenite::handshake::client::Request, ProbeError> {
    let mut req = spec
        .target
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| {
            ProbeError::new(
                ErrorType::Protocol,
                format!("building the upgrade request: {e}"),
            )
        })?;
    let headers = req.headers_mut();
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ProbeError::new(ErrorType::Protocol, format!("invalid header name {name:?}"))
        })?;
        let value = HeaderValue::from_str(value.expose()).map_err(|_| {
            ProbeError::new(
                ErrorType::Protocol,
                format!("invalid value for header {name}"),
            )
        })?;
        headers.insert(name, value);
    }
    if let Some(bearer) = &spec.bearer {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", bearer.token.expose()))
            .map_err(|_| {
                ProbeError::new(
                    ErrorType::Protocol,
                    "bearer token holds characters not allowed in a header",
                )
            })?;
        value.set_sensitive(true);
        headers.insert(tungstenite::http::header::AUTHORIZATION, value);
    }
    Ok(req)
}

pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND_MESSAGE))
        .max_frame_size(Some(MAX_INBOUND_MESSAGE))
}

/// HTTP upgrade to WebSocket; a non-101 answer becomes `http_401`, `http_403`, `http_4xx`, `http_5xx`.
pub async fn upgrade(
    spec: &ProbeSpec,
    stream: Stream,
    t0: Instant,
    phases: &mut Phases,
) -> Result<Ws, ProbeError> {
    let req = request(spec)?;
    match tokio_tungstenite::client_async_with_config(req, stream, Some(ws_config())).await {
        Ok((ws, _resp)) => {
            phases.upgraded = Some(t0.elapsed());
            Ok(ws)
        }
        Err(WsError::Http(resp)) => {
            let status = resp.status();
            Err(ProbeError::new(
                ErrorType::from_http_status(status.as_u16()),
                format!("upgrade to {} answered HTTP {status}", spec.target.ws_url),
            ))
        }
        Err(e) => Err(classify_ws_error(&e, "during the upgrade")),
    }
}

/// Map a WebSocket-level error to the closed set.
pub fn classify_ws_error(e: &WsError, when: &str) -> ProbeError {
    let kind = match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed | WsError::Io(_) => {
            ErrorType::ClosedEarly
        }
        WsError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            ErrorType::ClosedEarly
        }
        WsError::Capacity(_) | WsError::WriteBufferFull(_) => ErrorType::Limit,
        WsError::Tls(_) => ErrorType::Tls,
        _ => ErrorType::Protocol,
    };
    ProbeError::new(kind, format!("{when}: {e}"))
}
