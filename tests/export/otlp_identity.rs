//! OTLP identity in a fleet, through the real binary: `rtprobe serve` started with the variables
//! the Kubernetes manifests set pushes to the test receiver a resource that names this replica
//! (`service.instance.id` from `HOSTNAME`, the pod's name in Kubernetes), keeps the service name
//! from `OTEL_SERVICE_NAME`, and carries the `k8s.*` attributes of `OTEL_RESOURCE_ATTRIBUTES`.
//! And `otlp.histograms: exponential`, as the receiver decodes it.

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::metrics::receiver::{attr, grpc_receiver, s};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_pushes_a_resource_naming_the_replica() {
    let (endpoint, received) = grpc_receiver(false).await;
    let dir = tempfile::tempdir().unwrap();
    let audio = crate::support::clip();
    // The target refuses connections: runs fail fast, and every export still carries the
    // resource (the runs counter and the export-failure counter are always there). Burst
    // pacing: a 1 s timeout is shorter than the 3 s clip, which config rejects in real time.
    let config = format!(
        "server:\n  listen: 127.0.0.1:{}\nprobes:\n  - name: sidecar\n    target: http://127.0.0.1:{}\n    model: m\n    audio: {}\n    pacing: burst\n    interval: 1s\n",
        support::free_port(),
        support::free_port(),
        audio.display()
    );
    let path = dir.path().join("rtprobe.yaml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rtprobe"))
        .args(["serve", "--no-watch", "--config"])
        .arg(&path)
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .env("OTEL_METRIC_EXPORT_INTERVAL", "200")
        .env("OTEL_SERVICE_NAME", "speech-canary")
        .env(
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.pod.name=vllm-7f9c-0,k8s.namespace.name=speech,k8s.node.name=node-a",
        )
        .env("HOSTNAME", "vllm-7f9c-0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _child = support::Kill(child);
    received
        .wait_for("rtprobe.probe.runs", Duration::from_secs(30))
        .await;
    let resource = received.resource_with("rtprobe.probe.runs").unwrap();
    let get = |k: &str| attr(&resource, k).cloned();
    assert_eq!(
        get("service.name"),
        Some(s("speech-canary")),
        "{resource:?}"
    );
    assert_eq!(get("service.instance.id"), Some(s("vllm-7f9c-0")));
    assert_eq!(get("service.version"), Some(s(env!("CARGO_PKG_VERSION"))));
    assert_eq!(get("k8s.pod.name"), Some(s("vllm-7f9c-0")));
    assert_eq!(get("k8s.namespace.name"), Some(s("speech")));
    assert_eq!(get("k8s.node.name"), Some(s("node-a")));
}

/// `otlp.histograms: exponential`: the receiver decodes Base2 exponential histograms whose
/// counts and sums are the runs', while `/metrics` keeps its classic buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exponential_histograms_over_otlp() {
    use opentelemetry_proto::tonic::metrics::v1::metric;
    use rtprobe::config::model::OtlpProtocol;
    use support::metrics::receiver::{find, record, settings};

    let (endpoint, received) = grpc_receiver(false).await;
    let mut s = settings(endpoint, OtlpProtocol::Grpc, Duration::from_millis(200));
    s.exponential_histograms = true;
    let t = rtprobe::metrics::Telemetry::new(&support::metrics::buckets(), Some(&s)).unwrap();
    record(&t);
    let (_, metrics) = received
        .wait_for("rtprobe.round_trip.last", Duration::from_secs(20))
        .await;
    // Two successful runs of `derived()`: round trip 0.4 twice; ITL gaps 0.04, 0.08, 0.3 twice.
    for (name, count, sum) in [
        ("rtprobe.round_trip.last", 2, 0.8),
        ("gen_ai.client.operation.time_per_output_chunk", 6, 0.84),
    ] {
        let m = find(&metrics, name);
        let Some(metric::Data::ExponentialHistogram(h)) = &m.data else {
            panic!("{name} is not exponential: {m:?}")
        };
        assert_eq!(h.aggregation_temporality, 2, "cumulative");
        let dp = &h.data_points[0];
        assert_eq!(dp.count, count, "{name}");
        assert!((dp.sum.unwrap() - sum).abs() < 1e-9, "{name}: {:?}", dp.sum);
        let positive = dp.positive.as_ref().expect("positive buckets");
        let in_buckets: u64 = positive.bucket_counts.iter().sum::<u64>() + dp.zero_count;
        assert_eq!(in_buckets, count, "{name}: every observation in a bucket");
        assert!(dp.scale <= 8, "{name}: scale {} fits Prometheus", dp.scale);
        // No `.native` stream leaks into OTLP: that one is /metrics' own.
        assert!(metrics.iter().all(|m| !m.name.ends_with(".native")));
    }
    // The OTLP choice does not change /metrics: classic buckets in the text format.
    let text = String::from_utf8(t.render(None).1).unwrap();
    assert!(
        text.contains("rtprobe_round_trip_last_seconds_bucket{"),
        "{text}"
    );
    t.shutdown(Duration::from_secs(5)).await;
}
