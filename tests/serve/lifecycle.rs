//! `serve` start-up and shutdown: an invalid initial config fails to start; `--duration`
//! stops on its own with a summary; a stop signal cancels in-flight runs after the grace
//! period (recorded as cancelled) and flushes metrics; a ConfigMap-style symlink swap
//! reloads the config, and an invalid swap keeps the old one.

use crate::support;

use std::path::Path;
use std::time::Duration;

use rtprobe::config::load;
use rtprobe::probe::ErrorType;
use rtprobe::serve::backend::ProbeBackend;
use rtprobe::serve::{Serve, ServeArgs, ServeError, StopReason};
use rtprobe::simulate::Fault;
use support::serve::*;

fn args(path: &Path) -> ServeArgs {
    let mut a = ServeArgs::new(path);
    a.no_watch = true;
    a
}

#[tokio::test]
async fn invalid_initial_config_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "probes:\n  - {name: a, interval: often}\n");
    let r = Serve::start(args(&path), load, ProbeBackend::new).await;
    match r {
        Err(ServeError::Config(e)) => assert!(e.to_string().contains("line 2"), "{e}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("started with an invalid config"),
    }
}

#[tokio::test]
async fn duration_mode_stops_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let sim = quick_sim(Fault::None).await;
    let text = config_of(&[
        sim_entry(&sim, "name: ok, interval: 1s, concurrency: 2"),
        // Nothing listens there: every run fails to connect.
        probe_entry(NOWHERE, "demo-realtime", "name: down, interval: 1s"),
    ]);
    let mut a = args(&write_config(dir.path(), &text));
    a.duration = Some(Duration::from_millis(2500));
    let b = Watch::new();
    let serve = Serve::start(a, load, b.factory()).await.unwrap();
    let outcome = serve.run_until(std::future::pending()).await;
    assert_eq!(outcome.reason, StopReason::DurationElapsed);
    assert!(outcome.drained);
    let s = outcome.summary.expect("summary in duration mode");
    let recorded = b.events.finished.len() as u64;
    assert_eq!(
        s.finished(),
        recorded,
        "summary counts every recorded stream"
    );
    assert_eq!(s.runs.started, recorded, "every started stream finished");
    let failed_down = b.events.finished_of("down").len() as u64;
    assert!(failed_down >= 1);
    assert_eq!(s.runs.failures.get("connect").copied(), Some(failed_down));
    let succeeded = b
        .events
        .finished_of("ok")
        .iter()
        .filter(|(_, r)| r.is_ok())
        .count();
    assert_eq!(s.runs.succeeded, succeeded as u64);
    // Nearest rank over the TTFTs the runs measured, within the sketch's 1 %.
    let ok = b.events.derived_of("ok");
    let rank = |values: Vec<f64>, q: f64| {
        let mut v = values;
        v.sort_by(f64::total_cmp);
        v[((q * v.len() as f64).ceil() as usize).max(1) - 1]
    };
    let ttfts: Vec<f64> = ok.iter().filter_map(|d| d.ttft).collect();
    let rtts: Vec<f64> = ok.iter().filter_map(|d| d.rtt_last).collect();
    let near = |got: Option<f64>, want: f64| (got.unwrap() - want).abs() <= want * 0.01;
    let (p50, p90) = (rank(ttfts.clone(), 0.5), rank(ttfts, 0.9));
    assert!(
        near(s.latency.ttft.p50, p50),
        "{:?} vs {p50}",
        s.latency.ttft.p50
    );
    assert!(
        near(s.latency.ttft.p90, p90),
        "{:?} vs {p90}",
        s.latency.ttft.p90
    );
    let rtt = rank(rtts, 0.5);
    assert!(
        near(s.latency.rtt_last.p50, rtt),
        "{:?} vs {rtt}",
        s.latency.rtt_last.p50
    );
    let text = rtprobe::load::render::table(&s).join("\n");
    assert!(
        text.contains(&format!("  error.type  connect {failed_down}\n")),
        "{text}"
    );
    let ttft_ms = format!("{:.1} ms ", s.latency.ttft.p50.unwrap() * 1000.0);
    assert!(
        text.lines()
            .any(|l| l.starts_with("  TTFT ") && l.contains(&ttft_ms)),
        "{text}"
    );
    assert!(*b.flushed.lock().unwrap(), "metrics flushed at the end");
    sim.shutdown().await;
}

#[tokio::test]
async fn stop_cancels_in_flight_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    // All deltas, then no `done`: a run waits for its 4 s timeout (below the done deadline).
    let sim = quick_sim(Fault::NeverDone).await;
    let path = write_config(dir.path(), &sim_config(&sim, &["name: long, interval: 4s"]));
    let mut a = args(&path);
    a.grace_period = Duration::from_millis(300);
    let b = Watch::new();
    let serve = Serve::start(a, load, b.factory()).await.unwrap();
    let addr = serve.local_addr();
    assert!(b.run_started("long", Duration::from_secs(10)).await);
    let t = std::time::Instant::now();
    let outcome = serve.run_until(async {}).await;
    let took = t.elapsed();
    assert_eq!(outcome.reason, StopReason::Signal);
    assert!(!outcome.drained);
    assert!(outcome.summary.is_none());
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    let done = b.events.finished_of("long");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.as_ref().unwrap_err().kind, ErrorType::Cancelled);
    assert_eq!(b.events.in_flight_of("long"), 0);
    assert!(*b.flushed.lock().unwrap());
    // The HTTP server is closed.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    sim.shutdown().await;
}

/// Lay out a directory the way a mounted ConfigMap looks:
/// `rtprobe.yaml -> ..data/rtprobe.yaml`, `..data -> ..<version>`.
fn configmap_version(dir: &Path, version: &str, text: &str) {
    let v = dir.join(version);
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("rtprobe.yaml"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    // Atomic swap, as the kubelet does.
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("rtprobe.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/rtprobe.yaml", &link).unwrap();
    }
}

#[tokio::test]
async fn configmap_symlink_swap_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = ("name: a, interval: 60s", "name: b, interval: 60s");
    let v1 = config_text(NOWHERE, "fake-model", &[pa]);
    configmap_version(dir.path(), "..v1", &v1);
    let path = dir.path().join("rtprobe.yaml");
    let mut a = ServeArgs::new(&path);
    a.no_watch = false;
    let b = Watch::new();
    let serve = Serve::start(a, load, b.factory()).await.unwrap();
    let names =
        |s: &Serve| -> Vec<String> { s.config().probes.iter().map(|p| p.name.clone()).collect() };
    assert_eq!(names(&serve), vec!["a"]);

    let v2 = config_text(NOWHERE, "fake-model", &[pa, pb]);
    configmap_version(dir.path(), "..v2", &v2);
    assert!(
        wait_until(Duration::from_secs(10), || names(&serve) == vec!["a", "b"]).await,
        "swap to v2 not picked up"
    );
    // The first entry is the initial load.
    assert_eq!(*b.reloads.lock().unwrap(), vec![true, true]);

    // An invalid version keeps v2 running and records a failed reload.
    configmap_version(dir.path(), "..v3", "probes: [\n");
    assert!(
        wait_until(Duration::from_secs(10), || b.reloads.lock().unwrap().len()
            == 3)
        .await,
        "swap to v3 not seen"
    );
    assert_eq!(*b.reloads.lock().unwrap(), vec![true, true, false]);
    assert_eq!(names(&serve), vec!["a", "b"]);

    // Touching an unrelated file in the directory does not reload.
    std::fs::write(dir.path().join("other.txt"), "x").unwrap();
    // Rewriting the same contents (a no-op event on the file itself) does not reload either.
    configmap_version(dir.path(), "..v4", "probes: [\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.reloads.lock().unwrap().len(), 3, "no-op change reloaded");
    serve.run_until(async {}).await;
}
