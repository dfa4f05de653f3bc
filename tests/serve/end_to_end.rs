//! `serve` with the production backend against the simulator, in one process: probes run on
//! their schedule while the OTLP collector is down, `/metrics` shows them, and a reload that
//! removes a probe stops exporting it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtprobe::serve::ReloadTrigger;

use crate::support;

async fn get(addr: SocketAddr, path: &str) -> String {
    let r = support::serve::http(addr, "GET", path, "").await;
    format!("HTTP/1.1 {}\r\n{}", r.status, r.body)
}

fn config_text(sim: SocketAddr, otlp_port: u16, probes: &[&str]) -> String {
    let clip = crate::support::clip();
    let mut text = format!(
        "server:\n  listen: 127.0.0.1:0\notlp:\n  endpoint: http://127.0.0.1:{otlp_port}\n  protocol: http/protobuf\n  interval: 1s\n  timeout: 500ms\nprobes:\n"
    );
    for name in probes {
        text += &format!(
            "  - name: {name}\n    target: http://{sim}\n    model: demo-realtime\n    audio: {}\n    interval: 4s\n    timeout: 4s\n    jitter: 0\n",
            clip.display()
        );
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_probe_stops_being_exported_after_reload() {
    let sim = support::sim::start_brisk().await;
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: the OTLP collector is down for the whole test.
    let otlp = support::free_port();
    let text = config_text(sim.addr(), otlp, &["keep", "drop"]);
    let serve = support::serve::start_production(dir.path(), &text).await;
    let addr = serve.local_addr();

    // Both probes run once (start offsets are below the 4 s interval; a 3 s clip each), with
    // the OTLP collector down all along: exports fail on their own thread, probes go on.
    let deadline = Instant::now() + Duration::from_secs(20);
    let runs = |m: &str, probe: &str| {
        m.lines().any(|l| {
            l.starts_with("rtprobe_probe_runs_total{")
                && l.contains(&format!("rtprobe_probe=\"{probe}\""))
                && l.contains("outcome=\"success\"")
        })
    };
    loop {
        let m = get(addr, "/metrics").await;
        if runs(&m, "keep") && runs(&m, "drop") {
            assert!(
                m.contains("rtprobe_round_trip_last_seconds_bucket{"),
                "histograms rendered"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no successful runs of both probes:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    let failures_seen = async {
        loop {
            let m = get(addr, "/metrics").await;
            if m.lines()
                .any(|l| l.starts_with("rtprobe_otlp_export_failures_total") && !l.ends_with(" 0"))
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), failures_seen)
        .await
        .expect("failed OTLP exports are counted");

    // Reload while a run of `drop` is in flight: its late result must not bring it back.
    let in_flight = |m: &str| {
        m.lines().any(|l| {
            l.starts_with("rtprobe_probe_in_flight{")
                && l.contains("rtprobe_probe=\"drop\"")
                && l.ends_with(" 1")
        })
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !in_flight(&get(addr, "/metrics").await) {
        assert!(Instant::now() < deadline, "no run of drop in flight");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    support::serve::write_config(dir.path(), &config_text(sim.addr(), otlp, &["keep"]));
    let report = serve
        .reloader()
        .reload(ReloadTrigger::Http)
        .await
        .expect("valid reload");
    assert!(report.contains("drop"), "{report}");
    let m = get(addr, "/metrics").await;
    assert!(
        !m.contains("rtprobe_probe=\"drop\""),
        "removed probe still exported:\n{m}"
    );
    // Its last run (a 3 s clip) ends meanwhile and is not recorded.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let m = get(addr, "/metrics").await;
    assert!(
        !m.contains("rtprobe_probe=\"drop\""),
        "the removed probe's last run came back:\n{m}"
    );
    assert!(m.contains("rtprobe_probe=\"keep\""));
    assert!(m.contains("rtprobe_config_reload_success 1"), "{m}");

    // An invalid config keeps the old one and flips the gauge.
    support::serve::write_config(dir.path(), "probes: [");
    assert!(serve.reloader().reload(ReloadTrigger::Http).await.is_err());
    let m = get(addr, "/metrics").await;
    assert!(m.contains("rtprobe_config_reload_success 0"), "{m}");
    assert_eq!(serve.config().probes.len(), 1);

    serve.run_until(async {}).await;
    sim.shutdown().await;
}
