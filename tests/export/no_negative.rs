//! A clip with trailing audio after its last word (the transcript finishes while seconds of
//! audio are still being sent) makes Avg RTT negative. Through `serve` with the production
//! backend against the simulator, `/metrics` must then hold no negative value anywhere: every
//! `_sum`, bucket and count is ≥ 0, and the run is counted in
//! `rtprobe_round_trip_mean_negative_total` instead of observed as a latency.

use std::time::Duration;

use rtprobe::simulate::SimConfig;

use crate::support;

/// `name{labels} value` lines of a text-format body: (name, full line, value).
fn samples(body: &str) -> Vec<(String, String, f64)> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample has a value");
            let name = series.split('{').next().unwrap_or(series).to_owned();
            let value = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("bad value in {l}")),
            };
            (name, l.to_owned(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailing_audio_records_no_negative_value() {
    // Two words, both out within ~150 ms of the first audio; the 3.08 s clip keeps streaming.
    let sim_cfg = SimConfig {
        transcript: "The quick".into(),
        first_text_delay: Duration::from_millis(100),
        token_interval: Duration::from_millis(50),
        hold_last_words: 0,
        ..SimConfig::default()
    };
    let sim = crate::support::sim::start(sim_cfg).await;
    let clip = crate::support::clip();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\nprobes:\n  - name: trailing\n    target: http://{}\n    model: demo-realtime\n    audio: {}\n    reference: The quick\n    interval: 6s\n    timeout: 6s\n    jitter: 0\n",
        sim.addr(),
        clip.display()
    );
    let serve = support::serve::start_production(dir.path(), &text).await;
    let addr = serve.local_addr();

    let body = support::serve::metrics_when(addr, Duration::from_secs(30), "successful run", |b| {
        b.lines().any(|l| {
            l.starts_with("rtprobe_probe_runs_total{") && l.contains("outcome=\"success\"")
        })
    })
    .await;
    serve.run_until(async {}).await;
    sim.shutdown().await;

    let all = samples(&body);
    let (mut sums, mut buckets) = (0, 0);
    for (name, line, value) in &all {
        assert!(!value.is_nan() && *value >= 0.0, "negative or NaN: {line}");
        sums += usize::from(name.ends_with("_sum"));
        buckets += usize::from(name.ends_with("_bucket"));
    }
    // A floor that shows the check saw the histograms (the series budget leaves ~75 buckets).
    assert!(
        sums >= 10 && buckets >= 60,
        "{sums} sums, {buckets} buckets"
    );
    let value = |name: &str| all.iter().find(|s| s.0 == name).map(|s| s.2);
    // The run happened as described: text led the audio, so Avg RTT was negative and counted.
    assert_eq!(value("rtprobe_round_trip_mean_negative_total"), Some(1.0));
    assert_eq!(value("rtprobe_round_trip_mean_seconds_count"), None);
    // The last text came before the final commit: no last round trip either.
    assert_eq!(value("rtprobe_round_trip_last_seconds_count"), None);
    assert_eq!(
        value("rtprobe_transcript_word_error_rate_ratio_sum"),
        Some(0.0)
    );
}
