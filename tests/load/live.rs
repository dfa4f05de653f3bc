//! `rtprobe serve --duration` as a person watches it: in a pseudo-terminal (`script` from
//! util-linux) the live table is redrawn in place with its groups; piped, stderr gets plain
//! periodic lines; `--json` prints the summary's numbers; `--quiet` prints nothing live.

use crate::support;

use std::process::Command;
use std::time::Duration;

use rtprobe::simulate::SimConfig;
use support::load::write_config;

const BIN: &str = env!("CARGO_BIN_EXE_rtprobe");
const LIMIT: Duration = Duration::from_secs(60);

fn sim_config() -> SimConfig {
    SimConfig {
        token_interval: Duration::from_millis(20),
        max_records: 0,
        ..SimConfig::default()
    }
}

fn have_script() -> bool {
    Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_gets_a_table_redrawn_in_place() {
    if !have_script() {
        assert!(std::env::var_os("CI").is_none(), "script(1) missing in CI");
        eprintln!("SKIPPED: script(1) from util-linux not installed");
        return;
    }
    let sim = crate::support::sim::start(sim_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), sim.addr(), 1.0, "1500ms", "3s");
    let line = format!(
        "{BIN} serve --config {} --duration 3s --no-watch",
        config.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("script");
        // -q quiet, -f flush, -e exit code of the child; the typescript goes nowhere.
        cmd.args(["-qfec", &line, "/dev/null"]);
        support::run_bounded(cmd.env_remove("RTPROBE_LOG"), LIMIT)
    })
    .await
    .unwrap();
    sim.shutdown().await;
    // Through the pty, the child's stderr and stdout both arrive on script's stdout.
    let tty = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{tty}");
    // Frames of 14 lines (progress bar + 13), each after the first preceded by cursor-up 14.
    let redraws = tty.matches("\x1b[14A").count();
    assert!(
        redraws >= 4,
        "0.5 s redraws over 3 s, got {redraws}:\n{tty}"
    );
    let frames: Vec<&str> = tty.split("\x1b[14A").collect();
    let last = frames[frames.len() - 1];
    for group in [
        "]  3s / 3s  100%",
        "\r\x1b[2Kruns        started ",
        "\r\x1b[2K  error.type  ",
        "\r\x1b[2Klatency ",
        "\r\x1b[2K  first text ",
        "\r\x1b[2K  TTFT ",
        "\r\x1b[2K  ITL ",
        "\r\x1b[2K  RTT last ",
        "\r\x1b[2K  Avg RTT ",
        "\r\x1b[2K  finalize ",
        "\r\x1b[2Kthroughput  output ",
        "\r\x1b[2K  live ",
        "\r\x1b[2Ktranscript  WER p50 0.0 %",
    ] {
        assert!(
            last.contains(group),
            "missing {group:?} in the last frame:\n{last}"
        );
    }
    // The first frame comes before any stream finished: placeholders, not zeros.
    let first = frames[0];
    assert!(
        first.contains("  first text           —          —          —       0"),
        "{first}"
    );
    assert!(
        first.contains("throughput  output —  streams —  audio —"),
        "{first}"
    );
    // No log lines break the table while it is drawn.
    assert!(!tty.contains(" INFO "), "{tty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipes_get_plain_lines_and_json_the_same_numbers() {
    let sim = crate::support::sim::start(sim_config()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), sim.addr(), 1.0, "1500ms", "3s");
    let c = config.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(&c)
            .args(["--duration", "6s", "--no-watch", "--json"]);
        support::run_bounded(cmd.env_remove("RTPROBE_LOG"), LIMIT)
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // (Log lines may carry colour codes; the live display itself must not move the cursor.)
    assert!(
        !stderr.contains("\x1b[2K") && !stderr.contains("\x1b[J"),
        "no redraw off a terminal:\n{stderr}"
    );
    let plain: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("rtprobe: "))
        .collect();
    assert!(plain.iter().all(|l| !l.contains('\x1b')), "{stderr}");
    // At 0 s and 5 s, and the final one.
    assert_eq!(plain.len(), 3, "{stderr}");
    assert!(
        plain[0].starts_with("rtprobe: 0s / 6s  streams 0 ok 0 failed 0"),
        "{stderr}"
    );
    assert!(
        plain[2].starts_with("rtprobe: 6s / 6s  streams "),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    let runs = &json["runs"];
    let ok = runs["succeeded"].as_u64().unwrap();
    assert!(ok >= 3, "{json}");
    assert_eq!(runs["failed"].as_u64(), Some(0), "{json}");
    assert_eq!(runs["started"].as_u64(), Some(ok));
    // Default simulator: first text 300 ms after the first audio, tail 120 ms after the end.
    let p50 = json["latency"]["time_to_first_text"]["p50"]
        .as_f64()
        .unwrap();
    assert!((0.295..0.4).contains(&p50), "{json}");
    let rtt = json["latency"]["rtt_last"]["p90"].as_f64().unwrap();
    assert!((0.115..0.25).contains(&rtt), "{json}");
    assert_eq!(json["transcript"]["wer_max"].as_f64(), Some(0.0));
    // 11 words per stream over the send window.
    let t = &json["throughput"];
    assert_eq!(t["output_tokens"].as_u64(), Some(11 * ok));
    let per_s = t["output_tokens_per_s"].as_f64().unwrap();
    let window = t["send_window_s"].as_f64().unwrap();
    assert!((per_s - 11.0 * ok as f64 / window).abs() < 1e-9);
    assert!(plain[2].contains(&format!("ok {ok} ")), "{stderr}");

    // --quiet: no live lines at all.
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"]).arg(&config).args([
            "--duration",
            "2s",
            "--no-watch",
            "--quiet",
        ]);
        support::run_bounded(cmd.env_remove("RTPROBE_LOG"), LIMIT)
    })
    .await
    .unwrap();
    sim.shutdown().await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("rtprobe: "), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("latency "));
}
