//! The Grafana dashboards in dashboards/: valid JSON, stable unique uids, unique panel ids,
//! a current schemaVersion, the datasource/probe/model variables, every panel and target on
//! `${datasource}`, and every metric an expression names exists in rtprobe's metric catalogue
//! (or is a series recorded by the shipped rules). Expressions are also parsed by promtool.

use crate::support;

use std::collections::{BTreeSet, HashSet};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::promql::metric_names;
use support::*;

/// The Prometheus names of the metric catalogue (the contract between code, dashboards and
/// rules), plus the histogram/counter series the exposition derives from them.
const CATALOGUE: &[&str] = &[
    "gen_ai_client_operation_duration_seconds",
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "rtprobe_time_to_first_text_seconds",
    "gen_ai_client_operation_time_per_output_chunk_seconds",
    "rtprobe_round_trip_last_seconds",
    "rtprobe_round_trip_mean_seconds",
    "rtprobe_finalize_duration_seconds",
    "rtprobe_phase_duration_seconds",
    "rtprobe_send_window_audio_rate_ratio",
    "rtprobe_send_window_output_tokens_per_second",
    "rtprobe_decode_token_rate_per_second",
    "gen_ai_client_token_usage",
    "rtprobe_transcript_word_error_rate_ratio",
    "rtprobe_probe_runs_total",
    "rtprobe_probe_success",
    "rtprobe_probe_in_flight",
    "rtprobe_scheduler_delay_seconds",
    "rtprobe_config_reload_success",
    "rtprobe_config_reload_timestamp_seconds",
    "rtprobe_guidellm_inter_token_latency_seconds",
    "rtprobe_scheduler_skipped_total",
    "rtprobe_pacing_lateness_seconds",
];

/// Series of the catalogue's histograms.
fn known_series() -> HashSet<String> {
    let mut known = HashSet::new();
    for m in CATALOGUE {
        known.insert(m.to_string());
        for suffix in ["_bucket", "_sum", "_count"] {
            known.insert(format!("{m}{suffix}"));
        }
    }
    for rule in rules_of(&read_yaml(&rules_file())) {
        if let Some(r) = rule["record"].as_str() {
            known.insert(r.to_string());
        }
    }
    known
}

fn load(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read dashboard");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

#[test]
fn dashboards_are_valid_with_unique_stable_uids_and_panel_ids() {
    let files = dashboard_files();
    assert_eq!(files.len(), 2, "overview and drill-down: {files:?}");
    let mut uids = HashSet::new();
    for f in &files {
        let d = load(f);
        let uid = d["uid"].as_str().expect("uid");
        assert!(
            uid.starts_with("rtprobe-") && uid.len() <= 40,
            "stable uid {uid}"
        );
        assert!(uids.insert(uid.to_string()), "duplicate uid {uid}");
        assert!(d["schemaVersion"].as_u64().expect("schemaVersion") >= 39);
        assert!(
            d["id"].is_null(),
            "{}: no instance-specific id",
            f.display()
        );
        let mut ids = HashSet::new();
        let all = panels(&d);
        assert!(all.len() >= 10, "{}: {} panels", f.display(), all.len());
        for p in &all {
            let id = p["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{}: duplicate panel id {id}", f.display());
            assert!(p["gridPos"]["w"].as_u64().is_some_and(|w| w <= 24));
        }
    }
}

#[test]
fn dashboards_have_datasource_probe_and_model_variables() {
    for f in dashboard_files() {
        let d = load(&f);
        let vars = d["templating"]["list"].as_array().expect("templating");
        let var = |name: &str| -> &Value {
            vars.iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("{}: no ${name} variable", f.display()))
        };
        let ds = var("datasource");
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        for name in ["probe", "model", "instance"] {
            let v = var(name);
            assert_eq!(v["type"], "query");
            assert_eq!(v["datasource"]["uid"], "${datasource}");
            assert!(
                v["definition"]
                    .as_str()
                    .is_some_and(|q| q.starts_with("label_values(")),
                "${name} comes from label_values"
            );
        }
    }
}

#[test]
fn every_panel_and_target_uses_the_datasource_variable() {
    for f in dashboard_files() {
        let d = load(&f);
        for p in panels(&d).iter().filter(|p| p["type"] != "row") {
            let title = p["title"].as_str().unwrap_or("?");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{title}: no query");
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
                let expr = t["expr"].as_str().expect("expr");
                // Exporter-wide gauges carry no probe label; everything else filters on $probe.
                let exporter_wide = metric_names(expr)
                    .iter()
                    .all(|m| m.starts_with("rtprobe_config_reload_"));
                assert!(
                    expr.contains("rtprobe_probe=~\"$probe\"") || exporter_wide,
                    "{title}: probe metrics filter on $probe: {expr}"
                );
            }
        }
    }
}

#[test]
fn every_metric_in_an_expression_is_in_the_catalogue() {
    let known = known_series();
    let mut checked = 0;
    for f in dashboard_files() {
        for (title, expr) in panel_exprs(&load(&f)) {
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{title}: no metric found in {expr}");
            for n in names {
                assert!(
                    known.contains(&n),
                    "{}: {title}: unknown metric {n}",
                    f.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 40, "only {checked} metric references checked");
}

#[test]
fn the_metric_name_scanner_finds_names_and_skips_labels() {
    let names = metric_names(
        r#"histogram_quantile(0.9, sum by (rtprobe_probe, le) (rate(foo_bucket{a="b c"}[5m]))) / on(x) bar + rtprobe:x:ratio_rate5m"#,
    );
    let expected: BTreeSet<String> = ["foo_bucket", "bar", "rtprobe:x:ratio_rate5m"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn every_dashboard_expression_parses() {
    let Some(promtool) = require_tool("promtool", "apt-get install prometheus") else {
        return;
    };
    // promtool has no bare-expression check; a rules file of recording rules parses each one.
    let mut rules = Vec::new();
    for f in dashboard_files() {
        for (i, (_, expr)) in panel_exprs(&load(&f)).into_iter().enumerate() {
            rules.push(serde_json::json!({"record": format!("dashboard_expr_{i}"), "expr": grafana_substitute(&expr)}));
        }
    }
    let doc = serde_json::json!({"groups": [{"name": "dashboards", "rules": rules}]});
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("exprs.yaml");
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(&path, doc.to_string()).expect("write");
    run_ok(
        Command::new(promtool).arg("check").arg("rules").arg(&path),
        Duration::from_secs(60),
    );
}
