//! Human and machine renderings of one probe run for `rtprobe probe`: an aligned table for a
//! terminal and a JSON document for scripts. Reads a `Timeline` and its `Derived` values; does
//! no arithmetic of its own beyond quantiles of the ITL gaps (from `stats`).

use std::fmt::Write as _;

use crate::derive::Derived;
use crate::probe::timeline::Timeline;
use crate::stats::quantile;

/// What the report says about the probe itself (name, where, which model).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunHeader<'a> {
    pub probe: &'a str,
    pub target: &'a str,
    pub model: &'a str,
    pub pacing: &'a str,
}

fn secs(v: Option<f64>) -> String {
    match v {
        None => "-".to_string(),
        Some(s) if s.abs() < 1.0 => format!("{:.1} ms", s * 1e3),
        Some(s) => format!("{s:.3} s"),
    }
}

/// `p50 …  pNN …  max …` of `v`, where NN is `p` in percent.
fn spread(v: &[f64], p: f64) -> String {
    format!(
        "p50 {}  p{} {}  max {}",
        secs(quantile(v, 0.5)),
        (p * 100.0).round(),
        secs(quantile(v, p)),
        secs(quantile(v, 1.0))
    )
}

fn num(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.2}{unit}"))
}

/// The readable table printed by `rtprobe probe`: the first utterance's values (the whole run
/// for a single utterance), then a line per utterance of a multi-utterance session. `derived`
/// is [`crate::derive::derive_session`]'s, one per utterance reached.
pub fn table(h: &RunHeader<'_>, t: &Timeline, derived: &[Derived]) -> String {
    let mut out = String::new();
    let first = derived.first().cloned().unwrap_or_default();
    for (k, v) in rows(h, t, &first) {
        let _ = writeln!(out, "{k:<28} {v}");
    }
    for (k, v) in utterance_rows(t, derived) {
        let _ = writeln!(out, "{k:<28} {v}");
    }
    out
}

/// One row per utterance of a multi-utterance session (none for a single utterance): the
/// values a user compares along a session, each from that utterance's own slice (a later
/// utterance's clock starts at its first send). Also shown on the run pages of `rtprobe serve`.
pub fn utterance_rows(t: &Timeline, derived: &[Derived]) -> Vec<(String, String)> {
    if t.utterance_count() <= 1 {
        return Vec::new();
    }
    (0..t.utterance_count())
        .map(|k| {
            let key = format!("utterance {}", k + 1);
            let (Some(u), Some(d)) = (t.utterance(k), derived.get(k)) else {
                return (key, "not reached".to_string());
            };
            let outcome = match &u.outcome {
                Ok(()) => String::new(),
                Err(e) => format!("FAILED error.type={}, ", e.kind),
            };
            let wer = d.wer.map_or_else(String::new, |w| format!(", WER {w:.3}"));
            let value = format!(
                "{outcome}first text {}, RTT last {}, Avg RTT {}, finalize {}{wer}, {:?}",
                secs(d.time_to_first_text),
                secs(d.rtt_last),
                secs(d.rtt_mean),
                secs(d.finalize),
                u.transcript()
            );
            (key, value)
        })
        .collect()
}

/// The table's (name, value) rows, also shown on the run pages of `rtprobe serve`.
pub fn rows(h: &RunHeader<'_>, t: &Timeline, d: &Derived) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(24);
    let mut row = |k: &'static str, v: String| out.push((k, v));
    row("probe", h.probe.to_string());
    row("target", h.target.to_string());
    row("model", h.model.to_string());
    row(
        "outcome",
        match &t.outcome {
            Ok(()) => "success".to_string(),
            Err(e) => format!("FAILED error.type={} ({})", e.kind, e.detail),
        },
    );
    let phases = if d.phases.is_empty() {
        "-".to_string()
    } else {
        d.phases
            .iter()
            .map(|(p, s)| format!("{p} {}", secs(Some(*s))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    row("phases", phases);
    let appends = t.sent.iter().filter(|s| s.audio_end.is_some()).count();
    row(
        "audio sent",
        format!(
            "{:.2} s in {appends} chunks ({}), send-window rate {}",
            t.audio_sent.as_secs_f64(),
            h.pacing,
            num(d.send_window_audio_rate, "x")
        ),
    );
    row("pacing lateness", spread(&d.pacing_lateness, 0.99));
    row("TTFT (from connect start)", secs(d.ttft));
    row("time to first text (audio)", secs(d.time_to_first_text));
    row(
        "ITL (gaps between text)",
        format!("{}  (n={})", spread(&d.itl_gaps, 0.9), d.itl_gaps.len()),
    );
    row("ITL (guidellm, per token)", secs(d.itl_guidellm));
    row("Time To Last Round Trip", secs(d.rtt_last));
    row("Avg RTT", secs(d.rtt_mean));
    row("finalize (final commit→done)", secs(d.finalize));
    row("end-to-end", secs(d.e2e));
    row(
        "decode token rate",
        num(d.decode_token_rate, " text deltas/s"),
    );
    row(
        "send-window output tokens",
        num(d.send_window_output_tokens, " tokens/s"),
    );
    row(
        "deltas",
        format!(
            "{} with text, {} in all{}",
            d.text_deltas,
            d.deltas,
            if d.truncated { ", TRUNCATED" } else { "" }
        ),
    );
    row(
        "usage",
        d.usage.map_or_else(
            || "-".to_string(),
            |u| {
                format!(
                    "prompt {}, completion {}, total {}",
                    u.prompt_tokens, u.completion_tokens, u.total_tokens
                )
            },
        ),
    );
    row(
        "WER",
        d.wer
            .map_or_else(|| "- (no reference)".to_string(), |w| format!("{w:.3}")),
    );
    row("transcript", format!("{:?}", t.transcript()));
    out
}

/// The `--json` document: header, outcome, derived values and the raw timeline. `derived` is
/// one set of values per utterance reached, the first first; for a `session` (a probe of
/// several utterances) the later ones are added as `/probe` has them ([`session_fields`]).
pub fn json(
    h: &RunHeader<'_>,
    t: &Timeline,
    derived: &[Derived],
    session: bool,
) -> serde_json::Value {
    let mut json = serde_json::json!({
        "probe": h,
        "success": t.succeeded(),
        "error": t.outcome.as_ref().err(),
        "transcript": t.transcript(),
        "derived": derived.first().cloned().unwrap_or_default(),
        "timeline": t,
    });
    if session {
        session_fields(&mut json, t, derived.get(1..).unwrap_or_default());
    }
    json
}

/// The per-utterance fields of a session's JSON report (`rtprobe probe --json` and `/probe`):
/// `later_utterances`, the values of utterances 2… (the first is `derived`), and, when the
/// run failed in an utterance, `failed_utterance` (1-based).
pub fn session_fields(json: &mut serde_json::Value, t: &Timeline, later: &[Derived]) {
    json["later_utterances"] = serde_json::json!(later);
    if let (Err(_), Some(k)) = (&t.outcome, t.failed_utterance) {
        json["failed_utterance"] = serde_json::json!(k + 1);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::probe::error::{ErrorType, ProbeError};
    use crate::probe::timeline::Done;

    fn header() -> RunHeader<'static> {
        RunHeader {
            probe: "p",
            target: "ws://h:1/v1/realtime",
            model: "m",
            pacing: "realtime",
        }
    }

    fn row<'a>(table: &'a str, key: &str) -> &'a str {
        table
            .lines()
            .find(|l| l.starts_with(key))
            .map(|l| l[28..].trim())
            .unwrap_or("")
    }

    #[test]
    fn table_rows_show_units_and_undefined_values() {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.done = Some(Done {
            at: Duration::from_millis(1500),
            text: " hello".into(),
            usage: None,
        });
        let d = Derived {
            ttft: Some(0.4567),
            rtt_last: Some(1.25),
            itl_gaps: vec![0.08, 0.1, 0.3],
            wer: Some(0.25),
            ..Derived::default()
        };
        let out = table(&header(), &t, &[d]);
        assert_eq!(row(&out, "outcome"), "success");
        assert_eq!(row(&out, "TTFT (from connect start)"), "456.7 ms");
        assert_eq!(row(&out, "Time To Last Round Trip"), "1.250 s");
        assert_eq!(row(&out, "Avg RTT"), "-");
        assert_eq!(
            row(&out, "ITL (gaps between text)"),
            "p50 100.0 ms  p90 260.0 ms  max 300.0 ms  (n=3)"
        );
        assert_eq!(row(&out, "WER"), "0.250");
        assert_eq!(row(&out, "transcript"), "\" hello\"");
    }

    #[test]
    fn failures_name_the_error_type_and_json_carries_it() {
        let mut t = Timeline::new(SystemTime::UNIX_EPOCH);
        t.outcome = Err(ProbeError::new(
            ErrorType::Http401,
            "upgrade answered HTTP 401",
        ));
        let d = [Derived::default()];
        let out = table(&header(), &t, &d);
        assert_eq!(
            row(&out, "outcome"),
            "FAILED error.type=http_401 (upgrade answered HTTP 401)"
        );
        let j = json(&header(), &t, &d, false);
        assert_eq!(j["success"], false);
        assert_eq!(j["error"]["kind"], "http_401");
        assert!(
            !out.contains("utterance 1"),
            "one utterance: no utterance rows"
        );
    }

    #[test]
    fn a_session_reports_every_utterance_from_its_own_slice() {
        let mut t = crate::probe::timeline::fixtures::two();
        let derived = crate::derive::derive_session(&mut t, &[Some("a b"), Some("c d")], None);
        let out = table(&header(), &t, &derived);
        // Utterance 1: sends at 0, 10, 20 (the append), 30 (final commit); text at 40 and 50,
        // done at 60: first text 40-20, RTT last 50-30, Avg RTT 45-15, finalize 60-30.
        // Utterance 2 counts from its first send (100 ms): sends at 0, 10 (append), 20; text at
        // 50, done at 70: 50-10, 50-20, 50-10, 70-20; one of its two reference words is missing.
        assert_eq!(
            row(&out, "utterance 1"),
            "first text 20.0 ms, RTT last 20.0 ms, Avg RTT 30.0 ms, finalize 30.0 ms, WER 0.000, \" a b\""
        );
        assert_eq!(
            row(&out, "utterance 2"),
            "first text 40.0 ms, RTT last 30.0 ms, Avg RTT 40.0 ms, finalize 50.0 ms, WER 0.500, \" c\""
        );
        // The main rows are the first utterance's.
        assert_eq!(row(&out, "Time To Last Round Trip"), "20.0 ms");
        let j = json(&header(), &t, &derived, true);
        assert_eq!(j["later_utterances"].as_array().map(Vec::len), Some(1));
        assert_eq!(j["later_utterances"][0]["wer"], 0.5);
        assert!(j.get("failed_utterance").is_none());
        // A run that failed in its second utterance names it, 1-based.
        t.outcome = Err(ProbeError::new(ErrorType::Wer, "over max_wer"));
        t.failed_utterance = Some(1);
        assert_eq!(json(&header(), &t, &derived, true)["failed_utterance"], 2);
        assert!(
            json(&header(), &t, &derived, false)
                .get("later_utterances")
                .is_none()
        );
    }
}
