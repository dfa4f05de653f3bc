//! The built-in realtime server, for demos, dashboards and tests: vLLM 0.33's own dialect, or
//! OpenAI's transcription sessions (`openai.rs`, `SimConfig::dialect`).
//!
//! One TCP listener serves plain HTTP (`/health`, `/v1/models`) and the WebSocket upgrade on
//! `/v1/realtime`, optionally behind TLS. Each connection runs in its own task, so a failing
//! or panicking connection never touches the others or the accept loop. Every connection's
//! receive and emit times are recorded as ground truth (`RecordStore`); `GET /debug/records`
//! serves them as JSON to a client in another process when records are kept.

mod args;
mod config;
mod connection;
mod export;
mod generation;
mod http;
mod openai;
mod record;
mod schedule;
mod session;
mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

pub use args::SimArgs;
pub use config::{Fault, SimConfig, TlsFiles};
pub use record::{
    ClientFrame, ClientFrameKind, Emission, EmitKind, RecordStore, SessionRecord, UtteranceRecord,
};

use http::{HeadError, Prefixed, RequestHead};
use record::RecordHandle;

/// Inbound WebSocket message cap, as uvicorn's `ws_max_size` default.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;
/// How long shutdown waits for connections to finish their closing handshakes.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS file {path}: {reason}")]
    TlsFile { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("environment variable {name} (named by --api-key-env) is not set or not UTF-8")]
    ApiKeyEnv { name: String },
    #[error("--tls-cert and --tls-key must be given together")]
    TlsPair,
}

/// A bound simulator, not yet serving.
pub struct Simulator {
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
}

struct Shared {
    cfg: Arc<SimConfig>,
    records: RecordStore,
    /// Origin of the times `GET /debug/records` reports.
    epoch: Instant,
    connections: AtomicU64,
    realtime: AtomicU64,
    /// Realtime sessions running now.
    open_sessions: Arc<AtomicU64>,
}

/// A simulator serving in the background.
pub struct SimHandle {
    addr: SocketAddr,
    records: RecordStore,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SimHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/v1/realtime`. Under TLS the caller builds the `wss://` URL with the name its
    /// certificate carries.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    pub fn record_store(&self) -> RecordStore {
        self.records.clone()
    }

    /// Snapshot of every kept connection record, oldest first.
    pub fn records(&self) -> Vec<SessionRecord> {
        self.records.sessions()
    }

    /// Snapshot and forget.
    pub fn take_records(&self) -> Vec<SessionRecord> {
        self.records.take()
    }

    /// Stop accepting, close live sessions with 1012, and wait (bounded) for them to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn load_tls(files: &TlsFiles) -> Result<TlsAcceptor, SimError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| SimError::TlsFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let cert_pem = read(&files.cert_pem)?;
    let key_pem = read(&files.key_pem)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SimError::TlsFile {
            path: files.cert_pem.clone(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(SimError::TlsFile {
            path: files.cert_pem.clone(),
            reason: "no PEM certificate found".into(),
        });
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| SimError::TlsFile {
            path: files.key_pem.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| SimError::TlsFile {
            path: files.key_pem.clone(),
            reason: "no PEM private key found".into(),
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SimError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| SimError::Tls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Simulator {
    /// Bind the listener (use port 0 for an ephemeral port) and load the TLS material.
    pub async fn bind(addr: SocketAddr, cfg: SimConfig) -> Result<Simulator, SimError> {
        let tls = cfg.tls.as_ref().map(load_tls).transpose()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SimError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SimError::Bind { addr, source })?;
        let records = RecordStore::new(cfg.max_records);
        Ok(Simulator {
            listener,
            addr,
            shared: Arc::new(Shared {
                cfg: Arc::new(cfg),
                records,
                epoch: Instant::now(),
                connections: AtomicU64::new(0),
                realtime: AtomicU64::new(0),
                open_sessions: Arc::new(AtomicU64::new(0)),
            }),
            tls,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The ground-truth records (shared with the running server).
    pub fn records(&self) -> RecordStore {
        self.shared.records.clone()
    }

    /// Serve until `shutdown` completes; then close live sessions with 1012 and return once
    /// they ended (or after a short grace period).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(joined) = conns.join_next(), if !conns.is_empty() => {
                    if let Err(e) = joined
                        && e.is_panic()
                    {
                        tracing::warn!("simulator connection task panicked");
                    }
                }
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let _ = tcp.set_nodelay(true);
                        let shared = self.shared.clone();
                        let tls = self.tls.clone();
                        let stop = stop_rx.clone();
                        conns.spawn(handle_tcp(tcp, peer, shared, tls, stop));
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep accepting.
                        tracing::warn!(error = %e, "simulator accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
            }
        }
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            conns.abort_all();
        }
    }

    /// Serve in a background task.
    pub fn spawn(self) -> SimHandle {
        let addr = self.addr;
        let records = self.shared.records.clone();
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(self.serve(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        SimHandle {
            addr,
            records,
            stop,
            task,
        }
    }
}

/// Counts a realtime session as open for as long as it lives (however it ends).
struct OpenSession(Arc<AtomicU64>);

impl OpenSession {
    fn enter(open: &Arc<AtomicU64>) -> OpenSession {
        open.fetch_add(1, Ordering::Relaxed);
        OpenSession(open.clone())
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn handle_tcp(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let connection = shared.connections.fetch_add(1, Ordering::Relaxed);
    let record = shared.records.open(connection, peer, Instant::now());
    match tls {
        None => handle_conn(tcp, shared, record.clone(), stop).await,
        Some(acceptor) => {
            let timeout = shared.cfg.head_timeout;
            if let Ok(Ok(stream)) = tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                handle_conn(stream, shared, record.clone(), stop).await;
            }
        }
    }
    record.update(|r| r.ended_at = Some(Instant::now()));
}

fn authorized(head: &RequestHead, cfg: &SimConfig) -> bool {
    let Some(key) = &cfg.api_key else {
        return true;
    };
    // Length and content compared without an early exit.
    let same = |got: &str, expected: &str| {
        got.len() == expected.len()
            && got
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    };
    let bearer = same(
        head.header("authorization").unwrap_or(""),
        &format!("Bearer {}", key.expose()),
    );
    // Azure OpenAI's `api-key` header, in the OpenAI dialect.
    let api_key = cfg.dialect == crate::config::Dialect::OpenAi
        && same(head.header("api-key").unwrap_or(""), key.expose());
    bearer || api_key
}

fn models_json(cfg: &SimConfig) -> String {
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "object": "list",
        "data": [{
            "id": cfg.model,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": cfg.model,
            "parent": null,
            "max_model_len": cfg.max_model_len,
        }]
    })
    .to_string()
}

async fn handle_conn<S>(
    mut io: S,
    shared: Arc<Shared>,
    record: RecordHandle,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cfg = shared.cfg.clone();
    let head = tokio::select! {
        r = tokio::time::timeout(cfg.head_timeout, http::read_head(&mut io)) => r,
        _ = stop.wait_for(|s| *s) => return,
    };
    let (head, rest) = match head {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(HeadError::TooLarge)) => {
            record.update(|r| r.status = Some(431));
            let _ = http::respond(&mut io, 431, None).await;
            return;
        }
        Ok(Err(HeadError::Malformed(_))) => {
            record.update(|r| r.status = Some(400));
            let _ = http::respond(&mut io, 400, None).await;
            return;
        }
        Ok(Err(_)) | Err(_) => return,
    };
    record.update(|r| r.request = Some((head.method.clone(), head.target.clone())));
    let path = head.path().to_string();
    let answer = |status: u16| {
        record.update(|r| r.status = Some(status));
    };

    // vLLM's API-key middleware guards every path starting with /v1, before routing.
    if path.starts_with("/v1") && !authorized(&head, &cfg) {
        answer(401);
        let _ = http::respond(&mut io, 401, Some(r#"{"error":"Unauthorized"}"#)).await;
        return;
    }
    if !head.is_websocket_upgrade() {
        let (status, body) = match (head.method.as_str(), path.as_str()) {
            ("GET", "/health") => (200, None),
            ("GET", "/v1/models") => (200, Some(models_json(&cfg))),
            // Ground truth for a client in another process; absent unless records are kept.
            ("GET", "/debug/records") if cfg.max_records > 0 => {
                let sessions = shared.records.sessions();
                (
                    200,
                    Some(export::records_json(&sessions, shared.epoch).to_string()),
                )
            }
            _ => (404, Some(r#"{"detail":"Not Found"}"#.to_string())),
        };
        answer(status);
        let _ = http::respond(&mut io, status, body.as_deref()).await;
        return;
    }
    if head.method != "GET" || path != "/v1/realtime" {
        // uvicorn answers an upgrade to a route that does not exist with 403.
        answer(403);
        let _ = http::respond(&mut io, 403, None).await;
        return;
    }

    let index = shared.realtime.fetch_add(1, Ordering::Relaxed);
    let fault = cfg.fault_for(index);
    record.update(|r| {
        r.realtime_index = Some(index);
        r.fault = Some(fault);
    });
    match fault {
        Fault::HttpStatus(status) => {
            answer(status);
            let body = format!(r#"{{"error":"Simulated HTTP {status}"}}"#);
            let _ = http::respond(&mut io, status, Some(&body)).await;
            return;
        }
        Fault::Silent => {
            // Hold the socket and say nothing, until the client gives up or we shut down.
            let mut sink = [0u8; 1024];
            loop {
                tokio::select! {
                    n = io.read(&mut sink) => if !matches!(n, Ok(n) if n > 0) { return },
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
        _ => {}
    }
    let Some(key) = head.header("sec-websocket-key") else {
        answer(400);
        let _ = http::respond(&mut io, 400, None).await;
        return;
    };
    let accept = derive_accept_key(key.as_bytes());
    if http::switching_protocols(&mut io, &accept).await.is_err() {
        return;
    }
    let upgraded = Instant::now();
    record.update(|r| {
        r.status = Some(101);
        r.upgraded_at = Some(upgraded);
    });
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let ws =
        WebSocketStream::from_raw_socket(Prefixed::new(rest, io), Role::Server, Some(ws_config))
            .await;
    let intent_transcription = head
        .target
        .split_once('?')
        .is_some_and(|(_, q)| q.split('&').any(|kv| kv == "intent=transcription"));
    let dialect = cfg.dialect;
    let ctx = session::SessionCtx {
        cfg,
        intent_transcription,
        fault,
        record,
        shutdown: stop,
        realtime_index: index,
        open_sessions: shared.open_sessions.clone(),
    };
    let _open = OpenSession::enter(&shared.open_sessions);
    match dialect {
        crate::config::Dialect::Vllm => session::run(ws, ctx).await,
        crate::config::Dialect::OpenAi => openai::run(ws, ctx).await,
    }
}
