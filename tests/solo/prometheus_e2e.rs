//! End to end against a real Prometheus: two-plus simulators (healthy, faulty, slow), `rtprobe
//! serve` probing them, and Debian's `prometheus` scraping it every second with the shipped
//! rules loaded. Through Prometheus's HTTP API the test checks what users will see: the
//! latency histograms with the configured buckets, quantiles in the bucket of the injected
//! latency, runs counted by outcome and error type, every shipped rule healthy, each burn-rate
//! alert matching exactly the probe that breaches its SLO, and every PromQL expression of every
//! dashboard panel, rule and Grafana alert returning data.
//!
//! Rule for expressions that are silent by design (the "stopped reporting" alerts while every
//! probe reports): the whole expression must parse and return nothing, and each operand of its
//! top-level `and`/`or`/`unless`/comparison, with an `absent*()` wrapper removed, must return
//! data. So every metric and sub-expression is still proven to exist in rtprobe's output.

use crate::support;
use crate::support::wav::write_wav;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::promql::witness_operands;
use support::*;

/// Transcript emitted by the simulators (also the probes' reference text, so WER is 0).
const TRANSCRIPT: &str = "one two three four five";
/// Audio clip written for the probes: 1 s of a quiet tone, 16 kHz mono PCM16.
const CLIP_SECONDS: f64 = 1.0;

/// Healthy simulator: first text 350 ms after the first audio, a word every 90 ms, the last
/// word held until 270 ms after the final commit, done 40 ms later.
const FIRST_TEXT_DELAY_S: f64 = 0.350;
const TOKEN_INTERVAL_S: f64 = 0.090;
const TAIL_DELAY_S: f64 = 0.270;
const DONE_DELAY_S: f64 = 0.040;
fn healthy_sim_args() -> Vec<String> {
    [
        "--first-text-delay",
        "350ms",
        "--token-interval",
        "90ms",
        "--tail-delay",
        "270ms",
        "--done-delay",
        "40ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Slow simulator: healthy protocol, but first text after 2.7 s and the held word 1.7 s after
/// the final commit, so every run breaks both latency SLOs (TTFT <= 1.5 s, RTT <= 0.5 s).
fn slow_sim_args() -> Vec<String> {
    [
        "--first-text-delay",
        "2700ms",
        "--token-interval",
        "90ms",
        "--tail-delay",
        "1700ms",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// FAULT FLAG SYNTAX (decided by the simulator): repeated `--fault NAME` cycles the faults
/// over successive sessions. These two, and the `error_type` each must produce.
const FAULTS: &[(&str, &str)] = &[
    ("http_status:503", "http_5xx"),
    ("error_mid_stream", "server_error.processing_error"),
];

const MODEL: &str = "demo-realtime";

/// Kills every child process on drop (test failure included) and keeps their logs.
struct Procs {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Procs {
    fn spawn(&mut self, name: &str, program: &Path, args: &[String]) {
        let log = |ext: &str| {
            std::fs::File::create(self.dir.join(format!("{name}.{ext}"))).expect("log file")
        };
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log("out"))
            .stderr(log("err"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        self.children.push((name.to_string(), child));
    }

    /// Fail with the child's log when it has exited.
    fn assert_alive(&mut self) {
        for (name, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(self.dir.join(format!("{name}.err")))
                    .unwrap_or_default();
                panic!("{name} exited early ({status}); stderr:\n{err}");
            }
        }
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for (name, _) in &self.children {
            for ext in ["out", "err"] {
                let text = std::fs::read_to_string(self.dir.join(format!("{name}.{ext}")))
                    .unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                s += &format!("--- {name}.{ext} (last lines)\n");
                for l in tail.iter().rev() {
                    s += l;
                    s += "\n";
                }
            }
        }
        s
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
        }
        for (_, child) in &mut self.children {
            let _ = child.wait();
        }
    }
}

impl Procs {
    /// Until `GET path` on `port` answers 200, at most `limit`.
    fn wait_ok(&mut self, port: u16, path: &str, limit: Duration) {
        let what = format!("200 from :{port}{path}");
        wait_for(self, limit, &what, || {
            http_get(port, path).is_some_and(|(s, _)| s == 200)
        });
    }

    /// `rtprobe simulate` of the test's model and transcript on `port`, with `extra` flags.
    fn simulator(&mut self, name: &str, rtprobe: &Path, port: u16, extra: &[String]) {
        let mut args: Vec<String> = ["simulate", "--listen"].map(String::from).to_vec();
        args.push(format!("127.0.0.1:{port}"));
        args.extend(["--model", MODEL, "--transcript", TRANSCRIPT].map(String::from));
        args.extend_from_slice(extra);
        self.spawn(name, rtprobe, &args);
    }

    /// `rtprobe serve` on the config `text`, written to `<name>.yaml` in the log directory.
    fn serve(&mut self, name: &str, rtprobe: &Path, text: &str) {
        let path = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&path, text).expect("config");
        let args = [
            "serve".into(),
            "--config".into(),
            path.display().to_string(),
        ];
        self.spawn(name, rtprobe, &args);
    }

    /// Prometheus on a free port with the config `text` and `flags`, once it is ready.
    fn prometheus(&mut self, name: &str, program: &Path, text: &str, flags: &[&str]) -> Prom {
        let port = free_port();
        let config = self.dir.join(format!("{name}.yml"));
        std::fs::write(&config, text).expect("prometheus config");
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!(
                "--storage.tsdb.path={}",
                self.dir.join(format!("tsdb-{name}")).display()
            ),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=warn".into(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        self.spawn(name, program, &args);
        self.wait_ok(port, "/-/ready", Duration::from_secs(60));
        Prom { port }
    }
}

/// What both end-to-end tests start from: `prometheus`, `rtprobe`, and the processes (logging
/// into a temporary directory, which they outlive no longer than the test). `None`, after a
/// loud SKIPPED line, when prometheus is not installed outside CI.
fn setup() -> Option<(PathBuf, PathBuf, Procs, tempfile::TempDir)> {
    let prometheus = require_tool("prometheus", "apt-get install prometheus")?;
    let rtprobe = PathBuf::from(env!("CARGO_BIN_EXE_rtprobe"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let procs = Procs {
        dir: tmp.path().to_path_buf(),
        children: Vec::new(),
    };
    Some((prometheus, rtprobe, procs, tmp))
}

/// A minimal HTTP/1.0 GET over loopback (no client crate in the tree): (status, body).
fn http_get(port: u16, path_and_query: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().expect("addr"),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Wait for `ok` to hold, polling every 250 ms, failing after `limit` with `what`.
fn wait_for(procs: &mut Procs, limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        procs.assert_alive();
        if start.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for {what}\n{}",
                procs.logs()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

struct Prom {
    port: u16,
}

impl Prom {
    /// Instant query; Err(message) when Prometheus rejects it (bad PromQL).
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let (status, body) = http_get(
            self.port,
            &format!("/api/v1/query?query={}", urlencode(expr)),
        )
        .ok_or_else(|| "no answer from prometheus".to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if status != 200 || v["status"] != "success" {
            return Err(format!("HTTP {status}: {}", v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The runs counted so far of the series matching `selector` (0 before the first scrape).
    fn runs(&self, selector: &str) -> f64 {
        self.query(&format!("sum(rtprobe_probe_runs_total{{{selector}}})"))
            .ok()
            .and_then(|r| r.first().map(value_of))
            .unwrap_or(0.0)
    }

    fn must(&self, expr: &str) -> Vec<Value> {
        self.query(expr)
            .unwrap_or_else(|e| panic!("query failed: {expr}\n{e}"))
    }

    fn get(&self, path: &str) -> Value {
        let (_, body) = http_get(self.port, path).expect("prometheus answers");
        serde_json::from_str(&body).expect("json")
    }
}

fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN)
}

fn scalar(prom: &Prom, expr: &str) -> Option<f64> {
    prom.must(expr).first().map(value_of)
}

/// The bucket (lower, upper] of `boundaries` that holds `v`.
fn bucket_of(v: f64, boundaries: &[f64]) -> (f64, f64) {
    let mut lo = 0.0;
    for &b in boundaries {
        if v <= b {
            return (lo, b);
        }
        lo = b;
    }
    (lo, f64::INFINITY)
}

fn le_strings(boundaries: &[f64]) -> BTreeSet<String> {
    boundaries
        .iter()
        .map(|b| format!("{b}"))
        .chain(["+Inf".to_string()])
        .collect()
}

#[test]
fn operand_splitter_handles_rule_shapes() {
    let _alone = crate::support::gate::alone(module_path!());
    assert_eq!(
        witness_operands(
            "rtprobe:x:ratio_rate1h > (14.4 * 0.01)\nand\nrtprobe:x:ratio_rate5m > (14.4 * 0.01)"
        ),
        ["rtprobe:x:ratio_rate1h", "rtprobe:x:ratio_rate5m"]
    );
    assert_eq!(
        witness_operands("absent_over_time(m{a=\"or\"}[10m])"),
        ["m{a=\"or\"}"]
    );
    assert_eq!(
        witness_operands("max by (p) (max_over_time(s[1h])) unless max by (p) (s)"),
        ["max by (p) (max_over_time(s[1h]))", "max by (p) (s)"]
    );
    assert_eq!(
        witness_operands("sum by (p) (increase(r[15m])) == 0"),
        ["sum by (p) (increase(r[15m]))"]
    );
}

fn has_finite(samples: &[Value]) -> bool {
    samples.iter().any(|s| value_of(s).is_finite())
}

fn probes_in(samples: &[Value]) -> BTreeSet<String> {
    samples
        .iter()
        .filter_map(|s| s["metric"]["rtprobe_probe"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn rtprobe_scraped_by_prometheus_with_the_shipped_rules_and_dashboards() {
    let _alone = crate::support::gate::alone(module_path!());
    // `procs` is dropped (its children killed) before `tmp`.
    let Some((prometheus, rtprobe, mut procs, tmp)) = setup() else {
        return;
    };

    // Simulators.
    let (healthy_port, faulty_port, slow_port) = (free_port(), free_port(), free_port());
    procs.simulator("sim-healthy", &rtprobe, healthy_port, &healthy_sim_args());
    procs.simulator("sim-slow", &rtprobe, slow_port, &slow_sim_args());
    let fault_args: Vec<String> = FAULTS
        .iter()
        .flat_map(|(f, _)| ["--fault".to_string(), f.to_string()])
        .collect();
    procs.simulator("sim-faulty", &rtprobe, faulty_port, &fault_args);
    for port in [healthy_port, slow_port, faulty_port] {
        procs.wait_ok(port, "/health", Duration::from_secs(30));
    }

    // rtprobe serve.
    let clip = tmp.path().join("clip.wav");
    write_wav(&clip, CLIP_SECONDS);
    let serve_port = free_port();
    let probe = |name: &str, port: u16, interval: &str, timeout: &str, deadline: &str| {
        format!(
            "  - name: {name}\n    target: http://127.0.0.1:{port}\n    model: {MODEL}\n    audio: {clip}\n    reference: \"{TRANSCRIPT}\"\n    chunk: 100ms\n    pacing: realtime\n    interval: {interval}\n    timeout: {timeout}\n    deadlines:\n      connect: 1s\n      first_text: {deadline}\n      done: {deadline}\n    labels:\n      env: e2e\n",
            clip = clip.display()
        )
    };
    let config = format!(
        "server:\n  listen: 127.0.0.1:{serve_port}\nprobes:\n{}{}{}",
        probe("healthy", healthy_port, "3s", "2800ms", "2s"),
        probe("failing", faulty_port, "2s", "1800ms", "1500ms"),
        probe("slow", slow_port, "5s", "4800ms", "4s"),
    );
    procs.serve("serve", &rtprobe, &config);
    procs.wait_ok(serve_port, "/readyz", Duration::from_secs(60));

    // Prometheus with the shipped rules.
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\nscrape_configs:\n  - job_name: rtprobe\n    static_configs:\n      - targets: ['127.0.0.1:{serve_port}']\n",
        rules = rules_file().display()
    );
    let prom = procs.prometheus("prometheus", &prometheus, &prom_config, &[]);

    // Enough runs of every kind: healthy and slow successes, each injected failure.
    let runs = |sel: &str| prom.runs(sel);
    wait_for(
        &mut procs,
        Duration::from_secs(150),
        "runs of every probe in Prometheus",
        || {
            runs(r#"rtprobe_probe="healthy",outcome="success""#) >= 6.0
                && runs(r#"rtprobe_probe="slow",outcome="success""#) >= 4.0
                && FAULTS.iter().all(|(_, et)| {
                    runs(&format!(
                        r#"rtprobe_probe="failing",outcome="failure",error_type="{et}""#
                    )) >= 2.0
                })
        },
    );
    // Let rate() windows and the rules see a few more samples after the last condition held.
    std::thread::sleep(Duration::from_secs(5));

    check_histograms(&prom);
    check_runs(&prom);
    check_rules(&prom, &mut procs);
    check_dashboards_and_grafana(&prom);
}

fn check_histograms(prom: &Prom) {
    let buckets = rtprobe::config::Buckets::default();
    let healthy = r#"rtprobe_probe="healthy""#;
    let latency = [
        "rtprobe_time_to_first_text_seconds",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "rtprobe_round_trip_last_seconds",
        "rtprobe_round_trip_mean_seconds",
        "gen_ai_client_operation_duration_seconds",
    ];
    let itl = "gen_ai_client_operation_time_per_output_chunk_seconds";
    for (metric, bounds) in latency
        .iter()
        .map(|m| (*m, &buckets.latency_seconds))
        .chain([(itl, &buckets.itl_seconds)])
    {
        let les: BTreeSet<String> = prom
            .must(&format!("count by (le) ({metric}_bucket{{{healthy}}})"))
            .iter()
            .filter_map(|s| s["metric"]["le"].as_str().map(str::to_string))
            .collect();
        assert_eq!(les, le_strings(bounds), "{metric}: le labels as configured");
        // Every probe label the contract promises.
        let labels = prom.must(&format!("{metric}_count{{{healthy}}}"));
        let m = &labels.first().expect("series")["metric"];
        assert_eq!(m["gen_ai_request_model"], MODEL, "{metric}: {m}");
        assert_eq!(
            m["gen_ai_operation_name"], "speech_to_text",
            "{metric}: {m}"
        );
        assert_eq!(m["gen_ai_provider_name"], "vllm", "{metric}: {m}");
        assert_eq!(m["server_address"], "127.0.0.1", "{metric}: {m}");
        assert!(m["server_port"].is_string(), "{metric}: {m}");
        assert_eq!(m["env"], "e2e", "{metric}: static label: {m}");
    }

    // Median over all runs (cumulative buckets) in the bucket of the injected value.
    let median = |metric: &str| {
        scalar(
            prom,
            &format!("histogram_quantile(0.5, sum by (le) ({metric}_bucket{{{healthy}}}))"),
        )
        .unwrap_or_else(|| panic!("{metric}: no quantile"))
    };
    let expect_in_bucket = |metric: &str, injected: f64, bounds: &[f64]| {
        let (lo, hi) = bucket_of(injected, bounds);
        let q = median(metric);
        assert!(
            q > lo && q <= hi,
            "{metric}: median {q} outside ({lo}, {hi}], the bucket of the injected {injected}"
        );
    };
    let lat = &buckets.latency_seconds;
    expect_in_bucket(
        "rtprobe_time_to_first_text_seconds",
        FIRST_TEXT_DELAY_S,
        lat,
    );
    expect_in_bucket(itl, TOKEN_INTERVAL_S, &buckets.itl_seconds);
    expect_in_bucket("rtprobe_round_trip_last_seconds", TAIL_DELAY_S, lat);
    // End to end: the clip is paced in real time (the final commit goes with or right after
    // the last chunk), then the tail and done delays.
    let e2e = CLIP_SECONDS + TAIL_DELAY_S + DONE_DELAY_S - 0.1;
    expect_in_bucket("gen_ai_client_operation_duration_seconds", e2e, lat);
    // From connect start: the injected delay plus session setup on loopback.
    let ttfc = median("gen_ai_client_operation_time_to_first_chunk_seconds");
    assert!(
        ttfc > FIRST_TEXT_DELAY_S - 0.05 && ttfc <= 0.75,
        "time to first chunk median {ttfc}"
    );
    // Average RTT mixes every send and receive time; no single knob sets it. It must be a
    // positive latency below the slowest injected step.
    let avg_rtt = median("rtprobe_round_trip_mean_seconds");
    assert!(
        avg_rtt > 0.0 && avg_rtt <= 1.0,
        "average RTT median {avg_rtt}"
    );
    // The slow probe's medians sit beyond the SLO thresholds, as injected.
    let slow_ttft = scalar(
        prom,
        r#"histogram_quantile(0.5, sum by (le) (rtprobe_time_to_first_text_seconds_bucket{rtprobe_probe="slow"}))"#,
    )
    .expect("slow ttft");
    assert!(
        slow_ttft > 2.5 && slow_ttft <= 5.0,
        "slow TTFT median {slow_ttft}"
    );
}

fn check_runs(prom: &Prom) {
    let by: BTreeMap<(String, String), f64> = prom
        .must(r#"sum by (rtprobe_probe, error_type) (rtprobe_probe_runs_total{outcome="failure"})"#)
        .iter()
        .map(|s| {
            let m = &s["metric"];
            (
                (
                    m["rtprobe_probe"].as_str().unwrap_or("").to_string(),
                    m["error_type"].as_str().unwrap_or("").to_string(),
                ),
                value_of(s),
            )
        })
        .collect();
    for (_, et) in FAULTS {
        let n = by
            .get(&("failing".to_string(), et.to_string()))
            .copied()
            .unwrap_or(0.0);
        assert!(
            n >= 2.0,
            "failing probe: {n} runs with error_type {et}; all failures: {by:?}"
        );
    }
    for ((probe, et), n) in &by {
        if probe == "healthy" || probe == "slow" {
            assert_eq!(*n, 0.0, "{probe} failed {n} times with {et}");
        }
        if probe == "failing" {
            assert!(
                *n == 0.0 || FAULTS.iter().any(|(_, e)| e == et),
                "failing probe: unexpected error_type {et}"
            );
        }
    }
    let ok = scalar(
        prom,
        r#"sum(rtprobe_probe_runs_total{rtprobe_probe="failing",outcome="success"})"#,
    )
    .unwrap_or(0.0);
    assert_eq!(ok, 0.0, "every run of the failing probe fails");
    assert_eq!(
        scalar(
            prom,
            r#"max(rtprobe_probe_success{rtprobe_probe="failing"})"#
        ),
        Some(0.0)
    );
    assert_eq!(
        scalar(
            prom,
            r#"min(rtprobe_probe_success{rtprobe_probe="healthy"})"#
        ),
        Some(1.0)
    );
}

/// Which probe each burn-rate alert must match: only the one breaching that SLO.
fn breaching_probe(alert: &str) -> &'static str {
    if alert.contains("Availability") {
        "failing"
    } else {
        "slow"
    }
}

fn check_rules(prom: &Prom, procs: &mut Procs) {
    let rules = rules_of(&read_yaml(&rules_file()));
    // Prometheus loaded every rule and evaluates each without error.
    let start = Instant::now();
    loop {
        let api = prom.get("/api/v1/rules");
        let loaded: Vec<&Value> = api["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().expect("rules"))
            .collect();
        assert_eq!(loaded.len(), rules.len(), "every shipped rule is loaded");
        let bad: Vec<String> = loaded
            .iter()
            .filter(|r| r["health"] != "ok")
            .map(|r| format!("{}: {} {}", r["name"], r["health"], r["lastError"]))
            .collect();
        if bad.is_empty() {
            break;
        }
        procs.assert_alive();
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "unhealthy rules: {bad:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    for rule in &rules {
        let expr = rule["expr"].as_str().expect("expr");
        let result = prom.must(expr);
        if let Some(record) = rule["record"].as_str() {
            assert!(
                has_finite(&result),
                "recording rule {record} returned no data"
            );
            let stored = prom.must(record);
            assert!(has_finite(&stored), "{record} is not being recorded");
            continue;
        }
        let alert = rule["alert"].as_str().expect("alert name");
        if alert.contains("BudgetBurn") {
            let expected = BTreeSet::from([breaching_probe(alert).to_string()]);
            assert_eq!(
                probes_in(&result),
                expected,
                "{alert} matches only the breaching probe"
            );
            // And Prometheus's own evaluation agrees (pending, or firing once `for` passed).
            let state = prom.must(&format!("ALERTS{{alertname=\"{alert}\"}}"));
            assert_eq!(probes_in(&state), expected, "ALERTS for {alert}");
        } else {
            // Silent by design while every probe reports: see the module comment.
            assert!(
                result.is_empty(),
                "{alert} fires while every probe reports: {result:?}"
            );
            let operands = witness_operands(expr);
            assert!(!operands.is_empty());
            for op in operands {
                assert!(
                    has_finite(&prom.must(&op)),
                    "{alert}: operand returns no data: {op}"
                );
            }
        }
    }
}

fn check_dashboards_and_grafana(prom: &Prom) {
    let mut n = 0;
    for f in dashboard_files() {
        let d: Value =
            serde_json::from_str(&std::fs::read_to_string(&f).expect("dashboard")).expect("json");
        for (title, expr) in panel_exprs(&d) {
            let q = grafana_substitute(&expr);
            let r = prom
                .query(&q)
                .unwrap_or_else(|e| panic!("{}: {title}: {e}\n{q}", f.display()));
            assert!(
                has_finite(&r),
                "{}: panel {title:?} returns no data:\n{q}",
                f.display()
            );
            n += 1;
        }
    }
    assert!(n > 40, "only {n} panel expressions evaluated");

    let grafana = read_yaml(&grafana_alerts_file());
    let mut g = 0;
    for group in grafana["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            for q in rule["data"].as_array().expect("data") {
                if let Some(expr) = q["model"]["expr"].as_str() {
                    assert!(
                        has_finite(&prom.must(expr)),
                        "grafana rule {}: {expr}",
                        rule["title"]
                    );
                    g += 1;
                }
            }
        }
    }
    assert!(g >= 8, "only {g} Grafana alert queries evaluated");
}

/// Round trip (`--tail-delay`) injected at the fast and the slow replica of the fleet test.
const FLEET_RTT_S: [(&str, f64); 2] = [("fast", 0.300), ("slow", 0.900)];

/// Fleet and native histograms: two `rtprobe serve` replicas run the same probe name, each
/// against its own simulator with a different injected round trip (sidecar mode). A classic
/// Prometheus scraping both tells them apart with the overview's per-replica panel query; a
/// second Prometheus with `--enable-feature=native-histograms` negotiates the protobuf format,
/// stores native series, and their median is within 5 % of each injected round trip.
#[test]
fn fleet_replicas_apart_and_native_histograms() {
    let _alone = crate::support::gate::alone(module_path!());
    // `procs` is dropped (its children killed) before `tmp`.
    let Some((prometheus, rtprobe, mut procs, tmp)) = setup() else {
        return;
    };
    let clip = tmp.path().join("clip.wav");
    write_wav(&clip, CLIP_SECONDS);
    let mut serve_ports = BTreeMap::new();
    for (replica, rtt) in FLEET_RTT_S {
        let sim_port = free_port();
        let mut args = ["--first-text-delay", "300ms", "--token-interval", "90ms"]
            .map(String::from)
            .to_vec();
        args.extend(["--tail-delay".to_string(), format!("{}ms", rtt * 1000.0)]);
        procs.simulator(&format!("sim-{replica}"), &rtprobe, sim_port, &args);
        procs.wait_ok(sim_port, "/health", Duration::from_secs(30));
        let port = free_port();
        let config = format!(
            "server:\n  listen: 127.0.0.1:{port}\nprobes:\n  - name: sidecar\n    target: http://127.0.0.1:{sim_port}\n    model: {MODEL}\n    audio: {}\n    interval: 3s\n    timeout: 2900ms\n    jitter: 0\n",
            clip.display()
        );
        procs.serve(&format!("serve-{replica}"), &rtprobe, &config);
        serve_ports.insert(replica, port);
    }
    for port in serve_ports.values() {
        procs.wait_ok(*port, "/readyz", Duration::from_secs(60));
    }
    let instance = |replica: &str| format!("127.0.0.1:{}", serve_ports[replica]);

    // Two Prometheus servers scraping both replicas: classic, and with native histograms.
    let targets: Vec<String> = serve_ports
        .values()
        .map(|p| format!("'127.0.0.1:{p}'"))
        .collect();
    let mut proms = Vec::new();
    for (name, flags) in [
        ("classic", vec![]),
        ("native", vec!["--enable-feature=native-histograms"]),
    ] {
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: rtprobe\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let prom = procs.prometheus(&format!("prometheus-{name}"), &prometheus, &config, &flags);
        proms.push(prom);
    }
    let (classic, native) = (&proms[0], &proms[1]);

    // Enough runs of each replica seen by both, so rate() over 1m has several increases.
    let runs = |prom: &Prom, replica: &str| {
        prom.runs(&format!(
            "instance=\"{}\",outcome=\"success\"",
            instance(replica)
        ))
    };
    wait_for(
        &mut procs,
        Duration::from_secs(120),
        "five runs of each replica",
        || {
            FLEET_RTT_S
                .iter()
                .all(|(r, _)| runs(classic, r) >= 5.0 && runs(native, r) >= 5.0)
        },
    );

    // The overview's per-replica round-trip panel, as Grafana would query it.
    let overview: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("dashboards/rtprobe-overview.json"))
            .expect("overview"),
    )
    .expect("json");
    let (_, expr) = panel_exprs(&overview)
        .into_iter()
        .find(|(title, _)| title.starts_with("Slowest replicas: Time To Last Round Trip"))
        .expect("the per-replica round-trip panel");
    let per_replica: BTreeMap<String, f64> = classic
        .must(&grafana_substitute(&expr))
        .iter()
        .map(|s| {
            (
                s["metric"]["instance"].as_str().unwrap_or("").to_string(),
                value_of(s),
            )
        })
        .collect();
    let lat = rtprobe::config::Buckets::default().latency_seconds;
    for (replica, rtt) in FLEET_RTT_S {
        let p90 = per_replica
            .get(&instance(replica))
            .unwrap_or_else(|| panic!("{replica} missing from the panel: {per_replica:?}"));
        let (lo, hi) = bucket_of(rtt, &lat);
        assert!(
            *p90 > lo && *p90 <= hi,
            "{replica}: panel p90 {p90} outside ({lo}, {hi}], the bucket of {rtt}: {per_replica:?}"
        );
    }
    // Without the flag Prometheus scraped text: classic buckets.
    assert!(has_finite(
        &classic.must("rtprobe_round_trip_last_seconds_bucket{le=\"0.5\"}")
    ));

    // With it: native series (a `histogram` sample, no `_bucket` series), whose median is the
    // injected round trip within 5 %.
    let series = native.must("rtprobe_round_trip_last_seconds");
    assert_eq!(series.len(), 2, "one native series per replica: {series:?}");
    assert!(
        series.iter().all(|s| s["histogram"].is_array()),
        "{series:?}"
    );
    assert!(
        native
            .must("rtprobe_round_trip_last_seconds_bucket")
            .is_empty()
    );
    for (replica, rtt) in FLEET_RTT_S {
        let q = scalar(
            native,
            &format!(
                "histogram_quantile(0.5, rate(rtprobe_round_trip_last_seconds{{instance=\"{}\"}}[1m]))",
                instance(replica)
            ),
        )
        .unwrap_or_else(|| panic!("{replica}: no native quantile"));
        eprintln!("{replica}: injected round trip {rtt} s, native median {q:.4} s");
        assert!(
            (q - rtt).abs() <= 0.05 * rtt,
            "{replica}: native median {q} not within 5 % of the injected {rtt}"
        );
    }
}
