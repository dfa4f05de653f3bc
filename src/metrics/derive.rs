//! Timeline → derived values: pure arithmetic, no I/O, no clocks, no OTel. Every formula is
//! the one in DESIGN.md's metric catalogue and realtime-protocol.md §8/§10, and is unit-tested
//! here with exact numbers. A value that is undefined for a run is `None`, never a fake 0.

use std::time::Duration;

use crate::probe::timeline::{Timeline, Usage};

/// Everything recorded for one run. Seconds are `f64`.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Derived {
    /// t_done − t0.
    pub e2e: Option<f64>,
    /// TTFT, guidellm-compatible: first text − t0.
    pub ttft: Option<f64>,
    /// First text − first audio chunk sent.
    pub time_to_first_text: Option<f64>,
    /// Gaps between consecutive non-empty deltas.
    pub itl_gaps: Vec<f64>,
    /// guidellm's ITL: (last text − first text) ÷ (completion_tokens − 1).
    pub itl_guidellm: Option<f64>,
    /// Last text − final commit sent (Time To Last Round Trip).
    pub rtt_last: Option<f64>,
    /// Mean receive time of non-empty deltas − mean send time of all frames (Avg RTT).
    pub rtt_mean: Option<f64>,
    /// t_done − final commit sent.
    pub finalize: Option<f64>,
    /// Phase durations: (phase name, seconds) for `dns`, `connect`, `tls`, `upgrade`, `session`.
    pub phases: Vec<(&'static str, f64)>,
    /// Audio seconds sent ÷ (last send − first send) of appends.
    pub send_window_audio_rate: Option<f64>,
    /// Output tokens ÷ send window.
    pub send_window_output_tokens: Option<f64>,
    /// (non-empty deltas − 1) ÷ (last − first non-empty delta).
    pub decode_token_rate: Option<f64>,
    pub usage: Option<Usage>,
    /// Word error rate against the reference, when one is configured.
    pub wer: Option<f64>,
    /// Pacing lateness of each append against its schedule (seconds, ≥ 0 when late).
    pub pacing_lateness: Vec<f64>,
    /// Non-empty deltas received.
    pub text_deltas: usize,
    /// All deltas received, empty ones included.
    pub deltas: usize,
    pub truncated: bool,
}

/// Derive every value from a timeline. `reference` is the probe's reference transcript.
pub fn derive(t: &Timeline, reference: Option<&str>) -> Derived {
    let _ = (t, reference, Duration::ZERO);
    unimplemented!("metrics::derive — owned by the probe-engine work")
}
