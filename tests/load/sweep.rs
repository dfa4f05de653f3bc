//! `rtprobe load` against a simulator that slows down with concurrency
//! (`load_delay_per_stream`): the per-level figures follow the injected delays, the verdict
//! names the level where the SLO breaks and the first with server errors, and the chart
//! plots each level's values where its axes say they belong.

use crate::support;

use std::process::Command;
use std::time::Duration;

use rtprobe::simulate::SimConfig;
use support::load::write_config;

const BIN: &str = env!("CARGO_BIN_EXE_rtprobe");
/// Injected: first text 300 ms + k·N, Time To Last Round Trip 120 ms + k·N, with k = 20 ms.
const K_MS: f64 = 20.0;
const FIRST_TEXT_MS: f64 = 300.0;
const TAIL_MS: f64 = 120.0;
/// Client and simulator scheduling on a shared machine (observed: 0–6 ms at the median).
const SLACK_MS: f64 = 20.0;
/// How late a p90 may be: one emission delayed by a busy CPU (observed up to 27 ms).
const LATE_P90_MS: f64 = 60.0;

fn attr(n: roxmltree::Node, name: &str) -> f64 {
    n.attribute(name)
        .unwrap_or_else(|| panic!("no {name} on {n:?}"))
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_finds_the_breaking_level_and_charts_it() {
    let cfg = SimConfig {
        token_interval: Duration::from_millis(20),
        first_text_delay: Duration::from_millis(FIRST_TEXT_MS as u64),
        tail_delay: Duration::from_millis(TAIL_MS as u64),
        load_delay_per_stream: Duration::from_millis(K_MS as u64),
        max_records: 0,
        ..SimConfig::default()
    };
    let sim = crate::support::sim::start(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    // Runs 2.5 s apart never overlap (a 1 s clip, done within ~1.6 s even at 16 streams);
    // the 550 ms first-text deadline is passed at 16 streams (620 ms) and not at 8 (460 ms).
    let config = write_config(dir.path(), sim.addr(), 1.0, "2500ms", "550ms");
    let out_dir = dir.path().join("out");
    let (c, o) = (config.clone(), out_dir.clone());
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(["load", "--config"])
            .arg(&c)
            .args(["--concurrency", "1,4,8,16", "--duration", "5s"])
            .args(["--warmup", "1s", "--cooldown", "200ms"])
            .args(["--slo-rtt", "250ms", "--slo-first-text", "500ms"])
            .args(["--json", "--quiet", "--out"])
            .arg(&o);
        support::run_bounded(cmd.env_remove("RTPROBE_LOG"), Duration::from_secs(120))
    })
    .await
    .unwrap();
    sim.shutdown().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(doc, on_disk, "sweep.json holds what was printed");

    // RTT p90 = 120 + 20·N: 140, 200 within 250 ms; 280 at 8 is not.
    let v = &doc["verdict"];
    assert_eq!(v["holds"], 4, "{doc:#}");
    assert_eq!(v["breaks_at"], 8, "{doc:#}");
    assert_eq!(v["first_errors"], 16, "{doc:#}");
    assert_eq!(
        v["first_error_types"],
        serde_json::json!(["timeout_first_text"])
    );

    let levels = doc["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 4);
    for l in &levels[..3] {
        let n = l["concurrency"].as_f64().unwrap();
        let ms = |v: &serde_json::Value| v.as_f64().expect("a reading") * 1000.0;
        let lat = &l["latency"];
        // Within the slack either way; a p90 may be later still (one late emission on a busy
        // machine). Earlier by at most one stream's delay: the simulator counts the sessions
        // open when an utterance's first audio arrives, and a stream whose audio comes before
        // the last of its level has connected sees one session fewer.
        let near = |got: f64, want: f64, late: f64, what: &str| {
            assert!(
                got >= want - K_MS - SLACK_MS && got <= want + late,
                "{n} streams: {what} {got:.1} ms, injected {want} ms\n{l:#}"
            );
        };
        for q in ["p50", "p90"] {
            let late = if q == "p90" { LATE_P90_MS } else { SLACK_MS };
            near(
                ms(&lat["time_to_first_text"][q]),
                FIRST_TEXT_MS + K_MS * n,
                late,
                &format!("first text {q}"),
            );
            near(
                ms(&lat["rtt_last"][q]),
                TAIL_MS + K_MS * n,
                late,
                &format!("RTT last {q}"),
            );
        }
        near(ms(&lat["itl"]["p50"]), 20.0, SLACK_MS, "ITL p50");
        let runs = &l["runs"];
        let ok = runs["succeeded"].as_u64().unwrap();
        assert_eq!(runs["failed"], 0, "{l:#}");
        // Whole runs of N streams, ticks 2.5 s apart over 5 s (plus the drain).
        let n_streams = n as u64;
        assert!(
            ok % n_streams == 0 && (n_streams..=3 * n_streams).contains(&ok),
            "{l:#}"
        );
        let t = &l["throughput"];
        assert_eq!(
            t["output_tokens"].as_u64(),
            Some(11 * ok),
            "11 words per stream"
        );
        let per_s = t["output_tokens_per_s"].as_f64().unwrap();
        let window = t["send_window_s"].as_f64().unwrap();
        assert!((per_s - (11 * ok) as f64 / window).abs() < 1e-9);
    }
    let top = &levels[3]["runs"];
    assert!(
        top["failures"]["timeout_first_text"].as_u64().unwrap() >= 1,
        "{top:#}"
    );

    // The chart: each first-text p90 and RTT p90 point at its level's x and its value's y.
    let svg = std::fs::read_to_string(out_dir.join("sweep.svg")).unwrap();
    let xml = roxmltree::Document::parse(&svg).expect("the chart is well-formed SVG");
    assert_eq!(xml.root_element().tag_name().name(), "svg");
    for (panel, key) in [
        ("first_text", "time_to_first_text"),
        ("rtt_last", "rtt_last"),
    ] {
        let plot = xml
            .descendants()
            .find(|n| {
                n.attribute("class") == Some("plot") && n.attribute("data-panel") == Some(panel)
            })
            .unwrap_or_else(|| panic!("no plot area for {panel}"));
        let (x, y, w, h, ymax) = (
            attr(plot, "x"),
            attr(plot, "y"),
            attr(plot, "width"),
            attr(plot, "height"),
            attr(plot, "data-ymax"),
        );
        let points: Vec<_> = xml
            .descendants()
            .filter(|n| {
                n.attribute("class") == Some("point")
                    && n.attribute("data-panel") == Some(panel)
                    && n.attribute("data-series") == Some("p90")
            })
            .collect();
        for (i, l) in levels.iter().enumerate() {
            let Some(v) = l["latency"][key]["p90"].as_f64() else {
                continue;
            };
            let level = l["concurrency"].to_string();
            let p = points
                .iter()
                .find(|p| p.attribute("data-level") == Some(level.as_str()))
                .unwrap_or_else(|| panic!("{panel}: no point for level {level}"));
            let want_x = x + w * (i as f64 + 0.5) / levels.len() as f64;
            let want_y = y + h * (1.0 - v * 1000.0 / ymax);
            assert!((attr(*p, "cx") - want_x).abs() < 0.01, "{panel} {level} cx");
            assert!((attr(*p, "cy") - want_y).abs() < 0.01, "{panel} {level} cy");
            assert!((attr(*p, "data-value") - v * 1000.0).abs() < 1e-9);
        }
        assert!(
            ymax >= points
                .iter()
                .map(|p| attr(*p, "data-value"))
                .fold(0.0, f64::max)
        );
    }
}
