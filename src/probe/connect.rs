//! Opening the connection by hand, so each phase is timed on its own: name resolution, TCP
//! connect, TLS handshake and the WebSocket upgrade. The callers bound the whole sequence with
//! the connect deadline; nothing here waits without end on its own.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Error as WsError};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::config::ProbeSpec;
use crate::probe::error::{ErrorType, ProbeError};
use crate::probe::timeline::Phases;
use crate::probe::tls;

/// Inbound WebSocket message and frame cap. Real events are a few hundred bytes; the largest is
/// `transcription.done` with the full text.
pub const MAX_INBOUND: usize = 4 * 1024 * 1024;

pub type Stream = MaybeTlsStream<TcpStream>;
pub type Ws = WebSocketStream<Stream>;

/// The TLS client configuration a secure target needs, built before `t0` so loading root
/// certificates never counts as handshake time. `None` for plain targets.
pub fn prepare_tls(spec: &ProbeSpec) -> Result<Option<Arc<ClientConfig>>, ProbeError> {
    if spec.target.secure {
        tls::client_config(&spec.tls).map(Some)
    } else {
        Ok(None)
    }
}

/// DNS (skipped for IP literals), TCP and, for secure targets, TLS with `tls_config` (from
/// `prepare_tls`). Phase ends are recorded into `phases` as they happen, so a later failure
/// keeps the phases reached.
pub async fn open_stream(
    spec: &ProbeSpec,
    tls_config: Option<Arc<ClientConfig>>,
    t0: Instant,
    phases: &mut Phases,
) -> Result<Stream, ProbeError> {
    let target = &spec.target;
    let host = target.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, target.port)],
        Err(_) => {
            let found = tokio::net::lookup_host((host, target.port))
                .await
                .map_err(|e| ProbeError::new(ErrorType::Dns, format!("resolve {host}: {e}")))?;
            let found: Vec<SocketAddr> = found.collect();
            if found.is_empty() {
                return Err(ProbeError::new(
                    ErrorType::Dns,
                    format!("resolve {host}: no addresses"),
                ));
            }
            phases.dns_done = Some(t0.elapsed());
            found
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
            Err(e) => last_err = Some(format!("connect {addr}: {e}")),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        ProbeError::new(
            ErrorType::Connect,
            last_err.unwrap_or_else(|| "no address to connect to".into()),
        )
    })?;
    // Small frames must leave at once: Nagle would add up to 40 ms to sends and round trips.
    let _ = tcp.set_nodelay(true);
    phases.tcp_connected = Some(t0.elapsed());

    let Some(config) = tls_config else {
        return Ok(MaybeTlsStream::Plain(tcp));
    };
    let name = tls::server_name(&spec.tls, host)?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| ProbeError::new(ErrorType::Tls, format!("TLS handshake: {e}")))?;
    phases.tls_done = Some(t0.elapsed());
    Ok(MaybeTlsStream::Rustls(stream))
}

/// Header pairs to send: `Authorization: Bearer` from the spec's token, then its extra headers.
/// Values are marked sensitive; errors name the header, never its value.
pub fn request_headers(spec: &ProbeSpec) -> Result<Vec<(HeaderName, HeaderValue)>, ProbeError> {
    let mut out = Vec::with_capacity(spec.headers.len() + 1);
    if let Some(bearer) = &spec.bearer {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", bearer.token.expose()))
            .map_err(|_| {
                ProbeError::new(
                    ErrorType::Protocol,
                    "bearer token is not a valid header value",
                )
            })?;
        value.set_sensitive(true);
        out.push((header::AUTHORIZATION, value));
    }
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ProbeError::new(ErrorType::Protocol, format!("invalid header name {name:?}"))
        })?;
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
            ProbeError::new(
                ErrorType::Protocol,
                format!("header {name}: value is not a valid header value"),
            )
        })?;
        value.set_sensitive(true);
        out.push((name, value));
    }
    Ok(out)
}

/// The WebSocket upgrade on an open stream. A non-101 answer maps to its HTTP status kind.
pub async fn upgrade(spec: &ProbeSpec, stream: Stream) -> Result<Ws, ProbeError> {
    let mut request = spec
        .target
        .ws_url
        .as_str()
        .into_client_request()
        .map_err(|e| ProbeError::new(ErrorType::Protocol, format!("websocket URL: {e}")))?;
    for (name, value) in request_headers(spec)? {
        request.headers_mut().insert(name, value);
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND))
        .max_frame_size(Some(MAX_INBOUND));
    match tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await {
        Ok((ws, _response)) => Ok(ws),
        Err(WsError::Http(response)) => {
            let status = response.status().as_u16();
            Err(ProbeError::new(
                ErrorType::from_http_status(status),
                format!("upgrade answered HTTP {status}"),
            ))
        }
        Err(e) => Err(map_ws_error(&e, "upgrade")),
    }
}

/// Classify a WebSocket error on an established (or upgrading) connection.
pub fn map_ws_error(e: &WsError, during: &str) -> ProbeError {
    use tungstenite::error::ProtocolError;
    let kind = match e {
        WsError::Capacity(_) => ErrorType::Limit,
        WsError::Io(_)
        | WsError::ConnectionClosed
        | WsError::AlreadyClosed
        | WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => ErrorType::ClosedEarly,
        WsError::Tls(_) => ErrorType::Tls,
        _ => ErrorType::Protocol,
    };
    ProbeError::new(kind, format!("{during}: {e}"))
}
