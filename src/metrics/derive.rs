//! Timeline → derived values: pure arithmetic, no I/O, no clocks, no OTel. Every formula is
//! the one in DESIGN.md's metric catalogue and realtime-protocol.md §8/§10, and is unit-tested
//! here with exact numbers. A value that is undefined for a run is `None`, never a fake 0.

use std::time::Duration;

use crate::metrics::wer;
use crate::probe::timeline::{SentKind, Timeline, Usage};

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

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// `b − a` in seconds.
fn between(a: Duration, b: Duration) -> f64 {
    b.as_secs_f64() - a.as_secs_f64()
}

/// Derive every value from a timeline. `reference` is the probe's reference transcript.
pub fn derive(t: &Timeline, reference: Option<&str>) -> Derived {
    let sends = |kind: SentKind| t.sent.iter().filter(move |s| s.kind == kind);
    let first_append = sends(SentKind::Append).next().map(|s| s.at);
    let last_append = sends(SentKind::Append).next_back().map(|s| s.at);
    let final_commit = sends(SentKind::FinalCommit).next().map(|s| s.at);
    let done_at = t.done.as_ref().map(|d| d.at);
    let usage = t.done.as_ref().and_then(|d| d.usage);

    // Receive times of text. Done-only rule (guidellm): no text delta but a non-empty
    // done.text counts as one piece of text at t_done.
    let mut text_times: Vec<Duration> = t
        .deltas
        .iter()
        .filter(|d| d.nonempty)
        .map(|d| d.at)
        .collect();
    if let (true, Some(d), false) = (text_times.is_empty(), &t.done, t.transcript().is_empty()) {
        text_times.push(d.at);
    }
    let first_text = text_times.first().copied();
    let last_text = text_times.last().copied();

    let itl_gaps: Vec<f64> = text_times.windows(2).map(|w| between(w[0], w[1])).collect();
    let text_span = match (first_text, last_text) {
        (Some(f), Some(l)) => Some(between(f, l)),
        _ => None,
    };
    // guidellm divides by the server's token count when it has one, else by the text count.
    let output_tokens = usage.map_or(text_times.len() as u64, |u| u.completion_tokens);
    let itl_guidellm = match text_span {
        Some(span) if output_tokens > 1 => Some(span / (output_tokens - 1) as f64),
        _ => None,
    };
    let decode_token_rate = match text_span {
        Some(span) if text_times.len() > 1 && span > 0.0 => {
            Some((text_times.len() - 1) as f64 / span)
        }
        _ => None,
    };
    let rtt_mean = if text_times.is_empty() || t.sent.is_empty() {
        None
    } else {
        let recv = text_times.iter().map(|d| secs(*d)).sum::<f64>() / text_times.len() as f64;
        let sent = t.sent.iter().map(|s| secs(s.at)).sum::<f64>() / t.sent.len() as f64;
        Some(recv - sent)
    };

    let send_window = match (first_append, last_append) {
        (Some(f), Some(l)) if l > f => Some(between(f, l)),
        _ => None,
    };

    let mut phases = Vec::with_capacity(5);
    let mut prev = Duration::ZERO;
    for (name, end) in [
        ("dns", t.phases.dns_done),
        ("connect", t.phases.tcp_connected),
        ("tls", t.phases.tls_done),
        ("upgrade", t.phases.upgraded),
        ("session", t.phases.session_created),
    ] {
        if let Some(end) = end {
            phases.push((name, between(prev, end)));
            prev = end;
        }
    }

    Derived {
        e2e: done_at.map(secs),
        ttft: first_text.map(secs),
        time_to_first_text: first_text.zip(first_append).map(|(f, a)| between(a, f)),
        itl_gaps,
        itl_guidellm,
        rtt_last: last_text.zip(final_commit).map(|(l, c)| between(c, l)),
        rtt_mean,
        finalize: done_at.zip(final_commit).map(|(d, c)| between(c, d)),
        phases,
        send_window_audio_rate: send_window.map(|w| t.audio_sent.as_secs_f64() / w),
        send_window_output_tokens: send_window
            .zip(usage)
            .map(|(w, u)| u.completion_tokens as f64 / w),
        decode_token_rate,
        usage,
        wer: reference.and_then(|r| wer::word_error_rate(r, t.transcript())),
        pacing_lateness: sends(SentKind::Append)
            .filter_map(|s| s.scheduled.map(|due| between(due, s.at)))
            .collect(),
        text_deltas: t.deltas.iter().filter(|d| d.nonempty).count(),
        deltas: t.deltas.len(),
        truncated: t.truncated,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::probe::error::{ErrorType, ProbeError};
    use crate::probe::timeline::{Delta, Done, Sent};

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    fn close(a: Option<f64>, b: f64) {
        let a = a.expect("value should be defined");
        assert!((a - b).abs() < 1e-9, "{a} != {b}");
    }

    fn sent(kind: SentKind, at: u64, scheduled: Option<u64>, audio_end: Option<u64>) -> Sent {
        Sent {
            kind,
            at: ms(at),
            scheduled: scheduled.map(ms),
            audio_end: audio_end.map(ms),
        }
    }

    /// update 5, start 6, appends 10/111/210 (due 10/110/210), final 215; text at 400/560/700,
    /// empty deltas at 300/480, done at 760 with 5 completion tokens.
    fn timeline() -> Timeline {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.phases.tcp_connected = Some(ms(1));
        t.phases.upgraded = Some(ms(3));
        t.phases.session_created = Some(ms(4));
        t.sent = vec![
            sent(SentKind::SessionUpdate, 5, None, None),
            sent(SentKind::StartCommit, 6, None, None),
            sent(SentKind::Append, 10, Some(10), Some(100)),
            sent(SentKind::Append, 111, Some(110), Some(200)),
            sent(SentKind::Append, 210, Some(210), Some(300)),
            sent(SentKind::FinalCommit, 215, None, None),
        ];
        t.audio_sent = ms(300);
        t.deltas = [
            (300, false),
            (400, true),
            (480, false),
            (560, true),
            (700, true),
        ]
        .iter()
        .map(|&(at, nonempty)| Delta {
            at: ms(at),
            nonempty,
        })
        .collect();
        t.delta_text = " a b c".into();
        t.done = Some(Done {
            at: ms(760),
            text: " a b c".into(),
            usage: Some(Usage {
                prompt_tokens: 39,
                completion_tokens: 5,
                total_tokens: 44,
            }),
        });
        t.ended = ms(760);
        t
    }

    #[test]
    fn every_formula_on_a_full_run() {
        let d = derive(&timeline(), Some("A b C"));
        close(d.e2e, 0.760);
        close(d.ttft, 0.400);
        close(d.time_to_first_text, 0.390);
        assert_eq!(d.itl_gaps.len(), 2);
        close(Some(d.itl_gaps[0]), 0.160);
        close(Some(d.itl_gaps[1]), 0.140);
        close(d.itl_guidellm, 0.300 / 4.0);
        close(d.rtt_last, 0.700 - 0.215);
        let recv = (0.400 + 0.560 + 0.700) / 3.0;
        let sends = (0.005 + 0.006 + 0.010 + 0.111 + 0.210 + 0.215) / 6.0;
        close(d.rtt_mean, recv - sends);
        close(d.finalize, 0.760 - 0.215);
        let names: Vec<_> = d.phases.iter().map(|p| p.0).collect();
        assert_eq!(names, ["connect", "upgrade", "session"]);
        close(Some(d.phases[0].1), 0.001);
        close(Some(d.phases[1].1), 0.002);
        close(Some(d.phases[2].1), 0.001);
        close(d.send_window_audio_rate, 0.300 / 0.200);
        close(d.send_window_output_tokens, 5.0 / 0.200);
        close(d.decode_token_rate, 2.0 / 0.300);
        assert_eq!(d.pacing_lateness.len(), 3);
        close(Some(d.pacing_lateness[1]), 0.001);
        close(Some(d.pacing_lateness[0]), 0.0);
        close(d.wer, 0.0);
        assert_eq!((d.text_deltas, d.deltas), (3, 5));
        assert!(!d.truncated);
    }

    #[test]
    fn guidellm_itl_falls_back_to_text_count_without_usage() {
        let mut t = timeline();
        t.done.as_mut().unwrap().usage = None;
        let d = derive(&t, None);
        close(d.itl_guidellm, 0.300 / 2.0);
        assert_eq!(d.send_window_output_tokens, None);
        assert_eq!(d.wer, None);
    }

    #[test]
    fn done_only_counts_text_at_done() {
        let mut t = timeline();
        t.deltas.clear();
        t.delta_text.clear();
        let d = derive(&t, None);
        close(d.ttft, 0.760);
        close(d.rtt_last, 0.760 - 0.215);
        assert!(d.itl_gaps.is_empty());
        assert_eq!(d.decode_token_rate, None);
        close(d.itl_guidellm, 0.0);
    }

    #[test]
    fn empty_transcript_records_no_text_latency() {
        let mut t = timeline();
        t.deltas.retain(|d| !d.nonempty);
        t.delta_text.clear();
        t.done.as_mut().unwrap().text.clear();
        let d = derive(&t, Some("something"));
        assert_eq!(
            (d.ttft, d.time_to_first_text, d.rtt_last, d.rtt_mean),
            (None, None, None, None)
        );
        assert!(d.itl_gaps.is_empty());
        assert_eq!(d.itl_guidellm, None);
        close(d.e2e, 0.760);
        close(d.finalize, 0.545);
        close(d.wer, 1.0);
    }

    #[test]
    fn failed_run_keeps_only_what_happened() {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.phases.dns_done = Some(ms(2));
        t.phases.tcp_connected = Some(ms(5));
        t.outcome = Err(ProbeError::new(ErrorType::Http401, "denied"));
        let d = derive(&t, Some("x"));
        assert_eq!(d.phases, vec![("dns", 0.002), ("connect", 0.003)]);
        assert_eq!(
            (d.e2e, d.ttft, d.finalize, d.send_window_audio_rate),
            (None, None, None, None)
        );
    }

    #[test]
    fn one_chunk_has_no_send_window() {
        let mut t = timeline();
        t.sent
            .retain(|s| s.kind != SentKind::Append || s.at == ms(10));
        let d = derive(&t, None);
        assert_eq!(d.send_window_audio_rate, None);
        assert_eq!(d.send_window_output_tokens, None);
    }
}
