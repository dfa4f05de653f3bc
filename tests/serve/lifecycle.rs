//! `serve` start-up and shutdown: an invalid initial config fails to start; `--duration`
//! stops on its own with a summary; a stop signal cancels in-flight runs after the grace
//! period (recorded as cancelled) and flushes metrics; a ConfigMap-style symlink swap
//! reloads the config, and an invalid swap keeps the old one.

use crate::support;

use std::path::Path;
use std::time::Duration;

use rtprobe::probe::ErrorType;
use rtprobe::serve::{Serve, ServeArgs, ServeError, StopReason};
use support::serve::{FakeBackend, load_test_config, wait_until};

fn args(path: &Path) -> ServeArgs {
    let mut a = ServeArgs::new(path);
    a.no_watch = true;
    a
}

#[tokio::test]
async fn invalid_initial_config_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtprobe.conf");
    std::fs::write(&path, "probe a 100\ninvalid\n").unwrap();
    let r = Serve::start(args(&path), load_test_config, |_| Ok(FakeBackend::new())).await;
    match r {
        Err(ServeError::Config(msg)) => assert!(msg.contains("line 2"), "{msg}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("started with an invalid config"),
    }
}

#[tokio::test]
async fn duration_mode_stops_and_summarises() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtprobe.conf");
    std::fs::write(
        &path,
        "probe ok 50 concurrency=2\nprobe down 50 fake.fail=connect\n",
    )
    .unwrap();
    let mut a = args(&path);
    a.duration = Some(Duration::from_millis(800));
    let backend = FakeBackend::new();
    let b = backend.handle();
    let serve = Serve::start(a, load_test_config, move |_| Ok(backend))
        .await
        .unwrap();
    let outcome = serve.run_until(std::future::pending()).await;
    assert_eq!(outcome.reason, StopReason::DurationElapsed);
    assert!(outcome.drained);
    let s = outcome.summary.expect("summary in duration mode");
    let recorded = b.events.finished.lock().unwrap().len() as u64;
    assert_eq!(
        s.finished(),
        recorded,
        "summary counts every recorded stream"
    );
    assert_eq!(s.runs.started, recorded, "every started stream finished");
    let failed_down = b.events.finished_of("down").len() as u64;
    assert!(failed_down >= 1);
    assert_eq!(s.runs.failures.get("connect").copied(), Some(failed_down));
    assert_eq!(s.runs.succeeded, b.events.finished_of("ok").len() as u64);
    // Nearest rank over the fake's TTFTs (0.25 and 0.26): the smallest is exact, the rest
    // within the sketch's 1 %.
    assert_eq!(s.latency.ttft.p50, Some(0.25));
    let p90 = s.latency.ttft.p90.unwrap();
    assert!((p90 - 0.26).abs() <= 0.26 * 0.01, "{p90}");
    assert_eq!(s.latency.rtt_last.p50, Some(0.5));
    let text = rtprobe::load::render::table(&s).join("\n");
    assert!(
        text.contains(&format!("  error.type  connect {failed_down}\n")),
        "{text}"
    );
    assert!(text.contains("  TTFT          250.0 ms "), "{text}");
    assert!(*b.flushed.lock().unwrap(), "metrics flushed at the end");
}

#[tokio::test]
async fn stop_cancels_in_flight_after_grace() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtprobe.conf");
    std::fs::write(
        &path,
        "probe long 50 timeout_ms=60000 fake.sleep_ms=60000\n",
    )
    .unwrap();
    let mut a = args(&path);
    a.grace_period = Duration::from_millis(300);
    let backend = FakeBackend::new();
    let b = backend.handle();
    let serve = Serve::start(a, load_test_config, move |_| Ok(backend))
        .await
        .unwrap();
    let addr = serve.local_addr();
    assert!(
        wait_until(Duration::from_secs(10), || !b
            .events
            .starts_of("long")
            .is_empty())
        .await
    );
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
}

/// Lay out a directory the way a mounted ConfigMap looks:
/// `rtprobe.conf -> ..data/rtprobe.conf`, `..data -> ..<version>`.
fn configmap_version(dir: &Path, version: &str, text: &str) {
    let v = dir.join(version);
    std::fs::create_dir(&v).unwrap();
    std::fs::write(v.join("rtprobe.conf"), text).unwrap();
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    // Atomic swap, as the kubelet does.
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    let link = dir.join("rtprobe.conf");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/rtprobe.conf", &link).unwrap();
    }
}

#[tokio::test]
async fn configmap_symlink_swap_reloads() {
    let dir = tempfile::tempdir().unwrap();
    configmap_version(dir.path(), "..v1", "probe a 60000\n");
    let path = dir.path().join("rtprobe.conf");
    let mut a = ServeArgs::new(&path);
    a.no_watch = false;
    let backend = FakeBackend::new();
    let b = backend.handle();
    let serve = Serve::start(a, load_test_config, move |_| Ok(backend))
        .await
        .unwrap();
    let names =
        |s: &Serve| -> Vec<String> { s.config().probes.iter().map(|p| p.name.clone()).collect() };
    assert_eq!(names(&serve), vec!["a"]);

    configmap_version(dir.path(), "..v2", "probe a 60000\nprobe b 60000\n");
    assert!(
        wait_until(Duration::from_secs(10), || names(&serve) == vec!["a", "b"]).await,
        "swap to v2 not picked up"
    );
    // The first entry is the initial load.
    assert_eq!(*b.reloads.lock().unwrap(), vec![true, true]);

    // An invalid version keeps v2 running and records a failed reload.
    configmap_version(dir.path(), "..v3", "invalid\n");
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
    configmap_version(dir.path(), "..v4", "invalid\n");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(b.reloads.lock().unwrap().len(), 3, "no-op change reloaded");
    serve.run_until(async {}).await;
}
