#!/usr/bin/env python3
"""Regenerate the promtool unit tests in this folder from ../rtprobe-rules.yaml.

promtool compares every annotation of a firing alert, so the expected annotations are the
rules' templates expanded here (the same three template forms the rules use). The scenarios
(which synthetic error ratio must fire which alert) are written out below and are the point
of the tests; rerun this script after editing alert text: `python3 generate.py`.
Needs PyYAML.
"""
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent
RULES = yaml.safe_load((HERE.parent / "rtprobe-rules.yaml").read_text())
ALERTS = {r["alert"]: r for g in RULES["groups"] for r in g["rules"] if "alert" in r}

# Synthetic runs per minute; 100 makes every error ratio an exact percentage.
RUNS = 100
SLIS = {
    "RoundTrip": ("rtprobe_round_trip_last_seconds", "0.5"),
    "FirstText": ("rtprobe_time_to_first_text_seconds", "1.5"),
    "Availability": (None, None),
}
SUFFIXES = ["Page1h", "Page6h", "Ticket1d", "Ticket3d"]
# probe name -> (error ratio in the first hour, in the second hour, alerts expected at 2h).
# Burn-rate thresholds are 14.4, 6, 3 and 1 times the 1 % budget.
# (probe, instance) -> ...; SLOs are per replica (scrape `instance`).
REPLICA = "10.0.0.1:9464"
CASES = {
    ("healthy", REPLICA): (0.0, 0.0, []),
    ("burn2x", REPLICA): (0.02, 0.02, ["Ticket3d"]),
    ("burn5x", REPLICA): (0.05, 0.05, ["Ticket1d", "Ticket3d"]),
    ("burn10x", REPLICA): (0.10, 0.10, ["Page6h", "Ticket1d", "Ticket3d"]),
    ("down", REPLICA): (1.0, 1.0, ["Page1h", "Page6h", "Ticket1d", "Ticket3d"]),
    # Broken for an hour, healthy since: the short windows (5m, 30m) have reset both pages,
    # while the ticket windows (2h, 6h) still hold the bad hour.
    ("recovered", REPLICA): (1.0, 0.0, ["Ticket1d", "Ticket3d"]),
    # A fleet: the same probe name on three replicas, one of them slow. Summed over the fleet
    # its 10x burn would read 3.3x (no page; 0.2x among fifty replicas); per replica, the
    # alerts page and name the slow replica, and only it.
    ("fleet", "10.0.1.1:9464"): (0.0, 0.0, []),
    ("fleet", "10.0.1.2:9464"): (0.0, 0.0, []),
    ("fleet", "10.0.1.3:9464"): (0.10, 0.10, ["Page6h", "Ticket1d", "Ticket3d"]),
}
MODEL = "demo-realtime"


def humanize_percentage(v):
    return f"{v * 100:.4g}%"


def expand(text, labels, value):
    text = text.replace("{{ $value | humanizePercentage }}", humanize_percentage(value))
    for k, v in labels.items():
        text = text.replace("{{ $labels.%s }}" % k, v)
    assert "{{" not in text, text
    return text


def series_values(first, second, per_min):
    """Cumulative counter over 2h at 1m steps: slope `first` for 60m, then `second`."""
    a, b = round(first * per_min), round(second * per_min)
    return f"0+{a}x60 {60 * a + b}+{b}x59"


def burn_tests():
    tests = []
    for sli, (metric, le) in SLIS.items():
        series = []
        for (probe, instance), (e1, e2, _) in CASES.items():
            labels = f'rtprobe_probe="{probe}",gen_ai_request_model="{MODEL}",instance="{instance}"'
            if metric:
                series.append({"series": f'{metric}_bucket{{{labels},le="{le}"}}',
                               "values": series_values(1 - e1, 1 - e2, RUNS)})
                series.append({"series": f"{metric}_count{{{labels}}}",
                               "values": series_values(1, 1, RUNS)})
            else:
                series.append({"series": f'rtprobe_probe_runs_total{{{labels},outcome="success",error_type=""}}',
                               "values": series_values(1 - e1, 1 - e2, RUNS)})
                if e1 or e2:
                    series.append({"series": f'rtprobe_probe_runs_total{{{labels},outcome="failure",error_type="http_5xx"}}',
                                   "values": series_values(e1, e2, RUNS)})
        checks = []
        for suffix in SUFFIXES:
            name = f"Rtprobe{sli}BudgetBurn{suffix}"
            rule = ALERTS[name]
            long_w = rule["labels"]["long_window"]
            exp = []
            for (probe, instance), (e1, e2, fire) in CASES.items():
                if suffix not in fire:
                    continue
                # $value is the long-window error ratio at 2h.
                hours = {"1h": 1, "6h": 2, "1d": 2, "3d": 2}[long_w]
                value = e2 if hours == 1 else (e1 + e2) / 2
                labels = {"rtprobe_probe": probe, "gen_ai_request_model": MODEL,
                          "instance": instance}
                exp.append({
                    "exp_labels": {**rule["labels"], **labels},
                    "exp_annotations": {k: expand(v, labels, value) for k, v in rule["annotations"].items()},
                })
            checks.append({"eval_time": "2h", "alertname": name, "exp_alerts": exp})
            # Before any `for` can have elapsed nothing fires, whatever the ratio.
            checks.append({"eval_time": "1m", "alertname": name, "exp_alerts": []})
        tests.append({"name": f"{sli} burn rates", "interval": "1m",
                      "input_series": series, "alert_rule_test": checks})
    return tests


def reporting_tests():
    r = ALERTS
    p = lambda name: {"rtprobe_probe": name, "gen_ai_request_model": MODEL}
    lab = lambda name: f'rtprobe_probe="{name}",gen_ai_request_model="{MODEL}"'
    absent = r["RtprobeMetricsAbsent"]
    stopped = r["RtprobeProbeStoppedReporting"]
    stalled = r["RtprobeProbeNotRunning"]
    return [
        {"name": "no rtprobe metrics at all", "interval": "1m",
         "input_series": [{"series": 'up{job="rtprobe"}', "values": "0x30"}],
         "alert_rule_test": [
             {"eval_time": "30m", "alertname": "RtprobeMetricsAbsent", "exp_alerts": [
                 {"exp_labels": absent["labels"],
                  "exp_annotations": {k: expand(v, {}, 1) for k, v in absent["annotations"].items()}}]},
             {"eval_time": "30m", "alertname": "RtprobeProbeNotRunning", "exp_alerts": []},
         ]},
        {"name": "probes reporting, one stops, one stalls", "interval": "1m",
         "input_series": [
             {"series": f"rtprobe_probe_success{{{lab('alive')}}}", "values": "1x60"},
             {"series": f'rtprobe_probe_runs_total{{{lab("alive")},outcome="success",error_type=""}}', "values": "0+2x60"},
             {"series": f"rtprobe_probe_success{{{lab('gone')}}}", "values": "1x20 stale"},
             {"series": f'rtprobe_probe_runs_total{{{lab("gone")},outcome="success",error_type=""}}', "values": "0+2x20 stale"},
             {"series": f"rtprobe_probe_success{{{lab('stuck')}}}", "values": "1x60"},
             {"series": f'rtprobe_probe_runs_total{{{lab("stuck")},outcome="success",error_type=""}}', "values": "0+2x20 40x40"},
         ],
         "alert_rule_test": [
             {"eval_time": "15m", "alertname": "RtprobeProbeStoppedReporting", "exp_alerts": []},
             {"eval_time": "15m", "alertname": "RtprobeProbeNotRunning", "exp_alerts": []},
             {"eval_time": "60m", "alertname": "RtprobeMetricsAbsent", "exp_alerts": []},
             {"eval_time": "60m", "alertname": "RtprobeProbeStoppedReporting", "exp_alerts": [
                 {"exp_labels": {**stopped["labels"], **p("gone")},
                  "exp_annotations": {k: expand(v, p("gone"), 1) for k, v in stopped["annotations"].items()}}]},
             {"eval_time": "60m", "alertname": "RtprobeProbeNotRunning", "exp_alerts": [
                 {"exp_labels": {**stalled["labels"], **p("stuck")},
                  "exp_annotations": {k: expand(v, p("stuck"), 0) for k, v in stalled["annotations"].items()}}]},
         ]},
    ]


def write(name, tests):
    doc = {"rule_files": ["../rtprobe-rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    header = "# Generated by generate.py from ../rtprobe-rules.yaml; run `promtool test rules` on it.\n"
    (HERE / name).write_text(header + yaml.safe_dump(doc, sort_keys=False, width=100))


write("burn-rate-test.yaml", burn_tests())
write("reporting-test.yaml", reporting_tests())
