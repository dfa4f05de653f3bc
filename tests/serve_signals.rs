//! `serve::run` with real Unix signals sent to this test process: SIGHUP reloads the config,
//! SIGTERM stops with cancellation and returns normally. Alone in its own test binary because
//! it signals the whole process.

// The shared support tree; this binary uses only a part of it.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use rtprobe::serve::{ServeArgs, StopReason};
use support::serve::{FakeBackend, load_test_config, wait_until};

fn kill(sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(std::process::id().to_string())
        .status()
        .expect("kill(1) available");
    assert!(status.success());
}

#[tokio::test]
async fn sighup_reloads_and_sigterm_stops() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rtprobe.conf");
    std::fs::write(&path, "probe a 50 timeout_ms=60000 fake.sleep_ms=60000\n").unwrap();
    let mut args = ServeArgs::new(&path);
    args.no_watch = true;
    args.listen = Some("127.0.0.1:0".into());
    args.grace_period = Duration::from_millis(200);
    let backend = FakeBackend::new();
    let b = backend.handle();
    let task = tokio::spawn(rtprobe::serve::run(args, load_test_config, move |_| {
        Ok(backend)
    }));
    assert!(
        wait_until(Duration::from_secs(10), || !b
            .events
            .starts_of("a")
            .is_empty())
        .await
    );
    // The SIGHUP handler is installed right after start-up returns; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    std::fs::write(
        &path,
        "probe a 50 timeout_ms=60000 fake.sleep_ms=60000\nprobe b 60000\n",
    )
    .unwrap();
    kill("HUP");
    assert!(
        wait_until(Duration::from_secs(10), || *b.reloads.lock().unwrap()
            == vec![true, true])
        .await,
        "SIGHUP did not reload"
    );

    kill("TERM");
    let outcome = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("stopped after SIGTERM")
        .expect("task joined")
        .expect("serve ran");
    assert_eq!(outcome.reason, StopReason::Signal);
    assert!(!outcome.drained);
    let done = b.events.finished_of("a");
    assert!(!done.is_empty());
    assert!(done.iter().any(|(_, r)| {
        r.as_ref()
            .is_err_and(|e| e.kind == rtprobe::probe::ErrorType::Cancelled)
    }));
    assert!(*b.flushed.lock().unwrap());
}
