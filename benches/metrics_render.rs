//! `/metrics` cost at fleet scale (see BENCHMARKS.md): series and bytes per probe at the default
//! config, and render time for 10 and 100 probes in the text and protobuf formats.
//!
//! One successful run with every value defined is recorded per probe (what a healthy probe
//! exports), plus one scheduler delay; then each format is rendered 50 times, one after the
//! other (sequential renders never share a body: each is a full collect and encode).
//!
//! `cargo bench --bench metrics_render`

use std::path::Path;
use std::time::Instant;

use rtprobe::config::{self, Buckets};
use rtprobe::derive::Derived;
use rtprobe::metrics::Telemetry;
use rtprobe::stats::quantile;

/// What Prometheus sends with native histograms on.
const PROTOBUF: &str =
    "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";

/// A successful run with every value defined.
fn full_run() -> Derived {
    Derived {
        e2e: Some(3.2),
        ttft: Some(0.4),
        time_to_first_text: Some(0.35),
        itl_gaps: vec![0.08, 0.16, 0.24],
        itl_guidellm: Some(0.02),
        rtt_last: Some(0.15),
        rtt_mean: Some(0.3),
        finalize: Some(0.19),
        phases: vec![("connect", 0.001), ("upgrade", 0.002), ("session", 0.0005)],
        send_window_audio_rate: Some(1.0),
        send_window_output_tokens: Some(12.0),
        decode_token_rate: Some(4.0),
        usage: Some(rtprobe::probe::timeline::Usage {
            prompt_tokens: 39,
            completion_tokens: 40,
            total_tokens: 79,
        }),
        wer: Some(0.1),
        pacing_lateness: vec![0.0002; 30],
        text_deltas: 9,
        deltas: 17,
        ..Derived::default()
    }
}

fn telemetry(probes: usize) -> Telemetry {
    let t = Telemetry::new(&Buckets::default(), None).expect("telemetry");
    let rec = t.recorder();
    let audio = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/audio/quick-brown-fox.flac");
    let yaml = format!(
        "probes:\n{}",
        (0..probes)
            .map(|i| format!(
                "  - name: p{i}\n    target: http://127.0.0.1:{}\n    model: m\n    audio: {}\n",
                8000 + i,
                audio.display()
            ))
            .collect::<String>()
    );
    let cfg = config::parse(&yaml, Path::new("bench.yaml")).expect("config");
    for p in &cfg.probes {
        let labels = rtprobe::metrics::ProbeLabels::new(p, "m");
        rec.record_run(&labels, &full_run(), Ok(()));
        rec.scheduler_delay(&labels, 0.001);
    }
    t
}

fn main() {
    let one = telemetry(1);
    let (_, body) = one.render(None);
    let text = String::from_utf8(body).expect("utf-8");
    let series = text
        .lines()
        .filter(|l| l.contains("rtprobe_probe=\"p0\""))
        .count();
    let bytes: usize = text
        .lines()
        .filter(|l| l.contains("rtprobe_probe=\"p0\""))
        .map(|l| l.len() + 1)
        .sum();
    println!(
        "one probe, text: {series} series, {bytes} bytes of sample lines, body {} bytes",
        text.len()
    );
    let (_, proto) = one.render(Some(PROTOBUF));
    println!(
        "one probe, protobuf (native + classic): body {} bytes",
        proto.len()
    );
    for probes in [10, 100] {
        let t = telemetry(probes);
        for (format, accept) in [("text", None), ("protobuf", Some(PROTOBUF))] {
            let mut times = Vec::new();
            let mut size = 0;
            for _ in 0..50 {
                let start = Instant::now();
                let (_, body) = t.render(accept);
                times.push(start.elapsed().as_secs_f64());
                size = body.len();
            }
            println!(
                "{format}, {probes} probes: wall p50 {:.2} ms, p99 {:.2} ms; body {} KB",
                quantile(&times, 0.5).unwrap() * 1e3,
                quantile(&times, 0.99).unwrap() * 1e3,
                size / 1024
            );
        }
    }
}
