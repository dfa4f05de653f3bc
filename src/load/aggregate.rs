//! The running totals of a time-bound run (`serve --duration`, each level of `rtprobe load`):
//! what the live display redraws and the summary prints. Pure: it is fed stream results and
//! clock readings by its caller, so it is tested with exact numbers and no runtime.
//!
//! Memory is bounded however long the run lasts: latencies go into fixed-size [`Sketch`]es,
//! failures are keyed by the closed `error.type` set, and the live-rate history is a ring.
//!
//! Throughput is over the run's *send window*: from the first audio append of any stream to the
//! last append of any stream, as llmeter computes it over its first and last request.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use super::sketch::Sketch;
use crate::scheduler::StreamResult;

/// Live-rate readings kept for the rolling high/low: two minutes at the display's 0.5 s.
pub const LIVE_HISTORY: usize = 240;

/// Everything counted so far. Times are seconds since the run started (the caller's clock).
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    started: u64,
    succeeded: u64,
    failures: BTreeMap<&'static str, u64>,
    skipped: u64,
    open: i64,
    time_to_first_text: Sketch,
    ttft: Sketch,
    itl: Sketch,
    rtt_last: Sketch,
    rtt_mean: Sketch,
    finalize: Sketch,
    wer: Sketch,
    audio_rate: Sketch,
    output_tokens: u64,
    /// Streams that sent at least two appends (they have a send span).
    sending_streams: u64,
    first_send: Option<f64>,
    last_send: Option<f64>,
    /// Last (time, text deltas counter) reading, for the live rate.
    live_prev: Option<(f64, u64)>,
    /// Streams open at that reading.
    live_prev_open: i64,
    live_now: Option<f64>,
    live_history: VecDeque<f64>,
}

/// p50/p90/p99 of one latency, with its sample count. `None` = no reading yet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quantiles {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub n: u64,
}

impl Quantiles {
    fn of(s: &Sketch) -> Quantiles {
        Quantiles {
            p50: s.quantile(0.5),
            p90: s.quantile(0.9),
            p99: s.quantile(0.99),
            n: s.count(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runs {
    /// Streams started (each stream of each run).
    pub started: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Failures by `error.type`.
    pub failures: BTreeMap<String, u64>,
    /// Ticks skipped because the previous run was still going.
    pub skipped_ticks: u64,
    /// Streams open now.
    pub open: u64,
}

/// Seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub time_to_first_text: Quantiles,
    pub ttft: Quantiles,
    pub itl: Quantiles,
    pub rtt_last: Quantiles,
    pub rtt_mean: Quantiles,
    pub finalize: Quantiles,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// `usage.completion_tokens` summed over every finished stream.
    pub output_tokens: u64,
    /// First to last audio append across the whole run.
    pub send_window_s: Option<f64>,
    /// Output tokens ÷ send window.
    pub output_tokens_per_s: Option<f64>,
    /// Streams that sent audio ÷ send window, per minute.
    pub streams_per_min: Option<f64>,
    /// Mean per-stream audio rate (audio seconds per wall second; 1.0 = real time).
    pub audio_rate: Option<f64>,
    /// Text deltas per second per open stream, over the last display interval.
    pub live_token_rate: Option<f64>,
    /// Highest and lowest live rate over the last [`LIVE_HISTORY`] readings.
    pub live_token_rate_high: Option<f64>,
    pub live_token_rate_low: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    pub wer_p50: Option<f64>,
    pub wer_max: Option<f64>,
    pub n: u64,
}

/// A snapshot of [`LoadStats`]: the groups the display and the summary show, and `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    pub runs: Runs,
    pub latency: Latency,
    pub throughput: Throughput,
    pub transcript: Transcript,
}

impl LoadReport {
    /// Streams that finished.
    pub fn finished(&self) -> u64 {
        self.runs.succeeded + self.runs.failed
    }
}

impl LoadStats {
    pub fn new() -> LoadStats {
        LoadStats::default()
    }

    /// Streams open changed by `delta` (the scheduler's `in_flight`); +1 is a start.
    pub fn in_flight(&mut self, delta: i64) {
        if delta > 0 {
            self.started += delta as u64;
        }
        self.open += delta;
    }

    /// Count afresh (the end of a warm-up): everything is forgotten except the streams open
    /// now, whose end is still to come.
    pub fn restart(&mut self) {
        *self = LoadStats {
            open: self.open,
            ..LoadStats::default()
        };
    }

    pub fn skipped(&mut self) {
        self.skipped += 1;
    }

    /// A stream finished at `finished_at` (seconds since the run started).
    pub fn finished(&mut self, result: &StreamResult, finished_at: f64) {
        match &result.outcome {
            Ok(()) => self.succeeded += 1,
            Err(e) => *self.failures.entry(e.kind.as_str()).or_default() += 1,
        }
        let d = &result.derived;
        let add = |s: &mut Sketch, v: Option<f64>| {
            if let Some(v) = v {
                s.add(v);
            }
        };
        add(&mut self.time_to_first_text, d.time_to_first_text);
        add(&mut self.ttft, d.ttft);
        for g in &d.itl_gaps {
            self.itl.add(*g);
        }
        add(&mut self.rtt_last, d.rtt_last);
        add(&mut self.rtt_mean, d.rtt_mean);
        add(&mut self.finalize, d.finalize);
        add(&mut self.wer, d.wer);
        add(&mut self.audio_rate, d.send_window_audio_rate);
        if let Some(u) = d.usage {
            self.output_tokens = self.output_tokens.saturating_add(u.completion_tokens);
        }
        if let Some((first, last)) = d.send_span {
            let start = finished_at - result.elapsed.as_secs_f64();
            let (a, b) = (start + first, start + last);
            self.first_send = Some(self.first_send.map_or(a, |f| f.min(a)));
            self.last_send = Some(self.last_send.map_or(b, |l| l.max(b)));
            self.sending_streams += 1;
        }
    }

    /// A reading of the process-wide text-delta counter at `now`: the live rate is the deltas
    /// since the previous reading per second per stream open in that interval (the larger of
    /// the open counts at its two ends, so text from streams that just ended is not spread over
    /// too few); none while no stream was open.
    pub fn observe_live(&mut self, now: f64, text_deltas_total: u64) {
        let open = self.open.max(0);
        if let Some((t, n)) = self.live_prev
            && now > t
        {
            let streams = open.max(self.live_prev_open);
            self.live_now = (streams > 0)
                .then(|| text_deltas_total.saturating_sub(n) as f64 / (now - t) / streams as f64);
            if let Some(r) = self.live_now {
                if self.live_history.len() == LIVE_HISTORY {
                    self.live_history.pop_front();
                }
                self.live_history.push_back(r);
            }
        }
        self.live_prev = Some((now, text_deltas_total));
        self.live_prev_open = open;
    }

    pub fn report(&self) -> LoadReport {
        let failed: u64 = self.failures.values().sum();
        let window = match (self.first_send, self.last_send) {
            (Some(f), Some(l)) if l > f => Some(l - f),
            _ => None,
        };
        let hist = || self.live_history.iter().copied();
        LoadReport {
            runs: Runs {
                started: self.started,
                succeeded: self.succeeded,
                failed,
                failures: self
                    .failures
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect(),
                skipped_ticks: self.skipped,
                open: self.open.max(0) as u64,
            },
            latency: Latency {
                time_to_first_text: Quantiles::of(&self.time_to_first_text),
                ttft: Quantiles::of(&self.ttft),
                itl: Quantiles::of(&self.itl),
                rtt_last: Quantiles::of(&self.rtt_last),
                rtt_mean: Quantiles::of(&self.rtt_mean),
                finalize: Quantiles::of(&self.finalize),
            },
            throughput: Throughput {
                output_tokens: self.output_tokens,
                send_window_s: window,
                output_tokens_per_s: window.map(|w| self.output_tokens as f64 / w),
                streams_per_min: window.map(|w| self.sending_streams as f64 / w * 60.0),
                audio_rate: self.audio_rate.mean(),
                live_token_rate: self.live_now,
                live_token_rate_high: hist().reduce(f64::max),
                live_token_rate_low: hist().reduce(f64::min),
            },
            transcript: Transcript {
                wer_p50: self.wer.quantile(0.5),
                wer_max: self.wer.max(),
                n: self.wer.count(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::derive::Derived;
    use crate::probe::ErrorType;
    use crate::probe::timeline::Usage;

    fn ok(elapsed: f64, span: (f64, f64), tokens: u64, ttft: f64) -> StreamResult {
        StreamResult {
            started: SystemTime::UNIX_EPOCH,
            elapsed: Duration::from_secs_f64(elapsed),
            outcome: Ok(()),
            derived: Derived {
                time_to_first_text: Some(ttft),
                itl_gaps: vec![0.08, 0.08],
                wer: Some(0.0),
                send_window_audio_rate: Some(1.0),
                usage: Some(Usage {
                    prompt_tokens: 10,
                    completion_tokens: tokens,
                    total_tokens: 10 + tokens,
                }),
                send_span: Some(span),
                ..Derived::default()
            },
            later_utterances: Vec::new(),
            timeline: None,
            trace_id: None,
        }
    }

    #[test]
    fn nothing_yet_is_unavailable_not_zero() {
        let r = LoadStats::new().report();
        assert_eq!(r.latency.rtt_last.p50, None);
        assert_eq!(r.throughput.output_tokens_per_s, None);
        assert_eq!(r.throughput.streams_per_min, None);
        assert_eq!(r.throughput.audio_rate, None);
        assert_eq!(r.throughput.live_token_rate, None);
        assert_eq!(r.transcript.wer_max, None);
        assert_eq!(r.finished(), 0);
    }

    #[test]
    fn send_window_spans_the_whole_run() {
        let mut s = LoadStats::new();
        s.in_flight(1);
        s.in_flight(1);
        // Stream A: started at 1.0 (finished 4.0 after 3 s), sent from 1.5 to 3.5.
        s.finished(&ok(3.0, (0.5, 2.5), 10, 0.3), 4.0);
        // Stream B: started at 2.0, sent from 2.5 to 5.5.
        s.finished(&ok(4.0, (0.5, 3.5), 20, 0.5), 6.0);
        s.in_flight(-1);
        s.in_flight(-1);
        s.finished(
            &StreamResult::failed(
                ErrorType::TimeoutDone,
                "x",
                SystemTime::UNIX_EPOCH,
                Duration::ZERO,
            ),
            7.0,
        );
        s.skipped();
        let r = s.report();
        // Window 1.5 … 5.5 = 4 s; 30 tokens; 2 sending streams.
        assert_eq!(r.throughput.send_window_s, Some(4.0));
        assert_eq!(r.throughput.output_tokens, 30);
        assert_eq!(r.throughput.output_tokens_per_s, Some(7.5));
        assert_eq!(r.throughput.streams_per_min, Some(30.0));
        assert_eq!(r.throughput.audio_rate, Some(1.0));
        assert_eq!(r.runs.started, 2);
        assert_eq!(r.runs.succeeded, 2);
        assert_eq!(r.runs.failed, 1);
        assert_eq!(r.runs.failures.get("timeout_done"), Some(&1));
        assert_eq!(r.runs.skipped_ticks, 1);
        assert_eq!(r.runs.open, 0);
        assert_eq!(r.latency.time_to_first_text.p50, Some(0.3));
        assert_eq!(r.latency.time_to_first_text.p99, Some(0.5));
        assert_eq!(r.latency.time_to_first_text.n, 2);
        assert_eq!(r.latency.itl.n, 4);
        assert_eq!(r.transcript.wer_max, Some(0.0));
        assert_eq!(r.latency.rtt_last.n, 0);
        assert_eq!(r.latency.rtt_last.p90, None);
    }

    #[test]
    fn live_rate_is_per_open_stream_with_rolling_extremes() {
        let mut s = LoadStats::new();
        s.in_flight(4);
        s.observe_live(0.0, 100);
        assert_eq!(s.report().throughput.live_token_rate, None);
        s.observe_live(0.5, 120); // 20 deltas / 0.5 s / 4 streams
        assert_eq!(s.report().throughput.live_token_rate, Some(10.0));
        s.observe_live(1.0, 128); // 8 / 0.5 / 4
        let r = s.report().throughput;
        assert_eq!(r.live_token_rate, Some(4.0));
        assert_eq!(r.live_token_rate_high, Some(10.0));
        assert_eq!(r.live_token_rate_low, Some(4.0));
        // Streams that end during the interval still count for the text they sent in it.
        s.in_flight(-2);
        s.observe_live(1.5, 136); // 8 / 0.5 / max(4, 2)
        assert_eq!(s.report().throughput.live_token_rate, Some(4.0));
        s.in_flight(-2);
        s.observe_live(2.0, 136); // open 2 → 0: a quiet interval
        assert_eq!(s.report().throughput.live_token_rate, Some(0.0));
        s.observe_live(2.5, 136);
        assert_eq!(s.report().throughput.live_token_rate, None);
        for i in 0..(LIVE_HISTORY as u64 + 5) {
            s.in_flight(1);
            s.observe_live(3.0 + i as f64, 136 + i);
            s.in_flight(-1);
        }
        assert_eq!(s.live_history.len(), LIVE_HISTORY);
        s.in_flight(3);
        s.skipped();
        s.restart();
        let r = s.report();
        assert_eq!(
            (r.runs.open, r.runs.started, r.runs.skipped_ticks),
            (3, 0, 0)
        );
        assert_eq!(r.throughput.live_token_rate_high, None);
    }
}
