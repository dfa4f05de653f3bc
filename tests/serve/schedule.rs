//! Scheduler behaviour on a paused clock: tick grid, offsets, jitter, skips, concurrency,
//! backstop, panics, shutdown and probe-set replacement.

use crate::support;

use std::sync::Arc;
use std::time::Duration;

use rtprobe::probe::ErrorType;
use rtprobe::scheduler::{BACKSTOP_ERROR, PANIC_ERROR, Scheduler};
use support::serve::{Act, FakeRunner, Recorder, spec, specs};
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);

fn start(seed: u64) -> (Scheduler, Arc<FakeRunner>, Arc<Recorder>) {
    let runner = FakeRunner::new();
    let events = Recorder::new();
    let s = Scheduler::new(runner.clone(), events.clone(), seed);
    (s, runner, events)
}

/// A scheduler running the one probe of `fields`, whose streams do `act`.
fn one_probe(seed: u64, fields: &str, act: Act) -> (Scheduler, Arc<FakeRunner>, Arc<Recorder>) {
    let (mut s, runner, events) = start(seed);
    let p = spec(fields);
    runner.act(&p, act);
    s.apply(&[Arc::new(p)], runner.clone());
    (s, runner, events)
}

/// Until `name`'s first run has started (on the paused clock).
async fn first_run(events: &Recorder, name: &str) {
    while events.starts_of(name).is_empty() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn ticks_on_an_absolute_grid_without_drift() {
    // Each run takes 3 s, so a drifting "sleep interval after the run" loop would show.
    let (_s, runner, events) = one_probe(7, "name: grid, interval: 10s", Act::sleep(3 * S));
    // The paused clock has not moved since the probe was applied.
    let t0 = Instant::now();
    tokio::time::sleep(100 * S).await;
    let starts = runner.starts_of("grid");
    assert!(starts.len() >= 9 && starts.len() <= 10, "{}", starts.len());
    let first = starts[0].1 - t0;
    assert!(
        first < 10 * S,
        "start offset {first:?} not in [0, interval)"
    );
    for (k, (_, t)) in starts.iter().enumerate() {
        assert_eq!(*t - starts[0].1, 10 * S * k as u32, "tick {k} drifted");
    }
    // On a paused clock nothing is late beyond the timer wheel's 1 ms resolution.
    let delays = events.starts_of("grid");
    assert_eq!(delays.len(), starts.len());
    assert!(
        delays.iter().all(|(d, _)| *d < Duration::from_millis(2)),
        "{delays:?}"
    );
    assert_eq!(events.skipped_of("grid"), 0);
}

#[tokio::test(start_paused = true)]
async fn offsets_spread_and_jitter_stays_within_bounds() {
    let (mut s, runner, _events) = start(99);
    let t0 = Instant::now();
    let fields: Vec<String> = (0..20)
        .map(|i| format!("name: p{i}, interval: 10s, jitter: 0.2"))
        .collect();
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let probes: Vec<_> = specs(&fields).into_iter().map(Arc::new).collect();
    s.apply(&probes, runner.clone());
    tokio::time::sleep(60 * S).await;
    let mut firsts = Vec::new();
    for i in 0..20 {
        let starts = runner.starts_of(&format!("p{i}"));
        assert!(starts.len() >= 5, "p{i}: {}", starts.len());
        let first = starts[0].1 - t0;
        // offset in [0, 10 s) plus jitter in [0, 2 s).
        assert!(first < 12 * S, "p{i} first start {first:?}");
        firsts.push(first);
        for (k, (_, t)) in starts.iter().enumerate().skip(1) {
            let rel = (*t - starts[0].1).as_secs_f64() - 10.0 * k as f64;
            assert!(rel.abs() < 2.0, "p{i} tick {k}: {rel} s off the grid");
        }
    }
    firsts.sort();
    firsts.dedup();
    assert!(firsts.len() >= 15, "offsets not spread: {firsts:?}");
    // Different seeds give different schedules (per-process randomness).
    let (mut s2, r2, _) = start(100);
    let t1 = Instant::now();
    s2.apply(&probes[..1], r2.clone());
    tokio::time::sleep(13 * S).await;
    let other = r2.starts_of("p0")[0].1 - t1;
    assert_ne!(other, runner.starts_of("p0")[0].1 - t0);
}

#[tokio::test(start_paused = true)]
async fn slow_run_skips_ticks_and_never_overlaps() {
    // 11 s runs on a 10 s interval: every other tick finds the previous run going.
    let (_s, runner, events) = one_probe(1, "name: slow, interval: 10s", Act::sleep(11 * S));
    tokio::time::sleep(200 * S).await;
    let starts = runner.starts_of("slow");
    let skipped = events.skipped_of("slow");
    assert!(skipped >= 8, "skipped {skipped}");
    let ticks = starts.len() as u64 + skipped;
    assert!((19..=20).contains(&ticks), "ticks {ticks}");
    for w in starts.windows(2) {
        assert!(w[1].1 - w[0].1 >= 11 * S, "overlapping runs");
    }
    assert_eq!(events.max_in_flight_of("slow"), 1);
    // Skipped ticks are not queued: the run after a skip starts on the grid, 20 s later.
    assert_eq!(starts[1].1 - starts[0].1, 20 * S);
}

#[tokio::test(start_paused = true)]
async fn concurrency_runs_n_streams_per_run() {
    let (_s, runner, events) =
        one_probe(2, "name: fan, interval: 10s, concurrency: 3", Act::sleep(S));
    tokio::time::sleep(35 * S).await;
    let runs = events.starts_of("fan").len();
    assert!(runs >= 3);
    let streams = runner.starts_of("fan");
    assert_eq!(streams.len(), runs * 3);
    for chunk in streams.chunks(3) {
        let mut ids: Vec<u32> = chunk.iter().map(|(i, _)| *i).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2]);
        assert!(
            chunk.iter().all(|(_, t)| *t == chunk[0].1),
            "streams of a run start together"
        );
    }
    assert_eq!(events.max_in_flight_of("fan"), 3);
    tokio::time::sleep(15 * S).await;
    let done = events.finished_of("fan");
    assert!(done.iter().all(|(_, r)| r.is_ok()));
    // Every finished stream gave back its in-flight slot.
    let open = events.in_flight_of("fan");
    assert_eq!(open as usize, runner.starts_of("fan").len() - done.len());
}

#[tokio::test(start_paused = true)]
async fn backstop_fails_a_stream_that_ignores_its_timeout() {
    let (_s, runner, events) = one_probe(
        3,
        "name: stuck, interval: 60s, timeout: 10s",
        Act::sleep(50 * S),
    );
    tokio::time::sleep(75 * S).await;
    let done = events.finished_of("stuck");
    assert!(!done.is_empty());
    let e = done[0].1.as_ref().unwrap_err();
    assert_eq!(e.kind, BACKSTOP_ERROR);
    assert!(e.detail.contains("backstop"), "{}", e.detail);
    let (_, started) = events.starts_of("stuck")[0];
    let open = events.in_flight_of("stuck");
    assert_eq!(open as usize, runner.starts_of("stuck").len() - done.len());
    // Backstop = timeout + 2 s, measured on the paused clock.
    assert_eq!(events.finish_times_of("stuck")[0] - started, 12 * S);
}

#[tokio::test(start_paused = true)]
async fn panic_in_a_stream_is_contained_and_counted() {
    let (mut s, runner, events) = start(4);
    let [boom, fine] = <[_; 2]>::try_from(specs(&[
        "name: boom, interval: 5s",
        "name: fine, interval: 5s",
    ]))
    .unwrap();
    runner.act(&boom, Act::panic());
    s.apply(&[Arc::new(boom), Arc::new(fine)], runner.clone());
    tokio::time::sleep(31 * S).await;
    let b = events.finished_of("boom");
    assert!(
        b.len() >= 5,
        "the panicking probe kept its schedule: {}",
        b.len()
    );
    for (_, r) in &b {
        let e = r.as_ref().unwrap_err();
        assert_eq!(e.kind, PANIC_ERROR);
        assert!(
            e.detail.contains("panicked: fake runner panic"),
            "{}",
            e.detail
        );
        assert!(!e.detail.contains('\n'));
    }
    assert_eq!(events.in_flight_of("boom"), 0);
    let f = events.finished_of("fine");
    assert!(f.len() >= 5 && f.iter().all(|(_, r)| r.is_ok()));
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_runs_within_grace() {
    let (s, runner, events) = one_probe(5, "name: quick, interval: 10s", Act::sleep(2 * S));
    first_run(&events, "quick").await;
    let t = Instant::now();
    let report = s.shutdown(5 * S).await;
    assert!(report.drained);
    assert!(t.elapsed() <= 2 * S);
    let done = events.finished_of("quick");
    assert_eq!(done.len(), 1);
    assert!(done[0].1.is_ok());
    // No new runs after shutdown.
    tokio::time::sleep(60 * S).await;
    assert_eq!(runner.starts_of("quick").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn shutdown_cancels_after_grace_and_records_cancelled() {
    let (s, _runner, events) = one_probe(
        6,
        "name: long, interval: 100s, concurrency: 2",
        Act::sleep(60 * S),
    );
    first_run(&events, "long").await;
    let t = Instant::now();
    let report = s.shutdown(5 * S).await;
    assert!(!report.drained);
    let took = t.elapsed();
    assert!(took >= 5 * S && took < 6 * S, "{took:?}");
    let done = events.finished_of("long");
    assert_eq!(done.len(), 2);
    for (_, r) in done {
        assert_eq!(r.unwrap_err().kind, ErrorType::Cancelled);
    }
    assert_eq!(events.in_flight_of("long"), 0);
}

#[tokio::test(start_paused = true)]
async fn apply_keeps_unchanged_restarts_changed_stops_removed() {
    let (mut s, runner, events) = start(8);
    let first = specs(&[
        "name: a, interval: 10s",
        "name: b, interval: 10s",
        "name: c, interval: 10s",
    ]);
    runner.act(&first[2], Act::sleep(4 * S));
    let [a, b, c] = <[_; 3]>::try_from(first).unwrap().map(Arc::new);
    s.apply(&[a.clone(), b.clone(), c.clone()], runner.clone());
    tokio::time::sleep(25 * S).await;
    let [b2, d] = <[_; 2]>::try_from(specs(&["name: b, interval: 7s", "name: d, interval: 10s"]))
        .unwrap()
        .map(Arc::new);
    let r = s.apply(&[a.clone(), b2, d], runner.clone());
    assert_eq!(r.kept, vec!["a"]);
    assert_eq!(r.changed, vec!["b"]);
    assert_eq!(r.added, vec!["d"]);
    assert_eq!(r.removed, vec!["c"]);
    assert_eq!(s.probe_names(), vec!["a", "b", "d"]);
    let t_apply = Instant::now();
    let c_before = runner.starts_of("c").len();
    tokio::time::sleep(60 * S).await;
    // c stopped (an in-flight run may have finished, but none started).
    assert_eq!(runner.starts_of("c").len(), c_before);
    // Its last run was allowed to finish and gave back its slot.
    assert_eq!(events.finished_of("c").len(), c_before);
    assert_eq!(events.in_flight_of("c"), 0);
    // a kept its grid across the reload.
    let a_starts = runner.starts_of("a");
    assert!(a_starts.iter().any(|(_, t)| *t > t_apply));
    for (k, (_, t)) in a_starts.iter().enumerate() {
        assert_eq!(*t - a_starts[0].1, 10 * S * k as u32);
    }
    // b now runs every 7 s.
    let b_after: Vec<_> = runner
        .starts_of("b")
        .into_iter()
        .filter(|(_, t)| *t > t_apply)
        .collect();
    assert!(b_after.len() >= 7);
    for w in b_after.windows(2) {
        assert_eq!(w[1].1 - w[0].1, 7 * S);
    }
    assert!(runner.starts_of("d").len() >= 5);
}

#[tokio::test(start_paused = true)]
async fn changed_probe_does_not_overlap_its_previous_run() {
    let (mut s, runner, events) = start(9);
    let old = spec("name: x, interval: 10s");
    runner.act(&old, Act::sleep(9 * S));
    let old = Arc::new(old);
    s.apply(&[old], runner.clone());
    first_run(&events, "x").await;
    // Changed right after its run began: the new schedule's ticks skip while it runs.
    let new = spec("name: x, interval: 500ms");
    runner.act(&new, Act::sleep(Duration::from_millis(100)));
    let new = Arc::new(new);
    s.apply(&[new], runner.clone());
    tokio::time::sleep(20 * S).await;
    assert_eq!(events.max_in_flight_of("x"), 1);
    assert!(events.skipped_of("x") >= 10);
}
