//! The series budget: at the default config one probe exposes at most 150 series on `/metrics`
//! (text format), counted after a run that defines every value, over a hostname target (so the
//! `dns` phase is there too), with a failure, a skipped tick and a stream in flight. And the
//! `metrics.disabled` switch: what it removes, what it brings back, what it refuses.

use crate::support;

use std::path::Path;

use rtprobe::config::{self, Buckets, MetricsSettings};
use rtprobe::metrics::{ProbeLabels, Telemetry};
use rtprobe::probe::error::ErrorType;
use support::metrics::{derived, spec};

const BUDGET: usize = 150;

fn text(t: &Telemetry) -> String {
    String::from_utf8(t.render(None).1).expect("utf-8")
}

/// Everything one probe can record in a busy interval.
fn record_busy_probe(t: &Telemetry, name: &str) {
    let r = t.recorder();
    let l = ProbeLabels::new(&spec(name), "whisper-tiny");
    let mut d = derived();
    d.phases = vec![
        ("dns", 0.001),
        ("connect", 0.002),
        ("upgrade", 0.003),
        ("session", 0.02),
    ];
    r.record_run(&l, &d, Ok(()));
    r.record_run(&l, &d, Err(ErrorType::TimeoutFirstText));
    r.record_skipped(&l);
    r.in_flight(&l, 1);
    r.scheduler_delay(&l, 0.002);
}

fn series_of(text: &str, probe: &str) -> Vec<String> {
    let needle = format!("rtprobe_probe=\"{probe}\"");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn one_probe_stays_within_the_series_budget_at_the_default_config() {
    let t = Telemetry::new(&Buckets::default(), None).unwrap();
    record_busy_probe(&t, "a");
    record_busy_probe(&t, "b");
    let text = text(&t);
    let a = series_of(&text, "a");
    assert!(
        a.len() <= BUDGET,
        "{} series for one probe (budget {BUDGET}):\n{}",
        a.len(),
        a.join("\n")
    );
    // Exactly the count the defaults imply: 5 latency histograms × 13, per-gap ITL 9, 4 phases
    // × 8, scheduler delay and pacing lateness 8 each, 6 mean-only histograms × 3 (audio rate,
    // output tokens/s, decode rate, WER, usage input/output), runs (success, failure), success,
    // in flight, skipped.
    assert_eq!(
        a.len(),
        5 * 13 + 9 + 4 * 8 + 2 * 8 + 6 * 3 + 5,
        "{}",
        a.join("\n")
    );
    assert_eq!(
        series_of(&text, "b").len(),
        a.len(),
        "per-probe count is per probe"
    );
}

#[tokio::test]
async fn disabled_histograms_are_not_exported_and_the_defaults_can_be_reenabled() {
    let family = |t: &str, name: &str| t.contains(&format!("# TYPE {name} histogram"));
    let finalize = "rtprobe_finalize_duration_seconds";
    let guidellm = "rtprobe_guidellm_inter_token_latency_seconds";
    let wer = "rtprobe_transcript_word_error_rate_ratio";

    let t = Telemetry::new(&Buckets::default(), None).unwrap();
    record_busy_probe(&t, "d");
    let default = text(&t);
    assert!(!family(&default, finalize) && !family(&default, guidellm));
    assert!(family(&default, wer));

    let all = MetricsSettings {
        disabled: vec![],
        ..Default::default()
    };
    let t = Telemetry::with_settings(&Buckets::default(), &all, None).unwrap();
    record_busy_probe(&t, "d");
    let everything = text(&t);
    assert!(family(&everything, finalize) && family(&everything, guidellm));

    let no_wer = MetricsSettings {
        disabled: vec![wer.into()],
        ..Default::default()
    };
    let t = Telemetry::with_settings(&Buckets::default(), &no_wer, None).unwrap();
    record_busy_probe(&t, "d");
    let fewer = text(&t);
    assert!(!family(&fewer, wer));
    assert!(
        family(&fewer, finalize),
        "listing one replaces the defaults"
    );
}

#[test]
fn the_config_names_what_can_be_switched_off() {
    let audio = crate::support::clip();
    let yaml = |metrics: &str| {
        format!(
            "{metrics}probes:\n  - name: p\n    target: http://127.0.0.1:8000\n    model: m\n    audio: {}\n",
            audio.display()
        )
    };
    let cfg = config::parse(
        &yaml("metrics:\n  disabled: [rtprobe_pacing_lateness_seconds]\n"),
        Path::new("x.yaml"),
    )
    .unwrap();
    assert_eq!(cfg.metrics.disabled, ["rtprobe_pacing_lateness_seconds"]);
    let cfg = config::parse(&yaml(""), Path::new("x.yaml")).unwrap();
    assert_eq!(cfg.metrics, MetricsSettings::default());
    // The SLO histograms feed the shipped rules: not switchable.
    let err = config::parse(
        &yaml("metrics:\n  disabled: [rtprobe_round_trip_last_seconds]\n"),
        Path::new("x.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("metrics.disabled"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("rtprobe_round_trip_last_seconds"), "{err}");
}
