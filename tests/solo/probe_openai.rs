//! The probe client in the OpenAI transcription dialect against the simulator serving it:
//! measured values against the simulator's ground truth (same process, same monotonic clock) with
//! manual commits and with server VAD, every fault knob's `error.type`, the 24 kHz rule, and the
//! exact event sequences printed by OpenAI's transcription guide and emitted by SGLang's server
//! replayed to the client (tests/fixtures/openai/).

use crate::support;
use crate::support::sim::take_session_record;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use rtprobe::audio::PreparedAudio;
use rtprobe::config::{Dialect, TurnDetection};
use rtprobe::derive::derive;
use rtprobe::probe::run;
use rtprobe::probe::timeline::SentKind;
use rtprobe::simulate::{ClientFrameKind, EmitKind, Fault, SessionRecord, SimConfig};
use support::probe::{constant_at, dialect_run, openai_spec, since};
use support::sim::start;

const TOLERANCE: f64 = 0.002;

/// The tests of this binary run one at a time: the timed ones measure the machine, not the
/// probe, when another test runs beside them on a 2-core machine.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const TRANSCRIPT: &str = "Mary had a little lamb, its fleece was white as snow.";

/// One run's errors against ground truth: (name, measured − truth in seconds).
fn errors_against_truth(
    tl: &rtprobe::probe::Timeline,
    rec: &SessionRecord,
) -> Vec<(&'static str, f64)> {
    let t0 = tl.t0.expect("t0");
    let d = derive(tl, Some(TRANSCRIPT));
    assert_eq!(d.wer, Some(0.0), "{:?}", tl.transcript());
    let truth = rec.deltas(0);
    assert_eq!(tl.deltas.len(), truth.len());
    let words: Vec<Instant> = truth.iter().filter(|d| d.1).map(|d| d.0).collect();
    let utt = &rec.utterances[0];
    let end_at = utt.end_at.expect("end of audio");
    let first_audio = utt.first_audio_at.expect("first audio");
    let done_at = rec.done_at(0).expect("completed emitted");
    let mut e = vec![
        ("ttft", d.ttft.unwrap() - since(t0, words[0])),
        (
            "time_to_first_text",
            d.time_to_first_text.unwrap() - (words[0] - first_audio).as_secs_f64(),
        ),
        (
            "rtt_last",
            d.rtt_last.unwrap() - (*words.last().unwrap() - end_at).as_secs_f64(),
        ),
        (
            "finalize",
            d.finalize.unwrap() - (done_at - end_at).as_secs_f64(),
        ),
        ("e2e", d.e2e.unwrap() - since(t0, done_at)),
    ];
    for (k, gap) in d.itl_gaps.iter().enumerate() {
        e.push(("itl_gap", gap - (words[k + 1] - words[k]).as_secs_f64()));
    }
    // Each delta's receive time against its emit time: loopback delivery only.
    for (got, want) in tl.deltas.iter().zip(&truth) {
        e.push(("delivery", got.at.as_secs_f64() - since(t0, want.0)));
    }
    e
}

/// Runs per check, and how many must be within the tolerance on every value: a run may lose
/// the CPU on a shared 2-core machine, while a real bias fails every run (and every value must
/// stay within 10× of the tolerance in any case).
const RUNS: usize = 5;
const CLEAN: usize = 2;

async fn check_runs(
    sim: &rtprobe::simulate::SimHandle,
    spec: &rtprobe::config::ProbeSpec,
    audio: &PreparedAudio,
    extra: impl Fn(&rtprobe::probe::Timeline, &SessionRecord),
) {
    let mut clean = 0;
    let mut all = Vec::new();
    for _ in 0..RUNS {
        let tl = run(spec, audio).await;
        assert!(tl.succeeded(), "{:?}", tl.outcome);
        let rec = take_session_record(sim);
        extra(&tl, &rec);
        let e = errors_against_truth(&tl, &rec);
        clean += usize::from(e.iter().all(|(_, v)| v.abs() < TOLERANCE));
        all.extend(e);
    }
    crate::support::probe::log_worst("openai ground-truth errors", &all);
    assert!(
        clean >= CLEAN,
        "only {clean} of {RUNS} runs within 2 ms: {all:?}"
    );
    crate::support::probe::assert_within_10x(&all, TOLERANCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_commit_values_match_ground_truth() {
    let _timed = crate::support::gate::one_at_a_time(module_path!(), &TIMING).await;
    let sim = start(support::probe::timed_sim(Dialect::OpenAi)).await;
    let (spec, audio) = dialect_run(&sim, Dialect::OpenAi, Duration::from_millis(2500), 0);
    check_runs(&sim, &spec, &audio, |tl, rec| {
        let kinds: Vec<SentKind> = tl.sent.iter().map(|s| s.kind).collect();
        assert_eq!(kinds[0], SentKind::SessionUpdate);
        assert!(kinds[1..26].iter().all(|k| *k == SentKind::Append));
        assert_eq!(
            &kinds[26..],
            [SentKind::FinalCommit],
            "one plain commit, no start commit"
        );
        // session.updated and committed were seen, in order.
        let updated = tl.acks.session_updated.expect("session.updated");
        let committed = tl.acks.committed.expect("committed");
        let commit_sent = tl.sent.last().unwrap().at;
        assert!(updated < commit_sent && commit_sent <= committed);
        assert_eq!(tl.acks.speech_stopped, None);
        let usage = tl.done.as_ref().unwrap().usage.unwrap();
        assert_eq!(usage.prompt_tokens, 39);
        assert_eq!(usage.completion_tokens, 21, "11 words + 10 empty tokens");
        assert_eq!(tl.transcript(), format!(" {TRANSCRIPT}"));
        // The simulator saw the update, 25 appends of 100 ms at 24 kHz, one commit, then close.
        let appended: usize = rec
            .client_frames
            .iter()
            .filter_map(|f| match f.kind {
                ClientFrameKind::Append { bytes } => bytes,
                _ => None,
            })
            .sum();
        assert_eq!(appended, 2500 * 24 * 2);
        assert_eq!(rec.utterances.len(), 1);
        assert!(rec.emissions.iter().any(|e| e.kind == EmitKind::Committed));
        assert!(
            rec.request
                .as_ref()
                .unwrap()
                .1
                .ends_with("?intent=transcription")
        );
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_vad_values_match_ground_truth() {
    let _timed = crate::support::gate::one_at_a_time(module_path!(), &TIMING).await;
    let sim = start(support::probe::timed_sim(Dialect::OpenAi)).await;
    // 2 s of "speech"; the probe streams silence after it for the server's VAD.
    let (mut spec, audio) = dialect_run(&sim, Dialect::OpenAi, Duration::from_millis(2000), 3000);
    spec.dialect.turn_detection = TurnDetection::ServerVad {
        silence: Duration::from_millis(300),
    };
    check_runs(&sim, &spec, &audio, |tl, rec| {
        assert!(
            tl.sent.iter().all(|s| s.kind != SentKind::FinalCommit),
            "the server commits"
        );
        // 20 speech chunks, then silence (up to 300 ms VAD + 500 ms margin) until the final
        // text ends the run: at least the VAD's 300 ms of it went out.
        assert!(
            (1 + 20 + 3..=1 + 28).contains(&tl.sent.len()),
            "{}",
            tl.sent.len()
        );
        let stopped = tl.acks.speech_stopped.expect("speech_stopped");
        let committed = tl.acks.committed.expect("committed");
        assert!(tl.acks.speech_started.unwrap() < stopped && stopped <= committed);
        // Ground truth: the utterance ended when the simulator sent speech_stopped, 300 ms of
        // audio after the speech ended.
        let t0 = tl.t0.unwrap();
        let sent = rec.emitted_at(0, &EmitKind::SpeechStopped).unwrap();
        assert_eq!(rec.utterances[0].end_at, Some(sent));
        let lag = stopped.as_secs_f64() - since(t0, sent);
        assert!(
            (0.0..0.01).contains(&(lag + 0.001)),
            "speech_stopped delivery {lag}"
        );
        let speech_end = tl.sent[20].at.as_secs_f64();
        let vad_delay = stopped.as_secs_f64() - speech_end;
        assert!((0.25..0.45).contains(&vad_delay), "{vad_delay}");
    })
    .await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_16k_clip_is_resampled_and_accepted_at_24k() {
    // Not timed itself, but it would steal the CPU from the timed tests running beside it.
    let _timed = crate::support::gate::one_at_a_time(module_path!(), &TIMING).await;
    // A real 16 kHz WAV from the examples, prepared at the dialect's rate.
    let clip =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/audio/mary-had-a-little-lamb.wav");
    let at16 = rtprobe::audio::prepare(&clip, Duration::from_millis(100)).unwrap();
    let at24 = rtprobe::audio::prepare_at(&clip, Duration::from_millis(100), 24_000).unwrap();
    assert_eq!(at24.rate, 24_000);
    assert!(
        (at24.total_samples as f64 - at16.total_samples as f64 * 1.5).abs() <= 4.0,
        "{} vs {}",
        at24.total_samples,
        at16.total_samples
    );
    assert_eq!(at24.chunks[0].samples, 2400);
    let sim = start(SimConfig {
        dialect: Dialect::OpenAi,
        first_text_delay: Duration::from_millis(50),
        token_interval: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await;
    let spec = openai_spec(&sim);
    let tl = run(&spec, &at24).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert_eq!(tl.audio_sent, at24.duration());
    let rec = take_session_record(&sim);
    let appended: u64 = rec
        .client_frames
        .iter()
        .filter_map(|f| match f.kind {
            ClientFrameKind::Append { bytes } => bytes.map(|b| b as u64),
            _ => None,
        })
        .sum();
    assert_eq!(appended, at24.total_samples * 2);

    // Declaring 16 kHz to a 24 kHz-only server is refused in session.update.
    let mut spec16 = spec.clone();
    spec16.dialect.sample_rate = 16_000;
    let tl = run(&spec16, &at16).await;
    let err = tl.outcome.unwrap_err();
    assert_eq!(err.kind.as_str(), "server_error.invalid_session", "{err}");
    sim.shutdown().await;
}

async fn expect_fault(
    cfg: SimConfig,
    adjust: impl FnOnce(&mut rtprobe::config::ProbeSpec),
    kind: &str,
) {
    let sim = start(SimConfig {
        dialect: Dialect::OpenAi,
        ..cfg
    })
    .await;
    let mut spec = openai_spec(&sim);
    adjust(&mut spec);
    let audio = constant_at(
        Duration::from_millis(600),
        Duration::from_millis(100),
        24_000,
        0,
    );
    let started = Instant::now();
    let tl = run(&spec, &audio).await;
    let err = tl.outcome.clone().expect_err("the run should fail");
    assert_eq!(err.kind.as_str(), kind, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{kind}: {:?}",
        started.elapsed()
    );
    sim.shutdown().await;
}

fn fault(f: Fault) -> SimConfig {
    SimConfig {
        fault: f,
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_knob_gives_its_error_type() {
    // Not timed itself, but it would steal the CPU from the timed tests running beside it.
    let _timed = crate::support::gate::one_at_a_time(module_path!(), &TIMING).await;
    let short = |s: &mut rtprobe::config::ProbeSpec| {
        s.deadlines.connect = Duration::from_millis(500);
    };
    for (f, kind) in [
        (Fault::ErrorMidStream, "server_error.transcription_failed"),
        (Fault::NeverDone, "timeout_done"),
        (Fault::DropTcp, "closed_early"),
        (Fault::RejectModel, "server_error.invalid_session"),
        (Fault::Close1011, "closed_early"),
        (Fault::Close1012, "closed_early"),
        (Fault::OversizedFrame, "limit"),
        (Fault::MalformedJson, "protocol"),
        (Fault::BinaryFrame, "protocol"),
        (Fault::Truncate, "truncated"),
        (Fault::HttpStatus(503), "http_5xx"),
        (Fault::HttpStatus(401), "http_401"),
    ] {
        expect_fault(fault(f), |_| {}, kind).await;
    }
    expect_fault(fault(Fault::SlowSession), short, "timeout_connect").await;
    expect_fault(fault(Fault::Silent), short, "timeout_connect").await;
    expect_fault(
        SimConfig {
            fault: Fault::UnknownEventFlood,
            flood_events: 10_001,
            ..SimConfig::default()
        },
        |_| {},
        "limit",
    )
    .await;
    // The dialect's own refusals: a vLLM-shaped update, a URL without the intent.
    expect_fault(
        SimConfig::default(),
        |s| s.dialect = rtprobe::config::DialectSpec::of(Dialect::Vllm),
        "server_error.invalid_session",
    )
    .await;
    expect_fault(
        SimConfig::default(),
        |s| s.target.ws_url = s.target.ws_url.replace("?intent=transcription", ""),
        "server_error.invalid_session",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn done_only_and_a_short_commit() {
    // Not timed itself, but it would steal the CPU from the timed tests running beside it.
    let _timed = crate::support::gate::one_at_a_time(module_path!(), &TIMING).await;
    // No deltas: the completed transcript is the one token (guidellm's done-only rule).
    let sim = start(SimConfig {
        dialect: Dialect::OpenAi,
        fault: Fault::DoneOnly,
        ..SimConfig::default()
    })
    .await;
    let spec = openai_spec(&sim);
    let audio = constant_at(
        Duration::from_millis(300),
        Duration::from_millis(100),
        24_000,
        0,
    );
    let tl = run(&spec, &audio).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert!(tl.deltas.is_empty());
    let d = derive(&tl, None);
    assert_eq!(d.ttft, Some(tl.done.as_ref().unwrap().at.as_secs_f64()));
    sim.shutdown().await;

    // Less than 100 ms of audio: OpenAI's input_audio_buffer_commit_empty.
    let sim = start(SimConfig {
        dialect: Dialect::OpenAi,
        ..SimConfig::default()
    })
    .await;
    let audio = constant_at(
        Duration::from_millis(50),
        Duration::from_millis(50),
        24_000,
        0,
    );
    let tl = run(&openai_spec(&sim), &audio).await;
    assert_eq!(
        tl.outcome.unwrap_err().kind.as_str(),
        "server_error.commit_empty"
    );
    sim.shutdown().await;
}
