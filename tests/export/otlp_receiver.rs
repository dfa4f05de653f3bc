//! A real OTLP receiver (official protobufs, gRPC via tonic and HTTP/protobuf via hyper) on
//! loopback: rtprobe's pushed histograms and counters must arrive with the configured bounds,
//! counts, sums and attributes. Also: with the receiver down, recording and rendering stay fast,
//! failures are counted, and shutdown returns within its bound.

use crate::support;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::metrics::v1::metric;
use rtprobe::config::model::{OtlpProtocol, OtlpSettings};
use rtprobe::metrics::{ProbeLabels, Telemetry};
use support::metrics::receiver::{
    check, export_once_over_tls, find, grpc_receiver, http_receiver, record, settings, telemetry_to,
};
use support::metrics::{buckets, derived, spec};
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_receiver_gets_histograms_and_counter() {
    let (endpoint, received) = grpc_receiver(false).await;
    let t = telemetry_to(endpoint, OtlpProtocol::Grpc, Duration::from_millis(200));
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
    let (endpoint, received) = http_receiver(false).await;
    // An interval far beyond the test: only the final flush on shutdown can deliver.
    let t = telemetry_to(
        endpoint,
        OtlpProtocol::HttpProtobuf,
        Duration::from_secs(3600),
    );
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
    let (endpoint, received) = http_receiver(false).await;
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
        traces: false,
        exponential_histograms: false,
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
async fn bad_endpoint_or_header_is_a_typed_error_without_secrets() {
    let s = settings(
        "collector.test:4318".into(),
        OtlpProtocol::HttpProtobuf,
        Duration::from_secs(1),
    );
    let err = Telemetry::new(&buckets(), Some(&s))
        .unwrap_err()
        .to_string();
    assert!(err.contains("http:// or https://"), "{err}");

    let mut s = settings(
        "http://127.0.0.1:4318".into(),
        OtlpProtocol::Grpc,
        Duration::from_secs(1),
    );
    s.headers[0].1 = rtprobe::config::model::Secret::new("Bearer bad\u{7f}token");
    let err = Telemetry::new(&buckets(), Some(&s))
        .unwrap_err()
        .to_string();
    assert!(err.contains("Authorization"), "{err}");
    assert!(!err.contains("token"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_fails_the_export() {
    // This binary never trusts the test CA (only otlp_tls.rs, a binary of its own, sets
    // SSL_CERT_FILE), so the receivers' certificates do not verify.
    for protocol in [OtlpProtocol::Grpc, OtlpProtocol::HttpProtobuf] {
        let (_, received, failures) = export_once_over_tls(protocol, Duration::from_secs(5)).await;
        assert!(received.latest_with("rtprobe.probe.runs").is_none());
        // The receiver was up: the export reached it and failed in the TLS handshake.
        assert!(received.connections() >= 1, "{protocol:?}: no connection");
        assert_eq!(failures, 1, "{protocol:?}");
    }
}
