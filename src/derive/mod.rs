//! Timeline → derived values: pure arithmetic, no I/O, no clocks, no OTel. Every formula is
//! the one in docs/metrics.md (timestamps: docs/protocol-vllm.md §8; guidellm's: §10), and is
//! unit-tested here with exact numbers. A value that is undefined for a run is `None`, never a fake 0.

pub mod wer;

use std::time::Duration;

use wer::word_error_rate;

use crate::config::ProbeSpec;
use crate::probe::error::{ErrorType, ProbeError};
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
    /// Mean receive time of non-empty deltas − mean send time of all frames (Avg RTT). Signed:
    /// negative when the text led the audio (trailing audio after the last word); reports show
    /// it as measured, the recorder counts such runs instead of observing a negative latency.
    pub rtt_mean: Option<f64>,
    /// t_done − final commit sent.
    pub finalize: Option<f64>,
    /// Phase durations: (phase name, seconds) for `dns`, `connect`, `tls`, `upgrade`, `session`.
    pub phases: Vec<(&'static str, f64)>,
    /// Audio seconds sent before the last append ÷ (last append − first append): exactly 1.0
    /// when paced in real time, whatever the last chunk's length. Chunk i leaves at i·chunk, so
    /// the window holds the N−1 gaps that the chunks before the last one filled; the last
    /// chunk (often shorter) leaves at the window's end and fills none of it.
    pub send_window_audio_rate: Option<f64>,
    /// Output tokens ÷ send window.
    pub send_window_output_tokens: Option<f64>,
    /// (non-empty deltas − 1) ÷ (last − first non-empty delta).
    pub decode_token_rate: Option<f64>,
    pub usage: Option<Usage>,
    /// Word error rate against the reference, when one is configured.
    pub wer: Option<f64>,
    /// Pacing lateness of each append against its schedule (seconds, ≥ 0: the pacer never
    /// sends early, and an early send would count as on time).
    pub pacing_lateness: Vec<f64>,
    /// Non-empty deltas received.
    pub text_deltas: usize,
    /// All deltas received, empty ones included.
    pub deltas: usize,
    pub truncated: bool,
    /// First and last audio append, seconds from t0 (two appends or more): where this stream's
    /// send window sits, so a load run can span the send window of all its streams.
    #[serde(skip)]
    pub send_span: Option<(f64, f64)>,
}

/// Derive every value from a timeline. `reference` is the probe's reference transcript.
pub fn derive(t: &Timeline, reference: Option<&str>) -> Derived {
    let secs = |d: Duration| d.as_secs_f64();
    let diff = |later: Duration, earlier: Duration| later.checked_sub(earlier).map(secs);

    let text_times: Vec<Duration> = t
        .deltas
        .iter()
        .filter(|d| d.nonempty)
        .map(|d| d.at)
        .collect();
    // guidellm's done-only rule: no visible delta but a non-empty final text counts as one token
    // received at `transcription.done`.
    let tokens: Vec<Duration> = match &t.done {
        Some(done) if text_times.is_empty() && !done.text.is_empty() => vec![done.at],
        _ => text_times.clone(),
    };
    let first_text = tokens.first().copied();
    let last_text = tokens.last().copied();

    let appends: Vec<Duration> = t
        .sent
        .iter()
        .filter(|s| s.kind == SentKind::Append)
        .map(|s| s.at)
        .collect();
    let first_append = appends.first().copied();
    // The commit that ended the utterance, or the server VAD's `speech_stopped`.
    let final_commit = t.end_of_audio();
    let usage = t.done.as_ref().and_then(|d| d.usage);

    let itl_gaps = tokens.windows(2).map(|w| secs(w[1] - w[0])).collect();
    let span = match (first_text, last_text) {
        (Some(f), Some(l)) => Some(secs(l - f)),
        _ => None,
    };
    let output_tokens = match usage {
        Some(u) if u.completion_tokens > 1 => Some(u.completion_tokens),
        _ => Some(tokens.len() as u64).filter(|n| *n > 1),
    };
    let itl_guidellm = match (span, output_tokens) {
        (Some(span), Some(n)) => Some(span / (n - 1) as f64),
        _ => None,
    };
    let rtt_mean = if tokens.is_empty() || t.sent.is_empty() {
        None
    } else {
        let recv = tokens.iter().map(|d| secs(*d)).sum::<f64>() / tokens.len() as f64;
        let sent = t.sent.iter().map(|s| secs(s.at)).sum::<f64>() / t.sent.len() as f64;
        Some(recv - sent)
    };
    let send_window = match (first_append, appends.last()) {
        (Some(f), Some(l)) if appends.len() > 1 && *l > f => Some(secs(*l - f)),
        _ => None,
    };
    let decode_token_rate = match span {
        Some(span) if tokens.len() > 1 && span > 0.0 => Some((tokens.len() - 1) as f64 / span),
        _ => None,
    };

    Derived {
        e2e: t.done.as_ref().map(|d| secs(d.at)),
        ttft: first_text.map(secs),
        time_to_first_text: first_text.zip(first_append).and_then(|(f, a)| diff(f, a)),
        itl_gaps,
        itl_guidellm,
        rtt_last: last_text.zip(final_commit).and_then(|(l, c)| diff(l, c)),
        rtt_mean,
        finalize: t
            .done
            .as_ref()
            .zip(final_commit)
            .and_then(|(d, c)| diff(d.at, c)),
        phases: phases(t),
        send_window_audio_rate: send_window.map(|w| {
            let before_last = t
                .sent
                .iter()
                .filter(|s| s.kind == SentKind::Append)
                .rev()
                .nth(1)
                .and_then(|s| s.audio_end)
                .unwrap_or_default();
            secs(before_last) / w
        }),
        send_window_output_tokens: send_window
            .zip(usage)
            .map(|(w, u)| u.completion_tokens as f64 / w),
        decode_token_rate,
        usage,
        wer: match (&t.done, reference) {
            (Some(_), Some(r)) => word_error_rate(r, t.transcript()),
            _ => None,
        },
        pacing_lateness: t
            .sent
            .iter()
            .filter(|s| s.kind == SentKind::Append)
            .filter_map(|s| s.scheduled.map(|sch| secs(s.at.saturating_sub(sch))))
            .collect(),
        text_deltas: text_times.len(),
        deltas: t.deltas.len(),
        truncated: t.truncated,
        send_span: send_window
            .and(first_append.zip(appends.last().copied()))
            .map(|(f, l)| (secs(f), secs(l))),
    }
}

/// The derived values of every utterance a session reached, first first (at least one, so a
/// run that failed before any utterance still records its phases and outcome), with `max_wer`
/// applied to each: the first utterance over it fails the run as `wer` and is named in
/// `failed_utterance` when the session has several. `references[k]` is utterance k's reference.
pub fn derive_session(
    t: &mut Timeline,
    references: &[Option<&str>],
    max_wer: Option<f64>,
) -> Vec<Derived> {
    let reference = |k: usize| references.get(k).copied().flatten();
    let mut out: Vec<Derived> = (0..t.utterance_count())
        .filter_map(|k| Some(derive(&t.utterance(k)?, reference(k))))
        .collect();
    if out.is_empty() {
        out.push(derive(t, reference(0)));
    }
    for (k, d) in out.iter().enumerate() {
        if t.outcome.is_err() {
            break;
        }
        apply_max_wer(t, d, max_wer);
        if t.outcome.is_err() && t.utterance_count() > 1 {
            t.failed_utterance = Some(k);
        }
    }
    out
}

/// [`derive_session`] with a probe's own clips' references and `max_wer`: what `serve`
/// records, `rtprobe probe` prints and a run page shows, for one run of `probe`.
pub fn derive_probe_run(probe: &ProbeSpec, t: &mut Timeline) -> Vec<Derived> {
    let clips = probe.clips();
    let references: Vec<Option<&str>> = clips.iter().map(|c| c.reference.as_deref()).collect();
    derive_session(t, &references, probe.max_wer)
}

/// Transcript quality as success: a run that completed but whose WER exceeds `max_wer` becomes
/// a failure with `error.type="wer"` (equal passes). A run that already failed, or has no WER,
/// is left as it is.
pub fn apply_max_wer(t: &mut Timeline, d: &Derived, max_wer: Option<f64>) {
    if let (Ok(()), Some(wer), Some(max)) = (&t.outcome, d.wer, max_wer)
        && wer > max
    {
        t.outcome = Err(ProbeError::new(
            ErrorType::Wer,
            format!("word error rate {wer:.3} exceeds max_wer {max}"),
        ));
    }
}

fn phases(t: &Timeline) -> Vec<(&'static str, f64)> {
    phase_spans(t)
        .into_iter()
        .map(|(name, start, end)| (name, (end - start).as_secs_f64()))
        .collect()
}

/// (phase, start, end) of every recorded connection phase. Each lasts from the end of the
/// previous recorded one (or `t0`) to its own end; a phase that did not happen (dns for an IP
/// literal, tls for ws://) is skipped, not zero.
pub fn phase_spans(t: &Timeline) -> Vec<(&'static str, Duration, Duration)> {
    let p = &t.phases;
    let mut out = Vec::with_capacity(5);
    let mut prev = Duration::ZERO;
    for (name, end) in [
        ("dns", p.dns_done),
        ("connect", p.tcp_connected),
        ("tls", p.tls_done),
        ("upgrade", p.upgraded),
        ("session", p.session_created),
    ] {
        if let Some(end) = end {
            let start = prev.min(end);
            out.push((name, start, end));
            prev = end;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::probe::timeline::fixtures::{append, ms, sent};
    use crate::probe::timeline::{Delta, Done, Phases, Sent};

    /// One utterance's sends: the update and the start commit, appends of (sent, due, audio
    /// end), the final commit.
    fn session(update: u64, start: u64, appends: &[(u64, u64, u64)], last: u64) -> Vec<Sent> {
        let mut v = vec![
            sent(SentKind::SessionUpdate, update),
            sent(SentKind::StartCommit, start),
        ];
        v.extend(appends.iter().map(|&(at, due, end)| append(at, due, end)));
        v.push(sent(SentKind::FinalCommit, last));
        v
    }

    fn delta(at: u64, nonempty: bool) -> Delta {
        Delta {
            at: ms(at),
            nonempty,
            text_end: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn assert_close(got: Option<f64>, want: f64) {
        let g = got.unwrap_or_else(|| panic!("expected {want}, got None"));
        assert!(close(g, want), "got {g}, want {want}");
    }

    /// A realtime-paced run: 3 chunks of 100 ms, two empty and three non-empty deltas.
    fn paced() -> Timeline {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.phases = Phases {
            dns_done: Some(ms(2)),
            tcp_connected: Some(ms(5)),
            tls_done: Some(ms(15)),
            upgraded: Some(ms(20)),
            session_created: Some(ms(22)),
        };
        t.sent = session(
            23,
            24,
            &[(25, 25, 100), (126, 125, 200), (228, 225, 300)],
            229,
        );
        t.deltas = vec![
            delta(300, false),
            delta(400, true),
            delta(480, false),
            delta(500, true),
            delta(700, true),
        ];
        t.delta_text = " a b c".into();
        t.done = Some(Done {
            at: ms(750),
            text: " a b c".into(),
            usage: Some(Usage {
                prompt_tokens: 39,
                completion_tokens: 11,
                total_tokens: 50,
            }),
        });
        t.audio_sent = ms(300);
        t.ended = ms(750);
        t
    }

    #[test]
    fn every_formula_on_a_paced_run() {
        let d = derive(&paced(), Some("A, b d."));
        assert_close(d.e2e, 0.750);
        assert_close(d.ttft, 0.400);
        assert_close(d.time_to_first_text, 0.400 - 0.025);
        assert_eq!(d.itl_gaps.len(), 2);
        assert!(close(d.itl_gaps[0], 0.100) && close(d.itl_gaps[1], 0.200));
        // (0.700 − 0.400) / (11 − 1)
        assert_close(d.itl_guidellm, 0.030);
        assert_close(d.rtt_last, 0.700 - 0.229);
        // mean(0.4, 0.5, 0.7) − mean(23, 24, 25, 126, 228, 229 ms)
        let sent_mean = (0.023 + 0.024 + 0.025 + 0.126 + 0.228 + 0.229) / 6.0;
        assert_close(d.rtt_mean, (0.4 + 0.5 + 0.7) / 3.0 - sent_mean);
        assert_close(d.finalize, 0.750 - 0.229);
        let phases: Vec<&str> = d.phases.iter().map(|p| p.0).collect();
        assert_eq!(phases, ["dns", "connect", "tls", "upgrade", "session"]);
        let want = [0.002, 0.003, 0.010, 0.005, 0.002];
        for (got, want) in d.phases.iter().zip(want) {
            assert!(close(got.1, want), "{got:?} vs {want}");
        }
        // 0.2 s of audio before the last chunk over a 0.203 s send window
        assert_close(d.send_window_audio_rate, 0.200 / 0.203);
        assert_close(d.send_window_output_tokens, 11.0 / 0.203);
        let (first, last) = d.send_span.expect("a send span");
        assert!(close(first, 0.025) && close(last, 0.228), "{first} {last}");
        // (3 − 1) / 0.3 s
        assert_close(d.decode_token_rate, 2.0 / 0.300);
        assert_eq!(d.usage.map(|u| u.completion_tokens), Some(11));
        // "a b c" vs "a b d": one substitution over three reference words
        assert_close(d.wer, 1.0 / 3.0);
        assert_eq!(d.pacing_lateness.len(), 3);
        for (got, want) in d.pacing_lateness.iter().zip([0.0, 0.001, 0.003]) {
            assert!(close(*got, want), "{got} vs {want}");
        }
        assert_eq!((d.text_deltas, d.deltas, d.truncated), (3, 5, false));
    }

    #[test]
    fn itl_guidellm_falls_back_to_text_delta_count_without_usage() {
        let mut t = paced();
        t.done.as_mut().unwrap().usage = None;
        let d = derive(&t, None);
        assert_close(d.itl_guidellm, 0.300 / 2.0);
        assert_eq!(d.send_window_output_tokens, None);
        assert_eq!(d.usage, None);
        assert_eq!(d.wer, None);
        // completion_tokens of 1 cannot be a divisor; the delta count takes over.
        t.done.as_mut().unwrap().usage = Some(Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
            total_tokens: 2,
        });
        assert_close(derive(&t, None).itl_guidellm, 0.150);
    }

    #[test]
    fn done_only_puts_first_and_last_text_at_done() {
        let mut t = paced();
        t.deltas = vec![delta(300, false)];
        t.delta_text.clear();
        let d = derive(&t, None);
        assert_close(d.ttft, 0.750);
        assert_close(d.time_to_first_text, 0.750 - 0.025);
        assert_close(d.rtt_last, 0.750 - 0.229);
        assert!(d.itl_gaps.is_empty());
        // span 0 over (11 − 1) tokens
        assert_close(d.itl_guidellm, 0.0);
        let sent_mean = (0.023 + 0.024 + 0.025 + 0.126 + 0.228 + 0.229) / 6.0;
        assert_close(d.rtt_mean, 0.750 - sent_mean);
        assert_eq!(d.decode_token_rate, None);
        assert_eq!((d.text_deltas, d.deltas), (0, 1));
    }

    #[test]
    fn empty_transcript_leaves_text_metrics_undefined() {
        let mut t = paced();
        t.deltas = vec![delta(300, false), delta(400, false)];
        t.delta_text.clear();
        t.done.as_mut().unwrap().text.clear();
        let d = derive(&t, Some("a b"));
        assert_eq!(d.ttft, None);
        assert_eq!(d.time_to_first_text, None);
        assert!(d.itl_gaps.is_empty());
        assert_eq!(d.itl_guidellm, None);
        assert_eq!(d.rtt_last, None);
        assert_eq!(d.rtt_mean, None);
        assert_eq!(d.decode_token_rate, None);
        // Still defined: the run finished.
        assert_close(d.e2e, 0.750);
        assert_close(d.finalize, 0.521);
        // Every reference word deleted.
        assert_close(d.wer, 1.0);
    }

    #[test]
    fn perfect_pacing_with_a_partial_last_chunk_is_exactly_real_time() {
        let mut t = paced();
        // 100 ms chunks at 0/100/200 ms after the first, the last one 37.5 ms of audio.
        t.sent = session(
            23,
            24,
            &[(25, 25, 100), (125, 125, 200), (225, 225, 237)],
            226,
        );
        t.sent[4].audio_end = Some(Duration::from_micros(237_500));
        t.audio_sent = Duration::from_micros(237_500);
        let d = derive(&t, None);
        assert_eq!(d.send_window_audio_rate, Some(1.0));
        // Twice as slow as real time reads 0.5, still independent of the last chunk.
        t.sent[3].at = ms(225);
        t.sent[4].at = ms(425);
        assert_eq!(derive(&t, None).send_window_audio_rate, Some(0.5));
    }

    #[test]
    fn text_that_leads_the_audio_gives_a_negative_avg_rtt() {
        // A clip with 0.5 s of trailing silence: every word came back before the last appends.
        let mut t = paced();
        let paced: Vec<_> = (0..6).map(|i| (i * 100, i * 100, i * 100 + 100)).collect();
        t.sent = session(0, 0, &paced, 500);
        t.deltas = vec![delta(50, true), delta(150, true)];
        t.done.as_mut().unwrap().at = ms(560);
        let d = derive(&t, None);
        // mean(0.05, 0.15) − mean(0, 0, 0, .1, .2, .3, .4, .5, .5) = 0.1 − 2.0/9
        assert_close(d.rtt_mean, 0.1 - 2.0 / 9.0);
        // The last text came before the final commit: no last round trip either.
        assert_eq!(d.rtt_last, None);
        assert_close(d.finalize, 0.060);
    }

    #[test]
    fn wer_over_max_wer_fails_the_run() {
        let mut t = paced();
        // "a b c" against "a b d": one substitution in three words.
        let d = derive(&t, Some("a b d"));
        assert_close(d.wer, 1.0 / 3.0);
        apply_max_wer(&mut t, &d, Some(0.25));
        let err = t.outcome.clone().unwrap_err();
        assert_eq!(err.kind, ErrorType::Wer);
        assert_eq!(err.detail, "word error rate 0.333 exceeds max_wer 0.25");
        // At or under the bound, or without one, the run stays a success.
        for max in [Some(0.5), Some(1.0 / 3.0), None] {
            let mut t = paced();
            apply_max_wer(&mut t, &d, max);
            assert_eq!(t.outcome, Ok(()), "{max:?}");
        }
        // A run that failed for another reason keeps its own error.
        let mut t = paced();
        t.outcome = Err(ProbeError::new(ErrorType::TimeoutDone, "late"));
        apply_max_wer(&mut t, &d, Some(0.25));
        assert_eq!(t.outcome.unwrap_err().kind, ErrorType::TimeoutDone);
    }

    #[test]
    fn one_chunk_has_no_send_window() {
        let mut t = paced();
        t.sent
            .retain(|s| s.kind != SentKind::Append || s.at == ms(25));
        t.audio_sent = ms(100);
        let d = derive(&t, None);
        assert_eq!(d.send_window_audio_rate, None);
        assert_eq!(d.send_window_output_tokens, None);
        assert_eq!(d.send_span, None);
        assert_eq!(d.pacing_lateness, vec![0.0]);
    }

    #[test]
    fn single_text_delta_has_no_gap_or_rate() {
        let mut t = paced();
        t.deltas = vec![delta(400, true)];
        let d = derive(&t, None);
        assert!(d.itl_gaps.is_empty());
        assert_eq!(d.decode_token_rate, None);
        assert_close(d.itl_guidellm, 0.0);
        t.done.as_mut().unwrap().usage = None;
        assert_eq!(derive(&t, None).itl_guidellm, None);
    }

    #[test]
    fn truncated_run_has_no_final_commit_values() {
        let mut t = paced();
        t.sent.retain(|s| s.kind != SentKind::FinalCommit);
        t.truncated = true;
        t.outcome = Err(ProbeError::new(
            ErrorType::Truncated,
            "done before final commit",
        ));
        let d = derive(&t, None);
        assert!(d.truncated);
        assert_eq!(d.rtt_last, None);
        assert_eq!(d.finalize, None);
        assert_close(d.e2e, 0.750);
        assert_close(d.ttft, 0.400);
    }

    #[test]
    fn failed_connect_keeps_the_phases_it_reached() {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.phases.tcp_connected = Some(ms(4));
        t.ended = ms(30);
        t.outcome = Err(ProbeError::new(ErrorType::Tls, "unknown issuer"));
        let d = derive(&t, Some("a"));
        assert_eq!(d.phases, vec![("connect", 0.004)]);
        assert_eq!(d.e2e, None);
        assert_eq!(d.ttft, None);
        assert_eq!(d.rtt_mean, None);
        assert_eq!(d.wer, None);
        assert!(d.pacing_lateness.is_empty());
    }

    #[test]
    fn ws_without_dns_or_tls_skips_those_phases() {
        let mut t = paced();
        t.phases.dns_done = None;
        t.phases.tls_done = None;
        let d = derive(&t, None);
        assert_eq!(d.phases.len(), 3);
        assert_eq!(d.phases[0].0, "connect");
        assert!(close(d.phases[0].1, 0.005));
        assert_eq!(d.phases[1].0, "upgrade");
        assert!(close(d.phases[1].1, 0.015));
    }
}
