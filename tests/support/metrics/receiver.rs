//! Test OTLP receivers decoding with the official protobufs: gRPC (tonic) and HTTP/protobuf
//! (hyper), each optionally behind TLS with the test CA in `tests/fixtures/otlp-tls`, plus the
//! recording and checks shared by the OTLP tests.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use prost::Message;
use rtprobe::config::model::{OtlpProtocol, OtlpSettings, Secret};
use rtprobe::metrics::{ProbeLabels, Telemetry};
use rtprobe::probe::error::ErrorType;
use tokio::net::TcpListener;

use super::{buckets, derived, spec};

pub const TLS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otlp-tls");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{TLS_DIR}/{name}")).unwrap()
}

/// The test server's certificate (for 127.0.0.1 and localhost) and key, as PEM.
pub fn server_identity() -> (Vec<u8>, Vec<u8>) {
    (fixture("server.pem"), fixture("server.key"))
}

fn rustls_server_config() -> Arc<rustls::ServerConfig> {
    let (cert, key) = server_identity();
    let certs = rustls_pemfile::certs(&mut &cert[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut &key[..]).unwrap().unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One decoded export with the `authorization` header it carried.
type Export = (Option<String>, ExportMetricsServiceRequest);

/// What the receiver got, in arrival order.
#[derive(Clone, Default)]
pub struct Received {
    exports: Arc<Mutex<Vec<Export>>>,
    connections: Arc<AtomicUsize>,
}

impl Received {
    /// TCP connections the receiver accepted (TLS or not).
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    fn push(&self, auth: Option<String>, req: ExportMetricsServiceRequest) {
        self.exports.lock().unwrap().push((auth, req));
    }

    /// The newest export that contains `name` with at least one data point.
    pub fn latest_with(&self, name: &str) -> Option<(Option<String>, Vec<Metric>)> {
        let all = self.exports.lock().unwrap();
        all.iter().rev().find_map(|(auth, req)| {
            let metrics: Vec<Metric> = req
                .resource_metrics
                .iter()
                .flat_map(|rm| rm.scope_metrics.iter())
                .filter(|sm| sm.scope.as_ref().is_some_and(|s| s.name == "rtprobe"))
                .flat_map(|sm| sm.metrics.iter().cloned())
                .collect();
            metrics
                .iter()
                .any(|m| m.name == name)
                .then(|| (auth.clone(), metrics))
        })
    }

    /// Resource attributes of the newest export that carried `name`.
    pub fn resource_with(&self, name: &str) -> Option<Vec<KeyValue>> {
        let all = self.exports.lock().unwrap();
        all.iter().rev().find_map(|(_, req)| {
            req.resource_metrics.iter().find_map(|rm| {
                let has = rm
                    .scope_metrics
                    .iter()
                    .flat_map(|sm| sm.metrics.iter())
                    .any(|m| m.name == name);
                has.then(|| rm.resource.clone().unwrap_or_default().attributes)
            })
        })
    }

    pub async fn wait_for(&self, name: &str, within: Duration) -> (Option<String>, Vec<Metric>) {
        let until = Instant::now() + within;
        loop {
            if let Some(found) = self.latest_with(name) {
                return found;
            }
            assert!(
                Instant::now() < until,
                "no export with {name} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

struct Grpc(Received);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let auth = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.0.push(auth, request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// Serves gRPC on 127.0.0.1; returns the endpoint URL (`https://` with `tls`).
pub async fn grpc_receiver(tls: bool) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let svc = MetricsServiceServer::new(Grpc(received.clone()));
    let mut server = tonic::transport::Server::builder();
    if tls {
        let (cert, key) = server_identity();
        server = server
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tonic::transport::Identity::from_pem(cert, key)),
            )
            .unwrap();
    }
    let connections = received.connections.clone();
    let incoming = futures_util::StreamExt::inspect(
        tonic::transport::server::TcpIncoming::from(listener),
        move |_| {
            connections.fetch_add(1, Ordering::Relaxed);
        },
    );
    tokio::spawn(async move {
        server
            .add_service(svc)
            .serve_with_incoming(incoming)
            .await
            .unwrap();
    });
    let scheme = if tls { "https" } else { "http" };
    (format!("{scheme}://{addr}"), received)
}

/// Serves OTLP/HTTP on 127.0.0.1; returns a base URL (rtprobe appends `/v1/metrics`).
pub async fn http_receiver(tls: bool) -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let store = received.clone();
    let acceptor = tls.then(|| tokio_rustls::TlsAcceptor::from(rustls_server_config()));
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            store.connections.fetch_add(1, Ordering::Relaxed);
            let store = store.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path_ok = req.uri().path() == "/v1/metrics"
                            && req.headers()["content-type"] == "application/x-protobuf";
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let status = match (path_ok, ExportMetricsServiceRequest::decode(body)) {
                            (true, Ok(decoded)) => {
                                store.push(auth, decoded);
                                200
                            }
                            _ => 400,
                        };
                        let reply = ExportMetricsServiceResponse::default().encode_to_vec();
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::from(reply)))
                                .unwrap(),
                        )
                    }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(stream).await else {
                            return;
                        };
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            });
        }
    });
    let scheme = if tls { "https" } else { "http" };
    (format!("{scheme}://{addr}"), received)
}

pub fn settings(endpoint: String, protocol: OtlpProtocol, interval: Duration) -> OtlpSettings {
    OtlpSettings {
        endpoint,
        protocol,
        headers: vec![("Authorization".into(), Secret::new("Bearer test-token"))],
        interval,
        timeout: Duration::from_secs(5),
        delta_temporality: false,
        traces: false,
        exponential_histograms: false,
    }
}

/// The metrics pipeline with the test buckets, pushing to `endpoint` every `interval`.
pub fn telemetry_to(endpoint: String, protocol: OtlpProtocol, interval: Duration) -> Telemetry {
    Telemetry::new(&buckets(), Some(&settings(endpoint, protocol, interval))).unwrap()
}

pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

pub fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} not exported"))
}

/// Records two successful runs and one failure, then checks what the receiver decoded.
pub fn record(t: &Telemetry) {
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("otlp-probe"), "whisper-tiny");
    r.record_run(&l, &derived(), Ok(()));
    r.record_run(&l, &derived(), Ok(()));
    r.record_run(&l, &derived(), Err(ErrorType::Http5xx));
}

pub fn check(auth: Option<String>, metrics: &[Metric]) {
    assert_eq!(auth.as_deref(), Some("Bearer test-token"));
    let b = buckets();

    let ttft = find(metrics, "gen_ai.client.operation.time_to_first_chunk");
    assert_eq!(ttft.unit, "s");
    let Some(metric::Data::Histogram(h)) = &ttft.data else {
        panic!("ttft is not a histogram: {ttft:?}")
    };
    assert_eq!(h.aggregation_temporality, 2, "cumulative");
    assert_eq!(h.data_points.len(), 1);
    let dp = &h.data_points[0];
    assert_eq!(dp.explicit_bounds, b.latency_seconds);
    // 0.75 twice: bucket (0.5, 1].
    assert_eq!(dp.bucket_counts, vec![0, 0, 2, 0, 0]);
    assert_eq!(dp.count, 2);
    assert_eq!(dp.sum, Some(1.5));
    let a = &dp.attributes;
    assert_eq!(attr(a, "rtprobe.probe"), Some(&s("otlp-probe")));
    assert_eq!(attr(a, "server.address"), Some(&s("vllm.test")));
    assert_eq!(
        attr(a, "server.port"),
        Some(&any_value::Value::IntValue(8000))
    );
    assert_eq!(attr(a, "gen_ai.request.model"), Some(&s("whisper-tiny")));
    assert_eq!(attr(a, "gen_ai.operation.name"), Some(&s("speech_to_text")));
    assert_eq!(attr(a, "gen_ai.provider.name"), Some(&s("vllm")));
    assert_eq!(attr(a, "team"), Some(&s("speech")));
    assert_eq!(attr(a, "outcome"), None);

    let itl = find(metrics, "gen_ai.client.operation.time_per_output_chunk");
    let Some(metric::Data::Histogram(h)) = &itl.data else {
        panic!("itl is not a histogram")
    };
    let dp = &h.data_points[0];
    assert_eq!(dp.explicit_bounds, b.itl_seconds);
    // Gaps 0.04, 0.08, 0.3 per run, two runs.
    assert_eq!(dp.bucket_counts, vec![2, 2, 2, 0]);
    assert_eq!(dp.count, 6);

    let usage = find(metrics, "gen_ai.client.token.usage");
    assert_eq!(usage.unit, "{token}");
    let Some(metric::Data::Histogram(h)) = &usage.data else {
        panic!("usage is not a histogram")
    };
    assert_eq!(h.data_points.len(), 2);
    for dp in &h.data_points {
        assert_eq!(dp.explicit_bounds, b.tokens);
        match attr(&dp.attributes, "gen_ai.token.type") {
            Some(any_value::Value::StringValue(t)) if t == "input" => {
                assert_eq!(dp.sum, Some(100.0))
            }
            Some(any_value::Value::StringValue(t)) if t == "output" => {
                assert_eq!(dp.sum, Some(14.0))
            }
            other => panic!("unexpected token type {other:?}"),
        }
    }

    let runs = find(metrics, "rtprobe.probe.runs");
    let Some(metric::Data::Sum(sum)) = &runs.data else {
        panic!("runs is not a sum")
    };
    assert!(sum.is_monotonic);
    let mut seen: Vec<(String, Option<String>, i64)> = sum
        .data_points
        .iter()
        .map(|dp| {
            let outcome = match attr(&dp.attributes, "outcome") {
                Some(any_value::Value::StringValue(o)) => o.clone(),
                other => panic!("outcome {other:?}"),
            };
            let error = match attr(&dp.attributes, "error.type") {
                Some(any_value::Value::StringValue(e)) => Some(e.clone()),
                None => None,
                other => panic!("error.type {other:?}"),
            };
            let n = match dp.value {
                Some(number_data_point::Value::AsInt(n)) => n,
                other => panic!("runs value {other:?}"),
            };
            (outcome, error, n)
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("failure".into(), Some("http_5xx".into()), 1),
            ("success".into(), None, 2),
        ]
    );
}

/// `record`'s runs exported once to a TLS receiver speaking `protocol`, then shutdown (waiting up
/// to `grace`): the receiver's endpoint and view, and the exporter's own count of failures.
pub async fn export_once_over_tls(
    protocol: OtlpProtocol,
    grace: Duration,
) -> (String, Received, u64) {
    let (endpoint, received) = match protocol {
        OtlpProtocol::Grpc => grpc_receiver(true).await,
        OtlpProtocol::HttpProtobuf => http_receiver(true).await,
    };
    let t = telemetry_to(endpoint.clone(), protocol, Duration::from_secs(3600));
    record(&t);
    let recorder = t.recorder();
    t.shutdown(grace).await;
    (endpoint, received, recorder.otlp_export_failures())
}
