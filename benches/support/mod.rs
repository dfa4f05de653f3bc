//! What both benchmarks record into `/metrics`: one successful run with every value defined, so
//! a render measures every histogram (shared so the two render figures measure the same work).

use rtprobe::derive::Derived;

/// A successful run with every value defined.
pub fn full_run() -> Derived {
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
