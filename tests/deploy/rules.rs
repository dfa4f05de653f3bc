//! The shipped Prometheus rules: promtool accepts them and their unit tests pass (each
//! burn-rate alert fires on breaching synthetic series and stays silent on healthy ones), the
//! PrometheusRule wrapper carries exactly the same rules, and every SLO threshold is a bucket
//! boundary written as rtprobe renders it.

use crate::support;

use std::process::Command;
use std::time::Duration;

use support::*;

const PROMTOOL_HINT: &str = "apt-get install prometheus (Debian ships promtool in it)";

#[test]
fn promtool_check_rules_accepts_the_rules_file() {
    let Some(promtool) = require_tool("promtool", PROMTOOL_HINT) else {
        return;
    };
    let out = run_ok(
        Command::new(promtool)
            .arg("check")
            .arg("rules")
            .arg(rules_file()),
        Duration::from_secs(60),
    );
    assert!(out.contains("SUCCESS"), "promtool said: {out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let Some(promtool) = require_tool("promtool", PROMTOOL_HINT) else {
        return;
    };
    let dir = repo().join("deploy/prometheus/tests");
    let files = files_in(&dir, "yaml");
    assert!(files.len() >= 2, "promtool unit tests in {}", dir.display());
    let out = run_ok(
        Command::new(promtool).arg("test").arg("rules").args(&files),
        Duration::from_secs(120),
    );
    assert_eq!(out.matches("SUCCESS").count(), files.len(), "{out}");
}

#[test]
fn unit_tests_cover_every_burn_rate_alert_firing_and_silent() {
    let rules = rules_of(&read_yaml(&rules_file()));
    let tests = read_yaml(&repo().join("deploy/prometheus/tests/burn-rate-test.yaml"));
    let checks: Vec<&serde_json::Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().expect("alert_rule_test"))
        .collect();
    let burn: Vec<&str> = rules
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .filter(|a| a.contains("BudgetBurn"))
        .collect();
    assert_eq!(
        burn.len(),
        12,
        "4 burn-rate alerts for each of 3 SLOs: {burn:?}"
    );
    for alert in burn {
        let mine: Vec<_> = checks.iter().filter(|c| c["alertname"] == alert).collect();
        let fires = mine.iter().any(|c| {
            c["exp_alerts"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|e| e["exp_labels"]["rtprobe_probe"] != "healthy")
            })
        });
        let healthy_silent = mine.iter().all(|c| {
            c["exp_alerts"].as_array().is_none_or(|a| {
                a.iter()
                    .all(|e| e["exp_labels"]["rtprobe_probe"] != "healthy")
            })
        });
        assert!(fires, "{alert}: no unit test shows it firing");
        assert!(healthy_silent, "{alert}: fires on the healthy probe");
    }
}

#[test]
fn prometheusrule_wrapper_holds_the_same_rules() {
    let plain = read_yaml(&rules_file());
    let wrapper = read_yaml(&repo().join("deploy/prometheus/rtprobe-prometheusrule.yaml"));
    assert_eq!(wrapper["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(wrapper["kind"], "PrometheusRule");
    assert_eq!(
        wrapper["spec"]["groups"], plain["groups"],
        "rtprobe-prometheusrule.yaml differs from rtprobe-rules.yaml: run deploy/prometheus/generate-prometheusrule.sh"
    );
}

#[test]
fn every_alert_has_a_runbook_summary_and_severity() {
    for rule in rules_of(&read_yaml(&rules_file())) {
        let Some(name) = rule["alert"].as_str() else {
            continue;
        };
        for key in ["summary", "description", "runbook"] {
            let text = rule["annotations"][key].as_str().unwrap_or("");
            assert!(text.len() > 20, "{name}: annotation {key} missing or empty");
        }
        let sev = rule["labels"]["severity"].as_str().unwrap_or("");
        assert!(
            ["page", "ticket"].contains(&sev),
            "{name}: severity {sev:?}"
        );
    }
}

/// An SLO threshold must be a boundary of the default latency buckets, written exactly as
/// rtprobe renders it, and not an integer (Prometheus 3 would rewrite "1" to "1.0").
#[test]
fn le_matchers_are_default_bucket_boundaries_in_rendered_form() {
    let boundaries = default_latency_le();
    let text: String = std::fs::read_to_string(rules_file())
        .expect("rules")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let mut seen = 0;
    for (i, _) in text.match_indices("le=\"") {
        let rest = &text[i + 4..];
        let value = &rest[..rest.find('"').expect("closing quote")];
        assert!(
            boundaries.iter().any(|b| b == value),
            "le=\"{value}\" is not a default latency bucket boundary {boundaries:?}"
        );
        assert!(
            value.contains('.'),
            "le=\"{value}\" is an integer threshold"
        );
        seen += 1;
    }
    assert!(
        seen >= 14,
        "expected le matchers in 14 SLI recording rules, found {seen}"
    );
}
