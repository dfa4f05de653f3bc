//! The sidecar's HTTP server (hyper 1, HTTP/1.1): `/metrics`, `/healthz`, `/readyz`,
//! `POST /-/reload`, `/config`, the status page `/`, run pages `/runs/<probe>/<id>` and
//! `/probe?name=`. Read-only apart from
//! reload and on-demand probes of configured names. Routing and limits live here; what each
//! route answers comes from an [`App`], so this module depends on neither metrics nor config.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::config::Secret;
use futures_util::future::BoxFuture;

/// Requests with a declared body larger than this are refused (no route reads a body).
pub const MAX_BODY: u64 = 64 * 1024;
/// Connections served at once; more wait in the kernel backlog.
pub const MAX_CONNECTIONS: usize = 64;
/// Time allowed for a client to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Format for `GET /config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFormat {
    Yaml,
    Json,
}

/// Answer of [`App::probe_now`].
pub enum ProbeNow {
    /// Not a configured probe name.
    Unknown,
    /// An on-demand probe is already running; try again later.
    Busy,
    /// The run; resolves to the JSON debug record, or its HTML page for a browser.
    Run(BoxFuture<'static, ProbeAnswer>),
}

/// What an on-demand run answers.
pub enum ProbeAnswer {
    Json(serde_json::Value),
    Html(String),
}

/// Why a route could not answer; its `Display` is the response body.
pub type AppError = Box<dyn std::error::Error + Send + Sync>;

/// What the routes answer. Implemented by `serve`.
pub trait App: Send + Sync + 'static {
    /// `GET /metrics`: (content type, body) for the request's `Accept` header.
    fn metrics(&self, accept: Option<&str>) -> (&'static str, Vec<u8>);
    /// `GET /readyz`: `Err(reason)` while not ready.
    fn readiness(&self) -> Result<(), AppError>;
    /// `POST /-/reload`: `Ok(summary)` or `Err(validation error text)`.
    fn reload(&self) -> BoxFuture<'static, Result<String, AppError>>;
    /// `GET /config`: the effective config with secrets redacted.
    fn config(&self, format: ConfigFormat) -> Result<String, AppError>;
    /// `GET /`: the HTML status page.
    fn status_page(&self) -> String;
    /// `GET /probe?name=`: run a configured probe now; `html` when the client accepts
    /// `text/html` (a browser), JSON otherwise.
    fn probe_now(&self, name: &str, html: bool) -> ProbeNow;
    /// `GET /runs/<probe>/<id>`: the page of a kept run, `None` when it is not (or no longer)
    /// kept.
    fn run_page(&self, probe: &str, id: u64) -> Option<String>;
    /// The token `/-/reload`, `/config` and `/probe` require (`server.admin_token`), if any.
    fn admin_token(&self) -> Option<Secret> {
        None
    }
}

/// `Authorization: Bearer <token>` matches, compared without an early exit.
fn authorized(req: &Request<Incoming>, token: &Secret) -> bool {
    let Some(given) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(given) = given.strip_prefix("Bearer ") else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.expose().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot bind the HTTP server to {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// A running server. Dropping it does not stop it; call [`HttpServer::shutdown`].
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Bind `addr` (e.g. `0.0.0.0:9464`, `127.0.0.1:0`) and start serving `app`.
    pub async fn bind(addr: &str, app: Arc<dyn App>) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        let local = listener.local_addr().map_err(|source| HttpError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app, stop_rx));
        Ok(HttpServer {
            addr: local,
            stop,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting connections. Requests in progress are dropped with the runtime.
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, app: Arc<dyn App>, mut stop: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = stopped(&mut stop) => return,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => return,
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(route(app, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        });
    }
}

async fn stopped(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|s| *s).await.is_ok();
}

type Resp = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut s = body.into();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    reply(status, "text/plain; charset=utf-8", s)
}

/// Route one request. Public for tests that want to exercise routing without sockets.
pub async fn route(app: Arc<dyn App>, req: Request<Incoming>) -> Resp {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let allowed: &str = match path.as_str() {
        "/metrics" | "/healthz" | "/readyz" | "/config" | "/" | "/probe" => "GET, HEAD",
        "/-/reload" => "POST",
        p if p.starts_with("/runs/") => "GET, HEAD",
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    let ok_method = match allowed {
        "POST" => method == Method::POST,
        _ => method == Method::GET || method == Method::HEAD,
    };
    if !ok_method {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        if let Ok(v) = allowed.parse() {
            r.headers_mut().insert(ALLOW, v);
        }
        return r;
    }
    if matches!(path.as_str(), "/-/reload" | "/config" | "/probe")
        && let Some(token) = app.admin_token()
        && !authorized(&req, &token)
    {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs Authorization: Bearer <server.admin_token>",
        );
        r.headers_mut()
            .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        return r;
    }
    match path.as_str() {
        "/metrics" => {
            let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
            let (ct, body) = app.metrics(accept);
            reply(StatusCode::OK, ct, body)
        }
        "/healthz" => text(StatusCode::OK, "ok"),
        "/readyz" => match app.readiness() {
            Ok(()) => text(StatusCode::OK, "ready"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}"),
            ),
        },
        "/-/reload" => match app.reload().await {
            Ok(summary) => text(StatusCode::OK, summary),
            Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        "/config" => {
            let wants_json = query_param(&query, "format").as_deref() == Some("json")
                || req
                    .headers()
                    .get(ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("application/json"));
            let (format, ct) = if wants_json {
                (ConfigFormat::Json, "application/json")
            } else {
                (ConfigFormat::Yaml, "application/yaml; charset=utf-8")
            };
            match app.config(format) {
                Ok(body) => reply(StatusCode::OK, ct, body),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        "/" => reply(
            StatusCode::OK,
            "text/html; charset=utf-8",
            app.status_page(),
        ),
        "/probe" => {
            let Some(name) = query_param(&query, "name") else {
                return text(StatusCode::BAD_REQUEST, "missing ?name=PROBE");
            };
            let html = req
                .headers()
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("text/html"));
            match app.probe_now(&name, html) {
                ProbeNow::Unknown => {
                    text(StatusCode::NOT_FOUND, "no configured probe with that name")
                }
                ProbeNow::Busy => text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "an on-demand probe is already running",
                ),
                ProbeNow::Run(fut) => match fut.await {
                    ProbeAnswer::Html(page) => {
                        reply(StatusCode::OK, "text/html; charset=utf-8", page)
                    }
                    ProbeAnswer::Json(v) => match serde_json::to_vec_pretty(&v) {
                        Ok(body) => reply(StatusCode::OK, "application/json", body),
                        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    },
                },
            }
        }
        p if p.starts_with("/runs/") => {
            let page = p["/runs/".len()..]
                .split_once('/')
                .and_then(|(probe, id)| Some((percent_decode(probe)?, id.parse::<u64>().ok()?)))
                .and_then(|(probe, id)| app.run_page(&probe, id));
            match page {
                Some(page) => reply(StatusCode::OK, "text/html; charset=utf-8", page),
                None => text(
                    StatusCode::NOT_FOUND,
                    "no such run kept (the status page links the kept runs)",
                ),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// The first value of `key` in a query string, percent-decoded (`+` as space).
pub fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k)? == key)
            .then(|| percent_decode(v))
            .flatten()
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(query_param("name=a.b-c", "name").as_deref(), Some("a.b-c"));
        assert_eq!(query_param("x=1&name=%61b", "name").as_deref(), Some("ab"));
        assert_eq!(query_param("x=1", "name"), None);
        assert_eq!(query_param("name=%zz", "name"), None);
        assert_eq!(query_param("name=%e2%82", "name"), None);
    }
}
