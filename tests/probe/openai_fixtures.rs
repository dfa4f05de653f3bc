//! The client fed the exact event sequences that OpenAI's transcription guide and API reference
//! print and that SGLang's realtime server sends (tests/fixtures/openai/*.script, each naming its
//! source), by a scripted WebSocket server; the timeline it builds is checked event by event.
//! Also the legacy beta update (`session_update: beta`) against the simulator serving it.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtprobe::config::{Dialect, DialectSpec, ModelChoice, ProbeSpec, SessionUpdate, TurnDetection};
use rtprobe::derive::derive;
use rtprobe::probe::timeline::SentKind;
use rtprobe::probe::{Timeline, run};
use rtprobe::simulate::{ClientFrameKind, EmitKind, SessionRecord, SimConfig};
use support::probe::{constant_at, dialect_run, spec_for};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

enum Step {
    Send(String),
    AwaitClient(String),
}

fn script(name: &str) -> Vec<Step> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/openai")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        text.starts_with("# Source: "),
        "{name} names its source first"
    );
    text.lines()
        .filter_map(|l| {
            if let Some(frame) = l.strip_prefix("< ") {
                serde_json::from_str::<serde_json::Value>(frame).expect("a JSON frame");
                Some(Step::Send(frame.to_string()))
            } else {
                l.strip_prefix("> ")
                    .map(|t| Step::AwaitClient(t.trim().to_string()))
            }
        })
        .collect()
}

/// Play `steps` to one client connection, then keep reading until the client leaves.
async fn replay(steps: Vec<Step>, mut spec: ProbeSpec) -> Timeline {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        for step in steps {
            match step {
                Step::Send(frame) => {
                    if ws.send(Message::Text(frame.into())).await.is_err() {
                        return;
                    }
                }
                Step::AwaitClient(kind) => loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                            if v["type"] == kind.as_str() {
                                break;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                },
            }
        }
        while let Some(Ok(_)) = ws.next().await {}
    };
    spec.target = rtprobe::config::parse_target_for(
        &format!("ws://127.0.0.1:{port}/v1/realtime?intent=transcription"),
        Dialect::OpenAi,
    )
    .unwrap();
    spec.deadlines.done = Duration::from_millis(800);
    let audio = constant_at(
        Duration::from_millis(300),
        Duration::from_millis(100),
        24_000,
        0,
    );
    let (tl, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(run(&spec, &audio), server)
    })
    .await
    .expect("bounded");
    tl
}

/// [`replay`] of the fixture script `name` to an OpenAI-dialect probe with `turn`.
async fn replay_fixture(name: &str, turn: TurnDetection) -> Timeline {
    replay(script(name), openai(turn)).await
}

fn openai(turn: TurnDetection) -> ProbeSpec {
    let mut s = spec_for("127.0.0.1", 1, false);
    s.dialect = DialectSpec::of(Dialect::OpenAi);
    s.dialect.turn_detection = turn;
    s
}

fn commit_sent(tl: &Timeline) -> Duration {
    tl.sent
        .iter()
        .find(|s| s.kind == SentKind::FinalCommit)
        .expect("commit sent")
        .at
}

#[tokio::test]
async fn openai_guide_manual_commit() {
    let tl = replay_fixture("openai-guide-manual-commit.script", TurnDetection::Manual).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert_eq!(tl.transcript(), "Hello, how are you?");
    assert_eq!(tl.delta_text, "Hello,");
    assert_eq!(tl.deltas.len(), 1);
    let done = tl.done.as_ref().unwrap();
    assert_eq!(done.usage, None, "the guide's completion carries no usage");
    let commit = commit_sent(&tl);
    let committed = tl.acks.committed.unwrap();
    assert!(tl.acks.session_updated.unwrap() < commit);
    assert!(commit <= committed && committed <= tl.deltas[0].at && tl.deltas[0].at <= done.at);
    let d = derive(&tl, Some("hello how are you"));
    assert_eq!(d.ttft, Some(tl.deltas[0].at.as_secs_f64()));
    assert_eq!(d.rtt_last, Some((tl.deltas[0].at - commit).as_secs_f64()));
    assert_eq!(d.finalize, Some((done.at - commit).as_secs_f64()));
    assert_eq!(d.wer, Some(0.0));
}

#[tokio::test]
async fn openai_reference_server_vad_turn() {
    let vad = TurnDetection::ServerVad {
        silence: Duration::from_millis(500),
    };
    let tl = replay_fixture("openai-reference-server-vad.script", vad).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert!(tl.sent.iter().all(|s| s.kind != SentKind::FinalCommit));
    let (started, stopped) = (
        tl.acks.speech_started.unwrap(),
        tl.acks.speech_stopped.unwrap(),
    );
    let committed = tl.acks.committed.unwrap();
    let done = tl.done.as_ref().unwrap();
    assert!(started <= stopped && stopped <= committed && committed <= done.at);
    let u = done.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (38, 10, 48)
    );
    assert!(tl.deltas.is_empty());
    let d = derive(&tl, None);
    // No delta: the completed transcript is the one token; round trip and finalize count from
    // speech_stopped.
    assert_eq!(d.ttft, Some(done.at.as_secs_f64()));
    assert_eq!(d.rtt_last, Some((done.at - stopped).as_secs_f64()));
    assert_eq!(d.finalize, Some((done.at - stopped).as_secs_f64()));
    assert!(!tl.truncated);
}

#[tokio::test]
async fn sglang_pre_commit_delta_then_final_pass() {
    let tl = replay_fixture("sglang-manual-commit.script", TurnDetection::Manual).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert_eq!(tl.deltas.len(), 3);
    assert!(tl.deltas.iter().all(|d| d.nonempty));
    assert_eq!(tl.delta_text, "Mary had a little lamb.");
    assert_eq!(tl.transcript(), "Mary had a little lamb.");
    assert_eq!(
        tl.done.as_ref().unwrap().usage,
        None,
        "duration usage counts no tokens"
    );
    let commit = commit_sent(&tl);
    assert!(tl.deltas[0].at < commit, "SGLang streams before the commit");
    assert!(tl.acks.committed.unwrap() <= tl.deltas[1].at);
    let d = derive(&tl, Some("Mary had a little lamb"));
    assert_eq!(d.rtt_last, Some((tl.deltas[2].at - commit).as_secs_f64()));
    assert_eq!(d.itl_gaps.len(), 2);
    assert_eq!(d.wer, Some(0.0));
}

#[tokio::test]
async fn sglang_commit_time_failure() {
    let tl = replay_fixture("sglang-commit-failed.script", TurnDetection::Manual).await;
    let err = tl.outcome.unwrap_err();
    assert_eq!(err.kind.as_str(), "server_error.transcription_failed");
    assert!(
        err.detail.contains("Transcription failed"),
        "{}",
        err.detail
    );
    assert!(tl.acks.committed.is_some());
}

/// A beta-shaped probe against the simulator in the OpenAI dialect: `audio` of `level` (0 is
/// silence; 1000 is speech to the simulator's VAD), the spec adjusted by `tweak`.
async fn beta_run(level: i16, tweak: impl FnOnce(&mut ProbeSpec)) -> (Timeline, SessionRecord) {
    let sim = support::sim::start(SimConfig {
        dialect: Dialect::OpenAi,
        first_text_delay: Duration::from_millis(50),
        token_interval: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await;
    let (mut spec, audio) = dialect_run(&sim, Dialect::OpenAi, Duration::from_millis(300), level);
    spec.dialect.session_update = SessionUpdate::Beta;
    tweak(&mut spec);
    let tl = tokio::time::timeout(Duration::from_secs(15), run(&spec, &audio))
        .await
        .expect("bounded");
    let rec = support::sim::session_record(&sim);
    // The simulator took the frame as a session update and answered it (or refused it).
    assert_eq!(
        rec.client_frames
            .iter()
            .filter(|f| f.kind == ClientFrameKind::SessionUpdate)
            .count(),
        1
    );
    let updated = rec
        .emissions
        .iter()
        .any(|e| e.kind == EmitKind::SessionUpdated);
    assert_eq!(updated, tl.succeeded(), "{:?}", tl.outcome);
    sim.shutdown().await;
    (tl, rec)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_update_manual_commit_against_the_simulator() {
    let (tl, _) = beta_run(0, |_| {}).await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    let d = derive(
        &tl,
        Some("Mary had a little lamb, its fleece was white as snow."),
    );
    assert_eq!(d.wer, Some(0.0), "{:?}", tl.transcript());
    let updated = tl
        .acks
        .session_updated
        .expect("transcription_session.updated");
    let commit = commit_sent(&tl);
    assert!(updated < commit, "{updated:?} {commit:?}");
    assert!(tl.acks.committed.unwrap() >= commit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_update_server_vad_against_the_simulator() {
    let (tl, rec) = beta_run(1000, |s| {
        s.dialect.turn_detection = TurnDetection::ServerVad {
            silence: Duration::from_millis(200),
        }
    })
    .await;
    assert!(tl.succeeded(), "{:?}", tl.outcome);
    assert!(tl.sent.iter().all(|s| s.kind != SentKind::FinalCommit));
    let updated = tl
        .acks
        .session_updated
        .expect("transcription_session.updated");
    let stopped = tl.acks.speech_stopped.expect("speech_stopped");
    assert!(updated < stopped && stopped <= tl.acks.committed.unwrap());
    // The simulator ended the turn after the beta update's 200 ms of silence, not its default
    // 500 ms: three 100 ms appends of speech, then the second of silence.
    let stopped_at = rec
        .emissions
        .iter()
        .find(|e| e.kind == EmitKind::SpeechStopped)
        .expect("speech_stopped emitted")
        .at;
    let appends_before = rec
        .client_frames
        .iter()
        .filter(|f| matches!(f.kind, ClientFrameKind::Append { .. }) && f.at <= stopped_at)
        .count();
    assert_eq!(appends_before, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beta_update_with_the_wrong_model_is_refused() {
    let (tl, _) = beta_run(0, |s| s.model = ModelChoice::Named("other".into())).await;
    let err = tl.outcome.unwrap_err();
    assert_eq!(err.kind.as_str(), "server_error.invalid_session");
    assert!(
        err.detail
            .contains("this server transcribes with \"demo-realtime\""),
        "{}",
        err.detail
    );
    assert_eq!(tl.acks.session_updated, None);
}
