//! A real OTLP receiver (official protobufs, gRPC via tonic and HTTP/protobuf via hyper) on
//! loopback: rtprobe's pushed histograms and counters must arrive with the configured bounds,
//! counts, sums and attributes. Also: with the receiver down, recording and rendering stay fast,
//! failures are counted, and shutdown returns within its bound.

mod metrics_support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_support::{buckets, derived, spec};
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

/// One decoded export with the `authorization` header it carried.
type Export = (Option<String>, ExportMetricsServiceRequest);

/// What the receiver got, in arrival order.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Export>>>);

impl Received {
    fn push(&self, auth: Option<String>, req: ExportMetricsServiceRequest) {
        self.0.lock().unwrap().push((auth, req));
    }

    /// The newest export that contains `name` with at least one data point.
    fn latest_with(&self, name: &str) -> Option<(Option<String>, Vec<Metric>)> {
        let all = self.0.lock().unwrap();
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

    async fn wait_for(&self, name: &str, within: Duration) -> (Option<String>, Vec<Metric>) {
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

async fn grpc_receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let svc = MetricsServiceServer::new(Grpc(received.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), received)
}

async fn http_receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Received::default();
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let store = store.clone();
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
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    // A base URL: rtprobe appends /v1/metrics.
    (format!("http://{addr}"), received)
}

fn settings(endpoint: String, protocol: OtlpProtocol, interval: Duration) -> OtlpSettings {
    OtlpSettings {
        endpoint,
        protocol,
        headers: vec![("Authorization".into(), Secret::new("Bearer test-token"))],
        interval,
        timeout: Duration::from_secs(5),
        delta_temporality: false,
    }
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
    metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} not exported"))
}

/// Records two successful runs and one failure, then checks what the receiver decoded.
fn record(t: &Telemetry) {
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("otlp-probe"), "whisper-tiny");
    r.record_run(&l, &derived(), Ok(()));
    r.record_run(&l, &derived(), Ok(()));
    r.record_run(&l, &derived(), Err(ErrorType::Http5xx));
}

fn check(auth: Option<String>, metrics: &[Metric]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_gets_histograms_and_counter() {
    let (endpoint, received) = grpc_receiver().await;
    let t = Telemetry::new(
        &buckets(),
        Some(&settings(
            endpoint,
            OtlpProtocol::Grpc,
            Duration::from_millis(200),
        )),
    )
    .unwrap();
    record(&t);
    // Periodic export, not the shutdown flush.
    let (auth, metrics) = received
        .wait_for(
            "gen_ai.client.operation.time_to_first_chunk",
            Duration::from_secs(20),
        )
        .await;
    check(auth, &metrics);
    assert_eq!(t.recorder().otlp_export_failures(), 0);
    t.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receiver_gets_histograms_and_counter_on_shutdown_flush() {
    let (endpoint, received) = http_receiver().await;
    // An interval far beyond the test: only the final flush on shutdown can deliver.
    let t = Telemetry::new(
        &buckets(),
        Some(&settings(
            endpoint,
            OtlpProtocol::HttpProtobuf,
            Duration::from_secs(3600),
        )),
    )
    .unwrap();
    record(&t);
    let recorder = t.recorder();
    assert!(received.latest_with("rtprobe.probe.runs").is_none());
    t.shutdown(Duration::from_secs(10)).await;
    let (auth, metrics) = received
        .latest_with("gen_ai.client.operation.time_to_first_chunk")
        .expect("shutdown flushed the metrics");
    check(auth, &metrics);
    assert_eq!(recorder.otlp_export_failures(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_temporality_is_exported_as_delta() {
    let (endpoint, received) = http_receiver().await;
    let mut s = settings(
        endpoint,
        OtlpProtocol::HttpProtobuf,
        Duration::from_secs(3600),
    );
    s.delta_temporality = true;
    let t = Telemetry::new(&buckets(), Some(&s)).unwrap();
    record(&t);
    t.shutdown(Duration::from_secs(10)).await;
    let (_, metrics) = received.latest_with("rtprobe.probe.runs").expect("flushed");
    let Some(metric::Data::Histogram(h)) = &find(&metrics, "gen_ai.client.operation.duration").data
    else {
        panic!("not a histogram")
    };
    assert_eq!(h.aggregation_temporality, 1, "delta");
}

/// A receiver that accepts TCP connections and never answers: the worst case for timeouts.
async fn black_hole() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

async fn receiver_down(protocol: OtlpProtocol) {
    let (_hole, endpoint) = black_hole().await;
    let s = OtlpSettings {
        endpoint,
        protocol,
        headers: Vec::new(),
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(300),
        delta_temporality: false,
    };
    let t = Telemetry::new(&buckets(), Some(&s)).unwrap();
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("down"), "m");
    let d = derived();

    // Let exports start failing, then record and render while they keep failing.
    let until = Instant::now() + Duration::from_secs(20);
    while r.otlp_export_failures() == 0 {
        assert!(Instant::now() < until, "no failed export was counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let start = Instant::now();
    for _ in 0..1000 {
        r.record_run(&l, &d, Ok(()));
    }
    let record_time = start.elapsed();
    let start = Instant::now();
    let (_, body) = t.render(None);
    let render_time = start.elapsed();
    assert!(!body.is_empty());
    // Generous bounds for a loaded 2-core debug build; an export blocking the recording path
    // would cost the 300 ms export timeout per blocked call and blow far past them.
    assert!(
        record_time < Duration::from_secs(2),
        "1000 runs took {record_time:?}"
    );
    assert!(
        render_time < Duration::from_millis(500),
        "render took {render_time:?}"
    );

    let bound = Duration::from_secs(1);
    let start = Instant::now();
    t.shutdown(bound).await;
    let took = start.elapsed();
    eprintln!(
        "{protocol:?} receiver down: 1000 runs recorded in {record_time:?}, render {render_time:?}, \
         shutdown {took:?}, failed exports counted {}",
        r.otlp_export_failures()
    );
    assert!(
        took < bound + Duration::from_millis(500),
        "shutdown took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_down_never_blocks() {
    receiver_down(OtlpProtocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_receiver_down_never_blocks() {
    receiver_down(OtlpProtocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoint_is_refused_at_start() {
    let s = settings(
        "https://collector.test:4318".into(),
        OtlpProtocol::HttpProtobuf,
        Duration::from_secs(1),
    );
    let err = Telemetry::new(&buckets(), Some(&s))
        .unwrap_err()
        .to_string();
    assert!(err.contains("https"), "{err}");
    assert!(!err.contains("test-token"), "{err}");
}
