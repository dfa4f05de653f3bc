//! Emission timing against the recorded ground truth: deadlines are exact multiples of the
//! configured interval from the right base, sends happen at (not before) their deadlines, the
//! client receives what the records say was sent, and jitter is reproducible per seed.

use crate::support;

use std::time::{Duration, Instant};

use rtprobe::simulate::{EmitKind, SessionRecord, SimConfig};
use support::sim::*;

const MS: Duration = Duration::from_millis(1);
/// Lateness tolerated between a deadline and the send returning, on a loaded 2-core machine.
// A sanity bound on the simulator's own emit lateness; the exact checks are the deadline
// equalities. Loose because CI machines are shared: a busy neighbour can stall a wake-up.
const SLACK: Duration = Duration::from_millis(250);

fn timed() -> SimConfig {
    SimConfig {
        transcript: "one two three four five".into(),
        first_text_delay: 100 * MS,
        token_interval: 30 * MS,
        empty_deltas_per_word: 1,
        hold_last_words: 1,
        tail_delay: 60 * MS,
        done_delay: 20 * MS,
        ..SimConfig::default()
    }
}

/// Appends paced every 100 ms for `chunks`, then END; returns the client's deltas and done.
async fn paced_run(c: &mut Client, chunks: usize) -> (Vec<(Instant, String)>, Instant) {
    c.hello().await;
    c.send_all(&[UPDATE, START]).await;
    let t0 = Instant::now();
    let mut deltas = Vec::new();
    let mut sent = 0;
    while sent < chunks {
        let due = t0 + 100 * MS * sent as u32;
        let now = Instant::now();
        if now >= due {
            c.send(&append(1600)).await;
            sent += 1;
            continue;
        }
        // Keep reading while waiting for the next send, so receive times are not delayed.
        match c.next(due - now).await {
            Got::Json(at, v, _) => {
                assert_eq!(v["type"], "transcription.delta", "{v}");
                deltas.push((at, v["delta"].as_str().unwrap().to_string()));
            }
            Got::Timeout => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    c.send(END).await;
    let (rest, done_at, _) = c.until_done().await;
    deltas.extend(rest);
    (deltas, done_at)
}

fn deadlines(rec: &SessionRecord) -> Vec<(Instant, Instant, bool)> {
    rec.emissions
        .iter()
        .filter_map(|e| match e.kind {
            EmitKind::Delta { nonempty } => Some((e.deadline.unwrap(), e.at, nonempty)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn deltas_follow_the_grid_and_the_tail() {
    let _alone = crate::support::gate::alone(module_path!());
    let sim = start(timed()).await;
    let mut c = Client::connect(sim.addr()).await;
    let (client_deltas, client_done) = paced_run(&mut c, 8).await;
    c.close().await;
    let rec = crate::support::sim::session_record(&sim);
    sim.shutdown().await;

    let u = &rec.utterances[0];
    let t_audio = u.first_audio_at.unwrap();
    let t_end = u.end_at.unwrap();
    let d = deadlines(&rec);
    // 5 words with one empty token between consecutive words.
    assert_eq!(d.len(), 9);
    let flags: Vec<bool> = d.iter().map(|x| x.2).collect();
    assert_eq!(
        flags,
        [true, false, true, false, true, false, true, false, true]
    );
    // Free tokens sit exactly on t_audio + first_text_delay + i·interval.
    for (i, (deadline, at, _)) in d.iter().enumerate().take(8) {
        assert_eq!(
            *deadline,
            t_audio + 100 * MS + 30 * MS * i as u32,
            "token {i}"
        );
        assert!(*at >= *deadline, "token {i} sent early");
        assert!(
            *at - *deadline < SLACK,
            "token {i} late by {:?}",
            *at - *deadline
        );
    }
    // The held last word is due exactly tail_delay after the final commit's receipt.
    let (held_deadline, held_at, _) = d[8];
    assert_eq!(held_deadline, t_end + 60 * MS);
    assert!(held_at >= held_deadline && held_at - held_deadline < SLACK);
    let done = rec
        .emissions
        .iter()
        .find(|e| e.kind == EmitKind::Done)
        .unwrap();
    assert_eq!(done.deadline.unwrap(), held_deadline + 20 * MS);
    assert!(done.at >= done.deadline.unwrap());

    // What the client received is what was sent, in order, shortly after each emit time.
    assert_eq!(client_deltas.len(), d.len());
    for ((recv, text), (_, sent, nonempty)) in client_deltas.iter().zip(&d) {
        assert_eq!(!text.is_empty(), *nonempty);
        assert!(*recv >= *sent, "received before sent");
        assert!(*recv - *sent < SLACK, "delivery took {:?}", *recv - *sent);
    }
    assert!(client_done >= done.at && client_done - done.at < SLACK);
    // Measured gaps between emitted deltas match token_interval (up to send lateness).
    for w in d[..8].windows(2) {
        let gap = w[1].1 - w[0].1;
        assert!(
            gap.abs_diff(30 * MS) < SLACK,
            "gap {gap:?} vs token_interval 30ms"
        );
    }
}

#[tokio::test]
async fn words_left_at_end_of_audio_keep_the_interval() {
    let _alone = crate::support::gate::alone(module_path!());
    let sim = start(SimConfig {
        transcript: "a b c d e f".into(),
        first_text_delay: 50 * MS,
        token_interval: 25 * MS,
        tail_delay: 10 * MS,
        done_delay: 5 * MS,
        ..SimConfig::default()
    })
    .await;
    let mut c = Client::ready(sim.addr()).await;
    c.send_all(&[START, &append(1600)]).await;
    c.send(END).await; // audio ends long before the words are out
    let (deltas, _, done) = c.until_done().await;
    assert_eq!(deltas.len(), 6);
    assert_eq!(done["text"], " a b c d e f");
    c.close().await;
    let rec = crate::support::sim::session_record(&sim);
    sim.shutdown().await;
    let t_audio = rec.utterances[0].first_audio_at.unwrap();
    let d = deadlines(&rec);
    for (i, (deadline, _, _)) in d.iter().enumerate() {
        // The held word's release (END + 10 ms) is earlier than its grid slot, so the grid wins.
        assert_eq!(
            *deadline,
            t_audio + 50 * MS + 25 * MS * i as u32,
            "token {i}"
        );
    }
}

async fn jitter_run(seed: u64) -> Vec<i64> {
    let sim = start(SimConfig {
        jitter: 4 * MS,
        seed,
        ..timed()
    })
    .await;
    let mut c = Client::ready(sim.addr()).await;
    c.utterance(3).await;
    c.close().await;
    let rec = crate::support::sim::session_record(&sim);
    sim.shutdown().await;
    // Every timed emission's deadline is its grid base shifted by its own jitter draw (unless
    // clamped to stay after the previous one, which the spacing here rules out).
    let t_audio = rec.utterances[0].first_audio_at.unwrap();
    for (i, e) in rec
        .emissions
        .iter()
        .filter(|e| matches!(e.kind, EmitKind::Delta { .. }))
        .enumerate()
        .take(8)
    {
        let base = t_audio + 100 * MS + 30 * MS * i as u32;
        let shifted = if e.jitter_ns >= 0 {
            base + Duration::from_nanos(e.jitter_ns as u64)
        } else {
            base - Duration::from_nanos(e.jitter_ns.unsigned_abs())
        };
        assert_eq!(e.deadline.unwrap(), shifted, "token {i}");
    }
    rec.emissions
        .iter()
        .filter(|e| e.deadline.is_some())
        .map(|e| e.jitter_ns)
        .collect()
}

#[tokio::test]
async fn jitter_is_reproducible_per_seed() {
    let _alone = crate::support::gate::alone(module_path!());
    let a = jitter_run(7).await;
    let b = jitter_run(7).await;
    let c = jitter_run(8).await;
    assert_eq!(a.len(), 10, "9 deltas and done");
    assert_eq!(a, b, "same seed, same jitter");
    assert_ne!(a, c, "another seed, other jitter");
    assert!(a.iter().all(|j| j.abs() <= 4_000_000));
    assert!(a.iter().any(|j| *j != 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_are_independent() {
    let _alone = crate::support::gate::alone(module_path!());
    const N: usize = 64;
    let sim = start(SimConfig {
        first_text_delay: 50 * MS,
        token_interval: 20 * MS,
        tail_delay: 30 * MS,
        done_delay: 10 * MS,
        ..SimConfig::default()
    })
    .await;
    let addr = sim.addr();
    let mut runs = Vec::new();
    for _ in 0..N {
        runs.push(tokio::spawn(async move {
            let mut c = Client::ready(addr).await;
            let (deltas, _, done) = c.utterance(3).await;
            c.close().await;
            (deltas.len(), done["text"].as_str().unwrap().to_string())
        }));
    }
    for r in runs {
        let (n, text) = r.await.unwrap();
        assert_eq!(n, 11);
        assert_eq!(
            text,
            " Mary had a little lamb, its fleece was white as snow."
        );
    }
    let recs = sim.records();
    sim.shutdown().await;
    assert_eq!(recs.iter().filter(|r| r.status == Some(101)).count(), N);
    let mut late: Vec<Duration> = recs
        .iter()
        .flat_map(|r| r.emissions.iter())
        .filter_map(|e| e.deadline.map(|d| e.at - d))
        .collect();
    late.sort();
    assert_eq!(late.len(), N * 12);
    let p99 = late[late.len() * 99 / 100];
    eprintln!(
        "simulator send lateness over {} emissions at N={N}: p50 {:?} p99 {p99:?} max {:?}",
        late.len(),
        late[late.len() / 2],
        late[late.len() - 1]
    );
}
