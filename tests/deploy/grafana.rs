//! The Grafana-managed alert rules (deploy/grafana/) are well-formed provisioning (apiVersion
//! 1, unique uids, a condition that exists, reduce/math/threshold expressions over Prometheus
//! queries) and mirror the Prometheus round-trip burn-rate alerts exactly: same windows,
//! thresholds, `for`, labels and runbooks, on series the shipped rules record.

use crate::support;

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use support::*;

#[test]
fn grafana_rules_mirror_the_prometheus_round_trip_alerts() {
    let prom_rules = rules_of(&read_yaml(&rules_file()));
    let recorded: HashSet<&str> = prom_rules
        .iter()
        .filter_map(|r| r["record"].as_str())
        .collect();
    let prom_alerts: HashMap<&str, &Value> = prom_rules
        .iter()
        .filter_map(|r| r["alert"].as_str().map(|a| (a, r)))
        .filter(|(a, _)| a.starts_with("RtprobeRoundTripBudgetBurn"))
        .collect();
    assert_eq!(prom_alerts.len(), 4);

    let doc = read_yaml(&grafana_alerts_file());
    assert_eq!(doc["apiVersion"], 1);
    let mut uids = HashSet::new();
    let mut titles = HashSet::new();
    for group in doc["groups"].as_array().expect("groups") {
        assert!(group["folder"].is_string() && group["interval"].is_string());
        for rule in group["rules"].as_array().expect("rules") {
            let title = rule["title"].as_str().expect("title");
            let uid = rule["uid"].as_str().expect("uid");
            assert!(uid.len() <= 40 && uids.insert(uid), "uid {uid}");
            titles.insert(title);
            let prom = prom_alerts
                .get(title)
                .unwrap_or_else(|| panic!("{title}: no Prometheus alert of that name"));
            assert_eq!(rule["for"], prom["for"], "{title}: for");
            assert_eq!(rule["labels"], prom["labels"], "{title}: labels");
            assert_eq!(
                rule["annotations"]["runbook"], prom["annotations"]["runbook"],
                "{title}: runbook"
            );

            let data = rule["data"].as_array().expect("data");
            let by_ref: HashMap<&str, &Value> = data
                .iter()
                .map(|d| (d["refId"].as_str().expect("refId"), d))
                .collect();
            let cond = rule["condition"].as_str().expect("condition");
            assert_eq!(
                by_ref[cond]["model"]["type"], "threshold",
                "{title}: condition"
            );

            // The two queries are the long and short window of the Prometheus alert.
            let exprs: Vec<&str> = data
                .iter()
                .filter_map(|d| d["model"]["expr"].as_str())
                .collect();
            let labels = &prom["labels"];
            let want: Vec<String> = ["long_window", "short_window"]
                .iter()
                .map(|w| {
                    format!(
                        "rtprobe:rtt_slo_error:ratio_rate{}",
                        labels[w].as_str().expect("window")
                    )
                })
                .collect();
            assert_eq!(exprs, want, "{title}: windows");
            for e in &exprs {
                assert!(
                    recorded.contains(e),
                    "{title}: {e} is not a recorded series"
                );
            }
            for d in data.iter().filter(|d| d["model"]["expr"].is_string()) {
                assert!(d["datasourceUid"].is_string());
            }
            // Same threshold: burn rate x the 1 % budget, on both windows.
            let factor: f64 = labels["burn_rate"]
                .as_str()
                .expect("burn_rate")
                .parse()
                .expect("number");
            let math = data
                .iter()
                .find(|d| d["model"]["type"] == "math")
                .expect("math expression");
            let expression = math["model"]["expression"].as_str().expect("expression");
            let thresholds: Vec<f64> = expression
                .split('>')
                .skip(1)
                .map(|s| {
                    s.split_whitespace()
                        .next()
                        .expect("threshold")
                        .parse()
                        .expect("number")
                })
                .collect();
            assert_eq!(thresholds.len(), 2, "{title}: {expression}");
            for t in thresholds {
                assert!((t - factor * 0.01).abs() < 1e-9, "{title}: threshold {t}");
            }
            let prom_expr = prom["expr"].as_str().expect("expr");
            assert!(prom_expr.contains(&format!(
                "({} * 0.01)",
                labels["burn_rate"].as_str().unwrap_or("")
            )));
            // Every expression input refers to a refId that exists.
            for d in data {
                if let Some(input) = d["model"]["expression"].as_str() {
                    let refs: Vec<&str> = input
                        .split(|c: char| !c.is_ascii_alphanumeric())
                        .filter(|w| w.len() == 1 && w.chars().all(|c| c.is_ascii_uppercase()))
                        .collect();
                    for r in refs {
                        assert!(by_ref.contains_key(r), "{title}: {input} names missing {r}");
                    }
                }
            }
        }
    }
    assert_eq!(titles.len(), 4, "all four round-trip burn-rate alerts");
}
