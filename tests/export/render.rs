//! Renders `/metrics` after recording known values and checks names, labels, buckets, counts and
//! sums exactly, plus what must not appear (scope/target_info noise, unrecorded `None`s).

use crate::support;

use std::collections::BTreeMap;

use rtprobe::config::model::Buckets;
use rtprobe::derive::Derived;
use rtprobe::metrics::{ProbeLabels, Telemetry};
use rtprobe::probe::error::ErrorType;
use support::metrics::{buckets, derived, spec};

fn render(t: &Telemetry) -> String {
    let (ct, body) = t.render(Some("application/openmetrics-text; version=1.0.0"));
    assert_eq!(ct, "text/plain; version=0.0.4; charset=utf-8");
    String::from_utf8(body).expect("utf-8")
}

/// One sample line: metric name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A minimal text-format 0.0.4 parser: enough to check every sample line is well formed.
/// Returns the `# TYPE` declarations and the samples.
fn parse(text: &str) -> (BTreeMap<String, String>, Vec<Sample>) {
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE line has a type");
            assert!(
                types.insert(name.to_owned(), ty.to_owned()).is_none(),
                "family {name} declared twice"
            );
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels close with }");
                let mut labels = BTreeMap::new();
                // Label values here never contain `",` (they come from the fixtures).
                for pair in body.split("\",") {
                    let (k, v) = pair.split_once("=\"").expect("label is k=\"v\"");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name {name}"
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    (types, samples)
}

/// The catalogue's Prometheus names (docs/metrics.md) with their types, plus rtprobe's extras.
/// `rtprobe_finalize_duration_seconds` and `rtprobe_guidellm_inter_token_latency_seconds` are
/// off by default (`metrics.disabled`).
const EXPECTED: [(&str, &str); 22] = [
    ("gen_ai_client_operation_duration_seconds", "histogram"),
    (
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "histogram",
    ),
    ("rtprobe_time_to_first_text_seconds", "histogram"),
    (
        "gen_ai_client_operation_time_per_output_chunk_seconds",
        "histogram",
    ),
    ("rtprobe_round_trip_last_seconds", "histogram"),
    ("rtprobe_round_trip_mean_seconds", "histogram"),
    ("rtprobe_phase_duration_seconds", "histogram"),
    ("rtprobe_send_window_audio_rate_ratio", "histogram"),
    ("rtprobe_send_window_output_tokens_per_second", "histogram"),
    ("rtprobe_decode_token_rate_per_second", "histogram"),
    ("gen_ai_client_token_usage", "histogram"),
    ("rtprobe_transcript_word_error_rate_ratio", "histogram"),
    ("rtprobe_probe_runs_total", "counter"),
    ("rtprobe_probe_success", "gauge"),
    ("rtprobe_probe_in_flight", "gauge"),
    ("rtprobe_scheduler_delay_seconds", "histogram"),
    ("rtprobe_config_reload_success", "gauge"),
    ("rtprobe_config_reload_timestamp_seconds", "gauge"),
    // Extras, documented in src/metrics/instruments.rs.
    ("rtprobe_scheduler_skipped_total", "counter"),
    ("rtprobe_pacing_lateness_seconds", "histogram"),
    ("rtprobe_otlp_export_failures_total", "counter"),
    ("rtprobe_round_trip_mean_negative_total", "counter"),
];

fn record_everything(t: &Telemetry) {
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("p1"), "whisper-tiny");
    r.record_run(&l, &derived(), Ok(()));
    r.record_run(&l, &derived(), Err(ErrorType::TimeoutFirstText));
    let text_led = Derived {
        rtt_mean: Some(-0.25),
        usage: None,
        ..derived()
    };
    r.record_run(&l, &text_led, Ok(()));
    r.record_skipped(&l);
    r.in_flight(&l, 2);
    r.in_flight(&l, -1);
    r.scheduler_delay(&l, 0.01);
    r.config_reload(true, 1_700_000_000.0);
}

#[tokio::test]
async fn rendered_names_match_the_catalogue() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    record_everything(&t);
    let text = render(&t);
    let (types, samples) = parse(&text);
    let expected: BTreeMap<String, String> = EXPECTED
        .iter()
        .map(|(n, ty)| (n.to_string(), ty.to_string()))
        .collect();
    assert_eq!(types, expected, "rendered families differ:\n{text}");

    // Every probe series carries exactly the bounded attribute set (sanitised to label names).
    let base = [
        "gen_ai_operation_name",
        "gen_ai_provider_name",
        "gen_ai_request_model",
        "rtprobe_probe",
        "server_address",
        "server_port",
        "team",
    ];
    for s in &samples {
        if s.name.starts_with("rtprobe_config_reload") || s.name.starts_with("rtprobe_otlp") {
            assert!(s.labels.is_empty(), "{s:?}");
            continue;
        }
        for k in base {
            assert!(s.labels.contains_key(k), "{k} missing on {s:?}");
        }
        assert_eq!(s.labels["gen_ai_operation_name"], "speech_to_text");
        assert_eq!(s.labels["gen_ai_provider_name"], "vllm");
        assert_eq!(s.labels["server_port"], "8000");
        assert_eq!(s.labels["rtprobe_probe"], "p1");
    }
    let runs: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "rtprobe_probe_runs_total")
        .collect();
    assert_eq!(runs.len(), 2);
    let failure = runs
        .iter()
        .find(|s| s.labels["outcome"] == "failure")
        .unwrap();
    assert_eq!(failure.labels["error_type"], "timeout_first_text");
    assert_eq!(failure.value, 1.0);
    let success = runs
        .iter()
        .find(|s| s.labels["outcome"] == "success")
        .unwrap();
    assert!(!success.labels.contains_key("error_type"));
    let in_flight = samples
        .iter()
        .find(|s| s.name == "rtprobe_probe_in_flight")
        .unwrap();
    assert_eq!(in_flight.value, 1.0);
    let usage: Vec<_> = samples
        .iter()
        .filter(|s| s.name == "gen_ai_client_token_usage_sum")
        .map(|s| (s.labels["gen_ai_token_type"].clone(), s.value))
        .collect();
    assert_eq!(usage, vec![("input".into(), 50.0), ("output".into(), 7.0)]);
}

#[tokio::test]
async fn histograms_render_exact_buckets_counts_and_sums() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let r = t.recorder();
    let mut s = spec("exact");
    s.labels.clear();
    let l = ProbeLabels::new(&s, "m");
    let mut d = Derived {
        ttft: Some(0.75),
        // Dyadic fractions, so the rendered sum is exact.
        itl_gaps: vec![0.03125, 0.0625, 0.25, 0.75],
        ..Derived::default()
    };
    r.record_run(&l, &d, Ok(()));
    d.ttft = Some(0.1); // exactly on a boundary: counts in le="0.1"
    d.itl_gaps = vec![0.5];
    r.record_run(&l, &d, Ok(()));
    let text = render(&t);
    let labels = r#"gen_ai_operation_name="speech_to_text",gen_ai_provider_name="vllm",gen_ai_request_model="m",rtprobe_probe="exact",server_address="vllm.test",server_port="8000""#;
    let expected_ttft = format!(
        "# HELP gen_ai_client_operation_time_to_first_chunk_seconds First non-empty delta minus connect start (guidellm-compatible TTFT)
# TYPE gen_ai_client_operation_time_to_first_chunk_seconds histogram
gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{labels},le=\"0.1\"}} 1
gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{labels},le=\"0.5\"}} 1
gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{labels},le=\"1\"}} 2
gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{labels},le=\"2.5\"}} 2
gen_ai_client_operation_time_to_first_chunk_seconds_bucket{{{labels},le=\"+Inf\"}} 2
gen_ai_client_operation_time_to_first_chunk_seconds_sum{{{labels}}} 0.85
gen_ai_client_operation_time_to_first_chunk_seconds_count{{{labels}}} 2
"
    );
    assert!(text.contains(&expected_ttft), "ttft block differs:\n{text}");
    let expected_itl = format!(
        "# TYPE gen_ai_client_operation_time_per_output_chunk_seconds histogram
gen_ai_client_operation_time_per_output_chunk_seconds_bucket{{{labels},le=\"0.05\"}} 1
gen_ai_client_operation_time_per_output_chunk_seconds_bucket{{{labels},le=\"0.1\"}} 2
gen_ai_client_operation_time_per_output_chunk_seconds_bucket{{{labels},le=\"0.5\"}} 4
gen_ai_client_operation_time_per_output_chunk_seconds_bucket{{{labels},le=\"+Inf\"}} 5
gen_ai_client_operation_time_per_output_chunk_seconds_sum{{{labels}}} 1.59375
gen_ai_client_operation_time_per_output_chunk_seconds_count{{{labels}}} 5
"
    );
    assert!(text.contains(&expected_itl), "itl block differs:\n{text}");
}

#[tokio::test]
async fn no_scope_or_target_info_noise() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    record_everything(&t);
    let text = render(&t);
    for noise in [
        "otel_scope",
        "target_info",
        "service_name",
        "otel_metric_overflow",
    ] {
        assert!(!text.contains(noise), "{noise} in output:\n{text}");
    }
}

#[tokio::test]
async fn le_strings_are_shortest_float_forms() {
    // Default buckets: what alert rules written against /metrics must match.
    let t = Telemetry::new(&Buckets::default(), None).unwrap();
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("le"), "m");
    r.record_run(
        &l,
        &Derived {
            rtt_last: Some(0.3),
            ..Derived::default()
        },
        Ok(()),
    );
    let (_, samples) = parse(&render(&t));
    let les: Vec<String> = samples
        .iter()
        .filter(|s| s.name == "rtprobe_round_trip_last_seconds_bucket")
        .map(|s| s.labels["le"].clone())
        .collect();
    let expected: Vec<String> = [
        "0.05", "0.1", "0.25", "0.5", "0.75", "1", "1.5", "2.5", "5", "10", "+Inf",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(les, expected);
    // Cumulative counts: 0.3 lands in le="0.5" and every bucket above.
    let counts: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == "rtprobe_round_trip_last_seconds_bucket")
        .map(|s| s.value)
        .collect();
    assert_eq!(counts.iter().filter(|c| **c == 1.0).count(), 8);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]));
}

#[tokio::test]
async fn failed_runs_record_only_what_is_defined() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("f"), "m");
    // A failure that still carries values: none but the completed phases may be recorded.
    let mut d = derived();
    d.phases = vec![("connect", 0.002)];
    r.record_run(
        &l,
        &d,
        Err(ErrorType::ServerError(
            rtprobe::probe::ServerCode::BufferFull,
        )),
    );
    let (types, samples) = parse(&render(&t));
    let families: Vec<&str> = types.keys().map(String::as_str).collect();
    assert_eq!(
        families,
        vec![
            "rtprobe_otlp_export_failures_total",
            "rtprobe_phase_duration_seconds",
            "rtprobe_probe_runs_total",
            "rtprobe_probe_success",
        ]
    );
    let runs = samples
        .iter()
        .find(|s| s.name == "rtprobe_probe_runs_total")
        .unwrap();
    assert_eq!(runs.labels["error_type"], "server_error.buffer_full");
    assert_eq!(runs.labels["outcome"], "failure");
    let success = samples
        .iter()
        .find(|s| s.name == "rtprobe_probe_success")
        .unwrap();
    assert_eq!(success.value, 0.0);
    assert!(!success.labels.contains_key("outcome"));
}

#[tokio::test]
async fn none_is_never_recorded_as_zero() {
    // Every histogram on, finalize included.
    let all = rtprobe::config::MetricsSettings {
        disabled: vec![],
        ..Default::default()
    };
    let t = Telemetry::with_settings(&buckets(), &all, None).unwrap();
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("n"), "m");
    // An empty transcript: end-to-end and finalize are defined, text timings are not.
    let d = Derived {
        e2e: Some(1.2),
        finalize: Some(0.2),
        ttft: None,
        rtt_last: None,
        wer: None,
        ..Derived::default()
    };
    r.record_run(&l, &d, Ok(()));
    let (types, _) = parse(&render(&t));
    assert!(types.contains_key("gen_ai_client_operation_duration_seconds"));
    assert!(types.contains_key("rtprobe_finalize_duration_seconds"));
    for absent in [
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "rtprobe_round_trip_last_seconds",
        "gen_ai_client_operation_time_per_output_chunk_seconds",
        "gen_ai_client_token_usage",
        "rtprobe_transcript_word_error_rate_ratio",
    ] {
        assert!(!types.contains_key(absent), "{absent} recorded from None");
    }
}

#[tokio::test]
async fn static_labels_cannot_shadow_rtprobe_labels() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let mut s = spec("shadow");
    s.labels.insert("outcome".into(), "x".into());
    s.labels.insert("server_address".into(), "elsewhere".into());
    s.labels.insert("region".into(), "eu".into());
    let l = ProbeLabels::new(&s, "m");
    t.recorder().record_run(&l, &Derived::default(), Ok(()));
    let (_, samples) = parse(&render(&t));
    let runs = samples
        .iter()
        .find(|s| s.name == "rtprobe_probe_runs_total")
        .unwrap();
    assert_eq!(runs.labels["outcome"], "success");
    assert_eq!(runs.labels["server_address"], "vllm.test");
    assert_eq!(runs.labels["region"], "eu");
}

#[tokio::test]
async fn invalid_buckets_are_a_typed_error() {
    let mut b = buckets();
    b.ratio = vec![0.5, 0.5];
    let err = Telemetry::new(&b, None).unwrap_err().to_string();
    assert!(err.contains("ratio"), "{err}");
}

#[tokio::test]
async fn negative_avg_rtt_is_counted_not_observed() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let r = t.recorder();
    let l = ProbeLabels::new(&spec("lead"), "m");
    let mut d = Derived {
        rtt_mean: Some(0.5),
        ..Derived::default()
    };
    r.record_run(&l, &d, Ok(()));
    d.rtt_mean = Some(-0.656);
    r.record_run(&l, &d, Ok(()));
    r.record_run(&l, &d, Ok(()));
    let (_, samples) = parse(&render(&t));
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("rtprobe_round_trip_mean_seconds_count"), 1.0);
    assert_eq!(value("rtprobe_round_trip_mean_seconds_sum"), 0.5);
    assert_eq!(value("rtprobe_round_trip_mean_negative_total"), 2.0);
    assert_eq!(value("rtprobe_probe_runs_total"), 3.0);
}

/// `derive` never produces a NaN or negative value for a histogram; if a bug ever did, a debug
/// build stops at the one place that records (release builds drop the value).
#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "impossible histogram observation")]
fn an_impossible_observation_stops_a_debug_build() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let d = Derived {
        wer: Some(f64::NAN),
        ..Derived::default()
    };
    t.recorder()
        .record_run(&ProbeLabels::new(&spec("nan"), "m"), &d, Ok(()));
}

#[tokio::test]
async fn a_wer_failure_still_records_its_wer() {
    let t = Telemetry::new(&buckets(), None).unwrap();
    let l = ProbeLabels::new(&spec("w"), "m");
    let d = Derived {
        ttft: Some(0.25),
        wer: Some(0.75),
        ..Derived::default()
    };
    t.recorder().record_run(&l, &d, Err(ErrorType::Wer));
    let (_, samples) = parse(&render(&t));
    let find = |name: &str| samples.iter().find(|s| s.name == name);
    let runs = find("rtprobe_probe_runs_total").expect("runs");
    assert_eq!(runs.labels["error_type"], "wer");
    assert_eq!(
        find("rtprobe_transcript_word_error_rate_ratio_sum").map(|s| s.value),
        Some(0.75)
    );
    // Everything else follows the failed-run rule.
    assert!(find("gen_ai_client_operation_time_to_first_chunk_seconds_count").is_none());
}
