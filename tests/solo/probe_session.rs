//! Multi-utterance sessions (`utterances:`) against the simulator, in both dialects: each
//! utterance's slice of the timeline gives its own TTFT, ITL, round trips and finalize, checked
//! against the simulator's per-utterance ground truth within 2 ms; a failure in utterance k fails
//! the run and names k.

use crate::support;
use crate::support::sim::take_session_record;

use std::time::{Duration, Instant};

use rtprobe::audio::PreparedAudio;
use rtprobe::config::{Dialect, ProbeSpec};
use rtprobe::derive::derive;
use rtprobe::probe::{Timeline, run_session};
use rtprobe::simulate::{Fault, SessionRecord, SimConfig};
use support::probe::{dialect_run, since};
use support::sim::start;

const TOLERANCE: f64 = 0.002;
const TRANSCRIPT: &str = "Mary had a little lamb, its fleece was white as snow.";
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn timed_sim(dialect: Dialect) -> SimConfig {
    SimConfig {
        dialect,
        first_text_delay: Duration::from_millis(200),
        token_interval: Duration::from_millis(60),
        tail_delay: Duration::from_millis(120),
        done_delay: Duration::from_millis(30),
        empty_deltas_per_word: 1,
        hold_last_words: 2,
        ..SimConfig::default()
    }
}

async fn session(spec: &ProbeSpec, clips: &[PreparedAudio]) -> Timeline {
    let refs: Vec<&PreparedAudio> = clips.iter().collect();
    run_session(spec, &refs, &mut |_: &rtprobe::probe::ProgressEvent| {}).await
}

/// Errors of every utterance's derived values against the simulator's ground truth.
fn errors(tl: &Timeline, rec: &SessionRecord, n: usize) -> Vec<(String, f64)> {
    assert_eq!(tl.utterances.len(), n);
    assert_eq!(rec.utterances.len(), n);
    let mut out = Vec::new();
    for k in 0..n {
        let view = tl.utterance(k).expect("utterance view");
        let t0 = view.t0.expect("t0");
        let d = derive(&view, Some(TRANSCRIPT));
        assert_eq!(d.wer, Some(0.0), "utterance {k}: {:?}", view.transcript());
        let truth = rec.deltas(k as u32);
        assert_eq!(view.deltas.len(), truth.len(), "utterance {k}");
        let words: Vec<Instant> = truth.iter().filter(|d| d.1).map(|d| d.0).collect();
        let u = &rec.utterances[k];
        let end_at = u.end_at.expect("end");
        let first_audio = u.first_audio_at.expect("first audio");
        let done_at = rec.done_at(k as u32).expect("done");
        let name = |m: &str| format!("u{k}.{m}");
        out.push((name("ttft"), d.ttft.unwrap() - since(t0, words[0])));
        out.push((
            name("time_to_first_text"),
            d.time_to_first_text.unwrap() - (words[0] - first_audio).as_secs_f64(),
        ));
        out.push((
            name("rtt_last"),
            d.rtt_last.unwrap() - (*words.last().unwrap() - end_at).as_secs_f64(),
        ));
        out.push((
            name("finalize"),
            d.finalize.unwrap() - (done_at - end_at).as_secs_f64(),
        ));
        for (j, gap) in d.itl_gaps.iter().enumerate() {
            out.push((name("itl"), gap - (words[j + 1] - words[j]).as_secs_f64()));
        }
        if k > 0 {
            // A later utterance has no connect phases and counts from its own first send.
            assert!(d.phases.is_empty(), "{:?}", d.phases);
            assert!(d.e2e.unwrap() < 5.0);
        }
    }
    out
}

async fn three_utterances(dialect: Dialect) {
    let _one_at_a_time = TIMING.lock().await;
    let sim = start(timed_sim(dialect)).await;
    let (spec, clip) = dialect_run(&sim, dialect, Duration::from_millis(1500), 0);
    let clips = vec![clip.clone(), clip.clone(), clip];
    // Four sessions; each utterance must be within the tolerance in two of them (a session may
    // lose the CPU on a shared 2-core machine, while a real bias fails every session), and every
    // value within 10× of it.
    const SESSIONS: usize = 4;
    let mut clean = [0usize; 3];
    let mut all = Vec::new();
    for _ in 0..SESSIONS {
        let tl = session(&spec, &clips).await;
        assert!(tl.succeeded(), "{:?}", tl.outcome);
        assert_eq!(tl.failed_utterance, None);
        let rec = take_session_record(&sim);
        let e = errors(&tl, &rec, 3);
        for (k, c) in clean.iter_mut().enumerate() {
            let prefix = format!("u{k}.");
            *c += usize::from(
                e.iter()
                    .filter(|(n, _)| n.starts_with(&prefix))
                    .all(|(_, v)| v.abs() < TOLERANCE),
            );
        }
        all.extend(e);
        // The whole session's record still holds everything: 3 × 11 words.
        assert_eq!(tl.deltas.iter().filter(|d| d.nonempty).count(), 33);
        assert_eq!(tl.audio_sent, Duration::from_millis(4500));
    }
    crate::support::probe::log_worst(&format!("{dialect:?} session, per utterance"), &all);
    assert!(
        clean.iter().all(|c| *c >= 2),
        "clean sessions per utterance {clean:?} (need 2 of {SESSIONS} each): {all:?}"
    );
    crate::support::probe::assert_within_10x(&all, TOLERANCE);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllm_session_per_utterance_values_match_ground_truth() {
    let _alone = crate::support::gate::alone(module_path!());
    three_utterances(Dialect::Vllm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_session_per_utterance_values_match_ground_truth() {
    let _alone = crate::support::gate::alone(module_path!());
    three_utterances(Dialect::OpenAi).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_in_a_later_utterance_fails_the_run_and_names_it() {
    // Not timed itself, but it would steal the CPU from the timed tests running beside it.
    let _timed = crate::support::gate::one_at_a_time(module_path!(), &TIMING).await;
    for dialect in [Dialect::Vllm, Dialect::OpenAi] {
        let sim = start(SimConfig {
            dialect,
            fault: Fault::ErrorMidStream,
            fault_from_utterance: 1,
            token_interval: Duration::from_millis(20),
            ..SimConfig::default()
        })
        .await;
        let (spec, clip) = dialect_run(&sim, dialect, Duration::from_millis(400), 0);
        let tl = session(&spec, &[clip.clone(), clip.clone(), clip]).await;
        let err = tl.outcome.clone().unwrap_err();
        let want = match dialect {
            Dialect::Vllm => "server_error.processing_error",
            Dialect::OpenAi => "server_error.transcription_failed",
        };
        assert_eq!(err.kind.as_str(), want);
        assert!(
            err.detail.starts_with("utterance 2 of 3: "),
            "{}",
            err.detail
        );
        assert_eq!(tl.failed_utterance, Some(1));
        // The first utterance completed and is derivable; the failing one carries the outcome;
        // none after it exists.
        assert!(tl.utterance(0).unwrap().succeeded());
        assert!(tl.utterance(1).unwrap().outcome.is_err());
        assert!(tl.utterance(2).is_none());
        sim.shutdown().await;
    }
}
