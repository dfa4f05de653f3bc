//! `/metrics` in the Prometheus protobuf format: negotiated by `Accept`, every histogram a
//! native histogram (schema, zero bucket, spans, deltas) from the same recordings as the classic
//! buckets, which ride alongside per `metrics.histograms`. Values are powers of two and 3.0 so
//! every expected bucket index is computed by hand in the comments.

use crate::support;

use prost::Message;
use rtprobe::config::{Buckets, HistogramFormat, MetricsSettings};
use rtprobe::derive::Derived;
use rtprobe::metrics::prom_proto::{Histogram, MetricFamily, MetricType};
use rtprobe::metrics::{ProbeLabels, Telemetry};
use support::metrics::spec;

const ACCEPT: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8,text/plain;version=0.0.4;q=0.3";

fn telemetry(histograms: HistogramFormat) -> Telemetry {
    let settings = MetricsSettings {
        histograms,
        ..Default::default()
    };
    let t = Telemetry::with_settings(&Buckets::default(), &settings, None).unwrap();
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("p"), "m");
    for rtt in [0.25, 0.5, 0.5, 3.0] {
        let d = Derived {
            rtt_last: Some(rtt),
            ..Derived::default()
        };
        r.record_run(&l, &d, Ok(()));
    }
    t
}

fn families(t: &Telemetry) -> Vec<MetricFamily> {
    let (ct, body) = t.render(Some(ACCEPT));
    assert_eq!(
        ct,
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
    );
    let mut buf = &body[..];
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(MetricFamily::decode_length_delimited(&mut buf).expect("delimited MetricFamily"));
    }
    out
}

fn rtt(fams: &[MetricFamily]) -> Histogram {
    let f = fams
        .iter()
        .find(|f| f.name.as_deref() == Some("rtprobe_round_trip_last_seconds"))
        .expect("round trip family");
    assert_eq!(f.r#type, Some(MetricType::Histogram as i32));
    assert_eq!(f.metric.len(), 1, "{:?}", f.metric);
    let labels: Vec<_> = f.metric[0]
        .label
        .iter()
        .map(|l| (l.name.clone().unwrap(), l.value.clone().unwrap()))
        .collect();
    assert!(
        labels.iter().any(|(k, _)| k == "rtprobe_probe"),
        "{labels:?}"
    );
    f.metric[0].histogram.clone().expect("histogram")
}

/// Bucket counts by Prometheus index, from spans and deltas.
fn counts(h: &Histogram) -> Vec<(i32, u64)> {
    let mut out = Vec::new();
    let (mut index, mut count, mut deltas) = (0i32, 0i64, h.positive_delta.iter());
    for span in &h.positive_span {
        index += span.offset.unwrap();
        for _ in 0..span.length.unwrap() {
            count += deltas.next().expect("a delta per bucket");
            if count != 0 {
                out.push((index, count as u64));
            }
            index += 1;
        }
    }
    assert!(deltas.next().is_none(), "no delta without a bucket");
    out
}

#[tokio::test]
async fn both_native_and_classic_from_one_recording() {
    let t = telemetry(HistogramFormat::Both);
    let fams = families(&t);
    let h = rtt(&fams);
    assert_eq!(h.sample_count, Some(4));
    assert_eq!(h.sample_sum, Some(4.25));
    // Observations span 0.25 … 3.0: 919 buckets at schema 8, more than the 160 the
    // aggregation keeps, so the SDK lowers the scale to 5 (116 buckets).
    assert_eq!(h.schema, Some(5));
    assert_eq!(h.zero_count, Some(0));
    // Schema 5: bucket i is (2^((i-1)/32), 2^(i/32)]. 0.25 = 2^(-64/32) → -64;
    // 0.5 = 2^(-32/32) → -32; 3.0 = 2^(50.7/32) → 51.
    assert_eq!(counts(&h), vec![(-64, 1), (-32, 2), (51, 1)]);
    assert_eq!(h.positive_span[0].offset, Some(-64));
    assert!(h.negative_span.is_empty());
    // Classic buckets of the same recordings, without +Inf.
    let classic: Vec<(f64, u64)> = h
        .bucket
        .iter()
        .map(|b| (b.upper_bound.unwrap(), b.cumulative_count.unwrap()))
        .collect();
    assert_eq!(
        classic,
        vec![
            (0.05, 0),
            (0.1, 0),
            (0.25, 1),
            (0.5, 3),
            (0.75, 3),
            (1.0, 3),
            (1.5, 3),
            (2.5, 3),
            (5.0, 4),
            (10.0, 4)
        ]
    );
    // Counters and gauges are in the protobuf too.
    let runs = fams
        .iter()
        .find(|f| f.name.as_deref() == Some("rtprobe_probe_runs_total"))
        .expect("runs");
    assert_eq!(runs.r#type, Some(MetricType::Counter as i32));
    assert_eq!(runs.metric[0].counter.as_ref().unwrap().value, Some(4.0));
    // The text format is unchanged by the native stream: no `.native` family leaks.
    let (_, text) = t.render(None);
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains("_native"), "{text}");
    assert!(text.contains("rtprobe_round_trip_last_seconds_bucket"));
}

#[tokio::test]
async fn native_only_and_classic_only() {
    let h = rtt(&families(&telemetry(HistogramFormat::Native)));
    assert!(h.bucket.is_empty());
    assert_eq!(h.schema, Some(5));
    assert_eq!(counts(&h).iter().map(|c| c.1).sum::<u64>(), 4);

    let h = rtt(&families(&telemetry(HistogramFormat::Classic)));
    assert_eq!(h.bucket.len(), 10);
    assert_eq!(h.schema, None);
    assert!(h.positive_span.is_empty());
}

#[tokio::test]
async fn a_single_value_stays_at_the_finest_schema_prometheus_accepts() {
    let settings = MetricsSettings::default();
    let t = Telemetry::with_settings(&Buckets::default(), &settings, None).unwrap();
    let l = ProbeLabels::new(&spec("one"), "m");
    let d = Derived {
        rtt_last: Some(0.5),
        ..Derived::default()
    };
    t.recorder().record_run(&l, &d, Ok(()));
    let h = rtt(&families(&t));
    // OTel would use scale 20 for one value; capped at Prometheus's 8: 0.5 = 2^(-256/256).
    assert_eq!(h.schema, Some(8));
    assert_eq!(counts(&h), vec![(-256, 1)]);
}
