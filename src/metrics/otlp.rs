//! OTLP push: the exporter (gRPC via tonic, or HTTP/protobuf via our own hyper client), wrapped
//! so every failed export is counted and logged at a bounded rate, behind a `PeriodicReader`.
//!
//! Why a collector that is down cannot slow anything else: the `PeriodicReader` collects and
//! exports on its own OS thread; each export (retries included) is bounded by the configured
//! timeout, because the OTLP exporter uses that timeout as the deadline of its retry loop and our
//! HTTP client enforces it again around the whole request; nothing is queued between exports
//! (each export is one snapshot of the aggregated state, whose size the cardinality limit bounds),
//! so memory does not grow while the collector is away.
//!
//! Endpoints. gRPC: used as given (`http://host:4317`). HTTP/protobuf: a URL whose path already
//! ends in `/v1/metrics` is used verbatim; any other URL is a base, and `/v1/metrics` is appended
//! (`http://c:4318` → `http://c:4318/v1/metrics`, `http://c/otlp/` → `http://c/otlp/v1/metrics`),
//! which is what `OTEL_EXPORTER_OTLP_ENDPOINT` means in the OTel spec. `https://` works for both
//! transports with rustls (ring) and trusts the system roots (which honour `SSL_CERT_FILE`) plus
//! the webpki roots, so a missing system store (distroless images) is not fatal.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::tonic_types::transport::ClientTlsConfig;
use opentelemetry_otlp::{
    MetricExporter, Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig,
};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, Temporality};
use tokio::net::TcpStream;

use crate::config::model::{OtlpProtocol, OtlpSettings};
use crate::metrics::MetricsError;

/// Cap on an OTLP/HTTP response body: a collector answers with a tiny protobuf; anything larger
/// is not worth holding in memory.
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Our own failure log is written at most this often (with the count since the last line); the
/// SDK's internal logs say more, at debug level, for whoever wants every attempt.
const LOG_EVERY: Duration = Duration::from_secs(300);

/// The HTTP/protobuf URL for a configured endpoint (see the module header).
pub(crate) fn http_metrics_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.ends_with("/v1/metrics") {
        return trimmed.to_owned();
    }
    format!("{trimmed}/v1/metrics")
}

/// The `user:password@` part of a URL, if any: it may hold a credential.
fn userinfo(endpoint: &str) -> Option<&str> {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').map(|(info, _)| info)
}

/// An error naming the endpoint, with any userinfo redacted (also inside the SDK's message).
pub(crate) fn otlp_err(endpoint: &str, reason: impl ToString) -> MetricsError {
    let mut endpoint = endpoint.to_owned();
    let mut reason = reason.to_string();
    if let Some(info) = userinfo(&endpoint).map(str::to_owned) {
        endpoint = endpoint.replacen(&info, "<redacted>", 1);
        reason = reason.replace(&info, "<redacted>");
    }
    MetricsError::Otlp { endpoint, reason }
}

pub(crate) fn header_map(settings: &OtlpSettings) -> Result<http::HeaderMap, MetricsError> {
    let mut map = http::HeaderMap::new();
    for (name, value) in &settings.headers {
        let bad = |reason: &str| MetricsError::OtlpHeader {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let key = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
            .map_err(|_| bad("not a valid header name"))?;
        // The value is a secret: the error says only that it is malformed.
        let mut val = http::HeaderValue::from_str(value.expose())
            .map_err(|_| bad("value is not a valid header value"))?;
        val.set_sensitive(true);
        map.append(key, val);
    }
    Ok(map)
}

/// An OTLP/HTTP exporter builder (metrics or traces) set up the one way rtprobe sends: our
/// HTTP client (with TLS for https), protobuf, to `url`, within the timeout, with the headers.
pub(crate) fn http_exporter<B: WithHttpConfig + WithExportConfig>(
    builder: B,
    settings: &OtlpSettings,
    headers: &http::HeaderMap,
    url: &str,
    handle: tokio::runtime::Handle,
) -> Result<B, MetricsError> {
    let mut hdrs = HashMap::new();
    for (k, v) in headers {
        let v = v.to_str().map_err(|_| MetricsError::OtlpHeader {
            name: k.to_string(),
            reason: "value is not visible ASCII".into(),
        })?;
        hdrs.insert(k.to_string(), v.to_owned());
    }
    let tls = if url.starts_with("https://") {
        Some(tls_connector(url)?)
    } else {
        None
    };
    Ok(builder
        .with_http_client(HyperClient::new(handle, settings.timeout, tls))
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(settings.timeout)
        .with_headers(hdrs))
}

/// Builds the exporter for `settings` and the periodic reader that drives it. Must run inside a
/// tokio runtime: the tonic channel and our HTTP client both spawn onto it.
pub(crate) fn reader(
    settings: &OtlpSettings,
    failures: Arc<AtomicU64>,
) -> Result<PeriodicReader<CountingExporter<MetricExporter>>, MetricsError> {
    let endpoint = settings.endpoint.as_str();
    let https = endpoint.starts_with("https://");
    if !https && !endpoint.starts_with("http://") {
        return Err(otlp_err(endpoint, "expected an http:// or https:// URL"));
    }
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| otlp_err(endpoint, "must be built inside a tokio runtime"))?;
    let temporality = if settings.delta_temporality {
        Temporality::Delta
    } else {
        Temporality::Cumulative
    };
    let headers = header_map(settings)?;
    let exporter = match settings.protocol {
        OtlpProtocol::Grpc => {
            let mut builder = MetricExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(settings.timeout)
                .with_metadata(
                    opentelemetry_otlp::tonic_types::metadata::MetadataMap::from_headers(headers),
                );
            if https {
                // Without roots enabled explicitly tonic trusts nothing.
                builder = builder.with_tls_config(ClientTlsConfig::new().with_enabled_roots());
            }
            builder
                .with_temporality(temporality)
                .build()
                .map_err(|e| otlp_err(endpoint, e))?
        }
        OtlpProtocol::HttpProtobuf => {
            let url = http_metrics_url(endpoint);
            let builder = MetricExporter::builder().with_http();
            http_exporter(builder, settings, &headers, &url, handle)?
                .with_temporality(temporality)
                .build()
                .map_err(|e| otlp_err(&url, e))?
        }
    };
    let counted = CountingExporter {
        inner: exporter,
        failures,
        log: Mutex::new(LogState::default()),
    };
    Ok(PeriodicReader::builder(counted)
        .with_interval(settings.interval)
        .build())
}

#[derive(Default)]
struct LogState {
    last_logged: Option<Instant>,
    unlogged: u64,
    failing: bool,
}

/// Counts failed exports (after the inner exporter's retries) and logs them at most once per
/// [`LOG_EVERY`], plus once when exports recover.
pub(crate) struct CountingExporter<E> {
    inner: E,
    failures: Arc<AtomicU64>,
    log: Mutex<LogState>,
}

impl<E> CountingExporter<E> {
    fn note(&self, result: &OTelSdkResult) {
        let mut st = crate::sync::lock(&self.log);
        match result {
            Ok(()) => {
                if st.failing {
                    tracing::info!(failed_since_last_log = st.unlogged, "OTLP export recovered");
                }
                *st = LogState::default();
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                st.failing = true;
                st.unlogged += 1;
                let due = st.last_logged.is_none_or(|t| t.elapsed() >= LOG_EVERY);
                if due {
                    tracing::warn!(
                        error = %e,
                        failures = st.unlogged,
                        total = self.failures.load(Ordering::Relaxed),
                        "OTLP export failed; next report in at most 5 minutes"
                    );
                    st.last_logged = Some(Instant::now());
                    st.unlogged = 0;
                }
            }
        }
    }
}

impl<E: PushMetricExporter> PushMetricExporter for CountingExporter<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.note(&result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// `opentelemetry_http::HttpClient` over hyper-util's pooled client. The `PeriodicReader` polls
/// exports from its own thread with a plain executor, so the request runs as a task on the
/// captured runtime and only its `JoinHandle` is awaited there.
#[derive(Debug, Clone)]
pub(crate) struct HyperClient {
    client: Client<Connector, Full<Bytes>>,
    handle: tokio::runtime::Handle,
    timeout: Duration,
}

impl HyperClient {
    pub(crate) fn new(
        handle: tokio::runtime::Handle,
        timeout: Duration,
        tls: Option<tokio_rustls::TlsConnector>,
    ) -> HyperClient {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(timeout));
        http.set_nodelay(true);
        // The scheme is checked by `Connector`, which adds TLS for https.
        http.enforce_http(false);
        let connector = Connector { http, tls };
        // The legacy client spawns its connection tasks with `tokio::spawn`; enter the runtime
        // so building it outside an async context still works.
        let _guard = handle.enter();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .build(connector);
        HyperClient {
            client,
            handle,
            timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ClientError {
    #[error("OTLP/HTTP request timed out after {0:?}")]
    Timeout(Duration),
    #[error("OTLP/HTTP request task ended: {0}")]
    Task(String),
    #[error("https endpoint without a TLS connector")]
    NoTls,
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

/// rustls (ring) client config trusting the system roots (which honour `SSL_CERT_FILE`) and the
/// webpki roots. Speaks HTTP/1.1 only, like the client above it.
pub(crate) fn tls_connector(endpoint: &str) -> Result<tokio_rustls::TlsConnector, MetricsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(errors = ?native.errors, "some system CA certificates could not be loaded");
    }
    roots.add_parsable_certificates(native.certs);
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| otlp_err(endpoint, e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// hyper-util connector: plain TCP for `http://`, TLS over it for `https://`.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A connection made by [`Connector`].
pub(crate) enum Stream {
    Plain(TokioIo<TcpStream>),
    // Boxed: the TLS state is over a kilobyte and connections are few.
    Tls(Box<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>),
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Plain(s) => s.connected(),
            Stream::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Stream, HttpError>> + Send>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = Stream;
    type Error = HttpError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = self.tls.clone();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?;
            if !https {
                return Ok(Stream::Plain(tcp));
            }
            let tls = tls.ok_or(ClientError::NoTls)?;
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|_| ClientError::ServerName(host))?;
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

#[async_trait]
impl HttpClient for HyperClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let client = self.client.clone();
        let timeout = self.timeout;
        let task = self.handle.spawn(async move {
            let exchange = async move {
                let response = client.request(request).await?;
                let (parts, body) = response.into_parts();
                let body = Limited::new(body, MAX_RESPONSE_BYTES)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            };
            match tokio::time::timeout(timeout, exchange).await {
                Ok(result) => result,
                Err(_) => Err(Box::new(ClientError::Timeout(timeout)) as HttpError),
            }
        });
        match task.await {
            Ok(result) => result,
            Err(e) => Err(Box::new(ClientError::Task(e.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_endpoint_gets_the_metrics_path_once() {
        assert_eq!(
            http_metrics_url("http://c:4318"),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            http_metrics_url("http://c:4318/"),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            http_metrics_url("http://c/otlp/"),
            "http://c/otlp/v1/metrics"
        );
        assert_eq!(
            http_metrics_url("http://c:4318/v1/metrics"),
            "http://c:4318/v1/metrics"
        );
    }

    /// An exporter whose results the test scripts.
    struct Scripted(Mutex<Vec<OTelSdkResult>>);

    impl PushMetricExporter for Scripted {
        async fn export(&self, _: &ResourceMetrics) -> OTelSdkResult {
            self.0.lock().unwrap().remove(0)
        }
        fn force_flush(&self) -> OTelSdkResult {
            Ok(())
        }
        fn shutdown_with_timeout(&self, _: Duration) -> OTelSdkResult {
            Ok(())
        }
        fn temporality(&self) -> Temporality {
            Temporality::Cumulative
        }
    }

    #[tokio::test]
    async fn failures_are_counted_and_logged_at_a_bounded_rate() {
        use opentelemetry_sdk::error::OTelSdkError;
        let fail = || Err(OTelSdkError::InternalFailure("collector down".into()));
        let failures = Arc::new(AtomicU64::new(0));
        let e = CountingExporter {
            inner: Scripted(Mutex::new(vec![fail(), fail(), fail(), Ok(()), fail()])),
            failures: failures.clone(),
            log: Mutex::new(LogState::default()),
        };
        let rm = ResourceMetrics::default();
        for _ in 0..3 {
            assert!(e.export(&rm).await.is_err());
        }
        assert_eq!(failures.load(Ordering::Relaxed), 3);
        {
            let st = e.log.lock().unwrap();
            // The first failure was logged; the next two wait for the next report.
            assert!(st.failing && st.last_logged.is_some());
            assert_eq!(st.unlogged, 2);
        }
        assert!(e.export(&rm).await.is_ok());
        assert!(!e.log.lock().unwrap().failing);
        assert!(e.export(&rm).await.is_err());
        assert_eq!(failures.load(Ordering::Relaxed), 4);
        assert_eq!(
            e.log.lock().unwrap().unlogged,
            0,
            "first failure after recovery is logged"
        );
    }

    #[test]
    fn endpoint_credentials_never_reach_errors() {
        let e = otlp_err("ftp://u:s3cr3t@c:1/x", "bad url ftp://u:s3cr3t@c:1/x").to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(e.contains("ftp://<redacted>@c:1/x"), "{e}");
        assert_eq!(userinfo("http://c:4318/a@b"), None);
    }

    #[test]
    fn header_errors_never_show_the_value() {
        let s = OtlpSettings {
            endpoint: "http://127.0.0.1:1".into(),
            protocol: OtlpProtocol::HttpProtobuf,
            headers: vec![(
                "authorization".into(),
                crate::config::model::Secret::new("Bearer s3cr3t\n"),
            )],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            delta_temporality: false,
            traces: false,
            exponential_histograms: false,
        };
        let err = header_map(&s).unwrap_err().to_string();
        assert!(err.contains("authorization"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
