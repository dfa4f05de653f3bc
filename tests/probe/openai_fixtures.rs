//! The client fed the exact event sequences that OpenAI's transcription guide and API reference
//! print and that SGLang's realtime server sends (tests/fixtures/openai/*.script, each naming its
//! source), by a scripted WebSocket server; the timeline it builds is checked event by event.

use crate::support;

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtprobe::config::{Dialect, DialectSpec, ProbeSpec, TurnDetection};
use rtprobe::derive::derive;
use rtprobe::probe::timeline::SentKind;
use rtprobe::probe::{Timeline, run};
use support::probe::{constant_at, spec_for};
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
