//! The `rtprobe` binary as a user runs it: `probe` against a simulator prints the table (or
//! JSON) and exits 0; a failing target exits 1 naming the `error.type`; `check-config` exits
//! 0 or 1 with the precise message.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::CLIP;
use rtprobe::simulate::{Fault, SimConfig};

fn rtprobe(args: &[&str]) -> Output {
    crate::support::run_bounded(
        Command::new(env!("CARGO_BIN_EXE_rtprobe"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env_remove("RTPROBE_LOG"),
        Duration::from_secs(60),
    )
}

/// `rtprobe probe` of the shipped clip against `target`, with `extra` flags.
fn probe_args<'a>(target: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["probe", "--target", target, "--audio", CLIP];
    args.extend_from_slice(extra);
    args
}

/// `rtprobe` off the async runtime (the simulator serves on it).
async fn rtprobe_off(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        rtprobe(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

/// [`rtprobe_off`]'s stdout, once it exited 0.
async fn rtprobe_ok(args: &[&str]) -> String {
    let out = rtprobe_off(args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_prints_a_table_and_json_and_exits_by_outcome() {
    let sim = crate::support::sim::start_brisk().await;
    let target = format!("http://{}", sim.addr());
    let dir = tempfile::tempdir().unwrap();
    let svg_path = dir.path().join("run.svg");
    let stdout = rtprobe_ok(&probe_args(
        target.as_str(),
        &[
            "--reference",
            "Mary had a little lamb, its fleece was white as snow.",
        ],
    ))
    .await;
    for row in [
        "outcome                      success",
        "Time To Last Round Trip",
        "Avg RTT",
        "WER                          0.000",
        "model                        auto",
    ] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }

    let out = rtprobe_off(&probe_args(
        &target,
        &[
            "--model",
            "demo-realtime",
            "--json",
            "--svg",
            svg_path.to_str().unwrap(),
        ],
    ))
    .await;
    assert!(out.status.success());
    // The same picture as the run pages of `serve`: one mark per delta the JSON reports.
    let svg = std::fs::read_to_string(&svg_path).expect("--svg wrote the file");
    let doc = roxmltree::Document::parse(&svg).expect("the SVG parses");
    let class_count = |c: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(c))
            .count()
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["success"], true);
    assert!(v["derived"]["rtt_last"].as_f64().unwrap() > 0.0);
    let deltas = v["timeline"]["deltas"].as_array().unwrap();
    assert!(deltas.len() > 5);
    assert_eq!(
        class_count("m-delta") + class_count("m-delta-empty"),
        deltas.len()
    );
    assert_eq!(class_count("m-done"), 1);
    sim.shutdown().await;

    let bad = crate::support::sim::start(SimConfig {
        fault: Fault::HttpStatus(503),
        ..SimConfig::default()
    })
    .await;
    let target = format!("http://{}", bad.addr());
    let bad_svg = dir.path().join("bad.svg");
    let out = rtprobe_off(&probe_args(
        &target,
        &["--model", "m", "--svg", bad_svg.to_str().unwrap()],
    ))
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error.type=http_5xx"), "{stderr}");
    // A failed run is drawn too, with where it stopped.
    let svg = std::fs::read_to_string(&bad_svg).expect("--svg wrote the file");
    roxmltree::Document::parse(&svg).expect("the SVG parses");
    assert!(svg.contains("class=\"m-stop\"") && svg.contains("✕ http_5xx"));
    bad.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_prints_a_line_and_a_json_entry_per_utterance() {
    let sim = crate::support::sim::start_brisk().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("session.yaml");
    std::fs::write(
        &config,
        format!(
            "probes:\n  - name: sess\n    target: http://{}\n    model: demo-realtime\n    \
             audio: {}\n    reference: Mary had a little lamb, its fleece was white as snow.\n    \
             utterances: 2\n    chunk: 200ms\n    timeout: 20s\n",
            sim.addr(),
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(CLIP)
                .display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let table = rtprobe_ok(&["probe", "--config", config, "--probe", "sess"]).await;
    for k in ["utterance 1", "utterance 2"] {
        let line = table
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("no {k:?} line in:\n{table}"));
        assert!(
            line.contains("first text") && line.contains("WER 0.000"),
            "{line}"
        );
    }
    let json = rtprobe_ok(&["probe", "--config", config, "--probe", "sess", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json).expect("JSON on stdout");
    // The first utterance's values are `derived`, the second's in `later_utterances`, as
    // `/probe` has them.
    let later = v["later_utterances"].as_array().expect("later_utterances");
    assert_eq!(later.len(), 1);
    for u in [&v["derived"], &later[0]] {
        assert!(u["rtt_last"].as_f64().unwrap() > 0.0, "{u}");
        assert_eq!(u["wer"], 0.0);
    }
    assert!(v.get("failed_utterance").is_none());
    sim.shutdown().await;
}

#[test]
fn check_config_exit_codes() {
    let ok = rtprobe(&["check-config", "examples/rtprobe-demo.yaml"]);
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("OK, 2 probe(s): mary, quick-fox"));
    let bad = rtprobe(&[
        "check-config",
        "tests/fixtures/config/invalid/timeout-longer-than-interval.yaml",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&bad.stderr);
    assert!(
        msg.contains("probes[0].timeout") && msg.contains("line 7"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_probe_in_the_openai_dialect() {
    let cfg = SimConfig {
        dialect: rtprobe::config::Dialect::OpenAi,
        token_interval: Duration::from_millis(20),
        ..SimConfig::default()
    };
    let sim = crate::support::sim::start(cfg).await;
    let target = format!("http://{}", sim.addr());
    let stdout = rtprobe_ok(&probe_args(&target, &["--dialect", "openai", "--json"])).await;
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(v.to_string().contains("Mary had a little lamb"), "{v}");
    let rec = crate::support::sim::session_record(&sim);
    assert!(rec.request.unwrap().1.ends_with("?intent=transcription"));
    sim.shutdown().await;

    // An openai-only flag with the vllm dialect is a config error naming the key.
    let out = rtprobe_off(&probe_args(&target, &["--language", "en"])).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("language belongs to the openai dialect"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_beta_session_update() {
    let sim = crate::support::sim::start(SimConfig {
        dialect: rtprobe::config::Dialect::OpenAi,
        token_interval: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let target = format!("http://{}", sim.addr());
    let beta = ["--dialect", "openai", "--session-update", "beta"];
    let stdout = rtprobe_ok(&probe_args(&target, &[&beta[..], &["--json"]].concat())).await;
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert!(v.to_string().contains("Mary had a little lamb"), "{v}");
    let rec = crate::support::sim::session_record(&sim);
    assert!(
        rec.emissions
            .iter()
            .any(|e| e.kind == rtprobe::simulate::EmitKind::SessionUpdated)
    );
    sim.shutdown().await;

    // Beta's pcm16 is 24 kHz: another rate is a config error naming the key.
    let out = rtprobe_off(&probe_args(
        &target,
        &[&beta[..], &["--sample-rate", "16000"]].concat(),
    ))
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sample_rate 16000 does not fit session_update: beta"),
        "{stderr}"
    );
}
