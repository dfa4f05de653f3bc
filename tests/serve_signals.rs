//! `serve::run` with real Unix signals sent to this test process: SIGHUP reloads the config,
//! SIGTERM stops with cancellation and returns normally. Alone in its own test binary because
//! it signals the whole process.

// The shared support tree; this binary uses only a part of it.
#[allow(dead_code)]
#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use rtprobe::serve::{ServeArgs, StopReason};
use rtprobe::simulate::Fault;
use support::serve::*;

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
    // All deltas, then no `done`: a run of `a` waits for its 6 s timeout (below the done
    // deadline), so one is in flight when SIGTERM comes.
    let sim = quick_sim(Fault::NeverDone).await;
    let hang = sim_entry(&sim, "name: a, interval: 6s");
    let path = dir.path().join("rtprobe.yaml");
    std::fs::write(&path, config_of(std::slice::from_ref(&hang))).unwrap();
    let mut args = ServeArgs::new(&path);
    args.no_watch = true;
    args.listen = Some("127.0.0.1:0".into());
    args.grace_period = Duration::from_millis(200);
    let b = Watch::new();
    let task = tokio::spawn(rtprobe::serve::run(
        args,
        rtprobe::config::load,
        b.factory(),
    ));
    assert!(b.run_started("a", Duration::from_secs(15)).await);
    // The SIGHUP handler is installed right after start-up returns; give it a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let other = probe_entry(NOWHERE, "demo-realtime", "name: b, interval: 60s");
    std::fs::write(&path, config_of(&[hang, other])).unwrap();
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
    sim.shutdown().await;
}
