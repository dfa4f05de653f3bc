//! `serve` with the production backend against the simulator in the OpenAI dialect, with a
//! multi-utterance probe: the same metric names as vLLM probes, `gen_ai_provider_name` from the
//! config, later utterances recorded with `rtprobe_utterance="later"` and the first (and the run)
//! with `"first"`.

use std::time::Duration;

use rtprobe::simulate::SimConfig;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_multi_utterance_probe_is_exported_per_utterance() {
    let sim = support::sim::start(SimConfig {
        dialect: rtprobe::config::Dialect::OpenAi,
        token_interval: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "server:\n  listen: 127.0.0.1:0\nprobes:\n  - name: sess\n    dialect: openai\n    provider: sglang\n    target: http://{}\n    model: demo-realtime\n    audio: {}\n    reference: Mary had a little lamb, its fleece was white as snow.\n    utterances: 2\n    chunk: 200ms\n    interval: 20s\n    timeout: 15s\n    jitter: 0\n",
        sim.addr(),
        support::clip().display()
    );
    let serve = support::serve::start_production(dir.path(), &text).await;
    let addr = serve.local_addr();
    let m =
        support::serve::metrics_when(addr, Duration::from_secs(30), "successful session", |m| {
            m.contains("rtprobe_probe_runs_total{") && m.contains("outcome=\"success\"")
        })
        .await;
    let ttft_count = |which: &str| {
        m.lines().find(|l| {
            l.starts_with("gen_ai_client_operation_time_to_first_chunk_seconds_count{")
                && l.contains(&format!("rtprobe_utterance=\"{which}\""))
        })
    };
    let first = ttft_count("first").unwrap_or_else(|| panic!("first utterance TTFT:\n{m}"));
    let later = ttft_count("later").unwrap_or_else(|| panic!("later utterance TTFT:\n{m}"));
    assert!(first.ends_with(" 1"), "{first}");
    assert!(later.ends_with(" 1"), "{later}");
    assert!(first.contains("gen_ai_provider_name=\"sglang\""), "{first}");
    // One run per session, counted with the first utterance.
    let runs: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("rtprobe_probe_runs_total{") && l.contains("outcome=\"success\""))
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].contains("rtprobe_utterance=\"first\"") && runs[0].ends_with(" 1"));
    // Each utterance's WER against its reference is its own observation.
    assert!(m.lines().any(
        |l| l.starts_with("rtprobe_transcript_word_error_rate_ratio_count{")
            && l.contains("rtprobe_utterance=\"later\"")
            && l.ends_with(" 1")
    ));
    serve.run_until(async {}).await;
    sim.shutdown().await;
}
