//! Shared fixtures for the metrics and OTLP integration tests: a probe spec, small bucket sets
//! and a fully populated `Derived` whose values are easy to check by hand.

use rtprobe::config::model::{Buckets, ProbeSpec};
use rtprobe::derive::Derived;
use rtprobe::probe::timeline::Usage;

pub fn spec(name: &str) -> ProbeSpec {
    super::probe_spec(&format!(
        "name: {name}\ntarget: http://vllm.test:8000\nmodel: whisper-tiny\naudio: {}\n\
         labels: {{team: speech}}\ninterval: 30s\ntimeout: 20s\njitter: 0",
        super::CLIP
    ))
}

/// Small bucket sets so rendered output can be compared line by line.
pub fn buckets() -> Buckets {
    Buckets {
        latency_seconds: vec![0.1, 0.5, 1.0, 2.5],
        itl_seconds: vec![0.05, 0.1, 0.5],
        phase_seconds: vec![0.005, 0.05],
        lateness_seconds: vec![0.01],
        ratio: vec![0.5, 1.0, 2.0],
        tokens_per_second: vec![1.0, 10.0, 100.0],
        tokens: vec![10.0, 100.0],
    }
}

/// A successful run with every value set.
pub fn derived() -> Derived {
    Derived {
        e2e: Some(2.0),
        ttft: Some(0.75),
        time_to_first_text: Some(0.25),
        itl_gaps: vec![0.04, 0.08, 0.3],
        itl_guidellm: Some(0.125),
        rtt_last: Some(0.4),
        rtt_mean: Some(0.3),
        finalize: Some(0.6),
        phases: vec![("connect", 0.002), ("upgrade", 0.003), ("session", 0.02)],
        send_window_audio_rate: Some(1.0),
        send_window_output_tokens: Some(5.0),
        decode_token_rate: Some(12.5),
        usage: Some(Usage {
            prompt_tokens: 50,
            completion_tokens: 7,
            total_tokens: 57,
        }),
        wer: Some(0.1),
        pacing_lateness: vec![0.0005, 0.001],
        text_deltas: 4,
        deltas: 6,
        truncated: false,
        send_span: Some((0.0, 1.4)),
    }
}

pub mod receiver;
pub mod traces;
